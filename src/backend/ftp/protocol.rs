//! The FTP wire protocol, apart from any one client: replies (RFC 959
//! multi-line ones included) and reading them off a stream, the TLS mode,
//! what replies say (PASV and EPSV addresses, FEAT lines, the PWD
//! directory), PORT/EPRT, the active-mode listener and the TCP-or-TLS
//! stream barge reads and writes itself.
//!
//! The backend drives suppaftp's control connection, which reads replies
//! itself: what the backend takes out of them is parsed here. `barge
//! doctor` drives a raw control connection and reads every reply with
//! [`ReplyReader`]. So the two read a server the same way.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::location::Scheme;

/// One FTP reply: its code and lines (without line ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// 0 when the first line does not start with a code (not FTP).
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// A reply already read whole by another reader (suppaftp's
    /// `Response::body`): every line of it, whatever its last line says.
    pub fn from_body(body: &[u8]) -> Reply {
        let lines: Vec<String> = body.split_inclusive(|&b| b == b'\n').map(line_text).collect();
        let code = lines.first().and_then(|line| line_code(line)).map_or(0, |(code, _)| code);
        Reply { code, lines }
    }

    /// The reply as one line, for messages.
    pub fn text(&self) -> String {
        self.lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" / ")
    }

    /// The first line, trimmed.
    pub fn first(&self) -> &str {
        self.lines.first().map_or("", |l| l.trim())
    }
}

/// A line without its line end, as text.
fn line_text(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw)).into_owned()
}

/// The code a line starts with, and whether a `-` follows it (the first
/// line of a multi-line reply, or one inside it).
fn line_code(line: &str) -> Option<(u16, bool)> {
    let head = line.as_bytes();
    let numbered = head.len() >= 3 && head[..3].iter().all(u8::is_ascii_digit);
    numbered.then(|| (line[..3].parse().unwrap_or(0), head.get(3) == Some(&b'-')))
}

/// Cuts one complete reply off the front of `buf`: `(reply, bytes used)`,
/// `None` while it is incomplete. Multi-line replies (`123-` ... `123 `)
/// are gathered whole. A first line without a code is a reply of its own
/// (code 0): what a server that does not speak FTP says.
pub fn parse_reply(buf: &[u8]) -> Option<(Reply, usize)> {
    let mut lines = Vec::new();
    let mut used = 0;
    let mut code: Option<u16> = None;
    while let Some(end) = buf[used..].iter().position(|&b| b == b'\n') {
        let line = line_text(&buf[used..=used + end]);
        used += end + 1;
        // The last line: the first one unless it says `123-`, else the
        // first with the same code and no `-`.
        let last = match (code, line_code(&line)) {
            (None, None) => true,
            (None, Some((first, more))) => {
                code = Some(first);
                !more
            }
            (Some(first), numbered) => numbered == Some((first, false)),
        };
        lines.push(line);
        if last {
            return Some((Reply { code: code.unwrap_or(0), lines }, used));
        }
    }
    // The reply's last line has not come yet.
    None
}

/// The most one reply may hold: more is not an FTP server talking.
const MAX_REPLY: usize = 1 << 20;

/// Why no reply could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("a reply of more than 1 MiB: not an FTP server")]
    TooLarge,
}

/// Reads replies off a control connection one at a time: what came after
/// a reply (a server may send several at once) waits for the next read.
#[derive(Debug, Default)]
pub struct ReplyReader {
    pending: Vec<u8>,
}

impl ReplyReader {
    /// The next reply on `stream`. Cancel safe (under a timeout or in a
    /// `select!`): what a cancelled read had received stays for the next.
    pub async fn read<R: AsyncRead + Unpin>(&mut self, stream: &mut R) -> Result<Reply, ReplyError> {
        // Whether a line ended since the last look: a reply ends with one.
        let mut line_ended = true;
        loop {
            if line_ended && let Some((reply, used)) = parse_reply(&self.pending) {
                self.pending.drain(..used);
                return Ok(reply);
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(ReplyError::Closed);
            }
            self.pending.extend_from_slice(&chunk[..n]);
            if self.pending.len() > MAX_REPLY {
                return Err(ReplyError::TooLarge);
            }
            line_ended = chunk[..n].contains(&b'\n');
        }
    }
}

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
    /// The mode a URL's scheme asks for; `explicit_tls` (`--tls explicit`)
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

/// A FEAT reply's feature lines, trimmed: those after the first that start
/// with a space (RFC 2389), as suppaftp's `feat()` takes them.
pub fn feature_lines(reply: &Reply) -> impl Iterator<Item = &str> {
    reply.lines.iter().skip(1).filter(|line| line.starts_with(' ')).map(|line| line.trim())
}

/// The first word of every feature, upper case, and the first two
/// (`REST STREAM`, `AUTH TLS`).
pub fn feature_names(reply: &Reply) -> Vec<String> {
    let mut names = Vec::new();
    for line in feature_lines(reply) {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        names.push(first.to_ascii_uppercase());
        if let Some(second) = words.next() {
            names.push(format!("{} {}", first.to_ascii_uppercase(), second.to_ascii_uppercase()));
        }
    }
    names
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
    fn replies_single_multi_and_incomplete() {
        let (reply, used) = parse_reply(b"220 Welcome\r\nextra").unwrap();
        assert_eq!((reply.code, reply.lines.clone(), used), (220, vec!["220 Welcome".to_string()], 13));
        let feat = b"211-Features:\r\n MLSD\r\n EPSV\r\n211 End\r\n";
        let (reply, used) = parse_reply(feat).unwrap();
        assert_eq!((reply.code, reply.lines.len(), used), (211, 4, feat.len()));
        assert!(parse_reply(b"211-Features:\r\n MLSD\r\n").is_none());
        assert!(parse_reply(b"220 no newline yet").is_none());
        let (reply, _) = parse_reply(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
        assert_eq!(reply.code, 0);
        // A line inside a multi-line reply that starts with other digits does not end it.
        let (reply, _) = parse_reply(b"230-Hi\r\n123 not the end\r\n230 Done\r\n").unwrap();
        assert_eq!(reply.lines.len(), 3);
    }

    /// Found by fuzzing: a multi-line reply whose last line had not come yet
    /// was taken as complete when its latest line was `230-...`, so the real
    /// last line was later read as the reply to the next command.
    #[test]
    fn a_continuation_line_with_the_code_does_not_end_a_reply() {
        assert_eq!(parse_reply(b"230-Hi\r\n230-still\r\n"), None);
        assert_eq!(parse_reply(b"230-Hi\r\n123 x\r\n230-still\r\n230 Done\r"), None);
        let (reply, used) = parse_reply(b"230-Hi\r\n230-still\r\n230 Done\r\n220 next\r\n").unwrap();
        assert_eq!((reply.lines.len(), used), (3, 29));
    }

    #[test]
    fn garbage_lines_inside_a_reply_are_kept_and_do_not_end_it() {
        let buf = b"220-Hello\r\n\r\n\xff\xfe binary\r\nno code at all\n22 short\r\n230 other code\r\n220 Ready\r\n";
        let (reply, used) = parse_reply(buf).unwrap();
        assert_eq!((reply.code, reply.lines.len(), used), (220, 7, buf.len()));
        assert_eq!(reply.lines[2], "\u{fffd}\u{fffd} binary");
        assert_eq!(
            reply.text(),
            "220-Hello / \u{fffd}\u{fffd} binary / no code at all / 22 short / 230 other code / 220 Ready"
        );
        assert_eq!(reply.first(), "220-Hello");
        // Bare LF line ends, as some servers send.
        assert_eq!(parse_reply(b"200 OK\n").map(|(r, used)| (r.lines, used)), Some((vec!["200 OK".to_string()], 7)));
    }

    /// A stream that hands out its bytes `step` at a time, then ends.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Trickle {
        fn new(data: &[u8], step: usize) -> Trickle {
            Trickle { data: data.to_vec(), at: 0, step }
        }
    }

    impl AsyncRead for Trickle {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let n = self.step.min(buf.remaining()).min(self.data.len() - self.at);
            buf.put_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn replies_split_across_reads_and_several_in_one_read() {
        let wire = b"211-Features:\r\n MLSD\r\n211 End\r\n200 OK\r\n331 Password\r\n";
        for step in [1, 2, 5, 7, wire.len()] {
            let mut stream = Trickle::new(wire, step);
            let mut replies = ReplyReader::default();
            let feat = replies.read(&mut stream).await.unwrap();
            assert_eq!((feat.code, feat.lines.len()), (211, 3), "step {step}");
            assert_eq!(feature_names(&feat), ["MLSD"]);
            let ok = replies.read(&mut stream).await.unwrap();
            assert_eq!((ok.code, ok.text()), (200, "200 OK".to_string()));
            assert_eq!(replies.read(&mut stream).await.unwrap().code, 331);
            assert!(matches!(replies.read(&mut stream).await, Err(ReplyError::Closed)));
        }
        // A reply cut off by the end of the connection is no reply.
        let err = ReplyReader::default().read(&mut Trickle::new(b"220-Hi\r\n220", 64)).await.expect_err("closed");
        assert_eq!(err.to_string(), "the server closed the connection");
    }

    #[tokio::test]
    async fn an_endless_reply_is_cut_off() {
        let mut endless = b"220 ".to_vec();
        endless.resize(MAX_REPLY + 2, b'x');
        let err = ReplyReader::default().read(&mut Trickle::new(&endless, 4096)).await.expect_err("too large");
        assert!(matches!(err, ReplyError::TooLarge), "{err}");
        assert_eq!(err.to_string(), "a reply of more than 1 MiB: not an FTP server");
    }

    #[test]
    fn a_body_read_by_another_reader_is_every_line_of_it() {
        // suppaftp ends a reply at any `NNN ` line, whatever its code.
        let reply = Reply::from_body(b"211-Features:\r\n MLSD\r\n UTF8\r\n200 End\r\n");
        assert_eq!((reply.code, reply.lines.len()), (211, 4));
        assert_eq!(feature_lines(&reply).collect::<Vec<_>>(), ["MLSD", "UTF8"]);
        assert_eq!(Reply::from_body(b"257 \"/\"").lines, ["257 \"/\""]);
        assert_eq!(Reply::from_body(b"").code, 0);
    }

    #[test]
    fn feat_names_and_lines() {
        let (reply, _) =
            parse_reply(b"211-Features:\r\n MLSD\r\n REST STREAM\r\n AUTH TLS\r\nNOSPACE\r\n211 End\r\n").unwrap();
        let names = feature_names(&reply);
        assert!(names.contains(&"MLSD".into()) && names.contains(&"REST STREAM".into()), "{names:?}");
        assert!(names.contains(&"AUTH TLS".into()) && names.contains(&"AUTH".into()), "{names:?}");
        // Feature lines start with a space (RFC 2389): suppaftp's feat() reads no other.
        assert!(!names.contains(&"NOSPACE".into()), "{names:?}");
        let map = feat_map(feature_lines(&reply));
        assert_eq!(map.get("REST"), Some(&Some("STREAM".to_string())));
        assert_eq!(map.get("MLSD"), Some(&None));
        assert_eq!(map.len(), 3);
    }

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
