//! Where a remote login's user and secret come from, in order: the URL,
//! the config file's `password_file`, `--password-env VAR` (or the
//! remote's `password_env`), `BARGE_PASSWORD`, then `~/.netrc` (`$NETRC`
//! overrides its path). Secrets are held in [`Secret`] and never printed.

use std::collections::VecDeque;
use std::path::PathBuf;

use crate::backend::RemoteOptions;
use crate::location::{RemoteLocation, Secret};

/// A resolved login.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub password: Option<Secret>,
}

/// Resolves the login for `remote` with the password sources `options`
/// names (`password_file`'s secret, `--password-env`).
pub fn resolve(remote: &RemoteLocation, options: &RemoteOptions, default_user: &str) -> Login {
    let password_env = options.password_env.as_deref();
    let from_env = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty()).map(Secret::new);
    let netrc = netrc_path().and_then(|path| std::fs::read(path).ok()).map(|text| parse_netrc(&text));
    let netrc_entry = netrc.as_ref().and_then(|entries| {
        entries
            .iter()
            .find(|e| {
                e.machine.as_deref() == Some(remote.host.as_str())
                    && remote.user.as_ref().is_none_or(|u| e.login.as_ref() == Some(u))
            })
            .or_else(|| entries.iter().find(|e| e.machine.is_none()))
            .cloned()
    });
    let user = remote
        .user
        .clone()
        .or_else(|| netrc_entry.as_ref().and_then(|e| e.login.clone()))
        .unwrap_or_else(|| default_user.to_string());
    let password = remote
        .password
        .clone()
        .or_else(|| options.password.clone())
        .or_else(|| password_env.and_then(from_env))
        .or_else(|| from_env("BARGE_PASSWORD"))
        .or_else(|| {
            netrc_entry
                .filter(|e| e.login.as_ref().is_none_or(|l| *l == user))
                .and_then(|e| e.password)
                .map(Secret::new)
        });
    Login { user, password }
}

fn netrc_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NETRC").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|home| PathBuf::from(home).join(".netrc"))
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetrcEntry {
    /// `None` for the `default` entry.
    pub machine: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
}

/// Parses a netrc file: `machine`, `default`, `login`, `password`,
/// `account` tokens, separated by any white space, line ends included (a
/// value may be on the line after its keyword); `macdef` bodies (up to a
/// blank line) are skipped. A `machine` without a name makes no entry.
pub fn parse_netrc(text: &[u8]) -> Vec<NetrcEntry> {
    let text = String::from_utf8_lossy(text);
    let mut entries: Vec<NetrcEntry> = Vec::new();
    let mut lines = text.lines();
    // The tokens of the current line not read yet.
    let mut pending: VecDeque<&str> = VecDeque::new();
    while let Some(token) = next_token(&mut pending, &mut lines) {
        match token {
            "machine" => match next_token(&mut pending, &mut lines) {
                Some(name) => entries.push(NetrcEntry { machine: Some(name.to_string()), ..NetrcEntry::default() }),
                None => break,
            },
            "default" => entries.push(NetrcEntry::default()),
            "login" | "password" => {
                let v = next_token(&mut pending, &mut lines).map(str::to_string);
                if let Some(e) = entries.last_mut() {
                    *if token == "login" { &mut e.login } else { &mut e.password } = v;
                }
            }
            "account" => {
                next_token(&mut pending, &mut lines);
            }
            "macdef" => {
                pending.clear();
                for line in lines.by_ref() {
                    if line.trim().is_empty() {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    entries
}

/// The next token: the rest of the current line first, then later lines.
fn next_token<'a>(pending: &mut VecDeque<&'a str>, lines: &mut std::str::Lines<'a>) -> Option<&'a str> {
    loop {
        if let Some(token) = pending.pop_front() {
            return Some(token);
        }
        pending.extend(lines.next()?.split_whitespace());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_machines_default_and_skips_macros() {
        let text = b"machine ftp.example.com login bob password s3cret\n\
            macdef init\ncd /pub\n\n\
            machine other\n  login alice\n  password 'x'\ndefault login anonymous password me@";
        let entries = parse_netrc(text);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].machine.as_deref(), Some("ftp.example.com"));
        assert_eq!(entries[0].password.as_deref(), Some("s3cret"));
        assert_eq!(entries[1].login.as_deref(), Some("alice"));
        assert_eq!(entries[2].machine, None);
        assert_eq!(entries[2].login.as_deref(), Some("anonymous"));
    }

    /// Found by fuzzing: a value on the line after its keyword was taken,
    /// but the rest of that line was dropped; and a `machine` at the very
    /// end made an entry without a name, that is a `default` one.
    #[test]
    fn tokens_run_across_lines_and_a_nameless_machine_is_nothing() {
        let entries = parse_netrc(b"machine a login\nbob password x machine b login eve\n");
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!((entries[0].login.as_deref(), entries[0].password.as_deref()), (Some("bob"), Some("x")));
        assert_eq!((entries[1].machine.as_deref(), entries[1].login.as_deref()), (Some("b"), Some("eve")));
        assert_eq!(parse_netrc(b"machine a login bob\nmachine"), parse_netrc(b"machine a login bob"));
    }
}
