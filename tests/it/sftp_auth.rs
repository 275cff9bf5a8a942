//! SFTP logins against a real OpenSSH sshd: ssh-agent, key files of every
//! common type, encrypted keys, passwords, and OpenSSH's order (agent, then
//! key files, then password). sshd's `Accepted ...` log lines show which
//! method and which key each session used.
//!
//! Every run gets HOME inside the scratch area; SSH_AUTH_SOCK is set only
//! when a test's own agent should be seen.

use std::fs;
use std::path::Path;

use crate::common::*;
use crate::harness::{self, SshAgent, SshServer};

/// `barge sync SRC_DIR sftp://...` with a private HOME, no agent unless
/// given, and only `flags` for the login.
fn upload(s: &Scratch, server: &SshServer, agent: Option<&SshAgent>, env: &[(&str, &str)], flags: &[&str]) -> Run {
    upload_to(s, server, &server.url(), agent, env, flags)
}

fn upload_to(
    s: &Scratch,
    server: &SshServer,
    url: &str,
    agent: Option<&SshAgent>,
    env: &[(&str, &str)],
    flags: &[&str],
) -> Run {
    let mut cmd = s.barge();
    cmd.env("HOME", s.path("home")).env_remove("SSH_AUTH_SOCK").envs(env.iter().copied());
    if let Some(agent) = agent {
        cmd.env("SSH_AUTH_SOCK", &agent.socket);
    }
    cmd.args(["sync", "--json", "--timeout", "20", "--known-hosts"])
        .arg(&server.known_hosts)
        .arg("--state")
        .arg(s.state())
        .arg(s.src())
        .arg(url)
        .args(flags);
    Run::of(cmd.output().expect("run barge"))
}

/// Asserts the run logged in and uploaded `name`, and that every session
/// sshd accepted used `method` (e.g. "publickey") and, if given, the key
/// with fingerprint `key`.
fn assert_logged_in(run: &Run, server: &SshServer, name: &str, method: &str, key: Option<&str>) {
    run.expect_code(0);
    assert!(server.root.join(name).is_file(), "{name} not uploaded\n{}", run.explain());
    let accepted = server.accepted_logins();
    assert!(!accepted.is_empty(), "sshd logged no login\n{}", server.logs());
    for line in &accepted {
        assert!(line.contains(&format!("Accepted {method} for {}", server.user)), "{line}\n{accepted:?}");
        if let Some(key) = key {
            assert!(line.contains(key), "expected key {key}: {line}");
        }
    }
}

fn home_ssh(s: &Scratch) -> std::path::PathBuf {
    let dir = s.path("home/.ssh");
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn fingerprint_of(private: &Path) -> String {
    harness::fingerprint(&private.with_extension("pub"))
}

#[test]
fn the_agent_alone_logs_in_when_no_key_file_exists() {
    let server = harness::ssh_server_with(&["PasswordAuthentication no"]);
    let s = Scratch::new();
    write(&s.src(), "a.txt", b"agent");
    let key = harness::client_key(&s.path("keys"), "agent_key", "ed25519", None, "");
    server.authorize_key(&harness::public_key(&key));
    let agent = SshAgent::start();
    agent.add(&key);
    let fingerprint = fingerprint_of(&key);
    // The only copy of the key is now the agent's.
    fs::remove_file(&key).unwrap();

    let without = upload(&s, &server, None, &[], &[]);
    without.expect_code(3);
    assert!(!server.root.join("a.txt").exists());

    let run = upload(&s, &server, Some(&agent), &[], &[]);
    assert_logged_in(&run, &server, "a.txt", "publickey", Some(&fingerprint));

    // An agent whose keys the server does not know does not get in.
    let stranger = SshAgent::start();
    stranger.add(&harness::client_key(&s.path("keys"), "stranger", "ed25519", None, ""));
    fs::remove_file(server.root.join("a.txt")).unwrap();
    let _ = fs::remove_file(s.state());
    let run = upload(&s, &server, Some(&stranger), &[], &[]);
    run.expect_code(3);
    assert!(run.stderr.contains("ssh-agent"), "the message says the agent was tried\n{}", run.explain());
}

/// One key type through `--identity`, on a server that takes only keys.
fn key_file_logs_in(kind: &str, bits: Option<u32>, server_lines: &[&str]) {
    let mut lines = vec!["PasswordAuthentication no"];
    lines.extend_from_slice(server_lines);
    let server = harness::ssh_server_with(&lines);
    let s = Scratch::new();
    write(&s.src(), "k.txt", kind.as_bytes());
    let key = harness::client_key(&s.path("keys"), &format!("id_{kind}"), kind, bits, "");
    server.authorize_key(&harness::public_key(&key));
    let run = upload(&s, &server, None, &[], &["--identity", &key.to_string_lossy()]);
    assert_logged_in(&run, &server, "k.txt", "publickey", Some(&fingerprint_of(&key)));
}

#[test]
fn ed25519_key_file() {
    key_file_logs_in("ed25519", None, &[]);
}

#[test]
fn ecdsa_nistp256_key_file() {
    key_file_logs_in("ecdsa", Some(256), &[]);
}

/// About one P-256 key in 256 has a private scalar with a leading zero
/// byte, which OpenSSH stores one byte short; the ssh-key crate refuses
/// such files, barge reads them (plain and encrypted).
#[test]
fn ecdsa_key_whose_scalar_is_one_byte_short() {
    let server = harness::ssh_server_with(&["PasswordAuthentication no"]);
    let s = Scratch::new();
    write(&s.src(), "z.txt", b"short scalar");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
    server.authorize_key(&harness::public_key(&fixtures.join("ecdsa_p256_short_scalar")));
    let fingerprint = fingerprint_of(&fixtures.join("ecdsa_p256_short_scalar"));
    for (file, env) in
        [("ecdsa_p256_short_scalar", vec![]), ("ecdsa_p256_short_scalar_encrypted", vec![("KEY_PASS", "fixture-pass")])]
    {
        let key = s.path("keys").join(file);
        fs::create_dir_all(key.parent().unwrap()).unwrap();
        fs::copy(fixtures.join(file), &key).unwrap();
        let _ = fs::remove_file(server.root.join("z.txt"));
        let _ = fs::remove_file(s.state());
        let mut flags = vec!["--identity", key.to_str().unwrap()];
        if !env.is_empty() {
            flags.extend(["--passphrase-env", "KEY_PASS"]);
        }
        let run = upload(&s, &server, None, &env, &flags);
        assert_logged_in(&run, &server, "z.txt", "publickey", Some(&fingerprint));
    }
}

/// RSA keys sign with SHA-2 (the SHA-1 `ssh-rsa` is off in OpenSSH 9):
/// servers that accept only one of the two hashes both let the key in.
#[test]
fn rsa_key_file_signs_with_rsa_sha2_256_and_512() {
    key_file_logs_in("rsa", Some(2048), &["PubkeyAcceptedAlgorithms rsa-sha2-256"]);
    key_file_logs_in("rsa", Some(2048), &["PubkeyAcceptedAlgorithms rsa-sha2-512"]);
}

#[test]
fn rsa_key_in_the_agent_signs_with_rsa_sha2() {
    for algorithm in ["rsa-sha2-256", "rsa-sha2-512"] {
        let accepted = format!("PubkeyAcceptedAlgorithms {algorithm}");
        let server = harness::ssh_server_with(&["PasswordAuthentication no", &accepted]);
        let s = Scratch::new();
        write(&s.src(), "r.txt", b"rsa via agent");
        let key = harness::client_key(&s.path("keys"), "agent_rsa", "rsa", Some(2048), "");
        server.authorize_key(&harness::public_key(&key));
        let agent = SshAgent::start();
        agent.add(&key);
        let run = upload(&s, &server, Some(&agent), &[], &[]);
        assert_logged_in(&run, &server, "r.txt", "publickey", Some(&fingerprint_of(&key)));
    }
}

/// An encrypted default key (~/.ssh/id_ecdsa) opens with the passphrase
/// from `--passphrase-env`; a wrong one fails clearly (exit 3) and is never
/// shown.
#[test]
fn encrypted_default_key_with_passphrase_env() {
    let server = harness::ssh_server_with(&["PasswordAuthentication no"]);
    let s = Scratch::new();
    write(&s.src(), "e.txt", b"encrypted");
    let passphrase = "Correct-Horse-Battery-7";
    let key = harness::client_key(&home_ssh(&s), "id_ecdsa", "ecdsa", Some(256), passphrase);
    server.authorize_key(&harness::public_key(&key));

    let wrong = "Wrong-Passphrase-Value-9";
    let run = upload(&s, &server, None, &[("KEY_PASS", wrong)], &["--passphrase-env", "KEY_PASS"]);
    run.expect_code(3);
    assert!(run.stderr.contains("cannot decrypt") && run.stderr.contains("KEY_PASS"), "{}", run.explain());
    assert!(run.stderr.contains("id_ecdsa"), "the message names the key\n{}", run.explain());
    assert!(!run.stderr.contains(wrong) && !run.stdout.contains(wrong), "{}", run.explain());

    let run = upload(&s, &server, None, &[], &[]);
    run.expect_code(3);
    assert!(run.stderr.contains("--passphrase-env"), "the message says how to unlock it\n{}", run.explain());

    let run = upload(&s, &server, None, &[("KEY_PASS", passphrase)], &["--passphrase-env", "KEY_PASS"]);
    assert_logged_in(&run, &server, "e.txt", "publickey", Some(&fingerprint_of(&key)));
    assert!(!run.stderr.contains(passphrase) && !run.stdout.contains(passphrase), "{}", run.explain());
}

/// What a server in the order test is offered: an agent key, a default
/// key file, a password; each authorized or not.
struct Offer {
    agent_key_works: bool,
    key_file_works: bool,
}

/// Offers all three methods; returns the server (to read its log), the run,
/// and the fingerprints of the agent key and the key file.
fn offer_all(offer: Offer) -> (SshServer, Run, String, String) {
    let server = harness::ssh_server();
    let s = Scratch::new();
    write(&s.src(), "o.txt", b"order");
    let agent_key = harness::client_key(&s.path("keys"), "agent_key", "ed25519", None, "");
    let file_key = harness::client_key(&home_ssh(&s), "id_ed25519", "ed25519", None, "");
    if offer.agent_key_works {
        server.authorize_key(&harness::public_key(&agent_key));
    }
    if offer.key_file_works {
        server.authorize_key(&harness::public_key(&file_key));
    }
    let agent = SshAgent::start();
    agent.add(&agent_key);
    let password = server.password.clone().expect("password logins are on");
    let run = upload(&s, &server, Some(&agent), &[("BARGE_PASSWORD", &password)], &[]);
    (server, run, fingerprint_of(&agent_key), fingerprint_of(&file_key))
}

#[test]
fn logins_follow_openssh_order_agent_then_key_files_then_password() {
    let (server, run, agent_print, _) = offer_all(Offer { agent_key_works: true, key_file_works: true });
    assert_logged_in(&run, &server, "o.txt", "publickey", Some(&agent_print));

    let (server, run, _, file_print) = offer_all(Offer { agent_key_works: false, key_file_works: true });
    assert_logged_in(&run, &server, "o.txt", "publickey", Some(&file_print));

    let (server, run, _, _) = offer_all(Offer { agent_key_works: false, key_file_works: false });
    assert_logged_in(&run, &server, "o.txt", "password", None);
}

#[test]
fn password_from_netrc() {
    let server = harness::ssh_server();
    let password = server.password.clone().expect("password logins are on");
    let s = Scratch::new();
    write(&s.src(), "n.txt", b"netrc");
    fs::create_dir_all(s.path("home")).unwrap();
    let netrc = s.path("home/.netrc");
    fs::write(&netrc, format!("machine 127.0.0.1 login {} password {password}\n", server.user)).unwrap();
    let url_without_user = format!("sftp://127.0.0.1:{}{}", server.port, server.root.display());
    let run = upload_to(&s, &server, &url_without_user, None, &[], &[]);
    assert_logged_in(&run, &server, "n.txt", "password", None);
}

/// `sftp://alias/path` reaches the server only through the ssh config:
/// HostName, Port, User and IdentityFile (with `~` and `%r`) come from a
/// `Host` block with several patterns and a negation; a port in the URL
/// wins over the config's.
#[test]
fn a_host_alias_from_the_ssh_config() {
    let server = harness::ssh_server_with(&["PasswordAuthentication no"]);
    let s = Scratch::new();
    write(&s.src(), "c.txt", b"via config");
    let keys = s.path("home/keys");
    fs::create_dir_all(&keys).unwrap();
    fs::copy(&server.client_key, keys.join(format!("id_{}", server.user))).unwrap();
    let config = s.path("ssh_config");
    fs::write(
        &config,
        format!(
            "Host unrelated\n  Port 1\n\nHost mirror-* !mirror-bad other\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  \
             IdentityFile ~/keys/id_%r\n\nHost *\n  Port 2\n  User nobody\n",
            server.port, server.user
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let alias_url = |authority: &str| format!("sftp://{authority}{}", server.root.display());

    let run = upload_to(&s, &server, &alias_url("mirror-1"), None, &[], &["--ssh-config", &config]);
    assert_logged_in(
        &run,
        &server,
        "c.txt",
        "publickey",
        Some(&harness::fingerprint(&server.client_key.with_extension("pub"))),
    );

    // The URL's port wins: nothing listens on port 1.
    let run = upload_to(&s, &server, &alias_url("mirror-1:1"), None, &[], &["--ssh-config", &config]);
    run.expect_code(3);
    assert!(run.stderr.contains("127.0.0.1:1"), "{}", run.explain());

    // A file named that is not there is refused, as `ssh -F` refuses it
    // (a typo would send the alias to a host of that name).
    let missing = s.path("no_such_config").to_string_lossy().into_owned();
    let run = upload_to(&s, &server, &alias_url("mirror-1"), None, &[], &["--ssh-config", &missing]);
    assert!(run.code != 0 && run.stderr.contains("no such file"), "{}", run.explain());

    // ~/.ssh/config is the default; `--ssh-config none` reads nothing.
    fs::create_dir_all(s.path("home/.ssh")).unwrap();
    fs::copy(&config, s.path("home/.ssh/config")).unwrap();
    write(&s.src(), "d.txt", b"default config");
    let run = upload_to(&s, &server, &alias_url("mirror-2"), None, &[], &[]);
    run.expect_code(0);
    assert!(server.root.join("d.txt").is_file(), "{}", run.explain());
    let run = upload_to(
        &s,
        &server,
        &alias_url(&format!("{}@127.0.0.1:{}", server.user, server.port)),
        None,
        &[],
        &["--ssh-config", "none"],
    );
    run.expect_code(3);
    assert!(run.stderr.contains("no key or password"), "no IdentityFile without a config\n{}", run.explain());

    // An empty value anywhere is refused, as ssh refuses it, naming the
    // file and line; nothing is connected to or sent.
    let broken = s.path("ssh_config_empty");
    fs::write(
        &broken,
        format!("Host mirror-*\n  HostName 127.0.0.1\n  Port {}\nHost elsewhere\n  HostName \"\"\n", server.port),
    )
    .unwrap();
    write(&s.src(), "e.txt", b"must not arrive");
    let run = upload_to(&s, &server, &alias_url("mirror-3"), None, &[], &["--ssh-config", &broken.to_string_lossy()]);
    run.expect_code(3);
    let said = format!("{} line 5: HostName has no value", broken.display());
    assert!(run.stderr.contains(&said), "{}", run.explain());
    assert!(!server.root.join("e.txt").exists());
}
