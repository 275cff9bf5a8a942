//! Names on the wire are bytes; suppaftp's commands are `String`s. The
//! [`RawBytes`] encoding carries every byte through unchanged: valid UTF-8
//! stays as it is, and each byte of an invalid sequence travels as one
//! private-use character (U+F780 + byte - 0x80) that is turned back into the
//! byte on the way out. A name whose real text holds one of those
//! characters (valid UTF-8, three bytes each) has each of its bytes escaped
//! the same way, so it too comes back as it was: every byte string
//! survives [`decode`] then [`encode`].

use std::io;

// One escape scheme for FTP and SFTP names.
pub use crate::backend::raw_names::{decode, encode};

#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl suppaftp::Encoding for RawBytes {
    fn decode(&self, bytes: &[u8]) -> String {
        decode(bytes)
    }

    fn encode(&self, text: &str) -> io::Result<Vec<u8>> {
        Ok(encode(text))
    }
}
