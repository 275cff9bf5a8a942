//! Round trips per file, as the backends count them
//! ([`Backend::round_trips`]), against real vsftpd, pure-ftpd, proftpd and
//! OpenSSH servers. The numbers are exact: a command added to a file's
//! path (or a pipelined batch split up again) fails these tests.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use barge::backend::local::LocalBackend;
use barge::backend::temp::temp_path;
use barge::backend::{Backend, Entry, MissingRoot, RemoteOptions};
use barge::commit::{CopyOptions, copy_file};
use barge::error::ErrorKind;
use barge::location::Location;
use barge::path::RelPath;

use crate::common::*;
use crate::harness::{self, FtpServerKind, FtpTls};

fn rel(path: &str) -> RelPath {
    RelPath::parse(path.as_bytes()).unwrap()
}

async fn remote(url: &str, options: RemoteOptions) -> std::sync::Arc<dyn Backend> {
    let location = Location::parse(url).unwrap();
    barge::backend::open(&location, MissingRoot::Create, &options).await.unwrap()
}

async fn entry(backend: &dyn Backend, path: &str) -> Entry {
    backend.stat(&rel(path)).await.unwrap().unwrap_or_else(|| panic!("{path} not found"))
}

/// Copies `path` from `src` to `dst` and returns the round trips it cost
/// `counted` (one of the two).
async fn copy_cost(src: &dyn Backend, dst: &dyn Backend, counted: &dyn Backend, path: &str) -> u64 {
    let from = entry(src, path).await;
    let before = counted.round_trips();
    let done = copy_file(src, dst, &from, 0, CopyOptions::default(), &|_| {}).await.unwrap();
    assert!(done.dst_mtime.is_some(), "{path}: the destination's time was set and recorded");
    counted.round_trips() - before
}

/// Options that log in to the test sshd.
fn sftp_options(server: &harness::SshServer) -> RemoteOptions {
    server.client_options()
}

fn mtime_secs(path: &Path) -> i64 {
    fs::metadata(path).unwrap().mtime()
}

/// Upload: EPSV and STOR in one write, the data connection (its handshake
/// brings the 150), the 226, then the time command, RNFR and RNTO in one
/// write (the first file sends the time command alone, to learn which one
/// the server takes). Download: EPSV and RETR, the data connection. Then a
/// commit whose RNFR fails: the error is the RNFR's, and the RNTO's reply
/// is read so that the next file, on the same (only) connection, still
/// costs exactly 4.
fn ftp_costs(kind: FtpServerKind) {
    let server = harness::ftp_server(kind, FtpTls::None);
    let s = Scratch::new();
    write(&s.src(), "a.txt", &bytes(1, 5_000));
    write(&s.src(), "b.bin", &bytes(2, 300_000));
    write(&s.src(), "c.txt", b"c");
    for (name, secs) in [("a.txt", 1_500_000_000), ("b.bin", 1_400_000_000), ("c.txt", 1_300_000_000)] {
        set_mtime(&s.src().join(name), secs);
    }
    let url = format!("ftp://{}:{}@127.0.0.1:{}/up", server.user, server.password, server.port);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let local = LocalBackend::open(s.src(), MissingRoot::Fail).await.unwrap();
        let ftp = remote(&url, RemoteOptions { connections: 1, ..RemoteOptions::default() }).await;
        assert_eq!(copy_cost(&local, &*ftp, &*ftp, "a.txt").await, 5, "first upload ({})", kind.name());
        assert_eq!(copy_cost(&local, &*ftp, &*ftp, "b.bin").await, 4, "pipelined upload ({})", kind.name());

        let missing = temp_path(&rel("never-written"));
        let err = ftp.commit_temp(&missing, &rel("never-written"), None, None).await.expect_err("RNFR of nothing");
        assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
        assert_eq!(copy_cost(&local, &*ftp, &*ftp, "c.txt").await, 4, "after a refused RNFR ({})", kind.name());

        let down = Scratch::new();
        let back = LocalBackend::open(down.dst(), MissingRoot::Create).await.unwrap();
        assert_eq!(copy_cost(&*ftp, &back, &*ftp, "b.bin").await, 2, "download ({})", kind.name());
        assert_eq!(fs::read(down.dst().join("b.bin")).unwrap(), bytes(2, 300_000));
    });
    let up = server.root.join("up");
    for (name, secs) in [("a.txt", 1_500_000_000), ("b.bin", 1_400_000_000), ("c.txt", 1_300_000_000)] {
        assert_eq!(fs::read(up.join(name)).unwrap(), fs::read(s.src().join(name)).unwrap(), "{name}");
        assert_eq!(mtime_secs(&up.join(name)), secs, "{name}: time set before the rename");
    }
    assert!(temporaries(&up).is_empty(), "{:?}", temporaries(&up));
    assert!(!up.join("never-written").exists());
}

#[test]
fn vsftpd_upload_costs_4_round_trips_and_download_2() {
    ftp_costs(FtpServerKind::Vsftpd);
}

#[test]
fn pureftpd_upload_costs_4_round_trips_and_download_2() {
    ftp_costs(FtpServerKind::PureFtpd);
}

#[test]
fn proftpd_upload_costs_4_round_trips_and_download_2() {
    ftp_costs(FtpServerKind::Proftpd);
}

/// Upload: OPEN, then the writes, FSYNC, FSETSTAT and CLOSE awaited
/// together, then the rename. Download: OPEN, then reads covering the
/// listed size plus the one at its end that answers EOF; the close is not
/// waited for. A 1,000,000-byte file costs the same as a 5 kB one: it
/// fits a near server's budgets (1 MiB written unacknowledged, 2 MiB read
/// untaken, `backend::sftp::pool`); past those a file waits for replies,
/// which costs next to nothing on loopback and is why a far server's
/// budgets are larger.
#[test]
fn sftp_upload_costs_3_round_trips_and_download_2() {
    let server = harness::ssh_server();
    let s = Scratch::new();
    write(&s.src(), "a.txt", &bytes(1, 5_000));
    write(&s.src(), "big.bin", &bytes(2, 1_000_000));
    write(&s.src(), "empty", b"");
    for name in ["a.txt", "big.bin", "empty"] {
        set_mtime(&s.src().join(name), 1_500_000_000);
    }
    let options = sftp_options(&server);
    let url = format!("{}/up", server.url());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let local = LocalBackend::open(s.src(), MissingRoot::Fail).await.unwrap();
        let sftp = remote(&url, options).await;
        for name in ["a.txt", "big.bin", "empty"] {
            assert_eq!(copy_cost(&local, &*sftp, &*sftp, name).await, 3, "upload of {name}");
        }
        let down = Scratch::new();
        let back = LocalBackend::open(down.dst(), MissingRoot::Create).await.unwrap();
        for name in ["a.txt", "big.bin", "empty"] {
            assert_eq!(copy_cost(&*sftp, &back, &*sftp, name).await, 2, "download of {name}");
            assert_eq!(fs::read(down.dst().join(name)).unwrap(), fs::read(s.src().join(name)).unwrap());
        }
    });
    let up = server.root.join("up");
    for name in ["a.txt", "big.bin", "empty"] {
        assert_eq!(fs::read(up.join(name)).unwrap(), fs::read(s.src().join(name)).unwrap(), "{name}");
        assert_eq!(mtime_secs(&up.join(name)), 1_500_000_000, "{name}");
    }
    assert!(temporaries(&up).is_empty());
}

/// Writes that fail inside the pipelined batch (a 3 MiB file onto a 1 MiB
/// disk on the server: the writes past the first MiB answer "failure"
/// after the close was already sent) fail the file: it never takes its
/// name. The session is still good: the next file costs its 3 round trips.
#[test]
fn sftp_writes_failing_in_the_batch_fail_the_file() {
    let server = harness::ssh_server();
    let Some(_disk) = crate::faults::SmallDisk::mount(server.root.join("full"), "1m") else { return };
    let s = Scratch::new();
    write(&s.src(), "full/big.bin", &bytes(5, 3 << 20));
    write(&s.src(), "ok.txt", b"fine");
    let options = sftp_options(&server);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let local = LocalBackend::open(s.src(), MissingRoot::Fail).await.unwrap();
        let sftp = remote(&server.url(), options).await;
        let big = entry(&local, "full/big.bin").await;
        let err = copy_file(&local, &*sftp, &big, 0, CopyOptions::default(), &|_| {})
            .await
            .expect_err("3 MiB do not fit in 1 MiB");
        // The temporary's write failed (OpenSSH says "Failure" for ENOSPC).
        assert!(err.to_string().starts_with("write full/.barge-"), "{err}");
        assert_eq!(copy_cost(&local, &*sftp, &*sftp, "ok.txt").await, 3);
    });
    assert!(!server.root.join("full/big.bin").exists(), "a file whose writes failed took its name");
    assert_eq!(fs::read(server.root.join("ok.txt")).unwrap(), b"fine");
}

/// The listing's size only shapes the first flight of reads: a file that
/// grew since is read to its real end (and refused as changed), one that
/// shrank ends early (and is refused as incomplete); neither is committed.
#[test]
fn sftp_reads_sized_by_a_stale_listing_still_see_the_real_end() {
    let server = harness::ssh_server();
    server.write_file("grew.bin", &bytes(3, 700_000));
    server.write_file("shrank.bin", &bytes(4, 100_000));
    let options = sftp_options(&server);
    let s = Scratch::new();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let sftp = remote(&server.url(), options).await;
        let back = LocalBackend::open(s.dst(), MissingRoot::Create).await.unwrap();
        for (name, listed, kind) in
            [("grew.bin", 500_000, ErrorKind::SourceChanged), ("shrank.bin", 300_000, ErrorKind::Temporary)]
        {
            let mut stale = entry(&*sftp, name).await;
            stale.size = listed;
            let err = copy_file(&*sftp, &back, &stale, 0, CopyOptions::default(), &|_| {})
                .await
                .expect_err("a copy of the wrong length");
            assert_eq!(err.kind, kind, "{name}: {err}");
        }
    });
    assert!(!s.dst().join("grew.bin").exists() && !s.dst().join("shrank.bin").exists());
}

/// Waits until `backend` has counted `want` round trips (connections
/// logging in in the background) and checks it stops there.
async fn settle_at(backend: &dyn Backend, want: u64, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while backend.round_trips() < want && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(backend.round_trips(), want, "{what}");
}

/// A tree of five directories: the root, a, b, c and a/x, a file in each.
fn listing_tree(write: impl Fn(&str)) {
    for file in ["top.txt", "a/one.txt", "b/two.txt", "c/three.txt", "a/x/four.txt"] {
        write(file);
    }
}

/// Logging in: the first connection costs the TCP handshake, the
/// greeting, USER, PASS, FEAT and one write of OPTS UTF8, TYPE I and PWD
/// (the pipelining probe), then the root's CWD. Nothing more logs in in
/// the background on a near server, and the one connection allowed here
/// keeps logins out of the listing's count. Listing: EPSV and MLSD in one
/// write, then the data connection (2 per directory); LIST servers
/// (vsftpd) send the CWD in that same write, and add the one MDTM that
/// learns the server's LIST time zone (`--list-times`).
fn ftp_listing_costs(kind: FtpServerKind) {
    let server = harness::ftp_server(kind, FtpTls::None);
    listing_tree(|file| {
        server.write_file(&format!("tree/{file}"), b"data");
    });
    let url = format!("ftp://{}:{}@127.0.0.1:{}/tree", server.user, server.password, server.port);
    let mut options = RemoteOptions { connections: 1, ..RemoteOptions::default() };
    options.ftp.list_times = true;
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ftp = remote(&url, options).await;
        settle_at(&*ftp, 6 + 1, &format!("logins ({})", kind.name())).await;
        let before = ftp.round_trips();
        let listing = ftp.walk().await.unwrap();
        let mut paths: Vec<String> = listing.entries.iter().map(|e| e.path.to_string()).collect();
        paths.sort();
        assert_eq!(
            paths,
            ["a", "a/one.txt", "a/x", "a/x/four.txt", "b", "b/two.txt", "c", "c/three.txt", "top.txt"],
            "{}",
            kind.name()
        );
        assert!(listing.unreadable.is_empty() && listing.retried.is_empty(), "{listing:?}");
        let per_dir = 2;
        let time_zone = if kind == FtpServerKind::Vsftpd { 1 } else { 0 };
        assert_eq!(ftp.round_trips() - before, 5 * per_dir + time_zone, "listing ({})", kind.name());
    });
}

#[test]
fn vsftpd_logs_in_with_one_write_and_lists_a_directory_in_2_round_trips() {
    ftp_listing_costs(FtpServerKind::Vsftpd);
}

/// A state database's memory of one server, for a backend opened here.
#[derive(Default)]
struct Remembered(std::sync::Mutex<std::collections::HashMap<String, String>>);

#[async_trait::async_trait]
impl barge::backend::ServerMemory for Remembered {
    async fn recall(&self, key: &str) -> Option<String> {
        self.0.lock().unwrap().get(key).cloned()
    }

    async fn remember(&self, key: &str, value: &str) {
        self.0.lock().unwrap().insert(key.to_string(), value.to_string());
    }
}

/// With `--list-times`, the LIST time zone costs a listing of three
/// recent files one MDTM round trip a run: measured on all three in one
/// write when nothing is remembered, checked with one file's MDTM when it
/// is. A remembered offset the check finds wrong (an hour off, as after a
/// daylight-saving change) costs one more write, the other files' MDTMs,
/// and is replaced by what they show; the walk says so.
#[test]
fn vsftpd_a_remembered_list_zone_is_checked_with_one_round_trip() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    for file in ["f1.txt", "f2.txt", "f3.txt"] {
        server.write_file(&format!("zone/{file}"), b"data");
    }
    let url = format!("ftp://{}:{}@127.0.0.1:{}/zone", server.user, server.password, server.port);
    let key = format!("ftp.list-tz-offset ftp://{}@127.0.0.1:{}/zone", server.user, server.port);
    // CWD + EPSV + LIST, the data connection.
    let listing = 2;
    for (remembered, zone_cost, told) in [(None, 1, false), (Some("0"), 1, false), (Some("3600"), 2, true)] {
        let memory = std::sync::Arc::new(Remembered::default());
        if let Some(offset) = remembered {
            memory.0.lock().unwrap().insert(key.clone(), offset.to_string());
        }
        let mut options = RemoteOptions { connections: 1, ..RemoteOptions::default() };
        options.ftp.list_times = true;
        options.memory = Some(barge::backend::Memory(memory.clone()));
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let ftp = remote(&url, options).await;
            let before = ftp.round_trips();
            let walked = ftp.walk().await.unwrap();
            assert_eq!(walked.entries.len(), 3, "{walked:?}");
            assert_eq!(ftp.round_trips() - before, listing + zone_cost, "remembered {remembered:?}");
            assert_eq!(memory.0.lock().unwrap().get(&key).map(String::as_str), Some("0"), "vsftpd lists in UTC");
            assert_eq!(walked.info.iter().any(|line| line.contains("clock offset changed")), told, "{walked:?}");
        });
    }
}

/// A LIST-only server (vsftpd) gives recent files' times to the minute,
/// so barge asks MDTM for each file: a directory's MDTMs go in one write.
/// 40 files cost one round trip more than the listing (they cost 40), and
/// every time comes out exact to the second.
#[test]
fn vsftpd_exact_times_for_a_directory_cost_one_round_trip() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mtime_of = |i: u64| now - 3600 + 7 * i;
    for i in 0..40 {
        set_mtime(&server.write_file(&format!("times/f{i:02}.txt"), b"data"), mtime_of(i));
    }
    let url = format!("ftp://{}:{}@127.0.0.1:{}/times", server.user, server.password, server.port);
    // One connection: the whole directory is one batch, and no login
    // in the background is counted.
    let options = RemoteOptions { connections: 1, ..RemoteOptions::default() };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ftp = remote(&url, options).await;
        let before = ftp.round_trips();
        let listing = ftp.walk().await.unwrap();
        assert_eq!(listing.entries.len(), 40, "{listing:?}");
        for entry in &listing.entries {
            let name = entry.path.to_string();
            let i: u64 = name[1..3].parse().unwrap();
            let mtime = entry.mtime.unwrap_or_else(|| panic!("{name}: no mtime"));
            assert_eq!((mtime.secs(), entry.coarse_mtime_s), (mtime_of(i) as i64, 0), "{name}");
        }
        // CWD + EPSV + LIST, the data connection; then the MDTMs.
        assert_eq!(ftp.round_trips() - before, 2 + 1);
    });
}

#[test]
fn pureftpd_logs_in_with_one_write_and_lists_a_directory_in_2_round_trips() {
    ftp_listing_costs(FtpServerKind::PureFtpd);
}

#[test]
fn proftpd_logs_in_with_one_write_and_lists_a_directory_in_2_round_trips() {
    ftp_listing_costs(FtpServerKind::Proftpd);
}

/// A directory costs OPENDIR, then two READDIRs in one flight (the
/// entries and the EOF); its close is not waited for.
#[test]
fn sftp_lists_a_directory_in_2_round_trips() {
    let server = harness::ssh_server();
    listing_tree(|file| {
        server.write_file(&format!("tree/{file}"), b"data");
    });
    // One session: none opened in the background while counting.
    let options = RemoteOptions { connections: 1, ..sftp_options(&server) };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let sftp = remote(&format!("{}/tree", server.url()), options).await;
        let before = sftp.round_trips();
        let listing = sftp.walk().await.unwrap();
        assert_eq!(listing.entries.len(), 9, "{listing:?}");
        assert_eq!(sftp.round_trips() - before, 5 * 2);
    });
}

/// A no-op resync from a LIST-only server (vsftpd ignores `LIST -R`):
/// each directory's minute-precision times stand for the recorded exact
/// ones when the records vouch for them (same size and minute, written
/// long before the run that recorded them), so no MDTM is sent; only the
/// run's one zone check. A file whose size changed still gets its MDTM.
#[test]
fn vsftpd_a_recorded_tree_is_listed_without_mdtm() {
    use barge::backend::recall::{Recall, RecalledFile};
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // Two days old: still listed to the minute, and long settled.
    let mtime_of = |i: u64| now - 2 * 86_400 + 61 * i;
    let files: Vec<String> = (0..20).map(|i| format!("d{}/f{i:02}.txt", i % 5)).collect();
    for (i, file) in files.iter().enumerate() {
        set_mtime(&server.write_file(&format!("rec/{file}"), b"data"), mtime_of(i as u64));
    }
    let url = format!("ftp://{}:{}@127.0.0.1:{}/rec", server.user, server.password, server.port);
    let recorded = |changed: Option<usize>| {
        Recall::new(files.iter().enumerate().map(|(i, file)| {
            let size = if changed == Some(i) { 3 } else { 4 };
            let mtime = barge::backend::Mtime::from_unix(mtime_of(i as u64) as i64, 0);
            (rel(file), RecalledFile { size, mtime, recorded_at: now as i64 })
        }))
    };
    // One connection: no login in the background is counted. The state
    // database knows vsftpd ignores `LIST -R`.
    let options = RemoteOptions { connections: 1, ..RemoteOptions::default() };
    let memory = std::sync::Arc::new(Remembered::default());
    let key = format!("ftp.recursive-list ftp://{}@127.0.0.1:{}/rec", server.user, server.port);
    memory.0.lock().unwrap().insert(key, "no: the server ignores LIST -R".into());
    let options = RemoteOptions { memory: Some(barge::backend::Memory(memory)), ..options };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ftp = remote(&url, options).await;
        // 6 directories (the root and d0..d4): CWD + EPSV + LIST, the data
        // connection each; the zone measured once a run (the first walk);
        // and, when a record does not match, that directory's MDTMs in
        // one write.
        for (changed, zone, mdtm_batches) in [(None, 1, 0), (Some(7), 0, 1)] {
            let (give, recall) = tokio::sync::oneshot::channel();
            give.send(std::sync::Arc::new(recorded(changed))).unwrap();
            let before = ftp.round_trips();
            let listing = barge::backend::stream::collected(|tx| ftp.walk_streamed(tx, Some(recall))).await.unwrap();
            for entry in listing.entries.iter().filter(|e| e.is_file()) {
                let i: u64 = entry.path.file_name()[1..3].iter().fold(0, |n, d| n * 10 + u64::from(d - b'0'));
                assert_eq!(entry.mtime.map(|m| m.secs()), Some(mtime_of(i) as i64), "{}", entry.path);
                assert_eq!(entry.coarse_mtime_s, 0, "{}", entry.path);
            }
            assert_eq!(listing.entries.iter().filter(|e| e.is_file()).count(), 20);
            assert_eq!(ftp.round_trips() - before, 6 * 2 + zone + mdtm_batches, "changed {changed:?}");
        }
    });
}

/// A directory whose CWD is refused, in the same write as its EPSV and
/// LIST: the server lists the directory it was in instead, and that
/// listing is dropped, the directory reported unreadable, and the one
/// connection stays in step for the next directories.
#[test]
fn vsftpd_a_refused_cwd_in_the_batch_is_unreadable_and_the_rest_lists() {
    use std::os::unix::fs::PermissionsExt;
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    for file in ["a-locked/secret.txt", "b/one.txt", "c/two.txt", "top.txt"] {
        server.write_file(&format!("cwd/{file}"), b"data");
    }
    let locked = server.root.join("cwd/a-locked");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    let url = format!("ftp://{}:{}@127.0.0.1:{}/cwd", server.user, server.password, server.port);
    let options = RemoteOptions { connections: 1, retries: 0, ..RemoteOptions::default() };
    let listing = tokio::runtime::Runtime::new().unwrap().block_on(async { remote(&url, options).await.walk().await });
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    let listing = listing.unwrap();
    let unreadable: Vec<String> = listing.unreadable.iter().map(|(dir, _)| dir.to_string()).collect();
    assert_eq!(unreadable, ["a-locked"], "{listing:?}");
    let mut files: Vec<String> = listing.entries.iter().filter(|e| e.is_file()).map(|e| e.path.to_string()).collect();
    files.sort();
    assert_eq!(files, ["b/one.txt", "c/two.txt", "top.txt"], "{listing:?}");
}
