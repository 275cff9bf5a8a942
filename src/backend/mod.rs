//! One interface for every place a tree can live: local disk, FTP, SFTP.
//!
//! A backend sees a relative path space rooted where the user pointed it
//! ([`RelPath`]); it never sees, and can never build, a path outside it.
//! Everything the planner and engine need goes through [`Backend`], so a
//! protocol plugs in by implementing it and reporting its [`Capabilities`].

pub mod ftp;
pub mod local;
pub mod owners;
pub mod raw_names;
pub mod recall;
pub mod sftp;
pub mod socks;
pub mod stream;
pub mod temp;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{ErrorKind, OpError};
use crate::location::{Location, RemoteLocation, Scheme};
use crate::path::RelPath;

/// A modification time: nanoseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mtime(pub i64);

impl Mtime {
    pub fn from_unix(secs: i64, nanos: u32) -> Self {
        Mtime(secs.saturating_mul(1_000_000_000).saturating_add(i64::from(nanos)))
    }

    pub fn secs(self) -> i64 {
        self.0.div_euclid(1_000_000_000)
    }

    pub fn subsec_nanos(self) -> u32 {
        // rem_euclid of a positive divisor is in 0..1e9, which fits a u32.
        self.0.rem_euclid(1_000_000_000) as u32
    }

    pub fn to_system_time(self) -> std::time::SystemTime {
        let base = std::time::UNIX_EPOCH;
        if self.0 >= 0 {
            base + Duration::from_nanos(self.0.unsigned_abs())
        } else {
            base - Duration::from_nanos(self.0.unsigned_abs())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// One file, directory or link in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: RelPath,
    pub kind: EntryKind,
    /// Bytes; 0 for directories.
    pub size: u64,
    pub mtime: Option<Mtime>,
    /// Local inode number, 0 when unknown; part of the hash cache key.
    pub inode: u64,
    /// Seconds of uncertainty in this entry's mtime when coarser than the
    /// backend's [`Capabilities::mtime_precision`] (a LIST line that shows
    /// only a date: 86400); 0 otherwise.
    pub coarse_mtime_s: u32,
    /// A digest of the content (of the algorithm chosen for the pair),
    /// filled in only when comparing by hash.
    pub hash: Option<Box<[u8]>>,
    /// A symbolic link's target, byte for byte, when the listing gave it
    /// (`None` for files, directories, and links whose target is unknown).
    /// Data to copy, never a path barge resolves (except `--links follow`).
    pub link_target: Option<Box<[u8]>>,
    /// Permission bits (`0o7777`: rwx for owner, group and others, and
    /// setuid, setgid, sticky), when the listing gave them.
    pub mode: Option<u32>,
    /// Numeric owner and group as this side knows them, when the listing
    /// gave them (local disk, SFTP); a source's are mapped to the
    /// destination's ids before the planner sees them (`--owner`).
    pub owner: Option<Owner>,
}

/// Numeric user and group ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Entry {
    /// A directory with nothing known but its path.
    pub fn dir(path: RelPath) -> Entry {
        Entry {
            path,
            kind: EntryKind::Dir,
            size: 0,
            mtime: None,
            inode: 0,
            coarse_mtime_s: 0,
            hash: None,
            link_target: None,
            mode: None,
            owner: None,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
    pub fn is_file(&self) -> bool {
        self.kind == EntryKind::File
    }
    pub fn is_symlink(&self) -> bool {
        self.kind == EntryKind::Symlink
    }
}

/// A whole tree, in [`RelPath`] tree order.
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// Directories that could not be listed. Nothing below them may be
    /// judged missing: the planner never deletes under these.
    pub unreadable: Vec<(RelPath, OpError)>,
    /// Entries skipped with a reason (hostile or unusable names).
    pub warnings: Vec<String>,
    /// Warnings that cast no doubt on the listing (links `--links follow`
    /// left as links): reported, but they hold back no deletion.
    pub notices: Vec<String>,
    /// Listings that failed with a temporary error and were asked again,
    /// for the log.
    pub retried: Vec<String>,
    /// What the listing taught of the server (see [`stream::WalkItem::Info`]).
    pub info: Vec<String>,
}

/// Content hashes a backend can compute without transferring the file to
/// us, in order of preference when two sides must agree on one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashKind {
    Blake3,
    Sha256,
    Sha1,
    Md5,
}

impl HashKind {
    pub const PREFERENCE: [HashKind; 4] = [HashKind::Blake3, HashKind::Sha256, HashKind::Sha1, HashKind::Md5];

    /// The name stored in the state database.
    pub fn name(self) -> &'static str {
        match self {
            HashKind::Blake3 => "blake3",
            HashKind::Sha256 => "sha256",
            HashKind::Sha1 => "sha1",
            HashKind::Md5 => "md5",
        }
    }

    pub fn from_name(name: &str) -> Option<HashKind> {
        HashKind::PREFERENCE.into_iter().find(|k| k.name() == name)
    }

    /// The first algorithm both sides can compute.
    pub fn common(a: &[HashKind], b: &[HashKind]) -> Option<HashKind> {
        HashKind::PREFERENCE.into_iter().find(|k| a.contains(k) && b.contains(k))
    }
}

/// What a backend can do, so the planner and engine adapt instead of failing.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// The smallest mtime difference this side can record and report.
    pub mtime_precision: Duration,
    /// Whether the modification time of a written file can be set.
    pub set_mtime: bool,
    /// Whether a directory's modification time can be set.
    pub set_dir_mtime: bool,
    /// Whether rename replaces an existing file atomically.
    pub atomic_rename: bool,
    /// Hashes computed on the backend's side.
    pub hashes: Vec<HashKind>,
    /// Symbolic links can be created and listed as such.
    pub symlinks: bool,
    /// How many operations may run against this backend at once.
    pub max_connections: usize,
    /// Bytes at the end of an interrupted partial file that may hold holes
    /// (writes pipelined and applied out of order): a resume starts this
    /// much earlier. 0 for backends that write strictly in order.
    pub resume_margin: u64,
    /// Each write stream is held back by a flow-control window of the
    /// server's own (SFTP: OpenSSH grants a session 2 MiB, 100 MB/s over
    /// 20 ms), so a large file is written faster in more streams however
    /// many other files are moving: its segments are not shared out.
    pub windowed_writes: bool,
    /// A temporary that a live run is writing can be told from one a
    /// killed run left (local disk: every writer holds a shared lock on
    /// it; see [`Backend::remove_abandoned_temp`]). A server cannot say.
    pub live_temporaries: bool,
    /// Across a network: a success here is a server answering (see
    /// `engine::liveness`); local disk says nothing about the servers.
    pub remote: bool,
    /// [`Backend::walk_streamed`] makes use of a
    /// [`recall::Recall`] (reading one from the state database costs).
    pub uses_recall: bool,
    /// A segment opened at offset 0 truncates the file (FTP's STOR: REST 0
    /// means no restart). It must be open before any other segment writes,
    /// and is never opened at 0 again once they may have.
    pub segment_at_zero_truncates: bool,
    /// [`Backend::commit_temp`] sets a temporary's mtime more cheaply than
    /// [`FileWriter::finish`] (sent together with the rename): the commit
    /// then passes the mtime there instead of to `finish`.
    pub mtime_at_commit: bool,
    /// Permission bits can be set ([`Backend::set_mode`]); a copy's
    /// writer gives its file the source's with the content (see
    /// [`FileWriter::keep_mode`]) or the commit sets them on the temporary.
    pub set_mode: bool,
}

/// Size of the buffers moved between reader and writer (two per stream).
/// 256 KiB, not 1 MiB: same speed over FTP and SFTP at 0 and 20 ms, and
/// the four-256-MiB-file rows' peak RSS fell by 13-28 MiB (FTP down 43 ->
/// 18, SFTP up 75 -> 46; A/B, medians of 3).
pub const CHUNK_SIZE: usize = 256 * 1024;

/// The buffer for the bytes of a `size`-byte file from `offset` on, when
/// they fit one chunk: their length plus the byte that would show the file
/// grew, in whole pages. `None` for a longer rest (it is read in chunks).
pub fn one_chunk(size: u64, offset: u64) -> Option<usize> {
    let rest = usize::try_from(size.saturating_sub(offset).saturating_add(1)).ok()?;
    (rest <= CHUNK_SIZE).then(|| rest.next_multiple_of(4096))
}

/// Reads a file sequentially from some offset, handing buffers back and
/// forth so no chunk is copied or allocated twice.
#[async_trait]
pub trait FileReader: Send {
    /// Fills `buf` (cleared first) with up to its capacity; an empty buffer
    /// back means end of file.
    async fn read(&mut self, buf: Vec<u8>) -> Result<Vec<u8>, OpError>;
}

/// Writes a temporary file. Dropping it without `finish` (or `write_last`)
/// leaves the partial temporary in place, to be resumed or removed by a
/// later run.
#[async_trait]
pub trait FileWriter: Send {
    /// Writes all of `buf` and returns it, cleared, for reuse.
    async fn write(&mut self, buf: Vec<u8>) -> Result<Vec<u8>, OpError>;
    /// Makes the content durable (fsync or the protocol's equivalent) and
    /// sets its modification time when given. Returns the mtime the file
    /// now has when it is known (`None` when it could not be set).
    async fn finish(self: Box<Self>, mtime: Option<Mtime>) -> Result<Option<Mtime>, OpError>;

    /// Asks the writer to give the file the permission bits `mode` when it
    /// finishes, before anything can commit it; false when it cannot (the
    /// commit then sets them on the temporary itself).
    fn keep_mode(&mut self, mode: u32) -> bool {
        let _ = mode;
        false
    }

    /// Asks the writer to give the file the user `uid` and/or group `gid`
    /// when it finishes (before its bits: a change of owner clears setuid);
    /// false when it cannot (the commit then sets them on the temporary).
    fn keep_owner(&mut self, uid: Option<u32>, gid: Option<u32>) -> bool {
        let _ = (uid, gid);
        false
    }

    /// Writes `buf`, the file's last bytes (possibly none), and finishes
    /// as [`FileWriter::finish`] does; given `commit_to`, also moves the
    /// file to that name, replacing a file there, where this writer can do
    /// it in the same step. Local disk does all of it on one trip to the
    /// blocking pool instead of three: for small files the trips' thread
    /// wake-ups are a large part of the CPU.
    async fn write_last(
        mut self: Box<Self>,
        buf: Vec<u8>,
        mtime: Option<Mtime>,
        commit_to: Option<&RelPath>,
    ) -> Result<Finished, OpError> {
        let _ = commit_to;
        if !buf.is_empty() {
            self.write(buf).await?;
        }
        Ok(Finished { mtime: self.finish(mtime).await?, committed: false })
    }
}

/// What [`FileWriter::write_last`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The file's mtime, as [`FileWriter::finish`] returns it.
    pub mtime: Option<Mtime>,
    /// The file was also moved to the name asked for. When false, it is
    /// still under its own name (the caller commits it).
    pub committed: bool,
}

#[async_trait]
pub trait Backend: Send + Sync {
    fn capabilities(&self) -> &Capabilities;

    /// The location for messages, never with a secret in it.
    fn describe(&self) -> String;

    /// Times barge sent the server something and waited for its answer
    /// before going on (a pipelined batch counts once; a data connection's
    /// set-up counts once): what the round trip costs, counted. 0 for local disk.
    fn round_trips(&self) -> u64 {
        0
    }

    /// One request's round trip, as timed when the backend opened (a
    /// command on the first connection); `None` for local disk. Tells a
    /// far server from a near one before any transfer has been measured.
    fn round_trip_time(&self) -> Option<Duration> {
        None
    }

    /// The connections the server accepts at once, when it has shown a
    /// limit (refused one while others were open); `None` when no limit
    /// was seen or connections are not what bounds concurrency.
    fn connection_cap(&self) -> Option<usize> {
        None
    }

    /// The root's path on its server once opened, `~`, `..` and links
    /// resolved (the server's own realpath), for telling whether two
    /// locations spelled apart are one tree; `None` where it cannot be told.
    fn resolved_root(&self) -> Option<Vec<u8>> {
        None
    }

    /// Why this backend cannot hold an entry named `name` (one component)
    /// under that name, e.g. an FTP server whose `--encoding` lacks one
    /// of its characters; `None` when it can. A source's entries the
    /// destination cannot name are skipped with a warning.
    fn cannot_name(&self, _name: &[u8]) -> Option<String> {
        None
    }

    /// Direct children of a directory, with `path` relative to the root.
    async fn list_dir(&self, dir: &RelPath) -> Result<Vec<Entry>, OpError>;

    /// The whole tree below the root, in tree order. The root itself is not
    /// an entry. Fails only when the root cannot be read.
    async fn walk(&self) -> Result<Listing, OpError> {
        let mut listing = Listing::default();
        let mut pending = vec![RelPath::root()];
        while let Some(dir) = pending.pop() {
            if let Err(err) = within_limits(&dir) {
                listing.unreadable.push((dir, err));
                continue;
            }
            match self.list_dir(&dir).await {
                Ok(children) => {
                    pending.extend(children.iter().filter(|e| e.is_dir()).map(|e| e.path.clone()));
                    listing.entries.extend(children);
                }
                Err(err) if dir.is_root() => return Err(err),
                Err(err) => listing.unreadable.push((dir, err)),
            }
        }
        listing.entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(listing)
    }

    /// [`Backend::walk`], telling `arrived` how many entries have been
    /// listed as it goes (a far server's tree read whole can take minutes:
    /// the progress line counts them). The default gathers
    /// [`Backend::walk_streamed`], counting each batch.
    async fn walk_counted(&self, arrived: Arrived) -> Result<Listing, OpError> {
        stream::collected_counting(|tx| self.walk_streamed(tx, None), |entries| arrived(entries)).await
    }

    /// The tree below the root sent to `tx` in tree order as it is listed
    /// (see [`stream`]). What the last runs recorded of this side may
    /// arrive on `recall`, for a backend that [`Capabilities::uses_recall`]
    /// (see [`recall`]). The default lists the tree whole first.
    async fn walk_streamed(&self, tx: stream::WalkSender, recall: Option<recall::RecallReceiver>) {
        drop(recall);
        match self.walk().await {
            Ok(listing) => stream::send_listing(listing, tx).await,
            Err(err) => {
                let _ = tx.send(vec![stream::WalkItem::Failed(err)]).await;
            }
        }
    }

    /// The entry at `path`, or `None` when nothing is there.
    async fn stat(&self, path: &RelPath) -> Result<Option<Entry>, OpError>;

    async fn open_read(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileReader>, OpError>;

    /// [`Backend::open_read`] of a file the listing says holds `size`
    /// bytes: a backend that pays a round trip per request may ask for all
    /// of it, and whether it ends there, at once. The reader still reads
    /// to the real end of the file, so one that grew or shrank since the
    /// listing is seen as such.
    async fn open_read_sized(&self, path: &RelPath, offset: u64, size: u64) -> Result<Box<dyn FileReader>, OpError> {
        let _ = size;
        self.open_read(path, offset).await
    }

    /// Reads exactly the `len` bytes of `path` from `offset` (fewer only
    /// when the file is shorter), then ends: a segment of a segmented copy.
    /// The connection behind it is left ready for the next user, or closed
    /// when it cannot be. The default reads with [`Backend::open_read`] and
    /// drops that reader at the range's end.
    async fn open_read_range(&self, path: &RelPath, offset: u64, len: u64) -> Result<Box<dyn FileReader>, OpError> {
        let inner = self.open_read(path, offset).await?;
        Ok(Box::new(RangeReader { inner: Some(inner), remaining: len }))
    }

    /// Writing one file in segments at once, where this backend can.
    fn segmented_writes(&self) -> Option<&dyn SegmentedWrite> {
        None
    }

    /// Opens `path` for writing: created (or truncated) when `offset` is 0,
    /// else continued at `offset` (resume), cutting anything past it.
    async fn open_write(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileWriter>, OpError>;

    /// Text transfers (FTP `--ascii GLOB`), where this backend has them.
    fn text_mode(&self) -> Option<&dyn TextMode> {
        None
    }

    /// Moves `from` to `to`, replacing a file already at `to`.
    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), OpError>;

    /// Gives the finished temporary `temp` its permission bits `mode` and
    /// its `mtime` (each when given), then moves it to `target`, replacing
    /// a file there: the final name never shows the wrong bits or time.
    /// Returns the mtime set, `None` when it could not be (the file is
    /// committed all the same, as it is when the bits cannot be set). A
    /// refused rename fails with the rename's error, as [`Backend::rename`].
    async fn commit_temp(
        &self,
        temp: &RelPath,
        target: &RelPath,
        mtime: Option<Mtime>,
        mode: Option<u32>,
    ) -> Result<Option<Mtime>, OpError> {
        if let Some(mode) = mode {
            let _ = self.set_mode(temp, mode).await;
        }
        let set = match mtime {
            Some(mtime) => self.set_mtime(temp, mtime).await.ok().map(|()| mtime),
            None => None,
        };
        self.rename(temp, target).await?;
        Ok(set)
    }

    async fn remove_file(&self, path: &RelPath) -> Result<(), OpError>;

    /// Removes an empty directory.
    async fn remove_dir(&self, path: &RelPath) -> Result<(), OpError>;

    /// Removes a barge temporary this run did not write, unless a live
    /// run still writes it (where [`Capabilities::live_temporaries`]):
    /// whether it was removed. A server cannot tell: removed.
    async fn remove_abandoned_temp(&self, path: &RelPath) -> Result<bool, OpError> {
        self.remove_file(path).await.map(|()| true)
    }

    /// Creates a directory whose parent exists; fine if it is already there.
    async fn mkdir(&self, path: &RelPath) -> Result<(), OpError>;

    async fn set_mtime(&self, path: &RelPath, mtime: Mtime) -> Result<(), OpError>;

    /// Gives `path` (a file or directory, never followed if a link) the
    /// permission bits `mode` (at most `0o7777`). Where
    /// [`Capabilities::set_mode`] says so.
    async fn set_mode(&self, path: &RelPath, mode: u32) -> Result<(), OpError> {
        let _ = mode;
        Err(OpError::new(ErrorKind::Unsupported, "chmod", path, "this backend cannot set permissions"))
    }

    /// True once the destination has refused a rename: files are then
    /// written in place.
    fn renames_refused(&self) -> bool {
        false
    }

    /// Server-to-server copies (`--fxp`), where this backend can send them.
    fn server_copy(&self) -> Option<&dyn ServerCopy> {
        None
    }

    /// Owners (`--owner`, `--group`), where this backend can set them.
    fn ownership(&self) -> Option<&dyn owners::Ownership> {
        None
    }

    /// The target of the symbolic link at `path`, byte for byte.
    async fn read_link(&self, path: &RelPath) -> Result<Vec<u8>, OpError> {
        Err(OpError::new(ErrorKind::Unsupported, "read link", path, "this backend cannot read symbolic links"))
    }

    /// Creates a symbolic link at `path` (nothing may be there) holding
    /// `target` byte for byte: the target is never resolved or checked.
    async fn make_symlink(&self, path: &RelPath, target: &[u8]) -> Result<(), OpError> {
        let _ = target;
        Err(OpError::new(ErrorKind::Unsupported, "symlink", path, "this backend cannot create symbolic links"))
    }

    /// The tree with symbolic links replaced by what they point to, for
    /// `--links follow`; only links whose target resolves inside the root
    /// are followed, every other one stays a link (which the planner skips)
    /// with a notice naming it. Backends that cannot resolve links follow none.
    async fn walk_following_links(&self) -> Result<Listing, OpError> {
        let mut listing = self.walk().await?;
        let links = listing.entries.iter().filter(|e| e.is_symlink()).count();
        if links > 0 {
            listing.notices.push(format!(
                "{}: {links} symbolic links skipped: --links follow cannot resolve links on this backend",
                self.describe()
            ));
        }
        Ok(listing)
    }

    /// A digest of each file, computed where the files are. Backends that
    /// cannot (see [`Capabilities::hashes`]) return `Unsupported` for all.
    async fn hash_files(&self, paths: Vec<RelPath>, kind: HashKind) -> Vec<Result<Vec<u8>, OpError>> {
        let _ = kind;
        paths.iter().map(|p| Err(OpError::new(ErrorKind::Unsupported, "hash", p, "backend cannot hash"))).collect()
    }
}

/// [`Backend::open_read_range`]'s default: another reader cut at the
/// range's end and dropped there.
struct RangeReader {
    inner: Option<Box<dyn FileReader>>,
    remaining: u64,
}

#[async_trait]
impl FileReader for RangeReader {
    async fn read(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        let Some(inner) = self.inner.as_mut() else {
            buf.clear();
            return Ok(buf);
        };
        let mut buf = inner.read(buf).await?;
        let len = buf.len() as u64;
        if len >= self.remaining {
            buf.truncate(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            self.remaining = 0;
            self.inner = None;
        } else if len == 0 {
            self.inner = None;
        } else {
            self.remaining -= len;
        }
        Ok(buf)
    }
}

/// Where `path` really is under `--links follow`: `followed` maps each
/// followed link to the link-free path it resolves to, so the longest
/// followed prefix of `path` is swapped for its target. `path` itself when
/// no link on it was followed.
pub fn through_followed(followed: &std::collections::HashMap<RelPath, RelPath>, path: &RelPath) -> RelPath {
    let mut prefix = path.clone();
    loop {
        if let Some(target) = followed.get(&prefix) {
            let mut joined = target.as_bytes().to_vec();
            joined.extend_from_slice(&path.as_bytes()[prefix.as_bytes().len()..]);
            // Both halves were valid paths: so is their join.
            return RelPath::parse(&joined).unwrap_or_else(|_| path.clone());
        }
        if prefix.is_root() {
            return path.clone();
        }
        prefix = prefix.parent();
    }
}

/// Directories nested deeper than this are not listed by a remote walk.
/// A server can invent a subdirectory in every listing, or show a link
/// loop as directories, and a walk would never end; no real tree comes
/// near 256 levels (and a local path holds at most 4096 bytes, see
/// [`MAX_PATH_BYTES`]). A constant, not a flag: it is a guard against
/// hostile servers, not a filter, and hitting it is reported by name.
pub const MAX_DEPTH: usize = 256;

/// Directories whose relative path is longer than this are not listed
/// either (see [`crate::path::MAX_PATH_BYTES`]).
pub use crate::path::MAX_PATH_BYTES;

/// Whether a walk may list `dir`; the error marks it unreadable, so the
/// planner deletes nothing below it and the run reports it.
pub fn within_limits(dir: &RelPath) -> Result<(), OpError> {
    let why = if dir.depth() > MAX_DEPTH {
        format!(
            "nested more than {MAX_DEPTH} directories deep: not listed (a server inventing directories, or a link loop?)"
        )
    } else if dir.as_bytes().len() > MAX_PATH_BYTES {
        format!("path longer than {MAX_PATH_BYTES} bytes: not listed (a server inventing directories?)")
    } else {
        return Ok(());
    };
    Err(OpError::new(ErrorKind::InvalidData, "list", dir, why))
}

/// Told how many more entries a walk has listed (see [`Backend::walk_counted`]).
pub type Arrived = Arc<dyn Fn(u64) + Send + Sync>;

/// Lists a whole tree at `pace` with `list_dir` (one directory's entries
/// and warnings): a [`stream::walk_streamed`] gathered whole (see there for
/// retries, limits and duplicates).
pub async fn walk_concurrently<F, Fut>(pace: stream::Pace, list_dir: F) -> Result<Listing, OpError>
where
    F: Fn(RelPath) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<Entry>, Vec<String>), OpError>> + Send + 'static,
{
    stream::collected(|tx| stream::walk_streamed(pace, list_dir, tx)).await
}

/// A round trip at least this long makes a server far (loopback and a
/// LAN are well under it): far servers start with more transfers at once
/// and list in more pieces (see [`Backend::round_trip_time`]).
pub const FAR: Duration = Duration::from_millis(5);

/// What barge knows of a protocol's servers before it connects: the
/// numbers the engine and the command line choose by, instead of by URL
/// scheme. Each backend module has its own (`PROFILE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Transfers at once the tuner may reach without `--parallel` (`None`:
    /// no server to spare, the engine's local ceiling applies).
    pub auto_ceiling: Option<usize>,
    /// Where a job with no history starts when the server is far (its
    /// round trip at least [`FAR`]); `None`: the engine's default start.
    pub far_start: Option<usize>,
    /// Whether two servers of this protocol can copy between themselves
    /// (`--fxp`).
    pub server_copy: bool,
}

/// The [`Profile`] of the backend that serves `location`.
pub fn profile(location: &Location) -> Profile {
    match location {
        Location::Remote(remote) if remote.scheme == Scheme::Sftp => sftp::PROFILE,
        Location::Remote(_) => ftp::PROFILE,
        Location::Local(_) => local::PROFILE,
    }
}

/// A file written in segments at offsets, several at once, into one
/// temporary: a large file's copy split over several connections.
#[async_trait]
pub trait SegmentedWrite: Send + Sync {
    /// Whether segments written at once into one file land as they should
    /// on this server; asked once before the first segmented write (with
    /// `near`, the file about to be written, for a backend that must try
    /// it out beside it).
    async fn works(&self, near: &RelPath) -> bool {
        let _ = near;
        true
    }

    /// Creates `path` (replacing what is there) holding `size` bytes, to be
    /// filled by [`SegmentedWrite::open_write_segment`].
    async fn create_sized(&self, path: &RelPath, size: u64) -> Result<(), OpError>;

    /// Opens `path`, made by [`SegmentedWrite::create_sized`], for writing
    /// from `offset` on: nothing is truncated or cut, so several writers may
    /// be open on one file at different offsets. `finish` makes the segment
    /// durable; the mtime is set at the commit.
    async fn open_write_segment(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileWriter>, OpError>;
}

/// Files moved as text: line ends converted, so sizes may differ between
/// the sides by design. A side without it reads and writes the bytes as
/// they are (its line ends are `\n`).
#[async_trait]
pub trait TextMode: Send + Sync {
    /// Whether `path` is transferred as text.
    fn is_text(&self, path: &RelPath) -> bool;

    /// Opens `path` for reading as text: line ends arrive as `\n`.
    async fn open_read_text(&self, path: &RelPath) -> Result<Box<dyn FileReader>, OpError>;

    /// Opens `target` for writing text whose line ends are `\n`.
    async fn open_write_text(&self, target: &RelPath) -> Result<Box<dyn FileWriter>, OpError>;
}

/// A backend whose server can send a file straight to another server
/// (FTP's FXP), the data never passing through barge. Asked for with
/// [`Backend::server_copy`]; both sides must offer it.
#[async_trait]
pub trait ServerCopy: Send + Sync {
    /// For the other side to recognise a server of its own kind.
    fn as_any(&self) -> &dyn std::any::Any;

    /// Copies `from` on this server to `to` on `dst`'s server. Unsupported
    /// (an error) when `dst` is not a server this one can send to.
    async fn send_to(&self, dst: &dyn ServerCopy, from: &RelPath, to: &RelPath) -> Result<(), OpError>;
}

/// What to do when a location's root directory does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingRoot {
    /// A source: an error (exit 3), never an empty tree.
    Fail,
    /// A sync destination: create it.
    Create,
    /// A sync destination whose creation waits until the source has
    /// opened: a missing root is a `NotFound` error, for the caller to
    /// open again with [`MissingRoot::Create`]. As with `Create`, a root
    /// that exists is checked for writing where that costs no round trip.
    CreateLater,
    /// A destination we only look at (plan, check): an empty tree.
    Empty,
}

/// What a backend may remember about its server between runs (kept in the
/// job's state database): a LIST time-zone offset, a connection limit.
#[async_trait]
pub trait ServerMemory: Send + Sync {
    async fn recall(&self, key: &str) -> Option<String>;
    async fn remember(&self, key: &str, value: &str);
}

/// A [`ServerMemory`] handle that prints as nothing in particular.
#[derive(Clone)]
pub struct Memory(pub Arc<dyn ServerMemory>);

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memory")
    }
}

/// Settings for remote locations, from the command line or a config:
/// those of every protocol, and each protocol's own.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// `--retries`: how often a listing that failed with a temporary
    /// error is asked again (transfers: the engine's own count).
    pub retries: u32,
    /// `--password-env VAR`.
    pub password_env: Option<String>,
    /// The password a config file's `password_file` gave (after the URL's,
    /// before `--password-env`, BARGE_PASSWORD and ~/.netrc).
    pub password: Option<crate::location::Secret>,
    /// Connect, command and stalled-transfer timeout.
    pub timeout: Duration,
    /// Connections per server.
    pub connections: usize,
    /// Where server quirks are remembered (the state database), if anywhere.
    pub memory: Option<Memory>,
    pub ftp: ftp::FtpOptions,
    pub sftp: sftp::SftpOptions,
    /// `--proxy`, else `ALL_PROXY`: a SOCKS5 proxy for every connection.
    pub proxy: socks::ProxySetting,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            retries: 3,
            password_env: None,
            password: None,
            timeout: Duration::from_secs(60),
            connections: 8,
            memory: None,
            ftp: ftp::FtpOptions::default(),
            sftp: sftp::SftpOptions::default(),
            proxy: socks::ProxySetting::default(),
        }
    }
}

/// `remote` as its backend will log in, read from local files only (no
/// connection): the user `~/.netrc` or the default gives when the URL
/// names none, and for SFTP the host, port and user `~/.ssh/config` maps
/// an alias to. A job's identity is taken from it, so `sftp://alias/x` and
/// `sftp://me@host:22/x` are one job.
pub fn login_location(remote: &RemoteLocation, options: &RemoteOptions) -> RemoteLocation {
    let mut resolved = remote.clone();
    let default_user = match remote.scheme {
        Scheme::Sftp => {
            let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
            let local_user = sftp::auth::default_user();
            // A config that does not parse fails the connection later,
            // with its own message; the URL stands as it is until then.
            if let Ok(config) =
                sftp::config::resolve(remote, options.sftp.ssh_config.as_deref(), home.as_deref(), &local_user)
            {
                resolved = config.remote;
            }
            local_user
        }
        Scheme::Ftp | Scheme::Ftpes | Scheme::Ftps => "anonymous".to_string(),
    };
    resolved.user = Some(crate::credentials::resolve(&resolved, options, &default_user).user);
    resolved
}

/// Opens the backend for a location.
pub async fn open(
    location: &Location,
    missing_root: MissingRoot,
    options: &RemoteOptions,
) -> Result<Arc<dyn Backend>, OpError> {
    match location {
        Location::Local(path) => Ok(Arc::new(local::LocalBackend::open(path.clone(), missing_root).await?)),
        Location::Remote(remote) => match remote.scheme {
            Scheme::Ftp | Scheme::Ftpes | Scheme::Ftps => {
                Ok(Arc::new(ftp::FtpBackend::open(remote, missing_root, options).await?))
            }
            Scheme::Sftp => Ok(Arc::new(sftp::SftpBackend::open(remote, missing_root, options).await?)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing that invents one more subdirectory named `name` in every
    /// directory, as a hostile server (or a link loop) does.
    async fn endless(name: &'static [u8]) -> Listing {
        let listed = walk_concurrently(stream::Pace::new(4, 0, Duration::from_secs(60)), |dir: RelPath| async move {
            Ok((vec![Entry::dir(dir.join(name).unwrap())], Vec::new()))
        });
        tokio::time::timeout(Duration::from_secs(10), listed).await.expect("the walk ends").unwrap()
    }

    #[tokio::test]
    async fn an_endless_tree_stops_at_the_depth_cap() {
        let listing = endless(b"a").await;
        assert_eq!(listing.entries.len(), MAX_DEPTH + 1);
        let [(dir, err)] = &listing.unreadable[..] else { panic!("{:?}", listing.unreadable) };
        assert_eq!(dir.depth(), MAX_DEPTH + 1);
        assert!(err.to_string().contains("256 directories deep"), "{err}");
        assert!(err.to_string().contains("a/a/a"), "the error names the directory: {err}");
    }

    #[tokio::test]
    async fn an_endless_tree_of_long_names_stops_at_the_byte_cap() {
        let listing = endless(&[b'n'; 255]).await;
        let [(dir, err)] = &listing.unreadable[..] else { panic!("{:?}", listing.unreadable) };
        // 16 names of 255 bytes and their 15 slashes fit in 4096 bytes; 17 do not.
        assert_eq!(dir.depth(), 17);
        assert!(dir.as_bytes().len() > MAX_PATH_BYTES);
        assert_eq!(listing.entries.len(), 17);
        assert!(err.to_string().contains("longer than 4096 bytes"), "{err}");
    }

    /// A root whose listing fails twice with a temporary error: listed on
    /// the third attempt with two retries, a failed walk with one.
    #[tokio::test]
    async fn temporary_listing_failures_are_retried_root_included() {
        for (retries, listed) in [(2, true), (1, false)] {
            let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
            let walk = walk_concurrently(stream::Pace::new(4, retries, Duration::from_secs(60)), |dir: RelPath| {
                let calls = Arc::clone(&calls);
                async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                        return Err(OpError::new(ErrorKind::Temporary, "list", &dir, "425 busy"));
                    }
                    Ok((Vec::new(), Vec::new()))
                }
            });
            let walked = walk.await;
            assert_eq!(walked.is_ok(), listed, "{retries} retries: {walked:?}");
            if let Ok(listing) = walked {
                assert_eq!(listing.retried.len(), 2, "{:?}", listing.retried);
            }
        }
    }

    #[test]
    fn mtime_splits_negative_times_correctly() {
        let t = Mtime::from_unix(-1, 500_000_000);
        assert_eq!(t.secs(), -1);
        assert_eq!(t.subsec_nanos(), 500_000_000);
        assert_eq!(Mtime::from_unix(1_700_000_000, 7).subsec_nanos(), 7);
    }
}
