//! Server processes, instance directories, port allocation and readiness probes.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// Ports per allocated block: `base` = control/SSH port, `base+1..=base+PASV_PORTS` passive.
const BLOCK: u16 = 128;
/// Size of each FTP server's passive port range.
pub(crate) const PASV_PORTS: u16 = 100;
/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Start attempts (a failed start is usually a lost race for a port).
const ATTEMPTS: usize = 4;

/// A fresh instance directory: mode 0755 (so the login user can reach `root/`), with an
/// empty `root/` owned by the test user.
pub(crate) fn instance_dir(prefix: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(instance_base()).expect("create instance temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    let root = dir.path().join("root");
    fs::create_dir(&root).expect("mkdir root");
    super::give_to_test_user(&root);
    (dir, root)
}

/// `std::env::temp_dir()` unless one of its ancestors is closed to other users
/// (e.g. TMPDIR under /root), then `/tmp`.
fn instance_base() -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let tmp = std::env::temp_dir();
        let tmp = tmp.canonicalize().unwrap_or(tmp);
        let open = tmp.ancestors().all(|p| fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
        if open { tmp } else { PathBuf::from("/tmp") }
    })
    .clone()
}

/// A block of `BLOCK` consecutive ports on 127.0.0.1, the first `1 + PASV_PORTS` of
/// which were free a moment ago. Returns the first port.
pub(crate) fn port_block() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static START: OnceLock<u32> = OnceLock::new();
    let (lo, hi) = port_region();
    let slots = u32::from((hi - lo) / BLOCK);
    let start = *START.get_or_init(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        std::process::id().wrapping_mul(7919).wrapping_add(nanos)
    });
    for _ in 0..slots {
        let slot = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % slots;
        let base = lo + u16::try_from(slot).expect("slot") * BLOCK;
        if (base..=base + PASV_PORTS).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no free block of {BLOCK} ports in 127.0.0.1:{lo}..{hi}");
}

/// Ports we allocate from: 10000 up to the start of the kernel's ephemeral range (which
/// `connect()` and `bind(:0)` use), so no outgoing connection can steal them.
fn port_region() -> (u16, u16) {
    static REGION: OnceLock<(u16, u16)> = OnceLock::new();
    *REGION.get_or_init(|| {
        let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
        let mut it = range.split_whitespace().map(|s| s.parse::<u16>().ok());
        match (it.next().flatten(), it.next().flatten()) {
            (Some(low), _) if low >= 10000 + 20 * BLOCK => (10000, low),
            (_, Some(high)) if high <= 65535 - 20 * BLOCK => (high + 1, 65535),
            _ => (10000, 32000),
        }
    })
}

/// How to tell that a server accepts connections.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Probe {
    /// Reads a `220` greeting line.
    FtpGreeting,
    /// TCP connect only (implicit-TLS FTP; the harness has no TLS client).
    Connect,
    /// Reads an `SSH-2.0-` banner.
    SshBanner,
}

/// A running server process in its own process group, with its instance dir.
pub(crate) struct Daemon {
    name: String,
    child: Child,
    /// Stop with SIGTERM (then SIGKILL after a grace period) rather than SIGKILL at once.
    graceful: bool,
    // Dropped (deleted) after `Drop::drop` has stopped the process.
    dir: TempDir,
    /// What started it, for [`Daemon::respawn`].
    program: PathBuf,
    args: Vec<OsString>,
    stdin_is_log: bool,
}

impl Daemon {
    /// Spawns `program args` in `dir` with stdout+stderr going to `dir/server.log`
    /// (and stdin too if `stdin_is_log`: vsftpd writes its fatal "500 OOPS" errors to fd 0).
    pub(crate) fn spawn<I, S>(name: &str, dir: TempDir, program: &Path, args: I, stdin_is_log: bool) -> Daemon
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Daemon::spawn_in_env(name, dir, program, args, stdin_is_log, &[])
    }

    /// [`Daemon::spawn`] with `env` added to the server's environment.
    pub(crate) fn spawn_in_env<I, S>(
        name: &str,
        dir: TempDir,
        program: &Path,
        args: I,
        stdin_is_log: bool,
        env: &[(&str, &str)],
    ) -> Daemon
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let log = File::create(dir.path().join("server.log")).expect("create server.log");
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
        let child = launch(name, dir.path(), program, &args, stdin_is_log, env, log);
        Daemon {
            name: name.to_string(),
            child,
            graceful: true,
            dir,
            program: program.to_path_buf(),
            args,
            stdin_is_log,
        }
    }

    /// Stops the server and starts the same program again in the same instance
    /// directory (its logs kept) with `env` added to its environment: a restart by
    /// its administrator. Wait for it with [`Daemon::wait_ready`].
    pub(crate) fn respawn(&mut self, env: &[(&str, &str)]) {
        self.stop();
        let log = File::options().append(true).create(true).open(self.dir.path().join("server.log"));
        let log = log.expect("open server.log");
        self.child = launch(&self.name, self.dir.path(), &self.program, &self.args, self.stdin_is_log, env, log);
    }

    /// Stop with SIGKILL right away (proftpd takes ~0.4 s to act on SIGTERM).
    pub(crate) fn kill_on_drop(&mut self) {
        self.graceful = false;
    }

    /// The instance directory.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Server process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `server.log` and every other `*.log` file of the instance, concatenated.
    pub(crate) fn logs(&self) -> String {
        let mut files: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "log"));
        files.sort_by_key(|p| (!p.ends_with("server.log"), p.clone()));
        let mut out = String::new();
        for f in files {
            let text = fs::read(&f).map(|b| String::from_utf8_lossy(&b).into_owned());
            let text = text.unwrap_or_else(|e| format!("<{e}>"));
            out.push_str(&format!("--- {} ---\n{text}\n", f.display()));
        }
        out
    }

    /// Waits until the server on 127.0.0.1:`port` passes `probe`.
    pub(crate) fn wait_ready(&mut self, port: u16, probe: Probe) -> Result<(), StartError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(StartError::Exited(format!(
                    "{} exited during startup ({status})\n{}",
                    self.name,
                    self.logs()
                )));
            }
            if Instant::now() > deadline {
                return Err(StartError::Fatal(format!(
                    "{} not ready on {addr} after {READY_TIMEOUT:?}\n{}",
                    self.name,
                    self.logs()
                )));
            }
            if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                match probe_stream(stream, probe) {
                    Probed::Ready => {
                        // Someone else may own the port while our server failed to bind.
                        sleep(Duration::from_millis(2));
                        if let Ok(None) = self.child.try_wait() {
                            return Ok(());
                        }
                    }
                    Probed::NotYet => {}
                    Probed::Wrong(line) => {
                        return Err(StartError::Fatal(format!(
                            "{} on {addr} answered {line:?} instead of a greeting\n{}",
                            self.name,
                            self.logs()
                        )));
                    }
                }
            }
            sleep(Duration::from_millis(5));
        }
    }
}

enum Probed {
    Ready,
    NotYet,
    Wrong(String),
}

fn probe_stream(stream: TcpStream, probe: Probe) -> Probed {
    let expected = match probe {
        Probe::Connect => return Probed::Ready,
        Probe::FtpGreeting => "220",
        Probe::SshBanner => "SSH-2.0-",
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(n) if n > 0 && line.starts_with(expected) => Probed::Ready,
        Ok(n) if n > 0 => Probed::Wrong(line),
        _ => Probed::NotYet,
    }
}

/// Starts `program args` in `dir`, in a process group of its own, its output
/// (and stdin, if `stdin_is_log`) on `log`.
fn launch(
    name: &str,
    dir: &Path,
    program: &Path,
    args: &[OsString],
    stdin_is_log: bool,
    env: &[(&str, &str)],
    log: File,
) -> Child {
    let stdin = if stdin_is_log { Stdio::from(log.try_clone().expect("dup log")) } else { Stdio::null() };
    Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(stdin)
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name} ({}): {e}", program.display()))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Daemon {
    /// Stops the process and what is left of its group.
    fn stop(&mut self) {
        let pgid = self.child.id();
        if let Ok(None) = self.child.try_wait() {
            signal_group(if self.graceful { "TERM" } else { "KILL" }, pgid);
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                match self.child.try_wait() {
                    Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(5)),
                    Ok(None) => {
                        let _ = self.child.kill();
                        let _ = self.child.wait();
                        break;
                    }
                    _ => break,
                }
            }
            // Session processes left in the group (a group id is not reused while it
            // has members, so this cannot hit a stranger).
            signal_group("KILL", pgid);
        }
    }
}

fn signal_group(signal: &str, pgid: u32) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Why a start attempt failed.
pub(crate) enum StartError {
    /// The process died (typically: lost a race for a port); worth another attempt.
    Exited(String),
    /// Anything else; retrying would not help.
    Fatal(String),
}

/// Runs `attempt` until it succeeds, retrying [`StartError::Exited`] failures; panics
/// with the server logs otherwise.
pub(crate) fn start_with_retries<T>(what: &str, mut attempt: impl FnMut() -> Result<T, StartError>) -> T {
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        match attempt() {
            Ok(v) => return v,
            Err(StartError::Exited(msg)) => last = msg,
            Err(StartError::Fatal(msg)) => panic!("starting {what} failed: {msg}"),
        }
    }
    panic!("starting {what} failed {ATTEMPTS} times; last failure: {last}");
}
