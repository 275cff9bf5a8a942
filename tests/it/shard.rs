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
