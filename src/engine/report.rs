//! What a run tells the user: one line (or JSON object) per action, errors
//! and warnings on stderr, a progress bar on a terminal, and a summary.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use super::progress::{InFlightGuard, NarrowStderr, Progress, line_width};
use crate::error::OpError;
use crate::plan::Action;
use crate::units::human_bytes;

/// How much to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Verbosity {
    /// `-q`: errors only.
    Quiet,
    #[default]
    Normal,
    /// `-v`: every action.
    Verbose,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct OutputOptions {
    /// JSON lines on stdout instead of text.
    pub json: bool,
    pub verbosity: Verbosity,
}

/// Counters for the summary. Atomics: many transfers report at once.
#[derive(Debug, Default)]
pub struct Stats {
    pub files_transferred: AtomicU64,
    pub bytes_transferred: AtomicU64,
    pub files_deleted: AtomicU64,
    pub files_unchanged: AtomicU64,
    pub dirs_created: AtomicU64,
    pub mtimes_set: AtomicU64,
    pub modes_set: AtomicU64,
    pub owners_set: AtomicU64,
    pub errors: AtomicU64,
    pub warnings: AtomicU64,
    pub retries: AtomicU64,
    /// Copies `--verify` compared with their source.
    pub files_verified: AtomicU64,
    /// Bytes moved so far, counted as they move (not when a file ends):
    /// what the concurrency tuner measures big files by.
    pub bytes_moving: AtomicU64,
    /// barge temporaries left to a run that may still be writing them.
    pub temporaries_left: AtomicU64,
    /// `--remove-source-files`: source files removed after their copy.
    pub source_files_removed: AtomicU64,
}

/// The final account of a run, as printed and as `--json` writes it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub files_transferred: u64,
    pub bytes_transferred: u64,
    pub files_deleted: u64,
    pub files_unchanged: u64,
    pub dirs_created: u64,
    pub errors: u64,
    pub warnings: u64,
    pub retries: u64,
    /// `check` only: entries that differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub differences: Option<u64>,
    /// `--verify`: copies compared with their source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_verified: Option<u64>,
    /// The signal that stopped the run early, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<&'static str>,
    /// Actions not started because of that signal (or because the servers
    /// stopped answering).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_started: Option<u64>,
    /// Why the run gave up on servers that stopped answering (exit 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gave_up: Option<String>,
    /// barge temporaries in the destination left to a run that may still
    /// be writing them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporaries_left: Option<u64>,
    /// `--remove-source-files`: source files removed once their copy was
    /// committed and confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_files_removed: Option<u64>,
    pub duration_s: f64,
    /// How transfers went: concurrency, rate and round trips (sync only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfers: Option<TransferStats>,
}

/// The engine's side of a sync, for `-v` and the JSON summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TransferStats {
    /// Transfers at once when the copying began and when it ended.
    pub parallel_start: usize,
    pub parallel_end: usize,
    /// Why it ended there: probing, settled, server-limited, ceiling, fixed.
    pub parallel_state: &'static str,
    /// Where the next run of this job starts (remembered in the state
    /// database), when this run measured enough to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_next: Option<usize>,
    /// Files copied per second of the copying phase.
    pub files_per_second: f64,
    /// Round trips each side's server was asked for during the run (listing
    /// included), and per file copied.
    pub src_round_trips: u64,
    pub dst_round_trips: u64,
    pub src_round_trips_per_file: f64,
    pub dst_round_trips_per_file: f64,
}

impl TransferStats {
    /// The `-v` line.
    pub fn line(&self) -> String {
        format!(
            "parallel {} -> {} ({}); {:.1} files/s; round trips: source {} ({:.2} per file), destination {} ({:.2} per file)",
            self.parallel_start,
            self.parallel_end,
            self.parallel_state,
            self.files_per_second,
            self.src_round_trips,
            self.src_round_trips_per_file,
            self.dst_round_trips,
            self.dst_round_trips_per_file
        )
    }
}

pub struct Reporter {
    opts: OutputOptions,
    pub stats: Stats,
    /// What the progress line counts (counted whether it is shown or not).
    progress: Arc<Progress>,
    /// The progress line, on a terminal.
    bar: Mutex<Option<ProgressBar>>,
    stdout: Mutex<std::io::Stdout>,
    /// `--log-file`: every action, warning and error, with times.
    log: Option<Mutex<std::fs::File>>,
}

impl Reporter {
    pub fn new(opts: OutputOptions) -> Reporter {
        Reporter {
            opts,
            stats: Stats::default(),
            progress: Arc::default(),
            bar: Mutex::new(None),
            stdout: Mutex::new(std::io::stdout()),
            log: None,
        }
    }

    /// Also appends every line to `path` (created 0600 if new).
    pub fn with_log_file(mut self, path: &std::path::Path) -> std::io::Result<Reporter> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        self.log = Some(Mutex::new(file));
        Ok(self)
    }

    fn log(&self, line: &str) {
        if let Some(log) = &self.log
            && let Ok(mut file) = log.lock()
        {
            // A full disk must not stop the transfer it is logging.
            let _ = writeln!(file, "{} {line}", crate::units::format_utc(crate::units::unix_now_secs()));
        }
    }

    /// A line for the log file alone (what the terminal is told elsewhere).
    pub fn log_only(&self, line: &str) {
        self.log(line);
    }

    pub fn options(&self) -> OutputOptions {
        self.opts
    }

    /// Shows the progress line (see `progress`) when stdout and stderr are
    /// both terminals and the output is for a person; otherwise nothing but
    /// the summary is drawn. Called once, as the listings start.
    pub fn start_progress(&self, streamed: bool) {
        self.progress.listing_started(streamed);
        let terminal = std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
        if self.opts.json || self.opts.verbosity == Verbosity::Quiet || !terminal {
            return;
        }
        let progress = Arc::clone(&self.progress);
        let line = move |_: &ProgressState, out: &mut dyn std::fmt::Write| {
            let _ = out.write_str(&progress.snapshot(Instant::now()).line(line_width()));
        };
        let style = ProgressStyle::with_template("{line}")
            .map(|style| style.with_key("line", line))
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(NarrowStderr::default()), 20);
        let bar = ProgressBar::with_draw_target(None, target).with_style(style);
        bar.enable_steady_tick(Duration::from_millis(250));
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    /// An entry of either listing, passed on to the planner.
    pub fn listed(&self) {
        self.progress.listed();
    }

    /// Entries of a tree read whole, arrived (before the planner sees them).
    pub fn arrived(&self, entries: u64) {
        self.progress.arrived(entries);
    }

    /// Both listings are in and the files are being hashed (`--compare hash`).
    pub fn hashing(&self) {
        self.progress.hashing();
    }

    /// Both listings are in: the totals stand.
    pub fn listing_done(&self) {
        self.progress.listing_ended();
    }

    /// Bytes moved, for the concurrency tuner (the progress line counts
    /// them through each copy's [`InFlightGuard`]).
    pub fn add_bytes(&self, bytes: u64) {
        self.stats.bytes_moving.fetch_add(bytes, Ordering::Relaxed);
    }

    /// More copies for the progress line, as the plan finds them.
    pub fn grow_progress(&self, bytes: u64, files: u64) {
        self.progress.will_copy(bytes, files);
    }

    /// A deletion the plan found (it may yet be held back).
    pub fn will_delete(&self) {
        self.progress.will_delete(1);
    }

    /// The deletions about to run.
    pub fn deleting(&self, count: u64) {
        self.progress.deleting(count);
    }

    /// A copy under way (from byte `already`), named on the progress line
    /// while the guard lives.
    pub fn copying(&self, path: &str, size: u64, already: u64) -> InFlightGuard {
        self.progress.copying(path, size, already)
    }

    pub fn finish_progress(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
    }

    /// Prints a line to stdout without tearing the progress bar.
    fn print(&self, line: &str) {
        let write = || {
            if let Ok(mut out) = self.stdout.lock() {
                // A closed stdout (`barge ... | head`) must not fail the run.
                let _ = writeln!(out, "{line}");
            }
        };
        match self.bar.lock().ok().and_then(|slot| slot.clone()) {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    fn eprint(&self, line: &str) {
        match self.bar.lock().ok().and_then(|slot| slot.clone()) {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// An action from a plan, as `plan` prints it: one line, with its reason.
    pub fn planned(&self, action: &Action) {
        if self.opts.json {
            self.print(&action_json(action, None, true).to_string());
        } else {
            self.print(&format!("{:<9} {}  ({})", action.verb(), action.path(), action.reason()));
        }
    }

    /// A difference found by `check`.
    pub fn difference(&self, word: &str, action: &Action) {
        if self.opts.json {
            let value = json!({"type": word, "path": action.path().to_string(), "reason": action.reason()});
            self.print(&value.to_string());
        } else {
            self.print(&format!("{word:<8} {}  ({})", action.path(), action.reason()));
        }
    }

    /// An action carried out.
    pub fn done(&self, action: &Action, bytes: Option<u64>) {
        let s = &self.stats;
        match action {
            Action::Copy { .. } => {
                s.files_transferred.fetch_add(1, Ordering::Relaxed);
                s.bytes_transferred.fetch_add(bytes.unwrap_or(0), Ordering::Relaxed);
                self.progress.copied();
            }
            Action::Delete { .. } => {
                s.files_deleted.fetch_add(1, Ordering::Relaxed);
                self.progress.deleted();
            }
            Action::Mkdir { .. } => {
                s.dirs_created.fetch_add(1, Ordering::Relaxed);
            }
            Action::SetMtime { .. } => {
                s.mtimes_set.fetch_add(1, Ordering::Relaxed);
            }
            Action::SetMode { .. } => {
                s.modes_set.fetch_add(1, Ordering::Relaxed);
            }
            Action::SetOwner { .. } => {
                s.owners_set.fetch_add(1, Ordering::Relaxed);
            }
            Action::RemoveSource { .. } => {
                s.source_files_removed.fetch_add(1, Ordering::Relaxed);
            }
            Action::Skip { .. } | Action::Conflict { .. } => {}
        }
        let size = bytes.map(|b| format!(", {}", human_bytes(b))).unwrap_or_default();
        let line = format!("{:<9} {}  ({}{size})", action.verb(), action.path(), action.reason());
        self.log(&line);
        if self.opts.json {
            self.print(&action_json(action, bytes, false).to_string());
        } else if self.opts.verbosity == Verbosity::Verbose {
            self.print(&line);
        }
    }

    /// An action that failed for good (after its retries).
    pub fn failed(&self, action: &Action, err: &OpError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if let Action::Copy { src, .. } = action {
            self.progress.gave_up(copied_bytes(src));
        }
        if self.opts.json {
            let value = json!({
                "type": "error",
                "action": action.verb(),
                "path": action.path().to_string(),
                "kind": format!("{:?}", err.kind),
                "message": err.to_string(),
            });
            self.print(&value.to_string());
        }
        let (verb, path) = (action.verb(), action.path().to_string());
        // "mkdir d: mkdir d: ..." says the same thing twice.
        let line = match err.op == verb && err.path == path {
            true => format!("error: {verb} {path}: {}", err.message),
            false => format!("error: {verb} {path}: {err}"),
        };
        self.log(&line);
        self.eprint(&line);
    }

    /// A failure not tied to one action (an unreadable directory, a
    /// conflict the user must resolve).
    pub fn error(&self, message: &str) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if self.opts.json {
            self.print(&json!({"type": "error", "message": message}).to_string());
        }
        self.log(&format!("error: {message}"));
        self.eprint(&format!("error: {message}"));
    }

    pub fn warning(&self, message: &str) {
        self.stats.warnings.fetch_add(1, Ordering::Relaxed);
        self.log(&format!("warning: {message}"));
        if self.opts.json {
            self.print(&json!({"type": "warning", "message": message}).to_string());
        }
        if self.opts.verbosity > Verbosity::Quiet {
            self.eprint(&format!("warning: {message}"));
        }
    }

    /// A notice for people (never in JSON).
    pub fn info(&self, message: &str) {
        self.log(message);
        if !self.opts.json && self.opts.verbosity > Verbosity::Quiet {
            self.eprint(message);
        }
    }

    /// A notice on stderr whatever the verbosity (a stop asked for), without
    /// tearing the progress line; `last`: the process ends right after, so
    /// the line is taken away for good.
    pub fn notice(&self, message: &str, last: bool) {
        self.log(message);
        if last {
            self.finish_progress();
        }
        self.eprint(message);
    }

    /// A detail for `-v` (and the log file); never in JSON lines.
    pub fn verbose(&self, message: &str) {
        self.log(message);
        if !self.opts.json && self.opts.verbosity == Verbosity::Verbose {
            self.eprint(message);
        }
    }

    pub fn retrying(&self, action: &Action, attempt: u32, err: &OpError) {
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        self.log(&format!("retry {attempt}: {} {}: {err}", action.verb(), action.path()));
        if self.opts.verbosity == Verbosity::Verbose && !self.opts.json {
            self.eprint(&format!("retry {attempt}: {} {}: {err}", action.verb(), action.path()));
        }
    }

    pub fn summary(&self, duration: Duration) -> Summary {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Summary {
            kind: "summary",
            files_transferred: get(&s.files_transferred),
            bytes_transferred: get(&s.bytes_transferred),
            files_deleted: get(&s.files_deleted),
            files_unchanged: get(&s.files_unchanged),
            dirs_created: get(&s.dirs_created),
            errors: get(&s.errors),
            warnings: get(&s.warnings),
            retries: get(&s.retries),
            differences: None,
            files_verified: Some(get(&s.files_verified)).filter(|n| *n > 0),
            interrupted: None,
            not_started: None,
            gave_up: None,
            temporaries_left: Some(get(&s.temporaries_left)).filter(|n| *n > 0),
            source_files_removed: None,
            transfers: None,
            duration_s: (duration.as_secs_f64() * 1000.0).round() / 1000.0,
        }
    }

    /// Prints the summary: JSON last line, or a few words for people.
    pub fn print_summary(&self, summary: &Summary) {
        self.finish_progress();
        if let Ok(line) = serde_json::to_string(summary) {
            self.log(&line);
        }
        if self.opts.json {
            if let Ok(line) = serde_json::to_string(summary) {
                self.print(&line);
            }
        } else if self.opts.verbosity > Verbosity::Quiet {
            let rate = if summary.duration_s > 0.0 {
                format!(" ({}/s)", human_bytes((summary.bytes_transferred as f64 / summary.duration_s) as u64))
            } else {
                String::new()
            };
            let line = match summary.kind {
                "plan" => format!(
                    "would transfer {} files, {}; delete {}; create {} directories; unchanged {}",
                    summary.files_transferred,
                    human_bytes(summary.bytes_transferred),
                    summary.files_deleted,
                    summary.dirs_created,
                    summary.files_unchanged
                ),
                "check" => format!(
                    "{} differences, {} files identical, {} errors",
                    summary.differences.unwrap_or(0),
                    summary.files_unchanged,
                    summary.errors
                ),
                _ => format!(
                    "transferred {} files, {}{rate}; deleted {}; {}unchanged {}; errors {}; {:.2}s",
                    summary.files_transferred,
                    human_bytes(summary.bytes_transferred),
                    summary.files_deleted,
                    summary.source_files_removed.map(|n| format!("removed from the source {n}; ")).unwrap_or_default(),
                    summary.files_unchanged,
                    summary.errors,
                    summary.duration_s
                ),
            };
            self.print(&line);
            if let (Verbosity::Verbose, Some(transfers)) = (self.opts.verbosity, &summary.transfers) {
                self.print(&transfers.line());
            }
        }
    }
}

/// The bytes a copy of `src` moves (a link's size is its target's length,
/// and making a link moves none).
pub fn copied_bytes(src: &crate::backend::Entry) -> u64 {
    if src.is_symlink() { 0 } else { src.size }
}

fn action_json(action: &Action, bytes: Option<u64>, planned: bool) -> serde_json::Value {
    let mut value = json!({
        "type": action.verb(),
        "path": action.path().to_string(),
        "reason": action.reason(),
    });
    if planned {
        value["planned"] = json!(true);
    }
    if let Action::Copy { src, .. } = action {
        value["size"] = json!(src.size);
    }
    if let Some(bytes) = bytes {
        value["bytes"] = json!(bytes);
    }
    value
}
