//! Writing local files: a writer opens its temporary at its first use,
//! writes behind (each few MiB's writeback started as it is written), and
//! at its finish gives the file its owner, bits and time and makes it
//! durable, committing it in the same trip to the blocking pool where it
//! can.

use std::fs::{File, FileTimes};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use async_trait::async_trait;

use super::super::owners::GivenIds;
use super::super::{FileWriter, Finished, Mtime};
use super::group::{GROUPED_UP_TO, GroupCommit, Waiting};
use super::{Beneath, blocking, ids, rename_beneath};
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;

/// Creates (or reopens) a temporary file; see `LocalBackend::open_write`.
/// A whole file's writer keeps its directory open for the rename that
/// commits it; a segment's does not.
pub(super) type Opener = Box<dyn FnOnce() -> Result<(File, Option<Beneath>), OpError> + Send>;

/// A writer's file: opened at its first use.
enum Handle {
    Pending(Opener),
    Open(File, Option<Beneath>),
}

impl Handle {
    fn open(self) -> Result<(File, Option<Beneath>), OpError> {
        match self {
            Handle::Pending(open) => open(),
            Handle::Open(file, dir) => Ok((file, dir)),
        }
    }
}

pub(super) struct LocalWriter {
    file: Option<Handle>,
    path: RelPath,
    mode: u32,
    /// `--owner`, `--group`: the ids to give the file.
    owner: Option<GivenIds>,
    /// For [`FileWriter::write_last`]'s rename.
    root: Option<Arc<OwnedFd>>,
    behind: WriteBehind,
    /// A whole file's writer: where a small file is committed.
    group: Option<Arc<GroupCommit>>,
}

/// Write-behind: the kernel is asked to start writing each few MiB to disk
/// as soon as they are written, so the fsync before the rename finds
/// little left to do (without it, a large file's dirty pages pile up and
/// the whole file is written at the fsync, after the transfer, serially).
/// Only a start: nothing waits here, and the fsync is still what makes a
/// file durable before it takes its name.
#[derive(Debug, Clone, Copy)]
struct WriteBehind {
    /// Where the next write lands.
    at: u64,
    /// Up to where writeback was started.
    started: u64,
}

/// How much is written before its writeback is started.
const WRITE_BEHIND: u64 = 8 * 1024 * 1024;

impl LocalWriter {
    pub(super) fn new(path: &RelPath, offset: u64, open: Opener, mode: u32, root: Option<Arc<OwnedFd>>) -> Self {
        LocalWriter {
            file: Some(Handle::Pending(open)),
            path: path.clone(),
            mode,
            owner: None,
            root,
            behind: WriteBehind::from(offset),
            group: None,
        }
    }

    /// Small files this writer commits go through `group` (a whole file's
    /// writer only: a segment is not its file's last write).
    pub(super) fn grouped(mut self, group: Arc<GroupCommit>) -> Self {
        self.group = Some(group);
        self
    }
}

impl WriteBehind {
    fn from(offset: u64) -> WriteBehind {
        WriteBehind { at: offset, started: offset }
    }

    /// `len` more bytes were written to `file`.
    fn wrote(&mut self, file: &File, len: usize) {
        self.at += len as u64;
        if self.at - self.started >= WRITE_BEHIND {
            start_writeback(file, self.started, self.at - self.started);
            self.started = self.at;
        }
    }
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: starts writeback of the range
/// and returns at once. Best effort: a file system without it loses only
/// the head start.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: the call reads and writes no memory of ours; the descriptor
    // is borrowed from a File that outlives it.
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
}

/// [`FileWriter::finish`]'s work: owner, mode (after: a change of owner
/// clears setuid), mtime, then durable.
fn finish_file(
    file: &File,
    path: &RelPath,
    kept: (u32, Option<GivenIds>),
    mtime: Option<Mtime>,
) -> Result<Option<Mtime>, OpError> {
    give_attributes(file, path, kept, mtime)?;
    file.sync_all().map_err(|e| OpError::io("fsync", path, e))?;
    Ok(mtime)
}

/// Owner, mode and mtime, in that order (a change of owner clears setuid).
fn give_attributes(
    file: &File,
    path: &RelPath,
    (mode, owner): (u32, Option<GivenIds>),
    mtime: Option<Mtime>,
) -> Result<(), OpError> {
    if let Some((uid, gid)) = owner {
        rustix::fs::fchown(file, uid.map(ids::uid), gid.map(ids::gid))
            .map_err(|e| OpError::io("chown", path, e.into()))?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| OpError::io("chmod", path, e))?;
    if let Some(mtime) = mtime {
        file.set_times(FileTimes::new().set_modified(mtime.to_system_time()))
            .map_err(|e| OpError::io("set mtime", path, e))?;
    }
    Ok(())
}

pub(super) fn lost_handle(op: &'static str, path: &RelPath) -> OpError {
    OpError::new(ErrorKind::Other, op, path, "file handle lost after an earlier failure")
}

#[async_trait]
impl FileWriter for LocalWriter {
    fn keep_mode(&mut self, mode: u32) -> bool {
        self.mode = mode;
        true
    }

    fn keep_owner(&mut self, uid: Option<u32>, gid: Option<u32>) -> bool {
        self.owner = Some((uid, gid));
        true
    }

    async fn write(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        let handle = self.file.take().ok_or_else(|| lost_handle("write", &self.path))?;
        let (path, mut behind) = (self.path.clone(), self.behind);
        let (file, dir, buf, behind) = blocking(move || {
            let (mut file, dir) = handle.open()?;
            file.write_all(&buf).map_err(|e| OpError::io("write", &path, e))?;
            behind.wrote(&file, buf.len());
            buf.clear();
            Ok((file, dir, buf, behind))
        })
        .await?;
        self.file = Some(Handle::Open(file, dir));
        self.behind = behind;
        Ok(buf)
    }

    async fn finish(mut self: Box<Self>, mtime: Option<Mtime>) -> Result<Option<Mtime>, OpError> {
        let handle = self.file.take().ok_or_else(|| lost_handle("finish", &self.path))?;
        let path = self.path.clone();
        let kept = (self.mode, self.owner);
        blocking(move || finish_file(&handle.open()?.0, &path, kept, mtime)).await
    }

    async fn write_last(
        mut self: Box<Self>,
        buf: Vec<u8>,
        mtime: Option<Mtime>,
        commit_to: Option<&RelPath>,
    ) -> Result<Finished, OpError> {
        let handle = self.file.take().ok_or_else(|| lost_handle("write", &self.path))?;
        let (path, root, commit_to) = (self.path.clone(), self.root.clone(), commit_to.cloned());
        let kept = (self.mode, self.owner);
        let small = self.behind.at + buf.len() as u64 <= GROUPED_UP_TO;
        let group = self.group.take().filter(|_| small && commit_to.is_some());
        let asked = group.clone();
        let done = blocking(move || {
            let (mut file, dir) = handle.open()?;
            file.write_all(&buf).map_err(|e| OpError::io("write", &path, e))?;
            if let (Some(dev), Some(target)) = (asked.and_then(|group| group.takes(&file)), commit_to.clone()) {
                give_attributes(&file, &path, kept, mtime)?;
                return Ok(Err(Waiting { file, dev, dir, root, temp: path, target, mtime }));
            }
            let mtime = finish_file(&file, &path, kept, mtime)?;
            drop(file);
            // A failed rename is left to the caller's commit, which owns
            // what a refused rename means.
            let committed = commit_to.is_some_and(|to| rename_beneath(root, &path, &to, dir).is_ok());
            Ok(Ok(Finished { mtime, committed }))
        })
        .await?;
        match (done, group) {
            (Ok(finished), _) => Ok(finished),
            (Err(waiting), Some(group)) => group.commit(waiting).await,
            (Err(waiting), None) => Err(lost_handle("commit", &waiting.temp)),
        }
    }
}

/// A shared lock on a temporary being written, held as long as the file
/// is open: another run's cleanup then leaves it alone (see
/// `remove_abandoned_temp`). Best effort: a file system without locks
/// only loses that protection.
pub(super) fn hold_while_written(file: &File) {
    let _ = file.try_lock_shared();
}
