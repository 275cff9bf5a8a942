//! One run of a job, end to end: lock, list both sides, filter, hash when
//! asked, plan, check the safety limits, then print (`plan`), compare
//! (`check`) or execute (`sync`).

mod hashing;
mod identity;
mod reports;
mod safety;
mod streamed;
mod whole;

pub use reports::{Reports, record_fatal};
pub use safety::{DeleteLimit, Safety};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::backend::temp::{is_temp_name, temp_path};
use crate::backend::{self, Backend, Entry, Listing, Memory, MissingRoot, RemoteOptions, ServerMemory};
use crate::engine::report::TransferStats;
use crate::engine::report::{Reporter, Summary};
use crate::engine::{ConcurrencyOutcome, Engine, EngineConfig, adapt, for_each_parallel};
use crate::error::{Error, ErrorKind, OpError, exit};
use crate::location::Location;
use crate::path::RelPath;
use crate::plan::SyncedRecord;
use crate::plan::{Action, CompareMode, LinkMode, Plan, Reason, filter::Filter};
use crate::state::{self, Checked, JobLock, Journal, StateDb, run_blocking};

/// What to do with the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Make the destination a mirror of the source.
    Sync,
    /// Print what sync would do; change nothing.
    Plan,
    /// Report differences; exit 0 only when the trees match.
    Check,
}

/// A validated job: everything a run needs, no raw flags.
pub struct Job {
    pub src: Location,
    pub dst: Location,
    pub compare: CompareMode,
    /// Remove destination entries the source lacks.
    pub delete: bool,
    pub safety: Safety,
    pub reports: Reports,
    pub filter: Filter,
    pub engine: EngineConfig,
    /// `--state FILE`; else derived from the two locations.
    pub state_path: Option<PathBuf>,
    /// How the source is reached (when remote).
    pub src_remote: RemoteOptions,
    /// How the destination is reached (when remote): a configured remote's
    /// settings can differ from the source's.
    pub dst_remote: RemoteOptions,
    /// `--links`: what happens to symbolic links.
    pub links: LinkMode,
    /// `--trust-state`: the destination is not listed; the state database
    /// says what it holds (only barge writes there).
    pub trust_state: bool,
    /// `--verify-state`: list the destination and rebuild the database's
    /// record of it, so later runs may trust it.
    pub verify_state: bool,
}

/// How a run ended, when it ran to the end.
#[derive(Debug)]
pub struct Outcome {
    pub summary: Summary,
    pub exit_code: i32,
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn unreachable(location: &Location) -> impl FnOnce(OpError) -> Error + '_ {
    move |source| Error::Unreachable { location: location.to_string(), source }
}

/// What a run's middle (streamed or whole-tree) did, for the common end
/// of [`run`].
struct Ran {
    engine: Arc<Engine>,
    held_back: u64,
    src_files: u64,
    /// `--verify-state` (whole-tree runs): both sides' files as listed,
    /// and the paths the plan acted on.
    listed: Option<(FilePairs, Vec<RelPath>)>,
}

/// Everything a run's middle needs from [`run`].
struct Setup<'a> {
    job: &'a Job,
    src: Arc<dyn Backend>,
    dst: Arc<dyn Backend>,
    db: Option<&'a Arc<Mutex<StateDb>>>,
    filter: Arc<Filter>,
    engine_config: EngineConfig,
    reporter: Arc<Reporter>,
    journal: Option<Arc<Journal>>,
}

pub async fn run(job: Job, mode: Mode, reporter: Arc<Reporter>) -> Result<Outcome, Error> {
    let started = Instant::now();
    let run_started_at = crate::units::unix_now_secs();
    if job.src_remote.ftp.tls.insecure || job.dst_remote.ftp.tls.insecure {
        reporter
            .warning("--insecure: TLS certificates are not verified; anyone on the path can read and change the data");
    }
    // The command line is readable by every local user (ps, /proc/PID/cmdline).
    for location in [&job.src, &job.dst] {
        if let Location::Remote(remote) = location
            && remote.password.is_some()
        {
            reporter.warning(&format!(
                "the password in the URL of {remote} is visible to other local users in the process list; \
                 give it with --password-env VAR, BARGE_PASSWORD or ~/.netrc instead"
            ));
        }
    }
    // Before anything is opened or created: whose job this is, and
    // whether its roots may be synced at all.
    let roots = identity::canonical_roots(&job).await?;
    safety::refuse_overlap(&roots.src, &roots.dst, &job.filter)?;
    let state = identity::state_path(&job, &roots)?;
    // Only a sync takes the lock and writes the database; plan and check
    // read it when it exists and never create it.
    let lock = match mode {
        Mode::Sync => Some(JobLock::acquire(&state.path).map_err(|e| state.explain(e))?),
        _ => None,
    };
    let state_path = state.adopt_earlier(mode, &reporter).await?;
    let fresh = mode == Mode::Sync && !state_path.exists();
    let db = match mode == Mode::Sync || state_path.exists() {
        true => open_state(&state_path, mode, &reporter).await.map_err(|e| state.explain(e))?,
        false => None,
    };
    if let (Some(db), Mode::Sync) = (&db, mode) {
        let db = Arc::clone(db);
        let interrupted = run_blocking(move || lock_db(&db).begin_run(unix_now())).await?;
        if let Some(run) = interrupted {
            reporter.info(&format!("run {run} of this job was interrupted; continuing where it stopped"));
        }
    }

    let mut job = job;
    let (src, dst) = match open_sides(&job, mode, db.as_ref()).await {
        Ok(sides) => sides,
        // A job whose first run cannot start never ran: no database of it
        // stays behind. Otherwise the run is failed, not interrupted.
        Err(err) if fresh => {
            discard_state(db, lock, &state_path);
            return Err(err);
        }
        Err(err) => {
            finish_run(db.as_ref(), "failed").await;
            return Err(err);
        }
    };
    let journal = db.as_ref().map(|db| Arc::new(Journal::new(Arc::clone(db))));
    let ran = match run_opened(&mut job, mode, started, (src, dst), db.as_ref(), journal.clone(), &reporter).await {
        Ok(whole::Whole::Printed(outcome)) => return Ok(outcome),
        Ok(whole::Whole::Ran(ran)) => ran,
        Err(err) => {
            // Failed, not interrupted: the next run must not say so.
            finish_run(db.as_ref(), "failed").await;
            return Err(err);
        }
    };
    let Ran { engine, held_back, src_files, listed } = ran;
    let concurrency = engine.concurrency();
    if let (Some(level), Some(db)) = (concurrency.remembered, &db) {
        let db = Arc::clone(db);
        // Only a head start for the next run: a failure costs a re-measure.
        let _ = run_blocking(move || lock_db(&db).meta_set(PARALLEL_LEVEL, &level.to_string())).await;
    }
    if let Some(journal) = &journal
        && let Err(err) = journal.flush().await
    {
        reporter.warning(&format!("state database: {err}"));
    }
    if let (Some((pairs, acted_paths)), Some(db)) = (listed, &db) {
        let acted: std::collections::HashSet<RelPath> = acted_paths.into_iter().collect();
        let db = Arc::clone(db);
        let repaired = run_blocking(move || {
            let mut db = lock_db(&db);
            let recorded = db.load_synced()?;
            let (records, forget) = repaired_records(pairs, &acted, &recorded);
            let counts = (records.len(), forget.len());
            db.write_synced(&records, &forget)?;
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
    let mut summary = reporter.summary(started.elapsed());
    summary.transfers = Some(transfer_stats(&engine, &summary, concurrency));
    let interrupted = crate::stop::requested();
    if let Some(signal) = interrupted {
        let not_started = engine.not_started.load(std::sync::atomic::Ordering::Relaxed);
        reporter.error(&format!(
            "stopped by {signal}: {not_started} actions not started (no deletions were made after it); \
             the next run continues where this one stopped"
        ));
        (summary.interrupted, summary.not_started) = (Some(signal), Some(not_started));
        summary.errors += 1;
    }
    let gave_up = engine.liveness.gave_up();
    if let Some(why) = &gave_up {
        let not_started = engine.not_started.load(std::sync::atomic::Ordering::Relaxed);
        reporter.error(&format!(
            "{} -> {}: {why}; {not_started} actions not started",
            engine.src.describe(),
            engine.dst.describe()
        ));
        (summary.gave_up, summary.not_started) = (Some(why.clone()), Some(not_started));
        summary.errors += 1;
    }
    let exit_code = if gave_up.is_some() {
        exit::UNREACHABLE
    } else if interrupted.is_some() {
        exit::PARTIAL
    } else if held_back > 0 {
        exit::SAFETY_STOP
    } else if summary.errors == 0 {
        exit::OK
    } else {
        exit::PARTIAL
    };
    let status = match exit_code {
        _ if interrupted.is_some() => "interrupted",
        exit::OK => "ok",
        exit::SAFETY_STOP => "safety-stop",
        _ => "failed",
    };
    finish_run(db.as_ref(), status).await;
    if let Some(db) = &db
        && held_back == 0
    {
        // The baseline for --max-shrink: only a run whose listing was
        // trusted sets it.
        let db = Arc::clone(db);
        let _ = run_blocking(move || lock_db(&db).meta_set(LAST_SRC_FILES, &src_files.to_string())).await;
    }
    reporter.print_summary(&summary);
    reports::write_reports(&job.reports, &summary, exit_code, run_started_at, db.as_ref(), &state_path, &reporter)
        .await;
    drop(lock);
    Ok(Outcome { summary, exit_code })
}

/// The job's database, checked by sqlite. A damaged one (pages
/// overwritten, cut short, not a database) is a cache to learn again, not
/// a reason to fail every run: a sync moves it aside and starts afresh, as
/// a first run would (the empty-source hold still applies); plan and check
/// read nothing from it.
async fn open_state(
    path: &std::path::Path,
    mode: Mode,
    reporter: &Reporter,
) -> Result<Option<Arc<Mutex<StateDb>>>, Error> {
    let checked = {
        let path = path.to_path_buf();
        run_blocking(move || StateDb::open_checked(&path)).await?
    };
    let db = match checked {
        Checked::Sound(db) => db,
        Checked::Damaged(why) if mode == Mode::Sync => {
            let owned = path.to_path_buf();
            let (db, aside) = run_blocking(move || StateDb::replace_damaged(&owned)).await?;
            reporter.warning(&format!(
                "the state database {} is damaged ({why}): moved aside to {}; this run starts afresh and \
                 compares both sides in full",
                path.display(),
                aside.display()
            ));
            db
        }
        Checked::Damaged(why) => {
            reporter.warning(&format!(
                "the state database {} is damaged ({why}): not read (the next sync moves it aside)",
                path.display()
            ));
            return Ok(None);
        }
    };
    Ok(Some(Arc::new(Mutex::new(db))))
}

/// Opens both roots at once. A sync's missing destination is created only
/// once the source has opened, so a run that cannot start leaves no empty
/// destination behind.
async fn open_sides(
    job: &Job,
    mode: Mode,
    db: Option<&Arc<Mutex<StateDb>>>,
) -> Result<(Arc<dyn Backend>, Arc<dyn Backend>), Error> {
    let (mut src_remote, mut dst_remote) = (job.src_remote.clone(), job.dst_remote.clone());
    if let Some(db) = db {
        let memory = Memory(Arc::new(DbMemory(Arc::clone(db))));
        (src_remote.memory, dst_remote.memory) = (Some(memory.clone()), Some(memory));
    }
    let missing_dst = if mode == Mode::Sync { MissingRoot::CreateLater } else { MissingRoot::Empty };
    let (src, dst) = tokio::join!(
        backend::open(&job.src, MissingRoot::Fail, &src_remote),
        backend::open(&job.dst, missing_dst, &dst_remote)
    );
    let src = src.map_err(unreachable(&job.src))?;
    let dst = match dst {
        Err(err) if mode == Mode::Sync && err.kind == ErrorKind::NotFound => {
            backend::open(&job.dst, MissingRoot::Create, &dst_remote).await
        }
        opened => opened,
    };
    Ok((src, dst.map_err(unreachable(&job.dst))?))
}

/// Removes the database (and lock) a sync created for a job whose first
/// run could not start. The lock goes last, still held.
fn discard_state(db: Option<Arc<Mutex<StateDb>>>, lock: Option<JobLock>, path: &std::path::Path) {
    drop(db);
    for suffix in ["", "-wal", "-shm", ".clean"] {
        let _ = std::fs::remove_file(state::suffixed(path, suffix));
    }
    if let Some(lock) = lock {
        let _ = std::fs::remove_file(lock.path());
    }
}

/// A run's middle, both sides open: the streamed or whole-tree sync (or
/// the plan or check printed).
async fn run_opened(
    job: &mut Job,
    mode: Mode,
    started: Instant,
    (src, dst): (Arc<dyn Backend>, Arc<dyn Backend>),
    db: Option<&Arc<Mutex<StateDb>>>,
    journal: Option<Arc<Journal>>,
    reporter: &Arc<Reporter>,
) -> Result<whole::Whole, Error> {
    let filter = Arc::new(std::mem::take(&mut job.filter));
    let mut engine_config = job.engine.clone();
    // A far server starts higher (the last run's level, below, wins).
    let concurrency = &mut engine_config.concurrency;
    let sides =
        [(src.round_trip_time(), adapt::far_start(&job.src)), (dst.round_trip_time(), adapt::far_start(&job.dst))];
    concurrency.start = adapt::first_level(sides, concurrency.max);
    if let Some(db) = db {
        // Where the last run's tuning settled is where this one starts.
        let db = Arc::clone(db);
        let remembered = run_blocking(move || lock_db(&db).meta_get(PARALLEL_LEVEL)).await?;
        if let Some(level) = remembered.and_then(|v| v.parse::<usize>().ok()) {
            let concurrency = &mut engine_config.concurrency;
            concurrency.start = level.clamp(1, concurrency.max.max(1));
        }
    }
    let job = &*job;
    let setup = Setup { job, src, dst, db, filter, engine_config, reporter: Arc::clone(reporter), journal };
    if mode == Mode::Sync && streamed::can_stream(job) {
        streamed::run(setup).await.map(whole::Whole::Ran)
    } else {
        whole::run(setup, mode, started).await
    }
}

/// The source's file count at the last run whose listing was trusted.
async fn shrink_baseline(db: Option<&Arc<Mutex<StateDb>>>) -> Result<Option<u64>, Error> {
    let Some(db) = db else { return Ok(None) };
    let db = Arc::clone(db);
    Ok(run_blocking(move || lock_db(&db).meta_get(LAST_SRC_FILES)).await?.and_then(|v| v.parse::<u64>().ok()))
}

/// The transfer concurrency the last run's tuner settled at.
const PARALLEL_LEVEL: &str = "parallel_level";

fn transfer_stats(engine: &Engine, summary: &Summary, concurrency: ConcurrencyOutcome) -> TransferStats {
    let files = summary.files_transferred;
    let per_file = |n: u64| if files == 0 { 0.0 } else { round2(n as f64 / files as f64) };
    let secs = concurrency.transfer_time.as_secs_f64();
    let (src_round_trips, dst_round_trips) = (engine.src.round_trips(), engine.dst.round_trips());
    TransferStats {
        parallel_start: concurrency.start,
        parallel_end: concurrency.end,
        parallel_state: concurrency.phase.name(),
        parallel_next: concurrency.remembered,
        files_per_second: if secs > 0.0 { round2(files as f64 / secs) } else { 0.0 },
        src_round_trips,
        dst_round_trips,
        src_round_trips_per_file: per_file(src_round_trips),
        dst_round_trips_per_file: per_file(dst_round_trips),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Set by a `--verify-state` run: the records describe the destination.
const STATE_VERIFIED: &str = "state_verified";

/// `--trust-state`: the synced records, once a `--verify-state` run has
/// checked them against a real listing of the destination.
async fn trusted_records(
    db: Option<&Arc<Mutex<StateDb>>>,
    loading: Option<tokio::task::JoinHandle<Result<HashMap<RelPath, SyncedRecord>, Error>>>,
    mode: Mode,
) -> Result<HashMap<RelPath, SyncedRecord>, Error> {
    let unverified = || {
        Error::Usage(
            "--trust-state needs a state database that a --verify-state run has checked against the \
             destination: run once with --verify-state (it lists the destination), then --trust-state"
                .into(),
        )
    };
    if mode == Mode::Check {
        return Err(Error::Usage("check compares real listings: --trust-state does not apply".into()));
    }
    let (Some(db), Some(loading)) = (db, loading) else { return Err(unverified()) };
    let db = Arc::clone(db);
    let verified = run_blocking(move || lock_db(&db).meta_get(STATE_VERIFIED)).await?;
    if verified.as_deref() != Some("1") {
        return Err(unverified());
    }
    loading.await.map_err(|e| Error::Io {
        context: "state database task".into(),
        source: std::io::Error::other(e.to_string()),
    })?
}

/// The destination as the records describe it: each recorded file with the
/// size and mtime barge left, and the directories above them, in tree order.
fn listing_from_records(records: &HashMap<RelPath, SyncedRecord>) -> Listing {
    let mut entries = Vec::with_capacity(records.len() + records.len() / 8);
    let mut dirs = std::collections::HashSet::new();
    for (path, record) in records {
        let mut dir = path.parent();
        while !dir.is_root() && dirs.insert(dir.clone()) {
            dir = dir.parent();
        }
        entries.push(Entry {
            path: path.clone(),
            kind: crate::backend::EntryKind::File,
            size: record.dst_size,
            mtime: record.dst_mtime,
            inode: 0,
            coarse_mtime_s: 0,
            hash: None,
            link_target: None,
        });
    }
    entries.extend(dirs.into_iter().map(Entry::dir));
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Listing { entries, ..Listing::default() }
}

/// Trusted directories take their source's mtime (barge set it so).
fn adopt_dir_mtimes(src: &[Entry], dst: &mut [Entry]) {
    for entry in dst.iter_mut().filter(|e| e.is_dir()) {
        if let Ok(i) = src.binary_search_by(|s| s.path.cmp(&entry.path)) {
            entry.mtime = src[i].mtime;
        }
    }
}

/// Files present on both sides, as (source, destination) entries; and the
/// destination's files alone, for records to forget.
struct FilePairs {
    pairs: Vec<(Entry, Entry)>,
    dst_files: std::collections::HashSet<RelPath>,
}

fn file_pairs(src: &[Entry], dst: &[Entry]) -> FilePairs {
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

/// Records for every pair the plan left alone (the rule judged them the
/// same), and the recorded paths the destination no longer holds. Paths
/// the run acted on were journalled by the engine.
fn repaired_records(
    listed: FilePairs,
    acted: &std::collections::HashSet<RelPath>,
    recorded: &HashMap<RelPath, SyncedRecord>,
) -> (Vec<(RelPath, SyncedRecord)>, Vec<RelPath>) {
    let records = listed
        .pairs
        .into_iter()
        .filter(|(s, _)| !acted.contains(&s.path))
        .map(|(s, d)| (s.path.clone(), SyncedRecord::new(&s, d.size, d.mtime)))
        .filter(|(path, record)| recorded.get(path) != Some(record))
        .collect();
    let forget = recorded.keys().filter(|p| !listed.dst_files.contains(*p) && !acted.contains(*p)).cloned().collect();
    (records, forget)
}

/// Source directories that are empty now although barge synced files
/// below them before. `entries` is in tree order, so a directory is empty
/// when the next entry is not inside it; the synced records are walked
/// once, looking each one's ancestors up among the (few) empty directories.
/// Records of paths that neither side lists any more (deleted on both by
/// something else, or by other runs between this job's): nothing will
/// ever delete them, and kept they would grow the database, and the map
/// every run loads, with the tree's history instead of its size. Paths
/// below a directory that could not be listed are kept. Both listings are
/// in tree order.
fn stale_records(
    synced: &HashMap<RelPath, SyncedRecord>,
    src: &[Entry],
    dst: &[Entry],
    unreadable: &[RelPath],
) -> Vec<RelPath> {
    let listed = |entries: &[Entry], path: &RelPath| entries.binary_search_by(|e| e.path.cmp(path)).is_ok();
    synced
        .keys()
        .filter(|path| !listed(src, path) && !listed(dst, path) && !unreadable.iter().any(|u| path.starts_with(u)))
        .cloned()
        .collect()
}

fn emptied_dirs(entries: &[Entry], synced: &HashMap<RelPath, SyncedRecord>) -> Vec<RelPath> {
    let empty: std::collections::HashSet<RelPath> = entries
        .iter()
        .enumerate()
        .filter(|(i, e)| e.is_dir() && entries.get(i + 1).is_none_or(|next| !next.path.starts_with(&e.path)))
        .map(|(_, e)| e.path.clone())
        .collect();
    emptied_among(&empty, synced.keys())
}

/// Those of the `empty` directories that hold one of the `recorded` paths.
fn emptied_among<'a>(
    empty: &std::collections::HashSet<RelPath>,
    recorded: impl Iterator<Item = &'a RelPath>,
) -> Vec<RelPath> {
    if empty.is_empty() {
        return Vec::new();
    }
    let mut emptied = std::collections::BTreeSet::new();
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

/// One warning per run for the links the destination cannot hold; each
/// one is named by its own skip line (log, `--json`, `-v`).
fn warn_unlinkable(plan: &Plan, dst: &dyn Backend, reporter: &Reporter) {
    let count =
        plan.actions.iter().filter(|a| matches!(a, Action::Skip { reason: Reason::LinkUnsupported, .. })).count();
    if count > 0 {
        reporter.warning(&format!(
            "{count} symbolic links skipped: {} cannot hold symbolic links (--links skip silences this)",
            dst.describe()
        ));
    }
}

/// State db key: source files at the last run whose listing was trusted.
const LAST_SRC_FILES: &str = "last_src_files";

/// Server quirks kept in the job's state database.
struct DbMemory(Arc<Mutex<StateDb>>);

#[async_trait::async_trait]
impl ServerMemory for DbMemory {
    async fn recall(&self, key: &str) -> Option<String> {
        let (db, key) = (Arc::clone(&self.0), key.to_string());
        run_blocking(move || lock_db(&db).meta_get(&key)).await.ok().flatten()
    }

    async fn remember(&self, key: &str, value: &str) {
        let (db, key, value) = (Arc::clone(&self.0), key.to_string(), value.to_string());
        // Only an optimisation for the next run: a failure costs a re-measure.
        let _ = run_blocking(move || lock_db(&db).meta_set(&key, &value)).await;
    }
}

fn lock_db(db: &Mutex<StateDb>) -> std::sync::MutexGuard<'_, StateDb> {
    db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn finish_run(db: Option<&Arc<Mutex<StateDb>>>, status: &'static str) {
    if let Some(db) = db {
        let db = Arc::clone(db);
        // The run's outcome is already decided; a failure here only loses
        // the run's status line.
        let _ = run_blocking(move || lock_db(&db).finish_run(unix_now(), status)).await;
    }
}

/// A listing that names one path twice (twice the same file, or a file
/// and a directory) cannot be trusted about that path: drop every entry
/// at or below it and treat it as unreadable, so nothing there is copied
/// or deleted on its word.
fn distrust_duplicates(listing: &mut Listing) {
    let mut ambiguous: Vec<RelPath> = Vec::new();
    for pair in listing.entries.windows(2) {
        if pair[0].path == pair[1].path && ambiguous.last() != Some(&pair[0].path) {
            ambiguous.push(pair[0].path.clone());
        }
    }
    if ambiguous.is_empty() {
        return;
    }
    listing.entries.retain(|e| !ambiguous.iter().any(|a| e.path.starts_with(a)));
    for path in ambiguous {
        let err = OpError::new(
            crate::error::ErrorKind::InvalidData,
            "list",
            &path,
            "the listing names this entry more than once; it is left alone",
        );
        listing.unreadable.push((path, err));
    }
}

/// Removes barge's own temporaries from a listing and returns them: they are
/// never content, never copied, never "extraneous".
fn take_temporaries(listing: &mut Listing) -> Vec<Entry> {
    // In place: a second copy of a million-entry listing is not free.
    let mut temps = Vec::new();
    listing.entries.retain(|e| {
        // Links too: a link made under a temporary name by a killed run.
        let temp = !e.is_dir() && is_temp_name(e.path.file_name());
        if temp {
            temps.push(e.clone());
        }
        !temp
    });
    temps
}

/// How long a temporary on a server may go unwritten and still be another
/// run's live one: twice the `--timeout` (a live transfer that stalls
/// longer is given up), and never under ten minutes (the server's clock
/// and ours may disagree).
fn live_window(timeout: std::time::Duration) -> std::time::Duration {
    timeout.saturating_mul(2).max(std::time::Duration::from_secs(600))
}

/// Removes the destination's temporaries that no run of this plan took
/// over and no live run holds; returns how many were left. On local disk
/// a live writer's lock says so. A server cannot tell: there every stale
/// temporary goes, except in a sharded run, where one this shard does not
/// own (another shard may be writing it right now) goes only once it has
/// not been written for the live window.
async fn clean_temporaries(
    dst: &Arc<dyn Backend>,
    temps: Vec<Entry>,
    shard: Option<crate::plan::filter::Shard>,
    timeout: std::time::Duration,
    parallel: usize,
) -> u64 {
    let now = crate::units::unix_now_secs();
    let window = i64::try_from(live_window(timeout).as_secs()).unwrap_or(i64::MAX);
    let may_be_live = |temp: &Entry| {
        let owned = shard.is_none_or(|shard| temp.path.depth() > 1 && shard.owns(&temp.path));
        !owned && temp.mtime.is_none_or(|m| now.saturating_sub(m.secs()) < window)
    };
    let (mut left, mut removable) = (0u64, Vec::with_capacity(temps.len()));
    for temp in temps {
        if !dst.capabilities().live_temporaries && may_be_live(&temp) {
            left += 1;
        } else {
            removable.push(temp);
        }
    }
    let held = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (cleanup, counted) = (Arc::clone(dst), Arc::clone(&held));
    for_each_parallel(removable, parallel, move |temp: Entry| {
        let (dst, held) = (Arc::clone(&cleanup), Arc::clone(&counted));
        async move {
            if let Ok(false) = dst.remove_abandoned_temp(&temp.path).await {
                held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    })
    .await;
    left + held.load(std::sync::atomic::Ordering::Relaxed)
}

/// Says how many temporaries were left to a live run (or to another shard).
fn report_temporaries_left(left: u64, dst: &dyn Backend, reporter: &Reporter) {
    if left > 0 {
        reporter.stats.temporaries_left.store(left, std::sync::atomic::Ordering::Relaxed);
        reporter.warning(&format!(
            "{left} barge temporaries in {} were left alone: another run may be writing them (a later run \
             removes them once it is not)",
            dst.describe()
        ));
    }
}

/// Splits the destination's temporaries into those this plan can resume
/// (same source as when they were started) and stale ones to remove.
fn sort_temporaries(
    plan: &Plan,
    temporaries: Vec<Entry>,
    partials: &HashMap<RelPath, state::PartialRecord>,
) -> (HashMap<RelPath, u64>, Vec<Entry>) {
    let mut by_temp: HashMap<RelPath, Entry> = temporaries.into_iter().map(|e| (e.path.clone(), e)).collect();
    let mut resumable = HashMap::new();
    for action in &plan.actions {
        let Action::Copy { src, .. } = action else { continue };
        let temp = temp_path(&src.path);
        let Some(partial) = by_temp.remove(&temp) else { continue };
        let same_source = partials.get(&src.path).is_some_and(|p| p.src_size == src.size && p.src_mtime == src.mtime);
        if same_source && partial.size > 0 && partial.size <= src.size {
            resumable.insert(src.path.clone(), partial.size);
        }
        // Otherwise the copy starts afresh and truncates it.
    }
    (resumable, by_temp.into_values().collect())
}

fn print_plan(plan: &Plan, reporter: &Reporter, started: Instant) -> Outcome {
    for action in &plan.actions {
        reporter.planned(action);
    }
    let copies =
        plan.actions.iter().filter_map(|a| if let Action::Copy { src, .. } = a { Some(src.size) } else { None });
    let conflicts = plan.count("conflict") as u64;
    let so_far = reporter.summary(started.elapsed());
    let summary = Summary {
        kind: "plan",
        files_transferred: plan.count("copy") as u64,
        bytes_transferred: copies.sum(),
        files_deleted: plan.deletions() as u64,
        files_unchanged: plan.unchanged,
        dirs_created: plan.count("mkdir") as u64,
        errors: so_far.errors + conflicts,
        ..so_far
    };
    reporter.print_summary(&summary);
    Outcome { exit_code: if summary.errors == 0 { exit::OK } else { exit::PARTIAL }, summary }
}

/// The words `check` uses for a difference.
fn difference(action: &Action) -> Option<&'static str> {
    match action {
        Action::Copy { reason: Reason::New, .. } | Action::Mkdir { .. } => Some("missing"),
        Action::Copy { .. } | Action::SetMtime { kind: backend::EntryKind::File, .. } | Action::Conflict { .. } => {
            Some("differs")
        }
        Action::Delete { reason: Reason::Extraneous, .. } => Some("extra"),
        // Replacements come with the copy or mkdir that reports them;
        // directory mtimes and skipped links are not content.
        Action::Delete { .. } | Action::SetMtime { .. } | Action::Skip { .. } => None,
    }
}

fn print_check(plan: &Plan, reporter: &Reporter, started: Instant) -> Outcome {
    let mut differences = 0u64;
    for action in &plan.actions {
        if let Some(word) = difference(action) {
            differences += 1;
            reporter.difference(word, action);
        }
    }
    let mut summary = reporter.summary(started.elapsed());
    summary.kind = "check";
    summary.files_unchanged = plan.unchanged;
    summary.differences = Some(differences);
    reporter.print_summary(&summary);
    let exit_code = if summary.errors == 0 && differences == 0 { exit::OK } else { exit::PARTIAL };
    Outcome { summary, exit_code }
}
