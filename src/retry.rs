//! Retry with exponential backoff and jitter, for errors classed temporary
//! and nothing else.

use std::future::Future;
use std::time::Duration;

use crate::error::OpError;

/// How long the servers may stay silent (no answer of any kind) before a
/// run stops asking them: twice the `--timeout`, one timed-out attempt and
/// the one after it. The engine's liveness and the walk's pace both give
/// up on it (with [`SILENT_FAILURES`]).
pub fn silence_to_give_up(timeout: Duration) -> Duration {
    timeout.saturating_mul(2)
}

/// Temporary failures in a row, with no answer in between, before silent
/// servers may be given up on.
pub const SILENT_FAILURES: u32 = 3;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub fn new(retries: u32) -> Self {
        RetryPolicy { retries, base_delay: Duration::from_millis(250), max_delay: Duration::from_secs(30) }
    }

    /// The wait before retry number `attempt` (1-based): the exponential
    /// step, capped, with "equal jitter" (between half and all of it) so
    /// parallel transfers that failed together do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Runs `op` until it succeeds, fails with a permanent error, or the
    /// retries are used up. `on_retry` hears of each retry.
    pub async fn run<T, F, Fut>(&self, mut op: F, mut on_retry: impl FnMut(u32, &OpError)) -> Result<T, OpError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, OpError>>,
    {
        let mut attempt = 0;
        loop {
            match op(attempt).await {
                Err(err) if err.is_temporary() && attempt < self.retries => {
                    attempt += 1;
                    on_retry(attempt, &err);
                    tokio::time::sleep(self.delay(attempt)).await;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn failure(kind: ErrorKind) -> OpError {
        OpError::new(kind, "read", "f", "boom")
    }

    #[tokio::test(start_paused = true)]
    async fn retries_temporary_errors_then_succeeds() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::new(3);
        let started = tokio::time::Instant::now();
        let result = policy
            .run(
                |_| async {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    if n < 2 { Err(failure(ErrorKind::Temporary)) } else { Ok(n) }
                },
                |_, _| {},
            )
            .await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Two backoffs: at least half of 250 ms and half of 500 ms.
        assert!(started.elapsed() >= Duration::from_millis(375));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried_and_retries_run_out() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::new(5);
        let result: Result<(), _> = policy
            .run(
                |_| async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(failure(ErrorKind::PermissionDenied))
                },
                |_, _| {},
            )
            .await;
        assert_eq!(result.unwrap_err().kind, ErrorKind::PermissionDenied);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = RetryPolicy::new(2)
            .run(
                |_| async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(failure(ErrorKind::Temporary))
                },
                |_, _| {},
            )
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy::new(10);
        for attempt in 1..=20 {
            let d = p.delay(attempt);
            assert!(d <= p.max_delay);
        }
        assert!(p.delay(1) <= Duration::from_millis(250));
        assert!(p.delay(4) >= Duration::from_millis(1000));
    }
}
