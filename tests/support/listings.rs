//! Synthetic listings for the planner benchmarks, shared by `benches/core.rs`
//! and `examples/plan_million.rs` (both include this file with `#[path]`).
//!
//! The source is `dirs` directories of `files_per_dir` files each, named like
//! a real export (`dir-0421/file-000123.dat`), in [`RelPath`] tree order. The
//! destination is the same tree with a few percent of differences: changed
//! sizes, changed mtimes, files missing and extra files. Everything is
//! derived from a fixed seed, so every run plans exactly the same input.

use barge::backend::{Entry, EntryKind, Mtime};
use barge::path::RelPath;

/// How the destination differs from the source, per file, in parts per
/// thousand (drawn independently for each file, so the counts are close to,
/// not exactly, these fractions).
pub const CHANGED_SIZE_PER_MILLE: u64 = 10;
pub const CHANGED_MTIME_PER_MILLE: u64 = 10;
pub const MISSING_PER_MILLE: u64 = 10;
pub const EXTRA_PER_MILLE: u64 = 10;

/// 2024-01-01T00:00:00Z: the newest source mtime is about a year later.
const BASE_SECS: i64 = 1_704_067_200;

/// splitmix64: a tiny deterministic generator, one value per input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A file size with a long tail: mostly a few KiB to a few MiB, some empty.
fn size_for(r: u64) -> u64 {
    let bits = r % 24; // 2^0 .. 2^23 (8 MiB)
    if bits == 0 { 0 } else { (r >> 8) % (1u64 << bits) }
}

fn mtime_for(r: u64) -> Mtime {
    let secs = BASE_SECS + (r % 31_536_000) as i64;
    Mtime::from_unix(secs, ((r >> 32) % 1_000_000_000) as u32)
}

fn file(path: RelPath, size: u64, mtime: Mtime, inode: u64) -> Entry {
    Entry {
        path,
        kind: EntryKind::File,
        size,
        mtime: Some(mtime),
        inode,
        coarse_mtime_s: 0,
        hash: None,
        link_target: None,
        mode: None,
        owner: None,
    }
}

/// The pair of listings; `(src, dst)`, both sorted in tree order.
pub fn listings(dirs: usize, files_per_dir: usize) -> (Vec<Entry>, Vec<Entry>) {
    let total = dirs * (files_per_dir + 1);
    let mut src = Vec::with_capacity(total);
    let mut dst = Vec::with_capacity(total + total / 50);
    let root = RelPath::root();
    let mut inode = 1_000u64;
    for d in 0..dirs {
        let dir_path = root.join(format!("dir-{d:04}").as_bytes()).expect("valid name");
        let dir_mtime = mtime_for(mix(d as u64 ^ 0xd1d1));
        let dir = Entry {
            path: dir_path.clone(),
            kind: EntryKind::Dir,
            size: 0,
            mtime: Some(dir_mtime),
            inode,
            coarse_mtime_s: 0,
            hash: None,
            link_target: None,
            mode: None,
            owner: None,
        };
        inode += 1;
        src.push(dir.clone());
        dst.push(Entry { inode: inode + 10_000_000, ..dir });
        for f in 0..files_per_dir {
            let r = mix(((d as u64) << 32) | f as u64);
            let path = dir_path.join(format!("file-{f:06}.dat").as_bytes()).expect("valid name");
            let size = size_for(r);
            let mtime = mtime_for(r >> 7);
            inode += 1;
            let roll = mix(r) % 1000;
            let s = file(path, size, mtime, inode);
            let extra = (990 - EXTRA_PER_MILLE..990)
                .contains(&roll)
                .then(|| s.path.parent().join(format!("file-{f:06}.old").as_bytes()).expect("valid name"));
            match roll {
                r if r < CHANGED_SIZE_PER_MILLE => dst.push(Entry { size: size + 1, ..s.clone() }),
                r if r < CHANGED_SIZE_PER_MILLE + CHANGED_MTIME_PER_MILLE => {
                    dst.push(Entry { mtime: Some(Mtime(mtime.0 - 1_000_000_000)), ..s.clone() })
                }
                r if r < CHANGED_SIZE_PER_MILLE + CHANGED_MTIME_PER_MILLE + MISSING_PER_MILLE => {}
                _ => dst.push(Entry { inode: inode + 10_000_000, ..s.clone() }),
            }
            src.push(s);
            // `file-000123.old` sorts right after `file-000123.dat`.
            if let Some(path) = extra {
                dst.push(file(path, size_for(mix(r ^ 1)), mtime, inode + 20_000_000));
            }
        }
    }
    (src, dst)
}

/// Panics unless the listing is strictly increasing in tree order.
pub fn assert_tree_order(entries: &[Entry]) {
    assert!(entries.windows(2).all(|w| w[0].path < w[1].path), "listing is not in tree order");
}
