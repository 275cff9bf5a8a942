//! Sizes and rates on the command line: `512`, `64K`, `1.5M`, `2G`, binary
//! units (1K = 1024), as rclone reads them. A trailing `B`, `iB` or `/s` is
//! accepted and ignored. Ages (`--min-age 15m`, `--max-age 2026-12-01`).
//! And the UTC times barge writes (reports, the doctor, FTP commands), by
//! the `time` crate's calendar.

use time::{Date, Month, PrimitiveDateTime, Time, UtcDateTime, UtcOffset};

/// `--min-age`, `--max-age`: how long before the run's start, or a point
/// in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    /// Seconds before the run's start.
    Ago(u64),
    /// Seconds since the epoch.
    At(i64),
}

impl Age {
    /// The time it stands for, in seconds since the epoch, for a run
    /// started at `now`.
    pub fn cutoff(self, now: i64) -> i64 {
        match self {
            Age::Ago(secs) => now.saturating_sub(i64::try_from(secs).unwrap_or(i64::MAX)),
            Age::At(at) => at,
        }
    }
}

/// Parses an age: a duration (`90`, `30s`, `15m`, `2h`, `7d`, `2w`, or
/// several, `1d12h`; a bare number is seconds) or a time (`2026-12-01`,
/// `2026-12-01 08:00`, `2026-12-01T08:00:00Z`, `...+01:00`; UTC unless
/// it carries an offset).
pub fn parse_age(text: &str) -> Result<Age, String> {
    let trimmed = text.trim();
    let bad = || {
        format!(
            "`{text}` is not an age: give a duration (30s, 15m, 2h, 7d, 2w, 1d12h) or a time \
             (2026-12-01, 2026-12-01 08:00, 2026-12-01T08:00:00Z)"
        )
    };
    if trimmed.len() >= 10 && trimmed.as_bytes()[4] == b'-' {
        return parse_time(trimmed).map(Age::At).ok_or_else(bad);
    }
    span_secs(trimmed).map(Age::Ago).ok_or_else(bad)
}

/// `--max-duration`: a duration as [`parse_age`] reads one (`90`, `45m`,
/// `2h`, `1h30m`), more than nothing.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    match span_secs(text.trim()) {
        Some(0) => Err(format!("`{text}` is no time at all: give a duration such as 30m or 2h")),
        Some(secs) => Ok(std::time::Duration::from_secs(secs)),
        None => Err(format!("`{text}` is not a duration (examples: 90, 45m, 2h, 1h30m, 1d)")),
    }
}

/// `90`, `30s`, `15m`, `2h`, `7d`, `2w`, `1d12h`: seconds.
fn span_secs(trimmed: &str) -> Option<u64> {
    let mut secs: u64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.chars().next();
        let scale = match unit {
            None if secs == 0 => 1,
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            Some('w') => 7 * 86_400,
            _ => return None,
        };
        rest = unit.map_or(rest, |u| &rest[u.len_utf8()..]);
        secs = number.checked_mul(scale).and_then(|n| secs.checked_add(n))?;
    }
    (!trimmed.is_empty()).then_some(secs)
}

/// `YYYY-MM-DD[( |T)HH:MM[:SS]][Z|(+|-)HH:MM]`, as seconds since the epoch.
fn parse_time(text: &str) -> Option<i64> {
    let number = |s: &str| s.parse::<u16>().ok().filter(|_| s.bytes().all(|b| b.is_ascii_digit()));
    let (date, rest) = text.split_at(10);
    let mut parts = date.split('-');
    let (year, month, day) = (number(parts.next()?)?, number(parts.next()?)?, number(parts.next()?)?);
    let date = Date::from_calendar_date(
        i32::from(year),
        Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let (clock, zone) = match rest.strip_prefix([' ', 'T']) {
        None => ("", rest),
        Some(rest) => rest.split_at(rest.find(['Z', '+', '-']).unwrap_or(rest.len())),
    };
    let time = if clock.is_empty() {
        Time::MIDNIGHT
    } else {
        let fields: Vec<u16> = clock.split(':').map(number).collect::<Option<_>>()?;
        let (hour, minute, second) = match fields[..] {
            [h, m] => (h, m, 0),
            [h, m, s] => (h, m, s),
            _ => return None,
        };
        Time::from_hms(u8::try_from(hour).ok()?, u8::try_from(minute).ok()?, u8::try_from(second).ok()?).ok()?
    };
    let offset = match zone {
        "" | "Z" => UtcOffset::UTC,
        _ => {
            let sign: i8 = if zone.starts_with('-') { -1 } else { 1 };
            let (hours, minutes) = zone[1..].split_once(':')?;
            let (hours, minutes) = (i8::try_from(number(hours)?).ok()?, i8::try_from(number(minutes)?).ok()?);
            UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?
        }
    };
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset).unix_timestamp())
}

/// Parses a byte count with an optional K/M/G/T/P suffix.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let body = trimmed.strip_suffix("/s").unwrap_or(trimmed);
    let body = body.strip_suffix("iB").or_else(|| body.strip_suffix('B')).unwrap_or(body);
    let (number, shift) = match body.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&body[..body.len() - 1], 10),
        Some('M') => (&body[..body.len() - 1], 20),
        Some('G') => (&body[..body.len() - 1], 30),
        Some('T') => (&body[..body.len() - 1], 40),
        Some('P') => (&body[..body.len() - 1], 50),
        _ => (body, 0),
    };
    let bad = || format!("`{text}` is not a size (examples: 4096, 64K, 1.5M, 2G)");
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    let bytes = value * (1u64 << shift) as f64;
    if bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    // Rounded to a whole byte; fractions of a byte mean nothing here.
    Ok(bytes.round() as u64)
}

/// Formats a byte count for people: `1.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// `secs` since the epoch as a UTC calendar time. Outside the years
/// -9999..=9999, which no clock or file time barge meets, it is held at the
/// nearer end rather than failing a report.
fn utc(secs: i64) -> UtcDateTime {
    UtcDateTime::from_unix_timestamp(secs).unwrap_or(if secs < 0 { UtcDateTime::MIN } else { UtcDateTime::MAX })
}

/// Seconds since the epoch as `2026-11-25T10:00:00Z`.
pub fn format_utc(secs: i64) -> String {
    let t = utc(secs);
    let (month, day) = (u8::from(t.month()), t.day());
    format!("{:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", t.year(), t.hour(), t.minute(), t.second())
}

/// Seconds since the epoch as the UTC date `2026-11-25`.
pub fn format_utc_date(secs: i64) -> String {
    let t = utc(secs);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// Seconds since the epoch as `20261125100000` (UTC): the form of FTP's
/// MDTM replies and of the times MFMT and MDTM set.
pub fn format_utc_digits(secs: i64) -> String {
    let t = utc(secs);
    let (month, day) = (u8::from(t.month()), t.day());
    format!("{:04}{month:02}{day:02}{:02}{:02}{:02}", t.year(), t.hour(), t.minute(), t.second())
}

/// Now, in seconds since the epoch.
pub fn unix_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `40000-40100` (or one port) into an inclusive range of non-zero ports.
pub fn parse_port_range(text: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let port = |t: &str| t.trim().parse::<u16>().ok().filter(|p| *p > 0);
    match (port(first), port(last)) {
        (Some(first), Some(last)) if first <= last => Ok(first..=last),
        _ => Err(format!("expected a port range like 40000-40100, got {text:?}")),
    }
}

/// `--timeout` (and a config's `timeout`): whole seconds, at least one.
/// There is no "never": a run against a server that stopped answering must
/// end (lftp's and rclone's `0` for "none" would hang a cron job).
pub fn parse_timeout_secs(text: &str) -> Result<u64, String> {
    let secs = text.trim().parse::<u64>().map_err(|_| format!("expected whole seconds (e.g. 60), got {text:?}"))?;
    check_timeout_secs(secs)?;
    Ok(secs)
}

/// See [`parse_timeout_secs`].
pub fn check_timeout_secs(secs: u64) -> Result<(), String> {
    if secs == 0 {
        return Err("a timeout of 0 would fail every operation at once; give at least 1 second (there is no \
                    \"never\": a run against a silent server must end)"
            .to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_whole_seconds_and_never_zero() {
        assert_eq!(parse_timeout_secs("60"), Ok(60));
        for bad in ["0", "-5", "1.5", "", "10s"] {
            assert!(parse_timeout_secs(bad).is_err(), "{bad}");
        }
        assert!(parse_timeout_secs("0").unwrap_err().contains("at least 1 second"));
    }

    #[test]
    fn port_ranges_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_port_range("40000-40100"), Ok(40000..=40100));
        assert_eq!(parse_port_range("2121"), Ok(2121..=2121));
        for bad in ["", "0-10", "10-5", "a-b", "1-70000", "-"] {
            assert!(parse_port_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_binary_suffixes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64K"), Ok(64 * 1024));
        assert_eq!(parse_size("64k"), Ok(64 * 1024));
        assert_eq!(parse_size("1.5M"), Ok(1536 * 1024));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("10M/s"), Ok(10 << 20));
        assert!(parse_size("-1").is_err());
        assert!(parse_size("ten").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999P").is_err());
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400 + 3661), "2000-02-29T01:01:01Z");
        assert_eq!(format_utc(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_utc_date(1_795_603_809), "2026-11-25");
        assert_eq!(format_utc_digits(1_795_603_809), "20261125105009");
        assert_eq!(format_utc_digits(-9_223_372_037), "16770921001243");
        // Beyond the calendar's years: the nearer end, never a panic.
        assert_eq!(format_utc(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(format_utc(i64::MIN), "-9999-01-01T00:00:00Z");
    }

    #[test]
    fn ages_are_durations_or_times() {
        assert_eq!(parse_age("90"), Ok(Age::Ago(90)));
        assert_eq!(parse_age("30s"), Ok(Age::Ago(30)));
        assert_eq!(parse_age("15m"), Ok(Age::Ago(900)));
        assert_eq!(parse_age("2h"), Ok(Age::Ago(7200)));
        assert_eq!(parse_age("7d"), Ok(Age::Ago(7 * 86_400)));
        assert_eq!(parse_age("1d12h"), Ok(Age::Ago(129_600)));
        assert_eq!(parse_age("2w"), Ok(Age::Ago(14 * 86_400)));
        assert_eq!(parse_age("2026-12-01"), Ok(Age::At(1_796_083_200)));
        assert_eq!(parse_age("2026-12-01 08:00"), Ok(Age::At(1_796_083_200 + 8 * 3600)));
        assert_eq!(parse_age("2026-12-01T08:00:30Z"), Ok(Age::At(1_796_083_200 + 8 * 3600 + 30)));
        assert_eq!(parse_age("2026-12-01T08:00:00+01:00"), Ok(Age::At(1_796_083_200 + 7 * 3600)));
        assert_eq!(parse_age("2026-12-01T08:00:00-00:30"), Ok(Age::At(1_796_083_200 + 8 * 3600 + 1800)));
        for bad in
            ["", "m", "10x", "1.5h", "-5m", "10 m", "2026-13-01", "2026-02-30", "2026-12-01 25:00", "2026-12-01X"]
        {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
        assert_eq!(Age::Ago(60).cutoff(1000), 940);
        assert_eq!(parse_duration("1h30m"), Ok(std::time::Duration::from_secs(5400)));
        assert_eq!(parse_duration("90"), Ok(std::time::Duration::from_secs(90)));
        for bad in ["0", "0s", "", "soon", "2026-12-01", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(Age::At(5).cutoff(1000), 5);
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
