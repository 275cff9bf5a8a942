//! Byte 0xFF in a name. FTP's control connection is Telnet, where 0xFF
//! (IAC) is sent doubled; suppaftp always doubles it, as RFC 959 asks.
//! proftpd reads the pair back as one byte, but vsftpd and pure-ftpd take
//! both bytes literally (measured): `я` in cp1251 or `ÿ` in latin1 would
//! be written as two bytes, silently, and a delete or rename would reach
//! a twin of the name. So the first time a write would carry 0xFF, the
//! server is asked once how it reads it (a scratch directory with such a
//! name, listed); a server that keeps both bytes gets no such command and
//! the file fails with a message that says why.

use std::sync::Arc;

use super::{Inner, listing, names, unix_now, walk};
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;

/// How the server reads a doubled 0xFF in a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Iac {
    /// As one byte (RFC 959, proftpd).
    Undoubled,
    /// As two bytes (vsftpd, pure-ftpd).
    Literal,
    /// Not found out (the server refused the scratch directory): names are
    /// sent as RFC 959 says.
    Unknown,
}

/// The scratch directory's name below the root, and the name made in it.
const PROBE_DIR: &str = ".barge-iac-probe";

impl Inner {
    /// Fails when `path` would reach the server changed: it holds byte 0xFF
    /// and the server keeps Telnet's doubled IAC as two bytes.
    pub(super) async fn check_iac(self: &Arc<Self>, op: &'static str, path: &RelPath) -> Result<(), OpError> {
        if !names::encode(&self.remote_path(path)?).contains(&0xFF) {
            return Ok(());
        }
        let iac = *self.iac.get_or_init(|| self.probe_iac()).await;
        if iac != Iac::Literal {
            return Ok(());
        }
        Err(OpError::new(
            ErrorKind::Unsupported,
            op,
            path,
            format!(
                "{} reads byte 0xFF in a command as two (Telnet's doubled IAC, which vsftpd and pure-ftpd do \
                 not undo): this name would be written or found changed there, so it is not sent",
                self.shown
            ),
        ))
    }

    /// Makes `PROBE_DIR/<0xFF>`, lists `PROBE_DIR` and removes both.
    async fn probe_iac(self: &Arc<Self>) -> Iac {
        let mut dir = self.root.clone();
        dir.extend_from_slice(format!("/{PROBE_DIR}-{}", std::process::id()).as_bytes());
        let mut inner = dir.clone();
        inner.extend_from_slice(b"/\xff");
        let (dir, inner) = (names::decode(&dir), names::decode(&inner));
        let timeout = self.pool.params().timeout;
        let Ok(mut pooled) = self.pool.get().await else { return Iac::Unknown };
        // Dropped unsettled (a listing cut short, a timeout) it is closed,
        // not pooled with a reply still owed.
        pooled.in_doubt();
        let probe = Self::probe_on(pooled.conn(), &dir, &inner, self.features.mlsd, timeout);
        // Six commands and a listing: a server gone silent must not hold the write.
        let found = tokio::time::timeout(timeout.saturating_mul(2), probe).await.ok();
        if found.is_some() {
            pooled.settled();
        }
        found.unwrap_or(Iac::Unknown)
    }

    async fn probe_on(
        conn: &mut super::conn::FtpConn,
        dir: &str,
        inner: &str,
        mlsd: bool,
        timeout: std::time::Duration,
    ) -> Iac {
        let mut found = Iac::Unknown;
        if conn.control.mkdir(dir).await.is_ok() {
            if conn.control.mkdir(inner).await.is_ok() {
                let listed = match mlsd {
                    true => walk::listing_data(conn, &format!("MLSD {dir}"), None, timeout).await,
                    false => walk::listing_data(conn, "LIST -a", Some(dir.to_string()), timeout).await,
                };
                let parsed = listed.ok().and_then(|(data, _)| match mlsd {
                    true => listing::parse_mlsd(&data).ok(),
                    false => listing::parse_list(&data, unix_now()).ok(),
                });
                let names: Vec<Vec<u8>> =
                    parsed.map(|p| p.entries.into_iter().map(|e| e.name).collect()).unwrap_or_default();
                if names.iter().any(|name| name == b"\xff") {
                    found = Iac::Undoubled;
                } else if names.iter().any(|name| name == b"\xff\xff") {
                    found = Iac::Literal;
                }
                // Sent as it was made: the same name on either kind of server.
                let _ = conn.control.rmdir(inner).await;
            }
            let _ = conn.control.cwd("/").await;
            let _ = conn.control.rmdir(dir).await;
        }
        found
    }
}
