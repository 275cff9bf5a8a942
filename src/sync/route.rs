//! Routing the march's actions: what can be done before the walks end
//! goes to the engine at once (new directories, copies, file mtimes);
//! what could destroy data waits for the whole tree: deletions (a listing
//! cut short must not delete what it did not show, and the safety checks
//! need the whole count) and anything that replaces an entry of another
//! type, with what goes inside it; directory mtimes come last, as always.
//! A run that acts on the whole plan only routes everything to wait.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::backend::temp::temp_path;
use crate::engine::RESUME_MIN_SIZE;
use crate::engine::report::Reporter;
use crate::path::RelPath;
use crate::plan::{Action, Reason, Sink};

/// Sends what can be done now to the engine, keeps the rest for after the
/// walks.
pub(super) struct Router {
    early: Option<mpsc::Sender<Action>>,
    reporter: Arc<Reporter>,
    pub deferred: Vec<Action>,
    /// Paths being replaced by another type: they, and what goes inside
    /// them, wait for the replacement.
    replaced: HashSet<RelPath>,
    /// Copies large enough to leave a resumable temporary when they fail.
    pub large_copies: HashSet<RelPath>,
    /// Links skipped because the destination cannot hold them.
    pub unlinkable: u64,
}

impl Router {
    /// `early`: where actions that can be done now go; `None` when the
    /// run acts on the whole plan only.
    pub fn new(early: Option<mpsc::Sender<Action>>, reporter: &Arc<Reporter>) -> Router {
        Router {
            early,
            reporter: Arc::clone(reporter),
            deferred: Vec::new(),
            replaced: HashSet::new(),
            large_copies: HashSet::new(),
            unlinkable: 0,
        }
    }

    pub fn close(&mut self) {
        self.early = None;
    }

    fn waits(&self, path: &RelPath) -> bool {
        !self.replaced.is_empty() && (self.replaced.contains(path) || self.replaced.contains(&path.parent()))
    }
}

impl Sink for Router {
    fn push(&mut self, action: Action) {
        let now = match &action {
            Action::Delete { reason: Reason::Replaced, path, .. } => {
                self.replaced.insert(path.clone());
                false
            }
            Action::Delete { .. } => {
                self.reporter.will_delete();
                false
            }
            Action::SetMtime { kind: crate::backend::EntryKind::Dir, .. }
            | Action::SetMode { kind: crate::backend::EntryKind::Dir, .. }
            | Action::SetOwner { kind: crate::backend::EntryKind::Dir, .. } => false,
            Action::Skip { reason: Reason::LinkUnsupported, .. } => {
                self.unlinkable += 1;
                false
            }
            Action::Skip { .. } | Action::Conflict { .. } => false,
            Action::Mkdir { path, .. } if self.waits(path) => {
                self.replaced.insert(path.clone());
                false
            }
            Action::Mkdir { .. }
            | Action::Copy { .. }
            | Action::SetMtime { .. }
            | Action::SetMode { .. }
            | Action::SetOwner { .. }
            | Action::RemoveSource { .. } => !self.waits(action.path()),
        };
        if let Action::Copy { src, .. } = &action
            && src.size >= RESUME_MIN_SIZE
        {
            self.large_copies.insert(temp_path(&src.path));
        }
        match (&self.early, now) {
            (Some(early), true) => {
                if let Action::Copy { src, .. } = &action {
                    self.reporter.grow_progress(crate::engine::report::copied_bytes(src), 1);
                }
                // The engine only goes away when the run is being torn down.
                let _ = early.blocking_send(action);
            }
            _ => self.deferred.push(action),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Entry, EntryKind};
    use crate::engine::report::{OutputOptions, Verbosity};

    fn path(p: &str) -> RelPath {
        RelPath::parse(p.as_bytes()).unwrap()
    }

    fn copy(p: &str, reason: Reason) -> Action {
        Action::Copy { src: Entry { kind: EntryKind::File, size: 3, ..Entry::dir(path(p)) }, reason }
    }

    fn delete(p: &str, kind: EntryKind, reason: Reason) -> Action {
        Action::Delete { path: path(p), kind, reason }
    }

    /// Which of `actions` (in the order the march gives them) go to the
    /// engine at once, and which wait for the whole tree.
    fn route(actions: Vec<Action>) -> (Vec<RelPath>, Vec<RelPath>) {
        let reporter = Arc::new(Reporter::new(OutputOptions { json: false, verbosity: Verbosity::Quiet }));
        let (tx, mut rx) = mpsc::channel(64);
        let mut router = Router::new(Some(tx), &reporter);
        for action in actions {
            router.push(action);
        }
        router.close();
        let mut early = Vec::new();
        while let Ok(action) = rx.try_recv() {
            early.push(action.path().clone());
        }
        (early, router.deferred.iter().map(|a| a.path().clone()).collect())
    }

    #[test]
    fn copies_and_new_directories_go_at_once_deletions_and_replacements_wait() {
        let mkdir = |p: &str, reason| Action::Mkdir { path: path(p), reason };
        let dir_mtime = Action::SetMtime {
            path: path("new"),
            kind: EntryKind::Dir,
            mtime: crate::backend::Mtime(1),
            reason: Reason::DirMtime,
        };
        let (early, deferred) = route(vec![
            copy("a", Reason::New),
            mkdir("new", Reason::New),
            copy("new/b", Reason::New),
            // A file where the destination has a directory: the directory
            // (and what is in it) goes first, after the walks.
            delete("swap", EntryKind::Dir, Reason::Replaced),
            delete("swap/old", EntryKind::File, Reason::Replaced),
            copy("swap", Reason::TypeChanged),
            // A directory where the destination has a file: it and all
            // that goes inside it wait for the file's removal.
            delete("turn", EntryKind::File, Reason::Replaced),
            mkdir("turn", Reason::TypeChanged),
            mkdir("turn/sub", Reason::New),
            copy("turn/sub/c", Reason::New),
            delete("gone", EntryKind::File, Reason::Extraneous),
            copy("z", Reason::SizeDiffers),
            dir_mtime,
        ]);
        assert_eq!(early, [path("a"), path("new"), path("new/b"), path("z")]);
        assert_eq!(
            deferred,
            ["swap", "swap/old", "swap", "turn", "turn", "turn/sub", "turn/sub/c", "gone", "new"].map(path)
        );
    }
}
