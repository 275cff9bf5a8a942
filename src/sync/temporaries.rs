//! barge's own temporaries found in the destination's listing: those no
//! copy of this run takes over (a copy renames its own, or resumes a large
//! one) are debris of a killed run, removed unless a live run may still be
//! writing them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::{Backend, Entry};
use crate::engine::for_each_parallel;
use crate::engine::report::Reporter;
use crate::plan::filter::Shard;

/// How long a temporary on a server may go unwritten and still be another
/// run's live one: twice the `--timeout` (a live transfer that stalls
/// longer is given up), and never under ten minutes (the server's clock
/// and ours may disagree).
fn live_window(timeout: Duration) -> Duration {
    timeout.saturating_mul(2).max(Duration::from_secs(600))
}

/// Removes the destination's temporaries that no run of this plan took
/// over and no live run holds; returns how many were left. On local disk
/// a live writer's lock says so. A server cannot tell: there every stale
/// temporary goes, except in a sharded run, where one this shard does not
/// own (another shard may be writing it right now) goes only once it has
/// not been written for the live window.
pub(super) async fn clean_temporaries(
    dst: &Arc<dyn Backend>,
    temps: Vec<Entry>,
    shard: Option<Shard>,
    timeout: Duration,
    parallel: usize,
) -> u64 {
    let now = crate::units::unix_now_secs();
    let window = i64::try_from(live_window(timeout).as_secs()).unwrap_or(i64::MAX);
    let may_be_live = |temp: &Entry| {
        // A temporary's name is not its target's: only below the prefix
        // that decides the owner does it share its target's owner.
        let owned = shard.is_none_or(|shard| temp.path.depth() > shard.depth as usize && shard.owns(&temp.path));
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
    let held = Arc::new(AtomicU64::new(0));
    let (cleanup, counted) = (Arc::clone(dst), Arc::clone(&held));
    for_each_parallel(removable, parallel, move |temp: Entry| {
        let (dst, held) = (Arc::clone(&cleanup), Arc::clone(&counted));
        async move {
            if let Ok(false) = dst.remove_abandoned_temp(&temp.path).await {
                held.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await;
    left + held.load(Ordering::Relaxed)
}

/// Says how many temporaries were left to a live run (or to another shard).
pub(super) fn report_temporaries_left(left: u64, dst: &dyn Backend, reporter: &Reporter) {
    if left > 0 {
        reporter.stats.temporaries_left.store(left, Ordering::Relaxed);
        reporter.warning(&format!(
            "{left} barge temporaries in {} were left alone: another run may be writing them (a later run \
             removes them once it is not)",
            dst.describe()
        ));
    }
}
