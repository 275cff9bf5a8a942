//! `~/.ssh/config`: the options that decide where an `sftp://` location
//! connects, through what, and as whom. No directive that changes where or
//! how ssh connects is ignored: each one is either applied or refused with
//! an error naming it (see [`Directive`] for the three lists).
//!
//! Applied: `Host`, `Match all`, `Include`, `HostName`, `Port`, `User`,
//! `IdentityFile`, `ProxyJump` (and `ProxyCommand none`),
//! `UserKnownHostsFile` (its first file), `StrictHostKeyChecking`
//! (`accept-new` as `--accept-new-host-key`; `yes` and `ask` refuse an
//! unknown key, as barge always does).
//!
//! Rules as OpenSSH's ssh_config(5): the first value obtained for an option
//! wins; `IdentityFile` accumulates; `Host` takes several patterns (`*`,
//! `?`, `!negated`), matched case-insensitively against the host as written
//! in the URL; lines before the first `Host` apply to every host; a keyword
//! ssh does not know is an error unless `IgnoreUnknown` names it. `Match`
//! blocks are not evaluated (only `Match all` applies): one that sets an
//! applied or refused directive is an error, since ssh might apply it.
//! `Include` reads files relative to `~/.ssh`, with `*`/`?` in the file
//! name, and an Include inside a non-matching block never applies.
//!
//! A small parser rather than a crate: these options and Include are a few
//! hundred lines with tests, with OpenSSH's exact first-match rule, and no
//! new dependencies (ssh2-config, the maintained crate, is not vendored
//! here and brings its own glob and dirs crates).

use std::path::{Path, PathBuf};

use super::jump::{self, JumpHost};
use crate::location::RemoteLocation;

/// Includes nested deeper than this are refused (as OpenSSH: 16).
const MAX_INCLUDE_DEPTH: usize = 16;

/// What the config says about one host alias.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostSettings {
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// As written (tokens and `~` not yet expanded), in order.
    pub identity_files: Vec<String>,
    /// `ProxyJump` as written; `none` also for `ProxyCommand none` (the
    /// first of the two wins, as in ssh).
    pub proxy_jump: Option<String>,
    /// `UserKnownHostsFile`'s first file, as written.
    pub known_hosts: Option<String>,
    /// `StrictHostKeyChecking accept-new`.
    pub accept_new_host_key: Option<bool>,
    /// `IgnoreUnknown`: keywords that are no error when unknown.
    ignore_unknown: Option<String>,
}

/// What barge does with an ssh_config keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directive {
    /// Read and used (this module's `apply`).
    Applied,
    /// Known to ssh, but changes neither where nor how barge connects:
    /// session features (forwarding, commands, environment, terminals),
    /// timing and keepalives (barge has `--timeout` and its own), login
    /// preferences (barge's order is agent, key files, password), algorithm
    /// lists (barge's own; `doctor` shows what was agreed), extra trust
    /// sources barge never uses (it is stricter without them).
    Ignored,
    /// Changes where or how ssh connects, and barge does not do it: an
    /// error naming it, with the reason.
    Refused(&'static str),
}

impl Directive {
    fn refusal(self) -> Option<&'static str> {
        match self {
            Directive::Refused(why) => Some(why),
            Directive::Applied | Directive::Ignored => None,
        }
    }
}

/// Keywords of OpenSSH's ssh_config (and Debian's patches) that change
/// nothing barge does (see [`Directive::Ignored`]), lowercase.
const IGNORED: &[&str] = &[
    "addkeystoagent",
    "batchmode",
    "canonicaldomains",
    "canonicalizefallbacklocal",
    "canonicalizemaxdots",
    "canonicalizepermittedcnames",
    "casignaturealgorithms",
    "certificatefile",
    "challengeresponseauthentication",
    "channeltimeout",
    "checkhostip",
    "cipher",
    "ciphers",
    "clearallforwardings",
    "compression",
    "compressionlevel",
    "connectionattempts",
    "connecttimeout",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "dynamicforward",
    "enableescapecommandline",
    "enablesshkeysign",
    "escapechar",
    "exitonforwardfailure",
    "fingerprinthash",
    "forkafterauthentication",
    "forwardagent",
    "forwardx11",
    "forwardx11timeout",
    "forwardx11trusted",
    "gatewayports",
    "globalknownhostsfile",
    "gssapiauthentication",
    "gssapiclientidentity",
    "gssapidelegatecredentials",
    "gssapikexalgorithms",
    "gssapikeyexchange",
    "gssapirenewalforcesrekey",
    "gssapiserveridentity",
    "gssapitrustdns",
    "hashknownhosts",
    "hostbasedacceptedalgorithms",
    "hostbasedauthentication",
    "hostbasedkeytypes",
    "hostkeyalgorithms",
    "identitiesonly",
    "identityagent",
    "ipqos",
    "kbdinteractiveauthentication",
    "kbdinteractivedevices",
    "kexalgorithms",
    "localcommand",
    "localforward",
    "loglevel",
    "logverbose",
    "macs",
    "nohostauthenticationforlocalhost",
    "numberofpasswordprompts",
    "obscurekeystroketiming",
    "passwordauthentication",
    "permitlocalcommand",
    "permitremoteopen",
    "pkcs11provider",
    "preferredauthentications",
    "protocol",
    "proxyusefdpass",
    "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes",
    "pubkeyauthentication",
    "rekeylimit",
    "remotecommand",
    "remoteforward",
    "requesttty",
    "requiredrsasize",
    "rhostsrsaauthentication",
    "rsaauthentication",
    "securitykeyprovider",
    "sendenv",
    "serveralivecountmax",
    "serveraliveinterval",
    "sessiontype",
    "setenv",
    "smartcarddevice",
    "stdinnull",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "syslogfacility",
    "tag",
    "tcpkeepalive",
    "tunnel",
    "tunneldevice",
    "updatehostkeys",
    "useprivilegedport",
    "useroaming",
    "verifyhostkeydns",
    "visualhostkey",
    "xauthlocation",
];

/// What barge does with `keyword` (lowercase) set to `value`; `None` for
/// a keyword ssh does not know either.
fn directive(keyword: &str, value: &str) -> Option<Directive> {
    let value = value.to_ascii_lowercase();
    let off = matches!(value.as_str(), "no" | "false" | "off");
    Some(match keyword {
        "host" | "match" | "include" | "hostname" | "port" | "user" | "identityfile" | "proxyjump"
        | "ignoreunknown" => Directive::Applied,
        "proxycommand" if value == "none" => Directive::Applied,
        "proxycommand" => Directive::Refused(
            "barge runs no command to reach a host: use ProxyJump (or --jump) for jump hosts, or --proxy for a \
             SOCKS5 proxy",
        ),
        "userknownhostsfile" if value == "none" => {
            Directive::Refused("barge checks every host key against a known_hosts file")
        }
        "userknownhostsfile" => Directive::Applied,
        "stricthostkeychecking" if off => {
            Directive::Refused("barge always checks host keys (an unknown key is refused unless --accept-new-host-key)")
        }
        "stricthostkeychecking" => Directive::Applied,
        "hostkeyalias" => Directive::Refused(
            "barge checks a host key under the host's own name and port: record the key under that name in \
             known_hosts",
        ),
        "knownhostscommand" => Directive::Refused("barge reads host keys from a known_hosts file only"),
        "revokedhostkeys" => {
            Directive::Refused("barge reads no revoked-key file: put the revoked keys on @revoked lines of known_hosts")
        }
        "bindaddress" | "bindinterface" => {
            Directive::Refused("barge does not choose the local address or interface of its connections")
        }
        "addressfamily" if value == "any" => Directive::Ignored,
        "addressfamily" => Directive::Refused(
            "barge connects to whichever address the name resolves to: put an address of that family in HostName",
        ),
        "canonicalizehostname" if off => Directive::Ignored,
        "canonicalizehostname" => {
            Directive::Refused("barge does not canonicalize host names: write the full name in HostName")
        }
        other if IGNORED.contains(&other) => Directive::Ignored,
        _ => return None,
    })
}

/// Where relative Include paths and `~` lead.
pub struct Dirs<'a> {
    /// `~/.ssh`.
    pub ssh_dir: &'a Path,
}

/// The settings for `alias` from the config file at `path`. A missing file
/// is an empty config.
pub fn lookup(path: &Path, alias: &str, dirs: &Dirs<'_>) -> Result<HostSettings, String> {
    let mut settings = HostSettings::default();
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(settings),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut block = Block::Applies;
    apply(&text, path, alias, Some(dirs), &mut settings, &mut block, 0)?;
    Ok(settings)
}

/// The settings for `alias` from config text alone: `Include` lines are
/// not followed (no file is read).
pub fn lookup_text(text: &[u8], alias: &str) -> Result<HostSettings, String> {
    let mut settings = HostSettings::default();
    apply(text, Path::new("config"), alias, None, &mut settings, &mut Block::Applies, 0)?;
    Ok(settings)
}

/// Whether the lines being read apply to the alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Applies,
    DoesNotApply,
    /// A `Match` barge does not evaluate: ssh might apply it.
    Unevaluated,
}

/// Applies one file's lines. An Include in a block that does not apply is
/// not read at all (so none of its Host lines can match); without `dirs`,
/// no Include is.
fn apply(
    text: &[u8],
    origin: &Path,
    alias: &str,
    dirs: Option<&Dirs<'_>>,
    settings: &mut HostSettings,
    block: &mut Block,
    depth: usize,
) -> Result<(), String> {
    let text = String::from_utf8_lossy(text);
    for (number, line) in text.lines().enumerate() {
        let at = || format!("{} line {}", origin.display(), number + 1);
        let words = split_words(line).map_err(|why| format!("{}: {why}", at()))?;
        let Some((keyword, args)) = words.split_first() else { continue };
        let first = args.first().map(String::as_str);
        let option = keyword.to_ascii_lowercase();
        // As OpenSSH's readconf.c: a missing or empty value ("") is an
        // error wherever it stands, in a block that applies or not; ssh
        // refuses the whole file, and so does barge rather than connect
        // to "" or log in as "".
        if matches!(
            option.as_str(),
            "hostname" | "user" | "port" | "identityfile" | "proxyjump" | "proxycommand" | "userknownhostsfile"
        ) && first.is_none_or(str::is_empty)
        {
            return Err(format!("{}: {keyword} has no value", at()));
        }
        let Some(directive) = directive(&option, first.unwrap_or_default()) else {
            let ignored = settings.ignore_unknown.as_deref().is_some_and(|list| {
                list.split(',').any(|p| wildcard(p.to_ascii_lowercase().as_bytes(), option.as_bytes()))
            });
            if ignored {
                continue;
            }
            return Err(format!(
                "{}: unknown option {keyword}: barge reads ssh_config as ssh does and refuses what it does not \
                 know (name it in IgnoreUnknown to skip it)",
                at()
            ));
        };
        let active = *block == Block::Applies;
        match option.as_str() {
            "host" if args.iter().any(String::is_empty) => {
                return Err(format!("{}: {keyword} has an empty pattern", at()));
            }
            "host" => *block = if host_matches(args, alias) { Block::Applies } else { Block::DoesNotApply },
            "match" if first.is_some_and(|a| a.eq_ignore_ascii_case("all")) => *block = Block::Applies,
            "match" => *block = Block::Unevaluated,
            "include" if active => {
                let Some(dirs) = dirs else { continue };
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(format!("{}: Include nested too deeply", at()));
                }
                for arg in args {
                    for file in include_files(arg, dirs).map_err(|why| format!("{}: {why}", at()))? {
                        let Ok(included) = std::fs::read(&file) else { continue };
                        let before = *block;
                        apply(&included, &file, alias, Some(dirs), settings, block, depth + 1)?;
                        *block = before;
                    }
                }
            }
            // Checked in every block, as OpenSSH does.
            "port" => {
                let port = first.and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
                let port = port.ok_or_else(|| format!("{}: Port is not a number from 1 to 65535", at()))?;
                if active && settings.port.is_none() {
                    settings.port = Some(port);
                }
            }
            _ if directive == Directive::Ignored || *block == Block::DoesNotApply => {}
            "ignoreunknown" if *block == Block::Unevaluated => {}
            _ if *block == Block::Unevaluated => {
                return Err(format!(
                    "{}: {keyword} inside a Match block: barge does not evaluate Match conditions (only `Match all`), \
                     so it cannot tell whether ssh would apply this; move it into a Host block",
                    at()
                ));
            }
            // The first of ProxyJump and ProxyCommand wins, as in ssh.
            "proxycommand" if settings.proxy_jump.is_some() => {}
            _ if directive.refusal().is_some() => {
                let why = directive.refusal().unwrap_or_default();
                return Err(format!("{}: {keyword} is not supported: {why}", at()));
            }
            "hostname" if settings.hostname.is_none() => settings.hostname = first.map(str::to_string),
            "user" if settings.user.is_none() => settings.user = first.map(str::to_string),
            "identityfile" => settings.identity_files.extend(first.map(str::to_string)),
            "proxyjump" | "proxycommand" if settings.proxy_jump.is_none() => {
                let value = first.unwrap_or_default();
                jump::parse_chain(value).map_err(|why| format!("{}: {keyword}: {why}", at()))?;
                settings.proxy_jump = Some(value.to_string());
            }
            "userknownhostsfile" if settings.known_hosts.is_none() => {
                settings.known_hosts = first.map(str::to_string);
            }
            "stricthostkeychecking" if settings.accept_new_host_key.is_none() => {
                settings.accept_new_host_key = first.map(|v| v.eq_ignore_ascii_case("accept-new"));
            }
            "ignoreunknown" if settings.ignore_unknown.is_none() => {
                settings.ignore_unknown = first.map(str::to_string);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Splits a config line into words: `keyword arg...` or `keyword=arg`,
/// double quotes group, `#` starts a comment.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '#' if !quoted && !in_word => break,
            c if !quoted && (c.is_whitespace() || (c == '=' && words.is_empty())) => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unbalanced quote".into());
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

/// Whether a `Host` line applies: some pattern matches and no negated one does.
fn host_matches(patterns: &[String], alias: &str) -> bool {
    let alias = alias.to_ascii_lowercase();
    let mut matched = false;
    for pattern in patterns {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix('!') {
            Some(negated) if wildcard(negated.as_bytes(), alias.as_bytes()) => return false,
            Some(_) => {}
            None => matched |= wildcard(pattern.as_bytes(), alias.as_bytes()),
        }
    }
    matched
}

/// `*` (any run) and `?` (any one byte) matching, iterative with backtracking
/// to the last `*` (linear in practice, never exponential).
pub fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// The files an Include argument names, sorted: `~` is the home directory,
/// relative paths are under `~/.ssh`, `*` and `?` may appear in the last
/// component.
fn include_files(arg: &str, dirs: &Dirs<'_>) -> Result<Vec<PathBuf>, String> {
    let home = dirs.ssh_dir.parent().unwrap_or(dirs.ssh_dir);
    let path = match arg.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None if Path::new(arg).is_absolute() => PathBuf::from(arg),
        None => dirs.ssh_dir.join(arg),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !name.contains(['*', '?']) {
        return Ok(vec![path]);
    }
    let parent = path.parent().ok_or_else(|| format!("bad Include path {arg}"))?;
    if parent.to_string_lossy().contains(['*', '?']) {
        return Err(format!("Include {arg}: wildcards are supported in the file name only"));
    }
    let Ok(read) = std::fs::read_dir(parent) else { return Ok(Vec::new()) };
    let mut files: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .filter(|e| wildcard(name.as_bytes(), e.file_name().as_encoded_bytes()))
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}

/// An `sftp://` location after ~/.ssh/config: the host to connect to,
/// port and user (the URL's own win), and the key files it names.
#[derive(Debug)]
pub struct Resolved {
    pub remote: RemoteLocation,
    pub identity_files: Vec<PathBuf>,
    /// `ProxyJump`: `None` when the config names none (or no config is
    /// read); `Some` of an empty chain for `none`.
    pub jumps: Option<Vec<JumpHost>>,
    /// `UserKnownHostsFile` (expanded).
    pub known_hosts: Option<PathBuf>,
    /// `StrictHostKeyChecking accept-new`.
    pub accept_new_host_key: bool,
}

/// Applies the config at `config` (`--ssh-config`; else `~/.ssh/config`;
/// `none`: no file) to `remote`. `local_user` is `%u` and the login when
/// neither the URL nor the config names one.
pub fn resolve(
    remote: &RemoteLocation,
    config: Option<&Path>,
    home: Option<&Path>,
    local_user: &str,
) -> Result<Resolved, String> {
    let path = match config {
        Some(path) if path == Path::new("none") => None,
        Some(path) => Some(path.to_path_buf()),
        None => home.map(|h| h.join(".ssh").join("config")),
    };
    let Some(path) = path else {
        return Ok(Resolved {
            remote: remote.clone(),
            identity_files: Vec::new(),
            jumps: None,
            known_hosts: None,
            accept_new_host_key: false,
        });
    };
    let ssh_dir = match home {
        Some(home) => home.join(".ssh"),
        None => path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    // A file named with --ssh-config must be there (as `ssh -F` insists):
    // a typo would otherwise send an alias to a host of that name.
    if config.is_some() && !path.exists() {
        return Err(format!("--ssh-config {}: no such file", path.display()));
    }
    let settings = lookup(&path, &remote.host, &Dirs { ssh_dir: &ssh_dir })?;
    let home_text = home.map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let mut resolved = remote.clone();
    if let Some(hostname) = &settings.hostname {
        // `%h` in HostName is the alias itself.
        resolved.host = expand(hostname, &tokens(&home_text, remote, remote, local_user))
            .map_err(|why| format!("{}: HostName: {why}", path.display()))?;
    }
    if !remote.port_given
        && let Some(port) = settings.port
    {
        resolved.port = port;
    }
    if resolved.user.is_none() {
        resolved.user = settings.user.clone();
    }
    let identity_files = settings
        .identity_files
        .iter()
        .map(|file| expand(file, &tokens(&home_text, remote, &resolved, local_user)).map(PathBuf::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| format!("{}: IdentityFile: {why}", path.display()))?;
    let jumps = match &settings.proxy_jump {
        Some(chain) => Some(jump::parse_chain(chain).map_err(|why| format!("{}: ProxyJump: {why}", path.display()))?),
        None => None,
    };
    let known_hosts = match &settings.known_hosts {
        Some(file) => Some(
            expand(file, &tokens(&home_text, remote, &resolved, local_user))
                .map(PathBuf::from)
                .map_err(|why| format!("{}: UserKnownHostsFile: {why}", path.display()))?,
        ),
        None => None,
    };
    Ok(Resolved {
        remote: resolved,
        identity_files,
        jumps,
        known_hosts,
        accept_new_host_key: settings.accept_new_host_key.unwrap_or(false),
    })
}

/// The tokens for connecting to `target`, written `alias` in the URL.
fn tokens<'a>(home: &'a str, alias: &'a RemoteLocation, target: &'a RemoteLocation, local_user: &'a str) -> Tokens<'a> {
    Tokens {
        home,
        host: &target.host,
        alias: &alias.host,
        port: target.port,
        remote_user: target.user.as_deref().unwrap_or(local_user),
        local_user,
    }
}

/// Values for `%` tokens in IdentityFile (and `%h` in HostName).
pub struct Tokens<'a> {
    /// `%d`, and `~`.
    pub home: &'a str,
    /// `%h`: the host name connected to.
    pub host: &'a str,
    /// `%n`: the host as written in the URL.
    pub alias: &'a str,
    /// `%p`.
    pub port: u16,
    /// `%r`: the remote login name.
    pub remote_user: &'a str,
    /// `%u`: the local user name.
    pub local_user: &'a str,
}

/// Expands `~/` at the start and `%d %h %n %p %r %u %%`.
pub fn expand(text: &str, tokens: &Tokens<'_>) -> Result<String, String> {
    let mut out = String::new();
    let rest = match text.strip_prefix("~/") {
        Some(rest) => {
            out.push_str(tokens.home.trim_end_matches('/'));
            out.push('/');
            rest
        }
        None => text,
    };
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('d') => out.push_str(tokens.home),
            Some('h') => out.push_str(tokens.host),
            Some('n') => out.push_str(tokens.alias),
            Some('p') => out.push_str(&tokens.port.to_string()),
            Some('r') => out.push_str(tokens.remote_user),
            Some('u') => out.push_str(tokens.local_user),
            Some(other) => return Err(format!("unsupported token %{other} in `{text}`")),
            None => return Err(format!("`{text}` ends with a lone %")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_for(text: &str, alias: &str) -> HostSettings {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, text).unwrap();
        lookup(&path, alias, &Dirs { ssh_dir: dir.path() }).unwrap()
    }

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let text = "\
# comment
Host web
    HostName 10.0.0.5
    Port 2222
    IdentityFile ~/.ssh/web_key
Host *
    User deploy
    Port 22
    HostName ignored.example
    IdentityFile ~/.ssh/id_all
";
        let web = settings_for(text, "web");
        assert_eq!(web.hostname.as_deref(), Some("10.0.0.5"));
        assert_eq!(web.port, Some(2222));
        assert_eq!(web.user.as_deref(), Some("deploy"));
        assert_eq!(web.identity_files, ["~/.ssh/web_key", "~/.ssh/id_all"]);
        let other = settings_for(text, "other");
        assert_eq!(other.hostname.as_deref(), Some("ignored.example"));
        assert_eq!(other.port, Some(22));
        assert_eq!(other.identity_files, ["~/.ssh/id_all"]);
    }

    #[test]
    fn patterns_negation_and_several_per_line() {
        let text = "\
Host *.example.com !bad.example.com db? \"quoted\"
    User matched
Host=web-*
    User=equals
";
        assert_eq!(settings_for(text, "a.example.com").user.as_deref(), Some("matched"));
        assert_eq!(settings_for(text, "A.EXAMPLE.COM").user.as_deref(), Some("matched"), "case-insensitive");
        assert_eq!(settings_for(text, "bad.example.com").user, None);
        assert_eq!(settings_for(text, "db1").user.as_deref(), Some("matched"));
        assert_eq!(settings_for(text, "db12").user, None);
        assert_eq!(settings_for(text, "quoted").user.as_deref(), Some("matched"));
        assert_eq!(settings_for(text, "web-3").user.as_deref(), Some("equals"));
        assert_eq!(settings_for(text, "example.com").user, None);
    }

    #[test]
    fn options_before_any_host_apply_to_all_and_match_blocks_are_not_evaluated() {
        let text = "Port 2200\nMatch host x exec \"true\"\n  ServerAliveInterval 5\nMatch all\n  User yes\n";
        let got = settings_for(text, "anything");
        assert_eq!((got.port, got.user.as_deref()), (Some(2200), Some("yes")));
        // A Match that might set where ssh connects is an error, not skipped.
        let err = lookup_text(b"Match host x\n  User no\n", "x").unwrap_err();
        assert!(err.contains("line 2") && err.contains("User inside a Match block"), "{err}");
    }

    fn error_for(text: &str, alias: &str) -> String {
        lookup_text(text.as_bytes(), alias).unwrap_err()
    }

    #[test]
    fn proxy_jump_first_value_wins_with_proxy_command_none() {
        let text = "Host db\n  ProxyJump me@gw:2222,gw2\nHost *\n  ProxyJump other\n";
        assert_eq!(lookup_text(text.as_bytes(), "db").unwrap().proxy_jump.as_deref(), Some("me@gw:2222,gw2"));
        assert_eq!(lookup_text(text.as_bytes(), "x").unwrap().proxy_jump.as_deref(), Some("other"));
        let text = "Host gw\n  ProxyCommand none\nHost *\n  ProxyJump gw\n";
        assert_eq!(lookup_text(text.as_bytes(), "gw").unwrap().proxy_jump.as_deref(), Some("none"));
        // ssh too ignores a ProxyCommand after a ProxyJump took effect.
        let text = "Host *\n  ProxyJump gw\n  ProxyCommand nc %h %p\n";
        assert_eq!(lookup_text(text.as_bytes(), "db").unwrap().proxy_jump.as_deref(), Some("gw"));
        assert!(error_for("Host *\n  ProxyJump gw:x\n", "db").contains("ProxyJump: jump host `gw:x`"));
    }

    /// Every directive that changes where or how ssh connects is applied
    /// or an error naming it; the others are listed as ignored.
    #[test]
    fn directives_barge_does_not_implement_are_errors_naming_them() {
        for (line, named) in [
            ("ProxyCommand ssh -W %h:%p gw", "ProxyCommand is not supported: barge runs no command"),
            ("HostKeyAlias other", "HostKeyAlias is not supported"),
            ("StrictHostKeyChecking no", "StrictHostKeyChecking is not supported: barge always checks host keys"),
            ("UserKnownHostsFile none", "UserKnownHostsFile is not supported"),
            ("BindAddress 10.0.0.1", "BindAddress is not supported"),
            ("AddressFamily inet6", "AddressFamily is not supported"),
            ("CanonicalizeHostname yes", "CanonicalizeHostname is not supported"),
            ("KnownHostsCommand /bin/keys", "KnownHostsCommand is not supported"),
            ("RevokedHostKeys /etc/revoked", "RevokedHostKeys is not supported"),
            ("FrobnicateHost yes", "unknown option FrobnicateHost"),
        ] {
            let text = format!("Host web\n  {line}\n");
            let err = error_for(&text, "web");
            assert!(err.starts_with("config line 2: ") && err.contains(named), "{line}: {err}");
        }
        // Only where they apply (an unknown keyword is an error anywhere, as in ssh).
        assert!(lookup_text(b"Host web\n  ProxyCommand nc %h %p\n", "db").is_ok());
        assert!(error_for("Host web\n  FrobnicateHost yes\n", "db").contains("FrobnicateHost"));
        let text = "IgnoreUnknown Frob*,UseKeychain\nHost *\n  FrobnicateHost yes\n  UseKeychain yes\n";
        assert!(lookup_text(text.as_bytes(), "db").is_ok());
        let text = "Host *\n  AddressFamily any\n  CanonicalizeHostname no\n  ServerAliveInterval 30\n  \
                    ForwardAgent yes\n  Ciphers aes256-gcm@openssh.com\n  ControlMaster auto\n";
        assert!(lookup_text(text.as_bytes(), "db").is_ok(), "ignored: they do not change where barge connects");
        let text = "Host *\n  StrictHostKeyChecking accept-new\n  UserKnownHostsFile ~/.ssh/kh_%h a b\n";
        let got = lookup_text(text.as_bytes(), "db").unwrap();
        assert_eq!((got.accept_new_host_key, got.known_hosts.as_deref()), (Some(true), Some("~/.ssh/kh_%h")));
        let got = lookup_text(b"StrictHostKeyChecking ask\n", "db").unwrap();
        assert_eq!(got.accept_new_host_key, Some(false));
    }

    #[test]
    fn a_bad_port_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "Host h\n  Port many\n").unwrap();
        let err = lookup(&path, "h", &Dirs { ssh_dir: dir.path() }).unwrap_err();
        assert!(err.contains("line 2") && err.contains("Port"), "{err}");
        // Also for a host the block does not apply to: ssh refuses the file.
        assert_eq!(lookup(&path, "other", &Dirs { ssh_dir: dir.path() }), Err(err));
        assert_eq!(
            lookup(&dir.path().join("missing"), "h", &Dirs { ssh_dir: dir.path() }),
            Ok(HostSettings::default())
        );
    }

    /// OpenSSH (readconf.c) says "Missing argument." for these and refuses
    /// the file, whichever host it was asked about: so does barge, naming
    /// the file and line, never connecting to "" or logging in as "".
    #[test]
    fn an_empty_value_is_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let dirs = Dirs { ssh_dir: dir.path() };
        for (line, shown) in [
            ("HostName \"\"", "HostName has no value"),
            ("hostname=\"\"", "hostname has no value"),
            ("User \"\"", "User has no value"),
            ("User", "User has no value"),
            ("Port \"\"", "Port has no value"),
            ("Port=", "Port has no value"),
            ("IdentityFile \"\"", "IdentityFile has no value"),
            ("IdentityFile", "IdentityFile has no value"),
            ("Host web \"\"", "Host has an empty pattern"),
        ] {
            std::fs::write(&path, format!("Host *\n  User first\nHost web\n  {line}\n")).unwrap();
            for alias in ["web", "other"] {
                let err = lookup(&path, alias, &dirs).unwrap_err();
                assert_eq!(err, format!("{} line 4: {shown}", path.display()), "{line:?} for {alias}");
            }
        }
        // Quotes around a value are not part of it; an empty pair is.
        std::fs::write(&path, "Host web\n  HostName \"10.0.0.9\"\n  User \"a b\"\n").unwrap();
        let got = lookup(&path, "web", &dirs).unwrap();
        assert_eq!((got.hostname.as_deref(), got.user.as_deref()), (Some("10.0.0.9"), Some("a b")));
    }

    #[test]
    fn includes_are_relative_to_ssh_dir_globbed_and_conditional() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path();
        std::fs::create_dir(ssh.join("conf.d")).unwrap();
        std::fs::write(ssh.join("conf.d/10-web"), "Host web\n  HostName 10.1.1.1\n").unwrap();
        std::fs::write(ssh.join("conf.d/20-all"), "User from-include\n").unwrap();
        std::fs::write(ssh.join("conf.d/ignored.txt"), "Host *\n  Port 1\n").unwrap();
        std::fs::write(ssh.join("only-db"), "Host *\n  Port 3333\n").unwrap();
        let config = ssh.join("config");
        std::fs::write(&config, "Include conf.d/??-*\nHost db\n  Include only-db\nHost *\n  User last\n").unwrap();
        let dirs = Dirs { ssh_dir: ssh };
        let web = lookup(&config, "web", &dirs).unwrap();
        assert_eq!(web.hostname.as_deref(), Some("10.1.1.1"));
        assert_eq!(web.user.as_deref(), Some("from-include"));
        assert_eq!(web.port, None, "an Include under a non-matching Host never applies");
        assert_eq!(lookup(&config, "db", &dirs).unwrap().port, Some(3333));
        std::fs::write(ssh.join("loop"), "Include loop\n").unwrap();
        std::fs::write(&config, "Include loop\n").unwrap();
        assert!(lookup(&config, "x", &dirs).unwrap_err().contains("too deeply"));
    }

    #[test]
    fn url_values_win_over_the_config() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir(&ssh).unwrap();
        std::fs::write(
            ssh.join("config"),
            "Host box\n  HostName %h.example.net\n  Port 2222\n  User cfg\n  IdentityFile ~/.ssh/id_%r@%h\n",
        )
        .unwrap();
        let parse = |url: &str| match crate::location::Location::parse(url).unwrap() {
            crate::location::Location::Remote(r) => r,
            other => panic!("{other:?}"),
        };
        let got = resolve(&parse("sftp://box/data"), None, Some(home.path()), "me").unwrap();
        assert_eq!((got.remote.host.as_str(), got.remote.port), ("box.example.net", 2222));
        assert_eq!(got.remote.user.as_deref(), Some("cfg"));
        let key = format!("{}/.ssh/id_cfg@box.example.net", home.path().display());
        assert_eq!(got.identity_files, [PathBuf::from(key)]);
        assert_eq!(got.remote.path, b"/data");

        let got = resolve(&parse("sftp://url@box:22/data"), None, Some(home.path()), "me").unwrap();
        assert_eq!((got.remote.port, got.remote.user.as_deref()), (22, Some("url")), "the URL wins");

        let got = resolve(&parse("sftp://box/data"), Some(Path::new("none")), Some(home.path()), "me").unwrap();
        assert_eq!((got.remote.host.as_str(), got.remote.port), ("box", 22), "--ssh-config none");
        let got = resolve(&parse("sftp://box/data"), None, None, "me").unwrap();
        assert_eq!(got.remote.host, "box", "no HOME, no config");

        std::fs::write(ssh.join("config"), "Host box\n  ProxyJump gw,me@gw2:2200\n  UserKnownHostsFile ~/kh_%h\n")
            .unwrap();
        let got = resolve(&parse("sftp://box/data"), None, Some(home.path()), "me").unwrap();
        let jumps: Vec<String> = got.jumps.unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(jumps, ["gw", "me@gw2:2200"]);
        assert_eq!(got.known_hosts, Some(home.path().join("kh_box")));
        let got = resolve(&parse("sftp://other/data"), None, Some(home.path()), "me").unwrap();
        assert_eq!((got.jumps, got.known_hosts), (None, None));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard(b"*", b""));
        assert!(wildcard(b"a*b*c", b"axxbyyc"));
        assert!(!wildcard(b"a*b*c", b"axxbyy"));
        assert!(wildcard(b"??", b"ab"));
        assert!(!wildcard(b"?", b""));
        assert!(wildcard(b"*.com", b"x.y.com"));
        assert!(!wildcard(b"abc", b"abcd"));
    }

    #[test]
    fn tokens_expand() {
        let tokens = Tokens {
            home: "/home/me",
            host: "10.0.0.5",
            alias: "web",
            port: 2222,
            remote_user: "deploy",
            local_user: "me",
        };
        assert_eq!(expand("~/.ssh/id_%h_%p", &tokens).unwrap(), "/home/me/.ssh/id_10.0.0.5_2222");
        assert_eq!(expand("%d/k-%r@%n-%u%%", &tokens).unwrap(), "/home/me/k-deploy@web-me%");
        assert!(expand("%C", &tokens).unwrap_err().contains("%C"));
        assert!(expand("x%", &tokens).is_err());
    }
}
