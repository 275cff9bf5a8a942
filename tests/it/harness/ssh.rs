//! OpenSSH sshd instances (SFTP via `internal-sftp`).

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::{Daemon, Probe, StartError, instance_dir, port_block, start_with_retries};
use super::{KEY_PASSPHRASE, TEST_PASSWORD, TEST_USER, bin, cache_dir, ensure_installed};

/// A running sshd. Dropping it stops the server and deletes its files.
pub struct SshServer {
    /// Always "127.0.0.1".
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// Login name ([`TEST_USER`]).
    pub user: String,
    /// Password accepted for [`user`](Self::user) (password authentication is on).
    pub password: Option<String>,
    /// The server's host key, OpenSSH public-key format: `ssh-ed25519 AAAA...`.
    pub host_key_pub: String,
    /// known_hosts file with `[127.0.0.1]:port` and `[localhost]:port` entries.
    pub known_hosts: PathBuf,
    /// Unencrypted ed25519 private key (OpenSSH format) authorized for login.
    pub client_key: PathBuf,
    /// Public half of [`client_key`](Self::client_key), `ssh-ed25519 AAAA... comment`.
    pub client_key_pub: String,
    /// ed25519 private key encrypted with [`KEY_PASSPHRASE`], authorized for login.
    pub encrypted_client_key: PathBuf,
    /// Passphrase of [`encrypted_client_key`](Self::encrypted_client_key).
    pub key_passphrase: String,
    /// An empty directory owned by the user; use its absolute path in sftp URLs (no chroot).
    pub root: PathBuf,
    daemon: Daemon,
}

impl SshServer {
    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `sftp://bargetest@127.0.0.1:PORT/abs/path/of/root`.
    pub fn url(&self) -> String {
        format!("sftp://{}@{}:{}{}", self.user, self.host, self.port, self.root.display())
    }

    /// The instance directory (config, keys, logs, `root/`).
    pub fn dir(&self) -> &Path {
        self.daemon.dir()
    }

    /// Server pid.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// sshd's log (for assertion messages).
    pub fn logs(&self) -> String {
        self.daemon.logs()
    }

    /// Creates `rel` under [`root`](Self::root) (parents included) with `data`, owned by
    /// the login user. Returns the local path.
    pub fn write_file(&self, rel: &str, data: &[u8]) -> PathBuf {
        super::write_owned(&self.root, rel, data)
    }

    /// Creates directory `rel` under `root` (parents included), owned by the login user.
    pub fn create_dir(&self, rel: &str) -> PathBuf {
        let dir = self.root.join(rel.trim_start_matches('/'));
        super::create_dir_owned(&self.root, &dir);
        dir
    }
}

/// Starts sshd on a free 127.0.0.1 port with a fresh ed25519 host key and waits for
/// its banner. Panics (with its log) on failure.
pub fn ssh_server() -> SshServer {
    ssh_server_with(&[])
}

/// Like [`ssh_server`], with extra sshd_config lines. They are put *first*, because
/// sshd uses the first value it reads (e.g. `"PasswordAuthentication no"`).
pub fn ssh_server_with(extra: &[&str]) -> SshServer {
    ensure_installed();
    // Privilege-separation chroot; /run is a tmpfs, so it may be gone after a reboot.
    let privsep = Path::new("/run/sshd");
    if !privsep.is_dir() {
        fs::create_dir_all(privsep).expect("mkdir /run/sshd");
        fs::set_permissions(privsep, fs::Permissions::from_mode(0o755)).expect("chmod /run/sshd");
    }
    start_with_retries("sshd", || start_once(extra))
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())).trim().to_string()
}

fn start_once(extra: &[&str]) -> Result<SshServer, StartError> {
    let password_auth = !extra.iter().any(|l| {
        let words: Vec<String> = l.split_whitespace().map(str::to_ascii_lowercase).collect();
        words.len() == 2 && words[0] == "passwordauthentication" && words[1] == "no"
    });
    let (tmp, root) = instance_dir("barge-sshd-");
    let dir = tmp.path().to_path_buf();
    let port = port_block();

    let host_key = dir.join("ssh_host_ed25519_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "barge-test-host", "-f"])
        .arg(&host_key)
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    let pub_line = read_trimmed(&host_key.with_extension("pub"));
    let host_key_pub = pub_line.split_whitespace().take(2).collect::<Vec<_>>().join(" ");

    let known_hosts = dir.join("known_hosts");
    fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_key_pub}\n[localhost]:{port} {host_key_pub}\n"))
        .expect("write known_hosts");

    let keys = cache_dir().join("ssh");
    let client_key = keys.join("client_ed25519");
    let encrypted_client_key = keys.join("client_ed25519_encrypted");
    let client_key_pub = read_trimmed(&keys.join("client_ed25519.pub"));
    let encrypted_pub = read_trimmed(&keys.join("client_ed25519_encrypted.pub"));
    // sshd reads it as the user: must be world-readable.
    let authorized = dir.join("authorized_keys");
    fs::write(&authorized, format!("{client_key_pub}\n{encrypted_pub}\n")).expect("write authorized_keys");
    fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644)).expect("chmod authorized_keys");

    let mut config = String::new();
    for line in extra {
        config.push_str(line);
        config.push('\n');
    }
    config.push_str(&format!(
        "Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {dir}/sshd.pid
AuthorizedKeysFile {authorized}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers {TEST_USER}
Subsystem sftp internal-sftp
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 200
MaxSessions 200
LogLevel VERBOSE
",
        host_key = host_key.display(),
        dir = dir.display(),
        authorized = authorized.display(),
    ));
    let config_path = dir.join("sshd_config");
    fs::write(&config_path, config).expect("write sshd_config");

    // sshd re-executes itself, hence the absolute path; -e: log to stderr (server.log).
    let sshd = bin("usr/sbin/sshd");
    let args = ["-D".to_string(), "-e".to_string(), "-f".to_string(), config_path.display().to_string()];
    let mut daemon = Daemon::spawn("sshd", tmp, &sshd, args, false);
    daemon.wait_ready(port, Probe::SshBanner)?;
    Ok(SshServer {
        host: "127.0.0.1".into(),
        port,
        user: TEST_USER.into(),
        password: password_auth.then(|| TEST_PASSWORD.to_string()),
        host_key_pub,
        known_hosts,
        client_key,
        client_key_pub,
        encrypted_client_key,
        key_passphrase: KEY_PASSPHRASE.into(),
        root,
        daemon,
    })
}
