//! Real FTP/FTPS/SFTP servers for integration tests, one instance per test.
//!
//! ```ignore
//! let srv = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::Explicit);
//! srv.write_file("dir/a.txt", b"hello"); // owned by the login user
//! // connect to 127.0.0.1:srv.port as srv.user / srv.password, trust srv.ca_cert
//! let ssh = harness::ssh_server();
//! // sftp://bargetest@127.0.0.1:{ssh.port}{ssh.root}, key ssh.client_key, ssh.known_hosts
//! ```
//!
//! # How it works
//!
//! * **Installation.** `tests/support/install.sh` (also run by `.ci/install-deps`) is run
//!   once per test process by [`ensure_installed`] (every constructor calls it; it returns
//!   in ~20 ms once its stamp file exists). vsftpd, pure-ftpd and proftpd all
//!   `Conflicts: ftp-server` as Debian packages, so they -- and openssh-server, to leave
//!   `/etc/ssh` alone -- are `apt-get download`ed and `dpkg -x`ed into the cache dir
//!   `${BARGE_TEST_SERVERS:-<repo>/target/test-servers}`; binaries run from
//!   `<cache>/root/usr/sbin/...`; only their shared libraries are apt-installed.
//! * **User.** Every server logs in the system user `bargetest` ([`TEST_USER`], password
//!   [`TEST_PASSWORD`], created by install.sh). vsftpd authenticates it through PAM
//!   (service `/etc/pam.d/barge-test`: pam_unix only) and chroots it into `local_root`;
//!   pure-ftpd uses a per-instance virtual-user puredb and proftpd a per-instance
//!   `AuthUserFile` (both: user `bargetest` mapped to bargetest's uid/gid, home = the
//!   instance root, chrooted); sshd uses /etc/shadow (`UsePAM no`) and keys.
//! * **Files.** Each instance has its own temp dir (mode 0755 so `bargetest` can reach
//!   into it) with config, pid file, logs (`*.log`) and `root/`, owned by `bargetest`.
//!   The tests run as root: files they create in `root` belong to root, which the FTP
//!   user can rename/delete (dir is its own) but not overwrite -- use
//!   [`FtpServer::write_file`]/[`give_to_test_user`] to create fixtures.
//! * **Ports.** Blocks of 128 ports from below the kernel's ephemeral range (so outgoing
//!   connections can never take them), start slot derived from pid + time, each port
//!   test-bound before use: port `base` is the control/SSH port, `base+1..=base+100` the
//!   passive range (passive address 127.0.0.1). A start that fails (e.g. bind race) is
//!   retried with a fresh block up to 4 times; on timeout/failure the test panics with
//!   the server's logs.
//! * **TLS.** install.sh makes a CA (`tls/ca.pem`, CA:TRUE, RSA 2048) and a leaf
//!   (`tls/server.pem` with key `tls/server.key`, CA:FALSE, SAN localhost, 127.0.0.1,
//!   ::1). [`FtpTls::Explicit`] and [`FtpTls::Implicit`] servers *require* TLS on
//!   control and data channels and require TLS session reuse on data connections
//!   (vsftpd `require_ssl_reuse=YES`, proftpd's default), like production servers.
//!   TLS 1.2 and 1.3 are offered (1.3 is negotiated by OpenSSL clients).
//! * **SSH keys.** Client keys are made once by install.sh (`ssh/client_ed25519`, and
//!   `ssh/client_ed25519_encrypted` with passphrase [`KEY_PASSPHRASE`]); each sshd gets
//!   a fresh ed25519 host key and a known_hosts file for it.
//! * **Stop.** Dropping a server sends SIGTERM to its process group (sessions included),
//!   SIGKILL after 2 s (proftpd: SIGKILL at once), then deletes the temp dir.
//! * **Timing** (2-core VM): install ~25 s the first time, ~30 ms afterwards; a server
//!   starts in 20-110 ms and stops in ~10-20 ms. Failed logins are slow on purpose in
//!   vsftpd (`delay_failed_login=1`, i.e. ~1 s) and pure-ftpd (~3 s, hard-coded).
//!
//! # Server capabilities (as configured here)
//!
//! | | vsftpd 3.0.3 | pure-ftpd 1.0.50 | proftpd 1.3.8 |
//! |---|---|---|---|
//! | explicit TLS | yes | yes | yes |
//! | implicit TLS | yes | **no** (not supported) | yes (`UseImplicitSSL`) |
//! | set mtime | `MDTM time path` | `MFMT`, `SITE UTIME` | `MFMT`, `SITE UTIME` |
//! | MLSD (lists dotfiles) | no | yes | yes |
//! | dotfiles in LIST | only with `LIST -a` | yes (`-D`) | only with `LIST -a` |
//! | concurrent sessions | unlimited | 50 (= passive ports / 2) | 200 |
//!
//! # Pitfalls met
//!
//! * vsftpd: runs fine as root with `listen=YES`, `background=NO`; needs
//!   `seccomp_sandbox=NO`, `allow_writeable_chroot=YES` (root is writable) and an
//!   existing empty root-owned `secure_chroot_dir`; `ssl_ciphers=HIGH` (its built-in
//!   default, DES-CBC3-SHA, is gone from OpenSSL 3). It writes fatal errors
//!   ("500 OOPS: ...") to fd 0, not stderr, so its stdin is the log file too. It refuses
//!   unknown or space-padded config lines.
//! * pure-ftpd: `pure-pw useradd` hashes with argon2id (~3 s, and ~1.8 s per login!),
//!   so the passwd line is written directly with a SHA-512 crypt hash and only
//!   `pure-pw mkdb` is run. No file logging (syslog only); stdout/stderr are captured.
//!   `-Y 3` = TLS required on control and data; `-2 cert,key`. It silently caps its
//!   client limit at half the passive range (hence 100 passive ports everywhere).
//! * proftpd: Debian builds mod_tls as a DSO (`LoadModule mod_tls.c`, `ModulePath`
//!   into the cache dir); `AuthUserFile` must not be world-readable; `DelayTable none`
//!   avoids mod_delay's login delays.
//! * sshd: needs an absolute path, the privsep user `sshd` and `/run/sshd` (created
//!   here); `StrictModes no` because the key files live in root-owned temp dirs;
//!   sshd_config is first-match-wins, so extra config lines are *prepended*.
#![allow(dead_code)] // The API serves many test modules; not all of it is used by each.

mod ftp;
mod process;
mod socks;
mod ssh;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub use ftp::{FtpServer, FtpServerKind, FtpTls, ftp_server, ftp_server_in_env, ftp_server_with};
pub use socks::socks_proxy;
pub use ssh::{SshAgent, SshServer, client_key, fingerprint, public_key, ssh_server, ssh_server_with};

/// A block of local ports that were free a moment ago and that no server of
/// the harness will take (e.g. for `--active-ports`).
pub fn free_port_range() -> std::ops::RangeInclusive<u16> {
    let base = process::port_block();
    base..=base + process::PASV_PORTS
}

/// Login name used by every test server.
pub const TEST_USER: &str = "bargetest";
/// Password of [`TEST_USER`] (must match `TEST_PASSWORD` in tests/support/install.sh).
pub const TEST_PASSWORD: &str = "barge-test-password";
/// Passphrase of [`SshServer::encrypted_client_key`].
pub const KEY_PASSPHRASE: &str = "test-passphrase";

/// The repository root.
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where install.sh puts binaries and TLS/SSH material:
/// `$BARGE_TEST_SERVERS` or `<repo>/target/test-servers` (absolute).
pub fn cache_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = match std::env::var_os("BARGE_TEST_SERVERS") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => repo_dir().join("target").join("test-servers"),
        };
        let dir = if dir.is_relative() { repo_dir().join(dir) } else { dir };
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        dir.canonicalize().unwrap_or(dir)
    })
    .clone()
}

/// Path of an unpacked server file, e.g. `bin("usr/sbin/vsftpd")`.
pub(crate) fn bin(rel: &str) -> PathBuf {
    cache_dir().join("root").join(rel)
}

/// The test CA certificate (PEM) that signed every FTPS server's certificate.
pub fn ca_cert() -> PathBuf {
    cache_dir().join("tls").join("ca.pem")
}

/// Runs `tests/support/install.sh` once per test process (serialised across processes
/// by a file lock); panics with its output if it fails.
pub fn ensure_installed() {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = RESULT.get_or_init(run_install) {
        panic!("{e}");
    }
}

fn run_install() -> Result<(), String> {
    let cache = cache_dir();
    // install.sh flocks `.lock` itself; this is a separate lock so the two never deadlock.
    let lock = File::create(cache.join(".harness-lock")).map_err(|e| format!("lock file: {e}"))?;
    lock.lock().map_err(|e| format!("locking {}: {e}", cache.display()))?;
    let script = repo_dir().join("tests/support/install.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("BARGE_TEST_SERVERS", &cache)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed ({}); it must run as root on Debian 12 (or run .ci/install-deps first)\n\
             --- stdout ---\n{}\n--- stderr ---\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// uid and gid of [`TEST_USER`].
pub fn test_user_ids() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        ensure_installed();
        let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        passwd
            .lines()
            .find_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                (f.len() >= 4 && f[0] == TEST_USER).then(|| (f[2].parse().expect("uid"), f[3].parse().expect("gid")))
            })
            .unwrap_or_else(|| panic!("user {TEST_USER} missing from /etc/passwd"))
    })
}

/// Recursively gives `path` (file or tree; symlinks themselves, not their targets) to
/// [`TEST_USER`], so the servers' login user can overwrite/delete what a test created.
pub fn give_to_test_user(path: &Path) {
    let (uid, gid) = test_user_ids();
    fn walk(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
        if fs::symlink_metadata(p)?.is_dir() {
            for entry in fs::read_dir(p)? {
                walk(&entry?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    walk(path, uid, gid).unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// Writes `data` to `root/rel` (creating parent dirs), all owned by [`TEST_USER`].
pub(crate) fn write_owned(root: &Path, rel: &str, data: &[u8]) -> PathBuf {
    let path = root.join(rel.trim_start_matches('/'));
    create_dir_owned(root, path.parent().expect("parent"));
    let mut f = File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(data).expect("write fixture");
    give_to_test_user(&path);
    path
}

/// Creates `dir` (an absolute path under `root`) and its missing parents, owned by
/// [`TEST_USER`].
pub(crate) fn create_dir_owned(root: &Path, dir: &Path) {
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) if p.starts_with(root) => cur = p,
            _ => break,
        }
    }
    for d in missing.iter().rev() {
        fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        give_to_test_user(d);
    }
}
