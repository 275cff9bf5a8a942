//! Pipelined file transfer over one SFTP handle.
//!
//! SFTP is request/response, so one request at a time costs a round trip
//! per chunk. Reads are issued ahead of the consumer (the window doubles
//! from 2 requests up to [`AHEAD_BYTES`], so a short read of a file's tail
//! does not fetch megabytes); writes are sent without waiting for their
//! acknowledgements, up to [`AHEAD_BYTES`] unacknowledged. Each request is
//! a spawned task so it is on the wire at once.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, StatusCode};
use tokio::task::JoinHandle;

use super::pool::HandleLease;
use super::session::classify_session;
use crate::backend::{FileReader, FileWriter, Mtime};
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;

/// Bytes requested but not yet consumed (reads) or acknowledged (writes),
/// per file: enough for ~300 MB/s over a 20 ms round trip.
pub const AHEAD_BYTES: usize = 8 * 1024 * 1024;

/// Closes a handle and frees its slot once the server confirms; an
/// unconfirmed close keeps the slot taken (the server may hold it still).
pub async fn close_handle(mut lease: HandleLease, handle: String) -> Result<(), SftpError> {
    let result = lease.lease.sftp().close(handle).await;
    if result.is_err() {
        lease.leak_slot();
    }
    result.map(|_| ())
}

/// Closes in the background (a reader or writer dropped early).
fn close_later(lease: HandleLease, handle: String, pending: Vec<JoinHandle<Result<(), SftpError>>>) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            // Writes already sent land before the close, in request order.
            for task in pending {
                let _ = task.await;
            }
            let _ = close_handle(lease, handle).await;
        });
    } else {
        let mut lease = lease;
        lease.leak_slot();
    }
}

type ReadTask = JoinHandle<Result<Vec<u8>, SftpError>>;

pub struct SftpReader {
    lease: Option<HandleLease>,
    handle: String,
    path: RelPath,
    /// Offset of the next request to send.
    next: u64,
    /// Requests in flight, oldest first: (offset, length, task).
    pending: VecDeque<(u64, u32, ReadTask)>,
    /// Requests allowed in flight now (grows to `max_window`).
    window: usize,
    max_window: usize,
    chunk: u32,
    /// Data received and not yet handed out, from `pos`.
    current: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl SftpReader {
    pub fn new(lease: HandleLease, handle: String, path: RelPath, offset: u64, chunk: u32) -> SftpReader {
        let chunk = chunk.max(1);
        SftpReader {
            lease: Some(lease),
            handle,
            path,
            next: offset,
            pending: VecDeque::new(),
            window: 2,
            max_window: (AHEAD_BYTES / chunk as usize).max(2),
            chunk,
            current: Vec::new(),
            pos: 0,
            eof: false,
        }
    }

    fn sftp(&self) -> Option<Arc<RawSftpSession>> {
        self.lease.as_ref().map(|l| Arc::clone(l.lease.sftp()))
    }

    fn drop_pending(&mut self) {
        for (_, _, task) in self.pending.drain(..) {
            task.abort();
        }
    }

    fn fill_pipeline(&mut self) {
        let Some(sftp) = self.sftp() else { return };
        while self.pending.len() < self.window {
            let (offset, len) = (self.next, self.chunk);
            let (sftp, handle) = (Arc::clone(&sftp), self.handle.clone());
            let task = tokio::spawn(async move {
                match sftp.read(handle, offset, len).await {
                    Ok(data) => Ok(data.data),
                    Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => Ok(Vec::new()),
                    Err(err) => Err(err),
                }
            });
            self.pending.push_back((offset, len, task));
            self.next += u64::from(len);
        }
    }

    fn fail(&mut self, err: SftpError) -> OpError {
        let (err, broken) = classify_session(err, "read", &self.path);
        if broken && let Some(lease) = &self.lease {
            lease.lease.mark_broken();
        }
        err
    }

    /// The next piece of data in file order; empty at end of file.
    async fn next_piece(&mut self) -> Result<Vec<u8>, OpError> {
        self.fill_pipeline();
        let Some((offset, len, task)) = self.pending.pop_front() else { return Ok(Vec::new()) };
        let data = match task.await {
            Ok(Ok(data)) => data,
            Ok(Err(err)) => {
                self.drop_pending();
                return Err(self.fail(err));
            }
            Err(join) => {
                self.drop_pending();
                return Err(OpError::new(ErrorKind::Other, "read", &self.path, join.to_string()));
            }
        };
        if data.is_empty() {
            self.eof = true;
            self.drop_pending();
        } else if data.len() < len as usize {
            // A short read (the end of the file, or a server that caps
            // reads): what was asked beyond it is re-asked from here.
            self.drop_pending();
            self.next = offset + data.len() as u64;
        } else {
            self.window = (self.window * 2).min(self.max_window);
        }
        Ok(data)
    }
}

#[async_trait]
impl FileReader for SftpReader {
    async fn read(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        let want = buf.capacity().max(1);
        buf.clear();
        while buf.len() < want {
            if self.pos < self.current.len() {
                let take = (want - buf.len()).min(self.current.len() - self.pos);
                buf.extend_from_slice(&self.current[self.pos..self.pos + take]);
                self.pos += take;
                continue;
            }
            if self.eof {
                break;
            }
            self.current = self.next_piece().await?;
            self.pos = 0;
        }
        if buf.is_empty()
            && self.eof
            && let Some(lease) = self.lease.take()
        {
            // Closed at end of file, so the slot is free before drop.
            let handle = std::mem::take(&mut self.handle);
            close_handle(lease, handle).await.map_err(|e| self.fail(e))?;
        }
        Ok(buf)
    }
}

impl Drop for SftpReader {
    fn drop(&mut self) {
        self.drop_pending();
        if let Some(lease) = self.lease.take() {
            close_later(lease, std::mem::take(&mut self.handle), Vec::new());
        }
    }
}

pub struct SftpWriter {
    lease: Option<HandleLease>,
    handle: String,
    path: RelPath,
    offset: u64,
    pending: VecDeque<JoinHandle<Result<(), SftpError>>>,
    max_pending: usize,
    chunk: usize,
    fsync: bool,
}

impl SftpWriter {
    pub fn new(lease: HandleLease, handle: String, path: RelPath, offset: u64, chunk: u32, fsync: bool) -> SftpWriter {
        let chunk = (chunk as usize).max(1);
        SftpWriter {
            lease: Some(lease),
            handle,
            path,
            offset,
            pending: VecDeque::new(),
            max_pending: (AHEAD_BYTES / chunk).max(2),
            chunk,
            fsync,
        }
    }

    fn fail(&mut self, err: SftpError) -> OpError {
        let (err, broken) = classify_session(err, "write", &self.path);
        if broken && let Some(lease) = &self.lease {
            lease.lease.mark_broken();
        }
        err
    }

    /// Waits for the oldest write's acknowledgement.
    async fn settle_one(&mut self) -> Result<(), OpError> {
        let Some(task) = self.pending.pop_front() else { return Ok(()) };
        match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(self.fail(err)),
            Err(join) => Err(OpError::new(ErrorKind::Other, "write", &self.path, join.to_string())),
        }
    }
}

#[async_trait]
impl FileWriter for SftpWriter {
    async fn write(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        let Some(sftp) = self.lease.as_ref().map(|l| Arc::clone(l.lease.sftp())) else {
            return Err(OpError::new(ErrorKind::Other, "write", &self.path, "write after finish"));
        };
        for piece in buf.chunks(self.chunk) {
            while self.pending.len() >= self.max_pending {
                self.settle_one().await?;
            }
            let (sftp, handle, offset, data) = (Arc::clone(&sftp), self.handle.clone(), self.offset, piece.to_vec());
            self.pending.push_back(tokio::spawn(async move { sftp.write(handle, offset, data).await.map(|_| ()) }));
            self.offset += piece.len() as u64;
        }
        buf.clear();
        Ok(buf)
    }

    async fn finish(mut self: Box<Self>, mtime: Option<Mtime>) -> Result<Option<Mtime>, OpError> {
        while !self.pending.is_empty() {
            self.settle_one().await?;
        }
        let Some(sftp) = self.lease.as_ref().map(|l| Arc::clone(l.lease.sftp())) else {
            return Err(OpError::new(ErrorKind::Other, "write", &self.path, "finished twice"));
        };
        if self.fsync {
            match sftp.fsync(self.handle.clone()).await {
                Ok(_) => {}
                // Durability is best effort where the server cannot fsync.
                Err(SftpError::Status(s)) if s.status_code == StatusCode::OpUnsupported => {}
                Err(err) => return Err(self.fail(err)),
            }
        }
        // On the open handle, before the rename: the final name appears
        // with its time already right.
        let set = match mtime.and_then(|m| u32::try_from(m.secs()).ok()) {
            Some(secs) => {
                let attrs =
                    FileAttributes { atime: Some(super::unix_now_u32()), mtime: Some(secs), ..FileAttributes::empty() };
                match sftp.fsetstat(self.handle.clone(), attrs).await {
                    Ok(_) => Some(Mtime::from_unix(i64::from(secs), 0)),
                    Err(SftpError::Status(_)) => None,
                    Err(err) => return Err(self.fail(err)),
                }
            }
            None => None,
        };
        if let Some(lease) = self.lease.take() {
            let handle = std::mem::take(&mut self.handle);
            close_handle(lease, handle).await.map_err(|e| self.fail(e))?;
        }
        Ok(set)
    }
}

impl Drop for SftpWriter {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            let pending: Vec<_> = self.pending.drain(..).collect();
            close_later(lease, std::mem::take(&mut self.handle), pending);
        }
    }
}
