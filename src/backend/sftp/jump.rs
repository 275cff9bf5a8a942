//! Jump hosts: `ProxyJump` in ~/.ssh/config and `--jump`, written as
//! `ssh -J` takes them: `[user@]host[:port]` or `ssh://[user@]host[:port]`,
//! several separated by commas (the first is connected to first), `none`
//! for no jump. Each hop is an SSH connection of its own, opened through
//! the one before it (a direct-tcpip channel).

/// One hop as written (its ~/.ssh/config settings not yet applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    pub user: Option<String>,
    /// A host name or IP literal, without brackets.
    pub host: String,
    /// `None`: the config's `Port` for the host, else 22.
    pub port: Option<u16>,
}

impl std::fmt::Display for JumpHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match self.port {
            Some(port) => write!(f, "{host}:{port}"),
            None => f.write_str(&host),
        }
    }
}

/// One `--jump` argument: a chain (clap keeps each occurrence as one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpChain(pub Vec<JumpHost>);

/// Parses a `--jump` argument.
pub fn parse_jump_arg(text: &str) -> Result<JumpChain, String> {
    parse_chain(text).map(JumpChain)
}

/// A comma-separated chain; `none` is the empty chain.
pub fn parse_chain(text: &str) -> Result<Vec<JumpHost>, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    text.split(',').map(parse_one).collect()
}

fn parse_one(text: &str) -> Result<JumpHost, String> {
    let bad = |why: &str| format!("jump host `{text}`: {why} (expected [user@]host[:port])");
    let rest = text.strip_prefix("ssh://").unwrap_or(text).trim_end_matches('/');
    let (user, address) = match rest.rsplit_once('@') {
        Some((user, address)) if !user.is_empty() => (Some(user.to_string()), address),
        Some(_) => return Err(bad("empty user")),
        None => (None, rest),
    };
    let (host, port) = if let Some(bracketed) = address.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(|| bad("text after ]"))?)),
        }
    } else {
        match address.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            // A bare IPv6 address: no port.
            Some(_) => (address, None),
            None => (address, None),
        }
    };
    if host.is_empty() || host.contains(['/', ' ', ',']) {
        return Err(bad("no host"));
    }
    let port = match port {
        Some(port) => Some(port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("bad port"))?),
        None => None,
    };
    Ok(JumpHost { user, host: host.to_string(), port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(user: Option<&str>, host: &str, port: Option<u16>) -> JumpHost {
        JumpHost { user: user.map(str::to_string), host: host.to_string(), port }
    }

    #[test]
    fn chains_as_ssh_dash_j_takes_them() {
        assert_eq!(parse_chain("none").unwrap(), []);
        assert_eq!(parse_chain("bastion").unwrap(), [hop(None, "bastion", None)]);
        assert_eq!(
            parse_chain("me@gw.example:2222,ssh://you@[::1]:22,10.0.0.1,fe80::1").unwrap(),
            [
                hop(Some("me"), "gw.example", Some(2222)),
                hop(Some("you"), "::1", Some(22)),
                hop(None, "10.0.0.1", None),
                hop(None, "fe80::1", None),
            ]
        );
        assert_eq!(parse_chain("a@b@host").unwrap(), [hop(Some("a@b"), "host", None)]);
        for bad in ["", "host:0", "host:x", "@host", "gw,", "[::1", "[::1]x"] {
            assert!(parse_chain(bad).is_err(), "{bad:?}");
        }
        assert_eq!(hop(Some("me"), "::1", Some(2)).to_string(), "me@[::1]:2");
    }
}
