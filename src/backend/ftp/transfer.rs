//! Transfers over a pooled connection: a RETR or STOR opened on its data
//! connection ([`FtpBackend::open_reader`], [`FtpBackend::open_writer`]),
//! read or written with a stall timeout, and ended by its final reply,
//! within the timeout too: a connection that failed or timed out on the
//! way is closed, never pooled out of step.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use suppaftp::Status;
use suppaftp::types::{FileType, FormatControl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::conn::{self, DataMode, classify};
use super::pool::Pooled;
use super::{FtpBackend, Inner, Transfer, data, text};
use crate::backend::{FileReader, FileWriter, Mtime};
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;

impl FtpBackend {
    /// A RETR from `offset`; `text` switches the connection to TYPE A for
    /// this transfer (and back to TYPE I after it).
    ///
    /// `range`: read only that many bytes, then end the transfer early
    /// (see [`FtpReader::end_range`]).
    pub(super) async fn open_reader(
        &self,
        path: &RelPath,
        offset: u64,
        text: bool,
        range: Option<u64>,
    ) -> Result<Box<dyn FileReader>, OpError> {
        let (pooled, stream) = self.open_transfer(path, data::Op::Retrieve, offset, text).await?;
        // From here the reader's own drop decides (see `FtpReader`).
        Ok(Box::new(FtpReader {
            stream: Some(stream),
            pooled,
            path: path.clone(),
            timeout: self.inner.pool.params().timeout,
            text: text.then(text::CrlfToLf::default),
            remaining: range,
        }))
    }

    /// A STOR (REST+STOR or APPE when `offset` > 0); `text` as for reads.
    pub(super) async fn open_writer(
        &self,
        path: &RelPath,
        offset: u64,
        text: bool,
    ) -> Result<Box<dyn FileWriter>, OpError> {
        let op = if offset > 0 && !self.inner.features.rest_stream { data::Op::Append } else { data::Op::Store };
        let (pooled, stream) = self.open_transfer(path, op, offset, text).await?;
        // From here the writer's own drop decides (see `FtpWriter`).
        Ok(Box::new(FtpWriter {
            stream: Some(stream),
            pooled: Some(pooled),
            path: path.clone(),
            inner: Arc::clone(&self.inner),
            text: text.then(text::LfToCrlf::default),
        }))
    }

    /// A pooled connection with `op`'s data connection open on it (after
    /// TYPE A for a text transfer), within the time limit; a connection
    /// that failed or timed out on the way is closed, not pooled.
    async fn open_transfer(
        &self,
        path: &RelPath,
        op: data::Op,
        offset: u64,
        text: bool,
    ) -> Result<(Pooled, Transfer), OpError> {
        let what = if matches!(op, data::Op::Retrieve) { "read" } else { "write" };
        let remote = self.inner.remote_path(path)?;
        // A server that could not open a passive port (425: all of its
        // range in use for a moment; proftpd answers EPSV so under load)
        // is asked once more, on another connection: nothing was sent
        // or received yet, so it costs no file retry. (In active mode a
        // 425 is the server failing to connect back: not asked again.)
        let mut may_ask_again = matches!(self.inner.pool.params().data_mode, DataMode::Passive { .. });
        loop {
            let mut pooled = self.inner.pool.get().await?;
            pooled.in_doubt();
            let started = async {
                if text {
                    pooled.conn().round_trip(1);
                    pooled.conn().control.transfer_type(FileType::Ascii(FormatControl::Default)).await?;
                }
                data::open(pooled.conn(), op, &remote, offset).await
            };
            let started = tokio::time::timeout(self.inner.pool.params().timeout, started).await;
            pooled.settled();
            match started {
                Ok(Ok(stream)) => return Ok((pooled, stream)),
                Ok(Err(err)) => {
                    pooled.mark_broken();
                    if may_ask_again && conn::reply_code(&err) == Some(425) {
                        may_ask_again = false;
                        continue;
                    }
                    return Err(classify(err, what, path));
                }
                Err(_) => {
                    pooled.mark_broken();
                    return Err(OpError::new(ErrorKind::Temporary, what, path, "timed out"));
                }
            }
        }
    }
}

struct FtpReader {
    stream: Option<Transfer>,
    pooled: Pooled,
    path: RelPath,
    timeout: Duration,
    /// A text (TYPE A) transfer: line ends to convert.
    text: Option<text::CrlfToLf>,
    /// A range read: the bytes still wanted before the transfer is ended.
    remaining: Option<u64>,
}

impl Drop for FtpReader {
    fn drop(&mut self) {
        // An active-mode transfer abandoned midway leaves its final reply
        // unread on the control connection, a text one leaves it in TYPE A:
        // do not reuse it.
        if self.stream.as_ref().is_some_and(|s| s.needs_finish() || self.text.is_some()) {
            self.pooled.mark_broken();
        }
    }
}

/// Back to TYPE I after a text transfer; a connection that cannot be
/// switched back must not serve binary transfers.
async fn binary_again(pooled: &mut Pooled, path: &RelPath, timeout: Duration) -> Result<(), OpError> {
    pooled.conn().round_trip(1);
    let switched = tokio::time::timeout(timeout, pooled.conn().control.transfer_type(FileType::Binary)).await;
    match switched {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            pooled.mark_broken();
            Err(classify(e, "TYPE I", path))
        }
        Err(_) => {
            pooled.mark_broken();
            Err(OpError::new(ErrorKind::Temporary, "TYPE I", path, format!("no answer within {timeout:?}")))
        }
    }
}

/// A transfer whose final reply did not come within `timeout`.
fn no_final_reply(op: &'static str, path: &RelPath, timeout: Duration) -> OpError {
    OpError::new(ErrorKind::Temporary, op, path, format!("the server did not confirm the transfer within {timeout:?}"))
}

#[async_trait]
impl FileReader for FtpReader {
    async fn read(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        loop {
            let raw = self.read_raw(buf).await?;
            let Some(decoder) = self.text.as_mut() else { return Ok(raw) };
            let mut out = Vec::with_capacity(raw.capacity());
            if raw.is_empty() {
                decoder.finish(&mut out);
                return Ok(out);
            }
            decoder.feed(&raw, &mut out);
            if !out.is_empty() {
                return Ok(out);
            }
            buf = raw;
        }
    }
}

impl FtpReader {
    /// The next bytes as they come off the data connection.
    async fn read_raw(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        // Read into the buffer's spare capacity (read_buf): zero-filling a
        // 1 MiB buffer before every read cost more CPU than the transfer
        // itself for small files (measured with perf: memset and its page
        // faults were a quarter of a 10,000-file download).
        let mut capacity = buf.capacity().max(1);
        buf.clear();
        if let Some(remaining) = self.remaining {
            if remaining == 0 {
                self.end_range().await;
                return Ok(buf);
            }
            capacity = capacity.min(usize::try_from(remaining).unwrap_or(usize::MAX));
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(buf);
        };
        while buf.len() < capacity {
            match tokio::time::timeout(self.timeout, stream.read_buf(&mut buf)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    self.pooled.mark_broken();
                    return Err(OpError::io("read", &self.path, err));
                }
                Err(_) => {
                    self.pooled.mark_broken();
                    return Err(OpError::new(ErrorKind::Temporary, "read", &self.path, "data connection stalled"));
                }
            }
        }
        if let Some(remaining) = self.remaining.as_mut()
            && !buf.is_empty()
        {
            // One read may bring a little more than the range: cut it.
            buf.truncate(usize::try_from(*remaining).unwrap_or(usize::MAX));
            *remaining -= buf.len() as u64;
            if *remaining == 0 {
                self.end_range().await;
            }
            return Ok(buf);
        }
        if buf.is_empty()
            && let Some(stream) = self.stream.take()
        {
            // End of data: read the transfer's final reply (226), within
            // the timeout: a server gone silent after the data (seen: a
            // SIGTERM'd run waiting for it without end).
            self.pooled.in_doubt();
            let finished = tokio::time::timeout(self.timeout, stream.finish(&mut self.pooled.conn().control)).await;
            match finished {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.pooled.mark_broken();
                    return Err(classify(e, "read", &self.path));
                }
                Err(_) => {
                    self.pooled.mark_broken();
                    return Err(no_final_reply("read", &self.path, self.timeout));
                }
            }
            if self.text.is_some() {
                binary_again(&mut self.pooled, &self.path, self.timeout).await?;
            }
            self.pooled.settled();
        }
        Ok(buf)
    }
}

impl FtpReader {
    /// The range is in: the data connection is closed before the file's
    /// end, so the server ends the transfer with one reply (426, or 226
    /// when it had sent everything already: vsftpd, pure-ftpd and proftpd
    /// alike). That reply is read (suppaftp reads it itself for its own
    /// passive connections, before the next command), then a NOOP must
    /// be answered 200: only then is the control connection in step and
    /// goes back to the pool. Anything else closes it.
    async fn end_range(&mut self) {
        let Some(stream) = self.stream.take() else { return };
        let ours = stream.needs_finish();
        drop(stream);
        self.pooled.in_doubt();
        let conn = self.pooled.conn();
        let settled = async {
            if ours {
                conn.control.read_response_in(RANGE_ENDED).await?;
            }
            conn.round_trip(1);
            conn.control.custom_command("NOOP", &[Status::CommandOk]).await
        };
        let within = self.timeout.min(Duration::from_secs(10));
        if matches!(tokio::time::timeout(within, settled).await, Ok(Ok(_))) {
            self.pooled.settled();
        } else {
            self.pooled.mark_broken();
        }
    }
}

/// Replies that end a transfer whose data connection the client closed.
const RANGE_ENDED: &[Status] =
    &[Status::ClosingDataConnection, Status::RequestedFileActionOk, Status::TransferAborted, Status::ActionAborted];

struct FtpWriter {
    stream: Option<Transfer>,
    pooled: Option<Pooled>,
    path: RelPath,
    inner: Arc<Inner>,
    /// A text (TYPE A) transfer: line ends to convert.
    text: Option<text::LfToCrlf>,
}

impl FtpWriter {
    fn broken(&mut self) {
        if let Some(pooled) = self.pooled.as_mut() {
            pooled.mark_broken();
        }
    }
}

impl Drop for FtpWriter {
    fn drop(&mut self) {
        if self.stream.as_ref().is_some_and(|s| s.needs_finish() || self.text.is_some()) {
            self.broken();
        }
    }
}

#[async_trait]
impl FileWriter for FtpWriter {
    async fn write(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, OpError> {
        let timeout = self.inner.pool.params().timeout;
        let Some(stream) = self.stream.as_mut() else {
            return Err(OpError::new(ErrorKind::Other, "write", &self.path, "write after finish"));
        };
        let encoded;
        let wire: &[u8] = match self.text.as_mut() {
            Some(encoder) => {
                let mut out = Vec::with_capacity(buf.len() + buf.len() / 16);
                encoder.feed(&buf, &mut out);
                encoded = out;
                &encoded
            }
            None => &buf,
        };
        match tokio::time::timeout(timeout, stream.write_all(wire)).await {
            Ok(Ok(())) => {
                buf.clear();
                Ok(buf)
            }
            Ok(Err(err)) => {
                self.broken();
                Err(OpError::io("write", &self.path, err))
            }
            Err(_) => {
                self.broken();
                Err(OpError::new(ErrorKind::Temporary, "write", &self.path, "data connection stalled"))
            }
        }
    }

    async fn finish(mut self: Box<Self>, mtime: Option<Mtime>) -> Result<Option<Mtime>, OpError> {
        let timeout = self.inner.pool.params().timeout;
        let Some(stream) = self.stream.take() else {
            return Err(OpError::new(ErrorKind::Other, "write", &self.path, "finished twice"));
        };
        let finished = match self.pooled.as_mut() {
            Some(pooled) => {
                // The upload's end: its final reply (226) is waited for,
                // within the timeout (a server gone silent).
                pooled.in_doubt();
                pooled.conn().round_trip(1);
                match tokio::time::timeout(timeout, stream.finish(&mut pooled.conn().control)).await {
                    Ok(finished) => finished.map_err(|err| classify(err, "write", &self.path)),
                    Err(_) => Err(no_final_reply("write", &self.path, timeout)),
                }
            }
            None => Err(classify(suppaftp::FtpError::BadResponse, "write", &self.path)),
        };
        if let Err(err) = finished {
            self.broken();
            return Err(err);
        }
        let Some(pooled) = self.pooled.as_mut() else { return Ok(None) };
        if self.text.is_some() {
            binary_again(pooled, &self.path, timeout).await?;
        }
        let Some(mtime) = mtime else {
            pooled.settled();
            return Ok(None);
        };
        // The name the writer was opened with: it was written.
        let remote = self.inner.remote_path(&self.path)?;
        let set = tokio::time::timeout(timeout, self.inner.set_time(pooled.conn(), &remote, mtime)).await;
        let Ok(set) = set else {
            // The content is safe; the connection is out of step.
            pooled.mark_broken();
            return Ok(None);
        };
        pooled.settled();
        match set {
            Ok(()) => Ok(Some(mtime)),
            // The content is safe; only the time is off. The commit step
            // records the server's own time instead.
            Err(_) => Ok(None),
        }
    }
}

/// `--ascii GLOB`: matching files go as TYPE A, line ends converted.
#[async_trait]
impl crate::backend::TextMode for FtpBackend {
    fn is_text(&self, path: &RelPath) -> bool {
        self.inner.ascii.matches(path)
    }

    async fn open_read_text(&self, path: &RelPath) -> Result<Box<dyn FileReader>, OpError> {
        self.open_reader(path, 0, true, None).await
    }

    async fn open_write_text(&self, target: &RelPath) -> Result<Box<dyn FileWriter>, OpError> {
        self.open_writer(target, 0, true).await
    }
}
