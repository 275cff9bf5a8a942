//! What the state database remembers of a job, as a run reads and repairs
//! it: the last run's records (each marked when a listing shows its path,
//! so records of paths gone from both sides are forgotten), the recall a
//! walk may confirm directories with, `--trust-state`'s verified records
//! and `--verify-state`'s rebuild, and the run's counters kept in `meta`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::Entry;
use crate::backend::recall::{RecalledFile, RecalledFiles};
use crate::engine::report::Reporter;
use crate::error::Error;
use crate::path::RelPath;
use crate::plan::{Records, SyncedRecord};
use crate::state::{Db, Side as StateSide};

/// Set by a `--verify-state` run: the records describe the destination.
const STATE_VERIFIED: &str = "state_verified";
/// The source's file count at the last run whose listing was trusted.
pub(super) const LAST_SRC_FILES: &str = "last_src_files";
/// The transfer concurrency the last run's tuner settled at.
pub(super) const PARALLEL_LEVEL: &str = "parallel_level";

/// A record of the last run, with whether this run's listings showed its
/// path (records neither side shows any more are forgotten).
struct Tracked {
    record: SyncedRecord,
    /// When the run that wrote the record began (unix seconds).
    recorded_at: Option<i64>,
    seen: AtomicBool,
}

/// The last run's records, shared by the march and the walks' recalls.
#[derive(Clone, Default)]
pub(super) struct TrackedRecords(Arc<HashMap<RelPath, Tracked>>);

impl TrackedRecords {
    /// The records of `db` (none without one).
    pub async fn load(db: Option<&Db>) -> Result<TrackedRecords, Error> {
        let Some(db) = db else { return Ok(TrackedRecords::default()) };
        let records = db
            .load_synced_as(|record, recorded_at| Tracked { record, recorded_at, seen: AtomicBool::new(false) })
            .await?;
        Ok(TrackedRecords(Arc::new(records)))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&RelPath, &SyncedRecord)> {
        self.0.iter().map(|(path, tracked)| (path, &tracked.record))
    }

    pub fn paths(&self) -> impl Iterator<Item = &RelPath> {
        self.0.keys()
    }

    /// A listing showed `path`.
    pub fn saw(&self, path: &RelPath) {
        if let Some(tracked) = self.0.get(path) {
            tracked.seen.store(true, Ordering::Relaxed);
        }
    }

    /// Records of paths that neither side listed (deleted on both by
    /// something else, or by other runs between this job's): nothing will
    /// ever delete them, and kept they would grow the database, and the
    /// map every run loads, with the tree's history instead of its size.
    /// Paths below a directory that could not be listed are kept.
    pub fn unseen(&self, unreadable: &[RelPath]) -> Vec<RelPath> {
        self.0
            .iter()
            .filter(|(path, t)| !t.seen.load(Ordering::Relaxed) && !unreadable.iter().any(|u| path.starts_with(u)))
            .map(|(path, _)| path.clone())
            .collect()
    }
}

impl Records for TrackedRecords {
    fn record(&self, path: &RelPath) -> Option<&SyncedRecord> {
        self.0.get(path).map(|t| &t.record)
    }
}

/// One side of the records, as a walk's [`crate::backend::recall::Recall`].
pub(super) struct RecordedSide {
    records: Arc<HashMap<RelPath, Tracked>>,
    side: StateSide,
}

impl RecordedSide {
    pub fn new(records: &TrackedRecords, side: StateSide) -> RecordedSide {
        RecordedSide { records: Arc::clone(&records.0), side }
    }

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

/// `--trust-state` may stand in for the destination's listing only once a
/// `--verify-state` run has checked the records against a real listing.
pub(super) async fn check_trusted(db: Option<&Db>) -> Result<(), Error> {
    let verified = match db {
        Some(db) => db.meta_get(STATE_VERIFIED).await?,
        None => None,
    };
    if verified.as_deref() == Some("1") {
        return Ok(());
    }
    Err(Error::Usage(
        "--trust-state needs a state database that a --verify-state run has checked against the \
         destination: run once with --verify-state (it lists the destination), then --trust-state"
            .into(),
    ))
}

/// The source's file count at the last run whose listing was trusted.
pub(super) async fn shrink_baseline(db: Option<&Db>) -> Result<Option<u64>, Error> {
    let Some(db) = db else { return Ok(None) };
    Ok(db.meta_get(LAST_SRC_FILES).await?.and_then(|v| v.parse::<u64>().ok()))
}

/// Files present on both sides, as (source, destination) entries; and the
/// destination's files alone, for records to forget.
pub(super) struct FilePairs {
    pairs: Vec<(Entry, Entry)>,
    dst_files: HashSet<RelPath>,
}

pub(super) fn file_pairs(src: &[Entry], dst: &[Entry]) -> FilePairs {
    let mut pairs = Vec::new();
    let mut j = 0;
    for s in src.iter().filter(|e| e.is_file()) {
        while j < dst.len() && dst[j].path < s.path {
            j += 1;
        }
        if let Some(d) = dst.get(j)
            && d.path == s.path
            && d.is_file()
        {
            pairs.push((s.clone(), d.clone()));
        }
    }
    let dst_files = dst.iter().filter(|e| e.is_file()).map(|e| e.path.clone()).collect();
    FilePairs { pairs, dst_files }
}

/// `--verify-state`, once the run is over: the records rebuilt from both
/// listings, and the database marked as one later runs may trust.
pub(super) async fn rebuild(db: &Db, listed: FilePairs, acted: Vec<RelPath>, reporter: &Reporter) {
    let acted: HashSet<RelPath> = acted.into_iter().collect();
    let repaired = db
        .call(move |db| {
            let recorded = db.load_synced()?;
            let (records, forget) = repaired_records(listed, &acted, &recorded);
            let counts = (records.len(), forget.len());
            db.write_synced(&records, &forget, &[])?;
            db.meta_set(STATE_VERIFIED, "1")?;
            Ok(counts)
        })
        .await;
    match repaired {
        Ok((written, forgotten)) => reporter.info(&format!(
            "--verify-state: {written} records written, {forgotten} forgotten; later runs may --trust-state"
        )),
        Err(err) => reporter.error(&format!("--verify-state: state database: {err}")),
    }
}

/// Records for every pair the plan left alone (the rule judged them the
/// same), and the recorded paths the destination no longer holds. Paths
/// the run acted on were journalled by the engine.
fn repaired_records(
    listed: FilePairs,
    acted: &HashSet<RelPath>,
    recorded: &HashMap<RelPath, SyncedRecord>,
) -> (Vec<(RelPath, SyncedRecord)>, Vec<RelPath>) {
    let records = listed
        .pairs
        .into_iter()
        .filter(|(s, _)| !acted.contains(&s.path))
        .map(|(s, d)| (s.path.clone(), SyncedRecord::new(&s, d.size, d.mtime, d.mode)))
        .filter(|(path, record)| recorded.get(path) != Some(record))
        .collect();
    let forget = recorded.keys().filter(|p| !listed.dst_files.contains(*p) && !acted.contains(*p)).cloned().collect();
    (records, forget)
}

/// Those of the `empty` directories that hold one of the `recorded` paths:
/// a directory that held files at the last run and is empty now is how a
/// server that lost a mount, or a half-failed listing, looks.
pub(super) fn emptied_among<'a>(empty: &HashSet<RelPath>, recorded: impl Iterator<Item = &'a RelPath>) -> Vec<RelPath> {
    if empty.is_empty() {
        return Vec::new();
    }
    let mut emptied = BTreeSet::new();
    for path in recorded {
        let mut dir = path.parent();
        while !dir.is_root() {
            if empty.contains(&dir) {
                emptied.insert(dir.clone());
            }
            dir = dir.parent();
        }
    }
    emptied.into_iter().collect()
}
