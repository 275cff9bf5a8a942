//! `--files-from FILE` (`-`: standard input): copy exactly the listed
//! paths, relative to the source root, one per line (`#` comments and
//! blank lines skipped) or NUL-separated with `--from0`. Only the listed
//! paths' directories are listed, on each side, and only the listed names
//! (and the directories above them) are kept: ten paths against a server
//! of a million entries cost a few listings, not a walk. A listed path the
//! source does not have is an error naming its line; a listed directory
//! is made, not descended (list its files).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::backend::{Backend, Listing};
use crate::engine::report::Reporter;
use crate::error::{Error, OpError};
use crate::path::RelPath;

/// Directories listed at once.
const LISTINGS_AT_ONCE: usize = 8;

/// The paths of a `--files-from` list, each with its line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileList {
    /// Path to its line number (the first, when listed twice).
    paths: BTreeMap<RelPath, usize>,
}

impl FileList {
    /// Reads `file` (`-`: standard input).
    pub fn read(file: &Path, nul_separated: bool) -> Result<FileList, Error> {
        let mut bytes = Vec::new();
        let read = if file == Path::new("-") {
            std::io::stdin().read_to_end(&mut bytes)
        } else {
            std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut bytes))
        };
        // A list that cannot be read is a wrong argument, as a bad line is.
        read.map_err(|err| Error::Usage(format!("--files-from {}: {err}", file.display())))?;
        FileList::parse(&bytes, nul_separated)
            .map_err(|(line, why)| Error::Usage(format!("--files-from {}, line {line}: {why}", file.display())))
    }

    /// One path a line (or NUL-separated); a leading `/` or `./` is the
    /// source root. Errors say the line.
    pub fn parse(bytes: &[u8], nul_separated: bool) -> Result<FileList, (usize, String)> {
        let mut paths = BTreeMap::new();
        let separator = if nul_separated { b'\0' } else { b'\n' };
        for (index, raw) in bytes.split(|&b| b == separator).enumerate() {
            let line = index + 1;
            let mut raw = raw;
            if !nul_separated {
                raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                if raw.trim_ascii().is_empty() || raw.starts_with(b"#") {
                    continue;
                }
            } else if raw.is_empty() {
                continue;
            }
            let mut path = raw;
            while let Some(rest) = path.strip_prefix(b"./").or_else(|| path.strip_prefix(b"/")) {
                path = rest;
            }
            let path = path.strip_suffix(b"/").unwrap_or(path);
            if path.is_empty() {
                return Err((line, "names the root itself: list the files to copy".into()));
            }
            let rel = RelPath::parse(path).map_err(|e| (line, format!("{}: {e}", String::from_utf8_lossy(raw))))?;
            paths.entry(rel).or_insert(line);
        }
        if paths.is_empty() {
            return Err((1, "lists no path".into()));
        }
        Ok(FileList { paths })
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The listed paths and every directory above them.
    fn kept(&self) -> BTreeSet<RelPath> {
        let mut kept = BTreeSet::new();
        for path in self.paths.keys() {
            let mut at = path.clone();
            while !at.is_root() && kept.insert(at.clone()) {
                at = at.parent();
            }
        }
        kept
    }
}

/// One side as the list sees it: the directories above the listed paths
/// listed, one at a time or a few at once, and only what the list names
/// kept. A directory that does not exist lists as empty (on the source the
/// paths below it are then missing); one that cannot be listed is
/// unreadable, as in a walk.
pub async fn listing(backend: Arc<dyn Backend>, list: &FileList) -> Result<Listing, OpError> {
    let kept = list.kept();
    let mut dirs: BTreeSet<RelPath> = kept.iter().map(RelPath::parent).collect();
    dirs.insert(RelPath::root());
    let mut listing = Listing::default();
    let mut pending = dirs.into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < LISTINGS_AT_ONCE
            && let Some(dir) = pending.next()
        {
            let backend = Arc::clone(&backend);
            running.spawn(async move { (dir.clone(), backend.list_dir(&dir).await) });
        }
        let Some(done) = running.join_next().await else { break };
        let Ok((dir, listed)) = done else { continue };
        match listed {
            Ok(entries) => listing.entries.extend(entries.into_iter().filter(|e| kept.contains(&e.path))),
            Err(err) if dir.is_root() => return Err(err),
            // Not there: nothing it holds is listed (on the source, what
            // the list names below it is missing).
            Err(err) if err.kind == crate::error::ErrorKind::NotFound => {}
            Err(err) => listing.unreadable.push((dir, err)),
        }
    }
    listing.entries.sort_by(|a, b| a.path.cmp_tree(&b.path));
    Ok(listing)
}

/// The listed paths the source listing does not hold, as errors naming
/// their lines (none below a directory that could not be listed: those
/// are said as unreadable).
pub fn report_missing(list: &FileList, source: &Listing, reporter: &Reporter) -> usize {
    let found: BTreeSet<&RelPath> = source.entries.iter().map(|e| &e.path).collect();
    let mut missing = 0;
    for (path, line) in &list.paths {
        let unreadable = source.unreadable.iter().any(|(dir, _)| path.starts_with(dir));
        if !found.contains(path) && !unreadable {
            reporter.error(&format!("--files-from line {line}: {path} is not in the source"));
            missing += 1;
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_with_comments_roots_and_nuls_and_say_the_bad_line() {
        let list = FileList::parse(b"# nightly\n\na/b.txt\n./c.txt\r\n/d/e/\na/b.txt\n", false).unwrap();
        let paths: Vec<String> = list.paths.keys().map(|p| p.to_string()).collect();
        assert_eq!(paths, ["a/b.txt", "c.txt", "d/e"]);
        assert_eq!(list.paths[&RelPath::parse(b"c.txt").unwrap()], 4);
        let kept: Vec<String> = list.kept().iter().map(|p| p.to_string()).collect();
        assert_eq!(kept, ["a", "a/b.txt", "c.txt", "d", "d/e"]);
        let nul = FileList::parse(b"with\nnewline\0x", true).unwrap();
        assert_eq!(nul.len(), 2);
        assert_eq!(FileList::parse(b"ok\n../etc/passwd\n", false).unwrap_err().0, 2);
        assert_eq!(FileList::parse(b"a\n/\n", false).unwrap_err().0, 2);
        assert!(FileList::parse(b"# nothing\n", false).is_err());
    }
}
