//! One SSH connection carrying one SFTP channel: connect, check the host
//! key, authenticate, start the `sftp` subsystem, and classify failures.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult};
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::StatusCode;

use super::auth::Credentials;
use super::hostkey::{self, Decision, Verdict};
use crate::backend::socks::Socks5Proxy;
use crate::error::{ErrorKind, OpError};

/// Flow-control window of the SFTP channel: what the server may send
/// before we acknowledge. The 2 MiB default caps one download at
/// ~43 MB/s over a 20 ms round trip (measured); 16 MiB does not.
const WINDOW: u32 = 16 * 1024 * 1024;
/// Largest SSH packet we accept (russh complains above 64 KiB).
const MAX_PACKET: u32 = 65_535;

/// Everything needed to open a session; shared by every session of a pool.
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    /// `host:port` for messages.
    pub shown: String,
    pub credentials: Credentials,
    pub known_hosts: PathBuf,
    pub accept_new: bool,
    pub timeout: Duration,
    /// The key the first connection accepted: later sessions must match it.
    pinned: Mutex<Option<PublicKey>>,
    /// The login method that worked, tried first (alone) by later sessions.
    working: Mutex<Option<Method>>,
    /// Round trips of every session opened with these parameters (see
    /// [`crate::backend::Backend::round_trips`]).
    pub round_trips: Arc<AtomicU64>,
    /// Jump hosts, first connected first: each hop logs in with its own
    /// parameters (user, keys, host key check under its own name and
    /// port), and the next connection goes through it (direct-tcpip).
    pub jumps: Vec<Arc<ConnectParams>>,
    /// The SOCKS5 proxy the first TCP connection goes through.
    pub proxy: Option<Arc<Socks5Proxy>>,
}

impl ConnectParams {
    /// The login method that worked, in words (`key /path`, `ssh-agent key
    /// SHA256:...`, `password`); `None` before a login. Never the secret.
    pub fn working_method(&self) -> Option<String> {
        let method = self.working.lock().ok()?.clone()?;
        Some(match method {
            Method::Agent(key, _) => format!("ssh-agent key {}", hostkey::fingerprint(&key)),
            Method::Key(index, _) => match self.credentials.keys.get(index) {
                Some(loaded) => format!("key {}", loaded.path.display()),
                None => "key".to_string(),
            },
            Method::Password => "password".to_string(),
        })
    }

    pub fn new(
        host: String,
        port: u16,
        credentials: Credentials,
        known_hosts: PathBuf,
        accept_new: bool,
        timeout: Duration,
    ) -> ConnectParams {
        let shown = format!("{}:{port}", if host.contains(':') { format!("[{host}]") } else { host.clone() });
        ConnectParams {
            host,
            port,
            shown,
            credentials,
            known_hosts,
            accept_new,
            timeout,
            pinned: Mutex::new(None),
            working: Mutex::new(None),
            round_trips: Arc::default(),
            jumps: Vec::new(),
            proxy: None,
        }
    }

    /// These parameters, reached through `jumps` (first connected first),
    /// the first TCP connection through `proxy`.
    pub fn through(mut self, jumps: Vec<Arc<ConnectParams>>, proxy: Option<Arc<Socks5Proxy>>) -> ConnectParams {
        self.jumps = jumps;
        self.proxy = proxy;
        self
    }

    /// Where the first TCP connection goes: the proxy, else the first jump
    /// host, else the server.
    pub fn first_connection(&self) -> (&str, u16) {
        if let Some(proxy) = &self.proxy {
            return (&proxy.host, proxy.port);
        }
        let first = self.jumps.first().map_or(self, |hop| &**hop);
        (&first.host, first.port)
    }

    /// How connections reach the server, in words: `direct`, or `through
    /// jump hosts user@a:22 -> user@b:22`. Never a secret.
    pub fn route(&self) -> String {
        let mut route = Vec::new();
        if let Some(proxy) = &self.proxy {
            route.push(format!("through SOCKS5 proxy {proxy} (from {})", proxy.source));
        }
        if !self.jumps.is_empty() {
            let hops: Vec<String> =
                self.jumps.iter().map(|hop| format!("{}@{}", hop.credentials.user, hop.shown)).collect();
            route.push(format!("through jump host{} {}", if hops.len() > 1 { "s" } else { "" }, hops.join(" -> ")));
        }
        if route.is_empty() { "direct".to_string() } else { route.join(", then ") }
    }
}

/// A way of logging in. RSA keys carry the signature hash to use
/// (`None`: the SHA-1 `ssh-rsa`, and for other key types).
#[derive(Debug, Clone, PartialEq)]
enum Method {
    Agent(PublicKey, Option<HashAlg>),
    Key(usize, Option<HashAlg>),
    Password,
}

/// russh's connection handler: only the host key check is ours.
pub struct Client {
    params: Arc<ConnectParams>,
    /// Why the host key was refused, for the error message.
    refusal: Arc<Mutex<Option<OpError>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let result = self.judge(server_key).await;
        match result {
            Ok(()) => Ok(true),
            Err(err) => {
                if let Ok(mut slot) = self.refusal.lock() {
                    *slot = Some(err);
                }
                Ok(false)
            }
        }
    }
}

impl Client {
    async fn judge(&self, server_key: &PublicKeyOrCertificate) -> Result<(), OpError> {
        let p = &self.params;
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(_) => {
                return Err(OpError::new(
                    ErrorKind::Connect,
                    "host key",
                    &p.shown,
                    "the server presented a host certificate; only plain host keys are supported",
                ));
            }
        };
        let pinned = p.pinned.lock().ok().and_then(|k| k.clone());
        if let Some(pinned) = pinned {
            return if pinned.key_data() == key.key_data() {
                Ok(())
            } else {
                Err(OpError::new(
                    ErrorKind::Connect,
                    "host key",
                    &p.shown,
                    format!(
                        "the host key CHANGED during this run (now {} {}): possible man-in-the-middle attack",
                        key.algorithm(),
                        hostkey::fingerprint(&key)
                    ),
                ))
            };
        }
        let (host, port, path, accept_new) = (p.host.clone(), p.port, p.known_hosts.clone(), p.accept_new);
        let checked = key.clone();
        let decision =
            tokio::task::spawn_blocking(move || hostkey::check_or_learn(&host, port, &checked, &path, accept_new))
                .await
                .map_err(|e| OpError::new(ErrorKind::Other, "host key", &p.shown, e.to_string()))?
                .map_err(|why| OpError::new(ErrorKind::Connect, "host key", &p.shown, why))?;
        let name = hostkey::host_pattern(&p.host, p.port);
        let file = p.known_hosts.display();
        let (algorithm, fingerprint) = (key.algorithm(), hostkey::fingerprint(&key));
        let refused = |message: String| Err(OpError::new(ErrorKind::Connect, "host key", &p.shown, message));
        match decision {
            Decision::Trusted | Decision::Learned => {
                if let Ok(mut slot) = p.pinned.lock() {
                    *slot = Some(key);
                }
                Ok(())
            }
            Decision::Refused(Verdict::Unknown) => refused(format!(
                "unknown host key: {name} is not in {file}; the server's {algorithm} key fingerprint is \
                 {fingerprint}. Check it with the server's administrator, then run again with \
                 --accept-new-host-key to record it"
            )),
            Decision::Refused(Verdict::Changed { lines }) => refused(format!(
                "WARNING: the host key for {name} has CHANGED (possible man-in-the-middle attack). The server \
                 presented {algorithm} key {fingerprint}, but {file} records a different key at line {}. If the \
                 server's key was replaced on purpose, remove that line and run again with --accept-new-host-key",
                join_lines(&lines)
            )),
            Decision::Refused(Verdict::OtherTypes { lines }) => refused(format!(
                "the server presented {algorithm} key {fingerprint} for {name}, but {file} records only keys of \
                 other types for it (line {}): the host key may have CHANGED (possible man-in-the-middle attack); \
                 refusing",
                join_lines(&lines)
            )),
            Decision::Refused(Verdict::Revoked { line }) => refused(format!(
                "REVOKED HOST KEY: the server presented {algorithm} key {fingerprint} for {name}, which {file} \
                 marks @revoked at line {line}: refusing (the key is compromised; ask the server's \
                 administrator for its new key)"
            )),
            Decision::Refused(Verdict::CertAuthority { lines }) => refused(format!(
                "{file} trusts {name} through a @cert-authority line (line {}), and barge checks plain host keys, \
                 not certificates: add the host's own key (the server's {algorithm} key fingerprint is \
                 {fingerprint}; ssh-keyscan prints it) or give --known-hosts FILE",
                join_lines(&lines)
            )),
            Decision::Refused(Verdict::Known) => Ok(()),
        }
    }
}

fn join_lines(lines: &[usize]) -> String {
    lines.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
}

/// What the server's SFTP subsystem offers.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    /// `posix-rename@openssh.com`: rename that replaces atomically.
    pub posix_rename: bool,
    /// `fsync@openssh.com`.
    pub fsync: bool,
    /// Largest read and write payloads the server accepts.
    pub read_len: u32,
    pub write_len: u32,
    /// The SFTP protocol version and every extension the server announced
    /// (for `barge doctor`).
    pub version: u32,
    pub extensions: Vec<String>,
}

/// A live SFTP session over its own SSH connection.
pub struct SftpConn {
    pub ssh: client::Handle<Client>,
    pub sftp: Arc<RawSftpSession>,
    pub info: ServerInfo,
    /// The jump hosts' connections the session runs through, held open
    /// as long as it is.
    _jumps: Vec<client::Handle<Client>>,
}

/// A byte stream to an SSH server: a TCP connection, or a channel of the
/// jump host before it.
pub trait Transport: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// A stream to the server of `params` as its route goes (direct, or
/// through each jump host, logged in), not yet speaking SSH; with the
/// jump hosts' connections, which must outlive it.
pub async fn open_transport(
    params: &ConnectParams,
) -> Result<(Box<dyn Transport>, Vec<client::Handle<Client>>), OpError> {
    let first = params.jumps.first().map_or(params, |hop| &**hop);
    let tcp = tcp_connect(params.proxy.as_deref(), &first.host, first.port, &first.shown, params.timeout).await?;
    let mut stream: Box<dyn Transport> = Box::new(tcp);
    let mut hops = Vec::with_capacity(params.jumps.len());
    for (index, hop) in params.jumps.iter().enumerate() {
        let timed_out = || {
            OpError::new(ErrorKind::Temporary, "jump host", &hop.shown, format!("timed out after {:?}", hop.timeout))
        };
        let mut ssh = handshake(hop, stream).await?;
        tokio::time::timeout(hop.timeout * 2, authenticate(&mut ssh, hop)).await.map_err(|_| timed_out())??;
        let next = params.jumps.get(index + 1).map_or(params, |next| &**next);
        let channel = tokio::time::timeout(
            hop.timeout,
            ssh.channel_open_direct_tcpip(next.host.as_str(), u32::from(next.port), "127.0.0.1", 0),
        )
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| {
            let mut err = ssh_error(e, "jump host", &hop.shown);
            err.message = format!("could not open a connection to {} through it: {}", next.shown, err.message);
            err
        })?;
        hop.round_trips.fetch_add(1, Ordering::Relaxed);
        stream = Box::new(channel.into_stream());
        hops.push(ssh);
    }
    Ok((stream, hops))
}

/// A TCP connection to `host:port` (every address it resolves to, in
/// turn), or through `proxy`, within `timeout`.
async fn tcp_connect(
    proxy: Option<&Socks5Proxy>,
    host: &str,
    port: u16,
    shown: &str,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, OpError> {
    let connecting = async {
        match proxy {
            Some(proxy) => crate::backend::socks::connect(proxy, host, port, timeout).await,
            None => tokio::net::TcpStream::connect((host, port)).await,
        }
    };
    let connected = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| OpError::new(ErrorKind::Temporary, "connect", shown, format!("timed out after {timeout:?}")))?;
    let tcp = connected.map_err(|e| ssh_error(russh::Error::IO(e), "connect", shown))?;
    tcp.set_nodelay(true).ok();
    Ok(tcp)
}

/// The SSH handshake over `stream`: key exchange and the host key check,
/// no login yet.
async fn handshake(params: &Arc<ConnectParams>, stream: Box<dyn Transport>) -> Result<client::Handle<Client>, OpError> {
    let shown = &params.shown;
    let config = Arc::new(ssh_config(params));
    let refusal = Arc::new(Mutex::new(None));
    let handler = Client { params: Arc::clone(params), refusal: Arc::clone(&refusal) };
    let connected =
        tokio::time::timeout(params.timeout, client::connect_stream(config, stream, handler)).await.map_err(|_| {
            OpError::new(ErrorKind::Temporary, "connect", shown, format!("timed out after {:?}", params.timeout))
        })?;
    let ssh = match connected {
        Ok(ssh) => ssh,
        Err(err) => {
            if let Some(refused) = refusal.lock().ok().and_then(|mut r| r.take()) {
                return Err(refused);
            }
            return Err(ssh_error(err, "connect", shown));
        }
    };
    // TCP handshake, key exchange (version and KEXINIT, ECDH, NEWKEYS).
    params.round_trips.fetch_add(3, Ordering::Relaxed);
    Ok(ssh)
}

/// russh settings: our window, AES-GCM first (measured faster than
/// chacha20-poly1305 here), host key types already recorded first.
pub fn ssh_config(params: &ConnectParams) -> client::Config {
    let mut preferred = russh::Preferred::default();
    let recorded = hostkey::recorded(&params.host, params.port, &params.known_hosts).unwrap_or_default();
    let defaults: Vec<Algorithm> = preferred.key.to_vec();
    preferred.key = Cow::Owned(hostkey::preferred_algorithms(&recorded, &defaults));
    preferred.cipher = Cow::Borrowed(&[
        russh::cipher::AES_256_GCM,
        russh::cipher::CHACHA20_POLY1305,
        russh::cipher::AES_256_CTR,
        russh::cipher::AES_128_CTR,
    ]);
    client::Config {
        window_size: WINDOW,
        maximum_packet_size: MAX_PACKET,
        preferred,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        nodelay: true,
        ..client::Config::default()
    }
}

/// Opens, verifies, authenticates and starts SFTP on one connection.
pub async fn connect(params: &Arc<ConnectParams>) -> Result<SftpConn, OpError> {
    let shown = params.shown.clone();
    let timed_out =
        || OpError::new(ErrorKind::Temporary, "connect", &shown, format!("timed out after {:?}", params.timeout));
    let (stream, jumps) = open_transport(params).await?;
    let mut ssh = handshake(params, stream).await?;
    tokio::time::timeout(params.timeout * 2, authenticate(&mut ssh, params)).await.map_err(|_| timed_out())??;
    let sftp = tokio::time::timeout(params.timeout, start_sftp(&ssh, params)).await.map_err(|_| timed_out())??;
    Ok(SftpConn { ssh, sftp: Arc::new(sftp.0), info: sftp.1, _jumps: jumps })
}

async fn start_sftp(
    ssh: &client::Handle<Client>,
    params: &ConnectParams,
) -> Result<(RawSftpSession, ServerInfo), OpError> {
    let shown = &params.shown;
    // Channel open, subsystem, init, limits.
    params.round_trips.fetch_add(4, Ordering::Relaxed);
    let channel = ssh.channel_open_session().await.map_err(|e| ssh_error(e, "sftp", shown))?;
    channel.request_subsystem(true, "sftp").await.map_err(|e| ssh_error(e, "sftp", shown))?;
    let config = russh_sftp::client::Config {
        request_timeout_secs: params.timeout.as_secs().max(1),
        ..russh_sftp::client::Config::default()
    };
    let mut sftp = RawSftpSession::new_with_config(channel.into_stream(), config);
    let version = sftp.init().await.map_err(|e| classify(e, "sftp", shown))?;
    let has = |name: &str| version.extensions.contains_key(name);
    // OpenSSH's limits (256 KiB messages); 32 KiB is what every server must take.
    let (mut read_len, mut write_len) = (32 * 1024, 32 * 1024);
    if has("limits@openssh.com")
        && let Ok(limits) = sftp.limits().await
    {
        let fit = |n: u64| u32::try_from(n.clamp(32 * 1024, 255 * 1024)).unwrap_or(32 * 1024);
        if limits.max_read_len > 0 {
            read_len = fit(limits.max_read_len);
        }
        if limits.max_write_len > 0 {
            write_len = fit(limits.max_write_len);
        }
        // russh-sftp checks reads and writes against these itself.
        sftp.set_limits(limits.into());
    }
    let info = ServerInfo {
        posix_rename: has("posix-rename@openssh.com"),
        fsync: has("fsync@openssh.com"),
        read_len,
        write_len,
        version: version.version,
        extensions: {
            let mut names: Vec<String> = version.extensions.keys().cloned().collect();
            names.sort();
            names
        },
    };
    Ok((sftp, info))
}

/// Tries the login methods in order; the first that works is remembered.
async fn authenticate(ssh: &mut client::Handle<Client>, params: &ConnectParams) -> Result<(), OpError> {
    let creds = &params.credentials;
    let shown = &params.shown;
    let known = params.working.lock().ok().and_then(|w| w.clone());
    if let Some(method) = known
        && try_method(ssh, params, &method).await?
    {
        return Ok(());
    }
    let mut tried: Vec<String> = Vec::new();
    let mut methods: Vec<Method> = Vec::new();
    let mut rsa_hashes: Option<Vec<Option<HashAlg>>> = None;
    let mut hashes_for = async |algorithm: Algorithm| -> Vec<Option<HashAlg>> {
        if !matches!(algorithm, Algorithm::Rsa { .. }) {
            return vec![None];
        }
        if rsa_hashes.is_none() {
            rsa_hashes = Some(rsa_signature_hashes(ssh).await);
        }
        rsa_hashes.clone().unwrap_or_default()
    };
    if creds.agent {
        match agent_keys().await {
            Ok(keys) => {
                if !keys.is_empty() {
                    tried.push(format!("{} key(s) from ssh-agent", keys.len()));
                }
                for key in keys {
                    for hash in hashes_for(key.algorithm()).await {
                        methods.push(Method::Agent(key.clone(), hash));
                    }
                }
            }
            Err(why) => tried.push(format!("ssh-agent ({why})")),
        }
    }
    for (i, key) in creds.keys.iter().enumerate() {
        tried.push(format!("key {}", key.path.display()));
        for hash in hashes_for(key.key.algorithm()).await {
            methods.push(Method::Key(i, hash));
        }
    }
    if creds.password.is_some() {
        tried.push("password".into());
        methods.push(Method::Password);
    }
    for method in methods {
        if try_method(ssh, params, &method).await? {
            if let Ok(mut w) = params.working.lock() {
                *w = Some(method);
            }
            return Ok(());
        }
    }
    let mut message = format!("the server refused user {} at {shown}", creds.user);
    if tried.is_empty() {
        message.push_str(": no key or password to offer (give --identity FILE, or a password via --password-env / BARGE_PASSWORD / ~/.netrc)");
    } else {
        message.push_str(&format!(" (tried {})", tried.join(", ")));
    }
    for skipped in &creds.skipped {
        message.push_str(&format!("; skipped {skipped}"));
    }
    Err(OpError::new(ErrorKind::Auth, "login", shown, message))
}

/// Signature hashes to offer with an RSA key, best first: the one the
/// server's `server-sig-algs` prefers, then the other SHA-2 one. OpenSSH
/// advertises both even when its `PubkeyAcceptedAlgorithms` takes only one
/// (measured: a server taking only rsa-sha2-256 refused the advertised
/// 512). SHA-1 `ssh-rsa` only when the server names nothing better.
async fn rsa_signature_hashes(ssh: &client::Handle<Client>) -> Vec<Option<HashAlg>> {
    let best = ssh.best_supported_rsa_hash().await.ok().flatten().flatten();
    let mut hashes = vec![best];
    for hash in [Some(HashAlg::Sha512), Some(HashAlg::Sha256)] {
        if !hashes.contains(&hash) {
            hashes.push(hash);
        }
    }
    hashes
}

/// Keys ssh-agent holds; none when there is no agent.
async fn agent_keys() -> Result<Vec<PublicKey>, String> {
    let mut agent = russh::keys::agent::client::AgentClient::connect_env().await.map_err(|e| e.to_string())?;
    let identities = agent.request_identities().await.map_err(|e| e.to_string())?;
    Ok(identities
        .into_iter()
        .filter_map(|id| match id {
            russh::keys::agent::AgentIdentity::PublicKey { key, .. } => Some(key),
            _ => None,
        })
        .collect())
}

/// One login attempt: `Ok(false)` when the server said no.
async fn try_method(
    ssh: &mut client::Handle<Client>,
    params: &ConnectParams,
    method: &Method,
) -> Result<bool, OpError> {
    let creds = &params.credentials;
    let shown = &params.shown;
    let user = creds.user.clone();
    // One attempt, one answer awaited (the first one also asks for the
    // ssh-userauth service, answered in the same flight by russh's pipelining).
    params.round_trips.fetch_add(1, Ordering::Relaxed);
    let result = match method {
        Method::Agent(key, hash) => {
            let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await else { return Ok(false) };
            match ssh.authenticate_publickey_with(user, key.clone(), *hash, &mut agent).await {
                Ok(result) => result,
                // The agent would not sign: try the next method.
                Err(_) => return Ok(false),
            }
        }
        Method::Key(index, hash) => {
            let Some(loaded) = creds.keys.get(*index) else { return Ok(false) };
            let key = PrivateKeyWithHashAlg::new(Arc::clone(&loaded.key), *hash);
            ssh.authenticate_publickey(user, key).await.map_err(|e| ssh_error(e, "login", shown))?
        }
        Method::Password => {
            let Some(password) = &creds.password else { return Ok(false) };
            ssh.authenticate_password(user, password.expose()).await.map_err(|e| ssh_error(e, "login", shown))?
        }
    };
    Ok(matches!(result, AuthResult::Success))
}

/// A russh failure as an [`OpError`].
pub fn ssh_error(err: russh::Error, op: &'static str, shown: &str) -> OpError {
    let kind = match &err {
        russh::Error::IO(io) => match ErrorKind::from_io(io.kind()) {
            ErrorKind::Other => ErrorKind::Temporary,
            kind => kind,
        },
        russh::Error::ConnectionTimeout
        | russh::Error::KeepaliveTimeout
        | russh::Error::InactivityTimeout
        | russh::Error::Disconnect
        | russh::Error::HUP
        | russh::Error::SendError => ErrorKind::Temporary,
        russh::Error::NoCommonAlgo { .. } => ErrorKind::Connect,
        russh::Error::NotAuthenticated => ErrorKind::Auth,
        _ => ErrorKind::Other,
    };
    OpError::new(kind, op, shown, format!("SSH: {err}"))
}

/// True when `err` means the session itself failed (transport, timeout,
/// protocol): no new work may go on it.
pub fn breaks_session(err: &SftpError) -> bool {
    match err {
        SftpError::Status(status) => {
            matches!(status.status_code, StatusCode::NoConnection | StatusCode::ConnectionLost)
        }
        SftpError::Timeout | SftpError::IO(_) | SftpError::UnexpectedBehavior(_) | SftpError::UnexpectedPacket => true,
        SftpError::Limited(_) => false,
    }
}

/// An SFTP failure as an [`OpError`], with whether the session itself is
/// now suspect (it is then dropped from the pool).
pub fn classify_session(err: SftpError, op: &'static str, path: impl std::fmt::Display) -> (OpError, bool) {
    let broken = breaks_session(&err);
    let kind = match &err {
        SftpError::Status(status) => match status.status_code {
            StatusCode::NoSuchFile => ErrorKind::NotFound,
            StatusCode::PermissionDenied => ErrorKind::PermissionDenied,
            StatusCode::OpUnsupported => ErrorKind::Unsupported,
            StatusCode::BadMessage => ErrorKind::InvalidData,
            StatusCode::NoConnection | StatusCode::ConnectionLost => ErrorKind::Temporary,
            StatusCode::Ok | StatusCode::Eof | StatusCode::Failure => ErrorKind::Other,
        },
        SftpError::Timeout | SftpError::IO(_) => ErrorKind::Temporary,
        SftpError::UnexpectedBehavior(_) | SftpError::UnexpectedPacket => ErrorKind::Temporary,
        SftpError::Limited(_) => ErrorKind::Other,
    };
    let message = match &err {
        SftpError::Status(status) if !status.error_message.is_empty() => status.error_message.clone(),
        // russh-sftp says only "Timeout".
        SftpError::Timeout => "timed out: the server did not answer within --timeout".to_string(),
        // russh-sftp's reader stopped (it logs why, we do not see it): the
        // answer will never come.
        SftpError::UnexpectedBehavior(m) if m == "sender dropped" || m.starts_with("RecvError") => {
            "the SFTP session ended: the connection closed, or the server sent a message that is malformed or \
             larger than 256 KiB"
                .to_string()
        }
        other => other.to_string(),
    };
    (OpError::new(kind, op, path, message), broken)
}

pub fn classify(err: SftpError, op: &'static str, path: impl std::fmt::Display) -> OpError {
    classify_session(err, op, path).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh_sftp::protocol::Status;

    fn status(code: StatusCode, text: &str) -> SftpError {
        SftpError::Status(Status { id: 1, status_code: code, error_message: text.into(), language_tag: "en".into() })
    }

    #[test]
    fn statuses_map_to_kinds_and_transport_failures_break_the_session() {
        let (e, broken) = classify_session(status(StatusCode::NoSuchFile, "No such file"), "read", "a");
        assert_eq!((e.kind, broken), (ErrorKind::NotFound, false));
        assert_eq!(
            classify(status(StatusCode::PermissionDenied, "Permission denied"), "x", "a").kind,
            ErrorKind::PermissionDenied
        );
        assert_eq!(classify(status(StatusCode::OpUnsupported, ""), "x", "a").kind, ErrorKind::Unsupported);
        let (e, broken) = classify_session(SftpError::Timeout, "read", "a");
        assert!(e.is_temporary() && broken);
        assert_eq!(e.message, "timed out: the server did not answer within --timeout");
        let (e, broken) = classify_session(SftpError::UnexpectedBehavior("session closed".into()), "read", "a");
        assert!(e.is_temporary() && broken);
        let (e, broken) = classify_session(SftpError::UnexpectedBehavior("sender dropped".into()), "list", "a");
        assert!(e.is_temporary() && broken);
        assert!(e.message.starts_with("the SFTP session ended"), "{}", e.message);
        assert_eq!(classify(status(StatusCode::Failure, "Failure"), "mkdir", "d").message, "Failure");
    }
}
