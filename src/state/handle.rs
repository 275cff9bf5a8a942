//! The state database as async code uses it: one handle, shared by the
//! run, the journal and the servers' memory, that owns the lock and moves
//! every call to the blocking pool (sqlite calls block, and a tokio worker
//! must not).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{CachedHash, PartialRecord, Side, StateDb};
use crate::error::Error;
use crate::path::RelPath;
use crate::plan::SyncedRecord;

/// A cheap clone: every clone is the same database.
#[derive(Clone)]
pub struct Db(Arc<Mutex<StateDb>>);

impl Db {
    pub fn new(db: StateDb) -> Db {
        Db(Arc::new(Mutex::new(db)))
    }

    /// Runs `work` on the blocking pool with the database locked.
    pub async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut StateDb) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let db = Arc::clone(&self.0);
        run_blocking(move || {
            let mut guard = db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut guard)
        })
        .await
    }

    pub async fn meta_get(&self, key: &str) -> Result<Option<String>, Error> {
        let key = key.to_string();
        self.call(move |db| db.meta_get(&key)).await
    }

    pub async fn meta_set(&self, key: &str, value: &str) -> Result<(), Error> {
        let (key, value) = (key.to_string(), value.to_string());
        self.call(move |db| db.meta_set(&key, &value)).await
    }

    /// See [`StateDb::begin_run`]: the interrupted run this one continues.
    pub async fn begin_run(&self, now_unix: i64) -> Result<Option<i64>, Error> {
        self.call(move |db| db.begin_run(now_unix)).await
    }

    pub async fn finish_run(&self, now_unix: i64, status: &'static str) -> Result<(), Error> {
        self.call(move |db| db.finish_run(now_unix, status)).await
    }

    /// See [`StateDb::load_synced_as`].
    pub async fn load_synced_as<T: Send + 'static>(
        &self,
        wrap: impl Fn(SyncedRecord, Option<i64>) -> T + Send + 'static,
    ) -> Result<HashMap<RelPath, T>, Error> {
        self.call(move |db| db.load_synced_as(wrap)).await
    }

    pub async fn write_synced(
        &self,
        records: Vec<(RelPath, SyncedRecord)>,
        forget: Vec<RelPath>,
        modes: Vec<(RelPath, u32)>,
    ) -> Result<(), Error> {
        self.call(move |db| db.write_synced(&records, &forget, &modes)).await
    }

    pub async fn load_hashes(&self, side: Side) -> Result<HashMap<RelPath, CachedHash>, Error> {
        self.call(move |db| db.load_hashes(side)).await
    }

    pub async fn store_hashes(&self, side: Side, hashes: Vec<(RelPath, CachedHash)>) -> Result<(), Error> {
        self.call(move |db| db.store_hashes(side, &hashes)).await
    }

    pub async fn partial(&self, path: RelPath) -> Result<Option<PartialRecord>, Error> {
        self.call(move |db| db.partial(&path)).await
    }

    pub async fn note_partial(&self, path: RelPath, record: PartialRecord) -> Result<(), Error> {
        self.call(move |db| db.note_partial(&path, record)).await
    }
}

/// Runs blocking work (database, file system) on the blocking pool; a
/// task that panicked is an error, not a crash of the run.
pub async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|join| {
        Err(Error::Io { context: "state database task".into(), source: std::io::Error::other(join.to_string()) })
    })
}
