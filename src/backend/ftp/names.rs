//! Names on the wire are bytes; suppaftp's commands are `String`s. The
//! [`RawBytes`] encoding carries every byte through unchanged: valid UTF-8
//! stays as it is, and each byte of an invalid sequence travels as one
//! private-use character (U+F780 + byte - 0x80) that is turned back into the
//! byte on the way out. A name whose real text holds one of those
//! characters (valid UTF-8, three bytes each) has each of its bytes escaped
//! the same way, so it too comes back as it was: every byte string
//! survives [`decode`] then [`encode`].
//!
//! Which bytes a name is on the server is [`NameEncoding`]'s: the same
//! bytes as barge's name (no `--encoding`), or a legacy character set
//! (`--encoding latin1`) decoded to UTF-8 for barge and encoded back for
//! every command. Only names that survive that both ways are used; any
//! other is refused with a [`NameError`], never guessed at.

use std::borrow::Cow;
use std::fmt;
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

/// How a name on the server is a name in barge (UTF-8 for the tree and
/// the other side) and back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NameEncoding {
    /// Byte for byte (no `--encoding`): UTF-8 where the server uses it.
    #[default]
    Bytes,
    /// A character set of the WHATWG Encoding Standard (encoding_rs).
    Whatwg(&'static encoding_rs::Encoding),
    /// An IBM PC (DOS) code page, which that standard leaves out (oem_cp).
    DosCodePage(u16),
}

/// Why a name cannot cross between the server's encoding and UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("not valid {0} (--encoding)")]
    NotDecodable(NameEncoding),
    /// Two byte sequences that read as one text (Shift_JIS has such pairs):
    /// barge could not ask for this one by its name.
    #[error("its {0} bytes do not come back from their text (--encoding)")]
    NotReversible(NameEncoding),
    #[error("the name is not UTF-8, so it has no form in {0} (--encoding)")]
    NotUtf8(NameEncoding),
    #[error("`{character}` has no form in {encoding} (--encoding)")]
    NotRepresentable { character: char, encoding: NameEncoding },
}

/// `--encoding` named no character set barge can use for names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownEncoding {
    #[error("`{0}` is no character set barge knows; some it does: {names}", names = SOME_NAMES)]
    Unknown(String),
    #[error("`{0}`: names are UTF-8 without --encoding (and kept byte for byte)")]
    Utf8(String),
    #[error("`{0}` cannot carry FTP names: commands are ASCII, and so must be the names' character set")]
    NotAsciiCompatible(String),
}

/// Names a user may know, for the error that lists some.
const SOME_NAMES: &str = "latin1 (windows-1252), iso-8859-2 .. iso-8859-16, windows-1250 .. windows-1258, koi8-r, \
                          cp437, cp850, cp866, shift_jis, euc-jp, euc-kr, gbk, gb18030, big5";

impl NameEncoding {
    /// `--encoding NAME`: a WHATWG label (`latin1`, `iso-8859-2`,
    /// `shift_jis`, `gbk`...), or `cpNNN`/`ibmNNN` for a DOS code page.
    /// Encodings that are not ASCII-compatible cannot carry FTP commands.
    pub fn parse(name: &str) -> Result<NameEncoding, UnknownEncoding> {
        if let Some(encoding) = encoding_rs::Encoding::for_label(name.as_bytes()) {
            return if encoding == encoding_rs::UTF_8 {
                Err(UnknownEncoding::Utf8(name.to_string()))
            } else if !encoding.is_ascii_compatible() || encoding == encoding_rs::X_USER_DEFINED {
                Err(UnknownEncoding::NotAsciiCompatible(name.to_string()))
            } else {
                Ok(NameEncoding::Whatwg(encoding))
            };
        }
        let lower = name.trim().to_ascii_lowercase();
        let page = lower.strip_prefix("cp").or_else(|| lower.strip_prefix("ibm")).and_then(|n| n.parse().ok());
        match page {
            Some(page) if oem_cp::code_table::DECODING_TABLE_CP_MAP.contains_key(&page) => {
                Ok(NameEncoding::DosCodePage(page))
            }
            _ => Err(UnknownEncoding::Unknown(name.to_string())),
        }
    }

    /// Names kept as they are: the server may be asked for UTF-8.
    pub fn is_bytes(self) -> bool {
        self == NameEncoding::Bytes
    }

    /// A name (or `/`-separated path) as the server sent it, as barge's.
    pub fn to_barge(self, server: &[u8]) -> Result<Cow<'_, [u8]>, NameError> {
        if self.is_bytes() {
            return Ok(Cow::Borrowed(server));
        }
        let text = self.decode(server).ok_or(NameError::NotDecodable(self))?;
        match self.encode(&text) {
            Ok(back) if back == server => Ok(Cow::Owned(text.into_bytes())),
            _ => Err(NameError::NotReversible(self)),
        }
    }

    /// barge's name (or `/`-separated path) as the server's bytes.
    pub fn to_server(self, name: &[u8]) -> Result<Cow<'_, [u8]>, NameError> {
        if self.is_bytes() {
            return Ok(Cow::Borrowed(name));
        }
        let text = std::str::from_utf8(name).map_err(|_| NameError::NotUtf8(self))?;
        let bytes = self.encode(text).map_err(|character| NameError::NotRepresentable { character, encoding: self })?;
        // Shift_JIS writes `¥` as 0x5C, which reads back as `\`: a name
        // that would come back as another is not written.
        let back = self.decode(&bytes);
        if back.as_deref() == Some(text) {
            return Ok(Cow::Owned(bytes));
        }
        Err(NameError::NotRepresentable { character: first_lost(text, back.as_deref().unwrap_or("")), encoding: self })
    }

    /// Strict decoding: `None` for bytes that are not valid in the set.
    fn decode(self, bytes: &[u8]) -> Option<String> {
        match self {
            NameEncoding::Bytes => String::from_utf8(bytes.to_vec()).ok(),
            NameEncoding::Whatwg(encoding) => {
                encoding.decode_without_bom_handling_and_without_replacement(bytes).map(Cow::into_owned)
            }
            NameEncoding::DosCodePage(page) => {
                oem_cp::code_table::DECODING_TABLE_CP_MAP.get(&page)?.decode_string_checked(bytes)
            }
        }
    }

    /// Strict encoding: the first character the set lacks as the error.
    fn encode(self, text: &str) -> Result<Vec<u8>, char> {
        let first_char = || text.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
        match self {
            NameEncoding::Bytes => Ok(text.as_bytes().to_vec()),
            NameEncoding::Whatwg(encoding) => {
                let mut encoder = encoding.new_encoder();
                let room =
                    encoder.max_buffer_length_from_utf8_without_replacement(text.len()).ok_or_else(first_char)?;
                let mut out = Vec::with_capacity(room);
                match encoder.encode_from_utf8_to_vec_without_replacement(text, &mut out, true).0 {
                    encoding_rs::EncoderResult::InputEmpty => Ok(out),
                    encoding_rs::EncoderResult::Unmappable(character) => Err(character),
                    encoding_rs::EncoderResult::OutputFull => Err(first_char()),
                }
            }
            NameEncoding::DosCodePage(page) => {
                let table = oem_cp::code_table::ENCODING_TABLE_CP_MAP.get(&page).ok_or_else(first_char)?;
                text.chars()
                    .map(|c| match u8::try_from(c) {
                        Ok(ascii) if ascii.is_ascii() => Ok(ascii),
                        _ => table.get(&c).copied().ok_or(c),
                    })
                    .collect()
            }
        }
    }
}

/// The first character of `text` that `back` does not have in its place.
fn first_lost(text: &str, back: &str) -> char {
    let mut back = back.chars();
    text.chars().find(|&c| back.next() != Some(c)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

impl fmt::Display for NameEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameEncoding::Bytes => f.write_str("UTF-8"),
            NameEncoding::Whatwg(encoding) => f.write_str(encoding.name()),
            NameEncoding::DosCodePage(page) => write!(f, "cp{page}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoding(name: &str) -> NameEncoding {
        NameEncoding::parse(name).unwrap()
    }

    #[test]
    fn legacy_names_decode_to_utf8_and_encode_back_exactly() {
        let cases: [(&str, &[u8], &str); 7] = [
            ("latin1", b"caf\xe9.txt", "caf\u{e9}.txt"),
            ("iso-8859-2", b"\xb1\xe6", "\u{105}\u{107}"),
            ("cp437", b"\x82t\xe9", "\u{e9}t\u{398}"),
            ("cp850", b"\x90", "\u{c9}"),
            ("shift_jis", b"\x93\xfa\x96\x7b.txt", "\u{65e5}\u{672c}.txt"),
            ("euc-kr", b"\xc7\xd1", "\u{d55c}"),
            ("gbk", b"\xd6\xd0/\xce\xc4", "\u{4e2d}/\u{6587}"),
        ];
        for (name, server, text) in cases {
            let encoding = encoding(name);
            assert_eq!(encoding.to_barge(server).as_deref(), Ok(text.as_bytes()), "{name}");
            assert_eq!(encoding.to_server(text.as_bytes()).as_deref(), Ok(server), "{name}");
        }
    }

    #[test]
    fn without_an_encoding_names_pass_byte_for_byte() {
        let bytes = NameEncoding::default();
        assert!(bytes.is_bytes());
        for name in [&b"caf\xe9"[..], b"caf\xc3\xa9", b"\xff"] {
            assert!(matches!(bytes.to_barge(name), Ok(Cow::Borrowed(same)) if same == name));
            assert!(matches!(bytes.to_server(name), Ok(Cow::Borrowed(same)) if same == name));
        }
    }

    #[test]
    fn names_that_do_not_cross_are_refused_never_mangled() {
        let sjis = encoding("shift_jis");
        // A lead byte without its trail byte.
        assert_eq!(sjis.to_barge(b"bad\x93.txt"), Err(NameError::NotDecodable(sjis)));
        // 0xFA40 and 0xEEEF are both `ⅰ`: only the one it writes back is usable.
        assert!(sjis.to_barge(b"\xfa\x40").is_ok());
        assert_eq!(sjis.to_barge(b"\xee\xef"), Err(NameError::NotReversible(sjis)));
        // `¥` is written 0x5C, which reads back as `\`.
        assert_eq!(
            sjis.to_server("\u{a5}.txt".as_bytes()),
            Err(NameError::NotRepresentable { character: '\u{a5}', encoding: sjis })
        );
        let latin1 = encoding("latin1");
        assert_eq!(
            latin1.to_server("\u{65e5}\u{672c}.txt".as_bytes()),
            Err(NameError::NotRepresentable { character: '\u{65e5}', encoding: latin1 })
        );
        assert_eq!(latin1.to_server(b"caf\xe9"), Err(NameError::NotUtf8(latin1)));
        // Every byte is a character in windows-1252: any latin1 name reads.
        let all: Vec<u8> = (1..=255).filter(|&b| b != b'/').collect();
        assert_eq!(latin1.to_server(&latin1.to_barge(&all).unwrap()).as_deref(), Ok(&all[..]));
    }

    #[test]
    fn encoding_names_are_labels_or_dos_code_pages() {
        assert_eq!(encoding("latin1").to_string(), "windows-1252");
        assert_eq!(encoding("ISO-8859-1").to_string(), "windows-1252");
        assert_eq!(encoding("cp1252").to_string(), "windows-1252");
        assert_eq!(encoding("sjis").to_string(), "Shift_JIS");
        assert_eq!(encoding("gb18030").to_string(), "gb18030");
        assert_eq!(encoding("CP437"), NameEncoding::DosCodePage(437));
        assert_eq!(encoding("ibm850"), NameEncoding::DosCodePage(850));
        assert_eq!(encoding("cp866").to_string(), "IBM866");
        assert!(matches!(NameEncoding::parse("klingon"), Err(UnknownEncoding::Unknown(_))));
        assert!(matches!(NameEncoding::parse("cp9999"), Err(UnknownEncoding::Unknown(_))));
        assert!(matches!(NameEncoding::parse("utf-8"), Err(UnknownEncoding::Utf8(_))));
        for unusable in ["utf-16le", "iso-2022-jp", "x-user-defined", "replacement"] {
            assert!(matches!(NameEncoding::parse(unusable), Err(UnknownEncoding::NotAsciiCompatible(_))), "{unusable}");
        }
        let message = NameEncoding::parse("klingon").unwrap_err().to_string();
        assert!(message.contains("latin1") && message.contains("cp437") && message.contains("shift_jis"), "{message}");
    }
}
