//! Header values for the mails the gateway writes (RFC 5322), built from CPM-side text.
//!
//! Owns: checking addresses (an addr-spec that is not one is refused, never encoded),
//! sanitising display names and subjects (controls such as CR/LF become spaces, so nothing
//! from the CPM side can start a header line), RFC 2047 encoded-words, Message-IDs and
//! folding. No I/O, no knowledge of which table a header serves.

use base64::Engine as _;
use std::fmt;

/// RFC 5322 2.1.1: lines SHOULD stay within 78 characters (without CRLF).
const FOLD_AT: usize = 78;
/// RFC 2047 2: an encoded-word is at most 75 characters; `=?utf-8?B?` and `?=` take 12,
/// leaving 63 base64 characters, that is 45 bytes of text (a multiple of 3 keeps it exact).
const ENCODED_WORD_BYTES: usize = 45;
/// A word longer than this is encoded (and so split) instead of written as is.
const LONG_WORD: usize = 66;
/// RFC 5321 4.5.3.1.1 and .2: local-part at most 64 octets, a path at most 256 with `<>`.
const MAX_LOCAL_PART: usize = 64;
const MAX_ADDRESS: usize = 254;
/// A Message-ID left part longer than this is replaced by a hash of itself.
const MAX_ID_LEFT: usize = 128;

/// A value that cannot be written into a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not an e-mail address (RFC 5322 addr-spec) {value:?}: {reason}")]
    Address { value: String, reason: &'static str },
    #[error("not a Message-ID part (RFC 5322 3.6.4 dot-atom-text) {value:?}: {reason}")]
    MessageId { value: String, reason: &'static str },
    #[error("X-Priority {0} is out of range: use 1 (highest) to 5 (lowest)")]
    XPriority(u8),
}

/// An RFC 5322 3.4.1 addr-spec that is also a valid RFC 5321 path: ASCII only, no
/// controls, a dot-atom or quoted-string local part, a host name or address literal.
/// Stored (`store`) as its text, checked again when read back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AddrSpec {
    text: String,
    at: usize,
}

impl AddrSpec {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let bad = |reason| HeaderError::Address {
            value: value.into(),
            reason,
        };
        if value.chars().any(|c| c.is_control()) {
            return Err(bad("contains a control character (CR, LF, NUL, ...)"));
        }
        if !value.is_ascii() {
            return Err(bad("contains non-ASCII characters (SMTPUTF8 is not used)"));
        }
        if value.len() > MAX_ADDRESS {
            return Err(bad("longer than 254 characters (RFC 5321 4.5.3.1.3)"));
        }
        let at = value.rfind('@').ok_or_else(|| bad("no '@'"))?;
        let (local, domain) = (&value[..at], &value[at + 1..]);
        if local.is_empty() || local.len() > MAX_LOCAL_PART {
            return Err(bad("local part empty or longer than 64 characters"));
        }
        let local_ok = if local.starts_with('"') {
            is_quoted_string(local)
        } else {
            is_dot_atom_text(local)
        };
        if !local_ok {
            return Err(bad("local part is neither a dot-atom nor a quoted-string"));
        }
        if !is_domain(domain) {
            return Err(bad("domain is not a host name or address literal"));
        }
        Ok(Self {
            text: value.into(),
            at,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn local_part(&self) -> &str {
        &self.text[..self.at]
    }

    pub fn domain(&self) -> &str {
        &self.text[self.at + 1..]
    }
}

impl fmt::Display for AddrSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for AddrSpec {
    type Error = HeaderError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<AddrSpec> for String {
    fn from(a: AddrSpec) -> String {
        a.text
    }
}

impl std::str::FromStr for AddrSpec {
    type Err = HeaderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A mailbox (RFC 5322 3.4): an optional display name, as the CPM side gave it (it is
/// sanitised and encoded when written), and a checked address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mailbox {
    pub name: Option<String>,
    pub addr: AddrSpec,
}

impl Mailbox {
    pub fn new(name: Option<&str>, addr: &str) -> Result<Self, HeaderError> {
        Ok(Self {
            name: name.map(str::to_owned),
            addr: AddrSpec::parse(addr)?,
        })
    }

    /// The mailbox as header tokens: the display name (a phrase) then `<addr-spec>`.
    fn tokens(&self) -> Vec<String> {
        let mut tokens = self.name.as_deref().map(phrase).unwrap_or_default();
        if tokens.is_empty() {
            tokens.push(self.addr.text.clone());
        } else {
            tokens.push(format!("<{}>", self.addr));
        }
        tokens
    }
}

/// A msg-id (RFC 5322 3.6.4) `<left@right>`, both parts dot-atom-text.
/// Stored (`store`) as `<left@right>`, checked again when read back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MsgId {
    left: String,
    right: String,
}

impl MsgId {
    pub fn new(left: &str, right: &str) -> Result<Self, HeaderError> {
        for part in [left, right] {
            if !is_dot_atom_text(part) {
                return Err(HeaderError::MessageId {
                    value: part.into(),
                    reason: "empty, or a character outside atext, or a misplaced dot",
                });
            }
        }
        Ok(Self {
            left: left.into(),
            right: right.into(),
        })
    }

    /// Parses `<left@right>` (the brackets may be left out).
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let inner = value
            .trim()
            .strip_prefix('<')
            .and_then(|v| v.strip_suffix('>'))
            .unwrap_or(value.trim());
        let (left, right) = inner.rsplit_once('@').ok_or(HeaderError::MessageId {
            value: value.into(),
            reason: "no '@'",
        })?;
        Self::new(left, right)
    }

    /// AA2/BB2 msg-id row: `<contribution-id@mail-domain>`. Characters outside atext
    /// (and `=` itself, and dots that would break dot-atom) are written `=XX` per byte,
    /// so distinct ids stay distinct; an id too long after that is replaced by
    /// `h=` and its SHA-256 in hex.
    pub fn from_contribution_id(
        contribution_id: &str,
        mail_domain: &str,
    ) -> Result<Self, HeaderError> {
        let mut left = String::with_capacity(contribution_id.len());
        let bytes = contribution_id.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            let dot_ok = b == b'.'
                && i > 0
                && i + 1 < bytes.len()
                && bytes[i - 1] != b'.'
                && !left.ends_with('.');
            if (is_atext(b) && b != b'=') || dot_ok {
                left.push(b as char);
            } else {
                left.push_str(&format!("={b:02X}"));
            }
        }
        if left.len() > MAX_ID_LEFT {
            use sha2::Digest as _;
            left = format!("h={}", hex::encode(sha2::Sha256::digest(bytes)));
        }
        Self::new(&left, mail_domain)
    }
}

impl TryFrom<String> for MsgId {
    type Error = HeaderError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<MsgId> for String {
    fn from(id: MsgId) -> String {
        id.to_string()
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}@{}>", self.left, self.right)
    }
}

/// X-Priority (a de-facto header; 1 highest, 3 normal, 5 lowest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XPriority(u8);

impl XPriority {
    pub fn new(value: u8) -> Result<Self, HeaderError> {
        if (1..=5).contains(&value) {
            Ok(Self(value))
        } else {
            Err(HeaderError::XPriority(value))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// Auto-Submitted (RFC 3834 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoSubmitted {
    /// A notification the gateway generated (session closed, participant information).
    AutoGenerated,
    AutoReplied,
}

impl AutoSubmitted {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AutoGenerated => "auto-generated",
            Self::AutoReplied => "auto-replied",
        }
    }
}

/// One folded header field, CRLF-terminated: `name: tokens` with a fold (CRLF SP) put in
/// place of a space between tokens wherever a line would pass 78 characters.
pub(crate) fn field(name: &str, tokens: &[String]) -> String {
    let mut out = format!("{name}:");
    let mut line = out.len();
    for token in tokens {
        if line + 1 + token.len() > FOLD_AT && line > name.len() + 1 {
            out.push_str("\r\n");
            line = 0;
        }
        out.push(' ');
        out.push_str(token);
        line += 1 + token.len();
    }
    out.push_str("\r\n");
    out
}

/// An address list (RFC 5322 3.4): mailboxes separated by commas, folded between them.
pub(crate) fn address_list(mailboxes: &[Mailbox]) -> Vec<String> {
    let mut tokens = Vec::new();
    for (i, mailbox) in mailboxes.iter().enumerate() {
        let mut mine = mailbox.tokens();
        if i + 1 < mailboxes.len()
            && let Some(last) = mine.last_mut()
        {
            last.push(',');
        }
        tokens.extend(mine);
    }
    tokens
}

/// Unstructured text (RFC 5322 3.2.5, e.g. Subject): sanitised; written as words when it
/// is plain ASCII, else as RFC 2047 encoded-words.
pub(crate) fn unstructured(text: &str) -> Vec<String> {
    let clean = sanitise(text);
    if needs_encoding(&clean) {
        encoded_words(&clean)
    } else {
        clean.split(' ').map(str::to_owned).collect()
    }
}

/// A display name (RFC 5322 3.2.5 phrase): sanitised; atoms when it is all atext, a
/// quoted-string when it has specials, RFC 2047 encoded-words (RFC 2047 5(3)) when it is
/// not plain ASCII, has a word too long to fold or contains `=?`. Empty after sanitising: no tokens (no display name).
pub(crate) fn phrase(name: &str) -> Vec<String> {
    let clean = sanitise(name);
    if clean.is_empty() {
        return Vec::new();
    }
    if needs_encoding(&clean) {
        return encoded_words(&clean);
    }
    if clean.bytes().all(|b| b == b' ' || is_atext(b)) {
        return clean.split(' ').map(str::to_owned).collect();
    }
    let escaped = clean.replace('\\', "\\\\").replace('"', "\\\"");
    let mut words: Vec<String> = escaped.split(' ').map(str::to_owned).collect();
    words[0].insert(0, '"');
    words.last_mut().expect("non-empty").push('"');
    words
}

/// Controls (CR, LF, NUL, TAB, C1, line separators) become spaces; runs of spaces become
/// one; no leading or trailing space. Nothing that can end a header line survives.
pub(crate) fn sanitise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Text that cannot go out as plain words: non-ASCII, a word too long to fold, or
/// something a reader would decode as an encoded-word (RFC 2047 6.1).
fn needs_encoding(clean: &str) -> bool {
    !clean.is_ascii() || clean.contains("=?") || clean.split(' ').any(|w| w.len() > LONG_WORD)
}

/// RFC 2047 B encoded-words of at most 75 characters, split on character boundaries
/// (RFC 2047 5: each word holds whole characters). Spaces are inside the words.
pub(crate) fn encoded_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > ENCODED_WORD_BYTES {
            words.push(encoded_word(&chunk));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(encoded_word(&chunk));
    }
    words
}

fn encoded_word(chunk: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(chunk.as_bytes());
    format!("=?utf-8?B?{b64}?=")
}

/// RFC 5322 3.2.3 atext.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// RFC 5322 3.2.3 dot-atom-text: atext runs separated by single dots.
fn is_dot_atom_text(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(is_atext))
}

/// RFC 5322 3.2.4 quoted-string without folding: printable ASCII and space, `\` pairs.
fn is_quoted_string(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return false;
    };
    let mut bytes = inner.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => {
                if !matches!(bytes.next(), Some(0x20..=0x7e)) {
                    return false;
                }
            }
            b'"' => return false,
            0x20..=0x7e => {}
            _ => return false,
        }
    }
    true
}

/// RFC 5321 4.1.2 Domain (sub-domains of letters, digits, hyphens) or address-literal.
fn is_domain(s: &str) -> bool {
    if let Some(literal) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return match literal.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => literal.parse::<std::net::Ipv4Addr>().is_ok(),
        };
    }
    crate::hostname::is_hostname(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_spec_accepts_dot_atoms_quoted_locals_and_literals() {
        for ok in [
            "bob@example.com",
            "first.last+tag@mail.example.co.uk",
            "\"odd local\"@example.com",
            "x@[127.0.0.1]",
            "x@[IPv6:::1]",
        ] {
            let a = AddrSpec::parse(ok).unwrap();
            assert_eq!(a.as_str(), ok);
        }
        let a = AddrSpec::parse("bob@example.com").unwrap();
        assert_eq!((a.local_part(), a.domain()), ("bob", "example.com"));
    }

    #[test]
    fn addr_spec_refuses_injection_and_non_addresses() {
        for bad in [
            "bob@example.com\r\nBcc: eve@evil.example",
            "bob@example.com\n",
            "bob\0@example.com",
            "bob@exa mple.com",
            "bob",
            "@example.com",
            "bob@",
            "bob..x@example.com",
            "<bob@example.com>",
            "bob@example.com>",
            "bøb@example.com",
            "bob@-example.com",
            "\"unterminated@example.com",
        ] {
            assert!(AddrSpec::parse(bad).is_err(), "{bad:?} accepted");
        }
        let e = AddrSpec::parse("a\r\n@b.c").unwrap_err().to_string();
        assert!(e.contains("control character"), "{e}");
    }

    #[test]
    fn sanitise_turns_line_breaks_and_controls_into_single_spaces() {
        assert_eq!(sanitise("  Eve\r\nBcc: x@y\0\t z "), "Eve Bcc: x@y z");
        assert_eq!(sanitise("a\u{2028}b\u{85}c"), "a b c");
        assert_eq!(sanitise("\r\n"), "");
    }

    #[test]
    fn phrase_atoms_quoted_or_encoded() {
        assert_eq!(phrase("Alice Smith"), ["Alice", "Smith"]);
        assert_eq!(phrase("Smith, Alice"), ["\"Smith,", "Alice\""]);
        assert_eq!(phrase("a \"b\" \\c"), ["\"a", "\\\"b\\\"", "\\\\c\""]);
        // Text a reader would take for an encoded-word is itself encoded (RFC 2047 6.1).
        assert_eq!(
            phrase("=?utf-8?q?x?="),
            ["=?utf-8?B?PT91dGYtOD9xP3g/PQ==?="]
        );
        assert_eq!(phrase("Zoë"), ["=?utf-8?B?Wm/Dqw==?="]);
        assert!(phrase(" \r\n ").is_empty());
    }

    #[test]
    fn encoded_words_are_at_most_75_chars_and_split_on_char_boundaries() {
        let text = "日本語のテキスト".repeat(10);
        let words = encoded_words(&text);
        assert!(words.len() > 1);
        let mut decoded = Vec::new();
        for w in &words {
            assert!(w.len() <= 75, "{w}");
            let b64 = w
                .strip_prefix("=?utf-8?B?")
                .unwrap()
                .strip_suffix("?=")
                .unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            assert!(
                std::str::from_utf8(&bytes).is_ok(),
                "word splits a character"
            );
            decoded.extend(bytes);
        }
        assert_eq!(String::from_utf8(decoded).unwrap(), text);
    }

    #[test]
    fn field_folds_between_tokens_within_78() {
        let tokens: Vec<String> = (0..40).map(|i| format!("word{i}")).collect();
        let f = field("Subject", &tokens);
        assert!(f.ends_with("\r\n"));
        for line in f.trim_end_matches("\r\n").split("\r\n") {
            assert!(line.len() <= 78, "{line:?}");
        }
        assert!(
            f.split("\r\n")
                .skip(1)
                .all(|l| l.is_empty() || l.starts_with(' '))
        );
        let unfolded = f.replace("\r\n ", " ");
        assert_eq!(
            unfolded.trim_end(),
            format!("Subject: {}", tokens.join(" "))
        );
    }

    #[test]
    fn message_id_from_contribution_id_escapes_to_dot_atom() {
        let id = MsgId::from_contribution_id("abc-123", "mail.example.com").unwrap();
        assert_eq!(id.to_string(), "<abc-123@mail.example.com>");
        let id = MsgId::from_contribution_id("a b@c>\r\n=.x..", "m.example").unwrap();
        assert_eq!(id.to_string(), "<a=20b=40c=3E=0D=0A=3D.x.=2E@m.example>");
        let id = MsgId::from_contribution_id(".lead", "m.example").unwrap();
        assert_eq!(id.to_string(), "<=2Elead@m.example>");
        let long = MsgId::from_contribution_id(&"x".repeat(500), "m.example").unwrap();
        assert!(long.to_string().starts_with("<h=") && long.to_string().len() < 100);
        assert!(MsgId::from_contribution_id("", "m.example").is_err());
        assert!(MsgId::from_contribution_id("a", "bad domain").is_err());
        assert_eq!(MsgId::parse("<a.b@c.d>").unwrap().to_string(), "<a.b@c.d>");
    }

    #[test]
    fn x_priority_range() {
        assert_eq!(XPriority::new(1).unwrap().get(), 1);
        assert!(XPriority::new(0).is_err());
        assert!(XPriority::new(6).is_err());
    }
}
