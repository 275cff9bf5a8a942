//! Cron ingest: the nightly jobs that pull from drop folders. Age filters
//! (`--min-age`, `--max-age`) on local trees and against real servers,
//! a LIST-only one (vsftpd, times to the minute) among them.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
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
             max_duration = \"1h\"\ncutoff_mode = \"hard\"\nbwlimit = \"00:00,64M 18:00,off\"\n",
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

/// Every file of `want` (path, content) is whole in `src` or under its
/// final name in `dst`, or both; never in neither.
fn nothing_lost(src: &Path, dst: &Path, want: &[(String, Vec<u8>)]) {
    for (name, content) in want {
        let in_src = fs::read(src.join(name)).ok();
        let in_dst = fs::read(dst.join(name)).ok();
        assert!(in_src.is_some() || in_dst.is_some(), "{name} is in neither tree");
        for (side, copy) in [("source", in_src), ("destination", in_dst)] {
            if let Some(copy) = copy {
                assert!(copy == *content, "{name} in the {side} is not whole ({} bytes)", copy.len());
            }
        }
    }
}

/// A move: each source file goes once its copy is committed; with
/// `--remove-empty-source-dirs` the directories it emptied go too, never
/// the root; a file the destination already had is removed as well.
#[test]
fn a_move_removes_each_source_file_after_its_copy() {
    let s = Scratch::new();
    write(&s.src(), "already.txt", b"there before");
    s.sync(&[]).expect_code(0);
    let mut want = vec![("already.txt".to_string(), b"there before".to_vec())];
    for (i, name) in ["a.txt", "sub/b.bin", "sub/deeper/c.bin", "keep/d.txt"].into_iter().enumerate() {
        let content = bytes(i as u64, 1000 + i * 70_000);
        write(&s.src(), name, &content);
        want.push((name.to_string(), content));
    }
    fs::create_dir_all(s.src().join("keep/empty-before")).unwrap();

    let run = s.sync(&["--remove-source-files", "--remove-empty-source-dirs"]);
    run.expect_code(0);
    assert_eq!(run.summary()["source_files_removed"], 5, "{}", run.explain());
    assert_eq!(run.summary()["files_transferred"], 4);
    assert!(names(&s.src()).is_empty(), "{:?}", names(&s.src()));
    nothing_lost(&s.src(), &s.dst(), &want);
    assert!(!s.src().join("sub").exists(), "emptied by the move");
    assert!(s.src().join("keep/empty-before").is_dir(), "empty before the move: not the move's to remove");
    assert!(s.src().is_dir(), "the root stays");
    // Nothing left to move: a no-op.
    let run = s.sync(&["--remove-source-files"]);
    run.expect_code(0);
    assert_eq!(run.summary()["source_files_removed"], 0);
}

/// A file that changes while it is copied stays in the source: one that
/// grows fails its copy; one touched (same size, a new time) is copied and
/// then kept by the check before the removal. The next run moves the new
/// version.
#[test]
fn a_move_keeps_a_file_that_changed_during_its_copy() {
    for (touch, said) in [(false, "source changed while copying"), (true, "changed during the copy")] {
        let s = Scratch::new();
        write(&s.src(), "growing.log", &bytes(1, 2 << 20));
        let path = s.src().join("growing.log");
        let changer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            if touch {
                set_mtime(&path, now() - 7_200);
            } else {
                let mut file = fs::OpenOptions::new().append(true).open(path).unwrap();
                std::io::Write::write_all(&mut file, b"one more line\n").unwrap();
            }
        });
        // 2 MiB at 1 MiB/s: the change lands mid-copy.
        let run = s.sync(&["--remove-source-files", "--bwlimit", "1M"]);
        changer.join().unwrap();
        run.expect_code(1);
        assert!(run.stdout.contains(said), "{}", run.explain());
        assert_eq!(run.summary()["source_files_removed"], 0);
        let now_there = fs::read(s.src().join("growing.log")).unwrap();
        assert_eq!(now_there.len(), (2 << 20) + if touch { 0 } else { 14 }, "kept, as it is now");
        let run = s.sync(&["--remove-source-files"]);
        run.expect_code(0);
        assert_eq!(fs::read(s.dst().join("growing.log")).unwrap(), now_there);
        assert!(!s.src().join("growing.log").exists());
    }
}

#[test]
fn a_move_with_delete_is_refused() {
    let s = Scratch::new();
    write(&s.src(), "a", b"a");
    let run = s.sync(&["--remove-source-files", "--delete"]);
    run.expect_code(2);
    assert!(run.stderr.contains("give one or the other"), "{}", run.stderr);
    let run = s.sync(&["--remove-empty-source-dirs"]);
    run.expect_code(2);
    assert!(s.src().join("a").exists() && !s.dst().join("a").exists());
}

/// Moves from a LIST-only server (its times to the minute: the check
/// before the removal must not take that for a change) and up to SFTP.
#[test]
fn moves_from_and_to_servers() {
    let s = Scratch::new();
    let vsftpd = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    drop_folder(|name, data| vsftpd.write_file(name, data));
    let dst = s.path("from-ftp");
    let src = crate::ftp_sync::url(&vsftpd, "/in");
    let run = crate::ftp_sync::sync(
        &s,
        &vsftpd,
        &src,
        &dst.to_string_lossy(),
        &["--remove-source-files", "--min-age", "15m"],
    );
    run.expect_code(0);
    assert_eq!(names(&dst), ["day.csv", "hour.csv"], "{}", run.explain());
    assert_eq!(names(&vsftpd.root.join("in")), ["now.csv"], "moved off the server; the fresh one stays");
    assert_eq!(run.summary()["source_files_removed"], 2);

    let ssh = harness::ssh_server();
    let up = s.path("outbox");
    for i in 0..5 {
        write(&up, format!("batch/{i}.dat"), &bytes(i, 40_000));
    }
    let want: Vec<(String, Vec<u8>)> = (0..5).map(|i| (format!("batch/{i}.dat"), bytes(i, 40_000))).collect();
    let remote = crate::sftp_sync::url(&ssh, "/inbox");
    let run = crate::sftp_sync::sync(
        &s,
        &ssh,
        &up.to_string_lossy(),
        &remote,
        &["--remove-source-files", "--remove-empty-source-dirs"],
    );
    run.expect_code(0);
    nothing_lost(&up, &ssh.root.join("inbox"), &want);
    assert!(names(&up).is_empty() && !up.join("batch").exists(), "{}", run.explain());
}

/// SIGKILL at random moments of a move, again and again: after every kill
/// each file is whole in the source or on the destination (or both),
/// never lost; the runs after finish the move.
#[test]
fn a_move_killed_at_random_loses_nothing() {
    let s = Scratch::new();
    let want: Vec<(String, Vec<u8>)> =
        (0..120).map(|i| (format!("d{}/f{i:03}.bin", i % 6), bytes(i, 16_384 + (i as usize % 7) * 9_000))).collect();
    for (name, content) in &want {
        write(&s.src(), name, content);
    }
    let seed = now();
    let mut rng = seed;
    let mut kills = 0;
    for run in 0..40 {
        let mut cmd = s.barge();
        cmd.arg("sync").arg(s.src()).arg(s.dst()).arg("--state").arg(s.state());
        cmd.args(["--remove-source-files", "--remove-empty-source-dirs", "--bwlimit", "2M", "--parallel", "4", "-q"]);
        let mut child = cmd.spawn().unwrap();
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(50 + (rng >> 33) % 500));
        let finished = child.try_wait().unwrap();
        if finished.is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let status = child.wait().unwrap();
        nothing_lost(&s.src(), &s.dst(), &want);
        if finished.is_some_and(|f| f.success()) && names(&s.src()).is_empty() {
            assert!(kills >= 3, "seed {seed}: only {kills} kills before run {run} finished");
            return;
        }
        let _ = status;
    }
    let run = s.sync(&["--remove-source-files"]);
    run.expect_code(0);
    nothing_lost(&s.src(), &s.dst(), &want);
    assert!(names(&s.src()).is_empty(), "seed {seed}: {:?}", names(&s.src()));
    assert!(kills >= 3, "seed {seed}: {kills} kills");
}

/// `--bwlimit` as a timetable: the rate of the slot the local time is in
/// (every slot the same here: the test cannot choose the hour it runs
/// at; tests in src/throttle.rs move an injected clock across
/// boundaries), `off` for none, and a bad entry a usage error naming it.
#[test]
fn a_bandwidth_timetable_limits_by_the_slot_in_force() {
    let s = Scratch::new();
    write(&s.src(), "a.bin", &bytes(1, 384 * 1024));
    let started = Instant::now();
    s.sync(&["--bwlimit", "00:00,128K 12:00,128K"]).expect_code(0);
    assert!(started.elapsed() >= Duration::from_millis(2_000), "384 KiB at 128 KiB/s: {:?}", started.elapsed());

    let unlimited = s.path("unlimited");
    let mut cmd = s.barge();
    cmd.args(["sync", "--json", "--bwlimit", "Mon-00:00,off Thu-00:00,off"]).arg(s.src()).arg(&unlimited);
    let started = Instant::now();
    Run::of(cmd.output().unwrap()).expect_code(0);
    assert!(started.elapsed() < Duration::from_millis(1_500), "{:?}", started.elapsed());
    assert_eq!(fs::read(unlimited.join("a.bin")).unwrap(), bytes(1, 384 * 1024));

    let run = s.sync(&["--bwlimit", "08:00,1M 25:00,off"]);
    run.expect_code(2);
    assert!(run.stderr.contains("`25:00,off`"), "{}", run.stderr);
}

/// Requests a local HTTP server saw: (method, path, body).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A healthcheck stand-in on loopback answering every request with
/// `status`, recording each.
fn ping_server(status: u16) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let recorded = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut words = first.split_whitespace();
            let (method, path) = (words.next().unwrap_or("").to_string(), words.next().unwrap_or("").to_string());
            recorded.lock().unwrap().push((method, path, String::from_utf8_lossy(&body).into_owned()));
            let reply = format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (port, seen)
}

/// `--notify`: URL/start, then URL with the summary; a failed run pings
/// URL/fail with its exit code.
#[test]
fn notify_pings_start_and_the_outcome_with_the_summary() {
    let (port, seen) = ping_server(200);
    let url = format!("http://127.0.0.1:{port}/ping/secret-key");
    let s = Scratch::new();
    write(&s.src(), "a.txt", b"a");
    s.sync(&["--notify", &url]).expect_code(0);
    {
        let seen = seen.lock().unwrap();
        let paths: Vec<&str> = seen.iter().map(|(_, path, _)| path.as_str()).collect();
        assert_eq!(paths, ["/ping/secret-key/start", "/ping/secret-key"], "{seen:?}");
        let summary: serde_json::Value = serde_json::from_str(&seen[1].2).unwrap();
        assert_eq!((summary["exit_code"].as_i64(), summary["files_transferred"].as_i64()), (Some(0), Some(1)));
    }

    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    let mut cmd = s.barge();
    cmd.env("BARGE_PASSWORD", "not the password");
    cmd.args(["sync", &crate::ftp_sync::url(&server, "/"), "--json", "--notify", &url]).arg(s.path("down"));
    Run::of(cmd.output().unwrap()).expect_code(3);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[2].1, "/ping/secret-key/start");
    assert_eq!((seen[3].0.as_str(), seen[3].1.as_str()), ("POST", "/ping/secret-key/fail"), "{seen:?}");
    let fatal: serde_json::Value = serde_json::from_str(&seen[3].2).unwrap();
    assert_eq!(fatal["exit_code"], 3, "{fatal}");
    assert!(!seen[3].2.contains("not the password"));
}

/// A ping that cannot be made (refused, or the monitor answers 500) is a
/// warning that names the host, never the key, and the sync's own exit
/// code stands.
#[test]
fn a_failed_ping_never_fails_the_sync() {
    let (port, seen) = ping_server(500);
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = Scratch::new();
    write(&s.src(), "a.txt", b"a");
    for url in [format!("http://127.0.0.1:{port}/secret-key"), format!("http://127.0.0.1:{closed}/secret-key")] {
        let run = s.sync(&["--notify", &url]);
        run.expect_code(0);
        assert!(run.stderr.contains("--notify: the ping to http://127.0.0.1:"), "{}", run.stderr);
        assert!(!run.stderr.contains("secret-key") && !run.stdout.contains("secret-key"), "{}", run.stderr);
    }
    assert_eq!(seen.lock().unwrap().len(), 6, "three tries each of the start and the end pings");
    let run = s.sync(&["--notify", "hc-ping.com/key"]);
    run.expect_code(2);
}

/// `--files-from`: exactly the listed paths are copied; a listed path the
/// source lacks is an error naming its line; nothing else is touched.
#[test]
fn files_from_copies_exactly_the_listed_paths() {
    let s = Scratch::new();
    for d in 0..5 {
        for f in 0..4 {
            write(&s.src(), format!("d{d}/f{f}.txt"), format!("{d}/{f}").as_bytes());
        }
    }
    write(&s.dst(), "d0/extra.txt", b"stays");
    let list = s.path("list.txt");
    fs::write(&list, "# tonight's batch\nd1/f2.txt\n\n./d3/f0.txt\n/d4/f3.txt\nd2/missing.txt\n").unwrap();
    let run = s.sync(&["--files-from", &list.to_string_lossy()]);
    run.expect_code(1);
    assert!(run.stdout.contains("--files-from line 6: d2/missing.txt is not in the source"), "{}", run.explain());
    assert_eq!(names(&s.dst()), ["d0/extra.txt", "d1/f2.txt", "d3/f0.txt", "d4/f3.txt"]);
    assert_eq!(run.count("files_transferred"), 3);

    // From standard input, NUL-separated (find -print0), a name with a newline in it.
    write(&s.src(), "odd\nname.txt", b"odd");
    let mut cmd = s.barge();
    cmd.args(["sync", "--json", "--files-from", "-", "--from0"]).arg(s.src()).arg(s.dst());
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"odd\nname.txt\0d0/f1.txt\0").unwrap();
    Run::of(child.wait_with_output().unwrap()).expect_code(0);
    assert_eq!(fs::read(s.dst().join("odd\nname.txt")).unwrap(), b"odd");
    assert!(s.dst().join("d0/f1.txt").exists() && !s.dst().join("d0/f0.txt").exists());

    for (args, said) in [
        (vec!["--files-from", &*list.to_string_lossy(), "--delete"], "cannot tell what"),
        (vec!["--files-from", "/nonexistent/list"], "--files-from /nonexistent/list"),
    ] {
        let run = s.sync(&args);
        run.expect_code(2);
        assert!(run.stderr.contains(said), "{args:?}: {}", run.stderr);
    }
    fs::write(&list, "ok.txt\n../../etc/passwd\n").unwrap();
    let run = s.sync(&["--files-from", &list.to_string_lossy()]);
    run.expect_code(2);
    assert!(run.stderr.contains("line 2"), "{}", run.stderr);
}

/// Against a LIST-only server, only the listed paths' directories are
/// listed: a three-file list costs a handful of round trips where the
/// whole tree costs one listing per directory and more.
#[test]
fn files_from_lists_only_their_directories_on_a_server() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    for d in 0..30 {
        for f in 0..5 {
            server.write_file(&format!("tree/d{d:02}/f{f}.txt"), format!("{d}/{f}").as_bytes());
        }
    }
    let s = Scratch::new();
    let list = s.path("list.txt");
    fs::write(&list, "d07/f1.txt\nd07/f3.txt\nd21/f0.txt\n").unwrap();
    let src = crate::ftp_sync::url(&server, "/tree");
    let dst = s.path("some");
    let run =
        crate::ftp_sync::sync(&s, &server, &src, &dst.to_string_lossy(), &["--files-from", &list.to_string_lossy()]);
    run.expect_code(0);
    assert_eq!(names(&dst), ["d07/f1.txt", "d07/f3.txt", "d21/f0.txt"]);
    let few = run.summary()["transfers"]["src_round_trips"].as_u64().unwrap();

    let all = s.path("all");
    let run = crate::ftp_sync::sync(&s, &server, &src, &all.to_string_lossy(), &[]);
    run.expect_code(0);
    let whole = run.summary()["transfers"]["src_round_trips"].as_u64().unwrap();
    assert!(few * 5 < whole, "three files cost {few} round trips, the tree {whole}");
}
