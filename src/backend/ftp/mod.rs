//! FTP and FTPS (explicit `AUTH TLS` and implicit), on suppaftp over tokio
//! with rustls.
//!
//! - [`conn`]: one control connection (TLS, login, FEAT, data mode, reply
//!   classification); [`pool`]: connections reused across files.
//! - [`listing`]: pure parsers for MLSD and the LIST formats.
//! - [`names`]: byte-exact names through suppaftp's `String` commands, and
//!   `--encoding` (the server's names in a legacy character set).
//! - [`protocol`]: the wire protocol apart from any client (what replies
//!   say, PORT/EPRT, FEAT, the TLS mode, the active-mode listener), shared
//!   with `barge doctor`.
//! - [`tls`]: certificate trust and per-connection session caches.
//!
//! Paths: the URL path is absolute on the server (`ftp://host/pub/x` is
//! `/pub/x`); `ftp://host/~/x` is relative to the login's home directory.

pub mod conn;
pub mod data;
pub mod fxp;
mod iac;
pub mod listing;
mod modes;
pub(crate) mod mtime;
pub mod names;
pub mod pool;
pub mod protocol;
pub mod recursive;
mod segments;
pub mod text;
pub mod tls;
mod transfer;
mod walk;

use mtime::{MtimeCommand, time_command};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use suppaftp::Status;

use self::conn::{ConnectParams, DataMode, Features, classify};
use self::pool::Pool;
use self::protocol::TlsMode;
use super::recall::RecallReceiver;
use super::{
    Backend, Capabilities, Entry, FileReader, FileWriter, HashKind, Listing, MissingRoot, Mtime, RemoteOptions,
};
use crate::error::{ErrorKind, OpError};
use crate::location::RemoteLocation;
use crate::path::RelPath;
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
    /// The server answered SITE CHMOD as a command it does not take:
    /// permission bits are not kept there (remembered, see [`chmod_key`]).
    chmod_refused: std::sync::atomic::AtomicBool,
    chmod_remembered: std::sync::atomic::AtomicBool,
    list_times: bool,
    /// Seconds to add to LIST times (the server's clock zone), remembered
    /// in the state database and checked once a run (see
    /// [`Inner::tz_offset`]).
    tz_offset: tokio::sync::Mutex<mtime::ListZone>,
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
    /// How the server's names are barge's (`--encoding`).
    names: names::NameEncoding,
    /// How the server reads byte 0xFF in a command, once a write needs it
    /// (see [`iac`]).
    iac: tokio::sync::OnceCell<iac::Iac>,
}

/// FTP's own settings (see [`super::RemoteOptions`] for the shared ones).
#[derive(Debug, Clone, Default)]
pub struct FtpOptions {
    /// `--tls explicit`: upgrade plain `ftp://` with AUTH TLS.
    pub explicit_tls: bool,
    pub tls: tls::TlsOptions,
    /// `--active`: the server connects back for data.
    pub active: bool,
    /// `--active-ports FIRST-LAST`: the local ports active mode listens on
    /// (implies active mode).
    pub active_ports: Option<std::ops::RangeInclusive<u16>>,
    /// `--ascii GLOB`: files transferred in TYPE A, line ends converted.
    pub ascii: Vec<String>,
    /// `--pasv-address-from-reply`: no NAT workaround.
    pub pasv_address_from_reply: bool,
    /// `--list-times`: trust LIST times instead of asking MDTM per file.
    pub list_times: bool,
    /// `--encoding`: the character set of the server's names.
    pub encoding: names::NameEncoding,
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

/// The FTP servers' numbers, known before connecting.
pub const PROFILE: super::Profile =
    super::Profile { auto_ceiling: Some(AUTO_CEILING), far_start: Some(FAR_START), server_copy: true };

/// The highest level the tuner may reach without `--parallel`: FTP pays a
/// control connection (a server process, often) per transfer, so the tuner
/// climbs only while each doubling buys `engine::adapt::MIN_GAIN`. Measured
/// over a 20 ms round trip against proftpd (10,000 small files, fixed
/// levels): 64 took 15.2 s down and 21.7 s up, 128 11.0 s and 14.3 s, 256
/// 10.7 s and 13.2 s: past 128 a doubling no longer pays its logins.
pub const AUTO_CEILING: usize = 128;

/// Where a job with no history starts when the server is far, lower than
/// SFTP's (`sftp::FAR_START`): every FTP transfer is a connection and a
/// passive port of the server's, and servers' passive ranges are often
/// small. vsftpd with 100 passive ports behind a 50 ms round trip ran
/// 1,500 files at 92 files/s from 64 (ports taken, 425s retried) where it
/// climbed cleanly from 16; 32 keeps clear of that.
pub const FAR_START: usize = 32;

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

impl FtpBackend {
    pub async fn open(
        remote: &RemoteLocation,
        missing_root: MissingRoot,
        options: &RemoteOptions,
    ) -> Result<FtpBackend, OpError> {
        let tls_mode = TlsMode::of(remote.scheme, options.ftp.explicit_tls);
        let tls = match tls_mode {
            TlsMode::None => None,
            _ => Some(Arc::new(tls::base_config(&options.ftp.tls)?)),
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
            data_mode: if options.ftp.active || options.ftp.active_ports.is_some() {
                DataMode::Active { ports: options.ftp.active_ports.clone() }
            } else {
                DataMode::Passive { trust_reply_address: options.ftp.pasv_address_from_reply }
            },
            timeout: options.timeout,
            round_trips: Arc::default(),
            pipelining: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            learned: Arc::default(),
            remembered: remembered.clone(),
            // The server would turn its names into UTF-8 itself, under
            // the decoding barge does.
            opts_utf8: options.ftp.encoding.is_bytes(),
            proxy: options
                .proxy
                .proxy()
                .map_err(|why| OpError::new(ErrorKind::Connect, "proxy", &shown, why))?
                .filter(|proxy| proxy.applies_to(&remote.host)),
        };
        let ascii = FilePatterns::new(&options.ftp.ascii)
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
        let url_path =
            options.ftp.encoding.to_server(&remote.path).map_err(|why| {
                OpError::new(ErrorKind::InvalidData, "open", &shown, format!("the URL's path: {why}"))
            })?;
        let root = resolve_root(&url_path, &first.home);
        let root_text = names::decode(if root.is_empty() { b"/" } else { &root });
        first.round_trip(1);
        let asked = std::time::Instant::now();
        let root_exists = match tokio::time::timeout(params.timeout, first.control.cwd(&root_text)).await {
            Ok(cwd) => cwd.is_ok(),
            Err(_) => {
                return Err(OpError::new(ErrorKind::Temporary, "open", &root_text, "CWD: no answer from the server"));
            }
        };
        // A file where the tree should be is not a directory to make (or
        // a missing one): one SIZE tells them apart.
        if !root_exists
            && let Ok(Ok(_)) = {
                first.round_trip(1);
                tokio::time::timeout(params.timeout, first.control.size(&root_text)).await
            }
        {
            return Err(OpError::new(ErrorKind::InvalidData, "open", &shown, "not a directory (a file is there)"));
        }
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
        // A server that refused SITE CHMOD before is not asked again.
        let chmod_refused = match &options.memory {
            Some(memory) => {
                memory.0.recall(&modes::chmod_key(&shown)).await.is_some_and(|known| known.starts_with("no"))
            }
            None => false,
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
        let precision = if features.mlsd || features.mdtm && !options.ftp.list_times {
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
                    windowed_writes: false,
                    live_temporaries: false,
                    remote: true,
                    uses_recall: !root_missing,
                    segment_at_zero_truncates: true,
                    mtime_at_commit: true,
                    set_mode: !chmod_refused,
                },
                features,
                shown,
                mtime_commands: std::sync::Mutex::new(mtime_commands),
                mtime_confirmed: std::sync::atomic::AtomicBool::new(false),
                rename_refused: std::sync::atomic::AtomicBool::new(false),
                chmod_refused: std::sync::atomic::AtomicBool::new(chmod_refused),
                chmod_remembered: std::sync::atomic::AtomicBool::new(chmod_refused),
                list_times: options.ftp.list_times,
                tz_offset: tokio::sync::Mutex::default(),
                memory: options.memory.clone(),
                parallel,
                round_trip,
                retries: options.retries,
                ascii,
                segmented_write: tokio::sync::OnceCell::new(),
                iac: tokio::sync::OnceCell::new(),
                names: options.ftp.encoding,
            }),
        })
    }
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
    /// The server path of `rel`, as suppaftp wants it. Fails for a name
    /// the server's `--encoding` cannot write.
    fn remote_path(&self, rel: &RelPath) -> Result<String, OpError> {
        let mut full = self.root.clone();
        if !rel.is_root() {
            full.push(b'/');
            let on_server = self
                .names
                .to_server(rel.as_bytes())
                .map_err(|why| OpError::new(ErrorKind::InvalidData, "path", rel, why.to_string()))?;
            full.extend_from_slice(&on_server);
        }
        if full.is_empty() {
            full.push(b'/');
        }
        Ok(names::decode(&full))
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
        let remote = self.remote_path(path)?;
        let mut pooled = self.pool.get().await?;
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

    fn cannot_name(&self, name: &[u8]) -> Option<String> {
        if name.contains(&b'\r') || name.contains(&b'\n') {
            // A command is one line: the name could not be sent at all.
            return Some(format!("{} cannot hold this name: an FTP command cannot carry CR or LF", self.inner.shown));
        }
        self.inner.names.to_server(name).err().map(|why| format!("{} cannot hold this name: {why}", self.inner.shown))
    }

    async fn list_dir(&self, dir: &RelPath) -> Result<Vec<Entry>, OpError> {
        Ok(self.inner.list_dir(dir).await?.0)
    }

    /// Lists many directories at once over the pool.
    async fn walk(&self) -> Result<Listing, OpError> {
        super::stream::collected(|tx| self.walk_streamed(tx, None)).await
    }

    /// Where the last runs left records of this tree, one recursive LIST
    /// may stand for most directories' listings (see [`recursive`]).
    async fn walk_streamed(&self, tx: super::stream::WalkSender, recall: Option<RecallReceiver>) {
        if self.inner.root_missing {
            return;
        }
        let recall = match recall {
            Some(recall) => recall.await.ok().filter(|recall| !recall.is_empty()),
            None => None,
        };
        let prelisted = match &recall {
            Some(recall) => self.inner.list_recursive(recall).await,
            None => HashMap::new(),
        };
        let news = tx.clone();
        self.walk_prelisted(tx, prelisted, recall).await;
        if let Some(moved) = self.inner.take_zone_news().await {
            let _ = news.send(vec![super::stream::WalkItem::Info(moved)]).await;
        }
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

    fn text_mode(&self) -> Option<&dyn super::TextMode> {
        Some(self)
    }

    fn server_copy(&self) -> Option<&dyn super::ServerCopy> {
        Some(self)
    }

    fn segmented_writes(&self) -> Option<&dyn super::SegmentedWrite> {
        self.inner.features.rest_stream.then_some(self as &dyn super::SegmentedWrite)
    }

    async fn open_write(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileWriter>, OpError> {
        self.inner.check_iac("write", path).await?;
        self.open_writer(path, offset, false).await
    }

    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), OpError> {
        self.inner.check_iac("rename", to).await?;
        let target = self.inner.remote_path(to)?;
        let result = self
            .inner
            .with_conn("rename", from, async |conn, source| {
                conn.round_trip(2);
                conn.control.rename(source, target).await
            })
            .await;
        self.inner.note_rename(result)
    }

    async fn commit_temp(
        &self,
        temp: &RelPath,
        target: &RelPath,
        mtime: Option<Mtime>,
        mode: Option<u32>,
    ) -> Result<Option<Mtime>, OpError> {
        self.inner.check_iac("rename", target).await?;
        let to = self.inner.remote_path(target)?;
        let inner = Arc::clone(&self.inner);
        let result = self
            .inner
            .with_conn("rename", temp, async |conn, from| inner.commit_temp(conn, &from, &to, mtime, mode).await)
            .await;
        self.inner.note_chmod().await;
        self.inner.note_rename(result)
    }

    /// SITE CHMOD, where the server takes it. A server that answers it as
    /// a command it does not know or allow is not asked again, this run or
    /// the next ones.
    async fn set_mode(&self, path: &RelPath, mode: u32) -> Result<(), OpError> {
        use std::sync::atomic::Ordering::Relaxed;
        let refused = || {
            OpError::new(
                ErrorKind::Unsupported,
                "chmod",
                path,
                "the server does not take SITE CHMOD: permission bits are not kept there",
            )
        };
        if self.inner.chmod_refused.load(Relaxed) {
            return Err(refused());
        }
        let inner = Arc::clone(&self.inner);
        let result =
            self.inner.with_conn("chmod", path, async |conn, remote| inner.site_chmod(conn, mode, &remote).await).await;
        self.inner.note_chmod().await;
        match result {
            Err(_) if self.inner.chmod_refused.load(Relaxed) => Err(refused()),
            other => other,
        }
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
        self.inner.check_iac("delete", path).await?;
        self.inner
            .with_conn("delete", path, async |conn, remote| {
                conn.round_trip(1);
                conn.control.rm(remote).await
            })
            .await
    }

    async fn remove_dir(&self, path: &RelPath) -> Result<(), OpError> {
        self.inner.check_iac("rmdir", path).await?;
        self.inner
            .with_conn("rmdir", path, async |conn, remote| {
                conn.round_trip(1);
                conn.control.rmdir(remote).await
            })
            .await
    }

    async fn mkdir(&self, path: &RelPath) -> Result<(), OpError> {
        self.inner.check_iac("mkdir", path).await?;
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
        mode: Option<u32>,
    ) -> Result<Option<Mtime>, suppaftp::FtpError> {
        use std::sync::atomic::Ordering::Relaxed;
        let confirmed = self.mtime_confirmed.load(Relaxed);
        let method = self.mtime_commands.lock().ok().and_then(|m| m.first().copied());
        let mut set = None;
        let mut batch = Vec::with_capacity(4);
        let mut batched_time = None;
        let chmod = mode.filter(|_| !self.chmod_refused.load(Relaxed));
        let batched_chmod = chmod.is_some() && conn.pipelining();
        if let Some(mode) = chmod {
            match batched_chmod {
                true => batch.push(modes::chmod_command(mode, from)),
                // Bits that could not be set do not stop the commit.
                false => {
                    let _ = self.site_chmod(conn, mode, from).await;
                }
            }
        }
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
            if batched_chmod && let Err(err) = conn.control.read_response_in(&[Status::CommandOk]).await {
                // Bits that could not be set do not stop the commit.
                match err {
                    suppaftp::FtpError::UnexpectedResponse(_) => self.saw_chmod_reply(&err),
                    other => return Err(other),
                }
            }
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
}

/// The digest in a HASH reply (`213 SHA-256 0-49 <hex> name`) or an
/// X-command reply (`250 <hex>`): the first token of the right length that
/// is all hex.
pub fn parse_hash_reply(text: &str, kind: HashKind) -> Option<Vec<u8>> {
    let want = match kind {
        HashKind::Sha256 | HashKind::Blake3 => 64,
        HashKind::Sha1 => 40,
        HashKind::Md5 => 32,
    };
    let token =
        text.split_whitespace().skip(1).find(|t| t.len() == want && t.bytes().all(|b| b.is_ascii_hexdigit()))?;
    (0..want).step_by(2).map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(mtime::ftp_timestamp(Mtime::from_unix(0, 0)), "19700101000000");
        assert_eq!(mtime::ftp_timestamp(Mtime::from_unix(1_700_000_000, 999)), "20231114221320");
        assert_eq!(mtime::ftp_timestamp(Mtime::from_unix(951_782_400, 0)), "20000229000000");
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
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&asked);
        let port = fake_server(move |socket| {
            let asked = Arc::clone(&counter);
            async move {
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
            }
        })
        .await;
        (port, asked)
    }

    /// A server on a loopback port, `serve` run for each connection.
    async fn fake_server<Serve, Served>(serve: Serve) -> u16
    where
        Serve: Fn(tokio::net::TcpStream) -> Served + Send + 'static,
        Served: Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket));
            }
        });
        port
    }

    /// `ftp://u:p@127.0.0.1:PORT` + `path`.
    fn fake_location(port: u16, path: &str) -> crate::location::RemoteLocation {
        match crate::location::Location::parse(&format!("ftp://u:p@127.0.0.1:{port}{path}")) {
            Ok(crate::location::Location::Remote(remote)) => remote,
            _ => panic!("a remote location"),
        }
    }

    /// A 425 to EPSV is asked again on another connection, inside the
    /// same read: the file is read, no retry of the file needed.
    #[tokio::test]
    async fn a_passive_port_refused_once_is_asked_for_again() {
        let (port, asked) = refuses_its_first_passive_port().await;
        let remote = fake_location(port, "/");
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

    /// A server that offers UTF8 in FEAT, logs anyone in, says yes to
    /// everything else, and keeps every command line it is sent.
    async fn recording_server() -> (u16, Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = Arc::clone(&lines);
        let port = fake_server(move |socket| {
            let kept = Arc::clone(&kept);
            async move {
                let (read, mut write) = socket.into_split();
                let mut read = BufReader::new(read);
                write.write_all(b"220 fake\r\n").await.unwrap();
                let mut line = Vec::new();
                while read.read_until(b'\n', &mut line).await.is_ok_and(|n| n > 0) {
                    let command = line.trim_ascii_end().to_vec();
                    line.clear();
                    let verb = String::from_utf8_lossy(command.split(|&b| b == b' ').next().unwrap_or_default())
                        .to_ascii_uppercase();
                    kept.lock().unwrap().push(command);
                    let reply: &[u8] = match verb.as_str() {
                        "USER" => b"331 password\r\n",
                        "PASS" => b"230 in\r\n",
                        "FEAT" => b"211-Features:\r\n UTF8\r\n MLSD\r\n211 End\r\n",
                        "PWD" => b"257 \"/\" is the directory\r\n",
                        "CWD" => b"250 ok\r\n",
                        _ => b"200 ok\r\n",
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            }
        })
        .await;
        (port, lines)
    }

    /// With `--encoding` the server is not asked for UTF-8 names (it would
    /// convert them itself, under barge's decoding); the URL's path and
    /// every name are written in the encoding; a name it lacks is refused.
    #[tokio::test]
    async fn an_encoding_sends_no_opts_utf8_and_writes_names_in_it() {
        let latin1 = names::NameEncoding::parse("latin1").unwrap();
        for (encoding, utf8_asked) in [(names::NameEncoding::Bytes, true), (latin1, false)] {
            let (port, lines) = recording_server().await;
            let remote = fake_location(port, "/r%C3%A9sum%C3%A9");
            let options = RemoteOptions {
                connections: 1,
                retries: 0,
                ftp: FtpOptions { encoding, ..FtpOptions::default() },
                ..RemoteOptions::default()
            };
            let backend = FtpBackend::open(&remote, MissingRoot::Fail, &options).await.unwrap();
            let sent = lines.lock().unwrap().clone();
            assert_eq!(sent.iter().any(|l| l.eq_ignore_ascii_case(b"OPTS UTF8 ON")), utf8_asked, "{encoding}");
            let root: &[u8] = if utf8_asked { "/r\u{e9}sum\u{e9}".as_bytes() } else { b"/r\xe9sum\xe9" };
            assert!(sent.iter().any(|l| l.strip_prefix(b"CWD ") == Some(root)), "{encoding}: {sent:?}");
            let name = |text: &str| RelPath::parse(text.as_bytes()).unwrap();
            let on_server = names::encode(&backend.inner.remote_path(&name("caf\u{e9}")).unwrap());
            let expected: &[u8] =
                if utf8_asked { "/r\u{e9}sum\u{e9}/caf\u{e9}".as_bytes() } else { b"/r\xe9sum\xe9/caf\xe9" };
            assert_eq!(on_server, expected, "{encoding}");
            let refused = backend.inner.remote_path(&name("\u{65e5}\u{672c}"));
            assert_eq!(refused.is_err(), !utf8_asked, "{encoding}");
            assert_eq!(backend.cannot_name("\u{65e5}".as_bytes()).is_some(), !utf8_asked, "{encoding}");
        }
    }
}
