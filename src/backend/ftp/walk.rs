//! Listing a tree: one directory at a time over the pool (MLSD, or LIST
//! and MDTM where MLSD is missing), or recursive `LIST -aR` listings of the
//! tree the last runs recorded, confirmed against those records and split
//! where the server was slow to make them (see [`super::recursive`]). Every
//! wait for the server is bounded: a listing has no overall time limit (a
//! big directory may take long), but its start, its stalls and its final
//! reply each have `--timeout`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use suppaftp::Status;
use tokio::io::AsyncReadExt;

use super::listing::{self, ListEntry, ListKind, TimePrecision};
use super::{
    DirListing, FtpBackend, Inner, LOGIN_WORK, NEAR_LISTINGS_AT_ONCE, Took, Transfer, conn, data, mtime, protocol,
    recursive, unix_now,
};
use crate::backend::recall::Recall;
use crate::backend::stream::{self, Pace};
use crate::backend::{Entry, EntryKind, FAR, Mtime};
use crate::error::{ErrorKind, OpError};
use crate::path::{RelPath, check_component};

impl Inner {
    pub(super) async fn list_dir(self: &Arc<Self>, dir: &RelPath) -> Result<(Vec<Entry>, Vec<String>), OpError> {
        self.list_dir_recalled(dir, None).await
    }

    /// One directory's listing. Without MLSD a file's time comes to the
    /// minute: its exact time is the recorded one when `recall` vouches
    /// for it (same size, same minute, recorded long enough ago: see
    /// [`Recall::settled`]), else one MDTM. So a no-op resync of an
    /// unchanged tree sends no MDTM at all.
    pub(super) async fn list_dir_recalled(
        self: &Arc<Self>,
        dir: &RelPath,
        recall: Option<&Recall>,
    ) -> Result<(Vec<Entry>, Vec<String>), OpError> {
        let mlsd = self.features.mlsd;
        let timeout = self.pool.params().timeout;
        let data = self
            // A big directory may take long to list: no overall limit, but
            // a stalled or endless listing is cut (see `read_listing`).
            .with_conn_within(Duration::MAX, "list", dir, async |conn, remote| {
                let (command, cwd) =
                    if mlsd { (format!("MLSD {remote}"), None) } else { ("LIST -a".to_string(), Some(remote)) };
                listing_data(conn, &command, cwd, timeout).await.map(|(data, _)| data)
            })
            .await?;
        let parsed = if mlsd { listing::parse_mlsd(&data) } else { listing::parse_list(&data, unix_now()) }
            .map_err(|e| OpError::new(ErrorKind::InvalidData, "list", dir, e.to_string()))?;
        // Each entry holds its whole path: short names in a deep directory
        // would multiply the listing's size in memory.
        if parsed.entries.len().saturating_mul(dir.as_bytes().len() + 1) > MAX_LISTING_BYTES {
            return Err(OpError::new(
                ErrorKind::InvalidData,
                "list",
                dir,
                format!("listing larger than {} MiB with its paths: refused", MAX_LISTING_BYTES >> 20),
            ));
        }
        let mut warnings: Vec<String> = parsed
            .warnings
            .iter()
            .map(|w| format!("{}: unreadable listing line ({}): {}", dir, w.reason, crate::path::Shortened(&w.line)))
            .collect();
        let mut entries = Vec::with_capacity(parsed.entries.len());
        let mut needs_time = Vec::new();
        for item in parsed.entries {
            match self.to_entry(dir, item) {
                Ok(Some((entry, exact))) => {
                    if !exact && entry.is_file() {
                        needs_time.push(entries.len());
                    }
                    entries.push(entry);
                }
                Ok(None) => {}
                Err(warning) => warnings.push(warning),
            }
        }
        if let Some(recall) = recall.filter(|_| !needs_time.is_empty()) {
            needs_time = self.settle_from_records(recall, &mut entries, needs_time).await;
        }
        if !needs_time.is_empty() && !self.list_times && self.features.mdtm {
            self.fill_exact_times(&mut entries, &needs_time).await;
        } else if !needs_time.is_empty() {
            let offset = self.tz_offset(&entries, &needs_time).await;
            for &i in &needs_time {
                if let Some(mtime) = entries[i].mtime.as_mut() {
                    mtime.0 = mtime.0.saturating_add(offset.saturating_mul(1_000_000_000));
                }
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((entries, warnings))
    }

    /// Gives the entries at `needs_time` that `recall` vouches for their
    /// recorded exact time; returns those left without one.
    async fn settle_from_records(&self, recall: &Recall, entries: &mut [Entry], needs_time: Vec<usize>) -> Vec<usize> {
        let offset = self.tz_offset(entries, &needs_time).await;
        let mut left = Vec::new();
        for i in needs_time {
            let entry = &mut entries[i];
            let precision = if entry.coarse_mtime_s > 0 { 86_400 } else { 60 };
            let exact =
                entry.mtime.and_then(|listed| recall.settled(&entry.path, entry.size, listed, precision, offset));
            match exact {
                Some(exact) => {
                    entry.mtime = Some(exact);
                    entry.coarse_mtime_s = 0;
                }
                None => left.push(i),
            }
        }
        left
    }

    /// The directories recursive listings of the recorded tree confirm
    /// against `recall` (see [`recursive`]), and the listings of those the
    /// tree was split at; none when the server has shown that it cannot
    /// list recursively (remembered in the state database).
    pub(super) async fn list_recursive(self: &Arc<Self>, recall: &Arc<Recall>) -> HashMap<RelPath, DirListing> {
        let key = format!("ftp.recursive-list {}", self.shown);
        let memory = self.memory.as_ref().map(|m| &m.0);
        if let Some(memory) = memory
            && memory.recall(&key).await.is_some_and(|answer| answer.starts_with("no"))
        {
            return HashMap::new();
        }
        let time_key = format!("ftp.recursive-list-time {}", self.shown);
        let min_split = match memory {
            // Without MLSD a directory listed on its own costs an MDTM per
            // file, where a confirmed section takes its times from the records.
            _ if !self.features.mlsd => u64::MAX,
            Some(memory) if !split_pays(memory.recall(&time_key).await.as_deref(), self.round_trip) => u64::MAX,
            _ => recursive::MIN_SPLIT_ENTRIES,
        };
        let split = recursive::split(recall, min_split, recursive::MAX_PARTS);
        // Each part also lists the directory where it ends, beside it.
        let listings = 2 * split.parts.len() + split.listed.len();
        let far = self.round_trip.is_some_and(|rtt| rtt >= FAR);
        let at_once = if far { self.parallel } else { self.parallel.min(NEAR_LISTINGS_AT_ONCE) };
        if far {
            // Far away a login is mostly waiting: all of them at once.
            self.pool.warm_to(listings.min(at_once));
        }
        let at_once = Arc::new(tokio::sync::Semaphore::new(at_once.max(1)));
        let mut set = tokio::task::JoinSet::new();
        // Spawned largest first, so that they mostly start first: they are
        // the ones the walk waits for.
        for top in split.parts {
            let (inner, recall, key, at_once) =
                (Arc::clone(self), Arc::clone(recall), key.clone(), Arc::clone(&at_once));
            set.spawn(async move {
                let Ok(_turn) = at_once.acquire().await else { return (Vec::new(), Took::Part(None)) };
                let (dirs, took) = inner.list_part(top, &recall, &key).await;
                (dirs, Took::Part(took))
            });
        }
        for dir in split.listed {
            let (inner, at_once) = (Arc::clone(self), Arc::clone(&at_once));
            set.spawn(async move {
                let Ok(_turn) = at_once.acquire().await else { return (Vec::new(), Took::NotAPart) };
                let listed = inner.list_dir(&dir).await;
                (listed.map(|listing| vec![(dir, listing)]).unwrap_or_default(), Took::NotAPart)
            });
        }
        let mut prelisted = HashMap::new();
        let mut parts_took = Vec::new();
        while let Some(joined) = set.join_next().await {
            let Ok((dirs, took)) = joined else { continue };
            if let Took::Part(took) = took {
                parts_took.push(took);
            }
            for (dir, listing) in dirs {
                prelisted.entry(dir).or_insert(listing);
            }
        }
        // Only a whole measure: a failed or vanished part would make the
        // server look quicker than it is.
        let took: Option<Duration> = parts_took.iter().copied().sum();
        if let (Some(memory), Some(took), false) = (memory, took, parts_took.is_empty()) {
            memory.remember(&time_key, &took.as_millis().to_string()).await;
        }
        prelisted
    }

    /// One `LIST -aR` of `top`, the directories it confirms, and the
    /// directory where it will most likely end (its last section is never
    /// trusted), listed on another connection once this one has its own.
    /// Also how long its listing took from first byte to end (`None`:
    /// it failed, or the directory is gone).
    async fn list_part(
        self: &Arc<Self>,
        top: RelPath,
        recall: &Recall,
        key: &str,
    ) -> (Vec<(RelPath, DirListing)>, Option<Duration>) {
        let timeout = self.pool.params().timeout;
        let beside = recall.last_dir_under(&top).cloned();
        let mut side_listing = None;
        let listed = self
            .with_conn_within(Duration::MAX, "list", &top, async |conn, remote| {
                // Started here, so that it cannot take this connection.
                side_listing = beside.map(|dir| {
                    let inner = Arc::clone(self);
                    tokio::spawn(async move {
                        let listed = inner.list_dir(&dir).await;
                        (dir, listed)
                    })
                });
                conn.round_trip(1);
                match conn::answered_within(timeout, "CWD", conn.control.cwd(&remote)).await {
                    Ok(()) => listing_data(conn, "LIST -aR", None, timeout).await.map(Some),
                    Err(err) if conn::ends_session(&err) => Err(err),
                    // Gone since the last run, say: the walk lists what is
                    // there, and a refusal of LIST -aR is not taken from it.
                    Err(_) => Ok(None),
                }
            })
            .await;
        let (confirmed, producing) = match listed {
            Ok(Some((data, producing))) => (self.confirm_recursive(&top, Ok(data), recall, key).await, Some(producing)),
            Ok(None) => (HashMap::new(), None),
            Err(err) => (self.confirm_recursive(&top, Err(err), recall, key).await, None),
        };
        let mut dirs: Vec<(RelPath, DirListing)> =
            confirmed.into_iter().map(|(dir, entries)| (dir, (entries, Vec::new()))).collect();
        if let Some(task) = side_listing
            && let Ok((dir, Ok(listing))) = task.await
        {
            dirs.push((dir, listing));
        }
        (dirs, producing)
    }

    /// The directories a recursive listing's data confirms (see
    /// [`recursive`]); a refusal is remembered.
    async fn confirm_recursive(
        &self,
        top: &RelPath,
        listed: Result<Vec<u8>, OpError>,
        recall: &Recall,
        key: &str,
    ) -> HashMap<RelPath, Vec<Entry>> {
        let memory = self.memory.as_ref().map(|m| &m.0);
        let data = match listed {
            Ok(data) => data,
            Err(err) => {
                // The walk lists as usual either way.
                if refuses_recursion(err.kind, top)
                    && let Some(memory) = memory
                {
                    memory.remember(key, &format!("no: {}", err.message)).await;
                }
                return HashMap::new();
            }
        };
        let now = unix_now();
        let sections = recursive::sections(&data);
        if sections.len() == 1 {
            // One section: `-R` ignored (vsftpd unless `ls_recurse_enable`),
            // or a tree of one directory. Only the first is worth saying.
            let lists_dirs = listing::parse_list(sections[0].body, now)
                .is_ok_and(|l| l.entries.iter().any(|e| e.kind == ListKind::Dir));
            if lists_dirs && let Some(memory) = memory {
                memory.remember(key, "no: the server ignores LIST -R").await;
            }
            return HashMap::new();
        }
        let offset = self.recursive_offset(top, &sections, now).await;
        let recall_clock = recursive::Clock { now, offset_secs: offset };
        let confirmed = recursive::confirm(top, sections, recall, recall_clock, self.names);
        confirmed.dirs
    }

    /// The LIST time-zone offset, settled (once a run) on the first files
    /// whose times are given to the minute, if it must be.
    async fn recursive_offset(&self, top: &RelPath, sections: &[recursive::Section<'_>], now: Mtime) -> i64 {
        if let Some(offset) = self.tz_offset.lock().await.settled {
            return offset;
        }
        let mut samples = Vec::new();
        for section in sections {
            let Some(dir) = recursive::header_dir_under(top, section.header, self.names) else { continue };
            let Ok(parsed) = listing::parse_list(section.body, now) else { continue };
            let minute_files = parsed.entries.into_iter().filter(|e| {
                e.kind == ListKind::File && e.precision == TimePrecision::Minutes && check_component(&e.name).is_ok()
            });
            samples.extend(minute_files.filter_map(|e| self.to_entry(&dir, e).ok().flatten().map(|(entry, _)| entry)));
            if samples.len() >= mtime::ZONE_SAMPLES {
                break;
            }
        }
        let all: Vec<usize> = (0..samples.len()).collect();
        self.tz_offset(&samples, &all).await
    }

    /// A listing entry as an [`Entry`], with whether its time is exact to
    /// the second; `Err` is a warning for an entry that must be skipped.
    pub(super) fn to_entry(&self, dir: &RelPath, item: ListEntry) -> Result<Option<(Entry, bool)>, String> {
        if let Err(why) = check_component(&item.name) {
            return Err(format!("{dir}: skipped entry {}: {why}", crate::path::Shortened(&item.name)));
        }
        if item.name.iter().any(|&b| b == b'\r' || b == b'\n') {
            // FTP commands end at CRLF: such a name cannot be asked for.
            return Err(format!(
                "{dir}: skipped entry {}: CR or LF in a name cannot be sent in an FTP command",
                crate::path::Shortened(&item.name)
            ));
        }
        let name = self
            .names
            .to_barge(&item.name)
            .map_err(|why| format!("{dir}: skipped entry {}: {why}", crate::path::Shortened(&item.name)))?;
        let path = dir.join(&name).map_err(|why| format!("{dir}: skipped entry: {why}"))?;
        let kind = match item.kind {
            ListKind::File => EntryKind::File,
            ListKind::Dir => EntryKind::Dir,
            ListKind::Symlink { .. } => EntryKind::Symlink,
            ListKind::Other => return Err(format!("{path}: skipped: not a file or directory")),
        };
        let exact = matches!(item.precision, TimePrecision::Seconds | TimePrecision::Sub);
        // A date without a time of day (and the zone offset on top of it)
        // is only good to within a day: say so, or comparisons would flap.
        let coarse_mtime_s = if item.precision == TimePrecision::Days { 86_400 + 86_400 / 2 } else { 0 };
        let size = match (kind, item.size) {
            (EntryKind::File, None) => return Err(format!("{path}: skipped: the listing gives no size")),
            (EntryKind::Dir, _) => 0,
            (_, size) => size.unwrap_or(0),
        };
        let link_target = match item.kind {
            // A target the encoding cannot read is unknown, not guessed.
            ListKind::Symlink { target } => {
                target.and_then(|target| self.names.to_barge(&target).ok().map(|t| t.into_owned().into_boxed_slice()))
            }
            _ => None,
        };
        Ok(Some((
            Entry {
                path,
                kind,
                size,
                mtime: item.mtime,
                inode: 0,
                coarse_mtime_s,
                hash: None,
                link_target,
                mode: item.unix_mode.filter(|_| kind != EntryKind::Symlink),
                owner: None,
            },
            exact,
        )))
    }
}

impl FtpBackend {
    /// The tree streamed over the pool, directories in `prelisted` taken
    /// from there instead of asked for.
    pub(super) async fn walk_prelisted(
        &self,
        tx: stream::WalkSender,
        prelisted: HashMap<RelPath, (Vec<Entry>, Vec<String>)>,
        recall: Option<Arc<Recall>>,
    ) {
        let prelisted = std::sync::Mutex::new(prelisted);
        stream::walk_streamed(
            Pace::new(self.inner.parallel, self.inner.retries, self.inner.pool.params().timeout),
            |dir| {
                let (inner, recall) = (Arc::clone(&self.inner), recall.clone());
                let known = prelisted.lock().ok().and_then(|mut p| p.remove(&dir));
                async move {
                    match known {
                        Some(listing) => Ok(listing),
                        None => inner.list_dir_recalled(&dir, recall.as_deref()).await,
                    }
                }
            },
            tx,
        )
        .await
    }
}

/// The replies that start a transfer.
pub(super) const TRANSFER_STARTING: &[Status] = &[Status::AboutToSend, Status::AlreadyOpen];

/// The data of one listing command, run in `cwd` when given. The start
/// has a time limit (a command lost on the way would leave its reply
/// waited for forever); the data, none but a stall limit.
pub(super) async fn listing_data(
    conn: &mut conn::FtpConn,
    command: &str,
    cwd: Option<String>,
    timeout: Duration,
) -> Result<(Vec<u8>, Duration), suppaftp::FtpError> {
    // The whole listing has no time limit (a big directory may take long),
    // so each wait for the server is bounded here: a server gone silent
    // must not hold a listing, and the run, without end.
    let pipelined = conn.pipelining() && conn.features.epsv && conn.active.is_none();
    if let (Some(dir), false) = (&cwd, pipelined) {
        conn.round_trip(1);
        conn::answered_within(timeout, "CWD", conn.control.cwd(dir)).await?;
    }
    let started = async {
        if pipelined {
            open_listing_pipelined(conn, command, cwd.as_deref()).await
        } else {
            data::open(conn, data::Op::Listing, command, 0).await.map(|stream| (stream, None))
        }
    };
    let (mut stream, cwd_refused) = tokio::time::timeout(timeout, started).await.map_err(|_| {
        suppaftp::FtpError::ConnectionError(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the listing did not start",
        ))
    })??;
    let (data, producing) = read_listing(&mut stream, timeout).await.map_err(suppaftp::FtpError::ConnectionError)?;
    conn::answered_within(timeout, "the listing's end", stream.finish(&mut conn.control)).await?;
    match cwd_refused {
        // What was listed is another directory's: dropped, and the CWD's
        // refusal is the answer.
        Some(refused) => Err(refused),
        None => Ok((data, producing)),
    }
}

/// A listing's data connection with EPSV and the listing command written
/// at once (as `data::open` does for RETR and STOR): the data connection
/// is made as soon as the 229 is in, and the 150 arrives with its
/// handshake. Two round trips instead of three. A listing lost this way
/// (a server that drops pipelined commands) times out in the caller,
/// turns pipelining off and is retried, the root included (see
/// [`crate::backend::walk_concurrently`]).
///
/// A server that refuses the command (550: the directory is gone; 425)
/// closes its passive port, so the data connection may be refused before
/// the refusal is read: the server's reply is then the error, not the
/// connection's.
/// EPSV and the listing command in one write, after a CWD to `cwd` when
/// given (LIST servers list where the connection is): one round trip and
/// the data connection's. A refused CWD is returned beside the transfer,
/// not instead of it: the server then lists the directory it was in, and
/// that listing is read and dropped so that the replies stay in step.
async fn open_listing_pipelined(
    conn: &mut conn::FtpConn,
    command: &str,
    cwd: Option<&str>,
) -> Result<(Transfer, Option<suppaftp::FtpError>), suppaftp::FtpError> {
    let mut lines: Vec<String> = cwd.map(|dir| format!("CWD {dir}")).into_iter().collect();
    lines.extend(["EPSV".to_string(), command.to_string()]);
    let sent = conn.send_pipelined(&lines).await?;
    let started = async {
        let cwd_refused = match cwd {
            None => None,
            Some(_) => match conn.control.read_response_in(&[Status::RequestedFileActionOk]).await {
                Ok(_) => None,
                Err(refused @ suppaftp::FtpError::UnexpectedResponse(_)) => Some(refused),
                Err(broken) => return Err(broken),
            },
        };
        let reply = conn.control.read_response_in(&[Status::ExtendedPassiveMode]).await?;
        let port =
            protocol::parse_epsv(&String::from_utf8_lossy(&reply.body)).ok_or(suppaftp::FtpError::BadResponse)?;
        conn.round_trip(1);
        let connected = conn.connect_epsv_data(port).await;
        let tcp = match connected {
            Ok(tcp) => tcp,
            Err(refused) => {
                let wait = Duration::from_secs(2).min(conn.data_timeout);
                return match tokio::time::timeout(wait, conn.control.read_response_in(TRANSFER_STARTING)).await {
                    Ok(Err(said @ suppaftp::FtpError::UnexpectedResponse(_))) => Err(said),
                    _ => Err(refused),
                };
            }
        };
        conn.control.read_response_in(TRANSFER_STARTING).await?;
        Ok((tcp, cwd_refused))
    };
    let (tcp, cwd_refused) = sent.answered_if(started.await)?;
    Ok((data::DataChannel::Active { stream: protocol::PlainOrTls::Plain(tcp), upload: false }, cwd_refused))
}

/// A directory listing larger than this is refused (a server sending an
/// endless listing must not exhaust memory); about two million entries.
const MAX_LISTING_BYTES: usize = 256 << 20;

/// Whether a recursive listing of `top` that failed so shows a server that
/// cannot list recursively (remembered: not asked again): `LIST -aR`
/// refused (5xx) or too large. A passing failure, or a login the server
/// turned away (too many at once), may pass; a subtree that cannot be read
/// says nothing of the others.
pub(super) fn refuses_recursion(kind: ErrorKind, top: &RelPath) -> bool {
    match kind {
        ErrorKind::Unsupported | ErrorKind::InvalidData => true,
        ErrorKind::NotFound | ErrorKind::PermissionDenied | ErrorKind::Other => top.is_root(),
        _ => false,
    }
}

/// Whether a recursive listing is worth splitting on a server `round_trip`
/// away, by `remembered`: how long its recursive listings took to arrive
/// last time, from first byte to end, added up over the parts (unknown:
/// yes). Split, the listing takes about half the time on two cores or
/// more, but all parts but one wait for a login of their own (three round
/// trips and the server's fork): proftpd makes 10,000 lines in 0.36 s of
/// CPU and gains, pure-ftpd in 0.03 s and would lose.
pub(super) fn split_pays(remembered: Option<&str>, round_trip: Option<Duration>) -> bool {
    let Some(took) = remembered.and_then(|ms| ms.parse::<u64>().ok()) else { return true };
    let login = round_trip.unwrap_or_default() * 3 + LOGIN_WORK;
    Duration::from_millis(took) / 2 > login
}

/// Reads a listing's data connection to its end, failing when it stalls
/// for `stall` or grows past [`MAX_LISTING_BYTES`]. Also how long it took
/// from its first byte to its end (the server making it, or the link
/// carrying it).
async fn read_listing(stream: &mut Transfer, stall: Duration) -> std::io::Result<(Vec<u8>, Duration)> {
    // Read straight into the listing, no chunk buffer besides: directories
    // are listed many at once, and each held 256 KiB that way.
    const ROOM: usize = 16 * 1024;
    let mut data = Vec::with_capacity(ROOM);
    let mut first_byte = None;
    loop {
        if data.capacity() - data.len() < ROOM {
            data.reserve(ROOM);
        }
        let n = tokio::time::timeout(stall, stream.read_buf(&mut data))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "listing stalled"))??;
        if n == 0 {
            return Ok((data, first_byte.map_or(Duration::ZERO, |at: std::time::Instant| at.elapsed())));
        }
        first_byte.get_or_insert_with(std::time::Instant::now);
        if data.len() > MAX_LISTING_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("listing larger than {} MiB: refused", MAX_LISTING_BYTES >> 20),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_split_where_the_server_was_slow_to_make_it() {
        let near = Some(Duration::from_millis(1));
        let far = Some(Duration::from_millis(20));
        // Never measured, or unreadable: split (it pays on a slow server).
        assert!(split_pays(None, far));
        assert!(split_pays(Some("soon"), far));
        // proftpd's 10,000 files, one listing or ten parts added up.
        assert!(split_pays(Some("400"), far));
        assert!(split_pays(Some("283"), near));
        // pure-ftpd's: half of it is less than a login.
        assert!(!split_pays(Some("30"), near));
        assert!(!split_pays(Some("100"), far));
        assert!(!split_pays(Some("400"), Some(Duration::from_millis(100))));
    }

    #[test]
    fn only_a_refusal_of_the_listing_itself_stops_recursive_listing() {
        let (root, part) = (RelPath::root(), RelPath::parse(b"d0").unwrap());
        for top in [&root, &part] {
            assert!(refuses_recursion(ErrorKind::Unsupported, top), "500-504 to LIST -aR");
            assert!(refuses_recursion(ErrorKind::InvalidData, top), "too large");
            for passing in [ErrorKind::Temporary, ErrorKind::Connect, ErrorKind::Auth] {
                assert!(!refuses_recursion(passing, top), "{passing:?}");
            }
        }
        // 550 to the root's listing, against one subtree's.
        assert!(refuses_recursion(ErrorKind::NotFound, &root));
        assert!(!refuses_recursion(ErrorKind::NotFound, &part));
        assert!(!refuses_recursion(ErrorKind::PermissionDenied, &part));
    }
}
