//! The local filesystem. Every filesystem call runs on tokio's blocking pool
//! (or rayon, for hashing), never on the async workers.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

use super::owners::{IdKind, Ownership};
use super::stream::{WalkItem, WalkOut, WalkSender};
use super::{Backend, Capabilities, Entry, EntryKind, FileReader, FileWriter, HashKind, Listing, MissingRoot, Mtime};
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;

mod group;
mod writer;
pub use group::GROUPED_FILE_SYSTEMS;
use group::GroupCommit;
use writer::{LocalWriter, Opener, hold_while_written, lost_handle};

/// Local disk: no server to spare and no distance; the engine's local
/// ceiling and default start apply.
pub const PROFILE: super::Profile = super::Profile { auto_ceiling: None, far_start: None, server_copy: false };

pub struct LocalBackend {
    root: Arc<PathBuf>,
    /// The root directory, opened once. Every operation resolves its path
    /// below this descriptor and never through a symbolic link (see
    /// [`Beneath`]): a link on the destination (`sub -> /etc`) is an entry
    /// to replace, never a way out. `None` when the root is missing.
    root_dir: Option<Arc<OwnedFd>>,
    /// `--links follow`: each followed link (and so everything below a
    /// followed directory link) mapped to the link-free path it resolves
    /// to, filled by [`Backend::walk_following_links`].
    followed: Arc<RwLock<HashMap<RelPath, RelPath>>>,
    /// The root did not exist and `MissingRoot::Empty` was asked for.
    root_missing: bool,
    caps: Capabilities,
    /// Mode of finished files: what a plain `create` would give (0666 less
    /// the umask). Temporaries are 0600 until they are complete.
    file_mode: u32,
    /// Where small files are made durable together (see [`group`]).
    group: Arc<GroupCommit>,
}

impl LocalBackend {
    pub async fn open(root: PathBuf, missing_root: MissingRoot) -> Result<Self, OpError> {
        let shown = root.display().to_string();
        let checked = root.clone();
        let root_missing = blocking(move || match fs::metadata(&checked) {
            Ok(meta) if meta.is_dir() => {
                if matches!(missing_root, MissingRoot::Create | MissingRoot::CreateLater) {
                    // A destination nothing can be written into fails here,
                    // once, not once per file (the kernel answers for the
                    // caller's ids and a read-only mount alike).
                    rustix::fs::access(&checked, rustix::fs::Access::WRITE_OK).map_err(|err| {
                        OpError::new(
                            ErrorKind::PermissionDenied,
                            "open",
                            checked.display(),
                            format!("the destination cannot be written ({err}): nothing could be copied into it"),
                        )
                    })?;
                }
                Ok(false)
            }
            Ok(_) => Err(OpError::new(ErrorKind::InvalidData, "open", checked.display(), "not a directory")),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => match missing_root {
                MissingRoot::Fail | MissingRoot::CreateLater => Err(OpError::io("open", checked.display(), err)),
                MissingRoot::Empty => Ok(true),
                MissingRoot::Create => {
                    fs::create_dir_all(&checked).map_err(|e| OpError::io("mkdir", checked.display(), e))?;
                    Ok(false)
                }
            },
            Err(err) => Err(OpError::io("open", checked.display(), err)),
        })
        .await
        .map_err(|mut e| {
            e.path = shown;
            e
        })?;
        let root_dir = if root_missing {
            None
        } else {
            let opened = rustix::fs::open(&root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty());
            Some(Arc::new(opened.map_err(|e| OpError::io("open", root.display(), e.into()))?))
        };
        Ok(LocalBackend {
            root: Arc::new(root),
            root_dir,
            followed: Arc::default(),
            root_missing,
            caps: Capabilities {
                mtime_precision: Duration::from_nanos(1),
                set_mtime: true,
                set_dir_mtime: true,
                atomic_rename: true,
                hashes: HashKind::PREFERENCE.to_vec(),
                symlinks: true,
                max_connections: 64,
                resume_margin: 0,
                windowed_writes: false,
                live_temporaries: true,
                remote: false,
                uses_recall: false,
                segment_at_zero_truncates: false,
                mtime_at_commit: false,
                set_mode: true,
            },
            file_mode: 0o666 & !current_umask(),
            group: Arc::default(),
        })
    }

    fn full(&self, path: &RelPath) -> PathBuf {
        path.to_local(&self.root)
    }

    /// Where `path` is reached without links: itself, or under `--links
    /// follow` the path its followed link (or link directory) resolves to.
    fn resolved(&self, path: &RelPath) -> RelPath {
        super::through_followed(&self.followed.read().unwrap_or_else(|p| p.into_inner()), path)
    }

    /// Runs `work` on the blocking pool with `path`'s parent directory
    /// opened below the root (no link followed) and its final name.
    async fn at<T: Send + 'static>(
        &self,
        op: &'static str,
        path: &RelPath,
        work: impl FnOnce(&Beneath, &OsStr) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, OpError> {
        let root = self.root_dir.clone();
        let shown = path.clone();
        blocking(move || resolve_at(root, op, &shown, work)).await
    }
}

/// [`LocalBackend::rename`]'s work, on the calling thread. `from_dir`:
/// `from`'s directory when the caller holds it open already (a writer
/// committing its temporary: the directory the data went to, even if
/// moved meanwhile, as the open file itself would be).
fn rename_beneath(
    root: Option<Arc<OwnedFd>>,
    from: &RelPath,
    to: &RelPath,
    from_dir: Option<Beneath>,
) -> Result<(), OpError> {
    let root = root.ok_or_else(|| OpError::new(ErrorKind::NotFound, "rename", to, "the root does not exist"))?;
    let open = |p: &RelPath| Beneath::open(&root, p.parent().as_bytes()).map_err(|e| link_refusal("rename", p, e));
    let names = (OsStr::from_bytes(from.file_name()), OsStr::from_bytes(to.file_name()));
    let from_dir = match from_dir {
        Some(dir) => dir,
        None => open(from)?,
    };
    // A temporary sits beside its target: one directory to open.
    let renamed = if from.parent() == to.parent() {
        rustix::fs::renameat(&from_dir.0, names.0, &from_dir.0, names.1)
    } else {
        rustix::fs::renameat(&from_dir.0, names.0, &open(to)?.0, names.1)
    };
    renamed.map_err(|e| link_refusal("rename", to, e.into()))
}

/// [`LocalBackend::at`]'s work, on the calling thread.
fn resolve_at<T>(
    root: Option<Arc<OwnedFd>>,
    op: &'static str,
    shown: &RelPath,
    work: impl FnOnce(&Beneath, &OsStr) -> std::io::Result<T>,
) -> Result<T, OpError> {
    resolve_keeping(root, op, shown, work).map(|(done, _)| done)
}

/// [`resolve_at`], keeping the parent directory open for later work.
fn resolve_keeping<T>(
    root: Option<Arc<OwnedFd>>,
    op: &'static str,
    shown: &RelPath,
    work: impl FnOnce(&Beneath, &OsStr) -> std::io::Result<T>,
) -> Result<(T, Beneath), OpError> {
    let root = root.ok_or_else(|| OpError::new(ErrorKind::NotFound, op, shown, "the root does not exist"))?;
    let parent = Beneath::open(&root, shown.parent().as_bytes()).map_err(|e| link_refusal(op, shown, e))?;
    let name = if shown.is_root() { OsStr::new(".") } else { OsStr::from_bytes(shown.file_name()) };
    let done = work(&parent, name).map_err(|e| link_refusal(op, shown, e))?;
    Ok((done, parent))
}

/// A directory opened below the root without following any symbolic link.
pub struct Beneath(OwnedFd);

impl Beneath {
    /// Opens `dir` (`/`-separated, relative; empty for the root itself).
    /// openat2 with RESOLVE_NO_SYMLINKS does it in one call; kernels
    /// without it (before 5.6) get one O_NOFOLLOW openat per component.
    pub fn open(root: &OwnedFd, dir: &[u8]) -> std::io::Result<Beneath> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let path = OsStr::from_bytes(if dir.is_empty() { b"." } else { dir });
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        for _ in 0..8 {
            match rustix::fs::openat2(root, path, flags, Mode::empty(), resolve) {
                Ok(fd) => return Ok(Beneath(fd)),
                // A rename raced the lookup: the kernel asks to try again.
                Err(rustix::io::Errno::AGAIN) => continue,
                Err(rustix::io::Errno::NOSYS) => break,
                Err(err) => return Err(err.into()),
            }
        }
        let mut current = rustix::fs::openat(root, ".", flags, Mode::empty())?;
        for part in dir.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            current = rustix::fs::openat(&current, OsStr::from_bytes(part), flags | OFlags::NOFOLLOW, Mode::empty())?;
        }
        Ok(Beneath(current))
    }

    /// Metadata of `name` itself (a link is not followed).
    fn metadata(&self, name: &OsStr) -> std::io::Result<fs::Metadata> {
        let fd = rustix::fs::openat(&self.0, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
        File::from(fd).metadata()
    }
}

/// ELOOP and ENOTDIR here mean a link (or a file) stands where a directory
/// was expected: say so instead of "too many levels of symbolic links".
fn link_refusal(op: &'static str, path: &RelPath, err: std::io::Error) -> OpError {
    match err.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::EXDEV) => OpError::new(
            ErrorKind::InvalidData,
            op,
            path,
            "a symbolic link stands on the way; barge never reads or writes through one",
        ),
        _ => OpError::io(op, path, err),
    }
}

/// The process umask. Read once, when a backend opens (before any file is
/// created), by setting and restoring it: POSIX has no read-only call.
fn current_umask() -> u32 {
    // SAFETY: umask is always safe to call; it only swaps a process value.
    let mask = unsafe { libc::umask(0o022) };
    // SAFETY: as above, restoring the value read.
    unsafe { libc::umask(mask) };
    mask
}

/// Runs filesystem work on the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, OpError> + Send + 'static) -> Result<T, OpError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| Err(OpError::new(ErrorKind::Other, "blocking task", "", join.to_string())))
}

fn entry_from_metadata(path: RelPath, meta: &fs::Metadata) -> Entry {
    let file_type = meta.file_type();
    let kind = if file_type.is_dir() {
        EntryKind::Dir
    } else if file_type.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::File
    };
    // Nanoseconds are in 0..1e9 and always fit a u32.
    let nanos = u32::try_from(meta.mtime_nsec()).unwrap_or(0);
    Entry {
        path,
        kind,
        size: if kind == EntryKind::Dir { 0 } else { meta.size() },
        mtime: Some(Mtime::from_unix(meta.mtime(), nanos)),
        inode: meta.ino(),
        coarse_mtime_s: 0,
        hash: None,
        link_target: None,
        // A link's own bits mean nothing on Linux (always 0777).
        mode: (kind != EntryKind::Symlink).then_some(meta.mode() & 0o7777),
        owner: Some(super::Owner { uid: meta.uid(), gid: meta.gid() }),
    }
}

/// One directory's children, sorted by name bytes (which is [`RelPath`]
/// tree order among siblings). `DirEntry::metadata` stats each child
/// relative to the open directory (`statx(dirfd, name)`), not by a full
/// path the kernel must resolve again: measured 27% less CPU than walkdir
/// on a 100,000-file no-op resync.
fn sorted_children(dir: &Path) -> std::io::Result<Vec<(std::ffi::OsString, std::io::Result<fs::Metadata>)>> {
    let mut children: Vec<_> =
        fs::read_dir(dir)?.filter_map(Result::ok).map(|entry| (entry.file_name(), entry.metadata())).collect();
    children.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(children)
}

/// Walks the tree depth first, each directory's children sorted by name:
/// the entries come out in tree order, so no sort is needed afterwards.
/// `arrived` is told of the entries listed, a few thousand at a time.
fn walk_blocking(root: &Path, arrived: &dyn Fn(u64)) -> Result<Listing, OpError> {
    const EVERY: usize = 4096;
    let mut listing = Listing::default();
    walk_blocking_into(root, &mut |item| {
        match item {
            WalkItem::Entry(entry) => {
                listing.entries.push(entry);
                if listing.entries.len().is_multiple_of(EVERY) {
                    arrived(EVERY as u64);
                }
            }
            WalkItem::Unreadable(path, err) => listing.unreadable.push((path, err)),
            WalkItem::Warning(warning) => listing.warnings.push(warning),
            WalkItem::Notice(notice) => listing.notices.push(notice),
            WalkItem::Retried(retried) => listing.retried.push(retried),
            WalkItem::Info(info) => listing.info.push(info),
            WalkItem::Failed(_) => {}
        }
        true
    })?;
    arrived((listing.entries.len() % EVERY) as u64);
    debug_assert!(listing.entries.is_sorted_by(|a, b| a.path <= b.path));
    Ok(listing)
}

/// [`walk_blocking`], each item handed to `emit` as it is found, in tree
/// order; stops early when `emit` returns false (its reader went away).
fn walk_blocking_into(root: &Path, emit: &mut dyn FnMut(WalkItem) -> bool) -> Result<(), OpError> {
    let top = sorted_children(root).map_err(|e| OpError::io("list", root.display(), e))?;
    let mut stack = vec![(RelPath::root(), top.into_iter())];
    loop {
        let next = match stack.last_mut() {
            None => break,
            Some((dir, children)) => children.next().map(|(name, meta)| (dir.join(name.as_bytes()), name, meta)),
        };
        let Some((joined, name, meta)) = next else {
            stack.pop();
            continue;
        };
        let path = match joined {
            Ok(path) => path,
            Err(why) => {
                if !emit(WalkItem::Warning(format!("skipped {}: {why}", crate::path::DisplayBytes(name.as_bytes())))) {
                    return Ok(());
                }
                continue;
            }
        };
        let meta = match meta {
            Ok(meta) => meta,
            // Vanished between readdir and stat: it is simply not there.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                if !emit(WalkItem::Unreadable(path.clone(), OpError::io("stat", &path, err))) {
                    return Ok(());
                }
                continue;
            }
        };
        let is_dir = meta.is_dir();
        let mut entry = entry_from_metadata(path.clone(), &meta);
        if entry.is_symlink() {
            match fs::read_link(path.to_local(root)) {
                Ok(target) => entry.link_target = Some(target.into_os_string().into_vec().into_boxed_slice()),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    if !emit(WalkItem::Warning(format!("{path}: cannot read the link's target: {err}"))) {
                        return Ok(());
                    }
                }
            }
        }
        if !emit(WalkItem::Entry(entry)) {
            return Ok(());
        }
        if is_dir {
            match sorted_children(&path.to_local(root)) {
                Ok(children) => stack.push((path, children.into_iter())),
                Err(err) => {
                    if !emit(WalkItem::Unreadable(path.clone(), OpError::io("list", &path, err))) {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}

/// Resolves the link at `real` for `--links follow`: its target below the
/// root (relative and absolute), with the target's metadata; or why it is
/// not followed.
fn follow_link(real: &Path, real_root: &Path, stack: &[Frame]) -> Result<(RelPath, PathBuf, fs::Metadata), String> {
    let target =
        fs::canonicalize(real).map_err(|e| format!("its target cannot be resolved (dangling or a loop): {e}"))?;
    let inside = target
        .strip_prefix(real_root)
        .ok()
        .and_then(|t| RelPath::parse(t.as_os_str().as_bytes()).ok())
        .ok_or("it points outside the source root")?;
    let meta = fs::metadata(&target).map_err(|e| format!("its target cannot be read: {e}"))?;
    if !meta.is_dir() && !meta.is_file() {
        return Err("it points to something that is neither a file nor a directory".into());
    }
    if meta.is_dir() && stack.iter().any(|f| f.id == (meta.dev(), meta.ino())) {
        return Err("it leads back to a directory above it (a loop)".into());
    }
    Ok((inside, target, meta))
}

/// A directory being listed by [`walk_following_blocking`].
struct Frame {
    /// Where its entries appear in the listing (through links).
    path: RelPath,
    /// Where it really is: below the canonical root, no link in it.
    real: PathBuf,
    /// (device, inode): a link back to a directory on the stack is a loop.
    id: (u64, u64),
    children: std::vec::IntoIter<(std::ffi::OsString, std::io::Result<fs::Metadata>)>,
}

/// `--links follow`: like [`walk_blocking`], but a link is listed as what
/// it points to, and a directory link is walked, when its target resolves
/// inside the root. Links that dangle, loop, lead back to a directory
/// above them, or point outside stay links, with a notice. Also returns
/// each followed link's link-free target, where reads are sent.
fn walk_following_blocking(root: &Path) -> Result<(Listing, HashMap<RelPath, RelPath>), OpError> {
    let real_root = fs::canonicalize(root).map_err(|e| OpError::io("list", root.display(), e))?;
    let root_meta = fs::metadata(&real_root).map_err(|e| OpError::io("list", root.display(), e))?;
    let top = sorted_children(&real_root).map_err(|e| OpError::io("list", root.display(), e))?;
    let mut listing = Listing::default();
    let mut followed = HashMap::new();
    let mut stack = vec![Frame {
        path: RelPath::root(),
        real: real_root.clone(),
        id: (root_meta.dev(), root_meta.ino()),
        children: top.into_iter(),
    }];
    while let Some(frame) = stack.last_mut() {
        let Some((name, meta)) = frame.children.next() else {
            stack.pop();
            continue;
        };
        let mut real = frame.real.join(&name);
        let path = match frame.path.join(name.as_bytes()) {
            Ok(path) => path,
            Err(why) => {
                listing.warnings.push(format!("skipped {}: {why}", crate::path::Shortened(name.as_bytes())));
                continue;
            }
        };
        let mut meta = match meta {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                listing.unreadable.push((path.clone(), OpError::io("stat", &path, err)));
                continue;
            }
        };
        if meta.file_type().is_symlink() {
            match follow_link(&real, &real_root, &stack) {
                Ok((inside, target, target_meta)) => {
                    followed.insert(path.clone(), inside);
                    real = target;
                    meta = target_meta;
                }
                Err(why) => {
                    // Stays a link, which the planner skips: nothing at its
                    // path on the destination is touched.
                    listing.notices.push(format!("{path}: symbolic link not followed: {why}"));
                    let mut entry = entry_from_metadata(path, &meta);
                    entry.link_target = fs::read_link(&real).ok().map(|t| t.into_os_string().into_vec().into());
                    listing.entries.push(entry);
                    continue;
                }
            }
        }
        listing.entries.push(entry_from_metadata(path.clone(), &meta));
        if meta.is_dir() {
            match sorted_children(&real) {
                Ok(children) => {
                    stack.push(Frame { path, real, id: (meta.dev(), meta.ino()), children: children.into_iter() })
                }
                Err(err) => listing.unreadable.push((path.clone(), OpError::io("list", &path, err))),
            }
        }
    }
    Ok((listing, followed))
}

#[async_trait]
impl Backend for LocalBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn ownership(&self) -> Option<&dyn Ownership> {
        Some(self)
    }

    fn segmented_writes(&self) -> Option<&dyn super::SegmentedWrite> {
        Some(self)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn list_dir(&self, dir: &RelPath) -> Result<Vec<Entry>, OpError> {
        let full = self.full(dir);
        let dir = dir.clone();
        blocking(move || {
            let mut entries = Vec::new();
            for item in fs::read_dir(&full).map_err(|e| OpError::io("list", &dir, e))? {
                let item = item.map_err(|e| OpError::io("list", &dir, e))?;
                let Ok(path) = dir.join(item.file_name().as_bytes()) else { continue };
                let meta = item.metadata().map_err(|e| OpError::io("stat", &path, e))?;
                entries.push(entry_from_metadata(path, &meta));
            }
            entries.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(entries)
        })
        .await
    }

    async fn walk(&self) -> Result<Listing, OpError> {
        if self.root_missing {
            return Ok(Listing::default());
        }
        let root = Arc::clone(&self.root);
        blocking(move || walk_blocking(&root, &|_| {})).await
    }

    async fn walk_counted(&self, arrived: super::Arrived) -> Result<Listing, OpError> {
        if self.root_missing {
            return Ok(Listing::default());
        }
        let root = Arc::clone(&self.root);
        blocking(move || walk_blocking(&root, &*arrived)).await
    }

    async fn walk_streamed(&self, tx: WalkSender, _recall: Option<crate::backend::recall::RecallReceiver>) {
        if self.root_missing {
            return;
        }
        let root = Arc::clone(&self.root);
        let failed_tx = tx.clone();
        let walked = blocking(move || {
            let mut out = WalkOut::new(tx);
            walk_blocking_into(&root, &mut |item| out.blocking_send(item))?;
            out.blocking_flush();
            Ok(())
        })
        .await;
        if let Err(err) = walked {
            let _ = failed_tx.send(vec![WalkItem::Failed(err)]).await;
        }
    }

    async fn stat(&self, path: &RelPath) -> Result<Option<Entry>, OpError> {
        let rel = path.clone();
        let found =
            self.at("stat", path, move |dir, name| dir.metadata(name).map(|m| entry_from_metadata(rel, &m))).await;
        match found {
            Ok(entry) => Ok(Some(entry)),
            Err(err) if err.kind == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn open_read(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileReader>, OpError> {
        self.open_reader(path, offset, 0).await
    }

    /// A file that fits one chunk is read whole (and to its end) on the
    /// open's trip to the blocking pool: a small file costs one trip, not
    /// three (open, read, read the end).
    async fn open_read_sized(&self, path: &RelPath, offset: u64, size: u64) -> Result<Box<dyn FileReader>, OpError> {
        // The buffer the copy would give the first read (one byte more
        // than the listing says, to see whether it grew).
        let ahead = super::one_chunk(size, offset).unwrap_or(0);
        self.open_reader(path, offset, ahead).await
    }

    async fn open_write(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileWriter>, OpError> {
        let (root, shown) = (self.root_dir.clone(), path.clone());
        // Opened by the first write (or the finish or write_last of a
        // small file), on the same trip to the blocking pool. Its
        // directory stays open for write_last's rename.
        let open: Opener = Box::new(move || {
            resolve_keeping(root, "create", &shown, move |dir, name| {
                let mut flags = OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                if offset == 0 {
                    flags |= OFlags::TRUNC;
                }
                let mut file = File::from(rustix::fs::openat(&dir.0, name, flags, Mode::from_raw_mode(0o600))?);
                hold_while_written(&file);
                if offset > 0 {
                    file.set_len(offset)?;
                    file.seek(SeekFrom::Start(offset))?;
                }
                Ok(file)
            })
            .map(|(file, dir)| (file, Some(dir)))
        });
        let writer = LocalWriter::new(path, offset, open, self.file_mode, self.root_dir.clone());
        // A whole file from its start: its writer sees every byte of it.
        Ok(Box::new(if offset == 0 { writer.grouped(Arc::clone(&self.group)) } else { writer }))
    }

    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), OpError> {
        let root = self.root_dir.clone();
        let (from, to) = (from.clone(), to.clone());
        blocking(move || rename_beneath(root, &from, &to, None)).await
    }

    /// Removes a file or a symbolic link (the link itself, never its target).
    async fn remove_file(&self, path: &RelPath) -> Result<(), OpError> {
        let removed = self.at("delete", path, |dir, name| Ok(rustix::fs::unlinkat(&dir.0, name, AtFlags::empty())?));
        match removed.await {
            Err(err) if err.kind != ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// A writer holds a shared lock on its temporary until it closes it
    /// (the kernel drops it when the writer dies): a temporary whose
    /// exclusive lock can be had is abandoned.
    async fn remove_abandoned_temp(&self, path: &RelPath) -> Result<bool, OpError> {
        let removed = self.at("delete", path, |dir, name| {
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let file = File::from(rustix::fs::openat(&dir.0, name, flags, Mode::empty())?);
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
                Err(std::fs::TryLockError::Error(err)) => return Err(err),
            }
            rustix::fs::unlinkat(&dir.0, name, AtFlags::empty())?;
            Ok(true)
        });
        match removed.await {
            Err(err) if err.kind == ErrorKind::NotFound => Ok(true),
            other => other,
        }
    }

    async fn remove_dir(&self, path: &RelPath) -> Result<(), OpError> {
        let removed = self.at("rmdir", path, |dir, name| Ok(rustix::fs::unlinkat(&dir.0, name, AtFlags::REMOVEDIR)?));
        match removed.await {
            Err(err) if err.kind != ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    async fn mkdir(&self, path: &RelPath) -> Result<(), OpError> {
        self.at("mkdir", path, |dir, name| match rustix::fs::mkdirat(&dir.0, name, Mode::from_raw_mode(0o777)) {
            Ok(()) => Ok(()),
            // Already a directory is fine; a link to one is not.
            Err(rustix::io::Errno::EXIST) if dir.metadata(name).is_ok_and(|m| m.is_dir()) => Ok(()),
            Err(err) => Err(err.into()),
        })
        .await
    }

    async fn set_mtime(&self, path: &RelPath, mtime: Mtime) -> Result<(), OpError> {
        self.at("set mtime", path, move |dir, name| {
            let times = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
                last_modification: rustix::fs::Timespec { tv_sec: mtime.secs(), tv_nsec: mtime.subsec_nanos().into() },
            };
            // On a link this sets the link's own time, never its target's.
            Ok(rustix::fs::utimensat(&dir.0, name, &times, AtFlags::SYMLINK_NOFOLLOW)?)
        })
        .await
    }

    /// Through an `O_PATH` descriptor of the entry itself, never a link:
    /// Linux cannot change a link's own bits, and `chmod` by name would
    /// follow one put there since the listing.
    async fn set_mode(&self, path: &RelPath, mode: u32) -> Result<(), OpError> {
        self.at("chmod", path, move |dir, name| {
            let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(&dir.0, name, flags, Mode::empty())?;
            if rustix::fs::fstat(&fd)?.st_mode & 0o170_000 == 0o120_000 {
                return Err(std::io::Error::other("a symbolic link is there now"));
            }
            let by_fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
            Ok(rustix::fs::chmodat(rustix::fs::CWD, by_fd.as_str(), Mode::from_raw_mode(mode), AtFlags::empty())?)
        })
        .await
    }

    async fn read_link(&self, path: &RelPath) -> Result<Vec<u8>, OpError> {
        self.at("read link", path, |dir, name| Ok(rustix::fs::readlinkat(&dir.0, name, Vec::new())?.into_bytes())).await
    }

    async fn make_symlink(&self, path: &RelPath, target: &[u8]) -> Result<(), OpError> {
        let target = target.to_vec();
        self.at("symlink", path, move |dir, name| Ok(rustix::fs::symlinkat(OsStr::from_bytes(&target), &dir.0, name)?))
            .await
    }

    async fn walk_following_links(&self) -> Result<Listing, OpError> {
        if self.root_missing {
            return Ok(Listing::default());
        }
        let root = Arc::clone(&self.root);
        let (listing, followed) = blocking(move || walk_following_blocking(&root)).await?;
        *self.followed.write().unwrap_or_else(|p| p.into_inner()) = followed;
        Ok(listing)
    }

    async fn hash_files(&self, paths: Vec<RelPath>, kind: HashKind) -> Vec<Result<Vec<u8>, OpError>> {
        let root = Arc::clone(&self.root);
        let count = paths.len();
        let paths: Vec<RelPath> = paths.iter().map(|p| self.resolved(p)).collect();
        tokio::task::spawn_blocking(move || crate::hash::hash_local_files_as(&root, &paths, kind)).await.unwrap_or_else(
            |join| (0..count).map(|_| Err(OpError::new(ErrorKind::Other, "hash", "", join.to_string()))).collect(),
        )
    }
}

struct LocalReader {
    /// Taken while a blocking read runs, so the file can move into it.
    file: Option<File>,
    path: RelPath,
    /// What the open read ahead, for the first `read`.
    ahead: Option<Vec<u8>>,
    /// A read met the end of the file: the next ones return nothing.
    at_end: bool,
}

/// Fills `buf` (cleared first) to its capacity, or to the end of the file;
/// true when the end was met. Straight into the spare capacity, one read a
/// chunk where the file has it (`read_to_end` grows its reads from 8 KiB:
/// six calls for 256 KiB).
fn fill(file: &File, buf: &mut Vec<u8>, path: &RelPath) -> Result<bool, OpError> {
    buf.clear();
    if buf.capacity() == 0 {
        buf.reserve(1);
    }
    while buf.len() < buf.capacity() {
        match rustix::io::read(file, rustix::buffer::spare_capacity(&mut *buf)) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(err) => return Err(OpError::io("read", path, err.into())),
        }
    }
    Ok(false)
}

impl LocalBackend {
    /// A writer of `path` from `offset`, whose file `open` makes at its first use.
    fn writer(&self, path: &RelPath, offset: u64, open: Opener) -> Box<dyn FileWriter> {
        Box::new(LocalWriter::new(path, offset, open, self.file_mode, self.root_dir.clone()))
    }

    /// Opens `path` at `offset`, reading its first `ahead` bytes at once
    /// when `ahead` is not 0.
    async fn open_reader(&self, path: &RelPath, offset: u64, ahead: usize) -> Result<Box<dyn FileReader>, OpError> {
        let (root, resolved, shown) = (self.root_dir.clone(), self.resolved(path), path.clone());
        // Allocated here, not on the pool's thread: glibc would take it
        // from that thread's own arena, and a dozen arenas holding freed
        // chunks showed as 6 MiB more peak RSS on 10,000 small uploads.
        let mut buf = Vec::with_capacity(ahead);
        let (file, ahead, at_end) = blocking(move || {
            let file = resolve_at(root, "open", &resolved, move |dir, name| {
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let mut file = File::from(rustix::fs::openat(&dir.0, name, flags, Mode::empty())?);
                if offset > 0 {
                    file.seek(SeekFrom::Start(offset))?;
                }
                Ok(file)
            })?;
            if ahead == 0 {
                return Ok((file, None, false));
            }
            let at_end = fill(&file, &mut buf, &shown)?;
            Ok((file, Some(buf), at_end))
        })
        .await?;
        Ok(Box::new(LocalReader { file: Some(file), path: path.clone(), ahead, at_end }))
    }
}

#[async_trait]
impl FileReader for LocalReader {
    async fn read(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        if let Some(ahead) = self.ahead.take() {
            return Ok(ahead);
        }
        if self.at_end {
            buf.clear();
            return Ok(buf);
        }
        let file = self.file.take().ok_or_else(|| lost_handle("read", &self.path))?;
        let path = self.path.clone();
        // Fill the whole chunk (or reach EOF): fewer round trips to the pool.
        let (file, buf, at_end) = blocking(move || {
            let at_end = fill(&file, &mut buf, &path)?;
            Ok((file, buf, at_end))
        })
        .await?;
        self.file = Some(file);
        self.at_end = at_end;
        Ok(buf)
    }
}

/// Numeric ids as rustix takes them.
mod ids {
    pub fn uid(id: u32) -> rustix::fs::Uid {
        rustix::fs::Uid::from_raw(id)
    }
    pub fn gid(id: u32) -> rustix::fs::Gid {
        rustix::fs::Gid::from_raw(id)
    }
}

#[async_trait]
impl Ownership for LocalBackend {
    /// By name in its directory, never following a link (a link gets its
    /// own owner, as `lchown`).
    async fn set_owner(&self, path: &RelPath, uid: Option<u32>, gid: Option<u32>) -> Result<(), OpError> {
        self.at("chown", path, move |dir, name| {
            Ok(rustix::fs::chownat(&dir.0, name, uid.map(ids::uid), gid.map(ids::gid), AtFlags::SYMLINK_NOFOLLOW)?)
        })
        .await
    }

    fn name_of(&self, kind: IdKind, id: u32) -> Option<Vec<u8>> {
        super::owners::system_name_of(kind, id)
    }

    fn id_of(&self, kind: IdKind, name: &[u8]) -> Option<u32> {
        super::owners::system_id_of(kind, name)
    }
}

#[async_trait]
impl super::SegmentedWrite for LocalBackend {
    /// Created (truncated), then given its length as a sparse file. Not
    /// fallocate: on tmpfs it zero-fills every page first (0.2 s per GiB
    /// measured here), only for the segments to write them all again.
    async fn create_sized(&self, path: &RelPath, size: u64) -> Result<(), OpError> {
        self.at("create", path, move |dir, name| {
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let file = File::from(rustix::fs::openat(&dir.0, name, flags, Mode::from_raw_mode(0o600))?);
            file.set_len(size)
        })
        .await
    }

    /// Positional: opened without truncating, at `offset`; each segment
    /// has its own descriptor, so their writes never share a file position.
    async fn open_write_segment(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileWriter>, OpError> {
        let (root, shown) = (self.root_dir.clone(), path.clone());
        let open: Opener = Box::new(move || {
            resolve_at(root, "write", &shown, move |dir, name| {
                let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let mut file = File::from(rustix::fs::openat(&dir.0, name, flags, Mode::empty())?);
                hold_while_written(&file);
                file.seek(SeekFrom::Start(offset))?;
                Ok(file)
            })
            .map(|file| (file, None))
        });
        Ok(self.writer(path, offset, open))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(path: &str) -> RelPath {
        RelPath::parse(path.as_bytes()).unwrap()
    }

    /// Whatever the planner decided, no operation goes through a link that
    /// stands where a directory should be (`sub -> /victim`).
    #[tokio::test]
    async fn no_operation_reads_or_writes_through_a_symlinked_directory() {
        let scratch = tempfile::tempdir().unwrap();
        let (root, victim) = (scratch.path().join("root"), scratch.path().join("victim"));
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&victim).unwrap();
        fs::write(victim.join("secret"), b"outside").unwrap();
        std::os::unix::fs::symlink(&victim, root.join("sub")).unwrap();
        let local = LocalBackend::open(root.clone(), MissingRoot::Fail).await.unwrap();

        let refused = |r: Result<(), OpError>| {
            let err = r.expect_err("went through the link");
            assert_eq!(err.kind, ErrorKind::InvalidData, "{err}");
            assert!(err.message.contains("symbolic link"), "{err}");
        };
        // The file is created by the first write.
        refused(async { local.open_write(&p("sub/new"), 0).await?.write(b"x".to_vec()).await.map(drop) }.await);
        refused(async { local.open_write(&p("sub/new"), 0).await?.finish(None).await.map(drop) }.await);
        refused(local.open_read(&p("sub/secret"), 0).await.map(drop));
        refused(local.mkdir(&p("sub/dir")).await);
        refused(local.make_symlink(&p("sub/l"), b"x").await);
        refused(local.set_mtime(&p("sub/secret"), Mtime::from_unix(1, 0)).await);
        refused(local.remove_file(&p("sub/secret")).await);
        refused(local.rename(&p("sub/secret"), &p("stolen")).await);
        refused(local.read_link(&p("sub/secret")).await.map(drop));
        refused(local.stat(&p("sub/secret")).await.map(drop));
        // mkdir of the link's own name is not "already a directory".
        assert!(local.mkdir(&p("sub")).await.is_err());
        // Removing the link removes the link, never what it points to.
        local.remove_file(&p("sub")).await.unwrap();
        assert_eq!(fs::read(victim.join("secret")).unwrap(), b"outside");
        assert_eq!(fs::read_dir(&victim).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn links_are_made_and_read_byte_exact() {
        let scratch = tempfile::tempdir().unwrap();
        let local = LocalBackend::open(scratch.path().to_path_buf(), MissingRoot::Fail).await.unwrap();
        let target: &[u8] = b"../../\xff\xfe/abs -> x";
        local.make_symlink(&p("l"), target).await.unwrap();
        assert_eq!(local.read_link(&p("l")).await.unwrap(), target);
        let listed = local.walk().await.unwrap();
        assert_eq!(listed.entries[0].link_target.as_deref(), Some(target));
        assert!(local.make_symlink(&p("l"), b"again").await.is_err(), "an existing name is never overwritten");
    }

    #[tokio::test]
    async fn a_counted_walk_tells_every_entry_as_it_goes() {
        let scratch = tempfile::tempdir().unwrap();
        for d in 0..9 {
            fs::create_dir(scratch.path().join(format!("d{d}"))).unwrap();
            for f in 0..1000 {
                fs::write(scratch.path().join(format!("d{d}/f{f}")), b"").unwrap();
            }
        }
        let local = LocalBackend::open(scratch.path().to_path_buf(), MissingRoot::Fail).await.unwrap();
        let told = Arc::new(std::sync::Mutex::new(Vec::new()));
        let arrived = {
            let told = Arc::clone(&told);
            Arc::new(move |n| told.lock().unwrap().push(n))
        };
        let listed = local.walk_counted(arrived).await.unwrap();
        assert_eq!(listed.entries.len(), 9_009);
        assert_eq!(listed.entries, local.walk().await.unwrap().entries);
        let told = told.lock().unwrap();
        assert_eq!(told.iter().sum::<u64>(), 9_009, "{told:?}");
        assert!(told.len() > 1, "told as it went, not once at the end: {told:?}");
    }
}
