//! `--shard I/N`: N runs (machines) share one job by the top-level entries
//! they own, each with its own state database, and together make the exact
//! mirror; a shard never copies or deletes what another owns.

use std::fs;

use crate::common::*;
use crate::harness::{self, FtpServerKind, FtpTls};

#[test]
fn three_shards_running_at_once_make_one_exact_mirror() {
    let server = harness::ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    for d in 0..12 {
        for f in 0..3 {
            server.write_file(&format!("dir{d}/f{f}.bin"), &bytes(d * 10 + f, 5_000));
        }
        server.write_file(&format!("top{d}.txt"), format!("top {d}").as_bytes());
    }
    let s = Scratch::new();
    // Extraneous entries of every shard: each is deleted by its owner only.
    for d in 0..6 {
        write(&s.dst(), format!("stale{d}/x"), b"stale");
    }
    let url = format!("ftp://{}@127.0.0.1:{}/", server.user, server.port);
    let dst = s.dst().to_string_lossy().into_owned();
    // No --state: each shard derives its own database (they run at once, so
    // one shared database would make two of them exit 4 on its lock).
    let children: Vec<_> = (0..3)
        .map(|i| {
            let mut cmd = s.barge();
            cmd.env("BARGE_PASSWORD", &server.password)
                .args(["sync", &url, &dst, "--delete", "--json", "--shard", &format!("{i}/3")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let runs: Vec<Run> = children.into_iter().map(|c| Run::of(c.wait_with_output().unwrap())).collect();
    let mut copied = 0;
    for run in &runs {
        run.expect_code(0);
        let n = run.count("files_transferred");
        assert!(n > 0, "every shard had work: {}", run.explain());
        copied += n;
    }
    assert_eq!(copied, 12 * 3 + 12, "each file copied by exactly one shard");
    // Same names and contents (FTP gives whole seconds, so mtimes are not compared).
    let contents = |root: &std::path::Path| {
        snapshot(root)
            .into_iter()
            .map(|(k, v)| (k, if let Node::File { hash, .. } = v { hash } else { String::new() }))
            .collect::<Vec<_>>()
    };
    assert_eq!(contents(&server.root), contents(&s.dst()));
    let dbs = fs::read_dir(s.path("xdg-state/barge"))
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".db")));
    assert_eq!(dbs.count(), 3, "one state database per shard");

    // A rerun of one shard is a no-op, and never touches the others' files.
    server.write_file("dir0/f0.bin", b"changed");
    let mut cmd = s.barge();
    cmd.env("BARGE_PASSWORD", &server.password).args(["sync", &url, &dst, "--delete", "--json", "--shard", "0/3"]);
    let run = Run::of(cmd.output().unwrap());
    run.expect_code(0);
    assert!(run.count("files_transferred") <= 1, "{}", run.explain());
    assert_eq!(run.count("files_deleted"), 0, "{}", run.explain());
}

/// `--shard-depth`: one top-level directory of 40 subdirectories spreads
/// over 4 shards, the shards make the exact mirror together with
/// `--delete` on each, and every extraneous entry is deleted once, by its
/// owner: a stray directory above the depth too, which every shard walks
/// and its owner removes whole. `plan --shard-stats` says beforehand what
/// each shard gets: at depth 2 the 40 subdirectories are hashed (here one
/// shard would get 10 %), at depth 3 their 200 files (each shard 15-35 %).
#[test]
fn shard_depth_spreads_one_top_level_directory_over_four_shards() {
    let s = Scratch::new();
    for d in 0..40 {
        for f in 0..5 {
            write(&s.src(), format!("pub/d{d:02}/f{f}.bin"), &bytes(d * 10 + f, 2_000));
        }
    }
    write(&s.src(), "top.txt", b"top");
    write(&s.dst(), "old/x", b"stale");
    write(&s.dst(), "pub/stray.txt", b"stale");
    write(&s.dst(), "pub/d03/stray.bin", b"stale");
    write(&s.dst(), "pub/gone/y", b"stale");

    let stats = |depth: &str| {
        let mut cmd = s.barge();
        cmd.args(["plan", "--json", "--shard-stats", "4", "--shard-depth", depth]).arg(s.src()).arg(s.dst());
        let run = Run::of(cmd.output().unwrap());
        run.expect_code(0);
        serde_json::from_str::<serde_json::Value>(run.stdout.trim()).unwrap()
    };
    let shares = |value: &serde_json::Value| -> Vec<u64> {
        value["per_shard"].as_array().unwrap().iter().map(|s| s["files"].as_u64().unwrap()).collect()
    };
    let (two, three) = (stats("2"), stats("3"));
    assert_eq!((two["files"].as_u64(), two["shared_dirs"].as_u64()), (Some(201), Some(1)), "{two}");
    assert_eq!(three["shared_dirs"].as_u64(), Some(41), "{three}");
    assert_eq!(shares(&two).iter().sum::<u64>(), 201);
    assert!(shares(&two).iter().all(|&n| n % 5 == 0 || n % 5 == 1), "whole directories: {two}");

    let children: Vec<_> = (0..4)
        .map(|i| {
            let mut cmd = s.barge();
            cmd.args(["sync", "--delete", "--json", "--shard", &format!("{i}/4"), "--shard-depth", "3"])
                .arg(s.src())
                .arg(s.dst())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let runs: Vec<Run> = children.into_iter().map(|c| Run::of(c.wait_with_output().unwrap())).collect();
    let (mut copied, mut deleted) = (0, 0);
    for (i, run) in runs.iter().enumerate() {
        run.expect_code(0);
        let n = run.count("files_transferred");
        assert!((30..=71).contains(&n), "shard {i}: {n} of 201 files, outside 15-35 %: {}", run.explain());
        assert_eq!(n, shares(&three)[i], "as --shard-stats said");
        copied += n;
        deleted += run.count("files_deleted");
    }
    assert_eq!(copied, 201, "each file copied by exactly one shard");
    assert_eq!(deleted, 6, "each stray deleted once, by its owner");
    assert_mirrors(&s.src(), &s.dst());
}

/// The same against an SFTP destination: the owner of a stray directory
/// above the depth removes it whole on the server, listing it itself.
#[test]
fn shard_depth_removes_a_stray_directory_above_the_depth_on_an_sftp_server() {
    let server = harness::ssh_server();
    let s = Scratch::new();
    for d in 0..8 {
        write(&s.src(), format!("pub/d{d}/f.bin"), &bytes(d, 3_000));
    }
    server.write_file("mirror/old/x/deep.txt", b"stale");
    server.write_file("mirror/old/y.txt", b"stale");
    server.write_file("mirror/pub/gone/z.txt", b"stale");
    let dst = crate::sftp_sync::url(&server, "/mirror");
    let mut copied = 0;
    for i in 0..2 {
        let shard = format!("{i}/2");
        let run = crate::sftp_sync::sync(
            &s,
            &server,
            &s.src().to_string_lossy(),
            &dst,
            &["--delete", "--shard", &shard, "--shard-depth", "2"],
        );
        run.expect_code(0);
        copied += run.count("files_transferred");
    }
    assert_eq!(copied, 8);
    assert!(!server.root.join("mirror/old").exists() && !server.root.join("mirror/pub/gone").exists());
    for d in 0..8 {
        assert_eq!(fs::read(server.root.join(format!("mirror/pub/d{d}/f.bin"))).unwrap(), bytes(d, 3_000));
    }
}

/// The job key `shard_depth` is `--shard-depth` for `barge run JOB --shard`.
#[test]
fn a_jobs_shard_depth_key_splits_its_runs() {
    let s = Scratch::new();
    for d in 0..6 {
        write(&s.src(), format!("pub/d{d}/f.bin"), &bytes(d, 1_000));
    }
    let config = s.path("barge.toml");
    let job = |depth: u32| {
        format!(
            "[jobs.mirror]\nsource = \"{}\"\ndestination = \"{}\"\nshard_depth = {depth}\n",
            s.src().display(),
            s.dst().display()
        )
    };
    fs::write(&config, job(2)).unwrap();
    let mut copied = Vec::new();
    for i in 0..3 {
        let mut cmd = s.barge();
        cmd.arg("--config").arg(&config).args(["run", "mirror", "--json", "--shard", &format!("{i}/3")]);
        let run = Run::of(cmd.output().unwrap());
        run.expect_code(0);
        copied.push(run.count("files_transferred"));
    }
    assert_eq!(copied.iter().sum::<u64>(), 6);
    assert!(copied.iter().filter(|&&n| n > 0).count() >= 2, "split below pub/, not all in one shard: {copied:?}");
    assert_mirrors(&s.src(), &s.dst());

    fs::write(&config, job(0)).unwrap();
    let mut cmd = s.barge();
    cmd.arg("--config").arg(&config).args(["run", "mirror", "--shard", "0/3"]);
    let run = Run::of(cmd.output().unwrap());
    run.expect_code(2);
    assert!(run.stderr.contains("line 4") && run.stderr.contains("shard_depth"), "{}", run.stderr);
}
