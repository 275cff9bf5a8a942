//! Content hashing of local files, spread over rayon's pool: blake3 (barge's
//! own), and SHA-256, SHA-1 and MD5 to compare with what FTP servers compute.
//!
//! Many files are hashed in parallel, one per rayon task; a large file is
//! itself split across the pool by blake3's own rayon support, so one huge
//! file still uses every core.

use std::path::Path;

use rayon::prelude::*;

use crate::backend::HashKind;
use crate::error::OpError;
use crate::path::RelPath;

/// Above this, one file is hashed by several threads.
const PARALLEL_FILE_THRESHOLD: u64 = 8 * 1024 * 1024;

/// What a large file is read in, each window hashed by several threads.
/// Read, not memory-mapped: a mapped file's pages count in the process's
/// resident memory, so hashing a 1 GiB file showed a 2 GiB peak RSS to
/// `/usr/bin/time` and to cgroup limits. One window in memory at a time
/// keeps it flat for any size; the copy out of the page cache costs far
/// less than the hashing.
const WINDOW: usize = 8 * 1024 * 1024;

/// blake3 of one local file.
pub fn hash_local_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::open(path)?;
    if file.metadata()?.len() >= PARALLEL_FILE_THRESHOLD {
        use std::io::Read;
        let mut window = Vec::with_capacity(WINDOW);
        loop {
            window.clear();
            (&mut file).take(WINDOW as u64).read_to_end(&mut window)?;
            if window.is_empty() {
                break;
            }
            hasher.update_rayon(&window);
        }
    } else {
        hasher.update_reader(file)?;
    }
    Ok(*hasher.finalize().as_bytes())
}

/// blake3 of each file below `root`, in the order given. Blocks: call it
/// from a blocking task.
pub fn hash_local_files(root: &Path, paths: &[RelPath]) -> Vec<Result<[u8; 32], OpError>> {
    paths.par_iter().map(|rel| hash_local_file(&rel.to_local(root)).map_err(|e| OpError::io("hash", rel, e))).collect()
}

/// Feeds a whole file to a RustCrypto digest.
fn digest_file<D: sha2::Digest>(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut digest = D::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
    }
    Ok(digest.finalize().to_vec())
}

/// One local file's digest in the given algorithm.
pub fn hash_local_file_as(path: &Path, kind: HashKind) -> std::io::Result<Vec<u8>> {
    match kind {
        HashKind::Blake3 => hash_local_file(path).map(|h| h.to_vec()),
        HashKind::Sha256 => digest_file::<sha2::Sha256>(path),
        HashKind::Sha1 => digest_file::<sha1::Sha1>(path),
        HashKind::Md5 => digest_file::<md5::Md5>(path),
    }
}

/// Digests of files below `root` in any algorithm, files in parallel.
/// Blocks: call it from a blocking task.
pub fn hash_local_files_as(root: &Path, paths: &[RelPath], kind: HashKind) -> Vec<Result<Vec<u8>, OpError>> {
    paths
        .par_iter()
        .map(|rel| hash_local_file_as(&rel.to_local(root), kind).map_err(|e| OpError::io("hash", rel, e)))
        .collect()
}

/// Lower-case hex, for messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_known_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        let hex_of = |kind| hex(&hash_local_file_as(&path, kind).unwrap());
        assert_eq!(hex_of(HashKind::Md5), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(hex_of(HashKind::Sha1), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex_of(HashKind::Sha256), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(hex_of(HashKind::Blake3), blake3::hash(b"abc").to_hex().to_string());
    }

    /// A file of several windows and a part: the same digest as hashing
    /// it in one piece.
    #[test]
    fn large_files_hash_in_windows_to_the_same_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let data: Vec<u8> = (0..(2 * WINDOW + 12_345)).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        assert_eq!(hash_local_file(&path).unwrap(), *blake3::hash(&data).as_bytes());
    }
}
