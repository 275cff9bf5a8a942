//! `ls -l` style LIST lines (Unix, and NetWare's variant): mode, links,
//! owner, group, size, a date in any of its forms, the name (and a link's
//! target).

use super::*;

/// Enough tokens for the mode, up to seven columns before the size, the size
/// and a three-column date.
pub(super) const UNIX_TOKENS: usize = 12;

pub(super) fn parse_unix_like(line: &[u8], today: i64) -> Result<(ListEntry, ListFormat), String> {
    let toks = tokens(line, UNIX_TOKENS);
    let Some(first) = toks.first() else { return Err("empty line".into()) };
    let netware = matches!(first.text, b"d" | b"-")
        && toks.get(1).is_some_and(|t| t.text.starts_with(b"[") && t.text.ends_with(b"]"));
    let (format, type_char, unix_mode, size_from) = if netware {
        (ListFormat::NetWare, first.text.first().copied().unwrap_or(b'-'), None, 2)
    } else {
        let Some((type_char, bits)) = parse_mode(first.text) else {
            return Err(format!("unknown line format (not a Unix mode: `{}`)", show(first.text)));
        };
        (ListFormat::Unix, type_char, Some(bits), 1)
    };
    let device = matches!(type_char, b'c' | b'b');

    // The first date whose preceding column is a size.
    let mut found = None;
    for i in size_from + 1..toks.len() {
        let Some(size_tok) = toks.get(i - 1) else { continue };
        let size = if device {
            if size_tok.text.iter().all(|b| b.is_ascii_digit() || *b == b',') {
                None
            } else {
                continue;
            }
        } else {
            match parse_u64(size_tok.text) {
                Some(size) => Some(size),
                None => continue,
            }
        };
        if let Some(date) = match_date(&toks, i) {
            found = Some((size, date));
            break;
        }
    }
    let Some((size, date)) = found else {
        return Err("no size and date columns".into());
    };

    let (mtime, precision) = match date.when {
        When::Time { month, day, minutes } => {
            let year = six_month_year(today, month, day).ok_or("impossible date")?;
            (civil_to_mtime(year, month, day, i64::from(minutes) * 60, 0), TimePrecision::Minutes)
        }
        When::Year { year, month, day } => {
            if !valid_date(year, month, day) {
                return Err("impossible date".into());
            }
            (civil_to_mtime(year, month, day, 0, 0), TimePrecision::Days)
        }
        When::Full { year, month, day, minutes } => {
            if !valid_date(year, month, day) {
                return Err("impossible date".into());
            }
            (civil_to_mtime(year, month, day, i64::from(minutes) * 60, 0), TimePrecision::Minutes)
        }
    };
    let precision = if mtime.is_some() { precision } else { TimePrecision::Unknown };

    // Exactly one separator after the date; the rest is the name.
    if !line.get(date.end).is_some_and(|&b| is_sep(b)) {
        return Err("no name after the date".into());
    }
    let name = line.get(date.end + 1..).unwrap_or_default();
    if name.is_empty() {
        return Err("empty name".into());
    }
    let (name, kind) = match type_char {
        b'-' => (name, ListKind::File),
        b'd' => (name, ListKind::Dir),
        b'l' => match name.windows(4).position(|w| w == b" -> ") {
            Some(arrow) => (
                name.get(..arrow).unwrap_or_default(),
                ListKind::Symlink { target: name.get(arrow + 4..).filter(|t| !t.is_empty()).map(<[u8]>::to_vec) },
            ),
            None => (name, ListKind::Symlink { target: None }),
        },
        _ => (name, ListKind::Other),
    };
    if name.is_empty() {
        return Err("empty name".into());
    }
    let size = match kind {
        ListKind::File | ListKind::Symlink { .. } => size,
        ListKind::Dir | ListKind::Other => None,
    };
    Ok((ListEntry { name: name.to_vec(), kind, size, mtime, precision, unix_mode }, format))
}

/// `-rwxr-xr-x` (and a trailing `+`, `.` or `@`) into the type character and
/// the permission bits.
pub(super) fn parse_mode(text: &[u8]) -> Option<(u8, u32)> {
    let (mode, acl) = text.split_at_checked(10)?;
    match acl {
        [] | [b'+' | b'.' | b'@'] => {}
        _ => return None,
    }
    let (&type_char, perms) = mode.split_first()?;
    if !matches!(type_char, b'-' | b'd' | b'l' | b'c' | b'b' | b'p' | b's' | b'D' | b'n' | b'P') {
        return None;
    }
    let mut bits = 0;
    for (who, triple) in perms.chunks_exact(3).enumerate() {
        let &[r, w, x] = triple else { return None };
        let shift = 6 - 3 * who;
        let special = [0o4000, 0o2000, 0o1000].get(who).copied().unwrap_or(0);
        bits |= match r {
            b'r' => 4 << shift,
            b'-' => 0,
            _ => return None,
        };
        bits |= match w {
            b'w' => 2 << shift,
            b'-' => 0,
            _ => return None,
        };
        bits |= match (x, who) {
            (b'x', _) => 1 << shift,
            (b'-', _) => 0,
            (b's', 0 | 1) | (b't', 2) => (1 << shift) | special,
            (b'S', 0 | 1) | (b'T', 2) | (b'l' | b'L', 1) => special,
            _ => return None,
        };
    }
    Some((type_char, bits))
}

/// A date found in the columns.
pub(super) struct DateCols {
    when: When,
    /// Just after the last date column.
    end: usize,
}

pub(super) enum When {
    /// `Mon DD HH:MM`: the year comes from the six-month rule.
    Time { month: u32, day: u32, minutes: u32 },
    /// `Mon DD YYYY`.
    Year { year: i64, month: u32, day: u32 },
    /// `YYYY-MM-DD HH:MM`.
    Full { year: i64, month: u32, day: u32, minutes: u32 },
}

/// A date starting at token `i`: `Mon DD HH:MM`, `Mon DD YYYY` or
/// `YYYY-MM-DD HH:MM`. Only the shape is checked here (day 1..=31).
pub(super) fn match_date(toks: &[Tok<'_>], i: usize) -> Option<DateCols> {
    let first = toks.get(i)?;
    let second = toks.get(i + 1)?;
    if let Some((year, month, day)) = parse_iso_date(first.text) {
        let minutes = parse_hh_mm(second.text)?;
        return Some(DateCols { when: When::Full { year, month, day, minutes }, end: second.end });
    }
    let month = parse_month(first.text)?;
    let day = parse_u32(second.text).filter(|d| (1..=31).contains(d) && second.text.len() <= 2)?;
    let third = toks.get(i + 2)?;
    let when = if let Some(minutes) = parse_hh_mm(third.text) {
        When::Time { month, day, minutes }
    } else if third.text.len() == 4 {
        When::Year { year: i64::from(parse_u32(third.text)?), month, day }
    } else {
        return None;
    };
    Some(DateCols { when, end: third.end })
}

pub(super) fn parse_month(text: &[u8]) -> Option<u32> {
    const MONTHS: [&[u8]; 12] =
        [b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"];
    let index = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(text))?;
    u32::try_from(index + 1).ok()
}

/// `H:MM` or `HH:MM` into minutes since midnight.
pub(super) fn parse_hh_mm(text: &[u8]) -> Option<u32> {
    let colon = text.iter().position(|&b| b == b':')?;
    let (hour, minute) = text.split_at(colon);
    let minute = minute.get(1..)?;
    if hour.len() > 2 || minute.len() != 2 {
        return None;
    }
    let (hour, minute) = (parse_u32(hour)?, parse_u32(minute)?);
    (hour < 24 && minute < 60).then_some(hour * 60 + minute)
}

/// `YYYY-MM-DD`, shape only.
pub(super) fn parse_iso_date(text: &[u8]) -> Option<(i64, u32, u32)> {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *text else { return None };
    let year = parse_u32(&[y0, y1, y2, y3])?;
    let month = parse_u32(&[m0, m1]).filter(|m| (1..=12).contains(m))?;
    let day = parse_u32(&[d0, d1]).filter(|d| (1..=31).contains(d))?;
    Some((i64::from(year), month, day))
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn unix_lines() {
        let m = |mo, d, h, mi| at(2026, mo, d, h, mi, 0);
        let cases: Vec<(&str, ListEntry)> = vec![
            ("drwxr-xr-x 2 user group 4096 Mar  5 14:03 name", mode(dir(b"name", m(3, 5, 14, 3), Minutes), 0o755)),
            (
                "-rw-r--r-- 1 user group 1234 Mar  5  2021 old.txt",
                mode(file(b"old.txt", 1234, at(2021, 3, 5, 0, 0, 0), Days), 0o644),
            ),
            // vsftpd: numeric ids, zero-padded day.
            (
                "-rw-r--r--    1 1000     1000            5 Nov 25 10:00 a.txt",
                mode(file(b"a.txt", 5, m(11, 25, 10, 0), Minutes), 0o644),
            ),
            (
                "-rw-------    1 1000     1000          220 Jan 01  2020 .bash_logout",
                mode(file(b".bash_logout", 220, at(2020, 1, 1, 0, 0, 0), Days), 0o600),
            ),
            // Missing group column; missing link count (NetPresenz-like).
            ("-rw-r--r--   1 ftp   1234 Mar  5 14:03 f", mode(file(b"f", 1234, m(3, 5, 14, 3), Minutes), 0o644)),
            (
                "drwxrwxr-x      folder        2 May 10  1996 network",
                mode(dir(b"network", at(1996, 5, 10, 0, 0, 0), Days), 0o775),
            ),
            ("-rw-r--r-- 99 Mar  5 14:03 minimal", mode(file(b"minimal", 99, m(3, 5, 14, 3), Minutes), 0o644)),
            // ACL and security-context markers.
            ("-rw-r--r--+ 1 u g 1 Mar  5 14:03 acl", mode(file(b"acl", 1, m(3, 5, 14, 3), Minutes), 0o644)),
            ("-rw-r--r--. 1 u g 1 Mar  5 14:03 selinux", mode(file(b"selinux", 1, m(3, 5, 14, 3), Minutes), 0o644)),
            ("-rw-r--r--@ 1 u g 1 Mar  5 14:03 macos", mode(file(b"macos", 1, m(3, 5, 14, 3), Minutes), 0o644)),
            // Devices, fifos, sockets: Other, no size.
            (
                "crw-rw---- 1 root tty 4, 64 Mar 5 14:03 tty0",
                mode(entry(b"tty0", ListKind::Other, None, Some(m(3, 5, 14, 3)), Minutes), 0o660),
            ),
            (
                "brw-rw----   1 root disk    8,   0 Mar  5 14:03 sda",
                mode(entry(b"sda", ListKind::Other, None, Some(m(3, 5, 14, 3)), Minutes), 0o660),
            ),
            (
                "crw-rw-rw- 1 root root 1,3 Mar  5 14:03 null",
                mode(entry(b"null", ListKind::Other, None, Some(m(3, 5, 14, 3)), Minutes), 0o666),
            ),
            (
                "prw-r--r-- 1 u g 0 Mar  5 14:03 fifo",
                mode(entry(b"fifo", ListKind::Other, None, Some(m(3, 5, 14, 3)), Minutes), 0o644),
            ),
            (
                "srwxrwxrwx 1 u g 0 Mar  5 14:03 sock",
                mode(entry(b"sock", ListKind::Other, None, Some(m(3, 5, 14, 3)), Minutes), 0o777),
            ),
            // Symlinks: split at the first " -> ".
            (
                "lrwxrwxrwx 1 u g 7 Mar  5 14:03 link -> target",
                mode(link(b"link", Some(b"target"), 7, m(3, 5, 14, 3), Minutes), 0o777),
            ),
            (
                "lrwxrwxrwx 1 u g 7 Mar  5 14:03 a -> b -> c",
                mode(link(b"a", Some(b"b -> c"), 7, m(3, 5, 14, 3), Minutes), 0o777),
            ),
            ("lrwxrwxrwx 1 u g 7 Mar  5 14:03 bare", mode(link(b"bare", None, 7, m(3, 5, 14, 3), Minutes), 0o777)),
            (
                "lrwxrwxrwx 1 u g 7 Mar  5 14:03 dangling -> ",
                mode(link(b"dangling", None, 7, m(3, 5, 14, 3), Minutes), 0o777),
            ),
            // " -> " in a file's name is part of the name.
            ("-rw-r--r-- 1 u g 1 Mar  5 14:03 x -> y", mode(file(b"x -> y", 1, m(3, 5, 14, 3), Minutes), 0o644)),
            // Spaces in names: exactly one separator after the time or year.
            ("-rw-r--r-- 1 u g 1 Mar  5 14:03  lead", mode(file(b" lead", 1, m(3, 5, 14, 3), Minutes), 0o644)),
            ("-rw-r--r-- 1 u g 1 Mar  5 14:03 trail  ", mode(file(b"trail  ", 1, m(3, 5, 14, 3), Minutes), 0o644)),
            ("-rw-r--r-- 1 u g 1 Mar  5 14:03 a  b   c", mode(file(b"a  b   c", 1, m(3, 5, 14, 3), Minutes), 0o644)),
            ("-rw-r--r-- 1 u g 1 Mar  5  2021  lead", mode(file(b" lead", 1, at(2021, 3, 5, 0, 0, 0), Days), 0o644)),
            ("-rw-r--r-- 1 u g 1 Mar  5 14:03\ttab", mode(file(b"tab", 1, m(3, 5, 14, 3), Minutes), 0o644)),
            // Month names in any case; single-digit hour.
            ("-rw-r--r-- 1 u g 1 MAR 5 9:03 up", mode(file(b"up", 1, m(3, 5, 9, 3), Minutes), 0o644)),
            ("-rw-r--r-- 1 u g 1 mar 05 09:03 low", mode(file(b"low", 1, m(3, 5, 9, 3), Minutes), 0o644)),
            // Special bits.
            ("-rwsr-sr-t 1 u g 1 Mar  5 14:03 s", mode(file(b"s", 1, m(3, 5, 14, 3), Minutes), 0o7755)),
            ("-rwSr-Sr-T 1 u g 1 Mar  5 14:03 S", mode(file(b"S", 1, m(3, 5, 14, 3), Minutes), 0o7644)),
            ("drwxrwsr-x 3 u g 4096 Mar  5 14:03 sgid", mode(dir(b"sgid", m(3, 5, 14, 3), Minutes), 0o2775)),
            ("---------- 1 u g 1 Mar  5 14:03 none", mode(file(b"none", 1, m(3, 5, 14, 3), Minutes), 0)),
            // Owner or group with spaces, or looking like a month.
            ("-rw-r--r-- 1 bob Domain Users 5 Nov 25 10:00 g", mode(file(b"g", 5, m(11, 25, 10, 0), Minutes), 0o644)),
            ("-rw-r--r-- 1 may jun 5 Nov 25 10:00 g", mode(file(b"g", 5, m(11, 25, 10, 0), Minutes), 0o644)),
            // GNU long-iso time style.
            (
                "-rw-r--r-- 1 u g 123 2024-11-25 10:00 iso",
                mode(file(b"iso", 123, at(2024, 11, 25, 10, 0, 0), Minutes), 0o644),
            ),
            // Big sizes; names the caller must refuse come back as sent.
            (
                "-rw-r--r-- 1 u g 18446744073709551615 Mar  5 14:03 max",
                mode(file(b"max", u64::MAX, m(3, 5, 14, 3), Minutes), 0o644),
            ),
            ("-rw-r--r-- 1 u g 1 Mar  5 14:03 a/b", mode(file(b"a/b", 1, m(3, 5, 14, 3), Minutes), 0o644)),
            (
                "-rw-r--r-- 1 u g 1 Mar  5 14:03 /etc/passwd",
                mode(file(b"/etc/passwd", 1, m(3, 5, 14, 3), Minutes), 0o644),
            ),
            ("-rw-r--r-- 1 u g 1 Mar  5 14:03 nul\0byte", mode(file(b"nul\0byte", 1, m(3, 5, 14, 3), Minutes), 0o644)),
            // Years outside what an Mtime holds: kept, without a time.
            (
                "-rw-r--r-- 1 u g 1 Mar  5  1601 ancient",
                mode(entry(b"ancient", ListKind::File, Some(1), None, Unknown), 0o644),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(list_one(line), want, "{line:?}");
            assert_eq!(list_one(&format!("{line}\r\n")), want, "{line:?} with CRLF");
        }
        let latin1 = b"-rw-r--r-- 1 u g 1 Mar  5 14:03 caf\xe9 \xff\xfe";
        let l = parse_list(latin1, now()).expect("parses");
        assert_eq!(l.entries[0].name, b"caf\xe9 \xff\xfe");
    }

    #[test]
    fn unix_bad_lines() {
        for (line, why) in [
            ("-rw-r--r-- 1 u g 1 Apr 31 14:03 no-such-day", "impossible date"),
            ("-rw-r--r-- 1 u g 1 Feb 29  2023 not-leap", "impossible date"),
            ("-rw-r--r-- 1 u g 1 Feb 30 14:03 never", "impossible date"),
            ("-rw-r--r-- 1 u g 1 Mar  5 14:03", "no name"),
            ("-rw-r--r-- 1 u g 1 Mar  5 14:03 ", "empty name"),
            ("lrwxrwxrwx 1 u g 1 Mar  5 14:03  -> target", "empty name"),
            ("-rw-r--r-- 1 u g 99999999999999999999999 Mar  5 14:03 huge", "no size and date"),
            ("-rw-r--r-- 1 u g 1 Mär  5 14:03 german", "no size and date"),
            ("-rw-r--r-- 1 u g 1 5 Mar 14:03 day-first", "no size and date"),
            ("-rw-r--r-- 1 u g 1 Mar 32 14:03 d32", "no size and date"),
            ("-rw-r--r-- 1 u g 1 Mar  5 24:00 h24", "no size and date"),
            ("-rw-r--r-- 1 u g 1 Mar  5 14:03:07 secs", "no size and date"),
            ("-rw-r--r-- 1 u g x Mar  5 14:03 nosize", "no size and date"),
            ("-rw-r--r-- u g Mar  5 14:03 nosize2", "no size and date"),
            ("-rwxrwxrwxrwx 1 u g 1 Mar  5 14:03 long-mode", "not a Unix mode"),
            ("-rw-r--r--++ 1 u g 1 Mar  5 14:03 two-markers", "not a Unix mode"),
            ("xrw-r--r-- 1 u g 1 Mar  5 14:03 x-type", "not a Unix mode"),
            ("-rq-r--r-- 1 u g 1 Mar  5 14:03 q", "not a Unix mode"),
            ("-rw-r--r-s 1 u g 1 Mar  5 14:03 s-as-other", "not a Unix mode"),
            ("-rwtr--r-- 1 u g 1 Mar  5 14:03 t-as-user", "not a Unix mode"),
            ("550 Permission denied.", "unknown line format"),
            ("Mar  5 14:03 name", "not a Unix mode"),
            ("d [RWCEAFMS] owner Mar 05 14:03 netware-no-size", "no size and date"),
        ] {
            let reason = list_warns(line);
            assert!(reason.contains(why), "{line:?}: {reason}");
        }
    }

    #[test]
    fn netware_lines() {
        let l = parse_list(
            b"d [RWCEAFMS] admin 512 Mar 05 14:03 PUBLIC\r\n- [RWCEAFMS] admin 1234 Mar 05  2021 login.exe\r\n\
              - [R----F--] jdoe 42 Nov 26 10:00 read me.txt\r\n",
            now(),
        )
        .expect("parses");
        assert_eq!(
            l.entries,
            vec![
                dir(b"PUBLIC", at(2026, 3, 5, 14, 3, 0), Minutes),
                file(b"login.exe", 1234, at(2021, 3, 5, 0, 0, 0), Days),
                file(b"read me.txt", 42, at(2026, 11, 26, 10, 0, 0), Minutes),
            ]
        );
        assert_eq!(l.format, Some(ListFormat::NetWare));
    }
}
