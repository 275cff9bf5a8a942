//! Where a tree lives: a local path or a remote URL.
//!
//! `ftp://user:pass@host:21/path`, `ftpes://` (explicit TLS), `ftps://`
//! (implicit TLS), `sftp://user@host:22/path`. Anything without a scheme is
//! a local path. Passwords are held in a [`Secret`], which never prints.

use std::fmt;
use std::path::{Component, Path, PathBuf};

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

    /// The text state databases were named after before job identities
    /// became canonical (December 2026): the path as typed, made absolute
    /// (trailing slash and `..` kept), or the URL as typed. Only used to
    /// find such a database again.
    pub fn legacy_identity(&self) -> String {
        match self {
            Location::Local(path) => {
                let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                format!("file://{}", absolute.display())
            }
            Location::Remote(remote) => remote.to_string(),
        }
    }

    /// This location in the one spelling every way of writing it shares:
    /// a local path absolute, its symbolic links resolved as far as it
    /// exists, `.`, `..`, doubled and trailing slashes gone; a URL without
    /// its password, its host in lower case, its port written, its path
    /// normalized ([`RemoteLocation::normalized`]). Touches the file system
    /// (one `realpath` of a local root).
    pub fn canonical(&self) -> Location {
        match self {
            Location::Local(path) => Location::Local(canonical_local(path)),
            Location::Remote(remote) => Location::Remote(remote.normalized()),
        }
    }
}

/// `path` absolute and free of links as far as it exists; the part that
/// does not exist yet (a destination to create) is normalized by text.
pub fn canonical_local(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // The longest existing ancestor is resolved by the kernel; the rest
    // (below a resolved, link-free directory) by text.
    let mut missing = Vec::new();
    let mut probe = absolute.as_path();
    loop {
        if let Ok(resolved) = std::fs::canonicalize(probe) {
            let mut out = resolved;
            for part in missing.iter().rev() {
                push_normalized(&mut out, part);
            }
            return out;
        }
        match (probe.parent(), probe.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(Component::Normal(name));
                probe = parent;
            }
            // `..` or `.` as the last component: keep it for the text pass.
            (Some(parent), None) if probe.ends_with("..") => {
                missing.push(Component::ParentDir);
                probe = parent;
            }
            _ => break,
        }
    }
    let mut out = PathBuf::from("/");
    for part in absolute.components() {
        push_normalized(&mut out, &part);
    }
    out
}

fn push_normalized(out: &mut PathBuf, part: &Component<'_>) {
    match part {
        Component::ParentDir => {
            out.pop();
        }
        Component::Normal(name) => out.push(name),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
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
    /// The scheme a URL's `name://` names, in any case.
    pub fn named(name: &str) -> Option<Scheme> {
        match name.to_ascii_lowercase().as_str() {
            "ftp" => Some(Scheme::Ftp),
            "ftpes" => Some(Scheme::Ftpes),
            "ftps" => Some(Scheme::Ftps),
            "sftp" => Some(Scheme::Sftp),
            _ => None,
        }
    }

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
        let Some(scheme) = Scheme::named(scheme) else {
            return Err(Error::Usage(format!("unknown location scheme `{}://`", scheme.to_ascii_lowercase())));
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
        // A CR or LF would end an FTP command and start another: a user
        // `a%0D%0ADELE x` must never reach a server, nor a terminal raw.
        let line_breaking = |text: &str| text.contains(['\r', '\n', '\0']);
        if user.as_deref().is_some_and(line_breaking) {
            return Err(bad("CR, LF or NUL in the user name"));
        }
        if password.as_ref().is_some_and(|p| line_breaking(p.expose())) {
            return Err(bad("CR, LF or NUL in the password"));
        }
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
        let path = normalize_path(&percent_decode(path, &bad)?);
        Ok(RemoteLocation { scheme, user, password, host, port, port_given, path })
    }
}

impl RemoteLocation {
    /// The canonical form of this URL: no password, the host in lower
    /// case, the port written (`port_given`), the path normalized (as
    /// [`Location::parse`] leaves it).
    pub fn normalized(&self) -> RemoteLocation {
        RemoteLocation {
            scheme: self.scheme,
            user: self.user.clone(),
            password: None,
            host: self.host.to_ascii_lowercase(),
            port: self.port,
            port_given: true,
            path: normalize_path(&self.path),
        }
    }
}

/// A URL path without `.`, `..` (RFC 3986's dot segments: a server may
/// refuse `/a/../b` in a listing command), doubled or trailing slashes.
/// `..` never climbs above `/`, nor out of `/~` (the home directory, whose
/// place only the server knows).
pub fn normalize_path(raw: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => match parts.last() {
                // `/~/..` is wherever the home's parent is.
                Some(&b"~") if parts.len() == 1 => parts.push(part),
                Some(&b"..") => parts.push(part),
                Some(_) => {
                    parts.pop();
                }
                None => {}
            },
            _ => parts.push(part),
        }
    }
    let mut path = Vec::with_capacity(raw.len());
    for part in &parts {
        path.push(b'/');
        path.extend_from_slice(part);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    path
}

impl fmt::Display for RemoteLocation {
    /// The URL without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        if let Some(user) = &self.user {
            // Control bytes (a `%0D%0A` in the URL) escaped, never raw.
            write!(f, "{}@", crate::path::DisplayBytes(user.as_bytes()))?;
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

pub(crate) fn decode_utf8(text: &str, bad: &dyn Fn(&str) -> Error) -> Result<String, Error> {
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

    /// Found by fuzzing: port 0 and `+21` were taken, `%+1`
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
    fn line_breaks_in_credentials_are_refused_and_never_printed() {
        for url in ["ftp://a%0D%0ADELE%20x@h/", "ftp://u:p%0Aw@h/", "sftp://a%00b@h/"] {
            let err = Location::parse(url).unwrap_err().to_string();
            assert!(err.contains("CR, LF or NUL") && !err.contains('\n') && !err.contains('\r'), "{err}");
        }
        // Other control bytes are allowed through but shown escaped.
        let Location::Remote(r) = Location::parse("ftp://a%1Bb@h/x%07").unwrap() else { panic!() };
        assert_eq!(r.to_string(), "ftp://a\\x1bb@h:21/x\\x07");
    }

    #[test]
    fn passwords_never_print() {
        let loc = Location::parse("sftp://bob:hunter2@host/dir").unwrap();
        assert!(!loc.to_string().contains("hunter2"));
        assert!(!format!("{loc:?}").contains("hunter2"));
        assert!(!loc.legacy_identity().contains("hunter2"));
        assert!(!loc.canonical().to_string().contains("hunter2"));
    }

    #[test]
    fn urls_normalize_to_one_spelling() {
        let canon = |text: &str| Location::parse(text).unwrap().canonical().to_string();
        let one = "ftp://bob@ftp.example.com:21/pub/data";
        for spelling in [
            "ftp://bob@ftp.example.com/pub/data",
            "ftp://bob@FTP.Example.COM:21/pub/data/",
            "ftp://bob:secret@ftp.example.com//pub/./data//",
            "ftp://bob@ftp.example.com/pub/x/../data",
            "FTP://bob@ftp.example.com/pub/data",
        ] {
            assert_eq!(canon(spelling), one, "{spelling}");
        }
        assert_eq!(canon("sftp://h"), "sftp://h:22/");
        assert_eq!(canon("sftp://h/.."), "sftp://h:22/");
        assert_eq!(canon("ftps://h/a/"), "ftps://h:990/a");
        // The home directory's parent is not `/`.
        assert_eq!(canon("sftp://h/~/../x"), "sftp://h:22/~/../x");
        assert_eq!(canon("sftp://h/~/a/../x"), "sftp://h:22/~/x");
    }

    #[test]
    fn local_paths_normalize_to_one_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(base.join("real/sub")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        let canon = |p: PathBuf| canonical_local(&p);
        let real = base.join("real");
        for spelling in [
            base.join("real/"),
            base.join("real/."),
            base.join("real/sub/.."),
            base.join("link"),
            base.join("link/"),
            PathBuf::from(format!("{}//real//", base.display())),
        ] {
            assert_eq!(canon(spelling.clone()), real, "{}", spelling.display());
        }
        // A destination that does not exist yet: resolved as far as it
        // exists, the rest by text.
        assert_eq!(canon(base.join("link/new/dir/")), real.join("new/dir"));
        assert_eq!(canon(base.join("link/new/../other")), real.join("other"));
        assert_eq!(canon(base.join("gone/../real")), real, "`..` out of a missing directory");
    }
}
