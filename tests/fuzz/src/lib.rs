//! The invariants the fuzz targets check: one function per parser of
//! untrusted bytes, each a fuzz target (`fuzz_targets/`) and, in the main
//! test suite, a proptest (`tests/it/fuzz_invariants.rs`, which includes
//! this file).
//!
//! Each function takes arbitrary bytes, runs the parser and checks what the
//! parser promises, not only that it does not panic; a broken promise is a
//! panic, which libFuzzer and proptest both report with the input. The
//! promises checked are listed on each function. Only barge's public API is
//! used. Nothing here talks to a network but [`ftp_client`], over loopback;
//! [`known_hosts`] writes one temporary file.

use std::collections::HashMap;
use std::path::Path;

use barge::backend::ftp::{conn, listing, names, text};
use barge::backend::{HashKind, Mtime};
use barge::path::{RelPath, check_component};

/// `now` for LIST dates without a year, unless the input says otherwise:
/// the time the listing fixtures were captured (2026-11-25 10:50:09 UTC).
const CAPTURED_NOW: i64 = 1_795_603_809;

/// The checks that parse an input many times (line by line, prefix by
/// prefix) run on inputs up to this long (replies are cut to it).
const QUADRATIC_LIMIT: usize = 4096;

/// `parse_list` (LIST, every format), at the capture time and at a `now`
/// read from the input's first eight bytes:
/// - every line accounted for ([`check_accounting`]);
/// - entries are never empty, `.` or `..`, never hold an LF; directories
///   and others have no size; mode bits only; a time exactly when its
///   precision is known;
/// - lines are independent: the listing is the concatenation of its lines
///   parsed one by one;
/// - every entry name is refused as a path component, or becomes exactly
///   one safe component below the directory listed.
pub fn listing_list(data: &[u8]) {
    let mut nows = vec![Mtime::from_unix(CAPTURED_NOW, 0)];
    if let Some(head) = data.first_chunk::<8>() {
        nows.push(Mtime(i64::from_le_bytes(*head)));
    }
    for now in nows {
        let parsed = listing::parse_list(data, now);
        check_accounting(data, &parsed, false, |line| listing::parse_list(line, now));
        check_listing(data, &parsed, |line| listing::parse_list(line, now));
    }
}

/// `parse_mlsd` and `parse_mlsx_line`: as [`listing_list`], and each line
/// read alone as an MLST reply line gives the same entry (or skip, or
/// warning) as in the whole listing.
pub fn listing_mlsd(data: &[u8]) {
    let parsed = listing::parse_mlsd(data);
    check_accounting(data, &parsed, true, listing::parse_mlsd);
    check_listing(data, &parsed, listing::parse_mlsd);
    let Ok(parsed) = parsed else { return };
    let mut entries = parsed.entries.iter();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(Some(entry)) = listing::parse_mlsx_line(line) {
            assert_eq!(Some(&entry), entries.next(), "MLST line and MLSD listing disagree");
        }
    }
    assert_eq!(entries.next(), None, "an MLSD entry that its line alone does not give");
    let _ = listing::parse_mlsx_line(data);
}

/// Every non-blank line accounted for, as each line read alone shows:
/// alone it is one entry, a deliberate skip (an empty listing: a `total`
/// line, `.` or `..`, an MLSD `cdir` or `pdir`) or unreadable (an error);
/// the whole listing is an error exactly when no line is an entry or a
/// `.`/`..` skip while some line is unreadable, and that error names the
/// first non-blank line; no line at all is the empty listing.
fn check_accounting(
    data: &[u8],
    parsed: &Result<listing::Listing, listing::ListingError>,
    mlsd: bool,
    parse_alone: impl Fn(&[u8]) -> Result<listing::Listing, listing::ListingError>,
) {
    let nonblank: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')))
        .collect();
    // An entry, or a skip that can only be `.`/`..`: proof the format was
    // understood. A `total` line proves nothing, but one that also ends in
    // ` .` may have been either skip.
    let (mut understood, mut maybe_understood, mut unreadable) = (false, false, false);
    for line in &nonblank {
        let Ok(alone) = parse_alone(line) else {
            unreadable = true;
            continue;
        };
        assert!(alone.warnings.is_empty() && alone.entries.len() <= 1, "one line, one result: {alone:?}");
        if !alone.entries.is_empty() {
            understood = true;
            continue;
        }
        let total = !mlsd && line.get(..5).is_some_and(|w| w.eq_ignore_ascii_case(b"total"));
        let dot_name = [&b" ."[..], b" ..", b"\t.", b"\t.."].iter().any(|end| line.ends_with(end));
        let lower = line.to_ascii_lowercase();
        let cdir = mlsd && lower.windows(9).any(|w| w == b"type=cdir" || w == b"type=pdir");
        assert!(total || dot_name || cdir, "skipped, yet not a total, . or .. line: {line:?}");
        understood |= !total;
        maybe_understood |= total && dot_name;
    }
    match parsed {
        Ok(listing) => {
            assert!(understood || maybe_understood || !unreadable, "unreadable lines, yet no error: {listing:?}");
            if nonblank.is_empty() {
                assert_eq!(listing, &listing::Listing::default());
            }
        }
        Err(listing::ListingError::Unparseable { first_line }) => {
            assert!(!understood && unreadable, "an error, yet a line was understood");
            assert_eq!(Some(&first_line[..]), nonblank.first().copied());
        }
    }
}

/// What every listing, whatever its format, must satisfy.
fn check_listing(
    data: &[u8],
    parsed: &Result<listing::Listing, listing::ListingError>,
    parse_alone: impl Fn(&[u8]) -> Result<listing::Listing, listing::ListingError>,
) {
    let lines = data.split(|&b| b == b'\n').count();
    let listed = RelPath::parse(b"dir/sub").expect("a valid path");
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(listing::ListingError::Unparseable { first_line }) => {
            assert!(first_line.iter().any(|b| !matches!(b, b' ' | b'\t' | b'\r')), "blank first line in an error");
            return;
        }
    };
    assert!(parsed.entries.len() + parsed.warnings.len() <= lines, "more results than lines");
    assert!(parsed.entries.is_empty() || parsed.format.is_some(), "entries in no format");
    for entry in &parsed.entries {
        assert!(!entry.name.is_empty() && entry.name != b"." && entry.name != b"..", "{entry:?}");
        assert!(!entry.name.contains(&b'\n'), "{entry:?}");
        if matches!(entry.kind, listing::ListKind::Dir | listing::ListKind::Other) {
            assert_eq!(entry.size, None, "{entry:?}");
        }
        assert!(entry.unix_mode.is_none_or(|mode| mode <= 0o7777), "{entry:?}");
        assert_eq!(entry.mtime.is_none(), entry.precision == listing::TimePrecision::Unknown, "{entry:?}");
        match listed.join(&entry.name) {
            Ok(path) => {
                check_safe_path(&path);
                assert_eq!((path.parent(), path.file_name()), (listed.clone(), &entry.name[..]));
            }
            Err(why) => assert_eq!(check_component(&entry.name), Err(why)),
        }
    }
    // Every line is read on its own: listing line by line gives the same.
    if data.len() <= QUADRATIC_LIMIT {
        let (mut entries, mut warnings) = (Vec::new(), Vec::new());
        for line in data.split(|&b| b == b'\n') {
            match parse_alone(line) {
                Ok(alone) => {
                    entries.extend(alone.entries);
                    warnings.extend(alone.warnings.into_iter().map(|w| w.line));
                }
                Err(listing::ListingError::Unparseable { first_line }) => warnings.push(first_line),
            }
        }
        assert_eq!(entries, parsed.entries, "entries differ when lines are parsed alone");
        let whole: Vec<&Vec<u8>> = parsed.warnings.iter().map(|w| &w.line).collect();
        assert_eq!(warnings.iter().collect::<Vec<_>>(), whole, "warnings differ when lines are parsed alone");
    }
}

/// A path that cannot leave its root: no empty, `.`, `..`, `/` or NUL
/// component, and joined below a local root it stays below it.
fn check_safe_path(path: &RelPath) {
    let bytes = path.as_bytes();
    assert!(!bytes.starts_with(b"/") && !bytes.ends_with(b"/"), "{path:?}");
    assert!(!bytes.contains(&0), "{path:?}");
    for component in bytes.split(|&b| b == b'/') {
        assert!(check_component(component).is_ok() || bytes.is_empty(), "{path:?}");
    }
    assert_eq!(path.components().count(), path.depth(), "{path:?}");
    let root = Path::new("/srv/root");
    let local = path.to_local(root);
    assert!(local.starts_with(root), "{path:?} leaves its root: {}", local.display());
    assert!(
        local.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_))),
        "{path:?}"
    );
    let shown = path.display().to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
}

/// `parse_ftp_time` (MDTM replies, MLSD `modify`): a time it accepts is
/// the one written: formatted back as MFMT writes it
/// (`units::format_utc_digits`), it gives the same fourteen digits (a leap
/// second aside), and the fraction's first nine digits are its nanoseconds.
pub fn ftp_time(data: &[u8]) {
    let Some(mtime) = listing::parse_ftp_time(data) else { return };
    let text = data.trim_ascii();
    let (stamp, fraction) = text.split_at(14);
    if &stamp[12..14] != b"60" {
        assert_eq!(barge::units::format_utc_digits(mtime.secs()).as_bytes(), stamp);
    }
    let digits = fraction.get(1..).unwrap_or_default();
    let nanos = (0..9).fold(0u32, |n, i| n * 10 + digits.get(i).map_or(0, |&b| u32::from(b - b'0')));
    assert_eq!(mtime.subsec_nanos(), nanos);
}

/// The reply reader (`parse_reply`, which the doctor reads with), the PASV
/// and EPSV reply parsers, FEAT lines (the doctor's and the backend's
/// reading of them) and HASH replies:
/// - a reply is exactly its lines: it ends at a line end, the bytes it
///   used parse alone to the same reply, one byte fewer is incomplete, and
///   no shorter prefix was already a complete reply;
/// - a multi-line reply ends with its code followed by anything but `-`;
/// - an EPSV port is never 0; a PASV address written back as a PORT
///   argument parses to itself;
/// - HASH digests are the hex the reply holds.
pub fn ftp_reply(data: &[u8]) {
    use barge::backend::ftp::protocol::{feature_names, parse_epsv, parse_pasv, parse_reply, port_command};
    let data = &data[..data.len().min(QUADRATIC_LIMIT)];
    match parse_reply(data) {
        Some((reply, used)) => {
            assert!(used >= 1 && used <= data.len() && data[used - 1] == b'\n');
            assert_eq!(parse_reply(&data[..used]), Some((reply.clone(), used)));
            assert_eq!(parse_reply(&data[..used - 1]), None, "complete before its last line end");
            assert_eq!(reply.lines.len(), data[..used].iter().filter(|&&b| b == b'\n').count());
            if reply.code != 0 {
                let code = format!("{:03}", reply.code);
                let (first, last) = (&reply.lines[0], &reply.lines[reply.lines.len() - 1]);
                assert!(first.starts_with(&code), "{reply:?}");
                assert!(
                    last.starts_with(&code) && last.as_bytes().get(3) != Some(&b'-'),
                    "not the last line: {reply:?}"
                );
            } else {
                assert_eq!(reply.lines.len(), 1);
            }
            let _ = (reply.text(), feature_names(&reply));
            let feat: HashMap<String, Option<String>> = reply
                .lines
                .iter()
                .skip(1)
                .filter_map(|line| {
                    let mut words = line.trim().splitn(2, ' ');
                    let key = words.next().filter(|k| !k.is_empty())?;
                    Some((key.to_string(), words.next().map(str::to_string)))
                })
                .collect();
            let features = conn::Features::from_feat(&feat);
            for list in [&features.hash, &features.xhash] {
                assert!(!list.contains(&HashKind::Blake3));
                let order: Vec<usize> =
                    list.iter().map(|k| HashKind::PREFERENCE.iter().position(|p| p == k).unwrap_or(9)).collect();
                assert!(order.is_sorted(), "{features:?}");
            }
        }
        None => {
            // Incomplete now: no prefix ending at a line end was complete.
            for (end, _) in data.iter().enumerate().filter(|&(_, &b)| b == b'\n') {
                assert_eq!(parse_reply(&data[..=end]), None, "a complete prefix, then incomplete");
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Some(port) = parse_epsv(&text) {
        assert_ne!(port, 0);
    }
    if let Some(addr) = parse_pasv(&text) {
        let port = port_command(addr);
        let args = port.strip_prefix("PORT ").expect("IPv4");
        assert_eq!(parse_pasv(&format!("227 Entering Passive Mode ({args})")), Some(addr));
    }
    for kind in HashKind::PREFERENCE {
        if let Some(digest) = barge::backend::ftp::parse_hash_reply(&text, kind) {
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            assert!(text.to_ascii_lowercase().split_whitespace().skip(1).any(|t| t == hex), "{hex} in {text:?}");
        }
    }
}

/// suppaftp's own reading of replies (the control channel under the
/// greeting, login, FEAT, PWD, MDTM, SIZE and NOOP that barge sends through
/// it), fed the input as everything a server says, over a real loopback
/// socket, as barge's control connections are built
/// (`AsyncRustlsFtpStream::connect_with_stream`):
/// - no call panics;
/// - every call ends, at the latest with an error once the server's bytes
///   run out and it closes (a reply that never ends cannot hang a run);
/// - a welcome message accepted is text the server sent (UTF-8 input).
pub fn ftp_client(data: &[u8]) {
    let _ = ftp_client_session(data);
}

/// [`ftp_client`]'s session; what each call returned, in order (a greeting
/// refused is the only entry when it is).
pub fn ftp_client_session(data: &[u8]) -> Vec<String> {
    use suppaftp::tokio::AsyncRustlsFtpStream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let data = data[..data.len().min(QUADRATIC_LIMIT)].to_vec();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async move {
        // Out of loopback ports (a fuzzer's thousands of runs a second) is
        // the machine's limit, not the parser's: nothing to check then.
        let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else { return Vec::new() };
        let addr = listener.local_addr().expect("its address");
        let said = data.clone();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("the client connects");
            let (mut commands, mut replies) = socket.into_split();
            // Commands are read and dropped, so the client never blocks on a full socket.
            let drain = tokio::spawn(async move {
                let mut sink = [0u8; 4096];
                while matches!(commands.read(&mut sink).await, Ok(n) if n > 0) {}
            });
            let _ = replies.write_all(&said).await;
            let _ = replies.shutdown().await;
            let _ = drain.await;
        });
        let in_time = std::time::Duration::from_secs(10);
        let Ok(stream) = tokio::net::TcpStream::connect(addr).await else { return Vec::new() };
        // Closed with a reset, the client's side leaves no TIME_WAIT port
        // behind (the server's bytes are all read by then).
        let _ = stream.set_zero_linger();
        let connected = tokio::time::timeout(in_time, AsyncRustlsFtpStream::connect_with_stream(stream))
            .await
            .expect("the greeting is taken or refused in time, never waited for forever");
        let mut outcomes = Vec::new();
        match connected {
            Err(err) => outcomes.push(format!("greeting: {err}")),
            Ok(mut ftp) => {
                // (Bytes that are not UTF-8 may be replaced differently
                // when decoded line by line: checked on UTF-8 input.)
                if let (Some(welcome), Ok(sent)) = (ftp.get_welcome_msg(), std::str::from_utf8(&data)) {
                    assert!(sent.contains(welcome.trim_end()), "welcome {welcome:?} not in {sent:?}");
                }
                for step in 0..6 {
                    let done = async {
                        match step {
                            0 => ftp.login("user", "secret").await.map(|()| "logged in".to_string()),
                            1 => ftp.feat().await.map(|f| format!("{} features", f.len())),
                            2 => ftp.pwd().await,
                            3 => ftp.mdtm("file").await.map(|t| t.to_string()),
                            4 => ftp.size("file").await.map(|n| n.to_string()),
                            _ => ftp.noop().await.map(|()| "noop".to_string()),
                        }
                    };
                    let result =
                        tokio::time::timeout(in_time, done).await.expect("every reply is read or refused in time");
                    let closed = matches!(result, Err(suppaftp::FtpError::ConnectionError(_)));
                    outcomes.push(result.unwrap_or_else(|err| format!("error: {err}")));
                    if closed {
                        break;
                    }
                }
            }
        }
        server.abort();
        outcomes
    })
}

/// The FTP name encoding (`names`): every byte string survives the trip
/// through a `String` and back; UTF-8 without the escape characters
/// (U+F780..U+F7FF) is left as it is.
pub fn ftp_names(data: &[u8]) {
    let text = names::decode(data);
    assert_eq!(names::encode(&text), data);
    if let Ok(text) = std::str::from_utf8(data)
        && !text.chars().any(|c| ('\u{F780}'..='\u{F7FF}').contains(&c))
    {
        assert_eq!(names::decode(data), text, "valid UTF-8 changed");
        assert_eq!(names::decode(&names::encode(text)), text);
    }
}

/// The `--ascii` line-end converters: the output does not depend on how
/// the input is cut into chunks (whole, byte by byte, or cut after every
/// byte below 0x20); CRLF to LF removes exactly the CR of each CRLF; LF to
/// CRLF leaves no bare LF, is idempotent, and CRLF to LF undoes it for
/// text without CR.
pub fn ftp_text(data: &[u8]) {
    let to_lf = |chunks: &mut dyn Iterator<Item = &[u8]>| {
        let (mut conv, mut out) = (text::CrlfToLf::default(), Vec::new());
        chunks.for_each(|chunk| conv.feed(chunk, &mut out));
        conv.finish(&mut out);
        out
    };
    let to_crlf = |chunks: &mut dyn Iterator<Item = &[u8]>| {
        let (mut conv, mut out) = (text::LfToCrlf::default(), Vec::new());
        chunks.for_each(|chunk| conv.feed(chunk, &mut out));
        out
    };
    let cut = || data.split_inclusive(|&b| b < 0x20);
    let lf = to_lf(&mut std::iter::once(data));
    assert_eq!(to_lf(&mut data.chunks(1)), lf);
    assert_eq!(to_lf(&mut cut()), lf);
    assert_eq!(lf.len(), data.len() - data.windows(2).filter(|w| w == b"\r\n").count());
    let crlf = to_crlf(&mut std::iter::once(data));
    assert_eq!(to_crlf(&mut data.chunks(1)), crlf);
    assert_eq!(to_crlf(&mut cut()), crlf);
    assert!(crlf.iter().enumerate().all(|(i, &b)| b != b'\n' || (i > 0 && crlf[i - 1] == b'\r')), "bare LF");
    assert_eq!(to_crlf(&mut std::iter::once(&crlf[..])), crlf, "not idempotent");
    if !data.contains(&b'\r') {
        assert_eq!(to_lf(&mut crlf.chunks(3)), data);
    }
}

/// `~/.ssh/config` text (Include not followed), for a few aliases:
/// - a port is never 0, and no value is empty (OpenSSH refuses `""`);
/// - the first value wins: text appended after a config (split at a line
///   end half way) never changes a value it set, and identity files only
///   accumulate;
/// - an error is never undone by what follows it: the text with more
///   lines appended fails with the same message (ssh refuses the file);
/// - `*`/`?` matching agrees with a plain dynamic-programming matcher;
/// - `%` expansion leaves text without `%` or `~/` alone.
pub fn ssh_config(data: &[u8]) {
    use barge::backend::sftp::config::{Tokens, expand, lookup_text, wildcard};
    let split = data.iter().skip(data.len() / 2).position(|&b| b == b'\n').map(|at| data.len() / 2 + at + 1);
    for alias in ["web", "host.example.com", "", "*"] {
        let whole = lookup_text(data, alias);
        if let Ok(settings) = &whole {
            assert_ne!(settings.port, Some(0));
            assert_ne!(settings.hostname.as_deref(), Some(""), "{settings:?}");
            assert_ne!(settings.user.as_deref(), Some(""), "{settings:?}");
            assert!(settings.identity_files.iter().all(|f| !f.is_empty()), "{settings:?}");
        }
        let Some(split) = split else { continue };
        match (lookup_text(&data[..split], alias), &whole) {
            (Ok(head), Ok(whole)) => {
                for (a, b) in [(&head.hostname, &whole.hostname), (&head.user, &whole.user)] {
                    assert!(a.is_none() || a == b, "first value lost: {head:?} then {whole:?}");
                }
                assert!(head.port.is_none() || head.port == whole.port, "{head:?} then {whole:?}");
                assert!(whole.identity_files.starts_with(&head.identity_files), "{head:?} then {whole:?}");
            }
            (Err(head), whole) => assert_eq!(whole.as_ref().err(), Some(&head), "an error undone by later lines"),
            (Ok(_), Err(_)) => {}
        }
    }
    let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let (pattern, text) = match first.iter().position(|&b| b == b' ') {
        Some(at) => (&first[..at], &first[at + 1..]),
        None => (first, &b""[..]),
    };
    let (pattern, text) = (&pattern[..pattern.len().min(40)], &text[..text.len().min(40)]);
    assert_eq!(wildcard(pattern, text), reference_wildcard(pattern, text), "{pattern:?} {text:?}");
    let tokens = Tokens { home: "/home/u", host: "h", alias: "a", port: 22, remote_user: "r", local_user: "l" };
    let text = String::from_utf8_lossy(data);
    let expanded = expand(&text, &tokens);
    if !text.contains('%') && !text.starts_with("~/") {
        assert_eq!(expanded.as_deref(), Ok(&*text));
    }
}

/// `*` any run, `?` any one byte: by the table, no cleverness.
fn reference_wildcard(pattern: &[u8], text: &[u8]) -> bool {
    // matches[i][j]: pattern[i..] matches text[j..].
    let mut matches = vec![vec![false; text.len() + 1]; pattern.len() + 1];
    matches[pattern.len()][text.len()] = true;
    for i in (0..pattern.len()).rev() {
        for j in (0..=text.len()).rev() {
            matches[i][j] = match pattern[i] {
                b'*' => matches[i + 1][j] || (j < text.len() && matches[i][j + 1]),
                c => j < text.len() && (c == b'?' || c == text[j]) && matches[i + 1][j + 1],
            };
        }
    }
    matches[0][0]
}

/// known_hosts lookups: each key found is on the line (as an editor
/// numbers it) whose host field names the host, never on a comment.
pub fn known_hosts(data: &[u8]) {
    use barge::backend::sftp::hostkey::recorded;
    let path = std::env::temp_dir().join(format!("barge-fuzz-known-hosts-{}", std::process::id()));
    std::fs::write(&path, data).expect("temporary file");
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    for (host, port) in [("example.com", 22), ("example.com", 2222), ("127.0.0.1", 22)] {
        let Ok(found) = recorded(host, port, &path) else { continue };
        let pattern = barge::backend::sftp::hostkey::host_pattern(host, port);
        for (number, _key) in found {
            let line = lines.get(number.wrapping_sub(1)).expect("a line number past the end");
            assert_ne!(line.first(), Some(&b'#'), "line {number} is a comment");
            let hosts = line.split(|&b| b == b' ').next().unwrap_or_default();
            assert!(
                hosts.split(|&b| b == b',').any(|h| h == pattern.as_bytes() || h.starts_with(b"|1|")),
                "line {number} is not for {pattern}"
            );
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// The server's KEXINIT packet: names are never empty and never hold a
/// comma, the lists written back into a packet parse to themselves, and a
/// negotiated algorithm is on both lists.
pub fn kexinit(data: &[u8]) {
    use barge::doctor::sftp::{KexInit, negotiate, parse_kexinit};
    let Ok(kex) = parse_kexinit(data) else { return };
    let lists = |k: &KexInit| {
        [
            k.kex.clone(),
            k.host_key.clone(),
            k.cipher_client_to_server.clone(),
            k.cipher_server_to_client.clone(),
            k.mac_client_to_server.clone(),
            k.mac_server_to_client.clone(),
            k.compression_client_to_server.clone(),
        ]
    };
    let mut payload = vec![20u8; 17];
    for list in lists(&kex) {
        for name in &list {
            assert!(!name.is_empty() && !name.contains(','), "{name:?}");
        }
        let text = list.join(",");
        payload.extend_from_slice(&u32::try_from(text.len()).expect("short").to_be_bytes());
        payload.extend_from_slice(text.as_bytes());
    }
    let mut packet = vec![4u8];
    packet.extend_from_slice(&payload);
    packet.extend_from_slice(&[0; 4]);
    assert_eq!(parse_kexinit(&packet).as_ref(), Ok(&kex));
    let ours: Vec<String> = ["curve25519-sha256", "ssh-ed25519", "aes128-ctr", "none"].map(String::from).to_vec();
    for list in lists(&kex) {
        if let Some(name) = negotiate(&ours, &list) {
            assert!(ours.iter().any(|o| o == name) && list.iter().any(|l| l == name));
        }
    }
}

/// Command-line locations (`Location::parse`), for any text:
/// - a remote has a host without `/`, `@`, spaces or control characters
///   (and with `:` only in brackets), a port from 1 to 65535, and a path
///   starting with `/`, normalized;
/// - its display never shows the password;
/// - a location of plain words reads back from its display to itself
///   (without the password).
pub fn location(data: &[u8]) {
    use barge::location::Location;
    let text = String::from_utf8_lossy(data);
    let Ok(Location::Remote(remote)) = Location::parse(&text) else { return };
    assert!(!remote.host.is_empty() && !remote.host.contains(['/', '@']), "{remote:?}");
    assert!(!remote.host.contains(|c: char| c.is_whitespace() || c.is_control()), "{remote:?}");
    assert!(!remote.host.contains(':') || text.contains(&format!("[{}]", remote.host)), "{remote:?}");
    assert_ne!(remote.port, 0, "{remote:?}");
    assert!(remote.path.starts_with(b"/"), "{remote:?}");
    if !text.contains('%') {
        let written = text.split_once("://").map(|(_, rest)| rest).unwrap_or_default();
        let path = written.find('/').map_or("/", |at| &written[at..]);
        // Dot segments and doubled slashes are gone, as in a URL.
        assert_eq!(remote.path, barge::location::normalize_path(path.as_bytes()));
    }
    let shown = remote.to_string();
    if remote.password.is_some() {
        let mut other = remote.clone();
        other.password = Some(barge::location::Secret::new("other".into()));
        assert_eq!((other.to_string(), format!("{other:?}")), (shown.clone(), format!("{remote:?}")), "password shown");
    }
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if plain(&remote.host)
        && remote.user.as_deref().is_none_or(plain)
        && remote.path.split(|&b| b == b'/').all(|c| c.is_empty() || plain(&String::from_utf8_lossy(c)))
    {
        let Ok(Location::Remote(again)) = Location::parse(&shown) else { panic!("{shown} does not parse") };
        assert_eq!(
            (again.scheme, &again.user, &again.host, again.port, &again.path),
            (remote.scheme, &remote.user, &remote.host, remote.port, &remote.path)
        );
    }
}

/// `.netrc`: every value is one non-empty word; only `default` makes an
/// entry without a machine; and lines do not matter (outside `macdef`):
/// the same tokens on one line give the same entries.
pub fn netrc(data: &[u8]) {
    use barge::credentials::parse_netrc;
    let text = String::from_utf8_lossy(data);
    let entries = parse_netrc(data);
    let defaults = text.split_whitespace().filter(|&w| w == "default").count();
    assert!(entries.iter().filter(|e| e.machine.is_none()).count() <= defaults, "{entries:?}");
    for entry in &entries {
        for value in [&entry.machine, &entry.login, &entry.password].into_iter().flatten() {
            assert!(!value.is_empty() && !value.contains(char::is_whitespace), "{entry:?}");
        }
    }
    if !text.split_whitespace().any(|w| w == "macdef") {
        let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(parse_netrc(one_line.as_bytes()), entries, "lines changed the entries");
    }
}

/// Sizes and rates (`--bwlimit 1.5M`): plain digits are that many bytes,
/// a `K` suffix on them 1024 times that, a size reads back from its
/// digits, and the formatting helpers take any value.
pub fn units(data: &[u8]) {
    use barge::units::{format_utc, human_bytes, parse_size};
    let text = String::from_utf8_lossy(data);
    let parsed = parse_size(&text);
    let body = text.trim();
    if !body.is_empty() && body.len() <= 15 && body.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = body.parse().expect("digits");
        assert_eq!(parsed, Ok(n));
        assert_eq!(parse_size(&format!("{body}K")), Ok(n * 1024));
    }
    if let Ok(n) = parsed {
        if n < 1 << 53 {
            assert_eq!(parse_size(&n.to_string()), Ok(n));
        }
        assert!(!human_bytes(n).is_empty());
    }
    if let Some(head) = data.first_chunk::<8>() {
        // Any time barge can hold (nanoseconds in an i64).
        let secs = i64::from_le_bytes(*head) / 1_000_000_000;
        let shown = format_utc(secs);
        assert_eq!(shown.len(), "2026-11-25T10:00:00Z".len(), "{shown}");
    }
}

/// Relative paths from server-supplied names (`RelPath::parse`, `join`):
/// what they accept never has an empty, `.`, `..`, `/` or NUL component,
/// stays below any root it is joined to, and reads back to itself; what
/// they refuse has such a component.
pub fn relpath(data: &[u8]) {
    match RelPath::parse(data) {
        Ok(path) => {
            check_safe_path(&path);
            let parts: Vec<&[u8]> = data.split(|&b| b == b'/').filter(|p| !p.is_empty()).collect();
            assert_eq!(path.components().collect::<Vec<_>>(), parts);
            assert_eq!(RelPath::parse(path.as_bytes()).as_ref(), Ok(&path));
            let mut ancestor = path.clone();
            while !ancestor.is_root() {
                assert!(path.starts_with(&ancestor));
                assert!(ancestor == path || ancestor.cmp_tree(&path).is_lt(), "{ancestor:?} sorts after {path:?}");
                ancestor = ancestor.parent();
            }
        }
        Err(why) => {
            let bad = data.split(|&b| b == b'/').filter(|p| !p.is_empty()).find_map(|p| check_component(p).err());
            assert_eq!(bad, Some(why));
        }
    }
    let dir = RelPath::parse(b"dir/sub").expect("valid");
    match dir.join(data) {
        Ok(path) => {
            check_safe_path(&path);
            assert_eq!((path.parent(), path.file_name(), path.depth()), (dir.clone(), data, 3));
            assert!(path.starts_with(&dir) && dir.cmp_tree(&path).is_lt());
        }
        Err(why) => assert_eq!(check_component(data), Err(why)),
    }
}

/// Server certificates (doctor): whatever DER comes in, the summary can be
/// written, and a certificate matches each plain name it lists.
pub fn cert(data: &[u8]) {
    use barge::doctor::cert::{CertInfo, date};
    let Some(info) = CertInfo::parse(data) else { return };
    let _ = (info.summary(), date(info.not_before), date(info.not_after));
    for name in &info.names {
        if !name.starts_with("*.") && !name.ends_with('.') && !name.is_empty() {
            assert!(info.matches(name), "{name:?} not matched by {info:?}");
        }
    }
    let _ = info.matches("localhost");
}
