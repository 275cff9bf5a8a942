//! Names of barge's temporaries. They are deterministic per target
//! (`.barge-<16 hex>.part`, the hex from blake3 of the target path), so the
//! next run recognises the temporary of an interrupted transfer and resumes
//! it, or removes it; a segmented copy's temporary (`.segs`) is never
//! resumed as a prefix. Backends need the names too (walks leave them out,
//! probes are named like them), so they live here, below the commit step.

use crate::path::RelPath;

const TEMP_PREFIX: &[u8] = b".barge-";
const TEMP_SUFFIX: &[u8] = b".part";
/// A segmented copy's temporary: written at offsets, so it may hold holes
/// anywhere and is never resumed as a prefix (a later run removes it).
const SEGMENTED_SUFFIX: &[u8] = b".segs";
const TEMP_HEX_LEN: usize = 16;

/// The temporary name for `target`, in the same directory.
pub fn temp_path(target: &RelPath) -> RelPath {
    temp_with_suffix(target, TEMP_SUFFIX)
}

/// The temporary of a segmented copy of `target`: a name of its own, so
/// it is never taken for a resumable prefix (see [`SEGMENTED_SUFFIX`]).
pub fn segmented_temp_path(target: &RelPath) -> RelPath {
    temp_with_suffix(target, SEGMENTED_SUFFIX)
}

fn temp_with_suffix(target: &RelPath, suffix: &[u8]) -> RelPath {
    let digest = blake3::hash(target.as_bytes());
    let mut name = TEMP_PREFIX.to_vec();
    name.extend_from_slice(&digest.to_hex().as_bytes()[..TEMP_HEX_LEN]);
    name.extend_from_slice(suffix);
    // The name is ASCII hex between fixed ASCII parts: always a valid component.
    target.parent().join(&name).unwrap_or_default()
}

/// A scratch file beside `target` for trying out how the destination
/// writes (see [`super::SegmentedWrite::works`]): named as a segmented
/// temporary, so that a run killed while it exists leaves nothing a later
/// run would not remove.
pub fn probe_path(target: &RelPath) -> RelPath {
    let stand_in = target.parent().join(b"barge write probe").unwrap_or_default();
    temp_with_suffix(&stand_in, SEGMENTED_SUFFIX)
}

/// True for names barge uses for its temporaries.
pub fn is_temp_name(name: &[u8]) -> bool {
    [TEMP_SUFFIX, SEGMENTED_SUFFIX].iter().any(|suffix| {
        name.len() == TEMP_PREFIX.len() + TEMP_HEX_LEN + suffix.len()
            && name.starts_with(TEMP_PREFIX)
            && name.ends_with(suffix)
            && name[TEMP_PREFIX.len()..TEMP_PREFIX.len() + TEMP_HEX_LEN].iter().all(u8::is_ascii_hexdigit)
    })
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
