//! Line-end conversion for `--ascii` (TYPE A) transfers: the wire carries
//! CRLF, the local side LF. Both converters keep state across chunks, so a
//! CR at the end of one buffer and its LF at the start of the next are one
//! line end.

/// CRLF to LF (a lone CR is kept).
#[derive(Debug, Default)]
pub struct CrlfToLf {
    held_cr: bool,
}

impl CrlfToLf {
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &byte in input {
            if std::mem::take(&mut self.held_cr) {
                if byte == b'\n' {
                    out.push(b'\n');
                    continue;
                }
                out.push(b'\r');
            }
            if byte == b'\r' {
                self.held_cr = true;
            } else {
                out.push(byte);
            }
        }
    }

    /// At the end of the data: a CR still held was a lone one.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.held_cr) {
            out.push(b'\r');
        }
    }
}

/// LF to CRLF (an LF already preceded by CR is left alone, so text that
/// already has CRLF line ends does not grow a second CR).
#[derive(Debug, Default)]
pub struct LfToCrlf {
    last_was_cr: bool,
}

impl LfToCrlf {
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &byte in input {
            if byte == b'\n' && !self.last_was_cr {
                out.push(b'\r');
            }
            out.push(byte);
            self.last_was_cr = byte == b'\r';
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(chunks: &[&[u8]]) -> Vec<u8> {
        let mut decoder = CrlfToLf::default();
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut out);
        }
        decoder.finish(&mut out);
        out
    }

    fn encode(chunks: &[&[u8]]) -> Vec<u8> {
        let mut encoder = LfToCrlf::default();
        let mut out = Vec::new();
        for chunk in chunks {
            encoder.feed(chunk, &mut out);
        }
        out
    }

    #[test]
    fn line_ends_convert_across_chunk_boundaries() {
        assert_eq!(decode(&[b"a\r\nb\r", b"\nc\r"]), b"a\nb\nc\r");
        assert_eq!(decode(&[b"x\r", b"y", b"\r\r\n"]), b"x\ry\r\n");
        assert_eq!(encode(&[b"a\nb\r", b"\nc\n"]), b"a\r\nb\r\nc\r\n");
        assert_eq!(encode(&[b"", b"\n\n"]), b"\r\n\r\n");
    }

    proptest! {
        /// Text without CR survives a round trip, however it is chunked.
        #[test]
        fn lf_text_round_trips(text in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), any::<u8>().prop_filter("no CR", |b| *b != b'\r')], 0..200), cut in 0usize..200) {
            let cut = cut.min(text.len());
            let wire = encode(&[&text[..cut], &text[cut..]]);
            let wire_cut = cut.min(wire.len());
            prop_assert_eq!(decode(&[&wire[..wire_cut], &wire[wire_cut..]]), text);
        }
    }
}
