//! SFTP sessions to one server, shared: unlike FTP control connections, an
//! SFTP session multiplexes many requests (matched by id), so operations
//! share sessions instead of taking one each.
//!
//! A new session is opened in the background (up to `max_sessions`, one
//! connect at a time) when every live one already carries [`SHARE`]
//! operations; meanwhile, and otherwise, the least loaded session is used. Each session allows at most
//! [`HANDLE_LIMIT`] open file and directory handles. The limit was forced
//! by russh-sftp 3.0.1 as published, which decodes handles as lossy UTF-8:
//! OpenSSH numbers them from 0 in 4 big-endian bytes, so the 129th, which
//! holds byte 0x80, was mangled. The vendored copy carries handles
//! byte-exact; the limit stays, as the per-session load
//! [`super::AUTO_CEILING`] was tuned with. Bytes on the way are bounded for
//! the pool as a whole ([`Budgets`]), not per session.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh_sftp::client::RawSftpSession;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::session::{ConnectParams, ServerInfo, SftpConn, classify_session, connect};
use crate::error::{ErrorKind, OpError};

/// Open handles allowed per session (see the module doc).
pub const HANDLE_LIMIT: usize = 128;

/// Operations in flight on a session before another session is opened.
pub const SHARE: usize = 4;

/// Bytes in flight over the whole pool, one direction, per second of
/// round trip: enough for 800 MiB/s of downloads and 256 MiB/s of uploads,
/// more than two cores decrypt (about 300 and 130 MB/s at 20 ms).
///
/// The budgets are the pool's, shared by all its sessions: they were each
/// session's, and with eight sessions open the server answered far more
/// than the readers took, so the answers waited in memory. Measured with
/// four 256 MiB files from OpenSSH at 20 ms (2 runs each): 8 MiB read
/// budget per session 3.9-4.3 s and 98-102 MiB peak RSS; 16 MiB for the
/// pool 3.3-3.4 s and 41-43 MiB (8 MiB: 4.1 s, 12: 3.3 s, 24-32: 3.3-3.9 s
/// and more memory); uploads 4 MiB per session 8.8 s and 52 MiB, 4 MiB for
/// the pool 7.8-8.0 s and 30 MiB (8 and 16: no faster, 38-50 MiB).
const READ_BYTES_PER_SECOND: f64 = 800.0 * 1024.0 * 1024.0;
const WRITE_BYTES_PER_SECOND: f64 = 256.0 * 1024.0 * 1024.0;

/// The least either budget is, for a near server (round trip under a few
/// ms), where little is ever on the way. On loopback (5 runs each, four
/// 256 MiB files): reads 2 MiB per session 2.39 s median and 52 MiB, 4 MiB
/// for the pool 2.38 s and 44 MiB (2 MiB: 37-41 MiB but 10% slower);
/// writes 1 MiB per session 3.4-3.8 s, 2 MiB for the pool 2.6-4.0 s, both
/// 28-30 MiB.
const MIN_READ_BUDGET: usize = 4 * 1024 * 1024;
const MIN_WRITE_BUDGET: usize = 2 * 1024 * 1024;

/// The most: at 100 ms and beyond, memory is worth more than the speed
/// the rest would buy. Uploads are held back by the server's window
/// (OpenSSH grants each session 2 MiB) before the budget: four 256 MiB
/// files at 100 ms took 33 s with 4 MiB per session and with 26 MiB for
/// the pool, which only took 12 MiB more memory.
const MAX_READ_BUDGET: usize = 64 * 1024 * 1024;
const MAX_WRITE_BUDGET: usize = 8 * 1024 * 1024;

/// The sizes of the pool's two budgets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budgets {
    pub read: usize,
    pub write: usize,
}

impl Budgets {
    /// For a server `round_trip` away: its bandwidth-delay product, within
    /// bounds.
    pub fn for_round_trip(round_trip: Duration) -> Budgets {
        let secs = round_trip.as_secs_f64();
        let size = |per_second: f64, min: usize, max: usize| ((secs * per_second) as usize).clamp(min, max);
        Budgets {
            read: size(READ_BYTES_PER_SECOND, MIN_READ_BUDGET, MAX_READ_BUDGET),
            write: size(WRITE_BYTES_PER_SECOND, MIN_WRITE_BUDGET, MAX_WRITE_BUDGET),
        }
    }
}

/// Bytes the pool's files may hold on the way, one direction, over all
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
    /// The pool's budgets (see [`Budgets`]).
    write_budget: Budget,
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
    /// Unacknowledged write bytes allowed, over all sessions.
    write_budget: Budget,
    /// Read bytes asked for and not yet taken, over all sessions.
    read_budget: Budget,
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
            write_budget: Budget::new(budgets.write),
            read_budget: Budget::new(budgets.read),
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
            write_budget: self.write_budget.clone(),
            read_budget: self.read_budget.clone(),
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

    /// The pool's budget of unacknowledged write bytes.
    pub fn write_budget(&self) -> &Budget {
        &self.session.write_budget
    }

    /// The pool's budget of read bytes asked for and not yet taken.
    pub fn read_budget(&self) -> &Budget {
        &self.session.read_budget
    }

    /// The session failed at the transport level: open no new work on it.
    pub fn mark_broken(&self) {
        self.session.broken.store(true, Ordering::Relaxed);
    }

    /// `err` of `op` on `path` as barge's error; a session it broke is
    /// marked so.
    pub fn failed(
        &self,
        err: russh_sftp::client::error::Error,
        op: &'static str,
        path: impl std::fmt::Display,
    ) -> OpError {
        let (err, broken) = classify_session(err, op, path);
        if broken {
            self.mark_broken();
        }
        err
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
    fn budgets_grow_with_the_round_trip_within_bounds() {
        let near = Budgets::for_round_trip(Duration::from_micros(300));
        assert_eq!(near, Budgets { read: MIN_READ_BUDGET, write: MIN_WRITE_BUDGET });
        // 20 ms: 16 MiB of reads and 5 MiB of writes on the way.
        let far = Budgets::for_round_trip(Duration::from_millis(20));
        let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
        assert!((mib(far.read) - 16.0).abs() < 0.01, "{far:?}");
        assert!((mib(far.write) - 5.12).abs() < 0.01, "{far:?}");
        let farther = Budgets::for_round_trip(Duration::from_millis(40));
        assert!(farther.read > far.read && farther.write > far.write);
        let very_far = Budgets::for_round_trip(Duration::from_secs(2));
        assert_eq!(very_far, Budgets { read: MAX_READ_BUDGET, write: MAX_WRITE_BUDGET });
    }

    #[test]
    fn a_budget_and_its_clones_are_one_budget() {
        let budget = Budget::new(MIN_READ_BUDGET);
        let (one, other) = (budget.clone(), budget.clone());
        let _held = Arc::clone(one.permits()).try_acquire_many_owned(one.want(usize::MAX)).expect("untouched");
        assert!(Arc::clone(other.permits()).try_acquire_owned().is_err());
    }

    #[test]
    fn a_request_never_wants_more_than_the_whole_budget() {
        let budget = Budget::new(MIN_WRITE_BUDGET);
        assert_eq!(budget.want(32 * 1024), 32 * 1024);
        assert_eq!(budget.want(usize::MAX), MIN_WRITE_BUDGET as u32);
        // Whatever it wants can be had from an untouched budget.
        assert!(Arc::clone(budget.permits()).try_acquire_many_owned(budget.want(usize::MAX)).is_ok());
    }
}
