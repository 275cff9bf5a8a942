//! Group commit: small files made durable together, then renamed.
//!
//! The commit rule is that a file's data is on disk before it takes its
//! name. One fsync per file keeps it, at one journal commit and one disk
//! flush per file: on this project's disks about half a millisecond each,
//! as much as creating the file. A small file's writer instead leaves its
//! file here, written, with its owner, bits and time given, and waits.
//! One thread at a time (the first to find no one at work) takes every
//! file waiting, calls `syncfs` once per file system among them, and only
//! then renames each; files that arrive meanwhile wait for the next round.
//! The rule still holds: `syncfs` returns after every file of the file
//! system written before the call (data and inode) is on disk, each of
//! these was completely written before it was queued, and the queue is
//! taken before the call. A crash before the renames leaves temporaries
//! only, as an fsync'd file's crash before its rename does.
//!
//! Only files on a disk's file system (ext2/3/4, XFS, btrfs, F2FS) are
//! grouped. Elsewhere each file keeps its own fsync, as before: network
//! and FUSE mounts may return from `syncfs` with the data still on the
//! way, and on tmpfs an fsync costs nothing while the wait for a group
//! would (first downloads of 10,000 files to tmpfs were 8-9 % slower
//! grouped). A `syncfs` that fails cannot say which file failed: each file
//! of its group then gets its own fsync, which reports its own error.
//! Large files are not grouped: their writeback is started as they are
//! written and their fsync finds little left, and a `syncfs` would wait
//! for every large file still being written.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::super::{Finished, Mtime};
use super::{Beneath, rename_beneath};
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;

/// Files of at most this many bytes are grouped.
pub(super) const GROUPED_UP_TO: u64 = 1024 * 1024;

/// A written small file waiting for its group's `syncfs` and its rename.
pub(super) struct Waiting {
    pub file: File,
    /// Its file system (device), as [`GroupCommit::takes`] found it.
    pub dev: u64,
    pub dir: Option<Beneath>,
    pub root: Option<Arc<OwnedFd>>,
    pub temp: RelPath,
    pub target: RelPath,
    pub mtime: Option<Mtime>,
}

struct Queued {
    waiting: Waiting,
    done: oneshot::Sender<Result<Finished, OpError>>,
}

#[derive(Default)]
struct Queue {
    files: Vec<Queued>,
    /// A thread is taking groups; it takes these too before it stops.
    at_work: bool,
}

/// The destination's group commit; see the module doc.
#[derive(Default)]
pub(super) struct GroupCommit {
    queue: Mutex<Queue>,
    /// Per file system (device): whether it is a disk's, to group on.
    on_disk: Mutex<HashMap<u64, bool>>,
}

impl GroupCommit {
    /// `file`'s file system (device) when its files are grouped.
    pub fn takes(&self, file: &File) -> Option<u64> {
        let dev = file.metadata().ok()?.dev();
        let mut on_disk = self.on_disk.lock().unwrap_or_else(PoisonError::into_inner);
        on_disk.entry(dev).or_insert_with(|| on_a_disk(file)).then_some(dev)
    }

    /// Commits `waiting` with the next group: durable, then renamed (a
    /// refused rename is the caller's, as [`super::super::FileWriter::write_last`] says).
    pub async fn commit(self: &Arc<Self>, waiting: Waiting) -> Result<Finished, OpError> {
        let temp = waiting.temp.clone();
        let (done, finished) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.files.push(Queued { waiting, done });
            !std::mem::replace(&mut queue.at_work, true)
        };
        if start {
            let group = Arc::clone(self);
            tokio::task::spawn_blocking(move || group.work());
        }
        finished
            .await
            .unwrap_or_else(|_| Err(OpError::new(ErrorKind::Other, "commit", &temp, "the group commit stopped")))
    }

    /// Takes groups until none is waiting.
    fn work(&self) {
        loop {
            let group = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if queue.files.is_empty() {
                    queue.at_work = false;
                    return;
                }
                std::mem::take(&mut queue.files)
            };
            commit_group(group);
        }
    }
}

/// One group: a `syncfs` per file system among its files (where one
/// fails, each of that file system's files its own fsync); then the
/// renames of the durable ones.
fn commit_group(group: Vec<Queued>) {
    let mut synced: HashMap<u64, bool> = HashMap::new();
    for queued in group {
        let Queued { waiting, done } = queued;
        let durable = *synced.entry(waiting.dev).or_insert_with(|| rustix::fs::syncfs(waiting.file.as_fd()).is_ok());
        let result = if durable { Ok(()) } else { waiting.file.sync_all() };
        let finished = result.map_err(|e| OpError::io("fsync", &waiting.temp, e)).map(|()| {
            let Waiting { file, dir, root, temp, target, mtime, .. } = waiting;
            drop(file);
            let committed = rename_beneath(root, &temp, &target, dir).is_ok();
            Finished { mtime, committed }
        });
        // The writer may have stopped waiting (its run was cancelled);
        // the file is durable and renamed all the same.
        let _ = done.send(finished);
    }
}

/// The magic numbers (statfs(2)) of the file systems whose files are
/// grouped: ext2/3/4, XFS, btrfs, F2FS.
pub const GROUPED_FILE_SYSTEMS: [i64; 4] = [0xEF53, 0x5846_5342, 0x9123_683E, 0xF2F5_2010];

/// Whether `file` is on one of [`GROUPED_FILE_SYSTEMS`].
fn on_a_disk(file: &File) -> bool {
    let Ok(stat) = rustix::fs::fstatfs(file.as_fd()) else { return false };
    #[allow(clippy::unnecessary_cast)] // f_type's type differs by architecture
    let kind = stat.f_type as i64;
    GROUPED_FILE_SYSTEMS.contains(&kind)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn waiting(root: &Arc<OwnedFd>, temp: &str, target: &str, data: &[u8]) -> Waiting {
        let (temp, target) = (RelPath::parse(temp.as_bytes()).unwrap(), RelPath::parse(target.as_bytes()).unwrap());
        let dir = Beneath::open(root, temp.parent().as_bytes()).unwrap();
        let flags = rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CREATE | rustix::fs::OFlags::CLOEXEC;
        let name = std::ffi::OsStr::new(std::str::from_utf8(temp.file_name()).unwrap());
        let mut file =
            File::from(rustix::fs::openat(&dir.0, name, flags, rustix::fs::Mode::from_raw_mode(0o600)).unwrap());
        file.write_all(data).unwrap();
        let dev = file.metadata().unwrap().dev();
        Waiting { file, dev, dir: Some(dir), root: Some(Arc::clone(root)), temp, target, mtime: None }
    }

    fn open_root(path: &std::path::Path) -> Arc<OwnedFd> {
        Arc::new(
            rustix::fs::open(
                path,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .unwrap(),
        )
    }

    /// Files committed at once, from many tasks, all take their names with
    /// their data, in as many groups as the thread found waiting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_committed_at_once_all_take_their_names() {
        let scratch = tempfile::tempdir().unwrap();
        let root = open_root(scratch.path());
        let group = Arc::new(GroupCommit::default());
        let commits: Vec<_> = (0..64)
            .map(|i| {
                let waiting = waiting(&root, &format!(".t{i}"), &format!("f{i}"), format!("file {i}").as_bytes());
                let group = Arc::clone(&group);
                tokio::spawn(async move { group.commit(waiting).await })
            })
            .collect();
        for commit in commits {
            assert!(commit.await.unwrap().unwrap().committed);
        }
        for i in 0..64 {
            assert_eq!(std::fs::read(scratch.path().join(format!("f{i}"))).unwrap(), format!("file {i}").as_bytes());
            assert!(!scratch.path().join(format!(".t{i}")).exists());
        }
        // The thread answers the last file, then finds the queue empty.
        let stopped = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            !group.queue.lock().unwrap().at_work
        });
        assert!(stopped, "the thread stops when no file waits");
    }

    /// A refused rename (a directory holds the name) leaves the durable
    /// temporary to the caller's commit, which owns what that means.
    #[tokio::test]
    async fn a_refused_rename_is_left_to_the_caller() {
        let scratch = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(scratch.path().join("held/inside")).unwrap();
        let root = open_root(scratch.path());
        let group = Arc::new(GroupCommit::default());
        let finished = group.commit(waiting(&root, ".t", "held", b"data")).await.unwrap();
        assert!(!finished.committed);
        assert_eq!(std::fs::read(scratch.path().join(".t")).unwrap(), b"data");
        assert!(scratch.path().join("held/inside").is_dir());
    }
}
