//! Pipelined file transfer over one SFTP handle.
//!
//! SFTP is request/response, so one request at a time costs a round trip
//! per chunk. Reads are issued ahead of the consumer (the window doubles
//! from 2 requests up to [`AHEAD_BYTES`], so a short read of a file's tail
//! does not fetch megabytes); writes are sent without waiting for their
//! acknowledgements, up to [`AHEAD_BYTES`] unacknowledged.
//!
//! Round trips per file are what bounds small files over a long link, so:
//! - a read whose size the listing gave asks for all of it and for the
//!   byte after it in one flight (see [`SftpReader::new`]), and its handle
//!   is closed without waiting for the server's answer;
//! - a write's last requests (the data not yet acknowledged, fsync,
//!   fsetstat of the mtime, close) go out together and their replies are
//!   awaited together, any failure failing the file.
//!
//! Each request is put on the wire the moment it is made ([`send_now`]),
//! so the server sees them in the order they were made: OpenSSH's
//! sftp-server handles one request after the other in that order, which
//! is what lets a close follow writes it has not acknowledged yet.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, TryAcquireError};

use super::pool::{Budget, HandleLease};
use super::session::{breaks_session, classify_session};
use crate::backend::{FileReader, FileWriter, Mtime};
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;

/// Bytes requested but not yet consumed (reads) or acknowledged (writes),
/// per file: enough for ~300 MB/s over a 20 ms round trip.
pub const AHEAD_BYTES: usize = 8 * 1024 * 1024;

/// A request on the wire whose reply is awaited later.
pub type Reply<T> = Pin<Box<dyn Future<Output = Result<T, SftpError>> + Send>>;

/// Sends `request` now and returns its reply to await later. russh-sftp
/// queues a request's packet on the channel synchronously, the first time
/// its future is polled and before anything in it can wait: so one poll
/// here puts it on the wire in call order. (A spawned task would send it
/// whenever the scheduler ran the task: possibly after a close made later.)
pub fn send_now<T: Send + 'static>(request: impl Future<Output = Result<T, SftpError>> + Send + 'static) -> Reply<T> {
    let mut request: Reply<T> = Box::pin(request);
    match request.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        // Failed before sending (session closed, over a limit): keep the
        // answer, never poll a finished future again.
        Poll::Ready(result) => Box::pin(std::future::ready(result)),
        Poll::Pending => request,
    }
}

/// Closes a handle and frees its slot once the server confirms; an
/// unconfirmed close keeps the slot taken (the server may hold it still).
pub async fn close_handle(lease: HandleLease, handle: String) -> Result<(), SftpError> {
    let sftp = Arc::clone(lease.lease.sftp());
    settle_close(lease, send_now(async move { sftp.close(handle).await.map(|_| ()) })).await
}

/// Waits for a close sent already; frees the handle's slot when it is
/// confirmed, keeps it taken otherwise, and takes a session that failed at
/// the transport level out of use.
async fn settle_close(mut lease: HandleLease, close: Reply<()>) -> Result<(), SftpError> {
    let result = close.await;
    if let Err(err) = &result {
        lease.leak_slot();
        if breaks_session(err) {
            lease.lease.mark_broken();
        }
    }
    result
}

/// Closes in the background (a reader or writer dropped early).
pub fn close_later(lease: HandleLease, handle: String, pending: Vec<Reply<()>>) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            // Writes already sent land before the close, in request order.
            for reply in pending {
                let _ = reply.await;
            }
            let _ = close_handle(lease, handle).await;
        });
    } else {
        let mut lease = lease;
        lease.leak_slot();
    }
}

/// Counts round trips of one file's requests: a reply awaited counts one
/// when its request was sent after the last counted wait ended (so it
/// could not have been travelling during it); replies of requests sent
/// together with one already counted come in the same flight.
#[derive(Default)]
struct Flights {
    /// Counted waits so far: the flight a request sent now belongs to.
    current: u64,
}

impl Flights {
    /// Before awaiting the reply of a request sent in `flight`.
    fn wait(&mut self, flight: u64, lease: Option<&HandleLease>) {
        if flight == self.current {
            self.current += 1;
            if let Some(lease) = lease {
                lease.lease.round_trip(1);
            }
        }
    }
}

/// A read request in flight.
struct AskedRead {
    offset: u64,
    len: u32,
    flight: u64,
    reply: Reply<Vec<u8>>,
    /// Its share of the pool's read budget, held until its data is taken.
    _share: OwnedSemaphorePermit,
}

pub struct SftpReader {
    lease: Option<HandleLease>,
    handle: String,
    path: RelPath,
    /// Offset of the next request to send.
    next: u64,
    /// Where the listing said the file ends: reads are cut there, and the
    /// next one asks from exactly there (see [`SftpReader::new`]).
    expected_end: Option<u64>,
    /// A range read ([`crate::backend::Backend::open_read_range`]): nothing
    /// at or past this offset is asked for, and reaching it is the end.
    stop: Option<u64>,
    /// Requests in flight, oldest first.
    pending: VecDeque<AskedRead>,
    /// Requests allowed in flight now (grows to `max_window`).
    window: usize,
    max_window: usize,
    chunk: u32,
    /// Data received and not yet handed out, from `pos`.
    current: Vec<u8>,
    pos: usize,
    eof: bool,
    flights: Flights,
}

impl SftpReader {
    /// A reader from `offset`. With `expected_end` (the size the listing
    /// gave), the first flight asks for everything up to it, each read cut
    /// so none ends past it, plus one read starting exactly there: a file
    /// still that size answers that one with end of file, so open, one
    /// flight of reads, and the (unawaited) close are all it costs. A file
    /// that grew answers it with data and is read on to its real end (the
    /// commit then refuses it as changed); one that shrank gives a short
    /// read, and what was asked past it is asked again from there. End of
    /// file is only ever concluded from the server's EOF.
    pub fn new(
        lease: HandleLease,
        handle: String,
        path: RelPath,
        offset: u64,
        chunk: u32,
        expected_end: Option<u64>,
    ) -> SftpReader {
        let chunk = chunk.max(1);
        let max_window = (AHEAD_BYTES / chunk as usize).max(2);
        let window = match expected_end {
            Some(end) => {
                let reads = end.saturating_sub(offset).div_ceil(u64::from(chunk)) + 1;
                usize::try_from(reads).unwrap_or(usize::MAX).clamp(2, max_window)
            }
            None => 2,
        };
        SftpReader {
            lease: Some(lease),
            handle,
            path,
            next: offset,
            expected_end: expected_end.filter(|&end| end >= offset),
            stop: None,
            pending: VecDeque::new(),
            window,
            max_window,
            chunk,
            current: Vec::new(),
            pos: 0,
            eof: false,
            flights: Flights::default(),
        }
    }

    /// A reader of the range `offset..stop` only: its first flight asks
    /// for all of it (up to the window), and none past it.
    pub fn range(lease: HandleLease, handle: String, path: RelPath, offset: u64, chunk: u32, stop: u64) -> SftpReader {
        let mut reader = SftpReader::new(lease, handle, path, offset, chunk, Some(stop));
        reader.stop = Some(stop);
        reader
    }

    /// The length of the next read to ask for; `None` past a range's end.
    fn next_len(&self) -> Option<u32> {
        let offset = self.next;
        let len = match self.stop {
            Some(stop) if offset >= stop => return None,
            Some(stop) => u32::try_from(stop - offset).unwrap_or(u32::MAX).min(self.chunk),
            None => self.chunk,
        };
        Some(match self.expected_end {
            // Cut at the expected end, so the read after starts there.
            Some(end) if offset < end => u32::try_from(end - offset).unwrap_or(u32::MAX).min(len),
            _ => len,
        })
    }

    /// Asks for reads up to the window, as far as the session's read
    /// budget allows; with none in flight, waits for budget for one (every
    /// reader in flight frees its share as its data is taken).
    async fn fill_pipeline(&mut self) -> Result<(), OpError> {
        let Some((sftp, budget)) =
            self.lease.as_ref().map(|l| (Arc::clone(l.lease.sftp()), l.lease.read_budget().clone()))
        else {
            return Ok(());
        };
        while self.pending.len() < self.window {
            let Some(len) = self.next_len() else { break };
            // The read past the listed end is answered by end of file on a
            // file that did not change: it costs (almost) nothing.
            let expected = self.expected_end.is_none_or(|end| self.next < end);
            let want = if expected { budget.want(len as usize) } else { 1 };
            let share = match Arc::clone(budget.permits()).try_acquire_many_owned(want) {
                Ok(share) => share,
                Err(TryAcquireError::NoPermits) if !self.pending.is_empty() => break,
                Err(_) => Arc::clone(budget.permits())
                    .acquire_many_owned(want)
                    .await
                    .map_err(|_| OpError::new(ErrorKind::Temporary, "read", &self.path, "session closed"))?,
            };
            let offset = self.next;
            let (sftp, handle) = (Arc::clone(&sftp), self.handle.clone());
            let reply = send_now(async move {
                match sftp.read(handle, offset, len).await {
                    Ok(data) => Ok(data.data),
                    Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => Ok(Vec::new()),
                    Err(err) => Err(err),
                }
            });
            self.pending.push_back(AskedRead { offset, len, flight: self.flights.current, reply, _share: share });
            self.next += u64::from(len);
        }
        Ok(())
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
        self.fill_pipeline().await?;
        let Some(AskedRead { offset, len, flight, reply, _share }) = self.pending.pop_front() else {
            // Only a range read runs out of requests to send: its end.
            self.eof = true;
            return Ok(Vec::new());
        };
        self.flights.wait(flight, self.lease.as_ref());
        let data = match reply.await {
            Ok(data) => data,
            Err(err) => {
                self.pending.clear();
                return Err(self.fail(err));
            }
        };
        if data.is_empty() {
            self.eof = true;
            self.pending.clear();
        } else if data.len() < len as usize {
            // A short read (the end of the file, or a server that caps
            // reads): what was asked beyond it is re-asked from here.
            self.pending.clear();
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
        if self.eof
            && let Some(lease) = self.lease.take()
        {
            // Every byte is in hand and the server said end of file: the
            // close cannot change what was read, so the next file need not
            // wait for its answer. Sent now (the server has the handle
            // back at once), settled in the background: a refused close
            // keeps the handle's slot taken, a broken session is taken out
            // of use, as a close waited for would.
            let sftp = Arc::clone(lease.lease.sftp());
            let handle = std::mem::take(&mut self.handle);
            let close = send_now(async move { sftp.close(handle).await.map(|_| ()) });
            tokio::spawn(async move {
                let _ = settle_close(lease, close).await;
            });
        }
        Ok(buf)
    }
}

impl Drop for SftpReader {
    fn drop(&mut self) {
        self.pending.clear();
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
    /// Writes sent and not yet acknowledged, oldest first, with their
    /// flight and their share of the pool's write budget.
    pending: VecDeque<(u64, Reply<()>, OwnedSemaphorePermit)>,
    max_pending: usize,
    chunk: usize,
    fsync: bool,
    flights: Flights,
    /// Permission bits to give the file at its finish ([`FileWriter::keep_mode`]).
    mode: Option<u32>,
    /// Ids to give it then, before the bits ([`FileWriter::keep_owner`]).
    owner: Option<(u32, u32)>,
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
            flights: Flights::default(),
            mode: None,
            owner: None,
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
        let Some((flight, reply, _budget)) = self.pending.pop_front() else { return Ok(()) };
        self.flights.wait(flight, self.lease.as_ref());
        reply.await.map_err(|err| self.fail(err))
    }

    /// `len` bytes of the pool's write budget. While other files hold
    /// it, this one's own oldest writes are settled first: every writer
    /// can free what it holds, so none waits on another for ever.
    async fn budget(&mut self, budget: &Budget, len: usize) -> Result<OwnedSemaphorePermit, OpError> {
        let (permits, want) = (budget.permits(), budget.want(len));
        loop {
            match Arc::clone(permits).try_acquire_many_owned(want) {
                Ok(permit) => return Ok(permit),
                Err(TryAcquireError::NoPermits) if !self.pending.is_empty() => self.settle_one().await?,
                Err(TryAcquireError::NoPermits) => {
                    return Arc::clone(permits).acquire_many_owned(want).await.map_err(|_| self.closed());
                }
                Err(TryAcquireError::Closed) => return Err(self.closed()),
            }
        }
    }

    fn closed(&self) -> OpError {
        OpError::new(ErrorKind::Temporary, "write", &self.path, "session closed")
    }
}

#[async_trait]
impl FileWriter for SftpWriter {
    fn keep_mode(&mut self, mode: u32) -> bool {
        self.mode = Some(mode);
        true
    }

    /// SETSTAT takes both ids or neither: with one, the commit sets them
    /// (it looks the other up first).
    fn keep_owner(&mut self, uid: Option<u32>, gid: Option<u32>) -> bool {
        self.owner = uid.zip(gid);
        self.owner.is_some()
    }

    async fn write(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        let Some((sftp, budget)) =
            self.lease.as_ref().map(|l| (Arc::clone(l.lease.sftp()), l.lease.write_budget().clone()))
        else {
            return Err(OpError::new(ErrorKind::Other, "write", &self.path, "write after finish"));
        };
        for piece in buf.chunks(self.chunk) {
            while self.pending.len() >= self.max_pending {
                self.settle_one().await?;
            }
            let share = self.budget(&budget, piece.len()).await?;
            let (sftp, handle, offset, data) = (Arc::clone(&sftp), self.handle.clone(), self.offset, piece.to_vec());
            let reply = send_now(async move { sftp.write(handle, offset, data).await.map(|_| ()) });
            self.pending.push_back((self.flights.current, reply, share));
            self.offset += piece.len() as u64;
        }
        buf.clear();
        Ok(buf)
    }

    /// Sends fsync (where the server has it), fsetstat of the mtime and the
    /// close right behind the writes still unacknowledged, then awaits every
    /// reply: one round trip for all of it. Each reply is checked: a write,
    /// fsync or close that failed fails the file, so the temporary is never
    /// committed; a refused mtime only leaves the time unset (`None`), as
    /// before. The mtime is set on the open handle, before the rename: the
    /// final name appears with its time already right.
    async fn finish(mut self: Box<Self>, mtime: Option<Mtime>) -> Result<Option<Mtime>, OpError> {
        let Some(lease) = self.lease.take() else {
            return Err(OpError::new(ErrorKind::Other, "write", &self.path, "finished twice"));
        };
        let sftp = Arc::clone(lease.lease.sftp());
        let handle = std::mem::take(&mut self.handle);
        let fsync = self.fsync.then(|| {
            let (sftp, handle) = (Arc::clone(&sftp), handle.clone());
            send_now(async move {
                match sftp.fsync(handle).await {
                    Ok(_) => Ok(()),
                    // Durability is best effort where the server cannot fsync.
                    Err(SftpError::Status(s)) if s.status_code == StatusCode::OpUnsupported => Ok(()),
                    Err(err) => Err(err),
                }
            })
        });
        // Before the bits (a change of owner clears setuid), each its own
        // request, so a server that refuses one still takes the others;
        // sent together, all come back within the close.
        let chown = self.owner.map(|(uid, gid)| {
            let (sftp, handle) = (Arc::clone(&sftp), handle.clone());
            let attrs = FileAttributes { uid: Some(uid), gid: Some(gid), ..FileAttributes::empty() };
            send_now(async move { sftp.fsetstat(handle, attrs).await.map(|_| ()) })
        });
        let chmod = self.mode.map(|mode| {
            let (sftp, handle) = (Arc::clone(&sftp), handle.clone());
            let attrs = FileAttributes { permissions: Some(mode), ..FileAttributes::empty() };
            send_now(async move { sftp.fsetstat(handle, attrs).await.map(|_| ()) })
        });
        let wanted = mtime.and_then(|m| u32::try_from(m.secs()).ok());
        let setstat = wanted.map(|secs| {
            let (sftp, handle) = (Arc::clone(&sftp), handle.clone());
            let attrs =
                FileAttributes { atime: Some(super::unix_now_u32()), mtime: Some(secs), ..FileAttributes::empty() };
            send_now(async move { sftp.fsetstat(handle, attrs).await.map(|_| ()) })
        });
        let close = {
            let sftp = Arc::clone(&sftp);
            send_now(async move { sftp.close(handle).await.map(|_| ()) })
        };
        // The close was sent just now: its flight is a new round trip,
        // and every earlier reply comes back within it.
        lease.lease.round_trip(1);
        let mut failed: Option<SftpError> = None;
        while let Some((_, reply, _budget)) = self.pending.pop_front() {
            if let Err(err) = reply.await {
                failed.get_or_insert(err);
            }
        }
        if let Some(fsync) = fsync
            && let Err(err) = fsync.await
        {
            failed.get_or_insert(err);
        }
        if let Some(chown) = chown {
            match chown.await {
                // Owners are kept where the login may give files away; the
                // next run's plan says where it may not.
                Ok(()) | Err(SftpError::Status(_)) => {}
                Err(err) => {
                    failed.get_or_insert(err);
                }
            }
        }
        if let Some(chmod) = chmod {
            match chmod.await {
                // Permissions are kept where the server takes them.
                Ok(()) | Err(SftpError::Status(_)) => {}
                Err(err) => {
                    failed.get_or_insert(err);
                }
            }
        }
        let mut set = None;
        if let (Some(secs), Some(setstat)) = (wanted, setstat) {
            match setstat.await {
                Ok(()) => set = Some(Mtime::from_unix(i64::from(secs), 0)),
                Err(SftpError::Status(_)) => {}
                Err(err) => {
                    failed.get_or_insert(err);
                }
            }
        }
        if failed.as_ref().is_some_and(breaks_session) {
            lease.lease.mark_broken();
        }
        let closed = settle_close(lease, close).await;
        match failed.map_or(closed, Err) {
            Ok(()) => Ok(set),
            Err(err) => Err(classify_session(err, "write", &self.path).0),
        }
    }
}

impl Drop for SftpWriter {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            // Each keeps its share of the budget until its answer is in.
            let pending: Vec<Reply<()>> = self
                .pending
                .drain(..)
                .map(|(_, reply, share)| -> Reply<()> {
                    Box::pin(async move {
                        let answer = reply.await;
                        drop(share);
                        answer
                    })
                })
                .collect();
            close_later(lease, std::mem::take(&mut self.handle), pending);
        }
    }
}
