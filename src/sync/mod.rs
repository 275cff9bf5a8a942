//! One run of a job, end to end: whose job it is and whether its roots
//! may be synced ([`identity`], [`safety`]), the lock and the state
//! database, both sides opened, the one pipeline run ([`pipeline`]: list,
//! march, act), then the run's end: exit code, summary, reports.
//!
//! - `sources.rs`: both sides as streams, listed by directory or whole;
//! - `route.rs`: what the engine may do before the walks end;
//! - `safety.rs`: every hold-back and stop, the one file that says when
//!   barge deletes;
//! - `records.rs`: the state database's records, recall, `--trust-state`
//!   and `--verify-state`;
//! - `hashing.rs`: `--compare hash`; `temporaries.rs`: a killed run's
//!   debris; `output.rs`: plan and check printing, transfer statistics;
//!   `reports.rs`: `--report` and `--metrics` files.

pub mod files_from;
mod hashing;
mod identity;
pub mod notify;
mod output;
mod pipeline;
mod records;
mod reports;
mod route;
mod safety;
mod shard_stats;
mod sources;
mod temporaries;

pub use reports::{Reports, record_fatal};
pub use safety::{DeleteLimit, Safety};
pub use shard_stats::shard_stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pipeline::{Ended, Ran, Setup};
use records::{LAST_SRC_FILES, PARALLEL_LEVEL};

use crate::backend::{self, Backend, Memory, MissingRoot, RemoteOptions, ServerMemory};
use crate::engine::report::{Reporter, Summary};
use crate::engine::{EngineConfig, adapt};
use crate::error::{Error, ErrorKind, OpError, exit};
use crate::location::Location;
use crate::plan::{CompareMode, LinkMode, filter::Filter};
use crate::state::{self, Checked, Db, JobLock, Journal, StateDb};

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
    /// `--files-from`: only these paths are listed and copied.
    pub files_from: Option<Arc<files_from::FileList>>,
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

fn unreachable<'a>(side: &'static str, location: &'a Location) -> impl FnOnce(OpError) -> Error + 'a {
    move |source| Error::Unreachable { side, location: location.to_string(), source }
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
    // A report that cannot be written would leave monitoring with the
    // last run's, and this run's exit code 0: refused before it starts.
    if mode == Mode::Sync {
        reports::check_writable(&job.reports)?;
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
        let interrupted = db.begin_run(unix_now()).await?;
        if let Some(run) = interrupted {
            reporter.info(&format!("run {run} of this job was interrupted; continuing where it stopped"));
        }
    }

    let mut job = job;
    let opened = async {
        let (src, dst) = open_sides(&job, mode, db.as_ref()).await?;
        // One tree spelled two ways (`~`, a link on the server, another
        // name of the host) is one tree: refused if the roots nest, before
        // anything is listed or written, and one job, under a second lock
        // held to the end. Compared as the canonical roots are (users
        // resolved), with the paths the servers resolved.
        let resolved = (src.resolved_root(), dst.resolved_root());
        safety::refuse_overlap_resolved(&roots.src, &roots.dst, resolved.clone(), &job.filter).await?;
        let resolved = match mode {
            Mode::Sync => identity::resolved_lock_path(&job, &roots, resolved),
            _ => None,
        }
        .filter(|path| *path != state_path);
        let resolved_lock = resolved.map(|path| JobLock::acquire(&path)).transpose()?;
        Ok::<_, Error>((src, dst, resolved_lock))
    };
    let (src, dst, _resolved_lock) = match opened.await {
        Ok(opened) => opened,
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
    let journal = db.as_ref().map(|db| Arc::new(Journal::new(db.clone())));
    let ran = match run_opened(&mut job, mode, started, (src, dst), db.as_ref(), journal.clone(), &reporter).await {
        Ok(Ended::Printed(outcome)) => return Ok(outcome),
        Ok(Ended::Ran(ran)) => ran,
        Err(err) => {
            // Failed, not interrupted: the next run must not say so.
            finish_run(db.as_ref(), "failed").await;
            return Err(err);
        }
    };
    let Ran { engine, held_back, src_files, listed } = ran;
    let concurrency = engine.concurrency();
    if let (Some(level), Some(db)) = (concurrency.remembered, &db) {
        // Only a head start for the next run: a failure costs a re-measure.
        let _ = db.meta_set(PARALLEL_LEVEL, &level.to_string()).await;
    }
    if let Some(journal) = &journal
        && let Err(err) = journal.flush().await
    {
        reporter.warning(&format!("state database: {err}"));
    }
    if let (Some((pairs, acted)), Some(db)) = (listed, &db) {
        records::rebuild(db, pairs, acted, &reporter).await;
    }
    let mut summary = reporter.summary(started.elapsed());
    summary.transfers = Some(output::transfer_stats(&engine, &summary, concurrency));
    if engine.config.moving.is_some() {
        summary.source_files_removed =
            Some(reporter.stats.source_files_removed.load(std::sync::atomic::Ordering::Relaxed));
    }
    let interrupted = crate::stop::requested();
    if let Some(signal) = interrupted {
        let not_started = engine.not_started.load(std::sync::atomic::Ordering::Relaxed);
        reporter.error(&format!(
            "{}: {not_started} actions not started (no deletions were made after it); \
             the next run continues where this one stopped",
            crate::stop::described(signal)
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
    // A --files-from run saw a few paths, not the source: no baseline.
    if let Some(db) = &db
        && held_back == 0
        && job.files_from.is_none()
    {
        // The baseline for --max-shrink: only a run whose listing was
        // trusted sets it.
        let _ = db.meta_set(LAST_SRC_FILES, &src_files.to_string()).await;
    }
    let mut exit_code = exit_code;
    let written =
        reports::write_reports(&job.reports, &summary, exit_code, run_started_at, db.as_ref(), &state_path, &reporter)
            .await;
    // Checked writable at the start, so rare (a full disk): the run did
    // not do all it was asked, and the summary stays the last line.
    if !written {
        summary.errors += 1;
        if exit_code == exit::OK {
            exit_code = exit::PARTIAL;
        }
    }
    reporter.print_summary(&summary);
    drop(lock);
    Ok(Outcome { summary, exit_code })
}

/// The job's database, checked by sqlite. A damaged one (pages
/// overwritten, cut short, not a database) is a cache to learn again, not
/// a reason to fail every run: a sync moves it aside and starts afresh, as
/// a first run would (the empty-source hold still applies); plan and check
/// read nothing from it.
async fn open_state(path: &std::path::Path, mode: Mode, reporter: &Reporter) -> Result<Option<Db>, Error> {
    let checked = {
        let path = path.to_path_buf();
        state::run_blocking(move || StateDb::open_checked(&path)).await?
    };
    let db = match checked {
        Checked::Sound(db) => db,
        Checked::Damaged(why) if mode == Mode::Sync => {
            let owned = path.to_path_buf();
            let (db, aside) = state::run_blocking(move || StateDb::replace_damaged(&owned)).await?;
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
    Ok(Some(Db::new(db)))
}

/// Opens both roots at once. A sync's missing destination is created only
/// once the source has opened, so a run that cannot start leaves no empty
/// destination behind.
async fn open_sides(job: &Job, mode: Mode, db: Option<&Db>) -> Result<(Arc<dyn Backend>, Arc<dyn Backend>), Error> {
    let (mut src_remote, mut dst_remote) = (job.src_remote.clone(), job.dst_remote.clone());
    if let Some(db) = db {
        let memory = Memory(Arc::new(DbMemory(db.clone())));
        (src_remote.memory, dst_remote.memory) = (Some(memory.clone()), Some(memory));
    }
    let missing_dst = if mode == Mode::Sync { MissingRoot::CreateLater } else { MissingRoot::Empty };
    let (src, dst) = tokio::join!(
        backend::open(&job.src, MissingRoot::Fail, &src_remote),
        backend::open(&job.dst, missing_dst, &dst_remote)
    );
    let src = src.map_err(unreachable("source", &job.src))?;
    let dst = match dst {
        Err(err) if mode == Mode::Sync && err.kind == ErrorKind::NotFound => {
            backend::open(&job.dst, MissingRoot::Create, &dst_remote).await
        }
        opened => opened,
    };
    Ok((src, dst.map_err(unreachable("destination", &job.dst))?))
}

/// Removes the database (and lock) a sync created for a job whose first
/// run could not start. The lock goes last, still held.
fn discard_state(db: Option<Db>, lock: Option<JobLock>, path: &std::path::Path) {
    drop(db);
    for suffix in ["", "-wal", "-shm", ".clean"] {
        let _ = std::fs::remove_file(state::suffixed(path, suffix));
    }
    if let Some(lock) = lock {
        let _ = std::fs::remove_file(lock.path());
    }
}

/// Both sides open: the pipeline, starting at the concurrency decided
/// here, once.
async fn run_opened(
    job: &mut Job,
    mode: Mode,
    started: Instant,
    (src, dst): (Arc<dyn Backend>, Arc<dyn Backend>),
    db: Option<&Db>,
    journal: Option<Arc<Journal>>,
    reporter: &Arc<Reporter>,
) -> Result<Ended, Error> {
    let filter = Arc::new(std::mem::take(&mut job.filter));
    let mut engine_config = job.engine.clone();
    engine_config.concurrency.start = starting_level(&engine_config, [&src, &dst], [&job.src, &job.dst], db).await?;
    let job = &*job;
    let setup = Setup { job, src, dst, db, filter, engine_config, reporter: Arc::clone(reporter), journal };
    pipeline::run(setup, mode, started).await
}

/// Where the transfers start: where the last run's tuning settled, else
/// higher for a far server ([`adapt::first_level`]), never above the cap.
async fn starting_level(
    config: &EngineConfig,
    backends: [&Arc<dyn Backend>; 2],
    locations: [&Location; 2],
    db: Option<&Db>,
) -> Result<usize, Error> {
    let max = config.concurrency.max.max(1);
    let remembered = match db {
        Some(db) => db.meta_get(PARALLEL_LEVEL).await?.and_then(|v| v.parse::<usize>().ok()),
        None => None,
    };
    if let Some(level) = remembered {
        return Ok(level.clamp(1, max));
    }
    let far_start = |location| backend::profile(location).far_start.unwrap_or(adapt::DEFAULT_START);
    let sides = [0, 1].map(|i| (backends[i].round_trip_time(), far_start(locations[i])));
    Ok(adapt::first_level(sides, config.concurrency.max))
}

/// Server quirks kept in the job's state database.
struct DbMemory(Db);

#[async_trait::async_trait]
impl ServerMemory for DbMemory {
    async fn recall(&self, key: &str) -> Option<String> {
        self.0.meta_get(key).await.ok().flatten()
    }

    async fn remember(&self, key: &str, value: &str) {
        // Only an optimisation for the next run: a failure costs a re-measure.
        let _ = self.0.meta_set(key, value).await;
    }
}

async fn finish_run(db: Option<&Db>, status: &'static str) {
    if let Some(db) = db {
        // The run's outcome is already decided; a failure here only loses
        // the run's status line.
        let _ = db.finish_run(unix_now(), status).await;
    }
}
