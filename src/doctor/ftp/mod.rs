//! FTP and FTPS probes on a raw control connection: the exact greeting,
//! FEAT lines, PASV/EPSV replies and certificates are what the diagnosis
//! is made of, and the backend's FTP client hides them. Every reply is
//! read and parsed by the backend's protocol layer
//! ([`crate::backend::ftp::protocol`]); only the connection is the doctor's.
//!
//! Order: TCP connect, greeting (and which TLS mode the port speaks), FEAT,
//! TLS (certificate), login, PWD, EPSV, PASV (NAT), the root listing
//! and its names' character set, active mode, round trip, data-channel session reuse, then how many
//! logins the server accepts at once.
//!
//! - `control.rs`: the raw control connection, and connecting and logging
//!   in to the target;
//! - `opening.rs`: greeting, TLS mode and certificate, FEAT;
//! - `probes.rs`: everything after login.

mod control;
mod opening;
mod probes;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use rustls::ClientConfig;

use self::control::{DataTls, Route, Target};
use self::opening::open_main;
use self::probes::{
    Step, probe_active, probe_connections, probe_epsv, probe_listing, probe_pasv, probe_rtt, probe_session_reuse,
};
use super::firewall::{FirewallRule, port_list};
use super::{DoctorOptions, Probe, Report, show_duration, suggest_parallel};
use crate::backend::ftp::names::NameEncoding;
use crate::backend::ftp::protocol::TlsMode;
use crate::backend::ftp::{conn, tls as ftp_tls};
use crate::credentials;
use crate::location::RemoteLocation;

/// What the probes learnt, for the later ones and the summary.
#[derive(Default)]
struct Seen {
    features: Vec<String>,
    passive_ports: Vec<u16>,
    /// The address data connections went to (the control peer, or the
    /// announced address when it differs and answers).
    passive_host: Option<IpAddr>,
    passive_mode: Option<&'static str>,
    active: Option<(SocketAddr, &'static str)>,
    listing_data: Option<(Vec<u8>, bool)>,
}

impl Seen {
    fn has(&self, feature: &str) -> bool {
        // MLST in FEAT means MLSD too (RFC 3659; proftpd lists only MLST).
        let also = if feature.eq_ignore_ascii_case("MLSD") { "MLST" } else { feature };
        self.features.iter().any(|f| f.eq_ignore_ascii_case(feature) || f.eq_ignore_ascii_case(also))
    }
}

/// How a sync reaches the server, directly or through the SOCKS5 proxy:
/// the probes go the same way. `None` when the proxy setting is broken
/// (reported).
fn route(remote: &RemoteLocation, options: &DoctorOptions, report: &mut Report) -> Option<Route> {
    let host = remote.host.clone();
    match options.remote.proxy.proxy() {
        Err(why) => {
            report.push(Probe::failed("route", why, "fix --proxy or ALL_PROXY (socks5://[user:password@]host:port)"));
            None
        }
        Ok(Some(proxy)) if proxy.applies_to(&remote.host) => {
            let shown = format!("through SOCKS5 proxy {proxy} (from {})", proxy.source);
            report.push(Probe::ok("route", shown).details(serde_json::json!({ "proxy": proxy.to_string() })));
            Some(Route { proxy: Some(proxy), host })
        }
        Ok(_) => {
            report.push(Probe::ok("route", "direct").details(serde_json::json!({ "proxy": null })));
            Some(Route { proxy: None, host })
        }
    }
}

/// Runs the FTP probes, adding their lines to `report`.
pub async fn diagnose(remote: &RemoteLocation, options: &DoctorOptions, report: &mut Report) {
    let login = credentials::resolve(remote, &options.remote, "anonymous");
    let mode = TlsMode::of(remote.scheme, options.remote.ftp.explicit_tls);
    let shown = format!("{}:{}", conn::display_host(&remote.host), remote.port);
    let timeout = options.remote.timeout;
    let Some(route) = route(remote, options, report) else { return };

    // TCP connect (through a proxy, the proxy resolves the name).
    let addr = match &route.proxy {
        Some(_) => Some(SocketAddr::new(Route::SERVER, remote.port)),
        None => match tokio::time::timeout(timeout, tokio::net::lookup_host((remote.host.as_str(), remote.port))).await
        {
            Ok(Ok(mut addrs)) => addrs.next(),
            _ => None,
        },
    };
    let Some(addr) = addr else {
        report.push(Probe::failed(
            "resolve",
            format!("{} has no address", remote.host),
            "check the host name (typo? DNS?)",
        ));
        return;
    };
    let target = Target {
        addr,
        route: route.clone(),
        host: remote.host.clone(),
        shown: shown.clone(),
        mode,
        login,
        timeout,
        short: options.short_wait(),
    };
    let (tcp, took) = match route.connect(addr, timeout).await {
        Ok(ok) => ok,
        Err(why) => {
            let advice = if why.contains("refused") {
                "nothing listens on that port, or a firewall rejects it: check the host and port (FTP 21, implicit FTPS 990)"
            } else {
                "a firewall drops the connection, or the host is down: outbound TCP to this port must be open"
            };
            report.push(Probe::failed("tcp connect", why, advice));
            return;
        }
    };
    let (by, rule) = match &route.proxy {
        Some(proxy) => (
            format!("through {proxy}"),
            FirewallRule::outbound(&proxy.host, proxy.port.to_string(), "the SOCKS5 proxy: every connection"),
        ),
        None => (addr.to_string(), FirewallRule::outbound(&remote.host, remote.port.to_string(), "control connection")),
    };
    report.push(Probe::ok("tcp connect", format!("{shown} ({by}) in {}", show_duration(took))).took(took));
    report.firewall.push(rule);

    let verifying = match ftp_tls::base_config(&options.remote.ftp.tls) {
        Ok(config) => config,
        Err(e) => {
            report.push(Probe::failed("tls setup", e.to_string(), "check --ca-file"));
            return;
        }
    };
    let Some((mut ctl, mut seen, cert_ok)) = open_main(&target, tcp, &verifying, report).await else { return };
    let session_config = if cert_ok { verifying } else { insecure_config() };

    // Login.
    let started = Instant::now();
    match target.login(&mut ctl).await {
        Ok(reply) => report
            .push(Probe::ok("login", format!("as {}: {}", target.login.user, reply.first())).took(started.elapsed())),
        Err(reply) => {
            let text = reply.text();
            let lower = text.to_ascii_lowercase();
            let advice = if mode == TlsMode::None
                && ["encrypt", "tls", "ssl", "secure"].iter().any(|w| lower.contains(w))
            {
                format!(
                    "the server requires TLS: use ftpes://{shown}/ (explicit TLS), or ftps:// if it has an implicit-TLS port"
                )
            } else if reply.code == 421 {
                "the server refused the session (too many connections, or closing): try later or lower --parallel"
                    .to_string()
            } else {
                format!(
                    "the server refused user {}: check the user name and the password (given in the URL, \
                     --password-env VAR, BARGE_PASSWORD or ~/.netrc)",
                    target.login.user
                )
            };
            report.push(Probe::failed("login", text, advice));
            ctl.quit().await;
            return;
        }
    }
    if mode != TlsMode::None {
        for command in ["PBSZ 0", "PROT P"] {
            match ctl.command(command).await {
                Ok(reply) if reply.code / 100 == 2 => {}
                Ok(reply) => {
                    report.push(Probe::failed(
                        "data protection",
                        format!("{command}: {}", reply.text()),
                        "the server does not protect data connections with TLS; barge requires it with FTPS",
                    ));
                    return;
                }
                Err(why) => {
                    report.push(Probe::failed("data protection", why, "the control connection broke"));
                    return;
                }
            }
        }
        // Data connections resume the control connection's session: same
        // configuration, same cache.
        if let (Ok(name), Some(config)) = (target.server_name(), &ctl.control_tls) {
            ctl.data_tls = Some(DataTls { config: Arc::clone(config), name });
        }
    }
    match ctl.command("PWD").await {
        Ok(reply) if reply.code == 257 => report.push(Probe::ok("pwd", reply.first().to_string())),
        Ok(reply) => report.push(Probe::warning("pwd", reply.text(), "barge falls back to / as the home directory")),
        Err(why) => report.push(Probe::warning("pwd", why, "barge falls back to / as the home directory")),
    }
    let _ = ctl.command("TYPE I").await;

    let list_command = list_command(remote, seen.has("MLSD"), options.remote.ftp.encoding);
    probe_epsv(&mut ctl, &list_command, &mut seen, report).await;
    probe_pasv(&mut ctl, &list_command, options, &mut seen, report).await;
    probe_listing(&seen, options.remote.ftp.encoding, report);
    if probe_active(&mut ctl, &list_command, options, &mut seen, report).await == Step::OutOfStep {
        // A refused connection back leaves the server's LIST pending: its
        // late reply would answer the next command. The probes after it
        // get a session of their own.
        match target.session(&session_config).await {
            Ok(fresh) => std::mem::replace(&mut ctl, fresh).quit().await,
            Err(why) => {
                report.push(Probe::warning(
                    "round trip",
                    format!("a new session after the active-mode probe failed: {why}"),
                    "the round trip could not be measured",
                ));
                ctl.quit().await;
                return;
            }
        }
    }
    let rtt = probe_rtt(&mut ctl, report).await;
    if mode != TlsMode::None {
        probe_session_reuse(&mut ctl, &list_command, &session_config, &seen, report).await;
    }
    ctl.quit_and_wait().await;
    let (accepted, capped) = probe_connections(&target, &session_config, options, report).await;
    if let Some(rtt) = rtt {
        let parallel = suggest_parallel(rtt, accepted, capped);
        report.suggested_parallel = Some(parallel);
        report.push(Probe::ok(
            "suggested parallel",
            format!(
                "--parallel {parallel} (round trip {}, {accepted} login(s) accepted{})",
                show_duration(rtt),
                if capped { ", the server's cap" } else { "" }
            ),
        ));
    }
    if route.proxy.is_none() {
        firewall_rules(remote, options, &seen, report);
    } else if let Some(mode) = seen.passive_mode {
        // The proxy carries the data connections too: its rule is the one.
        report.mode = Some(mode.to_string());
    }
}

/// A configuration that accepts any certificate, to go on probing past a
/// refused one (the refusal is reported; the session is then not trusted).
fn insecure_config() -> ClientConfig {
    let options = ftp_tls::TlsOptions { ca_file: None, insecure: true };
    match ftp_tls::base_config(&options) {
        Ok(config) => config,
        // Building the insecure configuration reads no file: it cannot fail.
        Err(_) => ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth(),
    }
}

/// `MLSD` or `LIST` of the location's directory, its path in the server's
/// `encoding` as a sync sends it (bytes as they are when it has no form
/// there: the server's answer then says what it makes of them).
fn list_command(remote: &RemoteLocation, mlsd: bool, encoding: NameEncoding) -> Vec<u8> {
    let verb: &[u8] = if mlsd { b"MLSD" } else { b"LIST" };
    let path: &[u8] = match remote.path.strip_prefix(b"/~") {
        Some(rest) => &rest[rest.iter().take_while(|&&b| b == b'/').count()..],
        None => &remote.path,
    };
    if path.is_empty() || path == b"/" && !mlsd {
        return verb.to_vec();
    }
    let path = encoding.to_server(path).unwrap_or(std::borrow::Cow::Borrowed(path));
    [verb, b" ", &path].concat()
}

fn firewall_rules(remote: &RemoteLocation, options: &DoctorOptions, seen: &Seen, report: &mut Report) {
    let active_asked = options.remote.ftp.active || options.remote.ftp.active_ports.is_some();
    let use_active = seen.active.is_some() && (active_asked || seen.passive_mode.is_none());
    if !use_active && let (Some(mode), Some(host)) = (seen.passive_mode, seen.passive_host) {
        report.mode = Some(mode.to_string());
        report.firewall.push(FirewallRule::outbound(
            &host.to_string(),
            port_list(&seen.passive_ports),
            "passive data connections: the ports this server picked in this run; allow its whole passive range",
        ));
    } else if let Some((local, verb)) = seen.active {
        report.mode = Some(format!("active ({verb})"));
        let ports = options
            .remote
            .ftp
            .active_ports
            .as_ref()
            .map_or(format!("{} (any: give --active-ports to fix a range)", local.port()), |r| {
                format!("{}-{}", r.start(), r.end())
            });
        report.firewall.push(FirewallRule::inbound(
            &local.ip().to_string(),
            ports,
            format!("active data connections from the server {}", remote.host),
        ));
    }
}
