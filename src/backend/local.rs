//! The local filesystem. Every filesystem call runs on tokio's blocking pool
//! (or rayon, for hashing), never on the async workers.

use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Backend, Capabilities, Entry, EntryKind, FileReader, FileWriter, HashKind, Listing, MissingRoot, Mtime};
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;

pub struct LocalBackend {
    root: Arc<PathBuf>,
    /// The root did not exist and `MissingRoot::Empty` was asked for.
    root_missing: bool,
    caps: Capabilities,
    /// Mode of finished files: what a plain `create` would give (0666 less
    /// the umask). Temporaries are 0600 until they are complete.
    file_mode: u32,
}

impl LocalBackend {
    pub async fn open(root: PathBuf, missing_root: MissingRoot) -> Result<Self, OpError> {
        let shown = root.display().to_string();
        let checked = root.clone();
        let root_missing = blocking(move || match fs::metadata(&checked) {
            Ok(meta) if meta.is_dir() => Ok(false),
            Ok(_) => Err(OpError::new(ErrorKind::InvalidData, "open", checked.display(), "not a directory")),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => match missing_root {
                MissingRoot::Fail => Err(OpError::io("open", checked.display(), err)),
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
        Ok(LocalBackend {
            root: Arc::new(root),
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
            },
            file_mode: 0o666 & !current_umask(),
        })
    }

    fn full(&self, path: &RelPath) -> PathBuf {
        path.to_local(&self.root)
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
fn walk_blocking(root: &Path) -> Result<Listing, OpError> {
    let mut listing = Listing::default();
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
                listing.warnings.push(format!("skipped {}: {why}", crate::path::DisplayBytes(name.as_bytes())));
                continue;
            }
        };
        let meta = match meta {
            Ok(meta) => meta,
            // Vanished between readdir and stat: it is simply not there.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                listing.unreadable.push((path.clone(), OpError::io("stat", &path, err)));
                continue;
            }
        };
        let is_dir = meta.is_dir();
        listing.entries.push(entry_from_metadata(path.clone(), &meta));
        if is_dir {
            match sorted_children(&path.to_local(root)) {
                Ok(children) => stack.push((path, children.into_iter())),
                Err(err) => listing.unreadable.push((path.clone(), OpError::io("list", &path, err))),
            }
        }
    }
    debug_assert!(listing.entries.is_sorted_by(|a, b| a.path <= b.path));
    Ok(listing)
}

#[async_trait]
impl Backend for LocalBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
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
        blocking(move || walk_blocking(&root)).await
    }

    async fn stat(&self, path: &RelPath) -> Result<Option<Entry>, OpError> {
        let full = self.full(path);
        let path = path.clone();
        blocking(move || match fs::symlink_metadata(&full) {
            Ok(meta) => Ok(Some(entry_from_metadata(path, &meta))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(OpError::io("stat", &path, err)),
        })
        .await
    }

    async fn open_read(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileReader>, OpError> {
        let full = self.full(path);
        let shown = path.clone();
        let file = blocking(move || {
            let mut file = File::open(&full).map_err(|e| OpError::io("open", &shown, e))?;
            if offset > 0 {
                file.seek(SeekFrom::Start(offset)).map_err(|e| OpError::io("seek", &shown, e))?;
            }
            Ok(file)
        })
        .await?;
        Ok(Box::new(LocalReader { file: Some(file), path: path.clone() }))
    }

    async fn open_write(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileWriter>, OpError> {
        let full = self.full(path);
        let shown = path.clone();
        let file = blocking(move || {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(offset == 0)
                .mode(0o600)
                .open(&full)
                .map_err(|e| OpError::io("create", &shown, e))?;
            if offset > 0 {
                file.set_len(offset).map_err(|e| OpError::io("truncate", &shown, e))?;
                file.seek(SeekFrom::Start(offset)).map_err(|e| OpError::io("seek", &shown, e))?;
            }
            Ok(file)
        })
        .await?;
        Ok(Box::new(LocalWriter { file: Some(file), path: path.clone(), mode: self.file_mode }))
    }

    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), OpError> {
        let (full_from, full_to) = (self.full(from), self.full(to));
        let shown = to.clone();
        blocking(move || fs::rename(&full_from, &full_to).map_err(|e| OpError::io("rename", &shown, e))).await
    }

    async fn remove_file(&self, path: &RelPath) -> Result<(), OpError> {
        let full = self.full(path);
        let shown = path.clone();
        blocking(move || match fs::remove_file(&full) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(OpError::io("delete", &shown, err)),
            _ => Ok(()),
        })
        .await
    }

    async fn remove_dir(&self, path: &RelPath) -> Result<(), OpError> {
        let full = self.full(path);
        let shown = path.clone();
        blocking(move || match fs::remove_dir(&full) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(OpError::io("rmdir", &shown, err)),
            _ => Ok(()),
        })
        .await
    }

    async fn mkdir(&self, path: &RelPath) -> Result<(), OpError> {
        let full = self.full(path);
        let shown = path.clone();
        blocking(move || match fs::create_dir(&full) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && full.is_dir() => Ok(()),
            Err(err) => Err(OpError::io("mkdir", &shown, err)),
        })
        .await
    }

    async fn set_mtime(&self, path: &RelPath, mtime: Mtime) -> Result<(), OpError> {
        let full = self.full(path);
        let shown = path.clone();
        blocking(move || {
            // Opening read-only works for directories too, and futimens on the
            // descriptor never follows a symlink swapped in afterwards.
            let file = File::open(&full).map_err(|e| OpError::io("set mtime", &shown, e))?;
            file.set_times(FileTimes::new().set_modified(mtime.to_system_time()))
                .map_err(|e| OpError::io("set mtime", &shown, e))
        })
        .await
    }

    async fn hash_files(&self, paths: Vec<RelPath>, kind: HashKind) -> Vec<Result<Vec<u8>, OpError>> {
        let root = Arc::clone(&self.root);
        let count = paths.len();
        tokio::task::spawn_blocking(move || crate::hash::hash_local_files_as(&root, &paths, kind)).await.unwrap_or_else(
            |join| (0..count).map(|_| Err(OpError::new(ErrorKind::Other, "hash", "", join.to_string()))).collect(),
        )
    }
}

struct LocalReader {
    /// Taken while a blocking read runs, so the file can move into it.
    file: Option<File>,
    path: RelPath,
}

#[async_trait]
impl FileReader for LocalReader {
    async fn read(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        let mut file = self.file.take().ok_or_else(|| lost_handle("read", &self.path))?;
        let path = self.path.clone();
        let (file, buf) = blocking(move || {
            buf.clear();
            let want = buf.capacity().max(1);
            // Fill the whole chunk (or reach EOF): fewer round trips to the pool.
            (&mut file).take(want as u64).read_to_end(&mut buf).map_err(|e| OpError::io("read", &path, e))?;
            Ok((file, buf))
        })
        .await?;
        self.file = Some(file);
        Ok(buf)
    }
}

struct LocalWriter {
    file: Option<File>,
    path: RelPath,
    mode: u32,
}

fn lost_handle(op: &'static str, path: &RelPath) -> OpError {
    OpError::new(ErrorKind::Other, op, path, "file handle lost after an earlier failure")
}

#[async_trait]
impl FileWriter for LocalWriter {
    async fn write(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        let mut file = self.file.take().ok_or_else(|| lost_handle("write", &self.path))?;
        let path = self.path.clone();
        let (file, buf) = blocking(move || {
            file.write_all(&buf).map_err(|e| OpError::io("write", &path, e))?;
            buf.clear();
            Ok((file, buf))
        })
        .await?;
        self.file = Some(file);
        Ok(buf)
    }

    async fn finish(mut self: Box<Self>, mtime: Option<Mtime>) -> Result<Option<Mtime>, OpError> {
        let file = self.file.take().ok_or_else(|| lost_handle("finish", &self.path))?;
        let path = self.path.clone();
        let mode = self.mode;
        blocking(move || {
            file.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| OpError::io("chmod", &path, e))?;
            if let Some(mtime) = mtime {
                file.set_times(FileTimes::new().set_modified(mtime.to_system_time()))
                    .map_err(|e| OpError::io("set mtime", &path, e))?;
            }
            file.sync_all().map_err(|e| OpError::io("fsync", &path, e))?;
            Ok(mtime)
        })
        .await
    }
}
