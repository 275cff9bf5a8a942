//! Durability, seen from the system calls: under strace, every rename of a
//! temporary to its final name comes after its data is on disk: after an
//! fsync of that temporary, or (small files, committed in groups) after a
//! `syncfs` of its file system that started once its last write had
//! returned. A large file's writeback is started while it is written
//! (`sync_file_range`), so that its fsync is short.

use std::collections::HashMap;
use std::process::Command;

use crate::common::*;

/// One call strace saw, with the paths of the descriptors it was given.
#[derive(Debug)]
enum Call {
    /// fsync or fdatasync of the file at this path, as it started.
    Sync(String),
    /// syncfs, as it started.
    SyncFs,
    /// A write to the file at this path, as it returned.
    Wrote(String),
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

/// The calls of a `strace -f -y -o` log (each line `PID call(...)`), in
/// the order they started; a write where it returned (strace splits a
/// call another thread interrupts into `<unfinished ...>` and `<...
/// resumed>` lines).
fn calls(log: &str) -> Vec<Call> {
    let mut out = Vec::new();
    let mut writing: HashMap<&str, String> = HashMap::new();
    for line in log.lines() {
        let (pid, line) = line.split_once(' ').unwrap_or(("", line));
        let line = line.trim_start();
        if line.starts_with("<... write resumed>") {
            if let Some(path) = writing.remove(pid) {
                out.push(Call::Wrote(path));
            }
            continue;
        }
        let Some((name, rest)) = line.split_once('(') else { continue };
        let args: Vec<&str> = rest.split(", ").collect();
        let path = || args.first().and_then(|a| fd_path(a)).map(str::to_string);
        match name {
            "fsync" | "fdatasync" => out.extend(path().map(Call::Sync)),
            "syncfs" => out.push(Call::SyncFs),
            "sync_file_range" => out.extend(path().map(Call::Writeback)),
            "write" => match path() {
                Some(path) if line.ends_with("<unfinished ...>") => {
                    writing.insert(pid, path);
                }
                Some(path) => out.push(Call::Wrote(path)),
                None => {}
            },
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

/// Where a temporary stands: written, and made durable since.
#[derive(Default)]
struct Temporary {
    written: bool,
    durable: bool,
}

#[test]
fn every_commit_has_its_temporary_on_disk_before_the_rename() {
    let s = Scratch::new();
    for i in 0..6 {
        write(&s.src(), format!("small/f{i}.txt"), format!("file {i}").as_bytes());
    }
    write(&s.src(), "large.bin", &bytes(9, 40 << 20));
    // The destination on the build's disk (CARGO_TARGET_TMPDIR), where
    // small files are committed in groups; /tmp may be a tmpfs.
    let on_disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dst = on_disk.path().join("dst");
    #[allow(clippy::unnecessary_cast)] // f_type's type differs by architecture
    let kind = rustix::fs::statfs(on_disk.path()).unwrap().f_type as i64;
    let grouping = barge::backend::local::GROUPED_FILE_SYSTEMS.contains(&kind);
    let log = s.path("strace.log");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-y", "-qq", "-o"]).arg(&log);
    cmd.args(["-e", "trace=fsync,fdatasync,syncfs,write,rename,renameat,renameat2,sync_file_range"]);
    cmd.arg(env!("CARGO_BIN_EXE_barge")).env("XDG_STATE_HOME", s.path("xdg-state"));
    cmd.args(["sync", "--json", "--state"]).arg(s.state()).arg(s.src()).arg(&dst);
    let run = Run::of(cmd.output().expect("run barge under strace (tests/support/install.sh installs it)"));
    run.expect_code(0);
    assert_eq!(std::fs::read(dst.join("large.bin")).unwrap(), bytes(9, 40 << 20));

    let calls = calls(&std::fs::read_to_string(&log).unwrap());
    let dst = dst.canonicalize().unwrap().to_string_lossy().into_owned();
    let mut temporaries: HashMap<&str, Temporary> = HashMap::new();
    let (mut committed, mut grouped) = (Vec::new(), 0);
    for call in &calls {
        match call {
            Call::Wrote(path) => *temporaries.entry(path).or_default() = Temporary { written: true, durable: false },
            Call::Sync(path) => temporaries.entry(path).or_default().durable = true,
            // Every file written so far, on every file system: the test's
            // source and destination are on one.
            Call::SyncFs => temporaries.values_mut().for_each(|t| t.durable = true),
            Call::Rename(from, to) if from.starts_with(&dst) && from.contains("/.barge-") => {
                let temporary = temporaries.get(from.as_str());
                assert!(
                    temporary.is_some_and(|t| t.written && t.durable),
                    "{to} took its name before {from} was on disk:\n{calls:#?}"
                );
                committed.push(to.strip_prefix(&dst).unwrap_or(to).to_string());
                let synced_alone = calls.iter().any(|c| matches!(c, Call::Sync(p) if p == from));
                grouped += usize::from(!synced_alone);
            }
            _ => {}
        }
    }
    committed.sort();
    let mut want = vec!["/large.bin".to_string()];
    want.extend((0..6).map(|i| format!("/small/f{i}.txt")));
    assert_eq!(committed, want, "every file committed by a rename:\n{calls:#?}");
    if grouping {
        assert!(grouped >= 1, "small files are committed in groups, after a syncfs:\n{calls:#?}");
    } else {
        assert_eq!(grouped, 0, "not on a disk's file system: each file its own fsync:\n{calls:#?}");
    }
    let started = calls.iter().filter(|c| matches!(c, Call::Writeback(p) if p.contains("/.barge-"))).count();
    assert!(started >= 4, "40 MiB written with its writeback started every 8 MiB: {started} starts\n{calls:#?}");
}
