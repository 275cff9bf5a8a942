//! Segmented copies of large files (`--segments N`, `--segment-threshold
//! SIZE`): the file is split into N byte ranges, each read by a reader of
//! its own (an FTP RETR from its offset on a connection of its own, SFTP
//! read requests of its own) and written at its offset into one temporary
//! of the file's full size. One stream over a long link is bound by its
//! window (TCP's, or SFTP's requests in flight) and, for FTP, by one
//! server process; N streams are not.
//!
//! Each segment retries a temporary failure on its own, from where its
//! data is known to have landed, within the run's retry count; anything
//! else fails the whole copy, which leaves its temporary behind (never a
//! final name). The temporary has its own name ([`segmented_temp_path`]):
//! written at offsets, it may have holes anywhere, so it is never resumed
//! as a prefix; a later run removes it and starts again.
//!
//! Where opening a range at offset 0 truncates the file (FTP's STOR), the
//! first range opens before the others start, and a failure of it that
//! would open it at 0 again fails the copy instead.
//!
//! Before the commit: every segment wrote exactly its length, the last one
//! saw the source end where the listing said, the temporary holds the
//! source's size, and where both sides can hash the same way the hashes
//! agree (`--verify` compares them, or reads both back, as for any copy).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use super::{
    Committed, CopyOptions, Keep, hashes_agree, keep_replaced, observed_mtime, verify_content, wanted_mode,
    wanted_mtime, wanted_owner,
};
use crate::backend::CHUNK_SIZE;
use crate::backend::temp::segmented_temp_path;
use crate::backend::{Backend, Entry, SegmentedWrite};
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;
use crate::retry::RetryPolicy;

/// Files at least this large are copied in segments, by default.
pub const DEFAULT_THRESHOLD: u64 = 128 * 1024 * 1024;
/// Segments per file, by default.
pub const DEFAULT_SEGMENTS: usize = 4;
/// Segment boundaries fall on multiples of this.
const ALIGN: u64 = 64 * 1024;

/// How large files are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segmenting {
    /// Files at least this large are split.
    pub threshold: u64,
    /// Segments per file; below 2, files are never split.
    pub segments: usize,
    /// Retries of one segment after a temporary failure (`--retries`).
    pub retries: u32,
    /// Split copies from local disk to local disk too. Off in a run: one
    /// stream already moves at the disks' speed there (see
    /// [`Segmenting::segments_for`]).
    pub disk_to_disk: bool,
}

impl Default for Segmenting {
    /// Off: what a copy outside a sync run (and a unit test) gets.
    fn default() -> Self {
        Segmenting { threshold: u64::MAX, segments: 1, retries: 0, disk_to_disk: false }
    }
}

impl Segmenting {
    /// The run's defaults, with `retries` per segment.
    pub fn new(threshold: u64, segments: usize, retries: u32) -> Segmenting {
        Segmenting { threshold, segments, retries, disk_to_disk: false }
    }

    /// How many segments a copy of `size` bytes between these backends
    /// gets: 1 when it is not split. Never more than either side allows
    /// connections, nor more than a server has shown it accepts (a
    /// vsftpd `max_per_ip` makes fewer segments, not failures), nor
    /// segments smaller than a chunk.
    pub fn segments_for(&self, src: &dyn Backend, dst: &dyn Backend, size: u64) -> usize {
        if self.segments < 2 || size < self.threshold.max(2 * ALIGN) || dst.segmented_writes().is_none() {
            return 1;
        }
        // Disk to disk, one stream already moves at the disks' speed:
        // segments only add the check that reads both files again. One
        // 1 GiB file, tmpfs to ext4: 0.52-0.67 s in one stream, 0.85-0.87 s
        // in four, peak RSS 12 against 28 MiB.
        if !self.disk_to_disk && !src.capabilities().remote && !dst.capabilities().remote {
            return 1;
        }
        let limits = [
            Some(src.capabilities().max_connections),
            Some(dst.capabilities().max_connections),
            src.connection_cap(),
            dst.connection_cap(),
        ];
        let by_size = usize::try_from(size / ALIGN).unwrap_or(usize::MAX);
        limits.into_iter().flatten().fold(self.segments.min(by_size), usize::min).max(1)
    }
}

/// Streams beyond one per file that the run's segmented copies may hold
/// at once: a file takes what is free when its copy starts (never waiting
/// for more), so one large file alone gets all its segments and several
/// at once share them. Segments are for a file that one stream cannot
/// move fast enough; four large files moving at once are four streams
/// already, and sixteen cost more than they bring. Four 256 MiB files
/// from proftpd (3 runs each, 0 and 20 ms): 4 segments each 0.73-0.91 s
/// and 1.65-2.31 s at 15-16 MiB peak RSS; one each 0.70-1.18 s and
/// 1.44-1.54 s at 10 MiB; the same from OpenSSH 3.1-4.0 s at 43-47 MiB
/// against 2.8-3.9 s at 23-34 MiB.
pub struct SpareStreams {
    free: AtomicUsize,
}

impl SpareStreams {
    /// Room for `count` streams beyond one per file.
    pub fn new(count: usize) -> SpareStreams {
        SpareStreams { free: AtomicUsize::new(count) }
    }

    /// Up to `want` spare streams, as many as are free now; they are given
    /// back when the returned hold is dropped.
    pub fn take(&self, want: usize) -> HeldStreams<'_> {
        let mut count = 0;
        // Only fails when nothing is free: then the hold is of none.
        let _ = self.free.fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
            count = want.min(free);
            (count > 0).then(|| free - count)
        });
        HeldStreams { from: self, count }
    }
}

/// Spare streams held by one copy.
pub struct HeldStreams<'a> {
    from: &'a SpareStreams,
    count: usize,
}

impl HeldStreams<'_> {
    pub fn count(&self) -> usize {
        self.count
    }
}

impl Drop for HeldStreams<'_> {
    fn drop(&mut self) {
        self.from.free.fetch_add(self.count, Ordering::AcqRel);
    }
}

/// The byte ranges (offset, length) of `size` split in `count`: equal
/// lengths in multiples of 64 KiB, the last one taking the rest.
pub fn ranges(size: u64, count: usize) -> Vec<(u64, u64)> {
    let count = (count.max(1) as u64).min(size.div_ceil(ALIGN)).max(1);
    let step = size.div_ceil(count).next_multiple_of(ALIGN);
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < size {
        let len = step.min(size - offset);
        out.push((offset, len));
        offset += len;
    }
    if out.is_empty() {
        out.push((0, 0));
    }
    out
}

/// Copies `src` in `count` segments into its segmented temporary, checks
/// it, and commits it under its final name.
pub(super) async fn copy_segmented(
    src_backend: &dyn Backend,
    dst_backend: &dyn Backend,
    writes: &dyn SegmentedWrite,
    src: &Entry,
    count: usize,
    options: CopyOptions<'_>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<Committed, OpError> {
    let temp = segmented_temp_path(&src.path);
    writes.create_sized(&temp, src.size).await?;
    let parts = ranges(src.size, count);
    let count = parts.len();
    let last = parts.len() - 1;
    // Where opening the first range truncates the file (FTP), the others
    // wait until it is open, so that nothing they write is cut.
    let (zero_open, zero_opened) = tokio::sync::watch::channel(!dst_backend.capabilities().segment_at_zero_truncates);
    let mut zero_open = Some(zero_open);
    let mut jobs: Vec<SegmentJob<'_>> = Vec::with_capacity(count);
    for (i, (offset, len)) in parts.into_iter().enumerate() {
        let (opens_first, waits) = if i == 0 { (zero_open.take(), None) } else { (None, Some(zero_opened.clone())) };
        let job = Segment {
            src_backend,
            dst_backend,
            writes,
            path: &src.path,
            temp: &temp,
            offset,
            len,
            last: i == last,
            opens_first,
        };
        jobs.push(Box::pin(job.run(waits, options, on_bytes)));
    }
    first_error(jobs).await?;

    // Every segment wrote its length and the last one saw the source end
    // there; the temporary must now hold exactly the source's size.
    let landed = dst_backend.stat(&temp).await?.map(|e| e.size);
    if landed != Some(src.size) {
        return Err(OpError::new(
            ErrorKind::Temporary,
            "copy",
            &src.path,
            format!("the segmented copy holds {landed:?} bytes, the source {}", src.size),
        ));
    }
    let verified = if options.verify {
        Some(verify_content(src_backend, dst_backend, src, &temp).await?)
    } else {
        let mismatch = "the segmented copy differs from the source: removed, to be copied again";
        hashes_agree(src_backend, dst_backend, src, &temp, mismatch).await?;
        None
    };
    keep_replaced(dst_backend, src, options).await?;
    let mode = wanted_mode(dst_backend, src, &options);
    // Before the commit sets the bits: a change of owner clears setuid.
    Keep { mode: None, owner: wanted_owner(dst_backend, src, &options) }.set_on(dst_backend, &temp).await?;
    let set = dst_backend.commit_temp(&temp, &src.path, wanted_mtime(dst_backend, src), mode).await?;
    let dst_mtime = observed_mtime(dst_backend, &src.path, set).await;
    Ok(Committed {
        bytes_moved: src.size,
        dst_size: src.size,
        dst_mtime,
        in_place: false,
        verified,
        segments: count,
        dst_mode: None,
    })
}

/// One segment's work, borrowed from the copy.
type SegmentJob<'a> = Pin<Box<dyn Future<Output = Result<(), OpError>> + Send + 'a>>;

/// Runs every future at once; the first error ends them all (dropping a
/// reader or writer closes it, or its connection when that cannot be done
/// cleanly) and is returned.
async fn first_error<'a>(mut jobs: Vec<SegmentJob<'a>>) -> Result<(), OpError> {
    std::future::poll_fn(|cx| {
        let mut i = 0;
        while i < jobs.len() {
            match jobs[i].as_mut().poll(cx) {
                Poll::Ready(Ok(())) => {
                    drop(jobs.swap_remove(i));
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => i += 1,
            }
        }
        if jobs.is_empty() { Poll::Ready(Ok(())) } else { Poll::Pending }
    })
    .await
}

/// One byte range of a segmented copy.
struct Segment<'a> {
    src_backend: &'a dyn Backend,
    dst_backend: &'a dyn Backend,
    writes: &'a dyn SegmentedWrite,
    path: &'a RelPath,
    temp: &'a RelPath,
    offset: u64,
    len: u64,
    /// The file's last range: read one byte further, to see the end.
    last: bool,
    /// The first range, told to signal once its writer is open.
    opens_first: Option<tokio::sync::watch::Sender<bool>>,
}

impl Segment<'_> {
    /// The range, retried from where its data is known to have landed;
    /// begun once `waits` (the first range's writer) says open.
    async fn run(
        self,
        waits: Option<tokio::sync::watch::Receiver<bool>>,
        options: CopyOptions<'_>,
        on_bytes: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), OpError> {
        if let Some(mut open) = waits
            && open.wait_for(|open| *open).await.is_err()
        {
            // The first range ended without opening: its error ends the copy.
            return Ok(());
        }
        let policy = RetryPolicy::new(options.segmenting.retries);
        let end = self.offset + self.len;
        // Writes handed to a pipelining writer (SFTP) may be lost with it:
        // a retry starts this much before the last byte written.
        let margin = self.dst_backend.capabilities().resume_margin;
        let mut from = self.offset;
        // The furthest byte counted for progress, so a retry's repeat is not.
        let mut counted = self.offset;
        let mut attempt = 0;
        loop {
            let mut reached = from;
            let report = |upto: u64, counted: &mut u64| {
                if upto > *counted {
                    on_bytes(upto - *counted);
                    *counted = upto;
                }
            };
            match self.pass(from, end, options, &mut reached, &mut |upto| report(upto, &mut counted)).await {
                Ok(()) => return Ok(()),
                Err(err) if err.is_temporary() && err.kind != ErrorKind::SourceChanged && attempt < policy.retries => {
                    let again = reached.saturating_sub(margin).max(self.offset);
                    let opened = self.opens_first.as_ref().is_some_and(|open| *open.borrow());
                    if again == 0 && opened && self.dst_backend.capabilities().segment_at_zero_truncates {
                        // Opening at 0 again would cut what the other
                        // ranges wrote: the whole copy is retried instead.
                        return Err(err);
                    }
                    attempt += 1;
                    if let Some(hear) = options.on_segment_retry {
                        hear(attempt, &err);
                    }
                    from = again;
                    tokio::time::sleep(policy.delay(attempt)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One attempt at `from..end`; `reached` follows what was written.
    async fn pass(
        &self,
        from: u64,
        end: u64,
        options: CopyOptions<'_>,
        reached: &mut u64,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), OpError> {
        let want = end - from + u64::from(self.last);
        let mut reader = self.src_backend.open_read_range(self.path, from, want).await?;
        let mut writer = self.writes.open_write_segment(self.temp, from).await?;
        if let Some(open) = &self.opens_first {
            open.send_replace(true);
        }
        let mut buf = reader.read(Vec::with_capacity(CHUNK_SIZE)).await?;
        let mut spare = Vec::with_capacity(CHUNK_SIZE);
        let mut at = from;
        // Double-buffered, as a whole-file copy (`stream`).
        while !buf.is_empty() {
            let len = buf.len() as u64;
            if at + len > end {
                // Only the last range reads past its end: the source grew.
                return Err(OpError::new(
                    ErrorKind::SourceChanged,
                    "copy",
                    self.path,
                    "source changed while copying: it is longer than listed",
                ));
            }
            if let Some(throttle) = options.throttle {
                throttle.consume(len).await;
            }
            let (next, emptied) = tokio::try_join!(reader.read(spare), writer.write(buf))?;
            at += len;
            *reached = at;
            progress(at);
            (buf, spare) = (next, emptied);
        }
        if at < end {
            return Err(OpError::new(
                ErrorKind::Temporary,
                "copy",
                self.path,
                format!("segment {}..{end} ended early at {at}", self.offset),
            ));
        }
        writer.finish(None).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_file_once_in_aligned_pieces() {
        const MIB: u64 = 1 << 20;
        const K64: u64 = 64 << 10;
        assert_eq!(ranges(8 * MIB, 8), (0..8).map(|i| (i * MIB, MIB)).collect::<Vec<_>>());
        // 10 MiB + 5 in 4: 2.5 MiB + 2 bytes each, rounded up to 64 KiB.
        let step = 2 * MIB + 9 * K64;
        assert_eq!(
            ranges(10 * MIB + 5, 4),
            vec![(0, step), (step, step), (2 * step, step), (3 * step, 10 * MIB + 5 - 3 * step)]
        );
        // More segments than 64 KiB pieces: one per piece.
        assert_eq!(ranges(2 * K64 + 1, 16).len(), 3);
        for (size, count) in [(1, 4), (MIB, 3), (1 << 30, 4), (1234567891, 7)] {
            let parts = ranges(size, count);
            assert!(parts.len() <= count, "{size} in {count}: {parts:?}");
            let mut at = 0;
            for (offset, len) in parts {
                assert_eq!(offset, at);
                assert!(len > 0);
                at += len;
            }
            assert_eq!(at, size);
        }
    }
}
