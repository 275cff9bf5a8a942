//! One recursive `LIST -aR` of the whole tree, confirmed directory by
//! directory against what the last runs recorded ([`Recall`]), in place of
//! an `MLSD` per directory: over a long round trip a tree three levels
//! deep costs three listing round trips one after the other, and a
//! thousand directories a thousand listings; this costs one.
//!
//! The listing is only a hint. A directory's section stands for a listing
//! of that directory only when it shows exactly the recorded files, each
//! with its recorded size and a coarse time that the recorded exact time
//! falls in (and that record settled, see [`Recall::settled`]), and
//! exactly the recorded subdirectories. Every other directory is listed
//! as usual: new, changed or vanished files, and everything a server left
//! out — pure-ftpd cuts a recursive listing at a limit without a word,
//! vsftpd ignores `-R` unless configured — so a short or ignored listing
//! costs time, never a file. The last section is never trusted: it may be
//! where the server stopped.
//!
//! A large tree is listed in parts ([`split`]), each a recursive listing of
//! a subtree read as above (headers relative to it, its last section never
//! trusted): one server process makes
//! one listing, and proftpd spends about 36 us of CPU a line (it looks for
//! `.ftpaccess` files up the tree), a third of a second for 10,000 files;
//! several subtrees listed at once over the pool use every core it has.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::listing::{self, TimePrecision};
use super::names::NameEncoding;
use crate::backend::recall::Recall;
use crate::backend::{Entry, EntryKind, Mtime};
use crate::path::RelPath;

/// One directory's part of a recursive listing.
#[derive(Debug, PartialEq, Eq)]
pub struct Section<'a> {
    /// The directory as the header names it (`d0/e1`, `./d0/e1`, `.`), or
    /// `None` for the first section, which has no header and is the root.
    pub header: Option<&'a [u8]>,
    /// The section's lines, for [`listing::parse_list`].
    pub body: &'a [u8],
}

/// Splits `ls -lR` output into sections: a header is a line ending in `:`
/// that opens the data or follows a blank line.
pub fn sections(data: &[u8]) -> Vec<Section<'_>> {
    let mut sections = Vec::new();
    let mut header: Option<&[u8]> = None;
    let mut body_start = 0;
    let mut previous_blank = true;
    let mut at = 0;
    while at < data.len() {
        let end = data[at..].iter().position(|&b| b == b'\n').map_or(data.len(), |i| at + i + 1);
        let line = trim_line_end(&data[at..end]);
        if previous_blank && line.len() > 1 && line.ends_with(b":") {
            if at > 0 || header.is_some() {
                sections.push(Section { header, body: &data[body_start..at] });
            }
            header = Some(&line[..line.len() - 1]);
            body_start = end;
        }
        previous_blank = line.is_empty();
        at = end;
    }
    sections.push(Section { header, body: &data[body_start..] });
    sections
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let mut line = line;
    while let [rest @ .., b'\n' | b'\r'] = line {
        line = rest;
    }
    line
}

/// The directory a header names, relative to the listed root; `None` for
/// one that does not name a directory below it (absolute, `..`).
pub fn header_dir(header: Option<&[u8]>) -> Option<RelPath> {
    let Some(mut text) = header else { return Some(RelPath::root()) };
    while let Some(rest) = text.strip_prefix(b"./") {
        text = rest;
    }
    while let [rest @ .., b'/'] = text {
        text = rest;
    }
    if text.is_empty() || text == b"." {
        return Some(RelPath::root());
    }
    // `RelPath::parse` would read `/etc` as `etc`.
    if text.starts_with(b"/") || text.windows(2).any(|w| w == b"//") {
        return None;
    }
    RelPath::parse(text).ok()
}

/// Below this many recorded entries a subtree is one listing: splitting
/// it would save less server time than its extra listings cost.
pub const MIN_SPLIT_ENTRIES: u64 = 4_000;

/// At most this many parts: each is a listing on a connection of its own.
pub const MAX_PARTS: usize = 16;

/// How a recorded tree is listed: `listed` directories one by one (their
/// own entries only), `parts` recursively, largest first.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub listed: Vec<RelPath>,
    pub parts: Vec<RelPath>,
}

/// Splits the recorded tree into recursive listings: while the largest
/// part holds at least `min_entries` recorded entries and its
/// subdirectories fit in `max_parts`, it becomes a directory listed on its
/// own and one part per subdirectory. A directory without subdirectories
/// is never a part (a listing of one section ends in it, and the last
/// section is never trusted): it is listed. Nor is a part split where
/// most of its entries would be listed one directory at a time (its own
/// and those of its subdirectories without subdirectories): one listing
/// makes them more cheaply (proftpd: 36 us a line, 85 for MLSD).
pub fn split(recall: &Recall, min_entries: u64, max_parts: usize) -> Split {
    let own: HashMap<RelPath, u64> =
        recall.dirs().map(|(dir, n)| (dir.clone(), u64::from(n.files) + u64::from(n.dirs))).collect();
    let mut subtree = own.clone();
    let mut children: HashMap<RelPath, Vec<RelPath>> = HashMap::new();
    let mut deepest_first: Vec<RelPath> = subtree.keys().filter(|d| !d.is_root()).cloned().collect();
    deepest_first.sort_by_key(|dir| Reverse(dir.depth()));
    for dir in deepest_first {
        let below = subtree[&dir];
        let parent = dir.parent();
        *subtree.entry(parent.clone()).or_default() += below;
        children.entry(parent).or_default().push(dir);
    }
    let mut heap = BinaryHeap::from([(subtree.get(&RelPath::root()).copied().unwrap_or(0), RelPath::root())]);
    let mut split = Split::default();
    let mut parts = Vec::new();
    while let Some((size, dir)) = heap.pop() {
        let subdirs = children.remove(&dir).unwrap_or_default();
        if subdirs.is_empty() {
            split.listed.push(dir);
            continue;
        }
        let one_by_one =
            own[&dir] + subdirs.iter().filter(|sub| !children.contains_key(*sub)).map(|sub| subtree[sub]).sum::<u64>();
        if size < min_entries || heap.len() + parts.len() + subdirs.len() > max_parts || 2 * one_by_one > size {
            parts.push((size, dir));
            continue;
        }
        split.listed.push(dir);
        heap.extend(subdirs.into_iter().map(|sub| (subtree[&sub], sub)));
    }
    parts.sort_by(|a, b| b.cmp(a));
    split.parts = parts.into_iter().map(|(_, dir)| dir).collect();
    split
}

/// What a recursive listing confirmed: each directory's entries, exact
/// times restored from the records, as a listing of it would give them.
#[derive(Debug, Default)]
pub struct Confirmed {
    pub dirs: HashMap<RelPath, Vec<Entry>>,
    /// Sections seen, for the record of how the walk went.
    pub sections: usize,
}

/// How a listed entry's time is read: the server's offset from UTC (UTC =
/// listed + offset) and `now` for the six-month rule of `ls -l`.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: Mtime,
    pub offset_secs: i64,
}

/// The directory a header names in a recursive listing of `top`, its
/// names read in the server's encoding.
pub fn header_dir_under(top: &RelPath, header: Option<&[u8]>, names: NameEncoding) -> Option<RelPath> {
    let header = header.map(|h| names.to_barge(h)).transpose().ok()?;
    let dir = header_dir(header.as_deref())?;
    if top.is_root() {
        return Some(dir);
    }
    dir.components().try_fold(top.clone(), |path, name| path.join(name).ok())
}

/// The sections (see [`sections`]) of a recursive listing of `top` that
/// match `recall` (see the module's comment).
pub fn confirm(top: &RelPath, all: Vec<Section<'_>>, recall: &Recall, clock: Clock, names: NameEncoding) -> Confirmed {
    let mut confirmed = Confirmed { sections: all.len(), ..Confirmed::default() };
    let trusted = all.len().saturating_sub(1);
    for section in all.into_iter().take(trusted) {
        let Some(dir) = header_dir_under(top, section.header, names) else { continue };
        if let Some(entries) = confirm_section(&dir, section.body, recall, clock, names) {
            // A directory named twice is not trusted either time.
            if confirmed.dirs.insert(dir.clone(), entries).is_some() {
                confirmed.dirs.remove(&dir);
            }
        }
    }
    confirmed
}

fn confirm_section(
    dir: &RelPath,
    body: &[u8],
    recall: &Recall,
    clock: Clock,
    names: NameEncoding,
) -> Option<Vec<Entry>> {
    let expected = recall.dir(dir)?;
    let parsed = listing::parse_list(body, clock.now).ok()?;
    if !parsed.warnings.is_empty() {
        return None;
    }
    let (mut files, mut dirs) = (0u32, 0u32);
    let mut entries = Vec::with_capacity(parsed.entries.len());
    for item in parsed.entries {
        // As `Inner::to_entry` refuses them (FTP commands end at CRLF).
        crate::path::check_component(&item.name).ok()?;
        if item.name.iter().any(|&b| b == b'\r' || b == b'\n') {
            return None;
        }
        // A name the encoding cannot read: listed on its own, with its warning.
        let path = dir.join(&names.to_barge(&item.name).ok()?).ok()?;
        match item.kind {
            listing::ListKind::File => {
                let precision_secs = match item.precision {
                    TimePrecision::Days => 86_400,
                    TimePrecision::Minutes => 60,
                    TimePrecision::Seconds | TimePrecision::Sub => 1,
                    TimePrecision::Unknown => return None,
                };
                let size = item.size?;
                let exact = recall.settled(&path, size, item.mtime?, precision_secs, clock.offset_secs)?;
                files += 1;
                entries.push(Entry {
                    path,
                    kind: EntryKind::File,
                    size,
                    mtime: Some(exact),
                    inode: 0,
                    coarse_mtime_s: 0,
                    hash: None,
                    link_target: None,
                    mode: item.unix_mode,
                    owner: None,
                });
            }
            listing::ListKind::Dir => {
                recall.dir(&path)?;
                dirs += 1;
                // No time: the listing's is coarse and none is recorded.
                // A directory whose entries changed is not confirmed, so
                // its time is read from its parent's exact listing.
                entries.push(Entry::dir(path));
            }
            _ => return None,
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let distinct = entries.windows(2).all(|pair| pair[0].path != pair[1].path);
    (distinct && files == expected.files && dirs == expected.dirs).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::recall::RecalledFile;

    fn path(p: &str) -> RelPath {
        RelPath::parse(p.as_bytes()).unwrap()
    }

    #[test]
    fn sections_split_at_headers_after_blank_lines() {
        // proftpd: the root without a header, then `dir:` after a blank line.
        let proftpd = b"drwxr-xr-x 2 0 0 40 Dec  2 09:26 d0\r\n\r\nd0:\r\n-rw-r--r-- 1 0 0 5 Dec  2 09:26 a:\r\n";
        let s = sections(proftpd);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].header, None);
        assert_eq!(s[1].header, Some(&b"d0"[..]));
        assert!(s[1].body.ends_with(b"a:\r\n"), "a name ending in a colon is not a header");
        // pure-ftpd: `./dir:` followed by a blank line.
        let pure = b".:\n\n-rw-r--r-- 1 0 0 5 Dec  2 09:26 f\n\n./d0:\n\n-rw-r--r-- 1 0 0 5 Dec  2 09:26 g\n";
        let s = sections(pure);
        assert_eq!(s.len(), 2);
        assert_eq!(header_dir(s[0].header), Some(RelPath::root()));
        assert_eq!(header_dir(s[1].header), Some(path("d0")));
        assert_eq!(sections(b"").len(), 1);
    }

    /// A recall of `files` files in each of `leaves`, all recorded long ago.
    fn recall_of(leaves: &[&str], files: usize) -> Recall {
        let file = RecalledFile { size: 1, mtime: Mtime::from_unix(0, 0), recorded_at: 0 };
        Recall::new(leaves.iter().flat_map(|dir| (0..files).map(move |i| (path(&format!("{dir}/f{i}")), file))))
    }

    #[test]
    fn a_small_tree_is_one_listing() {
        let recall = recall_of(&["a/x", "a/y", "b"], 10);
        assert_eq!(split(&recall, 100, 16), Split { listed: vec![], parts: vec![RelPath::root()] });
        // A directory without subdirectories is listed, not listed recursively.
        let flat = recall_of(&[""], 10);
        assert_eq!(split(&flat, 100, 16), Split { listed: vec![RelPath::root()], parts: vec![] });
    }

    #[test]
    fn a_large_tree_is_split_until_its_parts_are_small_largest_first() {
        // Entries: a and b 2 + 2 x 30 = 62 each, c 30, the root 3 + 154.
        let recall = recall_of(&["a/x", "a/y", "b/x", "b/y", "c"], 30);
        let got = split(&recall, 100, 16);
        assert_eq!(got.listed, vec![RelPath::root(), path("c")]);
        assert_eq!(got.parts, vec![path("b"), path("a")]);
        // b has 126 entries, most of them in b/x and b/y, which have
        // subdirectories: it is split again.
        let recall = recall_of(&["a/x", "a/y", "b/x/1", "b/x/2", "b/y/1", "b/y/2", "c"], 30);
        let got = split(&recall, 100, 16);
        assert_eq!(got.listed, vec![RelPath::root(), path("b"), path("c")]);
        assert_eq!(got.parts, vec![path("b/y"), path("b/x"), path("a")]);
    }

    #[test]
    fn a_directory_of_leaves_is_one_listing() {
        // b: 124 entries, all in subdirectories without subdirectories:
        // split, they would be four listings where one does.
        let recall = recall_of(&["a/x", "a/y", "b/x", "b/y", "b/x2", "b/y2", "c"], 30);
        let got = split(&recall, 100, 16);
        assert_eq!(got.listed, vec![RelPath::root(), path("c")]);
        assert_eq!(got.parts, vec![path("b"), path("a")]);
        // The root: its own files and one leaf outweigh the rest.
        let recall = recall_of(&["", "leaf", "deep/x"], 60);
        assert_eq!(split(&recall, 100, 16).parts, vec![RelPath::root()]);
    }

    #[test]
    fn a_split_stops_where_it_would_make_too_many_parts() {
        let leaves: Vec<String> = (0..20).map(|i| format!("d{i:02}/e")).collect();
        let leaves: Vec<&str> = leaves.iter().map(String::as_str).collect();
        let recall = recall_of(&leaves, 10);
        assert_eq!(split(&recall, 100, 16).parts, vec![RelPath::root()]);
        let got = split(&recall, 100, 20);
        assert_eq!(got.listed, vec![RelPath::root()]);
        assert_eq!(got.parts.len(), 20);
    }

    #[test]
    fn headers_of_a_part_are_below_it() {
        let top = path("d0");
        assert_eq!(header_dir_under(&top, None, NameEncoding::Bytes), Some(path("d0")));
        assert_eq!(header_dir_under(&top, Some(b"./e1"), NameEncoding::Bytes), Some(path("d0/e1")));
        assert_eq!(header_dir_under(&top, Some(b"."), NameEncoding::Bytes), Some(path("d0")));
        assert_eq!(header_dir_under(&top, Some(b"../x"), NameEncoding::Bytes), None);
        assert_eq!(header_dir_under(&RelPath::root(), Some(b"e1"), NameEncoding::Bytes), Some(path("e1")));
        let data = "-rw-r--r-- 1 0 0 7 Nov 13  2024 b\ndrwxr-xr-x 2 0 0 40 Jun  1 10:00 e\n\ne:\n";
        let old =
            RecalledFile { size: 7, mtime: Mtime::from_unix(JUN_1_2025 - 200 * 86_400, 5), recorded_at: RECORDED_AT };
        let recall = Recall::new([(path("d/b"), old), (path("d/e/f"), old)]);
        let got = confirm(&path("d"), sections(data.as_bytes()), &recall, clock(), NameEncoding::Bytes);
        assert_eq!(got.dirs.keys().collect::<Vec<_>>(), vec![&path("d")]);
        assert_eq!(got.dirs[&path("d")][0].path, path("d/b"));
    }

    #[test]
    fn headers_outside_the_root_name_nothing() {
        assert_eq!(header_dir(Some(b"/etc")), None);
        assert_eq!(header_dir(Some(b"./../x")), None);
        assert_eq!(header_dir(Some(b"a/./b")), None);
        assert_eq!(header_dir(Some(b"./a/b/")), Some(path("a/b")));
    }

    const NOW: i64 = 1_764_633_600; // 2025-12-02 00:00 UTC
    const RECORDED_AT: i64 = NOW - 3_600;
    const JUN_1_2025: i64 = 1_748_736_000;

    fn recall() -> Recall {
        let old = |size, secs| RecalledFile { size, mtime: Mtime::from_unix(secs, 5), recorded_at: RECORDED_AT };
        Recall::new([
            (path("a"), old(5, JUN_1_2025 + 10 * 3_600 + 7)), // Jun  1 10:00
            (path("d/b"), old(7, JUN_1_2025 - 200 * 86_400)), // a year-form date
        ])
    }

    fn clock() -> Clock {
        Clock { now: Mtime::from_unix(NOW, 0), offset_secs: 0 }
    }

    const ROOT: &str = "-rw-r--r-- 1 0 0 5 Jun  1 10:00 a\ndrwxr-xr-x 2 0 0 40 Jun  1 10:00 d\n";
    const LAST: &str = "\nz:\n";

    #[test]
    fn sections_matching_the_records_stand_for_listings_with_exact_times() {
        let data = format!("{ROOT}\nd:\n-rw-r--r-- 1 0 0 7 Nov 13  2024 b\n{LAST}");
        let got = confirm(&RelPath::root(), sections(data.as_bytes()), &recall(), clock(), NameEncoding::Bytes);
        assert_eq!(got.sections, 3);
        let root = &got.dirs[&RelPath::root()];
        assert_eq!(root.len(), 2);
        assert_eq!(root[0].mtime, Some(Mtime::from_unix(JUN_1_2025 + 10 * 3_600 + 7, 5)));
        assert_eq!(root[1].kind, EntryKind::Dir);
        assert_eq!(got.dirs[&path("d")][0].mtime, Some(Mtime::from_unix(JUN_1_2025 - 200 * 86_400, 5)));
    }

    /// Headers and names are the server's bytes, read in its encoding to
    /// meet the records (barge's UTF-8 names); one it cannot read leaves
    /// its directory to be listed on its own.
    #[test]
    fn sections_are_read_in_the_servers_encoding() {
        let latin1 = NameEncoding::parse("latin1").unwrap();
        let old = |size, secs| RecalledFile { size, mtime: Mtime::from_unix(secs, 5), recorded_at: RECORDED_AT };
        let recall = Recall::new([
            (path("caf\u{e9}"), old(5, JUN_1_2025 + 10 * 3_600 + 7)),
            (path("r\u{e9}sum\u{e9}/b"), old(7, JUN_1_2025 - 200 * 86_400)),
        ]);
        let data = b"-rw-r--r-- 1 0 0 5 Jun  1 10:00 caf\xe9\ndrwxr-xr-x 2 0 0 40 Jun  1 10:00 r\xe9sum\xe9\n\n\
                     r\xe9sum\xe9:\n-rw-r--r-- 1 0 0 7 Nov 13  2024 b\n\nz:\n";
        let got = confirm(&RelPath::root(), sections(data), &recall, clock(), latin1);
        assert_eq!(got.dirs.len(), 2, "{:?}", got.dirs.keys().collect::<Vec<_>>());
        assert_eq!(got.dirs[&RelPath::root()][0].path, path("caf\u{e9}"));
        assert_eq!(got.dirs[&path("r\u{e9}sum\u{e9}")][0].path, path("r\u{e9}sum\u{e9}/b"));
        // Read byte for byte, the same listing meets none of those records.
        assert!(confirm(&RelPath::root(), sections(data), &recall, clock(), NameEncoding::Bytes).dirs.is_empty());
        // A name that is not Shift_JIS: that directory is not confirmed.
        let sjis = NameEncoding::parse("shift_jis").unwrap();
        assert!(!confirm(&RelPath::root(), sections(data), &recall, clock(), sjis).dirs.contains_key(&RelPath::root()));
    }

    #[test]
    fn the_last_section_is_never_trusted() {
        let data = format!("{ROOT}\nd:\n-rw-r--r-- 1 0 0 7 Nov 13  2024 b\n");
        let got = confirm(&RelPath::root(), sections(data.as_bytes()), &recall(), clock(), NameEncoding::Bytes);
        assert!(got.dirs.contains_key(&RelPath::root()));
        assert!(!got.dirs.contains_key(&path("d")), "it may be where the server stopped");
    }

    #[test]
    fn any_difference_from_the_records_leaves_the_directory_to_be_listed() {
        let cases = [
            // Another size, another minute, another time zone.
            "-rw-r--r-- 1 0 0 6 Jun  1 10:00 a\ndrwxr-xr-x 2 0 0 40 Jun  1 10:00 d\n",
            "-rw-r--r-- 1 0 0 5 Jun  1 10:01 a\ndrwxr-xr-x 2 0 0 40 Jun  1 10:00 d\n",
            // A recorded file or directory missing, a new one, one twice.
            "drwxr-xr-x 2 0 0 40 Jun  1 10:00 d\n",
            "-rw-r--r-- 1 0 0 5 Jun  1 10:00 a\n",
            "-rw-r--r-- 1 0 0 5 Jun  1 10:00 a\ndrwxr-xr-x 2 0 0 40 Jun  1 10:00 d\ndrwxr-xr-x 2 0 0 4 Jun  1 10:00 e\n",
            "-rw-r--r-- 1 0 0 5 Jun  1 10:00 a\n-rw-r--r-- 1 0 0 5 Jun  1 10:00 new\n",
            "-rw-r--r-- 1 0 0 5 Jun  1 10:00 a\n-rw-r--r-- 1 0 0 5 Jun  1 10:00 a\n",
            // A link where a file was; a line that cannot be read.
            "lrwxrwxrwx 1 0 0 5 Jun  1 10:00 a -> x\ndrwxr-xr-x 2 0 0 40 Jun  1 10:00 d\n",
            "-rw-r--r-- 1 0 0 5 Jun  1 10:00 a\ndrwxr-xr-x 2 0 0 40 Jun  1 10:00 d\ngarbage here\n",
        ];
        for root in cases {
            let data = format!("{root}{LAST}");
            let got = confirm(&RelPath::root(), sections(data.as_bytes()), &recall(), clock(), NameEncoding::Bytes);
            assert!(got.dirs.is_empty(), "confirmed: {root}");
        }
        let data = format!("{ROOT}{LAST}");
        let shifted = Clock { offset_secs: 3_600, ..clock() };
        assert!(
            confirm(&RelPath::root(), sections(data.as_bytes()), &recall(), shifted, NameEncoding::Bytes)
                .dirs
                .is_empty()
        );
        let elsewhere = format!("{ROOT}\n/d:\n-rw-r--r-- 1 0 0 7 Nov 13  2024 b\n{LAST}");
        assert!(
            !confirm(&RelPath::root(), sections(elsewhere.as_bytes()), &recall(), clock(), NameEncoding::Bytes)
                .dirs
                .contains_key(&path("d"))
        );
    }
}
