//! A scripted FTP server that lies: hostile names, duplicates, sizes that
//! do not match, data that never ends or never comes. barge must skip or
//! reject what it cannot trust, say so, never write outside the destination,
//! and never hang.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

/// What the server serves.
#[derive(Clone, Default)]
struct Script {
    /// MLSD output per directory ("/" is the root).
    listings: HashMap<String, Vec<u8>>,
    /// RETR content per path.
    files: HashMap<String, Vec<u8>>,
    /// RETR opens the data connection and then sends nothing, forever.
    stall_retr: bool,
    /// MLSD of "/" never ends.
    endless_listing: bool,
    /// After a command with this verb, whatever else already arrived is
    /// thrown away: a server (or middlebox) that loses pipelined commands.
    lose_after: Option<&'static str>,
    /// Every directory holds one more directory of this name (after what
    /// `listings` says it holds): a tree without a bottom.
    endless_depth: Option<String>,
    /// The first MLSD of this directory is refused with a 425, as proftpd
    /// does when the passive port it picked is still in use.
    flaky_listing: Option<String>,
    /// Whether that 425 was sent (shared by all sessions).
    flaked: Arc<AtomicBool>,
    /// The MLSD of this directory answers only once the flag is set.
    held_listing: Option<(String, Arc<AtomicBool>)>,
    /// After PORT/EPRT, a listing never connects back: `150`, then `425`
    /// this long after (a firewall in front of the client).
    active_refused_after: Option<Duration>,
}

/// Starts the server on a free port; it lives until the test process ends.
fn serve(script: Script) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = Arc::new(script);
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let script = Arc::clone(&script);
            std::thread::spawn(move || {
                let _ = session(client, &script);
            });
        }
    });
    port
}

fn session(control: TcpStream, script: &Script) -> std::io::Result<()> {
    // Replies go out at once: no 40 ms delayed-ACK stall per command.
    control.set_nodelay(true)?;
    let mut out = control.try_clone()?;
    let mut reader = BufReader::new(control);
    let mut passive: Option<TcpListener> = None;
    let mut active = false;
    out.write_all(b"220 hostile test server\r\n")?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let (verb, arg) = text.split_once(' ').unwrap_or((&text, ""));
        if script.lose_after.is_some_and(|lose| verb.eq_ignore_ascii_case(lose)) {
            let buffered = reader.buffer().len();
            reader.consume(buffered);
        }
        let reply: Vec<u8> = match verb.to_ascii_uppercase().as_str() {
            "USER" => b"331 password please\r\n".to_vec(),
            "PASS" => b"230 logged in\r\n".to_vec(),
            "FEAT" => b"211-Features:\r\n MLSD\r\n MDTM\r\n SIZE\r\n EPSV\r\n211 End\r\n".to_vec(),
            "OPTS" | "TYPE" | "NOOP" => b"200 ok\r\n".to_vec(),
            "PWD" => b"257 \"/\"\r\n".to_vec(),
            "CWD" => b"250 ok\r\n".to_vec(),
            "SYST" => b"215 UNIX Type: L8\r\n".to_vec(),
            "EPSV" => {
                let data = TcpListener::bind("127.0.0.1:0")?;
                let port = data.local_addr()?.port();
                passive = Some(data);
                format!("229 Entering Extended Passive Mode (|||{port}|)\r\n").into_bytes()
            }
            "PORT" | "EPRT" => {
                active = true;
                b"200 ok\r\n".to_vec()
            }
            "MLSD" if active && script.active_refused_after.is_some() => {
                active = false;
                out.write_all(b"150 opening data connection\r\n")?;
                std::thread::sleep(script.active_refused_after.unwrap_or_default());
                b"425 Can't open data connection\r\n".to_vec()
            }
            "MLSD" => {
                let dir = if arg.is_empty() { "/".to_string() } else { arg.to_string() };
                let Some(data) = passive.take() else {
                    out.write_all(b"425 no data connection\r\n")?;
                    continue;
                };
                if script.flaky_listing.as_deref() == Some(dir.as_str()) && !script.flaked.swap(true, Ordering::SeqCst)
                {
                    out.write_all(b"425 Unable to build data connection: Address already in use\r\n")?;
                    continue;
                }
                if let Some((held, released)) = &script.held_listing
                    && *held == dir
                {
                    while !released.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                out.write_all(b"150 here it comes\r\n")?;
                let (mut conn, _) = data.accept()?;
                if script.endless_listing && dir == "/" {
                    let line = b"type=file;size=1;modify=20240101000000; endless\r\n";
                    loop {
                        if conn.write_all(line).is_err() {
                            return Ok(());
                        }
                    }
                }
                conn.write_all(script.listings.get(&dir).map_or(&b""[..], |v| v))?;
                if let Some(name) = &script.endless_depth {
                    conn.write_all(&fact(name.as_bytes(), "dir", 0))?;
                }
                drop(conn);
                b"226 done\r\n".to_vec()
            }
            "RETR" => {
                let Some(data) = passive.take() else {
                    out.write_all(b"425 no data connection\r\n")?;
                    continue;
                };
                out.write_all(b"150 sending\r\n")?;
                let (mut conn, _) = data.accept()?;
                if script.stall_retr {
                    std::thread::sleep(Duration::from_secs(3600));
                }
                conn.write_all(script.files.get(arg).map_or(&b""[..], |v| v))?;
                drop(conn);
                b"226 done\r\n".to_vec()
            }
            "MDTM" => b"213 20240101000000\r\n".to_vec(),
            "QUIT" => {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => b"502 not implemented\r\n".to_vec(),
        };
        out.write_all(&reply)?;
    }
}

fn download(s: &Scratch, port: u16, extra: &[&str]) -> Run {
    Run::of(command(s, port, extra).output().unwrap())
}

/// `barge sync --json ftp://...:port/ DST --state STATE <extra...>`.
fn command(s: &Scratch, port: u16, extra: &[&str]) -> std::process::Command {
    let mut cmd = s.barge();
    cmd.env("BARGE_PASSWORD", "x")
        .args(["sync", "--json"])
        // One retry unless the test says otherwise.
        .args(if extra.contains(&"--retries") { &[][..] } else { &["--retries", "1"][..] })
        .arg(format!("ftp://u@127.0.0.1:{port}/"))
        .arg(s.dst())
        .arg("--state")
        .arg(s.state())
        .args(extra);
    cmd
}

fn fact(name: &[u8], kind: &str, size: usize) -> Vec<u8> {
    let mut line = format!("type={kind};size={size};modify=20240101000000; ").into_bytes();
    line.extend_from_slice(name);
    line.extend_from_slice(b"\r\n");
    line
}

/// Every file below `root`, relative.
fn files_below(root: &Path) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn hostile_names_are_skipped_with_warnings_and_nothing_escapes_the_root() {
    let mut listing = Vec::new();
    for name in [&b".."[..], b".", b"../escape", b"/etc/passwd-copy", b"a/b", b"nul\0byte", b"cr\rname"] {
        listing.extend(fact(name, "file", 4));
    }
    listing.extend(fact(b"good.txt", "file", 4));
    listing.extend(fact(b"back\\slash", "file", 4));
    let mut script = Script::default();
    script.listings.insert("/".into(), listing);
    script.files.insert("/good.txt".into(), b"good".to_vec());
    script.files.insert("/back\\slash".into(), b"back".to_vec());
    let port = serve(script);

    let s = Scratch::new();
    fs::create_dir_all(s.dst()).unwrap();
    let run = download(&s, port, &[]);
    run.expect_code(0);
    assert_eq!(fs::read(s.dst().join("good.txt")).unwrap(), b"good");
    assert_eq!(fs::read(s.dst().join("back\\slash")).unwrap(), b"back", "a backslash is an ordinary byte");
    let mut found = files_below(&s.dst());
    found.sort();
    assert_eq!(found, ["back\\slash", "good.txt"], "{}", run.explain());
    assert!(!s.dir.path().join("escape").exists());
    for shown in ["../escape", "/etc/passwd-copy", "a/b", "nul\\x00byte"] {
        assert!(run.stderr.contains(shown), "no warning naming {shown:?}\n{}", run.explain());
    }
}

#[test]
fn a_server_that_loses_pipelined_commands_gets_them_one_at_a_time() {
    // Losing the PWD of the probe at login (TYPE I and PWD written
    // together): pipelining is off before any listing or file. Losing
    // what was sent with EPSV (the probe passed): the root's MLSD; the
    // listing times out, pipelining goes off, the retry gets it.
    for (lose, retried) in [("TYPE", false), ("EPSV", true)] {
        let mut script = Script { lose_after: Some(lose), ..Script::default() };
        let mut listing = Vec::new();
        for i in 0..3 {
            let name = format!("f{i}.txt");
            listing.extend(fact(name.as_bytes(), "file", 5));
            script.files.insert(format!("/{name}"), format!("data{i}").into_bytes());
        }
        script.listings.insert("/".into(), listing);
        let port = serve(script);
        let s = Scratch::new();
        let log = s.dir.path().join("run.log");
        let run = download(&s, port, &["--timeout", "2", "--log-file", log.to_str().unwrap()]);
        run.expect_code(0);
        for i in 0..3 {
            assert_eq!(fs::read(s.dst().join(format!("f{i}.txt"))).unwrap(), format!("data{i}").as_bytes());
        }
        // The listing's retry is logged (not counted: it is no transfer).
        let logged = fs::read_to_string(&log).unwrap();
        assert_eq!(logged.contains("retry 1"), retried, "losing after {lose}\n{logged}\n{}", run.explain());
        assert_eq!(run.count("retries"), 0, "losing after {lose}\n{}", run.explain());
    }
}

#[test]
fn duplicate_names_and_a_file_that_is_also_a_directory_are_not_trusted() {
    let mut listing = Vec::new();
    listing.extend(fact(b"twice.txt", "file", 4));
    listing.extend(fact(b"twice.txt", "file", 4));
    listing.extend(fact(b"both", "file", 4));
    listing.extend(fact(b"both", "dir", 0));
    listing.extend(fact(b"fine.txt", "file", 4));
    let mut script = Script::default();
    script.listings.insert("/".into(), listing);
    for name in ["/twice.txt", "/both", "/fine.txt"] {
        script.files.insert(name.into(), b"data".to_vec());
    }
    let port = serve(script);

    let s = Scratch::new();
    write(&s.dst(), "both/precious", b"must survive --delete");
    write(&s.dst(), "twice.txt", b"kept");
    let run = download(&s, port, &["--delete"]);
    assert!(run.stderr.contains("twice.txt") && run.stderr.contains("both"), "{}", run.explain());
    assert_eq!(fs::read(s.dst().join("fine.txt")).unwrap(), b"data");
    assert!(s.dst().join("both/precious").exists(), "an ambiguous entry must not cause deletions");
    assert_eq!(fs::read(s.dst().join("twice.txt")).unwrap(), b"kept");
}

#[test]
fn sizes_that_lie_are_never_committed() {
    let mut listing = Vec::new();
    listing.extend(fact(b"short.bin", "file", 100));
    listing.extend(fact(b"long.bin", "file", 3));
    let mut script = Script::default();
    script.listings.insert("/".into(), listing);
    script.files.insert("/short.bin".into(), vec![7; 50]);
    script.files.insert("/long.bin".into(), vec![7; 5000]);
    let port = serve(script);

    let s = Scratch::new();
    let run = download(&s, port, &[]);
    run.expect_code(1);
    assert_eq!(run.count("errors"), 2, "{}", run.explain());
    assert!(!s.dst().join("short.bin").exists() && !s.dst().join("long.bin").exists());
    assert!(temporaries(&s.dst()).is_empty(), "{:?}", temporaries(&s.dst()));
}

#[test]
fn a_stalled_transfer_ends_with_the_timeout() {
    let mut script = Script { stall_retr: true, ..Script::default() };
    script.listings.insert("/".into(), fact(b"stuck.bin", "file", 10));
    let port = serve(script);
    let s = Scratch::new();
    let started = Instant::now();
    let run = download(&s, port, &["--timeout", "2"]);
    run.expect_code(1);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert!(run.stderr.contains("stuck.bin"), "{}", run.explain());
    assert!(!s.dst().join("stuck.bin").exists());
}

#[test]
fn a_listing_that_never_ends_is_an_error_not_a_hang() {
    let port = serve(Script { endless_listing: true, ..Script::default() });
    let s = Scratch::new();
    write(&s.dst(), "keep.txt", b"must survive --delete");
    let started = Instant::now();
    let run = download(&s, port, &["--timeout", "5", "--delete"]);
    assert_eq!(run.code, 3, "the root cannot be listed\n{}", run.explain());
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    assert!(s.dst().join("keep.txt").exists());
}

/// Every listing holds a deeper directory: the walk stops at barge's depth
/// (or path length) cap, names the directory it did not list, and deletes
/// nothing for the listing's word.
fn an_endless_tree_ends(name: &str, said: &str) {
    let mut script = Script { endless_depth: Some(name.to_string()), ..Script::default() };
    script.listings.insert("/".into(), fact(b"fine.txt", "file", 4));
    script.files.insert("/fine.txt".into(), b"fine".to_vec());
    let port = serve(script);
    an_endless_tree_is_cut(name, said, |s| {
        s.run_within(command(s, port, &["--timeout", "5", "--delete"]), Duration::from_secs(120))
    });
}

/// A 10 MiB name in a listing was taken, sent back as 10 MiB MDTM and
/// RETR commands (replies fell out of step, and good.txt beside it
/// failed) and printed whole, twice. Names longer than any file system
/// holds are skipped at listing time with one short warning, the listing
/// counts as doubtful (deletions held), and the rest is mirrored.
#[test]
fn a_name_longer_than_any_file_system_holds_is_skipped_briefly() {
    let long = vec![b'x'; 10 << 20];
    let mut listing = fact(&long, "file", 4);
    listing.extend(fact(b"good.txt", "file", 4));
    listing.extend(fact(&[b'y'; 256], "file", 4));
    let mut script = Script::default();
    script.listings.insert("/".into(), listing);
    script.files.insert("/good.txt".into(), b"good".to_vec());
    let port = serve(script);

    let s = Scratch::new();
    write(&s.dst(), "stray.txt", b"kept: the listing was not complete");
    let run = download(&s, port, &["--delete"]);
    run.expect_code(5);
    assert_eq!(fs::read(s.dst().join("good.txt")).unwrap(), b"good", "{}", run.explain());
    assert!(s.dst().join("stray.txt").exists());
    assert!(run.stderr.contains("10485760 bytes"), "the length is said: {}", run.explain());
    let output = format!("{}{}", run.stdout, run.stderr);
    let lines: Vec<String> = output.lines().map(|l| l.chars().take(160).collect()).collect();
    assert!(output.len() < 16 << 10, "{} bytes of output:\n{}", output.len(), lines.join("\n"));
}

#[test]
fn a_tree_without_a_bottom_stops_at_the_depth_cap() {
    an_endless_tree_ends("a", "nested more than 256 directories deep");
}

#[test]
fn a_tree_of_ever_longer_paths_stops_at_the_length_cap() {
    an_endless_tree_ends(&"n".repeat(200), "path longer than 4096 bytes");
}

/// Short names in a directory 3.8 KB deep: every entry would hold its
/// whole path, 300 MB for a listing of 4 MB. The directory is refused by
/// name, the rest is mirrored, and nothing is deleted on the listing's word.
#[test]
fn a_deep_directory_of_many_names_is_refused_not_multiplied() {
    let name = "n".repeat(200);
    let deep: String = (0..19).map(|_| format!("/{name}")).collect();
    let mut script = Script::default();
    script.listings.insert("/".into(), [fact(name.as_bytes(), "dir", 0), fact(b"fine.txt", "file", 4)].concat());
    let mut parent = format!("/{name}");
    while parent != deep {
        script.listings.insert(parent.clone(), fact(name.as_bytes(), "dir", 0));
        parent = format!("{parent}/{name}");
    }
    script
        .listings
        .insert(deep.clone(), (0..80_000).flat_map(|i| fact(format!("f{i}").as_bytes(), "file", 1)).collect());
    script.files.insert("/fine.txt".into(), b"fine".to_vec());
    let port = serve(script);

    let s = Scratch::new();
    write(&s.dst(), "stray.txt", b"must survive --delete");
    let run = s.run_within(command(&s, port, &["--timeout", "5", "--delete"]), Duration::from_secs(120));
    run.expect_code(5);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("with its paths: refused"))
        .unwrap_or_else(|| panic!("{}", run.explain()));
    assert!(line.contains(&format!("source {}", &deep[1..])), "the directory is named: {line}");
    assert_eq!(fs::read(s.dst().join("fine.txt")).unwrap(), b"fine");
    assert!(s.dst().join("stray.txt").exists(), "{}", run.explain());
}

/// A server whose `/sub` answers its first listing with 425 (then lists
/// `inner.txt`), beside `top.txt`.
fn flaky_sub() -> u16 {
    let mut script = Script { flaky_listing: Some("/sub".into()), ..Script::default() };
    script.listings.insert("/".into(), [fact(b"sub", "dir", 0), fact(b"top.txt", "file", 3)].concat());
    script.listings.insert("/sub".into(), fact(b"inner.txt", "file", 5));
    script.files.insert("/top.txt".into(), b"top".to_vec());
    script.files.insert("/sub/inner.txt".into(), b"inner".to_vec());
    serve(script)
}

/// A 425 when listing a directory is temporary (the server's passive port
/// was busy): the listing is asked again, as a transfer would be, and the
/// mirror completes, deletions included. With --retries 0 the directory
/// stays unreadable and nothing below it is deleted. (Found by
/// benches/soak.sh against proftpd.)
#[test]
fn a_listing_refused_with_425_is_retried() {
    let s = Scratch::new();
    write(&s.dst(), "sub/old.txt", b"deleted once sub is listed");
    let run = download(&s, flaky_sub(), &["--retries", "0", "--delete"]);
    run.expect_code(1);
    assert!(run.stderr.contains("sub") && run.stderr.contains("425"), "{}", run.explain());
    assert!(s.dst().join("sub/old.txt").exists(), "{}", run.explain());

    let run = download(&s, flaky_sub(), &["--delete"]);
    run.expect_code(0);
    assert_eq!(fs::read(s.dst().join("sub/inner.txt")).unwrap(), b"inner", "{}", run.explain());
    assert!(!s.dst().join("sub/old.txt").exists(), "{}", run.explain());
}

/// A directory that cannot be listed but is excluded changes nothing:
/// excluding it is how a user says so (before, every run failed, and with
/// --delete every run was held back as if the source were broken; not
/// excluded, it still holds deletions back: the test above).
#[test]
fn an_excluded_directory_that_cannot_be_listed_is_no_error() {
    let s = Scratch::new();
    write(&s.dst(), "stale.txt", b"gone from the source");
    let run = download(&s, flaky_sub(), &["--retries", "0", "--delete", "--exclude", "/sub/"]);
    run.expect_code(0);
    assert!(!s.dst().join("stale.txt").exists(), "{}", run.explain());
    assert_eq!(fs::read(s.dst().join("top.txt")).unwrap(), b"top");
    assert!(!s.dst().join("sub").exists());
}

/// Issue 5's streaming plan: a file listed early is copied while a
/// directory later in the tree has not answered its listing yet. (Run with
/// `--max-delete`, which plans the whole tree first, this fails.)
#[test]
fn transfers_start_before_the_whole_tree_is_listed() {
    let released = Arc::new(AtomicBool::new(false));
    let mut script = Script::default();
    script.listings.insert("/".into(), [fact(b"a.txt", "file", 5), fact(b"z-slow", "dir", 0)].concat());
    script.listings.insert("/z-slow".into(), fact(b"b.txt", "file", 5));
    script.files.insert("/a.txt".into(), b"early".to_vec());
    script.files.insert("/z-slow/b.txt".into(), b"later".to_vec());
    script.held_listing = Some(("/z-slow".into(), Arc::clone(&released)));
    let port = serve(script);

    let s = Scratch::new();
    fs::create_dir_all(s.dst()).unwrap();
    let child = command(&s, port, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.dst().join("a.txt").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Checked before the held listing is let go: the copy cannot have
    // waited for the whole tree.
    let early = fs::read(s.dst().join("a.txt"));
    released.store(true, Ordering::SeqCst);
    let run = Run::of(child.wait_with_output().unwrap());
    assert_eq!(
        early.ok().as_deref(),
        Some(&b"early"[..]),
        "a.txt copied while /z-slow was unlisted\n{}",
        run.explain()
    );
    run.expect_code(0);
    assert_eq!(fs::read(s.dst().join("z-slow/b.txt")).unwrap(), b"later");
}

/// `doctor` where the server cannot connect back for active mode: its late
/// `425` to the LIST used to answer the next probe's NOOP ("round trip:
/// NOOP failed"). The probes after it get a session of their own.
#[test]
fn doctor_after_a_refused_active_connection_still_measures_the_round_trip() {
    let script = Script { active_refused_after: Some(Duration::from_secs(5)), ..Script::default() };
    let port = serve(script);
    let s = Scratch::new();
    let mut cmd = s.barge();
    cmd.env("BARGE_PASSWORD", "x").env("HOME", s.dir.path()).args([
        "doctor",
        &format!("ftp://u@127.0.0.1:{port}/"),
        "--json",
        "--timeout",
        "2",
    ]);
    let run = s.run_within(cmd, Duration::from_secs(60));
    let probe = |name: &str| {
        run.json()
            .into_iter()
            .find(|v| v["type"] == "probe" && v["name"] == name)
            .unwrap_or_else(|| panic!("no probe {name}\n{}", run.explain()))
    };
    assert_eq!(probe("active mode")["verdict"], "failed", "{}", run.explain());
    let rtt = probe("round trip");
    assert_eq!(rtt["verdict"], "ok", "{rtt}\n{}", run.explain());
}
