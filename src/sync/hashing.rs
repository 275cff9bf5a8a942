//! `--compare hash`: a digest on both sides of every pair of same-size
//! files, from the state database's cache where a file is unchanged. Where
//! the two sides share no hash algorithm, a side that cannot compute
//! blake3 itself is read through its backend and hashed here (as
//! `--verify` does): a comparison by hash is never quietly one by mtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::backend::{Backend, Entry, HashKind};
use crate::engine::for_each_parallel;
use crate::engine::report::Reporter;
use crate::error::{Error, OpError};
use crate::path::RelPath;
use crate::state::{CachedHash, Db, Side};

/// Files read at once on a side that is read to be hashed.
const READS_AT_ONCE: usize = 8;

/// Fills `hash` on every pair of same-size files, from the cache where the
/// file is unchanged (path, size, mtime, inode), else by hashing it. A
/// file that cannot be hashed is compared by mtime with a warning, or,
/// when `strict` (`check`, which must not report a match it did not
/// establish), with an error that makes the run exit non-zero.
pub(super) async fn fill_hashes(
    src: &Arc<dyn Backend>,
    dst: &Arc<dyn Backend>,
    src_entries: &mut [Entry],
    dst_entries: &mut [Entry],
    db: Option<&Db>,
    reporter: &Reporter,
    strict: bool,
) -> Result<(), Error> {
    // Pair up same-path, same-size files with one merge of the sorted lists.
    let (mut src_idx, mut dst_idx) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < src_entries.len() && j < dst_entries.len() {
        match src_entries[i].path.cmp(&dst_entries[j].path) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                let (s, d) = (&src_entries[i], &dst_entries[j]);
                if s.is_file() && d.is_file() && s.size == d.size {
                    src_idx.push(i);
                    dst_idx.push(j);
                }
                i += 1;
                j += 1;
            }
        }
    }
    let (algo, read_src, read_dst) = match HashKind::common(&src.capabilities().hashes, &dst.capabilities().hashes) {
        Some(algo) => (algo, false, false),
        None => {
            let reads = |b: &Arc<dyn Backend>| !b.capabilities().hashes.contains(&HashKind::Blake3);
            let read: Vec<String> = [src, dst].into_iter().filter(|b| reads(b)).map(|b| b.describe()).collect();
            reporter.warning(&format!(
                "--compare hash: {} and {} have no hash algorithm in common: files of the same size are read \
                 from {} and hashed here (blake3)",
                src.describe(),
                dst.describe(),
                read.join(" and ")
            ));
            (HashKind::Blake3, reads(src), reads(dst))
        }
    };
    let how = |read| if read { How::Read } else { How::Computed };
    hash_side(Side::Src, src, src_entries, &src_idx, algo, how(read_src), db, reporter, strict).await?;
    hash_side(Side::Dst, dst, dst_entries, &dst_idx, algo, how(read_dst), db, reporter, strict).await
}

/// Where a side's digests come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// The backend computes them (a server's HASH command, local disk).
    Computed,
    /// Each file is read through the backend and hashed here (blake3).
    Read,
}

#[allow(clippy::too_many_arguments)]
async fn hash_side(
    side: Side,
    backend: &Arc<dyn Backend>,
    entries: &mut [Entry],
    wanted: &[usize],
    algo: HashKind,
    how: How,
    db: Option<&Db>,
    reporter: &Reporter,
    strict: bool,
) -> Result<(), Error> {
    let cache = match db {
        Some(db) => db.load_hashes(side).await?,
        None => HashMap::new(),
    };
    // A remote file has no inode: its cached digest is keyed on size and
    // mtime alone, which a change in place can keep. `check` establishes
    // content, so it asks again there; local files (inode, nanosecond
    // mtime) keep their cache.
    let trusted = |entry: &Entry| !strict || entry.inode != 0;
    let mut missing = Vec::new();
    for &i in wanted {
        match cache.get(&entries[i].path) {
            Some(cached) if trusted(&entries[i]) && cached.is_for(&entries[i], algo) => {
                entries[i].hash = Some(cached.hash.clone().into_boxed_slice())
            }
            _ => missing.push(i),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let paths: Vec<RelPath> = missing.iter().map(|&i| entries[i].path.clone()).collect();
    let results = match how {
        How::Computed => backend.hash_files(paths, algo).await,
        How::Read => read_and_hash(backend, paths).await,
    };
    let mut fresh = Vec::new();
    for (&i, result) in missing.iter().zip(results) {
        match result {
            Ok(hash) => {
                let e = &mut entries[i];
                e.hash = Some(hash.clone().into_boxed_slice());
                fresh.push((e.path.clone(), CachedHash { size: e.size, mtime: e.mtime, inode: e.inode, algo, hash }));
            }
            Err(err) if strict => reporter.error(&format!("cannot hash, so it cannot be compared by content: {err}")),
            Err(err) => reporter.warning(&format!("cannot hash, comparing by mtime instead: {err}")),
        }
    }
    if let Some(db) = db {
        db.store_hashes(side, fresh).await?;
    }
    Ok(())
}

/// One digest per file, in the order asked.
type Digests = Vec<Result<Vec<u8>, OpError>>;

/// blake3 of each file, read through `backend` a few at a time.
async fn read_and_hash(backend: &Arc<dyn Backend>, paths: Vec<RelPath>) -> Digests {
    let slots: Vec<Option<Result<Vec<u8>, OpError>>> = (0..paths.len()).map(|_| None).collect();
    let results = Arc::new(Mutex::new(slots));
    let work: Vec<(usize, RelPath)> = paths.into_iter().enumerate().collect();
    let (backend, slots) = (Arc::clone(backend), Arc::clone(&results));
    for_each_parallel(work, READS_AT_ONCE, move |(index, path): (usize, RelPath)| {
        let (backend, slots) = (Arc::clone(&backend), Arc::clone(&slots));
        async move {
            let digest = crate::commit::read_back(backend.as_ref(), &path).await;
            slots.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(digest);
        }
    })
    .await;
    let slots = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
    slots
        .into_iter()
        .map(|slot| slot.unwrap_or_else(|| Err(OpError::new(crate::error::ErrorKind::Other, "hash", "", "not read"))))
        .collect()
}
