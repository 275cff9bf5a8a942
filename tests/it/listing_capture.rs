//! Live checks of the FTP listing parsers (`barge::backend::ftp::listing`) against
//! vsftpd, pure-ftpd and proftpd: build a tree of awkward entries in the server root,
//! fetch `LIST -a` (and `MLSD` where the server has it) over a raw std-only FTP session,
//! parse, and check that every name comes back byte for byte with the right kind, size
//! and time, and that no line was left over as a warning.
//!
//! The same tree is what `tests/fixtures/listings/captured-*` were captured from; the
//! ignored [`recapture`] test rebuilds them (see the README there). What each server
//! shows differently (and so what is expected per server) was found by capturing:
//!
//! | | vsftpd | pure-ftpd | proftpd |
//! |---|---|---|---|
//! | future time in LIST | `Nov 28  2026` | `Nov 28 12:00` | `Nov 28 12:00` |
//! | fifo in LIST | `prw-r--r--` | left out | `prw-r--r--` |
//! | fifo in MLSD | - | `type=unknown` | `type=file;size=0` |
//! | symlink in MLSD | - | `type=OS.unix=slink:` (no target) | `type=OS.unix=symlink` |
//! | dangling symlink in MLSD | - | listed | left out |
//! | names with tab, CR | raw | left out (LIST and MLSD) | raw |

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use barge::backend::Mtime;
use barge::backend::ftp::listing::{ListEntry, ListKind, Listing, TimePrecision, parse_list, parse_mlsd};

use crate::harness::{self, FtpServer, FtpServerKind, FtpTls, ftp_server};

const DAY: i64 = 86_400;
const TIMEOUT: Duration = Duration::from_secs(10);

// ---- the tree ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    /// A regular file of this many bytes (sparse when large).
    File(u64),
    Dir,
    Symlink(&'static str),
    Fifo,
}

#[derive(Debug, Clone)]
struct Node {
    name: &'static [u8],
    what: What,
    mtime: Mtime,
}

/// The tree, with modification times relative to `now` (Unix seconds): most at
/// `today - 5 days + 10:00 + 61·i s`; `small.txt` three days ago with a fraction;
/// `old-2019.txt` in 2019 (year form in LIST); `future.txt` three days ahead.
fn tree(now: i64) -> Vec<Node> {
    let today = now.div_euclid(DAY) * DAY;
    let base = today - 5 * DAY + 10 * 3600;
    let t = |i: i64| Mtime::from_unix(base + i * 61, 0);
    let n = |name: &'static [u8], what: What, mtime: Mtime| Node { name, what, mtime };
    vec![
        n(b"empty.txt", What::File(0), t(0)),
        n(b"small.txt", What::File(5), Mtime::from_unix(today - 3 * DAY + 9 * 3600 + 15 * 60 + 42, 500_000_000)),
        n(b"medium.bin", What::File(70_000), t(1)),
        n(b"sparse-5gib.bin", What::File((5 << 30) + 1), t(2)),
        n(b"old-2019.txt", What::File(11), Mtime::from_unix(1_551_794_587, 0)), // 2019-03-05 14:03:07
        n(b"future.txt", What::File(12), Mtime::from_unix(today + 3 * DAY + 12 * 3600, 0)),
        n(b"dir", What::Dir, t(3)),
        n(b"dir/inner.txt", What::File(6), t(4)),
        n(b"empty-dir", What::Dir, t(5)),
        n(b"link-to-small", What::Symlink("small.txt"), t(6)),
        n(b"dangling-link", What::Symlink("no-such-target"), t(7)),
        n(b"fifo", What::Fifo, t(8)),
        n(b"name with  spaces.txt", What::File(13), t(9)),
        n(b" leading-space.txt", What::File(14), t(10)),
        n(b"trailing-space.txt ", What::File(15), t(11)),
        n(b"semi;colon=x.txt", What::File(16), t(12)),
        n("utf8-caf\u{e9}-\u{65e5}\u{672c}.txt".as_bytes(), What::File(17), t(13)),
        n(b"latin1-caf\xe9.txt", What::File(18), t(14)),
        n(b".dotfile", What::File(19), t(15)),
        n(b"arrow -> in-name.txt", What::File(20), t(16)),
        n(b"tab\tin-name.txt", What::File(21), t(17)),
        n(b"cr\rin-name.txt", What::File(22), t(18)),
        n(b"link-to-dir", What::Symlink("dir"), t(19)),
    ]
}

fn set_mtime(path: &Path, mtime: Mtime) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL in path");
    let ts = libc::timespec { tv_sec: mtime.secs(), tv_nsec: i64::from(mtime.subsec_nanos()) };
    let times = [ts, ts];
    // SAFETY: `c` is a valid C string and `times` holds two timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(rc, 0, "utimensat {}: {}", path.display(), std::io::Error::last_os_error());
}

/// Creates `nodes` under `root` (in order: parents first), owned by the test user,
/// with fixed permissions and the nodes' modification times.
fn build(root: &Path, nodes: &[Node]) {
    for node in nodes {
        let path = root.join(OsStr::from_bytes(node.name));
        match node.what {
            What::File(size) => {
                let f = fs::File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
                if size > 1 << 20 {
                    f.set_len(size).expect("sparse file");
                } else {
                    let data: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
                    (&f).write_all(&data).expect("write");
                }
                f.set_permissions(fs::Permissions::from_mode(0o644)).expect("chmod");
            }
            What::Dir => {
                fs::create_dir(&path).expect("mkdir");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
            }
            What::Symlink(target) => std::os::unix::fs::symlink(target, &path).expect("symlink"),
            What::Fifo => {
                let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL");
                // SAFETY: valid C string.
                let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
                assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
                fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
            }
        }
        harness::give_to_test_user(&path);
    }
    // Once everything exists, so that no later creation moves a directory's time.
    for node in nodes {
        set_mtime(&root.join(OsStr::from_bytes(node.name)), node.mtime);
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

// ---- what each server is expected to show ----

/// The entry `server` should list for `node` (named `name` in its directory), or
/// `None` when that server leaves it out. `now` is when the tree was built.
fn expected_entry(
    server: FtpServerKind,
    mlsd: bool,
    nodes: &[Node],
    node: &Node,
    name: &[u8],
    now: i64,
) -> Option<ListEntry> {
    use FtpServerKind::{Proftpd, PureFtpd, Vsftpd};
    if server == PureFtpd && node.name.iter().any(u8::is_ascii_control) {
        return None;
    }
    let (kind, size, unix_mode) = match node.what {
        What::File(size) => (ListKind::File, Some(size), 0o644),
        What::Dir => (ListKind::Dir, None, 0o755),
        What::Symlink(target) => {
            let dangling = !nodes.iter().any(|n| n.name == target.as_bytes());
            if mlsd && server == Proftpd && dangling {
                return None;
            }
            // LIST shows `name -> target`; MLSD's symlink types carry no target here.
            // The size is the link's own: the length of the target path.
            let size = Some(target.len() as u64);
            (ListKind::Symlink { target: (!mlsd).then(|| target.as_bytes().to_vec()) }, size, 0o777)
        }
        What::Fifo => match (server, mlsd) {
            (PureFtpd, false) => return None,
            (Proftpd, true) => (ListKind::File, Some(0), 0o644),
            _ => (ListKind::Other, None, 0o644),
        },
    };
    let secs = node.mtime.secs();
    let (mtime, precision) = if mlsd {
        (secs, TimePrecision::Seconds)
    } else if now - secs > 180 * DAY || (secs > now && server == Vsftpd) {
        (secs.div_euclid(DAY) * DAY, TimePrecision::Days)
    } else {
        (secs.div_euclid(60) * 60, TimePrecision::Minutes)
    };
    let mtime = Some(Mtime::from_unix(mtime, 0));
    Some(ListEntry { name: name.to_vec(), kind, size, mtime, precision, unix_mode: Some(unix_mode) })
}

/// The entries expected in directory `dir` ("" for the root), sorted by name.
fn expected_listing(server: FtpServerKind, mlsd: bool, nodes: &[Node], dir: &str, now: i64) -> Vec<ListEntry> {
    let mut want: Vec<ListEntry> = nodes
        .iter()
        .filter_map(|node| {
            let name =
                if dir.is_empty() { node.name } else { node.name.strip_prefix(dir.as_bytes())?.strip_prefix(b"/")? };
            if name.contains(&b'/') {
                return None;
            }
            expected_entry(server, mlsd, nodes, node, name, now)
        })
        .collect();
    want.sort_by(|a, b| a.name.cmp(&b.name));
    want
}

// ---- a raw FTP session (std only) ----

/// A plain FTP control connection that keeps a transcript for failure messages.
struct Session<'a> {
    srv: &'a FtpServer,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    transcript: String,
}

impl<'a> Session<'a> {
    /// Connects, logs in as the test user and switches to binary mode.
    fn login(srv: &'a FtpServer) -> Self {
        let stream = TcpStream::connect_timeout(&srv.addr(), TIMEOUT).expect("connect control");
        stream.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
        let writer = stream.try_clone().expect("clone control stream");
        let mut ftp = Session { srv, reader: BufReader::new(stream), writer, transcript: String::new() };
        ftp.expect_reply(220);
        ftp.cmd(&format!("USER {}", srv.user), 331);
        ftp.cmd(&format!("PASS {}", srv.password), 230);
        ftp.cmd("TYPE I", 200);
        ftp
    }

    fn fail(&self, msg: &str) -> ! {
        panic!(
            "{}: {msg}\n--- transcript ---\n{}--- server logs ---\n{}",
            self.srv.kind.name(),
            self.transcript,
            self.srv.logs()
        );
    }

    /// One reply, multi-line ones included: (code, text).
    fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        let mut first: Option<u16> = None;
        loop {
            let mut raw = Vec::new();
            match self.reader.read_until(b'\n', &mut raw) {
                Ok(0) => self.fail("control connection closed"),
                Err(e) => self.fail(&format!("reading a reply: {e}")),
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&raw).into_owned();
            self.transcript.push_str(&format!("< {line}"));
            text.push_str(&line);
            let code: Option<u16> = line.get(..3).and_then(|c| c.parse().ok());
            let first = *first.get_or_insert(code.unwrap_or(0));
            if code == Some(first) && line.as_bytes().get(3) != Some(&b'-') {
                return (first, text);
            }
        }
    }

    fn send(&mut self, cmd: &str) {
        let shown = if cmd.starts_with("PASS ") { "PASS ****" } else { cmd };
        self.transcript.push_str(&format!("> {shown}\n"));
        if let Err(e) = self.writer.write_all(format!("{cmd}\r\n").as_bytes()) {
            self.fail(&format!("sending {shown}: {e}"));
        }
    }

    fn expect_reply(&mut self, code: u16) -> String {
        let (got, text) = self.reply();
        if got != code {
            self.fail(&format!("expected {code}, got {text:?}"));
        }
        text
    }

    fn cmd(&mut self, cmd: &str, code: u16) -> String {
        self.send(cmd);
        self.expect_reply(code)
    }

    /// `cmd` (`LIST -a`, `MLSD`) over an EPSV data connection: the bytes as sent.
    fn data(&mut self, cmd: &str) -> Vec<u8> {
        let text = self.cmd("EPSV", 229);
        let port = text.split("(|||").nth(1).and_then(|s| s.split('|').next()).and_then(|p| p.parse::<u16>().ok());
        let Some(port) = port else { self.fail(&format!("unparsable EPSV reply {text:?}")) };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut data = TcpStream::connect_timeout(&addr, TIMEOUT)
            .unwrap_or_else(|e| self.fail(&format!("data connection to {addr}: {e}")));
        data.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
        self.send(cmd);
        let (code, text) = self.reply();
        if !(100..200).contains(&code) {
            self.fail(&format!("{cmd}: expected 1xx, got {text:?}"));
        }
        let mut bytes = Vec::new();
        if let Err(e) = data.read_to_end(&mut bytes) {
            self.fail(&format!("reading {cmd} data: {e}"));
        }
        // proftpd may wait for the client to close before it sends 226.
        drop(data);
        self.expect_reply(226);
        bytes
    }
}

// ---- the live checks ----

/// Builds the tree on `server`, lists `/`, `/dir` and `/empty-dir` with `LIST -a`
/// (and `MLSD` unless vsftpd) and compares the parsed entries with [`expected_listing`].
fn listings_match_tree(server: FtpServerKind) {
    let srv = ftp_server(server, FtpTls::None);
    let built = unix_now();
    let nodes = tree(built);
    build(&srv.root, &nodes);
    let mut ftp = Session::login(&srv);
    let commands: &[&str] = if server == FtpServerKind::Vsftpd { &["LIST -a"] } else { &["LIST -a", "MLSD"] };
    for &command in commands {
        let mlsd = command == "MLSD";
        for dir in ["", "dir", "empty-dir"] {
            ftp.cmd(&format!("CWD /{dir}"), 250);
            let raw = ftp.data(command);
            let context = format!("{command} in /{dir}:\n{}", show(&raw).replace("\\r\\n", "\n"));
            let parsed = if mlsd { parse_mlsd(&raw) } else { parse_list(&raw, Mtime::from_unix(unix_now(), 0)) };
            let listing: Listing = parsed.unwrap_or_else(|e| ftp.fail(&format!("{e}; {context}")));
            if !listing.warnings.is_empty() {
                ftp.fail(&format!("warnings {:?}; {context}", listing.warnings));
            }
            // `.`/`..` (LIST -a) or cdir/pdir (MLSD) were read even in the empty directory.
            if listing.format.is_none() {
                ftp.fail(&format!("no line understood; {context}"));
            }
            let mut got = listing.entries;
            got.sort_by(|a, b| a.name.cmp(&b.name));
            let want = expected_listing(server, mlsd, &nodes, dir, built);
            let names = |entries: &[ListEntry]| entries.iter().map(|e| show(&e.name)).collect::<Vec<_>>();
            if names(&got) != names(&want) {
                ftp.fail(&format!("names {:?}, expected {:?}; {context}", names(&got), names(&want)));
            }
            for (got, want) in got.iter().zip(&want) {
                if got != want {
                    ftp.fail(&format!("`{}`: got {got:?}, expected {want:?}; {context}", show(&got.name)));
                }
            }
        }
    }
    ftp.cmd("QUIT", 221);
}

#[test]
fn vsftpd_listings_match_tree() {
    listings_match_tree(FtpServerKind::Vsftpd);
}

#[test]
fn pure_ftpd_listings_match_tree() {
    listings_match_tree(FtpServerKind::PureFtpd);
}

#[test]
fn proftpd_listings_match_tree() {
    listings_match_tree(FtpServerKind::Proftpd);
}

// ---- recapturing the fixtures ----

/// Rebuilds the `captured-*` fixtures (see tests/fixtures/listings/README.md):
/// `BARGE_RECAPTURE=1 cargo test --test it listing_capture::recapture -- --ignored --nocapture`.
#[test]
#[ignore = "rewrites tests/fixtures/listings/captured-*; run by hand"]
fn recapture() {
    if std::env::var_os("BARGE_RECAPTURE").is_none() {
        eprintln!("set BARGE_RECAPTURE=1 to rewrite the captured fixtures");
        return;
    }
    let now = unix_now();
    let nodes = tree(now);
    let dir = harness::repo_dir().join("tests/fixtures/listings");
    for (kind, stem) in
        [(FtpServerKind::Vsftpd, "vsftpd"), (FtpServerKind::PureFtpd, "pureftpd"), (FtpServerKind::Proftpd, "proftpd")]
    {
        let srv = ftp_server(kind, FtpTls::None);
        build(&srv.root, &nodes);
        let mut cmd = Command::new("python3");
        cmd.arg(dir.join("capture.py"))
            .args(["--port", &srv.port.to_string(), "--user", &srv.user, "--password", &srv.password, "--dir", "/"])
            .arg("--list-out")
            .arg(dir.join(format!("captured-{stem}-list.txt")));
        if kind != FtpServerKind::Vsftpd {
            cmd.arg("--require-mlsd").arg("--mlsd-out").arg(dir.join(format!("captured-{stem}-mlsd.txt")));
        }
        let out = cmd.output().expect("run capture.py");
        assert!(out.status.success(), "capture.py: {}\n{}", String::from_utf8_lossy(&out.stderr), srv.logs());
        eprintln!("{}: {}", kind.name(), String::from_utf8_lossy(&out.stderr).trim());
    }
    eprintln!(
        "captured at Unix time {now}: update captured_now() in src/backend/ftp/listing.rs \
         and tests/fixtures/listings/README.md"
    );
}
