//! `barge sync` to and from real vsftpd, pure-ftpd and proftpd servers.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::common::*;
use crate::harness::{self, FtpServer, FtpServerKind, FtpTls};

pub(crate) fn url(server: &FtpServer, path: &str) -> String {
    let scheme = match server.tls {
        FtpTls::Implicit => "ftps",
        FtpTls::Explicit => "ftpes",
        FtpTls::None => "ftp",
    };
    format!("{scheme}://{}@127.0.0.1:{}{path}", server.user, server.port)
}

/// `barge sync SRC DST` with the server's password in BARGE_PASSWORD and
/// its CA trusted.
pub(crate) fn sync(s: &Scratch, server: &FtpServer, src: &str, dst: &str, extra: &[&str]) -> Run {
    let mut cmd = s.barge();
    cmd.env("BARGE_PASSWORD", &server.password)
        .args(["sync", src, dst, "--json", "--timeout", "20", "--ca-file"])
        .arg(&server.ca_cert)
        .arg("--state")
        .arg(state_for(s, src, dst))
        .args(extra);
    Run::of(cmd.output().expect("run barge"))
}

/// One state database per (source, destination) pair, as barge's default.
fn state_for(s: &Scratch, src: &str, dst: &str) -> std::path::PathBuf {
    s.path(&format!("state-{}.db", blake3::hash(format!("{src}\0{dst}").as_bytes()).to_hex()))
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
}

/// Content per path, and mtimes to the second (FTP's precision).
fn content_and_seconds(root: &Path) -> BTreeMap<Vec<u8>, (Option<String>, i64)> {
    snapshot(root)
        .into_iter()
        .map(|(path, node)| match node {
            Node::File { hash, mtime_ns } => (path, (Some(hash), (mtime_ns / 1_000_000_000) as i64)),
            Node::Dir { .. } | Node::Link => (path, (None, 0)),
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

/// Upload a tree, resync (nothing to do), download it back, resync again.
fn round_trip(kind: FtpServerKind, tls: FtpTls, extra: &[&str]) {
    let server = harness::ftp_server(kind, tls);
    let s = Scratch::new();
    sample(&s.src());
    let remote = url(&server, "/mirror");
    let src = s.src().to_string_lossy().into_owned();

    let up = sync(&s, &server, &src, &remote, extra);
    up.expect_code(0);
    assert_eq!(up.count("files_transferred"), 5, "{}", up.explain());
    assert_same_files(&s.src(), &server.root.join("mirror"));
    assert!(server.root.join("mirror/empty-dir").is_dir());

    let again = sync(&s, &server, &src, &remote, extra);
    again.expect_code(0);
    assert_eq!(again.count("files_transferred"), 0, "no-op upload resync\n{}", again.explain());

    let back = s.path("back");
    let back_str = back.to_string_lossy().into_owned();
    let down = sync(&s, &server, &remote, &back_str, extra);
    down.expect_code(0);
    assert_eq!(down.count("files_transferred"), 5, "{}", down.explain());
    assert_same_files(&s.src(), &back);
    let again = sync(&s, &server, &remote, &back_str, extra);
    again.expect_code(0);
    assert_eq!(again.count("files_transferred"), 0, "no-op download resync\n{}", again.explain());
}

#[test]
fn vsftpd_upload_and_download() {
    round_trip(FtpServerKind::Vsftpd, FtpTls::None, &[]);
}

#[test]
fn pureftpd_upload_and_download() {
    round_trip(FtpServerKind::PureFtpd, FtpTls::None, &[]);
}

#[test]
fn proftpd_upload_and_download() {
    round_trip(FtpServerKind::Proftpd, FtpTls::None, &[]);
}

#[test]
fn vsftpd_explicit_tls_with_session_reuse_required() {
    round_trip(FtpServerKind::Vsftpd, FtpTls::Explicit, &[]);
}

#[test]
fn vsftpd_implicit_tls() {
    round_trip(FtpServerKind::Vsftpd, FtpTls::Implicit, &[]);
}

#[test]
fn proftpd_explicit_tls_and_pureftpd_explicit_tls() {
    round_trip(FtpServerKind::Proftpd, FtpTls::Explicit, &[]);
    round_trip(FtpServerKind::PureFtpd, FtpTls::Explicit, &[]);
}

#[test]
fn active_mode_transfers() {
    round_trip(FtpServerKind::Proftpd, FtpTls::None, &["--active"]);
}

/// `--active-ports`: barge's own PORT/EPRT listener, with TLS data
/// connections that resume the control session (vsftpd demands it).
#[test]
fn active_ports_with_tls_session_reuse_and_on_every_server() {
    let ports = harness::free_port_range();
    let range = format!("{}-{}", ports.start(), ports.end());
    round_trip(FtpServerKind::Vsftpd, FtpTls::Explicit, &["--active-ports", &range]);
    round_trip(FtpServerKind::PureFtpd, FtpTls::None, &["--active-ports", &range]);
    round_trip(FtpServerKind::Proftpd, FtpTls::Explicit, &["--active-ports", &range]);
}

/// The range is honoured: with every port of it taken, nothing can be
/// transferred and the error says why.
#[test]
fn active_ports_all_busy_fails_with_a_clear_message() {
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    server.write_file("pub/a.txt", b"some data");
    let ports = harness::free_port_range();
    let busy: Vec<_> =
        (*ports.start()..=*ports.start() + 1).map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).unwrap()).collect();
    let range = format!("{}-{}", ports.start(), ports.start() + 1);
    let s = Scratch::new();
    let dst = s.dst().to_string_lossy().into_owned();
    let run = sync(&s, &server, &url(&server, "/pub"), &dst, &["--active-ports", &range, "--retries", "1"]);
    assert_ne!(run.code, 0, "{}", run.explain());
    assert!(run.stderr.contains(&format!("no free local port in --active-ports {range}")), "{}", run.explain());
    assert!(!s.dst().join("a.txt").exists());
    drop(busy);
    sync(&s, &server, &url(&server, "/pub"), &dst, &["--active-ports", &range]).expect_code(0);
    assert_eq!(fs::read(s.dst().join("a.txt")).unwrap(), b"some data");
}

#[test]
fn delete_on_the_server() {
    let server = harness::ftp_server(FtpServerKind::PureFtpd, FtpTls::None);
    let s = Scratch::new();
    sample(&s.src());
    let (src, remote) = (s.src().to_string_lossy().into_owned(), url(&server, "/"));
    sync(&s, &server, &src, &remote, &[]).expect_code(0);
    server.write_file("stray/inside.txt", b"x");
    server.write_file("stray.txt", b"y");
    fs::remove_file(s.src().join("top.txt")).unwrap();
    let run = sync(&s, &server, &src, &remote, &["--delete"]);
    run.expect_code(0);
    assert_eq!(run.count("files_deleted"), 4, "{}", run.explain());
    assert_same_files(&s.src(), &server.root);
}

#[test]
fn wrong_password_exits_3_without_echoing_it() {
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    let s = Scratch::new();
    fs::create_dir_all(s.src()).unwrap();
    let secret = "Wr0ng-Secret-Value";
    let run = Run::of(
        s.barge()
            .env("BARGE_PASSWORD", secret)
            .args(["sync", "--json"])
            .arg(s.src())
            .arg(url(&server, "/"))
            .output()
            .unwrap(),
    );
    run.expect_code(3);
    assert!(run.stderr.contains(&server.user), "the message names the user\n{}", run.explain());
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "{}", run.explain());
    // A password in the URL is never echoed either.
    let in_url = format!("ftp://{}:{secret}@127.0.0.1:{}/", server.user, server.port);
    let run = Run::of(s.barge().args(["sync", "--json"]).arg(s.src()).arg(&in_url).output().unwrap());
    run.expect_code(3);
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "{}", run.explain());
}

#[test]
fn untrusted_certificates_are_refused_unless_trusted_or_insecure() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::Explicit);
    let s = Scratch::new();
    write(&s.src(), "a", b"a");
    let run = Run::of(
        s.barge()
            .env("BARGE_PASSWORD", &server.password)
            .args(["sync", "--json", "--timeout", "20"])
            .arg(s.src())
            .arg(url(&server, "/"))
            .output()
            .unwrap(),
    );
    run.expect_code(3);
    assert!(run.stderr.to_lowercase().contains("certificate"), "{}", run.explain());
    let insecure = Run::of(
        s.barge()
            .env("BARGE_PASSWORD", &server.password)
            .args(["sync", "--json", "--insecure", "--timeout", "20"])
            .arg(s.src())
            .arg(url(&server, "/"))
            .output()
            .unwrap(),
    );
    insecure.expect_code(0);
    assert!(insecure.stderr.contains("insecure"), "a warning is printed\n{}", insecure.explain());
    assert_eq!(fs::read(server.root.join("a")).unwrap(), b"a");
}

#[test]
fn netrc_supplies_the_login() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    let s = Scratch::new();
    write(&s.src(), "n.txt", b"netrc");
    let netrc = s.path("netrc");
    fs::write(&netrc, format!("machine 127.0.0.1 login {} password {}\n", server.user, server.password)).unwrap();
    let run = Run::of(
        s.barge()
            .env("NETRC", &netrc)
            .args(["sync", "--json"])
            .arg(s.src())
            .arg(format!("ftp://127.0.0.1:{}/", server.port))
            .output()
            .unwrap(),
    );
    run.expect_code(0);
    assert_eq!(fs::read(server.root.join("n.txt")).unwrap(), b"netrc");
}

/// Starts a throttled sync, kills it once `watch` (a directory) holds a
/// partial of at least 20 MiB, and returns.
fn kill_mid_transfer(s: &Scratch, server: &FtpServer, src: &str, dst: &str, watch: &Path) {
    let child = s
        .barge()
        .env("BARGE_PASSWORD", &server.password)
        .args(["sync", src, dst, "-q", "--bwlimit", "40M", "--timeout", "20", "--state"])
        .arg(state_for(s, src, dst))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    kill_once_partial(child, watch, 20 << 20, std::time::Duration::from_secs(60));
}

fn resume(kind: FtpServerKind) {
    let server = harness::ftp_server(kind, FtpTls::None);
    let s = Scratch::new();
    let content = big_content();
    write(&s.src(), "big.bin", &content);
    let (src, remote) = (s.src().to_string_lossy().into_owned(), url(&server, "/"));

    // Upload, cut, resume.
    kill_mid_transfer(&s, &server, &src, &remote, &server.root);
    assert!(!server.root.join("big.bin").exists(), "no partial file under the final name");
    let run = sync(&s, &server, &src, &remote, &[]);
    run.expect_code(0);
    assert!(run.count("bytes_transferred") < content.len() as u64, "upload did not resume\n{}", run.explain());
    assert!(fs::read(server.root.join("big.bin")).unwrap() == content, "uploaded content differs");
    assert!(temporaries(&server.root).is_empty());

    // Download, cut, resume.
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
}

#[test]
fn resume_after_a_cut_with_mlsd_and_rest_stor() {
    resume(FtpServerKind::Proftpd);
}

#[test]
fn resume_after_a_cut_with_list_only() {
    resume(FtpServerKind::Vsftpd);
}

#[test]
fn a_server_connection_limit_lowers_the_cap_instead_of_failing_files() {
    // vsftpd answers a third connection from one address with 421.
    let server = harness::ftp_server_with(FtpServerKind::Vsftpd, FtpTls::None, &["max_per_ip=2"]);
    let s = Scratch::new();
    for i in 0..40 {
        write(&s.src(), format!("f{i:02}.txt"), &bytes(i, 20_000));
    }
    let (src, remote) = (s.src().to_string_lossy().into_owned(), url(&server, "/"));
    // No retries: every file must get through on the first attempt.
    let run = sync(&s, &server, &src, &remote, &["--parallel", "8", "--retries", "0"]);
    run.expect_code(0);
    assert_eq!(run.count("files_transferred"), 40, "{}", run.explain());
    assert_same_files(&s.src(), &server.root);
}

#[test]
fn a_server_refusing_renames_gets_files_written_in_place_with_a_warning() {
    let server = harness::ftp_server_with(FtpServerKind::Vsftpd, FtpTls::None, &["cmds_denied=RNFR,RNTO"]);
    let s = Scratch::new();
    sample(&s.src());
    let (src, remote) = (s.src().to_string_lossy().into_owned(), url(&server, "/"));
    let run = sync(&s, &server, &src, &remote, &[]);
    run.expect_code(0);
    assert!(run.stderr.contains("refuses renames"), "{}", run.explain());
    assert_eq!(run.stderr.matches("refuses renames").count(), 1, "warned once\n{}", run.explain());
    assert_same_files(&s.src(), &server.root);
    assert!(temporaries(&server.root).is_empty());
    // --inplace asks for the same on purpose, without the warning.
    let other = harness::ftp_server(FtpServerKind::PureFtpd, FtpTls::None);
    let run = sync(&s, &other, &src, &url(&other, "/"), &["--inplace"]);
    run.expect_code(0);
    assert!(!run.stderr.contains("refuses renames"), "{}", run.explain());
    assert_same_files(&s.src(), &other.root);
}

#[test]
fn mtimes_fall_back_to_site_utime_when_mfmt_is_refused() {
    let server =
        harness::ftp_server_with(FtpServerKind::Proftpd, FtpTls::None, &["<Limit MFMT>", "DenyAll", "</Limit>"]);
    let s = Scratch::new();
    sample(&s.src());
    let (src, remote) = (s.src().to_string_lossy().into_owned(), url(&server, "/"));
    sync(&s, &server, &src, &remote, &[]).expect_code(0);
    assert_same_files(&s.src(), &server.root);
    assert_eq!(sync(&s, &server, &src, &remote, &[]).count("files_transferred"), 0);
}

/// Rewrites a server file with other bytes of the same size and mtime.
fn tamper(path: &Path) {
    let meta = fs::metadata(path).unwrap();
    let mut content = fs::read(path).unwrap();
    content[0] ^= 0xff;
    fs::write(path, &content).unwrap();
    fs::File::options().write(true).open(path).unwrap().set_modified(meta.modified().unwrap()).unwrap();
}

#[test]
fn compare_hash_uses_the_servers_hash_command() {
    let server =
        harness::ftp_server_with(FtpServerKind::Proftpd, FtpTls::None, &["LoadModule mod_digest.c", "DigestEngine on"]);
    let s = Scratch::new();
    sample(&s.src());
    let (src, remote) = (s.src().to_string_lossy().into_owned(), url(&server, "/"));
    sync(&s, &server, &src, &remote, &[]).expect_code(0);
    tamper(&server.root.join("dir/nested/deep.bin"));

    let check = Run::of(
        s.barge()
            .env("BARGE_PASSWORD", &server.password)
            .args(["check", "--compare", "hash"])
            .arg(&src)
            .arg(&remote)
            .output()
            .unwrap(),
    );
    check.expect_code(1);
    assert!(check.stdout.contains("differs  dir/nested/deep.bin"), "{}", check.explain());
    assert!(!check.stderr.contains("no hash algorithm"), "{}", check.explain());

    let run = sync(&s, &server, &src, &remote, &["--compare", "hash"]);
    run.expect_code(0);
    assert_eq!(run.events("copy"), ["dir/nested/deep.bin"], "{}", run.explain());
    assert_same_files(&s.src(), &server.root);
}

#[test]
fn compare_hash_without_server_hashes_says_so() {
    let server = harness::ftp_server(FtpServerKind::PureFtpd, FtpTls::None);
    let s = Scratch::new();
    sample(&s.src());
    let (src, remote) = (s.src().to_string_lossy().into_owned(), url(&server, "/"));
    sync(&s, &server, &src, &remote, &[]).expect_code(0);
    let run = sync(&s, &server, &src, &remote, &["--compare", "hash"]);
    run.expect_code(0);
    assert!(run.stderr.contains("no hash algorithm in common"), "{}", run.explain());
    assert!(run.stderr.contains("read from ftp"), "both read and hashed here: {}", run.explain());
}

#[test]
fn ipv6_literal_urls_work() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    forward_ipv6_to_ipv4(std::iter::once(server.port).chain(server.pasv_ports.0..=server.pasv_ports.1));
    let s = Scratch::new();
    sample(&s.src());
    let src = s.src().to_string_lossy().into_owned();
    let remote = format!("ftp://{}@[::1]:{}/v6", server.user, server.port);
    let run = sync(&s, &server, &src, &remote, &[]);
    run.expect_code(0);
    assert_same_files(&s.src(), &server.root.join("v6"));
    assert_eq!(sync(&s, &server, &src, &remote, &[]).count("files_transferred"), 0);
}

#[test]
fn list_times_mode_never_flaps_and_remembers_the_zone_offset() {
    // vsftpd has no MLSD: with --list-times barge trusts LIST times (minutes,
    // or only a date for files older than six months) instead of MDTM.
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    let s = Scratch::new();
    sample(&s.src()); // top.txt and deep.bin date from 2020 and 2017
    let (src, remote) = (s.src().to_string_lossy().into_owned(), url(&server, "/"));
    sync(&s, &server, &src, &remote, &["--list-times"]).expect_code(0);
    for _ in 0..2 {
        let run = sync(&s, &server, &src, &remote, &["--list-times"]);
        run.expect_code(0);
        assert_eq!(run.count("files_transferred"), 0, "{}", run.explain());
    }
    let db = rusqlite::Connection::open(state_for(&s, &src, &remote)).unwrap();
    let offset: String = db
        .query_row("SELECT value FROM meta WHERE key LIKE 'ftp.list-tz-offset %'", [], |row| row.get(0))
        .expect("the offset is remembered");
    assert_eq!(offset, "0", "vsftpd lists in UTC");
    // Downloads in this mode give the local copy the LIST time, which is
    // then equal to what the next run lists: no flapping either.
    let back = s.path("back").to_string_lossy().into_owned();
    sync(&s, &server, &remote, &back, &["--list-times"]).expect_code(0);
    assert_eq!(sync(&s, &server, &remote, &back, &["--list-times"]).count("files_transferred"), 0);
}

/// A server that lists local times (proftpd with `TimesGMT off`, MLSD kept out of
/// FEAT so that barge reads LIST) restarted in another zone between two runs, as a
/// daylight-saving change shows its listings: the remembered offset is checked with
/// one MDTM, measured again, and neither direction copies anything.
#[test]
fn a_list_zone_that_moved_between_runs_is_measured_again_and_nothing_is_copied() {
    let lists_local_times = ["TimesGMT off", "FactsAdvertise off"];
    let mut server =
        harness::ftp_server_in_env(FtpServerKind::Proftpd, FtpTls::None, &lists_local_times, &[("TZ", "UTC0")]);
    let s = Scratch::new();
    // Days old, so that LIST shows their time of day (older files only a date).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for (i, name) in ["a.txt", "dir/b.txt", "dir/c.txt", "dir/sub/d.txt"].into_iter().enumerate() {
        write(&s.src(), name, name.as_bytes());
        set_mtime(&s.src().join(name), now - 3 * 86_400 + 61 * i as u64);
    }
    let (src, remote) = (s.src().to_string_lossy().into_owned(), url(&server, "/zone"));
    let back = s.path("back").to_string_lossy().into_owned();
    // Each job measures the zone on its first listing of the server's files: the
    // upload's second run, the download's first.
    for (from, to) in [(&src, &remote), (&remote, &back)] {
        sync(&s, &server, from, to, &["--list-times"]).expect_code(0);
        let again = sync(&s, &server, from, to, &["--list-times"]);
        again.expect_code(0);
        assert_eq!(again.count("files_transferred"), 0, "{from} -> {to}: {}", again.explain());
    }
    let remembered = |from: &str, to: &str| -> String {
        let db = rusqlite::Connection::open(state_for(&s, from, to)).unwrap();
        db.query_row("SELECT value FROM meta WHERE key LIKE 'ftp.list-tz-offset %'", [], |row| row.get(0))
            .expect("the offset is remembered")
    };
    assert_eq!((remembered(&src, &remote), remembered(&remote, &back)), ("0".into(), "0".into()));

    server.restart_with_env(&[("TZ", "<+01>-1")]);
    for (from, to) in [(&src, &remote), (&remote, &back)] {
        let log = s.path(&format!("zone-{}.log", blake3::hash(format!("{from}{to}").as_bytes()).to_hex()));
        let run = sync(&s, &server, from, to, &["--list-times", "--log-file", &log.to_string_lossy()]);
        run.expect_code(0);
        assert_eq!(run.count("files_transferred"), 0, "{from} -> {to}: {}", run.explain());
        let logged = fs::read_to_string(&log).unwrap();
        assert!(logged.contains("clock offset changed"), "{from} -> {to}: {logged}");
        assert_eq!(remembered(from, to), "-3600", "LIST times are an hour ahead of UTC now");
    }
}

/// `--ascii GLOB`: matching files travel as text (TYPE A, CRLF on the wire),
/// everything else byte for byte. vsftpd stores and sends what is on the
/// wire (its ASCII conversion is off by default), so its copy shows barge's
/// own conversion: CRLF going up, LF again coming down. The sizes then
/// differ between the sides, yet resyncs transfer nothing.
#[test]
fn ascii_transfers_convert_line_ends_and_resync_to_nothing() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    let s = Scratch::new();
    write(&s.src(), "notes.txt", b"one\ntwo\n\nthree");
    write(&s.src(), "sub/readme.txt", b"already\r\ncrlf\n");
    let binary = b"bin\n\r\n\x00\xff\n".to_vec();
    write(&s.src(), "data.bin", &binary);
    let remote = url(&server, "/text");
    let src = s.src().to_string_lossy().into_owned();
    let ascii = ["--ascii", "*.txt"];

    sync(&s, &server, &src, &remote, &ascii).expect_code(0);
    let stored = server.root.join("text");
    assert_eq!(fs::read(stored.join("notes.txt")).unwrap(), b"one\r\ntwo\r\n\r\nthree");
    assert_eq!(fs::read(stored.join("sub/readme.txt")).unwrap(), b"already\r\ncrlf\r\n");
    assert_eq!(fs::read(stored.join("data.bin")).unwrap(), binary);
    let again = sync(&s, &server, &src, &remote, &ascii);
    again.expect_code(0);
    assert_eq!(again.count("files_transferred"), 0, "no-op upload resync\n{}", again.explain());

    let back = s.path("back");
    let back_str = back.to_string_lossy().into_owned();
    sync(&s, &server, &remote, &back_str, &ascii).expect_code(0);
    assert_eq!(fs::read(back.join("notes.txt")).unwrap(), b"one\ntwo\n\nthree");
    assert_eq!(fs::read(back.join("sub/readme.txt")).unwrap(), b"already\ncrlf\n");
    assert_eq!(fs::read(back.join("data.bin")).unwrap(), binary);
    let again = sync(&s, &server, &remote, &back_str, &ascii);
    again.expect_code(0);
    assert_eq!(again.count("files_transferred"), 0, "no-op download resync\n{}", again.explain());

    // A changed text file is still noticed, and binary transfers after text
    // ones on the same connections stay byte-exact.
    write(&s.src(), "notes.txt", b"four\n");
    let changed = sync(&s, &server, &src, &remote, &ascii);
    changed.expect_code(0);
    assert_eq!(changed.count("files_transferred"), 1, "{}", changed.explain());
    assert_eq!(fs::read(stored.join("notes.txt")).unwrap(), b"four\r\n");
}
