//! The run journal: committed files are recorded in the state database as
//! the run goes, in batches (one transaction per batch, off the async
//! workers), so a killed run loses at most the last second of records.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Db, PartialRecord};
use crate::error::Error;
use crate::path::RelPath;
use crate::plan::SyncedRecord;

const BATCH: usize = 512;
const MAX_DELAY: Duration = Duration::from_secs(1);

struct Pending {
    records: Vec<(RelPath, SyncedRecord)>,
    forget: Vec<RelPath>,
    modes: Vec<(RelPath, u32)>,
    last_flush: Instant,
}

pub struct Journal {
    db: Db,
    pending: Mutex<Pending>,
}

impl Journal {
    pub fn new(db: Db) -> Self {
        Journal {
            db,
            pending: Mutex::new(Pending {
                records: Vec::new(),
                forget: Vec::new(),
                modes: Vec::new(),
                last_flush: Instant::now(),
            }),
        }
    }

    /// Records that `path` now mirrors its source.
    pub async fn committed(&self, path: RelPath, record: SyncedRecord) -> Result<(), Error> {
        let due = self.with_pending(|p| {
            p.records.push((path, record));
            p.records.len() >= BATCH || p.last_flush.elapsed() >= MAX_DELAY
        });
        if due { self.flush().await } else { Ok(()) }
    }

    /// Records that `path` was deleted on the destination.
    pub async fn forgotten(&self, path: RelPath) -> Result<(), Error> {
        let due = self.with_pending(|p| {
            p.forget.push(path);
            p.forget.len() >= BATCH || p.last_flush.elapsed() >= MAX_DELAY
        });
        if due { self.flush().await } else { Ok(()) }
    }

    /// Records that the recorded destination file `path` was given `mode`.
    pub async fn mode_set(&self, path: RelPath, mode: u32) -> Result<(), Error> {
        let due = self.with_pending(|p| {
            p.modes.push((path, mode));
            p.modes.len() >= BATCH || p.last_flush.elapsed() >= MAX_DELAY
        });
        if due { self.flush().await } else { Ok(()) }
    }

    /// Notes a large transfer in flight, so its temporary can be resumed.
    /// The partial transfer of `path` a run noted, if any.
    pub async fn partial(&self, path: RelPath) -> Result<Option<PartialRecord>, Error> {
        self.db.partial(path).await
    }

    pub async fn started(&self, path: RelPath, record: PartialRecord) -> Result<(), Error> {
        self.db.note_partial(path, record).await
    }

    /// Writes everything pending.
    pub async fn flush(&self) -> Result<(), Error> {
        let (records, forget, modes) = self.with_pending(|p| {
            p.last_flush = Instant::now();
            (std::mem::take(&mut p.records), std::mem::take(&mut p.forget), std::mem::take(&mut p.modes))
        });
        if records.is_empty() && forget.is_empty() && modes.is_empty() {
            return Ok(());
        }
        self.db.write_synced(records, forget, modes).await
    }

    fn with_pending<T>(&self, f: impl FnOnce(&mut Pending) -> T) -> T {
        let mut guard = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}
