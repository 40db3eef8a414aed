//! A text/plain body made safe for any SMTP server: line ends normalised to CRLF and a
//! Content-Transfer-Encoding chosen so that the wire form is 7-bit with lines within
//! 998 octets (RFC 5322 2.1.1, RFC 2045 6). No I/O.

use base64::Engine as _;

/// RFC 2045 6.7 (5) and 6.8: encoded lines at most 76 characters.
const ENCODED_LINE: usize = 76;
/// RFC 5322 2.1.1: at most 998 characters a line.
const MAX_LINE: usize = 998;

/// RFC 2045 6.1 mechanisms the gateway writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncoding {
    /// ASCII text, no controls but TAB, short lines: written as is.
    SevenBit,
    /// Mostly ASCII text with some non-ASCII, controls or long lines.
    QuotedPrintable,
    /// Mostly non-ASCII text (quoted-printable would triple it).
    Base64,
}

impl TransferEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SevenBit => "7bit",
            Self::QuotedPrintable => "quoted-printable",
            Self::Base64 => "base64",
        }
    }
}

/// The body as it goes on the wire, CRLF line ends, ending in CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBody {
    pub encoding: TransferEncoding,
    pub bytes: Vec<u8>,
}

/// Encodes UTF-8 text (any of CRLF, LF, CR as line ends) for a text/plain part.
pub fn encode_text(text: &str) -> EncodedBody {
    let mut lines: Vec<&str> = text
        .split("\r\n")
        .flat_map(|l| l.split('\n'))
        .flat_map(|l| l.split('\r'))
        .collect();
    // A final line end ends the last line; it does not open an empty one.
    if lines.len() > 1 && lines.last() == Some(&"") {
        lines.pop();
    }
    let seven_bit = lines
        .iter()
        .all(|l| l.len() <= MAX_LINE && l.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)));
    if seven_bit {
        let mut bytes = lines.join("\r\n").into_bytes();
        bytes.extend_from_slice(b"\r\n");
        return EncodedBody {
            encoding: TransferEncoding::SevenBit,
            bytes,
        };
    }
    let non_ascii = text.bytes().filter(|b| !b.is_ascii()).count();
    if non_ascii * 3 > text.len() {
        let mut canonical = lines.join("\r\n");
        canonical.push_str("\r\n");
        return EncodedBody {
            encoding: TransferEncoding::Base64,
            bytes: base64_lines(canonical.as_bytes()),
        };
    }
    let mut bytes = Vec::with_capacity(text.len() * 2);
    for line in &lines {
        quoted_printable_line(line.as_bytes(), &mut bytes);
    }
    EncodedBody {
        encoding: TransferEncoding::QuotedPrintable,
        bytes,
    }
}

/// RFC 2045 6.8: base64 in lines of 76 characters.
fn base64_lines(data: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(b64.len() + b64.len() / ENCODED_LINE * 2 + 2);
    for chunk in b64.as_bytes().chunks(ENCODED_LINE) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// RFC 2045 6.7: one text line, with soft line breaks (`=` CRLF) so that no encoded line
/// passes 76 characters, `=XX` for `=`, controls, non-ASCII and a space or TAB that
/// ends the line (rule 3).
fn quoted_printable_line(line: &[u8], out: &mut Vec<u8>) {
    let mut width = 0;
    for (i, &b) in line.iter().enumerate() {
        let last = i + 1 == line.len();
        let literal =
            (b'!'..=b'~').contains(&b) && b != b'=' || (matches!(b, b' ' | b'\t') && !last);
        let len = if literal { 1 } else { 3 };
        // Room for the soft break `=` unless this is the line's last character.
        let room = if last { ENCODED_LINE } else { ENCODED_LINE - 1 };
        if width + len > room {
            out.extend_from_slice(b"=\r\n");
            width = 0;
        }
        if literal {
            out.push(b);
        } else {
            out.extend_from_slice(format!("={b:02X}").as_bytes());
        }
        width += len;
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ascii_is_7bit_with_crlf() {
        let b = encode_text("hello\nworld\r\n.dot\r");
        assert_eq!(b.encoding, TransferEncoding::SevenBit);
        assert_eq!(b.bytes, b"hello\r\nworld\r\n.dot\r\n");
        assert_eq!(encode_text("a\n\nb\n\n").bytes, b"a\r\n\r\nb\r\n\r\n");
        assert_eq!(encode_text("x").bytes, b"x\r\n");
    }

    #[test]
    fn accents_are_quoted_printable_within_76() {
        let text = format!("Grüße, {}= end \nnext\t", "x".repeat(200));
        let b = encode_text(&text);
        assert_eq!(b.encoding, TransferEncoding::QuotedPrintable);
        let wire = String::from_utf8(b.bytes.clone()).unwrap();
        assert!(wire.is_ascii());
        for line in wire.split("\r\n") {
            assert!(line.len() <= 76, "{line:?}");
        }
        assert!(wire.starts_with("Gr=C3=BC=C3=9Fe, xxx"));
        assert!(wire.ends_with("=20\r\nnext=09\r\n"));
        assert_eq!(
            qp_decode(&wire),
            format!("{}\r\n", text.replace('\n', "\r\n"))
        );
    }

    /// RFC 2045 6.7 decoding, to check the encoder against.
    fn qp_decode(wire: &str) -> String {
        let joined = wire.replace("=\r\n", "");
        let mut out = Vec::new();
        let mut bytes = joined.bytes();
        while let Some(b) = bytes.next() {
            if b == b'=' {
                let hex = [bytes.next().unwrap(), bytes.next().unwrap()];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
            } else {
                out.push(b);
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn nul_and_long_lines_are_encoded() {
        assert_eq!(
            encode_text("a\0b").encoding,
            TransferEncoding::QuotedPrintable
        );
        assert_eq!(encode_text("a\0b").bytes, b"a=00b\r\n");
        let long = "y".repeat(2000);
        let b = encode_text(&long);
        assert_eq!(b.encoding, TransferEncoding::QuotedPrintable);
        assert!(b.bytes.split(|&c| c == b'\n').all(|l| l.len() <= 77));
    }

    #[test]
    fn mostly_non_ascii_is_base64() {
        let b = encode_text("日本語のテキストです\n二行目");
        assert_eq!(b.encoding, TransferEncoding::Base64);
        let joined: Vec<u8> = b
            .bytes
            .iter()
            .copied()
            .filter(|c| !b"\r\n".contains(c))
            .collect();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(joined)
            .unwrap();
        assert_eq!(decoded, "日本語のテキストです\r\n二行目\r\n".as_bytes());
    }
}
