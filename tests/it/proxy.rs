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
