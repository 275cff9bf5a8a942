//! Atomic commit: a file is written under a temporary name beside its final
//! name ([`crate::backend::temp`]), made durable, given its mtime, and only
//! then renamed into place. A final name never holds a partial file,
//! whatever kills the run.

use crate::backend::temp::temp_path;
use crate::backend::{Backend, Entry, Finished, HashKind, Mtime, ServerCopy};
use crate::backend::{CHUNK_SIZE, one_chunk};
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;
use crate::throttle::Throttle;

mod segments;
use segments::copy_segmented;
pub use segments::{DEFAULT_SEGMENTS, DEFAULT_THRESHOLD, Segmenting, SpareStreams, ranges};

/// Resuming checks that this much of the partial file, just before the
/// resume point, matches the source.
const RESUME_VERIFY_BYTES: u64 = 64 * 1024;

/// What a committed copy left on the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Bytes moved in this attempt (less than the size when resumed).
    pub bytes_moved: u64,
    pub dst_size: u64,
    /// The destination's mtime after the commit, when known.
    pub dst_mtime: Option<Mtime>,
    /// Written straight to the final name (`--inplace`, or renames refused).
    pub in_place: bool,
    /// `--verify` compared the content, with this algorithm.
    pub verified: Option<HashKind>,
    /// Byte ranges copied at once (1: one stream).
    pub segments: usize,
    /// The permission bits the copy was given, when it was given any.
    pub dst_mode: Option<u32>,
}

/// `--backup-dir`: a directory inside the destination where replaced and
/// deleted files are moved, at the same relative path, instead of being
/// destroyed. A rename, so it costs no copy; the directory is left out of
/// the sync itself (see the filter the command line adds).
#[derive(Debug)]
pub struct BackupDir {
    root: RelPath,
    /// Directories already made in this run.
    made: std::sync::Mutex<std::collections::HashSet<RelPath>>,
}

impl BackupDir {
    pub fn new(root: RelPath) -> BackupDir {
        BackupDir { root, made: std::sync::Mutex::new(std::collections::HashSet::new()) }
    }

    /// Where `path` is kept.
    pub fn target(&self, path: &RelPath) -> Result<RelPath, OpError> {
        let mut target = self.root.clone();
        for component in path.components() {
            target = target
                .join(component)
                .map_err(|e| OpError::new(ErrorKind::InvalidData, "backup", path, e.to_string()))?;
        }
        Ok(target)
    }

    /// Moves `path` into the backup directory. A file already gone (an
    /// earlier attempt moved it) is fine; anything else that prevents the
    /// move fails the action, so nothing is overwritten or deleted unkept.
    pub async fn keep(&self, dst: &dyn Backend, path: &RelPath) -> Result<(), OpError> {
        let target = self.target(path)?;
        self.make_parents(dst, &target).await?;
        match dst.rename(path, &target).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind == ErrorKind::NotFound => match dst.stat(path).await? {
                None => Ok(()),
                Some(_) => Err(err),
            },
            Err(err) => Err(err),
        }
    }

    async fn make_parents(&self, dst: &dyn Backend, target: &RelPath) -> Result<(), OpError> {
        let mut dir = RelPath::root();
        for component in target.parent().components() {
            dir = dir
                .join(component)
                .map_err(|e| OpError::new(ErrorKind::InvalidData, "backup", target, e.to_string()))?;
            if self.made.lock().is_ok_and(|made| made.contains(&dir)) {
                continue;
            }
            match dst.mkdir(&dir).await {
                Ok(()) => {}
                Err(err) if err.kind == ErrorKind::AlreadyExists => {}
                Err(err) => match dst.stat(&dir).await {
                    Ok(Some(entry)) if entry.is_dir() => {}
                    _ => return Err(err),
                },
            }
            if let Ok(mut made) = self.made.lock() {
                made.insert(dir.clone());
            }
        }
        Ok(())
    }
}

/// Hears of a retry: its number (from 1) and the error that caused it.
pub type OnRetry<'a> = dyn Fn(u32, &OpError) + Send + Sync + 'a;

/// How a file is committed.
#[derive(Clone, Copy, Default)]
pub struct CopyOptions<'a> {
    pub throttle: Option<&'a Throttle>,
    /// `--backup-dir`, and whether this copy replaces a destination file
    /// (which is then kept there just before the new one takes its name).
    pub backup: Option<&'a BackupDir>,
    pub replaces: bool,
    /// `--verify`: the written file is compared with the source before it
    /// takes its final name (server hashes when both sides have one, else
    /// both read back and blake3-hashed).
    pub verify: bool,
    /// `--fxp`: between two FTP servers, the data goes server to server.
    pub fxp: bool,
    /// `--inplace`: write straight to the final name (no temporary, no
    /// rename; a killed run leaves a partial file there).
    pub inplace: bool,
    /// `--segments`, `--segment-threshold`: large files in parallel ranges.
    pub segmenting: Segmenting,
    /// The run's streams beyond one per file: a segmented copy takes its
    /// extra segments from them (none: each takes all it asks for).
    pub spare_streams: Option<&'a SpareStreams>,
    /// Hears of each retry of one segment (its number, the error).
    pub on_segment_retry: Option<&'a OnRetry<'a>>,
    /// The permission bits a copy keeps from its source (see
    /// `EngineConfig::perms`); `None`: the destination's defaults.
    pub perms: Option<&'a crate::perms::Perms>,
    /// The ids a copy keeps (`--owner`, `--group`), already the
    /// destination's.
    pub owners: crate::perms::Owners,
}

/// Copies `src` to the same path on `dst`, atomically. `resume_from` is the
/// length of a partial temporary to continue, 0 to start afresh; a partial
/// whose tail does not match the source is started afresh anyway.
///
/// A destination that refuses renames gets the file written in place
/// instead, and [`Committed::in_place`] says so.
pub async fn copy_file(
    src_backend: &dyn Backend,
    dst_backend: &dyn Backend,
    src: &Entry,
    resume_from: u64,
    options: CopyOptions<'_>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<Committed, OpError> {
    let committed = copy_by_the_way_it_allows(src_backend, dst_backend, src, resume_from, options, on_bytes).await?;
    // Asked after the commit: a server that refused its first SITE CHMOD
    // no longer claims it can set modes.
    Ok(Committed { dst_mode: wanted_mode(dst_backend, src, &options), ..committed })
}

/// [`copy_file`] by the first way `dst_backend` and the options allow.
async fn copy_by_the_way_it_allows(
    src_backend: &dyn Backend,
    dst_backend: &dyn Backend,
    src: &Entry,
    resume_from: u64,
    options: CopyOptions<'_>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<Committed, OpError> {
    let text = |backend: &dyn Backend| backend.text_mode().is_some_and(|text| text.is_text(&src.path));
    if text(src_backend) || text(dst_backend) {
        return copy_text(src_backend, dst_backend, src, options, on_bytes).await;
    }
    if options.fxp
        && let (Some(from), Some(to)) = (src_backend.server_copy(), dst_backend.server_copy())
    {
        return copy_server_to_server(from, to, src_backend, dst_backend, src, options, on_bytes).await;
    }
    if options.inplace || dst_backend.renames_refused() {
        return copy_in_place(src_backend, dst_backend, src, options, on_bytes).await;
    }
    // A partial to resume is continued as one stream: cheaper than the
    // whole file again in segments.
    let segments = options.segmenting.segments_for(src_backend, dst_backend, src.size);
    if let Some(writes) = dst_backend.segmented_writes()
        && resume_from == 0
        && segments > 1
        && writes.works(&src.path).await
    {
        // Held until the copy returns.
        let held = options
            .spare_streams
            .filter(|_| !dst_backend.capabilities().windowed_writes)
            .map(|spare| spare.take(segments - 1));
        let segments = held.as_ref().map_or(segments, |held| 1 + held.count());
        if segments > 1 {
            return copy_segmented(src_backend, dst_backend, writes, src, segments, options, on_bytes).await;
        }
    }
    let temp = temp_path(&src.path);
    let mut offset = resume_from.min(src.size);
    if offset > 0 && !tails_match(src_backend, dst_backend, &src.path, &temp, offset).await? {
        offset = 0;
    }
    // Where the destination sets the time with the rename (FTP: one
    // pipelined batch), `finish` leaves it, and the bits, to `commit_temp`.
    let at_commit = dst_backend.capabilities().mtime_at_commit;
    // Committed with the finish when nothing has to come in between (and
    // the time is not left to commit_temp).
    let backs_up = options.backup.is_some() && options.replaces;
    let nothing_between = !(options.verify || offset > 0 || backs_up || at_commit);
    let writing = Writing {
        target: &temp,
        offset,
        mtime: if at_commit { None } else { wanted_mtime(dst_backend, src) },
        commit_to: nothing_between.then_some(&src.path),
        keep: if at_commit {
            Keep { mode: None, owner: wanted_owner(dst_backend, src, &options) }
        } else {
            Keep::wanted(dst_backend, src, &options)
        },
    };
    let finished = stream(src_backend, dst_backend, src, writing, options, on_bytes).await?;
    let (mut dst_mtime, mut verified) = (finished.mtime, None);
    if !finished.committed {
        if options.verify {
            verified = Some(verify_content(src_backend, dst_backend, src, &temp).await?);
        } else if offset > 0 {
            verify_resumed(src_backend, dst_backend, src, &temp).await?;
        }
        keep_replaced(dst_backend, src, options).await?;
        let (wanted, mode) = match at_commit {
            true => (wanted_mtime(dst_backend, src), wanted_mode(dst_backend, src, &options)),
            false => (None, None),
        };
        dst_mtime = match dst_backend.commit_temp(&temp, &src.path, wanted, mode).await {
            Ok(set) => set.or(dst_mtime),
            Err(err) if matches!(err.kind, ErrorKind::Unsupported | ErrorKind::PermissionDenied) => {
                // The server will not rename: remove the temporary and write
                // the final name directly (the engine warns once).
                let _ = dst_backend.remove_file(&temp).await;
                return copy_in_place(src_backend, dst_backend, src, options, on_bytes).await;
            }
            Err(err) => return Err(err),
        };
    }
    let dst_mtime = observed_mtime(dst_backend, &src.path, dst_mtime).await;
    Ok(Committed {
        bytes_moved: src.size - offset,
        dst_size: src.size,
        dst_mtime,
        in_place: false,
        verified,
        segments: 1,
        dst_mode: None,
    })
}

/// `--fxp`: the source server sends the file straight to the destination
/// server; then the same checks and commit as any copy (length, optional
/// verification, mtime, rename). Never resumed: FXP starts at 0.
async fn copy_server_to_server(
    from: &dyn ServerCopy,
    to: &dyn ServerCopy,
    src_backend: &dyn Backend,
    dst_backend: &dyn Backend,
    src: &Entry,
    options: CopyOptions<'_>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<Committed, OpError> {
    let (target, in_place) = fresh_target(dst_backend, src, options).await?;
    from.send_to(to, &src.path, &target).await?;
    let landed = dst_backend.stat(&target).await?.map(|e| e.size);
    if landed != Some(src.size) {
        if !in_place {
            let _ = dst_backend.remove_file(&target).await;
        }
        return Err(OpError::new(
            ErrorKind::Temporary,
            "fxp",
            &src.path,
            format!("the destination holds {landed:?} bytes after the transfer, the source {}", src.size),
        ));
    }
    let verified =
        if options.verify { Some(verify_content(src_backend, dst_backend, src, &target).await?) } else { None };
    let mut dst_mtime = None;
    if let Some(mtime) = src.mtime
        && dst_backend.capabilities().set_mtime
        && dst_backend.set_mtime(&target, mtime).await.is_ok()
    {
        dst_mtime = Some(mtime);
    }
    if !in_place {
        keep_replaced(dst_backend, src, options).await?;
        dst_backend.rename(&target, &src.path).await?;
    }
    on_bytes(src.size);
    let dst_mtime = observed_mtime(dst_backend, &src.path, dst_mtime).await;
    Ok(Committed {
        bytes_moved: src.size,
        dst_size: src.size,
        dst_mtime,
        in_place,
        verified,
        segments: 1,
        dst_mode: None,
    })
}

/// `--verify`: the copy at `written` against the source. A mismatch
/// removes the copy (it never takes, or keeps, the final name) and fails
/// the file as temporary, so it is copied again.
async fn verify_content(
    src_backend: &dyn Backend,
    dst_backend: &dyn Backend,
    src: &Entry,
    written: &RelPath,
) -> Result<HashKind, OpError> {
    let common = HashKind::common(&src_backend.capabilities().hashes, &dst_backend.capabilities().hashes);
    let (kind, ours, theirs) = match common {
        Some(kind) => {
            let (ours, theirs) = tokio::join!(
                src_backend.hash_files(vec![src.path.clone()], kind),
                dst_backend.hash_files(vec![written.clone()], kind)
            );
            let one = |v: Vec<Result<Vec<u8>, OpError>>| {
                v.into_iter()
                    .next()
                    .unwrap_or_else(|| Err(OpError::new(ErrorKind::Other, "verify", &src.path, "no hash returned")))
            };
            (kind, one(ours)?, one(theirs)?)
        }
        None => {
            let (ours, theirs) = tokio::join!(read_back(src_backend, &src.path), read_back(dst_backend, written));
            (HashKind::Blake3, ours?, theirs?)
        }
    };
    if ours != theirs {
        let _ = dst_backend.remove_file(written).await;
        let hex = |h: &[u8]| h.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>();
        return Err(OpError::new(
            ErrorKind::Temporary,
            "verify",
            &src.path,
            format!(
                "the copy differs from the source ({} {}... vs {}...): removed, to be copied again",
                kind.name(),
                hex(&theirs),
                hex(&ours)
            ),
        ));
    }
    Ok(kind)
}

/// blake3 of a whole file, read through its backend.
pub(crate) async fn read_back(backend: &dyn Backend, path: &RelPath) -> Result<Vec<u8>, OpError> {
    let mut reader = backend.open_read(path, 0).await?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = Vec::with_capacity(CHUNK_SIZE);
    loop {
        buf = reader.read(buf).await?;
        if buf.is_empty() {
            break;
        }
        hasher.update(&buf);
    }
    Ok(hasher.finalize().as_bytes().to_vec())
}

/// A resumed file was checked at its seam (the tail before the offset) and
/// by length; where both sides can hash the same way, the whole content is
/// compared too before the file may take its final name.
async fn verify_resumed(
    src_backend: &dyn Backend,
    dst_backend: &dyn Backend,
    src: &Entry,
    temp: &RelPath,
) -> Result<(), OpError> {
    // Temporary: the retry starts afresh, the partial being gone.
    hashes_agree(src_backend, dst_backend, src, temp, "resumed copy does not match the source").await
}

/// Where both sides compute a hash of their own (an FTP server's HASH,
/// local disk), `temp` is compared with the source; a mismatch removes it
/// and fails the copy as temporary, with `mismatch` for a message. A hash
/// a side would not compute leaves the checks made already.
pub(crate) async fn hashes_agree(
    src_backend: &dyn Backend,
    dst_backend: &dyn Backend,
    src: &Entry,
    temp: &RelPath,
    mismatch: &str,
) -> Result<(), OpError> {
    let Some(algo) = HashKind::common(&src_backend.capabilities().hashes, &dst_backend.capabilities().hashes) else {
        return Ok(());
    };
    let (ours, theirs) = tokio::join!(
        src_backend.hash_files(vec![src.path.clone()], algo),
        dst_backend.hash_files(vec![temp.clone()], algo)
    );
    match (ours.into_iter().next(), theirs.into_iter().next()) {
        (Some(Ok(a)), Some(Ok(b))) if a != b => {
            let _ = dst_backend.remove_file(temp).await;
            Err(OpError::new(ErrorKind::Temporary, "verify", &src.path, format!("{mismatch} ({})", algo.name())))
        }
        _ => Ok(()),
    }
}

async fn copy_in_place(
    src_backend: &dyn Backend,
    dst_backend: &dyn Backend,
    src: &Entry,
    options: CopyOptions<'_>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<Committed, OpError> {
    keep_replaced(dst_backend, src, options).await?;
    let writing = Writing {
        target: &src.path,
        offset: 0,
        mtime: wanted_mtime(dst_backend, src),
        commit_to: None,
        keep: Keep::wanted(dst_backend, src, &options),
    };
    let dst_mtime = stream(src_backend, dst_backend, src, writing, options, on_bytes).await?.mtime;
    let verified =
        if options.verify { Some(verify_content(src_backend, dst_backend, src, &src.path).await?) } else { None };
    let dst_mtime = observed_mtime(dst_backend, &src.path, dst_mtime).await;
    Ok(Committed {
        bytes_moved: src.size,
        dst_size: src.size,
        dst_mtime,
        in_place: true,
        verified,
        segments: 1,
        dst_mode: None,
    })
}

/// A text transfer (`--ascii`): line ends are converted, so the size may
/// change on the way and cannot tell a complete copy; the protocol's own
/// end-of-transfer reply does. Never resumed (offsets differ between the
/// sides). The destination's real size and time are read back so the state
/// database can vouch for the pair next time.
async fn copy_text(
    src_backend: &dyn Backend,
    dst_backend: &dyn Backend,
    src: &Entry,
    options: CopyOptions<'_>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<Committed, OpError> {
    let (target, in_place) = fresh_target(dst_backend, src, options).await?;
    let mut reader = match src_backend.text_mode() {
        Some(text) => text.open_read_text(&src.path).await?,
        None => src_backend.open_read(&src.path, 0).await?,
    };
    let mut writer = match dst_backend.text_mode() {
        Some(text) => text.open_write_text(&target).await?,
        None => dst_backend.open_write(&target, 0).await?,
    };
    let separately = Keep::wanted(dst_backend, src, &options).give_to(&mut writer);
    let mut buf = Vec::with_capacity(CHUNK_SIZE);
    let mut written = 0;
    loop {
        buf = reader.read(buf).await?;
        if buf.is_empty() {
            break;
        }
        let len = buf.len() as u64;
        if let Some(throttle) = options.throttle {
            throttle.consume(len).await;
        }
        buf = writer.write(buf).await?;
        written += len;
        on_bytes(len);
    }
    let set = writer.finish(wanted_mtime(dst_backend, src)).await?;
    separately.set_on(dst_backend, &target).await?;
    if !in_place {
        keep_replaced(dst_backend, src, options).await?;
        dst_backend.rename(&target, &src.path).await?;
    }
    let shown = dst_backend.stat(&src.path).await?;
    let (dst_size, dst_mtime) = match shown {
        Some(entry) => (entry.size, entry.mtime.or(set)),
        None => (written, set),
    };
    // Text transfers change the bytes on purpose: --verify cannot compare them.
    Ok(Committed { bytes_moved: written, dst_size, dst_mtime, in_place, verified: None, segments: 1, dst_mode: None })
}

/// Where a copy that starts from byte 0 is written: the final name when
/// writing in place (what it replaces kept first, for --backup-dir), else
/// the temporary. Also says which.
async fn fresh_target(
    dst_backend: &dyn Backend,
    src: &Entry,
    options: CopyOptions<'_>,
) -> Result<(RelPath, bool), OpError> {
    if options.inplace || dst_backend.renames_refused() {
        keep_replaced(dst_backend, src, options).await?;
        Ok((src.path.clone(), true))
    } else {
        Ok((temp_path(&src.path), false))
    }
}

/// `--backup-dir`: the file this copy replaces moves there first.
async fn keep_replaced(dst_backend: &dyn Backend, src: &Entry, options: CopyOptions<'_>) -> Result<(), OpError> {
    match options.backup {
        Some(backup) if options.replaces => backup.keep(dst_backend, &src.path).await,
        _ => Ok(()),
    }
}

/// When the destination keeps its own time, remember the one it shows, so
/// the state database can vouch for this copy on the next run.
async fn observed_mtime(dst_backend: &dyn Backend, path: &RelPath, set: Option<Mtime>) -> Option<Mtime> {
    match set {
        Some(mtime) => Some(mtime),
        None => dst_backend.stat(path).await.ok().flatten().and_then(|e| e.mtime),
    }
}

/// The mtime a copy of `src` should get on `dst_backend`, if it can hold one.
fn wanted_mtime(dst_backend: &dyn Backend, src: &Entry) -> Option<Mtime> {
    if dst_backend.capabilities().set_mtime { src.mtime } else { None }
}

/// The permission bits a copy of `src` gets, when they are kept and the
/// destination can set them.
fn wanted_mode(dst_backend: &dyn Backend, src: &Entry, options: &CopyOptions<'_>) -> Option<u32> {
    options.perms.filter(|_| dst_backend.capabilities().set_mode)?.wanted(src.mode, false)
}

/// The ids a copy of `src` gets, when kept and the destination can set them.
fn wanted_owner(
    dst_backend: &dyn Backend,
    src: &Entry,
    options: &CopyOptions<'_>,
) -> Option<crate::backend::owners::GivenIds> {
    dst_backend.ownership()?;
    options.owners.wanted(src.owner)
}

/// What a copy gives its file besides content and time, before the file is
/// committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Keep {
    mode: Option<u32>,
    owner: Option<crate::backend::owners::GivenIds>,
}

impl Keep {
    fn wanted(dst_backend: &dyn Backend, src: &Entry, options: &CopyOptions<'_>) -> Keep {
        Keep { mode: wanted_mode(dst_backend, src, options), owner: wanted_owner(dst_backend, src, options) }
    }

    /// Gives `writer` what it can keep at its finish; returns the rest, for
    /// [`Keep::set_on`] before the file is committed.
    fn give_to(self, writer: &mut Box<dyn crate::backend::FileWriter>) -> Keep {
        let owner = self.owner.filter(|&(uid, gid)| !writer.keep_owner(uid, gid));
        let mode = self.mode.filter(|&mode| !writer.keep_mode(mode));
        // An owner set afterwards clears setuid and setgid: the bits again.
        Keep { mode: if owner.is_some() { self.mode } else { mode }, owner }
    }

    fn is_empty(&self) -> bool {
        *self == Keep::default()
    }

    /// Sets the owner, then the bits, on `path`.
    async fn set_on(self, dst_backend: &dyn Backend, path: &RelPath) -> Result<(), OpError> {
        if let (Some((uid, gid)), Some(ownership)) = (self.owner, dst_backend.ownership()) {
            match ownership.set_owner(path, uid, gid).await {
                // Said by the set-owner of the next run's plan, not here.
                Err(err) if err.kind == ErrorKind::PermissionDenied => {}
                other => other?,
            }
        }
        if let Some(mode) = self.mode {
            dst_backend.set_mode(path, mode).await?;
        }
        Ok(())
    }
}

/// Where [`stream`] writes, from which offset, and how it ends a copy it
/// wrote in full.
struct Writing<'a> {
    target: &'a RelPath,
    offset: u64,
    /// For [`FileWriter::write_last`] (as for `finish`).
    mtime: Option<Mtime>,
    /// Where the file may be committed in the same step, when nothing has
    /// to happen between its end and its commit (not resumed, no
    /// verification, no backup of what it replaces, the time set here).
    commit_to: Option<&'a RelPath>,
    /// Owner and bits to give the file before it is committed.
    keep: Keep,
}

/// Streams the source from `offset` into `target`, checks the length and
/// finishes the writer (durable, the mtime where it is set there, and the
/// commit where allowed and the destination can).
async fn stream(
    src_backend: &dyn Backend,
    dst_backend: &dyn Backend,
    src: &Entry,
    writing: Writing<'_>,
    options: CopyOptions<'_>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<Finished, OpError> {
    let Writing { target, offset, mtime, commit_to, keep } = writing;
    let mut reader = src_backend.open_read_sized(&src.path, offset, src.size).await?;
    let mut writer = dst_backend.open_write(target, offset).await?;
    // A writer that cannot keep them itself leaves the commit to after it.
    let separately = keep.give_to(&mut writer);
    let commit_to = commit_to.filter(|_| separately.is_empty());
    // A small file gets buffers its size (plus the byte that shows it
    // grew), not two 256 KiB chunks: with a hundred transfers in flight
    // the chunks are what peak RSS is made of.
    let chunk = one_chunk(src.size, offset).unwrap_or(CHUNK_SIZE);
    let mut buf = reader.read(Vec::with_capacity(chunk)).await?;
    let mut spare = Vec::with_capacity(chunk);
    let mut written = offset;
    let mut at_end = buf.is_empty();
    // Double-buffered: the next chunk is read while this one is written,
    // so neither side waits for the other (a socket left unread stalls
    // the sender; a disk left idle wastes the time the socket takes).
    // The chunk that reaches the source's length is held back: it is
    // written with the finish, once the source shows it ends there.
    while !at_end {
        let len = buf.len() as u64;
        if let Some(throttle) = options.throttle {
            throttle.consume(len).await;
        }
        written += len;
        if written >= src.size {
            break;
        }
        let (next, emptied) = tokio::try_join!(reader.read(spare), writer.write(buf))?;
        on_bytes(len);
        (buf, spare) = (next, emptied);
        at_end = buf.is_empty();
    }
    if written < src.size {
        // The data ended early: a cut connection, most likely (or a source
        // that shrank). Keep the partial: a retry or the next run resumes
        // it, after checking its tail against the source.
        return Err(OpError::new(
            ErrorKind::Temporary,
            "copy",
            &src.path,
            format!("transfer ended early: {written} of {} bytes", src.size),
        ));
    }
    if written == src.size {
        let more = if at_end { 0 } else { reader.read(spare).await?.len() };
        if more == 0 {
            let len = buf.len() as u64;
            let finished = writer.write_last(buf, mtime, commit_to).await?;
            if len > 0 {
                on_bytes(len);
            }
            separately.set_on(dst_backend, target).await?;
            return Ok(finished);
        }
    }
    // The source grew under us: never commit a torn copy.
    drop(writer);
    if *target != src.path {
        let _ = dst_backend.remove_file(target).await;
    }
    Err(OpError::new(
        ErrorKind::SourceChanged,
        "copy",
        &src.path,
        format!("source changed while copying: expected {} bytes, got more", src.size),
    ))
}

/// Compares the bytes just before `offset` in the source and the partial.
async fn tails_match(
    src_backend: &dyn Backend,
    dst_backend: &dyn Backend,
    path: &RelPath,
    temp: &RelPath,
    offset: u64,
) -> Result<bool, OpError> {
    let start = offset.saturating_sub(RESUME_VERIFY_BYTES);
    let want = usize::try_from(offset - start).unwrap_or(0);
    let theirs = match dst_backend.open_read(temp, start).await {
        Ok(reader) => read_span(reader, want).await?,
        Err(err) if err.kind == ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    let ours = read_span(src_backend.open_read(path, start).await?, want).await?;
    Ok(ours.len() == want && ours == theirs)
}

/// Reads up to `want` bytes (fewer only at end of file).
async fn read_span(mut reader: Box<dyn crate::backend::FileReader>, want: usize) -> Result<Vec<u8>, OpError> {
    let mut out = Vec::with_capacity(want);
    while out.len() < want {
        let chunk = reader.read(Vec::with_capacity(want - out.len())).await?;
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    out.truncate(want);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit that cannot rename (a non-empty directory holds the name)
    /// fails the copy and leaves the directory and its files alone, whether
    /// the rename was tried with the last write or by the commit after it.
    #[tokio::test]
    async fn a_name_held_by_a_directory_fails_the_copy_and_loses_nothing() {
        use crate::backend::MissingRoot;
        use crate::backend::local::LocalBackend;
        let scratch = tempfile::tempdir().unwrap();
        let (from, to) = (scratch.path().join("from"), scratch.path().join("to"));
        std::fs::create_dir_all(&from).unwrap();
        std::fs::create_dir_all(to.join("x")).unwrap();
        std::fs::write(to.join("x/kept"), b"kept").unwrap();
        std::fs::write(from.join("x"), b"new content").unwrap();
        let src = LocalBackend::open(from, MissingRoot::Fail).await.unwrap();
        let dst = LocalBackend::open(to.clone(), MissingRoot::Fail).await.unwrap();
        let entry = src.stat(&RelPath::parse(b"x").unwrap()).await.unwrap().unwrap();
        for options in [CopyOptions::default(), CopyOptions { verify: true, ..CopyOptions::default() }] {
            let err = copy_file(&src, &dst, &entry, 0, options, &|_| {}).await.expect_err("renamed over a directory");
            assert_eq!(err.op, "rename", "{err}");
            assert_eq!(std::fs::read(to.join("x/kept")).unwrap(), b"kept");
        }
    }

    /// Local to local: files read ahead on open (small) or in chunks
    /// (large) are committed by their last write, with their time and all
    /// their bytes counted; a source longer or shorter than listed is
    /// never committed.
    #[tokio::test]
    async fn a_copy_ends_committed_only_at_the_listed_length() {
        use crate::backend::MissingRoot;
        use crate::backend::local::LocalBackend;
        let scratch = tempfile::tempdir().unwrap();
        let (from, to) = (scratch.path().join("from"), scratch.path().join("to"));
        std::fs::create_dir_all(&from).unwrap();
        let content = |n: usize| (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
        // One chunk or less is read ahead on open; a length of whole
        // chunks is the one that needs the extra read to see the end.
        let sizes = [
            ("empty", 0),
            ("small", 10_000),
            ("chunk", CHUNK_SIZE - 1),
            ("full", CHUNK_SIZE),
            ("two", 2 * CHUNK_SIZE),
            ("large", 3 * CHUNK_SIZE + 5),
        ];
        for (name, size) in sizes {
            std::fs::write(from.join(name), content(size)).unwrap();
        }
        let src = LocalBackend::open(from, MissingRoot::Fail).await.unwrap();
        let dst = LocalBackend::open(to.clone(), MissingRoot::Create).await.unwrap();
        let stat = |name: &str| {
            let path = RelPath::parse(name.as_bytes()).unwrap();
            let src = &src;
            async move { src.stat(&path).await.unwrap().unwrap() }
        };
        // --verify commits after the check, not with the last write.
        let verify = CopyOptions { verify: true, ..CopyOptions::default() };
        for ((name, size), options) in sizes.into_iter().zip([CopyOptions::default(), verify].into_iter().cycle()) {
            let entry = stat(name).await;
            let counted = std::sync::atomic::AtomicU64::new(0);
            let on_bytes = |n: u64| {
                counted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            };
            let done = copy_file(&src, &dst, &entry, 0, options, &on_bytes).await.unwrap();
            assert_eq!(done.verified.is_some(), options.verify, "{name}");
            assert_eq!(std::fs::read(to.join(name)).unwrap(), content(size), "{name}");
            assert_eq!(done.dst_mtime, entry.mtime, "{name}");
            let written = std::fs::metadata(to.join(name)).unwrap().modified().unwrap();
            assert_eq!(Some(written), entry.mtime.map(Mtime::to_system_time), "{name}");
            assert_eq!(counted.into_inner(), size as u64, "{name}");
        }
        let names = || std::fs::read_dir(&to).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>();
        assert_eq!(names().len(), sizes.len(), "no temporary left: {:?}", names());

        for (name, listed, kind) in [
            ("small", 6_000, ErrorKind::SourceChanged),
            ("small", 12_000, ErrorKind::Temporary),
            ("large", 2 * CHUNK_SIZE as u64, ErrorKind::SourceChanged),
            ("large", 4 * CHUNK_SIZE as u64, ErrorKind::Temporary),
            ("empty", 1, ErrorKind::Temporary),
        ] {
            let _ = std::fs::remove_file(to.join(name));
            let mut stale = stat(name).await;
            stale.size = listed;
            let err = copy_file(&src, &dst, &stale, 0, CopyOptions::default(), &|_| {}).await.expect_err(name);
            assert_eq!(err.kind, kind, "{name} listed at {listed}: {err}");
            assert!(!to.join(name).exists(), "{name} listed at {listed} took its name");
        }
    }

    /// Large files share the run's spare streams: a copy gets the segments
    /// that are free when it starts, and a copy with none free is one
    /// stream, committed all the same.
    #[tokio::test]
    async fn a_large_copy_takes_only_the_spare_streams_that_are_free() {
        use crate::backend::MissingRoot;
        use crate::backend::local::LocalBackend;
        let scratch = tempfile::tempdir().unwrap();
        let (from, to) = (scratch.path().join("from"), scratch.path().join("to"));
        std::fs::create_dir_all(&from).unwrap();
        let content: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        std::fs::write(from.join("big"), &content).unwrap();
        let src = LocalBackend::open(from, MissingRoot::Fail).await.unwrap();
        let dst = LocalBackend::open(to.clone(), MissingRoot::Create).await.unwrap();
        let entry = src.stat(&RelPath::parse(b"big").unwrap()).await.unwrap().unwrap();
        let spare = SpareStreams::new(3);
        let options = CopyOptions {
            segmenting: Segmenting { disk_to_disk: true, ..Segmenting::new(256 * 1024, 4, 0) },
            spare_streams: Some(&spare),
            ..CopyOptions::default()
        };
        let copy = || async {
            let _ = std::fs::remove_file(to.join("big"));
            let done = copy_file(&src, &dst, &entry, 0, options, &|_| {}).await.unwrap();
            assert_eq!(std::fs::read(to.join("big")).unwrap(), content);
            done.segments
        };
        assert_eq!(copy().await, 4, "all three spare streams were free");
        let held = spare.take(2);
        assert_eq!(held.count(), 2);
        assert_eq!(copy().await, 2, "one spare stream was free");
        let rest = spare.take(5);
        assert_eq!(rest.count(), 1);
        assert_eq!(copy().await, 1, "none was free");
        drop((held, rest));
        assert_eq!(copy().await, 4, "the streams held came back");
        // A run's own settings: disk to disk, one stream.
        let run = CopyOptions { segmenting: Segmenting::new(256 * 1024, 4, 0), ..options };
        let done = copy_file(&src, &dst, &entry, 0, run, &|_| {}).await.unwrap();
        assert_eq!(done.segments, 1);
    }
}
