//! Who we log in as and with what, tried in OpenSSH's order: keys held by
//! ssh-agent (`SSH_AUTH_SOCK`), key files (`--identity FILE`, else the
//! `IdentityFile`s ~/.ssh/config names for the host, else the default
//! `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` that exist), then a password
//! (URL, `--password-env`, `BARGE_PASSWORD`, `~/.netrc`).
//!
//! Key files are read and decrypted once per location, before connecting.
//! No message ever contains a password or passphrase.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::PrivateKey;

use super::short_ecdsa;
use crate::error::{ErrorKind, OpError};
use crate::location::Secret;

/// Default key files, in OpenSSH's order (DSA is long gone).
const DEFAULT_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// A private key ready to sign with.
#[derive(Clone)]
pub struct LoadedKey {
    pub path: PathBuf,
    pub key: Arc<PrivateKey>,
}

/// What a connection may offer the server.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    /// Ask ssh-agent first.
    pub agent: bool,
    pub keys: Vec<LoadedKey>,
    pub password: Option<Secret>,
    /// Default key files that could not be used, and why (for the message
    /// when nothing works).
    pub skipped: Vec<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("agent", &self.agent)
            .field("keys", &self.keys.iter().map(|k| k.path.display().to_string()).collect::<Vec<_>>())
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A key passphrase and the variable it came from (named in messages).
pub struct Passphrase {
    pub var: String,
    pub secret: Secret,
}

impl Passphrase {
    /// `--passphrase-env VAR`: the variable must be set.
    pub fn from_env(var: &str, shown: &str) -> Result<Passphrase, OpError> {
        match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(Passphrase { var: var.to_string(), secret: Secret::new(value) }),
            _ => Err(OpError::new(
                ErrorKind::Auth,
                "login",
                shown,
                format!("--passphrase-env {var}: the environment variable {var} is not set"),
            )),
        }
    }
}

/// Where key files come from.
pub struct KeySources<'a> {
    /// `--identity FILE`: only this key file (its failures are errors).
    pub identity: Option<&'a Path>,
    pub passphrase: Option<&'a Passphrase>,
    /// `IdentityFile`s from ~/.ssh/config (expanded): used instead of the
    /// default key files, as OpenSSH does.
    pub configured: &'a [PathBuf],
    /// `$HOME`, for the default key files.
    pub home: Option<&'a Path>,
}

/// Loads the key files to offer. Blocking (file reads, bcrypt-pbkdf for
/// encrypted keys): call it off the async workers.
pub fn load_keys(sources: &KeySources<'_>, shown: &str) -> Result<(Vec<LoadedKey>, Vec<String>), OpError> {
    if let Some(path) = sources.identity {
        let key =
            load_one(path, sources.passphrase).map_err(|why| OpError::new(ErrorKind::Auth, "login", shown, why))?;
        return Ok((vec![LoadedKey { path: path.to_path_buf(), key: Arc::new(key) }], Vec::new()));
    }
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    let candidates: Vec<PathBuf> = if !sources.configured.is_empty() {
        sources.configured.to_vec()
    } else if let Some(home) = sources.home {
        DEFAULT_KEYS.iter().map(|name| home.join(".ssh").join(name)).collect()
    } else {
        Vec::new()
    };
    for path in candidates {
        if !path.is_file() {
            if !sources.configured.is_empty() {
                skipped.push(format!("key {} named by the ssh config: no such file", path.display()));
            }
            continue;
        }
        match load_one(&path, sources.passphrase) {
            Ok(key) => keys.push(LoadedKey { path, key: Arc::new(key) }),
            Err(why) => skipped.push(why),
        }
    }
    Ok((keys, skipped))
}

/// One key file, decrypted with the passphrase when it is encrypted.
fn load_one(path: &Path, passphrase: Option<&Passphrase>) -> Result<PrivateKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read key {}: {e}", path.display()))?;
    let decoded = russh::keys::decode_secret_key(&text, None);
    if decoded.is_err()
        && let Some(key) = short_ecdsa::read(&text, None)
    {
        return Ok(key);
    }
    match decoded {
        Ok(key) => Ok(key),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let Some(passphrase) = passphrase else {
                return Err(format!(
                    "key {} is encrypted: name an environment variable holding its passphrase with --passphrase-env",
                    path.display()
                ));
            };
            let secret = passphrase.secret.expose();
            russh::keys::decode_secret_key(&text, Some(secret))
                .or_else(|e| short_ecdsa::read(&text, Some(secret)).ok_or(e))
                .map_err(|_| {
                    format!("cannot decrypt key {} with the passphrase from {}", path.display(), passphrase.var)
                })
        }
        Err(e) => Err(format!("cannot use key {}: {e}", path.display())),
    }
}

/// The login name when the URL and ~/.netrc give none: `$USER`, as ssh.
pub fn default_user() -> String {
    ["USER", "LOGNAME"].into_iter().find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keygen(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
        let path = dir.join(name);
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", "", "-f"])
            .arg(&path)
            .status();
        match status {
            Ok(s) if s.success() => path,
            _ => panic!("ssh-keygen is needed for this test"),
        }
    }

    fn phrase(value: &str) -> Passphrase {
        Passphrase { var: "TEST_VAR".into(), secret: Secret::new(value.into()) }
    }

    #[test]
    fn identity_errors_name_the_file_never_the_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let plain = keygen(dir.path(), "plain", "");
        let locked = keygen(dir.path(), "locked", "right-phrase");
        let load = |identity: &Path, passphrase: Option<&Passphrase>| {
            load_keys(&KeySources { identity: Some(identity), passphrase, configured: &[], home: None }, "h")
        };
        assert_eq!(load(&plain, None).unwrap().0.len(), 1);

        let err = load(&locked, None).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Auth);
        assert!(err.message.contains("encrypted") && err.message.contains("locked"), "{err}");

        let err = load(&locked, Some(&phrase("wrong-phrase-xyz"))).err().unwrap();
        assert!(err.message.contains("cannot decrypt") && err.message.contains("TEST_VAR"), "{err}");
        assert!(!err.message.contains("wrong-phrase-xyz"), "{err}");

        assert_eq!(load(&locked, Some(&phrase("right-phrase"))).unwrap().0.len(), 1);

        let err = Passphrase::from_env("BARGE_TEST_SURELY_UNSET_VAR", "h").err().unwrap();
        assert!(err.message.contains("BARGE_TEST_SURELY_UNSET_VAR"), "{err}");
    }

    #[test]
    fn default_keys_that_cannot_be_used_are_skipped_with_a_reason() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir(&ssh).unwrap();
        keygen(&ssh, "id_ed25519", "");
        keygen(&ssh, "id_rsa", "secret"); // ed25519 content under the RSA name: fine
        let sources = KeySources { identity: None, passphrase: None, configured: &[], home: Some(home.path()) };
        let (keys, skipped) = load_keys(&sources, "h").unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys[0].path.ends_with("id_ed25519"));
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("id_rsa") && skipped[0].contains("encrypted"), "{skipped:?}");

        // IdentityFiles from the ssh config replace the defaults.
        let other = keygen(home.path(), "work_key", "");
        let configured = [home.path().join("missing_key"), other.clone()];
        let sources = KeySources { identity: None, passphrase: None, configured: &configured, home: Some(home.path()) };
        let (keys, skipped) = load_keys(&sources, "h").unwrap();
        assert_eq!(keys.iter().map(|k| k.path.clone()).collect::<Vec<_>>(), [other]);
        assert!(skipped[0].contains("missing_key") && skipped[0].contains("no such file"), "{skipped:?}");
    }
}
