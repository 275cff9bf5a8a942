//! Faults against the real servers: the control connection cut mid-file, a
//! storm of 421 refusals, the server killed and restarted, the local disk
//! filling up, remote files and directories that cannot be read. For each:
//! the exit code and message are the documented ones, every file reported
//! copied is complete and byte-exact, no final name holds partial content,
//! and a rerun completes the mirror. (Data connections cut, reset or stalled
//! mid-file: tests/it/wan.rs.)

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::harness::{self, FtpServer, FtpServerKind, FtpTls};

/// Forwards `127.0.0.2:port` to `127.0.0.1:port` for each port; every
/// connection made so far can be cut at once.
struct Forwarder {
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Forwarder {
    fn start(ports: impl IntoIterator<Item = u16>) -> Forwarder {
        let live = Arc::new(Mutex::new(Vec::new()));
        for port in ports {
            let listener = TcpListener::bind(("127.0.0.2", port)).expect("bind 127.0.0.2");
            let live = Arc::clone(&live);
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else { continue };
                    let mut streams = live.lock().unwrap();
                    streams.push(client.try_clone().unwrap());
                    streams.push(server.try_clone().unwrap());
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    std::thread::spawn(move || pump(client, server));
                    std::thread::spawn(move || pump(s2, c2));
                }
            });
        }
        Forwarder { live }
    }

    /// Closes every connection made so far, both ways, at once.
    fn cut(&self) {
        for stream in self.live.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

fn ftp_url(server: &FtpServer, host: &str, path: &str) -> String {
    format!("ftp://{}@{host}:{}{path}", server.user, server.port)
}

/// `barge sync SRC DST --json --state <s/state.db>` with the FTP password
/// in BARGE_PASSWORD.
fn barge_sync(s: &Scratch, password: &str, src: &str, dst: &str, extra: &[&str]) -> Command {
    let mut cmd = s.barge();
    cmd.env("BARGE_PASSWORD", password)
        .env("HOME", s.path("home"))
        .env_remove("SSH_AUTH_SOCK")
        .args(["sync", src, dst, "--json", "--timeout", "10", "--state"])
        .arg(s.state())
        .args(extra);
    cmd
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn barge")
}

/// Waits until `dir` holds a barge temporary of at least `min_bytes`.
fn wait_for_partial(dir: &Path, min_bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while temporaries(dir).iter().filter_map(|t| fs::metadata(t).ok()).all(|m| m.len() < min_bytes) {
        assert!(Instant::now() < deadline, "no partial of {min_bytes} bytes appeared in {}", dir.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every path a run reported copied holds exactly the source's bytes, and
/// no final name in `dst` holds anything but a complete source file.
fn assert_nothing_partial(run: &Run, source: &BTreeMap<String, Vec<u8>>, dst: &Path) {
    for path in run.events("copy") {
        let got =
            fs::read(dst.join(&path)).unwrap_or_else(|e| panic!("reported copied {path}: {e}\n{}", run.explain()));
        assert!(source.get(&path) == Some(&got), "{path} was reported copied but differs\n{}", run.explain());
    }
    for entry in walkdir::WalkDir::new(dst).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()) {
        let rel = entry.path().strip_prefix(dst).unwrap().to_string_lossy().into_owned();
        if temporaries(dst).contains(&entry.path().to_path_buf()) {
            continue;
        }
        let got = fs::read(entry.path()).unwrap();
        assert!(source.get(&rel) == Some(&got), "{rel} holds partial or foreign content\n{}", run.explain());
    }
}

/// Files only, by relative path.
fn files_under(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned(), fs::read(e.path()).unwrap()))
        .collect()
}

fn assert_same_files(src: &Path, dst: &Path) {
    let (a, b) = (files_under(src), files_under(dst));
    let differ: Vec<&String> = a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).collect();
    assert!(differ.is_empty(), "{} and {} differ in {differ:?}", src.display(), dst.display());
}

#[test]
fn control_connection_cut_mid_file_fails_the_file_and_a_rerun_completes() {
    let server = harness::ftp_server_with(FtpServerKind::Vsftpd, FtpTls::None, &["pasv_address=127.0.0.2"]);
    // Control and data connections go through separate forwarders: only
    // the control connections are cut.
    let control = Forwarder::start([server.port]);
    let _data = Forwarder::start(server.pasv_ports.0..=server.pasv_ports.1);
    server.write_file("big.bin", &bytes(1, 16 << 20));
    server.write_file("small.txt", b"small");
    let source = files_under(&server.root);
    let s = Scratch::new();
    let dst = s.dst().to_string_lossy().into_owned();
    let cmd = barge_sync(
        &s,
        &server.password,
        &ftp_url(&server, "127.0.0.2", "/"),
        &dst,
        &["--bwlimit", "4M", "--retries", "0"],
    );
    let child = spawn(cmd);
    wait_for_partial(&s.dst(), 2 << 20);
    control.cut();
    let run = Run::of(child.wait_with_output().unwrap());
    run.expect_code(1);
    assert!(run.stderr.contains("big.bin"), "the failure names the file\n{}", run.explain());
    assert!(!s.dst().join("big.bin").exists(), "no final name for the cut file\n{}", run.explain());
    assert_nothing_partial(&run, &source, &s.dst());

    // The same job, straight to the server, finishes the mirror.
    let rerun =
        Run::of(barge_sync(&s, &server.password, &ftp_url(&server, "127.0.0.1", "/"), &dst, &[]).output().unwrap());
    rerun.expect_code(0);
    assert_same_files(&server.root, &s.dst());
    assert!(temporaries(&s.dst()).is_empty());
}

#[test]
fn a_421_storm_from_competing_jobs_still_delivers_every_file() {
    // Four sessions for three jobs of 16 transfers each: most logins are
    // refused with 421, and which ones depends on the other jobs.
    let server = harness::ftp_server_with(FtpServerKind::Vsftpd, FtpTls::None, &["max_clients=4"]);
    let jobs: Vec<(Scratch, String)> = (0..3)
        .map(|j| {
            let s = Scratch::new();
            for i in 0..60 {
                write(&s.src(), format!("d{}/f{i:02}.bin", i % 4), &bytes(j * 1000 + i, 30_000));
            }
            (s, ftp_url(&server, "127.0.0.1", &format!("/job{j}")))
        })
        .collect();
    let children: Vec<Child> = jobs
        .iter()
        .map(|(s, remote)| {
            spawn(barge_sync(s, &server.password, &s.src().to_string_lossy(), remote, &["--parallel", "16"]))
        })
        .collect();
    // A prober of its own shows the storm is real: some greetings are 421.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let (done, addr) = (Arc::clone(&done), server.addr());
        std::thread::spawn(move || {
            let mut refused = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut stream) = TcpStream::connect(addr) {
                    let mut code = [0u8; 3];
                    if stream.read_exact(&mut code).is_ok() && &code == b"421" {
                        refused += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            refused
        })
    };
    for (child, (s, remote)) in children.into_iter().zip(&jobs) {
        let run = Run::of(child.wait_with_output().unwrap());
        run.expect_code(0);
        assert_eq!(run.count("files_transferred"), 60, "{}", run.explain());
        let dir = remote.rsplit('/').next().unwrap();
        assert_same_files(&s.src(), &server.root.join(dir));
        assert!(temporaries(&server.root.join(dir)).is_empty());
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(prober.join().unwrap() > 0, "the server never refused a login: no storm");
}

#[test]
fn a_server_full_when_the_run_starts_is_asked_again_not_given_up_on() {
    // One session allowed, and someone else holds it for the first second:
    // barge's first login meets "421 There are too many connected users".
    let server = harness::ftp_server_with(FtpServerKind::Vsftpd, FtpTls::None, &["max_clients=1"]);
    server.write_file("a.txt", b"hello");
    // The harness's readiness probe may still hold the one session for a
    // moment (seen under load: the holder itself met 421): ask again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let holder = loop {
        let mut holder = TcpStream::connect(server.addr()).unwrap();
        let mut greeting = [0u8; 3];
        holder.read_exact(&mut greeting).unwrap();
        if &greeting == b"220" {
            break holder;
        }
        assert!(Instant::now() < deadline, "the server never had its one session free");
        std::thread::sleep(Duration::from_millis(100));
    };
    let s = Scratch::new();
    let (remote, dst) = (ftp_url(&server, "127.0.0.1", "/"), s.dst().to_string_lossy().into_owned());
    let started = Instant::now();
    let child = spawn(barge_sync(&s, &server.password, &remote, &dst, &["--retries", "5"]));
    std::thread::sleep(Duration::from_millis(800));
    drop(holder);
    let run = Run::of(child.wait_with_output().unwrap());
    run.expect_code(0);
    assert_eq!(run.count("files_transferred"), 1);
    assert!(started.elapsed() >= Duration::from_millis(800), "the server was never full");
    assert_eq!(fs::read(s.dst().join("a.txt")).unwrap(), b"hello");

    // Without retries the same refusal ends the run at once, naming it.
    let holder = TcpStream::connect(server.addr()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let s = Scratch::new();
    let run = barge_sync(&s, &server.password, &remote, &s.dst().to_string_lossy(), &["--retries", "0"])
        .output()
        .map(Run::of)
        .unwrap();
    drop(holder);
    run.expect_code(3);
    assert!(run.stderr.contains("421"), "{}", run.explain());
}

/// A vsftpd started by the test on the port of a harness server that was
/// killed: same configuration, same root. Killed (with its sessions) on drop.
struct Restarted(Child);

impl Restarted {
    fn start(server: &FtpServer) -> Restarted {
        let log = fs::File::create(server.dir().join("restarted.log")).unwrap();
        let child = Command::new(harness::bin("usr/sbin/vsftpd"))
            .arg(server.dir().join("vsftpd.conf"))
            .current_dir(server.dir())
            .stdin(Stdio::from(log.try_clone().unwrap()))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .unwrap();
        // Ready when it greets.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut stream) = TcpStream::connect(server.addr()) {
                let mut greeting = [0u8; 3];
                if stream.read_exact(&mut greeting).is_ok() && &greeting == b"220" {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "vsftpd did not restart:\n{}", server.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
        Restarted(child)
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        kill_server(self.0.id());
        kill_group(self.0.id());
        let _ = self.0.wait();
    }
}

/// SIGKILL to a process group: a server and the sessions it forked.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status();
}

#[test]
fn server_killed_mid_run_fails_cleanly_and_restarted_mid_run_is_survived() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    for i in 0..24 {
        server.write_file(&format!("d{}/f{i:02}.bin", i % 3), &bytes(i, 512 << 10));
    }
    let source = files_under(&server.root);
    let remote = ftp_url(&server, "127.0.0.1", "/");

    // Killed, and still down when the run ends: exit 1, each lost file
    // named, nothing partial under a final name.
    let s = Scratch::new();
    let dst = s.dst().to_string_lossy().into_owned();
    // Four at once, as below: with more in flight every byte can be in
    // the socket buffers before the kill (a loaded machine can time the
    // first round trip at 5 ms or more and start a "far" server at 32).
    let child = spawn(barge_sync(
        &s,
        &server.password,
        &remote,
        &dst,
        &["--bwlimit", "2M", "--retries", "1", "--parallel", "4"],
    ));
    wait_for_partial(&s.dst(), 64 << 10);
    kill_server(server.pid());
    let run = Run::of(child.wait_with_output().unwrap());
    run.expect_code(1);
    assert!(run.count("errors") > 0 && run.stderr.contains("f"), "{}", run.explain());
    assert_nothing_partial(&run, &source, &s.dst());

    // Back on the same port: the rerun completes the mirror.
    let restarted = Restarted::start(&server);
    barge_sync(&s, &server.password, &remote, &dst, &[]).output().map(Run::of).unwrap().expect_code(0);
    assert_same_files(&server.root, &s.dst());
    assert!(temporaries(&s.dst()).is_empty());

    // Killed and restarted within a run that has retries left: the run
    // itself completes.
    let s = Scratch::new();
    let dst = s.dst().to_string_lossy().into_owned();
    // Four at once: most files are still to be fetched when the server
    // goes away (with more in flight, the read-ahead and the socket buffers
    // can hold every byte before the kill).
    let child = spawn(barge_sync(
        &s,
        &server.password,
        &remote,
        &dst,
        &["--bwlimit", "2M", "--retries", "6", "--parallel", "4"],
    ));
    wait_for_partial(&s.dst(), 64 << 10);
    drop(restarted);
    std::thread::sleep(Duration::from_millis(300));
    let _restarted = Restarted::start(&server);
    let run = Run::of(child.wait_with_output().unwrap());
    run.expect_code(0);
    assert!(run.count("retries") > 0, "the restart went unnoticed\n{}", run.explain());
    assert_same_files(&server.root, &s.dst());
    assert!(temporaries(&s.dst()).is_empty());
}

/// A tmpfs of a few MiB, unmounted on drop.
pub(crate) struct SmallDisk(pub(crate) PathBuf);

impl SmallDisk {
    /// `None` (with the reason printed) where mounting is not permitted: only
    /// for non-root users; as root (CI) a failed mount fails the test.
    pub(crate) fn mount(dir: PathBuf, size: &str) -> Option<SmallDisk> {
        fs::create_dir_all(&dir).unwrap();
        let out =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&dir).output();
        match out {
            Ok(out) if out.status.success() => Some(SmallDisk(dir)),
            Ok(out) if is_root() => panic!("mount tmpfs as root: {}", String::from_utf8_lossy(&out.stderr)),
            Ok(out) => {
                eprintln!("SKIPPED: cannot mount a tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim());
                None
            }
            Err(err) => {
                eprintln!("SKIPPED: cannot run mount: {err}");
                None
            }
        }
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).output().unwrap();
        assert!(out.status.success(), "remount: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn local_disk_filling_up_fails_the_files_that_do_not_fit_and_a_rerun_completes() {
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    for i in 0..8 {
        server.write_file(&format!("small/f{i}.bin"), &bytes(i, 1 << 20));
    }
    server.write_file("big/large.bin", &bytes(99, 6 << 20));
    let source = files_under(&server.root);
    let s = Scratch::new();
    // 14 MiB of files onto an 8 MiB disk.
    let Some(disk) = SmallDisk::mount(s.path("disk"), "8m") else { return };
    let dst = disk.0.join("mirror");
    let dst_str = dst.to_string_lossy().into_owned();
    let remote = ftp_url(&server, "127.0.0.1", "/");
    let run = Run::of(barge_sync(&s, &server.password, &remote, &dst_str, &[]).output().unwrap());
    run.expect_code(1);
    assert!(run.stderr.contains("No space left on device"), "{}", run.explain());
    assert_eq!(run.count("retries"), 0, "a full disk is not worth retrying\n{}", run.explain());
    assert_nothing_partial(&run, &source, &dst);

    disk.resize("64m");
    let rerun = Run::of(barge_sync(&s, &server.password, &remote, &dst_str, &[]).output().unwrap());
    rerun.expect_code(0);
    assert_same_files(&server.root, &dst);
    assert!(temporaries(&dst).is_empty());
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A mirrored tree, then a file and a directory the server's user may not
/// read: the run names them and exits 1, deletes nothing because of them
/// even with --delete, and a rerun once they are readable again completes.
fn unreadable_remote_entries(root: &Path, remote: &str, password: &str, extra: &[&str]) {
    let s = Scratch::new();
    let dst = s.dst().to_string_lossy().into_owned();
    let sync = |flags: &[&str]| {
        let mut cmd = barge_sync(&s, password, remote, &dst, extra);
        Run::of(cmd.args(flags).output().unwrap())
    };
    sync(&[]).expect_code(0);
    assert_same_files(root, &s.dst());

    fs::write(root.join("denied.bin"), bytes(5, 200_000)).unwrap();
    chmod(&root.join("denied.bin"), 0o000);
    chmod(&root.join("locked"), 0o000);
    let run = sync(&["--delete"]);
    run.expect_code(1);
    assert!(run.stderr.contains("denied.bin") && run.stderr.contains("locked"), "{}", run.explain());
    assert!(run.stderr.to_lowercase().contains("permission denied"), "{}", run.explain());
    assert!(s.dst().join("locked/inner.txt").exists(), "deleted below an unreadable directory\n{}", run.explain());
    assert_eq!(run.count("files_deleted"), 0, "{}", run.explain());
    assert_eq!(fs::read(s.dst().join("denied.bin")).unwrap(), bytes(4, 100_000), "the old copy stays whole");
    assert_eq!(fs::read(s.dst().join("open.txt")).unwrap(), b"open");

    chmod(&root.join("denied.bin"), 0o644);
    chmod(&root.join("locked"), 0o755);
    sync(&["--delete"]).expect_code(0);
    assert_same_files(root, &s.dst());
    assert!(temporaries(&s.dst()).is_empty());
}

fn unreadable_fixture(write_file: impl Fn(&str, &[u8]) -> PathBuf) {
    write_file("open.txt", b"open");
    write_file("denied.bin", &bytes(4, 100_000));
    write_file("locked/inner.txt", b"inner");
}

#[test]
fn permission_denied_on_remote_ftp_entries() {
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    unreadable_fixture(|rel, data| server.write_file(rel, data));
    unreadable_remote_entries(&server.root, &ftp_url(&server, "127.0.0.1", "/"), &server.password, &[]);
}

#[test]
fn permission_denied_on_remote_sftp_entries() {
    let server = harness::ssh_server();
    unreadable_fixture(|rel, data| server.write_file(rel, data));
    let known_hosts = server.known_hosts.to_string_lossy().into_owned();
    let key = server.client_key.to_string_lossy().into_owned();
    unreadable_remote_entries(&server.root, &server.url(), "", &["--known-hosts", &known_hosts, "--identity", &key]);
}
