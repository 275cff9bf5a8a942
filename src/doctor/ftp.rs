//! FTP and FTPS probes on a raw control connection: the exact greeting,
//! FEAT lines, PASV/EPSV replies and certificates are what the diagnosis
//! is made of, and the backend's FTP client hides them.
//!
//! Order: TCP connect, greeting (and which TLS mode the port speaks), FEAT,
//! TLS (certificate), login, PWD, EPSV, PASV (NAT), the root listing,
//! active mode, round trip, data-channel session reuse, then how many
//! logins the server accepts at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::cert::{self, CertInfo};
use super::firewall::{FirewallRule, port_list};
use super::{DoctorOptions, Probe, Report, show_duration, suggest_parallel};
use crate::backend::ftp::protocol::{
    PlainOrTls, Reply, ReplyReader, TlsMode, feature_lines, feature_names, listen, parse_epsv, parse_pasv, port_command,
};
use crate::backend::ftp::{conn, listing, tls as ftp_tls};
use crate::credentials::{self, Login};
use crate::location::RemoteLocation;

/// TLS for data connections: the control connection's configuration (its
/// session cache, which servers demanding session reuse check) and name.
#[derive(Clone)]
struct DataTls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

/// A raw control connection.
struct Control {
    stream: Option<PlainOrTls>,
    replies: ReplyReader,
    timeout: Duration,
    peer: SocketAddr,
    local: SocketAddr,
    /// The configuration of the control connection's TLS session (its cache
    /// holds the session data connections must resume).
    control_tls: Option<Arc<ClientConfig>>,
    /// Set once `PROT P` protects data connections.
    data_tls: Option<DataTls>,
}

impl Control {
    fn new(tcp: TcpStream, timeout: Duration) -> Result<Control, String> {
        tcp.set_nodelay(true).ok();
        let peer = tcp.peer_addr().map_err(|e| e.to_string())?;
        let local = tcp.local_addr().map_err(|e| e.to_string())?;
        Ok(Control {
            stream: Some(PlainOrTls::Plain(tcp)),
            replies: ReplyReader::default(),
            timeout,
            peer,
            local,
            control_tls: None,
            data_tls: None,
        })
    }

    /// A connection that is TLS from the first byte (implicit FTPS).
    fn implicit(tls: TlsStream<TcpStream>, config: Arc<ClientConfig>, timeout: Duration) -> Result<Control, String> {
        let peer = tls.get_ref().0.peer_addr().map_err(|e| e.to_string())?;
        let local = tls.get_ref().0.local_addr().map_err(|e| e.to_string())?;
        Ok(Control {
            stream: Some(PlainOrTls::Tls(Box::new(tls))),
            replies: ReplyReader::default(),
            timeout,
            peer,
            local,
            control_tls: Some(config),
            data_tls: None,
        })
    }

    async fn reply_within(&mut self, wait: Duration) -> Result<Reply, String> {
        let stream = self.stream.as_mut().ok_or_else(|| "the control connection is gone".to_string())?;
        match tokio::time::timeout(wait, self.replies.read(stream)).await {
            Err(_) => Err(format!("no reply within {}", show_duration(wait))),
            Ok(read) => read.map_err(|e| e.to_string()),
        }
    }

    /// Writes one command line without reading its reply.
    async fn send(&mut self, line: &str) -> std::io::Result<()> {
        let gone = || std::io::Error::new(std::io::ErrorKind::NotConnected, "the control connection is gone");
        let stream = self.stream.as_mut().ok_or_else(gone)?;
        let mut bytes = line.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\n");
        stream.write_all(&bytes).await?;
        stream.flush().await
    }

    async fn reply(&mut self) -> Result<Reply, String> {
        self.reply_within(self.timeout).await
    }

    /// Sends one command and reads its reply. Never put a secret in an
    /// error: the command text is not part of any message.
    async fn command(&mut self, line: &str) -> Result<Reply, String> {
        match tokio::time::timeout(self.timeout, self.send(line)).await {
            Err(_) => return Err("timed out sending a command".into()),
            Ok(Err(e)) => return Err(format!("connection failed: {e}")),
            Ok(Ok(())) => {}
        }
        self.reply().await
    }

    /// `AUTH TLS` done: the handshake on the control connection.
    async fn upgrade(&mut self, config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<(), HandshakeError> {
        let Some(PlainOrTls::Plain(tcp)) = self.stream.take() else {
            return Err(HandshakeError::Other("not a plain connection".into()));
        };
        let tls = handshake(tcp, Arc::clone(&config), name, self.timeout).await?;
        self.stream = Some(PlainOrTls::Tls(Box::new(tls)));
        self.control_tls = Some(config);
        Ok(())
    }

    fn tls_session(&self) -> Option<&rustls::ClientConnection> {
        match &self.stream {
            Some(PlainOrTls::Tls(s)) => Some(s.get_ref().1),
            _ => None,
        }
    }

    async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.command("QUIT")).await;
    }

    /// QUIT, then wait for the server to close: servers count a session
    /// until its process is gone, and the connection-limit probe comes next.
    async fn quit_and_wait(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.command("QUIT")).await;
        let _ = self.reply_within(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Why a TLS handshake failed.
#[derive(Debug)]
enum HandshakeError {
    /// The certificate was refused.
    Certificate(CertificateError),
    Other(String),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Certificate(e) => write!(f, "certificate refused: {e}"),
            HandshakeError::Other(e) => f.write_str(e),
        }
    }
}

async fn handshake(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    match tokio::time::timeout(timeout, TlsConnector::from(config).connect(name, tcp)).await {
        Err(_) => Err(HandshakeError::Other(format!("TLS handshake timed out after {}", show_duration(timeout)))),
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => {
            let rustls_error = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
            match rustls_error {
                Some(rustls::Error::InvalidCertificate(c)) => Err(HandshakeError::Certificate(c.clone())),
                Some(other) => Err(HandshakeError::Other(format!("TLS handshake failed: {other}"))),
                None => Err(HandshakeError::Other(format!("TLS handshake failed: {e}"))),
            }
        }
    }
}

async fn tcp_connect(addr: SocketAddr, wait: Duration) -> Result<(TcpStream, Duration), String> {
    let started = Instant::now();
    match tokio::time::timeout(wait, TcpStream::connect(addr)).await {
        Err(_) => Err(format!("no answer from {addr} within {}", show_duration(wait))),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Ok(Ok(tcp)) => Ok((tcp, started.elapsed())),
    }
}

/// What every connection of one diagnosis needs.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    host: String,
    shown: String,
    mode: TlsMode,
    login: Login,
    timeout: Duration,
    short: Duration,
}

impl Target {
    fn server_name(&self) -> Result<ServerName<'static>, String> {
        ServerName::try_from(self.host.clone()).map_err(|e| format!("{}: not a valid TLS server name: {e}", self.host))
    }

    /// TCP, greeting and TLS without reporting: for the connection-limit
    /// probe and the TLS-mode checks. `config` is the base configuration.
    async fn establish(&self, mode: TlsMode, config: &ClientConfig) -> Result<Control, String> {
        let (tcp, _) = tcp_connect(self.addr, self.timeout).await?;
        let name = self.server_name()?;
        if mode == TlsMode::Implicit {
            let config = ftp_tls::per_connection(config);
            let tls = handshake(tcp, Arc::clone(&config), name, self.timeout).await.map_err(|e| e.to_string())?;
            let mut ctl = Control::implicit(tls, config, self.timeout)?;
            expect_greeting(&mut ctl, self.short).await?;
            return Ok(ctl);
        }
        let mut ctl = Control::new(tcp, self.timeout)?;
        expect_greeting(&mut ctl, self.short).await?;
        if mode == TlsMode::Explicit {
            let reply = ctl.command("AUTH TLS").await?;
            if reply.code != 234 {
                return Err(reply.text());
            }
            ctl.upgrade(ftp_tls::per_connection(config), name).await.map_err(|e| e.to_string())?;
        }
        Ok(ctl)
    }

    /// A fresh logged-in session set up as the probes expect it (data
    /// protected under TLS, binary type): for a probe that must not run on
    /// a control connection an earlier one left out of step.
    async fn session(&self, config: &ClientConfig) -> Result<Control, String> {
        let mut ctl = self.establish(self.mode, config).await?;
        self.login(&mut ctl).await.map_err(|reply| reply.text())?;
        if self.mode != TlsMode::None {
            for command in ["PBSZ 0", "PROT P"] {
                let reply = ctl.command(command).await?;
                if reply.code / 100 != 2 {
                    return Err(format!("{command}: {}", reply.text()));
                }
            }
            if let (Ok(name), Some(config)) = (self.server_name(), &ctl.control_tls) {
                ctl.data_tls = Some(DataTls { config: Arc::clone(config), name });
            }
        }
        ctl.command("TYPE I").await?;
        Ok(ctl)
    }

    /// USER and PASS; the reply text on refusal (never the password).
    async fn login(&self, ctl: &mut Control) -> Result<Reply, Reply> {
        let fail = |text: String| Reply { code: 0, lines: vec![text] };
        let reply = ctl.command(&format!("USER {}", self.login.user)).await.map_err(fail)?;
        let reply = match reply.code {
            331 | 332 => {
                let password = self.login.password.as_ref().map_or("", |p| p.expose());
                ctl.command(&format!("PASS {password}")).await.map_err(fail)?
            }
            _ => reply,
        };
        if reply.code == 230 || reply.code == 202 { Ok(reply) } else { Err(reply) }
    }
}

async fn expect_greeting(ctl: &mut Control, wait: Duration) -> Result<Reply, String> {
    let reply = ctl.reply_within(wait).await?;
    if reply.code == 220 { Ok(reply) } else { Err(reply.text()) }
}

/// What the probes learnt, for the later ones and the summary.
#[derive(Default)]
struct Seen {
    features: Vec<String>,
    passive_ports: Vec<u16>,
    /// The address data connections went to (the control peer, or the
    /// announced address when it differs and answers).
    passive_host: Option<IpAddr>,
    passive_mode: Option<&'static str>,
    active: Option<(SocketAddr, &'static str)>,
    listing_data: Option<(Vec<u8>, bool)>,
}

impl Seen {
    fn has(&self, feature: &str) -> bool {
        // MLST in FEAT means MLSD too (RFC 3659; proftpd lists only MLST).
        let also = if feature.eq_ignore_ascii_case("MLSD") { "MLST" } else { feature };
        self.features.iter().any(|f| f.eq_ignore_ascii_case(feature) || f.eq_ignore_ascii_case(also))
    }
}

/// Runs the FTP probes, adding their lines to `report`.
pub async fn diagnose(remote: &RemoteLocation, options: &DoctorOptions, report: &mut Report) {
    let login = credentials::resolve(remote, &options.remote, "anonymous");
    let mode = TlsMode::of(remote.scheme, options.remote.ftp.explicit_tls);
    let shown = format!("{}:{}", conn::display_host(&remote.host), remote.port);
    let timeout = options.remote.timeout;

    // TCP connect.
    let addr = match tokio::time::timeout(timeout, tokio::net::lookup_host((remote.host.as_str(), remote.port))).await {
        Ok(Ok(mut addrs)) => addrs.next(),
        _ => None,
    };
    let Some(addr) = addr else {
        report.push(Probe::failed(
            "resolve",
            format!("{} has no address", remote.host),
            "check the host name (typo? DNS?)",
        ));
        return;
    };
    let target = Target {
        addr,
        host: remote.host.clone(),
        shown: shown.clone(),
        mode,
        login,
        timeout,
        short: options.short_wait(),
    };
    let (tcp, took) = match tcp_connect(addr, timeout).await {
        Ok(ok) => ok,
        Err(why) => {
            let advice = if why.contains("refused") {
                "nothing listens on that port, or a firewall rejects it: check the host and port (FTP 21, implicit FTPS 990)"
            } else {
                "a firewall drops the connection, or the host is down: outbound TCP to this port must be open"
            };
            report.push(Probe::failed("tcp connect", why, advice));
            return;
        }
    };
    report.push(Probe::ok("tcp connect", format!("{shown} ({addr}) in {}", show_duration(took))).took(took));
    report.firewall.push(FirewallRule::outbound(&remote.host, remote.port.to_string(), "control connection"));

    let verifying = match ftp_tls::base_config(&options.remote.ftp.tls) {
        Ok(config) => config,
        Err(e) => {
            report.push(Probe::failed("tls setup", e.to_string(), "check --ca-file"));
            return;
        }
    };
    let Some((mut ctl, mut seen, cert_ok)) = open_main(&target, tcp, &verifying, report).await else { return };
    let session_config = if cert_ok { verifying } else { insecure_config() };

    // Login.
    let started = Instant::now();
    match target.login(&mut ctl).await {
        Ok(reply) => report
            .push(Probe::ok("login", format!("as {}: {}", target.login.user, reply.first())).took(started.elapsed())),
        Err(reply) => {
            let text = reply.text();
            let lower = text.to_ascii_lowercase();
            let advice = if mode == TlsMode::None
                && ["encrypt", "tls", "ssl", "secure"].iter().any(|w| lower.contains(w))
            {
                format!(
                    "the server requires TLS: use ftpes://{shown}/ (explicit TLS), or ftps:// if it has an implicit-TLS port"
                )
            } else if reply.code == 421 {
                "the server refused the session (too many connections, or closing): try later or lower --parallel"
                    .to_string()
            } else {
                format!(
                    "the server refused user {}: check the user name and the password (given in the URL, \
                     --password-env VAR, BARGE_PASSWORD or ~/.netrc)",
                    target.login.user
                )
            };
            report.push(Probe::failed("login", text, advice));
            ctl.quit().await;
            return;
        }
    }
    if mode != TlsMode::None {
        for command in ["PBSZ 0", "PROT P"] {
            match ctl.command(command).await {
                Ok(reply) if reply.code / 100 == 2 => {}
                Ok(reply) => {
                    report.push(Probe::failed(
                        "data protection",
                        format!("{command}: {}", reply.text()),
                        "the server does not protect data connections with TLS; barge requires it with FTPS",
                    ));
                    return;
                }
                Err(why) => {
                    report.push(Probe::failed("data protection", why, "the control connection broke"));
                    return;
                }
            }
        }
        // Data connections resume the control connection's session: same
        // configuration, same cache.
        if let (Ok(name), Some(config)) = (target.server_name(), &ctl.control_tls) {
            ctl.data_tls = Some(DataTls { config: Arc::clone(config), name });
        }
    }
    match ctl.command("PWD").await {
        Ok(reply) if reply.code == 257 => report.push(Probe::ok("pwd", reply.first().to_string())),
        Ok(reply) => report.push(Probe::warning("pwd", reply.text(), "barge falls back to / as the home directory")),
        Err(why) => report.push(Probe::warning("pwd", why, "barge falls back to / as the home directory")),
    }
    let _ = ctl.command("TYPE I").await;

    let list_command = list_command(remote, seen.has("MLSD"));
    probe_epsv(&mut ctl, &list_command, &mut seen, report).await;
    probe_pasv(&mut ctl, &list_command, options, &mut seen, report).await;
    probe_listing(&seen, report);
    if probe_active(&mut ctl, &list_command, options, &mut seen, report).await == Step::OutOfStep {
        // A refused connection back leaves the server's LIST pending: its
        // late reply would answer the next command. The probes after it
        // get a session of their own.
        match target.session(&session_config).await {
            Ok(fresh) => std::mem::replace(&mut ctl, fresh).quit().await,
            Err(why) => {
                report.push(Probe::warning(
                    "round trip",
                    format!("a new session after the active-mode probe failed: {why}"),
                    "the round trip could not be measured",
                ));
                ctl.quit().await;
                return;
            }
        }
    }
    let rtt = probe_rtt(&mut ctl, report).await;
    if mode != TlsMode::None {
        probe_session_reuse(&mut ctl, &list_command, &session_config, &seen, report).await;
    }
    ctl.quit_and_wait().await;
    let (accepted, capped) = probe_connections(&target, &session_config, options, report).await;
    if let Some(rtt) = rtt {
        let parallel = suggest_parallel(rtt, accepted, capped);
        report.suggested_parallel = Some(parallel);
        report.push(Probe::ok(
            "suggested parallel",
            format!(
                "--parallel {parallel} (round trip {}, {accepted} login(s) accepted{})",
                show_duration(rtt),
                if capped { ", the server's cap" } else { "" }
            ),
        ));
    }
    firewall_rules(remote, options, &seen, report);
}

/// A configuration that accepts any certificate, to go on probing past a
/// refused one (the refusal is reported; the session is then not trusted).
fn insecure_config() -> ClientConfig {
    let options = ftp_tls::TlsOptions { ca_file: None, insecure: true };
    match ftp_tls::base_config(&options) {
        Ok(config) => config,
        // Building the insecure configuration reads no file: it cannot fail.
        Err(_) => ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth(),
    }
}

/// `MLSD` or `LIST` of the location's directory.
fn list_command(remote: &RemoteLocation, mlsd: bool) -> String {
    let verb = if mlsd { "MLSD" } else { "LIST" };
    let path = String::from_utf8_lossy(&remote.path).into_owned();
    let path = match path.strip_prefix("/~") {
        Some(rest) => rest.trim_start_matches('/').to_string(),
        None => path,
    };
    if path.is_empty() || path == "/" && !mlsd { verb.to_string() } else { format!("{verb} {path}") }
}

/// Greeting, FEAT and TLS on the main connection, each reported.
/// Returns the connection, what FEAT said and whether the certificate was
/// accepted.
async fn open_main(
    target: &Target,
    tcp: TcpStream,
    verifying: &ClientConfig,
    report: &mut Report,
) -> Option<(Control, Seen, bool)> {
    let shown = &target.shown;
    let mut seen = Seen::default();
    let mut cert_ok = true;
    let name = match target.server_name() {
        Ok(name) => name,
        Err(why) => {
            report.push(Probe::failed("tls", why, "use a host name or IP address"));
            return None;
        }
    };
    let started = Instant::now();
    let mut ctl = if target.mode == TlsMode::Implicit {
        let config = ftp_tls::per_connection(verifying);
        match handshake(tcp, Arc::clone(&config), name.clone(), target.timeout).await {
            Ok(tls) => {
                report.push(Probe::ok("tls mode", format!("implicit TLS on port {}", target.addr.port())));
                report_certificate(tls.get_ref().1, &target.host, true, report);
                let mut ctl = match Control::implicit(tls, config, target.timeout) {
                    Ok(ctl) => ctl,
                    Err(why) => {
                        report.push(Probe::failed("greeting", why, "the connection broke at once"));
                        return None;
                    }
                };
                match ctl.reply_within(target.short).await {
                    Ok(reply) if reply.code == 220 => {
                        report.push(Probe::ok("greeting", reply.first().to_string()).took(started.elapsed()));
                    }
                    Ok(reply) => {
                        report.push(Probe::failed("greeting", reply.text(), "the server refuses new sessions"));
                        return None;
                    }
                    Err(why) => {
                        report.push(Probe::failed("greeting", why, "no greeting inside TLS"));
                        return None;
                    }
                }
                ctl
            }
            Err(HandshakeError::Certificate(err)) => {
                report.push(Probe::ok("tls mode", format!("implicit TLS on port {}", target.addr.port())));
                cert_ok = false;
                let insecure = insecure_config();
                let ctl = target.establish(TlsMode::Implicit, &insecure).await;
                report_refused_certificate(&err, target, ctl.as_ref().ok().and_then(|c| c.tls_session()), report);
                match ctl {
                    Ok(ctl) => ctl,
                    Err(_) => return None,
                }
            }
            Err(HandshakeError::Other(why)) => {
                // A plain greeting on this port: it is not an implicit one.
                let plain = target.establish(TlsMode::None, verifying).await;
                let advice = if plain.is_ok() {
                    format!(
                        "this port answers plain FTP: it is an explicit-TLS port, not an implicit one. Use \
                         ftpes://{shown}/ (AUTH TLS on this port), or ftps:// with the implicit port (usually 990)"
                    )
                } else {
                    "check that this port serves FTPS with implicit TLS (usually 990)".to_string()
                };
                report.push(Probe::failed("tls mode", format!("ftps:// (implicit TLS): {why}"), advice));
                return None;
            }
        }
    } else {
        let mut ctl = match Control::new(tcp, target.timeout) {
            Ok(ctl) => ctl,
            Err(why) => {
                report.push(Probe::failed("greeting", why, "the connection broke at once"));
                return None;
            }
        };
        match ctl.reply_within(target.short).await {
            Ok(reply) if reply.code == 220 => {
                report.push(Probe::ok("greeting", reply.first().to_string()).took(started.elapsed()));
            }
            Ok(reply) => {
                let text = reply.text();
                let advice = if text.starts_with("SSH-") {
                    format!("this is an SSH server: use sftp://{shown}/")
                } else if reply.code == 421 {
                    "the server refuses new sessions now (connection limit reached, or shutting down)".to_string()
                } else {
                    "this does not look like an FTP server".to_string()
                };
                report.push(Probe::failed("greeting", text, advice));
                return None;
            }
            Err(why) => {
                // Silence: a server that waits for a TLS ClientHello?
                let implicit = target.establish(TlsMode::Implicit, &insecure_config()).await;
                let (measured, advice) = if implicit.is_ok() {
                    (
                        format!("no plain greeting ({why}); this port speaks implicit TLS"),
                        format!("use ftps://{shown}/ (implicit TLS) instead of {}://", target.mode.scheme().as_str()),
                    )
                } else {
                    (why, "the server does not greet: is this an FTP port?".to_string())
                };
                report.push(Probe::failed("greeting", measured, advice));
                return None;
            }
        }
        ctl
    };
    // FEAT, before login as the RFC allows (retried after login otherwise).
    match ctl.command("FEAT").await {
        Ok(reply) if reply.code == 211 => {
            seen.features = feature_names(&reply);
            report.push(features_probe(&seen, &reply));
        }
        Ok(reply) => report.push(Probe::warning(
            "features",
            format!("FEAT: {}", reply.text()),
            "the server lists no features: barge uses LIST, PASV and MDTM",
        )),
        Err(why) => {
            report.push(Probe::failed("features", why, "the control connection broke"));
            return None;
        }
    }
    if target.mode == TlsMode::Explicit {
        let reply = match ctl.command("AUTH TLS").await {
            Ok(reply) => reply,
            Err(why) => {
                report.push(Probe::failed("tls mode", why, "the control connection broke"));
                return None;
            }
        };
        if reply.code != 234 {
            report.push(Probe::failed(
                "tls mode",
                format!("AUTH TLS: {}", reply.text()),
                "the server does not offer explicit TLS on this port: use ftp:// (no encryption) or ftps:// on its \
                 implicit-TLS port (usually 990)",
            ));
            return None;
        }
        match ctl.upgrade(ftp_tls::per_connection(verifying), name).await {
            Ok(()) => {
                report.push(Probe::ok("tls mode", format!("explicit (AUTH TLS) on port {}", target.addr.port())));
                if let Some(session) = ctl.tls_session() {
                    report_certificate(session, &target.host, true, report);
                }
            }
            Err(HandshakeError::Certificate(err)) => {
                report.push(Probe::ok("tls mode", format!("explicit (AUTH TLS) on port {}", target.addr.port())));
                cert_ok = false;
                let insecure = insecure_config();
                let again = target.establish(TlsMode::Explicit, &insecure).await;
                report_refused_certificate(&err, target, again.as_ref().ok().and_then(|c| c.tls_session()), report);
                ctl = again.ok()?;
            }
            Err(HandshakeError::Other(why)) => {
                report.push(Probe::failed("tls mode", why, "the TLS handshake after AUTH TLS failed"));
                return None;
            }
        }
    } else if target.mode == TlsMode::None && seen.has("AUTH") {
        report.push(Probe::warning(
            "tls mode",
            "none: the password and data travel in clear, yet the server offers AUTH TLS",
            format!("use ftpes://{shown}/ to encrypt the session"),
        ));
    }
    Some((ctl, seen, cert_ok))
}

/// Which of the features barge uses the server offers.
fn features_probe(seen: &Seen, reply: &Reply) -> Probe {
    let wanted = ["MLSD", "MFMT", "HASH", "REST STREAM", "UTF8", "EPSV", "AUTH TLS"];
    let (have, missing): (Vec<&str>, Vec<&str>) = wanted.iter().partition(|w| seen.has(w));
    let mut measured = format!("offers {}", if have.is_empty() { "none".into() } else { have.join(", ") });
    if !missing.is_empty() {
        measured.push_str(&format!("; lacks {}", missing.join(", ")));
    }
    if !seen.has("MLSD") {
        measured.push_str(" (listings via LIST)");
    }
    Probe::ok("features", measured).details(serde_json::json!({
        "feat": feature_lines(reply).collect::<Vec<_>>(),
        "offered": have,
        "missing": missing,
    }))
}

/// The certificate of a verified (or `--insecure`) handshake.
fn report_certificate(session: &rustls::ClientConnection, host: &str, verified: bool, report: &mut Report) {
    let info = session.peer_certificates().and_then(|chain| chain.first()).and_then(|der| CertInfo::parse(der));
    let protocol = session.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
    let suite = session.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default();
    let Some(info) = info else {
        report.push(Probe::warning("tls certificate", "no readable certificate", "the server sent none we can read"));
        return;
    };
    let details = serde_json::json!({"certificate": info, "protocol": protocol, "cipher_suite": suite});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut problems = Vec::new();
    if info.not_after < now {
        problems.push(format!("EXPIRED on {}", cert::date(info.not_after)));
    }
    if !info.matches(host) {
        problems.push(format!("NAME MISMATCH: not valid for {host}"));
    }
    let measured = format!("{}; {protocol} {suite}", info.summary());
    let probe = if !verified || !problems.is_empty() {
        let why = if problems.is_empty() { "not verified".to_string() } else { problems.join("; ") };
        Probe::warning("tls certificate", format!("{measured}; {why}"), "--insecure: the certificate is not checked")
    } else if info.not_after - now < 30 * 86_400 {
        Probe::warning(
            "tls certificate",
            format!("{measured}; matches {host}"),
            format!("it expires on {}: have it renewed", cert::date(info.not_after)),
        )
    } else {
        Probe::ok("tls certificate", format!("{measured}; matches {host}"))
    };
    report.push(probe.details(details));
}

/// A refused certificate: why, and what it is (from a second, unverified
/// handshake).
fn report_refused_certificate(
    err: &CertificateError,
    target: &Target,
    session: Option<&rustls::ClientConnection>,
    report: &mut Report,
) {
    let info = session.and_then(|s| s.peer_certificates()).and_then(|c| c.first()).and_then(|d| CertInfo::parse(d));
    let (why, fix) = cert::refusal(err, &target.host, info.as_ref());
    let measured = match &info {
        Some(info) => format!("{why}; {}", info.summary()),
        None => why,
    };
    report.push(
        Probe::failed("tls certificate", measured, fix)
            .details(serde_json::json!({"certificate": info, "error": format!("{err:?}")})),
    );
}

/// Runs a listing command over an open data connection; returns the data.
async fn transfer(ctl: &mut Control, data: TcpStream, command: &str) -> Result<Vec<u8>, String> {
    ctl.send(command).await.map_err(|e| format!("connection failed: {e}"))?;
    let timeout = ctl.timeout;
    read_data(ctl, data, timeout).await
}

/// TLS when `PROT P`, read to the end, then the closing reply.
async fn read_data(ctl: &mut Control, data: TcpStream, timeout: Duration) -> Result<Vec<u8>, String> {
    let mut stream = match &ctl.data_tls {
        Some(tls) => match handshake(data, Arc::clone(&tls.config), tls.name.clone(), timeout).await {
            Ok(tls) => PlainOrTls::Tls(Box::new(tls)),
            Err(e) => {
                let reply = final_reply(ctl).await.map(|r| r.text()).unwrap_or_else(|why| why);
                return Err(format!("data connection {e}; server: {reply}"));
            }
        },
        None => PlainOrTls::Plain(data),
    };
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(timeout, async {
        match stream.read_to_end(&mut bytes).await {
            // Servers often close data connections without close_notify.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(bytes.len()),
            other => other,
        }
    })
    .await;
    drop(stream);
    let reply = final_reply(ctl).await?;
    match read {
        Err(_) => Err(format!("data timed out after {}; server: {}", show_duration(timeout), reply.text())),
        Ok(Err(e)) => Err(format!("data connection failed: {e}; server: {}", reply.text())),
        Ok(Ok(_)) if reply.code / 100 == 2 => Ok(bytes),
        Ok(Ok(_)) => Err(reply.text()),
    }
}

/// Skips preliminary (1xx) replies.
async fn final_reply(ctl: &mut Control) -> Result<Reply, String> {
    loop {
        let reply = ctl.reply().await?;
        if reply.code / 100 != 1 {
            return Ok(reply);
        }
    }
}

async fn probe_epsv(ctl: &mut Control, list: &str, seen: &mut Seen, report: &mut Report) {
    let reply = match ctl.command("EPSV").await {
        Ok(reply) => reply,
        Err(why) => {
            report.push(Probe::failed("passive EPSV", why, "the control connection broke").not_blocking());
            return;
        }
    };
    let Some(port) = (reply.code == 229).then(|| parse_epsv(&reply.text())).flatten() else {
        report.push(Probe::warning("passive EPSV", reply.text(), "no EPSV: barge uses PASV with this server"));
        return;
    };
    let target = SocketAddr::new(ctl.peer.ip(), port);
    let (data, took) = match tcp_connect(target, ctl.timeout.min(Duration::from_secs(10))).await {
        Ok(ok) => ok,
        Err(why) => {
            report.push(
                Probe::failed(
                    "passive EPSV",
                    format!("server picked port {port}; {why}"),
                    "a firewall blocks the server's passive ports: allow outbound TCP to its passive range",
                )
                .not_blocking(),
            );
            return;
        }
    };
    match transfer(ctl, data, list).await {
        Ok(bytes) => {
            seen.passive_ports.push(port);
            seen.passive_host.get_or_insert(ctl.peer.ip());
            seen.passive_mode.get_or_insert("passive (EPSV)");
            report.push(
                Probe::ok("passive EPSV", format!("port {port}, data connection in {}", show_duration(took)))
                    .took(took)
                    .details(serde_json::json!({"port": port})),
            );
            seen.listing_data.get_or_insert((bytes, list.starts_with("MLSD")));
        }
        Err(why) => report.push(
            Probe::failed("passive EPSV", format!("port {port}: {why}"), "the data transfer failed").not_blocking(),
        ),
    }
}

async fn probe_pasv(ctl: &mut Control, list: &str, options: &DoctorOptions, seen: &mut Seen, report: &mut Report) {
    let reply = match ctl.command("PASV").await {
        Ok(reply) => reply,
        Err(why) => {
            report.push(Probe::failed("passive PASV", why, "the control connection broke").not_blocking());
            return;
        }
    };
    let Some(announced) = (reply.code == 227).then(|| parse_pasv(&reply.text())).flatten() else {
        let probe = Probe::warning("passive PASV", reply.text(), "no PASV (IPv6 servers have only EPSV)");
        report.push(probe);
        return;
    };
    let peer = ctl.peer;
    let short = options.short_wait().min(Duration::from_secs(3));
    let port = announced.port();
    let same = announced.ip() == peer.ip();
    let first = tcp_connect(announced, if same { ctl.timeout } else { short }).await;
    let (data, took, used, nat) = match first {
        Ok((data, took)) => (data, took, announced, false),
        Err(why) if !same => {
            // NAT: the server announced its inside address. Try its control address.
            let fallback = SocketAddr::new(peer.ip(), port);
            match tcp_connect(fallback, short).await {
                Ok((data, took)) => (data, took, fallback, true),
                Err(why2) => {
                    report.push(
                        Probe::failed(
                            "passive PASV",
                            format!("server announces {announced} (control address {}): {why}; {why2}", peer.ip()),
                            "neither address answers: a firewall blocks the passive ports",
                        )
                        .not_blocking(),
                    );
                    return;
                }
            }
        }
        Err(why) => {
            report.push(
                Probe::failed(
                    "passive PASV",
                    format!("server announces {announced}: {why}"),
                    "a firewall blocks the server's passive ports: allow outbound TCP to its passive range",
                )
                .not_blocking(),
            );
            return;
        }
    };
    let result = transfer(ctl, data, list).await;
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(why) => {
            report.push(
                Probe::failed("passive PASV", format!("{announced}: {why}"), "the data transfer failed").not_blocking(),
            );
            return;
        }
    };
    seen.passive_ports.push(port);
    seen.passive_host.get_or_insert(used.ip());
    seen.passive_mode.get_or_insert("passive (PASV)");
    seen.listing_data.get_or_insert((bytes, list.starts_with("MLSD")));
    let details = serde_json::json!({
        "announced": announced.to_string(), "control_peer": peer.ip().to_string(), "connected": used.to_string(),
        "nat_detected": nat, "port": port,
    });
    if !nat {
        let note = if same { "the control address" } else { "a different address, which answers" };
        report.push(
            Probe::ok(
                "passive PASV",
                format!("server announces {announced} ({note}), data connection in {}", show_duration(took)),
            )
            .took(took)
            .details(details),
        );
        return;
    }
    // What a sync would do with this reply.
    let sync_target = conn::passive_target(announced, peer, options.remote.ftp.pasv_address_from_reply);
    let measured = format!(
        "NAT detected: the server announces {announced} but its control address is {}; {} does not answer, \
         {used} does (workaround applied: connected to the control address in {})",
        peer.ip(),
        announced.ip(),
        show_duration(took)
    );
    let fix_server = "fix it on the server: vsftpd pasv_address=, proftpd MasqueradeAddress, pure-ftpd -P PUBLIC-IP";
    let probe = if seen.has("EPSV") && seen.passive_mode == Some("passive (EPSV)") {
        Probe::warning(
            "passive PASV",
            measured,
            format!("barge uses EPSV with this server, which carries no address, so syncs work; {fix_server}"),
        )
    } else if sync_target == used {
        Probe::warning("passive PASV", measured, format!("barge applies the same workaround; {fix_server}"))
    } else {
        Probe::failed(
            "passive PASV",
            measured,
            format!(
                "barge would connect to the announced address (it replaces only private addresses behind a public \
                 control address{}); {fix_server}, or use --active",
                if options.remote.ftp.pasv_address_from_reply {
                    ", and --pasv-address-from-reply turns that off"
                } else {
                    ""
                }
            ),
        )
    };
    report.push(probe.took(took).details(details));
}

fn probe_listing(seen: &Seen, report: &mut Report) {
    let Some((data, mlsd)) = &seen.listing_data else {
        report.push(Probe::failed(
            "root listing",
            "no data connection worked, so nothing could be listed",
            "see the passive and active lines above",
        ));
        return;
    };
    let now = crate::backend::Mtime::from_unix(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        0,
    );
    let parsed = if *mlsd { listing::parse_mlsd(data) } else { listing::parse_list(data, now) };
    let verb = if *mlsd { "MLSD" } else { "LIST" };
    match parsed {
        Ok(parsed) => {
            let format = parsed.format.map_or("empty".to_string(), |f| format!("{f:?}"));
            let measured = format!(
                "{verb}: {} bytes, format {format}, {} entries, {} unknown line(s)",
                data.len(),
                parsed.entries.len(),
                parsed.warnings.len()
            );
            let details = serde_json::json!({
                "command": verb, "format": format, "entries": parsed.entries.len(),
                "unknown_lines": parsed.warnings.iter().map(|w| String::from_utf8_lossy(&w.line).into_owned()).collect::<Vec<_>>(),
            });
            let probe = match parsed.warnings.first() {
                None => Probe::ok("root listing", measured),
                Some(first) => Probe::warning(
                    "root listing",
                    measured,
                    format!(
                        "barge skips lines it cannot read (first: `{}`: {})",
                        String::from_utf8_lossy(&first.line),
                        first.reason
                    ),
                ),
            };
            report.push(probe.details(details));
        }
        Err(e) => report.push(Probe::failed(
            "root listing",
            format!("{verb}: {e}"),
            "barge cannot read this server's listing format: please report it with the line shown",
        )),
    }
}

async fn probe_active(
    ctl: &mut Control,
    list: &str,
    options: &DoctorOptions,
    seen: &mut Seen,
    report: &mut Report,
) -> Step {
    let asked = options.remote.ftp.active || options.remote.ftp.active_ports.is_some();
    let failed = |measured: String, advice: String| {
        let probe = Probe::failed("active mode", measured, advice);
        if asked { probe } else { probe.not_blocking() }
    };
    let listener = match listen(ctl.local.ip(), options.remote.ftp.active_ports.as_ref()) {
        Ok(listener) => listener,
        Err(why) => {
            report.push(failed(why.to_string(), "free a port in the range, or widen --active-ports".into()));
            return Step::InStep;
        }
    };
    let Ok(local) = listener.local_addr() else { return Step::InStep };
    let command = port_command(local);
    let verb = if local.is_ipv4() { "PORT" } else { "EPRT" };
    match ctl.command(&command).await {
        Ok(reply) if reply.code == 200 => {}
        Ok(reply) => {
            report.push(failed(
                format!("{verb}: {}", reply.text()),
                "the server refuses active mode: use passive mode (the default)".into(),
            ));
            return Step::InStep;
        }
        Err(why) => {
            report.push(failed(why, "the control connection broke".into()));
            return Step::OutOfStep;
        }
    }
    let wait = options.short_wait();
    let started = Instant::now();
    if let Err(e) = ctl.send(list).await {
        report.push(failed(e.to_string(), "the control connection broke".into()));
        return Step::OutOfStep;
    }
    let not_reached = |why: String| {
        let ports = options
            .remote
            .ftp
            .active_ports
            .as_ref()
            .map_or(local.port().to_string(), |r| format!("{}-{}", r.start(), r.end()));
        failed(
            format!("the server did not connect back to {local} ({why})"),
            format!(
                "a firewall or NAT in front of this host blocks inbound connections from the server: open inbound \
                 TCP {ports} (and give --active-ports), or use passive mode (the default)"
            ),
        )
    };
    // The server's connection, or its error reply, whichever comes first.
    // The connection is made before the server sends data and its final
    // reply, so it is looked for first (`biased`), and once more after a
    // success reply: a small listing can be sent, and 226 answered, before
    // this task gets to accept().
    let mut final_seen = None;
    // Whether the LIST's final reply was read: if not, it is still to come.
    let mut answered = false;
    let accepted = loop {
        tokio::select! {
            biased;
            accepted = listener.accept() => break accepted.map_err(|e| e.to_string()),
            reply = ctl.reply() => match reply {
                Ok(reply) if reply.code / 100 == 1 => continue,
                Ok(reply) if reply.code / 100 == 2 => {
                    answered = true;
                    match tokio::time::timeout(Duration::from_millis(200), listener.accept()).await {
                        Ok(accepted) => {
                            final_seen = Some(reply);
                            break accepted.map_err(|e| e.to_string());
                        }
                        Err(_) => break Err(reply.text()),
                    }
                }
                Ok(reply) => {
                    answered = true;
                    break Err(reply.text());
                }
                Err(why) => break Err(why),
            },
            () = tokio::time::sleep_until((started + wait).into()) => {
                break Err(format!("nothing within {}", show_duration(wait)));
            }
        }
    };
    let data = match accepted {
        Ok((data, from)) => {
            if from.ip() != ctl.peer.ip() {
                report.push(failed(
                    format!("a connection came from {from}, not the server"),
                    "refused: only the server may connect".into(),
                ));
                return Step::OutOfStep;
            }
            data
        }
        Err(why) => {
            report.push(not_reached(why));
            return if answered { Step::InStep } else { Step::OutOfStep };
        }
    };
    let took = started.elapsed();
    let timeout = ctl.timeout;
    let read = match final_seen {
        // The transfer is over already: its data waits in the socket.
        Some(_) if ctl.data_tls.is_none() => {
            let mut bytes = Vec::new();
            let mut data = data;
            match tokio::time::timeout(timeout, data.read_to_end(&mut bytes)).await {
                Ok(Ok(_)) => Ok(bytes),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("data timed out".to_string()),
            }
        }
        _ => read_data(ctl, data, timeout).await,
    };
    match read {
        Ok(_) => {
            seen.active = Some((local, verb));
            report.push(
                Probe::ok(
                    "active mode",
                    format!("{verb}: the server connected back to {local} in {}", show_duration(took)),
                )
                .took(took),
            );
        }
        Err(why) => {
            report.push(failed(format!("{verb} to {local}: {why}"), "the data transfer failed".into()));
            // Whether its final reply came is not known: start afresh.
            return Step::OutOfStep;
        }
    }
    Step::InStep
}

/// Whether a probe left the control connection in step: every command it
/// sent answered in full, so the next one reads its own reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    InStep,
    OutOfStep,
}

/// NOOP round trips: the median of five.
async fn probe_rtt(ctl: &mut Control, report: &mut Report) -> Option<Duration> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        match ctl.command("NOOP").await {
            Ok(reply) if reply.code / 100 == 2 => times.push(started.elapsed()),
            _ => break,
        }
    }
    if times.is_empty() {
        report.push(Probe::warning("round trip", "NOOP failed", "the round trip could not be measured"));
        return None;
    }
    times.sort();
    let median = times[times.len() / 2];
    report.push(
        Probe::ok("round trip", format!("{} (median of {} NOOPs)", show_duration(median), times.len())).took(median),
    );
    Some(median)
}

/// Whether data connections must resume the control connection's TLS
/// session: one listing over a fresh session. Last on this connection,
/// because vsftpd drops the control connection after refusing one.
async fn probe_session_reuse(ctl: &mut Control, list: &str, base: &ClientConfig, seen: &Seen, report: &mut Report) {
    let Some(name) = ctl.data_tls.as_ref().map(|d| d.name.clone()) else { return };
    let Some(host) = seen.passive_host else { return };
    let mut fresh = base.clone();
    fresh.resumption = Resumption::disabled();
    let fresh = DataTls { config: Arc::new(fresh), name };
    let port = match ctl.command("EPSV").await {
        Ok(reply) if reply.code == 229 => parse_epsv(&reply.text()),
        _ => match ctl.command("PASV").await {
            Ok(reply) if reply.code == 227 => parse_pasv(&reply.text()).map(|a| a.port()),
            _ => None,
        },
    };
    let Some(port) = port else { return };
    let Ok((data, _)) = tcp_connect(SocketAddr::new(host, port), ctl.timeout).await else { return };
    let resuming = ctl.data_tls.replace(fresh);
    let result = transfer(ctl, data, list).await;
    ctl.data_tls = resuming;
    let probe = match result {
        Ok(_) => Probe::ok("tls session reuse", "not required: a data connection with a fresh TLS session worked"),
        Err(why) => Probe::ok(
            "tls session reuse",
            format!(
                "required: a data connection without resuming the control session was refused ({why}); barge \
                 resumes it, as the passive lines above show"
            ),
        ),
    };
    report.push(probe);
}

/// How many logins the server accepts at once: up to
/// `--max-probe-connections`, four at a time, stopping at the first
/// refusal. Returns (accepted, whether a refusal capped it).
async fn probe_connections(
    target: &Target,
    config: &ClientConfig,
    options: &DoctorOptions,
    report: &mut Report,
) -> (usize, bool) {
    let max = options.max_probe_connections.max(1);
    let mut open: Vec<Control> = Vec::new();
    let mut refusal: Option<String> = None;
    let started = Instant::now();
    while open.len() < max && refusal.is_none() {
        let wave = (max - open.len()).min(4);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..wave {
            let target = target.clone();
            let config = config.clone();
            set.spawn(async move {
                let mut ctl = target.establish(target.mode, &config).await?;
                target.login(&mut ctl).await.map_err(|r| r.text())?;
                Ok::<Control, String>(ctl)
            });
        }
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Ok(ctl)) => open.push(ctl),
                Ok(Err(why)) => {
                    refusal.get_or_insert(why);
                }
                Err(e) => {
                    refusal.get_or_insert(e.to_string());
                }
            }
        }
    }
    let accepted = open.len();
    for ctl in open {
        ctl.quit().await;
    }
    let took = started.elapsed();
    let details = serde_json::json!({"accepted": accepted, "limit_probed": max, "refusal": refusal});
    let probe = match &refusal {
        None => Probe::ok(
            "parallel logins",
            format!("{accepted} at once, all accepted (probed up to --max-probe-connections {max})"),
        ),
        Some(why) if accepted == 0 => Probe::warning(
            "parallel logins",
            format!("no extra login was accepted: {why}"),
            "the server allows one session from here: use --parallel 1",
        ),
        Some(why) => Probe::warning(
            "parallel logins",
            format!("{accepted} accepted, the next was refused: {why}"),
            format!("the server caps sessions from this host at {accepted}: keep --parallel at most {accepted}"),
        ),
    };
    report.push(probe.took(took).details(details));
    (accepted, refusal.is_some())
}

fn firewall_rules(remote: &RemoteLocation, options: &DoctorOptions, seen: &Seen, report: &mut Report) {
    let active_asked = options.remote.ftp.active || options.remote.ftp.active_ports.is_some();
    let use_active = seen.active.is_some() && (active_asked || seen.passive_mode.is_none());
    if !use_active && let (Some(mode), Some(host)) = (seen.passive_mode, seen.passive_host) {
        report.mode = Some(mode.to_string());
        report.firewall.push(FirewallRule::outbound(
            &host.to_string(),
            port_list(&seen.passive_ports),
            "passive data connections: the ports this server picked in this run; allow its whole passive range",
        ));
    } else if let Some((local, verb)) = seen.active {
        report.mode = Some(format!("active ({verb})"));
        let ports = options
            .remote
            .ftp
            .active_ports
            .as_ref()
            .map_or(format!("{} (any: give --active-ports to fix a range)", local.port()), |r| {
                format!("{}-{}", r.start(), r.end())
            });
        report.firewall.push(FirewallRule::inbound(
            &local.ip().to_string(),
            ports,
            format!("active data connections from the server {}", remote.host),
        ));
    }
}
