//! Names on the wire are bytes; suppaftp's commands are `String`s. The
//! [`RawBytes`] encoding carries every byte through unchanged: valid UTF-8
//! stays as it is, and each byte of an invalid sequence travels as one
//! private-use character (U+F780 + byte - 0x80) that is turned back into the
//! byte on the way out. A name whose real text contains U+F780..U+F7FF
//! cannot be told apart; no real file system produces those.

use std::io;

const ESCAPE_BASE: u32 = 0xF700;

#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

/// Bytes to a `String` that [`encode`] turns back into the same bytes.
pub fn decode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for &b in chunk.invalid() {
            // Invalid bytes are always >= 0x80, so this stays in U+F780..U+F7FF.
            out.push(char::from_u32(ESCAPE_BASE + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER));
        }
    }
    out
}

/// The inverse of [`decode`].
pub fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let code = u32::from(c);
        if (ESCAPE_BASE + 0x80..=ESCAPE_BASE + 0xFF).contains(&code) {
            out.push((code - ESCAPE_BASE) as u8);
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

impl suppaftp::Encoding for RawBytes {
    fn decode(&self, bytes: &[u8]) -> String {
        decode(bytes)
    }

    fn encode(&self, text: &str) -> io::Result<Vec<u8>> {
        Ok(encode(text))
    }
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
}
