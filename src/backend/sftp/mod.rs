//! SFTP (version 3, as OpenSSH serves it), on russh and russh-sftp.
//!
//! - [`session`]: one SSH connection with its SFTP channel: host key
//!   check, login, server extensions, error classification.
//! - [`hostkey`]: known_hosts verdicts (known, unknown, CHANGED).
//! - [`config`]: ~/.ssh/config (Host aliases, HostName, Port, User,
//!   IdentityFile); [`auth`]: key files and passphrases; [`pool`]: sessions shared by
//!   many operations, each under russh-sftp's handle limit.
//! - [`file`]: pipelined readers and writers.
//! - `route.rs`: where and as whom a session connects (ssh_config, jump
//!   hosts, proxy, login); [`jump`]: the `--jump` chain.
//!
//! Paths: the URL path is absolute on the server (`sftp://host/srv/x` is
//! `/srv/x`); `sftp://host/~/x` is relative to the login's home directory.
//!
//! Names: SFTP names and link targets are bytes, and russh-sftp carries
//! them as `String`s. The copy vendored in src/vendor/russh-sftp decodes and
//! encodes every SFTP string with [`super::raw_names`]'s escapes, so a name
//! that is not UTF-8 arrives as a `String` that [`raw_names::encode`] turns
//! back into its exact bytes, and any bytes go out through
//! [`raw_names::decode`]: names travel byte-exact both ways, as over FTP.

pub mod auth;
pub mod config;
pub mod file;
pub mod hostkey;
pub mod jump;
pub mod pool;
mod route;
pub mod session;
mod short_ecdsa;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};

use self::file::{SftpReader, SftpWriter, close_handle, close_later, send_now};
use self::pool::Pool;
pub use self::route::connect_params;
use self::session::{classify, classify_session};
use super::owners::{IdKind, LearnedNames, Ownership};
use super::{
    Backend, Capabilities, Entry, EntryKind, FileReader, FileWriter, Listing, MissingRoot, Mtime, RemoteOptions,
    raw_names,
};
use crate::error::{ErrorKind, OpError};
use crate::location::RemoteLocation;
use crate::path::RelPath;

/// The SFTP servers' numbers, known before connecting.
pub const PROFILE: super::Profile =
    super::Profile { auto_ceiling: Some(AUTO_CEILING), far_start: Some(FAR_START), server_copy: false };

/// The highest level the tuner may reach without `--parallel`: SFTP
/// transfers share sessions (multiplexed requests), cheap to the server,
/// and over a long round trip worth many (see [`FAR_START`]). 8 sessions
/// of 128 handles each hold 512 with room to spare.
pub const AUTO_CEILING: usize = 512;

/// Where a job with no history starts when the server is far (its round
/// trip at least [`super::FAR`]): there every file is a few round trips of
/// waiting, so more transfers pay almost linearly, and the doublings from
/// the engine's default start of 16 (a window and a settling time each)
/// were most of the run. Measured over a 20 ms round trip, 10,000 small
/// files from OpenSSH: 348 files/s at 16, 680 at 32, 1,338 at 64; from 16
/// the download took 7.7 s, half of it climbing, from 64 5.3 s. Later,
/// with [`AUTO_CEILING`] at 512, an upload from 64 climbed 732 files/s at
/// 64, 1,342 at 128, 2,285 at 256, 2,712 at 512: from 128 (same run,
/// medians of 3) uploads took 4.89 s against 8.35 and downloads 3.42 s
/// against 5.13 with the old start and ceiling (64, 128).
pub const FAR_START: usize = 128;

/// Directories listed at once by `walk` (at least; `--parallel` if more, up to twice this).
/// Measured over a 20 ms round trip: 1 at a time 18.9 s for 221 dirs, 16 1.3 s.
const WALK_IN_FLIGHT: usize = 16;

/// READDIR requests sent together while listing a directory (see
/// `Inner::list_dir`).
const READDIR_AHEAD: usize = 2;

/// Concurrent operations per extra session: `--parallel 8` uses 2 sessions.
const OPERATIONS_PER_SESSION: usize = 4;
const MAX_SESSIONS: usize = 8;

struct Inner {
    pool: Arc<Pool>,
    /// Absolute root path on the server, without a trailing `/` (empty
    /// for `/`), as russh-sftp takes it (bytes escaped by [`raw_names`]).
    root: String,
    root_missing: bool,
    /// The root as the server resolves it (realpath), its bytes without a
    /// trailing `/`, `None` when missing: a directory written into must
    /// resolve to exactly this plus its relative path, or a link stands on
    /// the way.
    real_root: Option<Vec<u8>>,
    /// `real_root`, or for a root not made yet its nearest existing
    /// ancestor's realpath with the rest appended (see
    /// [`Backend::resolved_root`]).
    resolved_root: Option<Vec<u8>>,
    /// Directories whose realpath was checked (one round trip each per run).
    checked_dirs: std::sync::Mutex<std::collections::HashSet<RelPath>>,
    /// `--links follow`: each followed link mapped to the link-free path
    /// it resolves to (see [`super::through_followed`]), where reads go.
    followed: std::sync::RwLock<std::collections::HashMap<RelPath, RelPath>>,
    caps: Capabilities,
    shown: String,
    /// How the tree is listed: directories at once, `--retries`, patience
    /// with a silent server (see [`super::stream::Pace`]).
    walk_pace: super::stream::Pace,
    /// The root's LSTAT at open, timed: see [`Backend::round_trip_time`].
    round_trip: Duration,
    /// User and group names its listings showed (`--owner`).
    names: LearnedNames,
}

pub struct SftpBackend {
    inner: Arc<Inner>,
}

/// SFTP's own settings (see [`super::RemoteOptions`] for the shared ones).
#[derive(Debug, Clone, Default)]
pub struct SftpOptions {
    /// `--identity FILE`: the SSH key to log in with (else ~/.ssh/id_*).
    pub identity: Option<PathBuf>,
    /// `--known-hosts FILE`: where SSH host keys are checked (else ~/.ssh/known_hosts).
    pub known_hosts: Option<PathBuf>,
    /// `--ssh-config FILE`: OpenSSH client config for sftp:// hosts (else ~/.ssh/config; `none`: no file).
    pub ssh_config: Option<PathBuf>,
    /// `--accept-new-host-key`: record an unknown host's key instead of refusing.
    pub accept_new_host_key: bool,
    /// `--passphrase-env VAR`: the passphrase of encrypted SSH keys.
    pub passphrase_env: Option<String>,
    /// `--jump HOST,...`: jump hosts, first connected first, instead of
    /// the ssh config's `ProxyJump` (`Some` of none: no jump at all).
    pub jump: Option<Vec<jump::JumpHost>>,
}

impl SftpBackend {
    pub async fn open(
        remote: &RemoteLocation,
        missing_root: MissingRoot,
        options: &RemoteOptions,
    ) -> Result<SftpBackend, OpError> {
        let (remote, params) = connect_params(remote, options).await?;
        let remote = &remote;
        let shown = remote.to_string();
        let with_location = |mut e: OpError| {
            e.path = shown.clone();
            e
        };
        let first = session::connect(&params).await.map_err(with_location)?;
        let root = resolve_root(&remote.path, &first.sftp, &shown).await?;
        let asked = std::time::Instant::now();
        // The root itself may be a link to a directory (as a local root
        // may); links below it are never followed (see `real_root`).
        let root_stat = first.sftp.stat(root_text(&root)).await;
        let round_trip = asked.elapsed();
        let root_missing = match root_stat {
            Ok(attrs) if kind_of(&attrs.attrs) == Some(EntryKind::Dir) => false,
            Ok(_) => return Err(OpError::new(ErrorKind::InvalidData, "open", &shown, "not a directory")),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => match missing_root {
                MissingRoot::Empty => true,
                MissingRoot::Fail | MissingRoot::CreateLater => {
                    return Err(OpError::new(ErrorKind::NotFound, "open", &shown, "the directory does not exist"));
                }
                MissingRoot::Create => {
                    make_dirs(&first.sftp, &root).await.map_err(with_location)?;
                    false
                }
            },
            Err(err) => return Err(classify(err, "open", &shown)),
        };
        let real_root = if root_missing {
            None
        } else {
            let resolved = first.sftp.realpath(root_text(&root)).await.map_err(|e| classify(e, "open", &shown))?;
            resolved.files.into_iter().next().map(|f| without_trailing_slashes(raw_names::encode(&f.filename)))
        };
        let resolved_root = match &real_root {
            Some(real) => Some(real.clone()),
            None => resolve_missing(&first.sftp, &root).await,
        };
        let connections = options.connections.max(1);
        let max_sessions = connections.div_ceil(OPERATIONS_PER_SESSION).clamp(1, MAX_SESSIONS);
        let pool = Pool::new(params, first, max_sessions, pool::Budgets::for_round_trip(round_trip));
        let caps = Capabilities {
            mtime_precision: Duration::from_secs(1),
            set_mtime: true,
            set_dir_mtime: true,
            atomic_rename: pool.info().posix_rename,
            hashes: Vec::new(),
            symlinks: true,
            max_connections: connections,
            // Writes are pipelined up to AHEAD_BYTES and may land out of
            // order: a killed upload can have holes in that last stretch.
            resume_margin: file::AHEAD_BYTES as u64,
            windowed_writes: true,
            live_temporaries: false,
            remote: true,
            uses_recall: false,
            segment_at_zero_truncates: false,
            mtime_at_commit: false,
            set_mode: true,
        };
        Ok(SftpBackend {
            inner: Arc::new(Inner {
                pool,
                root,
                root_missing,
                real_root,
                resolved_root,
                checked_dirs: Default::default(),
                followed: Default::default(),
                caps,
                shown,
                walk_pace: super::stream::Pace::new(
                    connections.clamp(WALK_IN_FLIGHT, 2 * WALK_IN_FLIGHT),
                    options.retries,
                    options.timeout,
                ),
                round_trip,
                names: LearnedNames::default(),
            }),
        })
    }
}

/// `/` for the empty root.
fn root_text(root: &str) -> &str {
    if root.is_empty() { "/" } else { root }
}

/// The realpath of `root`'s nearest existing ancestor with the missing
/// components appended; `None` when no ancestor resolves.
async fn resolve_missing(sftp: &RawSftpSession, root: &str) -> Option<Vec<u8>> {
    let mut existing = root.trim_end_matches('/');
    let mut rest = Vec::new();
    while let Some((parent, name)) = existing.rsplit_once('/') {
        rest.push(name);
        existing = if parent.is_empty() { "/" } else { parent };
        if let Ok(found) = sftp.realpath(existing).await {
            let mut path = without_trailing_slashes(raw_names::encode(&found.files.into_iter().next()?.filename));
            for name in rest.iter().rev() {
                path.push(b'/');
                path.extend_from_slice(&raw_names::encode(name));
            }
            return Some(path);
        }
        if existing == "/" {
            break;
        }
    }
    None
}

fn without_trailing_slashes(mut path: Vec<u8>) -> Vec<u8> {
    while path.last() == Some(&b'/') {
        path.pop();
    }
    path
}

/// The absolute root: the URL path, or below the home directory for `/~`.
/// Any bytes but NUL: the server reads paths as C strings and would cut the
/// path at the first one, a different directory than the one named.
async fn resolve_root(url_path: &[u8], sftp: &RawSftpSession, shown: &str) -> Result<String, OpError> {
    if url_path.contains(&0) {
        return Err(OpError::new(ErrorKind::InvalidData, "open", shown, "the path holds a NUL byte"));
    }
    let path = raw_names::decode(url_path);
    let mut root = match path.strip_prefix("/~") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let home = sftp.realpath(".").await.map_err(|e| classify(e, "open", shown))?;
            let home = home.files.into_iter().next().map(|f| f.filename).unwrap_or_default();
            format!("{}{rest}", home.trim_end_matches('/'))
        }
        _ => path,
    };
    while root.ends_with('/') {
        root.pop();
    }
    if !root.is_empty() && !root.starts_with('/') {
        root.insert(0, '/');
    }
    Ok(root)
}

/// Creates every missing directory of an absolute path.
async fn make_dirs(sftp: &RawSftpSession, path: &str) -> Result<(), OpError> {
    let mut current = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        current.push('/');
        current.push_str(part);
        if sftp.stat(current.as_str()).await.is_err() {
            sftp.mkdir(current.as_str(), FileAttributes::empty())
                .await
                .map_err(|e| classify(e, "mkdir", crate::path::Shortened(&raw_names::encode(&current))))?;
        }
    }
    Ok(())
}

/// File, directory or link, from the mode bits.
fn kind_of(attrs: &FileAttributes) -> Option<EntryKind> {
    match attrs.permissions? & 0o170_000 {
        0o040_000 => Some(EntryKind::Dir),
        0o100_000 => Some(EntryKind::File),
        0o120_000 => Some(EntryKind::Symlink),
        _ => None,
    }
}

fn entry(path: RelPath, attrs: &FileAttributes) -> Result<Entry, String> {
    let kind = kind_of(attrs).ok_or_else(|| format!("{path}: skipped: not a file or directory"))?;
    let size = match kind {
        EntryKind::Dir => 0,
        _ => attrs.size.unwrap_or(0),
    };
    Ok(Entry {
        path,
        kind,
        size,
        mtime: attrs.mtime.map(|s| Mtime::from_unix(i64::from(s), 0)),
        inode: 0,
        coarse_mtime_s: 0,
        hash: None,
        link_target: None,
        mode: attrs.permissions.filter(|_| kind != EntryKind::Symlink).map(|p| p & 0o7777),
        owner: attrs.uid.zip(attrs.gid).map(|(uid, gid)| super::Owner { uid, gid }),
    })
}

/// A directory listing larger than this is refused, counted as
/// [`listing_cost`] counts: a server that answers READDIR with new names
/// forever must not exhaust memory (the FTP backend's limit too).
const MAX_LISTING_BYTES: usize = 256 << 20;

/// What one listed name costs besides its two strings (its attributes and
/// the [`Entry`] made of it): with short names, about two million fit.
const ENTRY_COST: usize = 128;

/// What a READDIR answer without names costs: the protocol wants one or
/// more, and a server answering with none, forever, must be cut too.
const EMPTY_BATCH_COST: usize = 64 * 1024;

/// The memory one READDIR answer of `dir` takes, about: each name becomes
/// an entry holding its whole path, so a deep directory's names cost more.
fn listing_cost(dir: &RelPath, files: &[russh_sftp::protocol::File]) -> usize {
    if files.is_empty() {
        return EMPTY_BATCH_COST;
    }
    let path = dir.as_bytes().len() + 1;
    files.iter().map(|f| path + f.filename.len() + f.longname.len() + ENTRY_COST).sum()
}

/// The path of a name listed in `dir` (as russh-sftp decoded it): `None`
/// for `.` and `..`; a warning for a name that cannot be used. Names are
/// shown escaped in warnings, so a hostile one cannot forge a log line or
/// drive the terminal.
fn listed_path(dir: &RelPath, name: &str) -> Result<Option<RelPath>, String> {
    let name = raw_names::encode(name);
    if name == b"." || name == b".." {
        return Ok(None);
    }
    dir.join(&name).map(Some).map_err(|why| format!("{dir}: skipped entry {}: {why}", crate::path::Shortened(&name)))
}

/// One directory's entries and warnings, as [`super::walk_concurrently`] takes them.
type Listed = Result<(Vec<Entry>, Vec<String>), OpError>;

fn unix_now_u32() -> u32 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u32::try_from(now.as_secs()).unwrap_or(u32::MAX)
}

/// SFTP strings: `u32` length, then the bytes `s` stands for (see
/// [`raw_names`]), as russh-sftp writes its own.
fn put_string(out: &mut Vec<u8>, s: &str) {
    let bytes = raw_names::encode(s);
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&bytes);
}

impl Inner {
    /// The server path of `rel`, as russh-sftp sends it byte-exact (see
    /// the module doc).
    fn remote_path(&self, rel: &RelPath) -> String {
        if rel.is_root() {
            return root_text(&self.root).to_string();
        }
        format!("{}/{}", self.root, raw_names::decode(rel.as_bytes()))
    }

    /// Runs requests on a shared session; a transport failure takes the
    /// session out of the pool.
    async fn with_sftp<T>(
        &self,
        op: &'static str,
        path: &RelPath,
        work: impl AsyncFnOnce(&RawSftpSession, String) -> Result<T, SftpError>,
    ) -> Result<T, OpError> {
        let remote = self.remote_path(path);
        let lease = self.pool.get().await?;
        // One request awaited (the rare fallbacks that send a second one,
        // rename without posix-rename, mkdir of an existing name, are
        // counted as one).
        lease.round_trip(1);
        match work(lease.sftp(), remote).await {
            Ok(value) => Ok(value),
            Err(err) => Err(lease.failed(err, op, path)),
        }
    }

    /// Opens `path` for reading from `offset`; `size`, the listing's,
    /// lets the reader ask for the whole file at once.
    async fn open_read(&self, path: &RelPath, offset: u64, size: Option<u64>) -> Result<Box<dyn FileReader>, OpError> {
        self.open_reader(path, false, |lease, handle, chunk| {
            SftpReader::new(lease, handle, path.clone(), offset, chunk, size)
        })
        .await
    }

    /// Opens `path` for reading and makes its reader with `make`; `alone`:
    /// on a session of its own (see [`pool::Pool::get_handle_alone`]).
    async fn open_reader(
        &self,
        path: &RelPath,
        alone: bool,
        make: impl FnOnce(pool::HandleLease, String, u32) -> SftpReader,
    ) -> Result<Box<dyn FileReader>, OpError> {
        let remote = self.remote_path(&self.through_followed(path));
        let lease = if alone { self.pool.get_handle_alone().await? } else { self.pool.get_handle().await? };
        lease.lease.round_trip(1);
        let opened = lease.lease.sftp().open(remote, OpenFlags::READ, FileAttributes::empty()).await;
        match opened {
            Ok(handle) => {
                let chunk = self.pool.info().read_len;
                Ok(Box::new(make(lease, handle.handle, chunk)))
            }
            Err(err) => Err(lease.lease.failed(err, "read", path)),
        }
    }

    /// One directory's entries (sorted) and warnings about skipped names.
    async fn list_dir(&self, dir: &RelPath) -> Result<(Vec<Entry>, Vec<String>), OpError> {
        let remote = self.remote_path(dir);
        let lease = self.pool.get_handle().await?;
        let sftp = Arc::clone(lease.lease.sftp());
        lease.lease.round_trip(1);
        let handle = match sftp.opendir(remote).await {
            Ok(h) => h.handle,
            Err(err) => {
                return Err(lease.lease.failed(err, "list", dir));
            }
        };
        let mut files = Vec::new();
        let mut budget = MAX_LISTING_BYTES;
        let mut broken = false;
        // READDIRs go out two at a time: OpenSSH answers at most 100 names
        // each, so a directory of up to 100 entries and its end (EOF) are
        // one round trip, not two; one asked past the end answers EOF again.
        let read = 'read: loop {
            lease.lease.round_trip(1);
            let replies = [(); READDIR_AHEAD].map(|()| {
                let (sftp, handle) = (Arc::clone(&sftp), handle.clone());
                send_now(async move { sftp.readdir(handle).await })
            });
            for reply in replies {
                match reply.await {
                    Ok(name) => {
                        let Some(left) = budget.checked_sub(listing_cost(dir, &name.files)) else {
                            break 'read Err(OpError::new(
                                ErrorKind::InvalidData,
                                "list",
                                dir,
                                format!(
                                    "listing larger than {} MiB: refused (the server does not end it)",
                                    MAX_LISTING_BYTES >> 20
                                ),
                            ));
                        };
                        budget = left;
                        files.extend(name.files);
                    }
                    Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break 'read Ok(()),
                    Err(err) => {
                        let (err, cut) = classify_session(err, "list", dir);
                        broken = cut;
                        break 'read Err(err);
                    }
                }
            }
        };
        let closed = if broken {
            // A stalled or cut session: no close to wait for, no new work on it.
            let mut lease = lease;
            lease.lease.mark_broken();
            lease.leak_slot();
            Ok(())
        } else if read.is_ok() {
            // The listing is complete: the close is not waited for (its
            // slot is freed when the server confirms it).
            close_later(lease, handle, Vec::new());
            Ok(())
        } else {
            lease.lease.round_trip(1);
            close_handle(lease, handle).await.map_err(|e| classify(e, "list", dir))
        };
        read.and(closed)?;
        let mut entries = Vec::with_capacity(files.len());
        let mut warnings = Vec::new();
        for file in files {
            if let (Some(uid), Some(gid)) = (file.attrs.uid, file.attrs.gid) {
                self.names.learn(file.longname.as_bytes(), uid, gid);
            }
            let path = match listed_path(dir, &file.filename) {
                Ok(Some(path)) => path,
                Ok(None) => continue,
                Err(warning) => {
                    warnings.push(warning);
                    continue;
                }
            };
            match entry(path, &file.attrs) {
                Ok(entry) => entries.push(entry),
                Err(warning) => warnings.push(warning),
            }
        }
        for link in entries.iter_mut().filter(|e| e.is_symlink()) {
            // Unknown when unreadable: the planner then skips it.
            link.link_target = self.read_link(&link.path).await.ok().map(Vec::into_boxed_slice);
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((entries, warnings))
    }

    fn through_followed(&self, path: &RelPath) -> RelPath {
        super::through_followed(&self.followed.read().unwrap_or_else(|p| p.into_inner()), path)
    }

    /// `--links follow`: one directory, listed at its link-free place, its
    /// links replaced by what they resolve to (realpath, then stat) when
    /// that is inside the root; the others stay links, with a notice.
    async fn list_following(&self, dir: &RelPath, notices: &std::sync::Mutex<Vec<String>>) -> Listed {
        let real_dir = self.through_followed(dir);
        let (listed, warnings) = self.list_dir(&real_dir).await?;
        let real_root = self.real_root.clone().unwrap_or_default();
        let mut entries = Vec::with_capacity(listed.len());
        for mut entry in listed {
            let name = entry.path.file_name().to_vec();
            // Names were checked when listed: joining them cannot fail.
            entry.path = dir.join(&name).unwrap_or_default();
            if entry.is_symlink() {
                let real_link = real_dir.join(&name).unwrap_or_default();
                match self.resolve_link(&real_link, &real_root, dir).await {
                    Ok((inside, target)) => {
                        self.followed.write().unwrap_or_else(|p| p.into_inner()).insert(entry.path.clone(), inside);
                        entry = target;
                        entry.path = dir.join(&name).unwrap_or_default();
                    }
                    Err(why) => notices
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("{}: symbolic link not followed: {why}", entry.path)),
                }
            }
            entries.push(entry);
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((entries, warnings))
    }

    /// Where the link at `real` (link-free parent) leads, when it may be
    /// followed: its path below the root and the target's attributes.
    async fn resolve_link(
        &self,
        real: &RelPath,
        real_root: &[u8],
        listed_dir: &RelPath,
    ) -> Result<(RelPath, Entry), String> {
        let resolved = self
            .with_sftp("realpath", real, async |sftp, remote| sftp.realpath(remote).await)
            .await
            .map_err(|e| format!("its target cannot be resolved (dangling or a loop): {}", e.message))?;
        let resolved = resolved.files.into_iter().next().map(|f| raw_names::encode(&f.filename)).unwrap_or_default();
        let inside = match resolved.strip_prefix(real_root) {
            Some(b"") => Some(RelPath::root()),
            Some(rest) if rest.starts_with(b"/") => RelPath::parse(rest).ok(),
            _ => None,
        }
        .ok_or("it points outside the source root")?;
        let attrs = self
            .with_sftp("stat", &inside, async |sftp, remote| sftp.stat(remote).await)
            .await
            .map_err(|e| format!("its target cannot be read: {}", e.message))?
            .attrs;
        match kind_of(&attrs) {
            Some(EntryKind::File) => {}
            Some(EntryKind::Dir) => {
                // A loop: the target is where the listing already passes
                // (the link's own directory, or one above it, as resolved).
                let mut prefix = listed_dir.clone();
                loop {
                    if self.through_followed(&prefix).starts_with(&inside) {
                        return Err("it leads back to a directory above it (a loop)".into());
                    }
                    if prefix.is_root() {
                        break;
                    }
                    prefix = prefix.parent();
                }
            }
            _ => return Err("it points to something that is neither a file nor a directory".into()),
        }
        let target = entry(inside.clone(), &attrs)?;
        Ok((inside, target))
    }

    async fn read_link(&self, path: &RelPath) -> Result<Vec<u8>, OpError> {
        let name = self.with_sftp("read link", path, async |sftp, remote| sftp.readlink(remote).await).await?;
        let target = name.files.into_iter().next().map(|f| raw_names::encode(&f.filename)).unwrap_or_default();
        if target.is_empty() {
            return Err(OpError::new(ErrorKind::InvalidData, "read link", path, "the server sent an empty target"));
        }
        Ok(target)
    }

    /// Best effort against writing through a link on the server: the
    /// directory `path` lies in must resolve (realpath) to exactly the root
    /// plus its relative path. Checked once per directory per run; a link
    /// swapped in after the check is not seen (SFTP v3 has no openat).
    async fn check_parent(&self, op: &'static str, path: &RelPath) -> Result<(), OpError> {
        let parent = path.parent();
        let Some(real_root) = &self.real_root else { return Ok(()) };
        if parent.is_root() || self.checked_dirs.lock().unwrap_or_else(|p| p.into_inner()).contains(&parent) {
            return Ok(());
        }
        let resolved = self.with_sftp(op, &parent, async |sftp, remote| sftp.realpath(remote).await).await?;
        let resolved = resolved.files.into_iter().next().map(|f| raw_names::encode(&f.filename)).unwrap_or_default();
        let expected = [real_root, &b"/"[..], parent.as_bytes()].concat();
        if resolved != expected {
            return Err(OpError::new(
                ErrorKind::InvalidData,
                op,
                path,
                "a symbolic link stands on the way; barge never writes through one",
            ));
        }
        self.checked_dirs.lock().unwrap_or_else(|p| p.into_inner()).insert(parent);
        Ok(())
    }
}

#[async_trait]
impl Backend for SftpBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    fn resolved_root(&self) -> Option<Vec<u8>> {
        self.inner.resolved_root.clone()
    }

    fn ownership(&self) -> Option<&dyn Ownership> {
        Some(self)
    }

    fn segmented_writes(&self) -> Option<&dyn super::SegmentedWrite> {
        Some(self)
    }

    fn describe(&self) -> String {
        self.inner.shown.clone()
    }

    fn round_trips(&self) -> u64 {
        self.inner.pool.round_trips()
    }

    fn round_trip_time(&self) -> Option<Duration> {
        Some(self.inner.round_trip)
    }

    async fn list_dir(&self, dir: &RelPath) -> Result<Vec<Entry>, OpError> {
        Ok(self.inner.list_dir(dir).await?.0)
    }

    /// Lists many directories at once over the pool's sessions.
    async fn walk(&self) -> Result<Listing, OpError> {
        super::stream::collected(|tx| self.walk_streamed(tx, None)).await
    }

    async fn walk_streamed(&self, tx: super::stream::WalkSender, _recall: Option<super::recall::RecallReceiver>) {
        if self.inner.root_missing {
            return;
        }
        super::stream::walk_streamed(
            self.inner.walk_pace,
            |dir| {
                let inner = Arc::clone(&self.inner);
                async move { inner.list_dir(&dir).await }
            },
            tx,
        )
        .await
    }

    /// Links resolved by the server (realpath), followed only inside the
    /// root; loops are caught by resolved path (see `resolve_link`).
    async fn walk_following_links(&self) -> Result<Listing, OpError> {
        if self.inner.root_missing {
            return Ok(Listing::default());
        }
        let notices = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut listing = super::walk_concurrently(self.inner.walk_pace, |dir| {
            let (inner, notices) = (Arc::clone(&self.inner), Arc::clone(&notices));
            async move { inner.list_following(&dir, &notices).await }
        })
        .await?;
        listing.notices = std::mem::take(&mut *notices.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(listing)
    }

    async fn stat(&self, path: &RelPath) -> Result<Option<Entry>, OpError> {
        let found = self.inner.with_sftp("stat", path, async |sftp, remote| sftp.lstat(remote).await).await;
        match found {
            Ok(attrs) => entry(path.clone(), &attrs.attrs)
                .map(Some)
                .map_err(|why| OpError::new(ErrorKind::InvalidData, "stat", path, why)),
            Err(err) if err.kind == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn open_read(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileReader>, OpError> {
        self.inner.open_read(path, offset, None).await
    }

    /// All of the file and its end asked for in one flight: see [`SftpReader::new`].
    async fn open_read_sized(&self, path: &RelPath, offset: u64, size: u64) -> Result<Box<dyn FileReader>, OpError> {
        self.inner.open_read(path, offset, Some(size)).await
    }

    /// Requests for the range only, none past its end: see [`SftpReader::range`].
    async fn open_read_range(&self, path: &RelPath, offset: u64, len: u64) -> Result<Box<dyn FileReader>, OpError> {
        let stop = offset.saturating_add(len);
        self.inner
            .open_reader(path, true, |lease, handle, chunk| {
                SftpReader::range(lease, handle, path.clone(), offset, chunk, stop)
            })
            .await
    }

    async fn open_write(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileWriter>, OpError> {
        self.inner.check_parent("write", path).await?;
        let remote = self.inner.remote_path(path);
        let lease = self.inner.pool.get_handle().await?;
        let sftp = Arc::clone(lease.lease.sftp());
        let flags = if offset == 0 {
            OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE
        } else {
            OpenFlags::WRITE | OpenFlags::CREATE
        };
        lease.lease.round_trip(1);
        let handle = match sftp.open(remote, flags, FileAttributes::empty()).await {
            Ok(handle) => handle.handle,
            Err(err) => {
                return Err(lease.lease.failed(err, "write", path));
            }
        };
        if offset > 0 {
            // Resuming: cut whatever lies past the resume point.
            let attrs = FileAttributes { size: Some(offset), ..FileAttributes::empty() };
            lease.lease.round_trip(1);
            if let Err(err) = sftp.fsetstat(handle.as_str(), attrs).await {
                let _ = close_handle(lease, handle).await;
                return Err(classify(err, "write", path));
            }
        }
        let info = self.inner.pool.info();
        Ok(Box::new(SftpWriter::new(lease, handle, path.clone(), offset, info.write_len, info.fsync)))
    }

    /// `posix-rename@openssh.com` replaces the target atomically; without
    /// it, SFTP v3 rename refuses an existing target, which is then removed
    /// first (a moment without the file, never a partial one).
    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), OpError> {
        self.inner.check_parent("rename", from).await?;
        self.inner.check_parent("rename", to).await?;
        let target = self.inner.remote_path(to);
        let posix = self.inner.pool.info().posix_rename;
        self.inner
            .with_sftp("rename", from, async |sftp, source| {
                if posix {
                    let mut data = Vec::with_capacity(source.len() + target.len() + 8);
                    put_string(&mut data, &source);
                    put_string(&mut data, &target);
                    return match sftp.extended("posix-rename@openssh.com", data).await? {
                        Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
                        Packet::Status(s) => Err(SftpError::Status(s)),
                        _ => Err(SftpError::UnexpectedPacket),
                    };
                }
                match sftp.rename(source.as_str(), target.as_str()).await {
                    Ok(_) => Ok(()),
                    Err(err) => match sftp.lstat(target.as_str()).await {
                        Ok(attrs) if kind_of(&attrs.attrs) != Some(EntryKind::Dir) => {
                            sftp.remove(target.as_str()).await?;
                            sftp.rename(source, target).await.map(|_| ())
                        }
                        _ => Err(err),
                    },
                }
            })
            .await
    }

    /// Removes a file or a link (the link itself: SFTP remove never follows).
    async fn remove_file(&self, path: &RelPath) -> Result<(), OpError> {
        self.inner.check_parent("delete", path).await?;
        self.inner.with_sftp("delete", path, async |sftp, remote| sftp.remove(remote).await.map(|_| ())).await
    }

    async fn remove_dir(&self, path: &RelPath) -> Result<(), OpError> {
        self.inner.check_parent("rmdir", path).await?;
        self.inner.with_sftp("rmdir", path, async |sftp, remote| sftp.rmdir(remote).await.map(|_| ())).await
    }

    async fn mkdir(&self, path: &RelPath) -> Result<(), OpError> {
        self.inner.check_parent("mkdir", path).await?;
        self.inner
            .with_sftp("mkdir", path, async |sftp, remote| {
                match sftp.mkdir(remote.as_str(), FileAttributes::empty()).await {
                    Ok(_) => Ok(()),
                    // Already there as a directory is fine; a link to one is not.
                    Err(err) => match sftp.lstat(remote).await {
                        Ok(attrs) if kind_of(&attrs.attrs) == Some(EntryKind::Dir) => Ok(()),
                        _ => Err(err),
                    },
                }
            })
            .await
    }

    async fn set_mtime(&self, path: &RelPath, mtime: Mtime) -> Result<(), OpError> {
        let secs = u32::try_from(mtime.secs()).map_err(|_| {
            OpError::new(ErrorKind::Unsupported, "set mtime", path, "SFTP v3 times run from 1970 to 2106 only")
        })?;
        let attrs = FileAttributes { atime: Some(unix_now_u32()), mtime: Some(secs), ..FileAttributes::empty() };
        self.inner.check_parent("set mtime", path).await?;
        self.inner
            .with_sftp("set mtime", path, async |sftp, remote| sftp.setstat(remote, attrs).await.map(|_| ()))
            .await
    }

    async fn set_mode(&self, path: &RelPath, mode: u32) -> Result<(), OpError> {
        let attrs = FileAttributes { permissions: Some(mode), ..FileAttributes::empty() };
        self.inner.check_parent("chmod", path).await?;
        self.inner.with_sftp("chmod", path, async |sftp, remote| sftp.setstat(remote, attrs).await.map(|_| ())).await
    }

    async fn read_link(&self, path: &RelPath) -> Result<Vec<u8>, OpError> {
        self.inner.read_link(path).await
    }

    /// OpenSSH takes SSH_FXP_SYMLINK's two paths in the reverse of the
    /// draft's order (target first, then the new link: its PROTOCOL file,
    /// section 4.1), and russh-sftp sends them in the draft's order: so the
    /// target goes in russh-sftp's `path` argument and the link in `target`.
    async fn make_symlink(&self, path: &RelPath, target: &[u8]) -> Result<(), OpError> {
        let target = raw_names::decode(target);
        self.inner.check_parent("symlink", path).await?;
        self.inner.with_sftp("symlink", path, async |sftp, link| sftp.symlink(target, link).await.map(|_| ())).await
    }
}

#[async_trait]
impl Ownership for SftpBackend {
    /// SETSTAT takes both ids or none, and follows a link: the entry is
    /// looked at first, its own ids fill in one not given, and a link there
    /// is refused.
    async fn set_owner(&self, path: &RelPath, uid: Option<u32>, gid: Option<u32>) -> Result<(), OpError> {
        self.inner.check_parent("chown", path).await?;
        self.inner
            .with_sftp("chown", path, async move |sftp, remote| {
                let have = sftp.lstat(remote.clone()).await?.attrs;
                if kind_of(&have) == Some(EntryKind::Symlink) {
                    return Ok(Err("a symbolic link is there now"));
                }
                let (Some(uid), Some(gid)) = (uid.or(have.uid), gid.or(have.gid)) else {
                    return Ok(Err("the server does not show its owners"));
                };
                let attrs = FileAttributes { uid: Some(uid), gid: Some(gid), ..FileAttributes::empty() };
                sftp.setstat(remote, attrs).await.map(|_| Ok(()))
            })
            .await?
            .map_err(|why| OpError::new(ErrorKind::Other, "chown", path, why))
    }

    fn name_of(&self, kind: IdKind, id: u32) -> Option<Vec<u8>> {
        self.inner.names.name_of(kind, id)
    }

    /// Version 3 of the protocol has no names to look up.
    fn id_of(&self, _: IdKind, _: &[u8]) -> Option<u32> {
        None
    }
}

#[async_trait]
impl super::SegmentedWrite for SftpBackend {
    /// Open (created, truncated), the size set on the handle, closed.
    async fn create_sized(&self, path: &RelPath, size: u64) -> Result<(), OpError> {
        self.inner.check_parent("write", path).await?;
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        self.inner
            .with_sftp("create", path, async move |sftp, remote| {
                let handle = sftp.open(remote, flags, FileAttributes::empty()).await?.handle;
                let attrs = FileAttributes { size: Some(size), ..FileAttributes::empty() };
                let sized = sftp.fsetstat(handle.as_str(), attrs).await.map(|_| ());
                let closed = sftp.close(handle).await.map(|_| ());
                sized.and(closed)
            })
            .await
    }

    /// A handle of its own per segment, on a session of its own where the
    /// pool has room (a window of its own), opened without truncating: the
    /// writes carry their offsets, so segments never disturb each other.
    async fn open_write_segment(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileWriter>, OpError> {
        let remote = self.inner.remote_path(path);
        let lease = self.inner.pool.get_handle_alone().await?;
        let sftp = Arc::clone(lease.lease.sftp());
        lease.lease.round_trip(1);
        let handle = match sftp.open(remote, OpenFlags::WRITE, FileAttributes::empty()).await {
            Ok(handle) => handle.handle,
            Err(err) => {
                return Err(lease.lease.failed(err, "write", path));
            }
        };
        let info = self.inner.pool.info();
        Ok(Box::new(SftpWriter::new(lease, handle, path.clone(), offset, info.write_len, info.fsync)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_bits_give_the_kind() {
        let with = |mode: u32| FileAttributes { permissions: Some(mode), ..FileAttributes::empty() };
        assert_eq!(kind_of(&with(0o040_755)), Some(EntryKind::Dir));
        assert_eq!(kind_of(&with(0o100_644)), Some(EntryKind::File));
        assert_eq!(kind_of(&with(0o120_777)), Some(EntryKind::Symlink));
        assert_eq!(kind_of(&with(0o140_777)), None, "socket");
        assert_eq!(kind_of(&FileAttributes::empty()), None);
    }

    #[test]
    fn listed_names_are_checked_and_shown_escaped() {
        let dir = RelPath::parse(b"d").unwrap();
        assert_eq!(listed_path(&dir, "a.txt").unwrap().unwrap().as_bytes(), b"d/a.txt");
        assert_eq!(listed_path(&dir, "lf\nname").unwrap().unwrap().as_bytes(), b"d/lf\nname");
        assert_eq!(listed_path(&dir, "..").unwrap(), None);
        assert_eq!(listed_path(&dir, ".").unwrap(), None);
        for (name, shown) in [
            ("../up", "d: skipped entry ../up: name contains `/`"),
            ("/etc/passwd", "d: skipped entry /etc/passwd: name contains `/`"),
            ("nul\0byte", "d: skipped entry nul\\x00byte: name contains a NUL byte"),
            ("x/\nerror: forged \u{1b}[31m", "d: skipped entry x/\\x0aerror: forged \\x1b[31m: name contains `/`"),
            ("", "d: skipped entry : empty name"),
        ] {
            assert_eq!(listed_path(&dir, name).unwrap_err(), shown);
        }
    }

    /// Names come from russh-sftp escaped as raw_names has it; listed, they
    /// are the server's bytes again, whatever they hold.
    #[test]
    fn listed_names_are_the_server_bytes() {
        let dir = RelPath::parse(b"d").unwrap();
        for bytes in [&b"caf\xe9.txt"[..], b"\xff\xfe", "caf\u{e9}".as_bytes(), "\u{f7a9}\u{fffd}".as_bytes()] {
            let listed = listed_path(&dir, &raw_names::decode(bytes)).unwrap().unwrap();
            assert_eq!(listed.file_name(), bytes);
        }
        // Escapes stand for bytes 0x80..=0xFF only: none can forge a `/`.
        let below_the_escapes = listed_path(&dir, "\u{f72f}").unwrap().unwrap();
        assert_eq!(below_the_escapes.file_name(), "\u{f72f}".as_bytes());
        let with_slash = raw_names::decode(b"\xe9/..");
        assert_eq!(listed_path(&dir, &with_slash).unwrap_err(), "d: skipped entry \\xe9/..: name contains `/`");
    }

    #[test]
    fn an_endless_listing_outgrows_the_budget() {
        let name = |n: usize| russh_sftp::protocol::File::new(format!("endless-{n:06}"), FileAttributes::empty());
        // OpenSSH-sized batches of short names: about two million names.
        let batch: Vec<_> = (0..100).map(name).collect();
        let root = RelPath::root();
        let batches = MAX_LISTING_BYTES / listing_cost(&root, &batch);
        assert!((10_000..40_000).contains(&batches), "{batches}");
        // Empty answers are not free.
        assert_eq!(MAX_LISTING_BYTES / listing_cost(&root, &[]), 4096);
        // Every entry holds its parent's path: in a directory 4 KiB deep
        // (crate::path::MAX_PATH_BYTES, in names of at most 255 bytes) far
        // fewer names fit.
        let deep = RelPath::parse(vec!["d".repeat(250); 16].join("/").as_bytes()).unwrap();
        let deep_batches = MAX_LISTING_BYTES / listing_cost(&deep, &batch);
        assert!(deep_batches * deep.as_bytes().len() * 100 <= MAX_LISTING_BYTES, "{deep_batches}");
    }

    #[test]
    fn sftp_strings_are_length_prefixed() {
        let mut out = Vec::new();
        put_string(&mut out, "a/é");
        assert_eq!(out, [0, 0, 0, 4, b'a', b'/', 0xc3, 0xa9]);
        out.clear();
        put_string(&mut out, &raw_names::decode(b"\xe9"));
        assert_eq!(out, [0, 0, 0, 1, 0xe9], "the byte an escape stands for");
    }
}
