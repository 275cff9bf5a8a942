//! A run's middle, both sides open: list, march, act. One pipeline for
//! every run:
//!
//! 1. Both sides are listed at once ([`super::sources`]) while the last
//!    run's records load ([`super::records`]).
//! 2. The march ([`crate::plan::march`]) merges the two streams; each
//!    action goes through the router ([`super::route`]).
//! 3. With early actions on (a plain sync), what can be done before the
//!    walks end goes to the engine at once: transfers start with the first
//!    listings and neither listing is ever held whole. With them off
//!    (`plan`, `check`, and the syncs that must see everything first, see
//!    [`acts_early`]) both sides are read whole before the march, so
//!    `--compare hash` can hash the pairs and `--trust-state` and
//!    `--verify-state` can work from and rebuild the whole record set.
//! 4. What waited (deletions, replacements, directory mtimes) meets the
//!    safety rules ([`super::safety`]) with the whole tree seen, then runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc;

use super::hashing::fill_hashes;
use super::output::{print_check, print_plan, warn_unlinkable};
use super::records::{self, FilePairs, TrackedRecords, emptied_among, file_pairs, shrink_baseline};
use super::route::Router;
use super::safety::{self, SourceSeen, hold_back_deletions, max_delete_stop};
use super::sources::{Listed, Seen, Side, Walk, adopt_dir_mtimes};
use super::temporaries::{clean_temporaries, report_temporaries_left};
use super::{Job, Mode, Outcome, finish_run, unreachable};
use crate::backend::{Backend, Entry, EntryKind};
use crate::engine::report::Reporter;
use crate::engine::{Engine, EngineConfig};
use crate::error::Error;
use crate::path::RelPath;
use crate::plan::filter::Filter;
use crate::plan::{CompareMode, CompareRule, LinkMode, LinkRule, MarchRules, PermRule, Plan, march};
use crate::state::{Db, Journal, Side as StateSide};

/// Everything the pipeline needs from [`super::run`].
pub(super) struct Setup<'a> {
    pub job: &'a Job,
    pub src: Arc<dyn Backend>,
    pub dst: Arc<dyn Backend>,
    pub db: Option<&'a Db>,
    pub filter: Arc<Filter>,
    pub engine_config: EngineConfig,
    pub reporter: Arc<Reporter>,
    pub journal: Option<Arc<Journal>>,
}

/// How the pipeline ended.
pub(super) enum Ended {
    /// `plan` or `check`: printed, nothing changed.
    Printed(Outcome),
    /// A sync: the engine ran.
    Ran(Ran),
}

/// What a sync did, for the common end of [`super::run`].
pub(super) struct Ran {
    pub engine: Arc<Engine>,
    pub held_back: u64,
    pub src_files: u64,
    /// `--verify-state`: both sides' files as listed, and the paths the
    /// plan acted on.
    pub listed: Option<(FilePairs, Vec<RelPath>)>,
}

/// Whether the run acts before the walks end. Runs that must see
/// everything first do not: `plan` and `check` print a whole plan;
/// `--max-delete` promises that a stop changes nothing; `--compare hash`
/// hashes pairs in bulk; `--trust-state` and `--verify-state` work from
/// and rebuild the whole record set; `--links follow` resolves links
/// across the tree.
pub(super) fn acts_early(job: &Job, mode: Mode) -> bool {
    mode == Mode::Sync
        && job.safety.max_delete.is_none()
        && job.compare != CompareMode::Hash
        && !job.trust_state
        && !job.verify_state
        && job.links != LinkMode::Follow
}

/// `--owner`, `--group`: refused where they cannot be done, before
/// anything is listed.
fn owners_can_be_kept(dst: &dyn Backend) -> Result<(), Error> {
    if dst.ownership().is_none() {
        return Err(Error::Usage(format!(
            "--owner/--group: {} cannot set owners (local disk and SFTP can)",
            dst.describe()
        )));
    }
    if !dst.capabilities().remote && !rustix::process::geteuid().is_root() {
        return Err(Error::Usage(
            "--owner/--group give files to other users, which only root may do: run as root, or leave them out".into(),
        ));
    }
    Ok(())
}

/// Actions queued for the engine ahead of the ones it is running: enough
/// for it to choose from, few enough to bound memory.
const EARLY_ACTIONS: usize = 4096;

/// What the march hands back.
struct Marched {
    unchanged: u64,
    src: Seen,
    dst: Seen,
    router: Router,
    /// `--verify-state`: both sides' files as listed.
    listed: Option<FilePairs>,
}

/// The march's inputs apart from the two sides.
struct Rules {
    filter: Arc<Filter>,
    records: TrackedRecords,
    rules: MarchRules<'static>,
    reporter: Arc<Reporter>,
}

pub(super) async fn run(setup: Setup<'_>, mode: Mode, started: Instant) -> Result<Ended, Error> {
    let reporter = Arc::clone(&setup.reporter);
    let result = run_listed(setup, mode, started).await;
    if result.is_err() {
        // The error is printed next: not after a progress line left drawn.
        reporter.finish_progress();
    }
    result
}

async fn run_listed(setup: Setup<'_>, mode: Mode, started: Instant) -> Result<Ended, Error> {
    let Setup { job, src, dst, db, filter, engine_config, reporter, journal } = setup;
    let early = acts_early(job, mode);
    if job.trust_state {
        if mode == Mode::Check {
            return Err(Error::Usage("check compares real listings: --trust-state does not apply".into()));
        }
        records::check_trusted(db).await?;
    }
    if engine_config.owners.any() {
        owners_can_be_kept(dst.as_ref())?;
    }
    // Both walks start at once; the records load beside them.
    let listed = if early { Listed::Streamed } else { Listed::Whole };
    let src_listed = if !early && job.links == LinkMode::Follow { Listed::WholeFollowingLinks } else { listed };
    let (mut src_walk, dst_walk) = match &job.files_from {
        Some(list) => (
            Walk::of_files(&src, Arc::clone(list), Some(Arc::clone(&reporter))),
            (!job.trust_state).then(|| Walk::of_files(&dst, Arc::clone(list), None)),
        ),
        None => {
            (Walk::start(&src, src_listed, &reporter), (!job.trust_state).then(|| Walk::start(&dst, listed, &reporter)))
        }
    };
    // From here the line says "listing" (the roots' first listings may be
    // all of a tree that is read whole); plan and check show it too (a far
    // server's can take minutes), their output replacing it once the
    // march is done. An error clears it before it is printed (`run`).
    reporter.start_progress(early);
    let records = TrackedRecords::load(db).await?;
    // --trust-state: the records stand in for the destination's listing.
    let mut dst_walk = dst_walk.unwrap_or_else(|| Walk::from_records(&records));
    src_walk.recall(src.as_ref(), &records, StateSide::Src);
    dst_walk.recall(dst.as_ref(), &records, StateSide::Dst);
    // Nothing is done before both roots are known to be readable: a
    // destination that failed to list must not look empty.
    let src_first = src_walk.first_items().await.map_err(unreachable("source", &job.src))?;
    let dst_first = dst_walk.first_items().await.map_err(unreachable("destination", &job.dst))?;

    let rule = CompareRule::new(
        job.compare,
        src.capabilities().mtime_precision,
        dst.capabilities().mtime_precision,
        dst.capabilities().set_mtime,
    );
    let links = LinkRule { mode: job.links, dst_can_link: dst.capabilities().symlinks };
    let perms = PermRule {
        perms: engine_config.perms.clone().filter(|_| dst.capabilities().set_mode),
        owners: engine_config.owners,
    };
    if mode == Mode::Sync && engine_config.perms.is_some() && !dst.capabilities().set_mode {
        reporter.warning(&format!(
            "{} does not take permission bits: they are not kept there (--no-perms silences this)",
            dst.describe()
        ));
    }
    // Check lists extraneous entries whatever --delete says.
    let delete = job.delete || mode == Mode::Check;
    // Deletions below what a source could not list are dropped after the
    // march, by the safety rules, whichever way the sides were read.
    let rules = Rules {
        filter: Arc::clone(&filter),
        records: records.clone(),
        rules: MarchRules {
            src_unreadable: &[],
            rule,
            delete,
            links,
            perms,
            move_files: engine_config.moving.is_some(),
        },
        reporter: Arc::clone(&reporter),
    };
    let owners = engine_config.owners;
    let engine = Arc::new(Engine::new(src, dst, engine_config, Arc::clone(&reporter), journal));
    let src_side = Side::new(src_first, src_walk.items, Arc::clone(&reporter), false)
        .named_by(&engine.dst)
        .owned_as_on(&engine.src, &engine.dst, owners);
    let dst_side = Side::new(dst_first, dst_walk.items, Arc::clone(&reporter), true);
    let marched = match early {
        true => march_acting_early(&engine, src_side, dst_side, rules).await?,
        false => march_whole(job, mode, &engine, db, src_side, dst_side, rules).await?,
    };
    if mode != Mode::Sync {
        reporter.finish_progress();
    }
    // The walks ended when their streams did.
    let _ = tokio::join!(src_walk.task, dst_walk.task);
    let Marched { unchanged, src: src_seen, dst: dst_seen, router, listed } = marched;
    let Router { deferred: mut actions, large_copies, unlinkable, .. } = router;

    let stopped = crate::stop::requested().is_some();
    safety::drop_unseen_deletions(&mut actions, &src_seen.unreadable, &src_seen.held, stopped);
    if let Some(shard) = filter.shard() {
        // A directory above the shard depth is walked by every shard and
        // deleted only by the one its path hashes to.
        actions.retain(|a| !matches!(a, crate::plan::Action::Delete { path, .. } if !shard.owns(path)));
        for action in &mut actions {
            if let crate::plan::Action::Delete { path, kind: EntryKind::Dir, reason } = action
                && path.depth() < shard.depth as usize
            {
                *reason = crate::plan::Reason::AboveShards;
            }
        }
    }
    if mode == Mode::Sync
        && !stopped
        && let Some(db) = db
    {
        let unreadable: Vec<RelPath> = src_seen.unreadable.iter().chain(&dst_seen.unreadable).cloned().collect();
        let stale = records.unseen(&unreadable);
        if !stale.is_empty() {
            db.write_synced(Vec::new(), stale, Vec::new()).await?;
        }
    }
    warn_unlinkable(unlinkable, engine.dst.as_ref(), &reporter);
    let mut plan = Plan { actions, unchanged };
    if mode == Mode::Check {
        return Ok(Ended::Printed(print_check(&plan, &reporter, started)));
    }
    // `plan` (and --dry-run) holds itself to the same limits as the sync
    // it stands for, and exits as that sync would.
    if let Some(stop) = max_delete_stop(&job.safety, plan.deletions() as u64, dst_seen.entries) {
        match mode {
            Mode::Plan => {
                print_plan(&plan, &reporter, started);
            }
            _ => finish_run(db, "safety-stop").await,
        }
        return Err(stop);
    }
    // A listing that looks wrong must not delete anything on its word.
    let emptied = emptied_among(&src_seen.empty_dirs, records.paths());
    drop(records);
    // Files left out by size or age are in the source all the same: a
    // drop folder whose files are all still being written is not empty.
    let src_files = src_seen.files + src_seen.held.len() as u64;
    let seen = SourceSeen {
        root: &job.src,
        warnings: src_seen.warnings,
        unreadable: src_seen.unreadable.len(),
        emptied: &emptied,
        baseline: shrink_baseline(db).await?,
        files: src_files,
    };
    let held_back = hold_back_deletions(&mut plan.actions, &seen, &job.safety, &reporter);
    if mode == Mode::Plan {
        let mut outcome = print_plan(&plan, &reporter, started);
        if held_back > 0 {
            outcome.exit_code = crate::error::exit::SAFETY_STOP;
        }
        return Ok(Ended::Printed(outcome));
    }

    // Temporaries the listing showed that no copy of this run takes over
    // (a copy renames its own, or keeps a large one to resume): every
    // early copy is over, and a directory to delete must be empty.
    let stale_temps: Vec<Entry> = match stopped {
        true => Vec::new(),
        false => dst_seen.temporaries.into_iter().filter(|t| !large_copies.contains(&t.path)).collect(),
    };
    let (timeout, parallel) = (engine.config.timeout, engine.concurrency().end);
    let left = clean_temporaries(&engine.dst, stale_temps, filter.shard(), timeout, parallel).await;
    report_temporaries_left(left, engine.dst.as_ref(), &reporter);
    reporter.stats.files_unchanged.store(unchanged, Ordering::Relaxed);
    let acted: Vec<RelPath> = match listed {
        Some(_) => plan.actions.iter().map(|a| a.path().clone()).collect(),
        None => Vec::new(),
    };
    engine.run(plan).await;
    Ok(Ended::Ran(Ran { engine, held_back, src_files, listed: listed.map(|pairs| (pairs, acted)) }))
}

/// The march over both walks as they come, the engine acting on what the
/// router lets through while it goes.
async fn march_acting_early(
    engine: &Arc<Engine>,
    mut src: Side,
    mut dst: Side,
    rules: Rules,
) -> Result<Marched, Error> {
    let (early_tx, early_rx) = mpsc::channel(EARLY_ACTIONS);
    let marching = tokio::task::spawn_blocking(move || {
        let Rules { filter, records, rules, reporter } = rules;
        let mut router = Router::new(Some(early_tx), &reporter);
        let src_entries = std::iter::from_fn(|| src.next_entry(&filter, &records));
        let dst_entries = std::iter::from_fn(|| dst.next_entry(&filter, &records));
        let unchanged = march(src_entries, dst_entries, &records, rules, &mut router);
        reporter.listing_done();
        router.close();
        Marched { unchanged, src: src.seen, dst: dst.seen, router, listed: None }
    });
    engine.run_streamed(early_rx).await;
    marching.await.map_err(|e| Error::Io { context: "plan".into(), source: std::io::Error::other(e.to_string()) })
}

/// Both sides read whole, hashed where `--compare hash` asks, then the
/// march, every action kept for the end.
async fn march_whole(
    job: &Job,
    mode: Mode,
    engine: &Engine,
    db: Option<&Db>,
    mut src: Side,
    mut dst: Side,
    rules: Rules,
) -> Result<Marched, Error> {
    let joined = |e: tokio::task::JoinError| Error::Io { context: "plan".into(), source: std::io::Error::other(e) };
    let (filter, records) = (Arc::clone(&rules.filter), rules.records.clone());
    let (mut src_entries, mut dst_entries, src, dst) = tokio::task::spawn_blocking(move || {
        let src_entries = src.collect(&filter, &records);
        let dst_entries = dst.collect(&filter, &records);
        (src_entries, dst_entries, src, dst)
    })
    .await
    .map_err(joined)?;
    if job.trust_state {
        // barge set every directory's mtime to its source's.
        adopt_dir_mtimes(&src_entries, &mut dst_entries);
    }
    if job.compare == CompareMode::Hash {
        engine.reporter.hashing();
        let strict = mode == Mode::Check;
        fill_hashes(&engine.src, &engine.dst, &mut src_entries, &mut dst_entries, db, &engine.reporter, strict).await?;
    }
    // --verify-state rebuilds the records from both listings after the run.
    let listed = (job.verify_state && mode == Mode::Sync).then(|| file_pairs(&src_entries, &dst_entries));
    tokio::task::spawn_blocking(move || {
        let Rules { records, rules, reporter, .. } = rules;
        let mut router = Router::new(None, &reporter);
        let unchanged = march(src_entries.into_iter(), dst_entries.into_iter(), &records, rules, &mut router);
        Marched { unchanged, src: src.seen, dst: dst.seen, router, listed }
    })
    .await
    .map_err(joined)
}
