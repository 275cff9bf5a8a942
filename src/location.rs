//! Where a tree lives: a local path or a remote URL.
//!
//! `ftp://user:pass@host:21/path`, `ftpes://` (explicit TLS), `ftps://`
//! (implicit TLS), `sftp://user@host:22/path`. Anything without a scheme is
//! a local path. Passwords are held in a [`Secret`], which never prints.

use std::fmt;
use std::path::PathBuf;

use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Remote(RemoteLocation),
}

impl Location {
    /// Parses a command-line location.
    pub fn parse(text: &str) -> Result<Location, Error> {
        match text.split_once("://") {
            Some((scheme, rest)) if scheme.chars().all(|c| c.is_ascii_alphanumeric()) => {
                RemoteLocation::parse(scheme, rest).map(Location::Remote)
            }
            _ if text.is_empty() => Err(Error::Usage("empty location".into())),
            _ => Ok(Location::Local(PathBuf::from(text))),
        }
    }

    /// A stable text for this location without secrets: the key the state
    /// database is derived from.
    pub fn identity(&self) -> String {
        match self {
            Location::Local(path) => {
                let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                format!("file://{}", absolute.display())
            }
            Location::Remote(remote) => remote.to_string(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Remote(remote) => remote.fmt(f),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain FTP (TLS only when asked for).
    Ftp,
    /// FTP with explicit TLS (AUTH TLS).
    Ftpes,
    /// FTP with implicit TLS.
    Ftps,
    Sftp,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Ftp => "ftp",
            Scheme::Ftpes => "ftpes",
            Scheme::Ftps => "ftps",
            Scheme::Sftp => "sftp",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Ftp | Scheme::Ftpes => 21,
            Scheme::Ftps => 990,
            Scheme::Sftp => 22,
        }
    }
}

/// A password or passphrase. Its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The secret itself, for the one place that sends it to a server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLocation {
    pub scheme: Scheme,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// Host name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
    /// Whether the URL named the port (else `port` is the scheme's default,
    /// and ~/.ssh/config may set another).
    pub port_given: bool,
    /// The remote path, percent-decoded, as bytes.
    pub path: Vec<u8>,
}

impl RemoteLocation {
    fn parse(scheme: &str, rest: &str) -> Result<RemoteLocation, Error> {
        let bad = |why: &str| Error::Usage(format!("bad {scheme}:// location: {why}"));
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "ftp" => Scheme::Ftp,
            "ftpes" => Scheme::Ftpes,
            "ftps" => Scheme::Ftps,
            "sftp" => Scheme::Sftp,
            other => return Err(Error::Usage(format!("unknown location scheme `{other}://`"))),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        // The last `@` separates credentials: passwords may contain `@`.
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (Some(decode_utf8(u, &bad)?), Some(Secret(decode_utf8(p, &bad)?))),
                None => (Some(decode_utf8(info, &bad)?), None),
            },
        };
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| bad("unclosed `[` in host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("junk after `]`")),
            };
            (host.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(bad("spaces or control characters in the host"));
        }
        if host.contains(':') && !hostport.starts_with('[') {
            // `user:pass:21` (the `@` forgotten) would otherwise make the
            // password part of a host name that messages print.
            return Err(bad("a host with `:` must be an IPv6 address in brackets"));
        }
        let port_given = port.is_some();
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&n| n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| bad("port is not a number from 1 to 65535"))?,
            None => scheme.default_port(),
        };
        Ok(RemoteLocation { scheme, user, password, host, port, port_given, path: percent_decode(path, &bad)? })
    }
}

impl fmt::Display for RemoteLocation {
    /// The URL without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        write!(f, ":{}{}", self.port, crate::path::DisplayBytes(&self.path))
    }
}

fn percent_decode(text: &str, bad: &dyn Fn(&str) -> Error) -> Result<Vec<u8>, Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits (from_str_radix alone would take `+f`).
            let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            let value = hex.and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
            out.push(value.ok_or_else(|| bad("bad percent escape"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn decode_utf8(text: &str, bad: &dyn Fn(&str) -> Error) -> Result<String, Error> {
    String::from_utf8(percent_decode(text, bad)?).map_err(|_| bad("credentials are not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_local_and_remote_locations() {
        assert_eq!(Location::parse("some/dir").unwrap(), Location::Local("some/dir".into()));
        let Location::Remote(r) = Location::parse("ftp://bob:p%40ss:w@ftp.example.com/pub/a%20b").unwrap() else {
            panic!("not remote")
        };
        assert_eq!(r.scheme, Scheme::Ftp);
        assert_eq!(r.user.as_deref(), Some("bob"));
        assert_eq!(r.password.as_ref().map(Secret::expose), Some("p@ss:w"));
        assert_eq!(r.host, "ftp.example.com");
        assert_eq!((r.port, r.port_given), (21, false));
        assert_eq!(r.path, b"/pub/a b");
        let Location::Remote(r) = Location::parse("ftps://[::1]:2121").unwrap() else { panic!() };
        assert_eq!((r.host.as_str(), r.port, r.path.as_slice()), ("::1", 2121, &b"/"[..]));
        assert!(r.port_given);
        assert_eq!(Location::parse("sftp://h/x").map(|l| l.to_string()).unwrap(), "sftp://h:22/x");
        assert!(Location::parse("gopher://h/").is_err());
        assert!(Location::parse("ftp://h:99999/").is_err());
    }

    /// Found by fuzzing (src/fuzzing.rs): port 0 and `+21` were taken, `%+1`
    /// decoded to byte 1, and an unbracketed host could hold `:` (so a
    /// forgotten `@` put the password in the host name) or control bytes.
    #[test]
    fn ports_escapes_and_hosts_are_strict() {
        for bad in ["ftp://h:0/", "ftp://h:+21/", "ftp://h/a%+1", "ftp://h/a%1", "ftp://u:secret:21/x", "ftp://a\0b/"] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
        let Location::Remote(r) = Location::parse("ftp://[fe80::1]:21/%41%7e").unwrap() else { panic!() };
        assert_eq!((r.host.as_str(), r.port, r.path.as_slice()), ("fe80::1", 21, &b"/A~"[..]));
    }

    #[test]
    fn passwords_never_print() {
        let loc = Location::parse("sftp://bob:hunter2@host/dir").unwrap();
        assert!(!loc.to_string().contains("hunter2"));
        assert!(!format!("{loc:?}").contains("hunter2"));
        assert!(!loc.identity().contains("hunter2"));
    }
}
