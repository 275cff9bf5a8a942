//! The doctor's raw control connection: each command written and its
//! reply read as they are (no client in between to hide one), with the
//! backend's [`ReplyReader`]; connecting, TLS and login for a [`Target`];
//! listings over a data connection.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::backend::ftp::protocol::{PlainOrTls, Reply, ReplyReader, TlsMode};
use crate::backend::ftp::tls as ftp_tls;
use crate::backend::socks::{self, Socks5Proxy};
use crate::credentials::Login;
use crate::doctor::show_duration;

/// TLS for data connections: the control connection's configuration (its
/// session cache, which servers demanding session reuse check) and name.
#[derive(Clone)]
pub(super) struct DataTls {
    pub(super) config: Arc<ClientConfig>,
    pub(super) name: ServerName<'static>,
}

/// How the probes reach the server: directly, or through the SOCKS5 proxy
/// a sync would use (then the proxy resolves the server's name, and the
/// control connection's peer is [`Route::SERVER`]).
#[derive(Clone)]
pub(super) struct Route {
    pub(super) proxy: Option<Arc<Socks5Proxy>>,
    /// The server's name, as the URL gave it.
    pub(super) host: String,
}

impl Route {
    /// Through a proxy, the address that stands for the server itself:
    /// connections to it go to the server by name, as the sync's do.
    pub(super) const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

    /// A TCP connection to `addr`, within `wait`, and how long it took.
    pub(super) async fn connect(&self, addr: SocketAddr, wait: Duration) -> Result<(TcpStream, Duration), String> {
        let started = Instant::now();
        let Some(proxy) = &self.proxy else {
            return match tokio::time::timeout(wait, TcpStream::connect(addr)).await {
                Err(_) => Err(format!("no answer from {addr} within {}", show_duration(wait))),
                Ok(Err(e)) => Err(format!("{addr}: {e}")),
                Ok(Ok(tcp)) => Ok((tcp, started.elapsed())),
            };
        };
        let host = if addr.ip() == Route::SERVER { self.host.clone() } else { addr.ip().to_string() };
        match socks::connect(proxy, &host, addr.port(), wait).await {
            Ok(tcp) => Ok((tcp, started.elapsed())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The peer a control connection `tcp` stands for.
    fn peer_of(&self, tcp: &TcpStream) -> Result<SocketAddr, String> {
        let peer = tcp.peer_addr().map_err(|e| e.to_string())?;
        Ok(if self.proxy.is_some() { SocketAddr::new(Route::SERVER, peer.port()) } else { peer })
    }
}

/// A raw control connection.
pub(super) struct Control {
    stream: Option<PlainOrTls>,
    replies: ReplyReader,
    pub(super) timeout: Duration,
    /// The server ([`Route::SERVER`] through a proxy).
    pub(super) peer: SocketAddr,
    pub(super) route: Route,
    pub(super) local: SocketAddr,
    /// The configuration of the control connection's TLS session (its cache
    /// holds the session data connections must resume).
    pub(super) control_tls: Option<Arc<ClientConfig>>,
    /// Set once `PROT P` protects data connections.
    pub(super) data_tls: Option<DataTls>,
}

impl Control {
    pub(super) fn new(tcp: TcpStream, route: &Route, timeout: Duration) -> Result<Control, String> {
        tcp.set_nodelay(true).ok();
        let peer = route.peer_of(&tcp)?;
        let local = tcp.local_addr().map_err(|e| e.to_string())?;
        Ok(Control {
            stream: Some(PlainOrTls::Plain(tcp)),
            replies: ReplyReader::default(),
            timeout,
            peer,
            route: route.clone(),
            local,
            control_tls: None,
            data_tls: None,
        })
    }

    /// A connection that is TLS from the first byte (implicit FTPS).
    pub(super) fn implicit(
        tls: TlsStream<TcpStream>,
        config: Arc<ClientConfig>,
        route: &Route,
        timeout: Duration,
    ) -> Result<Control, String> {
        let peer = route.peer_of(tls.get_ref().0)?;
        let local = tls.get_ref().0.local_addr().map_err(|e| e.to_string())?;
        Ok(Control {
            stream: Some(PlainOrTls::Tls(Box::new(tls))),
            replies: ReplyReader::default(),
            timeout,
            peer,
            route: route.clone(),
            local,
            control_tls: Some(config),
            data_tls: None,
        })
    }

    pub(super) async fn reply_within(&mut self, wait: Duration) -> Result<Reply, String> {
        let stream = self.stream.as_mut().ok_or_else(|| "the control connection is gone".to_string())?;
        match tokio::time::timeout(wait, self.replies.read(stream)).await {
            Err(_) => Err(format!("no reply within {}", show_duration(wait))),
            Ok(read) => read.map_err(|e| e.to_string()),
        }
    }

    /// Writes one command line without reading its reply.
    /// A line is bytes: a path in it is in the server's encoding.
    pub(super) async fn send(&mut self, line: impl AsRef<[u8]>) -> std::io::Result<()> {
        let gone = || std::io::Error::new(std::io::ErrorKind::NotConnected, "the control connection is gone");
        let stream = self.stream.as_mut().ok_or_else(gone)?;
        let mut bytes = line.as_ref().to_vec();
        bytes.extend_from_slice(b"\r\n");
        stream.write_all(&bytes).await?;
        stream.flush().await
    }

    pub(super) async fn reply(&mut self) -> Result<Reply, String> {
        self.reply_within(self.timeout).await
    }

    /// Sends one command and reads its reply. Never put a secret in an
    /// error: the command text is not part of any message.
    pub(super) async fn command(&mut self, line: &str) -> Result<Reply, String> {
        match tokio::time::timeout(self.timeout, self.send(line)).await {
            Err(_) => return Err("timed out sending a command".into()),
            Ok(Err(e)) => return Err(format!("connection failed: {e}")),
            Ok(Ok(())) => {}
        }
        self.reply().await
    }

    /// `AUTH TLS` done: the handshake on the control connection.
    pub(super) async fn upgrade(
        &mut self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<(), HandshakeError> {
        let Some(PlainOrTls::Plain(tcp)) = self.stream.take() else {
            return Err(HandshakeError::Other("not a plain connection".into()));
        };
        let tls = handshake(tcp, Arc::clone(&config), name, self.timeout).await?;
        self.stream = Some(PlainOrTls::Tls(Box::new(tls)));
        self.control_tls = Some(config);
        Ok(())
    }

    pub(super) fn tls_session(&self) -> Option<&rustls::ClientConnection> {
        match &self.stream {
            Some(PlainOrTls::Tls(s)) => Some(s.get_ref().1),
            _ => None,
        }
    }

    pub(super) async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.command("QUIT")).await;
    }

    /// QUIT, then wait for the server to close: servers count a session
    /// until its process is gone, and the connection-limit probe comes next.
    pub(super) async fn quit_and_wait(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.command("QUIT")).await;
        let _ = self.reply_within(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Why a TLS handshake failed.
#[derive(Debug)]
pub(super) enum HandshakeError {
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

pub(super) async fn handshake(
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

/// What every connection of one diagnosis needs.
#[derive(Clone)]
pub(super) struct Target {
    /// The server's address ([`Route::SERVER`] through a proxy).
    pub(super) addr: SocketAddr,
    pub(super) route: Route,
    pub(super) host: String,
    pub(super) shown: String,
    pub(super) mode: TlsMode,
    pub(super) login: Login,
    pub(super) timeout: Duration,
    pub(super) short: Duration,
}

impl Target {
    pub(super) fn server_name(&self) -> Result<ServerName<'static>, String> {
        ServerName::try_from(self.host.clone()).map_err(|e| format!("{}: not a valid TLS server name: {e}", self.host))
    }

    /// TCP, greeting and TLS without reporting: for the connection-limit
    /// probe and the TLS-mode checks. `config` is the base configuration.
    pub(super) async fn establish(&self, mode: TlsMode, config: &ClientConfig) -> Result<Control, String> {
        let (tcp, _) = self.route.connect(self.addr, self.timeout).await?;
        let name = self.server_name()?;
        if mode == TlsMode::Implicit {
            let config = ftp_tls::per_connection(config);
            let tls = handshake(tcp, Arc::clone(&config), name, self.timeout).await.map_err(|e| e.to_string())?;
            let mut ctl = Control::implicit(tls, config, &self.route, self.timeout)?;
            expect_greeting(&mut ctl, self.short).await?;
            return Ok(ctl);
        }
        let mut ctl = Control::new(tcp, &self.route, self.timeout)?;
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
    pub(super) async fn session(&self, config: &ClientConfig) -> Result<Control, String> {
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
    pub(super) async fn login(&self, ctl: &mut Control) -> Result<Reply, Reply> {
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

/// Runs a listing command over an open data connection; returns the data.
pub(super) async fn transfer(ctl: &mut Control, data: TcpStream, command: &[u8]) -> Result<Vec<u8>, String> {
    ctl.send(command).await.map_err(|e| format!("connection failed: {e}"))?;
    let timeout = ctl.timeout;
    read_data(ctl, data, timeout).await
}

/// TLS when `PROT P`, read to the end, then the closing reply.
pub(super) async fn read_data(ctl: &mut Control, data: TcpStream, timeout: Duration) -> Result<Vec<u8>, String> {
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
