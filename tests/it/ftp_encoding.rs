//! `--encoding`: FTP servers whose names are bytes of a legacy character
//! set (latin1 here, as the names lie on the servers' disks) mirrored as
//! UTF-8 names and written back in that set; names that cannot cross are
//! skipped with a warning, never mangled.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::common::*;
use crate::harness::{self, FtpServer, FtpServerKind, FtpTls};

fn url(server: &FtpServer, path: &str) -> String {
    format!("ftp://{}@127.0.0.1:{}{path}", server.user, server.port)
}

fn sync(s: &Scratch, server: &FtpServer, src: &str, dst: &str, state: &str, extra: &[&str]) -> Run {
    let mut cmd = s.barge();
    cmd.env("BARGE_PASSWORD", &server.password)
        .args(["sync", src, dst, "--json", "--timeout", "20", "--state"])
        .arg(s.path(state))
        .args(extra);
    Run::of(cmd.output().expect("run barge"))
}

/// A `kind` server whose disk holds `café.txt` and `résumé/naïve.txt` in
/// latin1 bytes, and an ASCII name; and a scratch directory.
fn latin1_server(kind: FtpServerKind) -> (FtpServer, Scratch) {
    let server = harness::ftp_server(kind, FtpTls::None);
    let root = &server.root;
    write(root, OsStr::from_bytes(b"caf\xe9.txt"), b"latin1 file");
    write(root, OsStr::from_bytes(b"r\xe9sum\xe9/na\xefve.txt"), b"inside a latin1 directory");
    write(root, "plain.txt", b"ascii");
    harness::give_to_test_user(root);
    (server, Scratch::new())
}

/// Every name below `root` as bytes, relative and sorted.
fn names(root: &Path) -> Vec<Vec<u8>> {
    snapshot(root).into_keys().collect()
}

fn warnings(run: &Run) -> Vec<String> {
    run.stderr.lines().filter(|l| l.starts_with("warning:")).map(str::to_string).collect()
}

fn latin1_both_ways(kind: FtpServerKind) {
    let (server, s) = latin1_server(kind);
    let local = s.path("local");
    let local_text = local.to_string_lossy().into_owned();
    let context = |run: &Run| format!("{}\n{}", kind.name(), run.explain());

    let down = sync(&s, &server, &url(&server, "/"), &local_text, "down.db", &["--encoding", "latin1"]);
    assert_eq!(down.code, 0, "{}", context(&down));
    assert_eq!(
        names(&local),
        vec![
            "caf\u{e9}.txt".as_bytes().to_vec(),
            b"plain.txt".to_vec(),
            "r\u{e9}sum\u{e9}".as_bytes().to_vec(),
            "r\u{e9}sum\u{e9}/na\u{ef}ve.txt".as_bytes().to_vec(),
        ],
        "{}",
        context(&down)
    );
    assert_eq!(fs::read(local.join("caf\u{e9}.txt")).unwrap(), b"latin1 file");
    assert_eq!(fs::read(local.join("r\u{e9}sum\u{e9}/na\u{ef}ve.txt")).unwrap(), b"inside a latin1 directory");
    let again = sync(&s, &server, &url(&server, "/"), &local_text, "down.db", &["--encoding", "latin1"]);
    assert_eq!(again.code, 0, "{}", context(&again));
    assert_eq!(again.count("files_transferred"), 0, "a no-op rerun copies nothing: {}", context(&again));

    // Up: UTF-8 names land as latin1 bytes; the ones latin1 has no
    // characters for are skipped, a directory with all it holds.
    let up = s.path("up");
    write(&up, "\u{fc}ber.txt", b"u umlaut");
    write(&up, "gar\u{e7}on/cr\u{e8}me.txt", b"c cedilla");
    write(&up, "\u{65e5}\u{672c}.txt", b"no latin1 for this name");
    write(&up, "\u{4e2d}\u{6587}/inside.txt", b"nor for its directory");
    let remote = url(&server, "/up");
    let run = sync(&s, &server, &up.to_string_lossy(), &remote, "up.db", &["--encoding", "latin1"]);
    assert_eq!(run.code, 0, "skipped names are warnings, as skipped links are: {}", context(&run));
    let warned = warnings(&run);
    assert_eq!(warned.len(), 2, "one warning per name, none for what the directory held: {}", context(&run));
    assert!(warned[0].contains("\u{4e2d}\u{6587}") && warned[0].contains("windows-1252"), "{}", context(&run));
    assert!(warned[1].contains("\u{65e5}\u{672c}.txt") && warned[1].contains("--encoding"), "{}", context(&run));
    assert_eq!(run.count("warnings"), 2, "{}", context(&run));
    assert_eq!(
        names(&server.root.join("up")),
        vec![b"gar\xe7on".to_vec(), b"gar\xe7on/cr\xe8me.txt".to_vec(), b"\xfcber.txt".to_vec()],
        "latin1 bytes on the server's disk, nothing under another name: {}",
        context(&run)
    );
    assert_eq!(fs::read(server.root.join(OsStr::from_bytes(b"up/\xfcber.txt"))).unwrap(), b"u umlaut");
    let again = sync(&s, &server, &up.to_string_lossy(), &remote, "up.db", &["--encoding", "latin1"]);
    assert_eq!(again.code, 0, "{}", context(&again));
    assert_eq!(again.count("files_transferred"), 0, "{}", context(&again));
}

#[test]
fn latin1_names_on_vsftpd_arrive_as_utf8_and_go_back_as_latin1() {
    latin1_both_ways(FtpServerKind::Vsftpd);
}

#[test]
fn latin1_names_on_proftpd_arrive_as_utf8_and_go_back_as_latin1() {
    latin1_both_ways(FtpServerKind::Proftpd);
}

#[test]
fn latin1_names_on_pureftpd_arrive_as_utf8_and_go_back_as_latin1() {
    latin1_both_ways(FtpServerKind::PureFtpd);
}

/// Without `--encoding` the same names are copied byte for byte, as
/// before; bytes that are not valid in the encoding given are skipped
/// with a warning naming them.
#[test]
fn names_invalid_in_the_encoding_are_skipped_and_bytes_stay_the_default() {
    let (server, s) = latin1_server(FtpServerKind::Proftpd);
    let raw = s.path("raw");
    let run = sync(&s, &server, &url(&server, "/"), &raw.to_string_lossy(), "raw.db", &[]);
    run.expect_code(0);
    assert!(raw.join(OsStr::from_bytes(b"caf\xe9.txt")).is_file(), "{}", run.explain());
    assert!(raw.join(OsStr::from_bytes(b"r\xe9sum\xe9/na\xefve.txt")).is_file(), "{}", run.explain());

    // 0xE9 starts a two-byte character in Shift_JIS: `caf\xe9.txt` and
    // the directory's name are not Shift_JIS.
    let sjis = s.path("sjis");
    let run = sync(&s, &server, &url(&server, "/"), &sjis.to_string_lossy(), "sjis.db", &["--encoding", "sjis"]);
    run.expect_code(0);
    let warned = warnings(&run);
    assert!(
        warned.iter().any(|w| w.contains("caf\\xe9.txt") && w.contains("not valid Shift_JIS")),
        "{}",
        run.explain()
    );
    assert_eq!(names(&sjis), vec![b"plain.txt".to_vec()], "nothing under a guessed name: {}", run.explain());
}

/// Refused before anything is opened, with names that would do.
#[test]
fn an_unknown_encoding_is_a_usage_error_naming_some_known_ones() {
    let s = Scratch::new();
    let mut cmd = s.barge();
    cmd.args(["sync", "ftp://127.0.0.1:1/", "--encoding", "klingon"]).arg(s.dst());
    let run = Run::of(cmd.output().expect("run barge"));
    run.expect_code(2);
    for said in ["klingon", "latin1", "cp437", "shift_jis"] {
        assert!(run.stderr.contains(said), "{said}: {}", run.explain());
    }
}

#[test]
fn doctor_names_the_non_utf8_names_and_suggests_encoding() {
    let (server, s) = latin1_server(FtpServerKind::Vsftpd);
    let doctor = |extra: &[&str]| {
        let mut cmd = s.barge();
        cmd.args(["doctor", &url(&server, "/"), "--json", "--timeout", "3", "--max-probe-connections", "2"])
            .args(extra)
            .env("BARGE_PASSWORD", &server.password);
        Run::of(cmd.output().expect("run barge doctor"))
    };
    let probe = |run: &Run| {
        run.json()
            .into_iter()
            .find(|v| v["type"] == "probe" && v["name"] == "names")
            .unwrap_or_else(|| panic!("no names probe\n{}", run.explain()))
    };
    let run = doctor(&[]);
    run.expect_code(0);
    let names = probe(&run);
    assert_eq!(names["verdict"], "warning", "{}", run.explain());
    let said = format!("{} {}", names["measured"], names["advice"]);
    assert!(said.contains("2 of 3") && said.contains("not UTF-8") && said.contains("--encoding"), "{said}");
    let unreadable = names["details"]["unreadable"].as_array().unwrap();
    assert!(unreadable.iter().any(|n| n == "caf\\xe9.txt"), "{said}");

    let run = doctor(&["--encoding", "latin1"]);
    run.expect_code(0);
    assert_eq!(probe(&run)["verdict"], "ok", "{}", run.explain());

    // A directory whose name is not ASCII, typed in UTF-8 in the URL: the
    // probes list it in the server's encoding, as a sync does.
    let mut cmd = s.barge();
    cmd.args(["doctor", &url(&server, "/r%C3%A9sum%C3%A9"), "--json", "--timeout", "3"])
        .args(["--max-probe-connections", "2", "--encoding", "latin1"])
        .env("BARGE_PASSWORD", &server.password);
    let run = Run::of(cmd.output().expect("run barge doctor"));
    run.expect_code(0);
    let names = probe(&run);
    assert_eq!(names["verdict"], "ok", "{}", run.explain());
    assert!(names["measured"].as_str().unwrap_or("").contains('1'), "one name, naïve.txt: {}", run.explain());
}

/// A remote's `encoding` applies to the jobs and syncs that name it; a
/// job's own stands for `--encoding`; a bad one is refused naming the
/// file, line and key.
#[test]
fn the_encoding_config_key_reads_names_as_the_flag_does() {
    let (server, s) = latin1_server(FtpServerKind::Proftpd);
    let mirror = s.path("mirror");
    let config = s.path("barge.toml");
    let text = format!(
        "[remotes.old]\nurl = \"{url}\"\nencoding = \"latin1\"\n\n\
         [jobs.nightly]\nsource = \"old:\"\ndestination = \"{dst}\"\nstate = \"{state}\"\n\n\
         [jobs.as-bytes]\nsource = \"{url}\"\ndestination = \"{raw}\"\nstate = \"{raw_state}\"\n",
        url = url(&server, "/"),
        dst = mirror.display(),
        state = s.path("nightly.db").display(),
        raw = s.path("raw").display(),
        raw_state = s.path("raw.db").display(),
    );
    fs::write(&config, text).unwrap();
    let barge = |args: &[&str]| {
        let mut cmd = s.barge();
        cmd.arg("--config").arg(&config).args(args).env("BARGE_PASSWORD", &server.password);
        Run::of(cmd.output().expect("run barge"))
    };
    let run = barge(&["run", "nightly", "--json"]);
    run.expect_code(0);
    assert_eq!(fs::read(mirror.join("caf\u{e9}.txt")).unwrap(), b"latin1 file", "{}", run.explain());
    assert!(mirror.join("r\u{e9}sum\u{e9}/na\u{ef}ve.txt").is_file(), "{}", run.explain());
    let remotes = barge(&["remotes"]);
    assert!(remotes.stdout.contains("encoding windows-1252"), "{}", remotes.explain());
    // A job on the URL itself, without the remote: bytes as they are.
    let run = barge(&["run", "as-bytes", "--json"]);
    run.expect_code(0);
    assert!(s.path("raw").join(OsStr::from_bytes(b"caf\xe9.txt")).is_file(), "{}", run.explain());

    fs::write(&config, format!("[remotes.old]\nurl = \"{}\"\nencoding = \"latin-9000\"\n", url(&server, "/"))).unwrap();
    let run = barge(&["remotes"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("line 3, key `remotes.old.encoding`") && run.stderr.contains("latin1"),
        "{}",
        run.explain()
    );
}

/// Byte 0xFF in a name (`я` in cp1251, `ÿ` in latin1): suppaftp sends it
/// doubled, as Telnet's IAC. proftpd reads the pair as one byte; vsftpd
/// and pure-ftpd keep both, so the name would be written changed with
/// exit 0. barge asks the server once and refuses such names where they
/// would change; nothing with a doubled byte appears, nothing is left of
/// the question.
#[test]
fn a_name_with_byte_0xff_is_written_as_it_is_or_refused() {
    for kind in [FtpServerKind::Proftpd, FtpServerKind::Vsftpd, FtpServerKind::PureFtpd] {
        let server = harness::ftp_server(kind, FtpTls::None);
        harness::give_to_test_user(&server.root);
        let s = Scratch::new();
        write(&s.src(), OsStr::from_bytes(b"up\xffname.txt"), b"up");
        write(&s.src(), OsStr::from_bytes(b"d\xff/in.txt"), b"in");
        write(&s.src(), "plain.txt", b"plain");
        let run = sync(&s, &server, &s.src().to_string_lossy(), &url(&server, "/up"), "up.db", &[]);
        let on_server = names(&server.root);
        let context = format!("{}: {:?}\n{}", kind.name(), on_server, run.explain());
        assert!(!on_server.iter().any(|n| n.windows(2).any(|w| w == b"\xff\xff")), "{context}");
        assert!(!on_server.iter().any(|n| n.starts_with(b".barge-iac")), "{context}");
        assert!(on_server.contains(&b"up/plain.txt".to_vec()), "{context}");
        if kind == FtpServerKind::Proftpd {
            assert_eq!(run.code, 0, "{context}");
            assert!(on_server.contains(&b"up/up\xffname.txt".to_vec()), "{context}");
            assert!(on_server.contains(&b"up/d\xff/in.txt".to_vec()), "{context}");
        } else {
            assert_eq!(run.code, 1, "{context}");
            assert!(run.stderr.contains("0xFF"), "{context}");
            // Said once, not "mkdir d\xff: mkdir d\xff: ...".
            assert!(run.stderr.contains("error: mkdir d\\xff: ftp://"), "{context}");
            assert!(!on_server.iter().any(|n| n.contains(&0xFF)), "{context}");
        }
    }
}

/// A local name holding CR or LF cannot be sent in an FTP command: it is
/// skipped with a warning when listed, not uploaded in full and then
/// refused at the rename on every run.
#[test]
fn a_name_with_a_line_break_is_skipped_before_it_is_uploaded() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    harness::give_to_test_user(&server.root);
    let s = Scratch::new();
    write(&s.src(), "line\nbreak.txt", b"never sent");
    write(&s.src(), "plain.txt", b"plain");
    let run = sync(&s, &server, &s.src().to_string_lossy(), &url(&server, "/up"), "up.db", &[]);
    assert_eq!(run.code, 0, "{}", run.explain());
    assert!(
        warnings(&run).iter().any(|w| w.contains("line\\x0abreak.txt") && w.contains("CR or LF")),
        "{}",
        run.explain()
    );
    assert_eq!(names(&server.root), [b"up".to_vec(), b"up/plain.txt".to_vec()], "{}", run.explain());
}
