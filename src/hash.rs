//! Content hashing (blake3) of local files, spread over rayon's pool.
//!
//! Many files are hashed in parallel, one per rayon task; a large file is
//! itself split across the pool by blake3's own rayon support, so one huge
//! file still uses every core.

use std::path::Path;

use rayon::prelude::*;

use crate::error::OpError;
use crate::path::RelPath;

/// Above this, one file is hashed by several threads (memory-mapped).
const PARALLEL_FILE_THRESHOLD: u64 = 8 * 1024 * 1024;

/// blake3 of one local file.
pub fn hash_local_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let size = std::fs::metadata(path)?.len();
    if size >= PARALLEL_FILE_THRESHOLD {
        hasher.update_mmap_rayon(path)?;
    } else {
        hasher.update_reader(std::fs::File::open(path)?)?;
    }
    Ok(*hasher.finalize().as_bytes())
}

/// blake3 of each file below `root`, in the order given. Blocks: call it
/// from a blocking task.
pub fn hash_local_files(root: &Path, paths: &[RelPath]) -> Vec<Result<[u8; 32], OpError>> {
    paths.par_iter().map(|rel| hash_local_file(&rel.to_local(root)).map_err(|e| OpError::io("hash", rel, e))).collect()
}
