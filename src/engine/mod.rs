//! The engine runs a plan: many transfers at once (`--parallel`), a shared
//! byte-rate limit (`--bwlimit`), retries for temporary errors
//! (`--retries`), and it carries on past a failed file, reporting it.
//!
//! A plan runs in phases, because some actions depend on others:
//! 1. entries replaced by another type are removed (contents first);
//! 2. directories are created (parents first);
//! 3. files are copied and file mtimes set, in parallel;
//! 4. extraneous entries are deleted: files in parallel, then directories
//!    deepest first;
//! 5. directory mtimes are set, after everything inside them has changed.

pub mod adapt;
pub mod liveness;
mod moves;
pub mod progress;
pub mod report;
mod shards;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::backend::temp::temp_path;
use crate::backend::{Backend, EntryKind};
use crate::commit::{self, CopyOptions};
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;
use crate::plan::{Action, Plan, Reason, SyncedRecord};
use crate::retry::RetryPolicy;
use crate::state::{Journal, PartialRecord};
use crate::throttle::Throttle;

use adapt::{Concurrency, Decision, Gate, Phase, Sample, Tuner};
pub use moves::Moving;
use report::Reporter;

/// Files at least this large are journaled before their transfer starts,
/// so an interrupted transfer can be resumed instead of restarted.
pub const RESUME_MIN_SIZE: u64 = 8 * 1024 * 1024;

/// The operation of an attempt `--cutoff-mode hard` cut short.
const CUT: &str = "cut";

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Transfers (and other operations) at once: where the tuner starts and
    /// its ceiling.
    pub concurrency: Concurrency,
    pub retries: u32,
    /// Bytes per second for all transfers together.
    pub bwlimit: Option<u64>,
    /// `--bwlimit` as a timetable: the rate by local time, under `bwlimit`.
    pub bw_timetable: Option<crate::throttle::Timetable>,
    /// Write files straight to their final names (`--inplace`).
    pub inplace: bool,
    /// `--backup-dir`: replaced and deleted files are moved there.
    pub backup_dir: Option<RelPath>,
    /// `--verify`: every copy compared with its source before it is committed.
    pub verify: bool,
    /// `--fxp`: FTP to FTP copies go server to server.
    pub fxp: bool,
    /// `--segments`, `--segment-threshold`: large files in parallel ranges.
    pub segmenting: commit::Segmenting,
    /// The longest `--timeout` of the two sides: twice it without an
    /// answer from the servers ends the run (see [`liveness`]).
    pub timeout: std::time::Duration,
    /// The permission bits copies keep, with `--chmod`'s changes; `None`
    /// with `--no-perms`.
    pub perms: Option<crate::perms::Perms>,
    /// `--owner`, `--group`: the ids copies keep (already the
    /// destination's, see `sync::sources`).
    pub owners: crate::perms::Owners,
    /// `--remove-source-files`: see [`moves`].
    pub moving: Option<Moving>,
}

/// A plan split into the phases the engine runs, each in the order it runs.
#[derive(Debug, Default)]
pub struct Phases {
    /// Removed to make room for another type: contents before directories.
    pub replaced: Vec<Action>,
    /// Parents before children.
    pub mkdirs: Vec<Action>,
    /// Copies and file mtimes: any order, in parallel.
    pub transfers: Vec<Action>,
    /// Extraneous files and links, in parallel.
    pub delete_files: Vec<Action>,
    /// Extraneous directories, deepest first, after the files.
    pub delete_dirs: Vec<Action>,
    /// After every other phase (anything written into a directory changes
    /// its mtime).
    pub dir_mtimes: Vec<Action>,
    /// Last: a directory made read-only must hold everything first.
    pub dir_modes: Vec<Action>,
    /// Skips and conflicts: only reported.
    pub reported: Vec<Action>,
}

impl From<Plan> for Phases {
    fn from(plan: Plan) -> Phases {
        let mut phases = Phases::default();
        for action in plan.actions {
            let slot = match &action {
                Action::Delete { reason: Reason::Replaced, .. } => &mut phases.replaced,
                Action::Delete { kind: EntryKind::Dir, .. } => &mut phases.delete_dirs,
                Action::Delete { .. } => &mut phases.delete_files,
                Action::Mkdir { .. } => &mut phases.mkdirs,
                Action::Copy { .. }
                | Action::SetMtime { kind: EntryKind::File | EntryKind::Symlink, .. }
                | Action::SetMode { kind: EntryKind::File | EntryKind::Symlink, .. }
                | Action::SetOwner { kind: EntryKind::File | EntryKind::Symlink, .. } => &mut phases.transfers,
                Action::SetMtime { .. } => &mut phases.dir_mtimes,
                Action::SetMode { .. } | Action::SetOwner { .. } => &mut phases.dir_modes,
                Action::RemoveSource { .. } => &mut phases.transfers,
                Action::Skip { .. } | Action::Conflict { .. } => &mut phases.reported,
            };
            slot.push(action);
        }
        // Tree order lists a directory before its contents: reversed, the
        // contents come first.
        phases.replaced.reverse();
        phases.delete_dirs.reverse();
        phases
    }
}

pub struct Engine {
    pub src: Arc<dyn Backend>,
    pub dst: Arc<dyn Backend>,
    pub config: EngineConfig,
    pub reporter: Arc<Reporter>,
    pub journal: Option<Arc<Journal>>,
    throttle: Option<Throttle>,
    backup: Option<commit::BackupDir>,
    /// Actions skipped because SIGINT/SIGTERM asked for a stop.
    pub not_started: std::sync::atomic::AtomicU64,
    /// The rename-refused warning was given.
    warned_in_place: std::sync::atomic::AtomicBool,
    /// The destination-does-not-take-modes warning was given.
    warned_modes: std::sync::atomic::AtomicBool,
    /// The destination refused a change of owner (said once).
    warned_owners: std::sync::atomic::AtomicBool,
    /// How many actions run at once, and what sets that number.
    gate: Arc<Gate>,
    tuner: Mutex<Tuner>,
    /// How long the transfer phase took, for files per second.
    transfer_time: Mutex<std::time::Duration>,
    /// Directories being created by a streamed run, each with a flag that
    /// turns true when its mkdir is over: what is inside waits for it.
    creating: Mutex<HashMap<RelPath, tokio::sync::watch::Receiver<bool>>>,
    /// `--remove-empty-source-dirs`: directories files were moved out of.
    emptied_source_dirs: Mutex<std::collections::HashSet<RelPath>>,
    /// Segments beyond one per file, shared by the run's large files: one
    /// file's worth (`--segments` - 1).
    spare_streams: commit::SpareStreams,
    /// Whether the servers still answer; the run gives up when not.
    pub liveness: liveness::Liveness,
}

/// How the concurrency of a run went, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyOutcome {
    pub start: usize,
    pub end: usize,
    pub phase: Phase,
    /// The level worth starting the next run at, when measured.
    pub remembered: Option<usize>,
    pub transfer_time: std::time::Duration,
}

impl Engine {
    pub fn new(
        src: Arc<dyn Backend>,
        dst: Arc<dyn Backend>,
        config: EngineConfig,
        reporter: Arc<Reporter>,
        journal: Option<Arc<Journal>>,
    ) -> Engine {
        let timetable = config.bw_timetable.clone().map(|table| (table, crate::throttle::local_clock()));
        let throttle =
            (config.bwlimit.is_some() || timetable.is_some()).then(|| Throttle::scheduled(config.bwlimit, timetable));
        let backup = config.backup_dir.clone().map(commit::BackupDir::new);
        let tuner = Tuner::new(config.concurrency);
        let spare_streams = commit::SpareStreams::new(config.segmenting.segments.saturating_sub(1));
        Engine {
            liveness: liveness::Liveness::new(crate::retry::silence_to_give_up(config.timeout)),
            spare_streams,
            gate: Arc::new(Gate::new(tuner.level())),
            tuner: Mutex::new(tuner),
            transfer_time: Mutex::new(std::time::Duration::ZERO),
            src,
            dst,
            config,
            reporter,
            journal,
            throttle,
            backup,
            not_started: Default::default(),
            warned_in_place: Default::default(),
            warned_modes: Default::default(),
            warned_owners: Default::default(),
            creating: Default::default(),
            emptied_source_dirs: Default::default(),
        }
    }

    /// Runs every action of the plan; failures are reported, not returned.
    pub async fn run(self: &Arc<Self>, plan: Plan) {
        let mut phases = Phases::from(plan);
        if !self.dst.capabilities().set_dir_mtime {
            phases.dir_mtimes.clear();
        }
        for action in &phases.reported {
            match action {
                Action::Conflict { path, reason } => self.reporter.error(&format!("{path}: {reason}")),
                _ => self.reporter.done(action, None),
            }
        }
        // The copies not sent early join the progress line's totals.
        let (copies, bytes) = phases.transfers.iter().fold((0, 0), |(n, bytes), a| match a {
            Action::Copy { src, .. } => (n + 1, bytes + report::copied_bytes(src)),
            _ => (n, bytes),
        });
        self.reporter.grow_progress(bytes, copies);
        self.reporter.deleting((phases.delete_files.len() + phases.delete_dirs.len()) as u64);
        // A plan made whole (not streamed) has its totals only now.
        self.reporter.listing_done();
        self.sequential(phases.replaced).await;
        self.make_dirs(phases.mkdirs).await;
        let started = std::time::Instant::now();
        self.transfer(phases.transfers).await;
        *lock(&self.transfer_time) += started.elapsed();
        self.parallel(phases.delete_files).await;
        self.sequential(phases.delete_dirs).await;
        self.parallel(phases.dir_mtimes).await;
        self.parallel(phases.dir_modes).await;
        if self.config.moving.is_some_and(|m| m.empty_dirs) && crate::stop::requested().is_none() {
            self.remove_emptied_source_dirs().await;
        }
    }

    /// Runs the actions a streamed plan sends while the trees are still
    /// being listed: directories (each before what is inside it) and
    /// copies and file mtimes, at the level the tuner finds. Returns when
    /// the sender is dropped and everything sent is done; the rest of the
    /// plan (replacements, deletions, directory mtimes) then goes to
    /// [`Engine::run`].
    pub async fn run_streamed(self: &Arc<Self>, actions: tokio::sync::mpsc::Receiver<Action>) {
        let started = std::time::Instant::now();
        let receiver = Arc::new(tokio::sync::Mutex::new(actions));
        let backlog = {
            let receiver = Arc::clone(&receiver);
            move || receiver.try_lock().map_or(0, |r| r.len())
        };
        let engine = Arc::clone(self);
        let workers = self.config.concurrency.max.max(1);
        let work = async {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..workers {
                let (engine, receiver, gate) = (Arc::clone(&engine), Arc::clone(&receiver), Arc::clone(&self.gate));
                set.spawn(async move {
                    loop {
                        let Some(_slot) = gate.enter().await else { break };
                        let Some((action, created)) = engine.next_streamed(&receiver).await else { break };
                        engine.after_parent(action.path()).await;
                        // Boxed: a transfer's future is kilobytes, and the
                        // workers for every slot the pool may grow to
                        // would otherwise each hold one while idle.
                        Box::pin(engine.execute(action)).await;
                        if let Some((path, done)) = created {
                            lock(&engine.creating).remove(&path);
                            let _ = done.send(true);
                        }
                    }
                });
            }
            while let Some(joined) = set.join_next().await {
                if let Err(err) = joined
                    && err.is_panic()
                {
                    std::panic::resume_unwind(err.into_panic());
                }
            }
        };
        tokio::select! {
            () = work => {}
            () = self.tune(&backlog) => {}
        }
        self.obey_server_caps();
        *lock(&self.transfer_time) += started.elapsed();
    }

    /// The next streamed action; a mkdir is registered as under way before
    /// any other worker can take what is inside it.
    async fn next_streamed(
        &self,
        receiver: &tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Action>>,
    ) -> Option<(Action, Option<(RelPath, tokio::sync::watch::Sender<bool>)>)> {
        let mut receiver = receiver.lock().await;
        let action = receiver.recv().await?;
        let created = match &action {
            Action::Mkdir { path, .. } => {
                let (done, waiting) = tokio::sync::watch::channel(false);
                lock(&self.creating).insert(path.clone(), waiting);
                Some((path.clone(), done))
            }
            _ => None,
        };
        Some((action, created))
    }

    /// Waits until the directory holding `path` is made, when a streamed
    /// mkdir of it is under way (whether it worked or not: a failed one
    /// fails what is inside on its own).
    async fn after_parent(&self, path: &RelPath) {
        let waiting = lock(&self.creating).get(&path.parent()).cloned();
        if let Some(mut waiting) = waiting {
            let _ = waiting.wait_for(|done| *done).await;
        }
    }

    /// Where the concurrency started and ended, and why.
    pub fn concurrency(&self) -> ConcurrencyOutcome {
        let tuner = lock(&self.tuner);
        ConcurrencyOutcome {
            start: self.config.concurrency.start.clamp(1, self.config.concurrency.max.max(1)),
            end: tuner.level(),
            phase: tuner.phase(),
            remembered: tuner.remembered(),
            transfer_time: *lock(&self.transfer_time),
        }
    }

    /// Directories, parents first: one depth at a time, each depth's
    /// directories in parallel (a deep skeleton costs a round trip per
    /// level, not per directory).
    async fn make_dirs(self: &Arc<Self>, mkdirs: Vec<Action>) {
        let mut level: Vec<Action> = Vec::new();
        for action in mkdirs {
            if level.first().is_some_and(|first| first.path().depth() != action.path().depth()) {
                self.parallel(std::mem::take(&mut level)).await;
            }
            level.push(action);
        }
        self.parallel(level).await;
    }

    /// The transfers, with the tuner moving the gate as it measures.
    async fn transfer(self: &Arc<Self>, actions: Vec<Action>) {
        let queue = WorkQueue::new(actions);
        let engine = Arc::clone(self);
        let work = for_each_gated(queue.clone(), &self.gate, self.config.concurrency.max, move |action| {
            let engine = Arc::clone(&engine);
            async move { engine.execute(action).await }
        });
        let backlog = || queue.len();
        tokio::select! {
            () = work => {}
            () = self.tune(&backlog) => {}
        }
        // A run shorter than the tuner's first look still reports (and
        // remembers) a limit the server showed.
        self.obey_server_caps();
    }

    /// Applies a server's connection cap to the tuner and the gate; the new
    /// level when it lowered it.
    fn obey_server_caps(&self) -> Option<usize> {
        let cap = [self.src.connection_cap(), self.dst.connection_cap()].into_iter().flatten().min()?;
        let decision = lock(&self.tuner).server_cap(cap);
        match decision {
            Decision::Set(level) => {
                self.gate.set_limit(level);
                Some(level)
            }
            Decision::Hold => None,
        }
    }

    /// Measures throughput window by window and applies the tuner's
    /// decisions; runs until the transfers end (never returns by itself).
    async fn tune(&self, backlog: &(dyn Fn() -> usize + Sync)) {
        use std::sync::atomic::Ordering::Relaxed;
        use std::time::Instant;
        let stats = &self.reporter.stats;
        let counters = || (stats.files_transferred.load(Relaxed), stats.bytes_moving.load(Relaxed));
        let mut resume_at = Instant::now() + adapt::settle_time();
        let mut window: Option<(Instant, (u64, u64))> = None;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if let Some(level) = self.obey_server_caps() {
                self.reporter.info(&format!("parallel {level}: the server refuses more connections"));
                (window, resume_at) = (None, Instant::now() + adapt::settle_time());
                continue;
            }
            let now = Instant::now();
            if now < resume_at {
                continue;
            }
            let Some((since, (files0, bytes0))) = window else {
                window = Some((now, counters()));
                continue;
            };
            let (files, bytes) = counters();
            let sample = Sample { elapsed: now - since, files: files - files0, bytes: bytes - bytes0 };
            let level = self.gate.limit();
            if !adapt::window_complete(sample.elapsed, sample.files, level) {
                continue;
            }
            let decision = lock(&self.tuner).observe(sample, backlog());
            match decision {
                Decision::Set(new_level) => {
                    self.gate.set_limit(new_level);
                    self.reporter.verbose(&format!(
                        "parallel {level} -> {new_level}: {:.0} files/s, {}/s at {level}",
                        sample.files as f64 / sample.elapsed.as_secs_f64(),
                        crate::units::human_bytes((sample.bytes as f64 / sample.elapsed.as_secs_f64()) as u64),
                    ));
                    (window, resume_at) = (None, now + adapt::settle_time());
                }
                Decision::Hold => window = Some((now, (files, bytes))),
            }
        }
    }

    async fn sequential(self: &Arc<Self>, actions: Vec<Action>) {
        for action in actions {
            self.execute(action).await;
        }
    }

    /// Runs actions at the level the transfers settled at.
    async fn parallel(self: &Arc<Self>, actions: Vec<Action>) {
        let engine = Arc::clone(self);
        let queue = WorkQueue::new(actions);
        for_each_gated(queue, &self.gate, self.config.concurrency.max, move |action| {
            let engine = Arc::clone(&engine);
            async move { engine.execute(action).await }
        })
        .await;
    }

    /// One action, with retries; the outcome goes to the reporter and the
    /// journal.
    async fn execute(&self, action: Action) {
        if crate::stop::requested().is_some() || self.liveness.gave_up().is_some() {
            self.not_started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let policy = RetryPolicy::new(self.config.retries);
        let result = policy
            .run(|attempt| self.watched_attempt(&action, attempt), |n, err| self.reporter.retrying(&action, n, err))
            .await;
        match result {
            Ok(bytes) => {
                self.reporter.done(&action, bytes);
                if let (Some(_), Action::Copy { src, .. }) = (&self.config.moving, &action)
                    && src.kind == EntryKind::File
                {
                    self.remove_copied(src).await;
                }
                if let Some(journal) = &self.journal {
                    let recorded = match &action {
                        Action::Delete { path, .. } => journal.forgotten(path.clone()).await,
                        _ => Ok(()),
                    };
                    if let Err(err) = recorded {
                        self.reporter.warning(&format!("state database: {err}"));
                    }
                }
            }
            Err(err) => {
                // A small file's partial is not worth resuming: leave no
                // debris. A large one stays for the next run to continue.
                // (Not on a server given up on: that would wait it out.)
                if let Action::Copy { src, .. } = &action
                    && src.size < RESUME_MIN_SIZE
                    && !self.config.inplace
                    && self.liveness.gave_up().is_none()
                {
                    let _ = self.dst.remove_file(&temp_path(&src.path)).await;
                }
                if err.op == CUT {
                    // Not a failure: not done yet, as if never started;
                    // a large file's temporary is resumed next run.
                    self.not_started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                self.reporter.failed(&action, &err)
            }
        }
    }

    /// One attempt, watched: its outcome tells [`liveness`] whether the
    /// servers answer; it is abandoned when the run gives up on them; and
    /// after a stop (SIGINT/SIGTERM) or a give-up no retry starts, so a
    /// stop ends within one `--timeout` even against a silent server.
    async fn watched_attempt(&self, action: &Action, attempt: u32) -> Result<Option<u64>, OpError> {
        let over = |why: &str| OpError::new(ErrorKind::Other, "abandon", action.path(), why);
        if let Some(why) = self.liveness.gave_up() {
            return Err(over(&why));
        }
        if attempt > 0 && crate::stop::requested().is_some() {
            return Err(over("not retried: the run was asked to stop"));
        }
        let outcome = tokio::select! {
            outcome = self.attempt(action, attempt) => outcome,
            () = self.liveness.given_up() => Err(over("abandoned: the servers stopped answering")),
            () = self.silent_after_stop() => Err(over("abandoned after the stop: the servers stopped answering")),
            () = crate::stop::cut() => Err(OpError::new(ErrorKind::Other, CUT, action.path(), "cut at --max-duration")),
        };
        match &outcome {
            // A directory made on local disk says nothing of the servers
            // (a silent server's listing goes on yielding local mkdirs).
            Ok(_) if self.touches_a_server(action) => self.liveness.answered(),
            Ok(_) => {}
            Err(err) if err.op != "abandon" && err.op != CUT => self.liveness.failed(err),
            Err(_) => {}
        }
        outcome
    }

    /// Resolves once a stop (SIGINT/SIGTERM) has been asked for and the
    /// servers have then said nothing for `--timeout`: transfers in flight
    /// finish after a stop, but one that waits on a silent server must not
    /// hold the run (a stop ends within about one timeout, whatever the
    /// wait deep down). Never for local-only runs: nothing there answers.
    async fn silent_after_stop(&self) {
        if !(self.src.capabilities().remote || self.dst.capabilities().remote) {
            return std::future::pending().await;
        }
        crate::stop::asked().await;
        loop {
            let silent = self.liveness.silent_for();
            if silent >= self.config.timeout {
                return;
            }
            tokio::time::sleep(self.config.timeout - silent).await;
        }
    }

    /// Whether `action` asks a server something: a copy reads the source
    /// and writes the destination; the rest touch the destination only.
    fn touches_a_server(&self, action: &Action) -> bool {
        let copy = matches!(action, Action::Copy { .. });
        self.dst.capabilities().remote || (copy && self.src.capabilities().remote)
    }

    async fn attempt(&self, action: &Action, attempt: u32) -> Result<Option<u64>, OpError> {
        match action {
            Action::Copy { src, .. } if src.is_symlink() => self.make_link(src).await,
            Action::Copy { src, reason } => {
                let partial = if attempt == 0 {
                    self.partial_to_resume(src).await
                } else if src.size >= RESUME_MIN_SIZE {
                    // A retry continues what the failed attempt wrote.
                    let temp = temp_path(&src.path);
                    self.dst.stat(&temp).await.ok().flatten().map_or(0, |e| e.size)
                } else {
                    0
                };
                // The end of a partial written out of order may have holes.
                let resume_from = partial.saturating_sub(self.dst.capabilities().resume_margin);
                if let Some(journal) = &self.journal
                    && src.size >= RESUME_MIN_SIZE
                    && attempt == 0
                {
                    let record = PartialRecord { src_size: src.size, src_mtime: src.mtime };
                    if let Err(err) = journal.started(src.path.clone(), record).await {
                        self.reporter.warning(&format!("state database: {err}"));
                    }
                }
                let reporter = &self.reporter;
                let segment_retry = |n: u32, err: &OpError| reporter.retrying(action, n, err);
                let options = CopyOptions {
                    throttle: self.throttle.as_ref(),
                    inplace: self.config.inplace,
                    backup: self.backup.as_ref(),
                    replaces: *reason != Reason::New,
                    verify: self.config.verify,
                    fxp: self.config.fxp,
                    segmenting: self.config.segmenting,
                    spare_streams: Some(&self.spare_streams),
                    on_segment_retry: Some(&segment_retry),
                    perms: self.config.perms.as_ref(),
                    owners: self.config.owners,
                };
                let shown = reporter.copying(&src.path.to_string(), src.size, resume_from);
                let committed =
                    commit::copy_file(self.src.as_ref(), self.dst.as_ref(), src, resume_from, options, &|n| {
                        reporter.add_bytes(n);
                        shown.moved(n);
                        self.liveness.answered();
                    })
                    .await?;
                shown.committed();
                if committed.in_place
                    && !self.config.inplace
                    && !self.warned_in_place.swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    self.reporter.warning(&format!(
                        "{} refuses renames: files are written in place from now on, so an interrupted \
                         transfer can leave a partial file under its final name",
                        self.dst.describe()
                    ));
                }
                if committed.segments > 1 {
                    self.reporter.verbose(&format!("{}: copied in {} segments", src.path, committed.segments));
                }
                if committed.verified.is_some() {
                    self.reporter.stats.files_verified.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if let Some(journal) = &self.journal {
                    let record = SyncedRecord::new(src, committed.dst_size, committed.dst_mtime, committed.dst_mode);
                    if let Err(err) = journal.committed(src.path.clone(), record).await {
                        self.reporter.warning(&format!("state database: {err}"));
                    }
                }
                Ok(Some(committed.bytes_moved))
            }
            Action::Mkdir { path, .. } => self.dst.mkdir(path).await.map(|()| None),
            Action::Delete { path, kind: EntryKind::Dir, reason: Reason::AboveShards } => {
                self.remove_tree(path).await.map(|()| None)
            }
            Action::Delete { path, kind: EntryKind::Dir, .. } => self.dst.remove_dir(path).await.map(|()| None),
            Action::Delete { path, .. } => match &self.backup {
                Some(backup) => backup.keep(self.dst.as_ref(), path).await.map(|()| None),
                None => self.dst.remove_file(path).await.map(|()| None),
            },
            Action::SetMtime { path, mtime, .. } => self.dst.set_mtime(path, *mtime).await.map(|()| None),
            Action::SetMode { path, mode, kind, .. } => self.set_mode(path, *kind, *mode).await.map(|()| None),
            Action::SetOwner { path, kind, uid, gid, mode, .. } => {
                let Some(ownership) = self.dst.ownership() else {
                    let message = "this backend cannot set owners";
                    return Err(OpError::new(ErrorKind::Unsupported, "chown", path, message));
                };
                match ownership.set_owner(path, *uid, *gid).await {
                    // A login that may not give files away: said once, not
                    // an error per file (the content is right).
                    Err(err) if err.kind == ErrorKind::PermissionDenied => {
                        if !self.warned_owners.swap(true, std::sync::atomic::Ordering::Relaxed) {
                            self.reporter.warning(&format!(
                                "{} refuses to change owners ({}): --owner/--group need a root login there",
                                self.dst.describe(),
                                err.message
                            ));
                        }
                        return Ok(None);
                    }
                    other => other?,
                }
                // Given again: a change of owner clears setuid and setgid.
                match mode {
                    Some(mode) => self.set_mode(path, *kind, *mode).await.map(|()| None),
                    None => Ok(None),
                }
            }
            Action::RemoveSource { src, .. } => self.remove_moved(src).await.map(|()| None),
            Action::Skip { .. } | Action::Conflict { .. } => Ok(None),
        }
    }
}

impl Engine {
    /// Gives `path` the bits `mode`, and tells the records.
    async fn set_mode(&self, path: &RelPath, kind: EntryKind, mode: u32) -> Result<(), OpError> {
        match self.dst.set_mode(path, mode).await {
            // A server that does not take modes at all: said once, not
            // an error per file (the content is right).
            Err(err) if err.kind == ErrorKind::Unsupported => {
                if !self.warned_modes.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    self.reporter.warning(&format!("{}: {}", self.dst.describe(), err.message));
                }
                Ok(())
            }
            Ok(()) => {
                // A --trust-state run lists the destination from the
                // records: they must know the new bits.
                if let Some(journal) = self.journal.as_ref().filter(|_| kind != EntryKind::Dir)
                    && let Err(err) = journal.mode_set(path.clone(), mode).await
                {
                    self.reporter.warning(&format!("state database: {err}"));
                }
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// The length of a partial temporary of `src` that a run started from
    /// this same source (size and mtime) and that can be continued; 0 when
    /// there is none. Looked up when the copy starts: a streamed run does
    /// not know its copies in advance.
    async fn partial_to_resume(&self, src: &crate::backend::Entry) -> u64 {
        if src.size < RESUME_MIN_SIZE {
            return 0;
        }
        let Some(journal) = &self.journal else { return 0 };
        let Ok(Some(record)) = journal.partial(src.path.clone()).await else { return 0 };
        if record.src_size != src.size || record.src_mtime != src.mtime {
            return 0;
        }
        match self.dst.stat(&temp_path(&src.path)).await {
            Ok(Some(temp)) if temp.is_file() && temp.size > 0 && temp.size <= src.size => temp.size,
            _ => 0,
        }
    }

    /// Makes a link under the temporary name, then renames it over
    /// whatever holds the final name: a reader sees the old entry or the
    /// new link, never neither (where rename is atomic). The target bytes
    /// are copied as they are, never resolved.
    async fn make_link(&self, src: &crate::backend::Entry) -> Result<Option<u64>, OpError> {
        let target = src.link_target.as_deref().ok_or_else(|| {
            OpError::new(crate::error::ErrorKind::InvalidData, "symlink", &src.path, "the link's target is unknown")
        })?;
        let temp = temp_path(&src.path);
        // A temporary left by a killed run would make the link fail.
        match self.dst.remove_file(&temp).await {
            Err(err) if err.kind != crate::error::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        self.dst.make_symlink(&temp, target).await?;
        if let Err(err) = self.dst.rename(&temp, &src.path).await {
            let _ = self.dst.remove_file(&temp).await;
            return Err(err);
        }
        Ok(Some(0))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Items waiting for a worker; its length is the backlog the tuner sees.
pub struct WorkQueue<T>(Arc<Mutex<std::vec::IntoIter<T>>>);

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue(Arc::clone(&self.0))
    }
}

impl<T> WorkQueue<T> {
    pub fn new(items: Vec<T>) -> WorkQueue<T> {
        WorkQueue(Arc::new(Mutex::new(items.into_iter())))
    }

    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn pop(&self) -> Option<T> {
        lock(&self.0).next()
    }
}

/// Runs `f` for each item on up to `workers` workers, each holding a place
/// in `gate` while it works, so the gate's limit (which may move) is how
/// many run at once. No task per item: a million items cost a million
/// loop turns.
pub async fn for_each_gated<T, F, Fut>(queue: WorkQueue<T>, gate: &Arc<Gate>, workers: usize, f: F)
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let workers = workers.max(1).min(queue.len().max(1));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (queue, f, gate) = (queue.clone(), Arc::clone(&f), Arc::clone(gate));
        set.spawn(async move {
            loop {
                let Some(_slot) = gate.enter().await else { break };
                let Some(item) = queue.pop() else { break };
                f(item).await;
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        // A worker only ends early by panicking; surface it like any panic.
        if let Err(err) = joined
            && err.is_panic()
        {
            std::panic::resume_unwind(err.into_panic());
        }
    }
}

/// Runs `f` for each item on at most `parallel` workers pulling from one
/// queue: no task per item, so a million items cost a million loop turns.
pub async fn for_each_parallel<T, F, Fut>(items: Vec<T>, parallel: usize, f: F)
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    // A gate that never moves: every worker always finds a place.
    let gate = Arc::new(Gate::new(parallel));
    for_each_gated(WorkQueue::new(items), &gate, parallel, f).await;
}

#[cfg(test)]
mod tests;
