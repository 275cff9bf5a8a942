//! The progress line a sync shows on a terminal. While the trees are being
//! listed it says so, with the work found so far marked as growing (`+`);
//! once both listings are in, a bar, the share done and an ETA. Rates are
//! the last few seconds', not the run's average; a few large files in
//! flight are named with their share done. The line is cut to the
//! terminal's width (it must never wrap: a wrapped line is redrawn one row
//! lower each time), and drawn only when both stdout and stderr are
//! terminals (`Reporter::start_progress`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::units::human_bytes;

/// How far back the shown rates look.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// A file this large in flight is named on the line (when few run).
const NAMED_SIZE: u64 = 8 * 1024 * 1024;
/// At most this many files in flight for any to be named.
const NAMED_AT_MOST: usize = 3;

/// What the line counts.
#[derive(Default)]
pub struct Progress {
    /// Both listings still going (or the files being hashed): the totals grow.
    listing: AtomicBool,
    /// The listings are in, the files being hashed.
    hashing: AtomicBool,
    /// Copies start while the trees are listed (otherwise the totals come
    /// only once the whole plan is made, and the listing shows none).
    streamed: AtomicBool,
    /// When the listing began.
    started: std::sync::OnceLock<Instant>,
    listed: AtomicU64,
    /// Entries of trees read whole, counted as they arrive (the planner
    /// sees them, and `listed` counts them, once both trees are in).
    arrived: AtomicU64,
    done_files: AtomicU64,
    done_bytes: AtomicU64,
    to_copy_files: AtomicU64,
    to_copy_bytes: AtomicU64,
    /// Deletions found; only an upper bound until [`Progress::deleting`]
    /// gives the count that passed the safety checks.
    to_delete: AtomicU64,
    deletes_final: AtomicBool,
    deleted: AtomicU64,
    in_flight: Mutex<Vec<Arc<InFlight>>>,
    /// (when, bytes, files, deletions) done, over the last few seconds.
    window: Mutex<VecDeque<(Instant, u64, u64, u64)>>,
}

/// A file being copied, as the line names it.
struct InFlight {
    name: String,
    size: u64,
    done: AtomicU64,
}

/// Takes its file off the line when the copy ends, however it ends; an
/// attempt that did not commit takes its bytes back from the total done
/// (the next attempt moves them again, or the file is given up).
pub struct InFlightGuard {
    progress: Arc<Progress>,
    file: Arc<InFlight>,
    committed: bool,
}

impl InFlightGuard {
    /// Bytes of this copy moved: its own share and the run's total.
    pub fn moved(&self, bytes: u64) {
        self.file.done.fetch_add(bytes, Ordering::Relaxed);
        self.progress.done_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The copy is committed: its bytes stay counted.
    pub fn committed(mut self) {
        self.committed = true;
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Ok(mut files) = self.progress.in_flight.lock() {
            files.retain(|f| !Arc::ptr_eq(f, &self.file));
        }
        if !self.committed {
            let done = self.file.done.load(Ordering::Relaxed);
            let _ = self
                .progress
                .done_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(done)));
        }
    }
}

impl Progress {
    pub fn listing_started(&self, streamed: bool) {
        let _ = self.started.set(Instant::now());
        self.listing.store(true, Ordering::Relaxed);
        self.streamed.store(streamed, Ordering::Relaxed);
    }

    pub fn hashing(&self) {
        self.hashing.store(true, Ordering::Relaxed);
    }

    pub fn listing_ended(&self) {
        self.listing.store(false, Ordering::Relaxed);
        self.hashing.store(false, Ordering::Relaxed);
    }

    pub fn listed(&self) {
        self.listed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn arrived(&self, entries: u64) {
        self.arrived.fetch_add(entries, Ordering::Relaxed);
    }

    /// A file copied and committed.
    pub fn copied(&self) {
        self.done_files.fetch_add(1, Ordering::Relaxed);
    }

    pub fn will_copy(&self, bytes: u64, files: u64) {
        self.to_copy_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.to_copy_files.fetch_add(files, Ordering::Relaxed);
    }

    pub fn will_delete(&self, count: u64) {
        self.to_delete.fetch_add(count, Ordering::Relaxed);
    }

    /// The deletions that stand once the safety checks have had their say.
    pub fn deleting(&self, count: u64) {
        self.to_delete.store(count, Ordering::Relaxed);
        self.deletes_final.store(true, Ordering::Relaxed);
    }

    pub fn deleted(&self) {
        self.deleted.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy given up for good (after its retries): out of the totals.
    pub fn gave_up(&self, bytes: u64) {
        let less = |by: u64| move |v: u64| Some(v.saturating_sub(by));
        let _ = self.to_copy_files.fetch_update(Ordering::Relaxed, Ordering::Relaxed, less(1));
        let _ = self.to_copy_bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, less(bytes));
    }

    /// A copy begins, `already` bytes of it kept from an earlier attempt
    /// (a resume): named on the line while it runs.
    pub fn copying(self: &Arc<Self>, path: &str, size: u64, already: u64) -> InFlightGuard {
        let name = path.rsplit('/').next().unwrap_or(path);
        // ASCII only, so that a character is a column.
        let name = name.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
        let file = Arc::new(InFlight { name, size, done: AtomicU64::new(0) });
        if let Ok(mut files) = self.in_flight.lock() {
            files.push(Arc::clone(&file));
        }
        let guard = InFlightGuard { progress: Arc::clone(self), file, committed: false };
        guard.moved(already);
        guard
    }

    /// The counts now, with rates over the last few seconds.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let done_bytes = self.done_bytes.load(Ordering::Relaxed);
        let done_files = self.done_files.load(Ordering::Relaxed);
        let deleted = self.deleted.load(Ordering::Relaxed);
        let (bytes_per_sec, files_per_sec, deletes_per_sec) = match self.window.lock() {
            Ok(mut window) => {
                window.push_back((now, done_bytes, done_files, deleted));
                while window.len() > 2 && window.front().is_some_and(|w| now.duration_since(w.0) > RATE_WINDOW) {
                    window.pop_front();
                }
                match window.front() {
                    Some((at, bytes, files, gone)) if now.duration_since(*at) >= Duration::from_millis(500) => {
                        let secs = now.duration_since(*at).as_secs_f64();
                        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
                        (rate(done_bytes, *bytes), rate(done_files, *files), rate(deleted, *gone))
                    }
                    _ => (0.0, 0.0, 0.0),
                }
            }
            Err(_) => (0.0, 0.0, 0.0),
        };
        let in_flight = match self.in_flight.lock() {
            Ok(files) if !files.is_empty() && files.len() <= NAMED_AT_MOST => files
                .iter()
                .filter(|f| f.size >= NAMED_SIZE)
                .map(|f| (f.name.clone(), f.size, f.done.load(Ordering::Relaxed)))
                .collect(),
            _ => Vec::new(),
        };
        Snapshot {
            listing: self.listing.load(Ordering::Relaxed),
            hashing: self.hashing.load(Ordering::Relaxed),
            streamed: self.streamed.load(Ordering::Relaxed),
            elapsed: self.started.get().map(|t| now.saturating_duration_since(*t)).unwrap_or_default(),
            listed: self.listed.load(Ordering::Relaxed),
            arrived: self.arrived.load(Ordering::Relaxed),
            to_copy_files: self.to_copy_files.load(Ordering::Relaxed),
            to_copy_bytes: self.to_copy_bytes.load(Ordering::Relaxed),
            to_delete: self.to_delete.load(Ordering::Relaxed),
            deletes_final: self.deletes_final.load(Ordering::Relaxed),
            deleted,
            done_files,
            done_bytes,
            bytes_per_sec,
            files_per_sec,
            deletes_per_sec,
            in_flight,
        }
    }
}

/// The numbers one drawing of the line shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub listing: bool,
    pub hashing: bool,
    pub streamed: bool,
    /// Since the listing began.
    pub elapsed: Duration,
    pub listed: u64,
    /// Entries of trees read whole that have arrived (both sides).
    pub arrived: u64,
    pub to_copy_files: u64,
    pub to_copy_bytes: u64,
    pub to_delete: u64,
    /// `to_delete` is the count that will run, not an upper bound.
    pub deletes_final: bool,
    pub deleted: u64,
    pub done_files: u64,
    pub done_bytes: u64,
    pub bytes_per_sec: f64,
    pub files_per_sec: f64,
    pub deletes_per_sec: f64,
    /// Large files in flight: name, size, bytes done.
    pub in_flight: Vec<(String, u64, u64)>,
}

impl Snapshot {
    /// The line, at most `width` columns ([`line_width`]).
    pub fn line(&self, width: usize) -> String {
        // (what, its priority: the lowest goes first when the line is too long)
        let mut parts: Vec<(String, u8)> = Vec::new();
        let grow = if self.listing { "+" } else { "" };
        let rates = self.bytes_per_sec > 0.0;
        let bytes_rate = format!("{}/s", human_bytes(self.bytes_per_sec as u64));
        // Not while one large file is all that moves.
        let files_rate = match self.files_per_sec >= 0.5 {
            true => format!("{} files/s", per_sec(self.files_per_sec)),
            false => String::new(),
        };
        let named = if self.listing { 4 } else { 6 };
        if self.listing {
            let entries = if self.listed == 1 { "entry" } else { "entries" };
            let phase = match (self.hashing, self.streamed) {
                (true, _) => format!("hashing: {} {entries} listed", count(self.listed)),
                (false, true) => format!("listing: {} {entries}", count(self.listed)),
                // Trees read whole: counted as they arrive, planned once both are in.
                (false, false) if self.arrived > 0 => {
                    let entries = if self.arrived == 1 { "entry" } else { "entries" };
                    format!("listing both trees: {} {entries}, {}", count(self.arrived), duration(self.elapsed))
                }
                (false, false) => format!("listing both trees, {}", duration(self.elapsed)),
            };
            parts.push((phase, 9));
            // A plan made whole has no totals before it is made.
            if self.streamed {
                parts.push((
                    format!(
                        "to copy {}{grow} files, {}{grow}",
                        count(self.to_copy_files),
                        human_bytes(self.to_copy_bytes)
                    ),
                    8,
                ));
            }
            if self.streamed && self.to_delete > 0 {
                // Found so far; the safety checks may hold some or all back.
                parts.push((format!("up to {} to delete", count(self.to_delete)), 7));
            }
            if self.done_files > 0 || self.done_bytes > 0 {
                parts.push((format!("copied {}, {}", count(self.done_files), human_bytes(self.done_bytes)), 6));
            }
            if rates {
                parts.push((bytes_rate, 5));
            }
            if !files_rate.is_empty() {
                parts.push((files_rate, 3));
            }
        } else {
            let share = self.share();
            let bar_width = match width {
                100.. => 20,
                70..100 => 10,
                _ => 0,
            };
            if bar_width > 0 {
                parts.push((bar(share, bar_width), 2));
            }
            let percent = (share * 100.0).floor() as u64;
            let deleting = self.deletes_final && self.to_delete > 0;
            if self.to_copy_files > 0 {
                let (done, total) = (human_bytes(self.done_bytes), human_bytes(self.to_copy_bytes));
                parts.push((format!("{percent:>3}% {done}/{total}"), 9));
                parts.push((format!("{}/{} files", count(self.done_files), count(self.to_copy_files)), 5));
            } else {
                parts.push((format!("{percent:>3}%"), 9));
            }
            if deleting {
                let rank = if self.to_copy_files > 0 { 4 } else { 9 };
                parts.push((format!("deleted {}/{}", count(self.deleted), count(self.to_delete)), rank));
            }
            if rates {
                parts.push((bytes_rate, 7));
            }
            if !files_rate.is_empty() {
                parts.push((files_rate, 3));
            }
            parts.push((format!("eta {}", self.eta().map(duration).unwrap_or_else(|| "-".into())), 8));
        }
        for (name, size, done) in &self.in_flight {
            let percent = if *size > 0 { done.saturating_mul(100) / size } else { 100 };
            parts.push((format!("{} {percent}%", shorten(name, 20)), named));
        }
        fit(parts, width)
    }

    /// The share of the work done: by bytes, else by files; by deletions
    /// once the copies are done (they run after them).
    fn share(&self) -> f64 {
        let copied = self.done_files >= self.to_copy_files && self.done_bytes >= self.to_copy_bytes;
        let share = if copied && self.deletes_final && self.to_delete > 0 {
            self.deleted as f64 / self.to_delete as f64
        } else if self.to_copy_bytes > 0 {
            self.done_bytes as f64 / self.to_copy_bytes as f64
        } else if self.to_copy_files > 0 {
            self.done_files as f64 / self.to_copy_files as f64
        } else {
            1.0
        };
        share.clamp(0.0, 1.0)
    }

    /// Time left at the current rate, once the totals stand.
    fn eta(&self) -> Option<Duration> {
        if self.listing {
            return None;
        }
        let bytes_left = self.to_copy_bytes.saturating_sub(self.done_bytes);
        let files_left = self.to_copy_files.saturating_sub(self.done_files);
        // Deletions run after the copies; until the count stands, unknown.
        let deletes_left = match self.deletes_final {
            true => self.to_delete.saturating_sub(self.deleted),
            false => 0,
        };
        let secs = if bytes_left > 0 && self.bytes_per_sec >= 1.0 {
            bytes_left as f64 / self.bytes_per_sec
        } else if bytes_left == 0 && files_left > 0 && self.files_per_sec > 0.0 {
            files_left as f64 / self.files_per_sec
        } else if bytes_left == 0 && files_left == 0 && deletes_left > 0 && self.deletes_per_sec > 0.0 {
            deletes_left as f64 / self.deletes_per_sec
        } else if bytes_left == 0 && files_left == 0 && deletes_left == 0 {
            0.0
        } else {
            return None;
        };
        // Rounded up: "0s" only when nothing is left.
        Some(Duration::from_secs_f64(secs.ceil().min(1e7)))
    }
}

/// The parts joined, dropping the least important until they fit `width`.
fn fit(mut parts: Vec<(String, u8)>, width: usize) -> String {
    const GAP: &str = "  ";
    let len = |parts: &[(String, u8)]| -> usize {
        parts.iter().map(|(p, _)| p.chars().count()).sum::<usize>() + GAP.len() * parts.len().saturating_sub(1)
    };
    while parts.len() > 1 && len(&parts) > width {
        let least = parts.iter().enumerate().min_by_key(|(_, (_, rank))| *rank).map(|(i, _)| i).unwrap_or(0);
        parts.remove(least);
    }
    let line = parts.into_iter().map(|(p, _)| p).collect::<Vec<_>>().join(GAP);
    line.chars().take(width).collect()
}

fn bar(share: f64, width: usize) -> String {
    let inner = width - 2;
    let full = ((share * inner as f64).floor() as usize).min(inner);
    let mut bar = String::with_capacity(width);
    bar.push('[');
    bar.push_str(&"=".repeat(full));
    if full < inner {
        bar.push('>');
        bar.push_str(&" ".repeat(inner - full - 1));
    }
    bar.push(']');
    bar
}

/// `12,345`.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn per_sec(rate: f64) -> String {
    if rate >= 10.0 { format!("{}", rate.round() as u64) } else { format!("{rate:.1}") }
}

/// `45s`, `3m05s`, `2h04m`.
fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

fn shorten(name: &str, at_most: usize) -> String {
    if name.chars().count() <= at_most {
        return name.to_string();
    }
    let keep = at_most - 3;
    let (head, tail) = (keep / 2, keep - keep / 2);
    let chars: Vec<char> = name.chars().collect();
    let mut out: String = chars[..head].iter().collect();
    out.push_str("...");
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// stderr as indicatif sees it: [`line_width`] wide. indicatif pads its
/// line to the terminal's width, which leaves the cursor in the last
/// column: the `^C` a terminal echoes then wraps onto a new row, and the
/// row cleared is that one, the progress line staying above the stop
/// notice. Two columns short, the echo fits.
#[derive(Debug)]
pub struct NarrowStderr(console::Term);

impl Default for NarrowStderr {
    fn default() -> NarrowStderr {
        NarrowStderr(console::Term::stderr())
    }
}

impl indicatif::TermLike for NarrowStderr {
    fn width(&self) -> u16 {
        line_width().clamp(1, u16::MAX as usize) as u16
    }
    fn height(&self) -> u16 {
        indicatif::TermLike::height(&self.0)
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        indicatif::TermLike::move_cursor_up(&self.0, n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        indicatif::TermLike::move_cursor_down(&self.0, n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        indicatif::TermLike::move_cursor_right(&self.0, n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        indicatif::TermLike::move_cursor_left(&self.0, n)
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        indicatif::TermLike::write_line(&self.0, s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        indicatif::TermLike::write_str(&self.0, s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        indicatif::TermLike::clear_line(&self.0)
    }
    fn flush(&self) -> std::io::Result<()> {
        indicatif::TermLike::flush(&self.0)
    }
}

/// The widest the progress line may be: the terminal's width less the two
/// columns a `^C` echo takes (see [`NarrowStderr`]).
pub fn line_width() -> usize {
    terminal_width().saturating_sub(2)
}

/// The terminal's width in columns (stderr's), 80 when it cannot be told.
pub fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ writes one winsize into the struct it is given.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 { size.ws_col as usize } else { 80 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing() -> Snapshot {
        Snapshot {
            listing: true,
            hashing: false,
            streamed: true,
            elapsed: Duration::from_secs(12),
            listed: 123_456,
            arrived: 0,
            to_copy_files: 2_817,
            to_copy_bytes: 80_000_000,
            to_delete: 12,
            deletes_final: false,
            deleted: 0,
            done_files: 1_000,
            done_bytes: 30_000_000,
            bytes_per_sec: 5_000_000.0,
            files_per_sec: 812.0,
            deletes_per_sec: 0.0,
            in_flight: Vec::new(),
        }
    }

    #[test]
    fn the_listing_phase_says_so_and_marks_totals_as_growing() {
        let line = listing().line(119);
        assert!(line.starts_with("listing: 123,456 entries"), "{line}");
        assert!(line.contains("to copy 2,817+ files, 76.3 MiB+"), "{line}");
        assert!(line.contains("up to 12 to delete"), "{line}");
        assert!(!line.contains("eta") && !line.contains('%'), "no share nor ETA while totals grow: {line}");
    }

    #[test]
    fn once_listed_a_bar_the_share_and_an_eta_at_the_current_rate() {
        let done = Snapshot { listing: false, ..listing() };
        let line = done.line(119);
        assert!(line.starts_with("[======>           ]   37% 28.6 MiB/76.3 MiB"), "{line}");
        assert!(line.contains("1,000/2,817 files"), "{line}");
        assert!(line.contains("4.8 MiB/s  812 files/s"), "{line}");
        // 50,000,000 bytes left at 5,000,000 a second.
        assert!(line.contains("eta 10s"), "{line}");
    }

    #[test]
    fn every_line_fits_its_width_dropping_the_least_important_first() {
        let big = ("ubuntu-26.04-desktop-amd64-with-a-long-name.iso".to_string(), 4 << 30, 1 << 30);
        for snapshot in [listing(), Snapshot { listing: false, in_flight: vec![big.clone(), big], ..listing() }] {
            for width in [20, 39, 59, 79, 119, 200] {
                let line = snapshot.line(width);
                assert!(line.chars().count() <= width, "{width}: {line}");
            }
            let narrow = snapshot.line(79);
            assert!(narrow.contains("entries") || narrow.contains("eta"), "the essentials stay: {narrow}");
        }
        let wide = Snapshot { listing: false, in_flight: vec![("big.iso".into(), 100 << 20, 25 << 20)], ..listing() }
            .line(159);
        assert!(wide.contains("big.iso 25%"), "{wide}");
    }

    #[test]
    fn rates_are_the_last_seconds_not_the_runs_average() {
        let progress = Arc::new(Progress::default());
        let t0 = Instant::now();
        progress.snapshot(t0);
        // A burst at the start, then 11 s at 1 MB/s and a file a second.
        let copy = progress.copying("f", 1 << 30, 0);
        copy.moved(100_000_000);
        (0..100).for_each(|_| progress.copied());
        progress.snapshot(t0 + Duration::from_secs(1));
        let mut last = Snapshot::default();
        for s in 2..=12 {
            copy.moved(1_000_000);
            progress.copied();
            last = progress.snapshot(t0 + Duration::from_secs(s));
        }
        assert!((last.bytes_per_sec - 1_000_000.0).abs() < 1.0, "{}", last.bytes_per_sec);
        assert!((last.files_per_sec - 1.0).abs() < 0.01, "{}", last.files_per_sec);
    }

    #[test]
    fn a_copy_is_named_while_it_runs_and_gone_after() {
        let progress = Arc::new(Progress::default());
        // Resumed at 8 MiB, 8 more moved.
        let guard = progress.copying("dir/big.iso", 64 << 20, 8 << 20);
        guard.moved(8 << 20);
        let now = Instant::now();
        assert_eq!(progress.snapshot(now).in_flight, vec![("big.iso".to_string(), 64 << 20, 16 << 20)]);
        assert_eq!(progress.snapshot(now).done_bytes, 16 << 20);
        // An attempt that fails takes its bytes back; a committed one keeps them.
        drop(guard);
        assert!(progress.snapshot(now).in_flight.is_empty());
        assert_eq!(progress.snapshot(now).done_bytes, 0);
        let guard = progress.copying("dir/big.iso", 64 << 20, 0);
        guard.moved(64 << 20);
        guard.committed();
        assert_eq!(progress.snapshot(now).done_bytes, 64 << 20);
    }

    #[test]
    fn durations_and_counts_read_as_people_write_them() {
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(duration(Duration::from_secs(7440)), "2h04m");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(shorten("abcdefghijklmnopqrstuvwxyz", 10), "abc...wxyz");
    }

    #[test]
    fn deletions_count_down_once_their_number_stands() {
        let copied = Snapshot { listing: false, done_files: 2_817, done_bytes: 80_000_000, ..listing() };
        // Found while listing, maybe held back later: not shown as work to do.
        assert!(!copied.line(119).contains("delete"), "{}", copied.line(119));
        let deleting = Snapshot { deletes_final: true, to_delete: 300, deleted: 100, deletes_per_sec: 50.0, ..copied };
        let line = deleting.line(119);
        assert!(line.contains("deleted 100/300") && line.contains("eta 4s"), "{line}");
        assert!(line.contains(" 33% "), "the share is the deletions' once the copies are done: {line}");
        let only = Snapshot { to_copy_files: 0, to_copy_bytes: 0, done_files: 0, done_bytes: 0, ..deleting };
        assert!(only.line(79).contains(" 33%  deleted 100/300"), "{}", only.line(79));
        // A plan made whole shows no totals while it lists.
        let whole = Snapshot { streamed: false, ..listing() };
        let line = whole.line(119);
        assert!(line.starts_with("listing both trees, 12s") && !line.contains("to copy"), "{line}");
        let arriving = Snapshot { arrived: 48_210, ..whole };
        let line = arriving.line(119);
        assert!(line.starts_with("listing both trees: 48,210 entries, 12s") && !line.contains("to copy"), "{line}");
        assert!(arriving.line(40).starts_with("listing both trees: 48,210 entries"), "{}", arriving.line(40));
        let one = Snapshot { listed: 1, ..listing() };
        assert!(one.line(119).starts_with("listing: 1 entry "), "{}", one.line(119));
    }
}
