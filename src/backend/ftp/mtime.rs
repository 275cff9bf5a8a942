//! Modification times over FTP: exact times from MLSD or MDTM (asked in
//! batches where LIST gives only minutes), the server's clock zone for
//! LIST times, and the command that sets a time, found once per server
//! (MFMT, MDTM with a time, SITE UTIME in two forms).

use std::sync::Arc;

use suppaftp::Status;

use super::{Inner, conn, listing};
use crate::backend::{Entry, Mtime};
use crate::error::OpError;
use crate::path::RelPath;

/// Ways a server may let us set a file's modification time, tried in this
/// order; one that fails is dropped for the rest of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MtimeCommand {
    /// `MFMT YYYYMMDDHHMMSS path` (pure-ftpd, proftpd, most modern servers).
    Mfmt,
    /// `MDTM YYYYMMDDHHMMSS path` (vsftpd).
    MdtmSet,
    /// `SITE UTIME YYYYMMDDHHMMSS path` (proftpd mod_site_misc).
    SiteUtime,
    /// `SITE UTIME path atime mtime ctime UTC` (pure-ftpd, others).
    SiteUtime5,
}

/// MDTM commands written at once on one connection (about 4 KiB of
/// commands, well inside any server's receive buffer).
const MDTM_BATCH: usize = 64;

/// `YYYYMMDDHHMMSS` in UTC, for MFMT and MDTM.
pub(crate) fn ftp_timestamp(mtime: Mtime) -> String {
    crate::units::format_utc_digits(mtime.secs())
}

impl Inner {
    /// The LIST time-zone offset: remembered, or measured once by comparing
    /// one file's LIST time with its MDTM (UTC), rounded to 15 minutes.
    /// Until a listing offers a file to measure, 0 is assumed (not kept).
    pub(super) async fn tz_offset(&self, entries: &[Entry], candidates: &[usize]) -> i64 {
        let mut known = self.tz_offset.lock().await;
        if let Some(offset) = *known {
            return offset;
        }
        let key = format!("ftp.list-tz-offset {}", self.shown);
        if let Some(memory) = &self.memory
            && let Some(recalled) = memory.0.recall(&key).await.and_then(|v| v.parse::<i64>().ok())
        {
            *known = Some(recalled);
            return recalled;
        }
        let sample = candidates.iter().map(|&i| &entries[i]).find(|e| e.coarse_mtime_s == 0);
        let (Some(sample), true) = (sample, self.features.mdtm) else { return 0 };
        let exact =
            self.mdtm_batch(std::slice::from_ref(&sample.path)).await.ok().and_then(|times| times.into_iter().next());
        let (Some(listed), Some(Some(exact))) = (sample.mtime, exact) else { return 0 };
        let quarter_hours = ((exact.secs() - listed.secs()) as f64 / 900.0).round() as i64;
        let offset = quarter_hours.clamp(-14 * 4, 14 * 4) * 900;
        if let Some(memory) = &self.memory {
            memory.0.remember(&key, &offset.to_string()).await;
        }
        *known = Some(offset);
        offset
    }

    /// MDTM for files whose listing gave only minutes: in batches (one
    /// write each, see [`Inner::mdtm_batch`]) spread over the connections.
    pub(super) async fn fill_exact_times(self: &Arc<Self>, entries: &mut [Entry], indexes: &[usize]) {
        let mut set = tokio::task::JoinSet::new();
        let batch = indexes.len().div_ceil(self.parallel.max(1)).clamp(1, MDTM_BATCH);
        let batches: Vec<Vec<(usize, RelPath)>> =
            indexes.chunks(batch).map(|chunk| chunk.iter().map(|&i| (i, entries[i].path.clone())).collect()).collect();
        let workers = self.parallel.min(batches.len());
        let queue = Arc::new(std::sync::Mutex::new(batches));
        for _ in 0..workers {
            let (inner, queue) = (Arc::clone(self), Arc::clone(&queue));
            set.spawn(async move {
                let mut found = Vec::new();
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop());
                    let Some(batch) = next else { break };
                    let paths: Vec<RelPath> = batch.iter().map(|(_, path)| path.clone()).collect();
                    // A failed batch leaves those files at their listed minute.
                    let Ok(times) = inner.mdtm_batch(&paths).await else { continue };
                    found.extend(batch.iter().zip(times).filter_map(|((index, _), time)| Some((*index, time?))));
                }
                found
            });
        }
        while let Some(Ok(found)) = set.join_next().await {
            for (index, mtime) in found {
                entries[index].mtime = Some(mtime);
                entries[index].coarse_mtime_s = 0;
            }
        }
    }

    /// MDTM for each of `paths` on one connection, in order; `None` for a
    /// file the server gave no time for (a 550, an unreadable reply). Where
    /// the connection pipelines, the commands go in one write and cost one
    /// round trip together: a LIST-only server (vsftpd) is asked this for
    /// every file of every listing.
    pub(super) async fn mdtm_batch(&self, paths: &[RelPath]) -> Result<Vec<Option<Mtime>>, OpError> {
        let Some(first) = paths.first() else { return Ok(Vec::new()) };
        let remotes: Vec<String> = paths.iter().map(|path| self.remote_path(path)).collect::<Result<_, _>>()?;
        self.with_conn("mdtm", first, async |conn, _| {
            let mut times = Vec::with_capacity(remotes.len());
            let answer = |reply: Result<suppaftp::types::Response, suppaftp::FtpError>| match reply {
                Ok(reply) => Ok(mdtm_time(&reply)),
                Err(suppaftp::FtpError::UnexpectedResponse(_)) => Ok(None),
                Err(err) => Err(err),
            };
            if conn.pipelining() && remotes.len() > 1 {
                let lines: Vec<String> = remotes.iter().map(|remote| format!("MDTM {remote}")).collect();
                let sent = conn.send_pipelined(&lines).await?;
                let read = async {
                    for _ in &lines {
                        times.push(answer(conn.control.read_response_in(&[Status::File]).await)?);
                    }
                    Ok(())
                };
                sent.answered_if(read.await)?;
            } else {
                for remote in &remotes {
                    conn.round_trip(1);
                    times.push(answer(conn.control.custom_command(format!("MDTM {remote}"), &[Status::File]).await)?);
                }
            }
            Ok(times)
        })
        .await
    }

    /// A time command the server refused is not tried again.
    fn drop_time_method(&self, method: MtimeCommand) {
        if let Ok(mut methods) = self.mtime_commands.lock()
            && methods.first() == Some(&method)
        {
            methods.remove(0);
            self.mtime_confirmed.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Sets a file's mtime with the first method the server accepts; a
    /// method the server refuses is not tried again.
    pub(super) async fn set_time(
        &self,
        conn: &mut conn::FtpConn,
        remote: &str,
        mtime: Mtime,
    ) -> Result<(), suppaftp::FtpError> {
        loop {
            let method = self.mtime_commands.lock().ok().and_then(|m| m.first().copied());
            let Some(method) = method else {
                return Err(suppaftp::FtpError::UnexpectedResponse(suppaftp::types::Response {
                    status: Status::CommandNotImplemented,
                    body: b"502 the server accepts no way of setting modification times".to_vec(),
                }));
            };
            match set_time(conn, method, remote, mtime).await {
                Ok(()) => {
                    self.mtime_confirmed.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
                Err(suppaftp::FtpError::UnexpectedResponse(_)) => self.drop_time_method(method),
                Err(other) => return Err(other),
            }
        }
    }
}

/// The command line that sets `remote`'s mtime with `command`.
pub(super) fn time_command(command: MtimeCommand, remote: &str, mtime: Mtime) -> String {
    let stamp = ftp_timestamp(mtime);
    match command {
        MtimeCommand::Mfmt => format!("MFMT {stamp} {remote}"),
        MtimeCommand::MdtmSet => format!("MDTM {stamp} {remote}"),
        MtimeCommand::SiteUtime => format!("SITE UTIME {stamp} {remote}"),
        MtimeCommand::SiteUtime5 => format!("SITE UTIME {remote} {stamp} {stamp} {stamp} UTC"),
    }
}

async fn set_time(
    conn: &mut conn::FtpConn,
    command: MtimeCommand,
    remote: &str,
    mtime: Mtime,
) -> Result<(), suppaftp::FtpError> {
    conn.round_trip(1);
    conn.control
        .custom_command(time_command(command, remote, mtime), &[Status::File, Status::CommandOk])
        .await
        .map(|_| ())
}

/// The time in an MDTM reply (`213 YYYYMMDDHHMMSS`), UTC.
fn mdtm_time(reply: &suppaftp::types::Response) -> Option<Mtime> {
    let text = String::from_utf8_lossy(&reply.body);
    text.get(4..).and_then(|t| listing::parse_ftp_time(t.trim().as_bytes()))
}
