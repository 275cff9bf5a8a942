//! The FTP wire protocol, apart from any one client: the TLS mode, what
//! replies say (PASV and EPSV addresses, FEAT lines, the PWD directory),
//! PORT/EPRT, the active-mode listener and the TCP-or-TLS stream barge
//! reads and writes itself.
//!
//! The backend drives suppaftp's control connection and `barge doctor` a
//! raw one of its own; both parse and format with what is here, so the two
//! read a server the same way.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::location::Scheme;

/// How the TLS layer is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    None,
    /// `AUTH TLS` on the plain control port.
    Explicit,
    /// TLS from the first byte (usually port 990).
    Implicit,
}

impl TlsMode {
    /// The mode a URL's scheme asks for; `explicit_tls` (`--explicit-tls`)
    /// upgrades a plain `ftp://`.
    pub fn of(scheme: Scheme, explicit_tls: bool) -> TlsMode {
        match scheme {
            Scheme::Ftps => TlsMode::Implicit,
            Scheme::Ftpes => TlsMode::Explicit,
            _ if explicit_tls => TlsMode::Explicit,
            _ => TlsMode::None,
        }
    }

    /// The scheme that asks for this mode.
    pub fn scheme(self) -> Scheme {
        match self {
            TlsMode::None => Scheme::Ftp,
            TlsMode::Explicit => Scheme::Ftpes,
            TlsMode::Implicit => Scheme::Ftps,
        }
    }
}

/// `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` -> the address.
/// Some servers leave out the parentheses: the first six numbers count.
pub fn parse_pasv(reply: &str) -> Option<SocketAddr> {
    let text = reply.get(4..).unwrap_or(reply);
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let numbers: Vec<u8> = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(6)
        .map(|s| s.parse::<u8>().ok())
        .collect::<Option<_>>()?;
    if numbers.len() != 6 {
        return None;
    }
    let ip = IpAddr::from([numbers[0], numbers[1], numbers[2], numbers[3]]);
    Some(SocketAddr::new(ip, u16::from(numbers[4]) << 8 | u16::from(numbers[5])))
}

/// `229 Entering Extended Passive Mode (|||40012|)` -> 40012 (RFC 2428:
/// the delimiter is whatever character follows the parenthesis).
pub fn parse_epsv(reply: &str) -> Option<u16> {
    let after = reply.get(reply.find('(')? + 1..)?;
    let inner = after.get(..after.rfind(')')?)?;
    let delimiter = inner.chars().next()?;
    let fields: Vec<&str> = inner.split(delimiter).collect();
    fields.get(3)?.trim().parse().ok().filter(|p| *p != 0)
}

/// `PORT h1,h2,h3,h4,p1,p2` for IPv4 (and IPv4-mapped IPv6), `EPRT |2|addr|port|` for IPv6.
pub fn port_command(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("PORT {a},{b},{c},{d},{},{}", addr.port() >> 8, addr.port() & 0xff)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => port_command(SocketAddr::new(IpAddr::V4(v4), addr.port())),
            None => format!("EPRT |2|{v6}|{}|", addr.port()),
        },
    }
}

/// `NAME` / `NAME VALUE` lines (FEAT's feature lines, or the ones barge
/// remembers) as the map suppaftp's `feat()` makes: name, then the rest of
/// the line.
pub fn feat_map<'a>(lines: impl IntoIterator<Item = &'a str>) -> HashMap<String, Option<String>> {
    lines
        .into_iter()
        .filter_map(|line| {
            let line = line.trim();
            let (name, value) = match line.split_once(' ') {
                Some((name, value)) => (name, Some(value.trim().to_string())),
                None => (line, None),
            };
            (!name.is_empty()).then(|| (name.to_string(), value))
        })
        .collect()
}

/// The directory in a PWD reply (`257 "/home/u" is the current
/// directory`), read as suppaftp's `pwd` reads it: from the reply's bytes
/// (names are byte-exact, so not from its lines as text), as
/// [`super::names::RawBytes`] names, Telnet IAC undoubled, between the
/// first and the last quote.
pub fn parse_pwd(body: &[u8]) -> Option<String> {
    let mut bytes = Vec::with_capacity(body.len());
    let mut iter = body.iter().copied().peekable();
    while let Some(b) = iter.next() {
        if b == 0xFF && iter.peek() == Some(&0xFF) {
            iter.next();
        }
        bytes.push(b);
    }
    let text = super::names::decode(&bytes);
    let (begin, end) = (text.find('"')?, text.rfind('"')?);
    (begin < end).then(|| text[begin + 1..end].to_string())
}

/// The listener of an active-mode data connection: on `ip` (the control
/// connection's local address), on a free port of `ports` (`--active-ports`;
/// tried from a random start, so parallel connections spread over the
/// range) or any port.
pub fn listen(ip: IpAddr, ports: Option<&RangeInclusive<u16>>) -> io::Result<TcpListener> {
    let bind = |port: u16| -> io::Result<TcpListener> {
        let listener = std::net::TcpListener::bind(SocketAddr::new(ip, port))?;
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener)
    };
    let Some(ports) = ports else { return bind(0) };
    let count = u32::from(*ports.end()) - u32::from(*ports.start()) + 1;
    let start = fastrand::u32(0..count);
    for i in 0..count {
        let port = u32::from(*ports.start()) + (start + i) % count;
        if let Ok(listener) = bind(u16::try_from(port).unwrap_or(u16::MAX)) {
            return Ok(listener);
        }
    }
    // All busy (other transfers hold them): a temporary condition.
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free local port in --active-ports {}-{}", ports.start(), ports.end()),
    ))
}

/// A connection barge reads and writes itself, plain or under TLS: an
/// active or pipelined data connection, or the doctor's control connection.
pub enum PlainOrTls {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for PlainOrTls {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PlainOrTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PlainOrTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PlainOrTls {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PlainOrTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PlainOrTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PlainOrTls::Plain(s) => Pin::new(s).poll_flush(cx),
            PlainOrTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PlainOrTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PlainOrTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_replies() {
        assert_eq!(parse_epsv("229 Entering Extended Passive Mode (|||40012|)"), Some(40012));
        assert_eq!(parse_epsv("229 Extended Passive mode OK (!!!5000!)"), Some(5000));
        assert_eq!(parse_epsv("229 nonsense"), None);
        // Found by fuzzing: `)` before `(` panicked (a reversed slice).
        assert_eq!(parse_epsv("229 )(|||5000|"), None);
        assert_eq!(parse_epsv("229 ) (|||5000|)"), Some(5000));
        assert_eq!(parse_pasv("227 Entering Passive Mode (10,9,9,9,156,76)."), Some("10.9.9.9:40012".parse().unwrap()));
        assert_eq!(parse_pasv("227 Entering Passive Mode 127,0,0,1,4,1"), Some("127.0.0.1:1025".parse().unwrap()));
        assert_eq!(parse_pasv("227 Entering Passive Mode (1,2,3)"), None);
    }

    #[test]
    fn port_commands_for_both_families() {
        assert_eq!(port_command("127.0.0.1:40012".parse().unwrap()), "PORT 127,0,0,1,156,76");
        assert_eq!(port_command("192.168.1.2:40001".parse().unwrap()), "PORT 192,168,1,2,156,65");
        assert_eq!(port_command("[::1]:40001".parse().unwrap()), "EPRT |2|::1|40001|");
        assert_eq!(port_command("[::ffff:10.0.0.1]:258".parse().unwrap()), "PORT 10,0,0,1,1,2");
    }

    #[test]
    fn tls_modes_and_their_schemes() {
        assert_eq!(TlsMode::of(Scheme::Ftp, false), TlsMode::None);
        assert_eq!(TlsMode::of(Scheme::Ftp, true), TlsMode::Explicit);
        assert_eq!(TlsMode::of(Scheme::Ftpes, false), TlsMode::Explicit);
        // Implicit TLS is the port's, whatever --explicit-tls says.
        assert_eq!(TlsMode::of(Scheme::Ftps, true), TlsMode::Implicit);
        for mode in [TlsMode::None, TlsMode::Explicit, TlsMode::Implicit] {
            assert_eq!(TlsMode::of(mode.scheme(), false), mode);
        }
    }

    #[test]
    fn pwd_replies() {
        assert_eq!(parse_pwd(b"257 \"/home/u\" is the current directory\r\n").as_deref(), Some("/home/u"));
        // Quotes inside the name: from the first to the last.
        assert_eq!(parse_pwd(b"257 \"/a \"b\"\" here\r\n").as_deref(), Some("/a \"b\""));
        assert_eq!(parse_pwd(b"257 no quotes\r\n"), None);
    }

    #[tokio::test]
    async fn listeners_stay_inside_the_range_and_say_when_it_is_full() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let range = free..=free;
        let only = listen(ip, Some(&range)).unwrap();
        assert_eq!(only.local_addr().unwrap().port(), free);
        let err = listen(ip, Some(&range)).expect_err("the range is full");
        assert!(err.to_string().contains(&format!("no free local port in --active-ports {free}-{free}")), "{err}");
    }
}
