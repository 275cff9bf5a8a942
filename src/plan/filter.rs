//! `--include`, `--exclude`, `--min-size`, `--max-size`.
//!
//! The rule, as `--help` states it:
//! - A pattern is a glob: `*` and `?` stay within one path component, `**`
//!   spans any number, `[abc]` and `{a,b}` as usual.
//! - A pattern without `/` matches an entry's name at any depth (`*.log`).
//!   A pattern with `/` matches the whole path from the root (`logs/*.gz`,
//!   a leading `/` is optional). A pattern ending in `/` matches only
//!   directories (`cache/`).
//! - `--exclude` wins over everything: an excluded directory takes its whole
//!   subtree with it.
//! - When any `--include` is given, a file is transferred only if it
//!   matches one. Directories are not subject to `--include`; they are
//!   walked so that files inside them can match.
//! - Size limits apply to files only.
//! - Filters apply to both sides: an entry filtered out on the destination
//!   is never deleted. Nor is a destination file whose source counterpart
//!   is left out by size alone: it is there, only not copied (rsync's
//!   `--max-size` does the same); see `sync::sources`.

use crate::backend::Entry;
use crate::error::Error;
use crate::path::RelPath;
use crate::patterns::PatternSet;

/// `--shard I/N`: this run owns the entries whose path prefix of
/// `--shard-depth` components (default 1: the top-level name) hashes to I
/// modulo N, so N machines share one huge job without overlapping.
/// blake3 of the prefix's bytes: the same split on every machine and
/// release (depth 1 is the split of the releases before the depth).
///
/// Directories above the depth are every shard's to walk (and to make);
/// only the shard their own path hashes to may delete one, and files above
/// the depth are owned the same way, by their own path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
    pub depth: u32,
}

impl Shard {
    /// `I/N` with 0 <= I < N.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("expected I/N with 0 <= I < N (e.g. 0/4), got {text:?}");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse::<u32>().map_err(|_| bad())?, n.trim().parse::<u32>().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count, depth: 1 })
    }

    /// The same shard with its prefixes `depth` components long.
    pub fn at_depth(self, depth: u32) -> Shard {
        Shard { depth: depth.max(1), ..self }
    }

    /// Whether this shard owns `path` (decided by its first `depth`
    /// components, or the whole path when shorter).
    pub fn owns(&self, path: &RelPath) -> bool {
        path.is_root() || self.index_of(path, self.count) == self.index
    }

    /// The shard of `count` that owns `path`.
    pub fn index_of(&self, path: &RelPath, count: u32) -> u32 {
        let bytes = path.as_bytes();
        let mut end = bytes.len();
        if let Some((at, _)) = bytes.iter().enumerate().filter(|(_, b)| **b == b'/').nth(self.depth as usize - 1) {
            end = at;
        }
        let digest = blake3::hash(&bytes[..end]);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_bytes()[..8]);
        (u64::from_le_bytes(first) % u64::from(count.max(1))) as u32
    }

    /// Whether this shard walks `path`: it owns it, or it is a directory
    /// above the depth (every shard's, for what is below it).
    pub fn walks(&self, path: &RelPath, is_dir: bool) -> bool {
        (is_dir && path.depth() < self.depth as usize) || self.owns(path)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The compiled filters of one job.
#[derive(Debug, Default)]
pub struct Filter {
    include: PatternSet,
    exclude: PatternSet,
    min_size: Option<u64>,
    max_size: Option<u64>,
    ages: AgeRange,
    shard: Option<Shard>,
}

/// `--min-age`, `--max-age` as the times they stand for in this run
/// (seconds since the epoch): files modified after `newest` or before
/// `oldest` are left out. A file with no time (a server that gives none)
/// is left out by either: its age cannot be shown to be within them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AgeRange {
    pub newest: Option<i64>,
    pub oldest: Option<i64>,
}

impl AgeRange {
    fn is_empty(&self) -> bool {
        self.newest.is_none() && self.oldest.is_none()
    }

    fn holds(&self, entry: &Entry) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(secs) = entry.mtime.map(|m| m.secs()) else { return false };
        self.newest.is_none_or(|newest| secs <= newest) && self.oldest.is_none_or(|oldest| secs >= oldest)
    }
}

impl Filter {
    pub fn new(
        include: &[String],
        exclude: &[String],
        min_size: Option<u64>,
        max_size: Option<u64>,
    ) -> Result<Self, Error> {
        Ok(Filter {
            include: PatternSet::build(include)?,
            exclude: PatternSet::build(exclude)?,
            min_size,
            max_size,
            ages: AgeRange::default(),
            shard: None,
        })
    }

    /// Only files modified within `ages` pass.
    pub fn with_ages(mut self, ages: AgeRange) -> Self {
        self.ages = ages;
        self
    }

    /// Only the top-level entries `shard` owns pass.
    pub fn with_shard(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard;
        self
    }

    /// The same filter for every shard.
    pub fn without_shard(mut self) -> Self {
        self.shard = None;
        self
    }

    pub fn shard(&self) -> Option<Shard> {
        self.shard
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_empty()
            && self.exclude.is_empty()
            && self.min_size.is_none()
            && self.max_size.is_none()
            && self.ages.is_empty()
            && self.shard.is_none()
    }

    /// Whether one entry passes, not counting its ancestors.
    pub fn allows(&self, entry: &Entry) -> bool {
        self.matches_patterns(entry) && self.within_limits(entry)
    }

    /// Whether a file's size is within `--min-size` and `--max-size` and
    /// its time within `--min-age` and `--max-age` (directories always are).
    pub fn within_limits(&self, entry: &Entry) -> bool {
        entry.is_dir()
            || self.min_size.is_none_or(|min| entry.size >= min)
                && self.max_size.is_none_or(|max| entry.size <= max)
                && self.ages.holds(entry)
    }

    /// Whether one entry passes the shard and the patterns, whatever its
    /// size and age.
    pub fn matches_patterns(&self, entry: &Entry) -> bool {
        let is_dir = entry.is_dir();
        if let Some(shard) = &self.shard
            && !shard.walks(&entry.path, is_dir)
        {
            return false;
        }
        if self.exclude.matches(&entry.path, is_dir) {
            return false;
        }
        if is_dir {
            return true;
        }
        self.include.is_empty() || self.include.matches(&entry.path, false)
    }

    /// Whether the directory `path`, or one above it, is filtered out (so
    /// nothing at or below it is listed, copied or deleted).
    pub fn excludes_dir(&self, path: &RelPath) -> bool {
        let mut dir = path.clone();
        while !dir.is_root() {
            if !self.allows(&Entry::dir(dir.clone())) {
                return true;
            }
            dir = dir.parent();
        }
        false
    }

    /// Keeps what passes; an excluded directory drops its whole subtree.
    /// `entries` must be in tree order.
    pub fn apply(&self, entries: Vec<Entry>) -> Vec<Entry> {
        if self.is_empty() {
            return entries;
        }
        let mut kept = Vec::with_capacity(entries.len());
        let mut pruned: Option<RelPath> = None;
        for entry in entries {
            if let Some(dir) = &pruned {
                if entry.path.starts_with(dir) {
                    continue;
                }
                pruned = None;
            }
            if self.allows(&entry) {
                kept.push(entry);
            } else if entry.is_dir() {
                pruned = Some(entry.path.clone());
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::EntryKind;

    fn entry(path: &str, kind: EntryKind, size: u64) -> Entry {
        Entry {
            path: RelPath::parse(path.as_bytes()).unwrap(),
            kind,
            size,
            mtime: None,
            inode: 0,
            coarse_mtime_s: 0,
            hash: None,
            link_target: None,
            mode: None,
            owner: None,
        }
    }

    #[test]
    fn shards_split_top_level_entries_without_overlap_or_gaps() {
        let entries: Vec<Entry> = (0..400)
            .flat_map(|i| {
                [entry(&format!("d{i}"), EntryKind::Dir, 0), entry(&format!("d{i}/inner.txt"), EntryKind::File, 1)]
            })
            .collect();
        let mut owners = vec![0u32; entries.len()];
        let mut sizes = Vec::new();
        for index in 0..4 {
            let filter = Filter::default().with_shard(Some(Shard { index, count: 4, depth: 1 }));
            let kept = filter.apply(entries.clone());
            sizes.push(kept.len());
            for e in &kept {
                owners[entries.iter().position(|x| x.path == e.path).unwrap()] += 1;
            }
            // A directory and everything in it go together.
            for pair in kept.chunks(2) {
                assert!(pair[1].path.starts_with(&pair[0].path));
            }
        }
        assert!(owners.iter().all(|&n| n == 1), "every entry in exactly one shard");
        assert!(sizes.iter().all(|&n| n > 100 * 2 / 2), "roughly even: {sizes:?}");
        assert_eq!(Shard::parse("1/4"), Ok(Shard { index: 1, count: 4, depth: 1 }));
        for bad in ["4/4", "1/0", "x/2", "1", "-1/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        // The split is fixed: a name's shard never changes between releases.
        assert!(Shard { index: 0, count: 1, depth: 1 }.owns(&RelPath::parse(b"anything").unwrap()));
        // Depth 1 hashes the top-level name, as before there was a depth.
        let p = |s: &str| RelPath::parse(s.as_bytes()).unwrap();
        let top = |name: &str| {
            let digest = blake3::hash(name.as_bytes());
            (u64::from_le_bytes(digest.as_bytes()[..8].try_into().unwrap()) % 7) as u32
        };
        let one = Shard { index: 0, count: 7, depth: 1 };
        for path in ["pub", "pub/a/b.txt", "x/y"] {
            assert_eq!(one.index_of(&p(path), 7), top(path.split('/').next().unwrap()), "{path}");
        }
        let two = one.at_depth(2);
        assert_eq!(two.index_of(&p("pub/a/b/c.txt"), 7), top("pub/a"));
        assert_eq!(two.index_of(&p("pub/a"), 7), top("pub/a"));
        assert_eq!(two.index_of(&p("top.txt"), 7), top("top.txt"), "above the depth: its own path");
        assert!(two.walks(&p("pub"), true), "a directory above the depth is every shard's to walk");
    }

    fn kept(filter: &Filter, entries: Vec<Entry>) -> Vec<String> {
        filter.apply(entries).iter().map(|e| e.path.to_string()).collect()
    }

    fn tree() -> Vec<Entry> {
        use EntryKind::*;
        vec![
            entry("a.log", File, 10),
            entry("cache", Dir, 0),
            entry("cache/x.txt", File, 10),
            entry("docs", Dir, 0),
            entry("docs/cache", File, 5),
            entry("docs/readme.txt", File, 2000),
            entry("docs/sub", Dir, 0),
            entry("docs/sub/deep.log", File, 1),
        ]
    }

    #[test]
    fn unanchored_patterns_match_names_at_any_depth() {
        let f = Filter::new(&[], &["*.log".into()], None, None).unwrap();
        assert_eq!(kept(&f, tree()), ["cache", "cache/x.txt", "docs", "docs/cache", "docs/readme.txt", "docs/sub"]);
    }

    #[test]
    fn excluded_directories_take_their_subtree_and_dir_patterns_skip_files() {
        let f = Filter::new(&[], &["cache/".into()], None, None).unwrap();
        assert_eq!(
            kept(&f, tree()),
            ["a.log", "docs", "docs/cache", "docs/readme.txt", "docs/sub", "docs/sub/deep.log"]
        );
    }

    #[test]
    fn anchored_patterns_match_from_the_root() {
        let f = Filter::new(&[], &["/docs/*.txt".into(), "docs/**/*.log".into()], None, None).unwrap();
        assert_eq!(kept(&f, tree()), ["a.log", "cache", "cache/x.txt", "docs", "docs/cache", "docs/sub"]);
    }

    #[test]
    fn includes_select_files_and_excludes_win() {
        let f = Filter::new(&["*.txt".into()], &["x.txt".into()], None, None).unwrap();
        assert_eq!(kept(&f, tree()), ["cache", "docs", "docs/readme.txt", "docs/sub"]);
    }

    #[test]
    fn size_limits_apply_to_files_only() {
        let f = Filter::new(&[], &[], Some(5), Some(1000)).unwrap();
        assert_eq!(kept(&f, tree()), ["a.log", "cache", "cache/x.txt", "docs", "docs/cache", "docs/sub"]);
    }

    #[test]
    fn age_limits_apply_to_files_only_and_a_file_without_a_time_is_left_out() {
        let at = |path: &str, kind, secs: Option<i64>| Entry {
            mtime: secs.map(|s| crate::backend::Mtime::from_unix(s, 0)),
            ..entry(path, kind, 1)
        };
        let entries = || {
            vec![
                at("d", EntryKind::Dir, Some(5_000)),
                at("d/new", EntryKind::File, Some(1_001)),
                at("d/edge", EntryKind::File, Some(1_000)),
                at("d/old", EntryKind::File, Some(100)),
                at("d/older", EntryKind::File, Some(99)),
                at("d/timeless", EntryKind::File, None),
            ]
        };
        let ages = |newest, oldest| Filter::default().with_ages(AgeRange { newest, oldest });
        assert_eq!(kept(&ages(Some(1_000), None), entries()), ["d", "d/edge", "d/old", "d/older"]);
        assert_eq!(kept(&ages(None, Some(100)), entries()), ["d", "d/new", "d/edge", "d/old"]);
        assert_eq!(kept(&ages(Some(1_000), Some(100)), entries()), ["d", "d/edge", "d/old"]);
        assert!(!ages(Some(1), None).is_empty());
    }

    #[test]
    fn the_default_filter_keeps_everything() {
        assert_eq!(kept(&Filter::default(), tree()).len(), tree().len());
        assert!(Filter::default().is_empty());
    }

    #[test]
    fn bad_patterns_are_usage_errors() {
        assert!(Filter::new(&["a[".into()], &[], None, None).is_err());
        assert!(Filter::new(&[], &["/".into()], None, None).is_err());
    }
}
