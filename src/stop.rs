//! A clean stop asked for by SIGINT or SIGTERM.
//!
//! The first signal stops barge from starting anything new: transfers in
//! flight finish and are committed (and journalled), nothing else is begun
//! — no deletions either — and the run ends with exit 1 and the signal in
//! its summary; the next run continues where this one stopped. A second
//! signal aborts at once (exit 130 or 143): temporaries of transfers in
//! flight stay behind, resumed or removed by the next run, and no final
//! name is touched.

use std::sync::atomic::{AtomicI32, Ordering};

static REQUESTED: AtomicI32 = AtomicI32::new(0);
/// Wakes those waiting in [`asked`].
static ASKED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The signal that asked for a stop, if one did.
pub fn requested() -> Option<&'static str> {
    match REQUESTED.load(Ordering::Relaxed) {
        0 => None,
        libc::SIGINT => Some("SIGINT"),
        libc::SIGTERM => Some("SIGTERM"),
        _ => Some("a signal"),
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
pub fn listen() {
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
            if REQUESTED.swap(number, Ordering::Relaxed) != 0 {
                eprintln!("barge: second signal: aborting now; the next run resumes or removes what was in flight");
                std::process::exit(128 + number);
            }
            ASKED.notify_waiters();
            eprintln!(
                "barge: {}: finishing the transfers in flight, starting nothing new (a second signal aborts)",
                requested().unwrap_or("signal")
            );
        }
    });
}
