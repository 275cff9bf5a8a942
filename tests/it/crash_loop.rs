//! Crash loop: 50 runs, alternating a download (proftpd → local) and an
//! upload (local → proftpd), each SIGKILLed at a random moment. After every
//! kill each final name on the destination must hold a complete version of
//! its source (by hash, against every version the source ever had), and a
//! normal rerun must give an exact mirror. The source changes randomly
//! between runs. `CRASH_LOOP_SEED=N` replays a run; the seed is printed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use crate::harness::{self, FtpServer, FtpServerKind, FtpTls};

const RUNS: usize = 50;
/// Above barge's resume threshold (8 MiB), so killed transfers resume.
const LARGE: usize = 9 << 20;

/// One side of a job that the test changes, and every version it had.
struct Source {
    root: PathBuf,
    /// Writes files owned by the server's user when the tree is served.
    server: Option<PathBuf>,
    versions: HashMap<String, HashSet<blake3::Hash>>,
}

impl Source {
    fn write(&mut self, rel: &str, data: &[u8]) {
        match &self.server {
            Some(root) => {
                let path = root.join(rel);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, data).unwrap();
                harness::give_to_test_user(&root.join(rel.split('/').next().unwrap()));
            }
            None => write(&self.root, rel, data),
        }
        self.versions.entry(rel.to_string()).or_default().insert(blake3::hash(data));
    }

    fn files(&self) -> Vec<String> {
        files_under(&self.root).into_keys().collect()
    }

    /// Adds, changes (always to another size, so mtime precision cannot
    /// hide it) and deletes a few files; now and then rewrites the large one.
    fn mutate(&mut self, rng: &mut fastrand::Rng, run: usize) {
        let existing = self.files();
        for _ in 0..rng.usize(1..6) {
            let rel = format!("d{}/f{}.bin", rng.usize(0..4), rng.usize(0..40));
            let old = fs::metadata(self.root.join(&rel)).map_or(0, |m| m.len() as usize);
            let len = (old + 1 + rng.usize(0..50_000)) % 200_000;
            self.write(&rel, &bytes(rng.u64(..), len));
        }
        for _ in 0..rng.usize(0..3) {
            if let Some(rel) = existing.get(rng.usize(0..existing.len().max(1)))
                && !rel.starts_with("large")
            {
                let _ = fs::remove_file(self.root.join(rel));
            }
        }
        if run.is_multiple_of(10) {
            let len = LARGE + rng.usize(0..1 << 20);
            self.write("large/big.bin", &bytes(rng.u64(..), len));
        }
    }
}

fn files_under(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| !is_temporary(e.path()))
        .map(|e| (e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned(), fs::read(e.path()).unwrap()))
        .collect()
}

fn is_temporary(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.starts_with(".barge-") && name.ends_with(".part")
}

/// Every final name under `dst` holds some version its source once had.
fn assert_only_complete_versions(dst: &Path, source: &Source, context: &str) {
    for (rel, content) in files_under(dst) {
        let known = source.versions.get(&rel).is_some_and(|v| v.contains(&blake3::hash(&content)));
        assert!(known, "{context}: {rel} ({} bytes) is not a complete version of its source", content.len());
    }
}

fn assert_exact_mirror(src: &Path, dst: &Path, context: &str) {
    let (a, b) = (files_under(src), files_under(dst));
    let differ: Vec<&String> = a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).collect();
    assert!(differ.is_empty(), "{context}: the rerun left differences in {differ:?}");
    assert!(temporaries(dst).is_empty(), "{context}: temporaries left: {:?}", temporaries(dst));
}

struct Job {
    src: String,
    dst: String,
    dst_root: PathBuf,
    state: PathBuf,
}

/// A sync of `job`. `--force`: the random changes sometimes empty a
/// directory on purpose, which the safety stop (tests/it/safety.rs) would
/// rightly hold back; this test is about kills, so the changes are trusted.
fn sync(s: &Scratch, server: &FtpServer, job: &Job) -> std::process::Command {
    let mut cmd = s.barge();
    cmd.env("BARGE_PASSWORD", &server.password)
        .args(["sync", &job.src, &job.dst, "--delete", "--force", "--json", "--timeout", "10", "--state"])
        .arg(&job.state);
    cmd
}

#[test]
fn fifty_random_sigkills_never_leave_a_partial_file_and_reruns_mirror_exactly() {
    let seed = std::env::var("CRASH_LOOP_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash loop seed: {seed} (CRASH_LOOP_SEED={seed} to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    let s = Scratch::new();
    let remote = |path: &str| format!("ftp://{}@127.0.0.1:{}/{path}", server.user, server.port);

    let down_root = server.root.join("down");
    harness::create_dir_owned(&server.root, &down_root);
    let mut down = Source { root: down_root.clone(), server: Some(down_root), versions: HashMap::new() };
    let mut up = Source { root: s.src(), server: None, versions: HashMap::new() };
    let download = Job {
        src: remote("down"),
        dst: s.path("down").to_string_lossy().into_owned(),
        dst_root: s.path("down"),
        state: s.path("down.db"),
    };
    let upload = Job {
        src: s.src().to_string_lossy().into_owned(),
        dst: remote("up"),
        dst_root: server.root.join("up"),
        state: s.path("up.db"),
    };

    let mut killed_mid_copy = 0;
    for run in 0..RUNS {
        let (job, source) = if run % 2 == 0 { (&download, &mut down) } else { (&upload, &mut up) };
        source.mutate(&mut rng, run / 2);
        let delay = Duration::from_millis(rng.u64(0..400));
        // Every other run the clock starts at the first copy reported
        // rather than at the start: on a loaded machine (the whole suite
        // at once) barge may not reach its first copy within 400 ms, and
        // kills before anything is copied prove little.
        let after_first_copy = run % 4 >= 2;
        let context = format!(
            "seed {seed}, run {run} ({}), killed {delay:?} after {}",
            job.dst,
            if after_first_copy { "the first copy" } else { "the start" }
        );
        let mut child = sync(&s, &server, job).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (copied_tx, copied_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut seen = String::new();
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
                if line.contains("\"type\":\"copy\"") && !seen.contains("\"type\":\"copy\"") {
                    let _ = copied_tx.send(());
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            seen
        });
        if after_first_copy {
            let _ = copied_rx.recv_timeout(Duration::from_secs(10));
        }
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if reader.join().unwrap().contains("\"type\":\"copy\"") {
            killed_mid_copy += 1;
        }
        if job.dst_root.exists() {
            assert_only_complete_versions(&job.dst_root, source, &context);
        }
        let rerun = Run::of(sync(&s, &server, job).output().unwrap());
        assert_eq!(rerun.code, 0, "{context}: the rerun failed\n{}", rerun.explain());
        assert_exact_mirror(&source.root, &job.dst_root, &context);
    }
    // Kills that land before anything is copied prove little: most must not.
    assert!(killed_mid_copy >= RUNS / 4, "seed {seed}: only {killed_mid_copy} kills came after a copy");
}
