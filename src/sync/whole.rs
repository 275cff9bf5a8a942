//! A run that plans the whole tree first: both sides listed in full,
//! filtered, hashed (`--compare hash`), planned, held to the safety limits,
//! then executed. `plan`, `check`, and the syncs that need everything
//! before the first copy take this way (see [`super::streamed::can_stream`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::hashing::fill_hashes;
use super::safety::{SourceSeen, hold_back_deletions, max_delete_stop};
use super::{
    Mode, Outcome, Ran, Setup, adopt_dir_mtimes, clean_temporaries, distrust_duplicates, emptied_dirs, file_pairs,
    finish_run, listing_from_records, lock_db, print_check, print_plan, report_temporaries_left, shrink_baseline,
    sort_temporaries, stale_records, take_temporaries, trusted_records, unreachable, warn_unlinkable,
};
use crate::engine::{Engine, RESUME_MIN_SIZE};
use crate::error::Error;
use crate::path::RelPath;
use crate::plan::{self, Action, CompareMode, CompareRule, LinkMode, LinkRule, PlanInput};
use crate::state::run_blocking;

/// How a whole-tree run ended.
pub(super) enum Whole {
    /// `plan` or `check`: printed, nothing changed.
    Printed(Outcome),
    /// A sync: the engine ran the plan.
    Ran(Ran),
}

pub(super) async fn run(setup: Setup<'_>, mode: Mode, started: Instant) -> Result<Whole, Error> {
    let Setup { job, src, dst, db, filter, engine_config, reporter, journal } = setup;
    // What barge last synced is read while both sides are walked.
    let mut synced_loading = db.map(|db| {
        let db = Arc::clone(db);
        tokio::task::spawn_blocking(move || lock_db(&db).load_synced())
    });
    // --trust-state: the records stand in for the destination's listing.
    let trusted = match job.trust_state {
        true => Some(trusted_records(db, synced_loading.take(), mode).await?),
        false => None,
    };
    let src_walk =
        async { if job.links == LinkMode::Follow { src.walk_following_links().await } else { src.walk().await } };
    let dst_walk = async {
        match &trusted {
            Some(records) => Ok(listing_from_records(records)),
            None => dst.walk().await,
        }
    };
    let (src_listing, dst_listing) = tokio::join!(src_walk, dst_walk);
    let mut src_listing = src_listing.map_err(unreachable(&job.src))?;
    let mut dst_listing = dst_listing.map_err(unreachable(&job.dst))?;
    if trusted.is_some() {
        // barge set every directory's mtime to its source's.
        adopt_dir_mtimes(&src_listing.entries, &mut dst_listing.entries);
    }
    distrust_duplicates(&mut src_listing);
    distrust_duplicates(&mut dst_listing);
    for (dir, err) in &src_listing.unreadable {
        reporter.error(&format!("source {dir} could not be read, nothing below it is deleted: {err}"));
    }
    for (dir, err) in &dst_listing.unreadable {
        reporter.error(&format!("destination {dir} could not be read: {err}"));
    }
    for warning in src_listing.warnings.iter().chain(&dst_listing.warnings) {
        reporter.warning(warning);
    }
    for notice in src_listing.notices.iter().chain(&dst_listing.notices) {
        reporter.warning(notice);
    }
    for retried in src_listing.retried.iter().chain(&dst_listing.retried) {
        reporter.info(retried);
    }
    let _ = take_temporaries(&mut src_listing);
    let temporaries = take_temporaries(&mut dst_listing);

    let src_unreadable: Vec<RelPath> = src_listing.unreadable.iter().map(|(p, _)| p.clone()).collect();
    let dst_unreadable: Vec<RelPath> = dst_listing.unreadable.iter().map(|(p, _)| p.clone()).collect();
    let src_unreadable_count = src_unreadable.len();
    let (src_entries, dst_entries) = {
        let filter = Arc::clone(&filter);
        let (s, d) = (src_listing.entries, dst_listing.entries);
        tokio::task::spawn_blocking(move || (filter.apply(s), filter.apply(d)))
            .await
            .map_err(|e| Error::Io { context: "filter".into(), source: std::io::Error::other(e.to_string()) })?
    };
    let (mut src_entries, mut dst_entries) = (src_entries, dst_entries);

    let src_files = src_entries.iter().filter(|e| e.is_file()).count() as u64;
    let dst_total = dst_entries.len() as u64;
    let src_warnings = src_listing.warnings.len();
    if job.compare == CompareMode::Hash {
        fill_hashes(&src, &dst, &mut src_entries, &mut dst_entries, db, &reporter, mode == Mode::Check).await?;
    }

    let synced = match (trusted, synced_loading) {
        (Some(records), _) => records,
        (None, Some(task)) => task.await.map_err(|e| Error::Io {
            context: "state database task".into(),
            source: std::io::Error::other(e.to_string()),
        })??,
        (None, None) => HashMap::new(),
    };
    // --verify-state rebuilds the records from both listings after the run.
    let listed_pairs = (job.verify_state && mode == Mode::Sync).then(|| file_pairs(&src_entries, &dst_entries));
    // A directory that held files at the last run and is empty now is how
    // a server that lost a mount, or a half-failed listing, looks.
    let emptied = if mode == Mode::Check { Vec::new() } else { emptied_dirs(&src_entries, &synced) };
    if mode == Mode::Sync
        && let Some(db) = &db
    {
        let unreadable: Vec<RelPath> = src_unreadable.iter().chain(&dst_unreadable).cloned().collect();
        let stale = stale_records(&synced, &src_entries, &dst_entries, &unreadable);
        if !stale.is_empty() {
            let db = Arc::clone(db);
            run_blocking(move || lock_db(&db).write_synced(&[], &stale)).await?;
        }
    }
    let rule = CompareRule::new(
        job.compare,
        src.capabilities().mtime_precision,
        dst.capabilities().mtime_precision,
        dst.capabilities().set_mtime,
    );
    // Check lists extraneous entries whatever --delete says.
    let delete = job.delete || mode == Mode::Check;
    let links = LinkRule { mode: job.links, dst_can_link: dst.capabilities().symlinks };
    let plan = tokio::task::spawn_blocking(move || {
        plan::plan(PlanInput {
            src: src_entries,
            dst: dst_entries,
            src_unreadable: &src_unreadable,
            synced: &synced,
            rule,
            delete,
            links,
        })
    })
    .await
    .map_err(|e| Error::Io { context: "plan".into(), source: std::io::Error::other(e.to_string()) })?;

    warn_unlinkable(&plan, dst.as_ref(), &reporter);
    if mode == Mode::Check {
        return Ok(Whole::Printed(print_check(&plan, &reporter, started)));
    }

    // `plan` (and --dry-run) holds itself to the same limits as the sync
    // it stands for, and exits as that sync would.
    if let Some(stop) = max_delete_stop(&job.safety, plan.deletions() as u64, dst_total) {
        match mode {
            Mode::Plan => {
                print_plan(&plan, &reporter, started);
                return Err(stop);
            }
            _ => {
                finish_run(db, "safety-stop").await;
                return Err(stop);
            }
        }
    }
    // A listing that looks wrong must not delete anything on its word.
    let baseline = shrink_baseline(db).await?;
    let seen = SourceSeen {
        root: &job.src,
        warnings: src_warnings,
        unreadable: src_unreadable_count,
        emptied: &emptied,
        baseline,
        files: src_files,
    };
    let mut plan = plan;
    let held_back = hold_back_deletions(&mut plan.actions, &seen, &job.safety, &reporter);
    if mode == Mode::Plan {
        let mut outcome = print_plan(&plan, &reporter, started);
        if held_back > 0 {
            outcome.exit_code = crate::error::exit::SAFETY_STOP;
        }
        return Ok(Whole::Printed(outcome));
    }

    let partials = match &db {
        Some(db) => {
            let db = Arc::clone(db);
            let wanted: Vec<RelPath> = plan
                .actions
                .iter()
                .filter_map(|a| match a {
                    Action::Copy { src, .. } if src.size >= RESUME_MIN_SIZE => Some(src.path.clone()),
                    _ => None,
                })
                .collect();
            run_blocking(move || {
                let db = lock_db(&db);
                let mut found = HashMap::new();
                for path in wanted {
                    if let Some(record) = db.partial(&path)? {
                        found.insert(path, record);
                    }
                }
                Ok(found)
            })
            .await?
        }
        None => HashMap::new(),
    };
    // Other shards may be writing into the same destination right now: one
    // inside a directory belongs to that directory's shard; a top-level one
    // cannot be told apart (its name is a hash) but by its age.
    let (resumable, stale) = sort_temporaries(&plan, temporaries, &partials);
    let (timeout, parallel) = (engine_config.timeout, engine_config.concurrency.start);
    let left = clean_temporaries(&dst, stale, filter.shard(), timeout, parallel).await;
    report_temporaries_left(left, dst.as_ref(), &reporter);

    reporter.stats.files_unchanged.store(plan.unchanged, std::sync::atomic::Ordering::Relaxed);
    let acted_paths: Vec<RelPath> = match listed_pairs {
        Some(_) => plan.actions.iter().map(|a| a.path().clone()).collect(),
        None => Vec::new(),
    };
    let engine = Arc::new(Engine::new(src, dst, engine_config, Arc::clone(&reporter), journal.clone(), resumable));
    engine.run(plan).await;
    Ok(Whole::Ran(Ran { engine, held_back, src_files, listed: listed_pairs.map(|pairs| (pairs, acted_paths)) }))
}
