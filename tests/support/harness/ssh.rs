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
    /// Library options that log in to this server (its client key, its
    /// known_hosts).
    pub fn client_options(&self) -> barge::backend::RemoteOptions {
        let mut options = barge::backend::RemoteOptions::default();
        options.sftp.identity = Some(self.client_key.clone());
        options.sftp.known_hosts = Some(self.known_hosts.clone());
        options
    }

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

impl SshServer {
    /// Lets `public` (a `ssh-... AAAA...` line) log in; sshd reads the file at each login.
    pub fn authorize_key(&self, public: &str) {
        let path = self.dir().join("authorized_keys");
        let mut text = fs::read_to_string(&path).expect("read authorized_keys");
        text.push_str(public.trim());
        text.push('\n');
        fs::write(&path, text).expect("write authorized_keys");
    }

    /// sshd's `Accepted <method> for ...` log lines, in order: which login
    /// method (and, for keys, which key fingerprint) each session used.
    pub fn accepted_logins(&self) -> Vec<String> {
        // Not sshd's "Accepted key ... found at" lines, which precede the decision.
        self.logs().lines().filter(|l| l.contains("Accepted ") && l.contains(" for ")).map(str::to_string).collect()
    }
}

/// A fresh client key pair made by `ssh-keygen -t kind` (`-b bits` if given),
/// encrypted with `passphrase` unless it is empty. Returns the private key's path
/// (mode 0600; the public half is `path.pub`).
pub fn client_key(dir: &Path, name: &str, kind: &str, bits: Option<u32>, passphrase: &str) -> PathBuf {
    fs::create_dir_all(dir).expect("mkdir key dir");
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", name]);
    if let Some(bits) = bits {
        cmd.args(["-b", &bits.to_string()]);
    }
    let out = cmd.arg("-f").arg(&path).output().expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen -t {kind}: {}", String::from_utf8_lossy(&out.stderr));
    path
}

/// The public line (`ssh-... AAAA... comment`) of a key made by [`client_key`].
pub fn public_key(private: &Path) -> String {
    read_trimmed(&private.with_extension("pub"))
}

/// `SHA256:...` of a public key file, as sshd logs it.
pub fn fingerprint(public_file: &Path) -> String {
    let out =
        Command::new("ssh-keygen").args(["-l", "-E", "sha256", "-f"]).arg(public_file).output().expect("ssh-keygen");
    assert!(out.status.success(), "ssh-keygen -l: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).expect("fingerprint").to_string()
}

/// A private ssh-agent (`ssh-agent -D -a SOCK`), stopped on drop. Set
/// `SSH_AUTH_SOCK` to [`socket`](Self::socket) only for the processes that should see it.
pub struct SshAgent {
    pub socket: PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl SshAgent {
    /// Starts an agent holding no key.
    pub fn start() -> SshAgent {
        let dir = tempfile::tempdir().expect("agent dir");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run ssh-agent");
        let agent = SshAgent { socket, child, _dir: dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !agent.socket.exists() {
            assert!(std::time::Instant::now() < deadline, "ssh-agent made no socket");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        agent
    }

    /// `ssh-add KEY` (the key must be unencrypted, mode 0600).
    pub fn add(&self, private: &Path) {
        let out = Command::new("ssh-add")
            .arg(private)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run ssh-add");
        assert!(out.status.success(), "ssh-add {}: {}", private.display(), String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
