//! Adaptive concurrency: how many transfers run at once is measured, not
//! guessed. Over a long round trip each file costs a few round trips of
//! waiting, so throughput grows almost linearly with transfers in flight
//! until the server, the link or a CPU is the limit; on loopback more
//! transfers only add contention. Neither number can be known in advance.
//!
//! The [`Tuner`] starts at a level (remembered from the last run, else
//! [`first_level`]: higher for a far server), measures throughput over a
//! window, and doubles the level while each raise buys at least [`MIN_GAIN`] more; the first raise
//! that does not pay is undone and the level settles there. Settled, it
//! probes a quarter higher now and then, since servers and links change
//! during a long run. A server that refuses connections (its pool's cap
//! dropped) caps the level at once. The [`Gate`] enforces the level: every
//! worker holds one of its permits while it works.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backend::FAR;

/// The level a job with no history starts at. Measured over a 20 ms round
/// trip (`benches/peers.sh`, 2026-12-01): 16 transfers halve 8's time on
/// 10,000 small files, FTP and SFTP, with CPU at 0.07-0.2 of wall.
pub const DEFAULT_START: usize = 16;

/// Where a job with no remembered level starts. Each side is its measured
/// round trip and the level worth starting at if it is far (the backend's
/// [`crate::backend::Profile::far_start`]); with no far
/// side, [`DEFAULT_START`]; with two, the lower of their levels (every
/// transfer holds a slot on both). Never above `max`.
pub fn first_level(sides: impl IntoIterator<Item = (Option<Duration>, usize)>, max: usize) -> usize {
    let far = sides.into_iter().filter(|(rtt, _)| rtt.is_some_and(|rtt| rtt >= FAR)).map(|(_, level)| level).min();
    far.unwrap_or(DEFAULT_START).clamp(1, max.max(1))
}

/// Local to local: the disks, not round trips, bound it.
pub const AUTO_MAX_LOCAL: usize = 16;

/// A raise must buy at least this much more throughput to be kept.
pub const MIN_GAIN: f64 = 1.10;

/// A window lasts at least this long, and until every transfer slot has
/// finished a file (or [`MAX_WINDOW`] passed, for big files).
const MIN_WINDOW: Duration = Duration::from_millis(1000);
const MAX_WINDOW: Duration = Duration::from_secs(6);
/// After a change, new transfers open connections and log in first: the
/// window starts this much later.
const SETTLE: Duration = Duration::from_millis(500);
/// Settled, the tuner tries one step up again after this long.
const REPROBE_AFTER: Duration = Duration::from_secs(20);

/// A finished file counts as this many bytes of work, so a window of small
/// files and one of big files are compared on one scale.
const FILE_WEIGHT: f64 = 64.0 * 1024.0;

/// Transfers at once: where to start and the ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    pub start: usize,
    pub max: usize,
}

impl Concurrency {
    pub fn fixed(n: usize) -> Concurrency {
        Concurrency { start: n.max(1), max: n.max(1) }
    }
}

/// A counting gate whose size can change while workers hold permits.
pub struct Gate {
    permits: Arc<Semaphore>,
    limit: AtomicUsize,
    /// Permits to destroy as they come back (the limit was lowered while
    /// they were held).
    debt: Arc<AtomicUsize>,
}

/// One worker's place in the gate.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    debt: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else { return };
        let paid = self.debt.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1)).is_ok();
        if paid {
            permit.forget();
        }
    }
}

impl Gate {
    pub fn new(limit: usize) -> Gate {
        let limit = limit.max(1);
        Gate {
            permits: Arc::new(Semaphore::new(limit)),
            limit: AtomicUsize::new(limit),
            debt: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::SeqCst)
    }

    /// Waits for a place; `None` only if the gate was closed.
    pub async fn enter(&self) -> Option<Slot> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok()?;
        Some(Slot { permit: Some(permit), debt: Arc::clone(&self.debt) })
    }

    /// Changes the number of places. Lowering never interrupts a worker:
    /// the places in use vanish as they are given back.
    pub fn set_limit(&self, limit: usize) {
        let limit = limit.max(1);
        let old = self.limit.swap(limit, Ordering::SeqCst);
        if limit > old {
            let mut more = limit - old;
            // Places still owed from a lowering are simply no longer owed.
            while more > 0 {
                let owed = self.debt.load(Ordering::SeqCst);
                if owed == 0 {
                    break;
                }
                let cancel = owed.min(more);
                if self.debt.compare_exchange(owed, owed - cancel, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    more -= cancel;
                }
            }
            self.permits.add_permits(more);
        } else if limit < old {
            let fewer = old - limit;
            let forgotten = self.permits.forget_permits(fewer);
            self.debt.fetch_add(fewer - forgotten, Ordering::SeqCst);
        }
    }
}

/// Work finished within one window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub elapsed: Duration,
    pub files: u64,
    pub bytes: u64,
}

impl Sample {
    fn score(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64().max(1e-3);
        (self.bytes as f64 + self.files as f64 * FILE_WEIGHT) / secs
    }
}

/// Why the level is what it is, for the summary and `-v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Still raising.
    Probing,
    /// A raise did not pay: the level is the best measured.
    Settled,
    /// A server refused more connections.
    ServerLimited,
    /// The ceiling (`--parallel`, `--src-parallel`, `--dst-parallel` or the
    /// automatic maximum) was reached while raises still paid.
    Ceiling,
    /// Started at the ceiling: nothing to tune.
    Fixed,
}

impl Phase {
    /// For the summary: why the level ended where it did.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Probing => "probing",
            Phase::Settled => "settled",
            Phase::ServerLimited => "server-limited",
            Phase::Ceiling => "ceiling",
            Phase::Fixed => "fixed",
        }
    }
}

/// What the tuner decided after a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep the level.
    Hold,
    /// Move to this level.
    Set(usize),
}

/// The level-finding logic, free of clocks and tasks so it can be tested
/// on made-up samples.
#[derive(Debug)]
pub struct Tuner {
    level: usize,
    max: usize,
    phase: Phase,
    /// The best level measured and its score. While probing, a level
    /// above it is the one being tried.
    best: Option<(usize, f64)>,
    since_settled: Duration,
    /// A raise has failed to pay once in this run: later probes are small.
    settled_once: bool,
    /// Windows measured in all.
    windows: u32,
}

impl Tuner {
    pub fn new(concurrency: Concurrency) -> Tuner {
        let max = concurrency.max.max(1);
        let level = concurrency.start.clamp(1, max);
        let phase = if level >= max { Phase::Fixed } else { Phase::Probing };
        Tuner { level, max, phase, best: None, since_settled: Duration::ZERO, settled_once: false, windows: 0 }
    }

    pub fn level(&self) -> usize {
        self.level
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The level worth starting the next run at: the best measured, once
    /// there was something to compare.
    pub fn remembered(&self) -> Option<usize> {
        match self.phase {
            Phase::ServerLimited | Phase::Ceiling => Some(self.level),
            _ => self.best.filter(|_| self.windows >= 2).map(|(level, _)| level),
        }
    }

    /// The next level to try: double until a raise first fails to pay
    /// (a cold start over a long link reaches its level in a few windows),
    /// then a quarter more at a time around the level found.
    fn step_up(&self) -> usize {
        let level = self.level;
        let step = if self.settled_once { level.div_ceil(4) } else { level };
        (level + step).max(level + 1)
    }

    /// A server's connection cap dropped below the level: obey it at once.
    pub fn server_cap(&mut self, cap: usize) -> Decision {
        let cap = cap.max(1);
        if cap >= self.level {
            return Decision::Hold;
        }
        self.max = self.max.min(cap);
        self.level = cap;
        self.phase = Phase::ServerLimited;
        self.best = None;
        Decision::Set(cap)
    }

    /// One window measured at the current level. `backlog`: transfers still
    /// queued; raising is pointless when there are too few to fill it.
    pub fn observe(&mut self, sample: Sample, backlog: usize) -> Decision {
        self.windows += 1;
        let score = sample.score();
        match self.phase {
            Phase::Probing => {}
            Phase::Settled | Phase::Ceiling | Phase::ServerLimited | Phase::Fixed => {
                // Keep the best score current: the link or the server may
                // have changed, and a later probe compares against now.
                if let Some((level, _)) = self.best
                    && level == self.level
                {
                    self.best = Some((level, score));
                }
                self.since_settled += sample.elapsed;
                if self.phase == Phase::Settled && self.since_settled >= REPROBE_AFTER && self.level < self.max {
                    self.phase = Phase::Probing;
                    self.best = Some((self.level, score));
                    return self.raise(backlog);
                }
                return Decision::Hold;
            }
        }
        let Some((best_level, best_score)) = self.best else {
            self.best = Some((self.level, score));
            return self.raise(backlog);
        };
        if self.level == best_level {
            // The last raise was held back (too few transfers were left).
            return self.raise(backlog);
        }
        if score >= best_score * MIN_GAIN {
            self.best = Some((self.level, score));
            self.raise(backlog)
        } else {
            self.settled_once = true;
            self.phase = Phase::Settled;
            self.since_settled = Duration::ZERO;
            self.level = best_level;
            Decision::Set(best_level)
        }
    }

    fn raise(&mut self, backlog: usize) -> Decision {
        if self.level >= self.max {
            self.phase = Phase::Ceiling;
            return Decision::Hold;
        }
        let next = self.step_up().min(self.max);
        if backlog < next * 2 {
            // Too little left to fill more slots: a measurement now would
            // only see the run's tail.
            return Decision::Hold;
        }
        self.level = next;
        Decision::Set(next)
    }
}

/// When a window is complete: long enough, and either every slot finished
/// a file or the files are big enough that [`MAX_WINDOW`] passed.
pub fn window_complete(elapsed: Duration, files: u64, level: usize) -> bool {
    elapsed >= MAX_WINDOW || (elapsed >= MIN_WINDOW && files >= level as u64)
}

/// The pause after a level change before a window starts counting.
pub fn settle_time() -> Duration {
    SETTLE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(files: u64) -> Sample {
        Sample { elapsed: Duration::from_secs(2), files, bytes: files * 8192 }
    }

    /// Throughput proportional to the level up to `knee`, flat after it.
    fn latency_bound(level: usize, knee: usize) -> Sample {
        window(level.min(knee) as u64 * 10)
    }

    #[test]
    fn a_far_side_starts_higher_and_the_cap_still_rules() {
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(first_level([(None, 64), (None, 32)], 128), DEFAULT_START);
        assert_eq!(first_level([(ms(0), 64), (None, 16)], 128), DEFAULT_START);
        assert_eq!(first_level([(None, 16), (ms(20), 64)], 128), 64);
        assert_eq!(first_level([(ms(1), 64), (ms(5), 32)], 128), 32);
        assert_eq!(first_level([(ms(20), 64), (ms(30), 32)], 128), 32);
        assert_eq!(first_level([(ms(20), 64)], 8), 8);
        assert_eq!(first_level([(ms(0), 64)], 4), 4);
    }

    #[test]
    fn grows_while_throughput_grows_then_settles_on_the_best() {
        let mut tuner = Tuner::new(Concurrency { start: 16, max: 128 });
        let mut levels = vec![tuner.level()];
        for _ in 0..10 {
            let sample = latency_bound(tuner.level(), 34);
            if let Decision::Set(level) = tuner.observe(sample, 100_000) {
                levels.push(level);
            }
        }
        // 16 -> 32 -> 64 (no better than 32) -> back to 32.
        assert_eq!(levels, vec![16, 32, 64, 32]);
        assert_eq!(tuner.phase(), Phase::Settled);
        assert_eq!(tuner.remembered(), Some(32));
    }

    #[test]
    fn stops_at_the_ceiling() {
        let mut tuner = Tuner::new(Concurrency { start: 16, max: 30 });
        for _ in 0..6 {
            let sample = latency_bound(tuner.level(), 1000);
            tuner.observe(sample, 100_000);
        }
        assert_eq!((tuner.level(), tuner.phase()), (30, Phase::Ceiling));
        assert_eq!(tuner.remembered(), Some(30));
    }

    #[test]
    fn a_fixed_level_never_moves() {
        let mut tuner = Tuner::new(Concurrency::fixed(8));
        for _ in 0..5 {
            assert_eq!(tuner.observe(window(80), 100_000), Decision::Hold);
        }
        assert_eq!((tuner.level(), tuner.phase(), tuner.remembered()), (8, Phase::Fixed, None));
    }

    #[test]
    fn a_server_refusal_caps_the_level_for_good() {
        let mut tuner = Tuner::new(Concurrency { start: 16, max: 64 });
        assert_eq!(tuner.observe(latency_bound(16, 1000), 100_000), Decision::Set(32));
        assert_eq!(tuner.server_cap(10), Decision::Set(10));
        assert_eq!(tuner.server_cap(12), Decision::Hold);
        for _ in 0..20 {
            assert_eq!(tuner.observe(latency_bound(10, 1000), 100_000), Decision::Hold);
        }
        assert_eq!((tuner.level(), tuner.phase(), tuner.remembered()), (10, Phase::ServerLimited, Some(10)));
    }

    #[test]
    fn no_raise_for_the_tail_of_a_run() {
        let mut tuner = Tuner::new(Concurrency { start: 16, max: 64 });
        assert_eq!(tuner.observe(window(160), 30), Decision::Hold);
        assert_eq!(tuner.level(), 16);
    }

    #[test]
    fn settled_it_probes_again_later() {
        let mut tuner = Tuner::new(Concurrency { start: 16, max: 64 });
        tuner.observe(latency_bound(16, 16), 100_000); // -> 32
        assert_eq!(tuner.observe(latency_bound(32, 16), 100_000), Decision::Set(16));
        let mut decisions = Vec::new();
        for _ in 0..12 {
            // The server got faster meanwhile.
            decisions.push(tuner.observe(latency_bound(tuner.level(), 48), 100_000));
        }
        // Probes after settling are a quarter up, not a doubling.
        assert!(decisions.contains(&Decision::Set(20)), "{decisions:?}");
        assert!(tuner.level() > 16);
    }

    #[tokio::test]
    async fn the_gate_follows_its_limit_even_while_places_are_held() {
        let gate = Gate::new(4);
        let held: Vec<Slot> = futures_join(&gate, 4).await;
        gate.set_limit(2);
        assert_eq!(gate.permits.available_permits(), 0);
        drop(held);
        // Two of the four came back as places, two were destroyed.
        assert_eq!(gate.permits.available_permits(), 2);
        gate.set_limit(5);
        assert_eq!(gate.permits.available_permits(), 5);
        let held = futures_join(&gate, 5).await;
        gate.set_limit(1);
        gate.set_limit(3);
        drop(held);
        assert_eq!(gate.permits.available_permits(), 3);
    }

    async fn futures_join(gate: &Gate, n: usize) -> Vec<Slot> {
        let mut slots = Vec::new();
        for _ in 0..n {
            slots.push(gate.enter().await.expect("open gate"));
        }
        slots
    }
}
