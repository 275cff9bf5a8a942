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

/// Files whose LIST and MDTM times measure a server's LIST zone: enough
/// that one written between the two commands is outvoted.
pub(super) const ZONE_SAMPLES: usize = 5;

/// Time zones are whole quarter hours from UTC.
const QUARTER_HOUR: i64 = 900;

/// The furthest zones from UTC (Kiribati's +14, Baker Island's -12).
const MAX_ZONE_OFFSET: i64 = 14 * 3600;

/// The offset (seconds to add to LIST times) that a file listed at
/// `listed` and exactly `exact` shows: to the nearest quarter hour.
pub(super) fn shown_offset(listed: Mtime, exact: Mtime) -> i64 {
    let apart = exact.secs().saturating_sub(listed.secs());
    let quarter_hours = (apart as f64 / QUARTER_HOUR as f64).round() as i64;
    quarter_hours.saturating_mul(QUARTER_HOUR).clamp(-MAX_ZONE_OFFSET, MAX_ZONE_OFFSET)
}

/// Whether `offset` still fits a file listed at `listed` whose exact time
/// is `exact`: shifted, the exact time falls in the listed minute (LIST
/// cuts the seconds off), give or take a minute for a server that rounds
/// or a file touched between the LIST and the MDTM.
pub(super) fn offset_holds(offset: i64, listed: Mtime, exact: Mtime) -> bool {
    let into_minute = exact.secs().saturating_sub(listed.secs()).saturating_sub(offset);
    (-60..120).contains(&into_minute)
}

/// The LIST offset after measuring `times` (LIST time and exact time of
/// each file, the probe first): the remembered one while the probe fits it,
/// else the offset most files show. A tie keeps the remembered offset if
/// it is among the tied, else goes to the probe's: moving the offset takes
/// more files than keeping it. `None`: nothing remembered or measured.
pub(super) fn settle_offset(remembered: Option<i64>, times: &[(Mtime, Mtime)]) -> Option<i64> {
    let Some(&(listed, exact)) = times.first() else { return remembered };
    if let Some(offset) = remembered
        && offset_holds(offset, listed, exact)
    {
        return Some(offset);
    }
    let shown: Vec<i64> = times.iter().map(|&(listed, exact)| shown_offset(listed, exact)).collect();
    let votes = |offset: i64| shown.iter().filter(|&&o| o == offset).count();
    let most = shown.iter().map(|&o| votes(o)).max().unwrap_or(0);
    match remembered {
        Some(offset) if votes(offset) == most => Some(offset),
        _ => shown.iter().copied().find(|&o| votes(o) == most),
    }
}

/// The zone LIST times are in, from the offset that takes them to UTC:
/// `UTC+01:00` for -3600.
pub(super) fn zone_name(offset: i64) -> String {
    let ahead = -offset;
    let sign = if ahead < 0 { '-' } else { '+' };
    let minutes = ahead.unsigned_abs() / 60;
    format!("UTC{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// What a run knows of a server's LIST time zone.
#[derive(Debug, Default)]
pub(super) struct ListZone {
    /// The offset the state database held, once read (`Some(None)`: none).
    remembered: Option<Option<i64>>,
    /// The offset the run uses from now on.
    pub(super) settled: Option<i64>,
    /// The remembered offset and the one measured in its place, when this
    /// run found it moved: told once, after the walk.
    moved: Option<(i64, i64)>,
}

/// `YYYYMMDDHHMMSS` in UTC, for MFMT and MDTM.
pub(crate) fn ftp_timestamp(mtime: Mtime) -> String {
    crate::units::format_utc_digits(mtime.secs())
}

impl Inner {
    /// The LIST time-zone offset, settled once a run on the first listing
    /// that offers files listed to the minute (until then the remembered
    /// offset, else 0, is assumed). A remembered offset is checked with one
    /// MDTM of such a file (a server's zone moves at a daylight-saving
    /// change) and measured again when that file's exact time falls outside
    /// its listed minute; without a remembered offset, or after such a miss,
    /// up to [`ZONE_SAMPLES`] files measure it (one pipelined batch).
    /// Without MDTM nothing can be measured: the remembered offset (else 0)
    /// stands.
    pub(super) async fn tz_offset(&self, entries: &[Entry], candidates: &[usize]) -> i64 {
        let mut zone = self.tz_offset.lock().await;
        if let Some(offset) = zone.settled {
            return offset;
        }
        let key = format!("ftp.list-tz-offset {}", self.shown);
        let remembered = match (zone.remembered, &self.memory) {
            (Some(remembered), _) => remembered,
            (None, Some(memory)) => memory.0.recall(&key).await.and_then(|v| v.parse::<i64>().ok()),
            (None, None) => None,
        };
        zone.remembered = Some(remembered);
        if !self.features.mdtm {
            zone.settled = Some(remembered.unwrap_or(0));
            return remembered.unwrap_or(0);
        }
        let samples: Vec<&Entry> = candidates
            .iter()
            .map(|&i| &entries[i])
            .filter(|e| e.coarse_mtime_s == 0 && e.mtime.is_some())
            .take(ZONE_SAMPLES)
            .collect();
        if samples.is_empty() {
            return remembered.unwrap_or(0);
        }
        // With an offset remembered, one file is the probe: the others are
        // asked only when it disagrees.
        let first = if remembered.is_some() { 1 } else { samples.len() };
        let mut times = self.listed_and_exact(&samples[..first]).await;
        if let (Some(offset), Some(&(listed, exact))) = (remembered, times.first())
            && !offset_holds(offset, listed, exact)
        {
            times.extend(self.listed_and_exact(&samples[first..]).await);
        }
        // Settled even when the server gave no time: one try a run.
        let offset = settle_offset(remembered, &times).unwrap_or(0);
        zone.settled = Some(offset);
        if !times.is_empty() && remembered != Some(offset) {
            if let Some(memory) = &self.memory {
                memory.0.remember(&key, &offset.to_string()).await;
            }
            zone.moved = remembered.map(|before| (before, offset));
        }
        offset
    }

    /// Each of `files`' LIST time with its exact time (MDTM, one batch);
    /// files the server gave no time for are left out.
    async fn listed_and_exact(&self, files: &[&Entry]) -> Vec<(Mtime, Mtime)> {
        if files.is_empty() {
            return Vec::new();
        }
        let paths: Vec<RelPath> = files.iter().map(|e| e.path.clone()).collect();
        let exact = self.mdtm_batch(&paths).await.unwrap_or_default();
        files.iter().zip(exact).filter_map(|(file, exact)| Some((file.mtime?, exact?))).collect()
    }

    /// The line that tells of an offset [`Inner::tz_offset`] found moved
    /// since the last run, once.
    pub(super) async fn take_zone_news(&self) -> Option<String> {
        let (before, now) = self.tz_offset.lock().await.moved.take()?;
        Some(format!(
            "{}: the server's clock offset changed (a daylight-saving change?): its LIST times are now {}, were {}; \
             measured again",
            self.shown,
            zone_name(now),
            zone_name(before)
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: i64 = 1_796_558_400; // 2026-12-05 12:00:00 UTC

    /// A file's LIST time (naive, the minute only) in a zone `ahead` seconds
    /// ahead of UTC, and its exact time.
    fn listed_in_zone(ahead: i64, exact_secs: i64) -> (Mtime, Mtime) {
        let local = exact_secs + ahead;
        (Mtime::from_unix(local - local.rem_euclid(60), 0), Mtime::from_unix(exact_secs, 0))
    }

    #[test]
    fn a_file_shows_its_zone_to_the_quarter_hour() {
        for ahead in [0, 3600, -3600, 5400, 19_800, 20_700, -9 * 3600 - 1800, 13 * 3600] {
            for second in [0, 1, 29, 59] {
                let (listed, exact) = listed_in_zone(ahead, NOON + 7 * 60 + second);
                assert_eq!(shown_offset(listed, exact), -ahead, "{ahead} {second}");
                assert!(offset_holds(-ahead, listed, exact), "{ahead} {second}");
            }
        }
        // A file touched a day after it was listed shows no zone that exists.
        let (listed, _) = listed_in_zone(0, NOON);
        assert_eq!(shown_offset(listed, Mtime::from_unix(NOON + 86_400, 0)), MAX_ZONE_OFFSET);
        assert_eq!(shown_offset(listed, Mtime::from_unix(NOON - 86_400, 0)), -MAX_ZONE_OFFSET);
    }

    #[test]
    fn an_offset_holds_within_the_listed_minute_give_or_take_one() {
        let listed = Mtime::from_unix(NOON, 0);
        let at = |secs: i64| Mtime::from_unix(NOON + secs, 0);
        for inside in [0, 30, 59, 60, 119, -1, -60] {
            assert!(offset_holds(0, listed, at(inside)), "{inside}");
        }
        for outside in [120, -61, 900, -900, 3600, -3600] {
            assert!(!offset_holds(0, listed, at(outside)), "{outside}");
        }
        // An hour's move of the zone (a daylight-saving change) never holds.
        assert!(offset_holds(-3600, listed, at(-3600 + 42)));
        assert!(!offset_holds(0, listed, at(-3600 + 42)));
        assert!(!offset_holds(-7200, listed, at(-3600 + 42)));
    }

    #[test]
    fn a_remembered_offset_moves_only_on_what_most_files_show() {
        let summer = |secs: i64| listed_in_zone(7200, NOON + secs);
        let winter = |secs: i64| listed_in_zone(3600, NOON + secs);
        // Nothing measured: the remembered offset, or nothing at all.
        assert_eq!(settle_offset(Some(-3600), &[]), Some(-3600));
        assert_eq!(settle_offset(None, &[]), None);
        // The probe fits: kept (the other files were never asked).
        assert_eq!(settle_offset(Some(-7200), &[summer(5)]), Some(-7200));
        // The zone moved an hour back: every file shows it.
        assert_eq!(settle_offset(Some(-7200), &[winter(5), winter(70), winter(200)]), Some(-3600));
        // Only the probe to go by: it decides, as a first measurement does.
        assert_eq!(settle_offset(Some(-7200), &[winter(5)]), Some(-3600));
        assert_eq!(settle_offset(None, &[winter(5)]), Some(-3600));
        // A probe touched between LIST and MDTM is outvoted.
        let touched = (summer(0).0, Mtime::from_unix(NOON + 5 * 3600, 0));
        assert_eq!(settle_offset(Some(-7200), &[touched, summer(70), summer(200)]), Some(-7200));
        // A tie keeps the remembered offset; without one among the tied, the probe's.
        assert_eq!(settle_offset(Some(-7200), &[winter(5), summer(70)]), Some(-7200));
        assert_eq!(settle_offset(Some(0), &[winter(5), summer(70)]), Some(-3600));
        assert_eq!(settle_offset(None, &[summer(5), winter(70), winter(200)]), Some(-3600));
    }

    #[test]
    fn zones_are_named_as_people_know_them() {
        assert_eq!(zone_name(0), "UTC+00:00");
        assert_eq!(zone_name(-3600), "UTC+01:00");
        assert_eq!(zone_name(7200), "UTC-02:00");
        assert_eq!(zone_name(-19_800), "UTC+05:30");
        assert_eq!(zone_name(34_200), "UTC-09:30");
    }
}
