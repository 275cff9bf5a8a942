//! One FTP control connection: connect (plain, explicit or implicit TLS),
//! log in, learn the server's features, and classify its replies.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};
use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode, Status};
use tokio::net::TcpStream;

use super::data::ActiveSetup;
use super::names::RawBytes;
use super::protocol::{Reply, TlsMode, feat_map, feature_lines, parse_pwd};
use super::tls;
use crate::backend::HashKind;
use crate::backend::socks::{self, Socks5Proxy};
use crate::credentials::Login;
use crate::error::{ErrorKind, OpError};

/// The control stream type for plain and TLS connections alike (TLS is
/// only engaged when asked for).
pub type Control = AsyncRustlsFtpStream;

/// How data connections are opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataMode {
    /// EPSV, or PASV where the server lacks it. `trust_reply_address`
    /// connects to whatever address a PASV reply names.
    Passive { trust_reply_address: bool },
    /// The server connects back (PORT/EPRT), to a port of `ports` when
    /// given (`--active-ports`).
    Active { ports: Option<RangeInclusive<u16>> },
}

/// Everything needed to open a control connection.
#[derive(Clone)]
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub login: Login,
    pub tls_mode: TlsMode,
    /// The base TLS configuration, when TLS is used.
    pub tls: Option<Arc<ClientConfig>>,
    pub data_mode: DataMode,
    pub timeout: Duration,
    /// Round trips of every connection opened with these parameters (see
    /// [`crate::backend::Backend::round_trips`]).
    pub round_trips: Arc<AtomicU64>,
    /// False once a pipelined exchange got no answer (see [`Pipelined`]):
    /// every connection then sends one command at a time.
    pub pipelining: Arc<AtomicBool>,
    /// Set by the first connection to log in (see [`Learned`]).
    pub learned: Arc<std::sync::OnceLock<Learned>>,
    /// What an earlier run's first login learned (see [`Remembered`]).
    pub remembered: Option<Remembered>,
    /// Send `OPTS UTF8 ON` where FEAT offers UTF8: not with `--encoding`.
    pub opts_utf8: bool,
    /// The SOCKS5 proxy the control and data connections go through.
    pub proxy: Option<Arc<Socks5Proxy>>,
}

/// A connection's route through a SOCKS5 proxy: the proxy, and the
/// server's name as the URL gives it (the proxy resolves it).
#[derive(Clone)]
pub struct Proxied {
    pub proxy: Arc<Socks5Proxy>,
    pub host: String,
}

/// What FEAT said, reduced to what barge uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    pub mlsd: bool,
    pub mfmt: bool,
    pub mdtm: bool,
    pub size: bool,
    pub rest_stream: bool,
    pub utf8: bool,
    pub epsv: bool,
    /// Algorithms of the HASH command (draft-bryan-ftpext-hash), best first.
    pub hash: Vec<HashKind>,
    /// Algorithms with an X-command (XSHA256, XSHA1, XMD5).
    pub xhash: Vec<HashKind>,
}

impl Features {
    /// What a FEAT reply's lines (keyword to its parameters) offer.
    pub fn from_feat(feat: &HashMap<String, Option<String>>) -> Features {
        let has = |name: &str| feat.keys().any(|k| k.eq_ignore_ascii_case(name));
        let rest_stream = feat.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("REST") && v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("STREAM"))
        });
        let hash_value = feat.iter().find(|(k, _)| k.eq_ignore_ascii_case("HASH")).and_then(|(_, v)| v.clone());
        let mut hash: Vec<HashKind> = hash_value
            .unwrap_or_default()
            .split(';')
            .filter_map(|name| match name.trim().trim_end_matches('*').to_ascii_uppercase().as_str() {
                "SHA-256" => Some(HashKind::Sha256),
                "SHA-1" => Some(HashKind::Sha1),
                "MD5" => Some(HashKind::Md5),
                _ => None,
            })
            .collect();
        hash.sort_by_key(|k| HashKind::PREFERENCE.iter().position(|p| p == k));
        let xhash = [("XSHA256", HashKind::Sha256), ("XSHA1", HashKind::Sha1), ("XMD5", HashKind::Md5)]
            .into_iter()
            .filter(|(name, _)| has(name))
            .map(|(_, kind)| kind)
            .collect();
        Features {
            hash,
            xhash,
            mlsd: has("MLSD") || has("MLST"),
            mfmt: has("MFMT"),
            mdtm: has("MDTM"),
            size: has("SIZE"),
            rest_stream,
            utf8: has("UTF8"),
            epsv: has("EPSV"),
        }
    }
}

/// A logged-in control connection.
pub struct FtpConn {
    pub control: Control,
    pub features: Features,
    /// The home directory (PWD right after login).
    pub home: String,
    pub last_used: Instant,
    /// The algorithm `OPTS HASH` selected on this connection.
    pub hash_selected: Option<HashKind>,
    /// Set in active mode: data connections are opened by [`super::data`].
    pub active: Option<ActiveSetup>,
    /// Plain TCP: commands can be written back to back (see
    /// [`FtpConn::send_pipelined`]).
    plain: bool,
    /// The backend's [`ConnectParams::pipelining`].
    pipelining: Arc<AtomicBool>,
    /// The backend's round-trip counter, shared by its connections.
    pub round_trips: Arc<AtomicU64>,
    /// How long a data connection may take to open.
    pub data_timeout: Duration,
    /// Set when data connections go through a SOCKS5 proxy.
    pub proxied: Option<Proxied>,
}

impl FtpConn {
    /// Counts `n` round trips: commands whose reply was awaited before
    /// going on (every suppaftp call that sends a command and reads its
    /// reply is one), a data connection's set-up, a transfer's final reply
    /// waited for after an upload.
    pub fn round_trip(&self, n: u64) {
        self.round_trips.fetch_add(n, Ordering::Relaxed);
    }

    /// Whether commands may be written back to back on this connection:
    /// plain TCP, and no pipelined exchange with this server has gone
    /// unanswered.
    pub fn pipelining(&self) -> bool {
        self.plain && self.pipelining.load(Ordering::Relaxed)
    }

    /// Writes several command lines in one go, without reading a reply;
    /// the caller then reads one reply per line, in order (RFC 959 servers
    /// read commands one after the other, and lftp relies on it with
    /// `ftp:sync-mode off`). Counts one round trip for the batch.
    ///
    /// suppaftp has no call that sends without reading, so the lines go
    /// straight to the control socket. That is only sound on plain TCP,
    /// where suppaftp buffers nothing on the way out (its writes are
    /// `write_all` on the socket): over TLS the bytes would bypass the TLS
    /// session, so callers check [`FtpConn::pipelining`] and send one
    /// command at a time otherwise. Lines are encoded as suppaftp encodes
    /// them (the [`RawBytes`] encoding, Telnet IAC doubled).
    ///
    /// The caller tells the returned [`Pipelined`] when the server has
    /// answered the batch.
    pub async fn send_pipelined(&mut self, lines: &[String]) -> Result<Pipelined, FtpError> {
        let sent = Pipelined { pipelining: Arc::clone(&self.pipelining), answered: false };
        if !self.pipelining() {
            return Err(FtpError::ConnectionError(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "commands cannot be pipelined on a TLS control connection",
            )));
        }
        let encoded: Vec<Vec<u8>> = lines.iter().map(|line| super::names::encode(line)).collect();
        self.round_trip(1);
        write_batch(&self.control, &encoded).await?;
        Ok(sent)
    }
}

/// Writes command lines (encoded already, without line ends) to the
/// control socket in one go, Telnet IAC doubled, each ended by CRLF (see
/// [`FtpConn::send_pipelined`] for why this is sound on plain TCP only).
async fn write_batch(control: &Control, lines: &[Vec<u8>]) -> Result<(), FtpError> {
    let mut wire = Vec::new();
    for bytes in lines {
        if bytes.iter().any(|&b| b == b'\r' || b == b'\n') {
            // One command per line: a name holding CR or LF could smuggle another.
            return Err(FtpError::ConnectionError(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "FTP command must not contain CR or LF",
            )));
        }
        for &b in bytes {
            wire.push(b);
            if b == 0xFF {
                wire.push(0xFF);
            }
        }
        wire.extend_from_slice(b"\r\n");
    }
    let socket = control.get_ref().await;
    let mut written = 0;
    while written < wire.len() {
        socket.writable().await.map_err(FtpError::ConnectionError)?;
        match socket.try_write(&wire[written..]) {
            Ok(n) => written += n,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(FtpError::ConnectionError(err)),
        }
    }
    Ok(())
}

/// How long the pipelining probe at login (the first connection's
/// `OPTS UTF8`, `TYPE I` and `PWD`, written at once) waits for its
/// replies: far more than any round trip; a server that needs longer gets
/// no pipelining.
pub const PIPELINE_PROBE: Duration = Duration::from_secs(5);

/// What the first connection learned at login, so that the others skip
/// FEAT and PWD and, where pipelining works, send their whole login in
/// one write.
#[derive(Debug, Clone)]
pub struct Learned {
    pub features: Features,
    /// FEAT's reply as `NAME` or `NAME VALUE` lines, sorted: what the
    /// state database keeps (see [`Remembered`]).
    pub feat: Vec<String>,
    pub home: String,
    /// How long the probe's one write took to be answered: about one
    /// round trip (`None` without pipelining).
    pub round_trip: Option<Duration>,
}

/// An earlier run's first login, kept in the state database: with it the
/// first login of this run is one write (USER, PASS, FEAT, OPTS, TYPE,
/// PWD) answered in one round trip after the greeting, instead of five.
/// FEAT and PWD are still asked, so what the server says now is what the
/// run uses; only the choice to write the commands at once is taken from
/// the memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub home: String,
    pub feat: Vec<String>,
}

impl Remembered {
    /// `home`, then one FEAT line per line.
    pub fn to_text(&self) -> String {
        std::iter::once(self.home.as_str()).chain(self.feat.iter().map(String::as_str)).collect::<Vec<_>>().join("\n")
    }

    pub fn from_text(text: &str) -> Option<Remembered> {
        let mut lines = text.lines();
        let home = lines.next().filter(|h| h.starts_with('/'))?.to_string();
        Some(Remembered { home, feat: lines.map(str::to_string).collect() })
    }
}

/// FEAT's features as `NAME` / `NAME VALUE` lines, sorted.
fn feat_lines(feat: &HashMap<String, Option<String>>) -> Vec<String> {
    let mut lines: Vec<String> = feat
        .iter()
        .map(|(name, value)| match value {
            Some(value) => format!("{name} {value}"),
            None => name.clone(),
        })
        .collect();
    lines.sort();
    lines
}

/// A FEAT reply's body (`211-...`, one feature a line, `211 End`) as the
/// map suppaftp's `feat()` makes: name, then the rest of the line.
fn parse_feat_body(body: &[u8]) -> HashMap<String, Option<String>> {
    feat_map(feature_lines(&Reply::from_body(body)))
}

/// A pipelined batch waiting for its answers. lftp keeps pipelining off by
/// default because some servers and middleboxes lose commands that arrive
/// together; vsftpd, pure-ftpd and proftpd answer them all (tested). So a
/// batch that is dropped before [`Pipelined::answered`] (a timeout, a
/// connection lost or garbled on the way) turns pipelining off for every
/// connection to this server: the retry, and all later files, send one
/// command at a time. An unexpected reply is an answer: the server is in
/// step, it just said no.
#[must_use = "say when the batch was answered, or pipelining is turned off"]
pub struct Pipelined {
    pipelining: Arc<AtomicBool>,
    answered: bool,
}

impl Pipelined {
    /// The server answered the batch (its replies, expected or not, came).
    pub fn answered(mut self) {
        self.answered = true;
    }

    /// [`Pipelined::answered`] when `result` is an answer from the server
    /// (success or a reply it did not like); `result` passed through.
    pub fn answered_if<T>(self, result: Result<T, FtpError>) -> Result<T, FtpError> {
        if matches!(result, Ok(_) | Err(FtpError::UnexpectedResponse(_))) {
            self.answered();
        }
        result
    }
}

impl Drop for Pipelined {
    fn drop(&mut self) {
        if !self.answered {
            self.pipelining.store(false, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for FtpConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpConn").field("features", &self.features).field("home", &self.home).finish()
    }
}

/// Opens a passive data connection to `target` within `timeout`.
pub async fn connect_data(target: SocketAddr, timeout: Duration) -> Result<TcpStream, FtpError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(target))
        .await
        .map_err(|_| {
            FtpError::ConnectionError(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("data connection to {target} timed out"),
            ))
        })?
        .map_err(FtpError::ConnectionError)?;
    stream.set_nodelay(true).ok();
    Ok(stream)
}

/// Opens a passive data connection to `host:port` through the proxy.
async fn connect_data_proxied(
    proxied: &Proxied,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, FtpError> {
    let stream = socks::connect(&proxied.proxy, host, port, timeout).await.map_err(FtpError::ConnectionError)?;
    stream.set_nodelay(true).ok();
    Ok(stream)
}

/// Where a passive data connection goes through the proxy: the server's
/// name when the reply names the control connection's peer (suppaftp puts
/// it in for EPSV: the proxy's address) or no address at all, else the
/// address the PASV reply names.
fn proxied_data_host(proxied: &Proxied, announced: SocketAddr, control_peer: SocketAddr) -> String {
    if announced.ip() == control_peer.ip() || announced.ip().is_unspecified() {
        proxied.host.clone()
    } else {
        announced.ip().to_string()
    }
}

impl FtpConn {
    /// Opens the data connection to the port an EPSV reply named: at the
    /// control connection's peer, or through the proxy to the server.
    pub async fn connect_epsv_data(&self, port: u16) -> Result<TcpStream, FtpError> {
        match &self.proxied {
            Some(proxied) => connect_data_proxied(proxied, &proxied.host, port, self.data_timeout).await,
            None => {
                let peer = self.control.get_ref().await.peer_addr().map_err(FtpError::ConnectionError)?;
                connect_data(SocketAddr::new(peer.ip(), port), self.data_timeout).await
            }
        }
    }
}

/// True for addresses a NAT'ed server typically announces by mistake.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// The address to open a passive data connection to. A PASV reply naming
/// an internal or other address while the control peer is public is a
/// server behind NAT announcing its inside address: use the control peer's.
pub fn passive_target(announced: SocketAddr, control_peer: SocketAddr, trust_reply_address: bool) -> SocketAddr {
    if trust_reply_address || announced.ip() == control_peer.ip() {
        return announced;
    }
    if is_internal(announced.ip()) && !is_internal(control_peer.ip()) || announced.ip().is_unspecified() {
        return SocketAddr::new(control_peer.ip(), announced.port());
    }
    announced
}

/// The reply code of an error, when the server sent one. suppaftp knows
/// some codes (522 among them) only as `Unknown`: read the digits then.
pub fn reply_code(err: &FtpError) -> Option<u32> {
    match err {
        FtpError::UnexpectedResponse(response) => match response.status {
            Status::Unknown => std::str::from_utf8(response.body.get(..3)?).ok()?.parse().ok(),
            status => Some(status.code()),
        },
        _ => None,
    }
}

/// The server's words, without the code, for messages.
fn reply_text(err: &FtpError) -> String {
    match err {
        FtpError::UnexpectedResponse(response) => {
            let text = String::from_utf8_lossy(&response.body);
            text.trim().to_string()
        }
        other => other.to_string(),
    }
}

/// Whether the control connection is unusable after `err`: an I/O or TLS
/// failure, a reply out of step, or a reply after which servers hang up
/// (421; vsftpd's "500 OOPS").
pub fn ends_session(err: &FtpError) -> bool {
    match err {
        FtpError::ConnectionError(_) | FtpError::BadResponse | FtpError::SecureError(_) => true,
        _ => match reply_code(err) {
            Some(421) => true,
            Some(500) => reply_text(err).contains("OOPS"),
            _ => false,
        },
    }
}

/// Classifies a failure: what the retry logic and exit codes need.
pub fn classify(err: FtpError, op: &'static str, path: impl std::fmt::Display) -> OpError {
    let kind = match (&err, reply_code(&err)) {
        (FtpError::ConnectionError(io), _) => match ErrorKind::from_io(io.kind()) {
            ErrorKind::Other => ErrorKind::Temporary,
            kind => kind,
        },
        (_, Some(421 | 425 | 426 | 450 | 451)) => ErrorKind::Temporary,
        // vsftpd's "500 OOPS: ..." is its session dying of a local failure
        // (no free passive port under load: vsf_sysutil_bind), not a
        // command it does not know: a new connection may well succeed. Were
        // it Unsupported, a failed RNFR would switch renames off for good.
        (_, Some(500)) if reply_text(&err).contains("OOPS") => ErrorKind::Temporary,
        (_, Some(452 | 552)) => ErrorKind::NoSpace,
        (_, Some(530 | 331 | 332)) => ErrorKind::Auth,
        (_, Some(550)) => {
            let text = reply_text(&err).to_ascii_lowercase();
            if text.contains("denied") || text.contains("permission") || text.contains("not allowed") {
                ErrorKind::PermissionDenied
            } else {
                ErrorKind::NotFound
            }
        }
        (_, Some(553)) => ErrorKind::PermissionDenied,
        (_, Some(500 | 501 | 502 | 504)) => ErrorKind::Unsupported,
        (FtpError::BadResponse | FtpError::DataConnectionAlreadyOpen, _) => ErrorKind::Temporary,
        _ => ErrorKind::Other,
    };
    OpError::new(kind, op, path, reply_text(&err))
}

/// `work` (a command and its reply) within `timeout`, else a connection
/// error (the connection is out of step: it ends the session): for waits
/// inside an operation that has no overall limit of its own.
pub async fn answered_within<T>(
    timeout: Duration,
    what: &str,
    work: impl std::future::Future<Output = Result<T, FtpError>>,
) -> Result<T, FtpError> {
    tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| {
        Err(FtpError::ConnectionError(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what}: no answer within {timeout:?}"),
        )))
    })
}

async fn with_timeout<T>(
    timeout: Duration,
    what: &'static str,
    host: &str,
    work: impl std::future::Future<Output = Result<T, OpError>>,
) -> Result<T, OpError> {
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(OpError::new(ErrorKind::Temporary, what, host, format!("timed out after {timeout:?}"))),
    }
}

fn connector(config: &Option<Arc<ClientConfig>>, host: &str) -> Result<AsyncRustlsConnector, OpError> {
    let config = config
        .as_ref()
        .ok_or_else(|| OpError::new(ErrorKind::Other, "tls", host, "TLS asked for without a TLS configuration"))?;
    Ok(AsyncRustlsConnector::from(tokio_rustls::TlsConnector::from(Arc::clone(config))))
}

/// Opens, secures and logs in one control connection, within four times
/// the timeout in all: each step has its own limit where it can say what
/// it waited for, and this bound catches the rest (FEAT, TYPE I, PWD after
/// a login: a server gone silent there held a transfer, and a SIGTERM'd
/// run, without end).
pub async fn connect(params: &ConnectParams) -> Result<FtpConn, OpError> {
    let limit = params.timeout.saturating_mul(4);
    match tokio::time::timeout(limit, connect_steps(params)).await {
        Ok(connected) => connected,
        Err(_) => Err(OpError::new(
            ErrorKind::Temporary,
            "login",
            format!("{}:{}", display_host(&params.host), params.port),
            format!("the server stopped answering during the login (no answer within {limit:?})"),
        )),
    }
}

async fn connect_steps(params: &ConnectParams) -> Result<FtpConn, OpError> {
    let host = params.host.as_str();
    let shown = format!("{}:{}", display_host(host), params.port);
    let counted = |n: u64| params.round_trips.fetch_add(n, Ordering::Relaxed);
    let proxied = params.proxy.as_ref().map(|proxy| Proxied { proxy: Arc::clone(proxy), host: host.to_string() });
    if let (Some(proxied), DataMode::Active { .. }) = (&proxied, &params.data_mode) {
        // The server would connect back to us, which a SOCKS5 CONNECT
        // cannot carry.
        let why = "active mode (--active) cannot go through a SOCKS5 proxy: the server would connect back to barge, \
                   which the proxy does not carry; use passive mode";
        return Err(OpError::new(ErrorKind::Unsupported, "proxy", &shown, format!("{why} ({})", proxied.proxy)));
    }
    // Through a proxy, the proxy resolves the name.
    let addr = match proxied {
        Some(_) => None,
        None => Some(
            with_timeout(params.timeout, "resolve", &shown, async {
                tokio::net::lookup_host((host, params.port))
                    .await
                    .map_err(|e| OpError::new(ErrorKind::Connect, "resolve", &shown, e.to_string()))?
                    .next()
                    .ok_or_else(|| OpError::new(ErrorKind::Connect, "resolve", &shown, "no address"))
            })
            .await?,
        ),
    };
    let connect_err = |e: std::io::Error| {
        let kind = match ErrorKind::from_io(e.kind()) {
            ErrorKind::Temporary => ErrorKind::Temporary,
            _ => ErrorKind::Connect,
        };
        OpError::new(kind, "connect", &shown, e.to_string())
    };
    // One configuration (and so one session cache) for the control
    // connection and its data connections: servers may demand reuse.
    let tls_config = match params.tls_mode {
        TlsMode::None => None,
        TlsMode::Explicit | TlsMode::Implicit => params.tls.as_deref().map(tls::per_connection),
    };
    // Whether the TCP handshake was answered: a timeout before it is a
    // host that drops packets, after it a port that sends no greeting.
    let tcp_up = std::sync::atomic::AtomicBool::new(false);
    let connected = with_timeout(params.timeout, "connect", &shown, async {
        match params.tls_mode {
            TlsMode::Implicit => match (&proxied, addr) {
                (Some(proxied), _) => {
                    let tcp =
                        socks::connect(&proxied.proxy, host, params.port, params.timeout).await.map_err(connect_err)?;
                    tcp.set_nodelay(true).ok();
                    // See ImplicitThroughProxy: suppaftp's own socket goes
                    // to this placeholder and is dropped unused.
                    let placeholder = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
                        .await
                        .and_then(|l| l.local_addr().map(|a| (l, a)))
                        .map_err(connect_err)?;
                    let through = tls::ImplicitThroughProxy::new(connector(&tls_config, host)?, tcp);
                    let control = Control::connect_secure_implicit(placeholder.1, through, host).await;
                    drop(placeholder);
                    control.map_err(|e| tls_or(e, "connect", &shown))
                }
                (None, Some(addr)) => Control::connect_secure_implicit(addr, connector(&tls_config, host)?, host)
                    .await
                    .map_err(|e| tls_or(e, "connect", &shown)),
                (None, None) => Err(connect_err(std::io::Error::other("no address"))),
            },
            TlsMode::None | TlsMode::Explicit => {
                let tcp = match (&proxied, addr) {
                    (Some(proxied), _) => socks::connect(&proxied.proxy, host, params.port, params.timeout).await,
                    (None, Some(addr)) => TcpStream::connect(addr).await,
                    (None, None) => Err(std::io::Error::other("no address")),
                }
                .map_err(connect_err)?;
                tcp_up.store(true, std::sync::atomic::Ordering::Relaxed);
                tcp.set_nodelay(true).ok();
                let control = Control::connect_with_stream(tcp).await.map_err(|e| classify(e, "greeting", &shown))?;
                if params.tls_mode == TlsMode::Explicit {
                    control
                        .into_secure(connector(&tls_config, host)?, host)
                        .await
                        .map_err(|e| tls_or(e, "AUTH TLS", &shown))
                } else {
                    Ok(control)
                }
            }
        }
    })
    .await;
    let tcp_up = tcp_up.into_inner();
    let mut control = connected.map_err(|err| with_tls_mode_hint(err, params.tls_mode, tcp_up))?;
    // TCP handshake, greeting; AUTH TLS and its handshake, or the implicit
    // handshake (one TLS 1.3 round trip counted each).
    counted(match params.tls_mode {
        TlsMode::None => 2,
        TlsMode::Explicit => 4,
        TlsMode::Implicit => 3,
    });

    let user = params.login.user.clone();
    let password = params.login.password.as_ref().map_or("", |p| p.expose()).to_string();
    let login_err = |e: FtpError| {
        let mut err = classify(e, "login", &shown);
        if err.kind == ErrorKind::Auth || reply_code_is_auth(&err) {
            err.kind = ErrorKind::Auth;
            err.message = format!("the server refused user {user}: {}", err.message);
        }
        err
    };
    let plain = params.tls_mode == TlsMode::None;
    let pipelining = plain && params.pipelining.load(Ordering::Relaxed);
    let ask_utf8 = |features: &Features| features.utf8 && params.opts_utf8;
    let (features, home) = match params.learned.get().cloned() {
        // The first connection learned the server and that it answers
        // commands written together: the whole login in one write.
        Some(learned) if pipelining => {
            counted(1);
            let login = async {
                let mut lines = vec![format!("USER {user}").into_bytes(), format!("PASS {password}").into_bytes()];
                if ask_utf8(&learned.features) {
                    lines.push(b"OPTS UTF8 ON".to_vec());
                }
                lines.push(b"TYPE I".to_vec());
                write_batch(&control, &lines).await?;
                let user_reply = control.read_response_in(&[Status::LoggedIn, Status::NeedPassword]).await?;
                match control.read_response_in(&[Status::LoggedIn]).await {
                    Ok(_) => {}
                    // Logged in by USER alone: the PASS is superfluous (503).
                    Err(FtpError::UnexpectedResponse(_)) if user_reply.status == Status::LoggedIn => {}
                    Err(err) => return Err(err),
                }
                if ask_utf8(&learned.features) {
                    let _ = control.read_response_in(&[Status::CommandOk, Status::Unknown]).await;
                }
                control.read_response_in(&[Status::CommandOk]).await.map(|_| ())
            };
            with_timeout(params.timeout, "login", &shown, async { login.await.map_err(login_err) }).await?;
            (learned.features, learned.home)
        }
        None if pipelining && params.remembered.is_some() => {
            let remembered = params.remembered.clone().unwrap_or_else(|| unreachable!());
            counted(1);
            let utf8 = ask_utf8(&Features::from_feat(&feat_map(remembered.feat.iter().map(String::as_str))));
            let sent = Instant::now();
            let login = async {
                let mut lines = vec![
                    format!("USER {user}").into_bytes(),
                    format!("PASS {password}").into_bytes(),
                    b"FEAT".to_vec(),
                ];
                if utf8 {
                    lines.push(b"OPTS UTF8 ON".to_vec());
                }
                lines.extend([b"TYPE I".to_vec(), b"PWD".to_vec()]);
                write_batch(&control, &lines).await?;
                let user_reply = control.read_response_in(&[Status::LoggedIn, Status::NeedPassword]).await?;
                // The server answers USER at once: one round trip.
                let round_trip = sent.elapsed();
                match control.read_response_in(&[Status::LoggedIn]).await {
                    Ok(_) => {}
                    Err(FtpError::UnexpectedResponse(_)) if user_reply.status == Status::LoggedIn => {}
                    Err(err) => return Err(err),
                }
                // Read whole (suppaftp stops at `211-` when 211 is
                // expected): a 211 is then "unexpected", with its body.
                let feat = match control.read_response_in(&[Status::CommandOk]).await {
                    Err(FtpError::UnexpectedResponse(reply)) if reply.status == Status::System => {
                        parse_feat_body(&reply.body)
                    }
                    Ok(_) | Err(FtpError::UnexpectedResponse(_)) => HashMap::new(),
                    Err(err) => return Err(err),
                };
                if utf8 {
                    let _ = control.read_response_in(&[Status::CommandOk, Status::Unknown]).await;
                }
                control.read_response_in(&[Status::CommandOk]).await?;
                let pwd = control.read_response_in(&[Status::PathCreated]).await?;
                Ok((feat, parse_pwd(&pwd.body).unwrap_or_else(|| "/".to_string()), round_trip))
            };
            match tokio::time::timeout(PIPELINE_PROBE.min(params.timeout), login).await {
                Ok(Ok((feat, home, round_trip))) => {
                    let features = Features::from_feat(&feat);
                    let learned = Learned { features, feat: feat_lines(&feat), home, round_trip: Some(round_trip) };
                    let _ = params.learned.set(learned.clone());
                    (learned.features, learned.home)
                }
                Ok(Err(err)) => return Err(login_err(err)),
                Err(_) => {
                    // Lost on the way: log in again one command at a time.
                    params.pipelining.store(false, Ordering::Relaxed);
                    return Box::pin(connect_steps(params)).await;
                }
            }
        }
        learned => {
            with_timeout(params.timeout, "login", &shown, async {
                control.login(user.as_str(), password.as_str()).await.map_err(login_err)
            })
            .await?;
            // USER, PASS.
            counted(2);
            if params.tls_mode == TlsMode::Implicit {
                // suppaftp sends neither after an implicit handshake; without them
                // servers refuse every data connection (522).
                for command in ["PBSZ 0", "PROT P"] {
                    counted(1);
                    control
                        .custom_command(command, &[Status::CommandOk])
                        .await
                        .map_err(|e| classify(e, "login", &shown))?;
                }
            }
            let (features, feat) = match &learned {
                Some(learned) => (learned.features.clone(), learned.feat.clone()),
                None => {
                    counted(1);
                    match control.feat().await {
                        Ok(feat) => (Features::from_feat(&feat), feat_lines(&feat)),
                        Err(_) => (Features::default(), Vec::new()),
                    }
                }
            };
            let mut round_trip = None;
            let home = if learned.is_none() && pipelining {
                // The pipelining probe: three commands the login needs anyway,
                // written at once. A server (or middlebox) that loses
                // commands arriving together is found here, once, before any
                // file depends on it: pipelining goes off and this
                // connection, out of step, is replaced.
                counted(1);
                let sent = Instant::now();
                let probe = async {
                    let mut lines = Vec::new();
                    if ask_utf8(&features) {
                        lines.push(b"OPTS UTF8 ON".to_vec());
                    }
                    lines.extend([b"TYPE I".to_vec(), b"PWD".to_vec()]);
                    write_batch(&control, &lines).await?;
                    if ask_utf8(&features) {
                        let _ = control.read_response_in(&[Status::CommandOk, Status::Unknown]).await;
                    }
                    control.read_response_in(&[Status::CommandOk]).await?;
                    control.read_response_in(&[Status::PathCreated]).await
                };
                match tokio::time::timeout(PIPELINE_PROBE.min(params.timeout), probe).await {
                    Ok(Ok(reply)) => {
                        round_trip = Some(sent.elapsed());
                        parse_pwd(&reply.body).unwrap_or_else(|| "/".to_string())
                    }
                    Ok(Err(err @ FtpError::UnexpectedResponse(_))) => return Err(classify(err, "TYPE I", &shown)),
                    Ok(Err(err)) => return Err(classify(err, "login", &shown)),
                    Err(_) => {
                        params.pipelining.store(false, Ordering::Relaxed);
                        return Box::pin(connect_steps(params)).await;
                    }
                }
            } else {
                if ask_utf8(&features) {
                    counted(1);
                    let _ = control.custom_command("OPTS UTF8 ON", &[Status::CommandOk, Status::Unknown]).await;
                }
                counted(1);
                control.transfer_type(FileType::Binary).await.map_err(|e| classify(e, "TYPE I", &shown))?;
                match &learned {
                    Some(learned) => learned.home.clone(),
                    None => {
                        counted(1);
                        control.pwd().await.unwrap_or_else(|_| "/".to_string())
                    }
                }
            };
            if learned.is_none() {
                let _ =
                    params.learned.set(Learned { features: features.clone(), feat, home: home.clone(), round_trip });
            }
            (features, home)
        }
    };
    control.set_encoding(RawBytes).await;

    let mut active = None;
    match &params.data_mode {
        DataMode::Active { ports } => {
            let tls = match tls_config {
                Some(config) => {
                    let name = ServerName::try_from(host.to_string())
                        .map_err(|e| OpError::new(ErrorKind::Connect, "tls", &shown, e.to_string()))?;
                    Some((config, name))
                }
                None => None,
            };
            active = Some(ActiveSetup { ports: ports.clone(), timeout: params.timeout, tls });
        }
        &DataMode::Passive { trust_reply_address } => {
            control.set_mode(if features.epsv { Mode::ExtendedPassive } else { Mode::Passive });
            let peer = match addr {
                Some(addr) => addr,
                None => control
                    .get_ref()
                    .await
                    .peer_addr()
                    .map_err(|e| OpError::new(ErrorKind::Temporary, "connect", &shown, e.to_string()))?,
            };
            let timeout = params.timeout;
            let round_trips = Arc::clone(&params.round_trips);
            let through = proxied.clone();
            control = control.passive_stream_builder(move |announced| {
                // The data connection's TCP handshake: one round trip.
                round_trips.fetch_add(1, Ordering::Relaxed);
                match through.clone() {
                    Some(proxied) => Box::pin(async move {
                        let host = proxied_data_host(&proxied, announced, peer);
                        connect_data_proxied(&proxied, &host, announced.port(), timeout).await
                    }),
                    None => Box::pin(connect_data(passive_target(announced, peer, trust_reply_address), timeout)),
                }
            });
        }
    }
    Ok(FtpConn {
        control,
        features,
        home,
        last_used: Instant::now(),
        hash_selected: None,
        active,
        plain: params.tls_mode == TlsMode::None,
        pipelining: Arc::clone(&params.pipelining),
        round_trips: Arc::clone(&params.round_trips),
        data_timeout: params.timeout,
        proxied,
    })
}

fn reply_code_is_auth(err: &OpError) -> bool {
    err.message.starts_with("530")
}

/// A TLS failure is a connection failure (exit 3), not a retryable one.
fn tls_or(err: FtpError, op: &'static str, shown: &str) -> OpError {
    match err {
        FtpError::SecureError(message) => {
            OpError::new(ErrorKind::Connect, op, shown, format!("TLS handshake failed: {message}"))
        }
        other => classify(other, op, shown),
    }
}

/// The usual cause of a failed first exchange is the wrong TLS mode for
/// the port: say so, as `doctor` does. An implicit-TLS handshake answered
/// in plain text ("corrupt message", "InvalidContentType") is a plain or
/// explicit-TLS port; a plain connection that never hears a greeting is
/// usually an implicit-TLS port waiting for a handshake; one whose TCP
/// handshake was never answered (`tcp_up` false) is not the port's mode.
fn with_tls_mode_hint(mut err: OpError, mode: TlsMode, tcp_up: bool) -> OpError {
    let timed_out = err.op == "connect" && err.message.starts_with("timed out");
    let hint = match mode {
        TlsMode::None | TlsMode::Explicit if timed_out && !tcp_up => {
            "; the connection was never answered: a wrong host or port, or a firewall that drops it"
        }
        TlsMode::Implicit if err.message.contains("InvalidContentType") || err.message.contains("corrupt message") => {
            "; the port answered in plain text, so it is not an implicit-TLS port: use ftpes:// (AUTH TLS on this \
             port), or ftps:// with the implicit-TLS port (usually 990)"
        }
        TlsMode::None | TlsMode::Explicit if timed_out => {
            "; no FTP greeting came: if this is an implicit-TLS port (usually 990), use ftps://"
        }
        _ => return err,
    };
    err.message.push_str(hint);
    err
}

/// IPv6 literals in brackets, for messages.
pub fn display_host(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_feat_reply_read_whole_gives_the_features_feat_gives() {
        let body = b"211-Features:\r\n MLST modify*;size*;type*;\r\n UTF8\r\n REST STREAM\r\n EPSV\r\n211 End\r\n";
        let feat = parse_feat_body(body);
        let features = Features::from_feat(&feat);
        assert!(features.mlsd && features.utf8 && features.rest_stream && features.epsv);
        assert!(!features.mfmt);
        assert_eq!(feat_lines(&feat), ["EPSV", "MLST modify*;size*;type*;", "REST STREAM", "UTF8"]);
    }

    #[test]
    fn a_remembered_login_reads_back_as_written() {
        let remembered = Remembered { home: "/home/a b".into(), feat: vec!["MLST size*;".into(), "UTF8".into()] };
        assert_eq!(Remembered::from_text(&remembered.to_text()), Some(remembered.clone()));
        assert_eq!(
            Features::from_feat(&feat_map(remembered.feat.iter().map(String::as_str))),
            Features { mlsd: true, utf8: true, ..Features::default() }
        );
        assert_eq!(Remembered::from_text("not a path\nUTF8"), None);
    }

    #[test]
    fn nat_rule_replaces_internal_addresses_behind_a_public_peer() {
        let public = addr("203.0.113.5:21");
        assert_eq!(passive_target(addr("10.0.0.7:40001"), public, false), addr("203.0.113.5:40001"));
        assert_eq!(passive_target(addr("127.0.0.1:40001"), public, false), addr("203.0.113.5:40001"));
        assert_eq!(passive_target(addr("0.0.0.0:40001"), public, false), addr("203.0.113.5:40001"));
        // Asked to trust the reply, or peer internal too: as announced.
        assert_eq!(passive_target(addr("10.0.0.7:40001"), public, true), addr("10.0.0.7:40001"));
        let internal = addr("192.168.1.2:21");
        assert_eq!(passive_target(addr("10.0.0.7:40001"), internal, false), addr("10.0.0.7:40001"));
        // A public, different address (a separate data host) is used as is.
        assert_eq!(passive_target(addr("198.51.100.9:40001"), public, false), addr("198.51.100.9:40001"));
    }

    #[test]
    fn replies_are_classified_for_retry_and_exit_codes() {
        let reply = |text: &str| {
            let code: u32 = text[..3].parse().unwrap();
            FtpError::UnexpectedResponse(suppaftp::types::Response {
                status: Status::from(code),
                body: text.as_bytes().to_vec(),
            })
        };
        assert_eq!(classify(reply("421 Too many users"), "x", "p").kind, ErrorKind::Temporary);
        assert_eq!(classify(reply("426 Connection closed"), "x", "p").kind, ErrorKind::Temporary);
        assert_eq!(classify(reply("500 OOPS: vsf_sysutil_bind"), "x", "p").kind, ErrorKind::Temporary);
        assert_eq!(classify(reply("500 Unknown command."), "x", "p").kind, ErrorKind::Unsupported);
        assert_eq!(classify(reply("530 Login incorrect."), "x", "p").kind, ErrorKind::Auth);
        assert_eq!(classify(reply("550 Failed to open file."), "x", "p").kind, ErrorKind::NotFound);
        assert_eq!(classify(reply("550 Permission denied."), "x", "p").kind, ErrorKind::PermissionDenied);
        assert_eq!(classify(reply("552 Quota exceeded"), "x", "p").kind, ErrorKind::NoSpace);
        let tls_required = reply("522 Data connections must be encrypted.");
        assert_eq!(reply_code(&tls_required), Some(522));
        assert!(classify(tls_required, "x", "p").message.contains("522"));
    }
}
