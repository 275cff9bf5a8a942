//! FXP: a file copied from one FTP server straight to another, the data
//! never passing through barge. The destination listens (PASV), the source
//! is told to connect there (PORT), then STOR and RETR run at once on the
//! two control connections and both must end with a transfer-complete reply.
//!
//! Servers forbid this by default (a PORT naming a foreign address is the
//! classic "FTP bounce"): vsftpd needs `pasv_promiscuous=YES` on the
//! destination and `port_promiscuous=YES` on the source, proftpd
//! `AllowForeignAddress on`, pure-ftpd `-W`. A refusal is reported as such.
//! Plain FTP only: TLS-protected data between two servers needs SSCN/CPSV,
//! which barge does not speak.

use std::time::Duration;

use suppaftp::Status;

use super::FtpBackend;
use super::conn::{self, classify};
use super::pool::Pooled;
use super::protocol::{TlsMode, parse_pasv, port_command};
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;

const STARTING: &[Status] = &[Status::AboutToSend, Status::AlreadyOpen];
const COMPLETE: &[Status] = &[Status::ClosingDataConnection, Status::RequestedFileActionOk];

#[async_trait::async_trait]
impl crate::backend::ServerCopy for FtpBackend {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn send_to(&self, dst: &dyn crate::backend::ServerCopy, from: &RelPath, to: &RelPath) -> Result<(), OpError> {
        let Some(dst) = dst.as_any().downcast_ref::<FtpBackend>() else {
            return Err(OpError::new(ErrorKind::Unsupported, "fxp", from, "--fxp copies between FTP servers only"));
        };
        self.fxp_to(dst, from, to).await
    }
}

impl FtpBackend {
    /// Whether this server's data connections are plain (FXP possible).
    pub fn fxp_capable(&self) -> bool {
        self.inner.pool.params().tls_mode == TlsMode::None
    }

    /// Copies `src_path` on this server to `dst_path` on `dst` by FXP.
    pub async fn fxp_to(&self, dst: &FtpBackend, src_path: &RelPath, dst_path: &RelPath) -> Result<(), OpError> {
        if !self.fxp_capable() || !dst.fxp_capable() {
            return Err(OpError::new(
                ErrorKind::Unsupported,
                "fxp",
                src_path,
                "--fxp works between plain FTP servers only (TLS data connections between two servers need SSCN)",
            ));
        }
        let timeout = self.inner.pool.params().timeout.max(dst.inner.pool.params().timeout);
        let (remote_src, remote_dst) = (self.inner.remote_path(src_path)?, dst.inner.remote_path(dst_path)?);
        let (mut from, mut to) = tokio::try_join!(self.inner.pool.get(), dst.inner.pool.get())?;
        let result = tokio::time::timeout(
            timeout * 4,
            transfer(&mut from, &mut to, &remote_src, &remote_dst, src_path, dst_path, timeout),
        )
        .await
        .unwrap_or_else(|_| Err(OpError::new(ErrorKind::Temporary, "fxp", src_path, "timed out")));
        if result.is_err() {
            // Either side may still be waiting for a reply: start afresh next time.
            from.mark_broken();
            to.mark_broken();
        }
        result
    }
}

async fn transfer(
    from: &mut Pooled,
    to: &mut Pooled,
    remote_src: &str,
    remote_dst: &str,
    src_path: &RelPath,
    dst_path: &RelPath,
    timeout: Duration,
) -> Result<(), OpError> {
    // The destination listens; its announced address, NAT-corrected as for
    // our own passive connections, is where the source must connect.
    // PASV, PORT, RETR, the transfer's end (the STOR, sent without
    // waiting, counts itself).
    to.conn().round_trip(4);
    let reply = to
        .conn()
        .control
        .custom_command("PASV", &[Status::PassiveMode])
        .await
        .map_err(|e| classify(e, "fxp PASV", dst_path))?;
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    let announced = parse_pasv(&text)
        .ok_or_else(|| OpError::new(ErrorKind::InvalidData, "fxp PASV", dst_path, format!("bad reply {text:?}")))?;
    let peer = to
        .conn()
        .control
        .get_ref()
        .await
        .peer_addr()
        .map_err(|e| OpError::new(ErrorKind::Temporary, "fxp", dst_path, e.to_string()))?;
    let target = conn::passive_target(announced, peer, false);
    from.conn().control.custom_command(port_command(target), &[Status::CommandOk]).await.map_err(|e| {
        let mut err = classify(e, "fxp PORT", src_path);
        err.kind = ErrorKind::Unsupported;
        err.message = format!(
            "the source server refuses to send data to another server ({}): FXP is disabled there \
             (vsftpd port_promiscuous, proftpd AllowForeignAddress, pure-ftpd -W)",
            err.message
        );
        err
    })?;
    // STOR first, without waiting for its reply: servers answer 150 only
    // once the data connection is up, which the source makes after RETR.
    // (The control stream is plain TCP here: FXP is refused on TLS
    // connections before this point.)
    to.conn()
        .send_pipelined(&[format!("STOR {remote_dst}")])
        .await
        .map_err(|e| OpError::new(ErrorKind::Temporary, "fxp STOR", dst_path, e.to_string()))?
        // One command, not a batch: its fate says nothing about pipelining.
        .answered();
    let started = from.conn().control.custom_command(format!("RETR {remote_src}"), STARTING).await;
    if let Err(e) = started {
        let mut err = classify(e, "fxp RETR", src_path);
        if err.message.contains("425") || err.message.to_ascii_lowercase().contains("connection") {
            err.message = format!(
                "{}: the source could not connect to the destination's passive port {target} (a firewall \
                 between the servers, or the destination refuses connections from a foreign address: vsftpd \
                 pasv_promiscuous, proftpd AllowForeignAddress)",
                err.message
            );
        }
        return Err(err);
    }
    // (A destination that refused the STOR at once answers here too.)
    to.conn().control.read_response_in(STARTING).await.map_err(|e| classify(e, "fxp STOR", dst_path))?;
    let (sent, received) = tokio::join!(
        tokio::time::timeout(timeout * 3, from.conn().control.read_response_in(COMPLETE)),
        tokio::time::timeout(timeout * 3, to.conn().control.read_response_in(COMPLETE)),
    );
    let timed_out = |path: &RelPath| OpError::new(ErrorKind::Temporary, "fxp", path, "no transfer-complete reply");
    sent.map_err(|_| timed_out(src_path))?.map_err(|e| classify(e, "fxp RETR", src_path))?;
    received.map_err(|_| timed_out(dst_path))?.map_err(|e| classify(e, "fxp STOR", dst_path))?;
    Ok(())
}
