//! Where a run's entries come from: both sides as streams of
//! [`WalkItem`]s in tree order, whichever way they were listed.
//!
//! A streamed run walks directory by directory and the march reads the
//! items as they come. A run that must see everything first (see
//! [`super::pipeline::acts_early`]) lists each side whole (`walk`, or
//! `walk_following_links` for `--links follow`, or the state database's
//! records for `--trust-state`) and sends that listing down the same
//! channel; [`Side`] then reads both kinds alike: side items reported,
//! barge's temporaries taken out, filters applied, records marked seen.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::files_from::{self, FileList};
use super::records::{RecordedSide, TrackedRecords};
use crate::backend::owners::{IdKind, OwnerMap};
use crate::backend::recall::{MAX_RECALLED_FILES, Recall};
use crate::backend::stream::{self, CHANNEL_BATCHES, WalkItem};
use crate::backend::temp::is_temp_name;
use crate::backend::{Backend, Entry, EntryKind, Listing, Owner};
use crate::engine::report::Reporter;
use crate::error::OpError;
use crate::path::RelPath;
use crate::perms::Owners;
use crate::plan::SyncedRecord;
use crate::plan::filter::Filter;
use crate::state::Side as StateSide;

/// How one side is listed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Listed {
    /// Directory by directory, as the march reads.
    Streamed,
    /// The whole tree, then sent.
    Whole,
    /// The whole tree with symbolic links to directories followed.
    WholeFollowingLinks,
}

/// A side's walk under way.
pub(super) struct Walk {
    pub items: mpsc::Receiver<Vec<WalkItem>>,
    pub task: JoinHandle<()>,
    /// Hands a streamed walk what the last runs recorded of its side.
    recall: Option<oneshot::Sender<Arc<Recall>>>,
}

impl Walk {
    /// Starts listing `backend`, at once, in a task of its own; the
    /// entries of a tree read whole are counted on `reporter`'s line as
    /// they arrive.
    pub fn start(backend: &Arc<dyn Backend>, listed: Listed, reporter: &Arc<Reporter>) -> Walk {
        let (tx, items) = mpsc::channel(CHANNEL_BATCHES);
        let backend = Arc::clone(backend);
        let (recall, task) = match listed {
            Listed::Streamed => {
                let (recall, recall_rx) = oneshot::channel();
                let task = tokio::spawn(async move { backend.walk_streamed(tx, Some(recall_rx)).await });
                (Some(recall), task)
            }
            Listed::Whole | Listed::WholeFollowingLinks => {
                let reporter = Arc::clone(reporter);
                let task = tokio::spawn(async move {
                    let listing = match listed {
                        Listed::WholeFollowingLinks => backend.walk_following_links().await,
                        _ => backend.walk_counted(Arc::new(move |entries| reporter.arrived(entries))).await,
                    };
                    match listing {
                        Ok(listing) => stream::send_listing(listing, tx).await,
                        Err(err) => {
                            let _ = tx.send(vec![WalkItem::Failed(err)]).await;
                        }
                    }
                });
                (None, task)
            }
        };
        Walk { items, task, recall }
    }

    /// `--files-from`: only the listed paths' directories, only the listed
    /// names kept; on the source side (`reporter`) a listed path that is
    /// not there is an error naming its line.
    pub fn of_files(backend: &Arc<dyn Backend>, list: Arc<FileList>, reporter: Option<Arc<Reporter>>) -> Walk {
        let (tx, items) = mpsc::channel(CHANNEL_BATCHES);
        let backend = Arc::clone(backend);
        let task = tokio::spawn(async move {
            match files_from::listing(backend, &list).await {
                Ok(listing) => {
                    if let Some(reporter) = reporter {
                        files_from::report_missing(&list, &listing, &reporter);
                    }
                    stream::send_listing(listing, tx).await
                }
                Err(err) => {
                    let _ = tx.send(vec![WalkItem::Failed(err)]).await;
                }
            }
        });
        Walk { items, task, recall: None }
    }

    /// `--trust-state`: the destination as the records describe it.
    pub fn from_records(records: &TrackedRecords) -> Walk {
        let (tx, items) = mpsc::channel(CHANNEL_BATCHES);
        let listing = listing_from_records(records.iter());
        let task = tokio::spawn(stream::send_listing(listing, tx));
        Walk { items, task, recall: None }
    }

    /// Gives a streamed walk whose backend uses them the records of its
    /// side. Without, the walk goes on with none; so does one with too
    /// many records (the coarse listing a recall confirms is held whole).
    pub fn recall(&mut self, backend: &dyn Backend, records: &TrackedRecords, side: StateSide) {
        let Some(sender) = self.recall.take() else { return };
        let recallable = !records.is_empty() && records.len() <= MAX_RECALLED_FILES;
        if recallable && backend.capabilities().uses_recall {
            let recorded = RecordedSide::new(records, side);
            tokio::task::spawn_blocking(move || {
                let _ = sender.send(Arc::new(Recall::over(Box::new(recorded))));
            });
        }
    }

    /// The walk's items up to its first entry (or its end): the root was
    /// listed. Fails with the walk's error when the root could not be.
    pub async fn first_items(&mut self) -> Result<VecDeque<WalkItem>, OpError> {
        let mut items = VecDeque::new();
        while let Some(batch) = self.items.recv().await {
            let mut listed = false;
            for item in batch {
                match item {
                    WalkItem::Failed(err) => return Err(err),
                    WalkItem::Entry(_) => listed = true,
                    _ => {}
                }
                items.push_back(item);
            }
            if listed {
                break;
            }
        }
        Ok(items)
    }
}

/// The destination as the records describe it: each recorded file with the
/// size and mtime barge left, and the directories above them, in tree order.
fn listing_from_records<'a>(records: impl Iterator<Item = (&'a RelPath, &'a SyncedRecord)>) -> Listing {
    let mut entries = Vec::new();
    let mut dirs = HashSet::new();
    for (path, record) in records {
        let mut dir = path.parent();
        while !dir.is_root() && dirs.insert(dir.clone()) {
            dir = dir.parent();
        }
        entries.push(Entry {
            path: path.clone(),
            kind: EntryKind::File,
            size: record.dst_size,
            mtime: record.dst_mtime,
            inode: 0,
            coarse_mtime_s: 0,
            hash: None,
            link_target: None,
            mode: record.dst_mode,
            owner: None,
        });
    }
    entries.extend(dirs.into_iter().map(Entry::dir));
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Listing { entries, ..Listing::default() }
}

/// Trusted directories take their source's mtime (barge set it so).
pub(super) fn adopt_dir_mtimes(src: &[Entry], dst: &mut [Entry]) {
    for entry in dst.iter_mut().filter(|e| e.is_dir()) {
        if let Ok(i) = src.binary_search_by(|s| s.path.cmp(&entry.path)) {
            entry.mtime = src[i].mtime;
        }
    }
}

/// What one side's stream showed besides its entries.
#[derive(Default)]
pub(super) struct Seen {
    pub unreadable: Vec<RelPath>,
    pub warnings: usize,
    /// Entries that passed the filters.
    pub entries: u64,
    /// Files among them.
    pub files: u64,
    /// Directories with nothing in them (source side).
    pub empty_dirs: HashSet<RelPath>,
    /// barge's own temporaries (destination side): never content.
    pub temporaries: Vec<Entry>,
    /// Source files left out by size alone: their destination
    /// counterparts are not extraneous (see `safety::drop_unseen_deletions`).
    pub held: HashSet<RelPath>,
}

/// One side's stream as the march reads it: blocking reads of the walk's
/// channel, side items reported as they come, filters applied, barge's
/// temporaries taken out, records marked as seen.
pub(super) struct Side {
    /// The batch being read.
    batch: VecDeque<WalkItem>,
    rx: mpsc::Receiver<Vec<WalkItem>>,
    reporter: Arc<Reporter>,
    destination: bool,
    pub seen: Seen,
    /// An excluded directory whose subtree is being skipped.
    pruned: Option<RelPath>,
    /// The last directory passed, until something inside it shows it is
    /// not empty.
    open_dir: Option<RelPath>,
    /// Directories the walk gave up on without asking (see
    /// [`stream::is_not_listed`]): the first is shown, the rest counted and
    /// said once at the end.
    not_listed: Option<u64>,
    /// The source's side: the destination, which may not be able to name
    /// every entry (see [`Backend::cannot_name`]).
    destination_names: Option<Arc<dyn Backend>>,
    /// `--owner`, `--group`: source ids become the destination's.
    owners: Option<SourceOwners>,
}

/// The two sides whose ids a source side maps, and the run's map.
struct SourceOwners {
    src: Arc<dyn Backend>,
    dst: Arc<dyn Backend>,
    map: OwnerMap,
}

impl SourceOwners {
    fn map(&mut self, owner: Owner) -> Owner {
        let (src, dst) = (self.src.ownership(), self.dst.ownership());
        Owner {
            uid: self.map.map(IdKind::User, owner.uid, src, dst),
            gid: self.map.map(IdKind::Group, owner.gid, src, dst),
        }
    }
}

impl Side {
    pub fn new(
        first: VecDeque<WalkItem>,
        rx: mpsc::Receiver<Vec<WalkItem>>,
        reporter: Arc<Reporter>,
        destination: bool,
    ) -> Side {
        Side {
            batch: first,
            rx,
            reporter,
            destination,
            seen: Seen::default(),
            pruned: None,
            open_dir: None,
            not_listed: None,
            destination_names: None,
            owners: None,
        }
    }

    /// A source side whose owners are kept (`--owner`, `--group`): each
    /// entry's ids become what `dst` calls the same user and group (by
    /// name where both sides name them, unless `--numeric-ids`), so the
    /// planner compares like with like.
    pub fn owned_as_on(mut self, src: &Arc<dyn Backend>, dst: &Arc<dyn Backend>, owners: Owners) -> Side {
        if owners.any() {
            let map = OwnerMap::new(!owners.numeric);
            self.owners = Some(SourceOwners { src: Arc::clone(src), dst: Arc::clone(dst), map });
        }
        self
    }

    /// A source side whose entries `destination` cannot name are skipped,
    /// each with a warning (a directory with its whole subtree). They hold
    /// back no deletion: the destination cannot have them either.
    pub fn named_by(mut self, destination: &Arc<dyn Backend>) -> Side {
        self.destination_names = Some(Arc::clone(destination));
        self
    }

    fn next_item(&mut self) -> Option<WalkItem> {
        loop {
            if let Some(item) = self.batch.pop_front() {
                return Some(item);
            }
            match self.rx.blocking_recv() {
                Some(batch) => self.batch = batch.into(),
                None => {
                    self.report_not_listed();
                    return None;
                }
            }
        }
    }

    fn report_not_listed(&mut self) {
        let count = self.not_listed.take().unwrap_or(0);
        if count > 0 {
            self.reporter.error(&match self.destination {
                false => format!("{count} more source directories were not listed, nothing below them is deleted"),
                true => format!("{count} more destination directories were not listed"),
            });
        }
    }

    /// The next entry the march may see; `None` at the end of the walk, or
    /// at a stop.
    pub fn next_entry(&mut self, filter: &Filter, records: &TrackedRecords) -> Option<Entry> {
        loop {
            if crate::stop::requested().is_some() {
                // SIGINT/SIGTERM: stop listing too. What the march then
                // takes for missing is never deleted (the engine starts
                // nothing more) nor forgotten (see `safety::keep_unseen`).
                return None;
            }
            let entry = match self.next_item() {
                None => {
                    if let Some(dir) = self.open_dir.take() {
                        self.seen.empty_dirs.insert(dir);
                    }
                    return None;
                }
                Some(WalkItem::Entry(entry)) => entry,
                Some(other) => {
                    self.side_item(other, filter);
                    continue;
                }
            };
            if let Some(dir) = &self.pruned {
                if entry.path.starts_with(dir) {
                    continue;
                }
                self.pruned = None;
            }
            if !entry.is_dir() && is_temp_name(entry.path.file_name()) {
                // Never content on either side; the destination's are
                // removed or resumed, whatever the filters say (an
                // `--exclude '.*'` must not hide a killed run's debris).
                if self.destination {
                    self.seen.temporaries.push(entry);
                }
                continue;
            }
            if !filter.allows(&entry) {
                if entry.is_dir() {
                    self.pruned = Some(entry.path.clone());
                } else if !self.destination && filter.matches_patterns(&entry) {
                    // There, only not copied: its copy stays, and so does its record.
                    records.saw(&entry.path);
                    self.seen.held.insert(entry.path);
                }
                continue;
            }
            if let Some(why) = self.destination_names.as_ref().and_then(|dst| dst.cannot_name(entry.path.file_name())) {
                self.reporter.warning(&format!("skipped {}: {why}", entry.path));
                if entry.is_dir() {
                    self.pruned = Some(entry.path.clone());
                }
                continue;
            }
            records.saw(&entry.path);
            if let Some(dir) = self.open_dir.take()
                && !entry.path.starts_with(&dir)
            {
                self.seen.empty_dirs.insert(dir);
            }
            if entry.is_dir() {
                self.open_dir = Some(entry.path.clone());
            } else if entry.is_file() {
                self.seen.files += 1;
            }
            self.seen.entries += 1;
            self.reporter.listed();
            let mut entry = entry;
            if let (Some(owners), Some(owner)) = (self.owners.as_mut(), entry.owner) {
                entry.owner = Some(owners.map(owner));
            }
            return Some(entry);
        }
    }

    /// Every entry left, for a run that needs the whole side at once.
    pub fn collect(&mut self, filter: &Filter, records: &TrackedRecords) -> Vec<Entry> {
        std::iter::from_fn(|| self.next_entry(filter, records)).collect()
    }

    fn side_item(&mut self, item: WalkItem, filter: &Filter) {
        let side = if self.destination { "destination" } else { "source" };
        match item {
            WalkItem::Entry(_) => {}
            // Excluded, so nothing in it would be copied or deleted: that it
            // cannot be read changes nothing (excluding it is how a user
            // says so).
            WalkItem::Unreadable(dir, err) if filter.excludes_dir(&dir) => {
                self.reporter.info(&format!("{side} {dir} (excluded) could not be read: {err}"));
            }
            WalkItem::Unreadable(dir, err) => {
                let unasked = stream::is_not_listed(&err);
                let shown = unasked && self.not_listed.is_some();
                if unasked {
                    *self.not_listed.get_or_insert(0) += u64::from(shown);
                }
                match self.destination {
                    _ if shown => {}
                    false => self
                        .reporter
                        .error(&format!("source {dir} could not be read, nothing below it is deleted: {err}")),
                    true => self.reporter.error(&format!("destination {dir} could not be read: {err}")),
                }
                self.seen.unreadable.push(dir);
            }
            WalkItem::Warning(warning) => {
                self.reporter.warning(&warning);
                self.seen.warnings += 1;
            }
            WalkItem::Notice(notice) => self.reporter.warning(&notice),
            WalkItem::Retried(retried) => self.reporter.info(&retried),
            WalkItem::Info(info) => self.reporter.info(&info),
            // Only ever first, and the first was checked; later would be a bug.
            WalkItem::Failed(err) => {
                self.reporter.error(&format!("{side} listing failed: {err}"));
                self.seen.warnings += 1;
            }
        }
    }
}
