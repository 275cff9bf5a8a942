//! Which permission bits a copy keeps, and `--chmod`: changes applied to
//! the source's bits on their way to the destination, in rsync's syntax
//! (`D755,F644`, `Fgo-w`, `Du+rwx,Dgo+rx`, `a+X`).

use std::sync::Arc;

/// The permission bits a run keeps (`0o777`, or `0o7777` with
/// `--perms-all`) and the `--chmod` changes applied to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Perms {
    pub mask: u32,
    pub chmod: Option<Arc<Chmod>>,
}

impl Perms {
    pub fn new(mask: u32) -> Perms {
        Perms { mask, chmod: None }
    }

    /// The bits an entry whose source has `mode` (`None`: not listed)
    /// gets; `None` when nothing says what they should be.
    pub fn wanted(&self, mode: Option<u32>, is_dir: bool) -> Option<u32> {
        let wanted = match (&self.chmod, mode) {
            (Some(chmod), mode) => chmod.apply(mode.unwrap_or(if is_dir { 0o755 } else { 0o644 }), is_dir),
            (None, Some(mode)) => mode,
            (None, None) => return None,
        };
        Some(wanted & self.mask)
    }
}

/// `--owner`, `--group` and `--numeric-ids`: which ids a run keeps, and
/// whether by name (the default, where both sides have names) or number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owners {
    pub user: bool,
    pub group: bool,
    pub numeric: bool,
}

impl Owners {
    /// Any id is kept.
    pub fn any(&self) -> bool {
        self.user || self.group
    }

    /// The ids an entry owned by `src` gets: `(uid, gid)`, each `None`
    /// when not kept; `None` when none is.
    pub fn wanted(&self, src: Option<crate::backend::Owner>) -> Option<crate::backend::owners::GivenIds> {
        let src = src.filter(|_| self.any())?;
        Some((self.user.then_some(src.uid), self.group.then_some(src.gid)))
    }
}

/// A parsed `--chmod` list, applied clause by clause.
#[derive(Debug, PartialEq, Eq)]
pub struct Chmod(Vec<Clause>);

#[derive(Debug, PartialEq, Eq)]
struct Clause {
    /// `D` or `F`: directories only, files only.
    dirs: Option<bool>,
    change: Change,
}

#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// An octal mode.
    Set(u32),
    /// `[ugoa]*[-+=][rwxXst]*`.
    Symbolic { who: u32, op: u8, perms: Vec<u8> },
}

impl Chmod {
    /// `D755,F644`, `u+x`, `go-w` ...; an error names the bad clause.
    pub fn parse(text: &str) -> Result<Chmod, String> {
        let mut clauses = Vec::new();
        for item in text.split(',') {
            let bad = || format!("--chmod: `{item}` is not a mode change (examples: D755,F644 or Fgo-w or a+X)");
            let (dirs, rest) = match item.as_bytes().first() {
                Some(b'D') => (Some(true), &item[1..]),
                Some(b'F') => (Some(false), &item[1..]),
                _ => (None, item),
            };
            let change = if !rest.is_empty() && rest.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                let mode = u32::from_str_radix(rest, 8).map_err(|_| bad())?;
                if mode > 0o7777 {
                    return Err(bad());
                }
                Change::Set(mode)
            } else {
                let at = rest.find(['+', '-', '=']).ok_or_else(bad)?;
                let (who, rest) = rest.split_at(at);
                let mut mask = 0;
                for c in who.bytes() {
                    mask |= match c {
                        b'u' => 0o4700,
                        b'g' => 0o2070,
                        b'o' => 0o0007,
                        b'a' => 0o7777,
                        _ => return Err(bad()),
                    };
                }
                let perms = rest.as_bytes()[1..].to_vec();
                if !perms.iter().all(|c| b"rwxXst".contains(c)) {
                    return Err(bad());
                }
                Change::Symbolic { who: if mask == 0 { 0o7777 } else { mask }, op: rest.as_bytes()[0], perms }
            };
            clauses.push(Clause { dirs, change });
        }
        Ok(Chmod(clauses))
    }

    /// `mode` after every clause that applies to this kind of entry.
    pub fn apply(&self, mut mode: u32, is_dir: bool) -> u32 {
        for clause in self.0.iter().filter(|c| c.dirs.is_none_or(|dirs| dirs == is_dir)) {
            mode = match &clause.change {
                Change::Set(set) => *set,
                Change::Symbolic { who, op, perms } => {
                    let mut bits = 0;
                    for c in perms {
                        bits |= match c {
                            b'r' => 0o444,
                            b'w' => 0o222,
                            b'x' => 0o111,
                            b'X' if is_dir || mode & 0o111 != 0 => 0o111,
                            b's' => 0o6000,
                            b't' => 0o1000,
                            _ => 0,
                        };
                    }
                    let bits = bits & who;
                    match op {
                        b'+' => mode | bits,
                        b'-' => mode & !bits,
                        _ => (mode & !(who & 0o777)) | bits,
                    }
                }
            };
        }
        mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(text: &str) -> Chmod {
        Chmod::parse(text).unwrap()
    }

    #[test]
    fn octal_by_kind() {
        let c = chmod("D755,F644");
        assert_eq!(c.apply(0o700, true), 0o755);
        assert_eq!(c.apply(0o600, false), 0o644);
    }

    #[test]
    fn symbolic_like_chmod() {
        assert_eq!(chmod("go-w").apply(0o777, false), 0o755);
        assert_eq!(chmod("u+x").apply(0o644, false), 0o744);
        assert_eq!(chmod("a+X").apply(0o644, false), 0o644, "X: no x yet on a file");
        assert_eq!(chmod("a+X").apply(0o744, false), 0o755);
        assert_eq!(chmod("a+X").apply(0o700, true), 0o711);
        assert_eq!(chmod("Fo=r").apply(0o666, false), 0o664);
        assert_eq!(chmod("Fo=r").apply(0o777, true), 0o777, "F: files only");
        assert_eq!(chmod("u+s").apply(0o755, false), 0o4755);
        assert_eq!(chmod("+t").apply(0o777, true), 0o1777);
    }

    #[test]
    fn clauses_apply_in_order() {
        assert_eq!(chmod("F600,Fg+r").apply(0o777, false), 0o640);
    }

    #[test]
    fn bad_clauses_are_named() {
        for bad in ["", "D", "9", "D8", "u*x", "q+r", "u+z", "17777"] {
            let err = Chmod::parse(bad).unwrap_err();
            assert!(err.contains("--chmod"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_mask_and_unlisted_sources() {
        let perms = Perms { mask: 0o777, chmod: Some(Arc::new(chmod("D755,F644"))) };
        assert_eq!(perms.wanted(Some(0o4700), false), Some(0o644));
        assert_eq!(perms.wanted(None, true), Some(0o755));
        assert_eq!(Perms::new(0o777).wanted(Some(0o4755), false), Some(0o755));
        assert_eq!(Perms::new(0o777).wanted(None, false), None);
    }
}
