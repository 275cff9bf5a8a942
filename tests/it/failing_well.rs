//! Failing well: every failure is recorded where monitoring looks, a
//! damaged state database heals, a revoked host key is refused.

use std::fs;

use crate::common::*;
use crate::harness::{self, FtpServerKind, FtpTls};

/// The value of one metric in a textfile barge wrote.
fn metric(text: &str, name: &str) -> Option<i64> {
    let line = text.lines().find(|l| l.starts_with(&format!("{name}{{")))?;
    line.rsplit_once(' ')?.1.parse().ok()
}

/// A run refused at login (or refused as a usage error) after a good run:
/// the log says so, the report is the fatal object, the metrics carry its
/// exit code and start time and keep the last success.
#[test]
fn a_run_that_fails_to_start_is_recorded_in_log_report_and_metrics() {
    let server = harness::ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    server.write_file("data/a.txt", b"a");
    let s = Scratch::new();
    let (log, report, metrics) = (s.path("barge.log"), s.path("report.json"), s.path("barge.prom"));
    let url = format!("ftp://{}@127.0.0.1:{}/data", server.user, server.port);
    let run = |password: &str, extra: &[&str]| {
        let mut cmd = s.barge();
        cmd.env("BARGE_PASSWORD", password)
            .args(["sync", &url])
            .arg(s.dst())
            .args(["--json", "--timeout", "10", "--state"])
            .arg(s.state())
            .arg("--log-file")
            .arg(&log)
            .arg("--report")
            .arg(&report)
            .arg("--metrics")
            .arg(&metrics)
            .args(extra);
        Run::of(cmd.output().expect("run barge"))
    };
    run(&server.password, &[]).expect_code(0);
    let good = fs::read_to_string(&metrics).unwrap();
    let success = metric(&good, "barge_last_success_timestamp_seconds").expect("a last success");
    std::thread::sleep(std::time::Duration::from_millis(1100));

    for (password, extra, code, said) in [
        ("not the password", &[][..], 3, "530"),
        (server.password.as_str(), &["--bwlimit", "0"][..], 2, "--bwlimit must be more than 0"),
    ] {
        let failed = run(password, extra);
        failed.expect_code(code);
        let logged = fs::read_to_string(&log).unwrap();
        let line = logged.lines().rev().find(|l| l.contains("fatal")).unwrap_or_else(|| panic!("log: {logged}"));
        assert!(line.contains(&format!("fatal (exit {code})")) && line.contains(said), "{line}");
        assert!(!logged.contains("not the password"), "no secret in the log");
        let value: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
        assert_eq!(value["type"], "fatal", "{value}");
        assert_eq!(value["exit_code"], code, "{value}");
        assert!(value["message"].as_str().unwrap().contains(said), "{value}");
        let text = fs::read_to_string(&metrics).unwrap();
        assert_eq!(metric(&text, "barge_last_run_exit_code"), Some(i64::from(code)), "{text}");
        assert_eq!(metric(&text, "barge_last_success_timestamp_seconds"), Some(success), "unchanged: {text}");
        assert!(metric(&text, "barge_last_run_start_timestamp_seconds").unwrap() > success, "{text}");
        // One series: the same job label as the good run's.
        let label = |t: &str| {
            t.lines()
                .find_map(|l| l.strip_prefix("barge_last_run_exit_code{")?.split_once('}'))
                .map(|(label, _)| label.to_string())
        };
        assert_eq!(label(&text), label(&good), "{text}");
    }
}
