//! The planner: a pure, sorted merge of two listings (rclone's "march") and
//! the state cache into a [`Plan`]. No I/O, no clock: the same inputs always
//! give the same plan, which is what the table tests rely on.

pub mod compare;
pub mod filter;
mod march;
#[cfg(test)]
mod tests;

use std::fmt;

pub use compare::{CompareMode, CompareRule, SyncedRecord, Verdict};
pub use march::{LinkRule, MarchRules, PermRule, PlanInput, Records, Sink, march, plan};

use crate::backend::{Entry, EntryKind, Mtime};
use crate::path::RelPath;

/// What happens to symbolic links (`--links`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkMode {
    /// Recreate a link as a link with the same target bytes where the
    /// destination can hold one; else skip it with a warning.
    #[default]
    Copy,
    /// Leave links out.
    Skip,
    /// Copy what a link points to, when it resolves inside the source root.
    Follow,
}

/// Why an action was chosen; printed by `plan` and in JSON reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Not on the destination.
    New,
    SizeDiffers,
    MtimeDiffers,
    HashDiffers,
    /// Same content, only the modification time differs.
    MtimeOnly,
    /// A file where the destination has a directory or link, or the reverse.
    TypeChanged,
    /// Removed to make room for an entry of another type.
    Replaced,
    /// On the destination only.
    Extraneous,
    /// Already the same.
    Unchanged,
    /// A directory whose contents changed or whose mtime differs.
    DirMtime,
    /// `--links skip`, or a link `--links follow` could not follow.
    Symlink,
    /// A link whose target differs from the source link's.
    TargetChanged,
    /// The destination cannot hold symbolic links (FTP).
    LinkUnsupported,
    /// The source listing did not say where the link points.
    LinkTargetUnknown,
    /// The destination has a non-empty directory where the source has a
    /// file, and `--delete` was not given.
    NeedsDelete,
    /// Same content, other permission bits.
    ModeDiffers,
    /// Same content, another owner or group (`--owner`, `--group`).
    OwnerDiffers,
    /// `--remove-source-files`: already on the destination, so only taken
    /// from the source.
    Moved,
    /// `--shard-depth`: a directory above the depth, not in the source,
    /// removed whole by the shard that owns it (what is inside belongs to
    /// several shards, each of which removes its own as well).
    AboveShards,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::New => "new",
            Reason::SizeDiffers => "size differs",
            Reason::MtimeDiffers => "mtime differs",
            Reason::HashDiffers => "content differs",
            Reason::MtimeOnly => "mtime only",
            Reason::TypeChanged => "type changed",
            Reason::Replaced => "replaced by another type",
            Reason::Extraneous => "not in source",
            Reason::Unchanged => "unchanged",
            Reason::DirMtime => "directory mtime",
            Reason::Symlink => "symbolic link skipped",
            Reason::ModeDiffers => "permissions differ",
            Reason::OwnerDiffers => "owner differs",
            Reason::TargetChanged => "link target differs",
            Reason::LinkUnsupported => "symbolic link skipped: the destination cannot hold one",
            Reason::LinkTargetUnknown => "symbolic link skipped: its target is unknown",
            Reason::NeedsDelete => "would delete a non-empty directory; use --delete",
            Reason::Moved => "already on the destination",
            Reason::AboveShards => "not in source (with what other shards own inside it)",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Mkdir {
        path: RelPath,
        reason: Reason,
    },
    /// Copy the source file `src` to the same path on the destination; a
    /// symbolic link (`src.kind`) is made anew with `src.link_target`.
    Copy {
        src: Entry,
        reason: Reason,
    },
    Delete {
        path: RelPath,
        kind: EntryKind,
        reason: Reason,
    },
    SetMtime {
        path: RelPath,
        kind: EntryKind,
        mtime: Mtime,
        reason: Reason,
    },
    /// Give the destination entry the permission bits `mode`: a metadata
    /// update, never a copy (a copy carries its source's mode itself).
    SetMode {
        path: RelPath,
        kind: EntryKind,
        mode: u32,
        reason: Reason,
    },
    /// Give the destination entry the user `uid` and/or group `gid`
    /// (`None`: left as is), then the bits `mode` when kept: a metadata
    /// update, like [`Action::SetMode`].
    SetOwner {
        path: RelPath,
        kind: EntryKind,
        uid: Option<u32>,
        gid: Option<u32>,
        mode: Option<u32>,
        reason: Reason,
    },
    Skip {
        path: RelPath,
        reason: Reason,
    },
    /// `--remove-source-files`: remove the source file `src`, whose copy
    /// the destination already has (a copy's source is removed after the
    /// copy, by the engine, without an action of its own).
    RemoveSource {
        src: Entry,
        reason: Reason,
    },
    /// Cannot be made right without a flag the user did not give.
    Conflict {
        path: RelPath,
        reason: Reason,
    },
}

impl Action {
    pub fn path(&self) -> &RelPath {
        match self {
            Action::Copy { src, .. } | Action::RemoveSource { src, .. } => &src.path,
            Action::Mkdir { path, .. }
            | Action::Delete { path, .. }
            | Action::SetMtime { path, .. }
            | Action::SetMode { path, .. }
            | Action::SetOwner { path, .. }
            | Action::Skip { path, .. }
            | Action::Conflict { path, .. } => path,
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            Action::Mkdir { reason, .. }
            | Action::Copy { reason, .. }
            | Action::Delete { reason, .. }
            | Action::SetMtime { reason, .. }
            | Action::SetMode { reason, .. }
            | Action::SetOwner { reason, .. }
            | Action::Skip { reason, .. }
            | Action::RemoveSource { reason, .. }
            | Action::Conflict { reason, .. } => *reason,
        }
    }

    /// The word shown in `plan` output and as JSON `type`.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Mkdir { .. } => "mkdir",
            Action::Copy { .. } => "copy",
            Action::Delete { .. } => "delete",
            Action::SetMtime { .. } => "set-mtime",
            Action::SetMode { .. } => "set-mode",
            Action::SetOwner { .. } => "set-owner",
            Action::Skip { .. } => "skip",
            Action::RemoveSource { .. } => "remove-source",
            Action::Conflict { .. } => "conflict",
        }
    }

    /// True for actions that change the destination.
    pub fn changes_destination(&self) -> bool {
        !matches!(self, Action::Skip { .. } | Action::Conflict { .. } | Action::RemoveSource { .. })
    }
}

/// What to do, in tree order (a directory before its contents). The engine
/// runs it in phases: replacements, mkdirs, copies, deletions (contents
/// before their directory), then directory mtimes deepest first.
#[derive(Debug, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Files already the same, counted rather than listed (a no-op resync of
    /// a million files should not build a million actions).
    pub unchanged: u64,
}

impl Plan {
    pub fn count(&self, verb: &str) -> usize {
        self.actions.iter().filter(|a| a.verb() == verb).count()
    }

    /// Entries the plan deletes, replacements included.
    pub fn deletions(&self) -> usize {
        self.count("delete")
    }

    /// True when the destination already mirrors the source.
    pub fn is_in_sync(&self) -> bool {
        !self.actions.iter().any(|a| a.changes_destination() || matches!(a, Action::Conflict { .. }))
    }
}
