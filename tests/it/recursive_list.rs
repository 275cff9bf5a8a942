//! Download resyncs that list the server with one recursive `LIST -aR`,
//! confirmed against the state database (`backend::ftp::recursive`), on
//! real servers: fewer round trips when nothing changed, and every change
//! still seen, also where the server cuts the listing short (pure-ftpd's
//! `-L`) or ignores `-R` (vsftpd).

use std::path::Path;

use crate::common::*;
use crate::harness::{self, FtpServer, FtpServerKind, FtpTls};

/// 2021-01-01: long settled (see `backend::recall`).
const OLD: u64 = 1_609_459_200;

/// 4 directories of 3 subdirectories of 3 files, and a file at the top:
/// 17 directories with the root.
fn fill(server: &FtpServer) {
    server.write_file("top.txt", b"top");
    set_mtime(&server.root.join("top.txt"), OLD);
    for d in 0..4 {
        for e in 0..3 {
            for f in 0..3 {
                let rel = format!("d{d}/e{e}/f{f}.dat");
                let path = server.write_file(&rel, format!("file {rel}").as_bytes());
                set_mtime(&path, OLD + 3_600 * (d * 9 + e * 3 + f));
            }
        }
    }
}

const DIRS: u64 = 17;

/// `barge sync` from the server's root into the scratch destination, with
/// the scratch state database, as `password`.
fn sync_command(s: &Scratch, server: &FtpServer, password: &str) -> std::process::Command {
    let mut cmd = s.barge();
    cmd.env("BARGE_PASSWORD", password)
        .arg("sync")
        .arg(format!("ftp://{}@127.0.0.1:{}/", server.user, server.port))
        .arg(s.dst())
        .args(["--json", "--timeout", "20", "--state"])
        .arg(s.state());
    cmd
}

fn sync(s: &Scratch, server: &FtpServer, extra: &[&str]) -> Run {
    let mut cmd = sync_command(s, server, &server.password);
    cmd.arg("--delete").args(extra);
    let run = Run::of(cmd.output().expect("run barge"));
    assert_eq!(run.code, 0, "{}", run.explain());
    run
}

/// The same paths, contents and file mtimes to the second (FTP's
/// precision; directories' times are the server's own).
fn assert_same_files(server_root: &Path, local: &Path) {
    type Seen = Vec<(Vec<u8>, Option<(String, i128)>)>;
    let files = |root: &Path| -> Seen {
        snapshot(root)
            .into_iter()
            .map(|(path, node)| match node {
                Node::File { hash, mtime_ns } => (path, Some((hash, mtime_ns / 1_000_000_000))),
                _ => (path, None),
            })
            .collect()
    };
    assert_eq!(files(server_root), files(local));
}

fn src_round_trips(run: &Run) -> u64 {
    run.summary()["transfers"]["src_round_trips"].as_u64().unwrap_or_else(|| panic!("{}", run.explain()))
}

fn remembered(state: &Path, key_start: &str) -> Option<String> {
    let db = rusqlite::Connection::open(state).unwrap();
    db.query_row("SELECT value FROM meta WHERE key LIKE ?1", [format!("{key_start}%")], |r| r.get(0)).ok()
}

/// Nothing changed: transferred and deleted nothing, and the listing cost
/// fewer round trips than one listing per directory would (two each).
fn assert_noop(run: &Run, at_most_round_trips: u64) {
    assert_eq!(run.count("files_transferred"), 0, "{}", run.explain());
    assert_eq!(run.count("files_deleted"), 0, "{}", run.explain());
    let trips = src_round_trips(run);
    assert!(trips <= at_most_round_trips, "{trips} round trips, wanted at most {at_most_round_trips}");
}

/// Changes the recursive listing must not hide: a rewrite of the same
/// size (an hour later), a new file, a deleted file, a new directory.
fn change_and_check(s: &Scratch, server: &FtpServer) {
    change_these_and_check(s, server, ["d1/e1/f1.dat", "d3/e2/new.dat", "d0/e0/f0.dat"], &["d2/fresh/x.dat"]);
}

/// Rewrites `rewritten` at the same size an hour later, writes `new` and
/// each of `more`, deletes `deleted`; then all of it must be seen, and the
/// next run be a no-op again.
fn change_these_and_check(s: &Scratch, server: &FtpServer, [rewritten, new, deleted]: [&str; 3], more: &[&str]) {
    let before = std::fs::read(server.root.join(rewritten)).unwrap();
    let changed = server.write_file(rewritten, &before.to_ascii_uppercase());
    set_mtime(&changed, OLD + 100 * 3_600);
    for path in std::iter::once(new).chain(more.iter().copied()) {
        server.write_file(path, b"new");
    }
    std::fs::remove_file(server.root.join(deleted)).unwrap();
    let run = sync(s, server, &[]);
    assert_eq!(run.count("files_transferred"), 2 + more.len() as u64, "{}", run.explain());
    assert_eq!(run.count("files_deleted"), 1, "{}", run.explain());
    assert_same_files(&server.root, &s.dst());
    let again = sync(s, server, &[]);
    assert_eq!(again.count("files_transferred"), 0, "{}", again.explain());
}

#[test]
fn proftpd_noop_is_one_recursive_listing_and_changes_are_seen() {
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    fill(&server);
    let s = Scratch::new();
    let first = sync(&s, &server, &[]);
    assert_eq!(first.count("files_transferred"), 37, "{}", first.explain());
    let listed_per_directory = src_round_trips(&first);
    assert!(listed_per_directory >= 2 * DIRS, "{listed_per_directory}");
    // The remembered login (TCP, greeting, one write), CWD to the root,
    // LIST -aR (EPSV and LIST written at once, the data connection, its
    // end), and beside it a second connection (3) listing the directory
    // where the recursive listing ends (2): 12, where listing every
    // directory takes 2 x 17 (and the first login alone used to take 7).
    // --parallel 2: on a loaded machine the server can time as far and
    // warm up to 15 more connections, whose logins would count too.
    let noop = sync(&s, &server, &["--parallel", "2"]);
    assert_noop(&noop, 12);
    assert_same_files(&server.root, &s.dst());
    change_and_check(&s, &server);
}

/// pure-ftpd stopping each recursive listing at `limit` entries (`-L
/// limit:10`) without a word, over the tree `fill` makes (`files` files):
/// the no-op is one still, and `change` still sees every change.
fn pureftpd_cut_short(limit: &str, fill: fn(&FtpServer), files: u64, change: fn(&Scratch, &FtpServer)) {
    let limit = format!("{limit}:10");
    let server = harness::ftp_server_with(FtpServerKind::PureFtpd, FtpTls::None, &["-L", &limit]);
    fill(&server);
    let s = Scratch::new();
    let first = sync(&s, &server, &[]);
    assert_eq!(first.count("files_transferred"), files, "{}", first.explain());
    let noop = sync(&s, &server, &[]);
    // Round trips: whatever listing what the server left out costs.
    assert_noop(&noop, u64::MAX);
    assert_same_files(&server.root, &s.dst());
    change(&s, &server);
}

#[test]
fn pureftpd_listing_cut_short_costs_listings_not_files() {
    pureftpd_cut_short("20", fill, 37, change_and_check);
}

#[test]
fn vsftpd_ignoring_recursion_is_remembered() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    fill(&server);
    let s = Scratch::new();
    sync(&s, &server, &[]);
    assert_eq!(remembered(&s.state(), "ftp.recursive-list ftp"), None);
    let noop = sync(&s, &server, &[]);
    assert_noop(&noop, u64::MAX);
    let why = remembered(&s.state(), "ftp.recursive-list ftp").expect("remembered");
    assert!(why.contains("ignores"), "{why}");
    change_and_check(&s, &server);
}

#[test]
fn a_remembered_login_is_one_write_and_still_refuses_a_wrong_password() {
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    fill(&server);
    let s = Scratch::new();
    sync(&s, &server, &[]);
    let remembered = remembered(&s.state(), "ftp.login").expect("the login is remembered");
    assert!(remembered.contains("MLST"), "{remembered}");
    assert!(!remembered.contains(&server.password), "{remembered}");
    let run = Run::of(sync_command(&s, &server, "not-the-password").output().expect("run barge"));
    assert_eq!(run.code, 3, "{}", run.explain());
    assert!(run.stderr.contains(&server.user), "{}", run.explain());
    assert!(!run.stderr.contains("not-the-password") && !run.stdout.contains("not-the-password"));
    // A run that could not log in failed: the next run must not take it
    // for one interrupted (and say so).
    let db = rusqlite::Connection::open(s.state()).unwrap();
    let status: String = db.query_row("SELECT status FROM runs ORDER BY id DESC LIMIT 1", [], |r| r.get(0)).unwrap();
    assert_eq!(status, "failed");
}

/// 5 directories of 3 subdirectories of 300 files (4,520 entries with
/// the root's), enough to be listed in parts
/// (`backend::ftp::recursive::MIN_SPLIT_ENTRIES`), and a small sixth part.
fn fill_large(server: &FtpServer) {
    let small = server.write_file("d5/e0/g.dat", b"g");
    set_mtime(&small, OLD);
    for d in 0..5 {
        for e in 0..3 {
            for f in 0..300 {
                let rel = format!("d{d}/e{e}/f{f:03}.dat");
                let path = server.write_file(&rel, rel.as_bytes());
                set_mtime(&path, OLD + 60 * f);
            }
        }
    }
}

/// How many times the server was asked for each command, from proftpd's
/// command log (`ExtendedLog`, one line per command: name and argument).
fn commands_asked(log: &Path, command: &str) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|line| line.starts_with(command)).count()
}

/// Changes in the middle of a part, in the last section of the last part
/// (listed beside it), and in the root (listed on its own): all seen.
fn change_large_and_check(s: &Scratch, server: &FtpServer) {
    let more = ["d2/fresh/x.dat", "top.dat"];
    change_these_and_check(s, server, ["d1/e1/f150.dat", "d4/e2/new.dat", "d0/e0/f000.dat"], &more);
}

#[test]
fn pureftpd_large_tree_in_parts_cut_short_costs_listings_not_files() {
    // Each part's listing (903 entries) is cut at 500.
    pureftpd_cut_short("500", fill_large, 4_501, change_large_and_check);
}

#[test]
fn proftpd_large_tree_is_listed_in_parts_and_changes_are_seen() {
    // proftpd refuses to log into a directory others may write.
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("commands.log");
    let extended = format!("ExtendedLog {} ALL commands", log.display());
    let server =
        harness::ftp_server_with(FtpServerKind::Proftpd, FtpTls::None, &[r#"LogFormat commands "%m %J""#, &extended]);
    fill_large(&server);
    let s = Scratch::new();
    let first = sync(&s, &server, &[]);
    assert_eq!(first.count("files_transferred"), 4_501, "{}", first.explain());
    let before = commands_asked(&log, "LIST -aR");
    let noop = sync(&s, &server, &[]);
    assert_noop(&noop, u64::MAX);
    // One recursive listing per top directory, the root listed on its own.
    assert_eq!(commands_asked(&log, "LIST -aR") - before, 6, "{}", server.logs());
    assert_same_files(&server.root, &s.dst());
    change_large_and_check(&s, &server);
    // A part gone since the last run: it goes (a file and two
    // directories), and the server is not taken for one that cannot list
    // recursively.
    std::fs::remove_dir_all(server.root.join("d5")).unwrap();
    let gone = sync(&s, &server, &[]);
    assert_eq!(gone.count("files_deleted"), 3, "{}", gone.explain());
    assert_same_files(&server.root, &s.dst());
    assert_eq!(remembered(&s.state(), "ftp.recursive-list ftp"), None);
    // How long the listings took is remembered; a server that made them
    // quickly (pure-ftpd) is asked for one: splitting would cost logins.
    let took = remembered(&s.state(), "ftp.recursive-list-time").expect("remembered");
    assert!(took.parse::<u64>().is_ok(), "{took}");
    let db = rusqlite::Connection::open(s.state()).unwrap();
    db.execute("UPDATE meta SET value = '1' WHERE key LIKE 'ftp.recursive-list-time%'", []).unwrap();
    drop(db);
    let before = commands_asked(&log, "LIST -aR");
    let quick = sync(&s, &server, &[]);
    assert_noop(&quick, u64::MAX);
    assert_eq!(commands_asked(&log, "LIST -aR") - before, 1, "{}", server.logs());
}
