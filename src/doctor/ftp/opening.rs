//! The opening of the main connection, each step reported: the greeting
//! (and which TLS mode the port speaks), FEAT, TLS and the certificate.

use std::sync::Arc;
use std::time::Instant;

use rustls::{CertificateError, ClientConfig};
use tokio::net::TcpStream;

use super::control::{Control, HandshakeError, Target, handshake};
use super::{Seen, insecure_config};
use crate::backend::ftp::protocol::{Reply, TlsMode, feature_lines, feature_names};
use crate::backend::ftp::tls as ftp_tls;
use crate::doctor::cert::{self, CertInfo};
use crate::doctor::{Probe, Report};

/// What a fresh control connection said first.
enum Greeting {
    /// 220: reported.
    Ready(Control),
    /// Another reply.
    Other(Reply),
    /// Nothing in time, or the connection failed: why.
    Silent(String),
}

/// Reads the greeting of a just-opened `ctl`, reporting it when it is a
/// 220; `None` when the connection broke at once (reported).
async fn greeting(
    ctl: Result<Control, String>,
    target: &Target,
    started: Instant,
    report: &mut Report,
) -> Option<Greeting> {
    let mut ctl = match ctl {
        Ok(ctl) => ctl,
        Err(why) => {
            report.push(Probe::failed("greeting", why, "the connection broke at once"));
            return None;
        }
    };
    Some(match ctl.reply_within(target.short).await {
        Ok(reply) if reply.code == 220 => {
            report.push(Probe::ok("greeting", reply.first().to_string()).took(started.elapsed()));
            Greeting::Ready(ctl)
        }
        Ok(reply) => Greeting::Other(reply),
        Err(why) => Greeting::Silent(why),
    })
}

/// Greeting, FEAT and TLS on the main connection, each reported.
/// Returns the connection, what FEAT said and whether the certificate was
/// accepted.
pub(super) async fn open_main(
    target: &Target,
    tcp: TcpStream,
    verifying: &ClientConfig,
    report: &mut Report,
) -> Option<(Control, Seen, bool)> {
    let shown = &target.shown;
    let mut seen = Seen::default();
    let mut cert_ok = true;
    let name = match target.server_name() {
        Ok(name) => name,
        Err(why) => {
            report.push(Probe::failed("tls", why, "use a host name or IP address"));
            return None;
        }
    };
    let started = Instant::now();
    let mut ctl = if target.mode == TlsMode::Implicit {
        let config = ftp_tls::per_connection(verifying);
        match handshake(tcp, Arc::clone(&config), name.clone(), target.timeout).await {
            Ok(tls) => {
                report.push(Probe::ok("tls mode", format!("implicit TLS on port {}", target.addr.port())));
                report_certificate(tls.get_ref().1, &target.host, true, report);
                let ctl = Control::implicit(tls, config, &target.route, target.timeout);
                match greeting(ctl, target, started, report).await? {
                    Greeting::Ready(ctl) => ctl,
                    Greeting::Other(reply) => {
                        report.push(Probe::failed("greeting", reply.text(), "the server refuses new sessions"));
                        return None;
                    }
                    Greeting::Silent(why) => {
                        report.push(Probe::failed("greeting", why, "no greeting inside TLS"));
                        return None;
                    }
                }
            }
            Err(HandshakeError::Certificate(err)) => {
                report.push(Probe::ok("tls mode", format!("implicit TLS on port {}", target.addr.port())));
                cert_ok = false;
                let insecure = insecure_config();
                let ctl = target.establish(TlsMode::Implicit, &insecure).await;
                report_refused_certificate(&err, target, ctl.as_ref().ok().and_then(|c| c.tls_session()), report);
                match ctl {
                    Ok(ctl) => ctl,
                    Err(_) => return None,
                }
            }
            Err(HandshakeError::Other(why)) => {
                // A plain greeting on this port: it is not an implicit one.
                let plain = target.establish(TlsMode::None, verifying).await;
                let advice = if plain.is_ok() {
                    format!(
                        "this port answers plain FTP: it is an explicit-TLS port, not an implicit one. Use \
                         ftpes://{shown}/ (AUTH TLS on this port), or ftps:// with the implicit port (usually 990)"
                    )
                } else {
                    "check that this port serves FTPS with implicit TLS (usually 990)".to_string()
                };
                report.push(Probe::failed("tls mode", format!("ftps:// (implicit TLS): {why}"), advice));
                return None;
            }
        }
    } else {
        match greeting(Control::new(tcp, &target.route, target.timeout), target, started, report).await? {
            Greeting::Ready(ctl) => ctl,
            Greeting::Other(reply) => {
                let text = reply.text();
                let advice = if text.starts_with("SSH-") {
                    format!("this is an SSH server: use sftp://{shown}/")
                } else if reply.code == 421 {
                    "the server refuses new sessions now (connection limit reached, or shutting down)".to_string()
                } else {
                    "this does not look like an FTP server".to_string()
                };
                report.push(Probe::failed("greeting", text, advice));
                return None;
            }
            Greeting::Silent(why) => {
                // Silence: a server that waits for a TLS ClientHello?
                let implicit = target.establish(TlsMode::Implicit, &insecure_config()).await;
                let (measured, advice) = if implicit.is_ok() {
                    (
                        format!("no plain greeting ({why}); this port speaks implicit TLS"),
                        format!("use ftps://{shown}/ (implicit TLS) instead of {}://", target.mode.scheme().as_str()),
                    )
                } else {
                    (why, "the server does not greet: is this an FTP port?".to_string())
                };
                report.push(Probe::failed("greeting", measured, advice));
                return None;
            }
        }
    };
    // FEAT, before login as the RFC allows (retried after login otherwise).
    match ctl.command("FEAT").await {
        Ok(reply) if reply.code == 211 => {
            seen.features = feature_names(&reply);
            report.push(features_probe(&seen, &reply));
        }
        Ok(reply) => report.push(Probe::warning(
            "features",
            format!("FEAT: {}", reply.text()),
            "the server lists no features: barge uses LIST, PASV and MDTM",
        )),
        Err(why) => {
            report.push(Probe::failed("features", why, "the control connection broke"));
            return None;
        }
    }
    if target.mode == TlsMode::Explicit {
        let reply = match ctl.command("AUTH TLS").await {
            Ok(reply) => reply,
            Err(why) => {
                report.push(Probe::failed("tls mode", why, "the control connection broke"));
                return None;
            }
        };
        if reply.code != 234 {
            report.push(Probe::failed(
                "tls mode",
                format!("AUTH TLS: {}", reply.text()),
                "the server does not offer explicit TLS on this port: use ftp:// (no encryption) or ftps:// on its \
                 implicit-TLS port (usually 990)",
            ));
            return None;
        }
        match ctl.upgrade(ftp_tls::per_connection(verifying), name).await {
            Ok(()) => {
                report.push(Probe::ok("tls mode", format!("explicit (AUTH TLS) on port {}", target.addr.port())));
                if let Some(session) = ctl.tls_session() {
                    report_certificate(session, &target.host, true, report);
                }
            }
            Err(HandshakeError::Certificate(err)) => {
                report.push(Probe::ok("tls mode", format!("explicit (AUTH TLS) on port {}", target.addr.port())));
                cert_ok = false;
                let insecure = insecure_config();
                let again = target.establish(TlsMode::Explicit, &insecure).await;
                report_refused_certificate(&err, target, again.as_ref().ok().and_then(|c| c.tls_session()), report);
                ctl = again.ok()?;
            }
            Err(HandshakeError::Other(why)) => {
                report.push(Probe::failed("tls mode", why, "the TLS handshake after AUTH TLS failed"));
                return None;
            }
        }
    } else if target.mode == TlsMode::None && seen.has("AUTH") {
        report.push(Probe::warning(
            "tls mode",
            "none: the password and data travel in clear, yet the server offers AUTH TLS",
            format!("use ftpes://{shown}/ to encrypt the session"),
        ));
    }
    Some((ctl, seen, cert_ok))
}

/// Which of the features barge uses the server offers.
fn features_probe(seen: &Seen, reply: &Reply) -> Probe {
    let wanted = ["MLSD", "MFMT", "HASH", "REST STREAM", "UTF8", "EPSV", "AUTH TLS"];
    let (have, missing): (Vec<&str>, Vec<&str>) = wanted.iter().partition(|w| seen.has(w));
    let mut measured = format!("offers {}", if have.is_empty() { "none".into() } else { have.join(", ") });
    if !missing.is_empty() {
        measured.push_str(&format!("; lacks {}", missing.join(", ")));
    }
    if !seen.has("MLSD") {
        measured.push_str(" (listings via LIST)");
    }
    Probe::ok("features", measured).details(serde_json::json!({
        "feat": feature_lines(reply).collect::<Vec<_>>(),
        "offered": have,
        "missing": missing,
    }))
}

/// The certificate of a verified (or `--insecure`) handshake.
fn report_certificate(session: &rustls::ClientConnection, host: &str, verified: bool, report: &mut Report) {
    let info = session.peer_certificates().and_then(|chain| chain.first()).and_then(|der| CertInfo::parse(der));
    let protocol = session.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
    let suite = session.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default();
    let Some(info) = info else {
        report.push(Probe::warning("tls certificate", "no readable certificate", "the server sent none we can read"));
        return;
    };
    let details = serde_json::json!({"certificate": info, "protocol": protocol, "cipher_suite": suite});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut problems = Vec::new();
    if info.not_after < now {
        problems.push(format!("EXPIRED on {}", cert::date(info.not_after)));
    }
    if !info.matches(host) {
        problems.push(format!("NAME MISMATCH: not valid for {host}"));
    }
    let measured = format!("{}; {protocol} {suite}", info.summary());
    let probe = if !verified || !problems.is_empty() {
        let why = if problems.is_empty() { "not verified".to_string() } else { problems.join("; ") };
        Probe::warning("tls certificate", format!("{measured}; {why}"), "--insecure: the certificate is not checked")
    } else if info.not_after - now < 30 * 86_400 {
        Probe::warning(
            "tls certificate",
            format!("{measured}; matches {host}"),
            format!("it expires on {}: have it renewed", cert::date(info.not_after)),
        )
    } else {
        Probe::ok("tls certificate", format!("{measured}; matches {host}"))
    };
    report.push(probe.details(details));
}

/// A refused certificate: why, and what it is (from a second, unverified
/// handshake).
fn report_refused_certificate(
    err: &CertificateError,
    target: &Target,
    session: Option<&rustls::ClientConnection>,
    report: &mut Report,
) {
    let info = session.and_then(|s| s.peer_certificates()).and_then(|c| c.first()).and_then(|d| CertInfo::parse(d));
    let (why, fix) = cert::refusal(err, &target.host, info.as_ref());
    let measured = match &info {
        Some(info) => format!("{why}; {}", info.summary()),
        None => why,
    };
    report.push(
        Probe::failed("tls certificate", measured, fix)
            .details(serde_json::json!({"certificate": info, "error": format!("{err:?}")})),
    );
}
