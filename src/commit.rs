//! Atomic commit: a file is written under a temporary name beside its final
//! name, made durable, given its mtime, and only then renamed into place. A
//! final name never holds a partial file, whatever kills the run.
//!
//! Temporary names are deterministic per target (`.barge-<16 hex>.part`, the
//! hex from blake3 of the target path), so the next run recognises the
//! temporary of an interrupted transfer and resumes it, or removes it.

use crate::backend::{Backend, Entry, Mtime};
use crate::engine::throttle::Throttle;
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;

const TEMP_PREFIX: &[u8] = b".barge-";
const TEMP_SUFFIX: &[u8] = b".part";
const TEMP_HEX_LEN: usize = 16;

/// Size of the buffers moved between reader and writer.
pub const CHUNK_SIZE: usize = 1024 * 1024;

/// Resuming checks that this much of the partial file, just before the
/// resume point, matches the source.
const RESUME_VERIFY_BYTES: u64 = 64 * 1024;

/// The temporary name for `target`, in the same directory.
pub fn temp_path(target: &RelPath) -> RelPath {
    let digest = blake3::hash(target.as_bytes());
    let mut name = TEMP_PREFIX.to_vec();
    name.extend_from_slice(&digest.to_hex().as_bytes()[..TEMP_HEX_LEN]);
    name.extend_from_slice(TEMP_SUFFIX);
    // The name is ASCII hex between fixed ASCII parts: always a valid component.
    target.parent().join(&name).unwrap_or_default()
}

/// True for names barge uses for its temporaries.
pub fn is_temp_name(name: &[u8]) -> bool {
    name.len() == TEMP_PREFIX.len() + TEMP_HEX_LEN + TEMP_SUFFIX.len()
        && name.starts_with(TEMP_PREFIX)
        && name.ends_with(TEMP_SUFFIX)
        && name[TEMP_PREFIX.len()..TEMP_PREFIX.len() + TEMP_HEX_LEN].iter().all(u8::is_ascii_hexdigit)
}

/// What a committed copy left on the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Bytes moved in this attempt (less than the size when resumed).
    pub bytes_moved: u64,
    pub dst_size: u64,
    /// The destination's mtime after the commit, when known.
    pub dst_mtime: Option<Mtime>,
}

/// Copies `src` to the same path on `dst`, atomically. `resume_from` is the
/// length of a partial temporary to continue, 0 to start afresh; a partial
/// whose tail does not match the source is started afresh anyway.
pub async fn copy_file(
    src_backend: &dyn Backend,
    dst_backend: &dyn Backend,
    src: &Entry,
    resume_from: u64,
    throttle: Option<&Throttle>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<Committed, OpError> {
    let temp = temp_path(&src.path);
    let mut offset = resume_from.min(src.size);
    if offset > 0 && !tails_match(src_backend, dst_backend, &src.path, &temp, offset).await? {
        offset = 0;
    }
    let mut reader = src_backend.open_read(&src.path, offset).await?;
    let mut writer = dst_backend.open_write(&temp, offset).await?;
    let mut buf = Vec::with_capacity(CHUNK_SIZE);
    let mut written = offset;
    loop {
        buf = reader.read(buf).await?;
        if buf.is_empty() {
            break;
        }
        let len = buf.len() as u64;
        if let Some(throttle) = throttle {
            throttle.consume(len).await;
        }
        buf = writer.write(buf).await?;
        written += len;
        on_bytes(len);
        if written > src.size {
            break;
        }
    }
    if written != src.size {
        // The source grew or shrank under us: never commit a torn copy.
        drop(writer);
        let _ = dst_backend.remove_file(&temp).await;
        return Err(OpError::new(
            ErrorKind::SourceChanged,
            "copy",
            &src.path,
            format!("source changed while copying: expected {} bytes, read {written}", src.size),
        ));
    }
    let wanted = if dst_backend.capabilities().set_mtime { src.mtime } else { None };
    let mut dst_mtime = writer.finish(wanted).await?;
    dst_backend.rename(&temp, &src.path).await?;
    if dst_mtime.is_none() {
        // The destination keeps its own time: remember the one it shows, so
        // the state database can vouch for this copy on the next run.
        dst_mtime = dst_backend.stat(&src.path).await.ok().flatten().and_then(|e| e.mtime);
    }
    Ok(Committed { bytes_moved: written - offset, dst_size: written, dst_mtime })
}

/// Compares the bytes just before `offset` in the source and the partial.
async fn tails_match(
    src_backend: &dyn Backend,
    dst_backend: &dyn Backend,
    path: &RelPath,
    temp: &RelPath,
    offset: u64,
) -> Result<bool, OpError> {
    let start = offset.saturating_sub(RESUME_VERIFY_BYTES);
    let want = usize::try_from(offset - start).unwrap_or(0);
    let theirs = match dst_backend.open_read(temp, start).await {
        Ok(reader) => read_span(reader, want).await?,
        Err(err) if err.kind == ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    let ours = read_span(src_backend.open_read(path, start).await?, want).await?;
    Ok(ours.len() == want && ours == theirs)
}

/// Reads up to `want` bytes (fewer only at end of file).
async fn read_span(mut reader: Box<dyn crate::backend::FileReader>, want: usize) -> Result<Vec<u8>, OpError> {
    let mut out = Vec::with_capacity(want);
    while out.len() < want {
        let chunk = reader.read(Vec::with_capacity(want - out.len())).await?;
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    out.truncate(want);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_deterministic_recognisable_and_beside_the_target() {
        let target = RelPath::parse(b"dir/file.bin").unwrap();
        let temp = temp_path(&target);
        assert_eq!(temp, temp_path(&target));
        assert_eq!(temp.parent(), target.parent());
        assert!(is_temp_name(temp.file_name()));
        assert_ne!(temp, temp_path(&RelPath::parse(b"dir/other.bin").unwrap()));
        assert!(!is_temp_name(b".barge-xyz.part"));
        assert!(!is_temp_name(b"file.part"));
    }
}
