//! `--remove-source-files`: a move. A source file is removed only once its
//! copy is committed under its final name and confirmed there (its size;
//! with `--verify` the copy was compared by hash before its commit), and
//! only if it has not changed since it was listed (size and time asked
//! again just before the removal). The order makes it crash-safe: a kill
//! between the commit and the removal leaves both copies, never neither,
//! and the next run finds the file unchanged on the destination and
//! removes it from the source then ([`crate::plan::Action::RemoveSource`]).
//! Directories stay, unless `--remove-empty-source-dirs`: then those the
//! run emptied go too, deepest first, never the source root.

use std::collections::HashSet;
use std::time::Duration;

use super::{Engine, lock};
use crate::backend::{Entry, EntryKind};
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;
use crate::plan::{Action, CompareMode, CompareRule, Reason, Verdict};

/// `--remove-source-files` and its companion flag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moving {
    /// `--remove-empty-source-dirs`.
    pub empty_dirs: bool,
}

impl Engine {
    /// After the copy of `src` was committed: its source removed, or why
    /// not reported (an error: the file stays in the source, copied).
    pub(super) async fn remove_copied(&self, src: &Entry) {
        let action = Action::RemoveSource { src: src.clone(), reason: Reason::Moved };
        match self.remove_moved(src).await {
            Ok(()) => self.reporter.done(&action, None),
            Err(err) => self.reporter.failed(&action, &err),
        }
    }

    /// Removes the source file `src` if the destination holds it under its
    /// final name at its size and the source still shows it as listed.
    pub(super) async fn remove_moved(&self, src: &Entry) -> Result<(), OpError> {
        let path = &src.path;
        let kept = |why: String| OpError::new(ErrorKind::Other, "remove source", path, format!("kept: {why}"));
        // Two reads of two sides: asked at once (one round trip, not two).
        let (copy, now) = tokio::join!(self.dst.stat(path), self.src.stat(path));
        match copy? {
            Some(copy) if copy.kind == EntryKind::File && copy.size == src.size => {}
            Some(copy) => {
                return Err(kept(format!(
                    "the destination's copy is not confirmed ({} bytes there, {} here)",
                    copy.size, src.size
                )));
            }
            None => return Err(kept("the destination has no copy under its final name".into())),
        }
        match now? {
            Some(now) if now.kind == EntryKind::File && self.unchanged(src, &now) => {}
            Some(_) => return Err(kept("it changed during the copy; the next run copies it again".into())),
            // Gone already (another mover): nothing left to remove.
            None => return Ok(()),
        }
        self.src.remove_file(path).await?;
        if self.config.moving.is_some_and(|m| m.empty_dirs) {
            lock(&self.emptied_source_dirs).insert(path.parent());
        }
        Ok(())
    }

    /// Whether the source file shows `now` the size and time it was
    /// `listed` with, the times as precisely as the source can say (the
    /// planner's window: its precision, or a LIST line's minute or day;
    /// at least a second). Without a time, the size alone.
    fn unchanged(&self, listed: &Entry, now: &Entry) -> bool {
        if listed.mtime.is_none() || now.mtime.is_none() {
            return listed.size == now.size;
        }
        let precision = self.src.capabilities().mtime_precision.max(Duration::from_secs(1));
        let rule = CompareRule::new(CompareMode::Mtime, precision, precision, true);
        // The window widens for the listing's coarseness only: a stat is
        // no excuse to look less closely.
        let now = Entry { coarse_mtime_s: 0, ..now.clone() };
        rule.compare(listed, &now, || None) == Verdict::Same
    }

    /// `--remove-empty-source-dirs`: the directories files were moved out
    /// of, and their parents, removed where empty, deepest first; the
    /// root stays. A directory that is not empty is left without a word.
    pub(super) async fn remove_emptied_source_dirs(&self) {
        let mut dirs: HashSet<RelPath> = HashSet::new();
        for dir in std::mem::take(&mut *lock(&self.emptied_source_dirs)) {
            let mut dir = dir;
            while !dir.is_root() && dirs.insert(dir.clone()) {
                dir = dir.parent();
            }
        }
        let mut dirs: Vec<RelPath> = dirs.into_iter().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.depth()));
        for dir in dirs {
            // Removes only an empty directory: a file or a link there fails.
            if self.src.remove_dir(&dir).await.is_ok() {
                self.reporter.info(&format!("removed the emptied source directory {dir}"));
            }
        }
    }
}
