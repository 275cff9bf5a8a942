//! The equality rule: when is a destination file the same as its source?
//!
//! Written down once, here, and used by `sync`, `plan` and `check` alike:
//!
//! 1. Sizes differ: different, whatever the mode, unless the state database
//!    records that barge produced exactly this destination (size and mtime)
//!    from exactly this source: a text-mode transfer (`--ascii`) changes
//!    line ends, and so the size, on purpose.
//! 2. `--compare size`: same size is the same file.
//! 3. `--compare hash`: the blake3 hashes decide. Equal content with a
//!    different mtime only needs the mtime set. Where a hash could not be
//!    computed, rule 4 decides instead.
//! 4. `--compare mtime` (default): the same when the modification times are
//!    within the *coarser* precision of the two sides (1 ns locally, 1 s for
//!    MLSD, a minute for LIST, a day for a LIST line showing only a date):
//!    `|src - dst| < max(precision)`, or exactly equal. Otherwise, when the state database records that barge itself
//!    produced exactly this destination (size and mtime) from exactly this
//!    source, they are still the same: that covers destinations whose mtime
//!    cannot be set.

use std::time::Duration;

use super::Reason;
use crate::backend::{Entry, Mtime};

/// How files are compared (`--compare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompareMode {
    /// Size only.
    Size,
    /// Size and modification time (default).
    #[default]
    Mtime,
    /// Size and blake3 content hash.
    Hash,
}

/// The verdict for one pair of files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Same,
    /// Same content, but the destination mtime should be corrected.
    SameContentOtherMtime,
    Differs(Reason),
}

#[derive(Debug, Clone, Copy)]
pub struct CompareRule {
    pub mode: CompareMode,
    /// `max(src precision, dst precision)`.
    pub window: Duration,
    /// The destination can take the source's mtime.
    pub dst_sets_mtime: bool,
}

impl CompareRule {
    pub fn new(mode: CompareMode, src_precision: Duration, dst_precision: Duration, dst_sets_mtime: bool) -> Self {
        CompareRule { mode, window: src_precision.max(dst_precision), dst_sets_mtime }
    }

    /// `synced` looks up the state record for the pair; it is called only
    /// when the mtimes alone do not settle it (a hash probe per file adds
    /// up over a million of them).
    pub fn compare<'s>(&self, src: &Entry, dst: &Entry, synced: impl Fn() -> Option<&'s SyncedRecord>) -> Verdict {
        if src.size != dst.size {
            let produced_by_us = synced().is_some_and(|record| record.matches(src, dst));
            return if produced_by_us { Verdict::Same } else { Verdict::Differs(Reason::SizeDiffers) };
        }
        match self.mode {
            CompareMode::Size => Verdict::Same,
            CompareMode::Hash => match (&src.hash, &dst.hash) {
                (Some(a), Some(b)) if a != b => Verdict::Differs(Reason::HashDiffers),
                (Some(_), Some(_)) if self.dst_sets_mtime && !self.mtimes_match(src, dst, &synced) => {
                    Verdict::SameContentOtherMtime
                }
                (Some(_), Some(_)) => Verdict::Same,
                _ => self.by_mtime(src, dst, &synced),
            },
            CompareMode::Mtime => self.by_mtime(src, dst, &synced),
        }
    }

    fn by_mtime<'s>(&self, src: &Entry, dst: &Entry, synced: &impl Fn() -> Option<&'s SyncedRecord>) -> Verdict {
        if self.mtimes_match(src, dst, synced) { Verdict::Same } else { Verdict::Differs(Reason::MtimeDiffers) }
    }

    /// Whether two times are one within the coarser side's precision (a
    /// directory's time, set from a local one with nanoseconds, comes back
    /// from an SFTP server to the second).
    pub fn same_time(&self, a: Mtime, b: Mtime) -> bool {
        let delta = a.0.abs_diff(b.0);
        delta == 0 || u128::from(delta) < self.window.as_nanos()
    }

    fn mtimes_match<'s>(&self, src: &Entry, dst: &Entry, synced: &impl Fn() -> Option<&'s SyncedRecord>) -> bool {
        if let (Some(a), Some(b)) = (src.mtime, dst.mtime) {
            let delta = a.0.abs_diff(b.0);
            let coarse = Duration::from_secs(u64::from(src.coarse_mtime_s.max(dst.coarse_mtime_s)));
            if delta == 0 || u128::from(delta) < self.window.max(coarse).as_nanos() {
                return true;
            }
        }
        synced().is_some_and(|record| record.matches(src, dst))
    }
}

/// What barge last made of one path: the planner's memory of a pair, kept
/// by the state database between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncedRecord {
    pub src_size: u64,
    pub src_mtime: Option<Mtime>,
    pub dst_size: u64,
    pub dst_mtime: Option<Mtime>,
    /// The permission bits the destination file was given or showed, when
    /// known: a `--trust-state` run's destination listing comes from the
    /// records, and without them it could not see a mode change.
    pub dst_mode: Option<u32>,
}

impl SyncedRecord {
    pub fn new(src: &Entry, dst_size: u64, dst_mtime: Option<Mtime>, dst_mode: Option<u32>) -> Self {
        SyncedRecord { src_size: src.size, src_mtime: src.mtime, dst_size, dst_mtime, dst_mode }
    }

    /// The pair is exactly what barge left behind.
    pub fn matches(&self, src: &Entry, dst: &Entry) -> bool {
        self.src_size == src.size
            && self.src_mtime == src.mtime
            && self.dst_size == dst.size
            && self.dst_mtime == dst.mtime
            && src.mtime.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{EntryKind, Mtime};
    use crate::path::RelPath;

    fn file(size: u64, secs: i64, nanos: u32) -> Entry {
        Entry {
            path: RelPath::parse(b"f").unwrap(),
            kind: EntryKind::File,
            size,
            mtime: Some(Mtime::from_unix(secs, nanos)),
            inode: 0,
            coarse_mtime_s: 0,
            hash: None,
            link_target: None,
            mode: None,
            owner: None,
        }
    }

    const NS: Duration = Duration::from_nanos(1);
    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn mtime_rule_uses_the_coarser_precision() {
        let exact = CompareRule::new(CompareMode::Mtime, NS, NS, true);
        assert_eq!(exact.compare(&file(5, 100, 7), &file(5, 100, 7), || None), Verdict::Same);
        assert_eq!(exact.compare(&file(5, 100, 7), &file(5, 100, 8), || None), Verdict::Differs(Reason::MtimeDiffers));
        let coarse = CompareRule::new(CompareMode::Mtime, NS, SEC, true);
        assert_eq!(coarse.compare(&file(5, 100, 700_000_000), &file(5, 100, 0), || None), Verdict::Same);
        assert_eq!(coarse.compare(&file(5, 101, 0), &file(5, 100, 0), || None), Verdict::Differs(Reason::MtimeDiffers));
    }

    #[test]
    fn a_date_only_entry_widens_the_window_to_a_day() {
        let rule = CompareRule::new(CompareMode::Mtime, NS, Duration::from_secs(60), true);
        let listed = Entry { coarse_mtime_s: 86_400, ..file(5, 1_600_000_000 - 40_000, 0) };
        assert_eq!(rule.compare(&file(5, 1_600_000_000, 0), &listed, || None), Verdict::Same);
        let plain = file(5, 1_600_000_000 - 40_000, 0);
        assert_eq!(rule.compare(&file(5, 1_600_000_000, 0), &plain, || None), Verdict::Differs(Reason::MtimeDiffers));
    }

    #[test]
    fn a_size_difference_barge_produced_itself_is_not_a_difference() {
        let rule = CompareRule::new(CompareMode::Mtime, NS, Duration::from_secs(1), true);
        let (src, dst) = (file(10, 100, 0), file(12, 100, 0));
        let record =
            SyncedRecord { src_size: 10, src_mtime: src.mtime, dst_size: 12, dst_mtime: dst.mtime, dst_mode: None };
        assert_eq!(rule.compare(&src, &dst, || Some(&record)), Verdict::Same);
        // Either side changed since: a real difference.
        let grown = file(13, 100, 0);
        assert_eq!(rule.compare(&src, &grown, || Some(&record)), Verdict::Differs(Reason::SizeDiffers));
        assert_eq!(rule.compare(&file(11, 100, 0), &dst, || Some(&record)), Verdict::Differs(Reason::SizeDiffers));
        assert_eq!(rule.compare(&src, &dst, || None), Verdict::Differs(Reason::SizeDiffers));
    }

    #[test]
    fn size_always_decides_first() {
        for mode in [CompareMode::Size, CompareMode::Mtime, CompareMode::Hash] {
            let rule = CompareRule::new(mode, NS, NS, true);
            assert_eq!(rule.compare(&file(5, 1, 0), &file(6, 1, 0), || None), Verdict::Differs(Reason::SizeDiffers));
        }
        let size_only = CompareRule::new(CompareMode::Size, NS, NS, true);
        assert_eq!(size_only.compare(&file(5, 1, 0), &file(5, 999, 0), || None), Verdict::Same);
    }

    #[test]
    fn hash_rule_sets_mtime_when_only_the_mtime_differs() {
        let rule = CompareRule::new(CompareMode::Hash, NS, NS, true);
        let (mut a, mut b) = (file(5, 1, 0), file(5, 2, 0));
        a.hash = Some(vec![1; 32].into_boxed_slice());
        b.hash = Some(vec![1; 32].into_boxed_slice());
        assert_eq!(rule.compare(&a, &b, || None), Verdict::SameContentOtherMtime);
        b.hash = Some(vec![2; 32].into_boxed_slice());
        assert_eq!(rule.compare(&a, &b, || None), Verdict::Differs(Reason::HashDiffers));
        b.hash = None;
        assert_eq!(rule.compare(&a, &b, || None), Verdict::Differs(Reason::MtimeDiffers));
    }

    #[test]
    fn state_record_vouches_for_a_destination_without_settable_mtime() {
        let rule = CompareRule::new(CompareMode::Mtime, NS, SEC, false);
        let (src, dst) = (file(5, 100, 0), file(5, 5000, 0));
        assert_eq!(rule.compare(&src, &dst, || None), Verdict::Differs(Reason::MtimeDiffers));
        let record =
            SyncedRecord { src_size: 5, src_mtime: src.mtime, dst_size: 5, dst_mtime: dst.mtime, dst_mode: None };
        assert_eq!(rule.compare(&src, &dst, || Some(&record)), Verdict::Same);
        let stale = SyncedRecord { src_mtime: Some(Mtime::from_unix(99, 0)), ..record };
        assert_eq!(rule.compare(&src, &dst, || Some(&stale)), Verdict::Differs(Reason::MtimeDiffers));
    }
}
