//! Secrets stay secret and what barge writes is owner-only.
//!
//! The server password is given by URL, `BARGE_PASSWORD`, `--password-env`
//! and `~/.netrc` (`$NETRC`) to real vsftpd, proftpd and sshd (password
//! login). During a throttled download /proc/PID/cmdline is sampled; after
//! it, stdout, stderr, the --log-file, the --report and every byte of the
//! state database (with its -wal/-shm/-journal files) are searched for the
//! password. A URL password is in the command line by nature: barge warns
//! about it instead. Runs go through `umask 0`, so every owner-only mode
//! seen is barge's own doing, not the test's umask.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::harness::{self, FtpServerKind, FtpTls};

/// Size of the throttled download: two seconds at `--bwlimit 1M`.
const SLOW_FILE: usize = 2 << 20;
const SMALL: &[u8] = b"small";

/// How the password reaches barge.
#[derive(Clone, Copy, Debug)]
enum PasswordFrom {
    Url,
    BargePassword,
    PasswordEnv,
    Netrc,
}

const EVERY_SOURCE: [PasswordFrom; 4] =
    [PasswordFrom::Url, PasswordFrom::BargePassword, PasswordFrom::PasswordEnv, PasswordFrom::Netrc];

/// A server with a tree to download: `slow.bin` and `dir/small.txt`.
struct Remote {
    scheme: &'static str,
    port: u16,
    user: String,
    password: String,
    /// The tree's path in URLs.
    path: String,
    /// Extra flags (sftp: --known-hosts).
    flags: Vec<String>,
}

impl Remote {
    fn url(&self, with_password: bool) -> String {
        let userinfo = if with_password { format!("{}:{}", self.user, self.password) } else { self.user.clone() };
        format!("{}://{userinfo}@127.0.0.1:{}{}", self.scheme, self.port, self.path)
    }
}

fn fill(write_file: impl Fn(&str, &[u8]) -> PathBuf) {
    write_file("slow.bin", &bytes(7, SLOW_FILE));
    write_file("dir/small.txt", SMALL);
}

/// What one watched run saw.
struct Watched {
    run: Run,
    /// /proc/PID/cmdline samples taken while barge ran.
    cmdlines: Vec<Vec<u8>>,
    /// Modes and lengths of barge temporaries seen in the destination while it ran.
    temps: Vec<(u32, u64)>,
}

/// Runs `barge sync REMOTE dst` under `umask 0`, sampling its command line
/// and the destination's temporaries until it exits.
fn watched_download(s: &Scratch, remote: &Remote, from: PasswordFrom) -> Watched {
    let mut cmd = Command::new("sh");
    // `exec` keeps the pid: the process sampled is barge itself.
    cmd.args(["-c", "umask 0; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_barge"))
        .env("XDG_STATE_HOME", s.path("xdg-state"))
        .env("HOME", s.path("home"))
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("BARGE_PASSWORD")
        .env_remove("NETRC")
        .arg("sync")
        .arg(remote.url(matches!(from, PasswordFrom::Url)))
        .arg(s.dst())
        .args(["--json", "-v", "--bwlimit", "1M", "--timeout", "20", "--log-file"])
        .arg(s.path("logs/barge.log"))
        .arg("--report")
        .arg(s.path("reports/report.json"))
        .args(&remote.flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    fs::create_dir_all(s.path("logs")).unwrap();
    fs::create_dir_all(s.path("reports")).unwrap();
    match from {
        PasswordFrom::Url => {}
        PasswordFrom::BargePassword => {
            cmd.env("BARGE_PASSWORD", &remote.password);
        }
        PasswordFrom::PasswordEnv => {
            cmd.env("MIRROR_SECRET", &remote.password).arg("--password-env").arg("MIRROR_SECRET");
        }
        PasswordFrom::Netrc => {
            let netrc = s.path("netrc");
            fs::write(&netrc, format!("machine 127.0.0.1 login {} password {}\n", remote.user, remote.password))
                .unwrap();
            cmd.env("NETRC", &netrc);
        }
    }
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    // Read through this directory, a sample fails once barge is gone
    // instead of reading whatever process takes its PID next.
    let proc_dir = fs::File::open(format!("/proc/{pid}")).unwrap();
    // Drain the pipes on threads so a chatty run never blocks on them.
    let output = std::thread::spawn(move || child.wait_with_output().unwrap());
    let (mut cmdlines, mut temps) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !output.is_finished() {
        assert!(Instant::now() < deadline, "barge did not finish in 60 s");
        if let Some(cmdline) = read_at(&proc_dir, c"cmdline")
            && !cmdline.is_empty()
        {
            cmdlines.push(cmdline);
        }
        if s.dst().exists() {
            for temp in temporaries(&s.dst()) {
                if let Ok(meta) = fs::metadata(&temp) {
                    temps.push((meta.permissions().mode() & 0o7777, meta.len()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Watched { run: Run::of(output.join().unwrap()), cmdlines, temps }
}

/// Every file barge may have written about the run: the whole scratch
/// area but the netrc the test wrote and the mirrored data.
fn files_barge_wrote(s: &Scratch) -> Vec<PathBuf> {
    walkdir::WalkDir::new(s.dir.path())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .filter(|p| *p != s.path("netrc") && !p.starts_with(s.dst()))
        .collect()
}

/// `name` read relative to the open directory `dir`; `None` once what it
/// names is gone.
fn read_at(dir: &fs::File, name: &std::ffi::CStr) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: openat on a directory descriptor this function borrows; the
    // descriptor it returns is owned by the File made from it.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut file = unsafe { fs::File::from_raw_fd(fd) };
    let mut out = Vec::new();
    file.read_to_end(&mut out).ok()?;
    Some(out)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).permissions().mode() & 0o7777
}

/// One download with the password from `from`; asserts the secret shows
/// nowhere and that barge's files are owner-only.
fn check(remote: &Remote, from: PasswordFrom) {
    let s = Scratch::new();
    let secret = remote.password.as_str();
    let watched = watched_download(&s, remote, from);
    let run = &watched.run;
    let context = format!("{}, password from {from:?}\n{}", remote.scheme, run.explain());
    run.expect_code(0);
    assert_eq!(fs::read(s.dst().join("slow.bin")).unwrap(), bytes(7, SLOW_FILE), "{context}");

    // Sampled long enough to mean something: the transfer takes seconds.
    assert!(watched.cmdlines.len() >= 10, "only {} samples of the command line\n{context}", watched.cmdlines.len());
    assert!(watched.cmdlines.iter().all(|c| contains(c, "sync")), "sampled another process\n{context}");
    let leaked = watched.cmdlines.iter().any(|c| contains(c, secret));
    match from {
        // In argv by the user's own hand: barge says so.
        PasswordFrom::Url => {
            assert!(leaked, "the URL password should be in argv (the test would prove nothing)\n{context}");
            assert!(run.stderr.contains("visible to other local users in the process list"), "{context}");
        }
        _ => assert!(!leaked, "the password is in /proc/PID/cmdline\n{context}"),
    }
    assert!(!contains(run.stdout.as_bytes(), secret), "password on stdout\n{context}");
    assert!(!contains(run.stderr.as_bytes(), secret), "password on stderr\n{context}");

    let written = files_barge_wrote(&s);
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    let state_files: Vec<&PathBuf> = written.iter().filter(|p| p.starts_with(s.path("xdg-state"))).collect();
    assert!(state_files.iter().any(|p| p.extension().is_some_and(|e| e == "db")), "no state db in {names:?}");
    assert!(written.contains(&s.path("logs/barge.log")) && written.contains(&s.path("reports/report.json")));
    for path in &written {
        let content = fs::read(path).unwrap();
        assert!(!contains(&content, secret), "the password is in {}\n{context}", path.display());
        assert_eq!(mode(path), 0o600, "{} is not owner-only\n{context}", path.display());
    }
    // The log really logs (searching an empty file would prove nothing).
    let log = fs::read_to_string(s.path("logs/barge.log")).unwrap();
    assert!(log.contains("slow.bin"), "the log lacks the copy:\n{log}");
    for dir in [s.path("xdg-state"), s.path("xdg-state/barge")] {
        assert_eq!(mode(&dir), 0o700, "{} is not owner-only", dir.display());
    }
    // Owner-only while written; a complete file gets its final mode just
    // before the rename, so only a complete one may be seen with another.
    assert!(watched.temps.iter().any(|(_, len)| *len > 0), "no temporary seen during the transfer\n{context}");
    let complete = [SLOW_FILE as u64, SMALL.len() as u64];
    let open: Vec<String> = watched
        .temps
        .iter()
        .filter(|(m, len)| *m != 0o600 && !complete.contains(len))
        .map(|(m, len)| format!("{m:o} at {len} bytes"))
        .collect();
    assert!(open.is_empty(), "temporaries readable by others while written: {open:?}\n{context}");
}

fn ftp_remote(kind: FtpServerKind) -> (harness::FtpServer, Remote) {
    let server = harness::ftp_server(kind, FtpTls::None);
    fill(|rel, data| server.write_file(rel, data));
    let remote = Remote {
        scheme: "ftp",
        port: server.port,
        user: server.user.clone(),
        password: server.password.clone(),
        path: "/".into(),
        flags: Vec::new(),
    };
    (server, remote)
}

#[test]
fn vsftpd_password_never_leaks_and_files_are_owner_only() {
    let (_server, remote) = ftp_remote(FtpServerKind::Vsftpd);
    for from in EVERY_SOURCE {
        check(&remote, from);
    }
}

#[test]
fn proftpd_password_never_leaks_and_files_are_owner_only() {
    let (_server, remote) = ftp_remote(FtpServerKind::Proftpd);
    for from in EVERY_SOURCE {
        check(&remote, from);
    }
}

#[test]
fn sftp_password_never_leaks_and_files_are_owner_only() {
    let server = harness::ssh_server();
    fill(|rel, data| server.write_file(rel, data));
    let remote = Remote {
        scheme: "sftp",
        port: server.port,
        user: server.user.clone(),
        password: server.password.clone().expect("the harness enables password logins"),
        path: server.root.display().to_string(),
        flags: vec!["--known-hosts".into(), server.known_hosts.display().to_string()],
    };
    for from in EVERY_SOURCE {
        check(&remote, from);
    }
}
