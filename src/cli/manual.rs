//! Manual pages: `barge man` prints barge(1); `barge man --dir DIR` writes
//! one page per command (barge-sync(1), ...) and barge-config(5). Options
//! come from the clap definitions and the shared sections (locations, exit
//! codes, filters) from the same texts `--help` prints, so pages and help
//! cannot drift apart; the config keys are checked against the parser by a
//! test in `config.rs`.

use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;
use clap_mangen::Man;
use roff::{Roff, bold, italic, roman};

use super::{Cli, ENVIRONMENT, EXIT_CODES, FILTER_RULES, LOCATIONS};
use crate::error::Error;

/// One manual page: its file name (`barge-sync.1`) and its roff source.
pub struct Page {
    pub file_name: String,
    pub roff: String,
}

/// `barge man`: barge(1) on stdout, or every page under `dir`:
/// DIR/man1/barge.1, DIR/man5/barge-config.5, a tree `man` searches.
pub fn write(dir: Option<PathBuf>) -> Result<i32, Error> {
    let io = |context: String| move |source| Error::Io { context, source };
    let Some(dir) = dir else {
        let page = main_page(&root());
        std::io::stdout().write_all(page.roff.as_bytes()).map_err(io("write the manual page".into()))?;
        return Ok(crate::error::exit::OK);
    };
    for page in pages() {
        let section = page.file_name.rsplit('.').next().unwrap_or("1");
        let sub = dir.join(format!("man{section}"));
        std::fs::create_dir_all(&sub).map_err(io(format!("create {}", sub.display())))?;
        let path = sub.join(&page.file_name);
        std::fs::write(&path, &page.roff).map_err(io(format!("write {}", path.display())))?;
        // `barge man --dir D | head` must not panic on the closed pipe.
        let _ = writeln!(std::io::stdout(), "{}", path.display());
    }
    Ok(crate::error::exit::OK)
}

/// The command line's definition, built (subcommands know their names).
fn root() -> clap::Command {
    let mut root = Cli::command();
    root.build();
    root
}

/// Every page: barge(1), one per command, barge-config(5).
pub fn pages() -> Vec<Page> {
    let root = root();
    let mut pages = vec![main_page(&root)];
    for sub in root.get_subcommands().filter(|s| s.get_name() != "help") {
        pages.push(command_page(sub));
    }
    pages.push(config_page());
    pages
}

/// barge(1): the commands, locations, exit codes, environment, files.
fn main_page(root: &clap::Command) -> Page {
    let man = Man::new(root.clone());
    let mut out = head("BARGE", "1", "barge", &about(root));
    push_rendered(&mut out, |w| man.render_synopsis_section(w));
    let mut roff = Roff::new();
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(
        "barge keeps file trees identical between local disk, FTP, FTPS (explicit and implicit TLS) \
         and SFTP, in every direction. Every file is written under a temporary name, made durable \
         and only then renamed into place; deletions happen only with --delete and never from a \
         listing that looks wrong. A killed run is resumed by the next one.",
    )]);
    out.push_str(&render(&roff));
    push_rendered(&mut out, |w| man.render_options_section(w));
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    for sub in root.get_subcommands().filter(|s| s.get_name() != "help") {
        roff.control("TP", []);
        roff.text([bold(format!("barge-{}", sub.get_name())), roman("(1)")]);
        roff.text([roman(about(sub))]);
    }
    section(&mut roff, LOCATIONS);
    section(&mut roff, EXIT_CODES);
    section(&mut roff, ENVIRONMENT);
    files_section(&mut roff);
    see_also(&mut roff, None);
    out.push_str(&render(&roff));
    Page { file_name: "barge.1".into(), roff: out }
}

/// barge-NAME(1) for one command.
fn command_page(sub: &clap::Command) -> Page {
    let name = sub.get_name();
    let title = format!("barge-{name}");
    let man = Man::new(sub.clone());
    let mut out = head(&title.to_uppercase(), "1", &title, &about(sub));
    push_rendered(&mut out, |w| man.render_synopsis_section(w));
    if sub.get_long_about().is_some() {
        push_rendered(&mut out, |w| man.render_description_section(w));
    }
    if sub.get_arguments().any(|a| !a.is_hide_set()) {
        push_rendered(&mut out, |w| man.render_options_section(w));
    }
    // What a command's page adds to its options, as its --help does.
    let syncs = matches!(name, "sync" | "plan" | "check");
    let mut roff = Roff::new();
    if syncs {
        section(&mut roff, FILTER_RULES);
    }
    if syncs || name == "doctor" {
        section(&mut roff, LOCATIONS);
    }
    if syncs || name == "run" {
        section(&mut roff, EXIT_CODES);
    }
    section(&mut roff, ENVIRONMENT);
    see_also(&mut roff, Some(name));
    out.push_str(&render(&roff));
    Page { file_name: format!("{title}.1"), roff: out }
}

/// barge-config(5): the config file's format, every key.
fn config_page() -> Page {
    let mut out = head("BARGE-CONFIG", "5", "barge-config", "named remotes and jobs for barge");
    let mut roff = Roff::new();
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([
        italic("$XDG_CONFIG_HOME/barge/config.toml"),
        roman(" (else "),
        italic("~/.config/barge/config.toml"),
        roman("), or "),
        bold("--config"),
        roman(" "),
        italic("FILE"),
        roman("."),
    ]);
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(
        "A TOML file with two tables: [remotes.NAME] names a server, usable as NAME:path wherever a \
         URL is (a path without a leading / is relative to the remote URL's path); [jobs.NAME] names \
         a sync, run with barge run NAME. A missing default file is an empty config. Every mistake \
         (an unknown key, a bad value, a job naming an unknown remote) stops barge with exit 2 and a \
         message naming the file, the line and the key. The command line wins over a remote's \
         settings; a remote's parallel caps the connections to it and its bwlimit the whole run.",
    )]);
    for (table, keys, intro) in [
        ("REMOTES", REMOTE_KEYS, "Keys of a [remotes.NAME] table; url is required."),
        (
            "JOBS",
            JOB_KEYS,
            "Keys of a [jobs.NAME] table; source and destination are required (NAME:path, a URL or a local path).",
        ),
    ] {
        roff.control("SH", [table]);
        roff.text([roman(intro)]);
        for key in keys {
            roff.control("TP", []);
            roff.text([bold(key.name), roman(" = "), italic(key.value)]);
            roff.text([roman(key.meaning)]);
        }
    }
    roff.control("SH", ["EXAMPLE"]);
    roff.control("nf", []);
    roff.control("RS", ["4"]);
    for line in EXAMPLE.lines() {
        roff.text([roman(line)]);
    }
    roff.control("RE", []);
    roff.control("fi", []);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("barge"),
        roman("(1), "),
        bold("barge-run"),
        roman("(1), "),
        bold("barge-jobs"),
        roman("(1), "),
        bold("barge-remotes"),
        roman("(1)"),
    ]);
    out.push_str(&render(&roff));
    Page { file_name: "barge-config.5".into(), roff: out }
}

/// A config key as barge-config(5) documents it.
pub struct Key {
    pub name: &'static str,
    pub value: &'static str,
    pub meaning: &'static str,
}

const fn key(name: &'static str, value: &'static str, meaning: &'static str) -> Key {
    Key { name, value, meaning }
}

/// Every key of a `[remotes.NAME]` table (a test holds this to the parser).
pub const REMOTE_KEYS: &[Key] = &[
    key(
        "url",
        "\"ftp://user@host/path\"",
        "The server and base path: ftp://, ftpes://, ftps:// or sftp://, no password.",
    ),
    key("user", "\"NAME\"", "The login, when the URL names none."),
    key(
        "password_file",
        "\"PATH\"",
        "Read the password from the first line of PATH (a regular file of ours, mode 0600).",
    ),
    key("password_env", "\"VAR\"", "Read the password from the environment variable VAR (as --password-env)."),
    key("parallel", "N", "At most N connections to this server at once."),
    key("bwlimit", "\"20M\" | BYTES", "Bytes per second to and from this server; caps the whole run."),
    key("tls", "\"explicit\"", "Upgrade ftp:// with AUTH TLS (as --tls explicit)."),
    key("ca_file", "\"PEM\"", "Trust the CA certificates in this file besides the system's (as --ca-file)."),
    key("insecure", "true", "Do not verify TLS certificates (as --insecure; a warning is printed)."),
    key("active", "true", "FTP active mode (as --active)."),
    key("active_ports", "\"FIRST-LAST\"", "Active mode on these local ports only (as --active-ports)."),
    key("pasv_address_from_reply", "true", "Connect where a PASV reply says even when it looks like a NAT mistake."),
    key("list_times", "true", "Trust LIST times (minute precision) instead of MDTM (as --list-times)."),
    key("ascii", "[\"GLOB\", ...]", "FTP: transfer matching files as text (as --ascii)."),
    key("encoding", "\"latin1\"", "FTP: the character set of the server's names (as --encoding)."),
    key("timeout", "SECONDS", "Give up on a server silent this long (as --timeout)."),
    key(
        "proxy",
        "\"socks5://user@host:1080\" | \"none\"",
        "A SOCKS5 proxy for every connection (over ALL_PROXY, under --proxy).",
    ),
    key("identity", "\"PATH\"", "SFTP: the private key to log in with (as --identity)."),
    key("passphrase_env", "\"VAR\"", "SFTP: the environment variable holding the key's passphrase."),
    key("known_hosts", "\"PATH\"", "SFTP: check host keys against this file (as --known-hosts)."),
    key("ssh_config", "\"PATH\"", "SFTP: read Host blocks from this ssh_config file (as --ssh-config)."),
    key("accept_new_host_key", "true", "SFTP: record an unknown host key on first use (as --accept-new-host-key)."),
    key("jump", "\"user@bastion:22,gw\"", "SFTP: reach the server through these SSH jump hosts (as --jump)."),
];

/// Every key of a `[jobs.NAME]` table (a test holds this to the parser).
pub const JOB_KEYS: &[Key] = &[
    key("source", "\"NAME:path\" | URL | PATH", "What to copy from."),
    key("destination", "\"NAME:path\" | URL | PATH", "What to make a mirror of the source."),
    key("delete", "true", "Delete destination entries the source no longer has (as --delete)."),
    key("max_delete", "500 | \"10%\"", "Stop before deleting anything when more would go (as --max-delete)."),
    key(
        "max_shrink",
        "PERCENT",
        "Hold deletions back when the source listing shrank by more than this since the last run.",
    ),
    key("include", "[\"GLOB\", ...]", "Transfer only matching files (as --include)."),
    key("exclude", "[\"GLOB\", ...]", "Leave matching entries out (as --exclude)."),
    key("min_size", "\"10k\" | BYTES", "Leave out smaller files (as --min-size)."),
    key("max_size", "\"1G\" | BYTES", "Leave out larger files (as --max-size)."),
    key("min_age", "\"15m\" | \"2026-12-01\"", "Leave out files modified more recently (as --min-age)."),
    key("max_age", "\"7d\" | \"2026-12-01\"", "Leave out files modified longer ago (as --max-age)."),
    key("files_from", "\"PATH\"", "Transfer only the paths listed in this file (as --files-from)."),
    key("from0", "true", "The files_from list is NUL-separated (as --from0)."),
    key("compare", "\"size\" | \"mtime\" | \"hash\"", "When two files are the same (as --compare)."),
    key("parallel", "N", "Transfers at once, fixed (as --parallel; default: tuned)."),
    key("retries", "N", "Attempts per action after the first (as --retries)."),
    key("bwlimit", "\"20M\" | BYTES", "Bytes per second for the whole run (as --bwlimit)."),
    key("timeout", "SECONDS", "Give up on a server silent this long, both sides (as --timeout)."),
    key("encoding", "\"latin1\"", "FTP names' character set for both sides, over a remote's (as --encoding)."),
    key("max_duration", "\"2h\"", "Stop starting transfers after this long (as --max-duration)."),
    key(
        "cutoff_mode",
        "\"soft\" | \"hard\"",
        "Whether --max-duration also cuts transfers under way (as --cutoff-mode).",
    ),
    key("state", "\"PATH\"", "The state database (as --state; default under $XDG_STATE_HOME/barge)."),
    key("report", "\"PATH\"", "Write the JSON summary here (as --report)."),
    key("metrics", "\"PATH\"", "Write Prometheus metrics here, labelled with the job's name (as --metrics)."),
    key("log_file", "\"PATH\"", "Append every action, warning and error, with times (as --log-file)."),
    key("notify", "\"URL\"", "Ping URL at the start, URL/fail or URL on the end (as --notify)."),
    key("links", "\"copy\" | \"skip\" | \"follow\"", "What to do with symbolic links (as --links)."),
    key("inplace", "true", "Write files in place, not under a temporary name (as --inplace)."),
    key("backup_dir", "\"PATH\"", "Move replaced and deleted files here instead (as --backup-dir)."),
    key("verify", "true", "Compare each copy with its source before it takes its name (as --verify)."),
    key("fxp", "true", "Server to server FTP copies without passing through barge (as --fxp)."),
    key(
        "trust_state",
        "true",
        "Trust the state database for the destination instead of listing it (as --trust-state).",
    ),
    key("verify_state", "true", "List the destination and check the state database against it (as --verify-state)."),
    key(
        "remove_source_files",
        "true",
        "Remove each source file once its copy is committed (as --remove-source-files).",
    ),
    key("remove_empty_source_dirs", "true", "With remove_source_files: remove source directories that end up empty."),
    key("shard_depth", "N", "The directory depth shards split the tree at (as --shard-depth)."),
    key("perms", "false", "Do not copy permission bits (as --no-perms)."),
    key("perms_all", "true", "Copy setuid, setgid and sticky bits too (as --perms-all)."),
    key("chmod", "\"D755,F644\"", "Set permission bits (as --chmod)."),
    key("owner", "true", "Copy the owner (as --owner)."),
    key("group", "true", "Copy the group (as --group)."),
    key("numeric_ids", "true", "Copy owners and groups by number, not name (as --numeric-ids)."),
];

const EXAMPLE: &str = r#"[remotes.origin]
url = "ftpes://mirror@ftp.example.com/pub"
password_file = "/etc/barge/origin.pw"
parallel = 4

[remotes.vault]
url = "sftp://backup@vault.example.org/srv/backups"
identity = "/etc/barge/id_ed25519"

[jobs.releases]
source = "origin:releases"
destination = "/srv/mirror/releases"
delete = true
max_delete = "10%"
exclude = ["*.tmp", "incoming/"]

[jobs.home-backup]
source = "/home"
destination = "vault:home""#;

/// A page's title line and NAME section: `name - about`.
fn head(title: &str, section: &str, name: &str, about: &str) -> String {
    let mut roff = Roff::new();
    roff.control("TH", [title, section, "", &source(), "barge manual"]);
    roff.control("SH", ["NAME"]);
    roff.text([roman(format!("{name} - {about}"))]);
    render(&roff)
}

/// A shared help text ("Heading:\n  body") as a section, the heading in
/// capitals: a line `term  text` (two spaces apart) becomes a tagged
/// paragraph, deeper-indented lines continue it, other lines are prose
/// that man fills to the terminal's width.
fn section(roff: &mut Roff, text: &str) {
    let (heading, body) = text.split_once('\n').unwrap_or((text, ""));
    let heading = heading.trim_end_matches(':');
    let heading = heading.split(" (").next().unwrap_or(heading).to_uppercase();
    let heading = if heading == "EXIT CODES" { "EXIT STATUS".to_string() } else { heading };
    roff.control("SH", [heading.as_str()]);
    // In the text's order: (Some(term), text) a tagged paragraph, (None, text) prose.
    let mut blocks: Vec<(Option<String>, String)> = Vec::new();
    for line in body.lines() {
        let line = line.strip_prefix("  ").unwrap_or(line);
        let (term, text) = match line.split_once("  ") {
            Some((term, text)) if !line.starts_with(' ') => (Some(term.to_string()), text.trim()),
            _ => (None, line.trim()),
        };
        match (blocks.last_mut(), term) {
            (_, Some(term)) => blocks.push((Some(term), text.to_string())),
            // A deeper-indented line continues its item; prose continues prose.
            (Some((Some(_), last)), None) if line.starts_with(' ') => push_words(last, text),
            (Some((None, last)), None) => push_words(last, text),
            (_, None) => blocks.push((None, text.to_string())),
        }
    }
    for (term, text) in blocks {
        match term {
            Some(term) => {
                roff.control("TP", []);
                roff.text([bold(term)]);
            }
            None => {
                roff.control("PP", []);
            }
        }
        roff.text([roman(text)]);
    }
}

fn push_words(text: &mut String, more: &str) {
    text.push(' ');
    text.push_str(more);
}

fn files_section(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    roff.control("TP", []);
    roff.text([italic("$XDG_CONFIG_HOME/barge/config.toml")]);
    roff.text([roman("The config file (else ~/.config/barge/config.toml); see "), bold("barge-config"), roman("(5).")]);
    roff.control("TP", []);
    roff.text([italic("$XDG_STATE_HOME/barge/")]);
    roff.text([roman(
        "State databases, one per pair of locations (else ~/.local/state/barge/; --state FILE names one).",
    )]);
}

fn see_also(roff: &mut Roff, this: Option<&str>) {
    roff.control("SH", ["SEE ALSO"]);
    let mut refs = Vec::new();
    if this.is_some() {
        refs.push(("barge".to_string(), "1"));
    }
    for name in ["sync", "plan", "check", "run", "doctor"] {
        if this != Some(name) {
            refs.push((format!("barge-{name}"), "1"));
        }
    }
    refs.push(("barge-config".to_string(), "5"));
    let mut inlines = Vec::new();
    for (i, (page, section)) in refs.into_iter().enumerate() {
        if i > 0 {
            inlines.push(roman(", "));
        }
        inlines.push(bold(page));
        inlines.push(roman(format!("({section})")));
    }
    roff.text(inlines);
}

fn about(cmd: &clap::Command) -> String {
    cmd.get_about()
        .map(|a| a.to_string())
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .trim_end_matches('.')
        .to_string()
}

fn source() -> String {
    format!("barge {}", env!("CARGO_PKG_VERSION"))
}

fn render(roff: &Roff) -> String {
    // Not `Roff::render`: its preamble would land before each part's .TH
    // and between the parts of one page.
    roff.to_roff()
}

fn push_rendered(out: &mut String, part: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) {
    let mut bytes = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = part(&mut bytes);
    out.push_str(&String::from_utf8_lossy(&bytes));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// roff writes `-` as `\-`.
    fn in_roff(text: &str) -> String {
        text.replace('-', "\\-")
    }

    #[test]
    fn every_command_has_a_page_naming_each_of_its_flags() {
        let pages = pages();
        let mut root = Cli::command();
        root.build();
        for sub in root.get_subcommands().filter(|s| s.get_name() != "help") {
            let file = format!("barge-{}.1", sub.get_name());
            let page = pages.iter().find(|p| p.file_name == file).unwrap_or_else(|| panic!("no {file}"));
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    let flag = in_roff(&format!("--{long}"));
                    assert!(page.roff.contains(&flag), "{file} does not mention --{long}");
                }
            }
            assert!(page.roff.contains(".SH \"SEE ALSO\""), "{file}");
        }
        let main = &pages[0];
        assert_eq!(main.file_name, "barge.1");
        for sub in root.get_subcommands().filter(|s| s.get_name() != "help") {
            assert!(
                main.roff.contains(&in_roff(&format!("barge-{}", sub.get_name()))),
                "barge.1 misses {}",
                sub.get_name()
            );
        }
        for section in [".SH LOCATIONS", ".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH FILES"] {
            assert!(main.roff.contains(section), "barge.1 has no {section}");
        }
        let sync = pages.iter().find(|p| p.file_name == "barge-sync.1").unwrap();
        for section in [".SH FILTERS", ".SH LOCATIONS", ".SH \"EXIT STATUS\"", ".SH ENVIRONMENT"] {
            assert!(sync.roff.contains(section), "barge-sync.1 has no {section}");
        }
    }

    /// The keys the parser accepts, as its "unknown field" error lists them.
    fn parser_keys(table: &str) -> Vec<String> {
        let text = match table {
            "remotes" => "[remotes.r]\nurl = \"ftp://h/\"\nno_such_key = 1\n",
            _ => "[jobs.j]\nsource = \"/a\"\ndestination = \"/b\"\nno_such_key = 1\n",
        };
        let err = crate::config::Config::parse(text, std::path::Path::new("t.toml")).unwrap_err().to_string();
        let listed = err.split("expected one of").nth(1).unwrap_or_else(|| panic!("no key list in: {err}"));
        let mut keys: Vec<String> = listed.split('`').skip(1).step_by(2).map(str::to_string).collect();
        keys.sort();
        keys
    }

    #[test]
    fn the_config_page_documents_exactly_the_keys_the_parser_takes() {
        for (table, documented) in [("remotes", REMOTE_KEYS), ("jobs", JOB_KEYS)] {
            let mut ours: Vec<String> = documented.iter().map(|k| k.name.to_string()).collect();
            ours.sort();
            assert_eq!(ours, parser_keys(table), "[{table}.NAME] keys in barge-config.5 against the parser");
        }
        let page = config_page();
        for key in REMOTE_KEYS.iter().chain(JOB_KEYS) {
            assert!(page.roff.contains(&in_roff(key.name)), "{} missing", key.name);
        }
    }
}
