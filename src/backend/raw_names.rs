//! Names on the wire are bytes; the FTP and SFTP libraries barge uses carry
//! them as `String`s. [`decode`] keeps valid UTF-8 as it is and turns each
//! byte of an invalid sequence into one private-use character (U+F780 +
//! byte - 0x80); [`encode`] turns those characters back into the bytes. A
//! name whose real text holds one of those characters (valid UTF-8, three
//! bytes each) has each of its bytes escaped the same way, so it too comes
//! back as it was: every byte string survives [`decode`] then [`encode`].
//!
//! The vendored russh-sftp (src/vendor/russh-sftp/src/raw_str.rs) does the
//! same inside its string codec, so SFTP strings arrive already in this
//! form and go out through its inverse.

const ESCAPE_BASE: u32 = 0xF700;

/// Bytes to a `String` that [`encode`] turns back into the same bytes.
pub fn decode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let escape = |out: &mut String, bytes: &[u8]| {
        for &b in bytes {
            // Only bytes >= 0x80 are escaped, so this stays in U+F780..U+F7FF.
            out.push(char::from_u32(ESCAPE_BASE + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER));
        }
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_escape(c) {
                // Text that looks like an escape: escaped itself, byte by byte.
                escape(&mut out, c.encode_utf8(&mut [0; 4]).as_bytes());
            } else {
                out.push(c);
            }
        }
        escape(&mut out, chunk.invalid());
    }
    out
}

/// U+F780..U+F7FF: the characters that stand for single bytes.
fn is_escape(c: char) -> bool {
    (ESCAPE_BASE + 0x80..=ESCAPE_BASE + 0xFF).contains(&u32::from(c))
}

/// The inverse of [`decode`].
pub fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if is_escape(c) {
            out.push((u32::from(c) - ESCAPE_BASE) as u8);
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_string_round_trips() {
        for bytes in [&b"plain"[..], b"caf\xc3\xa9", b"caf\xe9", b"\xff\xfe\x80", b"a\xc3", b""] {
            assert_eq!(encode(&decode(bytes)), bytes);
        }
        assert_eq!(decode(b"caf\xc3\xa9"), "caf\u{e9}");
    }

    /// Found by fuzzing: a name holding U+F780 as UTF-8 (EF 9E 80) went out
    /// as the single byte 0x80, a different name.
    #[test]
    fn names_holding_escape_characters_round_trip() {
        let name = "x\u{f780}\u{f7ff}".as_bytes();
        assert_eq!(encode(&decode(name)), name);
        assert_eq!(decode(b"\0\x9f\xa9-\xef\x9e\x80").chars().count(), 7);
    }

    /// Paths are built by joining decoded parts with `/`: an ASCII byte ends
    /// any UTF-8 sequence, so the join decodes as the joined bytes would.
    #[test]
    fn decoding_commutes_with_joining_at_a_slash() {
        for (a, b) in [(&b"r\xc3"[..], &b"\xa9p"[..]), (b"\xe9", b"x\xef\x9e\x80"), (b"", b"\xff")] {
            let joined = [a, b"/", b].concat();
            assert_eq!(format!("{}/{}", decode(a), decode(b)), decode(&joined));
        }
    }
}
