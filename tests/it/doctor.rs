//! `barge doctor` against the real servers of the suite: healthy ones, and
//! ones configured wrong the ways production servers are (NAT, wrong TLS
//! mode, bad certificates, connection caps, unknown host keys).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{Run, Scratch};
use crate::harness::{self, FtpServer, FtpServerKind, FtpTls, ftp_server, ftp_server_with};

/// `barge doctor URL --json --timeout 3 <extra>` with the password in
/// BARGE_PASSWORD and an empty HOME (no ~/.netrc, no ~/.ssh).
fn doctor(url: &str, password: &str, extra: &[&str]) -> Run {
    let scratch = Scratch::new();
    let mut cmd = scratch.barge();
    cmd.arg("doctor").arg(url).args(["--timeout", "3"]).args(extra);
    cmd.env("BARGE_PASSWORD", password).env("HOME", scratch.dir.path()).env_remove("SSH_AUTH_SOCK");
    Run::of(cmd.output().expect("run barge doctor"))
}

fn ftp_url(server: &FtpServer, scheme: &str) -> String {
    format!("{scheme}://{}@127.0.0.1:{}/", server.user, server.port)
}

/// The JSON line of probe `name`.
fn probe(run: &Run, name: &str) -> Value {
    run.json()
        .into_iter()
        .find(|v| v["type"] == "probe" && v["name"] == name)
        .unwrap_or_else(|| panic!("no probe {name:?}\n{}", run.explain()))
}

fn verdict(run: &Run, name: &str) -> String {
    probe(run, name)["verdict"].as_str().unwrap_or_default().to_string()
}

fn text(value: &Value) -> String {
    format!("{} {}", value["measured"].as_str().unwrap_or(""), value["advice"].as_str().unwrap_or(""))
}

#[test]
fn healthy_ftp_servers_are_usable_with_features_listing_and_firewall() {
    for kind in FtpServerKind::ALL {
        let server = ftp_server(kind, FtpTls::None);
        server.write_file("hello.txt", b"hello");
        server.write_file("sub/deeper.txt", b"x");
        let run = doctor(&ftp_url(&server, "ftp"), &server.password, &["--json"]);
        let context = format!("{}\n{}", kind.name(), run.explain());
        assert_eq!(run.code, 0, "{context}");
        for name in ["tcp connect", "greeting", "login", "pwd", "passive EPSV", "passive PASV", "root listing"] {
            assert_eq!(verdict(&run, name), "ok", "{name}: {context}");
        }
        let features = probe(&run, "features");
        let offered: Vec<&str> =
            features["details"]["offered"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        assert!(offered.contains(&"EPSV"), "{context}");
        assert_eq!(offered.contains(&"MLSD"), kind != FtpServerKind::Vsftpd, "{context}");
        let listing = probe(&run, "root listing");
        assert_eq!(listing["details"]["entries"], 2, "hello.txt and sub: {context}");
        assert_eq!(listing["details"]["format"], if kind == FtpServerKind::Vsftpd { "Unix" } else { "Mlsd" });
        // Permission bits, which a sync keeps: MLSD's UNIX.mode, LIST's column.
        assert_eq!(verdict(&run, "permissions"), "ok", "{context}");
        assert_eq!(probe(&run, "permissions")["details"]["with_modes"], 2, "{context}");
        assert_eq!(verdict(&run, "active mode"), "ok", "loopback accepts the server's connection: {context}");
        let logins = probe(&run, "parallel logins");
        assert_eq!(logins["details"]["accepted"], 32, "no cap configured: {context}");

        // The firewall summary names the control port and the passive ports actually seen.
        let summary = run.summary();
        assert_eq!(summary["usable"], true);
        assert_eq!(summary["mode"], "passive (EPSV)", "{context}");
        let rules = summary["firewall"].as_array().unwrap();
        assert_eq!(rules[0]["ports"], server.port.to_string(), "{context}");
        assert_eq!(rules[0]["direction"], "outbound");
        let seen: Vec<u16> = [probe(&run, "passive EPSV"), probe(&run, "passive PASV")]
            .iter()
            .map(|p| p["details"]["port"].as_u64().unwrap() as u16)
            .collect();
        let ports = rules[1]["ports"].as_str().unwrap();
        for port in &seen {
            assert!((server.pasv_ports.0..=server.pasv_ports.1).contains(port), "{context}");
            assert!(ports.contains(&port.to_string()), "{ports} lacks {port}: {context}");
        }
        assert!(summary["suggested_parallel"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn text_output_has_one_line_per_probe_and_the_firewall_summary() {
    let server = ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    let run = doctor(&ftp_url(&server, "ftp"), &server.password, &["--max-probe-connections", "2"]);
    assert_eq!(run.code, 0, "{}", run.explain());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("ok       tcp connect")), "{}", run.stdout);
    assert!(lines.iter().any(|l| l.starts_with("ok       passive EPSV")), "{}", run.stdout);
    assert!(run.stdout.contains("Firewall: what must be open for passive (EPSV):"), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("outbound TCP to 127.0.0.1 port(s) {}: control connection", server.port)));
    assert!(run.stdout.contains("Result: usable for a sync"), "{}", run.stdout);
}

#[test]
fn nat_passive_address_is_detected_and_worked_around() {
    // The server announces 127.0.0.2 in PASV replies while its control address is
    // 127.0.0.1, where its passive ports listen: a NAT'ed server announcing its inside address.
    for (kind, setting) in [
        (FtpServerKind::Vsftpd, "pasv_address=127.0.0.2"),
        (FtpServerKind::PureFtpd, "-P127.0.0.2"),
        (FtpServerKind::Proftpd, "MasqueradeAddress 127.0.0.2"),
    ] {
        let server = ftp_server_with(kind, FtpTls::None, &[setting]);
        let run = doctor(&ftp_url(&server, "ftp"), &server.password, &["--json", "--max-probe-connections", "2"]);
        let context = format!("{}\n{}", kind.name(), run.explain());
        let pasv = probe(&run, "passive PASV");
        assert_eq!(pasv["verdict"], "warning", "{context}");
        assert_eq!(pasv["details"]["nat_detected"], true, "{context}");
        assert!(pasv["details"]["announced"].as_str().unwrap().starts_with("127.0.0.2:"), "{context}");
        assert!(pasv["details"]["connected"].as_str().unwrap().starts_with("127.0.0.1:"), "{context}");
        assert!(text(&pasv).contains("workaround applied"), "{context}");
        assert!(text(&pasv).contains("EPSV"), "the sync uses EPSV: {context}");
        assert_eq!(run.code, 0, "EPSV works, so a sync works: {context}");
    }
}

#[test]
fn implicit_tls_port_addressed_with_ftp_is_named() {
    let server = ftp_server(FtpServerKind::Vsftpd, FtpTls::Implicit);
    let run = doctor(&ftp_url(&server, "ftp"), &server.password, &["--json"]);
    assert_eq!(run.code, 3, "{}", run.explain());
    let greeting = probe(&run, "greeting");
    assert_eq!(greeting["verdict"], "failed");
    assert!(text(&greeting).contains("implicit TLS"), "{}", run.explain());
    assert!(text(&greeting).contains(&format!("ftps://127.0.0.1:{}/", server.port)), "{}", run.explain());
}

#[test]
fn explicit_tls_port_addressed_with_ftps_is_named() {
    let server = ftp_server(FtpServerKind::Proftpd, FtpTls::Explicit);
    let ca = server.ca_cert.display().to_string();
    let run = doctor(&ftp_url(&server, "ftps"), &server.password, &["--json", "--ca-file", &ca]);
    assert_eq!(run.code, 3, "{}", run.explain());
    let mode = probe(&run, "tls mode");
    assert_eq!(mode["verdict"], "failed", "{}", run.explain());
    assert!(text(&mode).contains("plain FTP") && text(&mode).contains("ftpes://"), "{}", run.explain());
}

#[test]
fn healthy_ftps_servers_show_certificate_and_session_reuse() {
    for (kind, tls, scheme) in [
        (FtpServerKind::Vsftpd, FtpTls::Explicit, "ftpes"),
        (FtpServerKind::Vsftpd, FtpTls::Implicit, "ftps"),
        (FtpServerKind::Proftpd, FtpTls::Explicit, "ftpes"),
        (FtpServerKind::PureFtpd, FtpTls::Explicit, "ftpes"),
    ] {
        let server = ftp_server(kind, tls);
        server.write_file("a.txt", b"a");
        let ca = server.ca_cert.display().to_string();
        let run = doctor(
            &ftp_url(&server, scheme),
            &server.password,
            &["--json", "--ca-file", &ca, "--max-probe-connections", "4"],
        );
        let context = format!("{} {scheme}\n{}", kind.name(), run.explain());
        assert_eq!(run.code, 0, "{context}");
        let cert = probe(&run, "tls certificate");
        assert_eq!(cert["verdict"], "ok", "{context}");
        assert_eq!(cert["details"]["certificate"]["subject"], "CN=localhost", "{context}");
        assert_eq!(cert["details"]["certificate"]["issuer"], "CN=barge test CA", "{context}");
        assert_eq!(verdict(&run, "passive EPSV"), "ok", "TLS data connections resume the session: {context}");
        let reuse = probe(&run, "tls session reuse");
        if kind == FtpServerKind::Vsftpd {
            assert!(text(&reuse).starts_with("required"), "require_ssl_reuse=YES: {context}");
        }
    }
}

/// A leaf certificate signed by the suite's CA, valid `start`..`end`
/// (`YYYYMMDDHHMMSSZ`), for `san`. Returns (cert, key).
fn make_cert(dir: &Path, name: &str, san: &str, start: &str, end: &str) -> (PathBuf, PathBuf) {
    harness::ensure_installed(); // makes the CA
    let tls = harness::cache_dir().join("tls");
    let run = |cmd: &mut Command| {
        let out = cmd.current_dir(dir).output().expect("run openssl");
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.pem"));
    run(Command::new("openssl").arg("genrsa").arg("-out").arg(&key).arg("2048"));
    run(Command::new("openssl")
        .args(["req", "-new", "-subj", "/CN=localhost", "-key"])
        .arg(&key)
        .args(["-out", "r.csr"]));
    std::fs::write(dir.join("ext"), format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\n")).unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
         default_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n",
    )
    .unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), format!("{:02X}\n", name.len() + 1)).unwrap();
    run(Command::new("openssl")
        .args(["ca", "-batch", "-notext", "-config", "ca.cnf", "-extfile", "ext", "-in", "r.csr"])
        .arg("-cert")
        .arg(tls.join("ca.pem"))
        .arg("-keyfile")
        .arg(tls.join("ca.key"))
        .args(["-startdate", start, "-enddate", end, "-out"])
        .arg(&cert));
    (cert, key)
}

#[test]
fn expired_and_mismatched_certificates_fail_naming_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let expired = make_cert(dir.path(), "expired", "DNS:localhost,IP:127.0.0.1", "20200101000000Z", "20200201000000Z");
    let other = make_cert(dir.path(), "other", "DNS:wrong.example.org", "20240101000000Z", "20450101000000Z");
    for ((cert, key), reason) in [(expired, "EXPIRED"), (other, "NAME MISMATCH")] {
        let cert_line = format!("rsa_cert_file={}", cert.display());
        let key_line = format!("rsa_private_key_file={}", key.display());
        let server = ftp_server_with(FtpServerKind::Vsftpd, FtpTls::Explicit, &[&cert_line, &key_line]);
        let ca = server.ca_cert.display().to_string();
        let run = doctor(
            &ftp_url(&server, "ftpes"),
            &server.password,
            &["--json", "--ca-file", &ca, "--max-probe-connections", "2"],
        );
        let context = format!("{reason}\n{}", run.explain());
        assert_eq!(run.code, 3, "{context}");
        let probe = probe(&run, "tls certificate");
        assert_eq!(probe["verdict"], "failed", "{context}");
        assert!(text(&probe).contains(reason), "{context}");
        // The rest is still diagnosed over an unverified session.
        assert_eq!(verdict(&run, "login"), "ok", "{context}");
    }
}

#[test]
fn connection_cap_stops_the_probe_at_the_421() {
    let server = ftp_server_with(FtpServerKind::Vsftpd, FtpTls::None, &["max_per_ip=3"]);
    let run = doctor(&ftp_url(&server, "ftp"), &server.password, &["--json"]);
    assert_eq!(run.code, 0, "{}", run.explain());
    let logins = probe(&run, "parallel logins");
    assert_eq!(logins["verdict"], "warning", "{}", run.explain());
    assert_eq!(logins["details"]["accepted"], 3, "{}", run.explain());
    assert!(logins["details"]["refusal"].as_str().unwrap().contains("421"), "{}", run.explain());
    assert!(run.summary()["suggested_parallel"].as_u64().unwrap() <= 3, "{}", run.explain());
}

#[test]
fn wrong_password_exits_3_and_never_prints_it() {
    let secret = "Wrong-Pass-7731-xyz";
    for kind in [FtpServerKind::Vsftpd, FtpServerKind::Proftpd] {
        let server = ftp_server(kind, FtpTls::None);
        for json in [true, false] {
            let extra: &[&str] = if json { &["--json"] } else { &[] };
            let run = doctor(&ftp_url(&server, "ftp"), secret, extra);
            assert_eq!(run.code, 3, "{}", run.explain());
            assert!(run.stdout.contains("login"), "{}", run.explain());
            assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "{}", run.explain());
        }
        // In the URL too.
        let url = format!("ftp://{}:{secret}@127.0.0.1:{}/", server.user, server.port);
        let run = doctor(&url, "", &["--json"]);
        assert_eq!(run.code, 3, "{}", run.explain());
        assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "{}", run.explain());
    }
}

#[test]
fn healthy_sftp_server_reports_banner_algorithms_key_login_extensions_and_sessions() {
    let server = harness::ssh_server();
    let (known, key) = (server.known_hosts.display().to_string(), server.client_key.display().to_string());
    let run = doctor(
        &server.url(),
        "",
        &["--json", "--known-hosts", &known, "--identity", &key, "--max-probe-connections", "4"],
    );
    let context = run.explain();
    assert_eq!(run.code, 0, "{context}");
    for name in [
        "tcp connect",
        "ssh banner",
        "algorithms",
        "host key",
        "auth methods",
        "login",
        "sftp",
        "round trip",
        "permissions",
    ] {
        assert_eq!(verdict(&run, name), "ok", "{name}: {context}");
    }
    assert!(probe(&run, "ssh banner")["measured"].as_str().unwrap().starts_with("SSH-2.0-OpenSSH"), "{context}");
    let algorithms = probe(&run, "algorithms");
    assert!(!algorithms["details"]["server"]["kex"].as_array().unwrap().is_empty(), "{context}");
    assert_eq!(algorithms["details"]["host_key"], "ssh-ed25519", "the harness's host key: {context}");
    let host_key = probe(&run, "host key");
    assert_eq!(host_key["details"]["status"], "known", "{context}");
    let pub_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pub_file.path(), &server.host_key_pub).unwrap();
    assert_eq!(host_key["details"]["fingerprint"], harness::fingerprint(pub_file.path()), "{context}");
    let offered = probe(&run, "auth methods")["details"]["offered"].clone();
    assert!(offered.as_array().unwrap().iter().any(|m| m == "publickey"), "{context}");
    assert!(probe(&run, "login")["details"]["method"].as_str().unwrap().contains(&key), "{context}");
    let sftp = probe(&run, "sftp");
    assert_eq!(sftp["details"]["version"], 3, "{context}");
    assert!(sftp["details"]["extensions"].as_array().unwrap().iter().any(|e| e == "posix-rename@openssh.com"));
    assert_eq!(probe(&run, "parallel sessions")["details"]["accepted"], 4, "{context}");
    let summary = run.summary();
    assert_eq!(summary["mode"], "sftp");
    assert_eq!(summary["firewall"][0]["ports"], server.port.to_string(), "{context}");
    assert_eq!(summary["firewall"][0]["direction"], "outbound");
}

#[test]
fn sftp_server_with_an_unknown_host_key_fails_with_its_fingerprint() {
    let server = harness::ssh_server();
    let scratch = Scratch::new();
    let empty = scratch.path("known_hosts");
    std::fs::write(&empty, "").unwrap();
    let (known, key) = (empty.display().to_string(), server.client_key.display().to_string());
    let run = doctor(&server.url(), "", &["--json", "--known-hosts", &known, "--identity", &key]);
    assert_eq!(run.code, 3, "{}", run.explain());
    let host_key = probe(&run, "host key");
    assert_eq!(host_key["verdict"], "failed", "{}", run.explain());
    let pub_file = scratch.path("host.pub");
    std::fs::write(&pub_file, &server.host_key_pub).unwrap();
    assert!(text(&host_key).contains(&harness::fingerprint(&pub_file)), "{}", run.explain());
    assert!(text(&host_key).contains("--accept-new-host-key"), "{}", run.explain());
    assert!(run.json().iter().all(|v| v["name"] != "login"), "no login to an unverified server: {}", run.explain());
    assert_eq!(std::fs::read_to_string(&empty).unwrap(), "", "the doctor records nothing");

    // The text form says the same in words; a wrong port is an FTP server, named as such.
    let run = doctor(&server.url(), "", &["--known-hosts", &known, "--identity", &key]);
    assert_eq!(run.code, 3);
    assert!(run.stdout.lines().any(|l| l.starts_with("failed   host key")), "{}", run.stdout);
    let ftp = ftp_server(FtpServerKind::Proftpd, FtpTls::None);
    let run = doctor(&format!("sftp://u@127.0.0.1:{}/", ftp.port), "", &["--json", "--known-hosts", &known]);
    assert_eq!(run.code, 3, "{}", run.explain());
    assert!(text(&probe(&run, "ssh banner")).contains("FTP server"), "{}", run.explain());
}

#[test]
fn active_ports_make_the_firewall_summary_an_inbound_range() {
    let server = ftp_server(FtpServerKind::Vsftpd, FtpTls::None);
    let ports = harness::free_port_range();
    let range = format!("{}-{}", ports.start(), ports.end());
    let run = doctor(
        &ftp_url(&server, "ftp"),
        &server.password,
        &["--json", "--active-ports", &range, "--max-probe-connections", "2"],
    );
    assert_eq!(run.code, 0, "{}", run.explain());
    assert_eq!(verdict(&run, "active mode"), "ok", "{}", run.explain());
    let summary = run.summary();
    assert!(summary["mode"].as_str().unwrap().starts_with("active ("), "{}", run.explain());
    let rules = summary["firewall"].as_array().unwrap();
    let inbound = rules.iter().find(|r| r["direction"] == "inbound").expect("an inbound rule");
    assert_eq!(inbound["ports"], range, "{}", run.explain());
}

/// `doctor --help` says that a remote's name from the config file works.
#[test]
fn doctor_help_says_a_config_remote_works() {
    let s = Scratch::new();
    let run = Run::of(s.barge().args(["doctor", "--help"]).output().unwrap());
    run.expect_code(0);
    assert!(run.stdout.contains("NAME:") && run.stdout.contains("config file"), "{}", run.explain());
}
