//! What a run prints and counts at its end: the `plan` and `check`
//! listings with their summaries, and the transfer statistics of a sync.

use std::time::Instant;

use crate::backend::{Backend, EntryKind};
use crate::engine::report::{Reporter, Summary, TransferStats};
use crate::engine::{ConcurrencyOutcome, Engine};
use crate::error::exit;
use crate::plan::{Action, Plan, Reason};

use super::Outcome;

pub(super) fn transfer_stats(engine: &Engine, summary: &Summary, concurrency: ConcurrencyOutcome) -> TransferStats {
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

pub(super) fn print_plan(plan: &Plan, reporter: &Reporter, started: Instant) -> Outcome {
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
        Action::Copy { .. }
        | Action::SetMtime { kind: EntryKind::File, .. }
        | Action::SetMode { .. }
        | Action::SetOwner { .. }
        | Action::Conflict { .. } => Some("differs"),
        Action::Delete { reason: Reason::Extraneous, .. } => Some("extra"),
        // Replacements come with the copy or mkdir that reports them;
        // directory mtimes and skipped links are not content.
        Action::Delete { .. } | Action::SetMtime { .. } | Action::Skip { .. } | Action::RemoveSource { .. } => None,
    }
}

pub(super) fn print_check(plan: &Plan, reporter: &Reporter, started: Instant) -> Outcome {
    let (mut differences, mut extra) = (0u64, 0u64);
    for action in &plan.actions {
        if let Some(word) = difference(action) {
            differences += 1;
            extra += u64::from(word == "extra");
            reporter.difference(word, action);
        }
    }
    if extra > 0 {
        // A sync without --delete leaves them, and check counts them.
        reporter.info(&format!("{extra} destination entries are not in the source: a sync with --delete removes them"));
    }
    let mut summary = reporter.summary(started.elapsed());
    summary.kind = "check";
    summary.files_unchanged = plan.unchanged;
    summary.differences = Some(differences);
    reporter.print_summary(&summary);
    let exit_code = if summary.errors == 0 && differences == 0 { exit::OK } else { exit::PARTIAL };
    Outcome { summary, exit_code }
}

/// One warning per run for the links the destination cannot hold; each
/// one is named by its own skip line (log, `--json`, `-v`).
pub(super) fn warn_unlinkable(count: u64, dst: &dyn Backend, reporter: &Reporter) {
    if count > 0 {
        reporter.warning(&format!(
            "{count} symbolic links skipped: {} cannot hold symbolic links (--links skip silences this)",
            dst.describe()
        ));
    }
}
