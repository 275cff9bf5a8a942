//! vsftpd, pure-ftpd and proftpd instances.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::process::{Daemon, PASV_PORTS, Probe, StartError, instance_dir, port_block, start_with_retries};
use super::{TEST_PASSWORD, TEST_USER, bin, ca_cert, cache_dir, ensure_installed, test_user_ids};

/// Which FTP server implementation to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FtpServerKind {
    /// vsftpd 3.0.3 (Debian 12).
    Vsftpd,
    /// pure-ftpd 1.0.50 (Debian 12).
    PureFtpd,
    /// proftpd 1.3.8 (Debian 12).
    Proftpd,
}

impl FtpServerKind {
    /// Every kind.
    pub const ALL: [FtpServerKind; 3] = [FtpServerKind::Vsftpd, FtpServerKind::PureFtpd, FtpServerKind::Proftpd];

    /// Short lowercase name ("vsftpd", "pure-ftpd", "proftpd").
    pub fn name(self) -> &'static str {
        match self {
            FtpServerKind::Vsftpd => "vsftpd",
            FtpServerKind::PureFtpd => "pure-ftpd",
            FtpServerKind::Proftpd => "proftpd",
        }
    }

    /// Whether [`FtpTls::Implicit`] is available (pure-ftpd has no implicit TLS).
    pub fn supports_implicit_tls(self) -> bool {
        self != FtpServerKind::PureFtpd
    }
}

/// TLS mode of an FTP server. With TLS, plaintext logins and data are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FtpTls {
    /// Plain FTP.
    None,
    /// `AUTH TLS` on the control port, then `PBSZ 0`/`PROT P` (both required).
    Explicit,
    /// TLS from the first byte (FTPS, "ftps://").
    Implicit,
}

/// A running FTP server. Dropping it stops the server and deletes its files.
pub struct FtpServer {
    /// Server implementation.
    pub kind: FtpServerKind,
    /// TLS mode.
    pub tls: FtpTls,
    /// Always "127.0.0.1".
    pub host: String,
    /// Control port (TLS from the first byte for [`FtpTls::Implicit`]).
    pub port: u16,
    /// Login name ([`TEST_USER`]).
    pub user: String,
    /// Login password ([`TEST_PASSWORD`]).
    pub password: String,
    /// Local directory the user sees as "/" (chroot); owned by the user.
    pub root: PathBuf,
    /// CA certificate (PEM) to trust for TLS; the server cert is for localhost/127.0.0.1.
    pub ca_cert: PathBuf,
    /// Inclusive passive port range (data connections go to 127.0.0.1).
    pub pasv_ports: (u16, u16),
    daemon: Daemon,
}

impl FtpServer {
    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The instance directory (config, logs, `root/`).
    pub fn dir(&self) -> &Path {
        self.daemon.dir()
    }

    /// Server pid.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// All of the server's logs (for assertion messages).
    pub fn logs(&self) -> String {
        self.daemon.logs()
    }

    /// Creates `rel` (relative to [`root`](Self::root), parents included) with `data`,
    /// owned by the login user. Returns the local path.
    pub fn write_file(&self, rel: &str, data: &[u8]) -> PathBuf {
        super::write_owned(&self.root, rel, data)
    }

    /// Stops the server and starts it again on the same port, root and configuration,
    /// with `env` added to its environment, as its administrator would restart it
    /// (`TZ`: the zone a server that lists local times shows them in).
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        let (port, probe) = (self.port, ready_probe(self.tls));
        let daemon = &mut self.daemon;
        start_with_retries(self.kind.name(), || {
            daemon.respawn(env);
            daemon.wait_ready(port, probe)
        });
    }

    /// Creates directory `rel` under `root` (parents included), owned by the login user.
    pub fn create_dir(&self, rel: &str) -> PathBuf {
        let dir = self.root.join(rel.trim_start_matches('/'));
        super::create_dir_owned(&self.root, &dir);
        dir
    }
}

/// Starts `kind` with `tls` on a free 127.0.0.1 port and waits until it accepts
/// connections. Panics (with the server's logs) if it cannot start, or for
/// pure-ftpd + [`FtpTls::Implicit`].
pub fn ftp_server(kind: FtpServerKind, tls: FtpTls) -> FtpServer {
    ftp_server_with(kind, tls, &[])
}

/// Like [`ftp_server`], with extra configuration: lines appended to vsftpd.conf or
/// proftpd.conf (later settings win), or extra command-line arguments for pure-ftpd.
/// An extra `MasqueradeAddress` or `TimesGMT` (proftpd) or `-P` (pure-ftpd) replaces
/// the default (passive address 127.0.0.1, times in UTC: for both servers the first
/// setting wins).
pub fn ftp_server_with(kind: FtpServerKind, tls: FtpTls, extra: &[&str]) -> FtpServer {
    ftp_server_in_env(kind, tls, extra, &[])
}

/// Like [`ftp_server_with`], with `env` added to the server's environment (`TZ`: the
/// zone a server that lists local times shows them in).
pub fn ftp_server_in_env(kind: FtpServerKind, tls: FtpTls, extra: &[&str], env: &[(&str, &str)]) -> FtpServer {
    assert!(tls != FtpTls::Implicit || kind.supports_implicit_tls(), "{} does not support implicit TLS", kind.name());
    ensure_installed();
    start_with_retries(kind.name(), || start_once(kind, tls, extra, env))
}

/// How to tell that a server with `tls` accepts connections.
fn ready_probe(tls: FtpTls) -> Probe {
    if tls == FtpTls::Implicit { Probe::Connect } else { Probe::FtpGreeting }
}

fn start_once(kind: FtpServerKind, tls: FtpTls, extra: &[&str], env: &[(&str, &str)]) -> Result<FtpServer, StartError> {
    let (tmp, root) = instance_dir(&format!("barge-{}-", kind.name()));
    let dir = tmp.path().to_path_buf();
    let port = port_block();
    let pasv = (port + 1, port + PASV_PORTS);
    let inst = Instance { dir: &dir, root: &root, port, pasv, tls, extra };
    let (program, args) = match kind {
        FtpServerKind::Vsftpd => vsftpd(&inst),
        FtpServerKind::PureFtpd => pure_ftpd(&inst),
        FtpServerKind::Proftpd => proftpd(&inst),
    };
    let mut daemon = Daemon::spawn_in_env(kind.name(), tmp, &program, &args, kind == FtpServerKind::Vsftpd, env);
    if kind == FtpServerKind::Proftpd {
        daemon.kill_on_drop();
    }
    daemon.wait_ready(port, ready_probe(tls))?;
    Ok(FtpServer {
        kind,
        tls,
        host: "127.0.0.1".into(),
        port,
        user: TEST_USER.into(),
        password: TEST_PASSWORD.into(),
        root,
        ca_cert: ca_cert(),
        pasv_ports: pasv,
        daemon,
    })
}

struct Instance<'a> {
    dir: &'a Path,
    root: &'a Path,
    port: u16,
    pasv: (u16, u16),
    tls: FtpTls,
    extra: &'a [&'a str],
}

fn tls_file(name: &str) -> String {
    cache_dir().join("tls").join(name).display().to_string()
}

fn write_file(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn vsftpd(i: &Instance) -> (PathBuf, Vec<String>) {
    let empty = i.dir.join("empty");
    fs::create_dir(&empty).expect("mkdir secure_chroot_dir");
    let mut c = String::new();
    let mut line = |s: String| {
        c.push_str(&s);
        c.push('\n');
    };
    for s in [
        "listen=YES",
        "listen_ipv6=NO",
        "background=NO",
        "listen_address=127.0.0.1",
        "anonymous_enable=NO",
        "local_enable=YES",
        "write_enable=YES",
        "local_umask=022",
        "pam_service_name=barge-test",
        "chroot_local_user=YES",
        "allow_writeable_chroot=YES",
        "seccomp_sandbox=NO",
        "pasv_enable=YES",
        "pasv_address=127.0.0.1",
        "port_enable=YES",
        "connect_from_port_20=NO",
        "max_clients=0",
        "max_per_ip=0",
        "use_localtime=NO",
        "mdtm_write=YES",
        "xferlog_enable=YES",
        "log_ftp_protocol=YES",
        "syslog_enable=NO",
    ] {
        line(s.to_string());
    }
    line(format!("listen_port={}", i.port));
    line(format!("local_root={}", i.root.display()));
    line(format!("secure_chroot_dir={}", empty.display()));
    line(format!("pasv_min_port={}", i.pasv.0));
    line(format!("pasv_max_port={}", i.pasv.1));
    line(format!("vsftpd_log_file={}", i.dir.join("vsftpd.log").display()));
    if i.tls != FtpTls::None {
        for s in [
            "ssl_enable=YES",
            "force_local_logins_ssl=YES",
            "force_local_data_ssl=YES",
            "require_ssl_reuse=YES",
            "ssl_ciphers=HIGH",
            "ssl_request_cert=NO",
            "debug_ssl=YES",
        ] {
            line(s.to_string());
        }
        line(format!("rsa_cert_file={}", tls_file("server.pem")));
        line(format!("rsa_private_key_file={}", tls_file("server.key")));
        if i.tls == FtpTls::Implicit {
            line("implicit_ssl=YES".into());
        }
    }
    for s in i.extra {
        line(s.to_string());
    }
    let conf = i.dir.join("vsftpd.conf");
    write_file(&conf, &c, 0o600);
    (bin("usr/sbin/vsftpd"), vec![conf.display().to_string()])
}

/// SHA-512 crypt hash of [`TEST_PASSWORD`] (for puredb and proftpd's AuthUserFile).
fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let out = Command::new("openssl")
            .args(["passwd", "-6", "-salt", "bargetestsalt", TEST_PASSWORD])
            .output()
            .expect("run openssl passwd");
        assert!(out.status.success(), "openssl passwd: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf8 hash").trim().to_string()
    })
}

fn pure_ftpd(i: &Instance) -> (PathBuf, Vec<String>) {
    let (uid, gid) = test_user_ids();
    // "/./" ends the chroot part of the home directory.
    let passwd = i.dir.join("pureftpd.passwd");
    let line = format!("{TEST_USER}:{}:{uid}:{gid}::{}/./::::::::::::\n", password_hash(), i.root.display());
    write_file(&passwd, &line, 0o600);
    let pdb = i.dir.join("pureftpd.pdb");
    let out = Command::new(bin("usr/bin/pure-pw"))
        .arg("mkdb")
        .arg(&pdb)
        .arg("-f")
        .arg(&passwd)
        .output()
        .expect("run pure-pw");
    assert!(out.status.success(), "pure-pw mkdb: {}", String::from_utf8_lossy(&out.stderr));
    let mut args: Vec<String> = vec![
        "-S".into(),
        format!("127.0.0.1,{}", i.port),
        "-p".into(),
        format!("{}:{}", i.pasv.0, i.pasv.1),
        "-l".into(),
        format!("puredb:{}", pdb.display()),
        "-A".into(), // chroot everyone
        "-E".into(), // no anonymous logins
        "-H".into(), // don't resolve host names
        "-D".into(), // list dotfiles
        "-U".into(),
        "133:022".into(),
        "-c".into(),
        "200".into(),
        "-C".into(),
        "200".into(),
        "-g".into(),
        i.dir.join("pure-ftpd.pid").display().to_string(),
        "-O".into(),
        format!("clf:{}", i.dir.join("transfer.log").display()),
    ];
    // The first -P wins: an extra one (a NAT'ed server's announced address) replaces ours.
    if !i.extra.iter().any(|a| a.starts_with("-P")) {
        args.extend(["-P".into(), "127.0.0.1".into()]);
    }
    if i.tls != FtpTls::None {
        // 3: TLS required on control and data connections.
        args.extend(["-Y".into(), "3".into(), "-2".into()]);
        args.push(format!("{},{}", tls_file("server.pem"), tls_file("server.key")));
    }
    args.extend(i.extra.iter().map(|s| s.to_string()));
    (bin("usr/sbin/pure-ftpd"), args)
}

fn proftpd(i: &Instance) -> (PathBuf, Vec<String>) {
    let (uid, gid) = test_user_ids();
    let d = i.dir.display();
    let passwd = i.dir.join("ftpd.passwd");
    let group = i.dir.join("ftpd.group");
    // proftpd refuses world-readable AuthUserFiles.
    write_file(&passwd, &format!("{TEST_USER}:{}:{uid}:{gid}::{}:/bin/sh\n", password_hash(), i.root.display()), 0o600);
    write_file(&group, &format!("{TEST_USER}:x:{gid}:\n"), 0o600);
    let mut c = format!(
        r#"ServerName "barge test proftpd"
ServerType standalone
DefaultServer on
Port {port}
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
User nobody
Group nogroup
Umask 022
PidFile {d}/proftpd.pid
ScoreboardFile {d}/proftpd.scoreboard
DelayTable none
WtmpLog off
UseReverseDNS off
SystemLog {d}/proftpd.log
TransferLog {d}/xfer.log
ModulePath {modules}
LoadModule mod_site_misc.c
LoadModule mod_tls.c
AuthOrder mod_auth_file.c
AuthUserFile {passwd}
AuthGroupFile {group}
RequireValidShell off
UseFtpUsers off
DefaultRoot ~
AllowOverwrite on
AllowStoreRestart on
AllowRetrieveRestart on
PassivePorts {p0} {p1}
{masquerade}
MaxInstances 200
{times_gmt}
"#,
        port = i.port,
        modules = bin("usr/lib/proftpd").display(),
        passwd = passwd.display(),
        group = group.display(),
        p0 = i.pasv.0,
        p1 = i.pasv.1,
        // The first MasqueradeAddress wins: an extra one replaces ours.
        masquerade =
            if i.extra.iter().any(|l| l.starts_with("MasqueradeAddress")) { "" } else { "MasqueradeAddress 127.0.0.1" },
        // The first TimesGMT wins too: an extra `TimesGMT off` lists local times.
        times_gmt = if i.extra.iter().any(|l| l.starts_with("TimesGMT")) { "" } else { "TimesGMT on" },
    );
    if i.tls != FtpTls::None {
        let _ = write!(
            c,
            "TLSEngine on\nTLSLog {d}/tls.log\nTLSProtocol TLSv1.2 TLSv1.3\n\
             TLSRSACertificateFile {}\nTLSRSACertificateKeyFile {}\n\
             TLSRequired on\nTLSVerifyClient off\nTLSRenegotiate none\n",
            tls_file("server.pem"),
            tls_file("server.key"),
        );
        if i.tls == FtpTls::Implicit {
            c.push_str("TLSOptions UseImplicitSSL\n");
        }
    }
    for s in i.extra {
        c.push_str(s);
        c.push('\n');
    }
    let conf = i.dir.join("proftpd.conf");
    write_file(&conf, &c, 0o600);
    (bin("usr/sbin/proftpd"), vec!["-n".into(), "-c".into(), conf.display().to_string()])
}
