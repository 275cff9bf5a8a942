//! Whether the servers still answer. A cron job must end: a server that
//! accepts connections and then says nothing would otherwise cost every
//! pending file its retries, each a full `--timeout` (seen: still running
//! after 900 s, 49 connections).
//!
//! Every action that succeeds and every byte moved counts as an answer; an
//! attempt that fails with a temporary error (a timeout, a refused or
//! dropped connection) counts against. When nothing has answered for
//! `window` ([`crate::retry::silence_to_give_up`] of the `--timeout`) and at least [`FAILURES`]
//! attempts in a row failed that way, the run gives up: nothing new starts,
//! the attempts in flight are abandoned (large temporaries stay to be
//! resumed), and the run exits 3 naming what was seen.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::OpError;

/// Temporary failures in a row, with no answer in between, before the
/// servers may be given up on.
pub const FAILURES: u32 = crate::retry::SILENT_FAILURES;

/// How long nothing but refused connections (the server's process is gone,
/// or its port closed) must last before giving up: a refusal comes at once,
/// so waiting the whole window lets every pending file spend its retries
/// against a closed port (seen: 519 reconnects in 10 s, exit 1). A server
/// restarting refuses for a second or two.
pub const REFUSED_WINDOW: Duration = Duration::from_secs(5);

pub struct Liveness {
    started: Instant,
    /// Milliseconds after `started` of the last answer.
    last_answer_ms: AtomicU64,
    failures_in_a_row: AtomicU32,
    /// Of those, the connections refused in a row (see [`REFUSED_WINDOW`]).
    refused_in_a_row: AtomicU32,
    window: Duration,
    /// Why the run gave up, once it has.
    gave_up: Mutex<Option<String>>,
    notify: watch::Sender<bool>,
}

impl Liveness {
    /// Gives up after `window` without an answer (and [`FAILURES`] failed
    /// attempts in a row).
    pub fn new(window: Duration) -> Liveness {
        Liveness {
            started: Instant::now(),
            last_answer_ms: AtomicU64::new(0),
            failures_in_a_row: AtomicU32::new(0),
            refused_in_a_row: AtomicU32::new(0),
            window,
            gave_up: Mutex::new(None),
            notify: watch::channel(false).0,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A server answered (an action succeeded, bytes moved). Cheap: called
    /// for every chunk a transfer moves.
    pub fn answered(&self) {
        self.last_answer_ms.store(self.now_ms(), Ordering::Relaxed);
        if self.failures_in_a_row.load(Ordering::Relaxed) != 0 {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
            self.refused_in_a_row.store(0, Ordering::Relaxed);
        }
    }

    /// An attempt failed with `err`: temporary failures count towards
    /// giving up; others (a file refused, a name the server cannot hold)
    /// say the server is there.
    pub fn failed(&self, err: &OpError) {
        if !err.is_temporary() {
            self.answered();
            return;
        }
        let in_a_row = self.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        let refused = match is_refusal(err) {
            true => self.refused_in_a_row.fetch_add(1, Ordering::Relaxed) + 1,
            false => {
                self.refused_in_a_row.store(0, Ordering::Relaxed);
                0
            }
        };
        let window = match refused >= FAILURES {
            true => self.window.min(REFUSED_WINDOW),
            false => self.window,
        };
        let silent = self.silent_for();
        if in_a_row >= FAILURES && silent >= window {
            let mut gave_up = self.gave_up.lock().unwrap_or_else(|p| p.into_inner());
            if gave_up.is_none() {
                *gave_up = Some(format!(
                    "no answer for {}s and {in_a_row} attempts in a row failed (the last: {err}): giving up on \
                     the run; what was in flight is abandoned (large files resume next run)",
                    silent.as_secs()
                ));
                self.notify.send_replace(true);
            }
        }
    }

    /// How long since the last answer.
    pub fn silent_for(&self) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(self.last_answer_ms.load(Ordering::Relaxed)))
    }

    /// Why the run gave up, once it has.
    pub fn gave_up(&self) -> Option<String> {
        self.gave_up.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Resolves when the run gives up (never before).
    pub async fn given_up(&self) {
        let mut seen = self.notify.subscribe();
        let _ = seen.wait_for(|gave_up| *gave_up).await;
    }
}

/// A connection the server's side refused outright (nothing listens).
fn is_refusal(err: &OpError) -> bool {
    err.op == "connect" && err.message.to_ascii_lowercase().contains("connection refused")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn timeout() -> OpError {
        OpError::new(ErrorKind::Temporary, "connect", "ftp://h:21", "timed out after 1s")
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_only_after_the_window_and_enough_failures() {
        let live = Liveness::new(Duration::from_secs(10));
        for _ in 0..5 {
            live.failed(&timeout());
        }
        assert_eq!(live.gave_up(), None, "many failures, but inside the window");
        tokio::time::advance(Duration::from_secs(11)).await;
        live.failed(&timeout());
        let why = live.gave_up().expect("silent for the window, failures in a row");
        assert!(why.contains("no answer for 11s") && why.contains("timed out"), "{why}");
        tokio::time::timeout(Duration::from_millis(1), live.given_up()).await.expect("notified");
    }

    #[tokio::test(start_paused = true)]
    async fn refused_connections_give_up_sooner() {
        let live = Liveness::new(Duration::from_secs(120));
        let refused = OpError::new(ErrorKind::Temporary, "connect", "sftp://h:22", "SSH: Connection refused");
        for _ in 0..10 {
            live.failed(&refused);
        }
        tokio::time::advance(REFUSED_WINDOW - Duration::from_millis(100)).await;
        live.failed(&refused);
        assert_eq!(live.gave_up(), None, "a restart refuses for a moment");
        tokio::time::advance(Duration::from_millis(200)).await;
        live.failed(&timeout());
        assert_eq!(live.gave_up(), None, "a timeout between them: the whole window again");
        for _ in 0..3 {
            live.failed(&refused);
        }
        let why = live.gave_up().expect("refused, in a row, for the refusals' window");
        assert!(why.contains("Connection refused"), "{why}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_or_a_permanent_failure_starts_over() {
        let live = Liveness::new(Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(20)).await;
        live.failed(&timeout());
        live.failed(&timeout());
        live.answered();
        live.failed(&timeout());
        live.failed(&timeout());
        assert_eq!(live.gave_up(), None, "the answer reset the count and the clock");
        tokio::time::advance(Duration::from_secs(20)).await;
        live.failed(&OpError::new(ErrorKind::PermissionDenied, "open", "x", "denied"));
        live.failed(&timeout());
        live.failed(&timeout());
        assert_eq!(live.gave_up(), None, "a refusal is an answer");
        live.failed(&timeout());
        assert!(live.gave_up().is_none(), "the refusal was just now");
        let never = tokio::time::timeout(Duration::from_secs(1), live.given_up()).await;
        assert!(never.is_err());
    }
}
