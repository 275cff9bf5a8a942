//! Server host keys checked against an OpenSSH `known_hosts` file.
//!
//! Lines are read with russh's helpers (plain names, hashed `|1|` names,
//! `[host]:port` for ports other than 22). A key is trusted when a line for
//! the host records exactly it, as OpenSSH does (several keys per host are
//! fine); a host with lines of the same key type but none matching has
//! CHANGED its key, which is always refused. A key on a `@revoked` line is
//! refused whatever else the file says (and whichever host the line names:
//! a revoked key is a leaked key). `@cert-authority` lines are not
//! supported (barge checks plain host keys, not certificates): a host they
//! would vouch for is refused with a message saying so, never treated as
//! merely unknown. Wildcard patterns are understood on marker lines only.

use std::path::Path;
use std::sync::Mutex;

use russh::keys::{Algorithm, HashAlg, PublicKey};

/// What a known_hosts file says about a key a server presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line records this key for this host.
    Known,
    /// Nothing is recorded for this host.
    Unknown,
    /// Lines record other keys of the same type: the key changed.
    Changed { lines: Vec<usize> },
    /// Only keys of other types are recorded (the server offered a type we
    /// asked for first; refused like OpenSSH, which never learns silently).
    OtherTypes { lines: Vec<usize> },
    /// A `@revoked` line names this key: refused, always.
    Revoked { line: usize },
    /// No plain line for the host, but `@cert-authority` lines name it:
    /// the file trusts the host through certificates, which barge cannot
    /// check.
    CertAuthority { lines: Vec<usize> },
}

/// The name a host is recorded under: `host`, or `[host]:port`.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 { host.to_string() } else { format!("[{host}]:{port}") }
}

/// `SHA256:...`, as `ssh-keygen -l` and OpenSSH's prompts print it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The keys recorded for a host, with their line numbers. A missing file
/// records nothing.
pub fn recorded(host: &str, port: u16, path: &Path) -> Result<Vec<(usize, PublicKey)>, String> {
    let found = russh::keys::known_hosts::known_host_keys_path(host, port, path)
        .map_err(|e| format!("cannot read known hosts file {}: {e}", path.display()))?;
    if found.is_empty() {
        return Ok(found);
    }
    // russh numbers lines without counting `#` comments: renumber them as
    // an editor shows them.
    let text = std::fs::read(path).map_err(|e| format!("cannot read known hosts file {}: {e}", path.display()))?;
    let real: Vec<usize> = text
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| line.first() != Some(&b'#'))
        .map(|(i, _)| i + 1)
        .collect();
    Ok(found.into_iter().map(|(n, key)| (real.get(n.wrapping_sub(1)).copied().unwrap_or(n), key)).collect())
}

/// Appends `host key` as one line, creating the file (and its directory,
/// private like ~/.ssh) when missing.
fn append(host: &str, port: u16, key: &PublicKey, path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
    }
    let existing = std::fs::read(path).unwrap_or_default();
    let mut line = String::new();
    if existing.last().is_some_and(|&b| b != b'\n') {
        line.push('\n');
    }
    let openssh = key.to_openssh().map_err(std::io::Error::other)?;
    line.push_str(&format!("{} {openssh}\n", host_pattern(host, port)));
    let mut file = std::fs::OpenOptions::new().append(true).create(true).mode(0o644).open(path)?;
    file.write_all(line.as_bytes())?;
    file.sync_all()
}

/// Judges `key` against what `path` records for `host:port`.
pub fn check(host: &str, port: u16, key: &PublicKey, path: &Path) -> Result<Verdict, String> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("cannot read known hosts file {}: {e}", path.display())),
    };
    let markers = markers(&text);
    if let Some(revoked) = markers.iter().find(|m| m.revoked && m.key.as_ref().is_some_and(|k| k == key.key_data())) {
        return Ok(Verdict::Revoked { line: revoked.line });
    }
    let verdict = judge(key, &recorded(host, port, path)?);
    if verdict == Verdict::Unknown {
        let name = host_pattern(host, port);
        let vouching: Vec<usize> =
            markers.iter().filter(|m| !m.revoked && patterns_match(&m.hosts, &name)).map(|m| m.line).collect();
        if !vouching.is_empty() {
            return Ok(Verdict::CertAuthority { lines: vouching });
        }
    }
    Ok(verdict)
}

/// A `@revoked` or `@cert-authority` line.
struct Marker {
    line: usize,
    revoked: bool,
    hosts: String,
    /// The key it names (`None` where it does not parse).
    key: Option<russh::keys::ssh_key::public::KeyData>,
}

fn markers(text: &[u8]) -> Vec<Marker> {
    let mut found = Vec::new();
    for (index, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(line);
        let mut fields = line.split_whitespace();
        let revoked = match fields.next() {
            Some(marker) if marker.eq_ignore_ascii_case("@revoked") => true,
            Some(marker) if marker.eq_ignore_ascii_case("@cert-authority") => false,
            _ => continue,
        };
        let hosts = fields.next().unwrap_or_default().to_string();
        let key =
            fields.nth(1).and_then(|b64| russh::keys::parse_public_key_base64(b64).ok()).map(|k| k.key_data().clone());
        found.push(Marker { line: index + 1, revoked, hosts, key });
    }
    found
}

/// OpenSSH's host pattern lists: comma-separated, `*` and `?` wildcards,
/// `!` negating (a negated match wins). Hashed names (`|1|`) never match.
fn patterns_match(list: &str, name: &str) -> bool {
    let mut matched = false;
    for pattern in list.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if wildcard_match(&pattern.to_ascii_lowercase(), &name.to_ascii_lowercase()) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative glob with one backtrack point, as OpenSSH's match_pattern.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

fn judge(key: &PublicKey, recorded: &[(usize, PublicKey)]) -> Verdict {
    if recorded.iter().any(|(_, k)| k.key_data() == key.key_data()) {
        return Verdict::Known;
    }
    let same_type: Vec<usize> =
        recorded.iter().filter(|(_, k)| same_family(&k.algorithm(), &key.algorithm())).map(|(l, _)| *l).collect();
    if !same_type.is_empty() {
        return Verdict::Changed { lines: same_type };
    }
    if recorded.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::OtherTypes { lines: recorded.iter().map(|(l, _)| *l).collect() }
    }
}

/// RSA keys are one type whatever signature hash is negotiated.
fn same_family(a: &Algorithm, b: &Algorithm) -> bool {
    a == b || (matches!(a, Algorithm::Rsa { .. }) && matches!(b, Algorithm::Rsa { .. }))
}

/// Host key algorithms to ask the server for: those of keys already
/// recorded for the host first (as OpenSSH orders them), so a server with
/// several host keys presents the one we can check.
pub fn preferred_algorithms(recorded: &[(usize, PublicKey)], defaults: &[Algorithm]) -> Vec<Algorithm> {
    let mut out: Vec<Algorithm> = Vec::with_capacity(defaults.len());
    for (_, key) in recorded {
        let algorithm = key.algorithm();
        for candidate in defaults.iter().filter(|d| same_family(d, &algorithm)) {
            if !out.contains(candidate) {
                out.push(candidate.clone());
            }
        }
    }
    for candidate in defaults {
        if !out.contains(candidate) {
            out.push(candidate.clone());
        }
    }
    out
}

/// Serialises check-and-append across the process, so two locations on one
/// new host do not both append its key.
static FILE_LOCK: Mutex<()> = Mutex::new(());

/// What happened when a key was judged under the accept-new policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Trusted,
    /// Unknown and appended to the file (`--accept-new-host-key`).
    Learned,
    Refused(Verdict),
}

/// Checks `key`; an unknown host's key is appended when `accept_new`.
pub fn check_or_learn(
    host: &str,
    port: u16,
    key: &PublicKey,
    path: &Path,
    accept_new: bool,
) -> Result<Decision, String> {
    let _guard = FILE_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match check(host, port, key, path)? {
        Verdict::Known => Ok(Decision::Trusted),
        Verdict::Unknown if accept_new => {
            append(host, port, key, path).map_err(|e| format!("cannot add the host key to {}: {e}", path.display()))?;
            Ok(Decision::Learned)
        }
        other => Ok(Decision::Refused(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIA6rWI3G2sz07DnfFlrouTcysQlj2P+jpNSOEWD9OJ3X";
    const ECDSA: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMg2hBvafRSNLkat+ZpP36zozBla9XQN45\
        WgucyzlHdJcCmMFQK0NSbw42fCE3T60SmvBWdvso1a69SAmTHZXeg=";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).unwrap()
    }

    fn file(lines: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, lines).unwrap();
        (dir, path)
    }

    #[test]
    fn known_unknown_changed_and_other_types() {
        let (_d, path) = file(&format!(
            "# comment\n[h]:2222 ssh-ed25519 {KEY_A}\nother ssh-ed25519 {KEY_B}\nmixed ecdsa-sha2-nistp256 {ECDSA}\n"
        ));
        assert_eq!(check("h", 2222, &key(KEY_A), &path).unwrap(), Verdict::Known);
        assert_eq!(check("h", 22, &key(KEY_A), &path).unwrap(), Verdict::Unknown, "the port is part of the name");
        assert_eq!(
            check("other", 22, &key(KEY_A), &path).unwrap(),
            Verdict::Changed { lines: vec![3] },
            "lines as an editor counts them"
        );
        assert_eq!(check("mixed", 22, &key(KEY_A), &path).unwrap(), Verdict::OtherTypes { lines: vec![4] });
        assert_eq!(check("nobody", 22, &key(KEY_A), &path).unwrap(), Verdict::Unknown);
    }

    #[test]
    fn a_revoked_key_is_refused_whatever_else_the_file_says() {
        let revoked = format!("@revoked [h]:2222 ssh-ed25519 {KEY_A}\n");
        let normal = format!("[h]:2222 ssh-ed25519 {KEY_A}\n");
        for text in [format!("{revoked}{normal}"), format!("{normal}{revoked}"), revoked.clone()] {
            let (_d, path) = file(&text);
            let line = text.lines().position(|l| l.starts_with("@revoked")).unwrap() + 1;
            assert_eq!(check("h", 2222, &key(KEY_A), &path).unwrap(), Verdict::Revoked { line }, "{text}");
            assert_eq!(
                check_or_learn("h", 2222, &key(KEY_A), &path, true).unwrap(),
                Decision::Refused(Verdict::Revoked { line }),
                "never learned"
            );
        }
        // Revoked for another host name: still a leaked key.
        let (_d, path) = file(&format!("@REVOKED other ssh-ed25519 {KEY_A}\n"));
        assert_eq!(check("h", 22, &key(KEY_A), &path).unwrap(), Verdict::Revoked { line: 1 });
        assert_eq!(check("h", 22, &key(KEY_B), &path).unwrap(), Verdict::Unknown);
    }

    #[test]
    fn a_host_vouched_for_by_a_certificate_authority_is_not_merely_unknown() {
        let (_d, path) = file(&format!(
            "@cert-authority *.example.com,!bad.example.com ssh-ed25519 {KEY_B}\nplain.example.com ssh-ed25519 {KEY_A}\n"
        ));
        assert_eq!(
            check("www.example.com", 22, &key(KEY_A), &path).unwrap(),
            Verdict::CertAuthority { lines: vec![1] }
        );
        assert_eq!(check("plain.example.com", 22, &key(KEY_A), &path).unwrap(), Verdict::Known);
        assert_eq!(check("bad.example.com", 22, &key(KEY_A), &path).unwrap(), Verdict::Unknown);
        assert_eq!(check("example.org", 22, &key(KEY_A), &path).unwrap(), Verdict::Unknown);
        assert!(patterns_match("[127.0.0.1]:*", "[127.0.0.1]:2222"));
        assert!(patterns_match("h?st", "host") && !patterns_match("h?st", "hoost"));
    }

    #[test]
    fn a_second_recorded_key_of_the_same_type_is_still_trusted() {
        let (_d, path) = file(&format!("h ssh-ed25519 {KEY_B}\nh ssh-ed25519 {KEY_A}\n"));
        assert_eq!(check("h", 22, &key(KEY_A), &path).unwrap(), Verdict::Known);
    }

    #[test]
    fn hashed_names_match() {
        // `ssh-keygen -H` form of "[127.0.0.1]:2222": |1|salt|HMAC-SHA1(salt, name).
        let hashed = "|1|AAECAwQFBgcICQoLDA0ODxAREhM=|zKYaAqmSav3Qxr2sffNqWFIcbe4=";
        let (_d, path) = file(&format!("{hashed} ssh-ed25519 {KEY_A}\n"));
        assert_eq!(check("127.0.0.1", 2222, &key(KEY_A), &path).unwrap(), Verdict::Known);
        assert_eq!(check("127.0.0.1", 2223, &key(KEY_A), &path).unwrap(), Verdict::Unknown);
    }

    #[test]
    fn learning_appends_once_and_then_trusts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("known_hosts");
        assert_eq!(check_or_learn("h", 2200, &key(KEY_A), &path, false).unwrap(), Decision::Refused(Verdict::Unknown));
        assert!(!path.exists());
        assert_eq!(check_or_learn("h", 2200, &key(KEY_A), &path, true).unwrap(), Decision::Learned);
        assert_eq!(check_or_learn("h", 2200, &key(KEY_A), &path, true).unwrap(), Decision::Trusted);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("[h]:2200 ssh-ed25519 "), "{text}");
        assert_eq!(
            check_or_learn("h", 2200, &key(KEY_B), &path, true).unwrap(),
            Decision::Refused(Verdict::Changed { lines: vec![1] }),
            "a changed key is refused even with accept-new"
        );
    }

    #[test]
    fn recorded_types_are_asked_for_first() {
        let defaults = [Algorithm::Ed25519, Algorithm::Ecdsa { curve: russh::keys::EcdsaCurve::NistP256 }];
        let recorded = vec![(1, key(ECDSA))];
        assert_eq!(preferred_algorithms(&recorded, &defaults), vec![defaults[1].clone(), defaults[0].clone()]);
        assert_eq!(preferred_algorithms(&[], &defaults), defaults.to_vec());
    }

    #[test]
    fn fingerprints_look_like_openssh() {
        let fp = fingerprint(&key(KEY_A));
        assert!(fp.starts_with("SHA256:") && !fp.ends_with('='), "{fp}");
    }
}
