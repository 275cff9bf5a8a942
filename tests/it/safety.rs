//! Safety nets for unattended runs against the real servers. `--backup-dir`:
//! replaced and deleted destination files are moved into a directory inside
//! the destination instead of being destroyed (local, FTP and SFTP), and that
//! directory is never part of the mirror. A source directory emptied since
//! the last run holds back deletions.

use std::fs;
use std::path::Path;

use crate::common::*;
use crate::harness::{self, FtpServerKind, FtpTls};

/// Runs the scenario against a destination `dst_url` whose files live in
/// `dst_root` on this machine; `extra` reaches every sync.
fn keeps_what_it_replaces_and_deletes(dst_url: &str, dst_root: &Path, extra: &[&str], password: &str) {
    let s = Scratch::new();
    let src = s.src();
    write(&src, "a.txt", b"first a");
    write(&src, "b.txt", b"first b");
    write(&src, "d/x.bin", &bytes(3, 40_000));
    write(&src, "keep.txt", b"unchanged");
    let src_str = src.to_string_lossy().into_owned();
    let sync = |flags: &[&str]| {
        let mut cmd = s.barge();
        cmd.env("BARGE_PASSWORD", password)
            .args(["sync", &src_str, dst_url, "--json", "--timeout", "20", "--state"])
            .arg(s.state())
            .args(extra)
            .args(flags);
        Run::of(cmd.output().expect("run barge"))
    };
    sync(&[]).expect_code(0);

    write(&src, "a.txt", b"second a, longer");
    fs::remove_file(src.join("b.txt")).unwrap();
    fs::remove_dir_all(src.join("d")).unwrap();
    let run = sync(&["--delete", "--backup-dir", ".old/night-1"]);
    run.expect_code(0);
    let context = run.explain();
    assert_eq!(fs::read(dst_root.join("a.txt")).unwrap(), b"second a, longer", "{context}");
    assert_eq!(fs::read(dst_root.join(".old/night-1/a.txt")).unwrap(), b"first a", "{context}");
    assert_eq!(fs::read(dst_root.join(".old/night-1/b.txt")).unwrap(), b"first b", "{context}");
    assert_eq!(fs::read(dst_root.join(".old/night-1/d/x.bin")).unwrap(), bytes(3, 40_000), "{context}");
    assert!(!dst_root.join("b.txt").exists() && !dst_root.join("d").exists(), "{context}");
    assert!(!dst_root.join(".old/night-1/keep.txt").exists(), "unchanged files stay put: {context}");
    assert_eq!(run.count("files_deleted"), 3, "b.txt, d/x.bin and d: {context}");

    // The next night: a new dated directory, and last night's is neither
    // deleted nor compared, although the source has no `.old`.
    write(&src, "a.txt", b"third a");
    let run = sync(&["--delete", "--backup-dir", ".old/night-2"]);
    run.expect_code(0);
    assert_eq!(fs::read(dst_root.join(".old/night-2/a.txt")).unwrap(), b"second a, longer", "{}", run.explain());
    assert!(dst_root.join(".old/night-1/a.txt").exists(), "{}", run.explain());
    assert_eq!(run.count("files_transferred"), 1, "{}", run.explain());
    assert_eq!(run.count("files_deleted"), 0, "{}", run.explain());
    assert!(temporaries(dst_root).is_empty());
}

#[test]
fn local_destination_keeps_replaced_and_deleted_files() {
    let s = Scratch::new();
    let dst = s.path("mirror");
    keeps_what_it_replaces_and_deletes(&dst.to_string_lossy(), &dst, &[], "");
}

#[test]
fn ftp_destinations_keep_replaced_and_deleted_files() {
    for kind in [FtpServerKind::Proftpd, FtpServerKind::Vsftpd] {
        let server = harness::ftp_server(kind, FtpTls::None);
        let url = format!("ftp://{}@127.0.0.1:{}/mirror", server.user, server.port);
        keeps_what_it_replaces_and_deletes(&url, &server.root.join("mirror"), &[], &server.password);
    }
}

#[test]
fn sftp_destination_keeps_replaced_and_deleted_files() {
    let server = harness::ssh_server();
    let (known, key) = (server.known_hosts.to_string_lossy(), server.client_key.to_string_lossy());
    let url = format!("{}/mirror", server.url());
    let extra = ["--known-hosts", &known, "--identity", &key];
    keeps_what_it_replaces_and_deletes(&url, &server.root.join("mirror"), &extra, "");
}

#[test]
fn a_backup_dir_outside_the_destination_is_refused() {
    let s = Scratch::new();
    write(&s.src(), "a", b"a");
    for bad in ["/tmp/old", "../old", "a/../../x", "."] {
        let run = s.sync(&["--backup-dir", bad]);
        run.expect_code(2);
        assert!(run.stderr.contains("--backup-dir"), "{bad}: {}", run.explain());
    }
}

/// A source directory that held files at the last run and is empty now
/// (a server whose disk was not mounted, a half-failed listing) holds back
/// every deletion with exit 5 until --force, on a real FTP source.
#[test]
fn a_source_directory_emptied_since_the_last_run_holds_back_deletions() {
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    for i in 0..3 {
        server.write_file(&format!("data/f{i}.txt"), b"data");
    }
    for i in 0..20 {
        server.write_file(&format!("other/g{i}.txt"), b"other");
    }
    server.write_file("other/gone.txt", b"to be deleted");
    let s = Scratch::new();
    let url = format!("ftp://{}@127.0.0.1:{}/", server.user, server.port);
    let dst = s.dst().to_string_lossy().into_owned();
    let sync = |flags: &[&str]| {
        let mut cmd = s.barge();
        cmd.env("BARGE_PASSWORD", &server.password)
            .args(["sync", &url, &dst, "--delete", "--json", "--state"])
            .arg(s.state())
            .args(flags);
        Run::of(cmd.output().expect("run barge"))
    };
    sync(&[]).expect_code(0);
    // data/ is still there but empty (3 of 24 files: within --max-shrink).
    for i in 0..3 {
        fs::remove_file(server.root.join(format!("data/f{i}.txt"))).unwrap();
    }
    fs::remove_file(server.root.join("other/gone.txt")).unwrap();
    server.write_file("other/new.txt", b"new");
    let run = sync(&[]);
    run.expect_code(5);
    assert!(run.stderr.contains("held files at the last run are empty now (data)"), "{}", run.explain());
    assert!(s.dst().join("data/f0.txt").exists() && s.dst().join("other/gone.txt").exists(), "nothing deleted");
    assert!(s.dst().join("other/new.txt").exists(), "copies still happen");
    sync(&["--force"]).expect_code(0);
    assert!(!s.dst().join("data/f0.txt").exists() && !s.dst().join("other/gone.txt").exists());
    // Once mirrored, an empty directory is no longer a surprise.
    sync(&[]).expect_code(0);
}

fn send_signal(child: &std::process::Child, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(rc, 0, "kill");
}

/// SIGTERM mid-run: the transfers in flight finish, nothing new starts (no
/// deletions either), exit 1 with the signal in the summary, every final
/// name complete; the rerun finishes the rest. Two signals abort at once.
#[test]
fn sigterm_finishes_what_is_in_flight_and_the_next_run_continues() {
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    for i in 0..24 {
        server.write_file(&format!("f{i:02}.bin"), &bytes(i, 200_000));
    }
    let s = Scratch::new();
    write(&s.dst(), "extraneous.txt", b"deleted only by a complete run");
    let url = format!("ftp://{}@127.0.0.1:{}/", server.user, server.port);
    let dst = s.dst().to_string_lossy().into_owned();
    let spawn = |flags: &[&str]| {
        let mut cmd = s.barge();
        cmd.env("BARGE_PASSWORD", &server.password)
            .args(["sync", &url, &dst, "--delete", "--json", "--parallel", "2", "--state"])
            .arg(s.state())
            .args(flags)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().expect("spawn barge")
    };
    let check_finals = |context: &str| {
        for entry in fs::read_dir(s.dst()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(i) = name.strip_prefix('f').and_then(|n| n.strip_suffix(".bin")) {
                let i: u64 = i.parse().unwrap();
                assert_eq!(fs::read(entry.path()).unwrap(), bytes(i, 200_000), "{context}: {name} incomplete");
            }
        }
    };

    // 24 x 200 kB at 800 kB/s: about 6 s; the signal comes after 1.5 s.
    let child = spawn(&["--bwlimit", "800K"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    send_signal(&child, libc::SIGTERM);
    let started = std::time::Instant::now();
    let run = Run::of(child.wait_with_output().unwrap());
    assert!(started.elapsed().as_secs_f64() < 4.0, "the stop took {:?}\n{}", started.elapsed(), run.explain());
    run.expect_code(1);
    let summary = run.summary();
    assert_eq!(summary["interrupted"], "SIGTERM", "{}", run.explain());
    let (copied, not_started) = (run.count("files_transferred"), run.count("not_started"));
    assert!(copied >= 2 && not_started >= 4, "copied {copied}, not started {not_started}\n{}", run.explain());
    assert!(run.stderr.contains("stopped by SIGTERM"), "{}", run.explain());
    assert!(s.dst().join("extraneous.txt").exists(), "no deletions after the stop");
    check_finals("after SIGTERM");

    // Two signals: out at once.
    let child = spawn(&["--bwlimit", "200K"]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    send_signal(&child, libc::SIGINT);
    std::thread::sleep(std::time::Duration::from_millis(100));
    send_signal(&child, libc::SIGINT);
    let run = Run::of(child.wait_with_output().unwrap());
    assert_eq!(run.code, 130, "{}", run.explain());
    check_finals("after two SIGINTs");

    // The rerun copies only what was not done, and now deletes.
    let run = Run::of(spawn(&[]).wait_with_output().unwrap());
    run.expect_code(0);
    assert!(run.count("files_transferred") <= 24 - copied, "{}", run.explain());
    assert!(!s.dst().join("extraneous.txt").exists());
    check_finals("after the rerun");
    assert_eq!(fs::read_dir(s.dst()).unwrap().count(), 24, "{:?}", temporaries(&s.dst()));
}

/// --verify on every kind of destination: proftpd answers HASH (compared
/// with the local file's hash of the same kind), vsftpd and sshd have no
/// hash command (both sides are read back), local compares blake3.
#[test]
fn verify_checks_every_copy_on_every_destination() {
    let s = Scratch::new();
    for i in 0..5 {
        write(&s.src(), format!("d/f{i}.bin"), &bytes(i, 50_000 + i as usize));
    }
    let src = s.src().to_string_lossy().into_owned();
    let proftpd = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    let vsftpd = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    let ssh = harness::ssh_server();
    let (known, key) = (ssh.known_hosts.to_string_lossy(), ssh.client_key.to_string_lossy());
    let local = s.path("local").to_string_lossy().into_owned();
    let targets = [
        (format!("ftp://{}@127.0.0.1:{}/v", proftpd.user, proftpd.port), proftpd.password.clone(), vec![]),
        (format!("ftp://{}@127.0.0.1:{}/v", vsftpd.user, vsftpd.port), vsftpd.password.clone(), vec![]),
        (format!("{}/v", ssh.url()), String::new(), vec!["--known-hosts", &known, "--identity", &key]),
        (local, String::new(), vec![]),
    ];
    for (i, (dst, password, extra)) in targets.iter().enumerate() {
        let mut cmd = s.barge();
        cmd.env("BARGE_PASSWORD", password)
            .args(["sync", &src, dst, "--verify", "--json", "--state"])
            .arg(s.path(&format!("v{i}.db")))
            .args(extra);
        let run = Run::of(cmd.output().unwrap());
        run.expect_code(0);
        assert_eq!(run.count("files_verified"), 5, "{dst}\n{}", run.explain());
    }
}

/// A source file that `--max-size` or `--min-size` leaves out is still
/// there: `--delete` must not take its older copy from the destination
/// (rsync's size limits do the same).
#[test]
fn a_file_left_out_by_size_keeps_its_copy_under_delete() {
    let s = Scratch::new();
    for i in 0..5 {
        write(&s.src(), format!("f{i}.txt"), format!("file {i}").as_bytes());
    }
    write(&s.src(), "grows.bin", b"small");
    write(&s.src(), "shrinks.bin", &bytes(3, 4096));
    s.sync(&[]).expect_code(0);

    write(&s.src(), "grows.bin", &bytes(4, 5000));
    write(&s.src(), "shrinks.bin", b"x");
    let run = s.sync(&["--delete", "--max-size", "4K", "--min-size", "2"]);
    run.expect_code(0);
    assert_eq!(run.count("files_deleted"), 0, "{}", run.explain());
    assert_eq!(std::fs::read(s.dst().join("grows.bin")).unwrap(), b"small", "the old copy stays");
    assert_eq!(std::fs::read(s.dst().join("shrinks.bin")).unwrap(), bytes(3, 4096));
    // A file gone from the source is still deleted.
    std::fs::remove_file(s.src().join("f0.txt")).unwrap();
    let run = s.sync(&["--delete", "--max-size", "4K", "--min-size", "2"]);
    run.expect_code(0);
    assert_eq!(run.count("files_deleted"), 1, "{}", run.explain());
    assert!(!s.dst().join("f0.txt").exists() && s.dst().join("grows.bin").exists());
}
