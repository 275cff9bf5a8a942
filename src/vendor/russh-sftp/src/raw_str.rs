//! Byte-exact SFTP strings.
//!
//! SFTP strings (file names, link targets, handles) are bytes; this crate
//! carries them as [`String`]. [`decode`] keeps valid UTF-8 as it is and
//! turns each byte of an invalid sequence into one private-use character,
//! U+F780 + (byte - 0x80); [`encode`] turns those characters back into the
//! bytes. Text that already holds one of those characters has each of its
//! bytes escaped the same way, so every byte string survives [`decode`]
//! then [`encode`] unchanged.

use std::borrow::Cow;

const ESCAPE_BASE: u32 = 0xF700;

/// U+F780..U+F7FF: the characters that stand for single bytes.
fn is_escape(c: char) -> bool {
    (ESCAPE_BASE + 0x80..=ESCAPE_BASE + 0xFF).contains(&u32::from(c))
}

fn push_escaped(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        // Only bytes >= 0x80 get here, so this stays in U+F780..U+F7FF.
        out.push(char::from_u32(ESCAPE_BASE + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER));
    }
}

/// Bytes to a `String` that [`encode`] turns back into the same bytes.
pub fn decode(bytes: Vec<u8>) -> String {
    let bytes = match String::from_utf8(bytes) {
        Ok(text) if !text.chars().any(is_escape) => return text,
        Ok(text) => text.into_bytes(),
        Err(error) => error.into_bytes(),
    };
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_escape(c) {
                push_escaped(&mut out, c.encode_utf8(&mut [0; 4]).as_bytes());
            } else {
                out.push(c);
            }
        }
        push_escaped(&mut out, chunk.invalid());
    }
    out
}

/// The inverse of [`decode`].
pub fn encode(text: &str) -> Cow<'_, [u8]> {
    if !text.chars().any(is_escape) {
        return Cow::Borrowed(text.as_bytes());
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if is_escape(c) {
            out.push((u32::from(c) - ESCAPE_BASE) as u8);
        } else {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_string_round_trips() {
        let escape_as_text = "x\u{f780}\u{f7ff}".as_bytes();
        for bytes in [
            &b"plain"[..],
            b"caf\xc3\xa9",
            b"caf\xe9",
            b"\xff\xfe\x80",
            b"a\xc3",
            b"",
            escape_as_text,
        ] {
            assert_eq!(encode(&decode(bytes.to_vec())), bytes);
        }
        assert_eq!(decode(b"caf\xc3\xa9".to_vec()), "caf\u{e9}");
        assert_eq!(decode(b"caf\xe9".to_vec()), "caf\u{f7e9}");
        assert_eq!(decode(escape_as_text.to_vec()).chars().count(), 7);
    }
}
