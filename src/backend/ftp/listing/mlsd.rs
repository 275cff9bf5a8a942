//! MLSD and MLST fact lines (RFC 3659): `fact=value;... name`.

use super::*;

pub(super) fn classify_mlsx(line: &[u8]) -> Line {
    match mlsx_entry(line) {
        Ok(Some(entry)) if !is_dot(&entry.name) => Line::Entry(entry, ListFormat::Mlsd),
        Ok(_) => Line::Skip(Skip::SelfOrParent, ListFormat::Mlsd),
        Err(reason) => Line::Bad(reason),
    }
}

/// `Ok(None)` for `cdir` and `pdir`.
pub(super) fn mlsx_entry(line: &[u8]) -> Result<Option<ListEntry>, String> {
    // MLST replies put one space before the facts; MLSD lines do not.
    let line = match line.strip_prefix(b" ") {
        Some(rest) if rest.split(|&b| b == b' ').next().is_some_and(|facts| facts.contains(&b'=')) => rest,
        _ => line,
    };
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        return Err("no space between the facts and the name".into());
    };
    let (facts, name) = line.split_at(space);
    let name = name.get(1..).unwrap_or_default();

    let mut kind_fact = None;
    let mut size = None;
    let mut modify = None;
    let mut unix_mode = None;
    for fact in facts.split(|&b| b == b';').filter(|fact| !fact.is_empty()) {
        let Some(eq) = fact.iter().position(|&b| b == b'=') else {
            return Err(format!("malformed fact `{}`", show(fact)));
        };
        let (key, value) = fact.split_at(eq);
        let value = value.get(1..).unwrap_or_default();
        if key.eq_ignore_ascii_case(b"type") {
            kind_fact = Some(value);
        } else if key.eq_ignore_ascii_case(b"size") {
            size = parse_u64(value);
        } else if key.eq_ignore_ascii_case(b"modify") {
            modify = Some(value);
        } else if key.eq_ignore_ascii_case(b"unix.mode") {
            unix_mode = parse_octal_mode(value);
        }
    }
    let Some(kind_fact) = kind_fact else {
        return Err("no type fact".into());
    };
    let kind = if kind_fact.eq_ignore_ascii_case(b"file") {
        ListKind::File
    } else if kind_fact.eq_ignore_ascii_case(b"dir") {
        ListKind::Dir
    } else if kind_fact.eq_ignore_ascii_case(b"cdir") || kind_fact.eq_ignore_ascii_case(b"pdir") {
        return Ok(None);
    } else {
        os_unix_kind(kind_fact)
    };
    if name.is_empty() {
        return Err("empty name".into());
    }
    let (mtime, precision) = match modify.and_then(parse_ftp_time_precise) {
        Some((mtime, precision)) => (Some(mtime), precision),
        None => (None, TimePrecision::Unknown),
    };
    let size = match kind {
        ListKind::File | ListKind::Symlink { .. } => size,
        ListKind::Dir | ListKind::Other => None,
    };
    Ok(Some(ListEntry { name: name.to_vec(), kind, size, mtime, precision, unix_mode }))
}

/// `OS.unix=symlink`, `OS.unix=slink:/target` and the like; anything else
/// that is neither a file nor a directory is [`ListKind::Other`].
pub(super) fn os_unix_kind(value: &[u8]) -> ListKind {
    let Some((prefix, rest)) = value.split_at_checked(8) else { return ListKind::Other };
    if !prefix.eq_ignore_ascii_case(b"os.unix=") {
        return ListKind::Other;
    }
    let (word, target) = match rest.iter().position(|&b| b == b':') {
        Some(colon) => (rest.get(..colon).unwrap_or_default(), rest.get(colon + 1..)),
        None => (rest, None),
    };
    if word.eq_ignore_ascii_case(b"slink") || word.eq_ignore_ascii_case(b"symlink") {
        ListKind::Symlink { target: target.filter(|t| !t.is_empty()).map(<[u8]>::to_vec) }
    } else {
        ListKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn mlsd_lines() {
        let t = at(2024, 11, 25, 10, 0, 0);
        let cases: Vec<(&str, Option<ListEntry>)> = vec![
            // pure-ftpd 1.0.50
            (
                "type=file;size=5;modify=20241125100000;UNIX.mode=0644;UNIX.uid=1000;UNIX.gid=1000;unique=803g4a1; a.txt",
                Some(mode(file(b"a.txt", 5, t, Seconds), 0o644)),
            ),
            // proftpd 1.3.8
            (
                "modify=20241125100000.123;perm=adfrw;size=5;type=file;unique=FD00U5A1;UNIX.group=1000;\
                 UNIX.groupname=bob;UNIX.mode=0644;UNIX.owner=1000;UNIX.ownername=bob; a.txt",
                Some(mode(file(b"a.txt", 5, Mtime(t.0 + 123_000_000), Sub), 0o644)),
            ),
            // Fact names in any case.
            ("Type=file;Size=7;Modify=20241125100000;Perm=r; A", Some(file(b"A", 7, t, Seconds))),
            ("TYPE=DIR;SIZE=4096;MODIFY=20241125100000;UNIX.MODE=0755; d", Some(mode(dir(b"d", t, Seconds), 0o755))),
            // Directories never have a size; `sizd` is ignored.
            ("type=dir;sizd=4096;modify=20241125100000; photos", Some(dir(b"photos", t, Seconds))),
            // Names with spaces, `;`, `=`, leading and trailing spaces.
            ("type=file;size=1;modify=20241125100000; a b;c=d.txt", Some(file(b"a b;c=d.txt", 1, t, Seconds))),
            ("type=file;size=1;modify=20241125100000;  lead", Some(file(b" lead", 1, t, Seconds))),
            ("type=file;size=1;modify=20241125100000; trail ", Some(file(b"trail ", 1, t, Seconds))),
            // No trailing `;` after the last fact.
            ("type=file;size=1;modify=20241125100000 x", Some(file(b"x", 1, t, Seconds))),
            // Symlinks, proftpd style.
            (
                "modify=20241125100000;perm=adfr;size=5;type=OS.unix=symlink;unique=FD00U5A3; l",
                Some(link(b"l", None, 5, t, Seconds)),
            ),
            (
                "modify=20241125100000;size=11;type=OS.unix=slink:/home/bob/a.txt; l2",
                Some(link(b"l2", Some(b"/home/bob/a.txt"), 11, t, Seconds)),
            ),
            ("type=os.UNIX=SLINK:; l3", Some(entry(b"l3", ListKind::Symlink { target: None }, None, None, Unknown))),
            // Other types.
            (
                "type=OS.unix=chardev;size=0;modify=20241125100000; tty",
                Some(entry(b"tty", ListKind::Other, None, Some(t), Seconds)),
            ),
            ("type=weird;size=3; w", Some(entry(b"w", ListKind::Other, None, None, Unknown))),
            // Malformed times and sizes leave the entry without them.
            ("type=file;size=big;modify=2024; f", Some(entry(b"f", ListKind::File, None, None, Unknown))),
            ("type=file;size=1;modify=20241125100000;UNIX.mode=0999; f", Some(file(b"f", 1, t, Seconds))),
            (
                "type=file;size=1;UNIX.mode=104755; f",
                Some(mode(entry(b"f", ListKind::File, Some(1), None, Unknown), 0o4755)),
            ),
            // Skipped.
            ("type=cdir;sizd=4096;modify=20241125090000;UNIX.mode=0755; .", None),
            ("type=pdir;modify=20241120080000; ..", None),
            ("Type=CDir; /home/bob", None),
            ("type=dir;modify=20241125090000; .", None),
            ("type=file; ..", None),
            // MLST reply form: one leading space, a full path.
            (
                " type=file;size=5;modify=20241125100000; /home/bob/a.txt\r\n",
                Some(file(b"/home/bob/a.txt", 5, t, Seconds)),
            ),
            // Raw bytes in names.
            (
                "type=file;size=1;modify=20241125100000; caf\u{e9}/\0",
                Some(file("caf\u{e9}/\0".as_bytes(), 1, t, Seconds)),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(mlsx(line), want, "{line:?}");
        }
    }

    #[test]
    fn mlsd_bad_lines() {
        for (line, why) in [
            ("type=file;size=5;modify=20241125100000;", "no space"),
            ("size=5;modify=20241125100000; a.txt", "no type"),
            (" a.txt", "no type"),
            ("type=file;size=5; ", "empty name"),
            ("drwxr-xr-x 2 u g 4096 Mar  5 14:03 d", "malformed fact"),
            ("hello world", "malformed fact"),
            ("", "no space"),
        ] {
            let err = parse_mlsx_line(line.as_bytes()).expect_err(line);
            assert!(err.contains(why), "{line:?}: {err}");
        }
    }

    #[test]
    fn mlsd_listing_rules() {
        // Empty, blank-only: an empty directory.
        assert_eq!(parse_mlsd(b""), Ok(Listing::default()));
        assert_eq!(parse_mlsd(b"\r\n\n  \r\n"), Ok(Listing::default()));
        // Only cdir/pdir: an empty directory in MLSD format.
        let l = parse_mlsd(b"type=cdir; .\r\ntype=pdir; ..\r\n").expect("parses");
        assert_eq!((l.entries.len(), l.warnings.len(), l.format), (0, 0, Some(ListFormat::Mlsd)));
        // Unreadable: an error, never an empty directory.
        let err = parse_mlsd(b"\r\n<html>Access denied</html>\r\nsecond line\r\n").expect_err("unparseable");
        assert_eq!(err, ListingError::Unparseable { first_line: b"<html>Access denied</html>".to_vec() });
        assert!(err.to_string().contains("<html>Access denied</html>"), "{err}");
        // One bad line among good ones: a warning.
        let l = parse_mlsd(b"garbage line\ntype=file;size=1; a\n").expect("parses");
        assert_eq!(l.entries.len(), 1);
        assert_eq!(
            l.warnings,
            vec![ListWarning { line: b"garbage line".to_vec(), reason: "malformed fact `garbage`".into() }]
        );
        // A cdir line proves the format even when nothing else parses.
        let l = parse_mlsd(b"type=cdir; .\nsomething odd\n").expect("parses");
        assert_eq!((l.entries.len(), l.warnings.len()), (0, 1));
    }
}
