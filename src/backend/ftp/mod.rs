//! FTP and FTPS (explicit `AUTH TLS` and implicit), on suppaftp over tokio
//! with rustls.
//!
//! - [`conn`]: one control connection (TLS, login, FEAT, data mode, reply
//!   classification); [`pool`]: connections reused across files.
//! - [`listing`]: pure parsers for MLSD and the LIST formats.
//! - [`names`]: byte-exact names through suppaftp's `String` commands.
//! - [`tls`]: certificate trust and per-connection session caches.
//!
//! Paths: the URL path is absolute on the server (`ftp://host/pub/x` is
//! `/pub/x`); `ftp://host/~/x` is relative to the login's home directory.

pub mod conn;
pub mod data;
pub mod fxp;
pub mod listing;
pub mod names;
pub mod pool;
pub mod recursive;
pub mod text;
pub mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use suppaftp::Status;
use suppaftp::types::{FileType, FormatControl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::conn::{ConnectParams, DataMode, Features, TlsMode, classify};
use self::listing::{ListEntry, ListKind, TimePrecision};
use self::pool::{Pool, Pooled};
use super::recall::{Recall, RecallReceiver};
use super::{
    Backend, Capabilities, Entry, EntryKind, FileReader, FileWriter, HashKind, Listing, MissingRoot, Mtime,
    RemoteOptions,
};
use crate::error::{ErrorKind, OpError};
use crate::location::{RemoteLocation, Scheme};
use crate::path::{RelPath, check_component};
use crate::patterns::FilePatterns;

type Transfer = data::DataChannel;

/// A directory's entries and the warnings its listing gave.
type DirListing = (Vec<Entry>, Vec<String>);

/// What a listing task of a recursive walk brings back besides its
/// directories: for a part, how long its listing took from first byte to
/// end (`None`: failed, or its directory is gone).
enum Took {
    NotAPart,
    Part(Option<Duration>),
}

/// Ways a server may let us set a file's modification time, tried in this
/// order; one that fails is dropped for the rest of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MtimeCommand {
    /// `MFMT YYYYMMDDHHMMSS path` (pure-ftpd, proftpd, most modern servers).
    Mfmt,
    /// `MDTM YYYYMMDDHHMMSS path` (vsftpd).
    MdtmSet,
    /// `SITE UTIME YYYYMMDDHHMMSS path` (proftpd mod_site_misc).
    SiteUtime,
    /// `SITE UTIME path atime mtime ctime UTC` (pure-ftpd, others).
    SiteUtime5,
}

struct Inner {
    pool: Arc<Pool>,
    /// Absolute root path on the server, as bytes, without a trailing `/`
    /// (empty for `/`).
    root: Vec<u8>,
    root_missing: bool,
    features: Features,
    caps: Capabilities,
    shown: String,
    /// Candidate ways to set mtimes, the one in use first.
    mtime_commands: std::sync::Mutex<Vec<MtimeCommand>>,
    /// The first of `mtime_commands` has worked: it may be sent in a
    /// pipelined batch (an untried one is sent alone, so that a refusal can
    /// be answered with the next method before the file takes its name).
    mtime_confirmed: std::sync::atomic::AtomicBool,
    /// The server refused a rename: write files in place from now on.
    rename_refused: std::sync::atomic::AtomicBool,
    list_times: bool,
    /// Seconds to add to LIST times (the server's clock zone), measured
    /// once per server and remembered in the state database.
    tz_offset: tokio::sync::Mutex<Option<i64>>,
    memory: Option<super::Memory>,
    parallel: usize,
    /// See [`Backend::round_trip_time`].
    round_trip: Option<Duration>,
    /// `--retries`, for listings (see [`super::walk_concurrently`]).
    retries: u32,
    /// `--ascii GLOB`: files transferred as text.
    ascii: FilePatterns,
    /// Whether uploads in segments land as they should, once tried.
    segmented_write: tokio::sync::OnceCell<bool>,
}

/// The first connection, which decides whether the run can start at all:
/// a server at its session limit (421) at the moment the run starts is
/// asked again with the engine's backoff, `retries` times, as a transfer
/// would be; a wrong password or an unreachable host fails at once (so
/// not `RetryPolicy::run`, which retries `Connect` errors too).
async fn connect_first(params: &ConnectParams, retries: u32) -> Result<conn::FtpConn, OpError> {
    let policy = crate::retry::RetryPolicy::new(retries);
    let mut attempt = 0;
    loop {
        match conn::connect(params).await {
            Err(err) if err.kind == ErrorKind::Temporary && attempt < retries => {
                attempt += 1;
                tokio::time::sleep(policy.delay(attempt)).await;
            }
            result => return result,
        }
    }
}

/// Listings, MDTM and HASH queries at once over a long link (never more
/// than `connections`, the pool's maximum). Each listing takes a
/// connection for about three round trips (EPSV and the command, the data
/// connection's set-up, the data), so a wide tree lists in as many rounds
/// of that as it has directories over this: the 100 leaves of a 10 x 10
/// tree are seven rounds at 16, four at 32. But every connection is a
/// login (a process, a password hash) on the server: at 64, proftpd on
/// the 2-core benchmark machine made the 20 ms no-op slower than at 16
/// (2.1 s against 1.5-1.9 s); at 32 it was the fastest (1.2-1.5 s).
/// Connections beyond the first [`WARM_CONNECTIONS`] are opened only when
/// directories wait for them, and a server that refuses one (421) has
/// shown its limit: the pool's cap drops to what it took.
const LISTING_CONNECTIONS: usize = 32;

/// The same where a round trip costs little (under
/// [`super::FAR`], the lesser of the login's pipelining
/// probe and the root's CWD as timed at open): listing is then bound by
/// the server's work, which more logins only add to (on loopback, 32 took
/// 0.9-2.6 s for that no-op, 16 took 0.7-0.9 s).
const LISTING_CONNECTIONS_NEAR: usize = 16;

/// Recursive listings (and listings of the directories a tree was split
/// at) at once on a near server, sides aside (at most one per part):
/// there the work is the server's, and a burst of logins only adds to it.
/// proftpd on loopback, 10,000 files in 10 parts, medians of 10 no-ops:
/// 2, 3 or 4 at once 0.44-0.49 s, all at once 0.55 s, one listing 0.59-0.63
/// s. 4 for servers with more cores than this 2-core machine.
const NEAR_LISTINGS_AT_ONCE: usize = 4;

/// What a login costs the server besides its round trips (proftpd forks
/// and hashes a password: 10-30 ms on the 2-core benchmark machine).
const LOGIN_WORK: Duration = Duration::from_millis(20);

/// MDTM commands written at once on one connection (about 4 KiB of
/// commands, well inside any server's receive buffer).
const MDTM_BATCH: usize = 64;

/// Connections opened in the background as soon as the first has logged
/// in, so that the first level of directories finds them ready (about as
/// many as the engine's first transfers use).
const WARM_CONNECTIONS: usize = 16;

/// The same for a near server: none. A login there costs little waiting
/// but the server's work (proftpd forks a process and hashes a password for
/// each), which a job with little to do pays for nothing; connections open
/// as work waits for them. Same run on loopback, proftpd, medians of 5,
/// 15 warmed against none: 1 GiB up 1.18/1.10 s, down 1.23/1.05 s, 10,000
/// small files down 3.83/3.71 s, up 4.73/4.63 s, no-op 0.54/0.50 s.
const WARM_CONNECTIONS_NEAR: usize = 1;

pub struct FtpBackend {
    inner: Arc<Inner>,
}

fn unix_now() -> Mtime {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Mtime::from_unix(i64::try_from(now.as_secs()).unwrap_or(i64::MAX), now.subsec_nanos())
}

/// `YYYYMMDDHHMMSS` in UTC, for MFMT and MDTM.
pub(crate) fn ftp_timestamp(mtime: Mtime) -> String {
    let secs = mtime.secs();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = crate::units::civil_from_days(days);
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}", rem / 3600, (rem % 3600) / 60, rem % 60)
}

impl FtpBackend {
    pub async fn open(
        remote: &RemoteLocation,
        missing_root: MissingRoot,
        options: &RemoteOptions,
    ) -> Result<FtpBackend, OpError> {
        let tls_mode = match remote.scheme {
            Scheme::Ftps => TlsMode::Implicit,
            Scheme::Ftpes => TlsMode::Explicit,
            _ if options.ftp_explicit_tls => TlsMode::Explicit,
            _ => TlsMode::None,
        };
        let tls = match tls_mode {
            TlsMode::None => None,
            _ => Some(Arc::new(tls::base_config(&options.tls)?)),
        };
        let login = crate::credentials::resolve(remote, options, "anonymous");
        let shown = remote.to_string();
        let login_key = format!("ftp.login {shown}");
        let remembered = match (&options.memory, tls_mode) {
            (Some(memory), TlsMode::None) => {
                memory.0.recall(&login_key).await.as_deref().and_then(conn::Remembered::from_text)
            }
            _ => None,
        };
        let params = ConnectParams {
            host: remote.host.clone(),
            port: remote.port,
            login,
            tls_mode,
            tls,
            data_mode: if options.active || options.active_ports.is_some() {
                DataMode::Active { ports: options.active_ports.clone() }
            } else {
                DataMode::Passive { trust_reply_address: options.pasv_address_from_reply }
            },
            timeout: options.timeout,
            round_trips: Arc::default(),
            pipelining: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            learned: Arc::default(),
            remembered: remembered.clone(),
        };
        let ascii = FilePatterns::new(&options.ascii)
            .map_err(|e| OpError::new(ErrorKind::InvalidData, "--ascii", &shown, e.to_string()))?;
        // Its login also probes pipelining (see `conn::connect`).
        let mut first = connect_first(&params, options.retries).await.map_err(|mut e| {
            e.path = shown.clone();
            e
        })?;
        if let (Some(memory), Some(learned)) = (&options.memory, params.learned.get()) {
            let now = conn::Remembered { home: learned.home.clone(), feat: learned.feat.clone() };
            let plain = tls_mode == TlsMode::None;
            if plain
                && params.pipelining.load(std::sync::atomic::Ordering::Relaxed)
                && remembered.as_ref() != Some(&now)
            {
                memory.0.remember(&login_key, &now.to_text()).await;
            }
        }
        let connections = options.connections.max(1);
        let features = first.features.clone();
        let root = resolve_root(&remote.path, &first.home);
        let root_text = names::decode(if root.is_empty() { b"/" } else { &root });
        first.round_trip(1);
        let asked = std::time::Instant::now();
        let root_exists = match tokio::time::timeout(params.timeout, first.control.cwd(&root_text)).await {
            Ok(cwd) => cwd.is_ok(),
            Err(_) => {
                return Err(OpError::new(ErrorKind::Temporary, "open", &root_text, "CWD: no answer from the server"));
            }
        };
        // The login's pipelining probe times a round trip where it can; the
        // CWD does everywhere (TLS too).
        let round_trip = [pool_params_round_trip(&params), Some(asked.elapsed())].into_iter().flatten().min();
        let near = round_trip.is_none_or(|rtt| rtt < super::FAR);
        let parallel = connections.min(if near { LISTING_CONNECTIONS_NEAR } else { LISTING_CONNECTIONS });
        let pool = Pool::new(params, connections);
        // They log in while this one finishes opening (the root made if
        // it must be).
        let warm = if near { WARM_CONNECTIONS_NEAR } else { WARM_CONNECTIONS };
        pool.warm(parallel.min(warm).saturating_sub(1));
        let root_missing = match (root_exists, missing_root) {
            (true, _) => false,
            (false, MissingRoot::Empty) => true,
            (false, MissingRoot::Fail | MissingRoot::CreateLater) => {
                return Err(OpError::new(ErrorKind::NotFound, "open", &shown, "the directory does not exist"));
            }
            (false, MissingRoot::Create) => {
                make_dirs(&mut first, &root).await.map_err(|mut e| {
                    e.path = shown.clone();
                    e
                })?;
                false
            }
        };
        let mut mtime_commands = Vec::new();
        if features.mfmt {
            mtime_commands.push(MtimeCommand::Mfmt);
        }
        if features.mdtm {
            mtime_commands.push(MtimeCommand::MdtmSet);
        }
        mtime_commands.extend([MtimeCommand::SiteUtime, MtimeCommand::SiteUtime5]);
        let dir_mtimes = features.mfmt;
        let precision = if features.mlsd || features.mdtm && !options.list_times {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(60)
        };
        pool.give(first);
        Ok(FtpBackend {
            inner: Arc::new(Inner {
                pool,
                root,
                root_missing,
                caps: Capabilities {
                    mtime_precision: precision,
                    set_mtime: true,
                    set_dir_mtime: dir_mtimes,
                    atomic_rename: true,
                    hashes: {
                        let mut kinds = features.hash.clone();
                        kinds.extend(features.xhash.iter().filter(|k| !features.hash.contains(k)));
                        kinds
                    },
                    symlinks: false,
                    max_connections: connections,
                    resume_margin: 0,
                    // Where REST restarts uploads; tried out before the
                    // first use (`segmented_write_works`).
                    segmented_write: features.rest_stream,
                    windowed_writes: false,
                    live_temporaries: false,
                    remote: true,
                },
                features,
                shown,
                mtime_commands: std::sync::Mutex::new(mtime_commands),
                mtime_confirmed: std::sync::atomic::AtomicBool::new(false),
                rename_refused: std::sync::atomic::AtomicBool::new(false),
                list_times: options.list_times,
                tz_offset: tokio::sync::Mutex::new(None),
                memory: options.memory.clone(),
                parallel,
                round_trip,
                retries: options.retries,
                ascii,
                segmented_write: tokio::sync::OnceCell::new(),
            }),
        })
    }
}

/// The time in an MDTM reply (`213 YYYYMMDDHHMMSS`), UTC.
fn mdtm_time(reply: &suppaftp::types::Response) -> Option<Mtime> {
    let text = String::from_utf8_lossy(&reply.body);
    text.get(4..).and_then(|t| listing::parse_ftp_time(t.trim().as_bytes()))
}

/// The round trip the first login measured, if it could.
fn pool_params_round_trip(params: &ConnectParams) -> Option<Duration> {
    params.learned.get().and_then(|learned| learned.round_trip)
}

/// The absolute root: the URL path, or below the home directory for `/~`.
fn resolve_root(url_path: &[u8], home: &str) -> Vec<u8> {
    let mut root = match url_path.strip_prefix(b"/~") {
        Some(rest) if rest.is_empty() || rest.starts_with(b"/") => {
            let mut joined = home.trim_end_matches('/').as_bytes().to_vec();
            joined.extend_from_slice(rest);
            joined
        }
        _ => url_path.to_vec(),
    };
    while root.ends_with(b"/") {
        root.pop();
    }
    if !root.is_empty() && !root.starts_with(b"/") {
        root.insert(0, b'/');
    }
    root
}

/// MKD of every missing component of an absolute path.
async fn make_dirs(conn: &mut conn::FtpConn, path: &[u8]) -> Result<(), OpError> {
    let mut current = Vec::new();
    for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        current.push(b'/');
        current.extend_from_slice(part);
        let text = names::decode(&current);
        conn.round_trip(1);
        if conn.control.cwd(&text).await.is_err() {
            conn.round_trip(1);
            conn.control.mkdir(&text).await.map_err(|e| classify(e, "mkdir", &text))?;
        }
    }
    Ok(())
}

impl Inner {
    /// The server path of `rel`, as suppaftp wants it.
    fn remote_path(&self, rel: &RelPath) -> String {
        let mut full = self.root.clone();
        if !rel.is_root() {
            full.push(b'/');
            full.extend_from_slice(rel.as_bytes());
        }
        if full.is_empty() {
            full.push(b'/');
        }
        names::decode(&full)
    }

    /// Runs one command-style operation on a pooled connection; a
    /// connection that failed at the transport level is not reused.
    async fn with_conn<T>(
        &self,
        op: &'static str,
        path: &RelPath,
        work: impl AsyncFnOnce(&mut conn::FtpConn, String) -> Result<T, suppaftp::FtpError>,
    ) -> Result<T, OpError> {
        self.with_conn_within(self.pool.params().timeout, op, path, work).await
    }

    /// [`Self::with_conn`] with its own overall time limit.
    async fn with_conn_within<T>(
        &self,
        limit: Duration,
        op: &'static str,
        path: &RelPath,
        work: impl AsyncFnOnce(&mut conn::FtpConn, String) -> Result<T, suppaftp::FtpError>,
    ) -> Result<T, OpError> {
        let mut pooled = self.pool.get().await?;
        let remote = self.remote_path(path);
        pooled.in_doubt();
        let result = tokio::time::timeout(limit, work(pooled.conn(), remote)).await;
        pooled.settled();
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                if conn::ends_session(&err) {
                    pooled.mark_broken();
                }
                Err(classify(err, op, path))
            }
            Err(_) => {
                pooled.mark_broken();
                Err(OpError::new(ErrorKind::Temporary, op, path, "timed out"))
            }
        }
    }

    async fn list_dir(self: &Arc<Self>, dir: &RelPath) -> Result<(Vec<Entry>, Vec<String>), OpError> {
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

    /// The directories recursive listings of the recorded tree confirm
    /// against `recall` (see [`recursive`]), and the listings of those the
    /// tree was split at; none when the server has shown that it cannot
    /// list recursively (remembered in the state database).
    async fn list_recursive(self: &Arc<Self>, recall: &Arc<Recall>) -> HashMap<RelPath, DirListing> {
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
        let far = self.round_trip.is_some_and(|rtt| rtt >= super::FAR);
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
                let Ok(cwd) = tokio::time::timeout(timeout, conn.control.cwd(&remote)).await else {
                    return Err(suppaftp::FtpError::ConnectionError(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "CWD: no answer",
                    )));
                };
                match cwd {
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
        let confirmed = recursive::confirm(top, sections, recall, recall_clock);
        confirmed.dirs
    }

    /// The LIST time-zone offset, measured (once) on the first file whose
    /// time is given to the minute, if it must be.
    async fn recursive_offset(&self, top: &RelPath, sections: &[recursive::Section<'_>], now: Mtime) -> i64 {
        if let Some(offset) = *self.tz_offset.lock().await {
            return offset;
        }
        for section in sections {
            let Some(dir) = recursive::header_dir_under(top, section.header) else { continue };
            let Ok(parsed) = listing::parse_list(section.body, now) else { continue };
            let sample = parsed.entries.into_iter().find(|e| {
                e.kind == ListKind::File && e.precision == TimePrecision::Minutes && check_component(&e.name).is_ok()
            });
            if let Some(sample) = sample
                && let Ok(Some((entry, _))) = self.to_entry(&dir, sample)
            {
                return self.tz_offset(std::slice::from_ref(&entry), &[0]).await;
            }
        }
        0
    }

    /// A listing entry as an [`Entry`], with whether its time is exact to
    /// the second; `Err` is a warning for an entry that must be skipped.
    fn to_entry(&self, dir: &RelPath, item: ListEntry) -> Result<Option<(Entry, bool)>, String> {
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
        let path = dir.join(&item.name).map_err(|why| format!("{dir}: skipped entry: {why}"))?;
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
            ListKind::Symlink { target } => target.map(Vec::into_boxed_slice),
            _ => None,
        };
        Ok(Some((
            Entry { path, kind, size, mtime: item.mtime, inode: 0, coarse_mtime_s, hash: None, link_target },
            exact,
        )))
    }

    /// The LIST time-zone offset: remembered, or measured once by comparing
    /// one file's LIST time with its MDTM (UTC), rounded to 15 minutes.
    /// Until a listing offers a file to measure, 0 is assumed (not kept).
    async fn tz_offset(&self, entries: &[Entry], candidates: &[usize]) -> i64 {
        let mut known = self.tz_offset.lock().await;
        if let Some(offset) = *known {
            return offset;
        }
        let key = format!("ftp.list-tz-offset {}", self.shown);
        if let Some(memory) = &self.memory
            && let Some(recalled) = memory.0.recall(&key).await.and_then(|v| v.parse::<i64>().ok())
        {
            *known = Some(recalled);
            return recalled;
        }
        let sample = candidates.iter().map(|&i| &entries[i]).find(|e| e.coarse_mtime_s == 0);
        let (Some(sample), true) = (sample, self.features.mdtm) else { return 0 };
        let exact =
            self.mdtm_batch(std::slice::from_ref(&sample.path)).await.ok().and_then(|times| times.into_iter().next());
        let (Some(listed), Some(Some(exact))) = (sample.mtime, exact) else { return 0 };
        let quarter_hours = ((exact.secs() - listed.secs()) as f64 / 900.0).round() as i64;
        let offset = quarter_hours.clamp(-14 * 4, 14 * 4) * 900;
        if let Some(memory) = &self.memory {
            memory.0.remember(&key, &offset.to_string()).await;
        }
        *known = Some(offset);
        offset
    }

    /// MDTM for files whose listing gave only minutes: in batches (one
    /// write each, see [`Inner::mdtm_batch`]) spread over the connections.
    async fn fill_exact_times(self: &Arc<Self>, entries: &mut [Entry], indexes: &[usize]) {
        let mut set = tokio::task::JoinSet::new();
        let batch = indexes.len().div_ceil(self.parallel.max(1)).clamp(1, MDTM_BATCH);
        let batches: Vec<Vec<(usize, RelPath)>> =
            indexes.chunks(batch).map(|chunk| chunk.iter().map(|&i| (i, entries[i].path.clone())).collect()).collect();
        let workers = self.parallel.min(batches.len());
        let queue = Arc::new(std::sync::Mutex::new(batches));
        for _ in 0..workers {
            let (inner, queue) = (Arc::clone(self), Arc::clone(&queue));
            set.spawn(async move {
                let mut found = Vec::new();
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop());
                    let Some(batch) = next else { break };
                    let paths: Vec<RelPath> = batch.iter().map(|(_, path)| path.clone()).collect();
                    // A failed batch leaves those files at their listed minute.
                    let Ok(times) = inner.mdtm_batch(&paths).await else { continue };
                    found.extend(batch.iter().zip(times).filter_map(|((index, _), time)| Some((*index, time?))));
                }
                found
            });
        }
        while let Some(Ok(found)) = set.join_next().await {
            for (index, mtime) in found {
                entries[index].mtime = Some(mtime);
                entries[index].coarse_mtime_s = 0;
            }
        }
    }

    /// One file's digest computed by the server.
    async fn server_hash(&self, path: &RelPath, kind: HashKind) -> Result<Vec<u8>, OpError> {
        let use_hash = self.features.hash.contains(&kind);
        let reply = self
            .with_conn("hash", path, async |conn, remote| {
                if use_hash {
                    if conn.hash_selected != Some(kind) {
                        let name = match kind {
                            HashKind::Sha256 => "SHA-256",
                            HashKind::Sha1 => "SHA-1",
                            _ => "MD5",
                        };
                        conn.round_trip(1);
                        conn.control.custom_command(format!("OPTS HASH {name}"), &[Status::CommandOk]).await?;
                        conn.hash_selected = Some(kind);
                    }
                    conn.round_trip(1);
                    conn.control.custom_command(format!("HASH {remote}"), &[Status::File]).await
                } else {
                    let verb = match kind {
                        HashKind::Sha256 => "XSHA256",
                        HashKind::Sha1 => "XSHA1",
                        _ => "XMD5",
                    };
                    conn.round_trip(1);
                    conn.control
                        .custom_command(format!("{verb} {remote}"), &[Status::File, Status::RequestedFileActionOk])
                        .await
                }
            })
            .await?;
        let text = String::from_utf8_lossy(&reply.body).to_string();
        parse_hash_reply(&text, kind)
            .ok_or_else(|| OpError::new(ErrorKind::InvalidData, "hash", path, format!("unreadable reply `{text}`")))
    }

    /// MDTM for each of `paths` on one connection, in order; `None` for a
    /// file the server gave no time for (a 550, an unreadable reply). Where
    /// the connection pipelines, the commands go in one write and cost one
    /// round trip together: a LIST-only server (vsftpd) is asked this for
    /// every file of every listing.
    async fn mdtm_batch(&self, paths: &[RelPath]) -> Result<Vec<Option<Mtime>>, OpError> {
        let Some(first) = paths.first() else { return Ok(Vec::new()) };
        let remotes: Vec<String> = paths.iter().map(|path| self.remote_path(path)).collect();
        self.with_conn("mdtm", first, async |conn, _| {
            let mut times = Vec::with_capacity(remotes.len());
            let answer = |reply: Result<suppaftp::types::Response, suppaftp::FtpError>| match reply {
                Ok(reply) => Ok(mdtm_time(&reply)),
                Err(suppaftp::FtpError::UnexpectedResponse(_)) => Ok(None),
                Err(err) => Err(err),
            };
            if conn.pipelining() && remotes.len() > 1 {
                let lines: Vec<String> = remotes.iter().map(|remote| format!("MDTM {remote}")).collect();
                let sent = conn.send_pipelined(&lines).await?;
                let read = async {
                    for _ in &lines {
                        times.push(answer(conn.control.read_response_in(&[Status::File]).await)?);
                    }
                    Ok(())
                };
                sent.answered_if(read.await)?;
            } else {
                for remote in &remotes {
                    conn.round_trip(1);
                    times.push(answer(conn.control.custom_command(format!("MDTM {remote}"), &[Status::File]).await)?);
                }
            }
            Ok(times)
        })
        .await
    }
}

/// What [`FtpBackend::try_segmented_write`] writes, as (offset, byte), in
/// this order: the first held open while the others are written whole.
const PROBE_WRITES: [(u64, u8); 3] = [(0, b'A'), (8, b'B'), (4, b'C')];
/// What the probe file must then hold.
const PROBE_EXPECTED: &[u8] = b"A\0\0\0C\0\0\0B";

impl FtpBackend {
    /// The tree streamed over the pool, directories in `prelisted` taken
    /// from there instead of asked for.
    async fn walk_prelisted(
        &self,
        tx: super::stream::WalkSender,
        prelisted: HashMap<RelPath, (Vec<Entry>, Vec<String>)>,
    ) {
        let prelisted = std::sync::Mutex::new(prelisted);
        super::stream::walk_streamed(
            super::stream::Pace::new(self.inner.parallel, self.inner.retries, self.inner.pool.params().timeout),
            |dir| {
                let inner = Arc::clone(&self.inner);
                let known = prelisted.lock().ok().and_then(|mut p| p.remove(&dir));
                async move {
                    match known {
                        Some(listing) => Ok(listing),
                        None => inner.list_dir(&dir).await,
                    }
                }
            },
            tx,
        )
        .await
    }

    /// Tries out segments on this server with a scratch file beside `near`,
    /// as a segmented upload writes them: a STOR at 0 held open while a
    /// REST+STOR past the end and then one below it are written and
    /// finished; then the STOR ends. The file must read `A...C...B`. A
    /// server that cuts the file at a REST or at an upload's end, writes
    /// each upload to a file of its own and renames it over the name
    /// (pure-ftpd), or locks the file for a whole upload (vsftpd's
    /// `lock_upload_files`: the second upload waits, and the probe gives up
    /// after a few seconds) fails it, and gets whole-file uploads.
    async fn try_segmented_write(&self, near: &RelPath) -> Result<(), String> {
        let probe = super::temp::probe_path(near);
        let patience = self.inner.round_trip.unwrap_or_default().saturating_mul(20).max(Duration::from_secs(5));
        let tried = tokio::time::timeout(patience, async {
            let (first, rest) = PROBE_WRITES.split_first().expect("probe writes");
            let mut held = self.open_writer(&probe, first.0, false).await?;
            held.write(vec![first.1]).await?;
            for &(offset, byte) in rest {
                let mut writer = self.open_writer(&probe, offset, false).await?;
                writer.write(vec![byte]).await?;
                writer.finish(None).await?;
            }
            held.finish(None).await?;
            let mut reader = self.open_reader(&probe, 0, false, None).await?;
            let mut landed = Vec::new();
            loop {
                let chunk = reader.read(Vec::with_capacity(64)).await?;
                if chunk.is_empty() || landed.len() > 64 {
                    break;
                }
                landed.extend_from_slice(&chunk);
            }
            Ok::<_, OpError>(landed)
        })
        .await;
        let _ = self.remove_file(&probe).await;
        match tried {
            Err(_) => Err(format!("a second upload into one file waited more than {patience:?}")),
            Ok(Err(err)) => Err(err.to_string()),
            Ok(Ok(landed)) if landed == PROBE_EXPECTED => Ok(()),
            Ok(Ok(landed)) => Err(format!("writes at offsets left {landed:?} where {PROBE_EXPECTED:?} was written")),
        }
    }

    /// A RETR from `offset`; `text` switches the connection to TYPE A for
    /// this transfer (and back to TYPE I after it).
    ///
    /// `range`: read only that many bytes, then end the transfer early
    /// (see [`FtpReader::end_range`]).
    async fn open_reader(
        &self,
        path: &RelPath,
        offset: u64,
        text: bool,
        range: Option<u64>,
    ) -> Result<Box<dyn FileReader>, OpError> {
        let (pooled, stream) = self.open_transfer(path, data::Op::Retrieve, offset, text).await?;
        // From here the reader's own drop decides (see `FtpReader`).
        Ok(Box::new(FtpReader {
            stream: Some(stream),
            pooled,
            path: path.clone(),
            timeout: self.inner.pool.params().timeout,
            text: text.then(text::CrlfToLf::default),
            remaining: range,
        }))
    }

    /// A STOR (REST+STOR or APPE when `offset` > 0); `text` as for reads.
    async fn open_writer(&self, path: &RelPath, offset: u64, text: bool) -> Result<Box<dyn FileWriter>, OpError> {
        let op = if offset > 0 && !self.inner.features.rest_stream { data::Op::Append } else { data::Op::Store };
        let (pooled, stream) = self.open_transfer(path, op, offset, text).await?;
        // From here the writer's own drop decides (see `FtpWriter`).
        Ok(Box::new(FtpWriter {
            stream: Some(stream),
            pooled: Some(pooled),
            path: path.clone(),
            inner: Arc::clone(&self.inner),
            text: text.then(text::LfToCrlf::default),
        }))
    }

    /// A pooled connection with `op`'s data connection open on it (after
    /// TYPE A for a text transfer), within the time limit; a connection
    /// that failed or timed out on the way is closed, not pooled.
    async fn open_transfer(
        &self,
        path: &RelPath,
        op: data::Op,
        offset: u64,
        text: bool,
    ) -> Result<(Pooled, Transfer), OpError> {
        let what = if matches!(op, data::Op::Retrieve) { "read" } else { "write" };
        let remote = self.inner.remote_path(path);
        // A server that could not open a passive port (425: all of its
        // range in use for a moment; proftpd answers EPSV so under load)
        // is asked once more, on another connection: nothing was sent
        // or received yet, so it costs no file retry. (In active mode a
        // 425 is the server failing to connect back: not asked again.)
        let mut may_ask_again = matches!(self.inner.pool.params().data_mode, DataMode::Passive { .. });
        loop {
            let mut pooled = self.inner.pool.get().await?;
            pooled.in_doubt();
            let started = async {
                if text {
                    pooled.conn().round_trip(1);
                    pooled.conn().control.transfer_type(FileType::Ascii(FormatControl::Default)).await?;
                }
                data::open(pooled.conn(), op, &remote, offset).await
            };
            let started = tokio::time::timeout(self.inner.pool.params().timeout, started).await;
            pooled.settled();
            match started {
                Ok(Ok(stream)) => return Ok((pooled, stream)),
                Ok(Err(err)) => {
                    pooled.mark_broken();
                    if may_ask_again && conn::reply_code(&err) == Some(425) {
                        may_ask_again = false;
                        continue;
                    }
                    return Err(classify(err, what, path));
                }
                Err(_) => {
                    pooled.mark_broken();
                    return Err(OpError::new(ErrorKind::Temporary, what, path, "timed out"));
                }
            }
        }
    }
}

#[async_trait]
impl Backend for FtpBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    fn describe(&self) -> String {
        self.inner.shown.clone()
    }

    fn round_trips(&self) -> u64 {
        self.inner.pool.params().round_trips.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn round_trip_time(&self) -> Option<Duration> {
        self.inner.round_trip
    }

    fn connection_cap(&self) -> Option<usize> {
        let pool = &self.inner.pool;
        (pool.cap() < pool.max()).then(|| pool.cap())
    }

    async fn list_dir(&self, dir: &RelPath) -> Result<Vec<Entry>, OpError> {
        Ok(self.inner.list_dir(dir).await?.0)
    }

    /// Lists many directories at once over the pool.
    async fn walk(&self) -> Result<Listing, OpError> {
        super::stream::collected(|tx| self.walk_streamed(tx)).await
    }

    fn uses_recall(&self) -> bool {
        !self.inner.root_missing
    }

    /// Where the last runs left records of this tree, one recursive LIST
    /// may stand for most directories' listings (see [`recursive`]).
    async fn walk_streamed_recalling(&self, tx: super::stream::WalkSender, recall: RecallReceiver) {
        if self.inner.root_missing {
            return;
        }
        let Ok(recall) = recall.await else { return self.walk_streamed(tx).await };
        if recall.is_empty() {
            return self.walk_streamed(tx).await;
        }
        let prelisted = self.inner.list_recursive(&recall).await;
        self.walk_prelisted(tx, prelisted).await
    }

    async fn walk_streamed(&self, tx: super::stream::WalkSender) {
        if self.inner.root_missing {
            return;
        }
        self.walk_prelisted(tx, HashMap::new()).await
    }

    async fn stat(&self, path: &RelPath) -> Result<Option<Entry>, OpError> {
        let parent = path.parent();
        match self.inner.list_dir(&parent).await {
            Ok((entries, _)) => Ok(entries.into_iter().find(|e| e.path == *path)),
            Err(err) if err.kind == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn open_read(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileReader>, OpError> {
        self.open_reader(path, offset, false, None).await
    }

    /// A RETR from `offset` whose data connection is closed once `len`
    /// bytes are in; the control connection goes back to the pool only
    /// when it answers a NOOP after the transfer's end (else it is closed).
    async fn open_read_range(&self, path: &RelPath, offset: u64, len: u64) -> Result<Box<dyn FileReader>, OpError> {
        self.open_reader(path, offset, false, Some(len)).await
    }

    fn is_text(&self, path: &RelPath) -> bool {
        self.inner.ascii.matches(path)
    }

    fn server_copy(&self) -> Option<&dyn super::ServerCopy> {
        Some(self)
    }

    async fn open_read_text(&self, path: &RelPath) -> Result<Box<dyn FileReader>, OpError> {
        self.open_reader(path, 0, true, None).await
    }

    async fn open_write_text(&self, target: &RelPath) -> Result<Box<dyn FileWriter>, OpError> {
        self.open_writer(target, 0, true).await
    }

    async fn open_write(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileWriter>, OpError> {
        self.open_writer(path, offset, false).await
    }

    /// Tried beside the first file to be written in segments (see
    /// [`FtpBackend::try_segmented_write`]), and remembered in the state
    /// database: a server that locks uploads makes the try wait seconds.
    async fn segmented_write_works(&self, near: &RelPath) -> bool {
        if !self.inner.caps.segmented_write {
            return false;
        }
        *self
            .inner
            .segmented_write
            .get_or_init(async || {
                let key = format!("ftp.segmented-write {}", self.inner.shown);
                let memory = self.inner.memory.as_ref();
                if let Some(memory) = memory
                    && let Some(known) = memory.0.recall(&key).await
                {
                    return known == "yes";
                }
                // Kept with its reason, for whoever wonders why not.
                let tried = self.try_segmented_write(near).await;
                if let Some(memory) = memory {
                    let known = match &tried {
                        Ok(()) => "yes".to_string(),
                        Err(why) => format!("no: {why}"),
                    };
                    memory.0.remember(&key, &known).await;
                }
                tried.is_ok()
            })
            .await
    }

    fn segment_at_zero_truncates(&self) -> bool {
        true
    }

    /// Nothing to make: the first segment's STOR creates the file (and
    /// truncates it) before the others open (see `segment_at_zero_truncates`).
    async fn create_sized(&self, _path: &RelPath, _size: u64) -> Result<(), OpError> {
        Ok(())
    }

    /// A STOR at 0, else REST+STOR: nothing is cut at either end on the
    /// servers that passed [`FtpBackend::try_segmented_write`].
    async fn open_write_segment(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileWriter>, OpError> {
        self.open_writer(path, offset, false).await
    }

    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), OpError> {
        let target = self.inner.remote_path(to);
        let result = self
            .inner
            .with_conn("rename", from, async |conn, source| {
                conn.round_trip(2);
                conn.control.rename(source, target).await
            })
            .await;
        self.inner.note_rename(result)
    }

    /// The mtime goes with the rename (see `Inner::commit_temp`).
    fn mtime_at_commit(&self) -> bool {
        true
    }

    async fn commit_temp(
        &self,
        temp: &RelPath,
        target: &RelPath,
        mtime: Option<Mtime>,
    ) -> Result<Option<Mtime>, OpError> {
        let to = self.inner.remote_path(target);
        let inner = Arc::clone(&self.inner);
        let result = self
            .inner
            .with_conn("rename", temp, async |conn, from| inner.commit_temp(conn, &from, &to, mtime).await)
            .await;
        self.inner.note_rename(result)
    }

    /// HASH (or XSHA256/XSHA1/XMD5) on the server, several files at once.
    async fn hash_files(&self, paths: Vec<RelPath>, kind: HashKind) -> Vec<Result<Vec<u8>, OpError>> {
        let count = paths.len();
        let queue = Arc::new(std::sync::Mutex::new(paths.into_iter().enumerate().collect::<Vec<_>>()));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..self.inner.parallel.min(count) {
            let (inner, queue) = (Arc::clone(&self.inner), Arc::clone(&queue));
            set.spawn(async move {
                let mut done = Vec::new();
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop());
                    let Some((index, path)) = next else { break };
                    done.push((index, inner.server_hash(&path, kind).await));
                }
                done
            });
        }
        let mut results: Vec<Result<Vec<u8>, OpError>> =
            (0..count).map(|_| Err(OpError::new(ErrorKind::Other, "hash", "", "not hashed"))).collect();
        while let Some(joined) = set.join_next().await {
            for (index, result) in joined.unwrap_or_default() {
                results[index] = result;
            }
        }
        results
    }

    fn renames_refused(&self) -> bool {
        self.inner.rename_refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn remove_file(&self, path: &RelPath) -> Result<(), OpError> {
        self.inner
            .with_conn("delete", path, async |conn, remote| {
                conn.round_trip(1);
                conn.control.rm(remote).await
            })
            .await
    }

    async fn remove_dir(&self, path: &RelPath) -> Result<(), OpError> {
        self.inner
            .with_conn("rmdir", path, async |conn, remote| {
                conn.round_trip(1);
                conn.control.rmdir(remote).await
            })
            .await
    }

    async fn mkdir(&self, path: &RelPath) -> Result<(), OpError> {
        self.inner
            .with_conn("mkdir", path, async |conn, remote| {
                conn.round_trip(1);
                match conn.control.mkdir(&remote).await {
                    Ok(()) => Ok(()),
                    // Already there (as a directory) is fine.
                    Err(err) => {
                        conn.round_trip(1);
                        match conn.control.cwd(&remote).await {
                            Ok(()) => Ok(()),
                            Err(_) => Err(err),
                        }
                    }
                }
            })
            .await
    }

    async fn set_mtime(&self, path: &RelPath, mtime: Mtime) -> Result<(), OpError> {
        let inner = Arc::clone(&self.inner);
        self.inner.with_conn("set mtime", path, async |conn, remote| inner.set_time(conn, &remote, mtime).await).await
    }
}

impl Inner {
    /// A rename the server refused outright: files are written in place
    /// from now on.
    fn note_rename<T>(&self, result: Result<T, OpError>) -> Result<T, OpError> {
        if let Err(err) = &result
            && matches!(err.kind, ErrorKind::Unsupported | ErrorKind::PermissionDenied)
        {
            self.rename_refused.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    /// Sets the temporary `from`'s mtime, then renames it to `to`. On a
    /// plain control connection, with a time command already known to
    /// work, the three commands (time, RNFR, RNTO) go in one write and
    /// their replies are read after: one round trip instead of three.
    /// Without a known time command the time is set alone first (finding
    /// the method that works), then RNFR and RNTO go together. Over TLS
    /// each command waits for its reply (see [`conn::FtpConn::send_pipelined`]).
    ///
    /// Every reply is read, whatever the earlier ones said, so the
    /// connection stays in step: a refused RNFR makes the RNTO's reply
    /// (503, bad sequence) expected, and the RNFR's refusal is the error; a
    /// refused time command leaves the time unset (`None`, as in
    /// [`FtpWriter::finish`]) without stopping the rename. A batch left
    /// unanswered turns pipelining off (see [`conn::Pipelined`]).
    async fn commit_temp(
        &self,
        conn: &mut conn::FtpConn,
        from: &str,
        to: &str,
        mtime: Option<Mtime>,
    ) -> Result<Option<Mtime>, suppaftp::FtpError> {
        use std::sync::atomic::Ordering::Relaxed;
        let confirmed = self.mtime_confirmed.load(Relaxed);
        let method = self.mtime_commands.lock().ok().and_then(|m| m.first().copied());
        let mut set = None;
        let mut batch = Vec::with_capacity(3);
        let mut batched_time = None;
        if let Some(mtime) = mtime {
            match method {
                Some(method) if confirmed && conn.pipelining() => {
                    batch.push(time_command(method, from, mtime));
                    batched_time = Some(mtime);
                }
                _ => set = self.set_time(conn, from, mtime).await.ok().map(|()| mtime),
            }
        }
        if !conn.pipelining() {
            conn.round_trip(2);
            conn.control.rename(from, to).await?;
            return Ok(set);
        }
        batch.push(format!("RNFR {from}"));
        batch.push(format!("RNTO {to}"));
        let sent = conn.send_pipelined(&batch).await?;
        let renamed = async {
            if let Some(mtime) = batched_time {
                match conn.control.read_response_in(&[Status::File, Status::CommandOk]).await {
                    Ok(_) => set = Some(mtime),
                    // It worked on this server before: this file's trouble,
                    // not the method's. The commit records the server's time.
                    Err(suppaftp::FtpError::UnexpectedResponse(_)) => {}
                    Err(other) => return Err(other),
                }
            }
            // Some non-compliant servers (bftpd) answer RNTO with 200.
            const RENAMED: &[Status] = &[Status::RequestedFileActionOk, Status::CommandOk];
            match conn.control.read_response_in(&[Status::RequestFilePending]).await {
                Ok(_) => {}
                Err(refused @ suppaftp::FtpError::UnexpectedResponse(_)) => {
                    // The RNTO's reply (503) is read too, to stay in step; the
                    // RNFR's refusal is what went wrong.
                    return match conn.control.read_response_in(RENAMED).await {
                        Err(err) if !matches!(err, suppaftp::FtpError::UnexpectedResponse(_)) => Err(err),
                        _ => Err(refused),
                    };
                }
                Err(other) => return Err(other),
            }
            conn.control.read_response_in(RENAMED).await.map(|_| ())
        };
        sent.answered_if(renamed.await)?;
        Ok(set)
    }

    /// A time command the server refused is not tried again.
    fn drop_time_method(&self, method: MtimeCommand) {
        if let Ok(mut methods) = self.mtime_commands.lock()
            && methods.first() == Some(&method)
        {
            methods.remove(0);
            self.mtime_confirmed.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Sets a file's mtime with the first method the server accepts; a
    /// method the server refuses is not tried again.
    async fn set_time(&self, conn: &mut conn::FtpConn, remote: &str, mtime: Mtime) -> Result<(), suppaftp::FtpError> {
        loop {
            let method = self.mtime_commands.lock().ok().and_then(|m| m.first().copied());
            let Some(method) = method else {
                return Err(suppaftp::FtpError::UnexpectedResponse(suppaftp::types::Response {
                    status: Status::CommandNotImplemented,
                    body: b"502 the server accepts no way of setting modification times".to_vec(),
                }));
            };
            match set_time(conn, method, remote, mtime).await {
                Ok(()) => {
                    self.mtime_confirmed.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
                Err(suppaftp::FtpError::UnexpectedResponse(_)) => self.drop_time_method(method),
                Err(other) => return Err(other),
            }
        }
    }
}

/// The command line that sets `remote`'s mtime with `command`.
fn time_command(command: MtimeCommand, remote: &str, mtime: Mtime) -> String {
    let stamp = ftp_timestamp(mtime);
    match command {
        MtimeCommand::Mfmt => format!("MFMT {stamp} {remote}"),
        MtimeCommand::MdtmSet => format!("MDTM {stamp} {remote}"),
        MtimeCommand::SiteUtime => format!("SITE UTIME {stamp} {remote}"),
        MtimeCommand::SiteUtime5 => format!("SITE UTIME {remote} {stamp} {stamp} {stamp} UTC"),
    }
}

async fn set_time(
    conn: &mut conn::FtpConn,
    command: MtimeCommand,
    remote: &str,
    mtime: Mtime,
) -> Result<(), suppaftp::FtpError> {
    conn.round_trip(1);
    conn.control
        .custom_command(time_command(command, remote, mtime), &[Status::File, Status::CommandOk])
        .await
        .map(|_| ())
}

/// The replies that start a transfer.
const TRANSFER_STARTING: &[Status] = &[Status::AboutToSend, Status::AlreadyOpen];

/// The data of one listing command, run in `cwd` when given. The start
/// has a time limit (a command lost on the way would leave its reply
/// waited for forever); the data, none but a stall limit.
async fn listing_data(
    conn: &mut conn::FtpConn,
    command: &str,
    cwd: Option<String>,
    timeout: Duration,
) -> Result<(Vec<u8>, Duration), suppaftp::FtpError> {
    // The whole listing has no time limit (a big directory may take long),
    // so each wait for the server is bounded here: a server gone silent
    // must not hold a listing, and the run, without end.
    let silent = |what: &str| {
        suppaftp::FtpError::ConnectionError(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what}: no answer within {}s", timeout.as_secs_f32()),
        ))
    };
    if let Some(dir) = cwd {
        conn.round_trip(1);
        tokio::time::timeout(timeout, conn.control.cwd(&dir)).await.map_err(|_| silent("CWD"))??;
    }
    let started = async {
        if conn.pipelining() && conn.features.epsv && conn.active.is_none() {
            open_listing_pipelined(conn, command).await
        } else {
            data::open(conn, data::Op::Listing, command, 0).await
        }
    };
    let mut stream = tokio::time::timeout(timeout, started).await.map_err(|_| {
        suppaftp::FtpError::ConnectionError(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the listing did not start",
        ))
    })??;
    let (data, producing) = read_listing(&mut stream, timeout).await.map_err(suppaftp::FtpError::ConnectionError)?;
    tokio::time::timeout(timeout, stream.finish(&mut conn.control))
        .await
        .map_err(|_| silent("the listing's end"))??;
    Ok((data, producing))
}

/// A listing's data connection with EPSV and the listing command written
/// at once (as `data::open` does for RETR and STOR): the data connection
/// is made as soon as the 229 is in, and the 150 arrives with its
/// handshake. Two round trips instead of three. A listing lost this way
/// (a server that drops pipelined commands) times out in the caller,
/// turns pipelining off and is retried, the root included (see
/// [`super::walk_concurrently`]).
///
/// A server that refuses the command (550: the directory is gone; 425)
/// closes its passive port, so the data connection may be refused before
/// the refusal is read: the server's reply is then the error, not the
/// connection's.
async fn open_listing_pipelined(conn: &mut conn::FtpConn, command: &str) -> Result<Transfer, suppaftp::FtpError> {
    let sent = conn.send_pipelined(&["EPSV".to_string(), command.to_string()]).await?;
    let started = async {
        let reply = conn.control.read_response_in(&[Status::ExtendedPassiveMode]).await?;
        let port = conn::parse_epsv(&String::from_utf8_lossy(&reply.body)).ok_or(suppaftp::FtpError::BadResponse)?;
        let peer = conn.control.get_ref().await.peer_addr().map_err(suppaftp::FtpError::ConnectionError)?;
        conn.round_trip(1);
        let connected = conn::connect_data(std::net::SocketAddr::new(peer.ip(), port), conn.data_timeout).await;
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
        Ok(tcp)
    };
    let tcp = sent.answered_if(started.await)?;
    Ok(data::DataChannel::Active { stream: data::ActiveStream::Plain(tcp), upload: false })
}

/// A directory listing larger than this is refused (a server sending an
/// endless listing must not exhaust memory); about two million entries.
const MAX_LISTING_BYTES: usize = 256 << 20;

/// Whether a recursive listing of `top` that failed so shows a server that
/// cannot list recursively (remembered: not asked again): `LIST -aR`
/// refused (5xx) or too large. A passing failure, or a login the server
/// turned away (too many at once), may pass; a subtree that cannot be read
/// says nothing of the others.
fn refuses_recursion(kind: ErrorKind, top: &RelPath) -> bool {
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
fn split_pays(remembered: Option<&str>, round_trip: Option<Duration>) -> bool {
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

/// The digest in a HASH reply (`213 SHA-256 0-49 <hex> name`) or an
/// X-command reply (`250 <hex>`): the first token of the right length that
/// is all hex.
pub(crate) fn parse_hash_reply(text: &str, kind: HashKind) -> Option<Vec<u8>> {
    let want = match kind {
        HashKind::Sha256 | HashKind::Blake3 => 64,
        HashKind::Sha1 => 40,
        HashKind::Md5 => 32,
    };
    let token =
        text.split_whitespace().skip(1).find(|t| t.len() == want && t.bytes().all(|b| b.is_ascii_hexdigit()))?;
    (0..want).step_by(2).map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok()).collect()
}

struct FtpReader {
    stream: Option<Transfer>,
    pooled: Pooled,
    path: RelPath,
    timeout: Duration,
    /// A text (TYPE A) transfer: line ends to convert.
    text: Option<text::CrlfToLf>,
    /// A range read: the bytes still wanted before the transfer is ended.
    remaining: Option<u64>,
}

impl Drop for FtpReader {
    fn drop(&mut self) {
        // An active-mode transfer abandoned midway leaves its final reply
        // unread on the control connection, a text one leaves it in TYPE A:
        // do not reuse it.
        if self.stream.as_ref().is_some_and(|s| s.needs_finish() || self.text.is_some()) {
            self.pooled.mark_broken();
        }
    }
}

/// Back to TYPE I after a text transfer; a connection that cannot be
/// switched back must not serve binary transfers.
async fn binary_again(pooled: &mut Pooled, path: &RelPath, timeout: Duration) -> Result<(), OpError> {
    pooled.conn().round_trip(1);
    let switched = tokio::time::timeout(timeout, pooled.conn().control.transfer_type(FileType::Binary)).await;
    match switched {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            pooled.mark_broken();
            Err(classify(e, "TYPE I", path))
        }
        Err(_) => {
            pooled.mark_broken();
            Err(OpError::new(ErrorKind::Temporary, "TYPE I", path, format!("no answer within {timeout:?}")))
        }
    }
}

/// A transfer whose final reply did not come within `timeout`.
fn no_final_reply(op: &'static str, path: &RelPath, timeout: Duration) -> OpError {
    OpError::new(ErrorKind::Temporary, op, path, format!("the server did not confirm the transfer within {timeout:?}"))
}

#[async_trait]
impl FileReader for FtpReader {
    async fn read(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        loop {
            let raw = self.read_raw(buf).await?;
            let Some(decoder) = self.text.as_mut() else { return Ok(raw) };
            let mut out = Vec::with_capacity(raw.capacity());
            if raw.is_empty() {
                decoder.finish(&mut out);
                return Ok(out);
            }
            decoder.feed(&raw, &mut out);
            if !out.is_empty() {
                return Ok(out);
            }
            buf = raw;
        }
    }
}

impl FtpReader {
    /// The next bytes as they come off the data connection.
    async fn read_raw(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        // Read into the buffer's spare capacity (read_buf): zero-filling a
        // 1 MiB buffer before every read cost more CPU than the transfer
        // itself for small files (measured with perf: memset and its page
        // faults were a quarter of a 10,000-file download).
        let mut capacity = buf.capacity().max(1);
        buf.clear();
        if let Some(remaining) = self.remaining {
            if remaining == 0 {
                self.end_range().await;
                return Ok(buf);
            }
            capacity = capacity.min(usize::try_from(remaining).unwrap_or(usize::MAX));
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(buf);
        };
        while buf.len() < capacity {
            match tokio::time::timeout(self.timeout, stream.read_buf(&mut buf)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    self.pooled.mark_broken();
                    return Err(OpError::io("read", &self.path, err));
                }
                Err(_) => {
                    self.pooled.mark_broken();
                    return Err(OpError::new(ErrorKind::Temporary, "read", &self.path, "data connection stalled"));
                }
            }
        }
        if let Some(remaining) = self.remaining.as_mut()
            && !buf.is_empty()
        {
            // One read may bring a little more than the range: cut it.
            buf.truncate(usize::try_from(*remaining).unwrap_or(usize::MAX));
            *remaining -= buf.len() as u64;
            if *remaining == 0 {
                self.end_range().await;
            }
            return Ok(buf);
        }
        if buf.is_empty()
            && let Some(stream) = self.stream.take()
        {
            // End of data: read the transfer's final reply (226), within
            // the timeout: a server gone silent after the data (seen: a
            // SIGTERM'd run waiting for it without end).
            self.pooled.in_doubt();
            let finished = tokio::time::timeout(self.timeout, stream.finish(&mut self.pooled.conn().control)).await;
            match finished {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.pooled.mark_broken();
                    return Err(classify(e, "read", &self.path));
                }
                Err(_) => {
                    self.pooled.mark_broken();
                    return Err(no_final_reply("read", &self.path, self.timeout));
                }
            }
            if self.text.is_some() {
                binary_again(&mut self.pooled, &self.path, self.timeout).await?;
            }
            self.pooled.settled();
        }
        Ok(buf)
    }
}

impl FtpReader {
    /// The range is in: the data connection is closed before the file's
    /// end, so the server ends the transfer with one reply (426, or 226
    /// when it had sent everything already: vsftpd, pure-ftpd and proftpd
    /// alike). That reply is read (suppaftp reads it itself for its own
    /// passive connections, before the next command), then a NOOP must
    /// be answered 200: only then is the control connection in step and
    /// goes back to the pool. Anything else closes it.
    async fn end_range(&mut self) {
        let Some(stream) = self.stream.take() else { return };
        let ours = stream.needs_finish();
        drop(stream);
        self.pooled.in_doubt();
        let conn = self.pooled.conn();
        let settled = async {
            if ours {
                conn.control.read_response_in(RANGE_ENDED).await?;
            }
            conn.round_trip(1);
            conn.control.custom_command("NOOP", &[Status::CommandOk]).await
        };
        let within = self.timeout.min(Duration::from_secs(10));
        if matches!(tokio::time::timeout(within, settled).await, Ok(Ok(_))) {
            self.pooled.settled();
        } else {
            self.pooled.mark_broken();
        }
    }
}

/// Replies that end a transfer whose data connection the client closed.
const RANGE_ENDED: &[Status] =
    &[Status::ClosingDataConnection, Status::RequestedFileActionOk, Status::TransferAborted, Status::ActionAborted];

struct FtpWriter {
    stream: Option<Transfer>,
    pooled: Option<Pooled>,
    path: RelPath,
    inner: Arc<Inner>,
    /// A text (TYPE A) transfer: line ends to convert.
    text: Option<text::LfToCrlf>,
}

impl FtpWriter {
    fn broken(&mut self) {
        if let Some(pooled) = self.pooled.as_mut() {
            pooled.mark_broken();
        }
    }
}

impl Drop for FtpWriter {
    fn drop(&mut self) {
        if self.stream.as_ref().is_some_and(|s| s.needs_finish() || self.text.is_some()) {
            self.broken();
        }
    }
}

#[async_trait]
impl FileWriter for FtpWriter {
    async fn write(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        let timeout = self.inner.pool.params().timeout;
        let Some(stream) = self.stream.as_mut() else {
            return Err(OpError::new(ErrorKind::Other, "write", &self.path, "write after finish"));
        };
        let encoded;
        let wire: &[u8] = match self.text.as_mut() {
            Some(encoder) => {
                let mut out = Vec::with_capacity(buf.len() + buf.len() / 16);
                encoder.feed(&buf, &mut out);
                encoded = out;
                &encoded
            }
            None => &buf,
        };
        match tokio::time::timeout(timeout, stream.write_all(wire)).await {
            Ok(Ok(())) => {
                buf.clear();
                Ok(buf)
            }
            Ok(Err(err)) => {
                self.broken();
                Err(OpError::io("write", &self.path, err))
            }
            Err(_) => {
                self.broken();
                Err(OpError::new(ErrorKind::Temporary, "write", &self.path, "data connection stalled"))
            }
        }
    }

    async fn finish(mut self: Box<Self>, mtime: Option<Mtime>) -> Result<Option<Mtime>, OpError> {
        let timeout = self.inner.pool.params().timeout;
        let Some(stream) = self.stream.take() else {
            return Err(OpError::new(ErrorKind::Other, "write", &self.path, "finished twice"));
        };
        let finished = match self.pooled.as_mut() {
            Some(pooled) => {
                // The upload's end: its final reply (226) is waited for,
                // within the timeout (a server gone silent).
                pooled.in_doubt();
                pooled.conn().round_trip(1);
                match tokio::time::timeout(timeout, stream.finish(&mut pooled.conn().control)).await {
                    Ok(finished) => finished.map_err(|err| classify(err, "write", &self.path)),
                    Err(_) => Err(no_final_reply("write", &self.path, timeout)),
                }
            }
            None => Err(classify(suppaftp::FtpError::BadResponse, "write", &self.path)),
        };
        if let Err(err) = finished {
            self.broken();
            return Err(err);
        }
        let Some(pooled) = self.pooled.as_mut() else { return Ok(None) };
        if self.text.is_some() {
            binary_again(pooled, &self.path, timeout).await?;
        }
        let Some(mtime) = mtime else {
            pooled.settled();
            return Ok(None);
        };
        let remote = self.inner.remote_path(&self.path);
        let set = tokio::time::timeout(timeout, self.inner.set_time(pooled.conn(), &remote, mtime)).await;
        let Ok(set) = set else {
            // The content is safe; the connection is out of step.
            pooled.mark_broken();
            return Ok(None);
        };
        pooled.settled();
        match set {
            Ok(()) => Ok(Some(mtime)),
            // The content is safe; only the time is off. The commit step
            // records the server's own time instead.
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(ftp_timestamp(Mtime::from_unix(0, 0)), "19700101000000");
        assert_eq!(ftp_timestamp(Mtime::from_unix(1_700_000_000, 999)), "20231114221320");
        assert_eq!(ftp_timestamp(Mtime::from_unix(951_782_400, 0)), "20000229000000");
    }

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

    #[test]
    fn hash_replies_of_both_forms_are_read() {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let hash = parse_hash_reply(&format!("213 SHA-256 0-2 {hex} a b.txt"), HashKind::Sha256).unwrap();
        assert_eq!(crate::hash::hex(&hash), hex);
        let md5 = parse_hash_reply("250 900150983cd24fb0d6963f7d28e17f72", HashKind::Md5).unwrap();
        assert_eq!(crate::hash::hex(&md5), "900150983cd24fb0d6963f7d28e17f72");
        assert!(parse_hash_reply("213 SHA-256 0-2 nothex", HashKind::Sha256).is_none());
    }

    #[test]
    fn roots_are_absolute_or_below_home() {
        assert_eq!(resolve_root(b"/", "/home/u"), b"");
        assert_eq!(resolve_root(b"/pub/x/", "/home/u"), b"/pub/x");
        assert_eq!(resolve_root(b"/~/x", "/home/u/"), b"/home/u/x");
        assert_eq!(resolve_root(b"/~", "/"), b"");
        assert_eq!(resolve_root(b"/~user", "/home/u"), b"/~user");
    }

    #[test]
    fn hosts_display_with_brackets_for_ipv6() {
        use super::conn::display_host;
        assert_eq!(display_host("::1"), "[::1]");
        assert_eq!(display_host("example.com"), "example.com");
    }

    /// A server that logs anyone in, lists nothing, and refuses the first
    /// EPSV of its life with 425 (no passive port free for a moment, as
    /// proftpd answers under load); every RETR after a good EPSV sends
    /// `hello`. Returns its port and how many EPSV it was asked.
    async fn refuses_its_first_passive_port() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncBufReadExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&asked);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let asked = Arc::clone(&counter);
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let mut passive: Option<tokio::net::TcpListener> = None;
                    write.write_all(b"220 fake\r\n").await.unwrap();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                        let reply = match verb.as_str() {
                            "USER" => "331 password\r\n".to_string(),
                            "PASS" => "230 in\r\n".to_string(),
                            "FEAT" => "211-Features:\r\n EPSV\r\n REST STREAM\r\n211 End\r\n".to_string(),
                            "PWD" => "257 \"/\" is the directory\r\n".to_string(),
                            "CWD" => "250 ok\r\n".to_string(),
                            "EPSV" if asked.fetch_add(1, Ordering::SeqCst) == 0 => {
                                "425 EPSV: Address already in use\r\n".to_string()
                            }
                            "EPSV" => {
                                let data = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                                let port = data.local_addr().unwrap().port();
                                passive = Some(data);
                                format!("229 Entering Extended Passive Mode (|||{port}|)\r\n")
                            }
                            "RETR" => match passive.take() {
                                Some(data) => {
                                    write.write_all(b"150 here it comes\r\n").await.unwrap();
                                    let (mut stream, _) = data.accept().await.unwrap();
                                    stream.write_all(b"hello").await.unwrap();
                                    drop(stream);
                                    "226 done\r\n".to_string()
                                }
                                None => "425 use EPSV first\r\n".to_string(),
                            },
                            _ => "200 ok\r\n".to_string(),
                        };
                        if write.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, asked)
    }

    /// A 425 to EPSV is asked again on another connection, inside the
    /// same read: the file is read, no retry of the file needed.
    #[tokio::test]
    async fn a_passive_port_refused_once_is_asked_for_again() {
        let (port, asked) = refuses_its_first_passive_port().await;
        let Ok(crate::location::Location::Remote(remote)) =
            crate::location::Location::parse(&format!("ftp://u:p@127.0.0.1:{port}/"))
        else {
            panic!("a remote location")
        };
        let options = RemoteOptions { connections: 2, retries: 0, ..RemoteOptions::default() };
        let backend = FtpBackend::open(&remote, MissingRoot::Fail, &options).await.unwrap();
        let mut reader = backend.open_read(&RelPath::parse(b"f").unwrap(), 0).await.expect("asked again");
        let mut got = Vec::new();
        loop {
            let buf = reader.read(Vec::with_capacity(64)).await.unwrap();
            if buf.is_empty() {
                break;
            }
            got.extend_from_slice(&buf);
        }
        assert_eq!(got, b"hello");
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
