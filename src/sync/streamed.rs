//! A sync whose plan is made while the trees are listed: both sides are
//! walked in tree order ([`crate::backend::stream`]), the march runs over
//! the two streams as they come, and what can be done before the walks end
//! is done at once — new directories, copies, file mtimes — so transfers
//! start with the first listings and neither listing is ever held whole.
//!
//! What could destroy data waits for the whole tree: deletions (a listing
//! cut short must not delete what it did not show, and the safety checks
//! need the whole count) and anything that replaces an entry of another
//! type, with what goes inside it; directory mtimes come last, as always.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::safety::{SourceSeen, hold_back_deletions};
use super::{
    Job, Ran, Setup, clean_temporaries, emptied_among, lock_db, report_temporaries_left, shrink_baseline, unreachable,
};
use crate::backend::Entry;
use crate::backend::recall::{MAX_RECALLED_FILES, Recall, RecalledFile, RecalledFiles};
use crate::backend::stream::{CHANNEL_BATCHES, WalkItem};
use crate::backend::temp::{is_temp_name, temp_path};
use crate::engine::report::Reporter;
use crate::engine::{Engine, RESUME_MIN_SIZE};
use crate::error::Error;
use crate::path::RelPath;
use crate::plan::SyncedRecord;
use crate::plan::{Action, CompareRule, LinkRule, MarchRules, Plan, Reason, Records, Sink, filter::Filter, march};
use crate::state::{Side as StateSide, run_blocking};

/// Whether a job can run streamed. Runs that must see everything before
/// they act are planned whole: `--max-delete` promises that a stop changes
/// nothing; `--compare hash` hashes pairs in bulk; `--trust-state` and
/// `--verify-state` work from and rebuild the whole record set; and
/// `--links follow` resolves links across the tree.
pub fn can_stream(job: &Job) -> bool {
    job.safety.max_delete.is_none()
        && job.compare != crate::plan::CompareMode::Hash
        && !job.trust_state
        && !job.verify_state
        && job.links != crate::plan::LinkMode::Follow
}

/// A record of the last run, with whether this run's listings showed its
/// path (records neither side shows any more are forgotten).
struct Tracked {
    record: SyncedRecord,
    /// When the run that wrote the record began (unix seconds).
    recorded_at: Option<i64>,
    seen: AtomicBool,
}

/// Shared with the walks' recalls, which read the same map.
struct TrackedRecords(Arc<HashMap<RelPath, Tracked>>);

/// One side of the records, as a walk's [`Recall`].
struct RecordedSide {
    records: Arc<HashMap<RelPath, Tracked>>,
    side: StateSide,
}

impl RecordedSide {
    /// This side of `tracked`; without a time nothing can be confirmed.
    fn recalled(&self, tracked: &Tracked) -> Option<RecalledFile> {
        let record = &tracked.record;
        let (size, mtime) = match self.side {
            StateSide::Src => (record.src_size, record.src_mtime),
            StateSide::Dst => (record.dst_size, record.dst_mtime),
        };
        Some(RecalledFile { size, mtime: mtime?, recorded_at: tracked.recorded_at? })
    }
}

impl RecalledFiles for RecordedSide {
    fn file(&self, path: &RelPath) -> Option<RecalledFile> {
        self.recalled(self.records.get(path)?)
    }

    fn for_each_path(&self, visit: &mut dyn FnMut(&RelPath)) {
        for (path, tracked) in self.records.iter() {
            if self.recalled(tracked).is_some() {
                visit(path);
            }
        }
    }
}

impl Records for TrackedRecords {
    fn record(&self, path: &RelPath) -> Option<&SyncedRecord> {
        self.0.get(path).map(|t| &t.record)
    }
}

impl TrackedRecords {
    fn saw(&self, path: &RelPath) {
        if let Some(tracked) = self.0.get(path) {
            tracked.seen.store(true, Ordering::Relaxed);
        }
    }
}

pub(super) async fn run(setup: Setup<'_>) -> Result<Ran, Error> {
    let Setup { job, src, dst, db, filter, engine_config, reporter, journal } = setup;
    // Both walks start at once; the records load beside them.
    let (src_tx, mut src_rx) = mpsc::channel(CHANNEL_BATCHES);
    let (dst_tx, mut dst_rx) = mpsc::channel(CHANNEL_BATCHES);
    // A side that can use what the last runs recorded of it gets it as
    // soon as it is read (see `backend::recall`).
    let (src_recall, src_recall_rx) = oneshot::channel();
    let (dst_recall, dst_recall_rx) = oneshot::channel();
    let src_walk = {
        let src = Arc::clone(&src);
        tokio::spawn(async move { src.walk_streamed_recalling(src_tx, src_recall_rx).await })
    };
    let dst_walk = {
        let dst = Arc::clone(&dst);
        tokio::spawn(async move { dst.walk_streamed_recalling(dst_tx, dst_recall_rx).await })
    };
    let records = match db {
        Some(db) => {
            let db = Arc::clone(db);
            run_blocking(move || {
                lock_db(&db).load_synced_as(|record, recorded_at| Tracked {
                    record,
                    recorded_at,
                    seen: AtomicBool::new(false),
                })
            })
            .await?
        }
        None => HashMap::new(),
    };
    let records = Arc::new(records);
    // A walk whose sender is dropped here goes without a recall; so does
    // one with too many records (the coarse listing a recall confirms is
    // held whole).
    let recallable = !records.is_empty() && records.len() <= MAX_RECALLED_FILES;
    for (backend, side, sender) in [(&src, StateSide::Src, src_recall), (&dst, StateSide::Dst, dst_recall)] {
        if recallable && backend.capabilities().uses_recall {
            let records = Arc::clone(&records);
            tokio::task::spawn_blocking(move || {
                let _ = sender.send(Arc::new(Recall::over(Box::new(RecordedSide { records, side }))));
            });
        }
    }
    let records = TrackedRecords(records);
    // Nothing is done before both roots are known to be readable: a
    // destination that failed to list must not look empty.
    let src_first = first_items(&mut src_rx).await.map_err(unreachable(&job.src))?;
    let dst_first = first_items(&mut dst_rx).await.map_err(unreachable(&job.dst))?;

    let rule = CompareRule::new(
        job.compare,
        src.capabilities().mtime_precision,
        dst.capabilities().mtime_precision,
        dst.capabilities().set_mtime,
    );
    let links = LinkRule { mode: job.links, dst_can_link: dst.capabilities().symlinks };
    let engine = Arc::new(Engine::new(
        Arc::clone(&src),
        Arc::clone(&dst),
        engine_config,
        Arc::clone(&reporter),
        journal,
        HashMap::new(),
    ));
    // Enough for the engine to choose from, few enough to bound memory.
    let (early_tx, early_rx) = mpsc::channel(EARLY_ACTIONS);
    let delete = job.delete;
    let marching = {
        let reporter = Arc::clone(&reporter);
        let filter = Arc::clone(&filter);
        tokio::task::spawn_blocking(move || {
            let mut src_side = Side::new(src_first, src_rx, Arc::clone(&reporter), false);
            let mut dst_side = Side::new(dst_first, dst_rx, Arc::clone(&reporter), true);
            let mut sink = Router::new(early_tx, &reporter);
            let src_entries = std::iter::from_fn(|| src_side.next_entry(&filter, &records));
            let dst_entries = std::iter::from_fn(|| dst_side.next_entry(&filter, &records));
            let rules = MarchRules { src_unreadable: &[], rule, delete, links };
            let unchanged = march(src_entries, dst_entries, &records, rules, &mut sink);
            sink.close();
            Marched { unchanged, src: src_side.finish(), dst: dst_side.finish(), sink, records }
        })
    };
    engine.run_streamed(early_rx).await;
    let marched = marching
        .await
        .map_err(|e| Error::Io { context: "plan".into(), source: std::io::Error::other(e.to_string()) })?;
    // The walks ended when their streams did.
    let _ = tokio::join!(src_walk, dst_walk);
    let Marched { unchanged, src: src_seen, dst: dst_seen, sink, records } = marched;
    let Router { mut deferred, large_copies, unlinkable, .. } = sink;

    // Nothing below a source directory that could not be listed is
    // missing from the source: it was not seen.
    deferred.retain(|a| match a {
        Action::Delete { path, reason: Reason::Extraneous, .. } => {
            !src_seen.unreadable.iter().any(|u| path.starts_with(u))
        }
        _ => true,
    });
    let emptied = emptied_among(&src_seen.empty_dirs, records.0.keys());
    let unreadable: Vec<RelPath> = src_seen.unreadable.iter().chain(&dst_seen.unreadable).cloned().collect();
    let stale: Vec<RelPath> = records
        .0
        .iter()
        .filter(|(path, t)| !t.seen.load(Ordering::Relaxed) && !unreadable.iter().any(|u| path.starts_with(u)))
        .map(|(path, _)| path.clone())
        .collect();
    drop(records);
    let stopped = crate::stop::requested().is_some();
    if stopped {
        // The listing was cut short: its "extraneous" entries are not.
        deferred.retain(|a| !matches!(a, Action::Delete { reason: Reason::Extraneous, .. }));
    }
    if let (Some(db), false, false) = (db, stale.is_empty(), stopped) {
        let db = Arc::clone(db);
        run_blocking(move || lock_db(&db).write_synced(&[], &stale)).await?;
    }
    let baseline = shrink_baseline(db).await?;
    let seen = SourceSeen {
        root: &job.src,
        warnings: src_seen.warnings,
        unreadable: src_seen.unreadable.len(),
        emptied: &emptied,
        baseline,
        files: src_seen.files,
    };
    let held_back = hold_back_deletions(&mut deferred, &seen, &job.safety, &reporter);
    if unlinkable > 0 {
        reporter.warning(&format!(
            "{unlinkable} symbolic links skipped: {} cannot hold symbolic links (--links skip silences this)",
            dst.describe()
        ));
    }
    // Temporaries the listing showed that no copy of this run took over
    // (a copy renames its own, or keeps a large one to resume): every
    // early copy is over, and a directory to delete must be empty.
    let stale_temps: Vec<Entry> = match stopped {
        true => Vec::new(),
        false => dst_seen.temporaries.into_iter().filter(|t| !large_copies.contains(&t.path)).collect(),
    };
    let timeout = engine.config.timeout;
    let left = clean_temporaries(&dst, stale_temps, filter.shard(), timeout, engine.concurrency().end).await;
    report_temporaries_left(left, dst.as_ref(), &reporter);
    reporter.stats.files_unchanged.store(unchanged, Ordering::Relaxed);
    engine.run(Plan { actions: deferred, unchanged }).await;

    Ok(Ran { engine, held_back, src_files: src_seen.files, listed: None })
}

/// Actions queued for the engine ahead of the ones it is running.
const EARLY_ACTIONS: usize = 4096;

/// A walk's items up to its first entry (or its end): the root was listed.
/// Fails with the walk's error when the root could not be.
async fn first_items(rx: &mut mpsc::Receiver<Vec<WalkItem>>) -> Result<VecDeque<WalkItem>, crate::error::OpError> {
    let mut items = VecDeque::new();
    while let Some(batch) = rx.recv().await {
        let mut listed = false;
        for item in batch {
            match item {
                WalkItem::Failed(err) => return Err(err),
                WalkItem::Entry(_) => listed = true,
                _ => {}
            }
            items.push_back(item);
        }
        if listed {
            break;
        }
    }
    Ok(items)
}

/// What the march thread hands back.
struct Marched {
    unchanged: u64,
    src: Seen,
    dst: Seen,
    sink: Router,
    records: TrackedRecords,
}

/// What one side's stream showed besides its entries.
#[derive(Default)]
struct Seen {
    unreadable: Vec<RelPath>,
    warnings: usize,
    /// Files that passed the filters.
    files: u64,
    /// Directories with nothing in them (source side).
    empty_dirs: HashSet<RelPath>,
    /// barge's own temporaries (destination side): never content.
    temporaries: Vec<Entry>,
}

/// One side's stream as the march reads it: blocking reads of the walk's
/// channel, side items reported as they come, filters applied, barge's
/// temporaries taken out, records marked as seen.
struct Side {
    /// The batch being read.
    batch: VecDeque<WalkItem>,
    rx: mpsc::Receiver<Vec<WalkItem>>,
    reporter: Arc<Reporter>,
    destination: bool,
    seen: Seen,
    /// An excluded directory whose subtree is being skipped.
    pruned: Option<RelPath>,
    /// The last directory passed, until something inside it shows it is
    /// not empty.
    open_dir: Option<RelPath>,
}

impl Side {
    fn new(
        first: VecDeque<WalkItem>,
        rx: mpsc::Receiver<Vec<WalkItem>>,
        reporter: Arc<Reporter>,
        destination: bool,
    ) -> Side {
        Side { batch: first, rx, reporter, destination, seen: Seen::default(), pruned: None, open_dir: None }
    }

    fn next_item(&mut self) -> Option<WalkItem> {
        loop {
            if let Some(item) = self.batch.pop_front() {
                return Some(item);
            }
            self.batch = self.rx.blocking_recv()?.into();
        }
    }

    fn next_entry(&mut self, filter: &Filter, records: &TrackedRecords) -> Option<Entry> {
        loop {
            if crate::stop::requested().is_some() {
                // SIGINT/SIGTERM: stop listing too. What the march then
                // takes for missing is never deleted (the engine starts
                // nothing more) nor forgotten (see `run`).
                return None;
            }
            let entry = match self.next_item() {
                None => {
                    if let Some(dir) = self.open_dir.take() {
                        self.seen.empty_dirs.insert(dir);
                    }
                    return None;
                }
                Some(WalkItem::Entry(entry)) => entry,
                Some(other) => {
                    self.side_item(other);
                    continue;
                }
            };
            if let Some(dir) = &self.pruned {
                if entry.path.starts_with(dir) {
                    continue;
                }
                self.pruned = None;
            }
            if !entry.is_dir() && is_temp_name(entry.path.file_name()) {
                // Never content on either side; the destination's are
                // removed or resumed, whatever the filters say (an
                // `--exclude '.*'` must not hide a killed run's debris).
                if self.destination {
                    self.seen.temporaries.push(entry);
                }
                continue;
            }
            if !filter.allows(&entry) {
                if entry.is_dir() {
                    self.pruned = Some(entry.path.clone());
                }
                continue;
            }
            records.saw(&entry.path);
            if let Some(dir) = self.open_dir.take()
                && !entry.path.starts_with(&dir)
            {
                self.seen.empty_dirs.insert(dir);
            }
            if entry.is_dir() {
                self.open_dir = Some(entry.path.clone());
            } else if entry.is_file() {
                self.seen.files += 1;
            }
            return Some(entry);
        }
    }

    fn side_item(&mut self, item: WalkItem) {
        let side = if self.destination { "destination" } else { "source" };
        match item {
            WalkItem::Entry(_) => {}
            WalkItem::Unreadable(dir, err) => {
                match self.destination {
                    false => self
                        .reporter
                        .error(&format!("source {dir} could not be read, nothing below it is deleted: {err}")),
                    true => self.reporter.error(&format!("destination {dir} could not be read: {err}")),
                }
                self.seen.unreadable.push(dir);
            }
            WalkItem::Warning(warning) => {
                self.reporter.warning(&warning);
                self.seen.warnings += 1;
            }
            WalkItem::Notice(notice) => self.reporter.warning(&notice),
            WalkItem::Retried(retried) => self.reporter.info(&retried),
            // Only ever first, and the first was checked; later would be a bug.
            WalkItem::Failed(err) => {
                self.reporter.error(&format!("{side} listing failed: {err}"));
                self.seen.warnings += 1;
            }
        }
    }

    fn finish(self) -> Seen {
        self.seen
    }
}

/// Sends what can be done now to the engine, keeps the rest for after the
/// walks.
struct Router {
    early: Option<mpsc::Sender<Action>>,
    reporter: Arc<Reporter>,
    deferred: Vec<Action>,
    /// Paths being replaced by another type: they, and what goes inside
    /// them, wait for the replacement.
    replaced: HashSet<RelPath>,
    /// Copies large enough to leave a resumable temporary when they fail.
    large_copies: HashSet<RelPath>,
    /// Links skipped because the destination cannot hold them.
    unlinkable: u64,
}

impl Router {
    fn new(early: mpsc::Sender<Action>, reporter: &Arc<Reporter>) -> Router {
        Router {
            early: Some(early),
            reporter: Arc::clone(reporter),
            deferred: Vec::new(),
            replaced: HashSet::new(),
            large_copies: HashSet::new(),
            unlinkable: 0,
        }
    }

    fn close(&mut self) {
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
            Action::Delete { .. } | Action::SetMtime { kind: crate::backend::EntryKind::Dir, .. } => false,
            Action::Skip { reason: Reason::LinkUnsupported, .. } => {
                self.unlinkable += 1;
                false
            }
            Action::Skip { .. } | Action::Conflict { .. } => false,
            Action::Mkdir { path, .. } if self.waits(path) => {
                self.replaced.insert(path.clone());
                false
            }
            Action::Mkdir { .. } | Action::Copy { .. } | Action::SetMtime { .. } => !self.waits(action.path()),
        };
        if let Action::Copy { src, .. } = &action {
            if src.size >= RESUME_MIN_SIZE {
                self.large_copies.insert(temp_path(&src.path));
            }
            if now {
                self.reporter.grow_progress(src.size, 1);
            }
        }
        match (&self.early, now) {
            (Some(early), true) => {
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
    use crate::backend::EntryKind;
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
        let mut router = Router::new(tx, &reporter);
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
