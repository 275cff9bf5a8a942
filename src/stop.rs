//! A clean stop asked for by SIGINT or SIGTERM, or by `--max-duration`.
//!
//! The first signal stops barge from starting anything new: transfers in
//! flight finish and are committed (and journalled), nothing else is begun
//! — no deletions either — and the run ends with exit 1 and the signal in
//! its summary; the next run continues where this one stopped. A second
//! signal aborts at once (exit 130 or 143): temporaries of transfers in
//! flight stay behind, resumed or removed by the next run, and no final
//! name is touched.
//!
//! `--max-duration` stops the same way when its time is up (the summary
//! says `max-duration`); with `--cutoff-mode hard` the transfers in flight
//! are cut too (see [`cut`]), their temporaries left for the next run,
//! and the run still ends with its summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::time::Duration;

/// How a stop's notice reaches the user (the reporter's way, which keeps a
/// progress line from being torn); `true` when the process ends right after.
pub type Say = Arc<dyn Fn(&str, bool) + Send + Sync>;

/// The first signal received, 0 before one.
static SIGNALLED: AtomicI32 = AtomicI32::new(0);
/// `--max-duration`: [`IN_TIME`], then [`OVERTIME`] or [`CUT_OFF`].
static DEADLINE: AtomicU8 = AtomicU8::new(IN_TIME);
const IN_TIME: u8 = 0;
const OVERTIME: u8 = 1;
const CUT_OFF: u8 = 2;
/// A hard `--max-duration` was set: [`cut`] has something to wait for.
static CUTS: AtomicBool = AtomicBool::new(false);
/// Wakes those waiting in [`asked`] and [`cut`].
static ASKED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// `--cutoff-mode`: what `--max-duration` does to the transfers in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CutoffMode {
    /// They finish; nothing new starts.
    #[default]
    Soft,
    /// They are cut; their temporaries are resumed (or removed) next run.
    Hard,
}

/// What asked for a stop, if anything did: the signal, or `max-duration`.
pub fn requested() -> Option<&'static str> {
    match SIGNALLED.load(Ordering::Relaxed) {
        0 if DEADLINE.load(Ordering::Relaxed) != IN_TIME => Some("max-duration"),
        0 => None,
        libc::SIGINT => Some("SIGINT"),
        libc::SIGTERM => Some("SIGTERM"),
        _ => Some("a signal"),
    }
}

/// How a stop reads in a sentence: "stopped by SIGINT", "stopped at
/// --max-duration".
pub fn described(why: &str) -> String {
    match why {
        "max-duration" => "stopped at --max-duration".to_string(),
        signal => format!("stopped by {signal}"),
    }
}

/// `--max-duration`: `after` from now, stop; `hard` (`--cutoff-mode
/// hard`): cut the transfers in flight as well.
pub fn deadline(after: Duration, mode: CutoffMode, say: Say) {
    let hard = mode == CutoffMode::Hard;
    CUTS.store(hard, Ordering::Relaxed);
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        DEADLINE.store(if hard { CUT_OFF } else { OVERTIME }, Ordering::Relaxed);
        ASKED.notify_waiters();
        if SIGNALLED.load(Ordering::Relaxed) == 0 {
            let doing = if hard { "cutting the transfers in flight" } else { "finishing the transfers in flight" };
            say(
                &format!("barge: --max-duration reached: {doing}, starting nothing new; the next run continues"),
                false,
            );
        }
    });
}

/// Returns once `--max-duration` has cut the run short (`--cutoff-mode
/// hard`): a transfer waiting on this is given up, its temporary kept.
pub async fn cut() {
    // Without a hard deadline, nothing to register with (every transfer
    // attempt waits on this).
    if !CUTS.load(Ordering::Relaxed) {
        return std::future::pending().await;
    }
    loop {
        let woken = ASKED.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if DEADLINE.load(Ordering::Relaxed) == CUT_OFF {
            return;
        }
        woken.await;
    }
}

/// Returns once a stop has been asked for: for waits that must not outlast
/// it (a listing of a silent server, say).
pub async fn asked() {
    loop {
        let woken = ASKED.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if requested().is_some() {
            return;
        }
        woken.await;
    }
}

/// Listens for SIGINT and SIGTERM for the rest of the process.
pub fn listen(say: Say) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    tokio::spawn(async move {
        loop {
            let number = tokio::select! {
                _ = int.recv() => libc::SIGINT,
                _ = term.recv() => libc::SIGTERM,
            };
            if SIGNALLED.swap(number, Ordering::Relaxed) != 0 {
                say("barge: second signal: aborting now; the next run resumes or removes what was in flight", true);
                std::process::exit(128 + number);
            }
            ASKED.notify_waiters();
            let why = requested().unwrap_or("signal");
            say(
                &format!(
                    "barge: {why}: finishing the transfers in flight, starting nothing new (a second signal aborts)"
                ),
                false,
            );
        }
    });
}
