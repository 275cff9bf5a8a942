//! The config file against the real servers: named remotes (secret from an
//! owner-only file, SSH options, bandwidth caps), named jobs run with
//! `barge run`, `NAME:path` wherever a URL goes, `barge jobs` / `remotes`,
//! and mistakes reported with file, line and key (exit 2).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use crate::common::*;
use crate::harness::{self, FtpServerKind, FtpTls};

fn write_config(s: &Scratch, text: &str) -> String {
    let path = s.path("barge.toml");
    fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn secret_file(s: &Scratch, secret: &str, mode: u32) -> String {
    let path = s.path("ftp.pw");
    fs::write(&path, format!("{secret}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path.to_string_lossy().into_owned()
}

fn barge(s: &Scratch, config: &str, args: &[&str]) -> Run {
    let mut cmd = s.barge();
    cmd.arg("--config").arg(config).args(args).env("HOME", s.path("home"));
    Run::of(cmd.output().expect("run barge"))
}

#[test]
fn a_named_job_mirrors_from_a_named_ftp_remote_with_its_secret_from_a_file() {
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    server.write_file("pub/data/a.txt", b"alpha");
    server.write_file("pub/data/sub/b.bin", &bytes(1, 70_000));
    server.write_file("pub/data/skip.tmp", b"temporary");
    let s = Scratch::new();
    let pw = secret_file(&s, &server.password, 0o600);
    let mirror = s.path("mirror");
    let state = s.path("nightly.db");
    let config = write_config(
        &s,
        &format!(
            "# nightly mirror\n[remotes.origin]\nurl = \"ftp://{user}@127.0.0.1:{port}/pub\"\npassword_file = \"{pw}\"\n\
             parallel = 2\n\n[jobs.nightly]\nsource = \"origin:data\"\ndestination = \"{dst}\"\ndelete = true\n\
             exclude = [\"*.tmp\"]\nstate = \"{state}\"\nmax_delete = 5\n",
            user = server.user,
            port = server.port,
            dst = mirror.display(),
            state = state.display(),
        ),
    );
    // A stale file the job deletes.
    write(&mirror, "old.txt", b"old");

    let dry = barge(&s, &config, &["run", "nightly", "--dry-run", "--json"]);
    dry.expect_code(0);
    assert!(!mirror.join("a.txt").exists() && mirror.join("old.txt").exists(), "--dry-run changed nothing");

    let run = barge(&s, &config, &["run", "nightly", "--json"]);
    run.expect_code(0);
    assert_eq!(fs::read(mirror.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(fs::read(mirror.join("sub/b.bin")).unwrap(), bytes(1, 70_000));
    assert!(!mirror.join("skip.tmp").exists(), "the job's exclude applies\n{}", run.explain());
    assert!(!mirror.join("old.txt").exists(), "the job's delete applies\n{}", run.explain());
    assert!(state.exists(), "the job's state file is used");
    assert!(!run.stdout.contains(&server.password) && !run.stderr.contains(&server.password));

    // NAME:path is accepted by sync too, and a no-op rerun of the job copies nothing.
    let other = s.path("other");
    let sync = barge(&s, &config, &["sync", "origin:/pub/data/sub", &other.to_string_lossy(), "--json"]);
    sync.expect_code(0);
    assert_eq!(fs::read(other.join("b.bin")).unwrap(), bytes(1, 70_000));
    let again = barge(&s, &config, &["run", "nightly", "--json"]);
    again.expect_code(0);
    assert_eq!(again.count("files_transferred"), 0, "{}", again.explain());

    let jobs = barge(&s, &config, &["jobs"]);
    jobs.expect_code(0);
    assert!(jobs.stdout.starts_with("nightly\torigin:data -> "), "{}", jobs.explain());
    assert!(jobs.stdout.contains("delete") && jobs.stdout.contains("max_delete 5)"), "{}", jobs.explain());
    let remotes = barge(&s, &config, &["remotes"]);
    remotes.expect_code(0);
    assert!(remotes.stdout.contains(&format!("origin\tftp://{}@127.0.0.1:{}/pub", server.user, server.port)));
    assert!(remotes.stdout.contains(&format!("password_file {pw}")) && remotes.stdout.contains("parallel 2"));
    assert!(!remotes.stdout.contains(&server.password), "{}", remotes.explain());
}

#[test]
fn a_password_file_others_can_read_is_refused_naming_the_line() {
    let s = Scratch::new();
    let pw = secret_file(&s, "Top-Secret-991", 0o640);
    let config = write_config(
        &s,
        &format!(
            "[remotes.r]\nurl = \"ftp://u@127.0.0.1:1/\"\npassword_file = \"{pw}\"\n[jobs.j]\nsource = \"r:\"\ndestination = \"/tmp/x\"\n"
        ),
    );
    let run = barge(&s, &config, &["run", "j"]);
    run.expect_code(2);
    assert!(run.stderr.contains("line 3, key `remotes.r.password_file`"), "{}", run.explain());
    assert!(run.stderr.contains("readable by others (mode 640)"), "{}", run.explain());
    assert!(!run.stderr.contains("Top-Secret"), "{}", run.explain());
}

#[test]
fn config_mistakes_exit_2_naming_file_line_and_key() {
    let s = Scratch::new();
    for (text, expected) in [
        (
            "[jobs.j]\nsource = \"/a\"\ndestination = \"/b\"\ndelet = true\n",
            "line 4, key `jobs.j.delet`: unknown field",
        ),
        ("[jobs.j]\nsource = \"/a\"\ndestination = \"/b\"\nbwlimit = \"fast\"\n", "line 4, key `jobs.j.bwlimit`"),
        ("[jobs.j]\nsource = \"gone:/a\"\ndestination = \"/b\"\n", "line 2, key `jobs.j.source`: `gone:` is not"),
        ("[remotes.r]\nurl = \"ftp://h/\"\nparallel = -1\n", "line 3, key `remotes.r.parallel`"),
        // 0 is not "no timeout" (it would fail everything at once).
        ("[remotes.r]\nurl = \"ftp://h/\"\ntimeout = 0\n", "line 3, key `remotes.r.timeout`: a timeout of 0"),
        (
            "[jobs.j]\nsource = \"/a\"\ndestination = \"/b\"\ntimeout = 0\n",
            "line 4, key `jobs.j.timeout`: a timeout of 0",
        ),
        ("[jobs.j]\nsource = \"/a\"\ndestination = \"/b\"\nchmod = \"F6x4\"\n", "line 4, key `jobs.j.chmod`: --chmod"),
    ] {
        let config = write_config(&s, text);
        for args in [&["jobs"][..], &["run", "j"], &["sync", "/a", "/b"]] {
            let run = barge(&s, &config, args);
            run.expect_code(2);
            assert!(run.stderr.contains(&format!("config {config}, {expected}")), "{args:?}\n{}", run.explain());
        }
    }
    let run = barge(&s, &write_config(&s, ""), &["sync", "--timeout", "0", "/a", "/b"]);
    run.expect_code(2);
    assert!(run.stderr.contains("at least 1 second"), "{}", run.explain());
    // --config names a file that must exist; the default location may be absent.
    let run = barge(&s, &s.path("missing.toml").to_string_lossy(), &["jobs"]);
    run.expect_code(2);
    assert!(run.stderr.contains("cannot read it"), "{}", run.explain());
    let mut cmd = s.barge();
    cmd.arg("jobs").env("HOME", s.path("home")).env("XDG_CONFIG_HOME", s.path("xdg"));
    let run = Run::of(cmd.output().unwrap());
    run.expect_code(0);
    assert!(run.stderr.contains("no config file"), "{}", run.explain());
    // The default location is read.
    fs::create_dir_all(s.path("xdg/barge")).unwrap();
    fs::write(s.path("xdg/barge/config.toml"), "[jobs.home]\nsource = \"/a\"\ndestination = \"/b\"\n").unwrap();
    let run = Run::of(cmd.output().unwrap());
    assert!(run.stdout.starts_with("home\t/a -> /b"), "{}", run.explain());
}

/// An SFTP remote's key, known_hosts and bandwidth cap come from the
/// config; `barge doctor NAME:` diagnoses it.
#[test]
fn an_sftp_remote_carries_its_ssh_options_and_bandwidth_cap() {
    let server = harness::ssh_server();
    let s = Scratch::new();
    write(&s.src(), "big.bin", &bytes(7, 3 << 20));
    let config = write_config(
        &s,
        &format!(
            "[remotes.box]\nurl = \"{url}\"\nidentity = \"{key}\"\nknown_hosts = \"{known}\"\nbwlimit = \"1M\"\n\n\
             [jobs.backup]\nsource = \"{src}\"\ndestination = \"box:backup\"\n",
            url = server.url(),
            key = server.client_key.display(),
            known = server.known_hosts.display(),
            src = s.src().display(),
        ),
    );
    let started = Instant::now();
    let run = barge(&s, &config, &["run", "backup", "--json"]);
    let took = started.elapsed();
    run.expect_code(0);
    assert_eq!(fs::read(server.root.join("backup/big.bin")).unwrap(), bytes(7, 3 << 20));
    // 3 MiB at 1 MiB/s: the remote's cap held the whole run back.
    assert!(took.as_secs_f64() >= 1.5, "took {took:?}: the remote's bwlimit was not applied");

    let doctor = barge(&s, &config, &["doctor", "box:", "--json", "--max-probe-connections", "2"]);
    assert_eq!(doctor.code, 0, "{}", doctor.explain());
    let login = doctor.json().into_iter().find(|v| v["name"] == "login").unwrap();
    assert!(login["details"]["method"].as_str().unwrap().contains(&server.client_key.display().to_string()));
    assert!(Path::new(&server.root.join("backup")).is_dir());
}

/// Shell completions and the man page come from the clap definitions, so
/// they name every command and flag barge has.
#[test]
fn completions_and_man_page_cover_the_commands() {
    // What each offers is tested in docs.rs (through bash, and with man -l).
    let s = Scratch::new();
    let run = Run::of(s.barge().arg("man").output().unwrap());
    run.expect_code(0);
    assert!(run.stdout.starts_with(".TH BARGE 1"), "{}", &run.stdout[..200]);
    assert!(run.stdout.contains("barge\\-sync"), "subcommands listed");
    let run = Run::of(s.barge().args(["completions", "tcsh"]).output().unwrap());
    run.expect_code(2);
}

/// A job's `perms = false` is `--no-perms`; its `chmod` is `--chmod`.
#[test]
fn a_jobs_permission_keys_are_its_flags() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    write(&s.src(), "run.sh", b"#!/bin/sh\n");
    fs::set_permissions(s.src().join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let (src, dst) = (s.src().to_string_lossy().into_owned(), s.dst().to_string_lossy().into_owned());
    let mode = |path: &std::path::Path| fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    let text = format!(
        "[jobs.plain]\nsource = \"{src}\"\ndestination = \"{dst}/plain\"\nperms = false\n\n\
         [jobs.changed]\nsource = \"{src}\"\ndestination = \"{dst}/changed\"\nchmod = \"Fgo-rx\"\n"
    );
    let config = write_config(&s, &text);
    for job in ["plain", "changed"] {
        barge(&s, &config, &["run", job]).expect_code(0);
    }
    assert_ne!(mode(&s.dst().join("plain/run.sh")), 0o755, "perms = false keeps the source's bits off");
    assert_eq!(mode(&s.dst().join("changed/run.sh")), 0o700);
}

/// A job's `owner`, `group` and `numeric_ids` are `--owner`, `--group`, `--numeric-ids`.
#[test]
fn a_jobs_owner_keys_are_its_flags() {
    use std::os::unix::fs::MetadataExt;
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    write(&s.src(), "a.txt", b"a");
    std::os::unix::fs::lchown(s.src().join("a.txt"), Some(42_101), Some(42_102)).unwrap();
    let (src, dst) = (s.src().to_string_lossy().into_owned(), s.dst().to_string_lossy().into_owned());
    let text = format!(
        "[jobs.kept]\nsource = \"{src}\"\ndestination = \"{dst}/kept\"\nowner = true\ngroup = true\nnumeric_ids = true\n\n\
         [jobs.group]\nsource = \"{src}\"\ndestination = \"{dst}/group\"\ngroup = true\n"
    );
    let config = write_config(&s, &text);
    for job in ["kept", "group"] {
        barge(&s, &config, &["run", job]).expect_code(0);
    }
    let ids = |path: &str| {
        let meta = fs::metadata(s.dst().join(path)).unwrap();
        (meta.uid(), meta.gid())
    };
    assert_eq!(ids("kept/a.txt"), (42_101, 42_102));
    assert_eq!(ids("group/a.txt"), (0, 42_102));
}
