//! Durability, seen from the system calls: under strace, every rename of a
//! temporary to its final name comes after an fsync of that temporary (its
//! data is on disk before its name is), and a large file's writeback is
//! started while it is written (`sync_file_range`), so that fsync is short.

use std::collections::HashMap;
use std::process::Command;

use crate::common::*;

/// One call strace saw, with the paths of the descriptors it was given.
#[derive(Debug)]
enum Call {
    /// fsync or fdatasync of the file at this path.
    Sync(String),
    /// A rename from the first path to the second.
    Rename(String, String),
    /// sync_file_range on the file at this path.
    Writeback(String),
}

/// `fd<path>` as strace -y prints it: the path.
fn fd_path(arg: &str) -> Option<&str> {
    let start = arg.find('<')? + 1;
    let end = start + arg[start..].find('>')?;
    Some(&arg[start..end])
}

/// The calls of a `strace -f -y` log, in the order they started.
fn calls(log: &str) -> Vec<Call> {
    let mut out = Vec::new();
    for line in log.lines() {
        // `[pid N] ` prefixes, when there are threads.
        let line = line
            .split_once("] ")
            .map_or(line, |(_, rest)| rest)
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        let Some((name, rest)) = line.split_once('(') else { continue };
        let args: Vec<&str> = rest.split(", ").collect();
        match name {
            "fsync" | "fdatasync" => {
                if let Some(path) = args.first().and_then(|a| fd_path(a)) {
                    out.push(Call::Sync(path.to_string()));
                }
            }
            "sync_file_range" => {
                if let Some(path) = args.first().and_then(|a| fd_path(a)) {
                    out.push(Call::Writeback(path.to_string()));
                }
            }
            "renameat" | "renameat2" if args.len() >= 4 => {
                let quoted = |arg: &str| arg.split('"').nth(1).unwrap_or("").to_string();
                let name = |dir: &str, name: &str| format!("{}/{}", fd_path(dir).unwrap_or(""), quoted(name));
                out.push(Call::Rename(name(args[0], args[1]), name(args[2], args[3])));
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_commit_fsyncs_its_temporary_before_the_rename() {
    let s = Scratch::new();
    for i in 0..6 {
        write(&s.src(), format!("small/f{i}.txt"), format!("file {i}").as_bytes());
    }
    write(&s.src(), "large.bin", &bytes(9, 40 << 20));
    let log = s.path("strace.log");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-y", "-qq", "-o"]).arg(&log);
    cmd.args(["-e", "trace=fsync,fdatasync,rename,renameat,renameat2,sync_file_range"]);
    cmd.arg(env!("CARGO_BIN_EXE_barge")).env("XDG_STATE_HOME", s.path("xdg-state"));
    cmd.args(["sync", "--json", "--state"]).arg(s.state()).arg(s.src()).arg(s.dst());
    let run = Run::of(cmd.output().expect("run barge under strace (tests/support/install.sh installs it)"));
    run.expect_code(0);
    assert_eq!(std::fs::read(s.dst().join("large.bin")).unwrap(), bytes(9, 40 << 20));

    let calls = calls(&std::fs::read_to_string(&log).unwrap());
    let dst = s.dst().canonicalize().unwrap().to_string_lossy().into_owned();
    let mut synced: HashMap<&str, usize> = HashMap::new();
    let mut committed = Vec::new();
    for call in &calls {
        match call {
            Call::Sync(path) => *synced.entry(path).or_default() += 1,
            Call::Rename(from, to) if from.starts_with(&dst) && from.contains("/.barge-") => {
                assert!(
                    synced.contains_key(from.as_str()),
                    "{to} took its name before {from} was fsynced:\n{calls:#?}"
                );
                committed.push(to.strip_prefix(&dst).unwrap_or(to).to_string());
            }
            _ => {}
        }
    }
    committed.sort();
    let mut want = vec!["/large.bin".to_string()];
    want.extend((0..6).map(|i| format!("/small/f{i}.txt")));
    assert_eq!(committed, want, "every file committed by a rename:\n{calls:#?}");
    let started = calls.iter().filter(|c| matches!(c, Call::Writeback(p) if p.contains("/.barge-"))).count();
    assert!(started >= 4, "40 MiB written with its writeback started every 8 MiB: {started} starts\n{calls:#?}");
}
