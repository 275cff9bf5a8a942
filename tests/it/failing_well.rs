//! Failing well: every failure is recorded where monitoring looks, a
//! damaged state database heals, a revoked host key is refused.

use std::fs;

use crate::common::*;
use crate::harness::{self, FtpServerKind, FtpTls};

/// The value of one metric in a textfile barge wrote.
fn metric(text: &str, name: &str) -> Option<i64> {
    let line = text.lines().find(|l| l.starts_with(&format!("{name}{{")))?;
    line.rsplit_once(' ')?.1.parse().ok()
}

/// A run refused at login (or refused as a usage error) after a good run:
/// the log says so, the report is the fatal object, the metrics carry its
/// exit code and start time and keep the last success.
#[test]
fn a_run_that_fails_to_start_is_recorded_in_log_report_and_metrics() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    server.write_file("data/a.txt", b"a");
    let s = Scratch::new();
    let (log, report, metrics) = (s.path("barge.log"), s.path("report.json"), s.path("barge.prom"));
    let url = format!("ftp://{}@127.0.0.1:{}/data", server.user, server.port);
    let run = |password: &str, extra: &[&str]| {
        let mut cmd = s.barge();
        cmd.env("BARGE_PASSWORD", password)
            .args(["sync", &url])
            .arg(s.dst())
            .args(["--json", "--timeout", "10", "--state"])
            .arg(s.state())
            .arg("--log-file")
            .arg(&log)
            .arg("--report")
            .arg(&report)
            .arg("--metrics")
            .arg(&metrics)
            .args(extra);
        Run::of(cmd.output().expect("run barge"))
    };
    run(&server.password, &[]).expect_code(0);
    let good = fs::read_to_string(&metrics).unwrap();
    let success = metric(&good, "barge_last_success_timestamp_seconds").expect("a last success");
    std::thread::sleep(std::time::Duration::from_millis(1100));

    for (password, extra, code, said) in [
        ("not the password", &[][..], 3, "530"),
        (server.password.as_str(), &["--bwlimit", "0"][..], 2, "--bwlimit must be more than 0"),
    ] {
        let failed = run(password, extra);
        failed.expect_code(code);
        let logged = fs::read_to_string(&log).unwrap();
        let line = logged.lines().rev().find(|l| l.contains("fatal")).unwrap_or_else(|| panic!("log: {logged}"));
        assert!(line.contains(&format!("fatal (exit {code})")) && line.contains(said), "{line}");
        assert!(!logged.contains("not the password"), "no secret in the log");
        let value: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
        assert_eq!(value["type"], "fatal", "{value}");
        assert_eq!(value["exit_code"], code, "{value}");
        assert!(value["message"].as_str().unwrap().contains(said), "{value}");
        let text = fs::read_to_string(&metrics).unwrap();
        assert_eq!(metric(&text, "barge_last_run_exit_code"), Some(i64::from(code)), "{text}");
        assert_eq!(metric(&text, "barge_last_success_timestamp_seconds"), Some(success), "unchanged: {text}");
        assert!(metric(&text, "barge_last_run_start_timestamp_seconds").unwrap() > success, "{text}");
        // One series: the same job label as the good run's.
        let label = |t: &str| {
            t.lines()
                .find_map(|l| l.strip_prefix("barge_last_run_exit_code{")?.split_once('}'))
                .map(|(label, _)| label.to_string())
        };
        assert_eq!(label(&text), label(&good), "{text}");
    }
}

/// A state database with pages overwritten, its header clobbered or cut
/// short blocked every later run ("database disk image is malformed"): it
/// is moved aside with one warning and the run goes on as a first run
/// would, the empty-source hold included.
#[test]
fn a_damaged_state_database_is_moved_aside_and_the_run_goes_on() {
    use std::io::{Seek, SeekFrom, Write};
    type Damage = fn(&mut fs::File, u64);
    let damages: [(&str, Damage); 3] = [
        ("pages overwritten", |f, len| {
            f.seek(SeekFrom::Start(len / 2)).unwrap();
            f.write_all(&vec![0xa5; (len / 4) as usize]).unwrap();
        }),
        ("header clobbered", |f, _| {
            f.seek(SeekFrom::Start(0)).unwrap();
            f.write_all(b"this is not an sqlite header at all, not at all").unwrap();
        }),
        ("cut short", |f, len| f.set_len(len / 3).unwrap()),
    ];
    for (what, damage) in damages {
        let s = Scratch::new();
        for i in 0..300 {
            write(&s.src(), format!("d{}/f{i:03}.txt", i % 5), format!("file {i}").as_bytes());
        }
        s.sync(&[]).expect_code(0);
        // Close the write-ahead log into the file, as a finished run leaves it.
        let db = s.state();
        let wal = std::path::PathBuf::from(format!("{}-wal", db.display()));
        assert!(!wal.exists() || fs::metadata(&wal).unwrap().len() == 0, "{what}: the run checkpointed");
        let len = fs::metadata(&db).unwrap().len();
        let mut file = fs::OpenOptions::new().write(true).open(&db).unwrap();
        damage(&mut file, len);
        drop(file);

        write(&s.src(), "new.txt", b"new");
        let run = s.sync(&[]);
        run.expect_code(0);
        assert!(run.stdout.contains("is damaged") && run.stdout.contains("moved aside"), "{what}: {}", run.explain());
        assert_eq!(fs::read(s.dst().join("new.txt")).unwrap(), b"new", "{what}");
        let aside: Vec<String> = fs::read_dir(s.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("state.db.corrupt-"))
            .collect();
        assert!(!aside.is_empty(), "{what}: kept for a look");
        s.sync(&[]).expect_code(0);

        // A fresh database has no history, and the empty source still holds.
        for entry in fs::read_dir(s.src()).unwrap().flatten() {
            fs::remove_dir_all(entry.path()).or_else(|_| fs::remove_file(entry.path())).unwrap();
        }
        let mut file = fs::OpenOptions::new().write(true).open(&db).unwrap();
        let len = fs::metadata(&db).unwrap().len();
        damage(&mut file, len);
        drop(file);
        let run = s.sync(&["--delete"]);
        run.expect_code(5);
        assert!(run.stderr.contains("holds no files"), "{what}: {}", run.explain());
        assert_eq!(fs::read_dir(s.dst()).unwrap().count(), 6, "{what}: nothing deleted");
    }
}

/// `--state` that cannot hold a database (a directory, /dev/null, a path
/// under a file) and an XDG_STATE_HOME that is a file are usage errors
/// naming where the path came from; /dev/null is left as it was.
#[test]
fn a_state_path_that_cannot_hold_a_database_is_a_usage_error() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    write(&s.src(), "a.txt", b"a");
    write(&s.dir.path().join("plain"), "file", b"not a directory");
    let null_mode = fs::metadata("/dev/null").unwrap().permissions().mode();
    let (dir, under_file) = (s.src().display().to_string(), s.path("plain/file/state.db").display().to_string());
    for state in [dir.as_str(), "/dev/null", under_file.as_str()] {
        let mut cmd = s.barge();
        cmd.arg("sync").arg(s.src()).arg(s.dst()).args(["--state", state]);
        let run = Run::of(cmd.output().unwrap());
        run.expect_code(2);
        assert!(run.stderr.contains("--state") && run.stderr.contains(state), "{state}: {}", run.explain());
    }
    assert_eq!(fs::metadata("/dev/null").unwrap().permissions().mode(), null_mode, "/dev/null untouched");
    assert!(!std::path::Path::new("/dev/null.lock").exists());
    let mut cmd = s.barge();
    cmd.env("XDG_STATE_HOME", s.path("plain/file")).arg("sync").arg(s.src()).arg(s.dst());
    let run = Run::of(cmd.output().unwrap());
    run.expect_code(2);
    assert!(run.stderr.contains("XDG_STATE_HOME"), "{}", run.explain());
    assert!(!s.dst().exists(), "nothing copied");
}

/// `@revoked` lines refuse their key, before or after a line that records
/// it, and --accept-new-host-key never learns it; a host known only
/// through `@cert-authority` is refused saying so, not as merely unknown.
#[test]
fn revoked_host_keys_are_refused_and_certificate_authorities_are_named() {
    let server = harness::ssh_server();
    server.write_file("data/a.txt", b"a");
    let s = Scratch::new();
    let key = server.host_key_pub.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let known = s.path("known_hosts");
    let name = format!("[127.0.0.1]:{}", server.port);
    let client_key = server.client_key.display().to_string();
    let sync = |extra: &[&str]| {
        let mut cmd = s.barge();
        cmd.args(["sync", &format!("{}/data", server.url())])
            .arg(s.dst())
            .args(["--timeout", "10", "--identity", &client_key, "--known-hosts"])
            .arg(&known)
            .arg("--state")
            .arg(s.state())
            .args(extra);
        Run::of(cmd.output().expect("run barge"))
    };
    for (text, accept) in [
        (format!("@revoked {name} {key}\n{name} {key}\n"), false),
        (format!("{name} {key}\n@revoked * {key}\n"), false),
        (format!("@revoked {name} {key}\n"), true),
    ] {
        fs::write(&known, &text).unwrap();
        let run = sync(if accept { &["--accept-new-host-key"] } else { &[] });
        run.expect_code(3);
        assert!(run.stderr.contains("REVOKED"), "{text}: {}", run.explain());
        assert_eq!(fs::read_to_string(&known).unwrap(), text, "nothing learned");
        assert!(!s.dst().join("a.txt").exists());
    }
    fs::write(&known, format!("@cert-authority [127.0.0.1]:* {key}\n")).unwrap();
    let run = sync(&[]);
    run.expect_code(3);
    assert!(run.stderr.contains("@cert-authority") && run.stderr.contains("line 1"), "{}", run.explain());
    // The plain line alone: trusted.
    fs::write(&known, format!("{name} {key}\n")).unwrap();
    sync(&[]).expect_code(0);
}

/// `check --compare hash` against a server without a hash command (vsftpd)
/// read both sides and hashed them: a file changed in content at the same
/// size and mtime is a difference (it was reported identical, exit 0).
#[test]
fn check_by_hash_without_a_server_hash_reads_both_sides() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    let s = Scratch::new();
    for i in 0..4 {
        write(&s.src(), format!("f{i}.txt"), format!("content {i}").as_bytes());
    }
    let url = format!("ftp://{}@127.0.0.1:{}/mirror", server.user, server.port);
    let barge = |args: &[&str]| {
        let mut cmd = s.barge();
        cmd.env("BARGE_PASSWORD", &server.password)
            .args(args)
            .args(["--json", "--timeout", "10", "--state"])
            .arg(s.state());
        Run::of(cmd.output().expect("run barge"))
    };
    let src = s.src().display().to_string();
    barge(&["sync", &src, &url]).expect_code(0);
    barge(&["check", &src, &url, "--compare", "hash"]).expect_code(0);
    // Same size, same mtime, other bytes: only a hash can tell.
    let changed = server.root.join("mirror/f2.txt");
    let mtime = fs::metadata(&changed).unwrap().modified().unwrap();
    fs::write(&changed, b"CONTENT 2").unwrap();
    fs::File::options().write(true).open(&changed).unwrap().set_modified(mtime).unwrap();
    barge(&["check", &src, &url]).expect_code(0);
    let run = barge(&["check", &src, &url, "--compare", "hash"]);
    run.expect_code(1);
    assert_eq!(run.json().pop().unwrap()["differences"], 1, "{}", run.explain());
    assert_eq!(run.events("differs"), ["f2.txt"], "{}", run.explain());
}

/// Messages that point at the fix: the wrong TLS mode for a port, a
/// scheme a slash short, an unset password variable, a negative number,
/// a bad filter in a config file (named at its own line).
#[test]
fn mistakes_are_met_with_the_fix() {
    let explicit = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::Explicit);
    let implicit = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::Implicit);
    let s = Scratch::new();
    write(&s.src(), "a.txt", b"a");
    let ca = explicit.ca_cert.display().to_string();
    let barge = |args: &[&str]| {
        let mut cmd = s.barge();
        cmd.current_dir(s.dir.path()).env("BARGE_PASSWORD", &explicit.password).args(args);
        s.run_within(cmd, std::time::Duration::from_secs(60))
    };
    let url =
        |scheme: &str, server: &harness::FtpServer| format!("{scheme}://{}@127.0.0.1:{}/", server.user, server.port);
    // Implicit TLS spoken to an explicit-TLS (plain greeting) port.
    let run = barge(&["sync", &url("ftps", &explicit), "dst", "--ca-file", &ca, "--timeout", "5"]);
    run.expect_code(3);
    assert!(run.stderr.contains("use ftpes://"), "{}", run.explain());
    // Explicit TLS waiting for a greeting an implicit port never sends.
    let run = barge(&["sync", &url("ftpes", &implicit), "dst", "--ca-file", &ca, "--timeout", "3"]);
    run.expect_code(3);
    assert!(run.stderr.contains("use ftps://"), "{}", run.explain());

    let run = barge(&["sync", "src", "ftp:/example.com/x"]);
    run.expect_code(2);
    assert!(run.stderr.contains("did you mean ftp://example.com/x"), "{}", run.explain());
    // The same typo in front of a password: the password is not echoed.
    let run = barge(&["sync", "src", "ftp:/alice:Typo3dSecret@example.com/x", "--log-file", "log"]);
    run.expect_code(2);
    let log = fs::read_to_string(s.path("log")).unwrap();
    assert!(!run.stderr.contains("Typo3dSecret") && !log.contains("Typo3dSecret"), "{}\n{log}", run.explain());
    assert!(run.stderr.contains("did you mean ftp://alice:***@example.com/x"), "{}", run.explain());
    // scp's form is a remote, not a directory named after it.
    let run = barge(&["sync", "src", "backup@vault.example.org:/srv/backups"]);
    run.expect_code(2);
    assert!(run.stderr.contains("sftp://backup@vault.example.org/srv/backups"), "{}", run.explain());
    assert!(!s.path("backup@vault.example.org:").exists());
    // With --json, what clap refuses gets the fatal line too.
    let run = barge(&["sync", "src", "dst", "--json", "--bogus"]);
    run.expect_code(2);
    let fatal: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!((fatal["type"].as_str(), fatal["exit_code"].as_i64()), (Some("fatal"), Some(2)), "{}", run.explain());
    assert!(fatal["message"].as_str().unwrap().contains("--bogus"), "{}", run.explain());
    let run = barge(&["sync", "src", "dst", "--delete", "--max-delete", "150%"]);
    run.expect_code(2);
    assert!(run.stderr.contains("at most 100%"), "{}", run.explain());
    let run = barge(&["sync", "src", "dst", "--log-file", "/nonexistent/dir/log"]);
    run.expect_code(2);
    assert!(run.stderr.contains("--log-file /nonexistent/dir/log"), "{}", run.explain());
    // Which side could not be used is said.
    let run = barge(&["sync", "src/a.txt", "dst"]);
    run.expect_code(3);
    assert!(run.stderr.contains("cannot use the source"), "{}", run.explain());
    // A report that cannot be written: refused before anything is done,
    // not a clean exit that leaves monitoring the last run's report.
    for (flag, path) in [("--report", "/nonexistent/r.json"), ("--metrics", "src")] {
        let run = barge(&["sync", "src", "dst", flag, path]);
        run.expect_code(2);
        assert!(run.stderr.contains(flag) && run.stderr.contains(path), "{}", run.explain());
    }
    let run = barge(&["sync", "src", &url("ftp", &explicit), "--password-env", "BARGE_TEST_UNSET_VARIABLE"]);
    run.expect_code(2);
    assert!(run.stderr.contains("BARGE_TEST_UNSET_VARIABLE") && run.stderr.contains("not set"), "{}", run.explain());
    let run = barge(&["sync", "src", "dst", "--parallel", "-5"]);
    run.expect_code(2);
    assert!(run.stderr.contains("'-5'") && !run.stderr.contains("-- -5"), "{}", run.explain());
    fs::write(
        s.path("barge.toml"),
        "[jobs.a]\nsource = \"src\"\ndestination = \"dst\"\ninclude = [\"*.txt\", \"[\"]\n",
    )
    .unwrap();
    let run = barge(&["--config", "barge.toml", "run", "a"]);
    run.expect_code(2);
    assert!(run.stderr.contains("line 4") && run.stderr.contains("include"), "{}", run.explain());
    assert!(!s.dst().exists());
}

/// A file where a remote tree should be: "not a directory", as either
/// side, and the file is left alone (before: "the directory does not
/// exist" as a source, a server's MKD refusal as a destination).
#[test]
fn a_remote_location_that_is_a_file_is_said_to_be_one() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    write(&server.root, "afile", b"a file");
    harness::give_to_test_user(&server.root);
    let s = Scratch::new();
    write(&s.src(), "a.txt", b"a");
    let url = format!("ftp://{}@127.0.0.1:{}/afile", server.user, server.port);
    for (src, dst) in [(url.as_str(), "dst"), ("src", url.as_str())] {
        let mut cmd = s.barge();
        cmd.current_dir(s.dir.path()).env("BARGE_PASSWORD", &server.password).args(["sync", src, dst]);
        let run = s.run_within(cmd, std::time::Duration::from_secs(60));
        run.expect_code(3);
        assert!(run.stderr.contains("not a directory"), "{}", run.explain());
    }
    assert_eq!(fs::read(server.root.join("afile")).unwrap(), b"a file");
    assert!(!s.dst().exists());
}

/// A port whose TCP handshake is never answered (a firewall that drops
/// it) is said to be so, not taken for an implicit-TLS port that sends no
/// greeting (the hint that is right once the handshake was answered).
#[test]
fn a_connection_never_answered_is_not_taken_for_the_wrong_tls_mode() {
    // listen(2) with a backlog of 0 and one connection queued, never
    // accepted: the kernel drops every further SYN.
    // SAFETY: plain socket calls on a descriptor this test owns.
    let (fd, port) = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len), 0);
        assert_eq!(libc::listen(fd, 0), 0);
        let mut bound = len;
        assert_eq!(libc::getsockname(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut bound), 0);
        (fd, u16::from_be(addr.sin_port))
    };
    let _queued = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let s = Scratch::new();
    let mut cmd = s.barge();
    cmd.args(["sync", &format!("ftp://u@127.0.0.1:{port}/"), "dst", "--timeout", "2", "--retries", "0"]);
    cmd.env("BARGE_PASSWORD", "x").current_dir(s.dir.path());
    let run = s.run_within(cmd, std::time::Duration::from_secs(60));
    run.expect_code(3);
    assert!(run.stderr.contains("never answered") && !run.stderr.contains("ftps://"), "{}", run.explain());
    // SAFETY: the listener made above, closed once.
    unsafe { libc::close(fd) };
}

/// Another job into the same destination removed a live run's temporary
/// (the live run then failed) and left a killed run's debris only to the
/// same job. Now a temporary a live writer holds is left alone (and said
/// so in the summary), a killed run's is removed by any run, and an
/// `--exclude '.*'` does not hide it.
#[test]
fn temporaries_are_removed_by_any_run_unless_a_live_run_holds_them() {
    let s = Scratch::new();
    write(&s.path("a"), "big.bin", &bytes(7, 24 << 20));
    write(&s.path("b"), "small.txt", b"b");
    let dst = s.dst();
    let job = |src: &str, state: &str, extra: &[&str]| {
        let mut cmd = s.barge();
        cmd.arg("sync").arg(s.path(src)).arg(&dst).args(["--json", "--state"]).arg(s.path(state)).args(extra);
        cmd
    };
    let wait_for_temporary = || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while temporaries(&dst).iter().all(|t| fs::metadata(t).map_or(0, |m| m.len()) == 0) {
            assert!(std::time::Instant::now() < deadline, "no temporary appeared");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    // A live run: 24 MiB at 4 MiB/s.
    let live = job("a", "a.db", &["--bwlimit", "4M"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    wait_for_temporary();
    let other = Run::of(job("b", "b.db", &["--exclude", ".*"]).output().unwrap());
    other.expect_code(0);
    assert_eq!(other.summary()["temporaries_left"], 1, "{}", other.explain());
    assert_eq!(temporaries(&dst).len(), 1, "the live one stays");
    let finished = Run::of(live.wait_with_output().unwrap());
    finished.expect_code(0);
    assert_eq!(fs::read(dst.join("big.bin")).unwrap(), bytes(7, 24 << 20));

    // A killed run: its lock is gone with it, and the other job removes
    // its temporary, filters or not.
    write(&s.path("a"), "big2.bin", &bytes(8, 24 << 20));
    let killed = job("a", "a.db", &["--bwlimit", "4M"]).spawn().unwrap();
    wait_for_temporary();
    kill_once_partial(killed, &dst, 1, std::time::Duration::from_secs(20));
    assert_eq!(temporaries(&dst).len(), 1);
    let other = Run::of(job("b", "b.db", &["--exclude", ".*"]).output().unwrap());
    other.expect_code(0);
    assert!(other.summary()["temporaries_left"].is_null(), "{}", other.explain());
    assert!(temporaries(&dst).is_empty(), "{:?}", temporaries(&dst));
}

/// A destination nothing can be written into gave one `create
/// .barge-....part: Permission denied` per file and exit 1: it is checked
/// as it is opened, exit 3, one message naming it.
#[test]
fn a_destination_that_cannot_be_written_fails_once_at_open() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let s = Scratch::new();
    for i in 0..20 {
        write(&s.src(), format!("f{i}.txt"), b"data");
    }
    fs::create_dir_all(s.dst()).unwrap();
    fs::set_permissions(s.dst(), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(s.path("state")).unwrap();
    harness::give_to_test_user(&s.path("state"));
    // Root may write anywhere: the run is the test user's.
    let (uid, gid) = harness::test_user_ids();
    let mut cmd = s.barge();
    cmd.arg("sync").arg(s.src()).arg(s.dst()).arg("--state").arg(s.path("state/job.db")).uid(uid).gid(gid);
    let run = Run::of(cmd.output().unwrap());
    run.expect_code(3);
    assert!(
        run.stderr.contains("cannot be written") && run.stderr.contains(&s.dst().display().to_string()),
        "{}",
        run.explain()
    );
    assert!(run.stderr.lines().count() <= 2, "one message, not one per file: {}", run.explain());
}
