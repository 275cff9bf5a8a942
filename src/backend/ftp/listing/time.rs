//! Calendar dates (the `time` crate's proleptic Gregorian calendar, UTC)
//! and the time forms of listings: MDTM/MLSD `YYYYMMDDHHMMSS[.sss]`, and
//! the year a `Mon DD HH:MM` date belongs to (the six-month rule).

use ::time::{Date, Month, UtcDateTime};

use super::*;

/// Day 0 of the day numbers here (`today`): 1970-01-01.
const EPOCH: Date = UtcDateTime::UNIX_EPOCH.date();

/// The day `year-month-day`; `None` when there is no such day (`Feb 30`,
/// month 13) or it lies outside the calendar's years -9999..=9999.
fn calendar_date(year: i64, month: u32, day: u32) -> Option<Date> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()
}

pub(super) fn valid_date(year: i64, month: u32, day: u32) -> bool {
    calendar_date(year, month, day).is_some()
}

/// Days since 1970-01-01.
fn day_number(date: Date) -> i64 {
    i64::from(date.to_julian_day()) - i64::from(EPOCH.to_julian_day())
}

/// The year of a day number; `None` outside the calendar.
fn year_of_day(days: i64) -> Option<i64> {
    let julian = i32::try_from(days.checked_add(i64::from(EPOCH.to_julian_day()))?).ok()?;
    Date::from_julian_day(julian).ok().map(|date| i64::from(date.year()))
}

/// A valid date and a time of day into an [`Mtime`]; `None` outside its range.
pub(super) fn civil_to_mtime(year: i64, month: u32, day: u32, secs_of_day: i64, nanos: u32) -> Option<Mtime> {
    let days = day_number(calendar_date(year, month, day)?);
    let secs = days.checked_mul(SECS_PER_DAY)?.checked_add(secs_of_day)?;
    let ns = secs.checked_mul(1_000_000_000)?.checked_add(i64::from(nanos))?;
    Some(Mtime(ns))
}

/// How far after today a `Mon DD HH:MM` date may be and still be in the
/// current year (see "The six-month rule" above).
pub(super) const FUTURE_DAYS: i64 = 180;

/// The year of a `Mon DD HH:MM` date by the six-month rule; `None` when the
/// date exists in none of the years tried (`Apr 31`).
pub(super) fn six_month_year(today: i64, month: u32, day: u32) -> Option<i64> {
    let current = year_of_day(today)?;
    let latest = today.saturating_add(FUTURE_DAYS);
    // Eight years back always reach a leap year, for `Feb 29`.
    (0..=8)
        .map(|back| current - back)
        .find(|&year| calendar_date(year, month, day).is_some_and(|date| day_number(date) <= latest))
}

pub(super) fn parse_ftp_time_precise(text: &[u8]) -> Option<(Mtime, TimePrecision)> {
    let text = text.trim_ascii();
    let (stamp, fraction) = text.split_at_checked(14)?;
    if !stamp.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |from: usize, to: usize| stamp.get(from..to).and_then(parse_u32);
    let (year, month, day) = (i64::from(num(0, 4)?), num(4, 6)?, num(6, 8)?);
    let (hour, minute, second) = (num(8, 10)?, num(10, 12)?, num(12, 14)?);
    if !valid_date(year, month, day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let (nanos, precision) = match fraction.split_first() {
        None => (0, TimePrecision::Seconds),
        Some((b'.', digits)) if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
            let mut nanos = 0u32;
            for i in 0..9 {
                nanos = nanos * 10 + digits.get(i).map_or(0, |&b| u32::from(b - b'0'));
            }
            (nanos, TimePrecision::Sub)
        }
        Some(_) => return None,
    };
    let secs_of_day = i64::from(hour * 3600 + minute * 60 + second);
    Some((civil_to_mtime(year, month, day, secs_of_day, nanos)?, precision))
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn calendar_matches_date_command() {
        // Values from `date -u -d ... +%s`.
        assert_eq!(at(1970, 1, 1, 0, 0, 0), Mtime(0));
        assert_eq!(at(1969, 12, 31, 23, 59, 59).secs(), -1);
        assert_eq!(at(2026, 11, 25, 12, 0, 0).secs(), 1_795_608_000);
        assert_eq!(at(2024, 11, 25, 10, 0, 0).secs(), 1_732_528_800);
        assert_eq!(at(2024, 2, 29, 8, 0, 0).secs(), 1_709_193_600);
        assert_eq!(at(1999, 12, 31, 23, 59, 59).secs(), 946_684_799);
        assert_eq!(at(2100, 3, 1, 0, 0, 0).secs(), 4_107_542_400);
        // Day numbers at year ends, as `date -u -d @$((days * 86400)) +%Y` gives.
        for (days, year) in [(-1, 1969), (0, 1970), (364, 1970), (365, 1971), (10_957, 2000), (20_000, 2024)] {
            assert_eq!(year_of_day(days), Some(year), "{days}");
        }
        assert_eq!(year_of_day(2_932_896), Some(9999));
        assert_eq!(year_of_day(2_932_897), None, "past the calendar");
        assert!(!valid_date(2100, 2, 29) && valid_date(2000, 2, 29) && valid_date(2024, 2, 29));
        assert!(!valid_date(2026, 2, 29) && !valid_date(2026, 4, 31) && !valid_date(2026, 13, 1));
    }

    #[test]
    fn ftp_times() {
        assert_eq!(parse_ftp_time(b"20240101123456"), Some(at(2024, 1, 1, 12, 34, 56)));
        assert_eq!(parse_ftp_time(b"20240101123456.123"), Some(Mtime(at(2024, 1, 1, 12, 34, 56).0 + 123_000_000)));
        assert_eq!(parse_ftp_time(b"20240101123456.5"), Some(Mtime(at(2024, 1, 1, 12, 34, 56).0 + 500_000_000)));
        assert_eq!(
            parse_ftp_time(b"20240101123456.1234567891234"),
            Some(Mtime(at(2024, 1, 1, 12, 34, 56).0 + 123_456_789))
        );
        assert_eq!(parse_ftp_time(b" 20240229000000\r\n"), Some(at(2024, 2, 29, 0, 0, 0)));
        assert_eq!(parse_ftp_time(b"19700101000000"), Some(Mtime(0)));
        assert_eq!(parse_ftp_time(b"19691231235959"), Some(Mtime::from_unix(-1, 0)));
        // A leap second rolls into the next minute rather than failing.
        assert_eq!(parse_ftp_time(b"20161231235960"), Some(at(2017, 1, 1, 0, 0, 0)));
        for bad in [
            &b""[..],
            b"2024",
            b"2024010112345",
            b"20240101123456.",
            b"20240101123456.12a",
            b"20240101123456x",
            b"20230229000000",
            b"20241301000000",
            b"20240100000000",
            b"20240101240000",
            b"20240101126000",
            b"2024-01-01 12:00",
            b"+2024010112345",
            b"99991231235959", // beyond what an Mtime holds
            b"00010101000000",
        ] {
            assert_eq!(parse_ftp_time(bad), None, "{}", show(bad));
        }
        assert_eq!(parse_ftp_time_precise(b"20240101123456").map(|t| t.1), Some(Seconds));
        assert_eq!(parse_ftp_time_precise(b"20240101123456.000").map(|t| t.1), Some(Sub));
    }

    #[test]
    fn precision_durations() {
        assert_eq!(Unknown.as_duration(), None);
        assert_eq!(Days.as_duration(), Some(Duration::from_secs(86_400)));
        assert_eq!(Minutes.as_duration(), Some(Duration::from_secs(60)));
        assert_eq!(Seconds.as_duration(), Some(Duration::from_secs(1)));
        assert_eq!(Sub.as_duration(), Some(Duration::from_millis(1)));
    }

    #[test]
    fn six_month_rule() {
        let year_of = |line: &str| list_one(line).mtime.expect("time");
        // now = 2026-11-25 12:00 UTC. Up to 180 days ahead is this year: pure-ftpd and
        // proftpd print future times as HH:MM (see the captured_* tests).
        assert_eq!(year_of("-rw-r--r-- 1 u g 1 Dec 20 10:00 f"), at(2026, 12, 20, 10, 0, 0));
        assert_eq!(year_of("-rw-r--r-- 1 u g 1 Nov 26 10:00 f"), at(2026, 11, 26, 10, 0, 0));
        assert_eq!(year_of("-rw-r--r-- 1 u g 1 Nov 26 23:59 f"), at(2026, 11, 26, 23, 59, 0));
        assert_eq!(year_of("-rw-r--r-- 1 u g 1 Nov 27 00:00 f"), at(2026, 11, 27, 0, 0, 0));
        assert_eq!(year_of("-rw-r--r-- 1 u g 1 Nov 28 12:00 f"), at(2026, 11, 28, 12, 0, 0));
        assert_eq!(year_of("-rw-r--r-- 1 u g 1 Dec 31 23:59 f"), at(2026, 12, 31, 23, 59, 0));
        assert_eq!(year_of("-rw-r--r-- 1 u g 1 Nov 25 13:00 f"), at(2026, 11, 25, 13, 0, 0));
        assert_eq!(year_of("-rw-r--r-- 1 u g 1 Jan  3 10:00 f"), at(2026, 1, 3, 10, 0, 0));
        assert_eq!(year_of("-rw-r--r-- 1 u g 1 Feb 29 10:00 f"), at(2024, 2, 29, 10, 0, 0));
        // Early in the year: 180 days ahead is still this year; 181 days ahead is a past
        // time of the last six months (here 184 days ago), in the previous year.
        let january = at(2026, 1, 10, 12, 0, 0);
        let l = parse_list(
            b"-rw-r--r-- 1 u g 1 Jul  9 10:00 a\n-rw-r--r-- 1 u g 1 Jul 10 10:00 b\n\
              -rw-r--r-- 1 u g 1 Dec 20 10:00 c\n-rw-r--r-- 1 u g 1 Jan 11 10:00 d\n",
            january,
        )
        .expect("parses");
        let times: Vec<Option<Mtime>> = l.entries.iter().map(|e| e.mtime).collect();
        assert_eq!(
            times,
            [
                Some(at(2026, 7, 9, 10, 0, 0)),
                Some(at(2025, 7, 10, 10, 0, 0)),
                Some(at(2025, 12, 20, 10, 0, 0)),
                Some(at(2026, 1, 11, 10, 0, 0)),
            ]
        );
        // The time of day of `now` does not matter: the rule is on dates.
        let midnight = at(2026, 11, 25, 0, 0, 0);
        let l = parse_list(b"-rw-r--r-- 1 u g 1 Nov 26 10:00 f", midnight).expect("parses");
        assert_eq!(l.entries[0].mtime, Some(at(2026, 11, 26, 10, 0, 0)));
        // New Year: on Jan 1 a `Dec 31` file is from last year, a `Jan 2` one from this.
        let new_year = at(2027, 1, 1, 0, 30, 0);
        let l = parse_list(b"-rw-r--r-- 1 u g 1 Dec 31 23:00 a\n-rw-r--r-- 1 u g 1 Jan  2 01:00 b\n", new_year)
            .expect("parses");
        assert_eq!(l.entries[0].mtime, Some(at(2026, 12, 31, 23, 0, 0)));
        assert_eq!(l.entries[1].mtime, Some(at(2027, 1, 2, 1, 0, 0)));
        // Feb 29 seen on a leap day, and in 2100 (not a leap year) reaching back to 2096.
        let leap_day = at(2028, 2, 29, 9, 0, 0);
        let l = parse_list(b"-rw-r--r-- 1 u g 1 Feb 29 08:00 a", leap_day).expect("parses");
        assert_eq!(l.entries[0].mtime, Some(at(2028, 2, 29, 8, 0, 0)));
        let l = parse_list(b"-rw-r--r-- 1 u g 1 Feb 29 08:00 a", at(2101, 1, 1, 0, 0, 0)).expect("parses");
        assert_eq!(l.entries[0].mtime, Some(at(2096, 2, 29, 8, 0, 0)));
        // Extreme clocks never panic.
        for now in [Mtime(i64::MIN), Mtime(i64::MAX), Mtime(0), Mtime(-1)] {
            let l = parse_list(b"-rw-r--r-- 1 u g 1 Feb 29 08:00 a\n-rw-r--r-- 1 u g 1 Dec 31 23:59 b", now);
            let l = l.expect("parses");
            assert_eq!(l.entries.len() + l.warnings.len(), 2);
        }
    }
}
