//! Jump hosts and proxies: SFTP through a second real sshd (ProxyJump in
//! ~/.ssh/config and `--jump`), each hop's host key checked; ssh_config
//! directives barge does not implement refused by name.
//!
//! On loopback every server is reachable directly, so the jump server's
//! own log (LogLevel DEBUG1: `server_request_direct_tcpip`) shows the
//! connection went through it.

use std::fs;

use crate::common::*;
use crate::harness::{self, SshServer};

/// A jump sshd that logs each forwarded connection, and the target behind it.
fn jump_and_target() -> (SshServer, SshServer) {
    let jump = harness::ssh_server_with(&["PasswordAuthentication no", "LogLevel DEBUG1"]);
    let target = harness::ssh_server_with(&["PasswordAuthentication no"]);
    (jump, target)
}

/// One known_hosts file with both servers' keys.
fn known_hosts_of(s: &Scratch, servers: &[&SshServer]) -> String {
    let path = s.path("known_hosts");
    let text: String = servers.iter().map(|server| fs::read_to_string(&server.known_hosts).unwrap()).collect();
    fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// `barge sync SRC URL` with a private HOME and no agent.
fn upload(s: &Scratch, url: &str, flags: &[&str]) -> Run {
    let mut cmd = s.barge();
    cmd.env("HOME", s.path("home")).env_remove("SSH_AUTH_SOCK").env_remove("ALL_PROXY").env_remove("all_proxy");
    cmd.args(["sync", "--json", "--timeout", "20", "--state"]).arg(s.state()).arg(s.src()).arg(url).args(flags);
    Run::of(cmd.output().expect("run barge"))
}

/// The forwarded connections the jump sshd logged to `port`.
fn forwarded_to(jump: &SshServer, port: u16) -> usize {
    jump.logs()
        .lines()
        .filter(|l| l.contains("server_request_direct_tcpip") && l.contains(&format!("port {port}")))
        .count()
}

#[test]
fn proxy_jump_from_the_ssh_config_goes_through_the_jump_host() {
    let (jump, target) = jump_and_target();
    let s = Scratch::new();
    write(&s.src(), "a.txt", b"through the jump host");
    let key = target.client_key.display();
    let config = s.path("ssh_config");
    fs::write(
        &config,
        format!(
            "Host target\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {key}\n  ProxyJump gw\n\n\
             Host gw\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {key}\n",
            target.port, target.user, jump.port, jump.user
        ),
    )
    .unwrap();
    let known_hosts = known_hosts_of(&s, &[&jump, &target]);
    let url = format!("sftp://target{}", target.root.display());
    let flags = ["--ssh-config", &config.to_string_lossy(), "--known-hosts", &known_hosts];
    let run = upload(&s, &url, &flags);
    run.expect_code(0);
    assert_eq!(fs::read(target.root.join("a.txt")).unwrap(), b"through the jump host");
    assert!(forwarded_to(&jump, target.port) >= 1, "no direct-tcpip to the target\n{}", jump.logs());
    assert!(!jump.accepted_logins().is_empty() && !target.accepted_logins().is_empty());

    // `--jump none` connects directly, as `ssh -J none` would.
    let before = forwarded_to(&jump, target.port);
    write(&s.src(), "b.txt", b"direct");
    let run = upload(&s, &url, &[&flags[..], &["--jump", "none"]].concat());
    run.expect_code(0);
    assert_eq!(forwarded_to(&jump, target.port), before, "went through the jump host\n{}", jump.logs());

    // A directive that changes where ssh connects, and barge does not do,
    // is an error naming it: nothing is connected to.
    fs::write(&config, format!("Host target\n  HostName 127.0.0.1\n  Port {}\n  ProxyCommand nc %h %p\n", target.port))
        .unwrap();
    write(&s.src(), "c.txt", b"must not arrive");
    let run = upload(&s, &url, &flags);
    run.expect_code(3);
    let said = format!("{} line 4: ProxyCommand is not supported", config.display());
    assert!(run.stderr.contains(&said), "{}", run.explain());
    assert!(!target.root.join("c.txt").exists());
}

#[test]
fn jump_on_the_command_line_and_each_hop_checks_its_own_host_key() {
    let (jump, target) = jump_and_target();
    let s = Scratch::new();
    write(&s.src(), "a.txt", b"jumped");
    let hop = format!("{}@127.0.0.1:{}", jump.user, jump.port);
    let known_hosts = known_hosts_of(&s, &[&jump, &target]);
    let key = target.client_key.to_string_lossy().into_owned();
    let flags = ["--jump", &hop, "--identity", &key, "--ssh-config", "none", "--known-hosts", &known_hosts];
    let run = upload(&s, &target.url(), &flags);
    run.expect_code(0);
    assert!(target.root.join("a.txt").is_file(), "{}", run.explain());
    assert!(forwarded_to(&jump, target.port) >= 1, "{}", jump.logs());

    // `doctor` goes the same way, and says so.
    let mut cmd = s.barge();
    cmd.env("HOME", s.path("home")).env_remove("SSH_AUTH_SOCK");
    cmd.args(["doctor", "--json", "--timeout", "20", "--max-probe-connections", "2"]).arg(target.url()).args(flags);
    let run = Run::of(cmd.output().expect("run barge doctor"));
    assert_eq!(run.code, 0, "{}", run.explain());
    let route = run.json().into_iter().find(|v| v["type"] == "probe" && v["name"] == "route").expect("route probe");
    assert_eq!(route["measured"], format!("through jump host {hop}"), "{}", run.explain());
    assert!(run.stdout.contains(&format!("{} through jump host", target.port)), "{}", run.explain());

    // The jump host's key is checked under its own name and port: recorded
    // as another key there, it is refused, and nothing goes past it.
    let wrong = s.path("known_hosts_wrong");
    fs::write(
        &wrong,
        format!(
            "[127.0.0.1]:{} {}\n{}",
            jump.port,
            target.host_key_pub,
            fs::read_to_string(&target.known_hosts).unwrap()
        ),
    )
    .unwrap();
    write(&s.src(), "b.txt", b"must not arrive");
    let before = forwarded_to(&jump, target.port);
    let wrong = wrong.to_string_lossy().into_owned();
    let run = upload(&s, &target.url(), &[&flags[..6], &["--known-hosts", &wrong]].concat());
    run.expect_code(3);
    let name = format!("[127.0.0.1]:{}", jump.port);
    assert!(run.stderr.contains("CHANGED") && run.stderr.contains(&name), "{}", run.explain());
    assert!(!target.root.join("b.txt").exists());
    assert_eq!(forwarded_to(&jump, target.port), before);
}

/// `barge sync SRC URL` with `env` added (ALL_PROXY among them).
fn upload_with_env(s: &Scratch, url: &str, env: &[(&str, &str)], flags: &[&str]) -> Run {
    let mut cmd = s.barge();
    cmd.env("HOME", s.path("home")).env_remove("SSH_AUTH_SOCK").env_remove("ALL_PROXY").env_remove("all_proxy");
    cmd.envs(env.iter().copied());
    cmd.args(["sync", "--json", "--timeout", "20", "--state"]).arg(s.state()).arg(s.src()).arg(url).args(flags);
    Run::of(cmd.output().expect("run barge"))
}

/// How many of the `carried` connections went to `server`'s passive ports.
fn data_connections(carried: &[String], server: &harness::FtpServer) -> usize {
    let (lo, hi) = server.pasv_ports;
    let passive = |port: &str| port.parse::<u16>().is_ok_and(|p| p >= lo && p <= hi);
    carried.iter().filter(|t| t.rsplit_once(':').is_some_and(|(_, port)| passive(port))).count()
}

#[test]
fn ftp_control_and_passive_data_connections_go_through_a_socks5_proxy() {
    let server = harness::ftp_server(harness::FtpServerKind::Vsftpd, harness::FtpTls::None);
    let secret = "pr0xy-s3cret";
    let proxy = harness::socks_proxy(Some(("proxyuser", secret)));
    let s = Scratch::new();
    for name in ["a.txt", "b.txt", "sub/c.txt"] {
        write(&s.src(), name, name.as_bytes());
    }
    // `localhost`: the name goes to the proxy, which resolves it.
    let url = format!("ftp://{}@localhost:{}/", server.user, server.port);
    let env = [("BARGE_PASSWORD", server.password.as_str()), ("ALL_PROXY", &proxy.url())];
    let run = upload_with_env(&s, &url, &env, &["--parallel", "2"]);
    run.expect_code(0);
    assert_eq!(fs::read(server.root.join("sub/c.txt")).unwrap(), b"sub/c.txt");
    let carried = proxy.carried();
    let control = format!("localhost:{}", server.port);
    let data = data_connections(&carried, &server);
    assert!(carried.contains(&control), "no control connection through the proxy: {carried:?}\n{}", proxy.logs());
    assert!(data >= 3, "three uploads (and listings) need passive data connections: {carried:?}");
    assert_eq!(carried.len(), carried.iter().filter(|t| t.starts_with("localhost:")).count(), "{carried:?}");
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "{}", run.explain());

    // A wrong proxy password is a clear failure, and not shown either.
    let wrong = format!("socks5://proxyuser:not-{secret}@127.0.0.1:{}", proxy.port);
    let run = upload_with_env(&s, &url, &[env[0], ("ALL_PROXY", &wrong)], &[]);
    assert_ne!(run.code, 0, "{}", run.explain());
    assert!(run.stderr.contains("refused the user name and password"), "{}", run.explain());
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "{}", run.explain());

    // Active mode cannot go through it: said before anything is sent.
    let run = upload_with_env(&s, &url, &env, &["--active"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("active mode (--active) cannot go through a SOCKS5 proxy"), "{}", run.explain());

    // A password in --proxy would be in the process list: refused, unrepeated.
    let run = upload_with_env(&s, &url, &env[..1], &["--proxy", &proxy.url()]);
    run.expect_code(2);
    assert!(run.stderr.contains("process list") && !run.stderr.contains(secret), "{}", run.explain());
}

#[test]
fn sftp_goes_through_a_socks5_proxy_and_doctor_names_it() {
    let server = harness::ssh_server_with(&["PasswordAuthentication no"]);
    let proxy = harness::socks_proxy(None);
    let s = Scratch::new();
    write(&s.src(), "a.txt", b"proxied");
    let url = format!("sftp://{}@localhost:{}{}", server.user, server.port, server.root.display());
    let (known, key) = (server.known_hosts.to_string_lossy(), server.client_key.to_string_lossy());
    let flags = ["--proxy", &proxy.url(), "--known-hosts", &known, "--identity", &key, "--ssh-config", "none"];
    let run = upload_with_env(&s, &url, &[], &flags);
    run.expect_code(0);
    assert!(server.root.join("a.txt").is_file());
    let target = format!("localhost:{}", server.port);
    assert!(proxy.carried().contains(&target), "{:?}\n{}", proxy.carried(), proxy.logs());

    let before = proxy.carried().len();
    let mut cmd = s.barge();
    cmd.env("HOME", s.path("home")).env_remove("SSH_AUTH_SOCK").env_remove("ALL_PROXY");
    cmd.args(["doctor", "--json", "--timeout", "20", "--max-probe-connections", "2"]).arg(&url).args(flags);
    let run = Run::of(cmd.output().expect("run barge doctor"));
    assert_eq!(run.code, 0, "{}", run.explain());
    let route = run.json().into_iter().find(|v| v["type"] == "probe" && v["name"] == "route").expect("route probe");
    let said = format!("through SOCKS5 proxy socks5://127.0.0.1:{} (from --proxy)", proxy.port);
    assert_eq!(route["measured"], said, "{}", run.explain());
    assert!(proxy.carried().len() > before, "doctor connected around the proxy");
    assert_eq!(run.summary()["firewall"][0]["ports"], proxy.port.to_string(), "the one outbound connection");
}

/// A remote's `proxy` key: its connections go through that proxy (over
/// ALL_PROXY); `none` goes direct; a password there is refused.
#[test]
fn a_remotes_proxy_key_routes_its_connections() {
    let server = harness::ftp_server(harness::FtpServerKind::Proftpd, harness::FtpTls::None);
    let proxy = harness::socks_proxy(None);
    let s = Scratch::new();
    write(&s.src(), "a.txt", b"by the config's proxy");
    let config = |proxy_key: &str| {
        let path = s.path("barge.toml");
        let text = format!(
            "[remotes.far]\nurl = \"ftp://{}@localhost:{}/\"\npassword_env = \"FAR_PASSWORD\"\nproxy = \"{proxy_key}\"\n",
            server.user, server.port
        );
        fs::write(&path, text).unwrap();
        path
    };
    let sync = |config: std::path::PathBuf, env: &[(&str, &str)]| {
        let mut cmd = s.barge();
        cmd.env("HOME", s.path("home")).env_remove("ALL_PROXY").env_remove("all_proxy");
        cmd.env("FAR_PASSWORD", &server.password).envs(env.iter().copied());
        cmd.arg("--config").arg(config).args(["sync", "--json", "--timeout", "20", "--state"]);
        cmd.arg(s.state()).arg(s.src()).arg("far:up");
        Run::of(cmd.output().expect("run barge"))
    };
    // ALL_PROXY points nowhere: the remote's own proxy wins.
    let nowhere = [("ALL_PROXY", "socks5://127.0.0.1:1")];
    let run = sync(config(&proxy.url()), &nowhere);
    run.expect_code(0);
    assert_eq!(fs::read(server.root.join("up/a.txt")).unwrap(), b"by the config's proxy");
    let control = format!("localhost:{}", server.port);
    assert!(proxy.carried().contains(&control), "{:?}\n{}", proxy.carried(), proxy.logs());

    // `none`: direct, ALL_PROXY or not.
    write(&s.src(), "b.txt", b"direct");
    let before = proxy.carried().len();
    sync(config("none"), &nowhere).expect_code(0);
    assert!(server.root.join("up/b.txt").is_file());
    assert_eq!(proxy.carried().len(), before, "went through the proxy: {:?}", proxy.carried());

    // A password in the file: refused, where, and not repeated.
    let run = sync(config(&format!("socks5://u:hunter22@127.0.0.1:{}", proxy.port)), &[]);
    run.expect_code(2);
    assert!(run.stderr.contains("proxy") && run.stderr.contains("ALL_PROXY"), "{}", run.explain());
    assert!(!run.stderr.contains("hunter22"), "{}", run.explain());
}

/// Implicit TLS (ftps://) through the proxy: the control connection and
/// every protected data connection go through it, and none around it.
#[test]
fn implicit_tls_goes_through_a_socks5_proxy() {
    let server = harness::ftp_server(harness::FtpServerKind::Vsftpd, harness::FtpTls::Implicit);
    let proxy = harness::socks_proxy(None);
    let s = Scratch::new();
    for name in ["a.txt", "sub/b.txt"] {
        write(&s.src(), name, name.as_bytes());
    }
    let url = format!("ftps://{}@localhost:{}/", server.user, server.port);
    let ca = server.ca_cert.to_string_lossy().into_owned();
    let env = [("BARGE_PASSWORD", server.password.as_str())];
    let run = upload_with_env(&s, &url, &env, &["--proxy", &proxy.url(), "--ca-file", &ca, "--parallel", "2"]);
    run.expect_code(0);
    assert_eq!(fs::read(server.root.join("sub/b.txt")).unwrap(), b"sub/b.txt");
    let carried = proxy.carried();
    assert!(carried.contains(&format!("localhost:{}", server.port)), "{carried:?}\n{}", proxy.logs());
    let data = data_connections(&carried, &server);
    assert!(data >= 2, "two uploads need protected data connections through the proxy: {carried:?}");
}

/// `barge doctor` probes an FTP server the way a sync reaches it: through
/// the proxy, control and data connections both, with the proxy as the one
/// firewall rule; active mode is said to be impossible there.
#[test]
fn ftp_doctor_probes_through_the_proxy() {
    for tls in [harness::FtpTls::None, harness::FtpTls::Implicit] {
        let server = harness::ftp_server(harness::FtpServerKind::Vsftpd, tls);
        let proxy = harness::socks_proxy(None);
        let s = Scratch::new();
        let scheme = if tls == harness::FtpTls::Implicit { "ftps" } else { "ftp" };
        let url = format!("{scheme}://{}@localhost:{}/", server.user, server.port);
        let mut cmd = s.barge();
        cmd.env("HOME", s.path("home")).env_remove("ALL_PROXY").env_remove("all_proxy");
        cmd.env("BARGE_PASSWORD", &server.password).args(["doctor", "--json", "--timeout", "10"]).arg(&url);
        cmd.args(["--proxy", &proxy.url(), "--ca-file"]).arg(&server.ca_cert).args(["--max-probe-connections", "2"]);
        let run = Run::of(cmd.output().expect("run barge doctor"));
        assert_eq!(run.code, 0, "{scheme}: {}", run.explain());
        let probe =
            |name: &str| run.json().into_iter().find(|v| v["type"] == "probe" && v["name"] == name).unwrap_or_default();
        let said = format!("through SOCKS5 proxy socks5://127.0.0.1:{} (from --proxy)", proxy.port);
        assert_eq!(probe("route")["measured"], said, "{}", run.explain());
        assert_eq!(probe("passive EPSV")["verdict"], "ok", "{}", run.explain());
        assert!(probe("active mode")["measured"].as_str().unwrap_or("").contains("cannot connect back"));
        let carried = proxy.carried();
        assert!(carried.contains(&format!("localhost:{}", server.port)), "{carried:?}");
        assert!(data_connections(&carried, &server) > 0, "no data connection went through the proxy: {carried:?}");
        assert_eq!(run.summary()["firewall"][0]["ports"], proxy.port.to_string(), "{}", run.explain());
        assert_eq!(run.summary()["firewall"].as_array().map(Vec::len), Some(1), "{}", run.explain());
    }
}
