//! `barge plan --shard-stats N`: how a tree would split over N shards at
//! `--shard-depth`, to pick the depth before the machines are set up: the
//! files and bytes each shard would own (the job's other filters
//! applied), and how many directories above the depth every shard walks.

use std::sync::Arc;

use crate::backend::{self, MissingRoot};
use crate::engine::report::Reporter;
use crate::error::{Error, exit};
use crate::plan::filter::Shard;
use crate::units::human_bytes;

use super::Job;

/// What one shard would own.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
struct Share {
    files: u64,
    bytes: u64,
}

/// Lists the source and prints the split; exit 0, or the listing's error.
pub async fn shard_stats(job: Job, count: u32, depth: u32, reporter: &Arc<Reporter>, json: bool) -> Result<i32, Error> {
    let unreachable = |source| Error::Unreachable { side: "source", location: job.src.to_string(), source };
    let source = backend::open(&job.src, MissingRoot::Fail, &job.src_remote).await.map_err(unreachable)?;
    let listing = source.walk().await.map_err(unreachable)?;
    for (dir, err) in &listing.unreadable {
        reporter.warning(&format!("{dir}: not listed: {err}"));
    }
    let shard = Shard { index: 0, count, depth: depth.max(1) };
    let mut shares = vec![Share::default(); count as usize];
    let mut shared_dirs = 0u64;
    for entry in job.filter.without_shard().apply(listing.entries) {
        if entry.is_dir() {
            shared_dirs += u64::from(entry.path.depth() < shard.depth as usize);
            continue;
        }
        let share = &mut shares[shard.index_of(&entry.path, count) as usize];
        share.files += 1;
        share.bytes += entry.size;
    }
    let files: u64 = shares.iter().map(|s| s.files).sum();
    if json {
        let value = serde_json::json!({
            "type": "shard-stats",
            "shards": count,
            "depth": shard.depth,
            "files": files,
            "shared_dirs": shared_dirs,
            "per_shard": shares,
        });
        println!("{value}");
        return Ok(exit::OK);
    }
    println!("{count} shards at depth {} of {} ({files} files):", shard.depth, job.src);
    for (index, share) in shares.iter().enumerate() {
        let percent = if files == 0 { 0.0 } else { share.files as f64 * 100.0 / files as f64 };
        println!("  {index}/{count}  {:>9} files  {percent:>5.1} %  {:>10}", share.files, human_bytes(share.bytes));
    }
    println!("{shared_dirs} directories above depth {} are walked by every shard", shard.depth);
    Ok(exit::OK)
}
