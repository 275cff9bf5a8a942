//! Cron ingest: the nightly jobs that pull from drop folders. Age filters
//! (`--min-age`, `--max-age`) on local trees and against real servers,
//! a LIST-only one (vsftpd, times to the minute) among them.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::harness::{self, FtpServerKind, FtpTls};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A drop folder: files that stopped changing an hour and a day ago, and
/// one written a moment ago.
fn drop_folder(write: impl Fn(&str, &[u8]) -> std::path::PathBuf) {
    for (name, age) in [("in/hour.csv", 3_600), ("in/day.csv", 86_400 + 600), ("in/now.csv", 0)] {
        let path = write(name, name.as_bytes());
        set_mtime(&path, now() - age);
    }
}

/// Writes into a local tree, as the servers' `write_file` does.
fn local(root: &Path) -> impl Fn(&str, &[u8]) -> std::path::PathBuf + '_ {
    move |name, data| {
        write(root, name, data);
        root.join(name)
    }
}

fn names(root: &Path) -> Vec<String> {
    let mut found: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

/// `--min-age` leaves out what is still being written; `--max-age` what
/// is older than wanted; an absolute time works as the same cutoff.
#[test]
fn ages_pick_the_files_of_a_drop_folder() {
    let s = Scratch::new();
    drop_folder(local(&s.src()));
    let run = s.sync(&["--min-age", "15m"]);
    run.expect_code(0);
    assert_eq!(names(&s.dst()), ["in/day.csv", "in/hour.csv"], "{}", run.explain());

    let recent = s.path("recent");
    let mut cmd = s.barge();
    cmd.args(["sync", "--json", "--max-age", "1d", "--min-age", "30m"]).arg(s.src()).arg(&recent);
    Run::of(cmd.output().unwrap()).expect_code(0);
    assert_eq!(names(&recent), ["in/hour.csv"]);

    let since = barge::units::format_utc_date(now() as i64 - 2 * 86_400);
    let dated = s.path("dated");
    let mut cmd = s.barge();
    cmd.args(["sync", "--json", "--max-age", &since]).arg(s.src()).arg(&dated);
    Run::of(cmd.output().unwrap()).expect_code(0);
    assert_eq!(names(&dated), ["in/day.csv", "in/hour.csv", "in/now.csv"], "all within two days");
}

/// What an age leaves out is never deleted: the older copy of a source
/// file still being written, and a destination file outside the ages;
/// a destination file within them that the source lacks still goes.
#[test]
fn what_an_age_leaves_out_is_never_deleted() {
    let s = Scratch::new();
    write(&s.src(), "a.csv", b"version 1");
    set_mtime(&s.src().join("a.csv"), now() - 7_200);
    s.sync(&[]).expect_code(0);
    // Being rewritten now; and two destination-only files, one new, one old.
    write(&s.src(), "a.csv", b"version 2, half");
    write(&s.dst(), "stray-new.csv", b"new");
    write(&s.dst(), "stray-old.csv", b"old");
    set_mtime(&s.dst().join("stray-old.csv"), now() - 7_200);

    let run = s.sync(&["--delete", "--min-age", "15m"]);
    run.expect_code(0);
    assert_eq!(fs::read(s.dst().join("a.csv")).unwrap(), b"version 1", "the older copy stays");
    assert!(s.dst().join("stray-new.csv").exists(), "left out by its age: never deleted");
    assert!(!s.dst().join("stray-old.csv").exists(), "within the ages and not in the source");
    assert_eq!(run.count("files_deleted"), 1, "{}", run.explain());
}

#[test]
fn a_bad_age_is_a_usage_error() {
    let s = Scratch::new();
    write(&s.src(), "a", b"a");
    for (args, said) in [
        (&["--min-age", "15x"][..], "is not an age"),
        (&["--max-age", "2026-02-30"][..], "is not an age"),
        (&["--min-age", "2h", "--max-age", "1h"][..], "no file could be within both"),
    ] {
        let run = s.sync(args);
        run.expect_code(2);
        assert!(run.stderr.contains(said), "{args:?}: {}", run.stderr);
    }
    assert!(!s.dst().join("a").exists());
}

/// Against a LIST-only server (times to the minute) and an SFTP one.
#[test]
fn ages_judge_the_servers_times() {
    let s = Scratch::new();
    let vsftpd = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    drop_folder(|name, data| vsftpd.write_file(name, data));
    let dst = s.path("from-ftp");
    let src = crate::ftp_sync::url(&vsftpd, "/in");
    let run = crate::ftp_sync::sync(&s, &vsftpd, &src, &dst.to_string_lossy(), &["--min-age", "15m"]);
    run.expect_code(0);
    assert_eq!(names(&dst), ["day.csv", "hour.csv"], "{}", run.explain());

    let ssh = harness::ssh_server();
    drop_folder(|name, data| ssh.write_file(name, data));
    let dst = s.path("from-sftp");
    let src = crate::sftp_sync::url(&ssh, "/in");
    let run = crate::sftp_sync::sync(&s, &ssh, &src, &dst.to_string_lossy(), &["--max-age", "1d"]);
    run.expect_code(0);
    assert_eq!(names(&dst), ["hour.csv", "now.csv"], "{}", run.explain());
}

/// The job keys are the flags (ages, max_duration, cutoff_mode), checked
/// when the config is read.
#[test]
fn a_jobs_age_keys_are_its_flags() {
    let s = Scratch::new();
    drop_folder(local(&s.src()));
    let config = s.path("barge.toml");
    let job = |min_age: &str| {
        format!(
            "[jobs.ingest]\nsource = \"{}\"\ndestination = \"{}\"\nmin_age = \"{min_age}\"\nmax_age = \"1d\"\n\
             max_duration = \"1h\"\ncutoff_mode = \"hard\"\n",
            s.src().display(),
            s.dst().display()
        )
    };
    fs::write(&config, job("15m")).unwrap();
    let mut cmd = s.barge();
    cmd.arg("--config").arg(&config).args(["run", "ingest", "--json"]);
    Run::of(cmd.output().unwrap()).expect_code(0);
    assert_eq!(names(&s.dst()), ["in/hour.csv"]);

    fs::write(&config, job("soon")).unwrap();
    let mut cmd = s.barge();
    cmd.arg("--config").arg(&config).args(["run", "ingest"]);
    let run = Run::of(cmd.output().unwrap());
    run.expect_code(2);
    assert!(run.stderr.contains("line 4") && run.stderr.contains("is not an age"), "{}", run.stderr);

    fs::write(&config, job("15m").replace("\"hard\"", "\"brutal\"")).unwrap();
    let mut cmd = s.barge();
    cmd.arg("--config").arg(&config).args(["run", "ingest"]);
    let run = Run::of(cmd.output().unwrap());
    run.expect_code(2);
    assert!(run.stderr.contains("line 7") && run.stderr.contains("brutal"), "{}", run.stderr);
}

/// `--max-duration` (soft): after the time no transfer starts, those in
/// flight finish; exit 1, `"interrupted":"max-duration"`; the next run
/// continues.
#[test]
fn max_duration_starts_nothing_after_its_time_and_the_next_run_continues() {
    let s = Scratch::new();
    for i in 0..40 {
        write(&s.src(), format!("f{i:02}.bin"), &bytes(i, 64 * 1024));
    }
    let started = Instant::now();
    // 2.5 MiB at 256 KiB/s: ten seconds without the limit.
    let run = s.sync(&["--bwlimit", "256K", "--parallel", "2", "--max-duration", "2s"]);
    run.expect_code(1);
    assert!(started.elapsed() < Duration::from_secs(7), "took {:?}", started.elapsed());
    assert_eq!(run.summary()["interrupted"], "max-duration", "{}", run.explain());
    assert!(run.stderr.contains("stopped at --max-duration"), "{}", run.stderr);
    let copied = names(&s.dst());
    assert!(!copied.is_empty() && copied.len() < 40, "{copied:?}");
    for name in &copied {
        assert_eq!(fs::read(s.dst().join(name)).unwrap(), fs::read(s.src().join(name)).unwrap());
    }
    assert!(temporaries(&s.dst()).is_empty(), "soft: the transfers in flight finished");
    s.sync(&[]).expect_code(0);
    assert_mirrors(&s.src(), &s.dst());
}

/// `--cutoff-mode hard`: the transfer in flight is cut at the time, not
/// finished; its temporary stays and the next run resumes it.
fn a_hard_cutoff_cuts_and_the_next_run_resumes(sync: impl Fn(&[&str]) -> Run, dst: &Path, big: &[u8]) {
    let started = Instant::now();
    let run = sync(&["--bwlimit", "2M", "--max-duration", "2s", "--cutoff-mode", "hard"]);
    run.expect_code(1);
    assert!(started.elapsed() < Duration::from_secs(7), "cut, not finished: {:?}", started.elapsed());
    assert_eq!(run.summary()["interrupted"], "max-duration", "{}", run.explain());
    assert_eq!(run.summary()["errors"], 1, "the stop is the one error, the cut copy is none: {}", run.explain());
    assert!(!dst.join("big.bin").exists(), "no final name before the copy is whole");
    assert_eq!(temporaries(dst).len(), 1, "kept for the next run");
    let run = sync(&[]);
    run.expect_code(0);
    assert_eq!(fs::read(dst.join("big.bin")).unwrap(), big);
    assert!(run.count("bytes_transferred") < big.len() as u64, "resumed: {}", run.explain());
    assert!(temporaries(dst).is_empty());
}

#[test]
fn a_hard_cutoff_cuts_a_local_copy() {
    let s = Scratch::new();
    let big = bytes(7, 16 << 20);
    write(&s.src(), "big.bin", &big);
    a_hard_cutoff_cuts_and_the_next_run_resumes(|extra| s.sync(extra), &s.dst(), &big);
}

#[test]
fn a_hard_cutoff_cuts_an_ftp_download() {
    let s = Scratch::new();
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    let big = bytes(8, 16 << 20);
    server.write_file("pub/big.bin", &big);
    let (src, dst) = (crate::ftp_sync::url(&server, "/pub"), s.dst());
    let sync = |extra: &[&str]| crate::ftp_sync::sync(&s, &server, &src, &dst.to_string_lossy(), extra);
    a_hard_cutoff_cuts_and_the_next_run_resumes(sync, &dst, &big);
}
