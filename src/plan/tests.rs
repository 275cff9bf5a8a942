//! Table tests of the planner and of the phase order the engine runs it in.

use std::collections::HashMap;
use std::time::Duration;

use super::SyncedRecord;
use super::*;
use crate::backend::{Entry, EntryKind, Mtime};
use crate::engine::Phases;
use crate::path::RelPath;

fn p(path: &str) -> RelPath {
    RelPath::parse(path.as_bytes()).unwrap()
}

fn file(path: &str, size: u64, mtime: i64) -> Entry {
    Entry {
        path: p(path),
        kind: EntryKind::File,
        size,
        mtime: Some(Mtime::from_unix(mtime, 0)),
        inode: 0,
        coarse_mtime_s: 0,
        hash: None,
        link_target: None,
        mode: None,
        owner: None,
    }
}

fn dir(path: &str) -> Entry {
    Entry {
        path: p(path),
        kind: EntryKind::Dir,
        size: 0,
        mtime: Some(Mtime::from_unix(1000, 0)),
        inode: 0,
        coarse_mtime_s: 0,
        hash: None,
        link_target: None,
        mode: None,
        owner: None,
    }
}

fn link(path: &str, target: &str) -> Entry {
    Entry {
        kind: EntryKind::Symlink,
        link_target: Some(target.as_bytes().into()),
        ..file(path, target.len() as u64, 1000)
    }
}

fn sorted(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

fn run(src: Vec<Entry>, dst: Vec<Entry>, delete: bool) -> Plan {
    run_with(src, dst, delete, &[], &HashMap::new())
}

fn run_with(
    src: Vec<Entry>,
    dst: Vec<Entry>,
    delete: bool,
    unreadable: &[RelPath],
    synced: &HashMap<RelPath, SyncedRecord>,
) -> Plan {
    run_links(src, dst, delete, unreadable, synced, LinkRule::default())
}

fn run_links(
    src: Vec<Entry>,
    dst: Vec<Entry>,
    delete: bool,
    unreadable: &[RelPath],
    synced: &HashMap<RelPath, SyncedRecord>,
    links: LinkRule,
) -> Plan {
    let ns = Duration::from_nanos(1);
    plan(PlanInput {
        src: sorted(src),
        dst: sorted(dst),
        src_unreadable: unreadable,
        synced,
        rule: CompareRule::new(CompareMode::Mtime, ns, ns, true),
        delete,
        links,
        perms: PermRule::default(),
    })
}

fn with_links(src: Vec<Entry>, dst: Vec<Entry>, delete: bool, mode: LinkMode, dst_can_link: bool) -> Plan {
    run_links(src, dst, delete, &[], &HashMap::new(), LinkRule { mode, dst_can_link })
}

/// `verb path (reason)` per action, directory mtimes left out unless asked.
fn lines(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .filter(|a| !matches!(a, Action::SetMtime { kind: EntryKind::Dir, .. }))
        .map(|a| format!("{} {} ({})", a.verb(), a.path(), a.reason()))
        .collect()
}

#[test]
fn new_changed_unchanged_and_extraneous_files() {
    let src = vec![file("same", 3, 10), file("grown", 5, 10), file("touched", 3, 11), file("new", 1, 10)];
    let dst = vec![file("same", 3, 10), file("grown", 4, 10), file("touched", 3, 10), file("extra", 9, 10)];
    let kept = run(src.clone(), dst.clone(), false);
    assert_eq!(lines(&kept), ["copy grown (size differs)", "copy new (new)", "copy touched (mtime differs)"]);
    assert_eq!(kept.unchanged, 1);
    let mirrored = run(src, dst, true);
    assert_eq!(
        lines(&mirrored),
        ["delete extra (not in source)", "copy grown (size differs)", "copy new (new)", "copy touched (mtime differs)"]
    );
}

#[test]
fn identical_trees_plan_nothing() {
    let tree = vec![dir("a"), file("a/x", 1, 5), dir("a/empty"), file("a/zero", 0, 5), file("b", 2, 5)];
    let plan = run(tree.clone(), tree, true);
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(plan.unchanged, 3);
    assert!(plan.is_in_sync());
}

#[test]
fn empty_files_and_empty_directories_are_mirrored() {
    let plan = run(vec![dir("empty"), file("zero", 0, 5)], vec![], false);
    assert_eq!(lines(&plan), ["mkdir empty (new)", "copy zero (new)"]);
    // An empty extraneous directory is deleted with --delete.
    let plan = run(vec![], vec![dir("gone")], true);
    assert_eq!(lines(&plan), ["delete gone (not in source)"]);
    // An empty destination file is replaced when the source has content.
    let plan = run(vec![file("f", 1, 5)], vec![file("f", 0, 5)], false);
    assert_eq!(lines(&plan), ["copy f (size differs)"]);
}

#[test]
fn file_where_the_destination_has_an_empty_directory() {
    let plan = run(vec![file("x", 1, 5)], vec![dir("x")], false);
    assert_eq!(lines(&plan), ["delete x (replaced by another type)", "copy x (type changed)"]);
}

#[test]
fn directory_replaced_by_a_file_needs_delete_when_not_empty() {
    let src = vec![file("x", 1, 5), file("y", 1, 5)];
    let dst = vec![dir("x"), file("x/a", 1, 5), dir("x/b"), file("x/b/c", 1, 5), file("y", 1, 5)];
    let refused = run(src.clone(), dst.clone(), false);
    assert_eq!(lines(&refused), ["conflict x (would delete a non-empty directory; use --delete)"]);
    assert_eq!(refused.deletions(), 0);
    assert!(!refused.is_in_sync());

    let plan = run(src, dst, true);
    assert_eq!(
        lines(&plan),
        [
            "delete x (replaced by another type)",
            "delete x/a (replaced by another type)",
            "delete x/b (replaced by another type)",
            "delete x/b/c (replaced by another type)",
            "copy x (type changed)",
        ]
    );
    // Run order: contents before their directory, all before the copy.
    let phases = Phases::from(plan);
    let order: Vec<String> = phases.replaced.iter().map(|a| a.path().to_string()).collect();
    assert_eq!(order, ["x/b/c", "x/b", "x/a", "x"]);
    assert_eq!(phases.transfers.len(), 1);
}

#[test]
fn file_replaced_by_a_directory() {
    let plan = run(vec![dir("y"), file("y/z", 1, 5)], vec![file("y", 7, 5)], false);
    assert_eq!(lines(&plan), ["delete y (replaced by another type)", "mkdir y (type changed)", "copy y/z (new)"]);
    let phases = Phases::from(plan);
    assert_eq!(phases.replaced.len(), 1);
    assert_eq!(phases.mkdirs.len(), 1);
}

#[test]
fn deletions_run_contents_before_their_directory() {
    let dst = vec![dir("old"), file("old/a", 1, 5), dir("old/sub"), file("old/sub/b", 1, 5), dir("old/sub/deeper")];
    let plan = run(vec![], dst, true);
    assert_eq!(plan.deletions(), 5);
    let phases = Phases::from(plan);
    let files: Vec<String> = phases.delete_files.iter().map(|a| a.path().to_string()).collect();
    let dirs: Vec<String> = phases.delete_dirs.iter().map(|a| a.path().to_string()).collect();
    assert_eq!(files, ["old/a", "old/sub/b"]);
    assert_eq!(dirs, ["old/sub/deeper", "old/sub", "old"]);
}

#[test]
fn mkdirs_run_parents_first_and_directory_mtimes_deepest_first() {
    let src = vec![dir("a"), dir("a/b"), dir("a/b/c"), file("a/b/c/f", 1, 5)];
    let plan = run(src, vec![], false);
    let mtimes: Vec<String> = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::SetMtime { kind: EntryKind::Dir, .. }))
        .map(|a| a.path().to_string())
        .collect();
    assert_eq!(mtimes, ["a/b/c", "a/b", "a"]);
    let phases = Phases::from(plan);
    let mkdirs: Vec<String> = phases.mkdirs.iter().map(|a| a.path().to_string()).collect();
    assert_eq!(mkdirs, ["a", "a/b", "a/b/c"]);
    assert_eq!(phases.dir_mtimes.len(), 3);
}

#[test]
fn a_directory_gets_its_mtime_back_when_its_contents_change() {
    let src = vec![dir("d"), file("d/f", 2, 5)];
    let dst = vec![dir("d"), file("d/f", 1, 5)];
    let plan = run(src, dst, false);
    assert!(plan.actions.contains(&Action::SetMtime {
        path: p("d"),
        kind: EntryKind::Dir,
        mtime: Mtime::from_unix(1000, 0),
        reason: Reason::DirMtime
    }));
}

#[test]
fn nothing_is_deleted_below_an_unreadable_source_directory() {
    let src = vec![dir("locked")];
    let dst = vec![dir("locked"), file("locked/precious", 1, 5), file("other", 1, 5)];
    let plan = run_with(src, dst, true, &[p("locked")], &HashMap::new());
    assert_eq!(lines(&plan), ["delete other (not in source)"]);
}

#[test]
fn links_are_recreated_by_target_not_by_mtime() {
    // New links, byte-exact targets whatever they hold (absolute, `..`).
    let src = vec![link("abs", "/etc/passwd"), link("up", "../../x"), link("rel", "a/b")];
    let plan = run(src.clone(), vec![], false);
    assert_eq!(lines(&plan), ["copy abs (new)", "copy rel (new)", "copy up (new)"]);
    // Same target, any mtime: unchanged.
    let mut older = src.clone();
    older.iter_mut().for_each(|e| e.mtime = Some(Mtime::from_unix(1, 0)));
    let plan = run(src.clone(), older, false);
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(plan.unchanged, 3);
    // A changed target replaces the link.
    let plan = run(vec![link("l", "new")], vec![link("l", "old")], false);
    assert_eq!(lines(&plan), ["copy l (link target differs)"]);
    // Same length, other bytes: still a change (the size says nothing).
    let plan = run(vec![link("l", "ab")], vec![link("l", "ba")], false);
    assert_eq!(lines(&plan), ["copy l (link target differs)"]);
}

#[test]
fn links_replace_files_and_directories_and_the_reverse() {
    let plan = run(vec![link("x", "t")], vec![file("x", 1, 5)], false);
    assert_eq!(lines(&plan), ["copy x (type changed)"]);
    let plan = run(vec![link("x", "t")], vec![dir("x")], false);
    assert_eq!(lines(&plan), ["delete x (replaced by another type)", "copy x (type changed)"]);
    // A non-empty directory needs --delete, as for a file.
    let full = vec![dir("x"), file("x/a", 1, 5)];
    let plan = run(vec![link("x", "t")], full.clone(), false);
    assert_eq!(lines(&plan), ["conflict x (would delete a non-empty directory; use --delete)"]);
    let plan = run(vec![link("x", "t")], full, true);
    assert_eq!(
        lines(&plan),
        ["delete x (replaced by another type)", "delete x/a (replaced by another type)", "copy x (type changed)"]
    );
    // A destination link where the source has a file or directory is
    // removed (never followed) and replaced.
    let plan = run(vec![file("l", 1, 5)], vec![link("l", "/etc")], false);
    assert_eq!(lines(&plan), ["copy l (type changed)"]);
    let plan = run(vec![dir("sub"), file("sub/passwd", 1, 5)], vec![link("sub", "/etc")], false);
    assert_eq!(
        lines(&plan),
        ["delete sub (replaced by another type)", "mkdir sub (type changed)", "copy sub/passwd (new)"]
    );
    let phases = Phases::from(plan);
    assert_eq!(phases.replaced.len(), 1, "the link goes before anything is written below its name");
}

#[test]
fn links_skipped_by_mode_or_destination_are_left_alone() {
    let src = vec![link("l", "t"), link("m", "u")];
    let dst = vec![dir("m"), file("m/keep", 1, 5)];
    let skip = with_links(src.clone(), dst.clone(), true, LinkMode::Skip, true);
    assert_eq!(lines(&skip), ["skip l (symbolic link skipped)", "skip m (symbolic link skipped)"]);
    assert_eq!(skip.deletions(), 0, "nothing below a skipped link is deleted");
    let ftp = with_links(src, dst, true, LinkMode::Copy, false);
    assert_eq!(
        lines(&ftp),
        [
            "skip l (symbolic link skipped: the destination cannot hold one)",
            "skip m (symbolic link skipped: the destination cannot hold one)"
        ]
    );
    // A source listing that does not say where a link points.
    let unknown = Entry { link_target: None, ..link("l", "t") };
    let plan = run(vec![unknown], vec![], false);
    assert_eq!(lines(&plan), ["skip l (symbolic link skipped: its target is unknown)"]);
    // Extraneous destination links go with --delete, as entries.
    let plan = run(vec![], vec![link("gone", "/")], true);
    assert_eq!(lines(&plan), ["delete gone (not in source)"]);
    assert_eq!(Phases::from(plan).delete_files.len(), 1, "unlinked like a file, never as a directory");
}

#[test]
fn state_records_vouch_only_for_exactly_what_was_synced() {
    let src = vec![file("f", 3, 10)];
    let dst = vec![file("f", 3, 99)];
    let mut synced = HashMap::new();
    let rule = CompareRule::new(CompareMode::Mtime, Duration::from_nanos(1), Duration::from_secs(1), false);
    let plan_with = |synced: &HashMap<RelPath, SyncedRecord>| {
        plan(PlanInput {
            src: src.clone(),
            dst: dst.clone(),
            src_unreadable: &[],
            synced,
            rule,
            delete: false,
            links: LinkRule::default(),
            perms: PermRule::default(),
        })
    };
    assert_eq!(lines(&plan_with(&synced)), ["copy f (mtime differs)"]);
    synced.insert(p("f"), SyncedRecord::new(&src[0], 3, Some(Mtime::from_unix(99, 0)), None));
    assert!(plan_with(&synced).actions.is_empty());
}

fn with_mode(entry: Entry, mode: u32) -> Entry {
    Entry { mode: Some(mode), ..entry }
}

fn run_perms(src: Vec<Entry>, dst: Vec<Entry>, mask: Option<u32>) -> Plan {
    run_kept(src, dst, PermRule { perms: mask.map(crate::perms::Perms::new), owners: Default::default() })
}

/// Plans with `kept` for permission bits and owners.
fn run_kept(src: Vec<Entry>, dst: Vec<Entry>, kept: PermRule) -> Plan {
    let ns = Duration::from_nanos(1);
    plan(PlanInput {
        src: sorted(src),
        dst: sorted(dst),
        src_unreadable: &[],
        synced: &HashMap::new(),
        rule: CompareRule::new(CompareMode::Mtime, ns, ns, true),
        delete: false,
        links: LinkRule::default(),
        perms: kept,
    })
}

#[test]
fn a_mode_only_change_is_a_set_mode_never_a_copy() {
    let src = vec![with_mode(file("run.sh", 3, 10), 0o755), with_mode(file("same", 3, 10), 0o644)];
    let dst = vec![with_mode(file("run.sh", 3, 10), 0o644), with_mode(file("same", 3, 10), 0o644)];
    let plan = run_perms(src.clone(), dst.clone(), Some(0o777));
    assert_eq!(lines(&plan), ["set-mode run.sh (permissions differ)"]);
    assert!(plan.actions.contains(&Action::SetMode {
        path: p("run.sh"),
        kind: EntryKind::File,
        mode: 0o755,
        reason: Reason::ModeDiffers
    }));
    assert_eq!(plan.unchanged, 1);
    // --no-perms: nothing to do.
    let plan = run_perms(src, dst, None);
    assert!(plan.actions.is_empty(), "{:?}", lines(&plan));
    assert_eq!(plan.unchanged, 2);
}

#[test]
fn modes_unknown_on_either_side_or_outside_the_mask_change_nothing() {
    // The destination did not list modes: no chmod on every run.
    let plan = run_perms(vec![with_mode(file("f", 3, 10), 0o755)], vec![file("f", 3, 10)], Some(0o777));
    assert!(plan.actions.is_empty(), "{:?}", lines(&plan));
    // setuid differs, but only rwx bits are kept.
    let plan =
        run_perms(vec![with_mode(file("f", 3, 10), 0o4755)], vec![with_mode(file("f", 3, 10), 0o755)], Some(0o777));
    assert!(plan.actions.is_empty(), "{:?}", lines(&plan));
    let plan =
        run_perms(vec![with_mode(file("f", 3, 10), 0o4755)], vec![with_mode(file("f", 3, 10), 0o755)], Some(0o7777));
    assert_eq!(lines(&plan), ["set-mode f (permissions differ)"]);
}

#[test]
fn directory_modes_come_last_deepest_first() {
    let src = vec![
        with_mode(dir("a"), 0o555),
        with_mode(dir("a/b"), 0o700),
        with_mode(file("a/b/f", 3, 10), 0o600),
        with_mode(dir("kept"), 0o750),
        // The same file with other permission bits.
        with_mode(file("kept/g", 3, 10), 0o640),
    ];
    let dst = vec![with_mode(dir("kept"), 0o755), with_mode(file("kept/g", 3, 10), 0o644)];
    let plan = run_perms(src, dst, Some(0o777));
    let all: Vec<String> = plan.actions.iter().map(|a| format!("{} {}", a.verb(), a.path())).collect();
    let modes: Vec<&String> = all.iter().filter(|l| l.starts_with("set-mode")).collect();
    assert_eq!(modes, ["set-mode kept/g", "set-mode a/b", "set-mode a", "set-mode kept"], "{all:?}");
    // Directory modes after every directory mtime: a read-only one holds
    // its contents first.
    let last_mtime = all.iter().rposition(|l| l.starts_with("set-mtime")).unwrap();
    let first_dir_mode = all.iter().position(|l| l == "set-mode a/b").unwrap();
    assert!(last_mtime < first_dir_mode, "{all:?}");
    let phases = Phases::from(plan);
    assert!(phases.transfers.iter().any(|a| matches!(a, Action::SetMode { kind: EntryKind::File, .. })));
    assert_eq!(phases.dir_modes.len(), 3);
}

fn owned(entry: Entry, uid: u32, gid: u32) -> Entry {
    Entry { owner: Some(crate::backend::Owner { uid, gid }), ..entry }
}

fn run_owners(src: Vec<Entry>, dst: Vec<Entry>, owners: crate::perms::Owners) -> Plan {
    run_kept(src, dst, PermRule { perms: Some(crate::perms::Perms::new(0o7777)), owners })
}

#[test]
fn an_owner_change_is_a_set_owner_that_gives_the_bits_again() {
    let both = crate::perms::Owners { user: true, group: true, numeric: false };
    let src = vec![owned(with_mode(file("f", 3, 10), 0o4755), 7, 8), owned(dir("d"), 7, 8)];
    let dst = vec![owned(with_mode(file("f", 3, 10), 0o4755), 0, 0), owned(dir("d"), 7, 8)];
    let plan = run_owners(src.clone(), dst.clone(), both);
    assert_eq!(
        plan.actions,
        [Action::SetOwner {
            path: p("f"),
            kind: EntryKind::File,
            uid: Some(7),
            gid: Some(8),
            mode: Some(0o4755),
            reason: Reason::OwnerDiffers
        }]
    );
    // --group alone: the user is left as the destination has it (and
    // filled in, for servers that set both or none).
    let group = crate::perms::Owners { user: false, group: true, numeric: false };
    let plan = run_owners(src.clone(), dst.clone(), group);
    assert!(matches!(plan.actions[..], [Action::SetOwner { uid: Some(0), gid: Some(8), .. }]), "{:?}", plan.actions);
    // Not asked, or not listed on the destination: nothing.
    assert!(run_owners(src.clone(), dst, crate::perms::Owners::default()).actions.is_empty());
    let unlisted = vec![with_mode(file("f", 3, 10), 0o4755), dir("d")];
    assert!(run_owners(src, unlisted, both).actions.is_empty());
}

#[test]
fn a_directory_time_within_the_coarser_precision_is_left_alone() {
    // A local directory's nanoseconds, an SFTP server's seconds.
    let local = Entry { mtime: Some(Mtime::from_unix(1000, 123_456_789)), ..dir("d") };
    let rule = CompareRule::new(CompareMode::Mtime, Duration::from_nanos(1), Duration::from_secs(1), true);
    let plan_of = |dst: Entry| {
        plan(PlanInput {
            src: vec![local.clone()],
            dst: vec![dst],
            src_unreadable: &[],
            synced: &HashMap::new(),
            rule,
            delete: false,
            links: LinkRule::default(),
            perms: PermRule::default(),
        })
    };
    assert!(plan_of(dir("d")).actions.is_empty(), "set every run before");
    let older = Entry { mtime: Some(Mtime::from_unix(998, 0)), ..dir("d") };
    let set = plan_of(older).actions;
    assert!(matches!(set.as_slice(), [Action::SetMtime { kind: EntryKind::Dir, .. }]), "{set:?}");
}
