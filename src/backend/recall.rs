//! What the last runs recorded of one side's files, handed to a walk so a
//! backend can confirm a cheap, coarse listing against it instead of an
//! exact listing per directory (FTP: recursive `LIST`s of the whole tree,
//! or of its parts, instead of an `MLSD` per directory, see
//! `ftp::recursive`).
//!
//! A coarse listing (sizes, times to the minute or the day) can only say
//! "nothing changed" about a file whose recorded exact time is safely in
//! the past: a file rewritten after the listing that recorded it has a
//! later time, so a different minute, unless both writes fall in the
//! same minute. [`Recall::settled`] admits only files whose recorded time
//! was at least [`SETTLED_MARGIN_SECS`] (plus the listing's precision) before
//! the run that recorded it began; the margin covers a server clock that
//! runs behind barge's, or a server that gives local time as UTC. What it
//! cannot see is a file rewritten at the same size whose time was then set
//! back by hand into its old minute (`touch -d`): the same blind spot as
//! any size-and-time comparison, one minute wide instead of one second.

use std::collections::{HashMap, HashSet};

use super::Mtime;
use crate::path::RelPath;

/// How far a server's clock may lag barge's without a coarse listing being
/// trusted wrongly: a day covers any time zone mistaken for UTC.
pub const SETTLED_MARGIN_SECS: i64 = 86_400;

/// More records than this and no recall is made: the coarse listing it
/// would confirm is held whole in memory, which a streamed walk avoids.
pub const MAX_RECALLED_FILES: usize = 250_000;

/// One recorded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecalledFile {
    pub size: u64,
    pub mtime: Mtime,
    /// When the run that recorded it began (unix seconds, barge's clock).
    pub recorded_at: i64,
}

/// One directory's recorded children.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecalledDir {
    pub files: u32,
    pub dirs: u32,
}

/// Where a [`Recall`] looks its files up: a map of its own, or the
/// records a sync has loaded anyway (one copy of the paths, not two).
pub trait RecalledFiles: Send + Sync {
    fn file(&self, path: &RelPath) -> Option<RecalledFile>;
    /// Calls `visit` with every path [`RecalledFiles::file`] answers for.
    fn for_each_path(&self, visit: &mut dyn FnMut(&RelPath));
}

impl RecalledFiles for HashMap<RelPath, RecalledFile> {
    fn file(&self, path: &RelPath) -> Option<RecalledFile> {
        self.get(path).copied()
    }

    fn for_each_path(&self, visit: &mut dyn FnMut(&RelPath)) {
        self.keys().for_each(visit);
    }
}

/// One side's recorded files and the directories they imply.
pub struct Recall {
    files: Box<dyn RecalledFiles>,
    dirs: HashMap<RelPath, RecalledDir>,
}

impl std::fmt::Debug for Recall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recall").field("dirs", &self.dirs).finish_non_exhaustive()
    }
}

/// Where a walk gets the recall from: it is read from the state database
/// while the walk starts. A dropped sender means none.
pub type RecallReceiver = tokio::sync::oneshot::Receiver<std::sync::Arc<Recall>>;

impl Recall {
    pub fn new(files: impl IntoIterator<Item = (RelPath, RecalledFile)>) -> Recall {
        let files: HashMap<RelPath, RecalledFile> = files.into_iter().collect();
        Recall::over(Box::new(files))
    }

    /// A recall of `files`, with the directories their paths imply.
    pub fn over(files: Box<dyn RecalledFiles>) -> Recall {
        let mut known_dirs: HashSet<RelPath> = HashSet::new();
        let mut dirs: HashMap<RelPath, RecalledDir> = HashMap::new();
        dirs.insert(RelPath::root(), RecalledDir::default());
        files.for_each_path(&mut |path| {
            let parent = path.parent();
            dirs.entry(parent.clone()).or_default().files += 1;
            // Each directory on the way up is its parent's child, once.
            let mut dir = parent;
            while !dir.is_root() && known_dirs.insert(dir.clone()) {
                let up = dir.parent();
                dirs.entry(up.clone()).or_default().dirs += 1;
                dir = up;
            }
        });
        Recall { files, dirs }
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.values().all(|dir| dir.files == 0)
    }

    /// `None`: no recorded file is at or below `dir`.
    pub fn dir(&self, dir: &RelPath) -> Option<RecalledDir> {
        self.dirs.get(dir).copied()
    }

    /// Every recorded directory (those with a recorded file at or below
    /// them), with its recorded children.
    pub fn dirs(&self) -> impl Iterator<Item = (&RelPath, RecalledDir)> {
        self.dirs.iter().map(|(dir, children)| (dir, *children))
    }

    /// The recorded directory below `top` that comes last in tree order:
    /// where a recursive listing of `top` (depth first, sorted) ends.
    pub fn last_dir_under(&self, top: &RelPath) -> Option<&RelPath> {
        self.dirs.keys().filter(|dir| dir.starts_with(top) && *dir != top).max()
    }

    /// The recorded exact time of `path` when a coarse listing showing
    /// `size` and `listed` may stand for it: same size, a recorded time in
    /// the listed minute or day (`precision_secs`; `listed` is the
    /// server's wall clock read as UTC, and UTC = wall clock +
    /// `offset_secs`), and the record settled before its run (see the
    /// module's comment).
    pub fn settled(
        &self,
        path: &RelPath,
        size: u64,
        listed: Mtime,
        precision_secs: i64,
        offset_secs: i64,
    ) -> Option<Mtime> {
        let record = self.files.file(path)?;
        let bucket = record.mtime.secs().saturating_sub(offset_secs).div_euclid(precision_secs);
        let same = record.size == size && bucket == listed.secs().div_euclid(precision_secs);
        let bucket_end = (bucket + 1).saturating_mul(precision_secs).saturating_add(offset_secs);
        let settled = bucket_end.saturating_add(SETTLED_MARGIN_SECS) <= record.recorded_at;
        (same && settled).then_some(record.mtime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> RelPath {
        RelPath::parse(p.as_bytes()).unwrap()
    }

    const DAY: i64 = 86_400;

    fn file(size: u64, secs: i64, recorded_at: i64) -> RecalledFile {
        RecalledFile { size, mtime: Mtime::from_unix(secs, 250_000_000), recorded_at }
    }

    #[test]
    fn directories_count_their_recorded_children_once() {
        let recall = Recall::new([
            (path("a/b/x"), file(1, 0, 0)),
            (path("a/b/y"), file(1, 0, 0)),
            (path("a/c/z"), file(1, 0, 0)),
            (path("top"), file(1, 0, 0)),
        ]);
        assert_eq!(recall.dir(&RelPath::root()), Some(RecalledDir { files: 1, dirs: 1 }));
        assert_eq!(recall.dir(&path("a")), Some(RecalledDir { files: 0, dirs: 2 }));
        assert_eq!(recall.dir(&path("a/b")), Some(RecalledDir { files: 2, dirs: 0 }));
        assert_eq!(recall.dir(&path("a/d")), None);
        assert_eq!(recall.last_dir_under(&RelPath::root()), Some(&path("a/c")));
        assert_eq!(recall.last_dir_under(&path("a")), Some(&path("a/c")));
        assert_eq!(recall.last_dir_under(&path("a/b")), None);
    }

    #[test]
    fn only_settled_records_with_the_same_coarse_time_and_size_are_trusted() {
        let run = 100 * DAY;
        let old = 10 * DAY + 3_600 + 30; // 01:00:30 on day 10
        let recall = Recall::new([(path("old"), file(5, old, run)), (path("fresh"), file(5, run - 600, run))]);
        let minute = Mtime::from_unix(old - 30, 0);
        let exact = recall.settled(&path("old"), 5, minute, 60, 0);
        assert_eq!(exact, Some(Mtime::from_unix(old, 250_000_000)));
        // Another minute, another size, another day: not the same file.
        assert_eq!(recall.settled(&path("old"), 5, Mtime::from_unix(old + 60, 0), 60, 0), None);
        assert_eq!(recall.settled(&path("old"), 6, minute, 60, 0), None);
        assert_eq!(recall.settled(&path("old"), 5, Mtime::from_unix(old + DAY, 0), DAY, 0), None);
        assert!(recall.settled(&path("old"), 5, Mtime::from_unix(10 * DAY, 0), DAY, 0).is_some());
        // Written ten minutes before the run that recorded it: a second
        // write in the same minute after that run would look the same.
        assert_eq!(recall.settled(&path("fresh"), 5, Mtime::from_unix(run - 600, 0), 60, 0), None);
        assert_eq!(recall.settled(&path("missing"), 5, minute, 60, 0), None);
    }
}
