//! Permission bits on an FTP server: `SITE CHMOD`, sent alone or in the
//! commit's pipelined batch, and a server that does not take it, noted
//! once and remembered for later runs.

use suppaftp::Status;

use super::{Inner, conn};

/// `SITE CHMOD` of `path` (as the server names it) to `mode`.
pub(super) fn chmod_command(mode: u32, path: &str) -> String {
    format!("SITE CHMOD {mode:o} {path}")
}

/// State db key: whether the server at `shown` takes SITE CHMOD.
pub(super) fn chmod_key(shown: &str) -> String {
    format!("ftp.site-chmod {shown}")
}

impl Inner {
    /// One `SITE CHMOD`, its refusal noted.
    pub(super) async fn site_chmod(
        &self,
        conn: &mut conn::FtpConn,
        mode: u32,
        path: &str,
    ) -> Result<(), suppaftp::FtpError> {
        conn.round_trip(1);
        let reply = conn.control.custom_command(chmod_command(mode, path), &[Status::CommandOk]).await;
        if let Err(err) = &reply {
            self.saw_chmod_reply(err);
        }
        reply.map(|_| ())
    }

    /// Notes a refusal of SITE CHMOD as a command (not known, not allowed,
    /// or its arguments not understood): every server answers one of those
    /// when it does not take it; a 550 is about one file.
    pub(super) fn saw_chmod_reply(&self, err: &suppaftp::FtpError) {
        if conn::reply_code(err).is_some_and(|code| matches!(code, 500 | 501 | 502 | 504)) {
            self.chmod_refused.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Remembers a refused SITE CHMOD for the next runs (once per run).
    pub(super) async fn note_chmod(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.chmod_refused.load(Relaxed)
            && !self.chmod_remembered.swap(true, Relaxed)
            && let Some(memory) = &self.memory
        {
            memory.0.remember(&chmod_key(&self.shown), "no: SITE CHMOD refused").await;
        }
    }
}
