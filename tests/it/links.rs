//! Symbolic links (`--links copy|skip|follow`) through the real binary:
//! local to local, local to SFTP and SFTP to local against a real OpenSSH
//! sshd, and FTP destinations (which cannot hold links). Links point inside
//! and outside the tree; no link may make barge read or write outside the
//! roots it was given.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::common::*;

/// The link target at `path`, or `None` when it is not a link.
fn target(path: &Path) -> Option<Vec<u8>> {
    fs::symlink_metadata(path).ok().filter(|m| m.file_type().is_symlink())?;
    Some(fs::read_link(path).expect("readlink").into_os_string().into_vec())
}

use std::os::unix::ffi::OsStringExt;

fn link(root: &Path, rel: &str, to: impl AsRef<OsStr>) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    symlink(to.as_ref(), path).expect("symlink");
}

/// Every file below `dir`, to prove nothing was written there.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir).min_depth(1).into_iter().filter_map(Result::ok).map(|e| e.into_path()).collect()
}

/// A source tree with links of every kind, and a directory outside both
/// roots that they point into (`outside/secret`).
fn linked_tree(s: &Scratch) -> PathBuf {
    let src = s.src();
    let outside = s.path("outside");
    write(&outside, "secret", b"must never be copied as content");
    write(&src, "a.txt", b"alpha");
    write(&src, "sub/b.txt", b"bravo");
    link(&src, "rel", "a.txt");
    link(&src, "dir-link", "sub");
    link(&src, "sub/up", "../a.txt");
    link(&src, "abs-outside", outside.join("secret"));
    link(&src, "rel-outside", "../outside/secret");
    link(&src, "dangling", "no/such/thing");
    link(&src, "bytes", OsStr::from_bytes(b"caf\xc3\xa9 \xff\xfe -> x"));
    outside
}

/// (relative path, target) of every link the tree has.
const LINKS: [(&str, &[u8]); 7] = [
    ("rel", b"a.txt"),
    ("dir-link", b"sub"),
    ("sub/up", b"../a.txt"),
    ("abs-outside", b""), // absolute: checked separately
    ("rel-outside", b"../outside/secret"),
    ("dangling", b"no/such/thing"),
    ("bytes", b"caf\xc3\xa9 \xff\xfe -> x"),
];

fn assert_links_copied(s: &Scratch, dst: &Path, outside: &Path) {
    for (rel, want) in LINKS {
        let got = target(&dst.join(rel)).unwrap_or_else(|| panic!("{rel} is not a link on the destination"));
        if rel == "abs-outside" {
            assert_eq!(got, outside.join("secret").into_os_string().into_vec());
        } else {
            assert_eq!(got, want, "{rel}: target bytes differ");
        }
    }
    assert_eq!(fs::read(dst.join("a.txt")).unwrap(), b"alpha");
    assert!(fs::symlink_metadata(dst.join("sub")).unwrap().is_dir());
    assert_eq!(files_below(outside), [outside.join("secret")], "nothing written outside the roots");
    let _ = s;
}

#[test]
fn links_are_copied_as_links_byte_exact_and_compared_by_target() {
    let s = Scratch::new();
    let outside = linked_tree(&s);
    let run = s.sync(&[]);
    run.expect_code(0);
    assert_links_copied(&s, &s.dst(), &outside);
    assert!(temporaries(&s.dst()).is_empty());
    assert_eq!(run.count("files_transferred"), 2 + LINKS.len() as u64, "{}", run.explain());

    // Unchanged links are not touched, whatever their mtimes.
    let run = s.sync(&[]);
    run.expect_code(0);
    assert_eq!(run.count("files_transferred"), 0, "{}", run.explain());

    // A changed target (same length, other bytes) replaces the link; a link
    // that became a file, a file that became a link, a link that became a
    // directory and a directory that became a link.
    fs::remove_file(s.src().join("rel")).unwrap();
    link(&s.src(), "rel", "b.txt");
    fs::remove_file(s.src().join("dangling")).unwrap();
    write(&s.src(), "dangling", b"now a file");
    fs::remove_file(s.src().join("a.txt")).unwrap();
    link(&s.src(), "a.txt", "sub/b.txt");
    fs::remove_file(s.src().join("dir-link")).unwrap();
    write(&s.src(), "dir-link/inside", b"a real directory now");
    fs::rename(s.src().join("sub"), s.src().join("moved")).unwrap();
    link(&s.src(), "sub", "moved");
    let run = s.sync(&["--delete"]);
    run.expect_code(0);
    assert_eq!(target(&s.dst().join("rel")).unwrap(), b"b.txt");
    assert_eq!(fs::read(s.dst().join("dangling")).unwrap(), b"now a file");
    assert_eq!(target(&s.dst().join("a.txt")).unwrap(), b"sub/b.txt");
    assert_eq!(fs::read(s.dst().join("dir-link/inside")).unwrap(), b"a real directory now");
    assert_eq!(target(&s.dst().join("sub")).unwrap(), b"moved");
    assert_eq!(fs::read(s.dst().join("moved/b.txt")).unwrap(), b"bravo");
    assert!(temporaries(&s.dst()).is_empty());
    assert_eq!(files_below(&outside), [outside.join("secret")]);
    s.sync(&["--delete"]).expect_code(0);
    let again = s.sync(&["--delete"]);
    assert_eq!(again.count("files_transferred") + again.count("files_deleted"), 0, "{}", again.explain());
}

#[test]
fn skip_mode_leaves_links_out_with_a_reason() {
    let s = Scratch::new();
    let outside = linked_tree(&s);
    // A destination entry where the source has a skipped link is left alone.
    write(&s.dst(), "rel", b"kept");
    let run = s.sync(&["--links", "skip", "--delete"]);
    run.expect_code(0);
    for (rel, _) in LINKS {
        assert!(target(&s.dst().join(rel)).is_none(), "{rel} was copied");
    }
    assert_eq!(fs::read(s.dst().join("rel")).unwrap(), b"kept");
    let skipped: Vec<_> = run.json().into_iter().filter(|v| v["type"] == "skip" && v["reason"] == "symlink").collect();
    assert_eq!(skipped.len(), LINKS.len(), "{}", run.explain());
    assert_eq!(files_below(&outside), [outside.join("secret")]);
}

#[test]
fn follow_mode_copies_what_links_inside_point_to_and_nothing_outside() {
    let s = Scratch::new();
    let outside = linked_tree(&s);
    // A loop back to an ancestor, and two links that point at each other.
    link(&s.src(), "sub/deeper/loop", "../..");
    link(&s.src(), "ping", "pong");
    link(&s.src(), "pong", "ping");
    // A link to a directory outside: its contents must not be walked.
    link(&s.src(), "outside-dir", &outside);
    let run = s.sync(&["--links", "follow", "--delete"]);
    run.expect_code(0);
    let dst = s.dst();
    assert_eq!(fs::read(dst.join("rel")).unwrap(), b"alpha", "a link to a file inside becomes the file");
    assert_eq!(fs::read(dst.join("sub/up")).unwrap(), b"alpha");
    assert!(fs::symlink_metadata(dst.join("dir-link")).unwrap().is_dir());
    assert_eq!(fs::read(dst.join("dir-link/b.txt")).unwrap(), b"bravo");
    assert_eq!(fs::read(dst.join("dir-link/up")).unwrap(), b"alpha");
    for gone in ["abs-outside", "rel-outside", "dangling", "bytes", "ping", "pong", "outside-dir", "sub/deeper/loop"] {
        assert!(fs::symlink_metadata(dst.join(gone)).is_err(), "{gone} reached the destination");
        let named = run.json().iter().any(|v| {
            v["type"] == "warning" && v["message"].as_str().is_some_and(|m| m.starts_with(&format!("{gone}: ")))
        });
        assert!(named, "no warning names {gone}\n{}", run.explain());
    }
    assert!(files_below(&dst).iter().all(|p| fs::read(p).map_or(true, |c| c != b"must never be copied as content")));
    assert!(files_below(&dst).iter().all(|p| !fs::symlink_metadata(p).unwrap().file_type().is_symlink()));
    assert_eq!(files_below(&outside), [outside.join("secret")]);
    // Links that could not be followed hold back no deletion.
    write(&dst, "extra", b"x");
    let run = s.sync(&["--links", "follow", "--delete"]);
    run.expect_code(0);
    assert!(!dst.join("extra").exists(), "{}", run.explain());
}

#[test]
fn a_symlinked_destination_directory_is_replaced_not_written_through() {
    for mode in ["copy", "skip", "follow"] {
        let s = Scratch::new();
        let victim = s.path("victim");
        fs::create_dir_all(&victim).unwrap();
        write(&s.src(), "sub/passwd", b"root::0:0");
        write(&s.src(), "file-over-link", b"content");
        link(&s.dst(), "sub", &victim);
        link(&s.dst(), "file-over-link", victim.join("target"));
        let run = s.sync(&["--links", mode]);
        run.expect_code(0);
        assert_eq!(files_below(&victim), Vec::<PathBuf>::new(), "--links {mode}: wrote through a link");
        assert!(fs::symlink_metadata(s.dst().join("sub")).unwrap().is_dir(), "--links {mode}");
        assert_eq!(fs::read(s.dst().join("sub/passwd")).unwrap(), b"root::0:0");
        assert!(fs::symlink_metadata(s.dst().join("file-over-link")).unwrap().is_file());
    }
}
