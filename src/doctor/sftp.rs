//! SSH/SFTP probes: TCP connect, the server's banner and the algorithms
//! barge and it agree on, the host key and its known_hosts status, which
//! login methods the server offers and which one worked, the SFTP version
//! and extensions, the round trip, and how many sessions it accepts.
//!
//! The banner and algorithm lists are read off the wire (the server's
//! first bytes and its KEXINIT, sent in the clear); the host key, login
//! and SFTP probes go through the backend's own connection code, so what
//! the doctor reports is what a sync will do.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::{PublicKey, PublicKeyOrCertificate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::firewall::FirewallRule;
use super::{DoctorOptions, Probe, Report, show_duration, suggest_parallel};
use crate::backend::sftp::hostkey::{self, Verdict};
use crate::backend::sftp::session::{self, ConnectParams, SftpConn, Transport};
use crate::backend::sftp::{self as sftp_backend};
use crate::error::ErrorKind;
use crate::location::RemoteLocation;

/// The SFTP extensions a user cares about, and what each one buys.
const EXTENSIONS: [(&str, &str); 4] = [
    ("posix-rename@openssh.com", "atomic replace of a file by its new version"),
    ("statvfs@openssh.com", "free space on the server"),
    ("hardlink@openssh.com", "hard links"),
    ("fsync@openssh.com", "data flushed to the server's disk before the rename"),
];

/// The name-lists of a KEXINIT message, in the order RFC 4253 §7.1 gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KexInit {
    pub kex: Vec<String>,
    pub host_key: Vec<String>,
    pub cipher_client_to_server: Vec<String>,
    pub cipher_server_to_client: Vec<String>,
    pub mac_client_to_server: Vec<String>,
    pub mac_server_to_client: Vec<String>,
    pub compression_client_to_server: Vec<String>,
}

/// Parses an SSH binary packet holding a KEXINIT (message 20), unencrypted
/// as the first packet after the banners always is.
pub fn parse_kexinit(packet: &[u8]) -> Result<KexInit, String> {
    let too_short = || "the server's key exchange packet is cut short".to_string();
    let padding = usize::from(*packet.first().ok_or_else(too_short)?);
    let payload = packet.get(1..packet.len().saturating_sub(padding)).ok_or_else(too_short)?;
    if payload.first() != Some(&20) {
        return Err(format!("expected the server's KEXINIT (message 20), got message {:?}", payload.first()));
    }
    let mut rest = payload.get(17..).ok_or_else(too_short)?; // message number + 16-byte cookie
    let mut lists = Vec::with_capacity(7);
    for _ in 0..7 {
        let len = rest.get(..4).ok_or_else(too_short)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let text = rest.get(4..4 + len).ok_or_else(too_short)?;
        let text = String::from_utf8_lossy(text);
        lists.push(text.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>());
        rest = &rest[4 + len..];
    }
    let mut lists = lists.into_iter();
    let mut next = || lists.next().unwrap_or_default();
    Ok(KexInit {
        kex: next(),
        host_key: next(),
        cipher_client_to_server: next(),
        cipher_server_to_client: next(),
        mac_client_to_server: next(),
        mac_server_to_client: next(),
        compression_client_to_server: next(),
    })
}

/// RFC 4253's rule: the first of the client's algorithms the server also offers.
pub fn negotiate<'a>(client: &'a [String], server: &[String]) -> Option<&'a str> {
    client.iter().find(|c| server.contains(c)).map(String::as_str)
}

/// Reads the server's identification line and its KEXINIT off a fresh connection.
async fn banner_and_kexinit(
    tcp: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin),
    wait: Duration,
) -> Result<(String, Result<KexInit, String>), String> {
    let mut buf = Vec::new();
    let banner = tokio::time::timeout(wait, async {
        // RFC 4253 §4.2: lines before the one starting with "SSH-" may come first.
        loop {
            let mut byte = [0u8; 1];
            let n = tcp.read(&mut byte).await.map_err(|e| format!("reading the banner: {e}"))?;
            if n == 0 {
                return Err(if buf.is_empty() {
                    "the server closed the connection without a word".to_string()
                } else {
                    format!("the server sent {:?} and closed the connection", String::from_utf8_lossy(&buf))
                });
            }
            if byte[0] == b'\n' {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                buf.clear();
                if line.starts_with("SSH-") {
                    return Ok(line);
                }
                if line.len() >= 4 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
                    return Err(format!("the server greeted with {line:?}: that is an FTP server, not SSH"));
                }
                continue;
            }
            buf.push(byte[0]);
            if buf.len() > 8192 {
                return Err("the server sent 8 KiB without an SSH banner".to_string());
            }
        }
    })
    .await
    .map_err(|_| {
        format!("no SSH banner within {}: the port speaks something else (TLS? HTTP?) or nothing", show_duration(wait))
    })??;
    let kexinit = tokio::time::timeout(wait, async {
        tcp.write_all(b"SSH-2.0-barge_doctor\r\n").await.map_err(|e| e.to_string())?;
        let mut len = [0u8; 4];
        tcp.read_exact(&mut len).await.map_err(|e| e.to_string())?;
        let len = u32::from_be_bytes(len) as usize;
        if len > 256 * 1024 {
            return Err(format!("a key exchange packet of {len} bytes"));
        }
        let mut packet = vec![0u8; len];
        tcp.read_exact(&mut packet).await.map_err(|e| e.to_string())?;
        parse_kexinit(&packet)
    })
    .await
    .unwrap_or_else(|_| Err("no key exchange offer from the server".to_string()));
    Ok((banner, kexinit))
}

/// The host key a server presented, and what known_hosts says of it.
type CaughtKey = (PublicKey, Result<Verdict, String>);

/// A russh handler that only records the host key and judges it, accepting
/// it only when known_hosts trusts it (or `--accept-new-host-key` and the
/// host is unknown): the auth-methods probe never talks to an unverified server.
struct KeyCatcher {
    params: Arc<ConnectParams>,
    seen: Arc<Mutex<Option<CaughtKey>>>,
}

impl client::Handler for KeyCatcher {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_key else { return Ok(false) };
        let verdict = hostkey::check(&self.params.host, self.params.port, key, &self.params.known_hosts);
        let accept = match &verdict {
            Ok(Verdict::Known) => true,
            Ok(Verdict::Unknown) => self.params.accept_new,
            _ => false,
        };
        if let Ok(mut slot) = self.seen.lock() {
            *slot = Some((key.clone(), verdict));
        }
        Ok(accept)
    }
}

/// Runs the SFTP probes, adding their lines to `report`.
pub async fn diagnose(remote: &RemoteLocation, options: &DoctorOptions, report: &mut Report) {
    let (remote, params) = match sftp_backend::connect_params(remote, &options.remote).await {
        Ok(ok) => ok,
        Err(e) => {
            let advice = match e.kind {
                ErrorKind::Auth => "put the user in the URL (sftp://user@host/path) or in ~/.ssh/config",
                _ => "fix the setting named above (ssh config, --identity, --passphrase-env, --known-hosts)",
            };
            report.push(Probe::failed("setup", e.to_string(), advice));
            return;
        }
    };
    let shown = params.shown.clone();
    let timeout = options.remote.timeout;
    report.push(route_probe(&params));

    // TCP connect (through the route, when there is one).
    let direct = params.jumps.is_empty() && params.proxy.is_none();
    let (mut tcp, _hops) = if direct {
        let Some(tcp) = direct_connect(&remote, &shown, timeout, report).await else { return };
        (Box::new(tcp) as Box<dyn Transport>, Vec::new())
    } else {
        let started = Instant::now();
        match session::open_transport(&params).await {
            Ok(opened) => {
                let took = started.elapsed();
                let route = params.route();
                report.push(Probe::ok("tcp connect", format!("{shown} {route} in {}", show_duration(took))).took(took));
                opened
            }
            Err(e) => {
                report.push(Probe::failed(
                    "route",
                    e.to_string(),
                    "check the proxy or jump host named above: a proxy's address and login (ALL_PROXY), a jump \
                     host's key (known_hosts), login (user, keys, ssh-agent) and that it may forward connections \
                     to the server (sshd AllowTcpForwarding)",
                ));
                return;
            }
        }
    };
    let (first_host, first_port) = params.first_connection();
    let purpose = match (&params.proxy, params.jumps.is_empty()) {
        (Some(_), _) => "SOCKS5 proxy",
        (None, true) => "SSH connection (SFTP)",
        (None, false) => "SSH connection to the first jump host",
    };
    report.firewall.push(FirewallRule::outbound(first_host, first_port.to_string(), purpose));

    // Banner and algorithms.
    match banner_and_kexinit(&mut tcp, options.short_wait()).await {
        Ok((banner, kexinit)) => {
            report.push(Probe::ok("ssh banner", banner.clone()).details(serde_json::json!({ "banner": banner })));
            report.push(algorithms_probe(&params, kexinit));
        }
        Err(why) => {
            let advice = if why.contains("FTP server") {
                format!("use ftp:// (or ftpes:// / ftps://) for {shown}, or the SSH port for sftp://")
            } else {
                "check that the port is the SSH server's (22 unless the administrator says otherwise)".to_string()
            };
            report.push(Probe::failed("ssh banner", why, advice));
            return;
        }
    }
    drop(tcp);

    // Host key, and the login methods the server offers (asked with "none").
    let Some(methods) = host_key_and_methods(&params, report).await else { return };
    report.push(
        Probe::ok("auth methods", format!("the server offers {}", methods.join(", ")))
            .details(serde_json::json!({ "offered": methods })),
    );

    // Login and SFTP, as a sync does it.
    let started = Instant::now();
    let first = match session::connect(&params).await {
        Ok(conn) => conn,
        Err(e) => {
            let (name, advice) = match e.kind {
                ErrorKind::Auth => (
                    "login",
                    format!(
                        "the server refused every method barge had for user {}: check the user, load the key \
                         into ssh-agent or give --identity FILE, or give a password (--password-env VAR, \
                         BARGE_PASSWORD, ~/.netrc){}",
                        params.credentials.user,
                        if methods.iter().any(|m| m == "password") {
                            ""
                        } else {
                            "; this server does not take passwords"
                        }
                    ),
                ),
                _ => (
                    "sftp",
                    "the SSH login worked but SFTP did not start: the server may not run the sftp subsystem \
                     (sshd_config Subsystem sftp)"
                        .to_string(),
                ),
            };
            report.push(Probe::failed(name, e.to_string(), advice));
            return;
        }
    };
    let method = params.working_method().unwrap_or_else(|| "an unknown method".into());
    report.push(
        Probe::ok("login", format!("as {} with {method}", params.credentials.user))
            .took(started.elapsed())
            .details(serde_json::json!({ "user": params.credentials.user, "method": method })),
    );
    report.push(sftp_probe(&first));

    // Round trip: the median of a few stat requests.
    let rtt = round_trip(&first, &remote).await;
    match rtt {
        Some(rtt) => report
            .push(Probe::ok("round trip", format!("{} (median of 5 stat requests)", show_duration(rtt))).took(rtt)),
        None => report.push(Probe::warning(
            "round trip",
            "the server answered no stat request",
            "the session may be unreliable; check the server's logs",
        )),
    }
    root_probe(&first, &remote, report).await;

    // Sessions at once.
    let (accepted, refusal) = parallel_sessions(&params, first, options.max_probe_connections).await;
    let capped = refusal.is_some();
    let probe = match &refusal {
        None => Probe::ok(
            "parallel sessions",
            format!("{accepted} sessions at once (probed up to {})", options.max_probe_connections),
        ),
        Some(why) => Probe::warning(
            "parallel sessions",
            format!("{accepted} sessions at once, then: {why}"),
            format!(
                "keep --parallel below {}: the server (MaxStartups, a per-IP limit or a firewall) refuses more",
                accepted + 1
            ),
        ),
    };
    report.push(probe.details(serde_json::json!({ "accepted": accepted, "refusal": refusal })));
    report.mode = Some("sftp".into());
    report.suggested_parallel = Some(suggest_parallel(rtt.unwrap_or_default(), accepted, capped));
}

/// How the server is reached: directly, or which jump hosts.
fn route_probe(params: &ConnectParams) -> Probe {
    let jumps: Vec<String> = params.jumps.iter().map(|hop| format!("{}@{}", hop.credentials.user, hop.shown)).collect();
    let proxy = params.proxy.as_ref().map(ToString::to_string);
    Probe::ok("route", params.route()).details(serde_json::json!({ "jumps": jumps, "proxy": proxy }))
}

/// The TCP connect probe without a route; `None` when the doctor must
/// stop here.
async fn direct_connect(
    remote: &RemoteLocation,
    shown: &str,
    timeout: Duration,
    report: &mut Report,
) -> Option<TcpStream> {
    let started = Instant::now();
    let connected = tokio::time::timeout(timeout, TcpStream::connect((remote.host.as_str(), remote.port))).await;
    let tcp = match connected {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            let advice = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                "nothing listens on that port, or a firewall rejects it: check the host and port (SSH is 22)"
            } else {
                "check the host name; a firewall may drop the connection: outbound TCP to this port must be open"
            };
            report.push(Probe::failed("tcp connect", format!("{shown}: {e}"), advice));
            return None;
        }
        Err(_) => {
            report.push(Probe::failed(
                "tcp connect",
                format!("{shown}: no answer within {}", show_duration(timeout)),
                "a firewall drops the connection, or the host is down: outbound TCP to this port must be open",
            ));
            return None;
        }
    };
    let took = started.elapsed();
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    report.push(Probe::ok("tcp connect", format!("{shown} ({peer}) in {}", show_duration(took))).took(took));
    Some(tcp)
}

fn algorithms_probe(params: &ConnectParams, kexinit: Result<KexInit, String>) -> Probe {
    let server = match kexinit {
        Ok(server) => server,
        Err(why) => {
            return Probe::warning(
                "algorithms",
                why,
                "the key exchange offer could not be read; the login below shows whether it matters",
            );
        }
    };
    let preferred = session::ssh_config(params).preferred;
    let kex: Vec<String> = preferred.kex.iter().map(|n| n.as_ref().to_string()).collect();
    let key: Vec<String> = preferred.key.iter().map(|a| a.to_string()).collect();
    let cipher: Vec<String> = preferred.cipher.iter().map(|n| n.as_ref().to_string()).collect();
    let mac: Vec<String> = preferred.mac.iter().map(|n| n.as_ref().to_string()).collect();
    let chosen_kex = negotiate(&kex, &server.kex);
    let chosen_key = negotiate(&key, &server.host_key);
    let chosen_cipher = negotiate(&cipher, &server.cipher_client_to_server);
    let aead = chosen_cipher.is_some_and(|c| c.contains("gcm") || c.contains("chacha20"));
    let chosen_mac = if aead { Some("implicit (AEAD cipher)") } else { negotiate(&mac, &server.mac_client_to_server) };
    let details = serde_json::json!({
        "kex": chosen_kex, "host_key": chosen_key, "cipher": chosen_cipher, "mac": chosen_mac,
        "server": {
            "kex": server.kex, "host_key": server.host_key,
            "cipher": server.cipher_client_to_server, "mac": server.mac_client_to_server,
        },
    });
    let missing: Vec<&str> =
        [("key exchange", chosen_kex), ("host key", chosen_key), ("cipher", chosen_cipher), ("MAC", chosen_mac)]
            .iter()
            .filter(|(_, c)| c.is_none())
            .map(|(what, _)| *what)
            .collect();
    if !missing.is_empty() {
        return Probe::failed(
            "algorithms",
            format!("no {} algorithm in common with the server", missing.join(", ")),
            "the server offers only algorithms barge does not implement (old SHA-1/CBC ones?): ask its \
             administrator to enable a modern set (curve25519, ed25519, aes-gcm or chacha20-poly1305)",
        )
        .details(details);
    }
    let show = |c: Option<&str>| c.unwrap_or("?").to_string();
    Probe::ok(
        "algorithms",
        format!(
            "kex {}, host key {}, cipher {}, mac {}",
            show(chosen_kex),
            show(chosen_key),
            show(chosen_cipher),
            show(chosen_mac)
        ),
    )
    .details(details)
}

/// The host key probe; then, on a connection that trusts it, the methods
/// the server offers. `None` when the doctor must stop here.
async fn host_key_and_methods(params: &Arc<ConnectParams>, report: &mut Report) -> Option<Vec<String>> {
    let seen = Arc::new(Mutex::new(None));
    let handler = KeyCatcher { params: Arc::clone(params), seen: Arc::clone(&seen) };
    let config = Arc::new(session::ssh_config(params));
    let (stream, _hops) = match session::open_transport(params).await {
        Ok(opened) => opened,
        Err(e) => {
            report.push(Probe::failed("host key", e.to_string(), "the server could not be reached again"));
            return None;
        }
    };
    let connected = tokio::time::timeout(params.timeout, client::connect_stream(config, stream, handler)).await;
    let caught = seen.lock().ok().and_then(|mut s| s.take());
    let file = params.known_hosts.display().to_string();
    let name = hostkey::host_pattern(&params.host, params.port);
    let Some((key, verdict)) = caught else {
        let why = match connected {
            Err(_) => "the key exchange timed out".to_string(),
            Ok(Err(e)) => format!("the key exchange failed: {e}"),
            Ok(Ok(_)) => "the server presented no plain host key".to_string(),
        };
        report.push(Probe::failed(
            "host key",
            why,
            "barge and the server could not agree on a key exchange; see the algorithms line",
        ));
        return None;
    };
    let (algorithm, fingerprint) = (key.algorithm().to_string(), hostkey::fingerprint(&key));
    let details = |status: &str| serde_json::json!({ "algorithm": algorithm, "fingerprint": fingerprint, "status": status, "known_hosts": file });
    let probe = match verdict {
        Ok(Verdict::Known) => {
            Probe::ok("host key", format!("{algorithm} {fingerprint}, recorded in {file}")).details(details("known"))
        }
        Ok(Verdict::Unknown) if params.accept_new => Probe::warning(
            "host key",
            format!("{algorithm} {fingerprint}: {name} is not in {file}"),
            "--accept-new-host-key records it at the first sync: check the fingerprint with the server's administrator",
        )
        .details(details("unknown")),
        Ok(Verdict::Unknown) => Probe::failed(
            "host key",
            format!("{algorithm} {fingerprint}: {name} is not in {file}"),
            "an unknown server is refused: check this fingerprint with the server's administrator, then run \
             with --accept-new-host-key to record it (or add it to known_hosts, or give --known-hosts FILE)",
        )
        .details(details("unknown")),
        Ok(Verdict::Changed { lines }) | Ok(Verdict::OtherTypes { lines }) => Probe::failed(
            "host key",
            format!(
                "CHANGED: the server presents {algorithm} {fingerprint}, but {file} records another key for \
                 {name} (line {})",
                lines.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
            ),
            "possible man-in-the-middle attack: barge refuses. If the administrator replaced the key on purpose, \
             remove those lines (ssh-keygen -R) and run again with --accept-new-host-key",
        )
        .details(details("changed")),
        Ok(Verdict::Revoked { line }) => Probe::failed(
            "host key",
            format!("REVOKED: {algorithm} {fingerprint} is marked @revoked in {file} (line {line})"),
            "the key is compromised: barge refuses it; ask the server's administrator for its new key",
        )
        .details(details("revoked")),
        Ok(Verdict::CertAuthority { lines }) => Probe::failed(
            "host key",
            format!(
                "{algorithm} {fingerprint}: {file} vouches for {name} only through @cert-authority (line {})",
                lines.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
            ),
            "barge checks plain host keys, not certificates: add the host's own key to known_hosts",
        )
        .details(details("cert-authority")),
        Err(why) => Probe::failed("host key", why, "fix or replace the known_hosts file (--known-hosts FILE)")
            .details(details("unreadable")),
    };
    let trusted = probe.verdict != super::Verdict::Failed;
    report.push(probe);
    if !trusted {
        return None;
    }
    let Ok(Ok(mut ssh)) = connected else {
        report.push(Probe::failed(
            "auth methods",
            "the connection closed after the key exchange",
            "check the server's logs",
        ));
        return None;
    };
    let asked = tokio::time::timeout(params.timeout, ssh.authenticate_none(params.credentials.user.clone())).await;
    let methods = match asked {
        Ok(Ok(russh::client::AuthResult::Failure { remaining_methods, .. })) => {
            remaining_methods.iter().map(|m| <&str>::from(m).to_string()).collect()
        }
        Ok(Ok(russh::client::AuthResult::Success)) => vec!["none (no login needed)".to_string()],
        Ok(Err(e)) => {
            report.push(Probe::warning("auth methods", e.to_string(), "the login below shows what works"));
            Vec::new()
        }
        Err(_) => {
            report.push(Probe::warning("auth methods", "no answer", "the login below shows what works"));
            Vec::new()
        }
    };
    let _ = ssh.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    Some(methods)
}

fn sftp_probe(conn: &SftpConn) -> Probe {
    let info = &conn.info;
    let mut have = Vec::new();
    let mut lacking = Vec::new();
    for (name, buys) in EXTENSIONS {
        if info.extensions.iter().any(|e| e == name) {
            have.push(name.split('@').next().unwrap_or(name).to_string());
        } else {
            lacking.push((name, buys));
        }
    }
    let details = serde_json::json!({
        "version": info.version,
        "extensions": info.extensions,
        "read_len": info.read_len,
        "write_len": info.write_len,
    });
    let measured = format!(
        "version {}, extensions: {}; {} KiB reads, {} KiB writes",
        info.version,
        if have.is_empty() { "none of posix-rename, statvfs, hardlink, fsync".to_string() } else { have.join(", ") },
        info.read_len / 1024,
        info.write_len / 1024
    );
    if lacking.iter().any(|(name, _)| *name == "posix-rename@openssh.com") {
        return Probe::warning(
            "sftp",
            measured,
            "no posix-rename: barge replaces files by a rename sequence (the old version is moved aside first), \
             not atomically",
        )
        .details(details);
    }
    Probe::ok("sftp", measured).details(details)
}

async fn round_trip(conn: &SftpConn, remote: &RemoteLocation) -> Option<Duration> {
    let path =
        if remote.path.is_empty() { "/".to_string() } else { String::from_utf8_lossy(&remote.path).into_owned() };
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        // A missing path still costs one round trip; only silence fails.
        if tokio::time::timeout(Duration::from_secs(10), conn.sftp.stat(path.clone())).await.is_ok() {
            times.push(started.elapsed());
        }
    }
    times.sort();
    times.get(times.len() / 2).copied()
}

async fn root_probe(conn: &SftpConn, remote: &RemoteLocation, report: &mut Report) {
    let path = String::from_utf8_lossy(&remote.path).into_owned();
    match conn.sftp.stat(path.clone()).await {
        Ok(attrs) if attrs.attrs.is_dir() => {
            report.push(Probe::ok("root", format!("{path} is a directory")));
            // SFTP carries permission bits in every listing and takes them
            // with setstat: a sync keeps them both ways.
            if let Some(mode) = attrs.attrs.permissions {
                let measured = format!("shown (the root is {:o}): a sync keeps them both ways", mode & 0o7777);
                report.push(Probe::ok("permissions", measured));
            }
        }
        Ok(_) => report.push(Probe::ok("root", format!("{path} is a file (a sync copies that one file)"))),
        Err(e) => {
            let error = session::classify(e, "stat", &path);
            if error.kind == ErrorKind::NotFound {
                report.push(Probe::warning(
                    "root",
                    format!("{path} does not exist"),
                    "as a destination it is created; as a source, check the path",
                ));
            } else {
                report.push(Probe::failed("root", error.to_string(), "check the path and its permissions"));
            }
        }
    }
}

/// Opens sessions one after another, keeping them all, up to `max` (the
/// first counts): how many the server takes at once, and why it stopped.
async fn parallel_sessions(params: &Arc<ConnectParams>, first: SftpConn, max: usize) -> (usize, Option<String>) {
    let mut open = vec![first];
    let mut refusal = None;
    while open.len() < max {
        match session::connect(params).await {
            Ok(conn) => open.push(conn),
            Err(e) => {
                refusal = Some(e.to_string());
                break;
            }
        }
    }
    let accepted = open.len();
    for conn in open {
        let _ = conn.ssh.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
    (accepted, refusal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_list(out: &mut Vec<u8>, names: &str) {
        out.extend_from_slice(&(names.len() as u32).to_be_bytes());
        out.extend_from_slice(names.as_bytes());
    }

    #[test]
    fn kexinit_lists_are_read_and_negotiated_by_the_client_order() {
        let mut payload = vec![20u8];
        payload.extend_from_slice(&[7u8; 16]);
        for list in ["curve25519-sha256,ecdh-sha2-nistp256", "ssh-ed25519", "aes128-ctr,aes256-gcm@openssh.com"] {
            name_list(&mut payload, list);
        }
        for list in ["aes256-gcm@openssh.com", "hmac-sha2-256", "hmac-sha2-256", "none", "none", "", ""] {
            name_list(&mut payload, list);
        }
        payload.extend_from_slice(&[0, 0, 0, 0, 0]); // first_kex_packet_follows, reserved
        let mut packet = vec![4u8];
        packet.extend_from_slice(&payload);
        packet.extend_from_slice(&[0; 4]);
        let kexinit = parse_kexinit(&packet).unwrap();
        assert_eq!(kexinit.kex, ["curve25519-sha256", "ecdh-sha2-nistp256"]);
        assert_eq!(kexinit.host_key, ["ssh-ed25519"]);
        assert_eq!(kexinit.mac_client_to_server, ["hmac-sha2-256"]);
        let ours: Vec<String> = ["aes256-gcm@openssh.com", "aes128-ctr"].map(String::from).to_vec();
        assert_eq!(negotiate(&ours, &kexinit.cipher_client_to_server), Some("aes256-gcm@openssh.com"));
        assert_eq!(negotiate(&ours[1..], &kexinit.host_key), None);
        assert!(parse_kexinit(&packet[..20]).is_err(), "a cut packet is an error, not a panic");
        assert!(parse_kexinit(&[0, 21, 0]).is_err());
        assert!(parse_kexinit(&[]).is_err());
    }
}
