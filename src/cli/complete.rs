//! Shell completion that knows the config file: `barge run <TAB>` offers
//! its jobs, a location (`sync`, `plan`, `check`, `doctor`) its remotes as
//! `NAME:` besides local paths. The shell asks the binary itself at each
//! TAB (clap_complete's dynamic engine, `_BARGE_COMPLETE=SHELL barge --
//! WORDS`), so names added to the config are offered without regenerating
//! the script; `barge completions SHELL` prints the few lines that hook
//! the shell up.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate, PathCompleter, ValueCompleter};
use clap_complete::env::{CompleteEnv, Shells};

use super::Cli;
use crate::error::Error;

/// The variable that turns a run into a completion request. Not the
/// engine's default `COMPLETE`: a variable that generic could be set for
/// something else and silently turn every run into one.
const VAR: &str = "_BARGE_COMPLETE";

/// Answers a completion request and exits, if this run is one.
pub fn answer_if_asked() {
    CompleteEnv::with_factory(Cli::command).var(VAR).bin("barge").completer("barge").complete();
}

/// `barge completions SHELL`: the script that hooks SHELL up.
pub fn print_registration(shell: clap_complete::Shell) -> Result<i32, Error> {
    let name = shell.to_string();
    let shells = Shells::builtins();
    let Some(completer) = shells.completer(&name) else {
        return Err(Error::Usage(format!("no completion for {name}")));
    };
    let mut script = Vec::new();
    completer
        .write_registration(VAR, "barge", "barge", "barge", &mut script)
        .and_then(|()| std::io::Write::write_all(&mut std::io::stdout(), &script))
        .map_err(|source| Error::Io { context: "write the completion script".into(), source })?;
    Ok(crate::error::exit::OK)
}

/// Completes a job's name.
pub fn jobs() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| -> Vec<CompletionCandidate> {
        let Some(names) = names() else { return Vec::new() };
        let current = current.to_string_lossy();
        names
            .jobs
            .into_iter()
            .filter(|(name, _)| name.starts_with(current.as_ref()))
            .map(|(name, about)| CompletionCandidate::new(name).help(Some(about.into())))
            .collect()
    })
}

/// Completes a location: `NAME:` for each remote, and local paths.
pub fn locations() -> ArgValueCompleter {
    ArgValueCompleter::new(Location)
}

struct Location;

impl ValueCompleter for Location {
    fn complete(&self, current: &OsStr) -> Vec<CompletionCandidate> {
        let text = current.to_string_lossy();
        let mut found = Vec::new();
        // A remote's name is all there is before its colon.
        if !text.contains(['/', ':'])
            && let Some(names) = names()
        {
            for (name, url) in names.remotes.into_iter().filter(|(name, _)| name.starts_with(text.as_ref())) {
                found.push(CompletionCandidate::new(format!("{name}:")).help(Some(url.into())));
            }
        }
        if !text.contains("://") {
            found.extend(PathCompleter::any().complete(current));
        }
        found
    }
}

/// The remotes and jobs of the config the command line being completed
/// names (`--config FILE`), else of the default one. Read loosely: a
/// completion must offer what it can, not fail on a secret file this user
/// cannot read, and print nothing rather than an error.
fn names() -> Option<crate::config::Names> {
    crate::config::names(config_flag(std::env::args_os()).as_deref())
}

/// `--config FILE` or `--config=FILE` among the words being completed, a
/// leading `~/` expanded (the shell leaves it as typed).
fn config_flag(args: impl IntoIterator<Item = OsString>) -> Option<PathBuf> {
    let mut args = args.into_iter();
    let mut found = None;
    while let Some(arg) = args.next() {
        if arg == "--config" {
            found = args.next().map(PathBuf::from);
            break;
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            found = Some(PathBuf::from(path));
            break;
        }
    }
    let path = found?;
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => Some(PathBuf::from(home).join(rest)),
        _ => Some(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_flag_is_found_in_either_spelling() {
        let words = |w: &[&str]| w.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_flag(words(&["barge", "--", "barge", "run", "--config", "/c.toml", ""])),
            Some("/c.toml".into())
        );
        assert_eq!(config_flag(words(&["barge", "--", "barge", "--config=/d.toml", "run"])), Some("/d.toml".into()));
        assert_eq!(config_flag(words(&["barge", "--", "barge", "run", ""])), None);
    }
}
