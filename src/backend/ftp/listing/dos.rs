//! DOS and IIS LIST lines: `MM-DD-YY  HH:MMAM  <DIR>|size  name`.

use super::*;

pub(super) fn parse_dos(line: &[u8]) -> Result<(ListEntry, ListFormat), String> {
    let toks = tokens(line, 4);
    let [date, time, rest @ ..] = toks.as_slice() else {
        return Err("unknown line format (too few columns)".into());
    };
    let Some((year, month, day)) = parse_dos_date(date.text) else {
        return Err(format!("unknown line format (not a date: `{}`)", show(date.text)));
    };
    let (clock, mut meridiem) = match time.text.len().checked_sub(2).and_then(|at| time.text.split_at_checked(at)) {
        Some((clock, suffix)) if suffix.eq_ignore_ascii_case(b"am") => (clock, Some(false)),
        Some((clock, suffix)) if suffix.eq_ignore_ascii_case(b"pm") => (clock, Some(true)),
        _ => (time.text, None),
    };
    let Some(mut minutes) = parse_hh_mm(clock) else {
        return Err(format!("not a time: `{}`", show(time.text)));
    };
    let mut rest = rest;
    if meridiem.is_none()
        && let [word, tail @ ..] = rest
        && (word.text.eq_ignore_ascii_case(b"am") || word.text.eq_ignore_ascii_case(b"pm"))
    {
        meridiem = Some(word.text.eq_ignore_ascii_case(b"pm"));
        rest = tail;
    }
    if let Some(pm) = meridiem {
        let (hour, minute) = (minutes / 60, minutes % 60);
        if hour > 12 {
            return Err(format!("not a 12-hour time: `{}`", show(time.text)));
        }
        minutes = ((hour % 12) + if pm { 12 } else { 0 }) * 60 + minute;
    }
    let Some(what) = rest.first() else {
        return Err("no size or <DIR> column".into());
    };
    let (kind, size, name_start) = if what.text.eq_ignore_ascii_case(b"<DIR>") {
        let run = line.get(what.end..).unwrap_or_default().iter().take_while(|&&b| is_sep(b)).count();
        (ListKind::Dir, None, what.end + run.min(10))
    } else {
        let Some(size) = parse_dos_size(what.text) else {
            return Err(format!("not a size: `{}`", show(what.text)));
        };
        if !line.get(what.end).is_some_and(|&b| is_sep(b)) {
            return Err("no name after the size".into());
        }
        (ListKind::File, Some(size), what.end + 1)
    };
    let name = line.get(name_start..).unwrap_or_default();
    if name.is_empty() || name_start == what.end {
        return Err("no name".into());
    }
    let mtime = civil_to_mtime(year, month, day, i64::from(minutes) * 60, 0);
    let precision = if mtime.is_some() { TimePrecision::Minutes } else { TimePrecision::Unknown };
    Ok((ListEntry { name: name.to_vec(), kind, size, mtime, precision, unix_mode: None }, ListFormat::Dos))
}

/// `MM-DD-YY`, `MM-DD-YYYY`, `YYYY-MM-DD` (or with `/`), validated.
pub(super) fn parse_dos_date(text: &[u8]) -> Option<(i64, u32, u32)> {
    let sep = if text.contains(&b'-') { b'-' } else { b'/' };
    let mut parts = text.split(|&b| b == sep);
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (year, month, day) = match (a.len(), b.len(), c.len()) {
        (4, 1..=2, 1..=2) => (i64::from(parse_u32(a)?), parse_u32(b)?, parse_u32(c)?),
        (1..=2, 1..=2, 4) => (i64::from(parse_u32(c)?), parse_u32(a)?, parse_u32(b)?),
        (1..=2, 1..=2, 2) => {
            let yy = i64::from(parse_u32(c)?);
            (if yy >= 70 { 1900 + yy } else { 2000 + yy }, parse_u32(a)?, parse_u32(b)?)
        }
        _ => return None,
    };
    valid_date(year, month, day).then_some((year, month, day))
}

/// Digits, perhaps grouped with commas (`1,234`).
pub(super) fn parse_dos_size(text: &[u8]) -> Option<u64> {
    if text.first() == Some(&b',') || text.last() == Some(&b',') {
        return None;
    }
    text.iter().filter(|&&b| b != b',').try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() { n.checked_mul(10)?.checked_add(u64::from(b - b'0')) } else { None }
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn dos_lines() {
        let cases: Vec<(&str, ListEntry)> = vec![
            ("03-05-21  02:03PM       <DIR>          name", dir(b"name", at(2021, 3, 5, 14, 3, 0), Minutes)),
            ("03-05-21  02:03PM              1234 name", file(b"name", 1234, at(2021, 3, 5, 14, 3, 0), Minutes)),
            ("03-05-2021  02:03AM              1234 four", file(b"four", 1234, at(2021, 3, 5, 2, 3, 0), Minutes)),
            ("03-05-21  14:03              1234 h24", file(b"h24", 1234, at(2021, 3, 5, 14, 3, 0), Minutes)),
            ("12-31-99  11:59PM   1 y2k", file(b"y2k", 1, at(1999, 12, 31, 23, 59, 0), Minutes)),
            ("01-01-70  12:00AM   1 epoch", file(b"epoch", 1, Mtime(0), Minutes)),
            ("01-01-00  12:00AM   1 midnight", file(b"midnight", 1, at(2000, 1, 1, 0, 0, 0), Minutes)),
            ("01-01-69  12:00PM   1 noon69", file(b"noon69", 1, at(2069, 1, 1, 12, 0, 0), Minutes)),
            ("02-29-24  01:00pm   1 lower", file(b"lower", 1, at(2024, 2, 29, 13, 0, 0), Minutes)),
            ("03/05/2021  02:03 PM   7 slash-sep-ampm", file(b"slash-sep-ampm", 7, at(2021, 3, 5, 14, 3, 0), Minutes)),
            ("2024-11-25  10:00       <DIR>          iso", dir(b"iso", at(2024, 11, 25, 10, 0, 0), Minutes)),
            ("03-05-21  02:03PM   1,234,567 commas", file(b"commas", 1_234_567, at(2021, 3, 5, 14, 3, 0), Minutes)),
            // Spaces in names: after a size exactly one separator; after <DIR> the IIS ten.
            ("03-05-21  02:03PM                 5  lead", file(b" lead", 5, at(2021, 3, 5, 14, 3, 0), Minutes)),
            ("03-05-21  02:03PM       <DIR>           lead", dir(b" lead", at(2021, 3, 5, 14, 3, 0), Minutes)),
            ("03-05-21  02:03PM  <dir>  short pad ", dir(b"short pad ", at(2021, 3, 5, 14, 3, 0), Minutes)),
            (
                "03-05-21  02:03PM                 5 My Documents",
                file(b"My Documents", 5, at(2021, 3, 5, 14, 3, 0), Minutes),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(list_one(line), want, "{line:?}");
        }
        for (line, why) in [
            ("03-05-21  02:03PM       <DIR>", "no name"),
            ("03-05-21  02:03PM       <DIR>          ", "no name"),
            ("03-05-21  02:03PM              1234", "no name"),
            ("03-05-21  02:03PM              1234 ", "no name"),
            ("03-05-21  02:03PM", "no size or <DIR>"),
            ("03-05-21", "too few columns"),
            ("13-05-21  02:03PM   1 month13", "not a date"),
            ("02-29-23  02:03PM   1 notleap", "not a date"),
            ("3-5  02:03PM   1 short", "not a date"),
            ("03-05-21  13:03PM   1 pm13", "not a 12-hour time"),
            ("03-05-21  2:3PM   1 badtime", "not a time"),
            ("03-05-21  02:03PM   <JUNCTION> j", "not a size"),
            ("03-05-21  02:03PM   12a name", "not a size"),
            ("200 Command okay.", "not a date"),
        ] {
            let reason = list_warns(line);
            assert!(reason.contains(why), "{line:?}: {reason}");
        }
    }
}
