//! barge through the WAN emulator (tests/support/wanem.rs): real round
//! trips and injected faults in front of a real FTP server.

use std::fs;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::harness::{self, FtpServer, FtpServerKind, FtpTls};
use crate::wanem::{self, Fault, Link};

/// vsftpd on 127.0.0.1 announcing 127.0.0.2, where the emulator forwards
/// the control port and the passive range.
fn server_behind(link: Link) -> (FtpServer, tokio::runtime::Runtime) {
    server_behind_with(|_| link)
}

/// [`server_behind`] with a link made knowing the server (its control
/// port; its tree, which may be filled first).
fn server_behind_with(link: impl FnOnce(&FtpServer) -> Link) -> (FtpServer, tokio::runtime::Runtime) {
    let server = harness::ftp_server_with(FtpServerKind::Vsftpd, FtpTls::None, &["pasv_address=127.0.0.2"]);
    let link = link(&server);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ports = std::iter::once(server.port).chain(server.pasv_ports.0..=server.pasv_ports.1);
    let (far, near): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap());
    runtime.block_on(wanem::forward(far, near, ports, link)).unwrap();
    (server, runtime)
}

fn sync(s: &Scratch, server: &FtpServer, src: &str, dst: &str, extra: &[&str]) -> Run {
    Run::of(
        s.barge()
            .env("BARGE_PASSWORD", &server.password)
            .args(["sync", src, dst, "--json", "--timeout", "10", "--state"])
            .arg(s.state())
            .args(extra)
            .output()
            .unwrap(),
    )
}

/// `barge sync --json FLAGS` from the server, through the emulator, into
/// the scratch destination, and how long it took.
fn timed_download(s: &Scratch, server: &FtpServer, flags: &[&str]) -> (Run, Duration) {
    let remote = format!("ftp://{}@127.0.0.2:{}/", server.user, server.port);
    let started = Instant::now();
    let output = s
        .barge()
        .env("BARGE_PASSWORD", &server.password)
        .args(["sync", "--json"])
        .args(flags)
        .arg(&remote)
        .arg(s.dst())
        .output()
        .unwrap();
    (Run::of(output), started.elapsed())
}

#[test]
fn a_delayed_link_still_mirrors_and_the_delay_is_real() {
    let (server, _runtime) = server_behind(Link { one_way_delay: Duration::from_millis(25), ..Link::default() });
    let s = Scratch::new();
    for i in 0..20 {
        write(&s.src(), format!("d{}/f{i}.txt", i % 3), &bytes(i, 3000));
    }
    let remote = format!("ftp://{}@127.0.0.2:{}/", server.user, server.port);
    let started = Instant::now();
    let run = sync(&s, &server, &s.src().to_string_lossy(), &remote, &[]);
    run.expect_code(0);
    // Greeting, USER, PASS, FEAT, TYPE, PWD, CWD: seven round trips of 50 ms
    // before anything moves.
    assert!(started.elapsed() >= Duration::from_millis(350), "took only {:?}", started.elapsed());
    assert_eq!(run.count("files_transferred"), 20);
    assert_mirrors_content(&s.src(), &server.root);
}

fn assert_mirrors_content(a: &std::path::Path, b: &std::path::Path) {
    let strip = |root| {
        snapshot(root)
            .into_iter()
            .filter_map(|(k, v)| match v {
                Node::File { hash, .. } => Some((k, hash)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(a), strip(b));
}

#[test]
fn a_link_cut_every_4_mib_still_delivers_a_12_mib_file_by_resuming() {
    // Connection 0 is the login; every later connection (data ones
    // included) is cut after 4 MiB towards barge.
    let link = Link { fault: Fault::CutAfter(4 << 20), fault_from_connection: 1, ..Link::default() };
    let (server, _runtime) = server_behind(link);
    let content = bytes(42, 12 << 20);
    server.write_file("big.bin", &content);
    let s = Scratch::new();
    let remote = format!("ftp://{}@127.0.0.2:{}/", server.user, server.port);
    let run = sync(&s, &server, &remote, &s.dst().to_string_lossy(), &["--retries", "5"]);
    run.expect_code(0);
    assert!(run.count("retries") >= 2, "{}", run.explain());
    assert!(fs::read(s.dst().join("big.bin")).unwrap() == content, "content differs");
    assert!(temporaries(&s.dst()).is_empty());
}

#[test]
fn resets_and_refusals_fail_cleanly_and_a_rerun_completes() {
    let s = Scratch::new();
    for i in 0..5 {
        write(&s.src(), format!("f{i}.bin"), &bytes(i + 100, 300_000));
    }
    // Every data connection is reset after 64 KiB: uploads go the other
    // way, so fault the server's side by downloading instead.
    let link = Link { fault: Fault::ResetAfter(64 << 10), fault_from_connection: 1, ..Link::default() };
    let (server, _runtime) = server_behind(link);
    for i in 0..5 {
        server.write_file(&format!("f{i}.bin"), &bytes(i + 100, 300_000));
    }
    let remote = format!("ftp://{}@127.0.0.2:{}/", server.user, server.port);
    let dst = s.dst().to_string_lossy().into_owned();
    let run = sync(&s, &server, &remote, &dst, &["--retries", "1"]);
    run.expect_code(1);
    // Nothing under a final name unless complete.
    for entry in fs::read_dir(s.dst()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(".barge-") {
            assert_eq!(fs::read(entry.path()).unwrap(), fs::read(s.src().join(&name)).unwrap(), "{name} is partial");
        }
    }
    // The same job straight to the server (no emulator) completes.
    let direct = format!("ftp://{}@127.0.0.1:{}/", server.user, server.port);
    sync(&s, &server, &direct, &dst, &[]).expect_code(0);
    assert_mirrors_content(&s.src(), &s.dst());
    assert!(temporaries(&s.dst()).is_empty());

    // A server that refuses every new connection after the first: exit 3
    // when even logging in is impossible.
    let refusing = Link { fault: Fault::Refuse, ..Link::default() };
    let (server, _runtime2) = server_behind(refusing);
    let remote = format!("ftp://{}@127.0.0.2:{}/", server.user, server.port);
    let run = sync(&s, &server, &remote, &s.path("other").to_string_lossy(), &["--retries", "0"]);
    run.expect_code(3);
}

#[test]
fn a_link_that_stalls_mid_file_ends_with_the_timeout_and_commits_nothing() {
    let link = Link { fault: Fault::StallAfter(256 << 10), fault_from_connection: 1, ..Link::default() };
    let (server, _runtime) = server_behind(link);
    server.write_file("slow.bin", &bytes(9, 2 << 20));
    let s = Scratch::new();
    let (run, took) = timed_download(&s, &server, &["--timeout", "2", "--retries", "0"]);
    run.expect_code(1);
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(run.stderr.contains("slow.bin"), "{}", run.explain());
    assert!(!s.dst().join("slow.bin").exists());
}

/// A server that lets new logins hang (no greeting: seen from pure-ftpd
/// behind the emulator with a hundred sessions open) while its first
/// connection works: the files waiting for a connection take the one that
/// is free instead of each waiting out the timeout.
#[test]
fn logins_that_hang_do_not_hold_files_a_free_connection_can_take() {
    let (server, _runtime) = server_behind_with(|server| Link {
        fault: Fault::StallAfter(0),
        fault_from_connection: 1,
        fault_port: Some(server.port),
        ..Link::default()
    });
    for i in 0..12 {
        server.write_file(&format!("f{i}.txt"), format!("file {i}").as_bytes());
    }
    let s = Scratch::new();
    let (run, took) = timed_download(&s, &server, &["--timeout", "30", "--parallel", "4"]);
    run.expect_code(0);
    assert_eq!(run.count("files_transferred"), 12, "{}", run.explain());
    assert!(took < Duration::from_secs(20), "took {took:?}\n{}", run.explain());
}

/// A link that silently inverts one byte of one data connection: without
/// --verify the damaged copy is committed (same size, nothing noticed);
/// with --verify it is caught before it takes its name, removed, and
/// copied again.
#[test]
fn verify_catches_a_byte_flipped_on_the_wire_and_copies_again() {
    let content = bytes(9, 300_000);
    for verify in [false, true] {
        let link = Link { fault: Fault::FlipByteAt { offset: 100_000, times: 1 }, ..Link::default() };
        let (server, _runtime) = server_behind(link);
        server.write_file("data.bin", &content);
        let s = Scratch::new();
        let remote = format!("ftp://{}@127.0.0.2:{}/", server.user, server.port);
        let extra: &[&str] = if verify { &["--verify"] } else { &[] };
        let run = sync(&s, &server, &remote, &s.dst().to_string_lossy(), extra);
        run.expect_code(0);
        let copied = fs::read(s.dst().join("data.bin")).unwrap();
        if verify {
            assert!(copied == content, "--verify committed a damaged copy\n{}", run.explain());
            assert_eq!(run.count("retries"), 1, "{}", run.explain());
            assert_eq!(run.count("files_verified"), 1, "{}", run.explain());
        } else {
            // The fault is real: this is what --verify is for.
            assert_eq!(copied.len(), content.len());
            assert!(copied != content, "the flip did not happen\n{}", run.explain());
        }
        assert!(temporaries(&s.dst()).is_empty());
    }
}

/// proftpd on 127.0.0.1 announcing `far`, where an emulator forwards its
/// control port and passive range.
fn proftpd_behind(
    far: &str,
    extra: &[&str],
    runtime: &tokio::runtime::Runtime,
) -> (FtpServer, std::sync::Arc<wanem::Stats>) {
    let masquerade = format!("MasqueradeAddress {far}");
    let mut lines = vec![masquerade.as_str()];
    lines.extend_from_slice(extra);
    let server = harness::ftp_server_with(FtpServerKind::Proftpd, FtpTls::None, &lines);
    let ports = std::iter::once(server.port).chain(server.pasv_ports.0..=server.pasv_ports.1);
    let (far, near): (IpAddr, IpAddr) = (far.parse().unwrap(), "127.0.0.1".parse().unwrap());
    let stats = runtime.block_on(wanem::forward(far, near, ports, Link::default())).unwrap();
    (server, stats)
}

/// --fxp between two real proftpd servers, each reached through its own
/// forwarder: the file goes from the source server straight to the
/// destination server, so the source's forwarder carries only control
/// replies, where a normal copy carries the whole file through it. A
/// source server that forbids sending to a foreign address is named.
#[test]
fn fxp_copies_server_to_server_without_the_data_passing_through_barge() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let content = bytes(5, 4 << 20);
    let (dst, _dst_stats) = proftpd_behind("127.0.0.2", &[], &runtime);
    for (allow, fxp) in [(true, true), (true, false), (false, true)] {
        let extra: &[&str] = if allow { &["AllowForeignAddress on"] } else { &[] };
        let (src, src_stats) = proftpd_behind("127.0.0.3", extra, &runtime);
        src.write_file("pub/big.bin", &content);
        src.write_file("pub/small.txt", b"small");
        let s = Scratch::new();
        let from = format!("ftp://{}@127.0.0.3:{}/pub", src.user, src.port);
        let to = format!("ftp://{}@127.0.0.2:{}/copy-{fxp}-{allow}", dst.user, dst.port);
        // Both servers take the same password (the harness's test user).
        assert_eq!(src.password, dst.password);
        let extra: &[&str] = if fxp { &["--fxp"] } else { &[] };
        let run = sync(&s, &src, &from, &to, extra);
        let down = src_stats.bytes_down.load(std::sync::atomic::Ordering::Relaxed);
        let landed = dst.root.join(format!("copy-{fxp}-{allow}/big.bin"));
        match (allow, fxp) {
            (true, true) => {
                run.expect_code(0);
                assert!(fs::read(&landed).unwrap() == content);

                // Only control replies came through the source's forwarder
                // (--verify compares proftpd's own HASH replies).
                assert!(down < 64 * 1024, "{down} bytes came through barge\n{}", run.explain());
                // With --verify the copies are compared before they take their names
                // (read back here: this proftpd has no HASH).
                let verified = sync(&s, &src, &from, &format!("{to}-verified"), &["--fxp", "--verify"]);
                verified.expect_code(0);
                assert_eq!(verified.count("files_verified"), 2, "{}", verified.explain());
            }
            (true, false) => {
                run.expect_code(0);
                assert!(fs::read(&landed).unwrap() == content);
                assert!(down >= content.len() as u64, "a normal copy reads the file: {down}");
            }
            _ => {
                run.expect_code(1);
                assert!(run.stderr.contains("FXP is disabled there"), "{}", run.explain());
                assert!(!landed.exists() && temporaries(&dst.root).is_empty(), "{}", run.explain());
            }
        }
    }
}

/// The `transfers` object of a sync's JSON summary.
fn transfers(run: &Run) -> serde_json::Value {
    let value = run.summary()["transfers"].clone();
    assert!(value.is_object(), "no transfers in the summary\n{}", run.explain());
    value
}

#[test]
fn over_a_long_round_trip_the_tuner_raises_transfers_at_once_and_the_next_run_starts_there() {
    // 50 ms round trips: a file costs about 150 ms of waiting per transfer
    // slot, so more slots pay and the tuner must find that out.
    let (server, _runtime) = server_behind(Link { one_way_delay: Duration::from_millis(25), ..Link::default() });
    for i in 0..1500 {
        server.write_file(&format!("a/d{}/f{i}.txt", i % 10), &bytes(i, 1000));
    }
    let s = Scratch::new();
    let remote = format!("ftp://{}@127.0.0.2:{}/", server.user, server.port);
    let dst = s.dst().to_string_lossy().into_owned();
    let first = sync(&s, &server, &remote, &dst, &[]);
    first.expect_code(0);
    assert_eq!(first.count("files_transferred"), 1500);
    let tuned = transfers(&first);
    // A 50 ms server is far: the first run starts above the near default.
    let far_start = barge::backend::ftp::FAR_START as u64;
    assert_eq!(tuned["parallel_start"], far_start, "{tuned}");
    assert!(tuned["parallel_end"].as_u64().unwrap() > far_start, "never raised: {tuned}\n{}", first.explain());
    let next = tuned["parallel_next"].as_u64().unwrap_or_else(|| panic!("nothing remembered: {tuned}"));
    assert!(next >= far_start, "{tuned}");
    // Each download costs round trips on the server's side, none on local disk.
    assert!(tuned["src_round_trips_per_file"].as_f64().unwrap() >= 1.0, "{tuned}");
    assert_eq!(tuned["dst_round_trips"], 0, "local disk has no round trips: {tuned}");
    assert_mirrors_content(&server.root, &s.dst());

    for i in 0..300 {
        server.write_file(&format!("b/f{i}.txt"), &bytes(i + 7, 1000));
    }
    let second = sync(&s, &server, &remote, &dst, &[]);
    second.expect_code(0);
    assert_eq!(second.count("files_transferred"), 300);
    assert_eq!(transfers(&second)["parallel_start"], next, "the state database did not carry the level over");

    // --parallel caps it: no tuning above the cap.
    for i in 0..50 {
        server.write_file(&format!("c/f{i}.txt"), &bytes(i + 9, 1000));
    }
    let capped = sync(&s, &server, &remote, &dst, &["--src-parallel", "4"]);
    capped.expect_code(0);
    let capped = transfers(&capped);
    assert_eq!((capped["parallel_start"].as_u64(), capped["parallel_end"].as_u64()), (Some(4), Some(4)), "{capped}");
}

#[test]
fn a_server_that_takes_four_connections_caps_the_tuner_and_nothing_fails() {
    let server = harness::ftp_server_with(FtpServerKind::Vsftpd, FtpTls::None, &["max_per_ip=4"]);
    for i in 0..400 {
        server.write_file(&format!("d{}/f{i}.txt", i % 4), &bytes(i, 2000));
    }
    let s = Scratch::new();
    let remote = format!("ftp://{}@127.0.0.1:{}/", server.user, server.port);
    let run = sync(&s, &server, &remote, &s.dst().to_string_lossy(), &[]);
    run.expect_code(0);
    assert_eq!((run.count("files_transferred"), run.count("errors")), (400, 0), "{}", run.explain());
    let tuned = transfers(&run);
    assert_eq!(tuned["parallel_state"], "server-limited", "{tuned}");
    // At the server's limit, give or take a session vsftpd is still
    // tearing down when the count is taken (a refused login can see 5).
    assert!(tuned["parallel_end"].as_u64().unwrap() <= 6, "{tuned}");
    assert_eq!(tuned["parallel_next"], tuned["parallel_end"], "{tuned}");
    assert_mirrors_content(&server.root, &s.dst());
}

/// A server that goes silent mid-run (connections accepted, nothing ever
/// answered): the run gives up after twice --timeout without an answer
/// and a few failed attempts, exit 3 naming what it saw, instead of every
/// pending file waiting out its retries. The next run, once the server
/// answers again, finishes the job.
#[test]
fn a_server_gone_silent_ends_the_run_with_exit_3() {
    let silence = tokio::time::Instant::now() + Duration::from_secs(3);
    // 100 KiB/s per connection: the 120 files of 64 KiB cannot be done
    // before the silence.
    let link = Link { rate: 100 << 10, fault: Fault::SilentFrom(silence), ..Link::default() };
    let (server, _runtime) = server_behind(link);
    for i in 0..120 {
        server.write_file(&format!("d{}/f{i:03}.bin", i % 4), &bytes(i, 64 << 10));
    }
    let s = Scratch::new();
    let remote = format!("ftp://{}@127.0.0.2:{}/", server.user, server.port);
    let mut cmd = s.barge();
    cmd.env("BARGE_PASSWORD", &server.password)
        .args(["sync", "--json", "--timeout", "4", "--retries", "3", "--parallel", "8", &remote])
        .arg(s.dst())
        .arg("--state")
        .arg(s.state());
    let started = Instant::now();
    // Before: 120 files x 4 attempts x 4 s over 8 connections, minutes.
    let run = s.run_within(cmd, Duration::from_secs(60));
    let took = started.elapsed();
    run.expect_code(3);
    // Silent at 3 s; two timeouts (8 s) of silence; then what is in flight
    // is dropped at once: well under three timeouts plus the backoff.
    assert!(took < Duration::from_secs(3 + 3 * 4 + 5), "took {took:?}\n{}", run.explain());
    assert!(run.stderr.contains("no answer for") && run.stderr.contains("127.0.0.2"), "{}", run.explain());
    let summary = run.summary();
    assert!(summary["gave_up"].as_str().is_some_and(|why| why.contains("attempts in a row")), "{summary}");
    assert!(summary["not_started"].as_u64().unwrap() > 0, "{summary}");
    for entry in walkdir::WalkDir::new(s.dst()).into_iter().flatten().filter(|e| e.file_type().is_file()) {
        let name = entry.path().strip_prefix(s.dst()).unwrap().to_string_lossy().into_owned();
        if !name.contains(".barge-") {
            assert_eq!(fs::read(entry.path()).unwrap(), fs::read(server.root.join(&name)).unwrap(), "{name} partial");
        }
    }
    // Straight to the server: the rest arrives.
    let direct = format!("ftp://{}@127.0.0.1:{}/", server.user, server.port);
    sync(&s, &server, &direct, &s.dst().to_string_lossy(), &[]).expect_code(0);
    assert_eq!(files_in_tree(&s.dst()), 120);
}

/// A server of 400 directories behind 100 ms round trips, silent from
/// 1.5 s on: its tree cannot be listed before the silence.
fn silent_while_listed() -> (FtpServer, tokio::runtime::Runtime) {
    server_behind_with(|server| {
        for top in 0..20 {
            for sub in 0..20 {
                server.write_file(&format!("t{top:02}/s{sub:02}/f.txt"), b"x");
            }
        }
        let silence = tokio::time::Instant::now() + Duration::from_millis(1500);
        Link { one_way_delay: Duration::from_millis(50), fault: Fault::SilentFrom(silence), ..Link::default() }
    })
}

/// A server that goes silent while its tree is being listed: once nothing
/// has come back for twice the timeout and several tries in a row failed,
/// the rest is not asked for (each directory would cost its tries of
/// --timeout: minutes for a few hundred), nothing is deleted below what
/// was not listed, and the run ends.
#[test]
fn a_server_gone_silent_mid_listing_ends_the_run() {
    let (server, _runtime) = silent_while_listed();
    let s = Scratch::new();
    // A destination file the run must not delete: its directory is never
    // listed on the source.
    fs::create_dir_all(s.dst().join("t19/s19")).unwrap();
    fs::write(s.dst().join("t19/s19/keep.txt"), b"keep").unwrap();
    let remote = format!("ftp://{}@127.0.0.2:{}/", server.user, server.port);
    let mut cmd = s.barge();
    cmd.env("BARGE_PASSWORD", &server.password)
        .args(["sync", "--json", "--delete", "--timeout", "3", "--retries", "2", &remote])
        .arg(s.dst())
        .arg("--state")
        .arg(s.state());
    let started = Instant::now();
    // Before: the ~300 directories left, 3 tries of 3 s each, a few at a
    // time: minutes.
    let run = s.run_within(cmd, Duration::from_secs(90));
    let took = started.elapsed();
    assert!(matches!(run.code, 1 | 3), "{}", run.explain());
    assert!(took < Duration::from_secs(45), "took {took:?}\n{}", run.explain());
    assert!(run.stderr.contains("stopped answering"), "{}", run.explain());
    // The directories left are one reason: said once, then counted.
    let unasked = run.stderr.matches("not listed: the server stopped answering").count();
    assert_eq!(unasked, 1, "{}", run.explain());
    assert_eq!(run.stderr.matches("more source directories were not listed").count(), 1, "{}", run.explain());
    assert_eq!(fs::read(s.dst().join("t19/s19/keep.txt")).unwrap(), b"keep");
}

/// SIGTERM while a silent server is being listed: no listing is asked
/// again, none waits without end (a CWD or a listing's last reply had no
/// time limit: the run never ended), so the run ends within --timeout.
#[test]
fn sigterm_during_a_silent_listing_ends_within_the_timeout() {
    let (server, _runtime) = silent_while_listed();
    stopped_within_the_timeout(&Scratch::new(), &server, 6, &["--delete", "--retries", "5"]);
}

/// `barge sync --json --timeout TIMEOUT FLAGS` from `server` (through the
/// emulator) into the scratch destination, stopped by SIGTERM 4 s in: it
/// must end within the timeout (plus 3 s of slack) with the signal in its
/// summary and a failing exit code.
fn stopped_within_the_timeout(s: &Scratch, server: &FtpServer, timeout: u64, flags: &[&str]) {
    let remote = format!("ftp://{}@127.0.0.2:{}/", server.user, server.port);
    let mut cmd = s.barge();
    cmd.env("BARGE_PASSWORD", &server.password)
        .args(["sync", "--json", "--timeout", &timeout.to_string()])
        .args(flags)
        .arg(&remote)
        .arg(s.dst())
        .arg("--state")
        .arg(s.state());
    // Waited for with a limit: runs these tests are about never ended.
    let (run, took) = s.run_stopped(cmd, Duration::from_secs(4), Duration::from_secs(60));
    assert!(took < Duration::from_secs(timeout + 3), "the stop took {took:?}\n{}", run.explain());
    assert_eq!(run.summary()["interrupted"], "SIGTERM", "{}", run.explain());
    assert_ne!(run.code, 0, "{}", run.explain());
}

/// SIGTERM while the server is silent: what is in flight gets no retry,
/// so the run ends within one --timeout (it waited for retries that could
/// never succeed: 180 s after SIGTERM with --timeout 10).
#[test]
fn sigterm_against_a_silent_server_ends_within_the_timeout() {
    let silence = tokio::time::Instant::now() + Duration::from_secs(2);
    let link = Link { rate: 100 << 10, fault: Fault::SilentFrom(silence), ..Link::default() };
    let (server, _runtime) = server_behind(link);
    for i in 0..60 {
        server.write_file(&format!("f{i:03}.bin"), &bytes(i, 64 << 10));
    }
    stopped_within_the_timeout(&Scratch::new(), &server, 10, &["--retries", "5", "--parallel", "4"]);
}
