//! `barge sync` to and from a real OpenSSH sshd (internal-sftp).
//!
//! Every run gets HOME inside the scratch area and no SSH_AUTH_SOCK, so the
//! machine's own ~/.ssh and agent are never read or written.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::harness::{self, FtpServer, FtpServerKind, FtpTls, SshServer};

/// `barge` with a private HOME and no agent.
fn barge(s: &Scratch) -> Command {
    let mut cmd = s.barge();
    cmd.env("HOME", s.path("home")).env_remove("SSH_AUTH_SOCK");
    cmd
}

/// `barge sync SRC DST` logging in with the server's plain client key and
/// checking its host key against the harness's known_hosts.
pub(crate) fn sync(s: &Scratch, server: &SshServer, src: &str, dst: &str, extra: &[&str]) -> Run {
    let mut cmd = barge(s);
    cmd.args(["sync", src, dst, "--json", "--timeout", "20", "--known-hosts"])
        .arg(&server.known_hosts)
        .arg("--identity")
        .arg(&server.client_key)
        .arg("--state")
        .arg(state_for(s, src, dst))
        .args(extra);
    Run::of(cmd.output().expect("run barge"))
}

/// One state database per (source, destination) pair, as barge's default.
fn state_for(s: &Scratch, src: &str, dst: &str) -> PathBuf {
    s.path(&format!("state-{}.db", blake3::hash(format!("{src}\0{dst}").as_bytes()).to_hex()))
}

pub(crate) fn url(server: &SshServer, sub: &str) -> String {
    format!("{}{sub}", server.url())
}

fn sample(root: &Path) {
    write(root, "top.txt", b"top level");
    write(root, "dir/nested/deep.bin", &bytes(11, 300_000));
    write(root, "dir/empty-file", b"");
    write(root, "with space/a file.txt", b"spaces");
    write(root, "caf\u{e9}/\u{6771}\u{4eac}.txt", b"non-ascii");
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    set_mtime(&root.join("top.txt"), 1_600_000_000);
    set_mtime(&root.join("dir/nested/deep.bin"), 1_500_000_000);
    set_mtime(&root.join("dir/empty-file"), 1_400_000_000);
}

/// Content per path (`None` for directories) and mtimes to the second
/// (SFTP v3's precision), directories included.
fn content_and_seconds(root: &Path) -> BTreeMap<Vec<u8>, (Option<String>, i64)> {
    snapshot(root)
        .into_iter()
        .map(|(path, node)| match node {
            Node::File { hash, mtime_ns } => (path, (Some(hash), (mtime_ns / 1_000_000_000) as i64)),
            Node::Dir { mtime_ns } => (path, (None, (mtime_ns / 1_000_000_000) as i64)),
            Node::Link => (path, (Some("link".into()), 0)),
        })
        .collect()
}

fn assert_same_files(a: &Path, b: &Path) {
    let (x, y) = (content_and_seconds(a), content_and_seconds(b));
    if x != y {
        let mut diff = String::new();
        for key in x.keys().chain(y.keys()).collect::<std::collections::BTreeSet<_>>() {
            if x.get(key) != y.get(key) {
                diff.push_str(&format!("  {}: {:?} / {:?}\n", String::from_utf8_lossy(key), x.get(key), y.get(key)));
            }
        }
        panic!("{} and {} differ:\n{diff}", a.display(), b.display());
    }
}

#[test]
fn upload_and_download_round_trip_with_mtimes() {
    let server = harness::ssh_server();
    let s = Scratch::new();
    sample(&s.src());
    let remote = url(&server, "/mirror");
    let src = s.src().to_string_lossy().into_owned();

    let up = sync(&s, &server, &src, &remote, &[]);
    up.expect_code(0);
    assert_eq!(up.count("files_transferred"), 5, "{}", up.explain());
    assert_same_files(&s.src(), &server.root.join("mirror"));
    assert!(server.root.join("mirror/empty-dir").is_dir());
    assert!(temporaries(&server.root).is_empty());

    let again = sync(&s, &server, &src, &remote, &[]);
    again.expect_code(0);
    assert_eq!(again.count("files_transferred"), 0, "no-op upload resync\n{}", again.explain());
    // Local directory times carry nanoseconds, SFTP's seconds: not set again.
    assert!(!again.stdout.contains("set-mtime"), "no-op upload resync\n{}", again.explain());

    let back = s.path("back");
    let back_str = back.to_string_lossy().into_owned();
    let down = sync(&s, &server, &remote, &back_str, &[]);
    down.expect_code(0);
    assert_eq!(down.count("files_transferred"), 5, "{}", down.explain());
    assert_same_files(&s.src(), &back);
    let again = sync(&s, &server, &remote, &back_str, &[]);
    again.expect_code(0);
    assert_eq!(again.count("files_transferred"), 0, "no-op download resync\n{}", again.explain());
}

#[test]
fn delete_on_the_server() {
    let server = harness::ssh_server();
    let s = Scratch::new();
    sample(&s.src());
    let (src, remote) = (s.src().to_string_lossy().into_owned(), server.url());
    sync(&s, &server, &src, &remote, &[]).expect_code(0);
    server.write_file("stray/inside.txt", b"x");
    server.write_file("stray.txt", b"y");
    fs::remove_file(s.src().join("top.txt")).unwrap();
    let run = sync(&s, &server, &src, &remote, &["--delete"]);
    run.expect_code(0);
    assert_eq!(run.count("files_deleted"), 4, "{}", run.explain());
    assert_same_files(&s.src(), &server.root);
}

/// `barge sync src URL` with only the given login flags (no --identity).
fn sync_with(s: &Scratch, server: &SshServer, env: &[(&str, &str)], flags: &[&str]) -> Run {
    let mut cmd = barge(s);
    cmd.envs(env.iter().copied())
        .args(["sync", "--json", "--timeout", "20", "--known-hosts"])
        .arg(&server.known_hosts)
        .arg(s.src())
        .arg(server.url())
        .args(flags);
    Run::of(cmd.output().expect("run barge"))
}

#[test]
fn encrypted_key_needs_its_passphrase() {
    let server = harness::ssh_server_with(&["PasswordAuthentication no"]);
    let s = Scratch::new();
    write(&s.src(), "k.txt", b"key");
    let key = server.encrypted_client_key.to_string_lossy().into_owned();

    let run = sync_with(&s, &server, &[], &["--identity", &key]);
    run.expect_code(3);
    assert!(run.stderr.contains("encrypted") && run.stderr.contains("--passphrase-env"), "{}", run.explain());

    let wrong = "Not-The-Passphrase-42";
    let run = sync_with(&s, &server, &[("KEY_PASS", wrong)], &["--identity", &key, "--passphrase-env", "KEY_PASS"]);
    run.expect_code(3);
    assert!(run.stderr.contains("cannot decrypt"), "{}", run.explain());
    assert!(!run.stderr.contains(wrong) && !run.stdout.contains(wrong), "{}", run.explain());

    let run = sync_with(
        &s,
        &server,
        &[("KEY_PASS", &server.key_passphrase)],
        &["--identity", &key, "--passphrase-env", "KEY_PASS"],
    );
    run.expect_code(0);
    assert_eq!(fs::read(server.root.join("k.txt")).unwrap(), b"key");
}

#[test]
fn default_key_from_home_is_used() {
    let server = harness::ssh_server_with(&["PasswordAuthentication no"]);
    let s = Scratch::new();
    write(&s.src(), "h.txt", b"home key");
    let ssh_dir = s.path("home/.ssh");
    fs::create_dir_all(&ssh_dir).unwrap();
    fs::copy(&server.client_key, ssh_dir.join("id_ed25519")).unwrap();
    let run = sync_with(&s, &server, &[], &[]);
    run.expect_code(0);
    assert_eq!(fs::read(server.root.join("h.txt")).unwrap(), b"home key");
}

#[test]
fn password_login_from_barge_password() {
    let server = harness::ssh_server();
    let password = server.password.clone().expect("the harness enables password logins");
    let s = Scratch::new();
    write(&s.src(), "p.txt", b"password");
    // No key anywhere: HOME is empty, no --identity, no agent.
    let run = sync_with(&s, &server, &[("BARGE_PASSWORD", &password)], &[]);
    run.expect_code(0);
    assert_eq!(fs::read(server.root.join("p.txt")).unwrap(), b"password");
}

#[test]
fn wrong_password_exits_3_without_echoing_it() {
    let server = harness::ssh_server();
    let s = Scratch::new();
    fs::create_dir_all(s.src()).unwrap();
    let secret = "Wr0ng-Secret-Value";
    let run = sync_with(&s, &server, &[("BARGE_PASSWORD", secret)], &[]);
    run.expect_code(3);
    assert!(run.stderr.contains(&server.user), "the message names the user\n{}", run.explain());
    assert!(run.stderr.contains("127.0.0.1"), "the message names the host\n{}", run.explain());
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "{}", run.explain());
    // Nor from the URL.
    let in_url = format!("sftp://{}:{secret}@127.0.0.1:{}{}", server.user, server.port, server.root.display());
    let run = Run::of(
        barge(&s)
            .args(["sync", "--json", "--known-hosts"])
            .arg(&server.known_hosts)
            .arg(s.src())
            .arg(&in_url)
            .output()
            .unwrap(),
    );
    run.expect_code(3);
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "{}", run.explain());
}

/// `SHA256:...` of the server's host key, as ssh-keygen prints it.
fn host_fingerprint(server: &SshServer) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(server.dir().join("ssh_host_ed25519_key.pub"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().nth(1).expect("fingerprint").to_string()
}

/// `barge sync` checking host keys against `known_hosts`.
fn sync_known(s: &Scratch, server: &SshServer, known_hosts: &Path, extra: &[&str]) -> Run {
    let mut cmd = barge(s);
    cmd.args(["sync", "--json", "--timeout", "20", "--identity"])
        .arg(&server.client_key)
        .arg("--known-hosts")
        .arg(known_hosts)
        .arg(s.src())
        .arg(server.url())
        .args(extra);
    Run::of(cmd.output().expect("run barge"))
}

#[test]
fn unknown_host_key_is_refused_with_its_fingerprint_until_accepted() {
    let server = harness::ssh_server();
    let s = Scratch::new();
    write(&s.src(), "u.txt", b"unknown");
    let known = s.path("kh/known_hosts");
    let fingerprint = host_fingerprint(&server);

    let run = sync_known(&s, &server, &known, &[]);
    run.expect_code(3);
    assert!(run.stderr.contains(&fingerprint), "prints {fingerprint}\n{}", run.explain());
    assert!(run.stderr.contains("--accept-new-host-key"), "{}", run.explain());
    assert!(!known.exists(), "nothing recorded without the flag");
    assert!(!server.root.join("u.txt").exists());

    let run = sync_known(&s, &server, &known, &["--accept-new-host-key"]);
    run.expect_code(0);
    let recorded = fs::read_to_string(&known).unwrap();
    assert_eq!(recorded.trim(), format!("[127.0.0.1]:{} {}", server.port, server.host_key_pub), "{recorded}");

    write(&s.src(), "u2.txt", b"again");
    let run = sync_known(&s, &server, &known, &[]);
    run.expect_code(0);
    assert_eq!(fs::read(server.root.join("u2.txt")).unwrap(), b"again");
    assert_eq!(fs::read_to_string(&known).unwrap(), recorded, "nothing appended the second time");
}

#[test]
fn changed_host_key_is_always_refused() {
    let server = harness::ssh_server();
    let other = harness::ssh_server();
    let s = Scratch::new();
    write(&s.src(), "c.txt", b"changed");
    // This port's line holds the other server's key, after a comment line.
    let known = s.path("known_hosts");
    fs::write(&known, format!("# a comment\n[127.0.0.1]:{} {}\n", server.port, other.host_key_pub)).unwrap();
    let fingerprint = host_fingerprint(&server);
    for extra in [&[][..], &["--accept-new-host-key"][..]] {
        let run = sync_known(&s, &server, &known, extra);
        run.expect_code(3);
        let lower = run.stderr.to_lowercase();
        assert!(lower.contains("changed") && lower.contains("man-in-the-middle"), "{}", run.explain());
        assert!(run.stderr.contains(&fingerprint), "{}", run.explain());
        assert!(run.stderr.contains("line 2"), "names the line\n{}", run.explain());
    }
    assert!(!server.root.join("c.txt").exists());
    assert_eq!(fs::read_to_string(&known).unwrap().lines().count(), 2, "the file is left alone");
}

fn ftp_url(server: &FtpServer, path: &str) -> String {
    format!("ftp://{}@127.0.0.1:{}{path}", server.user, server.port)
}

/// Remote to remote: BARGE_PASSWORD is the FTP password; the SFTP side
/// logs in with its key (keys are tried before passwords).
fn sync_remote(s: &Scratch, ftp: &FtpServer, ssh: &SshServer, src: &str, dst: &str) -> Run {
    let mut cmd = barge(s);
    cmd.env("BARGE_PASSWORD", &ftp.password)
        .args(["sync", src, dst, "--json", "--timeout", "20", "--known-hosts"])
        .arg(&ssh.known_hosts)
        .arg("--identity")
        .arg(&ssh.client_key)
        .arg("--state")
        .arg(state_for(s, src, dst));
    Run::of(cmd.output().expect("run barge"))
}

#[test]
fn ftp_to_sftp_and_back() {
    let ftp = harness::ftp_server(FtpServerKind::PureFtpd, FtpTls::None);
    let ssh = harness::ssh_server();
    let s = Scratch::new();
    sample(&s.src());
    let src = s.src().to_string_lossy().into_owned();
    sync_remote(&s, &ftp, &ssh, &src, &ftp_url(&ftp, "/from")).expect_code(0);

    let run = sync_remote(&s, &ftp, &ssh, &ftp_url(&ftp, "/from"), &url(&ssh, "/to"));
    run.expect_code(0);
    assert_eq!(run.count("files_transferred"), 5, "{}", run.explain());
    assert_same_files(&s.src(), &ssh.root.join("to"));
    let again = sync_remote(&s, &ftp, &ssh, &ftp_url(&ftp, "/from"), &url(&ssh, "/to"));
    assert_eq!(again.count("files_transferred"), 0, "no-op FTP to SFTP resync\n{}", again.explain());

    let run = sync_remote(&s, &ftp, &ssh, &url(&ssh, "/to"), &ftp_url(&ftp, "/back"));
    run.expect_code(0);
    assert_eq!(run.count("files_transferred"), 5, "{}", run.explain());
    assert_same_files(&s.src(), &ftp.root.join("back"));
    let again = sync_remote(&s, &ftp, &ssh, &url(&ssh, "/to"), &ftp_url(&ftp, "/back"));
    assert_eq!(again.count("files_transferred"), 0, "no-op SFTP to FTP resync\n{}", again.explain());
}

/// Starts a throttled sync, kills it (SIGKILL) once `watch` holds a
/// partial temporary of at least 20 MiB.
fn kill_mid_transfer(s: &Scratch, server: &SshServer, src: &str, dst: &str, watch: &Path) {
    let child = barge(s)
        .args(["sync", src, dst, "-q", "--bwlimit", "40M", "--timeout", "20", "--known-hosts"])
        .arg(&server.known_hosts)
        .arg("--identity")
        .arg(&server.client_key)
        .arg("--state")
        .arg(state_for(s, src, dst))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    kill_once_partial(child, watch, 20 << 20, std::time::Duration::from_secs(60));
}

#[test]
fn resume_after_a_kill_in_both_directions() {
    let server = harness::ssh_server();
    let s = Scratch::new();
    let content = big_content();
    write(&s.src(), "big.bin", &content);
    let (src, remote) = (s.src().to_string_lossy().into_owned(), server.url());

    kill_mid_transfer(&s, &server, &src, &remote, &server.root);
    assert!(!server.root.join("big.bin").exists(), "no partial file under the final name");
    let run = sync(&s, &server, &src, &remote, &[]);
    run.expect_code(0);
    assert!(run.count("bytes_transferred") < content.len() as u64, "upload did not resume\n{}", run.explain());
    assert!(fs::read(server.root.join("big.bin")).unwrap() == content, "uploaded content differs");
    assert!(temporaries(&server.root).is_empty());

    let back = s.path("back");
    let back_str = back.to_string_lossy().into_owned();
    fs::create_dir_all(&back).unwrap();
    kill_mid_transfer(&s, &server, &remote, &back_str, &back);
    assert!(!back.join("big.bin").exists(), "no partial file under the final name");
    let run = sync(&s, &server, &remote, &back_str, &[]);
    run.expect_code(0);
    assert!(run.count("bytes_transferred") < content.len() as u64, "download did not resume\n{}", run.explain());
    assert!(fs::read(back.join("big.bin")).unwrap() == content, "downloaded content differs");
    assert!(temporaries(&back).is_empty());
    assert_same_files(&s.src(), &back);
}

/// One session never holds more than 128 handles (OpenSSH's 129th holds
/// byte 0x80, which russh-sftp as published mangled; see
/// `pool::HANDLE_LIMIT`). A 129th open waits for a slot instead of failing.
#[test]
fn a_session_holds_at_most_128_handles() {
    use barge::backend::{self, MissingRoot, RemoteOptions};
    use barge::location::Location;
    use barge::path::RelPath;

    let server = harness::ssh_server();
    for i in 0..130 {
        server.write_file(&format!("f{i:03}"), format!("content {i}").as_bytes());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let options = RemoteOptions {
            // One operation at a time: a single session.
            connections: 1,
            ..server.client_options()
        };
        let location = Location::parse(&server.url()).unwrap();
        let backend = backend::open(&location, MissingRoot::Fail, &options).await.unwrap();
        let path = |i: usize| RelPath::parse(format!("f{i:03}").as_bytes()).unwrap();
        let mut readers = Vec::new();
        for i in 0..128 {
            readers.push(backend.open_read(&path(i), 0).await.unwrap());
        }
        let late_backend = std::sync::Arc::clone(&backend);
        let late = tokio::spawn(async move {
            let mut reader = late_backend.open_read(&path(128), 0).await?;
            reader.read(Vec::with_capacity(64)).await
        });
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(!late.is_finished(), "the 129th handle did not wait");
        drop(readers.pop());
        let data = tokio::time::timeout(std::time::Duration::from_secs(10), late).await.unwrap().unwrap().unwrap();
        assert_eq!(data, b"content 128");
        for (i, reader) in readers.iter_mut().enumerate() {
            let data = reader.read(Vec::with_capacity(64)).await.unwrap();
            assert_eq!(data, format!("content {i}").as_bytes());
        }
    });
}

/// What a tree holds, byte for byte: per relative path, a directory, a
/// file's content or a link's target.
#[derive(Debug, PartialEq)]
enum Held {
    Dir,
    File(Vec<u8>),
    Link(Vec<u8>),
}

fn held(root: &Path) -> BTreeMap<Vec<u8>, Held> {
    use std::os::unix::ffi::OsStrExt;
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|entry| {
            let entry = entry.expect("walk");
            let rel = entry.path().strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
            let kind = entry.path().symlink_metadata().unwrap().file_type();
            let what = if kind.is_symlink() {
                Held::Link(fs::read_link(entry.path()).unwrap().as_os_str().as_bytes().to_vec())
            } else if kind.is_dir() {
                Held::Dir
            } else {
                Held::File(fs::read(entry.path()).unwrap())
            };
            (rel, what)
        })
        .collect()
}

/// A tree from an old server: latin-1 names (a file, a directory, a file in
/// it), a UTF-8 name holding U+F7A9 (one of the private-use characters that
/// stand for single bytes inside barge), and links whose targets are such
/// names. Returns how many files and links it holds (one transfer each).
fn names_that_are_not_utf8(root: &Path) -> u64 {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let name = |bytes: &[u8]| OsStr::from_bytes(bytes).to_os_string();
    write(root, name(b"caf\xe9.txt"), b"latin-1 file");
    write(root, name(b"r\xe9p/inner\xff.bin"), b"in a latin-1 directory");
    write(root, "\u{f7a9}-private.txt", b"escape-like text");
    write(root, "plain.txt", b"plain");
    std::os::unix::fs::symlink(name(b"../caf\xe9.txt"), root.join(name(b"r\xe9p/lien"))).unwrap();
    std::os::unix::fs::symlink("\u{f7a9}-private.txt", root.join("to-private")).unwrap();
    6
}

/// An SFTP tree whose names are not UTF-8 arrives complete and byte-exact,
/// link targets included; a second run copies nothing.
#[test]
fn names_that_are_not_utf8_download_byte_exact() {
    let server = harness::ssh_server();
    let s = Scratch::new();
    let tree = server.create_dir("tree");
    let transfers = names_that_are_not_utf8(&tree);
    harness::give_to_test_user(&tree);
    let (remote, back) = (url(&server, "/tree"), s.path("back"));

    let run = sync(&s, &server, &remote, &back.to_string_lossy(), &[]);
    run.expect_code(0);
    assert_eq!(run.count("warnings"), 0, "{}", run.explain());
    assert_eq!(held(&back), held(&tree), "{}", run.explain());
    assert_eq!(run.count("files_transferred"), transfers, "{}", run.explain());

    let again = sync(&s, &server, &remote, &back.to_string_lossy(), &[]);
    again.expect_code(0);
    assert_eq!(again.count("files_transferred"), 0, "no-op resync\n{}", again.explain());
    assert_eq!(again.count("dirs_created") + again.count("warnings"), 0, "{}", again.explain());
}

/// The same tree from local disk lands on the server under its own bytes,
/// in a root whose own name is not UTF-8 either, then goes from there to
/// another SFTP root unchanged.
#[test]
fn names_that_are_not_utf8_upload_and_cross_servers_byte_exact() {
    use std::os::unix::ffi::OsStrExt;
    let server = harness::ssh_server();
    let s = Scratch::new();
    let transfers = names_that_are_not_utf8(&s.src());
    // The URL path is percent-decoded to bytes: %E9 is the latin-1 é.
    let (src, remote) = (s.src().to_string_lossy().into_owned(), url(&server, "/up%E9"));
    let up = server.root.join(std::ffi::OsStr::from_bytes(b"up\xe9"));

    let run = sync(&s, &server, &src, &remote, &[]);
    run.expect_code(0);
    assert_eq!(run.count("warnings"), 0, "{}", run.explain());
    assert_eq!(run.count("files_transferred"), transfers, "{}", run.explain());
    assert_eq!(held(&up), held(&s.src()), "{}", run.explain());
    let again = sync(&s, &server, &src, &remote, &[]);
    again.expect_code(0);
    assert_eq!(again.count("files_transferred"), 0, "no-op resync\n{}", again.explain());

    // SFTP to SFTP: both ends on the same server, one login key.
    let across = url(&server, "/across");
    let run = sync(&s, &server, &remote, &across, &[]);
    run.expect_code(0);
    assert_eq!(run.count("files_transferred"), transfers, "{}", run.explain());
    assert_eq!(held(&server.root.join("across")), held(&s.src()), "{}", run.explain());
    let again = sync(&s, &server, &remote, &across, &[]);
    again.expect_code(0);
    assert_eq!(again.count("files_transferred"), 0, "no-op SFTP to SFTP resync\n{}", again.explain());

    // A NUL would cut the path where the server reads it: refused.
    let run = sync(&s, &server, &src, &url(&server, "/nul%00byte"), &[]);
    assert_ne!(run.code, 0, "{}", run.explain());
    assert!(run.stderr.contains("NUL byte"), "{}", run.explain());
    assert!(!server.root.join("nul").exists(), "{}", run.explain());
}

/// One tree spelled two ways passes the check by text: through a link to
/// it, or through another name of the host. Refused once both sides are
/// open, by the roots the server resolves (before, --delete removed the
/// source from inside the destination and exited 0). A root that is itself
/// a link to a directory is followed, as a local root is.
#[test]
fn one_tree_spelled_two_ways_is_refused_after_opening() {
    let server = harness::ssh_server();
    write(&server.root, "tree/sub/precious.txt", b"precious");
    write(&server.root, "tree/other.txt", b"other");
    std::os::unix::fs::symlink("tree", server.root.join("alias")).unwrap();
    harness::give_to_test_user(&server.root);
    let s = Scratch::new();
    let via_localhost = url(&server, "/alias").replace("@127.0.0.1:", "@localhost:");
    for (src, dst) in [
        (url(&server, "/tree/sub"), url(&server, "/alias")),
        (url(&server, "/alias"), url(&server, "/tree/sub/deeper")),
        (url(&server, "/tree/sub"), via_localhost),
    ] {
        let run = sync(&s, &server, &src, &dst, &["--delete"]);
        run.expect_code(2);
        assert!(run.stderr.contains("inside"), "{src} -> {dst}: {}", run.explain());
        assert_eq!(fs::read(server.root.join("tree/sub/precious.txt")).unwrap(), b"precious");
    }
    // The link as a root on its own: followed.
    let run = sync(&s, &server, &url(&server, "/alias"), &s.dst().to_string_lossy(), &[]);
    run.expect_code(0);
    assert_eq!(fs::read(s.dst().join("sub/precious.txt")).unwrap(), b"precious");
}

/// The server's process gone mid-run (every connection refused at once):
/// the run gives up after a few seconds of nothing but refusals and exits
/// 3, instead of spending every pending file's retries against a closed
/// port (before: hundreds of reconnects, exit 1). No file is left
/// half-written under its name.
#[test]
fn a_server_gone_mid_run_ends_it_with_exit_3() {
    let server = harness::ssh_server();
    harness::give_to_test_user(&server.root);
    let s = Scratch::new();
    for i in 0..200 {
        write(&s.src(), format!("f{i:03}.bin"), &bytes(i, 20 << 10));
    }
    let src = s.src().to_string_lossy().into_owned();
    let mut cmd = barge(&s);
    cmd.args(["sync", &src, &url(&server, "/up"), "--json", "--timeout", "20", "--bwlimit", "400K"])
        .args(["--parallel", "4", "--known-hosts"])
        .arg(&server.known_hosts)
        .arg("--identity")
        .arg(&server.client_key)
        .arg("--state")
        .arg(s.state())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    while files_in_tree(&server.root) < 5 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The listener and every session below it (sshd forks twice per login).
    kill_server(server.pid());
    let killed = std::time::Instant::now();
    let run = Run::of(child.wait_with_output().unwrap());
    run.expect_code(3);
    assert!(killed.elapsed() < Duration::from_secs(30), "took {:?}\n{}", killed.elapsed(), run.explain());
    let summary = run.summary();
    assert!(summary["gave_up"].as_str().is_some_and(|why| why.contains("refused")), "{summary}");
    for entry in walkdir::WalkDir::new(server.root.join("up")).into_iter().flatten().filter(|e| e.file_type().is_file())
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(".barge-") {
            assert_eq!(fs::read(entry.path()).unwrap(), fs::read(s.src().join(&name)).unwrap(), "{name} partial");
        }
    }
}

/// One destination spelled two ways (through a link to it) is one job:
/// a run of the second spelling while the first runs exits 4, as a second
/// run of one spelling does (each took its own lock and both wrote the same
/// temporaries).
#[test]
fn one_destination_spelled_two_ways_runs_once_at_a_time() {
    let server = harness::ssh_server();
    fs::create_dir_all(server.root.join("tree")).unwrap();
    std::os::unix::fs::symlink("tree", server.root.join("alias")).unwrap();
    harness::give_to_test_user(&server.root);
    let s = Scratch::new();
    write(&s.src(), "big.bin", &bytes(5, 2 << 20));
    let src = s.src().to_string_lossy().into_owned();
    let sync_to = |dst: &str| {
        let mut cmd = barge(&s);
        cmd.args(["sync", &src, dst, "--timeout", "20", "--bwlimit", "256K", "--known-hosts"])
            .arg(&server.known_hosts)
            .arg("--identity")
            .arg(&server.client_key);
        cmd
    };
    for (first, second, on_disk) in [("/tree/d", "/alias/d", "tree/d"), ("/alias/e", "/tree/e", "tree/e")] {
        let mut running = sync_to(&url(&server, first))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while temporaries(&server.root.join(on_disk)).is_empty() && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let run = Run::of(sync_to(&url(&server, second)).output().unwrap());
        running.kill().unwrap();
        running.wait().unwrap();
        run.expect_code(4);
        assert!(run.stderr.contains("already running"), "{first} then {second}: {}", run.explain());
    }
}
