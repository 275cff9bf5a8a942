//! A SOCKS5 client (RFC 1928 CONNECT, RFC 1929 user/password) for FTP
//! control and passive data connections and SSH connections: `--proxy
//! socks5://[user@]host:port`, else `ALL_PROXY` / `all_proxy` (which may
//! hold a password; `NO_PROXY` names hosts reached directly).
//!
//! Host names are always sent to the proxy as names, for both `socks5://`
//! and `socks5h://`: the proxy resolves them, so names only it can resolve
//! work and barge's own resolver never sees them.
//!
//! Hand-written rather than a crate: the CONNECT exchange is a few dozen
//! lines, and tokio-socks would bring its own error type and dependencies
//! for what is used here.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::location::Secret;

/// A SOCKS5 proxy to connect through.
#[derive(Clone, PartialEq, Eq)]
pub struct Socks5Proxy {
    pub host: String,
    pub port: u16,
    /// RFC 1929 user and password.
    pub login: Option<(String, Secret)>,
    /// Where it was named (`--proxy`, `ALL_PROXY`), for messages.
    pub source: &'static str,
    /// `NO_PROXY`, for a proxy from the environment: hosts reached directly.
    pub no_proxy: Option<String>,
}

/// Shown without the password, always.
impl std::fmt::Display for Socks5Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("socks5://")?;
        if let Some((user, _)) = &self.login {
            write!(f, "{user}@")?;
        }
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        write!(f, "{host}:{}", self.port)
    }
}

impl std::fmt::Debug for Socks5Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Socks5Proxy({self} from {})", self.source)
    }
}

/// A SOCKS5 failure: its `Display` names the proxy and the target, never
/// the password.
#[derive(Debug)]
pub enum SocksError {
    /// The proxy itself could not be reached.
    Unreachable(io::Error),
    /// The exchange with the proxy broke off.
    Io(io::Error),
    /// The proxy speaks something else, or accepted none of our methods.
    Protocol(String),
    /// The proxy refused the user and password.
    LoginRefused,
    /// The proxy could not connect to the target (RFC 1928 reply code).
    Refused(u8),
}

impl SocksError {
    fn io_kind(&self) -> io::ErrorKind {
        match self {
            SocksError::Unreachable(e) | SocksError::Io(e) => e.kind(),
            SocksError::Protocol(_) => io::ErrorKind::InvalidData,
            SocksError::LoginRefused | SocksError::Refused(2) => io::ErrorKind::PermissionDenied,
            SocksError::Refused(5) => io::ErrorKind::ConnectionRefused,
            SocksError::Refused(6) => io::ErrorKind::TimedOut,
            SocksError::Refused(_) => io::ErrorKind::ConnectionAborted,
        }
    }
}

impl std::fmt::Display for SocksError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocksError::Unreachable(e) => write!(f, "cannot reach the proxy: {e}"),
            SocksError::Io(e) => write!(f, "the proxy broke off: {e}"),
            SocksError::Protocol(why) => f.write_str(why),
            SocksError::LoginRefused => f.write_str("the proxy refused the user name and password"),
            SocksError::Refused(code) => {
                let why = match code {
                    1 => "general failure",
                    2 => "not allowed by its rules",
                    3 => "network unreachable",
                    4 => "host unreachable",
                    5 => "connection refused",
                    6 => "TTL expired",
                    7 => "command not supported",
                    8 => "address type not supported",
                    _ => "unknown reply",
                };
                write!(f, "the proxy could not connect: {why} (SOCKS5 reply {code})")
            }
        }
    }
}

impl std::error::Error for SocksError {}

impl Socks5Proxy {
    /// Parses `socks5://[user[:password]@]host[:port]` (or `socks5h://`;
    /// port 1080 when none). `source` names where the text came from.
    pub fn parse(text: &str, source: &'static str) -> Result<Socks5Proxy, String> {
        let bad = |why: &str| format!("{source}: {why} (expected socks5://[user:password@]host:port)");
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
        if !scheme.eq_ignore_ascii_case("socks5") && !scheme.eq_ignore_ascii_case("socks5h") {
            return Err(bad(&format!("{scheme}:// proxies are not supported, only SOCKS5")));
        }
        let rest = rest.trim_end_matches('/');
        let (login, address) = match rest.rsplit_once('@') {
            Some((login, address)) => (Some(login), address),
            None => (None, rest),
        };
        let decode = |part: &str| {
            crate::location::decode_utf8(part, &|why| crate::error::Error::Usage(why.to_string()))
                .map_err(|_| bad("bad percent escape in the user or password"))
        };
        let login = match login {
            None => None,
            Some(login) => {
                let (user, password) = login.split_once(':').unwrap_or((login, ""));
                let (user, password) = (decode(user)?, decode(password)?);
                // RFC 1929: each at most 255 bytes.
                if user.is_empty() || user.len() > 255 || password.len() > 255 {
                    return Err(bad("the user must be 1 to 255 bytes and the password at most 255"));
                }
                Some((user, Secret::new(password)))
            }
        };
        let (host, port) = match address.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or_else(|| bad("unclosed ["))?;
                (host, after.strip_prefix(':'))
            }
            None => match address.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (address, None),
            },
        };
        if host.is_empty() || host.contains(['/', '@']) {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(port) => port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("bad port"))?,
            None => 1080,
        };
        Ok(Socks5Proxy { host: host.to_string(), port, login, source, no_proxy: None })
    }

    /// The proxy `ALL_PROXY` (else `all_proxy`) names, with `NO_PROXY`
    /// (else `no_proxy`); none when unset.
    fn from_env() -> Result<Option<Arc<Socks5Proxy>>, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (source, value) = match (var("ALL_PROXY"), var("all_proxy")) {
            (Some(value), _) => ("ALL_PROXY", value),
            (None, Some(value)) => ("all_proxy", value),
            (None, None) => return Ok(None),
        };
        let mut proxy = Socks5Proxy::parse(&value, source)?;
        proxy.no_proxy = var("NO_PROXY").or_else(|| var("no_proxy"));
        Ok(Some(Arc::new(proxy)))
    }

    /// Whether connections to `host` go through this proxy: not when
    /// `NO_PROXY` names it (`*`, the name, or a domain it ends in).
    pub fn applies_to(&self, host: &str) -> bool {
        let Some(no_proxy) = &self.no_proxy else { return true };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        !no_proxy
            .split(',')
            .map(|entry| entry.trim().trim_start_matches('.').to_ascii_lowercase())
            .any(|entry| entry == "*" || (!entry.is_empty() && (host == entry || host.ends_with(&format!(".{entry}")))))
    }
}

/// Which proxy connections go through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// `ALL_PROXY` / `all_proxy`, when set.
    #[default]
    Environment,
    /// `--proxy none`: direct, whatever the environment says.
    Direct,
    /// `--proxy URL`.
    Given(Arc<Socks5Proxy>),
}

impl ProxySetting {
    /// The proxy to use, if any (the environment read now).
    pub fn proxy(&self) -> Result<Option<Arc<Socks5Proxy>>, String> {
        match self {
            ProxySetting::Environment => Socks5Proxy::from_env(),
            ProxySetting::Direct => Ok(None),
            ProxySetting::Given(proxy) => Ok(Some(Arc::clone(proxy))),
        }
    }
}

/// Parses `--proxy` (`source`), or a remote's `proxy` key: a SOCKS5 URL
/// without a password (the command line is visible to every local user,
/// a config file to whoever may read it), or `none`.
pub fn parse_proxy_arg(text: &str, source: &'static str) -> Result<ProxySetting, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(ProxySetting::Direct);
    }
    let proxy = Socks5Proxy::parse(text, source)?;
    if proxy.login.as_ref().is_some_and(|(_, password)| !password.expose().is_empty()) {
        let seen_by = match source {
            "--proxy" => "a password on the command line is visible to other local users in the process list",
            _ => "a password in the config file is readable by whoever may read the file",
        };
        return Err(format!("{seen_by}: put the proxy URL in ALL_PROXY instead"));
    }
    Ok(ProxySetting::Given(Arc::new(proxy)))
}

/// A TCP connection to `host:port` through `proxy`, within `timeout`. The
/// error is an `io::Error` holding a [`SocksError`], its message naming the
/// proxy and the target.
pub async fn connect(proxy: &Socks5Proxy, host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let failed = |err: SocksError| io::Error::new(err.io_kind(), format!("SOCKS5 proxy {proxy} to {target}: {err}"));
    match tokio::time::timeout(timeout, handshake(proxy, host, port)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(failed(err)),
        Err(_) => Err(failed(SocksError::Io(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")))),
    }
}

async fn handshake(proxy: &Socks5Proxy, host: &str, port: u16) -> Result<TcpStream, SocksError> {
    let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port)).await.map_err(SocksError::Unreachable)?;
    stream.set_nodelay(true).ok();
    let io = SocksError::Io;
    // Greeting: no authentication, or user/password when we have one.
    let greeting: &[u8] = if proxy.login.is_some() { &[5, 2, 0, 2] } else { &[5, 1, 0] };
    stream.write_all(greeting).await.map_err(io)?;
    let mut chosen = [0u8; 2];
    stream.read_exact(&mut chosen).await.map_err(io)?;
    match (chosen, &proxy.login) {
        ([5, 0], _) => {}
        ([5, 2], Some((user, password))) => {
            let password = password.expose().as_bytes();
            let mut request = vec![1, user.len() as u8];
            request.extend_from_slice(user.as_bytes());
            request.push(password.len() as u8);
            request.extend_from_slice(password);
            stream.write_all(&request).await.map_err(io)?;
            let mut status = [0u8; 2];
            stream.read_exact(&mut status).await.map_err(io)?;
            if status[1] != 0 {
                return Err(SocksError::LoginRefused);
            }
        }
        ([5, 0xff], None) | ([5, 2], None) => {
            return Err(SocksError::Protocol(
                "the proxy asks for a user and password: give them in ALL_PROXY (socks5://user:password@host:port)"
                    .into(),
            ));
        }
        ([5, _], _) => return Err(SocksError::Protocol("the proxy accepted none of our login methods".into())),
        _ => return Err(SocksError::Protocol("not a SOCKS5 proxy (its first answer is not SOCKS version 5)".into())),
    }
    // CONNECT, the host as an address when it is one, else as a name.
    let mut request = vec![5, 1, 0];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            request.push(1);
            request.extend_from_slice(&v4.octets());
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            request.push(4);
            request.extend_from_slice(&v6.octets());
        }
        Err(_) => {
            let name = u8::try_from(host.len())
                .map_err(|_| SocksError::Protocol("the host name is longer than 255 bytes".into()))?;
            request.push(3);
            request.push(name);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await.map_err(io)?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await.map_err(io)?;
    if reply[0] != 5 {
        return Err(SocksError::Protocol("not a SOCKS5 reply".into()));
    }
    if reply[1] != 0 {
        return Err(SocksError::Refused(reply[1]));
    }
    // The address the proxy bound: read and dropped.
    let skip = match reply[3] {
        1 => 4,
        4 => 16,
        3 => usize::from(stream.read_u8().await.map_err(io)?),
        other => return Err(SocksError::Protocol(format!("unknown address type {other} in the proxy's reply"))),
    };
    let mut bound = vec![0u8; skip + 2];
    stream.read_exact(&mut bound).await.map_err(io)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let proxy = Socks5Proxy::parse("socks5h://me:s%40cret@proxy.example:1081", "ALL_PROXY").unwrap();
        assert_eq!((proxy.host.as_str(), proxy.port), ("proxy.example", 1081));
        assert_eq!(proxy.login.as_ref().map(|(u, p)| (u.as_str(), p.expose())), Some(("me", "s@cret")));
        assert_eq!(proxy.to_string(), "socks5://me@proxy.example:1081");
        assert!(!format!("{proxy:?}").contains("cret"));
        let proxy = Socks5Proxy::parse("socks5://[::1]", "--proxy").unwrap();
        assert_eq!((proxy.host.as_str(), proxy.port), ("::1", 1080));
        for bad in ["http://proxy:3128", "proxy:1080", "socks5://", "socks5://h:0", "socks4://h:1"] {
            assert!(Socks5Proxy::parse(bad, "--proxy").is_err(), "{bad}");
        }
        let err = parse_proxy_arg("socks5://me:pw@h:1", "--proxy").unwrap_err();
        assert!(err.contains("process list") && !err.contains("pw@"), "{err}");
        assert_eq!(parse_proxy_arg("none", "--proxy"), Ok(ProxySetting::Direct));
        assert!(matches!(parse_proxy_arg("socks5://me@h:1", "--proxy"), Ok(ProxySetting::Given(_))));
    }

    #[test]
    fn no_proxy_names_hosts_reached_directly() {
        let mut proxy = Socks5Proxy::parse("socks5://p:1", "ALL_PROXY").unwrap();
        assert!(proxy.applies_to("anything"));
        proxy.no_proxy = Some("localhost, .corp.example,10.0.0.1".into());
        assert!(!proxy.applies_to("localhost") && !proxy.applies_to("ftp.corp.example"));
        assert!(!proxy.applies_to("corp.example") && !proxy.applies_to("10.0.0.1"));
        assert!(proxy.applies_to("example.org") && proxy.applies_to("notcorp.example"));
        proxy.no_proxy = Some("*".into());
        assert!(!proxy.applies_to("example.org"));
    }

    /// The exchange as RFC 1928 and 1929 write it, against a scripted proxy.
    #[tokio::test]
    async fn connect_sends_the_name_and_the_login() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut greeting = [0u8; 4];
            s.read_exact(&mut greeting).await.unwrap();
            assert_eq!(greeting, [5, 2, 0, 2]);
            s.write_all(&[5, 2]).await.unwrap();
            let mut login = [0u8; 9];
            s.read_exact(&mut login).await.unwrap();
            assert_eq!(&login, b"\x01\x02me\x04pass");
            s.write_all(&[1, 0]).await.unwrap();
            let mut request = [0u8; 5 + 12 + 2];
            s.read_exact(&mut request).await.unwrap();
            assert_eq!(&request[..5], &[5, 1, 0, 3, 12]);
            assert_eq!(&request[5..17], b"ftp.internal");
            assert_eq!(&request[17..], &21u16.to_be_bytes());
            s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 80, b'!']).await.unwrap();
            let mut s2 = listener.accept().await.unwrap().0;
            s2.read_exact(&mut [0u8; 3]).await.unwrap();
            s2.write_all(&[5, 0]).await.unwrap();
            s2.read_exact(&mut [0u8; 10]).await.unwrap();
            s2.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
        });
        let mut proxy = Socks5Proxy::parse(&format!("socks5://me:pass@127.0.0.1:{port}"), "ALL_PROXY").unwrap();
        let mut stream = connect(&proxy, "ftp.internal", 21, Duration::from_secs(5)).await.unwrap();
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"!", "the bound address is consumed, the data follows");
        proxy.login = None;
        let err = connect(&proxy, "10.1.2.3", 22, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let shown = err.to_string();
        assert!(shown.contains("to 10.1.2.3:22") && shown.contains("connection refused (SOCKS5 reply 5)"), "{shown}");
        server.await.unwrap();
    }
}
