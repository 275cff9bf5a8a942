//! The per-job state database (sqlite, one file per job, mode 0600).
//!
//! - `synced`: for every path barge has made right, what the source and the
//!   destination looked like then. It is also the journal: each committed
//!   file is written here as the run goes, so an interrupted run does not
//!   copy it again.
//! - `hash_cache`: blake3 per side, keyed by path, size, mtime and inode, so
//!   an unchanged file is never hashed twice.
//! - `runs`: one row per run; a row still `running` at start-up is a run that
//!   was killed.
//! - `partials`: temporaries in flight, so a later run can resume them.
//!
//! The schema is versioned with `PRAGMA user_version`; [`MIGRATIONS`] brings
//! any older file up to date. All calls block: async code goes through [`Db`].

mod handle;
mod journal;
mod lock;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

pub use handle::{Db, run_blocking};
pub use journal::Journal;
pub use lock::JobLock;

use crate::backend::{Entry, HashKind, Mtime};
use crate::error::Error;
use crate::path::RelPath;
use crate::plan::SyncedRecord;

/// One migration per schema version, applied in order.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE runs (
         id INTEGER PRIMARY KEY,
         started_at INTEGER NOT NULL,
         finished_at INTEGER,
         status TEXT NOT NULL,
         pid INTEGER NOT NULL
     );
     CREATE TABLE synced (
         path BLOB PRIMARY KEY,
         src_size INTEGER NOT NULL,
         src_mtime INTEGER,
         dst_size INTEGER NOT NULL,
         dst_mtime INTEGER,
         run_id INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE hash_cache (
         side INTEGER NOT NULL,
         path BLOB NOT NULL,
         size INTEGER NOT NULL,
         mtime INTEGER,
         inode INTEGER NOT NULL,
         blake3 BLOB NOT NULL,
         PRIMARY KEY (side, path)
     ) WITHOUT ROWID;
     CREATE TABLE partials (
         path BLOB PRIMARY KEY,
         src_size INTEGER NOT NULL,
         src_mtime INTEGER,
         run_id INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 2: hashes of other algorithms than blake3 (what FTP servers compute).
    "ALTER TABLE hash_cache ADD COLUMN algo TEXT NOT NULL DEFAULT 'blake3';",
    // 3: the destination's permission bits, for --trust-state listings.
    "ALTER TABLE synced ADD COLUMN dst_mode INTEGER;",
];

/// Which side of a job a cached hash belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src = 0,
    Dst = 1,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedHash {
    pub size: u64,
    pub mtime: Option<Mtime>,
    pub inode: u64,
    pub algo: HashKind,
    pub hash: Vec<u8>,
}

impl CachedHash {
    /// The cached digest still describes `entry` (same size, mtime, inode)
    /// and is of the algorithm wanted.
    pub fn is_for(&self, entry: &Entry, algo: HashKind) -> bool {
        self.algo == algo && self.size == entry.size && self.mtime == entry.mtime && self.inode == entry.inode
    }
}

/// A partial temporary left by an earlier run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialRecord {
    pub src_size: u64,
    pub src_mtime: Option<Mtime>,
}

pub struct StateDb {
    conn: Connection,
    path: PathBuf,
    run_id: i64,
}

/// sqlite stores i64; sizes above i64::MAX do not exist on any filesystem.
fn to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
fn from_sql(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A database as [`StateDb::open_checked`] found it.
pub enum Checked {
    Sound(StateDb),
    /// sqlite finds the file damaged (its quick_check fails, or it is not
    /// a database at all): what it said.
    Damaged(String),
}

impl StateDb {
    /// Opens the database like [`StateDb::open`] and runs sqlite's
    /// quick_check on it. The database is a cache of what can be learned
    /// again; a damaged one must not block every later run.
    ///
    /// The check reads every page (about 15 ms for 100,000 files, 4% of a
    /// no-op resync), so it is skipped for a file that is exactly as barge
    /// closed it: size, mtime and inode as the mark beside it recorded
    /// (see `Drop`). Anything else that wrote to it, cut it or replaced it
    /// changes those; sqlite itself is safe across crashes.
    pub fn open_checked(path: &Path) -> Result<Checked, Error> {
        let mark = suffixed(path, CLEAN_MARK);
        let unchanged = std::fs::read_to_string(&mark).ok().is_some_and(|m| Some(m) == file_mark(path));
        // The mark speaks for one closed state only: this run changes it.
        let _ = std::fs::remove_file(&mark);
        if unchanged {
            return StateDb::open(path).map(Checked::Sound);
        }
        match StateDb::open(path).and_then(|db| db.quick_check().map(|problem| (db, problem))) {
            Ok((db, None)) => Ok(Checked::Sound(db)),
            Ok((_, Some(problem))) => Ok(Checked::Damaged(problem)),
            Err(Error::State { source, .. }) if is_damage(&source) => Ok(Checked::Damaged(source.to_string())),
            Err(other) => Err(other),
        }
    }

    /// Renames a damaged database `<name>.corrupt-<unix time>` (with its
    /// -wal and -shm) and opens a new one in its place; returns it and
    /// where the old one went.
    pub fn replace_damaged(path: &Path) -> Result<(StateDb, PathBuf), Error> {
        let aside = path.with_file_name(format!(
            "{}.corrupt-{}",
            path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            crate::units::unix_now_secs()
        ));
        for suffix in ["", "-wal", "-shm"] {
            let (from, to) = (suffixed(path, suffix), suffixed(&aside, suffix));
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !suffix.is_empty() => {}
                Err(source) => {
                    return Err(Error::Io {
                        context: format!("move the damaged state database {} aside", from.display()),
                        source,
                    });
                }
            }
        }
        Ok((StateDb::open(path)?, aside))
    }

    /// sqlite's quick_check: `None` when the file is sound, else its first
    /// complaint.
    fn quick_check(&self) -> Result<Option<String>, Error> {
        let first: Result<String, rusqlite::Error> = self.conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0));
        match first {
            Ok(answer) if answer == "ok" => Ok(None),
            Ok(answer) => Ok(Some(answer)),
            Err(e) if is_damage(&e) => Ok(Some(e.to_string())),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Opens (creating with mode 0600) and migrates the database.
    pub fn open(path: &Path) -> Result<StateDb, Error> {
        let err = |source| Error::State { path: path.to_path_buf(), source };
        create_parent_dir(path)?;
        // Create it ourselves so it is never, even briefly, world-readable;
        // sqlite gives its -wal and -shm files the same mode.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::Io { context: format!("open {}", path.display()), source: e })?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::Io { context: format!("chmod {}", path.display()), source: e })?;
        drop(file);
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        migrate(&mut conn).map_err(err)?;
        Ok(StateDb { conn, path: path.to_path_buf(), run_id: 0 })
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        Error::State { path: self.path.clone(), source }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> Result<i64, Error> {
        self.conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|e| self.err(e))
    }

    /// Starts a run; returns the id of an earlier run that never finished
    /// (it was killed), if any.
    pub fn begin_run(&mut self, now_unix: i64) -> Result<Option<i64>, Error> {
        let interrupted: Option<i64> = self
            .conn
            .query_row("SELECT max(id) FROM runs WHERE status = 'running'", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        self.conn
            .execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'", [])
            .map_err(|e| self.err(e))?;
        self.conn
            .execute(
                "INSERT INTO runs (started_at, status, pid) VALUES (?1, 'running', ?2)",
                params![now_unix, std::process::id()],
            )
            .map_err(|e| self.err(e))?;
        self.run_id = self.conn.last_insert_rowid();
        Ok(interrupted)
    }

    pub fn finish_run(&mut self, now_unix: i64, status: &str) -> Result<(), Error> {
        self.conn
            .execute(
                // The first word on how a run ended stands (a safety stop
                // is not overwritten by the failure it returns as).
                "UPDATE runs SET finished_at = ?1, status = ?2 WHERE id = ?3 AND status = 'running'",
                params![now_unix, status, self.run_id],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn load_synced(&self) -> Result<HashMap<RelPath, SyncedRecord>, Error> {
        self.load_synced_as(|record, _| record)
    }

    /// [`StateDb::load_synced`], each record wrapped by `wrap` as it is read
    /// (one map, never two copies of a million records), with the start of
    /// the run that wrote it (unix seconds; `None` if that run's row is gone).
    pub fn load_synced_as<T>(
        &self,
        wrap: impl Fn(SyncedRecord, Option<i64>) -> T,
    ) -> Result<HashMap<RelPath, T>, Error> {
        let count = self.synced_count()?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT s.path, s.src_size, s.src_mtime, s.dst_size, s.dst_mtime, r.started_at, s.dst_mode
                 FROM synced s LEFT JOIN runs r ON r.id = s.run_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |row| {
                let path: Vec<u8> = row.get(0)?;
                let record = SyncedRecord {
                    src_size: from_sql(row.get(1)?),
                    src_mtime: row.get::<_, Option<i64>>(2)?.map(Mtime),
                    dst_size: from_sql(row.get(3)?),
                    dst_mtime: row.get::<_, Option<i64>>(4)?.map(Mtime),
                    dst_mode: row.get::<_, Option<i64>>(6)?.and_then(|m| u32::try_from(m).ok()),
                };
                Ok((path, record, row.get::<_, Option<i64>>(5)?))
            })
            .map_err(|e| self.err(e))?;
        // Sized up front: growing a million-entry map doubles it in passing.
        let mut map = HashMap::with_capacity(count);
        for row in rows {
            let (path, record, recorded_at) = row.map_err(|e| self.err(e))?;
            // A row that is not a valid path was not written by us: ignore it.
            if let Ok(path) = RelPath::parse(&path) {
                map.insert(path, wrap(record, recorded_at));
            }
        }
        Ok(map)
    }

    /// How many records there are.
    fn synced_count(&self) -> Result<usize, Error> {
        let count: i64 =
            self.conn.query_row("SELECT count(*) FROM synced", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// Writes a batch of journal entries in one transaction: records for
    /// paths made right, paths to forget (deleted on the destination), and
    /// new permission bits of recorded destination files.
    pub fn write_synced(
        &mut self,
        records: &[(RelPath, SyncedRecord)],
        forget: &[RelPath],
        modes: &[(RelPath, u32)],
    ) -> Result<(), Error> {
        let run_id = self.run_id;
        let tx = self.conn.transaction().map_err(|e| Error::State { path: self.path.clone(), source: e })?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO synced (path, src_size, src_mtime, dst_size, dst_mtime, run_id, dst_mode)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(|e| Error::State { path: self.path.clone(), source: e })?;
            for (path, r) in records {
                upsert
                    .execute(params![
                        path.as_bytes(),
                        to_sql(r.src_size),
                        r.src_mtime.map(|m| m.0),
                        to_sql(r.dst_size),
                        r.dst_mtime.map(|m| m.0),
                        run_id,
                        r.dst_mode
                    ])
                    .map_err(|e| Error::State { path: self.path.clone(), source: e })?;
            }
            let mut delete = tx
                .prepare_cached("DELETE FROM synced WHERE path = ?1")
                .map_err(|e| Error::State { path: self.path.clone(), source: e })?;
            let mut delete_partial = tx
                .prepare_cached("DELETE FROM partials WHERE path = ?1")
                .map_err(|e| Error::State { path: self.path.clone(), source: e })?;
            for path in forget {
                delete
                    .execute(params![path.as_bytes()])
                    .map_err(|e| Error::State { path: self.path.clone(), source: e })?;
            }
            let mut set_mode = tx
                .prepare_cached("UPDATE synced SET dst_mode = ?2 WHERE path = ?1")
                .map_err(|e| Error::State { path: self.path.clone(), source: e })?;
            for (path, mode) in modes {
                set_mode
                    .execute(params![path.as_bytes(), mode])
                    .map_err(|e| Error::State { path: self.path.clone(), source: e })?;
            }
            for (path, _) in records {
                delete_partial
                    .execute(params![path.as_bytes()])
                    .map_err(|e| Error::State { path: self.path.clone(), source: e })?;
            }
        }
        tx.commit().map_err(|e| Error::State { path: self.path.clone(), source: e })
    }

    pub fn load_hashes(&self, side: Side) -> Result<HashMap<RelPath, CachedHash>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT path, size, mtime, inode, blake3, algo FROM hash_cache WHERE side = ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([side as i64], |row| {
                let path: Vec<u8> = row.get(0)?;
                let hash: Vec<u8> = row.get(4)?;
                let algo: String = row.get(5)?;
                Ok((path, from_sql(row.get(1)?), row.get::<_, Option<i64>>(2)?, from_sql(row.get(3)?), hash, algo))
            })
            .map_err(|e| self.err(e))?;
        let mut map = HashMap::new();
        for row in rows {
            let (path, size, mtime, inode, hash, algo) = row.map_err(|e| self.err(e))?;
            if let (Ok(path), Some(algo)) = (RelPath::parse(&path), HashKind::from_name(&algo)) {
                map.insert(path, CachedHash { size, mtime: mtime.map(Mtime), inode, algo, hash });
            }
        }
        Ok(map)
    }

    pub fn store_hashes(&mut self, side: Side, hashes: &[(RelPath, CachedHash)]) -> Result<(), Error> {
        let path = self.path.clone();
        let err = |source| Error::State { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO hash_cache (side, path, size, mtime, inode, blake3, algo)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(err)?;
            for (rel, h) in hashes {
                stmt.execute(params![
                    side as i64,
                    rel.as_bytes(),
                    to_sql(h.size),
                    h.mtime.map(|m| m.0),
                    to_sql(h.inode),
                    &h.hash[..],
                    h.algo.name()
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// A remembered server quirk (see [`crate::backend::ServerMemory`]).
    pub fn meta_get(&self, key: &str) -> Result<Option<String>, Error> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn meta_set(&mut self, key: &str, value: &str) -> Result<(), Error> {
        self.conn
            .execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", [key, value])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Notes that a temporary for `path` is being written from this source.
    pub fn note_partial(&mut self, path: &RelPath, record: PartialRecord) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO partials (path, src_size, src_mtime, run_id) VALUES (?1, ?2, ?3, ?4)",
                params![path.as_bytes(), to_sql(record.src_size), record.src_mtime.map(|m| m.0), self.run_id],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn partial(&self, path: &RelPath) -> Result<Option<PartialRecord>, Error> {
        self.conn
            .query_row("SELECT src_size, src_mtime FROM partials WHERE path = ?1", [path.as_bytes()], |row| {
                Ok(PartialRecord {
                    src_size: from_sql(row.get(0)?),
                    src_mtime: row.get::<_, Option<i64>>(1)?.map(Mtime),
                })
            })
            .optional()
            .map_err(|e| self.err(e))
    }
}

/// Beside the database: its size, mtime and inode when barge last closed it.
const CLEAN_MARK: &str = ".clean";

/// What the mark records of `path`.
fn file_mark(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(format!("{} {} {} {}\n", meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino()))
}

impl Drop for StateDb {
    /// Folds the write-ahead log into the file and marks it as barge
    /// leaves it, so the next open may skip the full check (best effort:
    /// without a mark the next open checks).
    fn drop(&mut self) {
        if self.conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)").is_ok()
            && let Some(mark) = file_mark(&self.path)
        {
            // Owner-only, as everything barge keeps about a job.
            let written = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(suffixed(&self.path, CLEAN_MARK))
                .and_then(|mut file| std::io::Write::write_all(&mut file, mark.as_bytes()));
            drop(written);
        }
    }
}

/// Errors that say the file itself is damaged (not locked, not full).
fn is_damage(err: &rusqlite::Error) -> bool {
    matches!(err.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase))
}

/// `path` with `suffix` added to its name: a database's companions
/// (`-wal`, `-shm`, `.lock`, `.clean`).
pub fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates the directory a state file goes in (owner-only when new).
pub(crate) fn create_parent_dir(path: &Path) -> Result<(), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::Io { context: format!("create {}", dir.display()), source: e })?;
    }
    Ok(())
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize =
        conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))?.try_into().unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// The default database for a job: `$XDG_STATE_HOME/barge/<src>-<dst>-<hash>.db`
/// (`~/.local/state` when unset), named after both locations so two jobs
/// never share one.
pub fn default_path(src_identity: &str, dst_identity: &str) -> Result<PathBuf, Error> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local/state"),
            None => return Err(Error::Usage("neither XDG_STATE_HOME nor HOME is set: give --state FILE".into())),
        },
    };
    let digest = blake3::hash(format!("{src_identity}\0{dst_identity}").as_bytes());
    let slug = |identity: &str| -> String {
        let last = identity.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let cleaned: String =
            last.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(24).collect();
        if cleaned.is_empty() { "root".into() } else { cleaned }
    };
    let name = format!("{}-{}-{}.db", slug(src_identity), slug(dst_identity), &digest.to_hex()[..16]);
    Ok(base.join("barge").join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_owner_only_and_migrates_to_the_latest_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/job.db");
        let db = StateDb::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(db);
        // Reopening an up-to-date file applies nothing and keeps the data.
        let db = StateDb::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), MIGRATIONS.len() as i64);
    }

    #[test]
    fn journal_records_survive_reopen_and_interrupted_runs_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.db");
        let mut db = StateDb::open(&path).unwrap();
        assert_eq!(db.begin_run(1).unwrap(), None);
        let p = RelPath::parse(b"a/\xffb").unwrap();
        let rec = SyncedRecord { src_size: 3, src_mtime: Some(Mtime(5)), dst_size: 3, dst_mtime: None, dst_mode: None };
        db.write_synced(&[(p.clone(), rec)], &[], &[]).unwrap();
        drop(db); // killed: the run never finished
        let mut db = StateDb::open(&path).unwrap();
        assert_eq!(db.begin_run(2).unwrap(), Some(1));
        assert_eq!(db.load_synced().unwrap().get(&p), Some(&rec));
        // A mode set on a recorded file updates its record only.
        db.write_synced(&[], &[], &[(p.clone(), 0o750)]).unwrap();
        assert_eq!(db.load_synced().unwrap().get(&p), Some(&SyncedRecord { dst_mode: Some(0o750), ..rec }));
        db.write_synced(&[], std::slice::from_ref(&p), &[]).unwrap();
        assert!(db.load_synced().unwrap().is_empty());
        db.finish_run(3, "ok").unwrap();
        assert_eq!(db.begin_run(4).unwrap(), None);
    }

    #[test]
    fn hash_cache_round_trips_per_side() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(&dir.path().join("job.db")).unwrap();
        let p = RelPath::parse(b"x").unwrap();
        let h = CachedHash { size: 1, mtime: Some(Mtime(2)), inode: 3, algo: HashKind::Sha256, hash: vec![9; 32] };
        db.store_hashes(Side::Src, &[(p.clone(), h.clone())]).unwrap();
        assert_eq!(db.load_hashes(Side::Src).unwrap().get(&p), Some(&h));
        assert!(db.load_hashes(Side::Dst).unwrap().is_empty());
    }

    /// A database whose pages were overwritten, whose header was
    /// clobbered, or that was cut short is moved aside and replaced.
    #[test]
    fn a_damaged_database_is_moved_aside_and_replaced() {
        use std::io::{Seek, SeekFrom, Write};
        type Damage = fn(&mut std::fs::File, u64);
        let damages: [(&str, Damage); 3] = [
            ("pages overwritten", |f, len| {
                f.seek(SeekFrom::Start(len / 2)).unwrap();
                f.write_all(&vec![0x5a; (len / 4) as usize]).unwrap();
            }),
            ("header clobbered", |f, _| {
                f.seek(SeekFrom::Start(0)).unwrap();
                f.write_all(&[0xff; 100]).unwrap();
            }),
            ("cut short", |f, len| f.set_len(len / 3).unwrap()),
        ];
        for (what, damage) in damages {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("job.db");
            {
                let mut db = StateDb::open(&path).unwrap();
                let records: Vec<(RelPath, SyncedRecord)> = (0..2000)
                    .map(|i| {
                        let p = RelPath::parse(format!("dir{}/file-{i:05}.txt", i % 7).as_bytes()).unwrap();
                        (p, SyncedRecord { src_size: i, src_mtime: None, dst_size: i, dst_mtime: None, dst_mode: None })
                    })
                    .collect();
                db.write_synced(&records, &[], &[]).unwrap();
            }
            // Closed by barge: marked, and the next open may skip the check.
            let mark = std::fs::read_to_string(suffixed(&path, CLEAN_MARK)).unwrap();
            assert_eq!(Some(mark), file_mark(&path), "{what}: the mark matches the file as closed");
            let len = std::fs::metadata(&path).unwrap().len();
            let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            damage(&mut file, len);
            drop(file);
            let Checked::Damaged(why) = StateDb::open_checked(&path).unwrap_or_else(|e| panic!("{what}: {e}")) else {
                panic!("{what}: not noticed")
            };
            assert!(!why.is_empty());
            let (db, aside) = StateDb::replace_damaged(&path).unwrap();
            assert!(aside.exists() && aside.to_string_lossy().contains("job.db.corrupt-"), "{what}");
            assert!(db.load_synced().unwrap().is_empty(), "{what}: a fresh database");
            drop(db);
            assert!(matches!(StateDb::open_checked(&path).unwrap(), Checked::Sound(_)), "{what}: the new one is sound");
        }
    }

    #[test]
    fn default_path_is_stable_and_distinct_per_job() {
        let a = default_path("file:///a/src", "file:///b/dst").unwrap();
        let b = default_path("file:///a/src", "file:///b/dst2").unwrap();
        assert_ne!(a, b);
        assert_eq!(a, default_path("file:///a/src", "file:///b/dst").unwrap());
        assert!(a.to_string_lossy().contains("src-dst-"));
    }
}
