//! SFTP sessions to one server, shared: unlike FTP control connections, an
//! SFTP session multiplexes many requests (matched by id), so operations
//! share sessions instead of taking one each.
//!
//! A new session is opened in the background (up to `max_sessions`, one
//! connect at a time) when every live one already carries [`SHARE`]
//! operations; meanwhile, and otherwise, the least loaded session is used. Each session allows at most
//! [`HANDLE_LIMIT`] open file and directory handles: russh-sftp 3.0.1
//! decodes handles as lossy UTF-8 and OpenSSH numbers them from 0 (lowest
//! free slot first) in 4 big-endian bytes, so the 129th concurrent handle
//! (byte 0x80) would be mangled and its requests fail.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh_sftp::client::RawSftpSession;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::session::{ConnectParams, ServerInfo, SftpConn, connect};
use crate::error::{ErrorKind, OpError};

/// Open handles allowed per session (see the module doc).
pub const HANDLE_LIMIT: usize = 128;

/// Operations in flight on a session before another session is opened.
pub const SHARE: usize = 4;

/// Bytes written on a session and not yet acknowledged, over all its
/// files, to a far server: twice the window OpenSSH's sshd grants a
/// channel for uploads (2 MiB), so the pipe stays full. More would only
/// wait in memory: 16 segments of 8 MiB each made a 158 MiB client for
/// 1 GiB of uploads.
const WRITE_BUDGET: usize = 4 * 1024 * 1024;

/// Bytes asked for on a session and not yet taken by their readers, over
/// all its files, from a far server: the same reasoning for downloads
/// (russh grants the server a window of its own per channel). 4 MiB made
/// four 256 MiB files 35% slower at 20 ms and 70% at 100 ms.
const READ_BUDGET: usize = 8 * 1024 * 1024;

/// The same two for a near server (round trip under
/// [`crate::engine::adapt::FAR`]), where little is ever on the way and
/// the rest of a far server's budget is only data waiting in memory.
/// Measured on loopback, four 256 MiB files from OpenSSH (3 runs each):
/// downloads 85-119 MiB peak RSS with 8 MiB, 52-56 with 2 MiB, 2.8-3.4 s
/// either way (1 MiB and 512 KiB no lower than 43 MiB: the rest is not
/// the budget); uploads 49-51 MiB and 3.6-3.9 s with 4 MiB, 32-34 MiB and
/// 3.0-3.2 s with 1 MiB.
const NEAR_WRITE_BUDGET: usize = 1024 * 1024;
const NEAR_READ_BUDGET: usize = 2 * 1024 * 1024;

/// The sizes of each session's two budgets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budgets {
    pub read: usize,
    pub write: usize,
}

impl Budgets {
    /// For a server `round_trip` away: a far one's bandwidth-delay product
    /// needs the large budgets, a near one does not.
    pub fn for_round_trip(round_trip: Duration) -> Budgets {
        if round_trip >= crate::engine::adapt::FAR {
            Budgets { read: READ_BUDGET, write: WRITE_BUDGET }
        } else {
            Budgets { read: NEAR_READ_BUDGET, write: NEAR_WRITE_BUDGET }
        }
    }
}

/// Bytes a session's files may hold on the way, one direction, over all
/// of them: permits taken per request, given back when it settles.
#[derive(Clone)]
pub struct Budget {
    permits: Arc<Semaphore>,
    size: usize,
}

impl Budget {
    fn new(size: usize) -> Budget {
        let size = size.max(1);
        Budget { permits: Arc::new(Semaphore::new(size)), size }
    }

    pub fn permits(&self) -> &Arc<Semaphore> {
        &self.permits
    }

    /// The permits `len` bytes take: never more than the whole budget, or
    /// they could never be had.
    pub fn want(&self, len: usize) -> u32 {
        u32::try_from(len.min(self.size)).unwrap_or(u32::MAX)
    }
}

pub struct Session {
    conn: SftpConn,
    handles: Arc<Semaphore>,
    /// Unacknowledged write bytes allowed (see [`Budgets`]).
    write_budget: Budget,
    /// Read bytes asked for and not yet taken (see [`Budgets`]).
    read_budget: Budget,
    /// Leases alive on this session.
    load: AtomicUsize,
    broken: AtomicBool,
    /// The backend's round-trip counter.
    round_trips: Arc<AtomicU64>,
}

impl Session {
    fn usable(&self) -> bool {
        !self.broken.load(Ordering::Relaxed) && !self.conn.ssh.is_closed()
    }
}

pub struct Pool {
    params: Arc<ConnectParams>,
    sessions: Mutex<Vec<Arc<Session>>>,
    max_sessions: usize,
    connecting: tokio::sync::Mutex<()>,
    /// A session is being opened in the background.
    growing: AtomicBool,
    /// The server refused a session: no more are tried.
    refused: AtomicBool,
    /// Sessions being opened by [`Pool::get_handle_alone`] right now.
    opening: AtomicUsize,
    info: ServerInfo,
    /// Each session's budget sizes.
    budgets: Budgets,
}

impl Pool {
    /// A pool holding `first`, the connection that checked the login.
    pub fn new(params: Arc<ConnectParams>, first: SftpConn, max_sessions: usize, budgets: Budgets) -> Arc<Pool> {
        let info = first.info.clone();
        let pool = Pool {
            params,
            sessions: Mutex::new(Vec::new()),
            max_sessions: max_sessions.max(1),
            connecting: tokio::sync::Mutex::new(()),
            growing: AtomicBool::new(false),
            refused: AtomicBool::new(false),
            opening: AtomicUsize::new(0),
            info,
            budgets,
        };
        pool.add(first);
        Arc::new(pool)
    }

    /// What the server offered on the first session.
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// Round trips so far, over all sessions.
    pub fn round_trips(&self) -> u64 {
        self.params.round_trips.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add(&self, conn: SftpConn) -> Arc<Session> {
        let session = Arc::new(Session {
            conn,
            handles: Arc::new(Semaphore::new(HANDLE_LIMIT)),
            write_budget: Budget::new(self.budgets.write),
            read_budget: Budget::new(self.budgets.read),
            load: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
            round_trips: Arc::clone(&self.params.round_trips),
        });
        self.lock().push(Arc::clone(&session));
        session
    }

    /// The least loaded live session, if it should take one more operation
    /// (`any`: whatever its load).
    fn pick(&self, any: bool) -> Option<Lease> {
        let mut sessions = self.lock();
        sessions.retain(|s| s.usable());
        let best = sessions.iter().min_by_key(|s| s.load.load(Ordering::Relaxed))?;
        if any || best.load.load(Ordering::Relaxed) < SHARE || sessions.len() >= self.max_sessions {
            best.load.fetch_add(1, Ordering::Relaxed);
            return Some(Lease { session: Arc::clone(best) });
        }
        None
    }

    /// A session to send requests on, until the lease is dropped.
    pub async fn get(self: &Arc<Self>) -> Result<Lease, OpError> {
        if let Some(lease) = self.pick(false) {
            return Ok(lease);
        }
        // Every session is busy: another is opened in the background while
        // this request shares a busy one. A session costs several round
        // trips to open; waiting for it held every caller up (eight of
        // them, one after another, at the start of a listing over 20 ms).
        self.grow();
        if let Some(lease) = self.pick(true) {
            return Ok(lease);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(lease) = self.pick(false) {
            return Ok(lease);
        }
        match connect(&self.params).await {
            Ok(conn) => {
                let session = self.add(conn);
                session.load.fetch_add(1, Ordering::Relaxed);
                Ok(Lease { session })
            }
            // The server may limit sessions: the ones open will do.
            Err(err) => self.pick(true).ok_or(err),
        }
    }

    /// Opens one more session in the background, unless one is being
    /// opened, the pool is full, or the server refused one already.
    fn grow(self: &Arc<Self>) {
        if self.lock().len() >= self.max_sessions
            || self.refused.load(Ordering::Relaxed)
            || self.growing.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            let _connecting = pool.connecting.lock().await;
            if pool.lock().len() < pool.max_sessions {
                match connect(&pool.params).await {
                    Ok(conn) => {
                        pool.add(conn);
                    }
                    // The server limits sessions (MaxStartups, MaxSessions):
                    // the ones open will do for this run.
                    Err(_) => pool.refused.store(true, Ordering::Relaxed),
                }
            }
            pool.growing.store(false, Ordering::SeqCst);
        });
    }

    /// A session of its own for one stream of a segmented copy: an idle
    /// one, else a new one while the pool has room, else the least loaded.
    /// Each SSH channel has its own flow-control window (OpenSSH's sshd
    /// grants 2 MiB for uploads: ~100 MB/s over 20 ms, whatever the
    /// requests in flight) and its own sftp-server process, so segments
    /// sharing one session would share both.
    pub async fn get_handle_alone(self: &Arc<Self>) -> Result<HandleLease, OpError> {
        let lease = match self.pick_idle() {
            Some(lease) => lease,
            None => self.open_alone().await?,
        };
        let permit = Arc::clone(&lease.session.handles)
            .acquire_owned()
            .await
            .map_err(|_| OpError::new(ErrorKind::Other, "open", &self.params.shown, "session closed"))?;
        Ok(HandleLease { lease, permit: Some(permit) })
    }

    /// A live session nobody uses now.
    fn pick_idle(&self) -> Option<Lease> {
        let mut sessions = self.lock();
        sessions.retain(|s| s.usable());
        let idle = sessions.iter().find(|s| s.load.load(Ordering::Relaxed) == 0)?;
        idle.load.fetch_add(1, Ordering::Relaxed);
        Some(Lease { session: Arc::clone(idle) })
    }

    /// A new session when the pool has room (opened at once, alongside
    /// other segments' own), else a share of a busy one.
    async fn open_alone(self: &Arc<Self>) -> Result<Lease, OpError> {
        let room = {
            let sessions = self.lock();
            let opening = self.opening.fetch_add(1, Ordering::SeqCst);
            sessions.len() + opening < self.max_sessions && !self.refused.load(Ordering::Relaxed)
        };
        let opened = if room { Some(connect(&self.params).await) } else { None };
        self.opening.fetch_sub(1, Ordering::SeqCst);
        match opened {
            Some(Ok(conn)) => {
                let session = self.add(conn);
                session.load.fetch_add(1, Ordering::Relaxed);
                Ok(Lease { session })
            }
            Some(Err(_)) => {
                // The server limits sessions: the ones open will do.
                self.refused.store(true, Ordering::Relaxed);
                self.get().await
            }
            None => self.get().await,
        }
    }

    /// A session with room for one more open handle, kept until the
    /// returned lease (and its permit) is dropped.
    pub async fn get_handle(self: &Arc<Self>) -> Result<HandleLease, OpError> {
        let lease = self.get().await?;
        let permit = Arc::clone(&lease.session.handles)
            .acquire_owned()
            .await
            .map_err(|_| OpError::new(ErrorKind::Other, "open", &self.params.shown, "session closed"))?;
        Ok(HandleLease { lease, permit: Some(permit) })
    }
}

/// A share of one session.
pub struct Lease {
    session: Arc<Session>,
}

impl Lease {
    pub fn sftp(&self) -> &Arc<RawSftpSession> {
        &self.session.conn.sftp
    }

    /// The session's budget of unacknowledged write bytes.
    pub fn write_budget(&self) -> &Budget {
        &self.session.write_budget
    }

    /// The session's budget of read bytes asked for and not yet taken.
    pub fn read_budget(&self) -> &Budget {
        &self.session.read_budget
    }

    /// The session failed at the transport level: open no new work on it.
    pub fn mark_broken(&self) {
        self.session.broken.store(true, Ordering::Relaxed);
    }

    /// Counts `n` round trips: requests whose reply was awaited before
    /// going on (a batch sent together and awaited together counts once).
    pub fn round_trip(&self, n: u64) {
        self.session.round_trips.fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.session.load.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A lease that also holds one of the session's handle slots.
pub struct HandleLease {
    pub lease: Lease,
    permit: Option<OwnedSemaphorePermit>,
}

impl HandleLease {
    /// The handle's close was not confirmed, so the server may still hold
    /// it: the slot stays taken for the session's life.
    pub fn leak_slot(&mut self) {
        if let Some(permit) = self.permit.take() {
            permit.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_near_server_gets_the_small_budgets_and_a_far_one_the_large() {
        let near = Budgets::for_round_trip(Duration::from_micros(300));
        assert_eq!(near, Budgets { read: NEAR_READ_BUDGET, write: NEAR_WRITE_BUDGET });
        let far = Budgets::for_round_trip(crate::engine::adapt::FAR);
        assert_eq!(far, Budgets { read: READ_BUDGET, write: WRITE_BUDGET });
        assert!(near.read < far.read && near.write < far.write);
    }

    #[test]
    fn a_request_never_wants_more_than_the_whole_budget() {
        let budget = Budget::new(NEAR_WRITE_BUDGET);
        assert_eq!(budget.want(32 * 1024), 32 * 1024);
        assert_eq!(budget.want(usize::MAX), NEAR_WRITE_BUDGET as u32);
        // Whatever it wants can be had from an untouched budget.
        assert!(Arc::clone(budget.permits()).try_acquire_many_owned(budget.want(usize::MAX)).is_ok());
    }
}
