//! Walks streamed in tree order: entries leave as soon as everything before
//! them in tree order is known, so the planner (and the transfers it
//! starts) work while the rest of the tree is still being listed, and
//! memory holds the listings between the planner and the listing front,
//! not the whole tree.
//!
//! Directories are listed many at once, earliest in tree order first; a
//! listing that arrives before its turn waits in a buffer whose size is
//! capped ([`BUFFERED_ENTRIES`]): past it, only the listing the stream waits
//! for is asked for.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Entry, Listing, within_limits};
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;

/// One step of a streamed walk.
#[derive(Debug)]
pub enum WalkItem {
    /// The next entry in tree order.
    Entry(Entry),
    /// A directory that could not be listed (nothing below it follows).
    Unreadable(RelPath, OpError),
    /// An entry skipped with a reason (hostile or unusable names).
    Warning(String),
    /// A warning that casts no doubt on the listing.
    Notice(String),
    /// A listing that failed with a temporary error and was asked again.
    Retried(String),
    /// What a listing taught of the server, for people and the log (its
    /// LIST times moved to another zone); no doubt on the listing.
    Info(String),
    /// The root could not be listed: the walk ends here. Always the first
    /// item when it comes, so a consumer that waits for the first item
    /// knows the root was readable before it acts on anything.
    Failed(OpError),
}

/// Where a streamed walk sends its items, in batches (one item at a time,
/// a million entries cost a million thread wake-ups); bounded, so a slow
/// consumer slows the walk instead of growing a buffer.
pub type WalkSender = mpsc::Sender<Vec<WalkItem>>;

/// Batches in flight between a walk and its consumer.
pub const CHANNEL_BATCHES: usize = 8;

/// Items per batch: enough to make a wake-up cheap per item, few enough
/// that the batches waiting in a channel for the slower side stay small
/// (8 x 256 entries is about 200 KB).
const BATCH: usize = 256;

/// The sending end of a walk: items gathered into batches.
pub struct WalkOut {
    tx: WalkSender,
    batch: Vec<WalkItem>,
}

impl WalkOut {
    pub fn new(tx: WalkSender) -> WalkOut {
        WalkOut { tx, batch: Vec::with_capacity(BATCH) }
    }

    /// False once the consumer is gone: the walk should end.
    pub async fn send(&mut self, item: WalkItem) -> bool {
        self.batch.push(item);
        self.batch.len() < BATCH || self.flush().await
    }

    /// Sends what is gathered (before the walk waits for anything).
    pub async fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.tx.send(batch).await.is_ok()
    }

    /// [`WalkOut::send`] from a blocking thread.
    pub fn blocking_send(&mut self, item: WalkItem) -> bool {
        self.batch.push(item);
        self.batch.len() < BATCH || self.blocking_flush()
    }

    pub fn blocking_flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.tx.blocking_send(batch).is_ok()
    }
}

/// Entries listed ahead of the stream's position that may wait in memory
/// before the walk stops listing ahead.
pub const BUFFERED_ENTRIES: usize = 100_000;

/// Sends a whole listing as a stream (backends that list the tree in one
/// piece). Duplicate paths are distrusted first, as the planner needs.
pub async fn send_listing(mut listing: Listing, tx: WalkSender) {
    distrust_duplicates(&mut listing.entries, &mut listing.unreadable);
    let Listing { entries, unreadable, warnings, notices, retried, info } = listing;
    let side = unreadable
        .into_iter()
        .map(|(p, e)| WalkItem::Unreadable(p, e))
        .chain(warnings.into_iter().map(WalkItem::Warning))
        .chain(notices.into_iter().map(WalkItem::Notice))
        .chain(retried.into_iter().map(WalkItem::Retried))
        .chain(info.into_iter().map(WalkItem::Info));
    let mut out = WalkOut::new(tx);
    for item in side.chain(entries.into_iter().map(WalkItem::Entry)) {
        if !out.send(item).await {
            return;
        }
    }
    out.flush().await;
}

/// A listing that names one path twice (twice the same file, or a file
/// and a directory) cannot be trusted about that path: every entry at or
/// below it is dropped and the path is made unreadable, so nothing there
/// is copied or deleted on its word. `entries` is in tree order.
pub fn distrust_duplicates(entries: &mut Vec<Entry>, unreadable: &mut Vec<(RelPath, OpError)>) {
    let mut ambiguous: Vec<RelPath> = Vec::new();
    for pair in entries.windows(2) {
        if pair[0].path == pair[1].path && ambiguous.last() != Some(&pair[0].path) {
            ambiguous.push(pair[0].path.clone());
        }
    }
    if ambiguous.is_empty() {
        return;
    }
    entries.retain(|e| !ambiguous.iter().any(|a| e.path.starts_with(a)));
    for path in ambiguous {
        let err = OpError::new(
            ErrorKind::InvalidData,
            "list",
            &path,
            "the listing names this entry more than once; it is left alone",
        );
        unreadable.push((path, err));
    }
}

/// What the stream has of one directory's children.
pub type Listed = Result<(Vec<Entry>, Vec<String>), OpError>;

/// The whole tree at once, from a streamed walk: `walk` sends into a
/// channel that this gathers into a [`Listing`]; a root that could not be
/// listed is the error.
pub async fn collected<W>(walk: impl FnOnce(WalkSender) -> W) -> Result<Listing, OpError>
where
    W: std::future::Future<Output = ()>,
{
    collected_counting(walk, |_| {}).await
}

/// [`collected`], telling `arrived` how many entries each batch brought
/// (a tree read whole can take minutes from a far server: the progress
/// line counts them as they come).
pub async fn collected_counting<W>(
    walk: impl FnOnce(WalkSender) -> W,
    arrived: impl Fn(u64),
) -> Result<Listing, OpError>
where
    W: std::future::Future<Output = ()>,
{
    let (tx, mut rx) = mpsc::channel::<Vec<WalkItem>>(CHANNEL_BATCHES);
    let gathering = async move {
        let mut listing = Listing::default();
        while let Some(batch) = rx.recv().await {
            arrived(batch.iter().filter(|item| matches!(item, WalkItem::Entry(_))).count() as u64);
            for item in batch {
                match item {
                    WalkItem::Entry(entry) => listing.entries.push(entry),
                    WalkItem::Unreadable(path, err) => listing.unreadable.push((path, err)),
                    WalkItem::Warning(warning) => listing.warnings.push(warning),
                    WalkItem::Notice(notice) => listing.notices.push(notice),
                    WalkItem::Retried(retry) => listing.retried.push(retry),
                    WalkItem::Info(info) => listing.info.push(info),
                    // Dropping the receiver ends the walk too.
                    WalkItem::Failed(err) => return Err(err),
                }
            }
        }
        Ok(listing)
    };
    let ((), listing) = tokio::join!(walk(tx), gathering);
    listing
}

/// How a tree is listed: how many directories at once, how often a
/// directory that failed with a temporary error is asked again, and how
/// long without any listing answering the server is taken as gone.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub in_flight: usize,
    pub retries: u32,
    /// Twice the `--timeout`, as the engine's liveness: when no listing
    /// has answered for this long and more tries than one directory is
    /// allowed have failed in a row, the directories left are reported
    /// unreadable at once instead of costing each its tries of
    /// `--timeout` (a server gone silent mid-listing kept a run going for
    /// minutes per hundred directories).
    pub patience: Duration,
}

impl Pace {
    /// `retries` and `patience` (twice `timeout`) for `in_flight` at once.
    pub fn new(in_flight: usize, retries: u32, timeout: Duration) -> Pace {
        Pace { in_flight, retries, patience: crate::retry::silence_to_give_up(timeout) }
    }

    /// Temporary failures in a row, with nothing answering in between,
    /// before the server may be taken as gone.
    fn failures_to_give_up(&self) -> u32 {
        self.retries.saturating_add(1).max(crate::retry::SILENT_FAILURES)
    }
}

/// A directory the walk did not ask for (or abandoned), and `why`.
fn not_listed(dir: &RelPath, why: &str) -> OpError {
    OpError::new(ErrorKind::Temporary, "list", dir, format!("{NOT_LISTED}{why}"))
}

/// What begins the message of a directory the walk did not ask for.
const NOT_LISTED: &str = "not listed: ";

/// Whether `err` is a directory the walk gave up on without asking (the
/// server stopped answering, or the run was asked to stop): one reason
/// for all the directories left, which a reader wants once, with a count.
pub fn is_not_listed(err: &OpError) -> bool {
    err.op == "list" && err.message.starts_with(NOT_LISTED)
}

/// Lists a tree with `list_dir` (one directory's entries and warnings) at
/// `pace` and sends it to `tx` in tree order. Temporary failures are asked
/// again up to `pace.retries` times with the engine's backoff; a root that
/// cannot be listed is sent as [`WalkItem::Failed`]; other failures make
/// their directory unreadable (and, once the server seems gone, every
/// directory left and in flight: see [`Pace::patience`]).
pub async fn walk_streamed<F, Fut>(pace: Pace, list_dir: F, tx: WalkSender)
where
    F: Fn(RelPath) -> Fut,
    Fut: std::future::Future<Output = Listed> + Send + 'static,
{
    let policy = crate::retry::RetryPolicy::new(pace.retries);
    let in_flight = pace.in_flight;
    // Whether the server still answers: temporary failures since the last
    // listing that came back, and when that was; once it seems gone, why
    // the directories left are not asked for.
    let mut failed_in_a_row = 0u32;
    let mut last_answer = tokio::time::Instant::now();
    let mut gone: Option<String> = None;
    let mut out = WalkOut::new(tx);
    let mut set = tokio::task::JoinSet::new();
    // The directory of each listing in flight, by its task.
    let mut running: HashMap<tokio::task::Id, RelPath> = HashMap::new();
    let mut waiting: BTreeMap<RelPath, u32> = BTreeMap::from([(RelPath::root(), 0)]);
    // Listings that arrived before the stream reached them.
    let mut arrived: HashMap<RelPath, Listed> = HashMap::new();
    let mut buffered = 0usize;
    // The stream's position: the children left to send of each directory
    // it is inside, innermost last.
    let mut stack: Vec<std::vec::IntoIter<Entry>> = Vec::new();
    // The directory whose listing the stream needs next.
    let mut next = Some(RelPath::root());
    loop {
        // Ask for more while there is room; past the buffer's cap only
        // for the listing the stream is waiting on.
        while set.len() < in_flight.max(1) {
            let Some((dir, _)) = waiting.first_key_value() else { break };
            if buffered >= BUFFERED_ENTRIES && Some(dir) != next.as_ref() {
                break;
            }
            let Some((dir, attempt)) = waiting.pop_first() else { break };
            if let Some(why) = &gone {
                arrived.insert(dir.clone(), Err(not_listed(&dir, why)));
                continue;
            }
            let listed = list_dir(dir.clone());
            let delay = if attempt == 0 { Duration::ZERO } else { policy.delay(attempt) };
            let task = {
                let dir = dir.clone();
                set.spawn(async move {
                    tokio::time::sleep(delay).await;
                    (dir, attempt, listed.await)
                })
            };
            running.insert(task.id(), dir);
        }
        // Send what can be sent.
        loop {
            if let Some(dir) = &next {
                let Some(listed) = arrived.remove(dir) else { break };
                let dir = next.take().unwrap_or_default();
                match listed {
                    Ok((children, warnings)) => {
                        buffered -= children.len();
                        for warning in warnings {
                            if !out.send(WalkItem::Warning(warning)).await {
                                return;
                            }
                        }
                        stack.push(children.into_iter());
                    }
                    Err(err) if dir.is_root() => {
                        if out.send(WalkItem::Failed(err)).await {
                            out.flush().await;
                        }
                        return;
                    }
                    Err(err) => {
                        if !out.send(WalkItem::Unreadable(dir, err)).await {
                            return;
                        }
                    }
                }
            }
            let Some(children) = stack.last_mut() else { break };
            let Some(entry) = children.next() else {
                stack.pop();
                continue;
            };
            if entry.is_dir() {
                match within_limits(&entry.path) {
                    Ok(()) => next = Some(entry.path.clone()),
                    Err(err) => {
                        let path = entry.path.clone();
                        if !out.send(WalkItem::Entry(entry)).await || !out.send(WalkItem::Unreadable(path, err)).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            if !out.send(WalkItem::Entry(entry)).await {
                return;
            }
        }
        if next.is_none() && stack.is_empty() {
            out.flush().await;
            return;
        }
        // Whatever is gathered goes before the wait.
        if !out.flush().await {
            return;
        }
        let joined = tokio::select! {
            joined = set.join_next_with_id() => joined,
            // SIGINT/SIGTERM: what is in flight is abandoned, nothing more
            // is asked for (the planner stops reading anyway).
            () = crate::stop::asked(), if gone.is_none() => {
                gone = Some("the run was asked to stop".to_string());
                set.abort_all();
                continue;
            }
        };
        let Some(joined) = joined else {
            // Nothing in flight and nothing to send: only possible if the
            // directory waited for was never asked for, which the loop
            // above rules out; end rather than spin.
            return;
        };
        let (dir, attempt, result) = match joined {
            Ok((task, done)) => {
                running.remove(&task);
                done
            }
            // Abandoned when the server was taken as gone.
            Err(err) if err.is_cancelled() && running.contains_key(&err.id()) => {
                let dir = running.remove(&err.id()).unwrap_or_default();
                arrived.insert(dir.clone(), Err(not_listed(&dir, gone.as_deref().unwrap_or_default())));
                continue;
            }
            Err(err) => {
                if out.send(WalkItem::Failed(OpError::new(ErrorKind::Other, "list", "", err.to_string()))).await {
                    out.flush().await;
                }
                return;
            }
        };
        match result {
            Ok((mut children, warnings)) => {
                failed_in_a_row = 0;
                last_answer = tokio::time::Instant::now();
                children.sort_by(|a, b| a.path.cmp(&b.path));
                let mut unreadable = Vec::new();
                distrust_duplicates(&mut children, &mut unreadable);
                for (path, err) in unreadable {
                    if !out.send(WalkItem::Unreadable(path, err)).await {
                        return;
                    }
                }
                for child in children.iter().filter(|e| e.is_dir()) {
                    if within_limits(&child.path).is_ok() {
                        waiting.insert(child.path.clone(), 0);
                    }
                }
                buffered += children.len();
                arrived.insert(dir, Ok((children, warnings)));
            }
            Err(err) if err.is_temporary() && gone.is_none() => {
                failed_in_a_row += 1;
                if failed_in_a_row >= pace.failures_to_give_up() && last_answer.elapsed() >= pace.patience {
                    let notice = format!(
                        "the server stopped answering: no listing for {}s and {failed_in_a_row} tries in a row \
                         failed (the last: {err}); the directories left are not listed",
                        last_answer.elapsed().as_secs()
                    );
                    if !out.send(WalkItem::Notice(notice)).await {
                        return;
                    }
                    gone = Some("the server stopped answering".to_string());
                    set.abort_all();
                } else if attempt < policy.retries {
                    if !out.send(WalkItem::Retried(format!("retry {}: {err}", attempt + 1))).await {
                        return;
                    }
                    waiting.insert(dir, attempt + 1);
                    continue;
                }
                arrived.insert(dir, Err(err));
            }
            Err(err) => {
                arrived.insert(dir, Err(err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn path(p: &str) -> RelPath {
        RelPath::parse(p.as_bytes()).unwrap()
    }

    fn file(p: &str) -> Entry {
        Entry { kind: crate::backend::EntryKind::File, ..Entry::dir(path(p)) }
    }

    /// A tree of `dirs` directories per level, `depth` levels, `files`
    /// files in each directory, listed in reverse name order (servers do
    /// not sort) after a delay that varies per directory.
    fn fake_tree(dirs: usize, depth: usize, files: usize) -> impl Fn(RelPath) -> Listed + Clone {
        move |dir: RelPath| {
            let mut children = Vec::new();
            for f in 0..files {
                let path = dir.join(format!("f{f}").as_bytes()).unwrap();
                children.push(Entry { kind: crate::backend::EntryKind::File, ..Entry::dir(path) });
            }
            if dir.depth() < depth {
                for d in 0..dirs {
                    children.push(Entry::dir(dir.join(format!("d{d}").as_bytes()).unwrap()));
                }
            }
            children.reverse();
            Ok((children, Vec::new()))
        }
    }

    async fn collect(in_flight: usize, list: impl Fn(RelPath) -> Listed + Send + Sync + 'static) -> Vec<WalkItem> {
        collect_at(Pace::new(in_flight, 2, Duration::from_secs(60)), list).await
    }

    async fn collect_at(pace: Pace, list: impl Fn(RelPath) -> Listed + Send + Sync + 'static) -> Vec<WalkItem> {
        let list = Arc::new(list);
        let (tx, mut rx) = mpsc::channel(16);
        let walk = walk_streamed(
            pace,
            move |dir: RelPath| {
                let list = Arc::clone(&list);
                async move {
                    // Later directories answer sooner: arrivals out of order.
                    let wait = 5u64.saturating_sub(dir.depth() as u64);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    list(dir)
                }
            },
            tx,
        );
        let reader = async {
            let mut items = Vec::new();
            while let Some(batch) = rx.recv().await {
                items.extend(batch);
            }
            items
        };
        let ((), items) = tokio::join!(walk, reader);
        items
    }

    /// `tree`, with the listing of `dir` failing with `kind`.
    fn failing_at(
        dir: &'static str,
        tree: impl Fn(RelPath) -> Listed + Send + Sync + 'static,
        kind: ErrorKind,
    ) -> impl Fn(RelPath) -> Listed + Send + Sync + 'static {
        move |listed: RelPath| {
            if listed == path(dir) {
                Err(OpError::new(kind, "list", &listed, "refused or timed out"))
            } else {
                tree(listed)
            }
        }
    }

    fn unreadable(items: &[WalkItem]) -> Vec<RelPath> {
        items.iter().filter_map(|i| if let WalkItem::Unreadable(p, _) = i { Some(p.clone()) } else { None }).collect()
    }

    fn entries(items: &[WalkItem]) -> Vec<RelPath> {
        items.iter().filter_map(|i| if let WalkItem::Entry(e) = i { Some(e.path.clone()) } else { None }).collect()
    }

    #[tokio::test]
    async fn streams_the_whole_tree_in_tree_order_at_any_concurrency() {
        let expected = {
            let mut all = entries(&collect(1, fake_tree(3, 3, 2)).await);
            all.sort();
            all
        };
        // 3 + 9 + 27 directories, 2 files in each of them and the root.
        assert_eq!(expected.len(), 39 + 2 * 40);
        for in_flight in [1, 4, 64] {
            let got = entries(&collect(in_flight, fake_tree(3, 3, 2)).await);
            assert_eq!(got, expected, "in_flight {in_flight}");
        }
    }

    #[tokio::test]
    async fn a_failed_root_is_the_only_item_and_a_failed_directory_is_unreadable() {
        let items = collect(4, |_dir: RelPath| Err(OpError::new(ErrorKind::PermissionDenied, "list", "", "no"))).await;
        assert!(matches!(items.as_slice(), [WalkItem::Failed(_)]), "{items:?}");

        let items = collect(4, failing_at("d1", fake_tree(2, 2, 1), ErrorKind::PermissionDenied)).await;
        assert_eq!(unreadable(&items), vec![path("d1")]);
        let listed = entries(&items);
        assert!(listed.contains(&path("d1")) && !listed.iter().any(|p| p.starts_with(&path("d1")) && *p != path("d1")));
        assert!(listed.contains(&path("d0/d1/f0")));
    }

    #[tokio::test]
    async fn a_server_gone_silent_mid_listing_costs_a_few_tries_not_all() {
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = Arc::clone(&calls);
        let pace = Pace { in_flight: 4, retries: 2, patience: Duration::from_millis(50) };
        let items = collect_at(pace, move |dir: RelPath| {
            if dir.is_root() {
                return Ok(((0..50).map(|i| Entry::dir(path(&format!("d{i:02}")))).collect(), Vec::new()));
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(OpError::new(ErrorKind::Temporary, "list", &dir, "timed out"))
        })
        .await;
        assert_eq!(unreadable(&items).len(), 50, "{items:?}");
        assert!(items.iter().any(|i| matches!(i, WalkItem::Notice(n) if n.contains("stopped answering"))));
        // The first tries, then the retries once the patience is out;
        // before: 50 x 3.
        let calls = calls.load(std::sync::atomic::Ordering::Relaxed);
        assert!(calls <= 3 * 4, "{calls} listings asked for");

        // One directory that fails every try while others answer is just
        // that directory.
        let items = collect_at(pace, failing_at("d1", fake_tree(3, 3, 1), ErrorKind::Temporary)).await;
        assert_eq!(unreadable(&items), vec![path("d1")]);
        assert!(!items.iter().any(|i| matches!(i, WalkItem::Notice(_))), "{items:?}");
        assert!(entries(&items).contains(&path("d2/d2/f0")));
    }

    #[tokio::test]
    async fn temporary_failures_are_asked_again_and_duplicates_are_distrusted() {
        let tries = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = Arc::clone(&tries);
        let items = collect(2, move |dir: RelPath| {
            if dir.is_root() {
                return Ok((vec![Entry::dir(path("a")), file("b"), file("b")], Vec::new()));
            }
            if counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                return Err(OpError::new(ErrorKind::Temporary, "list", &dir, "425"));
            }
            Ok((vec![file("a/x")], Vec::new()))
        })
        .await;
        assert_eq!(entries(&items), vec![path("a"), path("a/x")]);
        assert!(items.iter().any(|i| matches!(i, WalkItem::Retried(_))));
        assert!(items.iter().any(|i| matches!(i, WalkItem::Unreadable(p, _) if *p == path("b"))));
    }

    #[tokio::test]
    async fn the_stream_holds_back_when_its_reader_does() {
        // A channel of 2 batches and a reader that takes nothing: the walk
        // must park, not buffer the tree.
        let (tx, mut rx) = mpsc::channel(2);
        let list = fake_tree(10, 2, 50);
        let walk = tokio::spawn(walk_streamed(
            Pace::new(4, 0, Duration::from_secs(60)),
            move |dir| std::future::ready(list(dir)),
            tx,
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!walk.is_finished());
        let mut n = 0;
        while let Some(batch) = rx.recv().await {
            n += batch.len();
        }
        assert_eq!(n, 10 + 100 + 50 * 111);
    }
}
