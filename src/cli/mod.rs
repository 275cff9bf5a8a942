//! Command-line interface: clap definitions ([`Cli`]) and the dispatch of
//! each command here; the step that turns raw flags into a validated
//! [`crate::sync::Job`] lives in `job.rs` (ripgrep's habit: parse, then
//! validate into a higher-level config).

mod complete;
pub use complete::answer_if_asked;
mod demo;
mod job;
mod manual;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::backend::ftp::names::NameEncoding;
use crate::config::Config;
use crate::engine::report::{OutputOptions, Reporter, Verbosity};
use crate::error::Error;
use crate::plan::filter::Shard;
use crate::plan::{CompareMode, LinkMode};
use crate::stop::CutoffMode;
use crate::sync::{self, DeleteLimit, Mode, Safety};
use crate::throttle::{Bandwidth, parse_bandwidth};
use crate::units::{Age, parse_age, parse_duration, parse_size};

const EXIT_CODES: &str = "\
Exit codes:
  0  success (check: the trees match)
  1  some files failed, the rest was done (check: the trees differ)
  2  usage or configuration error
  3  cannot connect, authenticate or read a root, or the servers
     stopped answering mid-run
  4  this job is already running
  5  safety stop: --max-delete (nothing was changed), or deletions held
     back because the source listing looked wrong: an empty source, a
     shrunken one (--force overrides); plan and --dry-run predict it";

const FILTER_RULES: &str = "\
Filters (--include, --exclude, sizes and ages):
  Globs: * and ? stay within one path component, ** spans several, [abc] {a,b}.
  A pattern without / matches an entry's name at any depth (*.log); a pattern
  with / matches the path from the root (logs/*.gz; a leading / is optional);
  a pattern ending in / matches directories only (cache/).
  --exclude wins; an excluded directory takes its whole subtree. With any
  --include, only files matching one are transferred; directories are still
  walked. --min-size/--max-size and --min-age/--max-age leave out files by
  size and modification time. Filters apply to both sides: a filtered-out
  destination entry is never deleted, nor is the copy of a source file that
  is left out by size or age.";

pub(crate) const LOCATIONS: &str = "\
Locations (SRC, DST, doctor's URL):
  /srv/data, ./a:b          a local directory (write a path with a colon as ./a:b)
  ftp://user@host:21/path   plain FTP (--tls explicit upgrades it with AUTH TLS)
  ftpes://user@host/path    FTP with explicit TLS (AUTH TLS on port 21)
  ftps://user@host/path     FTP with implicit TLS (port 990)
  sftp://user@host:22/path  SFTP over SSH
  NAME:path                 a remote of the config file; a path without a leading /
                            is relative to the remote URL's path (NAME: is its base)
  Server paths are absolute; host/~/dir is below the login's home directory; an
  IPv6 address goes in brackets (ftp://[::1]:2121/path). The password comes from
  the URL (percent-encoded), --password-env VAR, BARGE_PASSWORD or ~/.netrc, in
  that order, and is never printed.";

pub(crate) const ENVIRONMENT: &str = "\
Environment:
  BARGE_PASSWORD   the password where the URL and --password-env give none
  NETRC            the netrc file to look passwords up in (default ~/.netrc)
  ALL_PROXY        a SOCKS5 proxy for every connection, socks5://[user@]host:port
                   (all_proxy too; --proxy and a remote's proxy win)
  SSH_AUTH_SOCK    the ssh-agent whose keys SFTP logins offer
  XDG_CONFIG_HOME  where the config file is (XDG_CONFIG_HOME/barge/config.toml)
  XDG_STATE_HOME   where state databases go (XDG_STATE_HOME/barge/)";

#[derive(Debug, Parser)]
#[command(
    name = "barge",
    version,
    about = "Mirror file trees between local disk, FTP, FTPS and SFTP, fast and safely",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Config file with named remotes and jobs (default:
    /// $XDG_CONFIG_HOME/barge/config.toml, else ~/.config/barge/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make DST a mirror of SRC: new and changed files are copied.
    #[command(
        after_help = format!("{FILTER_RULES}\n\n{EXIT_CODES}"),
        after_long_help = format!("{LOCATIONS}\n\n{FILTER_RULES}\n\n{EXIT_CODES}\n\n{ENVIRONMENT}")
    )]
    Sync(SyncArgs),
    /// Print what `sync` would do, one line per action with its reason; change nothing.
    #[command(
        after_help = format!("{FILTER_RULES}\n\n{EXIT_CODES}"),
        after_long_help = format!("{LOCATIONS}\n\n{FILTER_RULES}\n\n{EXIT_CODES}\n\n{ENVIRONMENT}")
    )]
    Plan(SyncArgs),
    /// Compare SRC and DST and list differences; exit 0 only when they match.
    #[command(
        after_help = format!("{FILTER_RULES}\n\n{EXIT_CODES}"),
        after_long_help = format!("{LOCATIONS}\n\n{FILTER_RULES}\n\n{EXIT_CODES}\n\n{ENVIRONMENT}")
    )]
    Check(CheckArgs),
    /// Generate a sample tree and mirror it, showing what barge does.
    Demo(demo::DemoArgs),
    /// Diagnose a server before a sync depends on it: ports, TLS, login, passive/active
    /// data connections (NAT), listing, connection limit; one line per probe with the
    /// fix for each problem, then the firewall openings needed. Exit 0 when a sync
    /// would work, 3 when not.
    #[command(after_long_help = LOCATIONS)]
    Doctor(DoctorArgs),
    /// Run a job named in the config file (see `barge jobs`).
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// List the jobs in the config file.
    Jobs,
    /// List the remotes in the config file (never their secrets).
    Remotes,
    /// Print the lines that hook a shell's completion up (bash, zsh, fish, elvish, powershell):
    /// flags, and the config file's job and remote names, asked of barge at each TAB.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page barge(1) (roff) on stdout, or write every page to a directory.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write every page instead of printing barge.1: DIR/man1/barge.1, one
    /// DIR/man1/barge-COMMAND.1 per command and DIR/man5/barge-config.5 (e.g.
    /// --dir /usr/local/share/man, or ~/.cargo/share/man after `cargo install`: man looks in
    /// ../share/man beside each directory of PATH).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// How much a run prints, and in which form.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArgs {
    /// Write JSON lines to stdout: one object per action, then a summary.
    #[arg(long)]
    pub json: bool,
    /// Print every action.
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

impl OutputArgs {
    fn options(self) -> OutputOptions {
        let verbosity = if self.quiet {
            Verbosity::Quiet
        } else if self.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        };
        OutputOptions { json: self.json, verbosity }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job's name in the config file.
    #[arg(add = complete::jobs())]
    pub job: String,
    /// Print what the job would do, change nothing; exit as the sync would (5 for a safety stop).
    #[arg(long)]
    pub dry_run: bool,
    /// Delete even when the source listing looks wrong (an empty source, warnings, unreadable directories, max_shrink).
    #[arg(long)]
    pub force: bool,
    /// Only the top-level entries whose name hashes to I of N (see `barge sync --help`).
    #[arg(long, value_name = "I/N", value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    /// With --shard: split by the path's first D components (see `barge sync --help`).
    #[arg(long, value_name = "D", requires = "shard", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub shard_depth: Option<u32>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Source: a local path, or ftp://, ftpes://, ftps://, sftp:// URL.
    #[arg(add = complete::locations())]
    pub src: String,
    /// Destination, same forms as the source.
    #[arg(add = complete::locations())]
    pub dst: String,
    /// Delete destination entries that the source does not have.
    #[arg(long)]
    pub delete: bool,
    /// Stop before changing anything if more than N entries (or P% of the destination's) would be deleted (exit 5).
    #[arg(long, allow_negative_numbers = true, value_name = "N|P%", value_parser = DeleteLimit::parse)]
    pub max_delete: Option<DeleteLimit>,
    /// Hold back deletions (exit 5) when the source has this many percent fewer files than at the last good run.
    #[arg(long, allow_negative_numbers = true, value_name = "PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_shrink: u8,
    /// Delete even when the source listing looks wrong (an empty source, warnings, unreadable directories,
    /// --max-shrink).
    #[arg(long)]
    pub force: bool,
    /// Print what the sync would do (as `barge plan`), change nothing; exit as the sync would.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl SyncArgs {
    fn safety(&self) -> Safety {
        Safety { max_delete: self.max_delete, max_shrink_percent: self.max_shrink, force: self.force }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(add = complete::locations())]
    pub src: String,
    #[arg(add = complete::locations())]
    pub dst: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The location to diagnose: an ftp://, ftpes://, ftps:// or sftp:// URL, or NAME:
    /// (NAME:PATH) for a remote in the config file, with its settings and secret.
    #[arg(add = complete::locations())]
    pub location: String,
    /// Write JSON lines to stdout: one object per probe, then a summary.
    #[arg(long)]
    pub json: bool,
    /// Probe the server's connection limit with at most N logins at once.
    #[arg(long, allow_negative_numbers = true, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_probe_connections: u16,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Transfer only files matching GLOB (repeatable; see the filter rules below).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out entries matching GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Leave out files smaller than SIZE (e.g. 10K, 1.5M; binary units).
    #[arg(long, allow_negative_numbers = true, value_name = "SIZE", value_parser = parse_size)]
    pub min_size: Option<u64>,
    /// Leave out files larger than SIZE.
    #[arg(long, allow_negative_numbers = true, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// Leave out files modified less than AGE ago (30s, 15m, 2h, 7d, 1d12h) or after a time
    /// (2026-12-01, 2026-12-01 08:00; UTC unless given +HH:MM): files still being written into a
    /// drop folder. Judged on the source's times; what it leaves out is never deleted.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub min_age: Option<Age>,
    /// Leave out files modified more than AGE ago, or before a time.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub max_age: Option<Age>,
    /// How files are judged equal: size; size and mtime; size and blake3 hash.
    #[arg(long, value_enum, default_value_t = CompareMode::Mtime)]
    pub compare: CompareMode,
    #[command(flatten)]
    pub output: OutputArgs,
    /// State database for this job (default: under $XDG_STATE_HOME/barge/).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// At most N transfers at once, and N connections to each server. Without it barge
    /// measures: it starts at 16 (32 for a far FTP server, 128 for a far SFTP one, or where
    /// the last run of the job settled) and raises the number while throughput grows, up to
    /// 128 for FTP and 512 for SFTP.
    #[arg(long, allow_negative_numbers = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub parallel: Option<u16>,
    /// Like --parallel, for the source's server only.
    #[arg(long, allow_negative_numbers = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub src_parallel: Option<u16>,
    /// Like --parallel, for the destination's server only.
    #[arg(long, allow_negative_numbers = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub dst_parallel: Option<u16>,
    /// Retries of an operation that failed with a temporary error.
    #[arg(long, allow_negative_numbers = true, value_name = "N", default_value_t = 3)]
    pub retries: u32,
    /// Total bandwidth limit in bytes per second (K, M, G suffixes: binary units), or a
    /// timetable in local time: "08:00,512K 19:00,10M 23:00,off", per weekday
    /// "Mon-08:00,1M Sat-00:00,off" (each rate holds from its time to the next).
    #[arg(long, allow_negative_numbers = true, value_name = "RATE", value_parser = parse_bandwidth)]
    pub bwlimit: Option<Bandwidth>,
    /// Stop after DURATION (45m, 2h, 1h30m): no transfer starts after it, and the run ends
    /// with exit 1 and "interrupted":"max-duration" in its summary; the next run continues
    /// (sync and run only).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_duration: Option<std::time::Duration>,
    /// Move: remove each source file once its copy is committed on the destination and
    /// confirmed (and files the destination already has), unless it changed meanwhile.
    #[arg(long)]
    pub remove_source_files: bool,
    /// With --remove-source-files: also remove the source directories the move emptied.
    #[arg(long, requires = "remove_source_files")]
    pub remove_empty_source_dirs: bool,
    /// At --max-duration, transfers in flight finish (soft) or are cut, their temporaries
    /// resumed next run (hard).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = CutoffMode::Soft)]
    pub cutoff_mode: CutoffMode,
    /// Write the final summary as JSON to FILE (atomically) as well.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Copy exactly the paths listed in FILE (relative to the source; one a line, # comments;
    /// `-` reads standard input); only their directories are listed. Not with --delete.
    #[arg(long, value_name = "FILE")]
    pub files_from: Option<PathBuf>,
    /// With --files-from: the paths are NUL-separated (find -print0), not one a line.
    #[arg(long, requires = "files_from")]
    pub from0: bool,
    /// Healthcheck pings (healthchecks.io and the like): URL/start as a sync begins, URL when
    /// it ends well, URL/fail when not, with the JSON summary as the body. A failed ping is a
    /// warning, never a failed sync.
    #[arg(long, value_name = "URL", value_parser = crate::sync::notify::parse_url)]
    pub notify: Option<String>,
    /// Write a Prometheus textfile (for node_exporter's textfile collector) to FILE.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// The `job` label in --metrics (default: the state file's name).
    #[arg(long, value_name = "NAME")]
    pub job_name: Option<String>,
    /// Append a log of every action, warning and error, with times, to FILE.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Symbolic links: copy them as links (same target bytes), skip them, or follow
    /// those that resolve inside the source root and copy what they point to.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = LinkMode::Copy)]
    pub links: LinkMode,
    /// Do not list the destination: trust the state database's record of what barge wrote
    /// there (for destinations only barge writes; needs one --verify-state run first).
    #[arg(long, conflicts_with = "verify_state")]
    pub trust_state: bool,
    /// List the destination and rebuild the state database's record of it (lets later
    /// runs use --trust-state).
    #[arg(long)]
    pub verify_state: bool,
    /// Leave permission bits alone: new files and directories get the destination's
    /// defaults, existing ones keep theirs (default: the source's rwx bits are kept
    /// wherever both sides carry them).
    #[arg(long)]
    pub no_perms: bool,
    /// Keep setuid, setgid and sticky bits too (only when running as root).
    #[arg(long, conflicts_with = "no_perms")]
    pub perms_all: bool,
    /// Change the bits on their way, as rsync's --chmod: D755,F644 or Fgo-w or a+X
    /// (D: directories only, F: files only).
    #[arg(long, value_name = "CHANGES", conflicts_with = "no_perms", value_parser = parse_chmod)]
    pub chmod: Option<Arc<crate::perms::Chmod>>,
    /// Keep each entry's owner (as root; local disk and SFTP destinations). Users are
    /// matched by name where both sides have names (an SFTP source's come from its
    /// listings), else by number.
    #[arg(long)]
    pub owner: bool,
    /// Keep each entry's group, as --owner does the user.
    #[arg(long)]
    pub group: bool,
    /// With --owner/--group: keep the numbers, never match names.
    #[arg(long)]
    pub numeric_ids: bool,
    /// Only the top-level entries whose name hashes to I of N (0 <= I < N): N machines
    /// (a Kubernetes indexed Job, a Slurm array) share one huge job, each with its own state.
    #[arg(long, value_name = "I/N", value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    /// With --shard: entries are split by their path's first D components instead of the
    /// top-level name, so a tree with few top-level directories spreads over many shards
    /// (directories above D are walked by every shard). `barge plan --shard-stats N` shows
    /// what each shard would get.
    #[arg(long, value_name = "D", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub shard_depth: Option<u32>,
    /// (plan) Print how many files and bytes each of N shards would get at --shard-depth,
    /// and nothing else.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub shard_stats: Option<u32>,
    /// FTP to FTP: the source server sends each file straight to the destination server
    /// (FXP: PASV on one, PORT on the other); both must allow it. Plain FTP only.
    #[arg(long)]
    pub fxp: bool,
    /// Compare every copy with its source before it takes its name: server hashes where
    /// both sides have one (FTP HASH/XSHA256..., local), else both read back and blake3'd.
    #[arg(long)]
    pub verify: bool,
    /// Move replaced and deleted destination files into DIR (a path inside the destination,
    /// e.g. `.old/2026-12-01`) instead of destroying them; DIR's first component (`.old`)
    /// is left out of the sync on both sides.
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<String>,
    /// Write files straight to their final names, without a temporary and rename
    /// (for servers that refuse renames; an interrupted transfer leaves a partial file).
    #[arg(long)]
    pub inplace: bool,
    /// Files at least this large are copied in segments (see --segments), each its own
    /// connection (FTP: REST+RETR) or stream of requests (SFTP), into one temporary.
    #[arg(long, allow_negative_numbers = true, value_name = "SIZE", value_parser = parse_size, default_value = "128M")]
    pub segment_threshold: u64,
    /// Segments per large file (1: never split). Downloads to local disk and SFTP
    /// destinations only; FTP servers cannot be written at offsets safely.
    #[arg(long, allow_negative_numbers = true, value_name = "N", default_value_t = crate::commit::DEFAULT_SEGMENTS, value_parser = parse_segments)]
    pub segments: usize,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// How remote servers are reached.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Remote servers")]
pub struct RemoteArgs {
    /// Upgrade plain ftp:// with AUTH TLS (ftpes:// does it by default, ftps:// is implicit TLS).
    #[arg(long, value_name = "MODE", value_parser = ["explicit"])]
    pub tls: Option<String>,
    /// Trust the CA certificates in this PEM file, besides the system's.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Do not verify TLS certificates (dangerous; a warning is printed).
    #[arg(long)]
    pub insecure: bool,
    /// FTP active mode: the server connects back to us (PORT/EPRT).
    #[arg(long)]
    pub active: bool,
    /// FTP active mode, listening only on these local ports (e.g. 40000-40100; implies --active).
    #[arg(long, value_name = "FIRST-LAST", value_parser = crate::units::parse_port_range)]
    pub active_ports: Option<std::ops::RangeInclusive<u16>>,
    /// FTP: transfer files matching GLOB as text (TYPE A, line ends converted; sizes may then
    /// differ between the sides, and the state database vouches for such pairs). Repeatable.
    #[arg(long, value_name = "GLOB", value_parser = crate::patterns::parse_glob)]
    pub ascii: Vec<String>,
    /// Connect to the address a PASV reply names even when it looks like a NAT mistake.
    #[arg(long)]
    pub pasv_address_from_reply: bool,
    /// Read the password from this environment variable (else BARGE_PASSWORD, then ~/.netrc).
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// Trust LIST times (minute precision) instead of asking MDTM for each file.
    #[arg(long)]
    pub list_times: bool,
    /// FTP: the character set of the server's names (latin1, iso-8859-2, cp437, shift_jis, euc-kr,
    /// gbk, ...): read as UTF-8 here, written back in it; a name that does not convert is skipped
    /// with a warning. Without it names are kept byte for byte.
    #[arg(long, value_name = "NAME", value_parser = NameEncoding::parse)]
    pub encoding: Option<NameEncoding>,
    /// SFTP: log in with this private key (default: ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// SFTP: read the passphrase of encrypted keys from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
    /// SFTP: check server host keys against this file (default: ~/.ssh/known_hosts).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// SFTP: OpenSSH client config for Host aliases, HostName, Port, User, IdentityFile
    /// (default: ~/.ssh/config; `none` reads none). The URL and command line win over it.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// SFTP: record the key of a server not yet in known_hosts instead of refusing it
    /// (a changed key is always refused).
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// SFTP: reach the server through these SSH jump hosts, as `ssh -J` (user@host[:port],
    /// comma-separated or repeated, first connected first; `none`: no jump). Overrides ProxyJump.
    #[arg(long, value_name = "HOST", value_parser = crate::backend::sftp::jump::parse_jump_arg)]
    pub jump: Vec<crate::backend::sftp::jump::JumpChain>,
    /// Connect through this SOCKS5 proxy: socks5://[user@]host:port (FTP control and passive
    /// data connections, SFTP). Default: ALL_PROXY, which may hold a password; `none`: direct.
    #[arg(long, value_name = "URL", value_parser = ProxyArg)]
    pub proxy: Option<crate::backend::socks::ProxySetting>,
    /// Seconds before a connection, command or stalled transfer times out [default: 60].
    #[arg(long, allow_negative_numbers = true, value_name = "SECONDS", value_parser = crate::units::parse_timeout_secs)]
    pub timeout: Option<u64>,
}

/// `--segments N`: 1 to 64.
fn parse_segments(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err(format!("{text:?}: a number of segments from 1 to 64")),
    }
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32, Error> {
    let config = || Config::load(cli.config.as_deref());
    let (started, started_at) = (std::time::Instant::now(), crate::units::unix_now_secs());
    // Where the run reports is known from the arguments alone; the job is
    // validated after, so that a job that fails validation is recorded too.
    let (job, mode, common) = match cli.command {
        Command::Sync(args) => {
            let mode = if args.dry_run { Mode::Plan } else { Mode::Sync };
            let job = config().and_then(|c| args.common.job(&c, &args.src, &args.dst, args.delete, args.safety()));
            (job, mode, args.common)
        }
        Command::Plan(args) => {
            let job = config().and_then(|c| args.common.job(&c, &args.src, &args.dst, args.delete, args.safety()));
            (job, Mode::Plan, args.common)
        }
        Command::Check(args) => {
            let job = config().and_then(|c| args.common.job(&c, &args.src, &args.dst, true, Safety::default()));
            (job, Mode::Check, args.common)
        }
        Command::Run(args) => {
            // Until the config names the job, nothing says where to report.
            let config = config()?;
            let sync = job::job_args(&config, &args)?;
            let mode = if args.dry_run { Mode::Plan } else { Mode::Sync };
            let job = sync.common.job(&config, &sync.src, &sync.dst, sync.delete, sync.safety());
            (job, mode, sync.common)
        }
        Command::Demo(args) => return demo::run(args).await,
        Command::Doctor(args) => return doctor(&config()?, args).await,
        Command::Jobs => return list_jobs(&config()?),
        Command::Remotes => return list_remotes(&config()?),
        Command::Completions { shell } => return complete::print_registration(shell),
        Command::Man(args) => return manual::write(args.dir),
    };
    let mut reporter = Reporter::new(common.output());
    let mut log_failed = None;
    if let Some(path) = &common.log_file {
        match Reporter::new(common.output()).with_log_file(path) {
            Ok(logging) => reporter = logging,
            Err(source) => {
                // A path that cannot be written is a mistake on the command line.
                log_failed = Some(Error::Usage(format!("--log-file {}: {source}", path.display())))
            }
        }
    }
    let reporter = Arc::new(reporter);
    if let Some(count) = common.shard_stats {
        if mode != Mode::Plan {
            return Err(Error::Usage("--shard-stats goes with `barge plan`".into()));
        }
        return sync::shard_stats(job?, count, common.shard_depth.unwrap_or(1), &reporter, common.output.json).await;
    }
    let result = match (job, log_failed) {
        (Err(err), _) | (Ok(_), Some(err)) => Err(err),
        (Ok(job), None) => {
            if mode == Mode::Sync {
                let say: crate::stop::Say = {
                    let reporter = Arc::clone(&reporter);
                    Arc::new(move |notice: &str, last: bool| reporter.notice(notice, last))
                };
                crate::stop::listen(Arc::clone(&say));
                if let Some(url) = &common.notify {
                    crate::sync::notify::started(url, &reporter);
                }
                if let Some(limit) = common.max_duration {
                    crate::stop::deadline(limit, common.cutoff_mode, say);
                }
            }
            sync::run(job, mode, Arc::clone(&reporter)).await
        }
    };
    match result {
        Ok(outcome) => Ok(outcome.exit_code),
        Err(err) => {
            // Only a sync reports (plan and check change nothing to monitor).
            if mode == Mode::Sync {
                sync::record_fatal(&common.reports(), &reporter, &err, started_at, started.elapsed()).await;
            }
            Err(err)
        }
    }
}

/// `barge jobs`: one line per job.
fn list_jobs(config: &Config) -> Result<i32, Error> {
    let mut out = String::new();
    for job in config.jobs.values() {
        let mut notes = vec![format!("compare {:?}", job.compare).to_lowercase()];
        if job.delete {
            notes.push("delete".into());
        }
        if let Some(limit) = job.max_delete {
            notes.push(match limit {
                DeleteLimit::Count(n) => format!("max_delete {n}"),
                DeleteLimit::Percent(p) => format!("max_delete {p}%"),
            });
        }
        out.push_str(&format!("{}\t{} -> {}\t({})\n", job.name, job.source, job.destination, notes.join(", ")));
    }
    print_listing(config, &out, "jobs")
}

/// `barge remotes`: one line per remote, with where its secret comes from.
fn list_remotes(config: &Config) -> Result<i32, Error> {
    let mut out = String::new();
    for remote in config.remotes.values() {
        let secret = match (&remote.password_file, &remote.password_env) {
            (Some(file), _) => format!("password_file {}", file.display()),
            (None, Some(var)) => format!("password_env {var}"),
            (None, None) => "key/agent, BARGE_PASSWORD or ~/.netrc".to_string(),
        };
        let mut line = format!("{}\t{}\tsecret: {secret}", remote.name, remote.location);
        if let Some(parallel) = remote.parallel {
            line.push_str(&format!("; parallel {parallel}"));
        }
        if let Some(rate) = remote.bwlimit {
            line.push_str(&format!("; bwlimit {rate} B/s"));
        }
        if !remote.encoding.is_bytes() {
            line.push_str(&format!("; encoding {}", remote.encoding));
        }
        out.push_str(&line);
        out.push('\n');
    }
    print_listing(config, &out, "remotes")
}

fn print_listing(config: &Config, text: &str, what: &str) -> Result<i32, Error> {
    if text.is_empty() {
        match &config.path {
            Some(path) => eprintln!("no {what} in {}", path.display()),
            None => eprintln!(
                "no config file: write {} (see `man 5 barge-config` or docs/config.md)",
                crate::config::default_path().map_or("one".into(), |p| p.display().to_string())
            ),
        }
    }
    print!("{text}");
    Ok(crate::error::exit::OK)
}

/// Whether the command line asked for JSON output (for reporting a fatal
/// error the same way).
pub fn wants_json(cli: &Cli) -> bool {
    match &cli.command {
        Command::Sync(a) | Command::Plan(a) => a.common.output.json,
        Command::Check(a) => a.common.output.json,
        Command::Run(a) => a.output.json,
        Command::Doctor(a) => a.json,
        Command::Demo(_) | Command::Jobs | Command::Remotes | Command::Completions { .. } | Command::Man(_) => false,
    }
}

/// `barge doctor`: the report on stdout; the exit code says whether a sync would work.
async fn doctor(config: &Config, args: DoctorArgs) -> Result<i32, Error> {
    let (location, remote) = config.location(&args.location)?;
    let mut options = args.remote.options(1);
    if let Some(remote) = remote {
        remote.apply(&mut options, args.remote.timeout.is_some());
    }
    let options = crate::doctor::DoctorOptions {
        remote: options,
        max_probe_connections: usize::from(args.max_probe_connections),
    };
    let report = crate::doctor::diagnose(&location, &options).await?;
    let mut out = std::io::stdout().lock();
    let written = if args.json { report.write_json(&mut out) } else { report.write_text(&mut out) };
    written.map_err(|source| Error::Io { context: "write the doctor's report".into(), source })?;
    Ok(report.exit_code())
}

/// `--proxy`'s parser: its errors never repeat the value (clap's own
/// message would, and it may hold a password).
#[derive(Debug, Clone, Copy)]
struct ProxyArg;

impl clap::builder::TypedValueParser for ProxyArg {
    type Value = crate::backend::socks::ProxySetting;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let refused =
            |why: String| clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("--proxy: {why}\n"));
        let text = value.to_str().ok_or_else(|| refused("not UTF-8".to_string()))?;
        crate::backend::socks::parse_proxy_arg(text, "--proxy").map_err(refused)
    }
}

/// `--chmod`, parsed once.
fn parse_chmod(text: &str) -> Result<Arc<crate::perms::Chmod>, String> {
    crate::perms::Chmod::parse(text).map(Arc::new)
}
