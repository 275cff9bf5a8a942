//! `--owner`, `--group`, `--numeric-ids`: ids kept as root on local disk
//! and from a real OpenSSH server, an owner-only change a metadata update
//! (never a copy), setuid surviving the change of owner, and clear refusals
//! where owners cannot be set.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::common::*;
use crate::harness::{self, FtpServerKind, FtpTls};

fn ids(path: &Path) -> (u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

/// Ids no account on the machine has: they can only travel as numbers.
const UID: u32 = 42_001;
const GID: u32 = 42_002;

#[test]
fn owners_are_kept_as_root_and_an_owner_change_is_not_a_copy() {
    if !is_root() {
        let s = Scratch::new();
        write(&s.src(), "a.txt", b"a");
        let run = s.sync(&["--owner"]);
        run.expect_code(2);
        assert!(run.stderr.contains("only root"), "{}", run.explain());
        return;
    }
    let s = Scratch::new();
    write(&s.src(), "dir/a.txt", b"a");
    write(&s.src(), "b.txt", b"b");
    chown(&s.src().join("dir/a.txt"), UID, GID);
    chown(&s.src().join("dir"), UID + 1, GID + 1);
    chown(&s.src().join("b.txt"), UID, 0);
    s.sync(&["--owner", "--group"]).expect_code(0);
    assert_eq!(ids(&s.dst().join("dir/a.txt")), (UID, GID));
    assert_eq!(ids(&s.dst().join("dir")), (UID + 1, GID + 1));
    assert_eq!(ids(&s.dst().join("b.txt")), (UID, 0));
    let again = s.sync(&["--owner", "--group"]);
    again.expect_code(0);
    assert!(again.events("set-owner").is_empty(), "{}", again.explain());

    // Only the owner changed on the source: a chown there, no copy.
    chown(&s.src().join("b.txt"), UID + 5, GID + 5);
    let changed = s.sync(&["--owner", "--group"]);
    changed.expect_code(0);
    assert_eq!(changed.events("set-owner"), ["b.txt"], "{}", changed.explain());
    assert_eq!(changed.count("files_transferred"), 0, "{}", changed.explain());
    assert_eq!(ids(&s.dst().join("b.txt")), (UID + 5, GID + 5));

    // --group alone leaves the user to the destination (root, here).
    let group_only = Scratch::new();
    write(&group_only.src(), "c.txt", b"c");
    chown(&group_only.src().join("c.txt"), UID, GID);
    group_only.sync(&["--group"]).expect_code(0);
    assert_eq!(ids(&group_only.dst().join("c.txt")), (0, GID));

    // Without the flags, nothing is given away.
    let plain = Scratch::new();
    write(&plain.src(), "d.txt", b"d");
    chown(&plain.src().join("d.txt"), UID, GID);
    plain.sync(&[]).expect_code(0);
    assert_eq!(ids(&plain.dst().join("d.txt")), (0, 0));
}

/// A change of owner clears setuid and setgid: the bits are given after it.
#[test]
fn setuid_survives_the_change_of_owner() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    write(&s.src(), "tool", b"x");
    write(&s.src(), "later", b"y");
    chown(&s.src().join("tool"), UID, GID);
    fs::set_permissions(s.src().join("tool"), fs::Permissions::from_mode(0o6755)).unwrap();
    s.sync(&["--owner", "--group", "--perms-all"]).expect_code(0);
    let meta = fs::metadata(s.dst().join("tool")).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777), (UID, GID, 0o6755));

    // The same through a set-owner of an existing file.
    chown(&s.src().join("later"), UID, GID);
    fs::set_permissions(s.src().join("later"), fs::Permissions::from_mode(0o4711)).unwrap();
    fs::set_permissions(s.dst().join("later"), fs::Permissions::from_mode(0o4711)).unwrap();
    let changed = s.sync(&["--owner", "--group", "--perms-all"]);
    changed.expect_code(0);
    assert_eq!(changed.events("set-owner"), ["later"], "{}", changed.explain());
    let meta = fs::metadata(s.dst().join("later")).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777), (UID, GID, 0o4711));
}

#[test]
fn an_sftp_source_gives_its_owners_to_a_local_destination() {
    if !is_root() {
        return;
    }
    let server = harness::ssh_server();
    let s = Scratch::new();
    server.write_file("owned/x.txt", b"x");
    let on_server = ids(&server.root.join("owned/x.txt"));
    assert_ne!(on_server.0, 0, "the test login is not root");
    let remote = crate::sftp_sync::url(&server, "/owned");
    let dst = s.dst().to_string_lossy().into_owned();
    for flags in [&["--owner", "--group"][..], &["--owner", "--group", "--numeric-ids"]] {
        let _ = fs::remove_dir_all(s.dst());
        crate::sftp_sync::sync(&s, &server, &remote, &dst, flags).expect_code(0);
        // The login's user exists here too: by name or by number, the same.
        assert_eq!(ids(&s.dst().join("x.txt")), on_server, "{flags:?}");
    }
}

/// The suite's OpenSSH login is not root: it may not give files away.
/// Said once, as a warning; the content is right.
#[test]
fn an_sftp_login_that_may_not_chown_is_said_once() {
    let server = harness::ssh_server();
    let s = Scratch::new();
    for i in 0..3 {
        write(&s.src(), format!("f{i}.txt"), b"data");
    }
    let remote = crate::sftp_sync::url(&server, "/given");
    let src = s.src().to_string_lossy().into_owned();
    crate::sftp_sync::sync(&s, &server, &src, &remote, &["--owner"]).expect_code(0);
    let second = crate::sftp_sync::sync(&s, &server, &src, &remote, &["--owner"]);
    second.expect_code(0);
    assert_eq!(second.stderr.matches("refuses to change owners").count(), 1, "{}", second.explain());
    assert_eq!(second.count("files_transferred"), 0, "{}", second.explain());
}

#[test]
fn an_ftp_destination_refuses_owner_before_anything_moves() {
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    let s = Scratch::new();
    write(&s.src(), "a.txt", b"a");
    let remote = crate::ftp_sync::url(&server, "/owners");
    let src = s.src().to_string_lossy().into_owned();
    let run = crate::ftp_sync::sync(&s, &server, &src, &remote, &["--group"]);
    run.expect_code(2);
    assert!(run.stderr.contains("cannot set owners"), "{}", run.explain());
    assert!(!server.root.join("owners/a.txt").exists());
}
