//! When a run must not go ahead, or must not delete: roots that overlap
//! (refused before anything is opened), `--max-delete`, and the signs that
//! a source listing is wrong (unreadable entries, emptied directories, a
//! shrunken or empty source), which hold every deletion back; deletions
//! under what a listing did not show are never made. `plan` and
//! `--dry-run` apply the same rules as `sync` and exit as it would.

use std::os::unix::ffi::OsStrExt;

use crate::backend::EntryKind;
use crate::engine::report::Reporter;
use crate::error::Error;
use crate::location::{Location, RemoteLocation, Scheme};
use crate::path::RelPath;
use crate::plan::filter::Filter;
use crate::plan::{Action, Reason};

/// `--max-delete N` or `--max-delete P%` (of the destination's entries).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeleteLimit {
    Count(u64),
    Percent(f64),
}

impl DeleteLimit {
    pub fn parse(text: &str) -> Result<DeleteLimit, String> {
        let bad = || format!("`{text}` is not a count or a percentage (examples: 500, 10%)");
        match text.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(DeleteLimit::Percent(p)),
                Ok(p) if p > 100.0 => Err(format!("`{text}`: a percentage of the destination is at most 100%")),
                _ => Err(bad()),
            },
            None => text.trim().parse().map(DeleteLimit::Count).map_err(|_| bad()),
        }
    }

    /// The most entries that may go, out of `total` on the destination.
    fn resolve(self, total: u64) -> u64 {
        match self {
            DeleteLimit::Count(n) => n,
            DeleteLimit::Percent(p) => (total as f64 * p / 100.0).floor() as u64,
        }
    }
}

/// When a run must not delete.
#[derive(Debug, Clone, Copy)]
pub struct Safety {
    /// Stop before changing anything when more would be deleted.
    pub max_delete: Option<DeleteLimit>,
    /// A source with this many percent fewer files than at the last good
    /// run looks wrong: deletions are held back.
    pub max_shrink_percent: u8,
    /// Delete even when the listing looks wrong.
    pub force: bool,
}

impl Default for Safety {
    fn default() -> Self {
        Safety { max_delete: None, max_shrink_percent: 50, force: false }
    }
}

/// `--max-delete`: the stop (nothing changed) when the plan deletes more
/// than it allows out of the destination's `dst_total` entries.
pub(super) fn max_delete_stop(safety: &Safety, deletions: u64, dst_total: u64) -> Option<Error> {
    let max = safety.max_delete?.resolve(dst_total);
    (deletions > max).then(|| {
        Error::SafetyStop(format!(
            "{deletions} entries would be deleted, more than --max-delete allows ({max}); nothing was changed"
        ))
    })
}

/// Refuses a source and destination that overlap, before anything is
/// opened: the same directory (a run that silently does nothing), a
/// destination inside the source (each run copies the tree into itself,
/// one level deeper), or a source inside the destination (`--delete`
/// deletes everything beside it, the source itself included). Nesting is
/// allowed where the filters exclude the inner root from the outer tree.
/// `src` and `dst` are canonical ([`Location::canonical`], users resolved).
pub(super) fn refuse_overlap(src: &Location, dst: &Location, filter: &Filter) -> Result<(), Error> {
    let Some((inner_is_dst, inside)) = nesting(src, dst) else { return Ok(()) };
    let (src_text, dst_text) = (src.to_string(), dst.to_string());
    if inside.is_empty() {
        return Err(Error::Usage(format!(
            "the source and the destination are the same directory ({src_text}): a tree cannot be synced onto \
             itself; check the spelling of both"
        )));
    }
    // A path the filters cannot name (`~/..` on a server) cannot be excluded.
    if RelPath::parse(&inside).is_ok_and(|inside| filter.excludes_dir(&inside)) {
        return Ok(());
    }
    let inside = crate::path::DisplayBytes(&inside);
    let why = if inner_is_dst {
        format!(
            "the destination {dst_text} is inside the source {src_text} (at `{inside}`): every run would copy the \
             tree into itself, one level deeper each time"
        )
    } else {
        format!(
            "the source {src_text} is inside the destination {dst_text} (at `{inside}`): the destination's other \
             entries, and the source itself, would be seen as extraneous"
        )
    };
    Err(Error::Usage(format!(
        "{why}; choose roots that do not overlap, or exclude the inner one from the outer tree \
         (--exclude '/{inside}/')"
    )))
}

/// Whether one root is at or below the other: `(the inner one is the
/// destination, the inner one's path below the outer, empty when they are
/// the same)`.
fn nesting(src: &Location, dst: &Location) -> Option<(bool, Vec<u8>)> {
    let (src_path, dst_path) = match (src, dst) {
        (Location::Local(s), Location::Local(d)) => (s.as_os_str().as_bytes(), d.as_os_str().as_bytes()),
        (Location::Remote(s), Location::Remote(d)) if same_server(s, d) => (&s.path[..], &d.path[..]),
        _ => return None,
    };
    if let Some(inside) = below(dst_path, src_path) {
        return Some((true, inside));
    }
    below(src_path, dst_path).map(|inside| (false, inside))
}

/// [`refuse_overlap`] again once both sides are open, with the roots as
/// the server resolved them (`resolved`: [`crate::backend::Backend::resolved_root`]):
/// `sftp://h/~/tree` and `sftp://h/home/me/tree/sub` pass the check by text
/// and are one tree, and so are two host names of one address.
pub(super) async fn refuse_overlap_resolved(
    src: &Location,
    dst: &Location,
    resolved: (Option<Vec<u8>>, Option<Vec<u8>>),
    filter: &Filter,
) -> Result<(), Error> {
    let (Location::Remote(src), Location::Remote(dst), (Some(src_root), Some(dst_root))) = (src, dst, resolved) else {
        return Ok(());
    };
    let (mut src, mut dst) = (src.normalized(), dst.normalized());
    (src.path, dst.path) = (src_root, dst_root);
    if !src.host.eq_ignore_ascii_case(&dst.host) && same_address(&src.host, &dst.host, src.port).await {
        dst.host = src.host.clone();
    }
    refuse_overlap(&Location::Remote(src), &Location::Remote(dst), filter)
}

/// Whether two host names resolve to a shared address.
async fn same_address(a: &str, b: &str, port: u16) -> bool {
    let resolve = |host: &str| {
        let host = host.to_string();
        async move { tokio::net::lookup_host((host, port)).await.map(|found| found.map(|a| a.ip()).collect::<Vec<_>>()) }
    };
    match tokio::join!(resolve(a), resolve(b)) {
        (Ok(a), Ok(b)) => a.iter().any(|ip| b.contains(ip)),
        _ => false,
    }
}

/// `path` relative to `ancestor` when it is `ancestor` or below it, both
/// absolute and normalized (no trailing slash except the root `/`).
fn below(path: &[u8], ancestor: &[u8]) -> Option<Vec<u8>> {
    let ancestor = ancestor.strip_suffix(b"/").unwrap_or(ancestor);
    let rest = path.strip_prefix(ancestor)?;
    match rest {
        [] => Some(Vec::new()),
        [b'/', tail @ ..] => Some(tail.to_vec()),
        _ => None,
    }
}

/// Two URLs reach one file tree when they log in as the same user to the
/// same server (FTP's three schemes differ only in TLS).
fn same_server(a: &RemoteLocation, b: &RemoteLocation) -> bool {
    let family = |s: Scheme| matches!(s, Scheme::Sftp);
    family(a.scheme) == family(b.scheme) && a.host.eq_ignore_ascii_case(&b.host) && a.port == b.port && a.user == b.user
}

/// Drops the deletions the listings cannot vouch for, before anything
/// else reads the plan: nothing below a source directory that could not be
/// listed is missing from the source (it was not seen), a file the source
/// has but leaves out by size (`src_held`) is not missing either, and a
/// listing cut short by SIGINT/SIGTERM shows nothing missing at all.
pub(super) fn drop_unseen_deletions(
    actions: &mut Vec<Action>,
    src_unreadable: &[RelPath],
    src_held: &std::collections::HashSet<RelPath>,
    stopped: bool,
) {
    actions.retain(|a| match a {
        Action::Delete { path, reason: Reason::Extraneous, .. } => {
            !stopped && !src_unreadable.iter().any(|u| path.starts_with(u)) && !src_held.contains(path)
        }
        _ => true,
    });
}

/// What the source listing showed, as the safety checks read it.
pub(super) struct SourceSeen<'a> {
    /// The source root as the user wrote it (named in messages).
    pub root: &'a Location,
    /// Entries the listing could not read.
    pub warnings: usize,
    /// Directories that could not be listed.
    pub unreadable: usize,
    /// Directories that held synced files at the last run and are empty now.
    pub emptied: &'a [RelPath],
    /// Source files at the last run whose listing was trusted.
    pub baseline: Option<u64>,
    /// Files that passed the filters.
    pub files: u64,
}

/// Why the source listing may be wrong (each reason a phrase), so that no
/// deletion is made on its word. `deletes_files`: the plan would delete
/// files (not only directories) from the destination.
fn suspicions(seen: &SourceSeen<'_>, safety: &Safety, deletes_files: bool) -> Vec<String> {
    let mut suspicions = Vec::new();
    if seen.files == 0 && deletes_files {
        // The classic cron accident, an unmounted disk: the mount point is
        // there and empty. Without history nothing else would notice.
        suspicions.push(format!(
            "the source root {} holds no files (an unmounted disk or a lost share looks like this)",
            seen.root
        ));
    }
    if seen.warnings > 0 {
        suspicions.push(format!("{} unreadable entries in the source listing", seen.warnings));
    }
    if seen.unreadable > 0 {
        suspicions.push(format!("{} source directories could not be listed", seen.unreadable));
    }
    if !seen.emptied.is_empty() {
        let shown: Vec<String> = seen.emptied.iter().take(5).map(|p| p.to_string()).collect();
        suspicions.push(format!(
            "{} source directories that held files at the last run are empty now ({}{})",
            seen.emptied.len(),
            shown.join(", "),
            if seen.emptied.len() > shown.len() { ", ..." } else { "" }
        ));
    }
    if let Some(last) = seen.baseline
        && last > 0
        && seen.files * 100 < last * u64::from(100 - safety.max_shrink_percent.min(100))
    {
        suspicions.push(format!(
            "the source shrank from {last} to {} files, more than --max-shrink {}%",
            seen.files, safety.max_shrink_percent
        ));
    }
    suspicions
}

/// Takes the extraneous deletions out of `actions` when the source looks
/// wrong (unless --force), saying so; returns how many were held back.
pub(super) fn hold_back_deletions(
    actions: &mut Vec<Action>,
    seen: &SourceSeen<'_>,
    safety: &Safety,
    reporter: &Reporter,
) -> u64 {
    let extraneous = |a: &Action| matches!(a, Action::Delete { reason: Reason::Extraneous, .. });
    if safety.force || !actions.iter().any(extraneous) {
        return 0;
    }
    let deletes_files = actions
        .iter()
        .any(|a| matches!(a, Action::Delete { reason: Reason::Extraneous, kind, .. } if *kind != EntryKind::Dir));
    let suspicions = suspicions(seen, safety, deletes_files);
    if suspicions.is_empty() {
        return 0;
    }
    let before = actions.len();
    actions.retain(|a| !extraneous(a));
    let held_back = (before - actions.len()) as u64;
    reporter.error(&format!(
        "safety stop: {held_back} deletions held back because {}; rerun with --force if this is right",
        suspicions.join(" and ")
    ));
    held_back
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(path: &str) -> Location {
        Location::Local(path.into())
    }

    fn remote(url: &str) -> Location {
        let Location::Remote(remote) = Location::parse(url).unwrap() else { panic!("{url}") };
        Location::Remote(remote.normalized())
    }

    fn refused(src: &Location, dst: &Location, filter: &Filter) -> Option<String> {
        refuse_overlap(src, dst, filter).err().map(|e| e.to_string())
    }

    #[test]
    fn overlapping_local_roots_are_refused_with_both_named() {
        let none = Filter::default();
        let same = refused(&local("/data/a"), &local("/data/a"), &none).unwrap();
        assert!(same.contains("same directory") && same.contains("/data/a"), "{same}");
        let into = refused(&local("/data/a"), &local("/data/a/sub/x"), &none).unwrap();
        assert!(into.contains("destination /data/a/sub/x is inside the source /data/a (at `sub/x`)"), "{into}");
        assert!(into.contains("--exclude '/sub/x/'"), "{into}");
        let out = refused(&local("/p/child"), &local("/p"), &none).unwrap();
        assert!(out.contains("source /p/child is inside the destination /p (at `child`)"), "{out}");
        let root = refused(&local("/"), &local("/backup"), &none).unwrap();
        assert!(root.contains("(at `backup`)"), "{root}");
        // Siblings and prefixes that are not ancestors.
        assert_eq!(refused(&local("/data/a"), &local("/data/ab"), &none), None);
        assert_eq!(refused(&local("/data/a"), &local("/data/b/a"), &none), None);
    }

    #[test]
    fn an_excluded_inner_root_may_nest() {
        let exclude = |p: &str| Filter::new(&[], &[p.to_string()], None, None).unwrap();
        assert_eq!(refused(&local("/p/child"), &local("/p"), &exclude("/child/")), None);
        assert_eq!(refused(&local("/a"), &local("/a/backups/x"), &exclude("backups")), None);
        assert!(refused(&local("/a"), &local("/a/backups/x"), &exclude("other")).is_some());
        // The same root cannot be excluded from itself.
        assert!(refused(&local("/a"), &local("/a"), &exclude("*")).is_some());
    }

    #[test]
    fn remote_roots_overlap_on_the_same_server_and_login() {
        let none = Filter::default();
        let a = remote("ftp://bob@host/pub");
        assert!(refused(&a, &remote("ftpes://bob@HOST:21/pub/sub/"), &none).is_some());
        assert!(refused(&a, &remote("ftp://bob@host/pub/"), &none).is_some());
        assert!(refused(&remote("sftp://bob@host/srv/x"), &remote("sftp://bob@host:22/srv"), &none).is_some());
        // Another user (another home, another chroot), port or protocol.
        assert_eq!(refused(&a, &remote("ftp://eve@host/pub/sub"), &none), None);
        assert_eq!(refused(&a, &remote("ftp://bob@host:2121/pub/sub"), &none), None);
        assert_eq!(refused(&a, &remote("sftp://bob@host/pub/sub"), &none), None);
        assert_eq!(refused(&local("/pub"), &remote("sftp://bob@host/pub"), &none), None);
    }

    #[test]
    fn an_empty_source_holds_back_file_deletions_only() {
        let reporter = Reporter::new(crate::engine::report::OutputOptions {
            json: false,
            verbosity: crate::engine::report::Verbosity::Quiet,
        });
        let root = local("/mnt/disk");
        let seen = SourceSeen { root: &root, warnings: 0, unreadable: 0, emptied: &[], baseline: None, files: 0 };
        let delete = |p: &str, kind| Action::Delete {
            path: RelPath::parse(p.as_bytes()).unwrap(),
            kind,
            reason: Reason::Extraneous,
        };
        let mut actions = vec![delete("a", EntryKind::File), delete("d", EntryKind::Dir)];
        assert_eq!(hold_back_deletions(&mut actions, &seen, &Safety::default(), &reporter), 2);
        assert!(actions.is_empty());
        // Only empty directories to remove: nothing to protect.
        let mut dirs = vec![delete("d", EntryKind::Dir)];
        assert_eq!(hold_back_deletions(&mut dirs, &seen, &Safety::default(), &reporter), 0);
        let forced = Safety { force: true, ..Safety::default() };
        let mut actions = vec![delete("a", EntryKind::File)];
        assert_eq!(hold_back_deletions(&mut actions, &seen, &forced, &reporter), 0);
        let phrases = suspicions(&seen, &Safety::default(), true);
        assert!(phrases[0].contains("source root /mnt/disk holds no files"), "{phrases:?}");
    }
}
