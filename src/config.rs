//! The config file (TOML): named remotes and named jobs.
//!
//! `$XDG_CONFIG_HOME/barge/config.toml` (else `~/.config/barge/config.toml`)
//! or `--config FILE`. A remote names a server (URL, where its secret comes
//! from, TLS and SSH options, a connection cap and a bandwidth cap); a job
//! names a whole sync (source, destination, filters, compare mode, delete
//! policy, limits). `NAME:path` is accepted wherever a URL is.
//!
//! Every mistake is an error naming the file, the line and the key: unknown
//! keys included, because a misspelt `delete` that is silently ignored is a
//! mirror that never deletes, or one that deletes when it should not.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::backend::RemoteOptions;
use crate::backend::ftp::names::NameEncoding;
use crate::error::Error;
use crate::location::{Location, RemoteLocation, Scheme, Secret};
use crate::plan::{CompareMode, LinkMode};
use crate::stop::CutoffMode;
use crate::sync::DeleteLimit;
use crate::throttle::{Bandwidth, parse_bandwidth};
use crate::units::{Age, parse_age, parse_duration, parse_size};

/// A loaded, checked config file.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Where it was read from (`None`: no file, an empty config).
    pub path: Option<PathBuf>,
    pub remotes: BTreeMap<String, Remote>,
    pub jobs: BTreeMap<String, JobSpec>,
}

/// A named server.
#[derive(Debug, Clone)]
pub struct Remote {
    pub name: String,
    /// The URL, its path the base of `NAME:path` (no password: that is refused).
    pub location: RemoteLocation,
    /// The secret read from `password_file` (owner-only), if one is named.
    pub password: Option<Secret>,
    /// `password_file` as written, for `barge remotes`.
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// Most connections barge opens to this server at once.
    pub parallel: Option<usize>,
    /// Bytes per second to and from this server.
    pub bwlimit: Option<u64>,
    pub tls_explicit: bool,
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
    pub active: bool,
    pub active_ports: Option<std::ops::RangeInclusive<u16>>,
    pub pasv_address_from_reply: bool,
    pub list_times: bool,
    pub ascii: Vec<String>,
    pub identity: Option<PathBuf>,
    pub passphrase_env: Option<String>,
    pub known_hosts: Option<PathBuf>,
    pub ssh_config: Option<PathBuf>,
    pub accept_new_host_key: bool,
    pub timeout: Option<u64>,
    /// FTP names' character set (`encoding`); `Bytes` when not given.
    pub encoding: NameEncoding,
    /// `jump`: SSH jump hosts, as `--jump`.
    pub jump: Option<Vec<crate::backend::sftp::jump::JumpHost>>,
    /// `proxy`: as `--proxy` (a SOCKS5 URL or `none`), over `ALL_PROXY`.
    pub proxy: Option<crate::backend::socks::ProxySetting>,
}

/// A named sync: everything `barge sync` takes, as data.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub name: String,
    pub source: String,
    pub destination: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    pub min_age: Option<Age>,
    pub max_age: Option<Age>,
    pub compare: CompareMode,
    pub delete: bool,
    pub max_delete: Option<DeleteLimit>,
    pub max_shrink: u8,
    /// A cap on transfers at once (else tuned; see `--parallel`).
    pub parallel: Option<u16>,
    pub retries: u32,
    /// A rate or a timetable (`--bwlimit`).
    pub bwlimit: Option<Bandwidth>,
    pub state: Option<PathBuf>,
    pub report: Option<PathBuf>,
    pub metrics: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub links: LinkMode,
    pub max_duration: Option<std::time::Duration>,
    pub cutoff_mode: CutoffMode,
    pub remove_source_files: bool,
    pub remove_empty_source_dirs: bool,
    /// `--notify`: the healthcheck's ping URL.
    pub notify: Option<String>,
    /// `--shard-depth`, for runs given `--shard`.
    pub shard_depth: Option<u32>,
    /// `--files-from`, `--from0`.
    pub files_from: Option<PathBuf>,
    pub from0: bool,
    pub inplace: bool,
    pub backup_dir: Option<String>,
    pub verify: bool,
    pub fxp: bool,
    pub trust_state: bool,
    pub verify_state: bool,
    /// Keep permission bits (`perms = false`: `--no-perms`).
    pub perms: bool,
    /// `--perms-all`.
    pub perms_all: bool,
    /// `--chmod`.
    pub chmod: Option<std::sync::Arc<crate::perms::Chmod>>,
    /// `--owner`, `--group`, `--numeric-ids`.
    pub owner: bool,
    pub group: bool,
    pub numeric_ids: bool,
    pub timeout: Option<u64>,
    /// As `--encoding`, for both sides (a remote's own applies where this is not given).
    pub encoding: Option<NameEncoding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    remotes: BTreeMap<String, Spanned<RawRemote>>,
    #[serde(default)]
    jobs: BTreeMap<String, Spanned<RawJob>>,
}

/// A size as `10485760` or `"10M"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// A deletion limit as `500` or `"10%"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum LimitValue {
    Count(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    url: Spanned<String>,
    user: Option<String>,
    password_env: Option<String>,
    password_file: Option<Spanned<PathBuf>>,
    parallel: Option<Spanned<u16>>,
    bwlimit: Option<Spanned<SizeValue>>,
    tls: Option<Spanned<String>>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    active: bool,
    active_ports: Option<Spanned<String>>,
    #[serde(default)]
    pasv_address_from_reply: bool,
    #[serde(default)]
    list_times: bool,
    #[serde(default)]
    ascii: Vec<String>,
    identity: Option<PathBuf>,
    passphrase_env: Option<String>,
    known_hosts: Option<PathBuf>,
    ssh_config: Option<PathBuf>,
    #[serde(default)]
    accept_new_host_key: bool,
    timeout: Option<Spanned<u64>>,
    encoding: Option<Spanned<String>>,
    jump: Option<Spanned<String>>,
    proxy: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    source: Spanned<String>,
    destination: Spanned<String>,
    #[serde(default)]
    include: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    min_size: Option<Spanned<SizeValue>>,
    max_size: Option<Spanned<SizeValue>>,
    min_age: Option<Spanned<String>>,
    max_age: Option<Spanned<String>>,
    compare: Option<Spanned<String>>,
    #[serde(default)]
    delete: bool,
    max_delete: Option<Spanned<LimitValue>>,
    max_shrink: Option<Spanned<u8>>,
    parallel: Option<Spanned<u16>>,
    retries: Option<u32>,
    bwlimit: Option<Spanned<SizeValue>>,
    state: Option<PathBuf>,
    report: Option<PathBuf>,
    metrics: Option<PathBuf>,
    log_file: Option<PathBuf>,
    links: Option<Spanned<String>>,
    max_duration: Option<Spanned<String>>,
    cutoff_mode: Option<Spanned<String>>,
    #[serde(default)]
    remove_source_files: bool,
    remove_empty_source_dirs: Option<Spanned<bool>>,
    notify: Option<Spanned<String>>,
    shard_depth: Option<Spanned<u32>>,
    files_from: Option<PathBuf>,
    #[serde(default)]
    from0: bool,
    #[serde(default)]
    inplace: bool,
    backup_dir: Option<String>,
    #[serde(default)]
    verify: bool,
    #[serde(default)]
    fxp: bool,
    #[serde(default)]
    trust_state: bool,
    #[serde(default)]
    verify_state: bool,
    #[serde(default = "yes")]
    perms: bool,
    #[serde(default)]
    perms_all: bool,
    chmod: Option<Spanned<String>>,
    #[serde(default)]
    owner: bool,
    #[serde(default)]
    group: bool,
    #[serde(default)]
    numeric_ids: bool,
    timeout: Option<Spanned<u64>>,
    encoding: Option<Spanned<String>>,
}

/// What [`names`] finds: (name, a line about it) for each remote and job.
#[derive(Debug, Default)]
pub struct Names {
    pub remotes: Vec<(String, String)>,
    pub jobs: Vec<(String, String)>,
}

/// The names a config file gives, each with a line about it (a remote's
/// URL, a job's source and destination), read without checking anything
/// else and without opening a secret file: what shell completion offers.
/// `None` when the file cannot be read or is not TOML.
pub fn names(explicit: Option<&Path>) -> Option<Names> {
    #[derive(Deserialize)]
    struct Loose {
        #[serde(default)]
        remotes: BTreeMap<String, LooseRemote>,
        #[serde(default)]
        jobs: BTreeMap<String, LooseJob>,
    }
    #[derive(Deserialize)]
    struct LooseRemote {
        url: Option<String>,
    }
    #[derive(Deserialize)]
    struct LooseJob {
        source: Option<String>,
        destination: Option<String>,
    }
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => default_path()?,
    };
    let loose: Loose = toml::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    // A URL as Location shows it: never with a password.
    let shown = |url: Option<String>| url.and_then(|u| Location::parse(&u).ok()).map(|l| l.to_string());
    let remotes = loose.remotes.into_iter().map(|(name, r)| (name, shown(r.url).unwrap_or_default())).collect();
    let jobs = loose
        .jobs
        .into_iter()
        .map(|(name, j)| (name, format!("{} -> {}", j.source.unwrap_or_default(), j.destination.unwrap_or_default())))
        .collect();
    Some(Names { remotes, jobs })
}

/// Where the config file is: `--config`, else the XDG location.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("barge").join("config.toml"))
}

impl Config {
    /// Loads `explicit` (which must exist), else the default file when it
    /// exists, else an empty config.
    pub fn load(explicit: Option<&Path>) -> Result<Config, Error> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => match default_path() {
                Some(path) if path.exists() => path,
                _ => return Ok(Config::default()),
            },
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Usage(format!("config {}: cannot read it: {e}", path.display())))?;
        Config::parse(&text, &path)
    }

    /// Parses and checks a config's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
        let file = ConfigFile { path, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            file.error(e.span(), &message)
        })?;
        let mut config = Config { path: Some(path.to_path_buf()), ..Config::default() };
        for (name, raw) in raw.remotes {
            let span = raw.span();
            check_name(&file, span.clone(), "remote", &name)?;
            let remote = file.remote(&name, raw.into_inner())?;
            config.remotes.insert(name, remote);
        }
        for (name, raw) in raw.jobs {
            let span = raw.span();
            check_name(&file, span, "job", &name)?;
            let job = file.job(&name, raw.into_inner(), &config)?;
            config.jobs.insert(name, job);
        }
        Ok(config)
    }

    /// `text` as a location: `NAME:path` for a configured remote (path
    /// relative to the remote URL's path, or absolute with a leading `/`),
    /// else a URL or local path. Returns the remote it names, if any.
    pub fn location<'a>(&'a self, text: &str) -> Result<(Location, Option<&'a Remote>), Error> {
        let Some((name, rest)) = remote_reference(text) else {
            if let Some(url) = scheme_without_colon(text) {
                return Err(Error::Usage(format!(
                    "`{}` is not a URL: did you mean {}? (a local path of that name is written ./{0})",
                    without_password(text),
                    without_password(&url)
                )));
            }
            if let Some(url) = scp_style(text) {
                return Err(Error::Usage(format!(
                    "`{}` is scp's way to name a remote: barge writes {} (a local path with a colon is \
                     written ./{0})",
                    without_password(text),
                    without_password(&url)
                )));
            }
            return Ok((Location::parse(text)?, None));
        };
        let Some(remote) = self.remotes.get(name) else {
            // Echoed back: a password typed in front of the typo must not be.
            let shown = without_password(text);
            if let Some(url) = misspelled_url(name, rest) {
                return Err(Error::Usage(format!("`{shown}` is not a URL: did you mean {}?", without_password(&url))));
            }
            let known: Vec<&str> = self.remotes.keys().map(String::as_str).collect();
            let file = self.path.as_ref().map_or("no config file".to_string(), |p| p.display().to_string());
            return Err(Error::Usage(format!(
                "`{name}:` is not a configured remote ({file}; remotes: {}); a local path with a colon is \
                 written ./{shown}",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        };
        let mut location = remote.location.clone();
        location.path = join_remote_path(&location.path, rest.as_bytes());
        Ok((Location::Remote(location), Some(remote)))
    }
}

impl Remote {
    /// These settings applied to the options the command line gave: the
    /// command line wins where it set something (a flag, a path), the
    /// remote fills in the rest; `parallel` caps the connections.
    /// `timeout_given`: `--timeout` was on the command line.
    pub fn apply(&self, options: &mut RemoteOptions, timeout_given: bool) {
        if let (false, Some(secs)) = (timeout_given, self.timeout) {
            options.timeout = std::time::Duration::from_secs(secs.max(1));
        }
        if options.password.is_none() {
            options.password = self.password.clone();
        }
        fill(&mut options.password_env, &self.password_env);
        fill(&mut options.ftp.tls.ca_file, &self.ca_file);
        fill(&mut options.ftp.active_ports, &self.active_ports);
        fill(&mut options.sftp.identity, &self.identity);
        fill(&mut options.sftp.passphrase_env, &self.passphrase_env);
        fill(&mut options.sftp.known_hosts, &self.known_hosts);
        fill(&mut options.sftp.ssh_config, &self.ssh_config);
        fill(&mut options.sftp.jump, &self.jump);
        // Given on the command line or not at all: the remote's own is
        // more particular than ALL_PROXY.
        if let (crate::backend::socks::ProxySetting::Environment, Some(proxy)) = (&options.proxy, &self.proxy) {
            options.proxy = proxy.clone();
        }
        options.ftp.explicit_tls |= self.tls_explicit;
        options.ftp.tls.insecure |= self.insecure;
        options.ftp.active |= self.active;
        options.ftp.pasv_address_from_reply |= self.pasv_address_from_reply;
        options.ftp.list_times |= self.list_times;
        options.sftp.accept_new_host_key |= self.accept_new_host_key;
        options.ftp.ascii.extend(self.ascii.iter().cloned());
        if options.ftp.encoding.is_bytes() {
            options.ftp.encoding = self.encoding;
        }
        if let Some(cap) = self.parallel {
            options.connections = options.connections.min(cap);
        }
    }
}

fn fill<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
    if slot.is_none() {
        *slot = value.clone();
    }
}

/// `NAME:rest` when `text` looks like a remote reference: a name of
/// letters, digits, `_`, `-` and `.` then a colon, and not a URL.
pub fn remote_reference(text: &str) -> Option<(&str, &str)> {
    let (name, rest) = text.split_once(':')?;
    let is_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    (is_name && !rest.starts_with("//")).then_some((name, rest))
}

/// `ftp:/host/x` or `sftp:host/x` (a slash short): the URL it was meant
/// to be, when `name` is one of barge's schemes.
fn misspelled_url(name: &str, rest: &str) -> Option<String> {
    Scheme::named(name).map(|scheme| format!("{}://{}", scheme.as_str(), rest.trim_start_matches('/')))
}

/// `user@host:path` (scp's and rsync's form, no scheme): the SFTP URL it
/// stands for. Taken for a local path it would quietly fill a directory
/// named `user@host:` instead of the server.
fn scp_style(text: &str) -> Option<String> {
    let (login, path) = text.split_once(':')?;
    let (_, host) = login.rsplit_once('@')?;
    if host.is_empty() || login.contains('/') || text.contains("://") {
        return None;
    }
    Some(match path.strip_prefix('/') {
        Some(absolute) => format!("sftp://{login}/{absolute}"),
        None if path.is_empty() => format!("sftp://{login}/~"),
        None => format!("sftp://{login}/~/{path}"),
    })
}

/// `sftp//host/x` (the colon left out): the URL it was meant to be. Taken
/// for a local path it would fill ./sftp/host/x, password and all.
fn scheme_without_colon(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("//")?;
    misspelled_url(scheme, rest)
}

/// `text` with what would be a URL's password shown as `***`: a location
/// that is refused is echoed back, and a typo may sit in front of a
/// password. The user is what follows the scheme (if any), the password
/// runs from its first colon to the last `@` (a password may hold `@` and
/// `/`; a path holding `@` only hides more).
fn without_password(text: &str) -> String {
    let Some(at) = text.rfind('@') else { return text.to_string() };
    // After `scheme:` and its slashes, however many were typed.
    let start = match text.split_once(':') {
        Some((scheme, rest)) if Scheme::named(scheme).is_some() => {
            scheme.len() + 1 + rest.bytes().take_while(|&b| b == b'/').count()
        }
        _ => 0,
    };
    match text.get(start..at).and_then(|user| user.find(':')) {
        Some(colon) => format!("{}:***{}", &text[..start + colon], &text[at..]),
        None => text.to_string(),
    }
}

/// The remote's base path joined with `rest` (`/abs` replaces it).
fn join_remote_path(base: &[u8], rest: &[u8]) -> Vec<u8> {
    if rest.starts_with(b"/") {
        return rest.to_vec();
    }
    let mut path = base.to_vec();
    if rest.is_empty() {
        return path;
    }
    if !path.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(rest);
    path
}

fn check_name(file: &ConfigFile<'_>, span: Range<usize>, what: &str, name: &str) -> Result<(), Error> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) {
        return Err(file.error(Some(span), &format!("{what} name `{name}`: use letters, digits, `_`, `-`, `.`")));
    }
    Ok(())
}

/// The file being read, to turn byte offsets into lines and keys.
struct ConfigFile<'a> {
    path: &'a Path,
    text: &'a str,
}

impl ConfigFile<'_> {
    /// An error naming the file, the line and the key at `span`.
    /// A `timeout` key: whole seconds, at least one (as `--timeout`).
    fn timeout(&self, raw: Option<Spanned<u64>>) -> Result<Option<u64>, Error> {
        let Some(raw) = raw else { return Ok(None) };
        let secs = *raw.get_ref();
        crate::units::check_timeout_secs(secs).map_err(|e| self.error(Some(raw.span()), &e))?;
        Ok(Some(secs))
    }

    /// An `encoding` key: a character set `--encoding` takes.
    fn encoding(&self, raw: Option<Spanned<String>>) -> Result<Option<NameEncoding>, Error> {
        let Some(raw) = raw else { return Ok(None) };
        NameEncoding::parse(raw.get_ref()).map(Some).map_err(|e| self.error(Some(raw.span()), &e.to_string()))
    }

    fn error(&self, span: Option<Range<usize>>, message: &str) -> Error {
        let Some(span) = span else { return Error::Usage(format!("config {}: {message}", self.path.display())) };
        let start = span.start.min(self.text.len());
        let line = self.text[..start].matches('\n').count() + 1;
        let key = self.key_at(start);
        let key = key.map(|k| format!(", key `{k}`")).unwrap_or_default();
        Error::Usage(format!("config {}, line {line}{key}: {message}", self.path.display()))
    }

    /// The dotted key whose value (or line) holds byte `at`: the table
    /// header above it and the key before `=` on its line.
    fn key_at(&self, at: usize) -> Option<String> {
        let line_start = self.text[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[at..].find('\n').map_or(self.text.len(), |i| at + i);
        let line = self.text[line_start..line_end].trim();
        let own = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_string());
        if line.starts_with('[') {
            return Some(line.trim_matches(|c| c == '[' || c == ']').trim().to_string());
        }
        let table = self.text[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
        match (table, own) {
            (Some(table), Some(own)) => Some(format!("{table}.{own}")),
            (None, Some(own)) => Some(own),
            (table, None) => table,
        }
    }

    fn remote(&self, name: &str, raw: RawRemote) -> Result<Remote, Error> {
        let url_span = raw.url.span();
        let location = match Location::parse(raw.url.get_ref()) {
            Ok(Location::Remote(remote)) => remote,
            Ok(Location::Local(_)) => {
                return Err(self.error(Some(url_span), "a remote's url is ftp://, ftpes://, ftps:// or sftp://"));
            }
            Err(e) => return Err(self.error(Some(url_span), &e.to_string())),
        };
        if location.password.is_some() {
            return Err(self.error(
                Some(url_span),
                "a password in the url: give it with password_file (owner-only) or password_env instead",
            ));
        }
        let mut location = location;
        if location.user.is_none() {
            location.user = raw.user.clone();
        }
        let password = match &raw.password_file {
            Some(file) => Some(self.read_secret(file)?),
            None => None,
        };
        let bwlimit = match &raw.bwlimit {
            Some(value) => Some(self.size(value, true)?),
            None => None,
        };
        let parallel = match &raw.parallel {
            Some(p) if *p.get_ref() == 0 => return Err(self.error(Some(p.span()), "parallel must be at least 1")),
            Some(p) => Some(usize::from(*p.get_ref())),
            None => None,
        };
        let tls_explicit = match &raw.tls {
            Some(tls) if tls.get_ref() == "explicit" => true,
            Some(tls) => {
                return Err(self.error(Some(tls.span()), "tls is \"explicit\" (ftpes:// and ftps:// need none)"));
            }
            None => false,
        };
        let active_ports = match &raw.active_ports {
            Some(ports) => {
                Some(crate::units::parse_port_range(ports.get_ref()).map_err(|e| self.error(Some(ports.span()), &e))?)
            }
            None => None,
        };
        for glob in &raw.ascii {
            crate::patterns::parse_glob(glob)
                .map_err(|e| self.error(Some(url_span.clone()), &format!("ascii {glob}: {e}")))?;
        }
        Ok(Remote {
            name: name.to_string(),
            location,
            password,
            password_file: raw.password_file.map(Spanned::into_inner),
            password_env: raw.password_env,
            parallel,
            bwlimit,
            tls_explicit,
            ca_file: raw.ca_file,
            insecure: raw.insecure,
            active: raw.active || active_ports.is_some(),
            active_ports,
            pasv_address_from_reply: raw.pasv_address_from_reply,
            list_times: raw.list_times,
            ascii: raw.ascii,
            identity: raw.identity,
            passphrase_env: raw.passphrase_env,
            known_hosts: raw.known_hosts,
            ssh_config: raw.ssh_config,
            accept_new_host_key: raw.accept_new_host_key,
            timeout: self.timeout(raw.timeout)?,
            encoding: self.encoding(raw.encoding)?.unwrap_or_default(),
            jump: match &raw.jump {
                Some(chain) => Some(
                    crate::backend::sftp::jump::parse_chain(chain.get_ref())
                        .map_err(|e| self.error(Some(chain.span()), &format!("jump: {e}")))?,
                ),
                None => None,
            },
            proxy: match &raw.proxy {
                Some(url) => Some(
                    crate::backend::socks::parse_proxy_arg(url.get_ref(), "the remote's proxy key")
                        .map_err(|e| self.error(Some(url.span()), &e))?,
                ),
                None => None,
            },
        })
    }

    /// A secret file must be a regular file only its owner (this user) can
    /// read: anything else would leak it to other local users.
    fn read_secret(&self, file: &Spanned<PathBuf>) -> Result<Secret, Error> {
        use std::os::unix::fs::MetadataExt;
        let path = file.get_ref();
        let fail = |why: String| self.error(Some(file.span()), &format!("password_file {}: {why}", path.display()));
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        if !meta.is_file() {
            return Err(fail("not a regular file".into()));
        }
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(fail(format!("owned by uid {}, not by this user (uid {me})", meta.uid())));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(fail(format!(
                "readable by others (mode {:o}): chmod 600 it, a password must be the owner's alone",
                meta.mode() & 0o777
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let secret = text.lines().next().unwrap_or("").to_string();
        if secret.is_empty() {
            return Err(fail("empty".into()));
        }
        Ok(Secret::new(secret))
    }

    fn size(&self, value: &Spanned<SizeValue>, positive: bool) -> Result<u64, Error> {
        let bytes = match value.get_ref() {
            SizeValue::Bytes(n) => *n,
            SizeValue::Text(text) => parse_size(text).map_err(|e| self.error(Some(value.span()), &e))?,
        };
        if positive && bytes == 0 {
            return Err(self.error(Some(value.span()), "must be more than 0"));
        }
        Ok(bytes)
    }

    fn job(&self, name: &str, raw: RawJob, config: &Config) -> Result<JobSpec, Error> {
        // Locations are checked now, so a typo is found before 3 a.m.
        for side in [&raw.source, &raw.destination] {
            config.location(side.get_ref()).map_err(|e| self.error(Some(side.span()), &e.to_string()))?;
        }
        let size = |v: &Option<Spanned<SizeValue>>, positive| v.as_ref().map(|v| self.size(v, positive)).transpose();
        let (min_size, max_size) = (size(&raw.min_size, false)?, size(&raw.max_size, false)?);
        if let (Some(min), Some(max), Some(span)) = (min_size, max_size, raw.min_size.as_ref().map(Spanned::span))
            && min > max
        {
            return Err(self.error(Some(span), &format!("min_size {min} is larger than max_size {max}")));
        }
        let age = |v: &Option<Spanned<String>>| {
            v.as_ref().map(|v| parse_age(v.get_ref()).map_err(|e| self.error(Some(v.span()), &e))).transpose()
        };
        let (min_age, max_age) = (age(&raw.min_age)?, age(&raw.max_age)?);
        let compare = match &raw.compare {
            Some(c) => parse_enum::<CompareMode>(c.get_ref()).map_err(|e| self.error(Some(c.span()), &e))?,
            None => CompareMode::default(),
        };
        let max_duration = match &raw.max_duration {
            Some(d) => Some(parse_duration(d.get_ref()).map_err(|e| self.error(Some(d.span()), &e))?),
            None => None,
        };
        let cutoff_mode = match &raw.cutoff_mode {
            Some(m) => parse_enum::<CutoffMode>(m.get_ref()).map_err(|e| self.error(Some(m.span()), &e))?,
            None => CutoffMode::default(),
        };
        let links = match &raw.links {
            Some(l) => parse_enum::<LinkMode>(l.get_ref()).map_err(|e| self.error(Some(l.span()), &e))?,
            None => LinkMode::default(),
        };
        let max_delete = match &raw.max_delete {
            Some(limit) => Some(match limit.get_ref() {
                LimitValue::Count(n) => DeleteLimit::Count(*n),
                LimitValue::Text(t) => DeleteLimit::parse(t).map_err(|e| self.error(Some(limit.span()), &e))?,
            }),
            None => None,
        };
        let max_shrink = match &raw.max_shrink {
            Some(p) if *p.get_ref() > 100 => {
                return Err(self.error(Some(p.span()), "max_shrink is a percentage, 0 to 100"));
            }
            Some(p) => *p.get_ref(),
            None => 50,
        };
        let parallel = match &raw.parallel {
            Some(p) if *p.get_ref() == 0 || *p.get_ref() > 1024 => {
                return Err(self.error(Some(p.span()), "parallel is from 1 to 1024"));
            }
            Some(p) => Some(*p.get_ref()),
            None => None,
        };
        for glob in raw.include.iter().chain(&raw.exclude) {
            if let Err(e) = globset::Glob::new(glob.get_ref()) {
                return Err(self.error(Some(glob.span()), &format!("filter {}: {e}", glob.get_ref())));
            }
        }
        Ok(JobSpec {
            name: name.to_string(),
            source: raw.source.into_inner(),
            destination: raw.destination.into_inner(),
            include: raw.include.into_iter().map(Spanned::into_inner).collect(),
            exclude: raw.exclude.into_iter().map(Spanned::into_inner).collect(),
            min_size,
            max_size,
            min_age,
            max_age,
            compare,
            delete: raw.delete,
            max_delete,
            max_shrink,
            parallel,
            retries: raw.retries.unwrap_or(3),
            bwlimit: match &raw.bwlimit {
                Some(value) => Some(match value.get_ref() {
                    SizeValue::Text(text) => parse_bandwidth(text).map_err(|e| self.error(Some(value.span()), &e))?,
                    SizeValue::Bytes(_) => Bandwidth::Rate(self.size(value, true)?),
                }),
                None => None,
            },
            state: raw.state,
            report: raw.report,
            metrics: raw.metrics,
            log_file: raw.log_file,
            links,
            max_duration,
            cutoff_mode,
            remove_source_files: raw.remove_source_files,
            remove_empty_source_dirs: match &raw.remove_empty_source_dirs {
                // As on the command line: alone it would quietly do nothing.
                Some(on) if *on.get_ref() && !raw.remove_source_files => {
                    return Err(
                        self.error(Some(on.span()), "remove_empty_source_dirs goes with remove_source_files = true")
                    );
                }
                Some(on) => *on.get_ref(),
                None => false,
            },
            files_from: raw.files_from,
            from0: raw.from0,
            shard_depth: match &raw.shard_depth {
                Some(d) if !(1..=64).contains(d.get_ref()) => {
                    return Err(self.error(Some(d.span()), "shard_depth is from 1 to 64"));
                }
                Some(d) => Some(*d.get_ref()),
                None => None,
            },
            notify: match &raw.notify {
                Some(url) => {
                    Some(crate::sync::notify::parse_url(url.get_ref()).map_err(|e| self.error(Some(url.span()), &e))?)
                }
                None => None,
            },
            inplace: raw.inplace,
            backup_dir: raw.backup_dir,
            verify: raw.verify,
            fxp: raw.fxp,
            trust_state: raw.trust_state,
            verify_state: raw.verify_state,
            perms: raw.perms,
            perms_all: raw.perms_all,
            chmod: match &raw.chmod {
                Some(text) => Some(std::sync::Arc::new(
                    crate::perms::Chmod::parse(text.get_ref()).map_err(|e| self.error(Some(text.span()), &e))?,
                )),
                None => None,
            },
            owner: raw.owner,
            group: raw.group,
            numeric_ids: raw.numeric_ids,
            timeout: self.timeout(raw.timeout)?,
            encoding: self.encoding(raw.encoding)?,
        })
    }
}

/// A clap value enum from its command-line spelling.
fn parse_enum<T: clap::ValueEnum>(text: &str) -> Result<T, String> {
    T::from_str(text, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect();
        format!("`{text}` is not one of {}", names.join(", "))
    })
}

/// serde's default for keys that are on unless turned off.
fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/barge.toml")).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
[remotes.backup]
url = "sftp://alice@backup.example.org/srv/mirror"
parallel = 4
bwlimit = "10M"
known_hosts = "/etc/barge/known_hosts"
jump = "me@bastion.example.org:2222,gw"

[remotes.pub]
url = "ftpes://ftp.example.org:2121/"
user = "anonymous"
active_ports = "40000-40100"

[jobs.nightly]
source = "pub:/data"
destination = "/var/mirror/data"
delete = true
max_delete = "10%"
exclude = ["*.tmp"]
compare = "hash"

[jobs.backup]
source = "/home"
destination = "backup:home"
max_delete = 500
parallel = 16
"#;

    #[test]
    fn remotes_and_jobs_are_read_and_names_resolve() {
        let config = parse(GOOD).unwrap();
        let backup = &config.remotes["backup"];
        assert_eq!((backup.parallel, backup.bwlimit), (Some(4), Some(10 << 20)));
        let jumps: Vec<String> = backup.jump.iter().flatten().map(ToString::to_string).collect();
        assert_eq!(jumps, ["me@bastion.example.org:2222", "gw"]);
        assert_eq!(config.remotes["pub"].location.user.as_deref(), Some("anonymous"));
        assert!(config.remotes["pub"].active, "active_ports implies active");
        let nightly = &config.jobs["nightly"];
        assert!(nightly.delete);
        assert_eq!(nightly.max_delete, Some(DeleteLimit::Percent(10.0)));
        assert_eq!(nightly.compare, CompareMode::Hash);
        assert_eq!(config.jobs["backup"].max_delete, Some(DeleteLimit::Count(500)));

        let (location, remote) = config.location("backup:home/alice").unwrap();
        assert_eq!(remote.unwrap().name, "backup");
        assert_eq!(location.to_string(), "sftp://alice@backup.example.org:22/srv/mirror/home/alice");
        let (location, _) = config.location("backup:/abs").unwrap();
        assert_eq!(location.to_string(), "sftp://alice@backup.example.org:22/abs");
        let (location, _) = config.location("backup:").unwrap();
        assert_eq!(location.to_string(), "sftp://alice@backup.example.org:22/srv/mirror");
        assert!(matches!(config.location("/tmp/a:b").unwrap(), (Location::Local(_), None)));
        assert!(matches!(config.location("./x:y").unwrap(), (Location::Local(_), None)));
        assert!(matches!(config.location("ftp://h/x").unwrap(), (Location::Remote(_), None)));
        let err = config.location("bakup:/x").unwrap_err().to_string();
        assert!(err.contains("`bakup:` is not a configured remote") && err.contains("backup, pub"), "{err}");
    }

    #[test]
    fn scp_style_locations_are_refused_with_their_url() {
        let config = Config::default();
        let refused = |text: &str| config.location(text).unwrap_err().to_string();
        let err = refused("backup@vault.example.org:/srv/backups");
        assert!(err.contains("sftp://backup@vault.example.org/srv/backups"), "{err}");
        assert!(refused("me@h:docs").contains("sftp://me@h/~/docs"));
        assert!(refused("me@h:").contains("sftp://me@h/~ "));
        // Written as a local path, it is one.
        assert!(matches!(config.location("./me@h:docs").unwrap(), (Location::Local(_), None)));
        assert!(matches!(config.location("me@h").unwrap(), (Location::Local(_), None)));
        assert!(matches!(config.location("/tmp/me@h:x").unwrap(), (Location::Local(_), None)));
    }

    #[test]
    fn a_refused_location_never_echoes_its_password() {
        let config = Config::default();
        for typed in
            ["ftp:/alice:S3cret@host/x", "ftp:alice:S3cret@host/x", "Sftp:/alice:S3cret@h/", "alice:S3cret@host:/x"]
        {
            let err = config.location(typed).unwrap_err().to_string();
            assert!(!err.contains("S3cret") && err.contains("***"), "{typed}: {err}");
        }
        let err = config.location("ftp:/alice:S3cret@host/x").unwrap_err().to_string();
        assert!(err.contains("did you mean ftp://alice:***@host/x"), "{err}");
        assert_eq!(without_password("/plain/path"), "/plain/path");
        // A password holding @ or /: none of it shown.
        assert_eq!(without_password("sftp:/u:hunter@TOPSECRET@h:22/x"), "sftp:/u:***@h:22/x");
        assert_eq!(without_password("ftp:/u:pa/ss@h/x"), "ftp:/u:***@h/x");
        assert_eq!(without_password("u:pw@word@h:/x"), "u:***@h:/x");
        for typed in ["sftp//u:S3cret@h:2299/x", "sftp///h/x", "FTP//h/x"] {
            let err = config.location(typed).unwrap_err().to_string();
            assert!(!err.contains("S3cret") && err.contains("did you mean"), "{typed}: {err}");
        }
        assert!(config.location("sftp//h/x").unwrap_err().to_string().contains("sftp://h/x"));
        assert!(matches!(config.location("./sftp//h/x").unwrap(), (Location::Local(_), None)));
    }

    #[test]
    fn mistakes_name_the_file_line_and_key() {
        let cases = [
            ("[jobs.j]\nsource = \"/a\"\ndestination = \"/b\"\ndelet = true\n", "line 4", "unknown field `delet`"),
            ("[jobs.j]\nsource = \"/a\"\ndestination = \"/b\"\nparallel = \"many\"\n", "line 4", "jobs.j.parallel"),
            ("[jobs.j]\nsource = \"/a\"\ndestination = \"/b\"\nmax_delete = \"ten\"\n", "line 4", "jobs.j.max_delete"),
            ("[jobs.j]\nsource = \"/a\"\ndestination = \"/b\"\ncompare = \"md5\"\n", "line 4", "not one of"),
            ("[jobs.j]\nsource = \"nope:/a\"\ndestination = \"/b\"\n", "line 2", "jobs.j.source"),
            ("[jobs.j]\nsource = \"/a\"\n", "line 1", "missing field `destination`"),
            ("[remotes.r]\nurl = \"gopher://x/\"\n", "line 2", "remotes.r.url"),
            ("[remotes.r]\nurl = \"ftp://u:pw@x/\"\n", "line 2", "password_file"),
            ("[remotes.r]\nurl = \"ftp://x/\"\ntls = \"implicit\"\n", "line 3", "remotes.r.tls"),
            ("[remotes.r]\nurl = \"ftp://x/\"\nbwlimit = 0\n", "line 3", "more than 0"),
            ("[remotes.r]\nurl = \"ftp://x/\"\npassword_file = \"/nonexistent/pw\"\n", "line 3", "password_file"),
            ("[remote.r]\nurl = \"ftp://x/\"\n", "line 1", "unknown field `remote`"),
            ("[jobs.j]\nsource = \"/a\"\ndestination = \"/b\"\nmax_shrink = 101\n", "line 4", "0 to 100"),
            (
                "[jobs.j]\nsource = \"/a\"\ndestination = \"/b\"\nremove_empty_source_dirs = true\n",
                "line 4",
                "goes with remove_source_files",
            ),
            ("[remotes.r]\nurl = \"ftp://x/\"\nencoding = \"klingon\"\n", "line 3", "remotes.r.encoding"),
            ("[jobs.j]\nsource = \"/a\"\ndestination = \"/b\"\nencoding = \"utf-8\"\n", "line 4", "UTF-8"),
            ("x = [", "line 1", ""),
        ];
        for (text, line, needle) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with("config /etc/barge.toml, line "), "{text:?}: {err}");
            assert!(err.contains(line) && err.contains(needle), "{text:?}: {err}");
            assert!(!err.contains("pw@"), "no secret in errors: {err}");
        }
    }

    #[test]
    fn password_files_must_be_the_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret-value\n").unwrap();
        let text = format!("[remotes.r]\nurl = \"ftp://u@x/\"\npassword_file = \"{}\"\n", file.display());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = parse(&text).unwrap_err();
        assert!(err.contains("line 3") && err.contains("readable by others (mode 644)"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = parse(&text).unwrap();
        assert_eq!(config.remotes["r"].password.as_ref().map(Secret::expose), Some("s3cret-value"));
        assert!(!format!("{config:?}").contains("s3cret"), "Debug never shows the secret");
    }

    #[test]
    fn references_are_names_then_a_colon_and_never_urls() {
        assert_eq!(remote_reference("backup:/x"), Some(("backup", "/x")));
        assert_eq!(remote_reference("b-1.x_y:"), Some(("b-1.x_y", "")));
        assert_eq!(remote_reference("sftp://h/x"), None);
        assert_eq!(remote_reference("/abs:x"), None);
        assert_eq!(remote_reference("./a:b"), None);
        assert_eq!(remote_reference("plain"), None);
        assert_eq!(join_remote_path(b"/srv", b"a/b"), b"/srv/a/b");
        assert_eq!(join_remote_path(b"/", b"a"), b"/a");
    }

    #[test]
    fn encodings_are_read_for_remotes_and_jobs_and_the_command_line_wins() {
        let text = "[remotes.old]\nurl = \"ftp://x/\"\nencoding = \"latin1\"\n\n\
                    [jobs.j]\nsource = \"old:\"\ndestination = \"/b\"\nencoding = \"cp437\"\n";
        let config = parse(text).unwrap();
        let latin1 = NameEncoding::parse("latin1").unwrap();
        assert_eq!(config.remotes["old"].encoding, latin1);
        assert_eq!(config.jobs["j"].encoding, Some(NameEncoding::DosCodePage(437)));
        let mut options = RemoteOptions::default();
        config.remotes["old"].apply(&mut options, false);
        assert_eq!(options.ftp.encoding, latin1, "the remote's fills in");
        let mut options = RemoteOptions::default();
        options.ftp.encoding = NameEncoding::DosCodePage(437);
        config.remotes["old"].apply(&mut options, false);
        assert_eq!(options.ftp.encoding, NameEncoding::DosCodePage(437), "the command line's stays");
        assert!(parse("[remotes.r]\nurl = \"ftp://x/\"\n").unwrap().remotes["r"].encoding.is_bytes());
    }
}
