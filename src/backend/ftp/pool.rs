//! Control connections to one server, pooled and reused across files.
//!
//! At most `cap` connections exist at once (a semaphore). A connection goes
//! back to the pool when its user drops it, unless it was marked broken; one
//! idle for long is checked with NOOP before reuse and replaced if dead.
//!
//! The cap adapts: a server that refuses a new connection (421 "too many
//! connections", connection refused) while others are open has shown its
//! limit, so the cap drops to the connections open (never below one) and
//! the caller waits for one of them. After many reuses without
//! trouble the cap is raised again by one, up to the configured maximum.
//!
//! [`Pool::warm`] opens connections in the background before they are
//! asked for (a listing starts on the first while the others log in); a
//! caller that finds no idle connection while some are being opened waits
//! for one of those instead of opening yet another.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use suppaftp::Status;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conn::{ConnectParams, FtpConn, connect};
use crate::error::{ErrorKind, OpError};

/// Successful checkouts between two raises of a lowered cap.
const RAISE_AFTER: usize = 64;

/// How long a login may take before a connection given back to the pool
/// is taken instead: far more than the few round trips a login takes.
const LOGIN_PATIENCE: Duration = Duration::from_secs(2);

/// How long a caller waits for a connection being opened in the
/// background before it opens its own: a login is a few round trips.
const WARM_WAIT: Duration = Duration::from_secs(2);

/// Idle connections older than this are checked (NOOP) before reuse.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(15);
/// Idle connections older than this are closed rather than reused.
const CLOSE_AFTER_IDLE: Duration = Duration::from_secs(120);

pub struct Pool {
    params: ConnectParams,
    idle: Mutex<Vec<FtpConn>>,
    permits: Arc<Semaphore>,
    /// The configured maximum.
    max: usize,
    /// The current cap (permits in existence).
    cap: AtomicUsize,
    /// Connections alive now (idle or in use).
    live: AtomicUsize,
    /// Checkouts since the cap last changed.
    calm: AtomicUsize,
    /// Connections being opened by [`Pool::warm`].
    warming: AtomicUsize,
    /// Told when one of those is in the pool (or failed), and when a
    /// connection is given back.
    warmed: tokio::sync::Notify,
}

impl Pool {
    pub fn new(params: ConnectParams, max: usize) -> Arc<Pool> {
        let max = max.max(1);
        Arc::new(Pool {
            params,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max)),
            max,
            cap: AtomicUsize::new(max),
            live: AtomicUsize::new(0),
            calm: AtomicUsize::new(0),
            warming: AtomicUsize::new(0),
            warmed: tokio::sync::Notify::new(),
        })
    }

    pub fn params(&self) -> &ConnectParams {
        &self.params
    }

    /// Puts a fresh connection (the one opened to check the login) in the pool.
    pub fn give(&self, conn: FtpConn) {
        self.live.fetch_add(1, Ordering::SeqCst);
        self.lock_idle().push(conn);
    }

    /// The configured maximum.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The current connection cap.
    pub fn cap(&self) -> usize {
        self.cap.load(Ordering::SeqCst)
    }

    /// A good checkout: after enough of them, give back one lowered slot.
    fn note_success(&self) {
        if self.cap() < self.max && self.calm.fetch_add(1, Ordering::SeqCst) + 1 >= RAISE_AFTER {
            self.calm.store(0, Ordering::SeqCst);
            self.cap.fetch_add(1, Ordering::SeqCst);
            self.permits.add_permits(1);
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<FtpConn>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A live, logged-in connection for exclusive use until dropped.
    pub async fn get(self: &Arc<Self>) -> Result<Pooled, OpError> {
        loop {
            let permit = Arc::clone(&self.permits)
                .acquire_owned()
                .await
                .map_err(|_| OpError::new(ErrorKind::Other, "connect", &self.params.host, "pool closed"))?;
            loop {
                while let Some(conn) = self.take_idle() {
                    let mut taken = TakenIdle { pool: self, conn: Some(conn) };
                    let conn = taken.conn.as_mut().unwrap_or_else(|| unreachable!("just taken"));
                    let idle = conn.last_used.elapsed();
                    if idle > CLOSE_AFTER_IDLE
                        || (idle > CHECK_AFTER_IDLE
                            && {
                                conn.round_trip(1);
                                true
                            }
                            && !matches!(
                                tokio::time::timeout(
                                    self.params.timeout,
                                    conn.control.custom_command("NOOP", &[Status::CommandOk])
                                )
                                .await,
                                Ok(Ok(_))
                            ))
                    {
                        continue; // `taken` closes it
                    }
                    let conn = taken.conn.take().unwrap_or_else(|| unreachable!("just taken"));
                    self.note_success();
                    return Ok(self.lend(conn, permit));
                }
                // One being opened in the background, or one given back,
                // will do; but not for long: a login that hangs (until the
                // connect timeout) must not hold up every caller behind it,
                // and this caller's permit allows a connection of its own.
                let warmed = self.warmed.notified();
                tokio::pin!(warmed);
                warmed.as_mut().enable();
                if self.warming.load(Ordering::SeqCst) == 0 {
                    break;
                }
                if self.lock_idle().is_empty() && tokio::time::timeout(WARM_WAIT, warmed).await.is_err() {
                    break;
                }
            }
            match self.connect_or_returned().await {
                Opened::Returned(conn) => {
                    self.note_success();
                    return Ok(self.lend(conn, permit));
                }
                Opened::Connected(Ok(conn)) => {
                    self.live.fetch_add(1, Ordering::SeqCst);
                    self.note_success();
                    return Ok(self.lend(conn, permit));
                }
                Opened::Connected(Err(err)) => {
                    let refused = matches!(err.kind, ErrorKind::Temporary | ErrorKind::Connect);
                    if !(refused && self.live.load(Ordering::SeqCst) > 0 && self.cap() > 1) {
                        return Err(err);
                    }
                    // The server showed its limit: it took the connections
                    // open now and no more. This slot goes for good, and so
                    // do free ones above that number; this caller waits for
                    // a connection already open.
                    self.cap.fetch_sub(1, Ordering::SeqCst);
                    permit.forget();
                    self.limit_shown();
                }
            }
        }
    }

    /// A connection was refused while others are open: free slots above
    /// the number open go for good.
    fn limit_shown(&self) {
        self.calm.store(0, Ordering::SeqCst);
        let shown = self.live.load(Ordering::SeqCst).max(1);
        while self.cap() > shown && self.permits.forget_permits(1) == 1 {
            self.cap.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Opens up to `n` more connections in the background (never more
    /// than the cap allows beside those alive), for work about to ask for
    /// them. A refusal shows the server's limit, as in [`Pool::get`]; any
    /// other failure is left for a caller's own connect to report.
    pub fn warm(self: &Arc<Self>, n: usize) {
        let room = self.cap().saturating_sub(self.live.load(Ordering::SeqCst) + self.warming.load(Ordering::SeqCst));
        for _ in 0..n.min(room) {
            self.warming.fetch_add(1, Ordering::SeqCst);
            let pool = Arc::clone(self);
            tokio::spawn(async move {
                match connect(&pool.params).await {
                    Ok(conn) => pool.give(conn),
                    Err(err) if matches!(err.kind, ErrorKind::Temporary | ErrorKind::Connect) => pool.limit_shown(),
                    Err(_) => {}
                }
                pool.warming.fetch_sub(1, Ordering::SeqCst);
                pool.warmed.notify_waiters();
            });
        }
    }

    /// Opens connections in the background until `total` are alive or
    /// being opened (within the cap).
    pub fn warm_to(self: &Arc<Self>, total: usize) {
        let have = self.live.load(Ordering::SeqCst) + self.warming.load(Ordering::SeqCst);
        self.warm(total.saturating_sub(have));
    }

    /// A new connection; or, once its login has taken longer than
    /// [`LOGIN_PATIENCE`], one given back to the pool meanwhile, whichever
    /// comes first: a login the server leaves hanging (seen: pure-ftpd
    /// behind the WAN emulator with a hundred sessions open, no greeting
    /// until the 60 s timeout) must not hold this caller's file when
    /// another connection is free. The slow login is then abandoned; a
    /// normal one never is (the server would have forked for nothing).
    async fn connect_or_returned(&self) -> Opened {
        let connecting = connect(&self.params);
        tokio::pin!(connecting);
        tokio::select! {
            result = &mut connecting => return Opened::Connected(result),
            () = tokio::time::sleep(LOGIN_PATIENCE) => {}
        }
        loop {
            let returned = self.warmed.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(conn) = self.take_fresh() {
                return Opened::Returned(conn);
            }
            tokio::select! {
                result = &mut connecting => return Opened::Connected(result),
                () = &mut returned => {}
            }
        }
    }

    /// An idle connection that needs no check before reuse.
    fn take_fresh(&self) -> Option<FtpConn> {
        let mut idle = self.lock_idle();
        let at = idle.iter().rposition(|conn| conn.last_used.elapsed() <= CHECK_AFTER_IDLE)?;
        Some(idle.swap_remove(at))
    }

    /// `conn` handed out under `permit`, back here when dropped.
    fn lend(self: &Arc<Self>, conn: FtpConn, permit: OwnedSemaphorePermit) -> Pooled {
        Pooled { conn: Some(conn), pool: Arc::clone(self), broken: false, in_doubt: false, _permit: permit }
    }

    fn take_idle(&self) -> Option<FtpConn> {
        self.lock_idle().pop()
    }
}

/// An idle connection out of the pool for its check: closed and counted
/// out of `live` when dropped, also when the `get` checking it is dropped
/// during its NOOP (else the count leaked and the pool could open one
/// connection fewer for the rest of the run).
struct TakenIdle<'a> {
    pool: &'a Pool,
    conn: Option<FtpConn>,
}

impl Drop for TakenIdle<'_> {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.pool.live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

enum Opened {
    Returned(FtpConn),
    Connected(Result<FtpConn, OpError>),
}

/// A connection on loan from the pool.
pub struct Pooled {
    conn: Option<FtpConn>,
    pool: Arc<Pool>,
    broken: bool,
    /// An exchange is under way (see [`Pooled::in_doubt`]).
    in_doubt: bool,
    _permit: OwnedSemaphorePermit,
}

impl Pooled {
    pub fn conn(&mut self) -> &mut FtpConn {
        // Only `Drop` takes the connection out.
        self.conn.as_mut().unwrap_or_else(|| unreachable!("connection used after drop"))
    }

    /// The connection is in an unknown state (an I/O error, a timeout, a
    /// transfer abandoned midway): close it instead of reusing it.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// An exchange begins whose future may be dropped midway (a caller's
    /// time limit, a segmented copy ended by another segment's error):
    /// until [`Pooled::settled`], a drop closes the connection instead of
    /// pooling it with a reply still owed.
    pub fn in_doubt(&mut self) {
        self.in_doubt = true;
    }

    /// The exchange begun by [`Pooled::in_doubt`] ended with the
    /// connection in step.
    pub fn settled(&mut self) {
        self.in_doubt = false;
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if self.broken || self.in_doubt {
                self.pool.live.fetch_sub(1, Ordering::SeqCst);
            } else {
                conn.last_used = Instant::now();
                self.pool.lock_idle().push(conn);
                // A caller may be waiting for a warming connection.
                self.pool.warmed.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;
    use crate::backend::ftp::conn::DataMode;
    use crate::backend::ftp::protocol::TlsMode;
    use crate::credentials::Login;
    use crate::location::Secret;

    /// A server that logs anyone in and answers NOOP only while `answer`
    /// is set (a connection that died while idle, as seen from barge).
    async fn server(answer: Arc<AtomicBool>) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let answer = Arc::clone(&answer);
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 fake\r\n").await.unwrap();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "USER" => b"331 password\r\n",
                            "PASS" => b"230 in\r\n",
                            "FEAT" => b"211-Features:\r\n EPSV\r\n211 End\r\n",
                            "PWD" => b"257 \"/\" is the directory\r\n",
                            "CWD" => b"250 ok\r\n",
                            "NOOP" if !answer.load(Ordering::SeqCst) => continue,
                            _ => b"200 ok\r\n",
                        };
                        if write.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    fn params(port: u16) -> ConnectParams {
        ConnectParams {
            host: "127.0.0.1".into(),
            port,
            login: Login { user: "u".into(), password: Some(Secret::new("p".into())) },
            tls_mode: TlsMode::None,
            tls: None,
            data_mode: DataMode::Passive { trust_reply_address: false },
            timeout: Duration::from_secs(5),
            round_trips: Arc::default(),
            pipelining: Arc::new(AtomicBool::new(true)),
            learned: Arc::default(),
            remembered: None,
            opts_utf8: true,
            proxy: None,
        }
    }

    #[tokio::test]
    async fn a_get_dropped_during_its_noop_check_leaves_the_count_right() {
        let answer = Arc::new(AtomicBool::new(true));
        let pool = Pool::new(params(server(Arc::clone(&answer)).await), 2);
        let mut pooled = pool.get().await.expect("first connection");
        let mut conn = pooled.conn.take().expect("lent");
        drop(pooled);
        // Back in the pool, idle long enough to be checked before reuse.
        conn.last_used = Instant::now().checked_sub(CHECK_AFTER_IDLE + Duration::from_secs(1)).expect("uptime");
        pool.lock_idle().push(conn);
        assert_eq!(pool.live.load(Ordering::SeqCst), 1);

        answer.store(false, Ordering::SeqCst);
        let waited = tokio::time::timeout(Duration::from_millis(300), pool.get()).await;
        assert!(waited.is_err(), "the NOOP went unanswered, so the get was still waiting");
        // The connection taken for the check is gone, and so is its count.
        assert!(pool.lock_idle().is_empty());
        assert_eq!(pool.live.load(Ordering::SeqCst), 0);
    }
}
