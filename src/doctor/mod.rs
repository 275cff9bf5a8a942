//! `barge doctor URL`: probes a remote location step by step (TCP, greeting,
//! TLS, login, data connections, listing, limits) and says, one line per
//! probe, what it measured and, for every problem, the likely cause and the
//! fix; then which ports a firewall must open for the mode that worked.
//!
//! - [`ftp`]: FTP/FTPS probes on a raw control connection (the exact
//!   greeting, FEAT lines, PASV/EPSV replies and certificates, which the
//!   backend's FTP client hides), read with the backend's FTP protocol
//!   layer.
//! - [`cert`]: what a server certificate says (subject, issuer, expiry, names).
//! - [`sftp`]: SSH/SFTP probes, reusing the SFTP backend's host key and login code.
//! - [`firewall`]: the summary of ports and directions.
//!
//! The verdict for the whole location ([`Report::usable`]) is "would a sync
//! work": only failures of probes marked blocking count.

pub mod cert;
pub mod firewall;
pub mod ftp;
pub mod sftp;

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::backend::RemoteOptions;
use crate::error::{Error, exit};
use crate::location::{Location, Scheme};

pub use self::firewall::{Direction, FirewallRule};

/// What the doctor is asked to do, besides what [`RemoteOptions`] says.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    pub remote: RemoteOptions,
    /// At most this many logins at once in the connection-limit probe.
    pub max_probe_connections: usize,
}

impl DoctorOptions {
    /// How long to wait for a greeting, or a server to connect back: short,
    /// because silence here is itself the answer (wrong TLS mode, firewall).
    fn short_wait(&self) -> Duration {
        self.remote.timeout.min(Duration::from_secs(5))
    }
}

/// One probe's judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warning,
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warning => "warning",
            Verdict::Failed => "failed",
        }
    }
}

/// One probe: one line of output.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub name: String,
    pub verdict: Verdict,
    /// What was measured, in plain words.
    pub measured: String,
    /// For warnings and failures: the likely cause and the fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
    /// A failure here means a sync would not work.
    pub blocking: bool,
    /// How long the probed step took, when that is the measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub millis: Option<f64>,
    /// The same facts as data.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl Probe {
    fn new(name: &str, verdict: Verdict, measured: impl Into<String>, advice: Option<String>) -> Probe {
        Probe {
            name: name.to_string(),
            verdict,
            measured: measured.into(),
            advice,
            blocking: false,
            millis: None,
            details: serde_json::Value::Null,
        }
    }

    pub fn ok(name: &str, measured: impl Into<String>) -> Probe {
        Probe::new(name, Verdict::Ok, measured, None)
    }

    pub fn warning(name: &str, measured: impl Into<String>, advice: impl Into<String>) -> Probe {
        Probe::new(name, Verdict::Warning, measured, Some(advice.into()))
    }

    /// A failure that makes a sync impossible.
    pub fn failed(name: &str, measured: impl Into<String>, advice: impl Into<String>) -> Probe {
        Probe { blocking: true, ..Probe::new(name, Verdict::Failed, measured, Some(advice.into())) }
    }

    /// A failure that a sync can live with (another mode works).
    pub fn not_blocking(mut self) -> Probe {
        self.blocking = false;
        self
    }

    pub fn took(mut self, elapsed: Duration) -> Probe {
        self.millis = Some(millis(elapsed));
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Probe {
        self.details = details;
        self
    }
}

/// Milliseconds with a useful precision for loopback and WAN alike.
pub fn millis(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 10_000.0).round() / 10.0
}

/// `0.4 ms`, `12 ms`, `1.2 s`.
pub fn show_duration(elapsed: Duration) -> String {
    let ms = elapsed.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// Everything the doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The location, without its password.
    pub location: String,
    pub probes: Vec<Probe>,
    /// The data mode that worked ("passive (EPSV)", "active", "sftp").
    pub mode: Option<String>,
    /// What `--parallel` to use, from the round trip and the connection limit.
    pub suggested_parallel: Option<usize>,
    pub firewall: Vec<FirewallRule>,
}

impl Report {
    fn new(location: String) -> Report {
        Report { location, probes: Vec::new(), mode: None, suggested_parallel: None, firewall: Vec::new() }
    }

    pub fn push(&mut self, probe: Probe) {
        self.probes.push(probe);
    }

    /// A sync would work: no blocking probe failed.
    pub fn usable(&self) -> bool {
        !self.probes.iter().any(|p| p.verdict == Verdict::Failed && p.blocking)
    }

    /// 0 when usable, 3 (cannot connect, authenticate or read) when not.
    pub fn exit_code(&self) -> i32 {
        if self.usable() { exit::OK } else { exit::UNREACHABLE }
    }

    /// One line per probe, then the firewall summary and the conclusion.
    pub fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "barge doctor {}", self.location)?;
        let width = self.probes.iter().map(|p| p.name.len()).max().unwrap_or(0);
        for probe in &self.probes {
            write!(out, "{:<8} {:<width$}  {}", probe.verdict.as_str(), probe.name, probe.measured)?;
            if let Some(advice) = &probe.advice {
                write!(out, " — {advice}")?;
            }
            writeln!(out)?;
        }
        if !self.firewall.is_empty() {
            let mode = self.mode.as_deref().unwrap_or("the mode that worked");
            writeln!(out, "\nFirewall: what must be open for {mode}:")?;
            for rule in &self.firewall {
                writeln!(out, "  {rule}")?;
            }
        }
        if let Some(parallel) = self.suggested_parallel {
            writeln!(out, "\nSuggested: --parallel {parallel}")?;
        }
        let failed = self.probes.iter().filter(|p| p.verdict == Verdict::Failed && p.blocking).count();
        if failed == 0 {
            writeln!(out, "\nResult: usable for a sync")?;
        } else {
            writeln!(out, "\nResult: NOT usable for a sync ({failed} blocking failure(s))")?;
        }
        Ok(())
    }

    /// One JSON object per probe, then a summary object.
    pub fn write_json(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for probe in &self.probes {
            let mut value = serde_json::to_value(probe).map_err(std::io::Error::other)?;
            if let Some(object) = value.as_object_mut() {
                object.insert("type".into(), "probe".into());
            }
            writeln!(out, "{value}")?;
        }
        let summary = serde_json::json!({
            "type": "summary",
            "location": self.location,
            "usable": self.usable(),
            "exit_code": self.exit_code(),
            "mode": self.mode,
            "suggested_parallel": self.suggested_parallel,
            "firewall": self.firewall,
        });
        writeln!(out, "{summary}")
    }
}

/// Runs every probe that applies to `location`.
pub async fn diagnose(location: &Location, options: &DoctorOptions) -> Result<Report, Error> {
    let remote = match location {
        Location::Remote(remote) => remote,
        Location::Local(path) => {
            return Err(Error::Usage(format!(
                "doctor diagnoses remote locations (ftp://, ftpes://, ftps://, sftp://); {} is a local path",
                path.display()
            )));
        }
    };
    let mut report = Report::new(remote.to_string());
    match remote.scheme {
        Scheme::Sftp => sftp::diagnose(remote, options, &mut report).await,
        Scheme::Ftp | Scheme::Ftpes | Scheme::Ftps => ftp::diagnose(remote, options, &mut report).await,
    }
    Ok(report)
}

/// `--parallel` to suggest: more connections hide more round trip (on
/// loopback 8 was best, measured; over 20 ms far more), never more than
/// the server accepts, leaving one login spare.
pub fn suggest_parallel(rtt: Duration, accepted: usize, capped: bool) -> usize {
    let ms = rtt.as_secs_f64() * 1000.0;
    let by_rtt = if ms < 2.0 {
        8
    } else if ms < 20.0 {
        16
    } else if ms < 80.0 {
        32
    } else {
        64
    };
    if capped { by_rtt.min(accepted.saturating_sub(1).max(1)) } else { by_rtt.min(accepted.max(1)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_only_without_blocking_failures_and_text_has_advice() {
        let mut report = Report::new("ftp://u@h:21/".into());
        report.push(Probe::ok("tcp connect", "h:21 in 0.3 ms"));
        report.push(Probe::failed("active mode", "no connection back", "open inbound ports").not_blocking());
        assert!(report.usable());
        assert_eq!(report.exit_code(), 0);
        report.push(Probe::failed("login", "530 Login incorrect.", "check the password"));
        assert!(!report.usable());
        assert_eq!(report.exit_code(), 3);
        let mut text = Vec::new();
        report.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("failed   login") && text.contains(" — check the password"), "{text}");
        assert!(text.contains("NOT usable"), "{text}");
        let mut json = Vec::new();
        report.write_json(&mut json).unwrap();
        let lines: Vec<serde_json::Value> =
            String::from_utf8(json).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2]["verdict"], "failed");
        assert_eq!(lines[3]["type"], "summary");
        assert_eq!(lines[3]["exit_code"], 3);
    }

    #[test]
    fn parallel_grows_with_round_trip_and_stays_under_the_cap() {
        assert_eq!(suggest_parallel(Duration::from_micros(300), 32, false), 8);
        assert_eq!(suggest_parallel(Duration::from_millis(30), 32, false), 32);
        assert_eq!(suggest_parallel(Duration::from_millis(30), 5, true), 4);
        assert_eq!(suggest_parallel(Duration::from_millis(300), 1, true), 1);
    }
}
