//! A scripted SFTP server that lies: hostile names, duplicates, sizes that
//! do not match, listings that never end, reads that never answer. barge
//! must skip or reject what it cannot trust, say so, never write outside
//! the destination, never delete on the word of a doubtful listing, and
//! never hang. The SFTP twin of `hostile_ftp`.
//!
//! The server is russh's and russh-sftp's server side, in this process, on
//! its own tokio runtime: it says whatever the script says, which no real
//! sshd would (names holding `/`, NUL, `..` as a file, one name twice).

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::keys::PrivateKey;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId};
use russh_sftp::protocol::{Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version};

use crate::common::*;

/// The only password the server takes (barge reads it from BARGE_PASSWORD).
const PASSWORD: &str = "hostile-sftp-password";
/// Every listed time: 2020-09-13.
const MTIME: u32 = 1_600_000_000;

/// What the server serves. Paths are absolute server paths, "/" the root.
#[derive(Clone, Default)]
struct Script {
    /// READDIR output per directory, in order, duplicates and all.
    dirs: HashMap<String, Vec<File>>,
    /// READ content per path (the listed size may say otherwise).
    files: HashMap<String, Vec<u8>>,
    /// READLINK answer per path.
    links: HashMap<String, String>,
    /// READDIR of this directory never ends: each call answers with new names.
    endless_readdir: Option<&'static str>,
    /// Every directory holds one more directory of this name (after what
    /// `dirs` says it holds): a tree without a bottom.
    endless_depth: Option<String>,
    /// READDIR of "/" never answers.
    stall_readdir: bool,
    /// READ never answers.
    stall_read: bool,
}

fn attrs(mode: u32, size: u64) -> FileAttributes {
    FileAttributes {
        size: Some(size),
        uid: Some(1000),
        gid: Some(1000),
        permissions: Some(mode),
        atime: Some(MTIME),
        mtime: Some(MTIME),
        ..FileAttributes::empty()
    }
}

/// A listed regular file of `size` bytes (whatever READ then returns).
fn file(name: &str, size: u64) -> File {
    File::new(name, attrs(0o100_644, size))
}

fn dir(name: &str) -> File {
    File::new(name, attrs(0o040_755, 0))
}

fn symlink(name: &str) -> File {
    File::new(name, attrs(0o120_777, 0))
}

impl Script {
    /// Lists `entry` in `dir` and, for a file, serves `content` at `dir/name`.
    fn add(&mut self, dir: &str, entry: File, content: &[u8]) -> &mut Self {
        if entry.attrs.is_regular() {
            self.files.insert(child(dir, &entry.filename), content.to_vec());
        }
        if entry.attrs.is_dir() && entry.filename != "." && entry.filename != ".." {
            self.dirs.entry(child(dir, &entry.filename)).or_default();
        }
        self.dirs.entry(dir.to_string()).or_default().push(entry);
        self
    }

    /// A file listed with its true size.
    fn add_file(&mut self, dir: &str, name: &str, content: &[u8]) -> &mut Self {
        self.add(dir, file(name, content.len() as u64), content)
    }
}

/// `dir/name` as the client would send it.
fn child(dir: &str, name: &str) -> String {
    if dir == "/" { format!("/{name}") } else { format!("{dir}/{name}") }
}

/// A running scripted server; it lives until the test process ends.
struct Server {
    port: u16,
    /// known_hosts with `[127.0.0.1]:port` and the server's host key.
    known_hosts: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts the server on a free port, on a runtime of its own in a thread.
fn serve(script: Script) -> Server {
    let dir = tempfile::tempdir().unwrap();
    // A fresh ed25519 host key per server, from a random seed.
    let mut seed = [0u8; 32];
    seed.iter_mut().for_each(|b| *b = fastrand::u8(..));
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let known_hosts = dir.path().join("known_hosts");
    fs::write(&known_hosts, format!("[127.0.0.1]:{port} {}\n", key.public_key().to_openssh().unwrap())).unwrap();
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        auth_rejection_time: Duration::from_millis(10),
        auth_rejection_time_initial: Some(Duration::ZERO),
        ..Default::default()
    });
    let script = Arc::new(script);
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                let handler = Ssh { script: Arc::clone(&script), channels: HashMap::new() };
                let config = Arc::clone(&config);
                tokio::spawn(async move {
                    if let Ok(session) = russh::server::run_stream(config, stream, handler).await {
                        let _ = session.await;
                    }
                });
            }
        });
    });
    Server { port, known_hosts, _dir: dir }
}

/// One SSH connection: password login, session channels, the `sftp` subsystem.
struct Ssh {
    script: Arc<Script>,
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl russh::server::Handler for Ssh {
    type Error = russh::Error;

    async fn auth_password(&mut self, _user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(if password == PASSWORD { Auth::Accept } else { Auth::reject() })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.close(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.remove(&channel) {
            Some(ch) if name == "sftp" => {
                session.channel_success(channel)?;
                let sftp = Sftp { script: Arc::clone(&self.script), open: HashMap::new(), next_handle: 0 };
                russh_sftp::server::run(ch.into_stream(), sftp).await;
                Ok(())
            }
            _ => session.channel_failure(channel),
        }
    }
}

enum Open {
    /// A directory handle: how many READDIRs it answered.
    Dir {
        path: String,
        batches: u64,
    },
    File {
        path: String,
    },
}

/// One SFTP session (russh-sftp answers its requests one at a time).
struct Sftp {
    script: Arc<Script>,
    open: HashMap<String, Open>,
    next_handle: u64,
}

impl Sftp {
    fn handle(&mut self, open: Open) -> String {
        self.next_handle += 1;
        let handle = format!("h{}", self.next_handle);
        self.open.insert(handle.clone(), open);
        handle
    }

    /// The attributes of `path`: the first entry of that name in its parent's listing.
    fn attrs_of(&self, path: &str) -> Result<FileAttributes, StatusCode> {
        if path == "/" {
            return Ok(attrs(0o040_755, 0));
        }
        let (parent, name) = path.rsplit_once('/').ok_or(StatusCode::NoSuchFile)?;
        if self.script.endless_depth.as_deref() == Some(name) {
            return Ok(attrs(0o040_755, 0));
        }
        let parent = if parent.is_empty() { "/" } else { parent };
        let listed = self.script.dirs.get(parent).ok_or(StatusCode::NoSuchFile)?;
        listed.iter().find(|f| f.filename == name).map(|f| f.attrs.clone()).ok_or(StatusCode::NoSuchFile)
    }
}

/// How long "forever" is: longer than any test waits.
const FOREVER: Duration = Duration::from_secs(3600);

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusCode;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported
    }

    async fn init(&mut self, _version: u32, _ext: HashMap<String, String>) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let path = if path.is_empty() || path == "." { "/".to_string() } else { path };
        Ok(Name { id, files: vec![File::dummy(path)] })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs { id, attrs: self.attrs_of(&path)? })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs { id, attrs: self.attrs_of(&path)? })
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        if !self.script.dirs.contains_key(&path) && path != "/" && self.script.endless_depth.is_none() {
            return Err(StatusCode::NoSuchFile);
        }
        Ok(Handle { id, handle: self.handle(Open::Dir { path, batches: 0 }) })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let script = Arc::clone(&self.script);
        let Some(Open::Dir { path, batches }) = self.open.get_mut(&handle) else {
            return Err(StatusCode::Failure);
        };
        *batches += 1;
        if path == "/" && script.stall_readdir {
            tokio::time::sleep(FOREVER).await;
        }
        if script.endless_readdir == Some(path.as_str()) {
            // 100 new names of ~1 KB each, every time: a listing without end.
            let pad = "x".repeat(1000);
            let files = (0..100).map(|i| file(&format!("endless-{batches:09}-{i:03}-{pad}"), 1)).collect();
            return Ok(Name { id, files });
        }
        let mut files = script.dirs.get(path.as_str()).cloned().unwrap_or_default();
        if let Some(name) = &script.endless_depth {
            files.push(dir(name));
        }
        match *batches {
            1 if !files.is_empty() => Ok(Name { id, files }),
            _ => Err(StatusCode::Eof),
        }
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        if pflags.intersects(OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::APPEND) {
            return Err(StatusCode::PermissionDenied);
        }
        if !self.script.files.contains_key(&filename) {
            return Err(StatusCode::NoSuchFile);
        }
        Ok(Handle { id, handle: self.handle(Open::File { path: filename }) })
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Result<Data, Self::Error> {
        if self.script.stall_read {
            tokio::time::sleep(FOREVER).await;
        }
        let Some(Open::File { path }) = self.open.get(&handle) else { return Err(StatusCode::Failure) };
        let content = self.script.files.get(path).ok_or(StatusCode::NoSuchFile)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        if start >= content.len() {
            return Err(StatusCode::Eof);
        }
        let end = content.len().min(start + len as usize);
        Ok(Data { id, data: content[start..end].to_vec() })
    }

    async fn readlink(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let target = self.script.links.get(&path).ok_or(StatusCode::NoSuchFile)?;
        Ok(Name { id, files: vec![File::dummy(target.clone())] })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        self.open.remove(&handle).ok_or(StatusCode::Failure)?;
        Ok(Status { id, status_code: StatusCode::Ok, error_message: "Ok".into(), language_tag: "en-US".into() })
    }
}

/// `barge sync --json sftp://... DST` logging in with the password, with a
/// private HOME and no agent; killed (and the test failed) after `limit`.
fn download_within(s: &Scratch, server: &Server, extra: &[&str], limit: Duration) -> Run {
    let mut cmd = s.barge();
    cmd.env("HOME", s.path("home"))
        .env_remove("SSH_AUTH_SOCK")
        .env("BARGE_PASSWORD", PASSWORD)
        .args(["sync", "--json", "--retries", "1", "--timeout", "5"])
        .arg(format!("sftp://u@127.0.0.1:{}/", server.port))
        .arg(s.dst())
        .arg("--known-hosts")
        .arg(&server.known_hosts)
        .arg("--state")
        .arg(s.state())
        .args(extra);
    s.run_within(cmd, limit)
}

fn download(s: &Scratch, server: &Server, extra: &[&str]) -> Run {
    download_within(s, server, extra, Duration::from_secs(120))
}

/// Every path below `root`, relative, sorted.
fn files_below(root: &Path) -> Vec<String> {
    let mut found: Vec<String> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

/// The scratch area holds nothing but what barge and the test put there.
fn assert_nothing_beside_dst(s: &Scratch) {
    for entry in fs::read_dir(s.dir.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            ["dst", "home", "xdg-state", "outside"].contains(&name.as_str()) || name.starts_with("state.db"),
            "{name} was written beside the destination"
        );
    }
}

#[test]
fn hostile_names_are_skipped_with_warnings_and_nothing_escapes_the_root() {
    let s = Scratch::new();
    // An absolute name pointing at a place a careless client would write to.
    let sentinel =
        std::env::temp_dir().join(format!("barge-hostile-sftp-{}-{}", std::process::id(), fastrand::u64(..)));
    let sentinel_name = sentinel.to_str().unwrap().to_string();
    let forged = "forged/\nerror: forged line \u{1b}[31m";
    let mut script = Script::default();
    script
        .add("/", dir("."), b"")
        .add("/", dir(".."), b"")
        .add("/", file("../escape", 4), b"evil")
        .add("/", file(&sentinel_name, 4), b"evil")
        .add("/", file("a/b", 4), b"evil")
        .add("/", file("nul\0byte", 4), b"evil")
        .add("/", file(forged, 4), b"evil")
        .add_file("/", "good.txt", b"good")
        .add_file("/", "back\\slash", b"back")
        .add_file("/", "cr\rname", b"crcr")
        .add_file("/", "lf\nname", b"lflf")
        // Byte 0xE9 (russh-sftp sends U+F7E9 as that byte): not UTF-8, and
        // an ordinary name all the same.
        .add_file("/", "latin\u{f7e9}1", b"byte")
        .add("/", dir("sub"), b"")
        // `..` claiming to be a file, and a climb two levels up.
        .add("/sub", file("..", 4), b"evil")
        .add("/sub", file("../../escape2", 4), b"evil")
        .add_file("/sub", "inner.txt", b"in");
    let server = serve(script);

    let run = download(&s, &server, &[]);
    run.expect_code(0);
    run.json(); // every stdout line is one JSON object: no name broke a line
    assert_eq!(
        files_below(&s.dst()),
        ["back\\slash", "cr\rname", "good.txt", "latin\u{FFFD}1", "lf\nname", "sub", "sub/inner.txt"],
        "{}",
        run.explain()
    );
    assert_eq!(fs::read(s.dst().join("good.txt")).unwrap(), b"good");
    assert_eq!(fs::read(s.dst().join("back\\slash")).unwrap(), b"back", "a backslash is an ordinary byte");
    // CR and LF are ordinary bytes in a POSIX name and in SFTP (names are
    // length-prefixed): copied as they are, like the local backend does.
    assert_eq!(fs::read(s.dst().join("cr\rname")).unwrap(), b"crcr");
    assert_eq!(fs::read(s.dst().join("lf\nname")).unwrap(), b"lflf");
    let latin1 = std::ffi::OsStr::from_bytes(b"latin\xe91");
    assert_eq!(fs::read(s.dst().join(latin1)).unwrap(), b"byte");
    assert_eq!(fs::read(s.dst().join("sub/inner.txt")).unwrap(), b"in");
    assert!(!sentinel.exists(), "an absolute name was written to {}", sentinel.display());
    assert_nothing_beside_dst(&s);
    for shown in ["../escape", &sentinel_name, "a/b", "nul\\x00byte", "../../escape2"] {
        assert!(run.stderr.contains(shown), "no warning naming {shown:?}\n{}", run.explain());
    }
    // Control characters in a name are shown escaped: no forged line, no
    // terminal escape sequence.
    assert!(run.stderr.contains("forged/\\x0aerror: forged line \\x1b[31m"), "{}", run.explain());
    assert!(!run.stderr.lines().any(|l| l.starts_with("error: forged")), "{}", run.explain());
    assert!(!run.stderr.contains('\u{1b}'), "{}", run.explain());

    // With --delete, a listing that skipped entries deletes nothing.
    write(&s.dst(), "extra.txt", b"must survive --delete");
    let run = download(&s, &server, &["--delete"]);
    run.expect_code(5);
    assert!(s.dst().join("extra.txt").exists(), "{}", run.explain());
    assert!(run.stderr.contains("deletions held back"), "{}", run.explain());
    assert!(!sentinel.exists());
    assert_nothing_beside_dst(&s);
}

#[test]
fn duplicate_names_and_a_file_that_is_also_a_directory_are_not_trusted() {
    let mut script = Script::default();
    script
        .add_file("/", "twice.txt", b"data")
        .add_file("/", "twice.txt", b"data")
        .add_file("/", "both", b"data")
        .add("/", dir("both"), b"")
        .add_file("/both", "inner", b"data")
        .add("/", dir("dupdir"), b"")
        .add("/", dir("dupdir"), b"")
        .add_file("/dupdir", "x.txt", b"data")
        .add_file("/", "fine.txt", b"data");
    let server = serve(script);

    let s = Scratch::new();
    write(&s.dst(), "both/precious", b"must survive --delete");
    write(&s.dst(), "twice.txt", b"kept");
    write(&s.dst(), "dupdir/old.txt", b"must survive --delete");
    let run = download(&s, &server, &["--delete"]);
    run.expect_code(1);
    for name in ["twice.txt", "both", "dupdir"] {
        assert!(run.stderr.contains(name), "nothing said about {name}\n{}", run.explain());
    }
    assert_eq!(fs::read(s.dst().join("fine.txt")).unwrap(), b"data");
    assert!(s.dst().join("both/precious").exists(), "an ambiguous entry must not cause deletions");
    assert!(!s.dst().join("both/inner").exists(), "nothing is copied on an ambiguous listing's word");
    assert_eq!(fs::read(s.dst().join("twice.txt")).unwrap(), b"kept");
    assert!(s.dst().join("dupdir/old.txt").exists(), "{}", run.explain());
    assert!(!s.dst().join("dupdir/x.txt").exists());
}

#[test]
fn sizes_that_lie_are_never_committed() {
    let mut script = Script::default();
    script
        .add("/", file("short.bin", 100), &[7; 50])
        .add("/", file("long.bin", 3), &[7; 5000])
        .add("/", file("huge.bin", 300_000), &[7; 200_000])
        .add_file("/", "honest.bin", &[7; 70_000]);
    let server = serve(script);

    let s = Scratch::new();
    let run = download(&s, &server, &[]);
    run.expect_code(1);
    assert_eq!(run.count("errors"), 3, "{}", run.explain());
    for name in ["short.bin", "long.bin", "huge.bin"] {
        assert!(!s.dst().join(name).exists(), "{name} was committed\n{}", run.explain());
        assert!(run.stderr.contains(name), "no error naming {name}\n{}", run.explain());
    }
    assert_eq!(fs::read(s.dst().join("honest.bin")).unwrap(), [7; 70_000]);
    assert_eq!(files_below(&s.dst()), ["honest.bin"], "{:?}", temporaries(&s.dst()));
}

#[test]
fn a_stalled_read_ends_with_the_timeout() {
    let mut script = Script { stall_read: true, ..Script::default() };
    script.add("/", file("stuck.bin", 10), b"0123456789");
    let server = serve(script);
    let s = Scratch::new();
    write(&s.dst(), "stuck.bin", b"old");
    let started = Instant::now();
    let run = download_within(&s, &server, &[], Duration::from_secs(90));
    run.expect_code(1);
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    assert!(run.stderr.contains("stuck.bin") && run.stderr.contains("timed out"), "{}", run.explain());
    assert_eq!(fs::read(s.dst().join("stuck.bin")).unwrap(), b"old", "the old copy stays whole");
}

/// A root that cannot be listed: exit 3, saying `said`, in less than
/// `within`, and nothing deleted for all --delete says.
fn the_root_listing_fails_in_time(script: Script, said: &str, within: Duration) {
    let server = serve(script);
    let s = Scratch::new();
    write(&s.dst(), "keep.txt", b"must survive --delete");
    let started = Instant::now();
    let run = download_within(&s, &server, &["--delete"], within + Duration::from_secs(60));
    assert_eq!(run.code, 3, "the root cannot be listed\n{}", run.explain());
    assert!(started.elapsed() < within, "took {:?}", started.elapsed());
    assert!(run.stderr.contains(said), "{}", run.explain());
    assert_eq!(files_below(&s.dst()), ["keep.txt"]);
}

#[test]
fn a_listing_that_never_ends_is_an_error_not_a_hang() {
    let script = Script { endless_readdir: Some("/"), ..Script::default() };
    the_root_listing_fails_in_time(script, "listing larger than", Duration::from_secs(120));
}

#[test]
fn a_listing_that_never_answers_ends_with_the_timeout() {
    let script = Script { stall_readdir: true, ..Script::default() };
    the_root_listing_fails_in_time(script, "timed out", Duration::from_secs(60));
}

/// Below the root, the endless directory is unreadable: the rest is
/// copied, nothing below it is deleted.
#[test]
fn a_directory_whose_listing_never_ends_is_left_alone() {
    let mut script = Script { endless_readdir: Some("/endless"), ..Script::default() };
    script.add("/", dir("endless"), b"").add_file("/", "fine.txt", b"fine");
    let server = serve(script);
    let s = Scratch::new();
    write(&s.dst(), "endless/keep.txt", b"must survive --delete");
    let run = download_within(&s, &server, &["--delete"], Duration::from_secs(180));
    run.expect_code(1);
    assert!(run.stderr.contains("endless") && run.stderr.contains("listing larger than"), "{}", run.explain());
    assert_eq!(files_below(&s.dst()), ["endless", "endless/keep.txt", "fine.txt"], "{}", run.explain());
}

/// A 10 MB name: an answer far beyond the 256 KiB SFTP packets barge
/// takes, as the FTP test's 10 MB listing line.
#[test]
fn a_ten_megabyte_name_is_refused_not_swallowed() {
    let mut script = Script::default();
    script.add_file("/", &"h".repeat(10 << 20), b"huge").add_file("/", "good.txt", b"good");
    the_root_listing_fails_in_time(script, "larger than 256 KiB", Duration::from_secs(60));
}

/// A name longer than any file system holds (255 bytes) is skipped when
/// listed, with a warning that gives its length and a readable start of
/// it; the listing is then doubtful, so --delete holds back.
#[test]
fn a_name_too_long_for_any_file_system_is_skipped_when_listed() {
    let long = "n".repeat(1000);
    let mut script = Script::default();
    script.add_file("/", &long, b"long").add_file("/", "good.txt", b"good");
    let server = serve(script);
    let s = Scratch::new();
    let run = download(&s, &server, &[]);
    run.expect_code(0);
    assert!(run.stderr.contains(&long[..200]) && run.stderr.contains("(1000 bytes)"), "{}", run.explain());
    assert!(!run.stderr.contains(&long), "cut short: {}", run.explain());
    assert_eq!(files_below(&s.dst()), ["good.txt"], "{}", run.explain());
    write(&s.dst(), "stray.txt", b"stray");
    let run = download(
        &s,
        &serve({
            let mut script = Script::default();
            script.add_file("/", &long, b"long").add_file("/", "good.txt", b"good");
            script
        }),
        &["--delete"],
    );
    run.expect_code(5);
    assert!(s.dst().join("stray.txt").exists(), "{}", run.explain());
}

/// A first run makes `evil` a link to a directory outside the destination
/// (links are copied as links); the server then says `evil` is a directory
/// with a file in it. Writing that file must not go through the link.
#[test]
fn a_link_swapped_for_a_directory_is_never_written_through() {
    let s = Scratch::new();
    let outside = s.path("outside");
    fs::create_dir_all(&outside).unwrap();
    let mut first = Script::default();
    first.add("/", symlink("evil"), b"").links.insert("/evil".into(), outside.to_str().unwrap().into());
    let run = download(&s, &serve(first), &[]);
    run.expect_code(0);
    assert_eq!(fs::read_link(s.dst().join("evil")).unwrap(), outside);

    let mut second = Script::default();
    second.add("/", dir("evil"), b"").add_file("/evil", "payload", b"evil");
    let run = download(&s, &serve(second), &["--delete"]);
    assert!(
        files_below(&outside).is_empty(),
        "written through the link: {:?}\n{}",
        files_below(&outside),
        run.explain()
    );
    assert_nothing_beside_dst(&s);
}

/// Every listing holds a deeper directory (as a server inventing them, or
/// a link loop shown as directories, does): the walk stops at barge's
/// depth (or path length) cap, names the directory it did not list, and
/// deletes nothing for the listing's word.
fn an_endless_tree_ends(name: &str, said: &str) {
    let mut script = Script { endless_depth: Some(name.to_string()), ..Script::default() };
    script.add_file("/", "fine.txt", b"fine");
    let server = serve(script);
    an_endless_tree_is_cut(name, said, |s| download_within(s, &server, &["--delete"], Duration::from_secs(120)));
}

#[test]
fn a_tree_without_a_bottom_stops_at_the_depth_cap() {
    an_endless_tree_ends("a", "nested more than 256 directories deep");
}

#[test]
fn a_tree_of_ever_longer_paths_stops_at_the_length_cap() {
    an_endless_tree_ends(&"n".repeat(200), "path longer than 4096 bytes");
}
