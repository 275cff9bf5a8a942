//! EPLF lines (Easily Parsed LIST Format): `+facts,\tname`.

use super::*;

pub(super) fn parse_eplf(line: &[u8]) -> Result<(ListEntry, ListFormat), String> {
    let Some(facts) = line.strip_prefix(b"+") else {
        return Err("unknown line format (not EPLF)".into());
    };
    let Some(tab) = facts.iter().position(|&b| b == b'\t') else {
        return Err("EPLF line without a tab before the name".into());
    };
    let (facts, name) = facts.split_at(tab);
    let name = name.get(1..).unwrap_or_default();
    let (mut dir, mut file, mut size, mut mtime, mut unix_mode) = (false, false, None, None, None);
    for fact in facts.split(|&b| b == b',') {
        match fact.split_first() {
            Some((b'/', _)) => dir = true,
            Some((b'r', _)) => file = true,
            Some((b's', digits)) => size = parse_u64(digits),
            Some((b'm', digits)) => {
                mtime = parse_u64(digits)
                    .and_then(|secs| i64::try_from(secs).ok())
                    .and_then(|secs| secs.checked_mul(1_000_000_000))
                    .map(Mtime);
            }
            Some((b'u', rest)) => unix_mode = rest.strip_prefix(b"p").and_then(parse_octal_mode),
            _ => {}
        }
    }
    if name.is_empty() {
        return Err("empty name".into());
    }
    let (kind, size) = match (dir, file) {
        (true, _) => (ListKind::Dir, None),
        (false, true) => (ListKind::File, size),
        (false, false) => (ListKind::Other, None),
    };
    let precision = if mtime.is_some() { TimePrecision::Seconds } else { TimePrecision::Unknown };
    Ok((ListEntry { name: name.to_vec(), kind, size, mtime, precision, unix_mode }, ListFormat::Eplf))
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn eplf_lines() {
        let cases: Vec<(&[u8], ListEntry)> = vec![
            (b"+i8388621.29609,m824255902,/,\tdev", dir(b"dev", Mtime::from_unix(824_255_902, 0), Seconds)),
            (
                b"+i8388621.44468,m839956783,r,s10376,\tRFCEPLF",
                file(b"RFCEPLF", 10_376, Mtime::from_unix(839_956_783, 0), Seconds),
            ),
            (
                b"+r,s5,up644,m1732528800,\ta b.txt",
                mode(file(b"a b.txt", 5, at(2024, 11, 25, 10, 0, 0), Seconds), 0o644),
            ),
            (b"+r,\tno-time", entry(b"no-time", ListKind::File, None, None, Unknown)),
            (b"+/,r,s9,\tboth", entry(b"both", ListKind::Dir, None, None, Unknown)),
            (b"+i1,m1,\tneither", entry(b"neither", ListKind::Other, None, Some(Mtime::from_unix(1, 0)), Seconds)),
            (b"+r,mjunk,s-1,\tjunk", entry(b"junk", ListKind::File, None, None, Unknown)),
            (b"+r,s1,\t tab\tin name ", entry(b" tab\tin name ", ListKind::File, Some(1), None, Unknown)),
            (b"+\tbare", entry(b"bare", ListKind::Other, None, None, Unknown)),
        ];
        for (line, want) in cases {
            let l = parse_list(line, now()).unwrap_or_else(|e| panic!("{}: {e}", show(line)));
            assert_eq!(l.entries, vec![want], "{}", show(line));
            assert_eq!(l.format, Some(ListFormat::Eplf));
        }
        for (line, why) in [("+i1,m1,r no tab", "without a tab"), ("+r,s1,\t", "empty name")] {
            let reason = list_warns(line);
            assert!(reason.contains(why), "{line:?}: {reason}");
        }
        let l = parse_list(b"+/,\t.\n+/,\t..\n", now()).expect("parses");
        assert_eq!((l.entries.len(), l.warnings.len()), (0, 0));
    }
}
