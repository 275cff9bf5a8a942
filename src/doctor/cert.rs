//! What a server certificate says, for people: subject, issuer, validity
//! and the names it is valid for; and why rustls refused it, in words.

use std::net::IpAddr;

use rustls::CertificateError;
use x509_parser::extensions::GeneralName;

/// The parts of a certificate a person checks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub names: Vec<String>,
}

impl CertInfo {
    /// Parses a DER certificate; `None` when it is not one.
    pub fn parse(der: &[u8]) -> Option<CertInfo> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push((*dns).to_string()),
                    GeneralName::IPAddress(bytes) => {
                        let ip = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                            _ => None,
                        };
                        names.extend(ip.map(|ip| ip.to_string()));
                    }
                    _ => {}
                }
            }
        }
        Some(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            names,
        })
    }

    /// Whether `host` is one of the certificate's names (`*.` wildcards
    /// match one label). Without subjectAltName nothing matches, as for
    /// rustls and browsers.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.names.iter().any(|n| n.parse::<IpAddr>().is_ok_and(|m| m == ip));
        }
        self.names.iter().any(|name| {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(suffix) => host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => name == host,
            }
        })
    }

    /// One line: subject, issuer, expiry and names.
    pub fn summary(&self) -> String {
        let names = if self.names.is_empty() { "none".to_string() } else { self.names.join(", ") };
        format!(
            "subject {}, issuer {}, valid {} to {}, names: {names}",
            self.subject,
            self.issuer,
            date(self.not_before),
            date(self.not_after)
        )
    }
}

/// `2026-11-25` (UTC).
pub fn date(unix: i64) -> String {
    crate::units::format_utc_date(unix)
}

/// Why a certificate was refused, and what to do, from the rustls error.
pub fn refusal(err: &CertificateError, host: &str, info: Option<&CertInfo>) -> (String, String) {
    let until = info.map(|i| date(i.not_after)).unwrap_or_default();
    match err {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => (
            format!("the certificate EXPIRED (valid until {until})"),
            "the server's administrator must renew it; --insecure skips the check (dangerous)".into(),
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
            "the certificate is not valid yet (check this host's clock)".into(),
            "fix the clock here or on the server".into(),
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let names = info.map(|i| i.names.join(", ")).filter(|n| !n.is_empty()).unwrap_or_else(|| "none".into());
            (
                format!("NAME MISMATCH: the certificate is not valid for {host} (it names: {names})"),
                "connect by a name the certificate lists, or have the certificate reissued for this name".into(),
            )
        }
        CertificateError::UnknownIssuer => (
            "UNKNOWN ISSUER: the certificate is not signed by a CA this host trusts (self-signed or private CA)".into(),
            "give the CA certificate with --ca-file FILE (PEM); --insecure skips the check (dangerous)".into(),
        ),
        CertificateError::Revoked => ("the certificate is REVOKED".into(), "the server needs a new certificate".into()),
        other => (
            format!("the certificate was refused: {other:?}"),
            "check the certificate with the server's administrator".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(names: &[&str]) -> CertInfo {
        CertInfo {
            subject: "CN=x".into(),
            issuer: "CN=ca".into(),
            not_before: 0,
            not_after: 86_400 * 365,
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn names_match_like_rustls() {
        let cert = info(&["localhost", "127.0.0.1", "*.example.org", "::1"]);
        assert!(cert.matches("localhost") && cert.matches("LOCALHOST."));
        assert!(cert.matches("127.0.0.1") && cert.matches("::1"));
        assert!(cert.matches("ftp.example.org"));
        assert!(!cert.matches("a.b.example.org") && !cert.matches("example.org"));
        assert!(!cert.matches("127.0.0.2") && !cert.matches("other"));
        assert!(!info(&[]).matches("x"), "no SAN: nothing matches");
    }

    #[test]
    fn refusals_name_the_reason() {
        let cert = info(&["localhost"]);
        let (why, fix) = refusal(&CertificateError::Expired, "h", Some(&cert));
        assert!(why.contains("EXPIRED") && why.contains("1971-01-01") && fix.contains("renew"), "{why}");
        let (why, _) = refusal(&CertificateError::NotValidForName, "127.0.0.1", Some(&cert));
        assert!(why.contains("MISMATCH") && why.contains("localhost"), "{why}");
        let (_, fix) = refusal(&CertificateError::UnknownIssuer, "h", None);
        assert!(fix.contains("--ca-file"), "{fix}");
    }
}
