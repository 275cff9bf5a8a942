//! `--bwlimit`: one governor rate limiter shared by every transfer, so the
//! limit holds for the whole run, not per file.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A byte-rate limiter. Cells are bytes.
pub struct Throttle {
    limiter: DefaultDirectRateLimiter,
    /// The largest request the limiter accepts at once.
    burst: u32,
}

impl Throttle {
    /// `bytes_per_second` is clamped to what governor can count (u32).
    pub fn new(bytes_per_second: u64) -> Throttle {
        let rate = u32::try_from(bytes_per_second.max(1)).unwrap_or(u32::MAX);
        // A tenth of a second of burst (at least 4 KiB, at most the rate):
        // smooth enough for a progress bar, coarse enough to be cheap.
        let burst = (rate / 10).max(4096).min(rate);
        let quota = Quota::per_second(NonZeroU32::MIN.saturating_add(rate - 1))
            .allow_burst(NonZeroU32::MIN.saturating_add(burst - 1));
        Throttle { limiter: RateLimiter::direct(quota), burst }
    }

    /// Waits until `bytes` may pass.
    pub async fn consume(&self, mut bytes: u64) {
        while bytes > 0 {
            let step = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.burst);
            let cells = NonZeroU32::MIN.saturating_add(step - 1);
            // Cannot fail: `step` never exceeds the burst size.
            let _ = self.limiter.until_n_ready(cells).await;
            bytes -= u64::from(step);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn holds_the_rate_over_many_requests() {
        let throttle = Throttle::new(200 * 1024);
        let start = std::time::Instant::now();
        // 100 KiB at 200 KiB/s, less the initial burst of 20 KiB: >= 0.4 s.
        for _ in 0..25 {
            throttle.consume(4096).await;
        }
        assert!(start.elapsed() >= std::time::Duration::from_millis(350), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn requests_larger_than_the_burst_are_split_not_refused() {
        let throttle = Throttle::new(1024 * 1024);
        throttle.consume(300 * 1024).await;
    }
}
