//! Safety at the front door: the way a path is typed never switches safety
//! off. Every spelling of one source and destination is one job (one state
//! database, one lock, one history); roots that overlap are refused before
//! anything is created; an empty source never wipes a mirror, history or
//! not; `plan` and `--dry-run` exit as the sync would; a run that cannot
//! start leaves nothing behind.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::harness::{self, FtpServerKind, FtpTls};

/// The state databases in the scratch area's XDG_STATE_HOME.
fn databases(s: &Scratch) -> Vec<PathBuf> {
    let dir = s.path("xdg-state/barge");
    let Ok(entries) = fs::read_dir(&dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "db")).collect();
    found.sort();
    found
}

/// Everything under the scratch area's XDG_STATE_HOME (databases, locks).
fn state_files(s: &Scratch) -> Vec<String> {
    walkdir::WalkDir::new(s.path("xdg-state"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().display().to_string())
        .collect()
}

/// `barge ARGS` run in the scratch area (relative paths start there),
/// with `password` as BARGE_PASSWORD.
fn barge_in(s: &Scratch, password: &str, args: &[&str]) -> Run {
    let mut cmd = s.barge();
    cmd.current_dir(s.dir.path()).env("BARGE_PASSWORD", password).env("NETRC", s.path("netrc")).args(args);
    Run::of(cmd.output().expect("run barge"))
}

fn files_in(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).count()
}

/// Takes `lock_file` the way a running barge holds it.
fn hold_lock(lock_file: &Path) -> fs::File {
    let file = fs::File::options().read(true).write(true).open(lock_file).expect("open the lock");
    file.try_lock().expect("take the lock");
    file
}

/// The trailing slash that made `S/` another job (no history, so a
/// shrunken source deleted the mirror): every spelling of the pair finds
/// the same database, its history and its lock.
#[test]
fn every_spelling_of_a_local_pair_is_one_job() {
    let s = Scratch::new();
    for i in 0..4 {
        write(&s.src(), format!("f{i}.txt"), b"kept");
    }
    std::os::unix::fs::symlink(s.src(), s.path("src-link")).unwrap();
    barge_in(&s, "", &["sync", "src", "dst", "--json"]).expect_code(0);
    let [db] = &databases(&s)[..] else { panic!("{:?}", state_files(&s)) };

    // Three of four files gone: more than --max-shrink, so with the
    // history deletions are held back, whatever the spelling.
    for i in 1..4 {
        fs::remove_file(s.src().join(format!("f{i}.txt"))).unwrap();
    }
    let absolute = format!("{}/", s.src().display());
    let spellings: [(&str, &str); 6] = [
        ("src/", "dst"),
        ("src", "dst/"),
        ("./src/.", "dst//"),
        ("src-link", "dst"),
        (&absolute, "./dst/../dst"),
        ("src//", "xdg-state/../dst/"),
    ];
    for (src, dst) in spellings {
        let run = barge_in(&s, "", &["sync", src, dst, "--delete", "--json"]);
        run.expect_code(5);
        assert!(run.stderr.contains("shrank from 4 to 1 files"), "{src} {dst}: {}", run.explain());
        assert_eq!(files_in(&s.dst()), 4, "{src} {dst}: nothing deleted\n{}", run.explain());
    }
    assert_eq!(databases(&s), std::slice::from_ref(db), "one database for every spelling");

    // And one lock: while a run of the job holds it, every spelling waits.
    let lock = hold_lock(&PathBuf::from(format!("{}.lock", db.display())));
    for (src, dst) in [("src/", "dst"), ("src-link", "dst/"), ("src", "./dst")] {
        let run = barge_in(&s, "", &["sync", src, dst, "--json"]);
        run.expect_code(4);
    }
    drop(lock);
    barge_in(&s, "", &["sync", "src/", "dst", "--delete", "--force", "--json"]).expect_code(0);
    assert_eq!(files_in(&s.dst()), 1);
}

/// URLs: the password, the host's case, the default port, a trailing or
/// doubled slash, `.` and `..`, the user from ~/.netrc, and for SFTP an
/// alias from the ssh config are all one job.
#[test]
fn every_spelling_of_a_remote_pair_is_one_job() {
    let ftp = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    let ssh = harness::ssh_server();
    for i in 0..4 {
        ftp.write_file(&format!("data/f{i}.txt"), b"kept");
        ssh.write_file(&format!("data/f{i}.txt"), b"kept");
    }
    let s = Scratch::new();
    fs::write(s.path("netrc"), format!("machine 127.0.0.1 login {} password {}\n", ftp.user, ftp.password)).unwrap();
    let config = s.path("ssh_config");
    fs::write(&config, format!("Host mirror\n  HostName 127.0.0.1\n  Port {}\n  User {}\n", ssh.port, ssh.user))
        .unwrap();
    let (config, known, key) =
        (config.display().to_string(), ssh.known_hosts.display().to_string(), ssh.client_key.display().to_string());
    let ssh_flags = ["--ssh-config", &config, "--known-hosts", &known, "--identity", &key];
    let ftp_url = |authority: &str, path: &str| format!("ftp://{authority}:{}{path}", ftp.port);
    let ftp_spellings = [
        ftp_url(&format!("{}@127.0.0.1", ftp.user), "/data"),
        ftp_url("127.0.0.1", "/data/"),
        ftp_url(&format!("{}:{}@127.0.0.1", ftp.user, ftp.password), "//data/./"),
        ftp_url(&format!("{}@127.0.0.1", ftp.user), "/other/../data"),
    ];
    let root = ssh.root.display().to_string();
    let ssh_spellings = [
        format!("{}/data", ssh.url()),
        format!("sftp://mirror{root}/data/"),
        format!("sftp://{}@MIRROR{root}//data", ssh.user),
    ];
    let cases =
        [("ftp", &ftp_spellings[..], &[][..], &ftp.root), ("sftp", &ssh_spellings[..], &ssh_flags[..], &ssh.root)];
    for (name, spellings, flags, server_root) in cases {
        let dst = format!("dst-{name}");
        let sync = |src: &str, extra: &[&str]| {
            let mut args = vec!["sync", src, &dst, "--json", "--timeout", "20"];
            args.extend_from_slice(flags);
            args.extend_from_slice(extra);
            barge_in(&s, "", &args)
        };
        let before = databases(&s).len();
        sync(&spellings[0], &[]).expect_code(0);
        for i in 1..4 {
            fs::remove_file(server_root.join(format!("data/f{i}.txt"))).unwrap();
        }
        for spelling in spellings {
            let run = sync(spelling, &["--delete"]);
            run.expect_code(5);
            assert!(run.stderr.contains("shrank from 4 to 1 files"), "{spelling}: {}", run.explain());
            assert_eq!(files_in(&s.path(&dst)), 4, "{spelling}: nothing deleted");
        }
        assert_eq!(databases(&s).len(), before + 1, "{name}: one database for every spelling {:?}", databases(&s));
    }
}

/// A database named the earlier way (after the spelling) keeps its job:
/// the first run under the new rule renames it, history and all.
#[test]
fn a_database_named_the_earlier_way_is_adopted() {
    use barge::location::Location;
    let s = Scratch::new();
    for i in 0..4 {
        write(&s.src(), format!("f{i}.txt"), b"kept");
    }
    let (src, dst) = (format!("{}/", s.src().display()), s.dst().display().to_string());
    let legacy = |text: &str| Location::parse(text).unwrap().legacy_identity();
    let earlier = {
        // default_path reads XDG_STATE_HOME: what the old binary would have used.
        let named = barge::state::default_path(&legacy(&src), &legacy(&dst)).unwrap();
        s.path("xdg-state/barge").join(named.file_name().unwrap())
    };
    let run = barge_in(&s, "", &["sync", &src, &dst, "--json", "--state", &earlier.display().to_string()]);
    run.expect_code(0);
    for i in 1..4 {
        fs::remove_file(s.src().join(format!("f{i}.txt"))).unwrap();
    }
    let run = barge_in(&s, "", &["sync", &src, &dst, "--delete", "--json"]);
    run.expect_code(5);
    assert!(run.stderr.contains("shrank from 4 to 1 files"), "the history came along: {}", run.explain());
    assert!(!earlier.exists(), "renamed, not copied: {:?}", state_files(&s));
    let [db] = &databases(&s)[..] else { panic!("{:?}", state_files(&s)) };
    assert_ne!(db, &earlier);
    assert!(!state_files(&s).iter().any(|f| f.starts_with(&earlier.display().to_string())), "{:?}", state_files(&s));
}

/// Overlapping roots are a usage error naming both, before anything is
/// created: no database, no destination, nothing copied or deleted.
#[test]
fn overlapping_local_roots_are_refused_before_anything_is_created() {
    let s = Scratch::new();
    write(&s.path("a"), "f.txt", b"a");
    write(&s.path("p/child"), "c.txt", b"child");
    write(&s.path("p"), "other.txt", b"beside the source");
    std::os::unix::fs::symlink(s.path("a"), s.path("a-link")).unwrap();
    let a = fs::canonicalize(s.path("a")).unwrap().display().to_string();
    let cases = [
        (["sync", "a", "a/sub"], "inside the source"),
        (["sync", "p/child", "p"], "inside the destination"),
        (["sync", "a", "a"], "same directory"),
        (["sync", "a", "./a"], "same directory"),
        (["sync", "a", "a/"], "same directory"),
        (["sync", "a", "a-link"], "same directory"),
        (["plan", "a", "a/sub"], "inside the source"),
        (["check", "a-link/", "a"], "same directory"),
    ];
    for (args, said) in cases {
        for delete in [false, true] {
            let mut args = args.to_vec();
            if delete && args[0] != "check" {
                args.push("--delete");
            }
            let run = barge_in(&s, "", &args);
            run.expect_code(2);
            assert!(run.stderr.contains(said), "{args:?}: {}", run.explain());
            let named = if args[1].starts_with('p') { "/p" } else { a.as_str() };
            assert!(run.stderr.contains(named), "{args:?} names the roots: {}", run.explain());
        }
    }
    assert!(!s.path("a/sub").exists(), "nothing created");
    assert_eq!(files_in(&s.path("a")), 1);
    assert_eq!(files_in(&s.path("p")), 2, "nothing deleted");
    assert!(state_files(&s).is_empty(), "no database: {:?}", state_files(&s));

    // Excluded from the outer tree, the inner root may nest: no deeper
    // copy on the second run, and the source beside the mirror survives.
    for _ in 0..2 {
        barge_in(&s, "", &["sync", "a", "a/sub", "--delete", "--exclude", "/sub/"]).expect_code(0);
    }
    assert!(s.path("a/sub/f.txt").exists() && !s.path("a/sub/sub").exists());
    barge_in(&s, "", &["sync", "p/child", "p", "--delete", "--exclude", "/child/"]).expect_code(0);
    assert!(s.path("p/child/c.txt").exists() && s.path("p/c.txt").exists());
}

/// Two URLs on one server with the same login overlap as local paths do.
#[test]
fn overlapping_remote_roots_are_refused() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    server.write_file("site/index.html", b"home");
    let s = Scratch::new();
    let url = |path: &str| format!("ftp://{}@127.0.0.1:{}{path}", server.user, server.port);
    for (src, dst) in [(url("/site"), url("/site/backup/")), (url("/site/"), url("//site")), (url("/site/x"), url("/"))]
    {
        let run = barge_in(&s, &server.password, &["sync", &src, &dst, "--delete"]);
        run.expect_code(2);
        assert!(run.stderr.contains(&format!("127.0.0.1:{}/site", server.port)), "{}", run.explain());
    }
    assert!(!server.root.join("site/backup").exists());
    assert_eq!(files_in(&server.root), 1);
    assert!(state_files(&s).is_empty(), "{:?}", state_files(&s));
}

/// An unmounted disk: the source root is there and empty. On a first run
/// (no history to compare with) --delete must not wipe the mirror either.
#[test]
fn an_empty_source_never_wipes_the_mirror() {
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    server.create_dir("mnt");
    let s = Scratch::new();
    fs::create_dir_all(s.path("empty/lost+found")).unwrap();
    let ftp_source = format!("ftp://{}@127.0.0.1:{}/mnt", server.user, server.port);
    for src in ["empty", ftp_source.as_str()] {
        let mirror = s.path("mirror");
        for i in 0..3 {
            write(&mirror, format!("d/f{i}.txt"), b"precious");
        }
        for mode in [&["sync"][..], &["sync", "--max-delete", "100%"], &["plan"], &["sync", "--dry-run"]] {
            let mut args = mode.to_vec();
            args.extend_from_slice(&[src, "mirror", "--delete", "--json"]);
            let run = barge_in(&s, &server.password, &args);
            run.expect_code(5);
            let line = run
                .stderr
                .lines()
                .find(|l| l.contains("holds no files"))
                .unwrap_or_else(|| panic!("{}", run.explain()));
            assert!(line.contains("--force") && line.contains(src), "names the root and the way out: {line}");
            assert_eq!(files_in(&mirror), 3, "{args:?}: nothing deleted\n{}", run.explain());
        }
        let run = barge_in(&s, &server.password, &["sync", src, "mirror", "--delete", "--force", "--json"]);
        run.expect_code(0);
        assert_eq!(files_in(&mirror), 0, "{}", run.explain());
        fs::remove_dir_all(&mirror).unwrap();
    }
}

/// `plan` and `--dry-run` apply the sync's safety checks and exit with
/// the code the sync would give, after printing what they found.
#[test]
fn plan_and_dry_run_exit_as_the_sync_would() {
    let s = Scratch::new();
    for i in 0..4 {
        write(&s.src(), format!("f{i}.txt"), b"data");
    }
    s.sync(&[]).expect_code(0);
    let state = s.state().display().to_string();
    let (src, dst) = (s.src().display().to_string(), s.dst().display().to_string());
    let plan = |extra: &[&str]| {
        let mut args = vec!["plan", &src, &dst, "--state", &state, "--json", "--delete"];
        args.extend_from_slice(extra);
        barge_in(&s, "", &args)
    };
    plan(&[]).expect_code(0);
    for i in 1..4 {
        fs::remove_file(s.src().join(format!("f{i}.txt"))).unwrap();
    }
    write(&s.src(), "f0.txt", b"changed");
    // Shrunk since the last run: the sync would hold back and exit 5.
    for extra in [&[][..], &["--verbose"]] {
        let run = plan(extra);
        run.expect_code(5);
        assert!(run.stderr.contains("shrank from 4 to 1 files"), "{}", run.explain());
        let summary = run.json().pop().unwrap();
        assert_eq!(summary["type"], "plan", "{}", run.explain());
        assert_eq!(summary["files_transferred"], 1, "the copy is still shown: {}", run.explain());
        assert_eq!(summary["files_deleted"], 0, "as the sync would: {}", run.explain());
    }
    let run = barge_in(&s, "", &["sync", &src, &dst, "--state", &state, "--json", "--delete", "--dry-run"]);
    run.expect_code(5);
    plan(&["--force"]).expect_code(0);
    // --max-delete: the sync would change nothing.
    let run = plan(&["--force", "--max-delete", "1"]);
    run.expect_code(5);
    assert!(run.stderr.contains("more than --max-delete allows (1)"), "{}", run.explain());
    assert_eq!(files_in(&s.dst()), 4, "plan changes nothing");
    assert_eq!(fs::read(s.dst().join("f0.txt")).unwrap(), b"data", "plan changes nothing");
}

/// A run that cannot start (source missing, login refused) leaves no
/// destination directory and no state database behind, local or remote.
#[test]
fn a_run_that_cannot_start_leaves_nothing_behind() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    server.write_file("data/a.txt", b"a");
    let s = Scratch::new();
    let url = |path: &str| format!("ftp://{}@127.0.0.1:{}{path}", server.user, server.port);
    let missing = s.path("no-such-source").display().to_string();
    let new_dst = s.path("new/mirror").display().to_string();
    let cases = [
        (missing.clone(), new_dst.clone(), server.password.clone()),
        (url("/data"), new_dst.clone(), "wrong password".to_string()),
        (url("/no-such-dir"), new_dst.clone(), server.password.clone()),
        (missing, url("/new-mirror"), server.password.clone()),
    ];
    for (src, dst, password) in &cases {
        let run = barge_in(&s, password, &["sync", src, dst, "--json", "--timeout", "10", "--retries", "0"]);
        run.expect_code(3);
        assert!(!s.path("new").exists(), "{src} -> {dst}: no destination\n{}", run.explain());
        assert!(!server.root.join("new-mirror").exists(), "{src} -> {dst}: no remote destination");
        assert!(databases(&s).is_empty(), "{src} -> {dst}: no database {:?}", state_files(&s));
        assert!(state_files(&s).is_empty(), "{src} -> {dst}: no lock either {:?}", state_files(&s));
    }
    // The same job, once it can start, runs and keeps its database.
    barge_in(&s, &server.password, &["sync", &url("/data"), &new_dst, "--json"]).expect_code(0);
    assert!(s.path("new/mirror/a.txt").exists());
    assert_eq!(databases(&s).len(), 1);
}
