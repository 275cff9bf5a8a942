//! Where the time of a local no-op resync goes: times each step that
//! `barge sync` takes before it has anything to do, on trees that are already
//! in sync (as `benches/noop_resync.sh` leaves them), and an alternative
//! directory walk for comparison.
//!
//! ```text
//! cargo run --release --example resync_breakdown -- SRC DST STATE [ROUNDS]
//! ```
//!
//! Steps, each timed ROUNDS times (default 5); printed: the median, min and
//! max wall time, and the median CPU time (user + system, all threads):
//! - `walk_src`: `LocalBackend::walk` of the source alone (walkdir, sorted by
//!   name, one `statx` per entry on the entry's full path);
//! - `walk_both`: both walks at once, as `sync` runs them;
//! - `load_synced`: the state database's `synced` table into a `HashMap`;
//! - `plan`: the planner on the two listings and that map;
//! - `alt_walk_src`, `alt_walk_both`: a plain recursive `std::fs::read_dir`
//!   walk whose `DirEntry::metadata` stats each name relative to the open
//!   directory (`statx(dirfd, name)`), names sorted as bytes, no re-parsing
//!   of the path: what the local walk could cost.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use barge::backend::local::LocalBackend;
use barge::backend::{Backend, Entry, EntryKind, MissingRoot, Mtime};
use barge::path::RelPath;
use barge::plan::{CompareMode, CompareRule, LinkRule, PermRule, PlanInput, plan};
use barge::state::StateDb;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// CPU time (user + system) of the whole process so far, all threads.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Wall and CPU time of each step, per round.
#[derive(Default)]
struct Timings(HashMap<&'static str, (Vec<Duration>, Vec<Duration>)>);

impl Timings {
    fn time<T>(&mut self, key: &'static str, step: impl FnOnce() -> T) -> T {
        let (wall, cpu) = (Instant::now(), cpu_time());
        let out = step();
        let slot = self.0.entry(key).or_default();
        slot.0.push(wall.elapsed());
        slot.1.push(cpu_time().saturating_sub(cpu));
        out
    }
}

fn entry(path: RelPath, meta: &std::fs::Metadata) -> Entry {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::File
    };
    Entry {
        path,
        kind,
        size: if kind == EntryKind::Dir { 0 } else { meta.size() },
        mtime: Some(Mtime::from_unix(meta.mtime(), u32::try_from(meta.mtime_nsec()).unwrap_or(0))),
        inode: meta.ino(),
        coarse_mtime_s: 0,
        hash: None,
        link_target: None,
        mode: None,
        owner: None,
    }
}

/// Pre-order walk, children sorted by name bytes: tree order without a sort
/// of the whole listing, and every stat relative to its directory's fd.
fn alt_walk(root: &Path, rel: &RelPath, out: &mut Vec<Entry>) -> std::io::Result<()> {
    let mut children = Vec::new();
    for item in std::fs::read_dir(rel.to_local(root))? {
        let item = item?;
        let name = item.file_name();
        let Ok(path) = rel.join(name.as_bytes()) else { continue };
        let meta = item.metadata()?;
        children.push(entry(path, &meta));
    }
    children.sort_unstable_by(|a, b| a.path.file_name().cmp(b.path.file_name()));
    for child in children {
        let is_dir = child.is_dir();
        let path = child.path.clone();
        out.push(child);
        if is_dir {
            alt_walk(root, &path, out)?;
        }
    }
    Ok(())
}

fn alt_listing(root: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    alt_walk(root, &RelPath::root(), &mut out).expect("walk");
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: resync_breakdown SRC DST STATE [ROUNDS]");
        std::process::exit(2);
    }
    let (src_root, dst_root, state) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]), PathBuf::from(&args[3]));
    let rounds: usize = args.get(4).map_or(5, |a| a.parse().expect("a number"));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");

    let (src, dst) = rt.block_on(async {
        let src = LocalBackend::open(src_root.clone(), MissingRoot::Fail).await.expect("open source");
        let dst = LocalBackend::open(dst_root.clone(), MissingRoot::Fail).await.expect("open destination");
        (src, dst)
    });
    let rule = CompareRule::new(CompareMode::Mtime, Duration::from_nanos(1), Duration::from_nanos(1), true);

    let mut t = Timings::default();
    let mut entries = (0, 0);
    let mut checks = (0u64, 0usize);
    for _ in 0..rounds {
        drop(t.time("walk_src", || rt.block_on(src.walk()).expect("walk")));

        let (s, d) = t.time("walk_both", || rt.block_on(async { tokio::join!(src.walk(), dst.walk()) }));
        let (s, d) = (s.expect("walk").entries, d.expect("walk").entries);
        entries = (s.len(), d.len());

        let synced = t
            .time("load_synced", || StateDb::open(&state).expect("state database").load_synced().expect("load synced"));

        let p = t.time("plan", || {
            plan(PlanInput {
                src: s,
                dst: d,
                src_unreadable: &[],
                synced: &synced,
                rule,
                delete: false,
                links: LinkRule::default(),
                perms: PermRule::default(),
            })
        });
        checks = (p.unchanged, p.actions.len());

        let alt = t.time("alt_walk_src", || alt_listing(&src_root));
        assert_eq!(alt.len(), entries.0, "the alternative walk sees the same entries");
        assert!(alt.windows(2).all(|w| w[0].path < w[1].path), "and in tree order");
        drop(alt);

        drop(t.time("alt_walk_both", || {
            std::thread::scope(|scope| {
                let a = scope.spawn(|| alt_listing(&src_root));
                let b = scope.spawn(|| alt_listing(&dst_root));
                (a.join().expect("walk"), b.join().expect("walk"))
            })
        }));
    }
    println!("src_entries={} dst_entries={} unchanged={} actions={}", entries.0, entries.1, checks.0, checks.1);
    println!("{:<14} {:>12} {:>12} {:>12} {:>16}", "step", "wall median", "wall min", "wall max", "CPU median");
    for key in ["walk_src", "walk_both", "load_synced", "plan", "alt_walk_src", "alt_walk_both"] {
        let (wall, cpu) = t.0.remove(key).unwrap_or_default();
        let ms = |d: Option<Duration>| format!("{:.1} ms", d.unwrap_or_default().as_secs_f64() * 1e3);
        let (min, max) = (wall.iter().min().copied(), wall.iter().max().copied());
        println!(
            "{key:<14} {:>12} {:>12} {:>12} {:>16}",
            ms(Some(median(wall))),
            ms(min),
            ms(max),
            ms(Some(median(cpu)))
        );
    }
}
