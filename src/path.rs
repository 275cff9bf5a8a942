//! Relative paths inside a sync root, as bytes.
//!
//! Remote servers send names that are not UTF-8, and hostile ones send `..`,
//! `/` or NUL inside a name. A [`RelPath`] is only ever built from validated
//! components, so code that joins it to a root can never escape that root.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why a name from a listing was refused as a path component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadName {
    #[error("empty name")]
    Empty,
    #[error("name is `.` or `..`")]
    Dot,
    #[error("name contains `/`")]
    Slash,
    #[error("name contains a NUL byte")]
    Nul,
    #[error("name is {0} bytes long; no file system holds a name of more than {MAX_NAME_BYTES}")]
    TooLong(usize),
}

/// The longest name (one component) any destination can hold: ext4, XFS,
/// btrfs and the servers on them stop at 255 bytes. A longer name from a
/// listing cannot be copied anywhere, and sent back to a server in a
/// command it would not fit in one line either.
pub const MAX_NAME_BYTES: usize = 255;

/// The longest relative path a walk lists: Linux's PATH_MAX, so no Linux
/// server could open one by its name nor a local destination hold it. Long
/// names would otherwise grow the path (and every entry listed below it)
/// without bound long before the walk's depth cap.
pub const MAX_PATH_BYTES: usize = 4096;

/// Checks that `name` can stand as one path component on every backend.
pub fn check_component(name: &[u8]) -> Result<(), BadName> {
    match name {
        [] => Err(BadName::Empty),
        b"." | b".." => Err(BadName::Dot),
        _ if name.contains(&b'/') => Err(BadName::Slash),
        _ if name.contains(&0) => Err(BadName::Nul),
        _ if name.len() > MAX_NAME_BYTES => Err(BadName::TooLong(name.len())),
        _ => Ok(()),
    }
}

/// A path relative to a sync root: `/`-separated, validated components, no
/// leading or trailing slash. The empty path is the root itself.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct RelPath(Vec<u8>);

impl RelPath {
    /// The root of the tree.
    pub fn root() -> Self {
        RelPath(Vec::new())
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses a `/`-separated relative path, validating every component.
    pub fn parse(bytes: &[u8]) -> Result<Self, BadName> {
        let mut path = RelPath::root();
        for part in bytes.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            path = path.join(part)?;
        }
        Ok(path)
    }

    /// `self/name`, refusing a `name` that is not a single safe component.
    pub fn join(&self, name: &[u8]) -> Result<Self, BadName> {
        check_component(name)?;
        let mut bytes = Vec::with_capacity(self.0.len() + 1 + name.len());
        bytes.extend_from_slice(&self.0);
        if !bytes.is_empty() {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(name);
        Ok(RelPath(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The last component (empty for the root).
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// The parent directory (the root's parent is the root).
    pub fn parent(&self) -> RelPath {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => RelPath(self.0[..i].to_vec()),
            None => RelPath::root(),
        }
    }

    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// Number of components: 0 for the root.
    pub fn depth(&self) -> usize {
        if self.0.is_empty() { 0 } else { self.0.iter().filter(|&&b| b == b'/').count() + 1 }
    }

    /// True when `self` is `ancestor` or lies below it.
    pub fn starts_with(&self, ancestor: &RelPath) -> bool {
        ancestor.is_root()
            || (self.0.starts_with(&ancestor.0)
                && (self.0.len() == ancestor.0.len() || self.0[ancestor.0.len()] == b'/'))
    }

    /// This path below a local root directory.
    pub fn to_local(&self, root: &Path) -> PathBuf {
        if self.0.is_empty() { root.to_path_buf() } else { root.join(OsStr::from_bytes(&self.0)) }
    }

    /// Compares component by component, so a directory sorts immediately
    /// before its contents (`a` < `a/b` < `a-b`): a sorted listing is a
    /// pre-order walk and two of them merge in one pass.
    pub fn cmp_tree(&self, other: &RelPath) -> Ordering {
        self.components().cmp(other.components())
    }

    /// A printable, unambiguous-enough form: UTF-8 kept, invalid bytes and
    /// control characters shown as `\xNN` so a hostile name cannot drive the
    /// terminal or forge a log line.
    pub fn display(&self) -> DisplayBytes<'_> {
        DisplayBytes(&self.0)
    }
}

impl Ord for RelPath {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_tree(other)
    }
}

impl PartialOrd for RelPath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.display())
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() { f.write_str(".") } else { self.display().fmt(f) }
    }
}

/// See [`RelPath::display`].
pub struct DisplayBytes<'a>(pub &'a [u8]);

/// Bytes from outside (a name a listing refused, a raw listing line) for a
/// message: escaped as [`DisplayBytes`] and cut to [`Shortened::KEEP`]
/// bytes with the full length said, so a 10 MiB name is not 10 MiB of
/// stderr, log and JSON.
pub struct Shortened<'a>(pub &'a [u8]);

impl Shortened<'_> {
    pub const KEEP: usize = 256;
}

impl fmt::Display for Shortened<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.get(..Self::KEEP) {
            Some(kept) if kept.len() < self.0.len() => {
                write!(f, "{}\u{2026}({} bytes)", DisplayBytes(kept), self.0.len())
            }
            _ => DisplayBytes(self.0).fmt(f),
        }
    }
}

impl fmt::Display for DisplayBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No path barge keeps is longer (the walks stop there):
        // anything longer came from outside and is cut.
        if self.0.len() > MAX_PATH_BYTES {
            return Shortened(self.0).fmt(f);
        }
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        write!(f, "\\x{b:02x}")?;
                    }
                } else {
                    f.write_fmt(format_args!("{c}"))?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unsafe_components() {
        assert_eq!(check_component(b""), Err(BadName::Empty));
        assert_eq!(check_component(b".."), Err(BadName::Dot));
        assert_eq!(check_component(b"."), Err(BadName::Dot));
        assert_eq!(check_component(b"a/b"), Err(BadName::Slash));
        assert_eq!(check_component(b"a\0b"), Err(BadName::Nul));
        assert!(check_component(b"...").is_ok());
        assert!(check_component(b"\xff\xfe").is_ok());
        assert!(RelPath::parse(b"a/../b").is_err());
        assert_eq!(RelPath::parse(b"/a//b/").unwrap().as_bytes(), b"a/b");
    }

    #[test]
    fn tree_order_puts_contents_right_after_their_directory() {
        let mut paths: Vec<RelPath> =
            ["a-b", "a/b", "a", "a/b/c", "b", "a.txt"].iter().map(|p| RelPath::parse(p.as_bytes()).unwrap()).collect();
        paths.sort();
        let shown: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["a", "a/b", "a/b/c", "a-b", "a.txt", "b"]);
    }

    #[test]
    fn parent_name_depth_and_prefix() {
        let p = RelPath::parse(b"x/y/z").unwrap();
        assert_eq!(p.file_name(), b"z");
        assert_eq!(p.parent().as_bytes(), b"x/y");
        assert_eq!(p.depth(), 3);
        assert!(p.starts_with(&RelPath::parse(b"x/y").unwrap()));
        assert!(!p.starts_with(&RelPath::parse(b"x/yy").unwrap()));
        assert!(p.starts_with(&RelPath::root()));
        assert_eq!(RelPath::root().depth(), 0);
    }

    #[test]
    fn long_names_are_refused_and_shortened_in_messages() {
        assert!(check_component(&[b'n'; MAX_NAME_BYTES]).is_ok());
        let long = vec![b'n'; 10 << 20];
        assert_eq!(check_component(&long), Err(BadName::TooLong(10 << 20)));
        let shown = Shortened(&long).to_string();
        assert!(shown.len() < 300 && shown.ends_with("\u{2026}(10485760 bytes)"), "{shown}");
        assert_eq!(Shortened(b"short\r\n").to_string(), "short\\x0d\\x0a");
    }

    #[test]
    fn display_escapes_invalid_and_control_bytes() {
        let p = RelPath::parse(b"caf\xc3\xa9/\xff\x1b[31m").unwrap();
        assert_eq!(p.to_string(), "caf\u{e9}/\\xff\\x1b[31m");
    }
}
