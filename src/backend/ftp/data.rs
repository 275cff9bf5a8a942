//! Data connections: one type for passive ones (opened by suppaftp) and
//! active ones (opened here).
//!
//! suppaftp's active mode always listens on an ephemeral port, which a
//! firewall that opens only `--active-ports 40000-40100` would drop. So
//! active mode is done here: listen on a port of the range, send PORT or
//! EPRT, then REST and the transfer command, accept the server's connection
//! (from the control peer only) and wrap it in TLS with the control
//! connection's session cache, exactly as suppaftp does for passive ones.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use suppaftp::tokio::AsyncRustlsStream;
use suppaftp::{FtpError, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::conn::{Control, FtpConn};
use super::protocol::{PlainOrTls, listen, parse_epsv, port_command};

type LibTransfer = suppaftp::tokio::TransferStream<AsyncRustlsStream>;

/// The replies that end a transfer.
const TRANSFER_COMPLETE: &[Status] = &[Status::ClosingDataConnection, Status::RequestedFileActionOk];
/// The replies that start one.
const TRANSFER_STARTING: &[Status] = &[Status::AboutToSend, Status::AlreadyOpen];

/// What a data connection is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// RETR, from an offset.
    Retrieve,
    /// STOR, at an offset (REST+STOR) when non-zero.
    Store,
    /// APPE: append to what the server has.
    Append,
    /// A listing command (MLSD, LIST).
    Listing,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Retrieve => "RETR",
            Op::Store => "STOR",
            Op::Append => "APPE",
            Op::Listing => "",
        }
    }

    fn is_upload(self) -> bool {
        matches!(self, Op::Store | Op::Append)
    }
}

/// How an active-mode data connection is set up.
#[derive(Debug, Clone)]
pub struct ActiveSetup {
    /// Local ports to listen on (`--active-ports`); `None` for any.
    pub ports: Option<RangeInclusive<u16>>,
    /// How long to wait for the server to connect.
    pub timeout: Duration,
    /// TLS for data connections: the control connection's own configuration
    /// (its session cache, for servers that demand session reuse).
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

/// An open data connection.
pub enum DataChannel {
    Passive(LibTransfer),
    Active { stream: PlainOrTls, upload: bool },
}

/// Opens a data connection for `op` on `target` (a path, or a whole listing
/// command for [`Op::Listing`]) and sends the command.
pub async fn open(conn: &mut FtpConn, op: Op, target: &str, offset: u64) -> Result<DataChannel, FtpError> {
    let command = match op {
        Op::Listing => target.to_string(),
        _ => format!("{} {target}", op.verb()),
    };
    let Some(active) = conn.active.clone() else {
        // Not for listings: a root listing lost to a server that drops
        // pipelined commands would fail the run, where a file is retried.
        if conn.pipelining() && conn.features.epsv && op != Op::Listing {
            return open_pipelined(conn, op, command, offset).await;
        }
        // EPSV (or PASV) and the transfer command (REST too when resuming);
        // the data connection's handshake is counted where it is made.
        conn.round_trip(if offset > 0 { 3 } else { 2 });
        let control = &mut conn.control;
        if offset > 0 {
            control.resume_transfer(usize::try_from(offset).unwrap_or(usize::MAX)).await?;
        }
        // put/append keep suppaftp's upload handling at the end (TLS
        // close_notify drained before the reply is read).
        let stream = match op {
            Op::Store => control.put_with_stream(target).await?,
            Op::Append => control.append_with_stream(target).await?,
            Op::Retrieve | Op::Listing => control.custom_data_command(command, TRANSFER_STARTING).await?.1,
        };
        return Ok(DataChannel::Passive(stream));
    };
    let (local, peer) = {
        let socket = conn.control.get_ref().await;
        (
            socket.local_addr().map_err(FtpError::ConnectionError)?,
            socket.peer_addr().map_err(FtpError::ConnectionError)?,
        )
    };
    let listener = listen(local.ip(), active.ports.as_ref()).map_err(FtpError::ConnectionError)?;
    // PORT, REST when resuming, the transfer command, the server's connect.
    conn.round_trip(if offset > 0 && op != Op::Append { 4 } else { 3 });
    let port = listener.local_addr().map_err(FtpError::ConnectionError)?.port();
    conn.control.custom_command(port_command(SocketAddr::new(local.ip(), port)), &[Status::CommandOk]).await?;
    if offset > 0 && op != Op::Append {
        conn.control.custom_command(format!("REST {offset}"), &[Status::RequestFilePending]).await?;
    }
    conn.control.custom_command(command, TRANSFER_STARTING).await?;
    let tcp = accept_from(&listener, peer.ip(), active.timeout).await.map_err(FtpError::ConnectionError)?;
    tcp.set_nodelay(true).ok();
    let stream = match active.tls {
        None => PlainOrTls::Plain(tcp),
        Some((config, name)) => {
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| FtpError::SecureError(e.to_string()))?;
            PlainOrTls::Tls(Box::new(tls))
        }
    };
    Ok(DataChannel::Active { stream, upload: op.is_upload() })
}

/// A passive data connection with EPSV, REST (when resuming) and the
/// transfer command written at once: the server reads the transfer command
/// after answering EPSV and waits for the data connection, which is made
/// as soon as the 229 is in, so the 150 arrives with the connection's
/// handshake. Two round trips instead of three (lftp does the same with
/// `ftp:sync-mode off`). Plain TCP only (see
/// [`FtpConn::send_pipelined`]); the data connection is barge's own, so
/// its final reply is read by [`DataChannel::finish`], as in active mode.
///
/// Any failure leaves replies unread or a server waiting for a connection:
/// the caller takes the connection out of the pool on any error (as it
/// does for every failed transfer start).
async fn open_pipelined(conn: &mut FtpConn, op: Op, command: String, offset: u64) -> Result<DataChannel, FtpError> {
    let rest = offset > 0 && op != Op::Append;
    let mut lines = vec!["EPSV".to_string()];
    if rest {
        lines.push(format!("REST {offset}"));
    }
    lines.push(command);
    let sent = conn.send_pipelined(&lines).await?;
    let started = async {
        let reply = conn.control.read_response_in(&[Status::ExtendedPassiveMode]).await?;
        let port = parse_epsv(&String::from_utf8_lossy(&reply.body)).ok_or(FtpError::BadResponse)?;
        conn.round_trip(1);
        let tcp = conn.connect_epsv_data(port).await?;
        if rest {
            conn.control.read_response_in(&[Status::RequestFilePending]).await?;
        }
        conn.control.read_response_in(TRANSFER_STARTING).await?;
        Ok(tcp)
    };
    // Answered once the transfer command's reply (or a refusal on the
    // way) is in: a server that lost the command never sends its 150.
    let tcp = sent.answered_if(started.await)?;
    Ok(DataChannel::Active { stream: PlainOrTls::Plain(tcp), upload: op.is_upload() })
}

impl DataChannel {
    /// Closes the data connection and reads the transfer's final reply.
    pub async fn finish(self, control: &mut Control) -> Result<(), FtpError> {
        match self {
            DataChannel::Passive(stream) => stream.finish().await,
            DataChannel::Active { mut stream, upload } => {
                let shutdown = stream.shutdown().await;
                if shutdown.is_ok() && upload && matches!(stream, PlainOrTls::Tls(_)) {
                    // Wait for the server's close_notify: some servers count
                    // an upload incomplete otherwise.
                    let mut scratch = [0u8; 1024];
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {}
                    })
                    .await;
                }
                drop(stream);
                control.read_response_in(TRANSFER_COMPLETE).await?;
                if upload {
                    shutdown.map_err(FtpError::ConnectionError)?;
                }
                Ok(())
            }
        }
    }

    /// True when dropping it unfinished leaves a reply unread on the control
    /// connection (suppaftp reads it itself for passive ones).
    pub fn needs_finish(&self) -> bool {
        matches!(self, DataChannel::Active { .. })
    }
}

/// Accepts the server's data connection; connections from any other
/// address are dropped (anyone could race to connect to the listener).
async fn accept_from(listener: &TcpListener, server: IpAddr, timeout: Duration) -> io::Result<TcpStream> {
    let accept = async {
        loop {
            let (stream, from) = listener.accept().await?;
            if from.ip() == server || from.ip().to_canonical() == server.to_canonical() {
                return Ok(stream);
            }
        }
    };
    tokio::time::timeout(timeout, accept).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the server did not connect back within {timeout:?} (active mode: is the port reachable?)"),
        )
    })?
}

impl AsyncRead for DataChannel {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DataChannel::Passive(s) => Pin::new(s).poll_read(cx, buf),
            DataChannel::Active { stream, .. } => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for DataChannel {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            DataChannel::Passive(s) => Pin::new(s).poll_write(cx, buf),
            DataChannel::Active { stream, .. } => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DataChannel::Passive(s) => Pin::new(s).poll_flush(cx),
            DataChannel::Active { stream, .. } => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DataChannel::Passive(s) => Pin::new(s).poll_shutdown(cx),
            DataChannel::Active { stream, .. } => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
