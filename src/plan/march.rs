//! The merge itself: both listings are sorted in tree order, so one pass
//! over them pairs every path with its counterpart.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use super::SyncedRecord;
use super::{Action, CompareRule, LinkMode, Plan, Reason, Verdict};
use crate::backend::{Entry, EntryKind, Mtime};
use crate::path::RelPath;
use crate::perms::{Owners, Perms};

/// Everything the planner looks at.
pub struct PlanInput<'a> {
    /// Source entries in tree order, filters applied.
    pub src: Vec<Entry>,
    /// Destination entries in tree order, filters applied.
    pub dst: Vec<Entry>,
    /// Source directories that could not be listed: nothing under them on
    /// the destination is ever deleted.
    pub src_unreadable: &'a [RelPath],
    /// What barge last synced, per path (may be empty).
    pub synced: &'a HashMap<RelPath, SyncedRecord>,
    pub rule: CompareRule,
    /// Remove destination entries the source lacks (`--delete`).
    pub delete: bool,
    pub links: LinkRule,
    pub perms: PermRule,
}

/// Which permission bits are kept (the default, where the destination can
/// set them, with `--chmod`'s changes); `None` when none are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermRule {
    pub perms: Option<Perms>,
    /// Kept ids, already the destination's (see `sync::sources`).
    pub owners: Owners,
}

impl PermRule {
    /// The bits `dst` should get to match `src`, when they are known on both
    /// sides and differ; for a new entry (`dst` is `None`), the source's.
    pub fn update(&self, src: &Entry, dst: Option<&Entry>) -> Option<u32> {
        let perms = self.perms.as_ref()?;
        let wanted = perms.wanted(src.mode, src.is_dir())?;
        match dst {
            None => Some(wanted),
            Some(dst) => dst.mode.filter(|have| have & perms.mask != wanted).map(|_| wanted),
        }
    }

    /// The ids `dst` should get to match `src` (see [`Owners::wanted`]),
    /// when both sides show owners and a kept one differs; for a new entry,
    /// the source's. An id not kept is filled in from `dst` where it is
    /// known, since some servers (SFTP) set both or none.
    pub fn owner_update(&self, src: &Entry, dst: Option<&Entry>) -> Option<crate::backend::owners::GivenIds> {
        let (uid, gid) = self.owners.wanted(src.owner)?;
        let Some(dst) = dst else { return Some((uid, gid)) };
        let have = dst.owner?;
        let differs = uid.is_some_and(|u| u != have.uid) || gid.is_some_and(|g| g != have.gid);
        differs.then(|| (Some(uid.unwrap_or(have.uid)), Some(gid.unwrap_or(have.gid))))
    }
}

/// How symbolic links are planned.
#[derive(Debug, Clone, Copy)]
pub struct LinkRule {
    pub mode: LinkMode,
    /// The destination can create links ([`crate::backend::Capabilities::symlinks`]).
    pub dst_can_link: bool,
}

impl Default for LinkRule {
    fn default() -> Self {
        LinkRule { mode: LinkMode::Copy, dst_can_link: true }
    }
}

impl LinkRule {
    /// Why a source link cannot be recreated, if it cannot.
    fn refusal(&self, src: &Entry) -> Option<Reason> {
        if self.mode != LinkMode::Copy {
            // Follow: a link still in the source listing could not be followed.
            Some(Reason::Symlink)
        } else if !self.dst_can_link {
            Some(Reason::LinkUnsupported)
        } else if src.link_target.is_none() {
            Some(Reason::LinkTargetUnknown)
        } else {
            None
        }
    }
}

/// What barge last synced, looked up by path.
pub trait Records {
    fn record(&self, path: &RelPath) -> Option<&SyncedRecord>;
}

impl Records for HashMap<RelPath, SyncedRecord> {
    fn record(&self, path: &RelPath) -> Option<&SyncedRecord> {
        self.get(path)
    }
}

/// Where the march puts what it decides.
pub trait Sink {
    fn push(&mut self, action: Action);
}

impl Sink for Vec<Action> {
    fn push(&mut self, action: Action) {
        Vec::push(self, action);
    }
}

/// Builds the plan. Pure: no I/O, no clock.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let PlanInput { src, dst, src_unreadable, synced, rule, delete, links, perms } = input;
    let mut actions = Vec::new();
    let rules = MarchRules { src_unreadable, rule, delete, links, perms, move_files: false };
    let unchanged = march(src.into_iter(), dst.into_iter(), synced, rules, &mut actions);
    Plan { actions, unchanged }
}

/// The rules of a march, apart from its inputs.
#[derive(Clone)]
pub struct MarchRules<'a> {
    /// Source directories that could not be listed (see [`PlanInput`]).
    pub src_unreadable: &'a [RelPath],
    pub rule: CompareRule,
    pub delete: bool,
    pub links: LinkRule,
    pub perms: PermRule,
    /// `--remove-source-files`: a source file the destination already
    /// has is removed from the source.
    pub move_files: bool,
}

/// The merge of two listings in tree order, each action handed to `sink`
/// as soon as it is decided (in tree order; directory mtimes at the end),
/// so the listings can be streams that are never held whole. Returns the
/// number of files found unchanged.
pub fn march(
    src: impl Iterator<Item = Entry>,
    dst: impl Iterator<Item = Entry>,
    synced: &impl Records,
    rules: MarchRules<'_>,
    out: &mut impl Sink,
) -> u64 {
    let MarchRules { src_unreadable, rule, delete, links, perms, move_files } = rules;
    let mut unchanged = 0u64;
    // Directory mtimes are settled last: anything written into a directory
    // changes its mtime, so first note which directories were touched.
    let mut src_dir_mtimes: Vec<(RelPath, Mtime, bool)> = Vec::new();
    // Directory modes after that: a directory made read-only must hold
    // everything first.
    let mut dir_updates: Vec<Action> = Vec::new();
    let mut dst_dir_mtimes: HashMap<RelPath, Option<Mtime>> = HashMap::new();
    let mut touched: HashSet<RelPath> = HashSet::new();

    let mut src = src.peekable();
    let mut dst = dst.peekable();
    loop {
        let order = match (src.peek(), dst.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(s), Some(d)) => s.path.cmp(&d.path),
        };
        match order {
            Ordering::Less => {
                let Some(s) = src.next() else { break };
                touched.insert(s.path.parent());
                if s.is_dir() {
                    metadata_update(&perms, &s, None, &mut dir_updates);
                }
                source_only(s, out, &mut src_dir_mtimes, links);
            }
            Ordering::Greater => {
                let Some(d) = dst.next() else { break };
                if delete && !src_unreadable.iter().any(|u| d.path.starts_with(u)) {
                    touched.insert(d.path.parent());
                    out.push(Action::Delete { path: d.path, kind: d.kind, reason: Reason::Extraneous });
                }
            }
            Ordering::Equal => {
                let (Some(s), Some(d)) = (src.next(), dst.next()) else { break };
                match (s.kind, d.kind) {
                    (EntryKind::File, EntryKind::File) => match rule.compare(&s, &d, || synced.record(&s.path)) {
                        Verdict::Differs(reason) => {
                            touched.insert(s.path.parent());
                            out.push(Action::Copy { src: s, reason });
                        }
                        verdict => {
                            if move_files {
                                out.push(Action::RemoveSource { src: s.clone(), reason: Reason::Moved });
                            }
                            let updated = metadata_update(&perms, &s, Some(&d), out);
                            let mtime = s.mtime.filter(|_| verdict == Verdict::SameContentOtherMtime);
                            match mtime {
                                Some(mtime) => out.push(Action::SetMtime {
                                    path: s.path,
                                    kind: EntryKind::File,
                                    mtime,
                                    reason: Reason::MtimeOnly,
                                }),
                                None if !updated => unchanged += 1,
                                None => {}
                            }
                        }
                    },
                    (EntryKind::Dir, EntryKind::Dir) => {
                        metadata_update(&perms, &s, Some(&d), &mut dir_updates);
                        if let Some(mtime) = s.mtime {
                            src_dir_mtimes.push((s.path.clone(), mtime, false));
                        }
                        dst_dir_mtimes.insert(s.path, d.mtime);
                    }
                    (EntryKind::Symlink, _) if links.refusal(&s).is_some() => {
                        // Left alone, with whatever is below it on the destination.
                        let same = d.is_symlink() && d.link_target.is_some() && d.link_target == s.link_target;
                        if d.is_dir() {
                            take_subtree(&d.path, &mut dst);
                        }
                        match links.refusal(&s) {
                            Some(reason) if !same => out.push(Action::Skip { path: s.path, reason }),
                            _ => unchanged += 1,
                        }
                    }
                    (EntryKind::Symlink, EntryKind::Symlink) => {
                        if s.link_target == d.link_target {
                            unchanged += 1;
                        } else {
                            // A new link under a temporary name renamed over the old one.
                            touched.insert(s.path.parent());
                            out.push(Action::Copy { src: s, reason: Reason::TargetChanged });
                        }
                    }
                    (EntryKind::Symlink, EntryKind::File) => {
                        touched.insert(s.path.parent());
                        out.push(Action::Copy { src: s, reason: Reason::TypeChanged });
                    }
                    (EntryKind::File, EntryKind::Symlink) => {
                        // rename() over a link replaces the link, not its target.
                        touched.insert(s.path.parent());
                        out.push(Action::Copy { src: s, reason: Reason::TypeChanged });
                    }
                    (EntryKind::File | EntryKind::Symlink, EntryKind::Dir) => {
                        touched.insert(s.path.parent());
                        let below = take_subtree(&d.path, &mut dst);
                        if !below.is_empty() && !delete {
                            out.push(Action::Conflict { path: s.path, reason: Reason::NeedsDelete });
                            continue;
                        }
                        // Tree order, the directory first; the engine runs
                        // replacements reversed, so its contents go first.
                        out.push(Action::Delete { path: d.path, kind: d.kind, reason: Reason::Replaced });
                        for gone in below {
                            out.push(Action::Delete { path: gone.path, kind: gone.kind, reason: Reason::Replaced });
                        }
                        out.push(Action::Copy { src: s, reason: Reason::TypeChanged });
                    }
                    (EntryKind::Dir, EntryKind::File | EntryKind::Symlink) => {
                        touched.insert(s.path.parent());
                        metadata_update(&perms, &s, None, &mut dir_updates);
                        out.push(Action::Delete { path: d.path, kind: d.kind, reason: Reason::Replaced });
                        if let Some(mtime) = s.mtime {
                            src_dir_mtimes.push((s.path.clone(), mtime, true));
                        }
                        out.push(Action::Mkdir { path: s.path, reason: Reason::TypeChanged });
                    }
                }
            }
        }
    }

    // Deepest first, so that setting a directory's mtime comes after
    // everything inside it has settled.
    src_dir_mtimes.sort_by(|a, b| b.0.depth().cmp(&a.0.depth()).then_with(|| a.0.cmp(&b.0)));
    for (path, mtime, created) in src_dir_mtimes {
        let differs = created || dst_dir_mtimes.get(&path).is_none_or(|d| !d.is_some_and(|d| rule.same_time(d, mtime)));
        if differs || touched.contains(&path) {
            out.push(Action::SetMtime { path, kind: EntryKind::Dir, mtime, reason: Reason::DirMtime });
        }
    }
    dir_updates.sort_by(|a, b| b.path().depth().cmp(&a.path().depth()).then_with(|| a.path().cmp(b.path())));
    for update in dir_updates {
        out.push(update);
    }
    unchanged
}

/// The owner or bits `dst` (`None`: an entry being made) should get to
/// match `src`, pushed to `out`: a [`Action::SetOwner`] carrying the bits
/// to give again after it (a change of owner clears setuid and setgid), or
/// else a [`Action::SetMode`]. Whether anything was pushed.
fn metadata_update(perms: &PermRule, src: &Entry, dst: Option<&Entry>, out: &mut impl Sink) -> bool {
    let (path, kind) = (src.path.clone(), src.kind);
    let mode = perms.update(src, dst);
    match perms.owner_update(src, dst) {
        Some((uid, gid)) => {
            let mode = perms.update(src, None);
            out.push(Action::SetOwner { path, kind, uid, gid, mode, reason: Reason::OwnerDiffers });
            true
        }
        None => match mode {
            Some(mode) => {
                out.push(Action::SetMode { path, kind, mode, reason: Reason::ModeDiffers });
                true
            }
            None => false,
        },
    }
}

fn source_only(s: Entry, out: &mut impl Sink, dir_mtimes: &mut Vec<(RelPath, Mtime, bool)>, links: LinkRule) {
    match s.kind {
        EntryKind::File => out.push(Action::Copy { src: s, reason: Reason::New }),
        EntryKind::Dir => {
            if let Some(mtime) = s.mtime {
                dir_mtimes.push((s.path.clone(), mtime, true));
            }
            out.push(Action::Mkdir { path: s.path, reason: Reason::New });
        }
        EntryKind::Symlink => match links.refusal(&s) {
            Some(reason) => out.push(Action::Skip { path: s.path, reason }),
            None => out.push(Action::Copy { src: s, reason: Reason::New }),
        },
    }
}

/// Takes every entry strictly below `dir` off the front of a sorted listing.
fn take_subtree(dir: &RelPath, listing: &mut std::iter::Peekable<impl Iterator<Item = Entry>>) -> Vec<Entry> {
    let mut below = Vec::new();
    while let Some(next) = listing.next_if(|e| e.path.starts_with(dir) && e.path != *dir) {
        below.push(next);
    }
    below
}
