//! `barge sync|plan|check` between two local trees, through the real binary.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

fn sample_tree(s: &Scratch) {
    let src = s.src();
    write(&src, "a.txt", b"alpha");
    write(&src, "dir/b.bin", &bytes(1, 100_000));
    write(&src, "dir/sub/c.txt", b"charlie");
    write(&src, "dir/sub/empty-file", b"");
    fs::create_dir_all(src.join("empty-dir")).unwrap();
    set_mtime(&src.join("a.txt"), 1_600_000_000);
}

#[test]
fn first_sync_mirrors_content_mtimes_and_directories() {
    let s = Scratch::new();
    sample_tree(&s);
    let run = s.sync(&[]);
    run.expect_code(0);
    assert_mirrors(&s.src(), &s.dst());
    assert_eq!(run.count("files_transferred"), 4);
    assert_eq!(run.count("bytes_transferred"), 5 + 100_000 + 7);
    assert_eq!(run.count("errors"), 0);
    let summary = run.summary();
    for key in ["files_deleted", "files_unchanged", "duration_s"] {
        assert!(summary.get(key).is_some(), "summary lacks {key}: {summary}");
    }
    assert!(temporaries(&s.dst()).is_empty());
}

#[test]
fn noop_resync_transfers_nothing() {
    let s = Scratch::new();
    sample_tree(&s);
    s.sync(&[]).expect_code(0);
    let before = snapshot(&s.dst());
    let run = s.sync(&[]);
    run.expect_code(0);
    assert_eq!(run.count("files_transferred"), 0);
    assert_eq!(run.count("files_unchanged"), 4);
    assert!(run.events("copy").is_empty() && run.events("mkdir").is_empty(), "{}", run.explain());
    assert_eq!(snapshot(&s.dst()), before);
}

#[test]
fn changed_new_and_deleted_files() {
    let s = Scratch::new();
    sample_tree(&s);
    s.sync(&[]).expect_code(0);
    // Same size, new mtime; new size; a new file; a deleted one.
    write(&s.src(), "a.txt", b"ALPHA");
    set_mtime(&s.src().join("a.txt"), 1_700_000_000);
    write(&s.src(), "dir/sub/c.txt", b"charlie, longer now");
    write(&s.src(), "dir/new.txt", b"new");
    fs::remove_file(s.src().join("dir/b.bin")).unwrap();

    let run = s.sync(&[]);
    run.expect_code(0);
    let mut copied = run.events("copy");
    copied.sort();
    assert_eq!(copied, ["a.txt", "dir/new.txt", "dir/sub/c.txt"]);
    // Without --delete the file the source lost stays.
    assert!(s.dst().join("dir/b.bin").exists());
    assert_eq!(fs::read(s.dst().join("a.txt")).unwrap(), b"ALPHA");

    let run = s.sync(&["--delete"]);
    run.expect_code(0);
    assert_eq!(run.events("delete"), ["dir/b.bin"]);
    assert_eq!(run.count("files_deleted"), 1);
    assert_mirrors(&s.src(), &s.dst());
}

#[test]
fn delete_removes_extraneous_trees_and_max_delete_stops_before_any_change() {
    let s = Scratch::new();
    sample_tree(&s);
    s.sync(&[]).expect_code(0);
    write(&s.dst(), "junk/deep/x", b"x");
    write(&s.dst(), "junk/y", b"y");
    write(&s.dst(), "z", b"z");
    write(&s.src(), "fresh.txt", b"fresh");
    let before = snapshot(&s.dst());

    // Five entries would go: junk, junk/deep, junk/deep/x, junk/y, z.
    let run = s.sync(&["--delete", "--max-delete", "4"]);
    run.expect_code(5);
    assert!(run.stderr.contains("--max-delete"), "{}", run.explain());
    assert_eq!(snapshot(&s.dst()), before, "a safety stop must change nothing");

    s.sync(&["--delete", "--max-delete", "5"]).expect_code(0);
    assert_mirrors(&s.src(), &s.dst());
}

#[test]
fn type_changes_replace_files_and_directories() {
    let s = Scratch::new();
    write(&s.src(), "x/inner", b"1");
    write(&s.src(), "y", b"2");
    s.sync(&[]).expect_code(0);
    fs::remove_dir_all(s.src().join("x")).unwrap();
    write(&s.src(), "x", b"now a file");
    fs::remove_file(s.src().join("y")).unwrap();
    write(&s.src(), "y/inner", b"now a dir");

    // Replacing a non-empty directory needs --delete.
    let run = s.sync(&[]);
    run.expect_code(1);
    assert!(run.stderr.contains("--delete"), "{}", run.explain());
    assert!(s.dst().join("x/inner").exists());
    s.sync(&["--delete"]).expect_code(0);
    assert_mirrors(&s.src(), &s.dst());
}

#[test]
fn plan_prints_actions_with_reasons_and_changes_nothing() {
    let s = Scratch::new();
    sample_tree(&s);
    write(&s.dst(), "extra", b"e");
    let before = snapshot(&s.dst());
    let out = s.barge().arg("plan").arg(s.src()).arg(s.dst()).arg("--delete").arg("--state").arg(s.state()).output();
    let run = Run::of(out.unwrap());
    run.expect_code(0);
    assert!(run.stdout.contains("copy      a.txt  (new)"), "{}", run.explain());
    assert!(run.stdout.contains("mkdir     empty-dir  (new)"), "{}", run.explain());
    assert!(run.stdout.contains("delete    extra  (not in source)"), "{}", run.explain());
    assert_eq!(snapshot(&s.dst()), before);
    assert!(!s.state().exists(), "plan must not create the state database");
}

#[test]
fn check_exits_zero_only_when_trees_match() {
    let s = Scratch::new();
    sample_tree(&s);
    let check = |s: &Scratch| {
        Run::of(s.barge().arg("check").arg(s.src()).arg(s.dst()).arg("--state").arg(s.state()).output().unwrap())
    };
    let run = check(&s);
    run.expect_code(1);
    assert!(run.stdout.contains("missing  a.txt"), "{}", run.explain());
    s.sync(&[]).expect_code(0);
    check(&s).expect_code(0);
    write(&s.dst(), "dir/sub/c.txt", b"tampered");
    write(&s.dst(), "stray", b"s");
    let run = check(&s);
    run.expect_code(1);
    assert!(run.stdout.contains("differs  dir/sub/c.txt"), "{}", run.explain());
    assert!(run.stdout.contains("extra    stray"), "{}", run.explain());
}

#[test]
fn filters_select_what_is_mirrored_and_protect_what_is_excluded() {
    let s = Scratch::new();
    write(&s.src(), "keep.txt", b"k");
    write(&s.src(), "skip.log", b"l");
    write(&s.src(), "cache/a.txt", b"c");
    write(&s.src(), "docs/big.txt", &bytes(2, 5000));
    write(&s.src(), "docs/small.txt", b"s");
    write(&s.dst(), "old.log", b"protected by --exclude");

    let run =
        s.sync(&["--delete", "--exclude", "*.log", "--exclude", "cache/", "--include", "*.txt", "--max-size", "1K"]);
    run.expect_code(0);
    let mut copied = run.events("copy");
    copied.sort();
    assert_eq!(copied, ["docs/small.txt", "keep.txt"]);
    assert!(s.dst().join("old.log").exists(), "excluded destination files are never deleted");
    assert!(!s.dst().join("cache").exists());

    let bad = s.sync(&["--exclude", "a["]);
    bad.expect_code(2);
}

#[test]
fn non_utf8_and_non_ascii_names_round_trip() {
    let s = Scratch::new();
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9-latin1.txt");
    write(&s.src(), latin1, b"bytes, not text");
    write(&s.src(), "東京/naïve ☃.txt", b"unicode");
    write(&s.src(), "sp ace/new\nline", b"control character in a name");
    let run = s.sync(&[]);
    run.expect_code(0);
    assert_mirrors(&s.src(), &s.dst());
    assert_eq!(fs::read(s.dst().join(latin1)).unwrap(), b"bytes, not text");
    // Reported names are escaped, never raw control bytes.
    assert!(run.stdout.contains("caf\\\\xe9-latin1.txt"), "{}", run.explain());
    assert!(run.stdout.contains("new\\\\x0aline"), "{}", run.explain());
    s.sync(&[]).expect_code(0);
    assert_eq!(s.sync(&[]).count("files_transferred"), 0);
}

#[test]
fn compare_modes_size_mtime_and_hash() {
    let s = Scratch::new();
    write(&s.src(), "f", b"aaaa");
    s.sync(&[]).expect_code(0);
    // Same size and mtime, different content: only the hash sees it.
    let mtime = fs::metadata(s.src().join("f")).unwrap().modified().unwrap();
    write(&s.src(), "f", b"bbbb");
    fs::File::options().write(true).open(s.src().join("f")).unwrap().set_modified(mtime).unwrap();
    assert_eq!(s.sync(&["--compare", "size"]).count("files_transferred"), 0);
    assert_eq!(s.sync(&[]).count("files_transferred"), 0);
    assert_eq!(s.sync(&["--compare", "hash"]).count("files_transferred"), 1);
    assert_eq!(fs::read(s.dst().join("f")).unwrap(), b"bbbb");

    // Equal content with another mtime: hash mode only sets the mtime.
    set_mtime(&s.dst().join("f"), 1_000_000);
    let run = s.sync(&["--compare", "hash"]);
    assert_eq!(run.count("files_transferred"), 0);
    assert_eq!(run.events("set-mtime"), ["f"]);
    assert_mirrors(&s.src(), &s.dst());
}

#[test]
fn hash_cache_means_an_unchanged_file_is_never_hashed_twice() {
    let s = Scratch::new();
    write(&s.src(), "f", b"1111");
    s.sync(&[]).expect_code(0);
    s.sync(&["--compare", "hash"]).expect_code(0);
    // Rewrite the source in place (same inode, size and mtime). A fresh hash
    // would see new content; the cache, keyed by path, size, mtime and
    // inode, answers instead, so nothing is copied. That proves the cache
    // was used rather than the file being hashed again.
    let path = s.src().join("f");
    let (mtime, inode) = {
        let m = fs::metadata(&path).unwrap();
        (m.modified().unwrap(), std::os::unix::fs::MetadataExt::ino(&m))
    };
    fs::write(&path, b"2222").unwrap();
    fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap()), inode);
    assert_eq!(s.sync(&["--compare", "hash"]).count("files_transferred"), 0);
    // A changed key (new mtime) invalidates the cache entry.
    set_mtime(&path, 1_800_000_000);
    s.sync(&["--compare", "hash"]).expect_code(0);
    assert_eq!(fs::read(s.dst().join("f")).unwrap(), b"2222");
}

#[test]
fn directory_mtimes_are_restored_after_their_contents() {
    let s = Scratch::new();
    write(&s.src(), "d/e/f", b"x");
    set_mtime(&s.src().join("d/e"), 1_500_000_000);
    set_mtime(&s.src().join("d"), 1_400_000_000);
    s.sync(&[]).expect_code(0);
    assert_mirrors(&s.src(), &s.dst());
    // A later change inside d/e changes the destination directory's mtime;
    // barge puts it back.
    write(&s.src(), "d/e/g", b"y");
    set_mtime(&s.src().join("d/e"), 1_500_000_000);
    s.sync(&[]).expect_code(0);
    assert_mirrors(&s.src(), &s.dst());
}

#[test]
fn sigkill_during_a_large_copy_leaves_no_partial_file_and_the_rerun_resumes() {
    let s = Scratch::new();
    let size = 24 << 20;
    let content = bytes(7, size);
    write(&s.src(), "big.bin", &content);
    write(&s.dst(), "big.bin", b"old version");
    let child = s
        .barge()
        .args(["sync", "--bwlimit", "8M", "--json", "--state"])
        .arg(s.state())
        .arg(s.src())
        .arg(s.dst())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a good part of the file sits in the temporary.
    kill_once_partial(child, &s.dst(), 4 << 20, Duration::from_secs(20));
    // The final name still holds the old, complete version.
    assert_eq!(fs::read(s.dst().join("big.bin")).unwrap(), b"old version");
    assert_eq!(temporaries(&s.dst()).len(), 1);

    let run = s.sync(&[]);
    run.expect_code(0);
    assert_eq!(fs::read(s.dst().join("big.bin")).unwrap(), content);
    assert!(run.count("bytes_transferred") < size as u64, "the rerun should resume, not restart\n{}", run.explain());
    assert!(temporaries(&s.dst()).is_empty(), "temporaries left: {:?}", temporaries(&s.dst()));
    assert_mirrors(&s.src(), &s.dst());
}

#[test]
fn stale_temporaries_are_removed_and_never_copied_or_deleted_as_content() {
    let s = Scratch::new();
    write(&s.src(), "a", b"a");
    write(&s.src(), ".barge-0123456789abcdef.part", b"a source-side partial");
    write(&s.dst(), "sub/.barge-fedcba9876543210.part", b"stale partial");
    let run = s.sync(&["--delete"]);
    run.expect_code(0);
    assert!(temporaries(&s.dst()).is_empty(), "{:?}", temporaries(&s.dst()));
    assert!(!run.events("delete").iter().any(|p| p.contains(".barge-")), "{}", run.explain());
    assert!(!s.dst().join(".barge-0123456789abcdef.part").exists());
}

#[test]
fn a_second_run_of_the_same_job_exits_4_naming_the_holder() {
    let s = Scratch::new();
    write(&s.src(), "big.bin", &bytes(3, 8 << 20));
    let mut first = s
        .barge()
        .args(["sync", "--bwlimit", "2M", "-q", "--state"])
        .arg(s.state())
        .arg(s.src())
        .arg(s.dst())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while temporaries(&s.dst()).is_empty() {
        assert!(Instant::now() < deadline, "first run never started copying");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = s.sync(&[]);
    first.kill().unwrap();
    first.wait().unwrap();
    second.expect_code(4);
    assert!(second.stderr.contains(&format!("process {}", first.id())), "{}", second.explain());
}

#[test]
fn unreadable_source_files_fail_alone_with_exit_1() {
    let s = Scratch::new();
    write(&s.src(), "ok/one", b"1");
    write(&s.src(), "ok/two", b"2");
    write(&s.src(), "secret", b"no access");
    write(&s.src(), "closed/inside", b"no access either");
    fs::set_permissions(s.src().join("secret"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(s.src().join("closed"), fs::Permissions::from_mode(0o000)).unwrap();
    write(&s.dst(), "closed/kept", b"must survive --delete");
    let mut cmd = s.barge();
    if is_root() {
        // root reads anything: run barge as nobody, who owns the rest.
        for p in [s.dir.path().to_path_buf(), s.src(), s.src().join("ok"), s.dst(), s.dst().join("closed")] {
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        }
        for f in ["ok/one", "ok/two"] {
            std::os::unix::fs::chown(s.src().join(f), Some(65534), Some(65534)).unwrap();
        }
        std::os::unix::fs::chown(s.dst().join("closed/kept"), Some(65534), Some(65534)).unwrap();
        cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(env!("CARGO_BIN_EXE_barge"));
        cmd.env("XDG_STATE_HOME", s.dir.path().join("xdg-state"));
    }
    cmd.arg("sync").arg(s.src()).arg(s.dst()).arg("--delete").arg("--json").arg("--state").arg(s.state());
    let run = Run::of(cmd.output().unwrap());
    run.expect_code(1);
    assert!(run.stderr.contains("secret"), "{}", run.explain());
    assert!(run.stderr.contains("closed"), "{}", run.explain());
    assert_eq!(fs::read(s.dst().join("ok/one")).unwrap(), b"1");
    assert_eq!(fs::read(s.dst().join("ok/two")).unwrap(), b"2");
    assert!(!s.dst().join("secret").exists());
    assert!(s.dst().join("closed/kept").exists(), "nothing below an unreadable source directory is deleted");
    assert!(run.count("errors") >= 2);
}

#[test]
fn bwlimit_holds_the_total_rate() {
    let s = Scratch::new();
    write(&s.src(), "a", &bytes(4, 1 << 20));
    write(&s.src(), "b", &bytes(5, 1 << 20));
    let started = Instant::now();
    s.sync(&["--bwlimit", "1M", "--parallel", "4"]).expect_code(0);
    // 2 MiB at 1 MiB/s, less a tenth of a second of burst.
    assert!(started.elapsed() >= Duration::from_millis(1700), "took {:?}", started.elapsed());
    assert_mirrors(&s.src(), &s.dst());
}

#[test]
fn usage_and_unreachable_roots_have_their_exit_codes() {
    let s = Scratch::new();
    let missing = Run::of(s.barge().arg("sync").arg(s.path("nope")).arg(s.dst()).output().unwrap());
    missing.expect_code(3);
    assert!(missing.stderr.contains("nope"), "{}", missing.explain());
    fs::create_dir_all(s.src()).unwrap();
    s.sync(&["--bwlimit", "lots"]).expect_code(2);
    s.sync(&["--parallel", "0"]).expect_code(2);
    let remote = Run::of(s.barge().arg("sync").arg("gopher://x/").arg(s.dst()).output().unwrap());
    remote.expect_code(2);
    let help = Run::of(s.barge().arg("--help").output().unwrap());
    help.expect_code(0);
    assert!(help.stdout.contains("Exit codes"), "{}", help.explain());
}

#[test]
fn state_database_is_owner_only_and_records_runs() {
    let s = Scratch::new();
    write(&s.src(), "a", b"a");
    // Default location: under XDG_STATE_HOME.
    let out = s.barge().arg("sync").arg(s.src()).arg(s.dst()).arg("-q").output().unwrap();
    Run::of(out).expect_code(0);
    let dbs: Vec<_> = fs::read_dir(s.dir.path().join("xdg-state/barge"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "db"))
        .collect();
    assert_eq!(dbs.len(), 1);
    let mode = fs::metadata(dbs[0].path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn progress_bar_only_on_a_terminal() {
    let s = Scratch::new();
    write(&s.src(), "a", &bytes(6, 1 << 20));
    // Not a terminal: nothing but the summary.
    let piped = Run::of(
        s.barge()
            .arg("sync")
            .arg(s.src())
            .arg(s.dst())
            .args(["--bwlimit", "1M", "--state"])
            .arg(s.state())
            .output()
            .unwrap(),
    );
    piped.expect_code(0);
    assert!(!piped.stderr.contains("eta") && !piped.stdout.contains("eta"), "{}", piped.explain());

    // On a terminal (script(1) gives it a pty): a progress bar.
    fs::remove_dir_all(s.dst()).unwrap();
    let command = format!(
        "{} sync {} {} --bwlimit 512K --state {}",
        env!("CARGO_BIN_EXE_barge"),
        s.src().display(),
        s.dst().display(),
        s.path("tty-state.db").display()
    );
    let tty = Run::of(
        std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("XDG_STATE_HOME", s.path("xdg"))
            .output()
            .unwrap(),
    );
    tty.expect_code(0);
    assert!(tty.stdout.contains("eta"), "{}", tty.explain());
    assert_mirrors(&s.src(), &s.dst());
}

#[test]
fn max_delete_as_a_percentage_of_the_destination() {
    let s = Scratch::new();
    for i in 0..20 {
        write(&s.src(), format!("f{i:02}"), b"x");
    }
    s.sync(&[]).expect_code(0);
    for i in 0..5 {
        fs::remove_file(s.src().join(format!("f{i:02}"))).unwrap();
    }
    // 5 of 20 entries is 25%.
    s.sync(&["--delete", "--max-delete", "20%"]).expect_code(5);
    assert!(s.dst().join("f00").exists());
    s.sync(&["--delete", "--max-delete", "25%"]).expect_code(0);
    assert!(!s.dst().join("f00").exists());
    s.sync(&["--max-delete", "101%"]).expect_code(2);
}

#[test]
fn a_source_that_shrank_too_much_holds_back_deletions_until_forced() {
    let s = Scratch::new();
    for i in 0..10 {
        write(&s.src(), format!("f{i}"), b"x");
    }
    s.sync(&["--delete"]).expect_code(0);
    // The source "lost" 8 of 10 files: a failed mount, a truncated listing?
    for i in 0..8 {
        fs::remove_file(s.src().join(format!("f{i}"))).unwrap();
    }
    write(&s.src(), "new", b"n");
    let run = s.sync(&["--delete"]);
    run.expect_code(5);
    assert!(run.stderr.contains("shrank") && run.stderr.contains("--force"), "{}", run.explain());
    assert!(s.dst().join("f0").exists(), "nothing deleted");
    assert!(s.dst().join("new").exists(), "copies still happen");
    // The held-back run did not lower the baseline: still a safety stop.
    s.sync(&["--delete"]).expect_code(5);
    // A smaller shrink allowance is a choice; so is --force.
    s.sync(&["--delete", "--force"]).expect_code(0);
    assert_mirrors(&s.src(), &s.dst());
}

#[test]
fn report_metrics_and_log_files() {
    let s = Scratch::new();
    write(&s.src(), "a", b"abc");
    let (report, metrics, log) = (s.path("report.json"), s.path("barge.prom"), s.path("barge.log"));
    let run = s.sync(&[
        "--report",
        report.to_str().unwrap(),
        "--metrics",
        metrics.to_str().unwrap(),
        "--job-name",
        "nightly",
        "--log-file",
        log.to_str().unwrap(),
    ]);
    run.expect_code(0);
    let value: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(value["files_transferred"], 1);
    assert_eq!(value["exit_code"], 0);
    assert_eq!(fs::metadata(&report).unwrap().permissions().mode() & 0o777, 0o600);
    let text = fs::read_to_string(&metrics).unwrap();
    for line in [
        "barge_last_run_files_transferred{job=\"nightly\"} 1",
        "barge_last_run_bytes_transferred{job=\"nightly\"} 3",
        "barge_last_run_exit_code{job=\"nightly\"} 0",
        "# TYPE barge_last_success_timestamp_seconds gauge",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let logged = fs::read_to_string(&log).unwrap();
    assert!(logged.contains("copy      a  (new, 3 B)"), "{logged}");
    assert!(logged.contains("\"type\":\"summary\""), "{logged}");
}

/// Records of files gone from both sides (deleted by something else, not
/// by barge) are forgotten: the state database, and the map every run
/// loads, follow the tree, not its history. benches/soak.sh found 56,479
/// records for a tree of 2,400 files after 200 runs of one direction, and
/// barge's peak RSS rising with them.
#[test]
fn records_of_files_gone_from_both_sides_are_forgotten() {
    let s = Scratch::new();
    for i in 0..20 {
        write(&s.src(), format!("gone/f{i}"), b"x");
    }
    write(&s.src(), "keep.txt", b"kept");
    s.sync(&[]).expect_code(0);
    let records = || {
        let db = rusqlite::Connection::open(s.state()).unwrap();
        let mut paths: Vec<String> = db
            .prepare("SELECT path FROM synced")
            .unwrap()
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|p| String::from_utf8(p.unwrap()).unwrap())
            .collect();
        paths.sort();
        paths
    };
    assert!(records().contains(&"gone/f7".to_string()), "{:?}", records());
    fs::remove_dir_all(s.src().join("gone")).unwrap();
    fs::remove_dir_all(s.dst().join("gone")).unwrap();
    s.sync(&[]).expect_code(0);
    assert_eq!(records(), ["keep.txt"]);
}

/// `check` after a sync without `--delete`: the extra destination entries
/// make it exit 1, and it says how many and which flag removes them.
#[test]
fn check_names_the_extra_entries_and_the_flag_that_removes_them() {
    let s = Scratch::new();
    write(&s.src(), "a.txt", b"a");
    s.sync(&[]).expect_code(0);
    write(&s.dst(), "old-1.txt", b"stale");
    write(&s.dst(), "old-2.txt", b"stale");
    let mut cmd = s.barge();
    cmd.arg("check").arg(s.src()).arg(s.dst()).arg("--state").arg(s.state());
    let run = Run::of(cmd.output().unwrap());
    run.expect_code(1);
    assert!(
        run.stderr.contains("2 destination entries are not in the source") && run.stderr.contains("--delete"),
        "{}",
        run.explain()
    );
}
