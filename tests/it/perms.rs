//! Permission bits: kept by default wherever both sides carry them, a
//! mode-only change a metadata update (never a copy), `--no-perms` and
//! `--perms-all`; against local disk, real OpenSSH and real FTP servers.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;
use crate::harness::{self, FtpServerKind, FtpTls};

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Makes each `(path, mode)`: a file (its path as content) when the name
/// has a dot, else a directory; files first, so a directory's mode cannot
/// keep them out. Returns the paths.
fn make(root: &Path, entries: &[(&'static str, u32)]) -> Vec<&'static str> {
    let is_file = |path: &str| path.contains('.');
    for (path, _) in entries.iter().filter(|(p, _)| is_file(p)) {
        write(root, path, path.as_bytes());
    }
    for (path, mode) in entries.iter().filter(|(p, _)| is_file(p)).chain(entries.iter().filter(|(p, _)| !is_file(p))) {
        fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
        if !is_file(path) {
            fs::create_dir_all(root.join(path)).unwrap();
        }
        chmod(&root.join(path), *mode);
    }
    entries.iter().map(|(p, _)| *p).collect()
}

/// A script, a private file, a plain one, and directories of three kinds.
fn tree(root: &Path) {
    make(
        root,
        &[
            ("bin/run.sh", 0o755),
            ("etc/secret.conf", 0o600),
            ("www/index.html", 0o644),
            ("bin", 0o755),
            ("etc", 0o700),
            ("www", 0o750),
        ],
    );
}

fn assert_modes(src: &Path, dst: &Path) {
    for rel in ["bin/run.sh", "etc/secret.conf", "www/index.html", "bin", "etc", "www"] {
        assert_eq!(mode(&dst.join(rel)), mode(&src.join(rel)), "{rel}: {:o} on the destination", mode(&dst.join(rel)));
    }
}

#[test]
fn local_modes_are_kept_and_a_mode_change_is_a_set_mode_not_a_copy() {
    let s = Scratch::new();
    tree(&s.src());
    s.sync(&[]).expect_code(0);
    assert_modes(&s.src(), &s.dst());

    let again = s.sync(&[]);
    again.expect_code(0);
    assert!(again.events("set-mode").is_empty(), "{}", again.explain());
    assert_eq!(again.count("files_transferred"), 0);

    chmod(&s.src().join("www/index.html"), 0o640);
    chmod(&s.src().join("www"), 0o755);
    let mut plan = s.barge();
    plan.arg("plan").arg(s.src()).arg(s.dst()).arg("--state").arg(s.state()).arg("--json");
    let planned = Run::of(plan.output().unwrap());
    planned.expect_code(0);
    assert_eq!(planned.events("set-mode"), ["www/index.html", "www"], "{}", planned.explain());
    let inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(s.dst().join("www/index.html")).unwrap());

    let changed = s.sync(&[]);
    changed.expect_code(0);
    assert_eq!(changed.count("files_transferred"), 0, "a mode is not content\n{}", changed.explain());
    assert_modes(&s.src(), &s.dst());
    let after = std::os::unix::fs::MetadataExt::ino(&fs::metadata(s.dst().join("www/index.html")).unwrap());
    assert_eq!(inode, after, "the file was rewritten");
}

#[test]
fn no_perms_leaves_the_destination_modes_alone() {
    let s = Scratch::new();
    tree(&s.src());
    s.sync(&["--no-perms"]).expect_code(0);
    // A new file gets the destination's default (0666 less the umask:
    // never the source's 0600 or 0755).
    assert_ne!(mode(&s.dst().join("bin/run.sh")), 0o755);
    chmod(&s.dst().join("www/index.html"), 0o600);
    let again = s.sync(&["--no-perms"]);
    again.expect_code(0);
    assert!(again.events("set-mode").is_empty(), "{}", again.explain());
    assert_eq!(mode(&s.dst().join("www/index.html")), 0o600);
}

#[test]
fn perms_all_keeps_setuid_only_as_root() {
    let s = Scratch::new();
    write(&s.src(), "tool", b"x");
    chmod(&s.src().join("tool"), 0o4755);
    let run = s.sync(&["--perms-all"]);
    if !is_root() {
        run.expect_code(2);
        assert!(run.stderr.contains("--perms-all"), "{}", run.explain());
        return;
    }
    run.expect_code(0);
    assert_eq!(mode(&s.dst().join("tool")), 0o4755);
    // Without it, only the rwx bits.
    let plain = Scratch::new();
    write(&plain.src(), "tool", b"x");
    chmod(&plain.src().join("tool"), 0o4755);
    plain.sync(&[]).expect_code(0);
    assert_eq!(mode(&plain.dst().join("tool")), 0o755);
}

#[test]
fn sftp_uploads_and_downloads_keep_modes() {
    let server = harness::ssh_server();
    let s = Scratch::new();
    tree(&s.src());
    let remote = crate::sftp_sync::url(&server, "/modes");
    let src = s.src().to_string_lossy().into_owned();
    crate::sftp_sync::sync(&s, &server, &src, &remote, &[]).expect_code(0);
    assert_modes(&s.src(), &server.root.join("modes"));

    // A mode-only change on the source reaches the server without a copy.
    chmod(&s.src().join("etc/secret.conf"), 0o640);
    let changed = crate::sftp_sync::sync(&s, &server, &src, &remote, &[]);
    changed.expect_code(0);
    assert_eq!(changed.count("files_transferred"), 0, "{}", changed.explain());
    assert_eq!(changed.events("set-mode"), ["etc/secret.conf"], "{}", changed.explain());
    assert_modes(&s.src(), &server.root.join("modes"));

    let back = s.path("back");
    let back_str = back.to_string_lossy().into_owned();
    crate::sftp_sync::sync(&s, &server, &remote, &back_str, &[]).expect_code(0);
    assert_modes(&s.src(), &back);
    let again = crate::sftp_sync::sync(&s, &server, &remote, &back_str, &[]);
    again.expect_code(0);
    assert!(again.events("set-mode").is_empty(), "{}", again.explain());
}

/// Modes an FTP server's user (not the owner) can still read and list.
fn readable_tree(root: &Path) -> Vec<&'static str> {
    make(
        root,
        &[("bin/run.sh", 0o755), ("www/index.html", 0o644), ("www/notes.txt", 0o604), ("bin", 0o755), ("www", 0o775)],
    )
}

#[test]
fn ftp_listings_give_modes_to_a_local_destination() {
    // proftpd: MLSD UNIX.mode; vsftpd: the LIST permission column.
    for kind in [FtpServerKind::Proftpd, FtpServerKind::Vsftpd] {
        let server = harness::ftp_server(kind, FtpTls::None);
        let paths = readable_tree(&server.root);
        let s = Scratch::new();
        let remote = crate::ftp_sync::url(&server, "/");
        let dst = s.dst().to_string_lossy().into_owned();
        crate::ftp_sync::sync(&s, &server, &remote, &dst, &[]).expect_code(0);
        for rel in paths {
            assert_eq!(mode(&s.dst().join(rel)), mode(&server.root.join(rel)), "{}: {rel}", kind.name());
        }
        let again = crate::ftp_sync::sync(&s, &server, &remote, &dst, &[]);
        again.expect_code(0);
        assert!(again.events("set-mode").is_empty(), "{}: {}", kind.name(), again.explain());
    }
}

#[test]
fn chmod_changes_the_bits_on_their_way() {
    let s = Scratch::new();
    tree(&s.src());
    s.sync(&["--chmod", "D750,Fo-r,Fa+X"]).expect_code(0);
    // 0755, less o+r, then x for all where some x is already set.
    assert_eq!(mode(&s.dst().join("bin/run.sh")), 0o751);
    assert_eq!(mode(&s.dst().join("www/index.html")), 0o640);
    assert_eq!(mode(&s.dst().join("etc")), 0o750);
    // The same changes again: nothing to do.
    let again = s.sync(&["--chmod", "D750,Fo-r,Fa+X"]);
    again.expect_code(0);
    assert!(again.events("set-mode").is_empty(), "{}", again.explain());
    let typo = s.sync(&["--chmod", "F6x4"]);
    typo.expect_code(2);
    assert!(typo.stderr.contains("--chmod: `F6x4`"), "{}", typo.explain());
}

#[test]
fn ftp_uploads_keep_modes_with_site_chmod() {
    for kind in FtpServerKind::ALL {
        let server = harness::ftp_server(kind, FtpTls::None);
        let s = Scratch::new();
        let paths = readable_tree(&s.src());
        let remote = crate::ftp_sync::url(&server, "/up");
        let src = s.src().to_string_lossy().into_owned();
        crate::ftp_sync::sync(&s, &server, &src, &remote, &[]).expect_code(0);
        for rel in &paths {
            assert_eq!(mode(&server.root.join("up").join(rel)), mode(&s.src().join(rel)), "{}: {rel}", kind.name());
        }
        // A mode-only change is one SITE CHMOD, not an upload.
        chmod(&s.src().join("www/index.html"), 0o600);
        let changed = crate::ftp_sync::sync(&s, &server, &src, &remote, &[]);
        changed.expect_code(0);
        assert_eq!(changed.count("files_transferred"), 0, "{}: {}", kind.name(), changed.explain());
        assert_eq!(mode(&server.root.join("up/www/index.html")), 0o600, "{}", kind.name());
    }
}

#[test]
fn an_ftp_server_without_site_chmod_is_said_once_and_not_asked_again() {
    let server = harness::ftp_server_with(FtpServerKind::Vsftpd, FtpTls::None, &["chmod_enable=NO"]);
    let s = Scratch::new();
    readable_tree(&s.src());
    let remote = crate::ftp_sync::url(&server, "/up");
    let src = s.src().to_string_lossy().into_owned();
    let first = crate::ftp_sync::sync(&s, &server, &src, &remote, &[]);
    first.expect_code(0);
    assert_eq!(first.count("errors"), 0, "{}", first.explain());
    chmod(&s.src().join("www/index.html"), 0o600);
    let second = crate::ftp_sync::sync(&s, &server, &src, &remote, &[]);
    second.expect_code(0);
    assert_eq!(second.stderr.matches("does not take permission bits").count(), 1, "{}", second.explain());
    assert!(second.events("set-mode").is_empty(), "not asked again\n{}", second.explain());
}

/// A `--trust-state` run lists the destination from the state database:
/// the records keep the bits each file was given, so a mode change on the
/// source still reaches a trusted backup, once.
#[test]
fn a_trusted_backup_sees_mode_changes_through_its_records() {
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    let s = Scratch::new();
    readable_tree(&s.src());
    let remote = crate::ftp_sync::url(&server, "/up");
    let src = s.src().to_string_lossy().into_owned();
    crate::ftp_sync::sync(&s, &server, &src, &remote, &[]).expect_code(0);
    crate::ftp_sync::sync(&s, &server, &src, &remote, &["--verify-state"]).expect_code(0);
    let unchanged = crate::ftp_sync::sync(&s, &server, &src, &remote, &["--trust-state"]);
    unchanged.expect_code(0);
    assert!(unchanged.events("set-mode").is_empty(), "{}", unchanged.explain());

    chmod(&s.src().join("bin/run.sh"), 0o700);
    let changed = crate::ftp_sync::sync(&s, &server, &src, &remote, &["--trust-state"]);
    changed.expect_code(0);
    assert_eq!(changed.events("set-mode"), ["bin/run.sh"], "{}", changed.explain());
    assert_eq!(changed.count("files_transferred"), 0, "{}", changed.explain());
    assert_eq!(mode(&server.root.join("up/bin/run.sh")), 0o700);
    // The record learned the new bits: the next trusted run has nothing to do.
    let again = crate::ftp_sync::sync(&s, &server, &src, &remote, &["--trust-state"]);
    again.expect_code(0);
    assert!(again.events("set-mode").is_empty(), "{}", again.explain());
}
