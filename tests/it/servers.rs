//! Smoke tests of the test-server harness: every server starts, lets the test user log
//! in and transfer files. Raw FTP over std `TcpStream`; TLS checked with `openssl
//! s_client` and end to end with `lftp`; SSH with OpenSSH's `ssh`/`sftp`.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::{
    self, FtpServer, FtpServerKind, FtpTls, SshServer, TEST_PASSWORD, TEST_USER, ftp_server, ftp_server_with,
    ssh_server, ssh_server_with,
};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A raw FTP control connection that keeps a transcript for failure messages.
struct Ftp<'a> {
    srv: &'a FtpServer,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    transcript: String,
}

impl<'a> Ftp<'a> {
    /// Connects and checks the 220 greeting.
    fn connect(srv: &'a FtpServer) -> Self {
        let stream = TcpStream::connect_timeout(&srv.addr(), TIMEOUT).expect("connect control");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut ftp =
            Ftp { srv, writer: stream.try_clone().unwrap(), reader: BufReader::new(stream), transcript: String::new() };
        ftp.expect_reply(220);
        ftp
    }

    /// Connects and logs in as the test user.
    fn login(srv: &'a FtpServer) -> Self {
        let mut ftp = Self::connect(srv);
        ftp.expect(&format!("USER {}", srv.user), 331);
        ftp.expect(&format!("PASS {}", srv.password), 230);
        ftp
    }

    fn fail(&self, msg: &str) -> ! {
        panic!(
            "{} ({:?}): {msg}\n--- transcript ---\n{}--- server logs ---\n{}",
            self.srv.kind.name(),
            self.srv.tls,
            self.transcript,
            self.srv.logs()
        );
    }

    /// Reads one (possibly multi-line) reply: (code, full text).
    fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        let mut code: Option<u16> = None;
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => self.fail("control connection closed"),
                Err(e) => self.fail(&format!("reading reply: {e}")),
                Ok(_) => {}
            }
            self.transcript.push_str("< ");
            self.transcript.push_str(&line);
            text.push_str(&line);
            let this: Option<u16> = line.get(..3).and_then(|c| c.parse().ok());
            let first = *code.get_or_insert_with(|| this.unwrap_or(0));
            // Last line: same code followed by a space (or a lone single-line reply).
            if this == Some(first) && line.as_bytes().get(3) != Some(&b'-') {
                return (first, text);
            }
        }
    }

    fn send(&mut self, cmd: &str) {
        let shown = if cmd.starts_with("PASS ") { "PASS ****" } else { cmd };
        self.transcript.push_str(&format!("> {shown}\n"));
        if let Err(e) = self.writer.write_all(format!("{cmd}\r\n").as_bytes()) {
            self.fail(&format!("sending {shown}: {e}"));
        }
    }

    fn cmd(&mut self, cmd: &str) -> (u16, String) {
        self.send(cmd);
        self.reply()
    }

    fn expect_reply(&mut self, code: u16) -> String {
        let (got, text) = self.reply();
        if got != code {
            self.fail(&format!("expected {code}, got {text:?}"));
        }
        text
    }

    fn expect(&mut self, cmd: &str, code: u16) -> String {
        self.send(cmd);
        self.expect_reply(code)
    }

    /// Expects a 1xx preliminary reply (150 or 125).
    fn expect_preliminary(&mut self, cmd: &str) {
        let (code, text) = self.cmd(cmd);
        if !(100..200).contains(&code) {
            self.fail(&format!("{cmd}: expected 1xx, got {text:?}"));
        }
    }

    fn check_pasv_port(&self, addr: SocketAddr) {
        let (lo, hi) = self.srv.pasv_ports;
        if !(lo..=hi).contains(&addr.port()) {
            self.fail(&format!("data port {addr} outside passive range {lo}-{hi}"));
        }
    }

    /// PASV; the server must advertise 127.0.0.1 and a port of its passive range.
    fn pasv(&mut self) -> TcpStream {
        let text = self.expect("PASV", 227);
        let inner = text.split('(').nth(1).and_then(|s| s.split(')').next()).unwrap_or("");
        let n: Vec<u16> = inner.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        if n.len() != 6 {
            self.fail(&format!("unparsable PASV reply {text:?}"));
        }
        if n[..4] != [127, 0, 0, 1] {
            self.fail(&format!("PASV address is not 127.0.0.1: {text:?}"));
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], n[4] * 256 + n[5]));
        self.check_pasv_port(addr);
        self.data_connect(addr)
    }

    /// EPSV: `229 ... (|||port|)`.
    fn epsv(&mut self) -> TcpStream {
        let text = self.expect("EPSV", 229);
        let port = text.split("(|||").nth(1).and_then(|s| s.split('|').next()).and_then(|p| p.parse().ok());
        let Some(port) = port else { self.fail(&format!("unparsable EPSV reply {text:?}")) };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        self.check_pasv_port(addr);
        self.data_connect(addr)
    }

    fn data_connect(&self, addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect_timeout(&addr, TIMEOUT)
            .unwrap_or_else(|e| self.fail(&format!("data connection to {addr}: {e}")));
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s
    }

    /// `LIST` over a PASV data connection; returns the listing.
    fn list(&mut self) -> String {
        let mut data = self.pasv();
        self.expect_preliminary("LIST");
        let mut listing = String::new();
        if let Err(e) = data.read_to_string(&mut listing) {
            self.fail(&format!("reading LIST data: {e}"));
        }
        // Servers (proftpd) may wait for the client to close before they reply 226.
        drop(data);
        self.expect_reply(226);
        listing
    }

    /// `STOR name` over an EPSV data connection.
    fn stor(&mut self, name: &str, bytes: &[u8]) {
        let mut data = self.epsv();
        self.expect_preliminary(&format!("STOR {name}"));
        if let Err(e) = data.write_all(bytes) {
            self.fail(&format!("writing STOR data: {e}"));
        }
        let _ = data.shutdown(Shutdown::Write);
        drop(data);
        self.expect_reply(226);
    }
}

/// Full plain-FTP session: login, PWD, LIST of a fixture, STOR, SIZE, MKD, RNFR/RNTO,
/// DELE, QUIT, each checked against the server's replies and the local root.
fn plain_session(kind: FtpServerKind) {
    let srv = ftp_server(kind, FtpTls::None);
    let fixture = srv.write_file("hello.txt", b"hello from the harness\n");
    assert_eq!(fs::metadata(&fixture).unwrap().uid(), harness::test_user_ids().0);

    let mut ftp = Ftp::login(&srv);
    let pwd = ftp.expect("PWD", 257);
    if !pwd.contains("\"/\"") {
        ftp.fail(&format!("root is not \"/\": {pwd:?}"));
    }
    ftp.expect("TYPE I", 200);

    let listing = ftp.list();
    if !listing.contains("hello.txt") {
        ftp.fail(&format!("LIST lacks hello.txt: {listing:?}"));
    }

    let payload: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    ftp.stor("upload.bin", &payload);
    let uploaded = srv.root.join("upload.bin");
    assert_eq!(fs::read(&uploaded).unwrap(), payload, "uploaded bytes differ");
    assert_eq!(fs::metadata(&uploaded).unwrap().uid(), harness::test_user_ids().0, "upload owner");
    let size = ftp.expect("SIZE upload.bin", 213);
    assert_eq!(size.trim(), format!("213 {}", payload.len()));

    ftp.expect("MKD sub", 257);
    ftp.expect("RNFR upload.bin", 350);
    ftp.expect("RNTO sub/moved.bin", 250);
    assert_eq!(fs::read(srv.root.join("sub/moved.bin")).unwrap(), payload);
    assert!(!uploaded.exists());
    ftp.expect("DELE hello.txt", 250);
    assert!(!fixture.exists());
    ftp.expect("QUIT", 221);
}

/// A wrong password is refused with 530.
fn bad_password(kind: FtpServerKind) {
    let srv = ftp_server(kind, FtpTls::None);
    let mut ftp = Ftp::connect(&srv);
    ftp.expect(&format!("USER {}", srv.user), 331);
    ftp.expect("PASS wrong-password", 530);
}

/// Explicit TLS: plaintext login refused, `AUTH TLS` → 234, certificate verifies
/// against the test CA, and lftp can upload and list over TLS (data channel included).
fn explicit_tls(kind: FtpServerKind) {
    let srv = ftp_server(kind, FtpTls::Explicit);
    {
        let mut ftp = Ftp::connect(&srv);
        let (code, text) = ftp.cmd(&format!("USER {}", srv.user));
        if !(400..600).contains(&code) {
            ftp.fail(&format!("plaintext USER not refused: {text:?}"));
        }
    }
    {
        let mut ftp = Ftp::connect(&srv);
        ftp.expect("AUTH TLS", 234);
    }
    s_client_verifies(&srv, true);
    lftp_roundtrip(&srv);
}

/// Implicit TLS: the port speaks TLS at once with a certificate the CA verifies, and
/// lftp (ftps://) can upload and list.
fn implicit_tls(kind: FtpServerKind) {
    let srv = ftp_server(kind, FtpTls::Implicit);
    let out = s_client_verifies(&srv, false);
    assert!(out.contains("220"), "no FTP greeting inside TLS:\n{out}");
    lftp_roundtrip(&srv);
}

fn output_text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `openssl s_client` against the server (sending `QUIT` once connected, so the
/// greeting is captured and the server closes) and checks "Verify return code: 0".
fn s_client_verifies(srv: &FtpServer, starttls: bool) -> String {
    let mut cmd = Command::new("timeout");
    cmd.args(["10", "openssl", "s_client", "-connect", &srv.addr().to_string(), "-verify_return_error"])
        .args(["-ign_eof", "-verify_ip", "127.0.0.1", "-CAfile"])
        .arg(&srv.ca_cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if starttls {
        cmd.args(["-starttls", "ftp"]);
    }
    let mut child = cmd.spawn().expect("run openssl s_client");
    child.stdin.take().unwrap().write_all(b"QUIT\r\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    assert!(
        text.contains("Verify return code: 0 (ok)") && text.contains("221"),
        "{}: TLS handshake/verification failed:\n{text}\n{}",
        srv.kind.name(),
        srv.logs()
    );
    text
}

/// Uploads a file with lftp over TLS (control and data protected) and lists it.
fn lftp_roundtrip(srv: &FtpServer) {
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("src.txt");
    fs::write(&src, b"over tls\n").unwrap();
    let scheme = if srv.tls == FtpTls::Implicit { "ftps" } else { "ftp" };
    let script = format!(
        "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 10; \
         set ssl:ca-file {ca}; set ssl:verify-certificate yes; \
         set ftp:ssl-force yes; set ftp:ssl-protect-data yes; \
         open -u {user},{pw} {scheme}://127.0.0.1:{port}; put {src} -o tls.txt; cls -1",
        ca = srv.ca_cert.display(),
        user = srv.user,
        pw = srv.password,
        port = srv.port,
        src = src.display(),
    );
    let out = Command::new("lftp").args(["-c", &script]).stdin(Stdio::null()).output().expect("run lftp");
    let text = output_text(&out);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("tls.txt"),
        "{}: lftp over TLS failed:\n{text}\n{}",
        srv.kind.name(),
        srv.logs()
    );
    assert_eq!(fs::read(srv.root.join("tls.txt")).unwrap(), b"over tls\n");
}

#[test]
fn vsftpd_plain_session() {
    plain_session(FtpServerKind::Vsftpd);
}

#[test]
fn pure_ftpd_plain_session() {
    plain_session(FtpServerKind::PureFtpd);
}

#[test]
fn proftpd_plain_session() {
    plain_session(FtpServerKind::Proftpd);
}

#[test]
fn vsftpd_bad_password() {
    bad_password(FtpServerKind::Vsftpd);
}

#[test]
fn pure_ftpd_bad_password() {
    bad_password(FtpServerKind::PureFtpd);
}

#[test]
fn proftpd_bad_password() {
    bad_password(FtpServerKind::Proftpd);
}

#[test]
fn vsftpd_explicit_tls() {
    explicit_tls(FtpServerKind::Vsftpd);
}

#[test]
fn pure_ftpd_explicit_tls() {
    explicit_tls(FtpServerKind::PureFtpd);
}

#[test]
fn proftpd_explicit_tls() {
    explicit_tls(FtpServerKind::Proftpd);
}

#[test]
fn vsftpd_implicit_tls() {
    implicit_tls(FtpServerKind::Vsftpd);
}

#[test]
fn proftpd_implicit_tls() {
    implicit_tls(FtpServerKind::Proftpd);
}

#[test]
fn vsftpd_extra_config_is_applied() {
    // vsftpd hides dotfiles from a plain LIST unless force_dot_files=YES.
    for (extra, shown) in [(&[][..], false), (&["force_dot_files=YES"][..], true)] {
        let srv = ftp_server_with(FtpServerKind::Vsftpd, FtpTls::None, extra);
        srv.write_file(".hidden", b"x");
        let mut ftp = Ftp::login(&srv);
        let listing = ftp.list();
        if listing.contains(".hidden") != shown {
            ftp.fail(&format!("extra {extra:?}: LIST {listing:?}"));
        }
    }
}

#[test]
fn ftp_server_drop_stops_process_and_removes_files() {
    let srv = ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    let (pid, dir, addr) = (srv.pid(), srv.dir().to_path_buf(), srv.addr());
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(srv);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "server process still there");
    assert!(!dir.exists(), "instance dir not removed");
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "port still open");
}

#[test]
fn parallel_servers_get_distinct_ports() {
    let a = ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    let b = ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    assert_ne!(a.port, b.port);
    assert!(a.pasv_ports.1 < b.pasv_ports.0 || b.pasv_ports.1 < a.pasv_ports.0, "passive ranges overlap");
    assert_ne!(a.root, b.root);
}

// ---- sshd ----

/// `ssh`/`sftp` arguments shared by the tests: no user config, strict host checking
/// against the server's known_hosts file.
fn ssh_opts(srv: &SshServer) -> Vec<String> {
    vec![
        "-F".into(),
        "/dev/null".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", srv.known_hosts.display()),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        "ConnectTimeout=10".into(),
    ]
}

fn run_ssh(srv: &SshServer, args: &[String], askpass: Option<&str>) -> Output {
    let mut cmd = Command::new("ssh");
    cmd.args(ssh_opts(srv)).args(args).stdin(Stdio::null());
    let _keep;
    if let Some(secret) = askpass {
        // OpenSSH asks SSH_ASKPASS for passwords/passphrases when forced to.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("askpass");
        fs::write(&script, format!("#!/bin/sh\necho '{secret}'\n")).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        cmd.env("SSH_ASKPASS", &script).env("SSH_ASKPASS_REQUIRE", "force").env_remove("DISPLAY");
        _keep = dir;
    }
    cmd.output().expect("run ssh")
}

fn target(srv: &SshServer) -> String {
    format!("{}@127.0.0.1", srv.user)
}

#[test]
fn sshd_key_login() {
    let srv = ssh_server();
    let args: Vec<String> = vec![
        "-i".into(),
        srv.client_key.display().to_string(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-p".into(),
        srv.port.to_string(),
        target(&srv),
        "id -un".into(),
    ];
    let out = run_ssh(&srv, &args, None);
    assert!(out.status.success(), "ssh failed:\n{}\n{}", output_text(&out), srv.logs());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), TEST_USER);
    assert!(srv.known_hosts.is_file());
    assert!(srv.host_key_pub.starts_with("ssh-ed25519 "));
}

#[test]
fn sshd_unknown_host_key_is_rejected() {
    let srv = ssh_server();
    let empty = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("ssh")
        .args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", empty.path().display()))
        .arg("-i")
        .arg(&srv.client_key)
        .args(["-p", &srv.port.to_string(), &target(&srv), "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "connected without a known host key:\n{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"));
}

#[test]
fn sshd_password_login() {
    let srv = ssh_server();
    assert_eq!(srv.password.as_deref(), Some(TEST_PASSWORD));
    let args: Vec<String> = vec![
        "-o".into(),
        "PreferredAuthentications=password".into(),
        "-o".into(),
        "PubkeyAuthentication=no".into(),
        "-o".into(),
        "NumberOfPasswordPrompts=1".into(),
        "-p".into(),
        srv.port.to_string(),
        target(&srv),
        "echo logged-in".into(),
    ];
    let out = run_ssh(&srv, &args, Some(TEST_PASSWORD));
    assert!(out.status.success(), "password login failed:\n{}\n{}", output_text(&out), srv.logs());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "logged-in");
    let out = run_ssh(&srv, &args, Some("wrong-password"));
    assert!(!out.status.success(), "wrong password accepted");
}

#[test]
fn sshd_encrypted_key_login() {
    let srv = ssh_server();
    let args: Vec<String> = vec![
        "-i".into(),
        srv.encrypted_client_key.display().to_string(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "PreferredAuthentications=publickey".into(),
        "-p".into(),
        srv.port.to_string(),
        target(&srv),
        "true".into(),
    ];
    let out = run_ssh(&srv, &args, Some(&srv.key_passphrase));
    assert!(out.status.success(), "encrypted key login failed:\n{}\n{}", output_text(&out), srv.logs());
}

#[test]
fn sshd_password_auth_can_be_disabled() {
    let srv = ssh_server_with(&["PasswordAuthentication no"]);
    assert_eq!(srv.password, None);
    let args: Vec<String> = vec![
        "-o".into(),
        "PreferredAuthentications=password".into(),
        "-o".into(),
        "PubkeyAuthentication=no".into(),
        "-p".into(),
        srv.port.to_string(),
        target(&srv),
        "true".into(),
    ];
    let out = run_ssh(&srv, &args, Some(TEST_PASSWORD));
    assert!(!out.status.success(), "password accepted although disabled");
}

#[test]
fn sshd_sftp_batch() {
    let srv = ssh_server();
    srv.write_file("existing.txt", b"already here\n");
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("up.txt");
    fs::write(&src, b"via sftp\n").unwrap();
    let batch = local.path().join("batch");
    let root = srv.root.display();
    fs::write(
        &batch,
        format!("put {} {root}/up.txt\nmkdir {root}/d\nrename {root}/up.txt {root}/d/up.txt\nls -1 {root}\nls -1 {root}/d\n", src.display()),
    )
    .unwrap();
    let out = Command::new("sftp")
        .args(ssh_opts(&srv))
        .arg("-b")
        .arg(&batch)
        .arg("-i")
        .arg(&srv.client_key)
        .args(["-o", "IdentitiesOnly=yes", "-P", &srv.port.to_string(), &target(&srv)])
        .stdin(Stdio::null())
        .output()
        .expect("run sftp");
    let text = output_text(&out);
    assert!(out.status.success(), "sftp batch failed:\n{text}\n{}", srv.logs());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("existing.txt") && stdout.contains("up.txt"), "ls output:\n{text}");
    let uploaded = srv.root.join("d/up.txt");
    assert_eq!(fs::read(&uploaded).unwrap(), b"via sftp\n");
    assert_eq!(fs::metadata(&uploaded).unwrap().uid(), harness::test_user_ids().0);
    assert!(srv.url().ends_with(&srv.root.display().to_string()));
}

/// Prints how long each server takes to start and stop
/// (`cargo test --test it servers::server_start_times -- --ignored --nocapture`).
#[test]
#[ignore = "timing report, not a check"]
fn server_start_times() {
    use std::time::Instant;
    for kind in FtpServerKind::ALL {
        for tls in [FtpTls::None, FtpTls::Explicit, FtpTls::Implicit] {
            if tls == FtpTls::Implicit && !kind.supports_implicit_tls() {
                continue;
            }
            let t = Instant::now();
            let srv = ftp_server(kind, tls);
            let started = t.elapsed();
            let t = Instant::now();
            drop(srv);
            eprintln!("{} {tls:?}: start {started:?} drop {:?}", kind.name(), t.elapsed());
        }
    }
    let t = Instant::now();
    let srv = ssh_server();
    let started = t.elapsed();
    let t = Instant::now();
    drop(srv);
    eprintln!("sshd: start {started:?} drop {:?}", t.elapsed());
}
