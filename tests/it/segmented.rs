//! Segmented copies of large files (`--segments`, `--segment-threshold`)
//! against real vsftpd, pure-ftpd, proftpd and OpenSSH: byte-exact results,
//! proof that the ranges really travelled on connections (or handles) of
//! their own, recovery from a connection cut mid-segment, a server's
//! per-address connection cap, no prefix-resume of a segmented temporary
//! after a killed run, and FTP uploads in segments only where the server
//! was seen to write them as it should.

use std::fs;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use barge::backend::local::LocalBackend;
use barge::backend::{
    Backend, Capabilities, Entry, FileReader, FileWriter, HashKind, MissingRoot, Mtime, RemoteOptions, SegmentedWrite,
};
use barge::commit::{CopyOptions, copy_file};
use barge::error::OpError;
use barge::location::Location;
use barge::path::RelPath;
use std::sync::atomic::AtomicUsize;

use crate::common::*;
use crate::harness::{self, FtpServer, FtpServerKind, FtpTls, SshServer};
use crate::wanem::{self, Fault, Link, Stats};

const MIB: usize = 1 << 20;
/// 8 MiB and a bit: with `--segments 4`, four ranges of about 2 MiB.
const BIG: usize = 8 * MIB + 12_345;
/// Flags that split [`BIG`] into 4 ranges.
const SPLIT: [&str; 4] = ["--segment-threshold", "4M", "--segments", "4"];

/// The passive address a server announces, to send data through the emulator.
fn announce(kind: FtpServerKind) -> &'static str {
    match kind {
        FtpServerKind::Vsftpd => "pasv_address=127.0.0.2",
        FtpServerKind::PureFtpd => "-P127.0.0.2",
        FtpServerKind::Proftpd => "MasqueradeAddress 127.0.0.2",
    }
}

/// `kind` on 127.0.0.1 announcing 127.0.0.2, where the emulator forwards
/// the control port and the passive range and counts connections.
fn behind(kind: FtpServerKind, extra: &[&str], link: Link) -> (FtpServer, tokio::runtime::Runtime, Arc<Stats>) {
    let mut all = vec![announce(kind)];
    all.extend_from_slice(extra);
    let server = harness::ftp_server_with(kind, FtpTls::None, &all);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ports = std::iter::once(server.port).chain(server.pasv_ports.0..=server.pasv_ports.1);
    let (far, near): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap());
    let stats = runtime.block_on(wanem::forward(far, near, ports, link)).unwrap();
    (server, runtime, stats)
}

fn far_url(server: &FtpServer) -> String {
    format!("ftp://{}@127.0.0.2:{}/", server.user, server.port)
}

fn ftp_sync(s: &Scratch, server: &FtpServer, src: &str, dst: &str, extra: &[&str]) -> Run {
    Run::of(
        s.barge()
            .env("BARGE_PASSWORD", &server.password)
            .args(["sync", src, dst, "--json", "--timeout", "10", "--state"])
            .arg(s.path(&format!("state-{}.db", blake3::hash(format!("{src}\0{dst}").as_bytes()).to_hex())))
            .args(extra)
            .output()
            .unwrap(),
    )
}

fn same_file(a: &std::path::Path, b: &std::path::Path) {
    let (x, y) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    assert!(
        x.len() == y.len() && x == y,
        "{} ({} bytes) and {} ({} bytes) differ",
        a.display(),
        x.len(),
        b.display(),
        y.len()
    );
}

/// A download of [`BIG`] split in 4 opens at least 3 more data
/// connections than the same download in one stream (control connections
/// are not counted: the pool warms a number of them that depends on
/// timing), and both are byte-exact; small
/// files after it, with no retries allowed, prove the control connections
/// the ranges ended early on were left usable.
fn ftp_download(kind: FtpServerKind) {
    let (server, _runtime, stats) = behind(kind, &[], Link::default());
    let content = bytes(7, BIG);
    server.write_file("big.bin", &content);
    for i in 0..12 {
        server.write_file(&format!("small/f{i:02}.txt"), &bytes(100 + i, 10_000));
    }
    let s = Scratch::new();
    let one = s.path("one");
    let data = || stats.connections.load(Ordering::SeqCst) - stats.first_port_connections.load(Ordering::SeqCst);
    let before = data();
    let flags = ["--segments", "1", "--parallel", "4", "--retries", "0"];
    ftp_sync(&s, &server, &far_url(&server), &one.to_string_lossy(), &flags).expect_code(0);
    let single = data() - before;
    same_file(&server.root.join("big.bin"), &one.join("big.bin"));

    let split = s.path("split");
    let before = data();
    let mut flags = SPLIT.to_vec();
    flags.extend(["--parallel", "4", "--retries", "0"]);
    let run = ftp_sync(&s, &server, &far_url(&server), &split.to_string_lossy(), &flags);
    run.expect_code(0);
    let segmented = data() - before;
    assert_eq!(run.count("files_transferred"), 13, "{}", run.explain());
    assert_eq!(run.count("retries"), 0, "{}", run.explain());
    same_file(&server.root.join("big.bin"), &split.join("big.bin"));
    assert_mirrors(&one, &split);
    assert!(temporaries(&split).is_empty(), "{:?}", temporaries(&split));
    assert!(
        segmented >= single + 3,
        "{}: {segmented} data connections segmented, {single} in one stream: the ranges did not get data connections of their own",
        kind.name()
    );
}

#[test]
fn vsftpd_downloads_in_segments() {
    ftp_download(FtpServerKind::Vsftpd);
}

#[test]
fn pureftpd_downloads_in_segments() {
    ftp_download(FtpServerKind::PureFtpd);
}

#[test]
fn proftpd_downloads_in_segments() {
    ftp_download(FtpServerKind::Proftpd);
}

/// An upload of [`BIG`] split in 4 through the emulator: in four segments
/// exactly where the server writes them as it should (`in_segments`),
/// else in one stream after the probe said no; byte-exact either way, no
/// temporary or probe file left on the server, and a rerun moves nothing.
fn ftp_upload(kind: FtpServerKind, extra: &[&str], in_segments: bool) {
    let (server, _runtime, _stats) = behind(kind, extra, Link::default());
    let s = Scratch::new();
    write(&s.src(), "big.bin", &bytes(13, BIG));
    for i in 0..6 {
        write(&s.src(), format!("small/f{i}.txt"), &bytes(300 + i, 5_000));
    }
    let src = s.src().to_string_lossy().into_owned();
    let dst = format!("{}up", far_url(&server));
    let log = s.path("upload.log");
    let mut flags = SPLIT.to_vec();
    flags.extend(["--parallel", "4", "--retries", "0", "--log-file", log.to_str().unwrap()]);
    let run = ftp_sync(&s, &server, &src, &dst, &flags);
    run.expect_code(0);
    assert_eq!(run.count("files_transferred"), 7, "{}", run.explain());
    let logged = fs::read_to_string(&log).unwrap();
    let split = logged.contains("big.bin: copied in 4 segments");
    assert_eq!(split, in_segments, "{}: segmented upload expected {in_segments}\n{logged}", kind.name());
    for name in ["big.bin", "small/f0.txt", "small/f5.txt"] {
        same_file(&s.src().join(name), &server.root.join("up").join(name));
    }
    assert!(temporaries(&server.root).is_empty(), "{:?}", temporaries(&server.root));
    let again = ftp_sync(&s, &server, &src, &dst, &flags);
    again.expect_code(0);
    assert_eq!(again.count("files_transferred"), 0, "{}", again.explain());
}

#[test]
fn vsftpd_without_upload_locks_takes_uploads_in_segments() {
    ftp_upload(FtpServerKind::Vsftpd, &["lock_upload_files=NO"], true);
}

/// Its uploads lock the file: a second one into it waits for the first.
#[test]
fn vsftpd_with_upload_locks_gets_uploads_in_one_stream() {
    ftp_upload(FtpServerKind::Vsftpd, &[], false);
}

/// `554 REST: invalid argument` past the file's end.
#[test]
fn proftpd_gets_uploads_in_one_stream() {
    ftp_upload(FtpServerKind::Proftpd, &[], false);
}

/// Its REST+STOR writes to a file of its own, renamed over the name at
/// the end: segments would undo each other.
#[test]
fn pureftpd_gets_uploads_in_one_stream() {
    ftp_upload(FtpServerKind::PureFtpd, &[], false);
}

fn rel(path: &str) -> RelPath {
    RelPath::parse(path.as_bytes()).unwrap()
}

/// A range read ends its RETR early; the one pooled control connection is
/// then reused, not replaced: through the emulator, the whole session is
/// one control connection and one data connection per transfer (a control
/// connection closed after each range would add three).
fn range_leaves_the_connection_usable(kind: FtpServerKind, tls: FtpTls) {
    let mut extra = vec![announce(kind)];
    if tls == FtpTls::Explicit && kind == FtpServerKind::Vsftpd {
        // The data connections come from the emulator's address.
        extra.push("pasv_promiscuous=YES");
    }
    let server = harness::ftp_server_with(kind, tls, &extra);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ports = std::iter::once(server.port).chain(server.pasv_ports.0..=server.pasv_ports.1);
    let (far, near): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap());
    let stats = runtime.block_on(wanem::forward(far, near, ports, Link::default())).unwrap();
    let content = bytes(9, 4 * MIB);
    server.write_file("big.bin", &content);
    server.write_file("after.bin", &bytes(10, 300_000));
    let scheme = if tls == FtpTls::Explicit { "ftpes" } else { "ftp" };
    let url = format!("{scheme}://{}:{}@127.0.0.2:{}/", server.user, server.password, server.port);
    let mut options = RemoteOptions { connections: 1, ..RemoteOptions::default() };
    // The certificate names 127.0.0.1, the emulator listens on 127.0.0.2.
    options.ftp.tls.insecure = true;
    runtime.block_on(async {
        let ftp = barge::backend::open(&Location::parse(&url).unwrap(), MissingRoot::Fail, &options).await.unwrap();
        let opened = stats.connections.load(Ordering::SeqCst);
        let ranges = [(MIB, MIB), (0, 3 * MIB + 7), (3 * MIB, MIB)];
        for (offset, len) in ranges {
            let mut reader = ftp.open_read_range(&rel("big.bin"), offset as u64, len as u64).await.unwrap();
            let mut got = Vec::new();
            loop {
                let chunk = reader.read(Vec::with_capacity(256 * 1024)).await.unwrap();
                if chunk.is_empty() {
                    break;
                }
                got.extend_from_slice(&chunk);
            }
            drop(reader);
            assert!(got == content[offset..offset + len], "{}: range {offset}+{len} differs", kind.name());
        }
        let down = Scratch::new();
        let back = LocalBackend::open(down.dst(), MissingRoot::Create).await.unwrap();
        let from = ftp.stat(&rel("after.bin")).await.unwrap().unwrap();
        copy_file(&*ftp, &back, &from, 0, CopyOptions::default(), &|_| {}).await.unwrap();
        assert_eq!(fs::read(down.dst().join("after.bin")).unwrap(), bytes(10, 300_000));
        // Three ranges, a listing (stat) and a download: a data connection
        // each, and no new control connection. One replacement is allowed:
        // in one full-suite run under load pure-ftpd's connection was
        // replaced once (the end-of-range check refused it, safely); a
        // connection thrown away after every range makes three.
        let made = stats.connections.load(Ordering::SeqCst) - opened;
        let data = ranges.len() + 2;
        assert!(
            (data..=data + 1).contains(&made),
            "{}: {made} connections for {data} transfers: control connections were replaced after the ranges",
            kind.name()
        );
    });
}

#[test]
fn vsftpd_range_reads_leave_the_control_connection_usable() {
    range_leaves_the_connection_usable(FtpServerKind::Vsftpd, FtpTls::None);
}

#[test]
fn pureftpd_range_reads_leave_the_control_connection_usable() {
    range_leaves_the_connection_usable(FtpServerKind::PureFtpd, FtpTls::None);
}

#[test]
fn proftpd_range_reads_leave_the_control_connection_usable() {
    range_leaves_the_connection_usable(FtpServerKind::Proftpd, FtpTls::None);
}

#[test]
fn ftps_range_reads_leave_the_control_connection_usable() {
    range_leaves_the_connection_usable(FtpServerKind::Vsftpd, FtpTls::Explicit);
}

#[test]
fn a_connection_cut_mid_segment_is_retried_by_that_segment_alone() {
    // Every connection after the login is cut after 1.5 MiB towards barge:
    // each 2 MiB range is cut once at least and resumes from where it stopped.
    let link = Link { fault: Fault::CutAfter(3 * MIB as u64 / 2), fault_from_connection: 1, ..Link::default() };
    let (server, _runtime, _stats) = behind(FtpServerKind::Vsftpd, &[], link);
    let content = bytes(11, BIG);
    server.write_file("big.bin", &content);
    let s = Scratch::new();
    let mut flags = SPLIT.to_vec();
    flags.extend(["--retries", "6"]);
    let run = ftp_sync(&s, &server, &far_url(&server), &s.dst().to_string_lossy(), &flags);
    run.expect_code(0);
    assert!(run.count("retries") >= 3, "the cuts were retried\n{}", run.explain());
    same_file(&server.root.join("big.bin"), &s.dst().join("big.bin"));
    assert!(temporaries(&s.dst()).is_empty(), "{:?}", temporaries(&s.dst()));
}

#[test]
fn a_per_address_connection_cap_means_fewer_segments_not_failures() {
    // vsftpd answers a third connection from one address with 421.
    let server = harness::ftp_server_with(FtpServerKind::Vsftpd, FtpTls::None, &["max_per_ip=2"]);
    for i in 0..3 {
        server.write_file(&format!("big{i}.bin"), &bytes(20 + i, BIG));
    }
    server.write_file("small.txt", b"small");
    let s = Scratch::new();
    let url = format!("ftp://{}@127.0.0.1:{}/", server.user, server.port);
    let flags = ["--segment-threshold", "4M", "--segments", "8", "--retries", "0"];
    let run = ftp_sync(&s, &server, &url, &s.dst().to_string_lossy(), &flags);
    run.expect_code(0);
    assert_eq!(run.count("files_transferred"), 4, "{}", run.explain());
    for name in ["big0.bin", "big1.bin", "big2.bin", "small.txt"] {
        same_file(&server.root.join(name), &s.dst().join(name));
    }
    assert!(temporaries(&s.dst()).is_empty());
}

/// `barge` against sshd with a private HOME, no agent, the harness's keys.
fn sftp_sync(s: &Scratch, server: &SshServer, src: &str, dst: &str, extra: &[&str]) -> Run {
    let mut cmd = s.barge();
    cmd.env("HOME", s.path("home"))
        .env_remove("SSH_AUTH_SOCK")
        .args(["sync", src, dst, "--json", "--timeout", "20", "--known-hosts"])
        .arg(&server.known_hosts)
        .arg("--identity")
        .arg(&server.client_key)
        .arg("--state")
        .arg(s.path(&format!("state-{}.db", blake3::hash(format!("{src}\0{dst}").as_bytes()).to_hex())))
        .args(extra);
    Run::of(cmd.output().expect("run barge"))
}

/// A backend that passes everything on to `inner`, counting the range
/// readers and segment writers open at once: proof that the segments ran
/// side by side on the real server, each with a handle of its own.
struct Spy {
    inner: Arc<dyn Backend>,
    live: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    opened: AtomicUsize,
}

impl Spy {
    fn new(inner: Arc<dyn Backend>) -> Spy {
        Spy { inner, live: Arc::default(), most: Arc::default(), opened: AtomicUsize::new(0) }
    }

    /// Counts one more open reader or writer, then waits (up to 10 s) for
    /// four to be open: segments that run side by side all get there, so
    /// how busy the machine is cannot make them look sequential; segments
    /// that ran one after another would each wait alone and show 1.
    async fn open_one(&self) -> Live {
        self.opened.fetch_add(1, Ordering::SeqCst);
        let now = self.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.most.load(Ordering::SeqCst) < 4 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Live(Arc::clone(&self.live))
    }
}

/// One open reader or writer; its drop is its end.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct SpyReader(Box<dyn FileReader>, #[allow(dead_code)] Live);
struct SpyWriter(Box<dyn FileWriter>, Live);

#[async_trait]
impl FileReader for SpyReader {
    async fn read(&mut self, buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        self.0.read(buf).await
    }
}

#[async_trait]
impl FileWriter for SpyWriter {
    async fn write(&mut self, buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        self.0.write(buf).await
    }
    async fn finish(self: Box<Self>, mtime: Option<Mtime>) -> Result<Option<Mtime>, OpError> {
        let SpyWriter(inner, live) = *self;
        let finished = inner.finish(mtime).await;
        drop(live);
        finished
    }
}

/// Only asked for when the inner backend writes segments.
#[async_trait]
impl SegmentedWrite for Spy {
    async fn works(&self, near: &RelPath) -> bool {
        self.inner_writes().works(near).await
    }
    async fn create_sized(&self, path: &RelPath, size: u64) -> Result<(), OpError> {
        self.inner_writes().create_sized(path, size).await
    }
    async fn open_write_segment(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileWriter>, OpError> {
        let writer = self.inner_writes().open_write_segment(path, offset).await?;
        Ok(Box::new(SpyWriter(writer, self.open_one().await)))
    }
}

impl Spy {
    fn inner_writes(&self) -> &dyn SegmentedWrite {
        self.inner.segmented_writes().expect("asked only where the inner backend writes segments")
    }
}

#[async_trait]
impl Backend for Spy {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn list_dir(&self, dir: &RelPath) -> Result<Vec<Entry>, OpError> {
        self.inner.list_dir(dir).await
    }
    async fn stat(&self, path: &RelPath) -> Result<Option<Entry>, OpError> {
        self.inner.stat(path).await
    }
    async fn open_read(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileReader>, OpError> {
        self.inner.open_read(path, offset).await
    }
    async fn open_read_range(&self, path: &RelPath, offset: u64, len: u64) -> Result<Box<dyn FileReader>, OpError> {
        let reader = self.inner.open_read_range(path, offset, len).await?;
        Ok(Box::new(SpyReader(reader, self.open_one().await)))
    }
    fn segmented_writes(&self) -> Option<&dyn SegmentedWrite> {
        self.inner.segmented_writes().map(|_| self as &dyn SegmentedWrite)
    }
    async fn open_write(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileWriter>, OpError> {
        self.inner.open_write(path, offset).await
    }
    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), OpError> {
        self.inner.rename(from, to).await
    }
    async fn commit_temp(
        &self,
        temp: &RelPath,
        target: &RelPath,
        mtime: Option<Mtime>,
        mode: Option<u32>,
    ) -> Result<Option<Mtime>, OpError> {
        self.inner.commit_temp(temp, target, mtime, mode).await
    }
    async fn remove_file(&self, path: &RelPath) -> Result<(), OpError> {
        self.inner.remove_file(path).await
    }
    async fn remove_dir(&self, path: &RelPath) -> Result<(), OpError> {
        self.inner.remove_dir(path).await
    }
    async fn mkdir(&self, path: &RelPath) -> Result<(), OpError> {
        self.inner.mkdir(path).await
    }
    async fn set_mtime(&self, path: &RelPath, mtime: Mtime) -> Result<(), OpError> {
        self.inner.set_mtime(path, mtime).await
    }
    async fn hash_files(&self, paths: Vec<RelPath>, kind: HashKind) -> Vec<Result<Vec<u8>, OpError>> {
        self.inner.hash_files(paths, kind).await
    }
}

#[test]
fn sftp_uploads_and_downloads_in_segments_side_by_side() {
    let server = harness::ssh_server();
    let s = Scratch::new();
    let content = bytes(31, BIG);
    write(&s.src(), "big.bin", &content);
    write(&s.src(), "small.txt", b"not split");
    let remote = format!("{}/mirror", server.url());
    let src = s.src().to_string_lossy().into_owned();

    // The command line, both ways.
    let up = sftp_sync(&s, &server, &src, &remote, &SPLIT);
    up.expect_code(0);
    assert_eq!(up.count("files_transferred"), 2, "{}", up.explain());
    same_file(&s.src().join("big.bin"), &server.root.join("mirror/big.bin"));
    assert!(temporaries(&server.root).is_empty(), "{:?}", temporaries(&server.root));
    let back = s.path("back");
    let down = sftp_sync(&s, &server, &remote, &back.to_string_lossy(), &SPLIT);
    down.expect_code(0);
    same_file(&s.src().join("big.bin"), &back.join("big.bin"));
    assert_eq!(fs::read(back.join("small.txt")).unwrap(), b"not split");
    assert!(temporaries(&back).is_empty());

    // The library, watched: four handles open at once each way.
    let options = server.client_options();
    let segmenting = barge::commit::Segmenting::new(4 * MIB as u64, 4, 0);
    let copy = CopyOptions { segmenting, ..CopyOptions::default() };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let location = Location::parse(&format!("{}/lib", server.url())).unwrap();
        let sftp = Spy::new(barge::backend::open(&location, MissingRoot::Create, &options).await.unwrap());
        let local = LocalBackend::open(s.src(), MissingRoot::Fail).await.unwrap();
        let entry = local.stat(&rel("big.bin")).await.unwrap().unwrap();
        let done = copy_file(&local, &sftp, &entry, 0, copy, &|_| {}).await.unwrap();
        assert_eq!((done.segments, sftp.opened.load(Ordering::SeqCst)), (4, 4), "upload");
        assert_eq!(sftp.most.load(Ordering::SeqCst), 4, "the upload's four writers were open at once");

        let sftp = Spy::new(Arc::clone(&sftp.inner));
        let there = LocalBackend::open(s.path("lib-back"), MissingRoot::Create).await.unwrap();
        let entry = sftp.stat(&rel("big.bin")).await.unwrap().unwrap();
        let done = copy_file(&sftp, &there, &entry, 0, copy, &|_| {}).await.unwrap();
        assert_eq!((done.segments, sftp.opened.load(Ordering::SeqCst)), (4, 4), "download");
        assert_eq!(sftp.most.load(Ordering::SeqCst), 4, "the download's four readers were open at once");

        // No spare streams left in the run (other large files hold them):
        // a download is one stream, an upload keeps its four, each SFTP
        // session's window being a bound of its own.
        let none_spare = barge::commit::SpareStreams::new(0);
        let shared = CopyOptions { spare_streams: Some(&none_spare), ..copy };
        let location = Location::parse(&format!("{}/lib2", server.url())).unwrap();
        let sftp = Spy::new(barge::backend::open(&location, MissingRoot::Create, &options).await.unwrap());
        let entry = local.stat(&rel("big.bin")).await.unwrap().unwrap();
        let done = copy_file(&local, &sftp, &entry, 0, shared, &|_| {}).await.unwrap();
        assert_eq!((done.segments, sftp.opened.load(Ordering::SeqCst)), (4, 4), "upload, no spare streams");
        let sftp = Spy::new(Arc::clone(&sftp.inner));
        let there = LocalBackend::open(s.path("lib2-back"), MissingRoot::Create).await.unwrap();
        let entry = sftp.stat(&rel("big.bin")).await.unwrap().unwrap();
        let done = copy_file(&sftp, &there, &entry, 0, shared, &|_| {}).await.unwrap();
        // One stream: the whole file's reader, no range readers at all.
        assert_eq!((done.segments, sftp.opened.load(Ordering::SeqCst)), (1, 0), "download, no spare streams");
    });
    for copied in [server.root.join("lib/big.bin"), s.path("lib-back/big.bin"), server.root.join("lib2/big.bin")] {
        same_file(&s.src().join("big.bin"), &copied);
    }
    same_file(&s.src().join("big.bin"), &s.path("lib2-back").join("big.bin"));
}

#[test]
fn a_killed_segmented_download_is_never_resumed_as_a_prefix() {
    // 200 KiB/s per connection: 4 ranges of a 8 MiB file take ~10 s; the
    // run is killed after 2 s with holes between the ranges' heads.
    let link = Link { rate: 200 << 10, ..Link::default() };
    let (server, _runtime, _stats) = behind(FtpServerKind::Proftpd, &[], link);
    let content = bytes(41, BIG);
    server.write_file("big.bin", &content);
    let s = Scratch::new();
    let dst = s.dst().to_string_lossy().into_owned();
    let mut cmd = s.barge();
    cmd.env("BARGE_PASSWORD", &server.password)
        .args(["sync", &far_url(&server), &dst, "--json", "--timeout", "10", "--state"])
        .arg(s.state())
        .args(SPLIT);
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    child.kill().unwrap();
    child.wait().unwrap();
    let left: Vec<_> = fs::read_dir(s.dst()).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
    assert!(!left.iter().any(|n| n == "big.bin"), "a final name after a kill: {left:?}");
    assert!(left.iter().any(|n| n.ends_with(".segs")), "the killed run left its segmented temporary: {left:?}");

    // The rerun, straight to the server (fast), with and without segments.
    let direct = format!("ftp://{}@127.0.0.1:{}/", server.user, server.port);
    for flags in [&["--segments", "1"][..], &SPLIT[..]] {
        let run = Run::of(
            s.barge()
                .env("BARGE_PASSWORD", &server.password)
                .args(["sync", &direct, &dst, "--json", "--timeout", "10", "--state"])
                .arg(s.state())
                .args(flags)
                .output()
                .unwrap(),
        );
        run.expect_code(0);
        same_file(&server.root.join("big.bin"), &s.dst().join("big.bin"));
        assert!(temporaries(&s.dst()).is_empty(), "{:?}", temporaries(&s.dst()));
        fs::remove_file(s.dst().join("big.bin")).unwrap();
        // Leave a segmented temporary again for the second rerun.
        if flags[1] == "1" {
            let mut holed = content.clone();
            holed[..MIB].fill(0);
            fs::write(s.dst().join(barge::backend::temp::segmented_temp_path(&rel("big.bin")).to_string()), &holed)
                .unwrap();
        }
    }
}

#[test]
fn segments_within_one_process_between_local_trees() {
    // The library path, no server: positional writes into one temporary.
    let s = Scratch::new();
    let content = bytes(51, 5 * MIB + 3);
    write(&s.src(), "f.bin", &content);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let src = LocalBackend::open(s.src(), MissingRoot::Fail).await.unwrap();
        let dst = LocalBackend::open(s.dst(), MissingRoot::Create).await.unwrap();
        let entry = src.stat(&rel("f.bin")).await.unwrap().unwrap();
        // Asked for: a run copies disk to disk in one stream.
        let segmenting =
            barge::commit::Segmenting { disk_to_disk: true, ..barge::commit::Segmenting::new(MIB as u64, 5, 0) };
        let options = CopyOptions { segmenting, ..CopyOptions::default() };
        let done = copy_file(&src, &dst, &entry, 0, options, &|_| {}).await.unwrap();
        assert_eq!(done.segments, 5);
        assert_eq!(done.dst_size, content.len() as u64);
    });
    same_file(&s.src().join("f.bin"), &s.dst().join("f.bin"));
}
