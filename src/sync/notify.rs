//! `--notify URL`: healthcheck pings, as cron users wire them by hand
//! (healthchecks.io, Uptime Kuma push monitors, Cronitor): a request to
//! `URL/start` when a sync begins, to `URL` when it ends well and to
//! `URL/fail` when it does not, the last two with the run's JSON summary
//! (exit code included) as their body. Each request has a short timeout
//! and a few tries; a ping that cannot be made is a warning, never a
//! failed sync. The URL usually holds a secret (whoever has it can ping):
//! messages name its host only.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::engine::report::Reporter;
use crate::error::exit;

/// Each request's whole time.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of a ping, waiting 1 s, then 2 s, between them.
const TRIES: u32 = 3;

/// The start ping, sent while the sync begins; the last ping waits for it
/// so the monitor sees them in order.
static STARTING: Mutex<Option<tokio::task::JoinHandle<()>>> = Mutex::new(None);

/// Sends `URL/start` in the background.
pub fn started(url: &str, reporter: &Arc<Reporter>) {
    let (url, reporter) = (format!("{}/start", url.trim_end_matches('/')), Arc::clone(reporter));
    let ping = tokio::spawn(async move { ping(url, None, &reporter).await });
    *STARTING.lock().unwrap_or_else(PoisonError::into_inner) = Some(ping);
}

/// Sends `URL` (exit 0) or `URL/fail` with `body` (the run's JSON summary).
pub async fn finished(url: &str, exit_code: i32, body: String, reporter: &Reporter) {
    let start = STARTING.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(start) = start {
        let _ = start.await;
    }
    let url = match exit_code {
        exit::OK => url.to_string(),
        _ => format!("{}/fail", url.trim_end_matches('/')),
    };
    ping(url, Some(body), reporter).await;
}

/// One ping with its tries; a warning when none got through.
async fn ping(url: String, body: Option<String>, reporter: &Reporter) {
    let shown = host_of(&url);
    let mut last = String::new();
    for attempt in 0..TRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
        }
        let (url, body) = (url.clone(), body.clone());
        match tokio::task::spawn_blocking(move || send(&url, body)).await {
            Ok(Ok(())) => return,
            Ok(Err(err)) => last = err,
            Err(err) => last = err.to_string(),
        }
    }
    reporter.warning(&format!("--notify: the ping to {shown} failed after {TRIES} tries: {last}"));
}

/// One request: POST with a body, GET without; any 2xx is an answer.
fn send(url: &str, body: Option<String>) -> Result<(), String> {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    let agent = AGENT.get_or_init(agent);
    let result = match body {
        Some(body) => agent.post(url).header("Content-Type", "application/json").send(body.as_str()),
        None => agent.get(url).call(),
    };
    // ureq's errors can quote the URL: the key is taken out of what is said.
    match result {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("HTTP {}", response.status())),
        Err(ureq::Error::StatusCode(code)) => Err(format!("HTTP {code}")),
        Err(ureq::Error::Io(err)) => Err(without_key(&err.to_string(), url)),
        Err(ureq::Error::Timeout(_)) => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
        Err(ureq::Error::HostNotFound) => Err("host not found".into()),
        Err(ureq::Error::Tls(_) | ureq::Error::Rustls(_)) => Err("TLS failed".into()),
        Err(_) => Err("the request failed".into()),
    }
}

/// An agent that trusts the system's certificates (as FTPS does) through
/// the same crypto provider as the rest of barge, with the whole request
/// bounded by [`TIMEOUT`].
fn agent() -> ureq::Agent {
    let roots: Vec<_> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|cert| ureq::tls::Certificate::from_der(cert.as_ref()).to_owned())
        .collect();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    ureq::Agent::config_builder().timeout_global(Some(TIMEOUT)).tls_config(tls).build().new_agent()
}

/// `url` as its scheme, its authority (`user@host:port`) and the rest
/// (path, query: the check's key).
fn parts(url: &str) -> (&str, &str, &str) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let at = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    (scheme, &rest[..at], &rest[at..])
}

/// `https://hc-ping.com/…` for messages: the scheme and host, never the
/// path (it holds the check's key).
fn host_of(url: &str) -> String {
    let (scheme, authority, _) = parts(url);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}/…")
}

/// `text` with `url`'s path (and anything after its host) taken out.
fn without_key(text: &str, url: &str) -> String {
    match parts(url).2 {
        key if key.len() > 1 => text.replace(key, "/…"),
        _ => text.to_string(),
    }
}

/// `--notify`'s value: an http or https URL.
pub fn parse_url(text: &str) -> Result<String, String> {
    let lower = text.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) || host_of(text).ends_with("///…") {
        return Err("--notify takes an http:// or https:// URL (a healthcheck's ping URL)".into());
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_host_never_the_key() {
        assert_eq!(host_of("https://hc-ping.com/5f1c-secret"), "https://hc-ping.com/…");
        assert_eq!(host_of("http://user:pw@example.org:8080/ping/key?x=1"), "http://example.org:8080/…");
        assert!(parse_url("https://hc-ping.com/key").is_ok());
        assert_eq!(
            without_key("failed to lookup hc-ping.com/5f1c-secret: nope", "https://hc-ping.com/5f1c-secret"),
            "failed to lookup hc-ping.com/…: nope"
        );
        for bad in ["hc-ping.com/key", "ftp://x/y", "https://", "mailto:me"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
