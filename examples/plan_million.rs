//! Plans two synthetic 1,000,000-file listings once and prints the time and
//! the process's peak resident memory (VmHWM), which includes the listings
//! themselves: the honest number for "how much memory does planning a
//! million files take".
//!
//! ```text
//! cargo run --release --example plan_million [-- [--synced] [DIRS FILES_PER_DIR]]
//! ```
//!
//! `--synced` also fills the state map (`synced`) with one record per source
//! file, as `barge sync` loads it from the state database after a first
//! sync, to show what that adds to the time and the peak.
//!
//! Prints one line of `key=value` pairs (easy to grep from a script).

#[path = "../tests/support/listings.rs"]
mod listings;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use barge::path::RelPath;
use barge::plan::SyncedRecord;
use barge::plan::{Action, CompareMode, CompareRule, LinkRule, PermRule, PlanInput, plan};

/// A `VmHWM`/`VmRSS`-style line of /proc/self/status, in MiB.
fn status_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_synced = args.iter().any(|a| a == "--synced");
    let numbers: Vec<usize> =
        args.iter().filter(|a| *a != "--synced").map(|a| a.parse().expect("DIRS FILES_PER_DIR")).collect();
    let (dirs, files) = (numbers.first().copied().unwrap_or(1_000), numbers.get(1).copied().unwrap_or(1_000));

    let started = Instant::now();
    let (src, dst) = listings::listings(dirs, files);
    listings::assert_tree_order(&src);
    listings::assert_tree_order(&dst);
    let built = started.elapsed();
    let (src_len, dst_len) = (src.len(), dst.len());
    let rss_listings = status_mib("VmRSS:").unwrap_or(f64::NAN);
    let rss_listings_hwm = status_mib("VmHWM:").unwrap_or(f64::NAN);

    let started = Instant::now();
    let synced: HashMap<RelPath, SyncedRecord> = if with_synced {
        src.iter()
            .filter(|e| e.is_file())
            .map(|e| (e.path.clone(), SyncedRecord::new(e, e.size, e.mtime, e.mode)))
            .collect()
    } else {
        HashMap::new()
    };
    let synced_len = synced.len();
    let synced_built = started.elapsed();
    let rss_inputs = status_mib("VmRSS:").unwrap_or(f64::NAN);
    let hwm_inputs = status_mib("VmHWM:").unwrap_or(f64::NAN);
    let rule = CompareRule::new(CompareMode::Mtime, Duration::from_nanos(1), Duration::from_nanos(1), true);
    let started = Instant::now();
    let plan = plan(PlanInput {
        src,
        dst,
        src_unreadable: &[],
        synced: &synced,
        rule,
        delete: true,
        links: LinkRule::default(),
        perms: PermRule::default(),
    });
    let planned = started.elapsed();

    let count = |f: fn(&Action) -> bool| plan.actions.iter().filter(|a| f(a)).count();
    let copies = count(|a| matches!(a, Action::Copy { .. }));
    let deletes = count(|a| matches!(a, Action::Delete { .. }));
    let set_mtimes = count(|a| matches!(a, Action::SetMtime { .. }));
    println!(
        "src_entries={src_len} dst_entries={dst_len} synced_records={synced_len} build_s={:.3} synced_s={:.3} plan_s={:.3} \
         actions={} copies={copies} deletes={deletes} set_mtimes={set_mtimes} unchanged={} \
         rss_listings_mib={rss_listings:.1} hwm_listings_mib={rss_listings_hwm:.1} rss_inputs_mib={rss_inputs:.1} \
         hwm_inputs_mib={hwm_inputs:.1} peak_rss_mib={:.1}",
        built.as_secs_f64(),
        synced_built.as_secs_f64(),
        planned.as_secs_f64(),
        plan.actions.len(),
        plan.unchanged,
        status_mib("VmHWM:").unwrap_or(f64::NAN),
    );
}
