//! `--trust-state` / `--verify-state` against a real FTP server: a backup
//! whose destination only barge writes skips listing it, trusting the state
//! database that a `--verify-state` run checked; `--verify-state` repairs
//! the database after someone else touched the destination.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::common::*;
use crate::harness::{self, FtpServerKind, FtpTls};

#[test]
fn a_trusted_backup_does_not_list_the_destination_and_verify_state_repairs() {
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    let s = Scratch::new();
    for i in 0..60 {
        write(&s.src(), format!("d{}/f{i}.txt", i % 6), format!("file {i}").as_bytes());
    }
    let src = s.src().to_string_lossy().into_owned();
    let url = format!("ftp://{}@127.0.0.1:{}/backup", server.user, server.port);
    let remote_root = server.root.join("backup");
    let sync = |flags: &[&str]| {
        let mut cmd = s.barge();
        cmd.env("BARGE_PASSWORD", &server.password)
            .args(["sync", &src, &url, "--json", "--timeout", "10", "--state"])
            .arg(s.state())
            .args(flags);
        Run::of(cmd.output().expect("run barge"))
    };

    // Not before the database was checked against a real listing.
    sync(&[]).expect_code(0);
    let run = sync(&["--trust-state"]);
    run.expect_code(2);
    assert!(run.stderr.contains("--verify-state"), "{}", run.explain());
    let run = sync(&["--verify-state"]);
    run.expect_code(0);
    assert_eq!(run.count("files_transferred"), 0, "{}", run.explain());

    // An unchanged tree: nothing listed (a directory of the destination is
    // unreadable now, so a listing would report it), nothing copied.
    let locked = remote_root.join("d3");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    let listed = sync(&[]);
    let run = sync(&["--trust-state", "--delete"]);
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    listed.expect_code(1);
    assert!(listed.stderr.contains("d3"), "a listing does see it: {}", listed.explain());
    run.expect_code(0);
    assert_eq!(run.count("files_transferred") + run.count("files_deleted"), 0, "{}", run.explain());

    // Changes on the source: exactly those are sent.
    write(&s.src(), "d0/f0.txt", b"changed content");
    write(&s.src(), "d9/new.txt", b"new");
    fs::remove_file(s.src().join("d1/f1.txt")).unwrap();
    let run = sync(&["--trust-state", "--delete"]);
    run.expect_code(0);
    assert_eq!(run.count("files_transferred"), 2, "{}", run.explain());
    assert_eq!(run.count("files_deleted"), 1, "{}", run.explain());
    assert_eq!(fs::read(remote_root.join("d0/f0.txt")).unwrap(), b"changed content");
    assert!(remote_root.join("d9/new.txt").exists() && !remote_root.join("d1/f1.txt").exists());

    // Someone else deleted a file there: trusting the database misses it
    // (that is the contract), --verify-state lists, repairs and re-sends it.
    fs::remove_file(remote_root.join("d2/f2.txt")).unwrap();
    assert_eq!(sync(&["--trust-state"]).count("files_transferred"), 0);
    let run = sync(&["--verify-state"]);
    run.expect_code(0);
    assert_eq!(run.count("files_transferred"), 1, "{}", run.explain());
    assert!(remote_root.join("d2/f2.txt").exists());
    assert_eq!(sync(&["--trust-state"]).count("files_transferred"), 0);
}
