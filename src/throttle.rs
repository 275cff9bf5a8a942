//! `--bwlimit`: one governor rate limiter shared by every transfer, so the
//! limit holds for the whole run, not per file. A rate, or a timetable
//! (rclone's syntax: `"08:00,512K 19:00,10M 23:00,off"`, with weekdays
//! `"Mon-08:00,512K Sat-00:00,off"`) whose rate is looked up as each
//! transfer asks to pass, so a boundary the clock crosses mid-run takes
//! effect at once: the limiter is replaced by one at the new rate.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::units::parse_size;

/// Minutes in a week; a time of the week is counted from Monday 00:00.
const WEEK: u32 = 7 * 24 * 60;
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `--bwlimit`'s value: a rate, or a timetable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bandwidth {
    Rate(u64),
    Timetable(Timetable),
}

/// Rates by local time of the week: each applies from its time until the
/// next one (the last one of the week until the first, around the week's
/// end). `None`: no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timetable {
    /// (minute of the week, rate), sorted by minute.
    slots: Vec<(u32, Option<u64>)>,
}

impl Timetable {
    /// The rate at `minute` of the week.
    pub fn rate_at(&self, minute: u32) -> Option<u64> {
        let at = self.slots.partition_point(|(start, _)| *start <= minute % WEEK);
        // Before the week's first slot: the last one, from the week before.
        let (_, rate) = self.slots[if at == 0 { self.slots.len() - 1 } else { at - 1 }];
        rate
    }
}

/// Parses `--bwlimit`: `10M`, or a timetable of `[Day-]HH:MM,RATE`
/// entries separated by spaces, RATE a size or `off`.
pub fn parse_bandwidth(text: &str) -> Result<Bandwidth, String> {
    let text = text.trim();
    if !text.contains(',') {
        // A rate of 0 is refused where the job is put together, so that the
        // refusal is recorded as a failed run (--report, --metrics).
        return parse_size(text).map(Bandwidth::Rate);
    }
    let bad = |entry: &str, why: &str| {
        format!(
            "--bwlimit timetable entry `{entry}`: {why} (e.g. \"08:00,512K 19:00,10M 23:00,off\" or \"Mon-08:00,1M Sat-00:00,off\")"
        )
    };
    let mut slots = Vec::new();
    for entry in text.split_whitespace() {
        let (when, rate) = entry.split_once(',').ok_or_else(|| bad(entry, "expected TIME,RATE"))?;
        let (days, clock) = match when.split_once('-') {
            Some((day, clock)) => {
                let day = DAYS
                    .iter()
                    .position(|d| d.eq_ignore_ascii_case(day))
                    .ok_or_else(|| bad(entry, "the day is one of Mon, Tue, Wed, Thu, Fri, Sat, Sun"))?;
                (day as u32..day as u32 + 1, clock)
            }
            None => (0..7, when),
        };
        let minute = clock
            .split_once(':')
            .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
            .filter(|&(h, m)| h < 24 && m < 60 && clock.len() == 5)
            .map(|(h, m)| h * 60 + m)
            .ok_or_else(|| bad(entry, "the time is HH:MM, 00:00 to 23:59"))?;
        let rate = match rate {
            "off" | "OFF" | "Off" => None,
            _ => match parse_size(rate).map_err(|e| bad(entry, &e))? {
                0 => return Err(bad(entry, "a rate is more than 0, or off")),
                rate => Some(rate),
            },
        };
        for day in days {
            slots.push((day * 24 * 60 + minute, rate));
        }
    }
    slots.sort_by_key(|(minute, _)| *minute);
    if slots.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        return Err(format!("--bwlimit timetable `{text}`: two entries for the same time"));
    }
    Ok(Bandwidth::Timetable(Timetable { slots }))
}

/// The local time of the week, in minutes from Monday 00:00.
pub type Clock = Arc<dyn Fn() -> u32 + Send + Sync>;

/// The system's clock in the local time zone (TZ), as cron reads it.
pub fn local_clock() -> Clock {
    Arc::new(|| {
        // SAFETY: time(NULL) reads no memory of ours; localtime_r writes
        // only the tm given, which lives on this stack.
        let tm = unsafe {
            let now = libc::time(std::ptr::null_mut());
            let mut tm: libc::tm = std::mem::zeroed();
            libc::localtime_r(&now, &mut tm);
            tm
        };
        let day = u32::try_from((tm.tm_wday + 6) % 7).unwrap_or(0);
        day * 24 * 60 + u32::try_from(tm.tm_hour * 60 + tm.tm_min).unwrap_or(0)
    })
}

/// One rate's limiter. Cells are bytes.
struct Limiter {
    limiter: DefaultDirectRateLimiter,
    /// The largest request the limiter accepts at once.
    burst: u32,
}

impl Limiter {
    /// `bytes_per_second` is clamped to what governor can count (u32).
    fn new(bytes_per_second: u64) -> Limiter {
        let rate = u32::try_from(bytes_per_second.max(1)).unwrap_or(u32::MAX);
        // A tenth of a second of burst (at least 4 KiB, at most the rate):
        // smooth enough for a progress bar, coarse enough to be cheap.
        let burst = (rate / 10).max(4096).min(rate);
        let quota = Quota::per_second(NonZeroU32::MIN.saturating_add(rate - 1))
            .allow_burst(NonZeroU32::MIN.saturating_add(burst - 1));
        Limiter { limiter: RateLimiter::direct(quota), burst }
    }
}

/// The rate in force and its limiter (`None`: no limit now).
type InForce = Mutex<(Option<u64>, Option<Arc<Limiter>>)>;

/// The run's byte-rate limit: a fixed cap (the lowest of `--bwlimit` and
/// the remotes' caps), a timetable under it, or both.
pub struct Throttle {
    cap: Option<u64>,
    /// The timetable and, under a lock, the rate in force and its limiter
    /// (`None`: no limit now). Without one, `fixed` is the limiter: a
    /// transfer asking to pass takes no lock.
    timetable: Option<(Timetable, Clock, InForce)>,
    fixed: Option<Arc<Limiter>>,
}

impl Throttle {
    /// A fixed rate.
    pub fn new(bytes_per_second: u64) -> Throttle {
        Throttle::scheduled(Some(bytes_per_second), None)
    }

    /// `cap` at most, and the timetable's rate at each moment by `clock`.
    pub fn scheduled(cap: Option<u64>, timetable: Option<(Timetable, Clock)>) -> Throttle {
        let fixed = cap.filter(|_| timetable.is_none()).map(|rate| Arc::new(Limiter::new(rate)));
        let timetable = timetable.map(|(table, clock)| (table, clock, Mutex::new((None, None))));
        Throttle { cap, timetable, fixed }
    }

    /// The limiter for now, replaced when the rate in force changed.
    fn limiter(&self) -> Option<Arc<Limiter>> {
        let Some((table, clock, current)) = &self.timetable else { return self.fixed.clone() };
        let rate = match (self.cap, table.rate_at(clock())) {
            (Some(cap), Some(rate)) => Some(cap.min(rate)),
            (cap, rate) => cap.or(rate),
        };
        let mut current = current.lock().unwrap_or_else(PoisonError::into_inner);
        // The limiter is always the rate's: a new rate, a new limiter.
        if current.0 != rate {
            *current = (rate, rate.map(|r| Arc::new(Limiter::new(r))));
        }
        current.1.clone()
    }

    /// Waits until `bytes` may pass.
    pub async fn consume(&self, mut bytes: u64) {
        while bytes > 0 {
            let Some(limiter) = self.limiter() else { return };
            let step = u32::try_from(bytes).unwrap_or(u32::MAX).min(limiter.burst);
            let cells = NonZeroU32::MIN.saturating_add(step - 1);
            // Cannot fail: `step` never exceeds the burst size.
            let _ = limiter.limiter.until_n_ready(cells).await;
            bytes -= u64::from(step);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test]
    async fn holds_the_rate_over_many_requests() {
        let throttle = Throttle::new(200 * 1024);
        let start = Instant::now();
        // 100 KiB at 200 KiB/s, less the initial burst of 20 KiB: >= 0.4 s.
        for _ in 0..25 {
            throttle.consume(4096).await;
        }
        assert!(start.elapsed() >= Duration::from_millis(350), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn requests_larger_than_the_burst_are_split_not_refused() {
        let throttle = Throttle::new(1024 * 1024);
        throttle.consume(300 * 1024).await;
    }

    fn table(text: &str) -> Timetable {
        match parse_bandwidth(text).unwrap() {
            Bandwidth::Timetable(table) => table,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timetables_parse_as_rclone_writes_them() {
        assert_eq!(parse_bandwidth("10M"), Ok(Bandwidth::Rate(10 << 20)));
        let daily = table("08:00,512K 19:00,10M 23:00,off");
        let at = |day: u32, h: u32, m: u32| day * 1440 + h * 60 + m;
        assert_eq!(daily.rate_at(at(0, 7, 59)), None, "before 08:00: the day before's 23:00");
        assert_eq!(daily.rate_at(at(0, 0, 0)), None, "Monday 00:00: Sunday's 23:00, around the week");
        assert_eq!(daily.rate_at(at(2, 8, 0)), Some(512 << 10));
        assert_eq!(daily.rate_at(at(6, 18, 59)), Some(512 << 10));
        assert_eq!(daily.rate_at(at(6, 19, 0)), Some(10 << 20));
        let weekly = table("Mon-08:00,1M sat-00:00,off");
        assert_eq!(weekly.rate_at(at(0, 7, 0)), None, "Sunday's rate is Saturday's");
        assert_eq!(weekly.rate_at(at(4, 23, 59)), Some(1 << 20));
        assert_eq!(weekly.rate_at(at(5, 0, 0)), None);
        for bad in
            ["08:00", "8:00,1M", "24:00,1M", "08:60,1M", "Mo-08:00,1M", "08:00,fast", "08:00,0", "08:00,1M 08:00,2M"]
        {
            assert!(parse_bandwidth(bad).is_err(), "{bad}");
        }
    }

    /// The limit follows the clock: 64 KiB/s until 08:00, none after, and
    /// back; the clock is the test's, moved by hand.
    #[tokio::test]
    async fn the_rate_changes_as_the_clock_crosses_a_boundary() {
        let minute = Arc::new(AtomicU32::new(7 * 60 + 59));
        let clock: Clock = {
            let minute = Arc::clone(&minute);
            Arc::new(move || minute.load(Ordering::Relaxed))
        };
        let throttle = Throttle::scheduled(None, Some((table("00:00,64K 08:00,off 09:00,64K"), clock)));
        let timed = |bytes: u64| {
            let throttle = &throttle;
            async move {
                let start = Instant::now();
                throttle.consume(bytes).await;
                start.elapsed()
            }
        };
        // 64 KiB/s: 96 KiB less the 6.4 KiB burst takes more than a second.
        assert!(timed(96 * 1024).await >= Duration::from_millis(1_000));
        minute.store(8 * 60, Ordering::Relaxed);
        assert!(timed(64 << 20).await < Duration::from_millis(200), "off at 08:00");
        minute.store(9 * 60 + 30, Ordering::Relaxed);
        assert!(timed(96 * 1024).await >= Duration::from_millis(1_000), "limited again at 09:00");
        // Under a cap, the lower of the two.
        let capped = Throttle::scheduled(Some(32 * 1024), Some((table("00:00,1M"), Arc::new(|| 0))));
        let start = Instant::now();
        capped.consume(48 * 1024).await;
        assert!(start.elapsed() >= Duration::from_millis(1_000));
    }
}
