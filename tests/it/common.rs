//! Helpers for driving the real `barge` binary against temporary trees.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch area: `src/`, `dst/`, a state dir, all removed on drop.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().expect("tempdir") }
    }
    pub fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }
    pub fn dst(&self) -> PathBuf {
        self.dir.path().join("dst")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `barge <args...>` with XDG_STATE_HOME inside the scratch area.
    pub fn barge(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_barge"));
        cmd.env("XDG_STATE_HOME", self.dir.path().join("xdg-state")).env_remove("BARGE_PASSWORD");
        cmd
    }

    /// Runs `cmd`, killing it (and failing the test) after `limit`: for
    /// runs that would hang if barge were wrong. Output goes to files in
    /// the scratch area (nothing to drain while waiting), removed after.
    pub fn run_within(&self, cmd: Command, limit: std::time::Duration) -> Run {
        let child = self.spawn_to_files(cmd);
        self.wait_within(child, std::time::Instant::now(), limit)
    }

    /// Runs `cmd`, sends it SIGTERM after `after`, and waits for it as
    /// [`Scratch::run_within`] does, at most `limit` from the signal: the
    /// run, and how long it took to end after the signal.
    pub fn run_stopped(
        &self,
        cmd: Command,
        after: std::time::Duration,
        limit: std::time::Duration,
    ) -> (Run, std::time::Duration) {
        let child = self.spawn_to_files(cmd);
        std::thread::sleep(after);
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let signalled = std::time::Instant::now();
        let run = self.wait_within(child, signalled, limit);
        (run, signalled.elapsed())
    }

    fn spawn_to_files(&self, mut cmd: Command) -> std::process::Child {
        cmd.stdout(fs::File::create(self.path("barge.out")).unwrap())
            .stderr(fs::File::create(self.path("barge.err")).unwrap())
            .stdin(std::process::Stdio::null());
        cmd.spawn().expect("run barge")
    }

    /// Waits for `child` (spawned by [`Scratch::spawn_to_files`]) until
    /// `limit` after `since`, then kills it and fails the test.
    fn wait_within(
        &self,
        mut child: std::process::Child,
        since: std::time::Instant,
        limit: std::time::Duration,
    ) -> Run {
        let (out, err) = (self.path("barge.out"), self.path("barge.err"));
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if since.elapsed() > limit {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!(
                    "barge still running after {limit:?}\n--- stderr\n{}",
                    String::from_utf8_lossy(&fs::read(&err).unwrap_or_default())
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let run = Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&fs::read(&out).unwrap()).into_owned(),
            stderr: String::from_utf8_lossy(&fs::read(&err).unwrap()).into_owned(),
        };
        fs::remove_file(out).unwrap();
        fs::remove_file(err).unwrap();
        run
    }

    /// `barge sync src dst --state state --json <extra...>`
    pub fn sync(&self, extra: &[&str]) -> Run {
        let mut cmd = self.barge();
        cmd.arg("sync").arg(self.src()).arg(self.dst()).arg("--state").arg(self.state()).arg("--json").args(extra);
        Run::of(cmd.output().expect("run barge"))
    }
}

/// A finished run: exit code, stdout JSON lines, stderr.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Every stdout line as JSON (panics on a line that is not).
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}\n{}", self.explain())))
            .collect()
    }

    /// The final summary object.
    pub fn summary(&self) -> serde_json::Value {
        let last = self.json().pop().unwrap_or_else(|| panic!("no output\n{}", self.explain()));
        assert_eq!(last["type"], "summary", "last line is not the summary\n{}", self.explain());
        last
    }

    pub fn count(&self, key: &str) -> u64 {
        self.summary()[key].as_u64().unwrap_or_else(|| panic!("no {key} in summary\n{}", self.explain()))
    }

    /// Paths of the JSON events of one type.
    pub fn events(&self, kind: &str) -> Vec<String> {
        self.json().iter().filter(|v| v["type"] == kind).map(|v| v["path"].as_str().unwrap_or("").to_string()).collect()
    }

    pub fn explain(&self) -> String {
        format!("exit code {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }

    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit code\n{}", self.explain());
        self
    }
}

/// Writes a file, creating its parents.
pub fn write(root: &Path, rel: impl AsRef<OsStr>, content: &[u8]) {
    let path = root.join(rel.as_ref());
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(&path, content).expect("write");
}

pub fn set_mtime(path: &Path, secs: u64) {
    let file = fs::File::options().write(true).open(path).or_else(|_| fs::File::open(path)).expect("open");
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    file.set_times(fs::FileTimes::new().set_modified(time)).expect("set mtime");
}

/// What a tree holds: per relative path, "dir", or "file:<blake3>" with its
/// mtime in nanoseconds, for exact comparisons.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Node {
    Dir { mtime_ns: i128 },
    File { hash: String, mtime_ns: i128 },
    Link,
}

pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.expect("walk");
        let rel = entry.path().strip_prefix(root).expect("prefix").as_os_str().as_bytes().to_vec();
        let meta = entry.path().symlink_metadata().expect("stat");
        let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        let node = if meta.is_dir() {
            Node::Dir { mtime_ns }
        } else if meta.file_type().is_symlink() {
            Node::Link
        } else {
            let bytes = fs::read(entry.path()).expect("read");
            Node::File { hash: blake3::hash(&bytes).to_hex().to_string(), mtime_ns }
        };
        out.insert(rel, node);
    }
    out
}

/// Asserts that `dst` mirrors `src` exactly (content and mtimes), printing
/// a readable diff when it does not.
pub fn assert_mirrors(src: &Path, dst: &Path) {
    let (a, b) = (snapshot(src), snapshot(dst));
    if a != b {
        let mut diff = String::new();
        for key in a.keys().chain(b.keys()).collect::<std::collections::BTreeSet<_>>() {
            let (x, y) = (a.get(key), b.get(key));
            if x != y {
                diff.push_str(&format!("  {}: src {x:?} / dst {y:?}\n", String::from_utf8_lossy(key)));
            }
        }
        panic!("{} does not mirror {}:\n{diff}", dst.display(), src.display());
    }
}

/// Files under `root` whose name looks like a barge temporary.
pub fn temporaries(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().as_bytes();
            name.starts_with(b".barge-") && (name.ends_with(b".part") || name.ends_with(b".segs"))
        })
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// Deterministic bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// SIGKILL to a server and every process descended from it: vsftpd's
/// sessions leave its process group, and a crash takes them all.
pub fn kill_server(pid: u32) {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
        let (Some(pid), Some(rest)) = (stat.split(' ').next(), stat.rsplit_once(')').map(|r| r.1)) else { continue };
        if let (Ok(pid), Some(Ok(ppid))) = (pid.parse(), rest.split_whitespace().nth(1).map(str::parse)) {
            parents.push((pid, ppid));
        }
    }
    let mut doomed = vec![pid];
    let mut i = 0;
    while i < doomed.len() {
        let parent = doomed[i];
        doomed.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        i += 1;
    }
    let _ = std::process::Command::new("kill").arg("-KILL").args(doomed.iter().map(u32::to_string)).status();
}

/// Regular files anywhere below `dir`.
pub fn files_in_tree(dir: &std::path::Path) -> usize {
    walkdir::WalkDir::new(dir).into_iter().flatten().filter(|e| e.file_type().is_file()).count()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Forwards TCP from `[::1]:port` to `127.0.0.1:port` for each port, so a
/// server listening on IPv4 loopback can be reached over IPv6. Threads end
/// with the process.
pub fn forward_ipv6_to_ipv4(ports: impl IntoIterator<Item = u16>) {
    use std::net::{TcpListener, TcpStream};
    fn pump(mut from: TcpStream, mut to: TcpStream) {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    }
    for port in ports {
        let listener = TcpListener::bind(("::1", port)).expect("bind [::1]");
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else { continue };
                let (c2, s2) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                std::thread::spawn(move || pump(client, server));
                std::thread::spawn(move || pump(s2, c2));
            }
        });
    }
}

/// 100 MiB that differ in every MiB (cheap to make, hard to fake): the
/// large file of the resume tests.
pub fn big_content() -> Vec<u8> {
    let block = bytes(99, 1 << 20);
    let mut out = Vec::with_capacity(100 << 20);
    for i in 0u32..100 {
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&block[4..]);
    }
    out
}

/// Waits until `watch` holds a barge temporary of at least `min_bytes`,
/// then SIGKILLs `child` and reaps it. Panics after `within`.
pub fn kill_once_partial(mut child: std::process::Child, watch: &Path, min_bytes: u64, within: std::time::Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let partial = temporaries(watch).first().and_then(|t| fs::metadata(t).ok()).map_or(0, |m| m.len());
        if partial >= min_bytes {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no partial temporary appeared in {}", watch.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// A download with `--delete` from a hostile server whose every directory
/// holds one more named `name`, and `fine.txt` ("fine") at its root, into
/// a destination holding `stray.txt`; `download` runs barge. The walk must
/// stop within a minute at barge's cap, with an error saying `said` that
/// names the directory it did not list; the rest is mirrored, nothing is
/// deleted (exit 5) and nothing is written beside the destination.
pub fn an_endless_tree_is_cut(name: &str, said: &str, download: impl FnOnce(&Scratch) -> Run) {
    let s = Scratch::new();
    write(&s.dst(), "stray.txt", b"must survive --delete");
    let started = std::time::Instant::now();
    let run = download(&s);
    println!("endless tree of {}-byte names: {:?}", name.len(), started.elapsed());
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());
    run.expect_code(5);
    assert!(run.stderr.contains("deletions held back"), "{}", run.explain());
    let line = run.stderr.lines().find(|l| l.contains(said)).unwrap_or_else(|| panic!("{}", run.explain()));
    // Named by its path, cut to a readable start when the path is longer
    // than any barge keeps (the length-cap case).
    let named = format!("{name}/{name}/");
    let start = &named[..named.len().min(240)];
    assert!(line.contains(&format!("source {start}")), "the directory is named: {line}");
    assert!(line.len() < 2048, "a readable length: {} bytes", line.len());
    assert_eq!(fs::read(s.dst().join("fine.txt")).unwrap(), b"fine");
    assert!(s.dst().join("stray.txt").exists(), "{}", run.explain());
    // Below the root only the chain of `name` directories, no file.
    // (Paths beyond PATH_MAX cannot be walked by name: left out.)
    for entry in walkdir::WalkDir::new(s.dst()).min_depth(1).into_iter().filter_map(Result::ok) {
        let found = entry.path().strip_prefix(s.dst()).unwrap().to_string_lossy().into_owned();
        assert!(
            ["fine.txt", "stray.txt"].contains(&found.as_str()) || found.split('/').all(|c| c == name),
            "unexpected {found}"
        );
    }
    for entry in fs::read_dir(s.dir.path()).unwrap() {
        let entry = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(["dst", "home", "xdg-state"].contains(&entry.as_str()) || entry.starts_with("state.db"), "{entry}");
    }
}
