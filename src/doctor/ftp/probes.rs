//! The probes after login: data connections (EPSV, PASV and NAT, the
//! listing and its names' character set, active mode), the round trip,
//! TLS session reuse on data connections and how many logins the server
//! accepts at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls::client::Resumption;
use tokio::io::AsyncReadExt;

use super::Seen;
use super::control::{Control, DataTls, Target, read_data, transfer};
use crate::backend::ftp::names::NameEncoding;
use crate::backend::ftp::protocol::{listen, parse_epsv, parse_pasv, port_command};
use crate::backend::ftp::{conn, listing};
use crate::doctor::{DoctorOptions, Probe, Report, show_duration};

pub(super) async fn probe_epsv(ctl: &mut Control, list: &[u8], seen: &mut Seen, report: &mut Report) {
    let reply = match ctl.command("EPSV").await {
        Ok(reply) => reply,
        Err(why) => {
            report.push(Probe::failed("passive EPSV", why, "the control connection broke").not_blocking());
            return;
        }
    };
    let Some(port) = (reply.code == 229).then(|| parse_epsv(&reply.text())).flatten() else {
        report.push(Probe::warning("passive EPSV", reply.text(), "no EPSV: barge uses PASV with this server"));
        return;
    };
    let target = SocketAddr::new(ctl.peer.ip(), port);
    let (data, took) = match ctl.route.connect(target, ctl.timeout.min(Duration::from_secs(10))).await {
        Ok(ok) => ok,
        Err(why) => {
            report.push(
                Probe::failed(
                    "passive EPSV",
                    format!("server picked port {port}; {why}"),
                    "a firewall blocks the server's passive ports: allow outbound TCP to its passive range",
                )
                .not_blocking(),
            );
            return;
        }
    };
    match transfer(ctl, data, list).await {
        Ok(bytes) => {
            seen.passive_ports.push(port);
            seen.passive_host.get_or_insert(ctl.peer.ip());
            seen.passive_mode.get_or_insert("passive (EPSV)");
            report.push(
                Probe::ok("passive EPSV", format!("port {port}, data connection in {}", show_duration(took)))
                    .took(took)
                    .details(serde_json::json!({"port": port})),
            );
            seen.listing_data.get_or_insert((bytes, list.starts_with(b"MLSD")));
        }
        Err(why) => report.push(
            Probe::failed("passive EPSV", format!("port {port}: {why}"), "the data transfer failed").not_blocking(),
        ),
    }
}

pub(super) async fn probe_pasv(
    ctl: &mut Control,
    list: &[u8],
    options: &DoctorOptions,
    seen: &mut Seen,
    report: &mut Report,
) {
    let reply = match ctl.command("PASV").await {
        Ok(reply) => reply,
        Err(why) => {
            report.push(Probe::failed("passive PASV", why, "the control connection broke").not_blocking());
            return;
        }
    };
    let Some(announced) = (reply.code == 227).then(|| parse_pasv(&reply.text())).flatten() else {
        let probe = Probe::warning("passive PASV", reply.text(), "no PASV (IPv6 servers have only EPSV)");
        report.push(probe);
        return;
    };
    let peer = ctl.peer;
    let short = options.short_wait().min(Duration::from_secs(3));
    let port = announced.port();
    let same = announced.ip() == peer.ip();
    let first = ctl.route.connect(announced, if same { ctl.timeout } else { short }).await;
    let (data, took, used, nat) = match first {
        Ok((data, took)) => (data, took, announced, false),
        Err(why) if !same => {
            // NAT: the server announced its inside address. Try its control address.
            let fallback = SocketAddr::new(peer.ip(), port);
            match ctl.route.connect(fallback, short).await {
                Ok((data, took)) => (data, took, fallback, true),
                Err(why2) => {
                    report.push(
                        Probe::failed(
                            "passive PASV",
                            format!("server announces {announced} (control address {}): {why}; {why2}", peer.ip()),
                            "neither address answers: a firewall blocks the passive ports",
                        )
                        .not_blocking(),
                    );
                    return;
                }
            }
        }
        Err(why) => {
            report.push(
                Probe::failed(
                    "passive PASV",
                    format!("server announces {announced}: {why}"),
                    "a firewall blocks the server's passive ports: allow outbound TCP to its passive range",
                )
                .not_blocking(),
            );
            return;
        }
    };
    let result = transfer(ctl, data, list).await;
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(why) => {
            report.push(
                Probe::failed("passive PASV", format!("{announced}: {why}"), "the data transfer failed").not_blocking(),
            );
            return;
        }
    };
    seen.passive_ports.push(port);
    seen.passive_host.get_or_insert(used.ip());
    seen.passive_mode.get_or_insert("passive (PASV)");
    seen.listing_data.get_or_insert((bytes, list.starts_with(b"MLSD")));
    let details = serde_json::json!({
        "announced": announced.to_string(), "control_peer": peer.ip().to_string(), "connected": used.to_string(),
        "nat_detected": nat, "port": port,
    });
    if !nat {
        let note = if same { "the control address" } else { "a different address, which answers" };
        report.push(
            Probe::ok(
                "passive PASV",
                format!("server announces {announced} ({note}), data connection in {}", show_duration(took)),
            )
            .took(took)
            .details(details),
        );
        return;
    }
    // What a sync would do with this reply.
    let sync_target = conn::passive_target(announced, peer, options.remote.ftp.pasv_address_from_reply);
    let measured = format!(
        "NAT detected: the server announces {announced} but its control address is {}; {} does not answer, \
         {used} does (workaround applied: connected to the control address in {})",
        peer.ip(),
        announced.ip(),
        show_duration(took)
    );
    let fix_server = "fix it on the server: vsftpd pasv_address=, proftpd MasqueradeAddress, pure-ftpd -P PUBLIC-IP";
    let probe = if seen.has("EPSV") && seen.passive_mode == Some("passive (EPSV)") {
        Probe::warning(
            "passive PASV",
            measured,
            format!("barge uses EPSV with this server, which carries no address, so syncs work; {fix_server}"),
        )
    } else if sync_target == used {
        Probe::warning("passive PASV", measured, format!("barge applies the same workaround; {fix_server}"))
    } else {
        Probe::failed(
            "passive PASV",
            measured,
            format!(
                "barge would connect to the announced address (it replaces only private addresses behind a public \
                 control address{}); {fix_server}, or use --active",
                if options.remote.ftp.pasv_address_from_reply {
                    ", and --pasv-address-from-reply turns that off"
                } else {
                    ""
                }
            ),
        )
    };
    report.push(probe.took(took).details(details));
}

pub(super) fn probe_listing(seen: &Seen, encoding: NameEncoding, report: &mut Report) {
    let Some((data, mlsd)) = &seen.listing_data else {
        report.push(Probe::failed(
            "root listing",
            "no data connection worked, so nothing could be listed",
            "see the passive and active lines above",
        ));
        return;
    };
    let now = crate::backend::Mtime::from_unix(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        0,
    );
    let parsed = if *mlsd { listing::parse_mlsd(data) } else { listing::parse_list(data, now) };
    let verb = if *mlsd { "MLSD" } else { "LIST" };
    match parsed {
        Ok(parsed) => {
            let format = parsed.format.map_or("empty".to_string(), |f| format!("{f:?}"));
            let measured = format!(
                "{verb}: {} bytes, format {format}, {} entries, {} unknown line(s)",
                data.len(),
                parsed.entries.len(),
                parsed.warnings.len()
            );
            let details = serde_json::json!({
                "command": verb, "format": format, "entries": parsed.entries.len(),
                "unknown_lines": parsed.warnings.iter().map(|w| String::from_utf8_lossy(&w.line).into_owned()).collect::<Vec<_>>(),
            });
            let probe = match parsed.warnings.first() {
                None => Probe::ok("root listing", measured),
                Some(first) => Probe::warning(
                    "root listing",
                    measured,
                    format!(
                        "barge skips lines it cannot read (first: `{}`: {})",
                        String::from_utf8_lossy(&first.line),
                        first.reason
                    ),
                ),
            };
            report.push(probe.details(details));
            probe_names(&parsed.entries, encoding, report);
            probe_modes(&parsed.entries, verb, report);
        }
        Err(e) => report.push(Probe::failed(
            "root listing",
            format!("{verb}: {e}"),
            "barge cannot read this server's listing format: please report it with the line shown",
        )),
    }
}

/// Whether the listing shows permission bits, which a sync from this
/// server keeps (MLSD `UNIX.mode`, the LIST permission column).
fn probe_modes(entries: &[listing::ListEntry], verb: &str, report: &mut Report) {
    if entries.is_empty() {
        return;
    }
    let shown = entries.iter().filter(|entry| entry.unix_mode.is_some()).count();
    let details = serde_json::json!({ "entries": entries.len(), "with_modes": shown });
    let probe = if shown == 0 {
        Probe::warning(
            "permissions",
            format!("the {verb} listing shows no permission bits"),
            "files from this server get the destination's default modes (--chmod sets them)",
        )
    } else {
        Probe::ok("permissions", format!("shown for {shown} of {} entries: a sync keeps them", entries.len()))
    };
    report.push(probe.details(details));
}

/// Whether the root listing's names read as UTF-8, or in `--encoding`'s
/// character set when one is given: a server that keeps names in a legacy
/// one is told apart here, before a sync copies them byte for byte.
fn probe_names(entries: &[listing::ListEntry], encoding: NameEncoding, report: &mut Report) {
    if entries.is_empty() {
        return;
    }
    let unreadable: Vec<String> = entries
        .iter()
        .filter(|entry| match encoding {
            NameEncoding::Bytes => std::str::from_utf8(&entry.name).is_err(),
            _ => encoding.to_barge(&entry.name).is_err(),
        })
        .map(|entry| crate::path::Shortened(&entry.name).to_string())
        .collect();
    let details = serde_json::json!({
        "names": entries.len(),
        "encoding": (!encoding.is_bytes()).then(|| encoding.to_string()),
        "unreadable": unreadable.iter().take(10).collect::<Vec<_>>(),
    });
    let probe = match (unreadable.first(), encoding) {
        (None, NameEncoding::Bytes) => Probe::ok("names", format!("{} in the root listing, all UTF-8", entries.len())),
        (None, _) => Probe::ok("names", format!("{} in the root listing, all valid {encoding}", entries.len())),
        (Some(first), NameEncoding::Bytes) => Probe::warning(
            "names",
            format!("{} of {} in the root listing are not UTF-8 (first: {first})", unreadable.len(), entries.len()),
            "the server keeps names in a legacy character set: sync with --encoding NAME (latin1, cp437, \
             shift_jis, euc-kr, gbk, ...) to have them as UTF-8 here; without it they are copied byte for byte",
        ),
        (Some(first), _) => Probe::warning(
            "names",
            format!(
                "{} of {} in the root listing are not valid {encoding} (first: {first})",
                unreadable.len(),
                entries.len()
            ),
            format!("a sync skips them with a warning: is {encoding} the server's character set?"),
        ),
    };
    report.push(probe.details(details));
}

pub(super) async fn probe_active(
    ctl: &mut Control,
    list: &[u8],
    options: &DoctorOptions,
    seen: &mut Seen,
    report: &mut Report,
) -> Step {
    let asked = options.remote.ftp.active || options.remote.ftp.active_ports.is_some();
    let failed = |measured: String, advice: String| {
        let probe = Probe::failed("active mode", measured, advice);
        if asked { probe } else { probe.not_blocking() }
    };
    if let Some(proxy) = &ctl.route.proxy {
        report.push(failed(
            format!("not tried: the server cannot connect back through SOCKS5 proxy {proxy}"),
            "use passive mode (the default) through a proxy".into(),
        ));
        return Step::InStep;
    }
    let listener = match listen(ctl.local.ip(), options.remote.ftp.active_ports.as_ref()) {
        Ok(listener) => listener,
        Err(why) => {
            report.push(failed(why.to_string(), "free a port in the range, or widen --active-ports".into()));
            return Step::InStep;
        }
    };
    let Ok(local) = listener.local_addr() else { return Step::InStep };
    let command = port_command(local);
    let verb = if local.is_ipv4() { "PORT" } else { "EPRT" };
    match ctl.command(&command).await {
        Ok(reply) if reply.code == 200 => {}
        Ok(reply) => {
            report.push(failed(
                format!("{verb}: {}", reply.text()),
                "the server refuses active mode: use passive mode (the default)".into(),
            ));
            return Step::InStep;
        }
        Err(why) => {
            report.push(failed(why, "the control connection broke".into()));
            return Step::OutOfStep;
        }
    }
    let wait = options.short_wait();
    let started = Instant::now();
    if let Err(e) = ctl.send(list).await {
        report.push(failed(e.to_string(), "the control connection broke".into()));
        return Step::OutOfStep;
    }
    let not_reached = |why: String| {
        let ports = options
            .remote
            .ftp
            .active_ports
            .as_ref()
            .map_or(local.port().to_string(), |r| format!("{}-{}", r.start(), r.end()));
        failed(
            format!("the server did not connect back to {local} ({why})"),
            format!(
                "a firewall or NAT in front of this host blocks inbound connections from the server: open inbound \
                 TCP {ports} (and give --active-ports), or use passive mode (the default)"
            ),
        )
    };
    // The server's connection, or its error reply, whichever comes first.
    // The connection is made before the server sends data and its final
    // reply, so it is looked for first (`biased`), and once more after a
    // success reply: a small listing can be sent, and 226 answered, before
    // this task gets to accept().
    let mut final_seen = None;
    // Whether the LIST's final reply was read: if not, it is still to come.
    let mut answered = false;
    let accepted = loop {
        tokio::select! {
            biased;
            accepted = listener.accept() => break accepted.map_err(|e| e.to_string()),
            reply = ctl.reply() => match reply {
                Ok(reply) if reply.code / 100 == 1 => continue,
                Ok(reply) if reply.code / 100 == 2 => {
                    answered = true;
                    match tokio::time::timeout(Duration::from_millis(200), listener.accept()).await {
                        Ok(accepted) => {
                            final_seen = Some(reply);
                            break accepted.map_err(|e| e.to_string());
                        }
                        Err(_) => break Err(reply.text()),
                    }
                }
                Ok(reply) => {
                    answered = true;
                    break Err(reply.text());
                }
                Err(why) => break Err(why),
            },
            () = tokio::time::sleep_until((started + wait).into()) => {
                break Err(format!("nothing within {}", show_duration(wait)));
            }
        }
    };
    let data = match accepted {
        Ok((data, from)) => {
            if from.ip() != ctl.peer.ip() {
                report.push(failed(
                    format!("a connection came from {from}, not the server"),
                    "refused: only the server may connect".into(),
                ));
                return Step::OutOfStep;
            }
            data
        }
        Err(why) => {
            report.push(not_reached(why));
            return if answered { Step::InStep } else { Step::OutOfStep };
        }
    };
    let took = started.elapsed();
    let timeout = ctl.timeout;
    let read = match final_seen {
        // The transfer is over already: its data waits in the socket.
        Some(_) if ctl.data_tls.is_none() => {
            let mut bytes = Vec::new();
            let mut data = data;
            match tokio::time::timeout(timeout, data.read_to_end(&mut bytes)).await {
                Ok(Ok(_)) => Ok(bytes),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("data timed out".to_string()),
            }
        }
        _ => read_data(ctl, data, timeout).await,
    };
    match read {
        Ok(_) => {
            seen.active = Some((local, verb));
            report.push(
                Probe::ok(
                    "active mode",
                    format!("{verb}: the server connected back to {local} in {}", show_duration(took)),
                )
                .took(took),
            );
        }
        Err(why) => {
            report.push(failed(format!("{verb} to {local}: {why}"), "the data transfer failed".into()));
            // Whether its final reply came is not known: start afresh.
            return Step::OutOfStep;
        }
    }
    Step::InStep
}

/// Whether a probe left the control connection in step: every command it
/// sent answered in full, so the next one reads its own reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    InStep,
    OutOfStep,
}

/// NOOP round trips: the median of five.
pub(super) async fn probe_rtt(ctl: &mut Control, report: &mut Report) -> Option<Duration> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        match ctl.command("NOOP").await {
            Ok(reply) if reply.code / 100 == 2 => times.push(started.elapsed()),
            _ => break,
        }
    }
    if times.is_empty() {
        report.push(Probe::warning("round trip", "NOOP failed", "the round trip could not be measured"));
        return None;
    }
    times.sort();
    let median = times[times.len() / 2];
    report.push(
        Probe::ok("round trip", format!("{} (median of {} NOOPs)", show_duration(median), times.len())).took(median),
    );
    Some(median)
}

/// Whether data connections must resume the control connection's TLS
/// session: one listing over a fresh session. Last on this connection,
/// because vsftpd drops the control connection after refusing one.
pub(super) async fn probe_session_reuse(
    ctl: &mut Control,
    list: &[u8],
    base: &ClientConfig,
    seen: &Seen,
    report: &mut Report,
) {
    let Some(name) = ctl.data_tls.as_ref().map(|d| d.name.clone()) else { return };
    let Some(host) = seen.passive_host else { return };
    let mut fresh = base.clone();
    fresh.resumption = Resumption::disabled();
    let fresh = DataTls { config: Arc::new(fresh), name };
    let port = match ctl.command("EPSV").await {
        Ok(reply) if reply.code == 229 => parse_epsv(&reply.text()),
        _ => match ctl.command("PASV").await {
            Ok(reply) if reply.code == 227 => parse_pasv(&reply.text()).map(|a| a.port()),
            _ => None,
        },
    };
    let Some(port) = port else { return };
    let Ok((data, _)) = ctl.route.connect(SocketAddr::new(host, port), ctl.timeout).await else { return };
    let resuming = ctl.data_tls.replace(fresh);
    let result = transfer(ctl, data, list).await;
    ctl.data_tls = resuming;
    let probe = match result {
        Ok(_) => Probe::ok("tls session reuse", "not required: a data connection with a fresh TLS session worked"),
        Err(why) => Probe::ok(
            "tls session reuse",
            format!(
                "required: a data connection without resuming the control session was refused ({why}); barge \
                 resumes it, as the passive lines above show"
            ),
        ),
    };
    report.push(probe);
}

/// How many logins the server accepts at once: up to
/// `--max-probe-connections`, four at a time, stopping at the first
/// refusal. Returns (accepted, whether a refusal capped it).
pub(super) async fn probe_connections(
    target: &Target,
    config: &ClientConfig,
    options: &DoctorOptions,
    report: &mut Report,
) -> (usize, bool) {
    let max = options.max_probe_connections.max(1);
    let mut open: Vec<Control> = Vec::new();
    let mut refusal: Option<String> = None;
    let started = Instant::now();
    while open.len() < max && refusal.is_none() {
        let wave = (max - open.len()).min(4);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..wave {
            let target = target.clone();
            let config = config.clone();
            set.spawn(async move {
                let mut ctl = target.establish(target.mode, &config).await?;
                target.login(&mut ctl).await.map_err(|r| r.text())?;
                Ok::<Control, String>(ctl)
            });
        }
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Ok(ctl)) => open.push(ctl),
                Ok(Err(why)) => {
                    refusal.get_or_insert(why);
                }
                Err(e) => {
                    refusal.get_or_insert(e.to_string());
                }
            }
        }
    }
    let accepted = open.len();
    for ctl in open {
        ctl.quit().await;
    }
    let took = started.elapsed();
    let details = serde_json::json!({"accepted": accepted, "limit_probed": max, "refusal": refusal});
    let probe = match &refusal {
        None => Probe::ok(
            "parallel logins",
            format!("{accepted} at once, all accepted (probed up to --max-probe-connections {max})"),
        ),
        Some(why) if accepted == 0 => Probe::warning(
            "parallel logins",
            format!("no extra login was accepted: {why}"),
            "the server allows one session from here: use --parallel 1",
        ),
        Some(why) => Probe::warning(
            "parallel logins",
            format!("{accepted} accepted, the next was refused: {why}"),
            format!("the server caps sessions from this host at {accepted}: keep --parallel at most {accepted}"),
        ),
    };
    report.push(probe.took(took).details(details));
    (accepted, refusal.is_some())
}
