//! message/cpim (RFC 3862), the wrapper of every chat message: parse and build.
//!
//! Owns: the optional outer MIME headers (`Content-Type: message/cpim`), the CPIM header
//! block (From, To, cc, DateTime, Subject, NS, Require and name-spaced fields such as
//! IMDN's `imdn.Message-ID`, RFC 5438), the inner MIME part and its content. Must not
//! touch: MSRP framing (`msrp`), mail (`mail`). Building never lets a value end a line.

use std::fmt;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use thiserror::Error;

/// IMDN's name space URI (RFC 5438 section 6.2).
pub const IMDN_NS: &str = "urn:ietf:params:imdn";
/// The OMA CPM name space of a chat message's `Contribution-ID` and
/// `InReplyTo-Contribution-ID` fields (5.2.4.2.5 BB2 msg-id row).
pub const CPM_NS: &str = "http://www.openmobilealliance.org/cpm/";

/// What is wrong with a message/cpim body.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    #[error("no blank line after the {0} headers")]
    Unterminated(&'static str),
    #[error("bad {block} header line {line:?}")]
    HeaderLine { block: &'static str, line: String },
    #[error("bad {field} {value:?}")]
    Value { field: &'static str, value: String },
    #[error("no Content-Type in the inner MIME part")]
    NoContentType,
    #[error("Content-Length {declared} but {available} bytes of content")]
    ContentLength { declared: usize, available: usize },
}

/// `[Formal-name] <URI>` of From, To and cc (RFC 3862 section 3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub display_name: Option<String>,
    pub uri: String,
}

impl Address {
    pub fn new(display_name: Option<&str>, uri: &str) -> Address {
        Address {
            display_name: display_name.map(str::to_string),
            uri: uri.to_string(),
        }
    }

    /// `"Alice" <sip:alice@example.com>`, `Alice <im:a@b>` or `<sip:bob@example.com>`.
    pub fn parse(s: &str) -> Result<Address, Error> {
        let bad = || Error::Value {
            field: "address",
            value: s.to_string(),
        };
        let s = s.trim();
        let open = s.rfind('<').ok_or_else(bad)?;
        let uri = s[open + 1..].strip_suffix('>').ok_or_else(bad)?.trim();
        if uri.is_empty() || uri.contains(['<', '>']) {
            return Err(bad());
        }
        let name = s[..open].trim();
        let display_name = match name.strip_prefix('"') {
            Some(q) => Some(unquote(q.strip_suffix('"').ok_or_else(bad)?)),
            None if name.is_empty() => None,
            None => Some(name.to_string()),
        };
        Ok(Address {
            display_name,
            uri: uri.to_string(),
        })
    }
}

impl fmt::Display for Address {
    /// The display name always quoted (RFC 3862 `String`), the URI in angle brackets;
    /// controls, `<` and `>` in the URI are dropped so the value stays one field.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.display_name {
            let q: String = sanitise(n)
                .chars()
                .flat_map(|c| match c {
                    '"' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            write!(f, "\"{q}\" ")?;
        }
        let uri: String = sanitise(&self.uri)
            .chars()
            .filter(|c| !matches!(c, '<' | '>' | ' '))
            .collect();
        write!(f, "<{uri}>")
    }
}

fn unquote(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// Control characters (CR and LF among them) replaced by spaces.
fn sanitise(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A header name without controls, spaces or colons.
fn sanitise_name(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !c.is_whitespace() && *c != ':')
        .collect()
}

/// DateTime per RFC 3339 (RFC 3862 section 3.3.5, RFC 5438 section 6.x).
pub fn parse_date_time(s: &str) -> Result<DateTime<FixedOffset>, Error> {
    DateTime::parse_from_rfc3339(s.trim()).map_err(|_| Error::Value {
        field: "DateTime",
        value: s.to_string(),
    })
}

/// RFC 3339 with the offset kept (`Z` for UTC), fractions only when present.
pub fn format_date_time(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A message/cpim body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub from: Option<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub date_time: Option<DateTime<FixedOffset>>,
    /// `Subject:[;lang=xx] text` (RFC 3862 section 3.3.6): (language, text).
    pub subject: Vec<(Option<String>, String)>,
    /// `NS: prefix <uri>` declarations (section 3.3.7), prefix as declared.
    pub ns: Vec<(String, String)>,
    /// `Require` field names (section 3.3.8).
    pub require: Vec<String>,
    /// Every other field, name with its prefix (e.g. `imdn.Message-ID`), in order.
    pub other: Vec<(String, String)>,
    /// The inner part's Content-Type.
    pub content_type: String,
    /// The inner part's other MIME headers (Content-ID, Content-Disposition, ...).
    pub content_headers: Vec<(String, String)>,
    /// Write `Content-Length` into the inner part.
    pub content_length: bool,
    pub body: Vec<u8>,
}

impl Message {
    /// A message from `from` to `to` with a text/plain; charset=utf-8 body.
    pub fn text(from: Address, to: Address, text: &str) -> Message {
        Message {
            from: Some(from),
            to: vec![to],
            content_type: "text/plain; charset=utf-8".into(),
            body: text.as_bytes().to_vec(),
            ..Message::default()
        }
    }

    /// The value of `name` in the name space `ns_uri`, whatever prefix the sender chose.
    pub fn ns_field(&self, ns_uri: &str, name: &str) -> Option<&str> {
        self.ns
            .iter()
            .filter(|(_, u)| u == ns_uri)
            .find_map(|(p, _)| {
                self.other.iter().find_map(|(n, v)| {
                    let (prefix, field) = n.split_once('.')?;
                    (prefix == p && field.eq_ignore_ascii_case(name)).then_some(v.as_str())
                })
            })
    }

    /// `imdn.Message-ID` (RFC 5438 section 6.3).
    pub fn imdn_message_id(&self) -> Option<&str> {
        self.ns_field(IMDN_NS, "Message-ID")
    }

    /// Parses a message/cpim body, with or without the outer MIME headers.
    pub fn parse(bytes: &[u8]) -> Result<Message, Error> {
        let (mut block, mut rest) = split_block(bytes, "CPIM")?;
        // The outer MIME headers (RFC 3862 section 3.1), when the body still has them.
        let outer = block.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("Content-Type")
                && v.trim().to_ascii_lowercase().starts_with("message/cpim")
        });
        if outer {
            (block, rest) = split_block(rest, "CPIM")?;
        }
        let mut msg = Message::default();
        for (name, value) in block {
            let addr = |v: &str| Address::parse(v);
            match name.to_ascii_lowercase().as_str() {
                "from" => msg.from = Some(addr(&value)?),
                "to" => msg.to.push(addr(&value)?),
                "cc" => msg.cc.push(addr(&value)?),
                "datetime" => msg.date_time = Some(parse_date_time(&value)?),
                "subject" => msg.subject.push(parse_subject(&value)),
                "ns" => {
                    let value = value.trim();
                    let (prefix, uri) = match value.find('<') {
                        Some(i) => (value[..i].trim(), &value[i..]),
                        None => ("", value),
                    };
                    let uri = uri
                        .strip_prefix('<')
                        .and_then(|u| u.strip_suffix('>'))
                        .ok_or_else(|| Error::Value {
                            field: "NS",
                            value: value.to_string(),
                        })?;
                    msg.ns.push((prefix.to_string(), uri.to_string()));
                }
                "require" => msg.require.extend(
                    value
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty()),
                ),
                _ => msg.other.push((name, value)),
            }
        }
        let (mime, content) = split_block(rest, "MIME")?;
        let mut content_type = None;
        let mut length = None;
        for (name, value) in mime {
            match name.to_ascii_lowercase().as_str() {
                "content-type" => content_type = Some(value.trim().to_string()),
                "content-length" => {
                    length = Some(value.trim().parse::<usize>().map_err(|_| Error::Value {
                        field: "Content-Length",
                        value: value.clone(),
                    })?)
                }
                _ => msg.content_headers.push((name, value)),
            }
        }
        msg.content_type = content_type.ok_or(Error::NoContentType)?;
        msg.content_length = length.is_some();
        msg.body = match length {
            Some(n) if n > content.len() => {
                return Err(Error::ContentLength {
                    declared: n,
                    available: content.len(),
                });
            }
            Some(n) => content[..n].to_vec(),
            None => content.to_vec(),
        };
        Ok(msg)
    }

    /// The body bytes: CPIM headers, blank line, inner MIME headers, blank line, content
    /// (RFC 3862 section 3). CRLF line ends; every value sanitised.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut h = String::new();
        let mut field = |name: &str, value: &str| {
            h.push_str(&sanitise_name(name));
            // `Subject:;lang=fr text`: parameters follow the colon directly (section 3.3.6).
            h.push_str(if value.starts_with(';') { ":" } else { ": " });
            h.push_str(&sanitise(value));
            h.push_str("\r\n");
        };
        if let Some(a) = &self.from {
            field("From", &a.to_string());
        }
        for a in &self.to {
            field("To", &a.to_string());
        }
        for a in &self.cc {
            field("cc", &a.to_string());
        }
        if let Some(t) = &self.date_time {
            field("DateTime", &format_date_time(t));
        }
        for (lang, text) in &self.subject {
            match lang {
                Some(l) => field("Subject", &format!(";lang={} {text}", sanitise_name(l))),
                None => field("Subject", text),
            }
        }
        for (prefix, uri) in &self.ns {
            let uri: String = uri.chars().filter(|c| !matches!(c, '<' | '>')).collect();
            match prefix.as_str() {
                "" => field("NS", &format!("<{uri}>")),
                p => field("NS", &format!("{} <{uri}>", sanitise_name(p))),
            }
        }
        if !self.require.is_empty() {
            field("Require", &self.require.join(","));
        }
        for (n, v) in &self.other {
            field(n, v);
        }
        h.push_str("\r\n");
        let mut field = |name: &str, value: &str| {
            h.push_str(&sanitise_name(name));
            h.push_str(": ");
            h.push_str(&sanitise(value));
            h.push_str("\r\n");
        };
        field("Content-Type", &self.content_type);
        for (n, v) in &self.content_headers {
            field(n, v);
        }
        if self.content_length {
            field("Content-Length", &self.body.len().to_string());
        }
        h.push_str("\r\n");
        let mut out = h.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    /// The body with the outer MIME header in front (for carriers without their own
    /// Content-Type field).
    pub fn to_mime_bytes(&self) -> Vec<u8> {
        let mut out = b"Content-Type: message/cpim\r\n\r\n".to_vec();
        out.extend(self.to_bytes());
        out
    }
}

/// `Subject:;lang=fr text` or `Subject: text`.
fn parse_subject(value: &str) -> (Option<String>, String) {
    if let Some(rest) = value.strip_prefix(";lang=") {
        let (lang, text) = rest.split_once(' ').unwrap_or((rest, ""));
        return (Some(lang.to_string()), text.to_string());
    }
    (None, value.to_string())
}

/// Header fields as (name, value), in order.
type Fields = Vec<(String, String)>;

/// One header block up to its blank line: (name, value) pairs and what follows.
fn split_block<'a>(bytes: &'a [u8], block: &'static str) -> Result<(Fields, &'a [u8]), Error> {
    let mut fields = Vec::new();
    let mut rest = bytes;
    loop {
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(Error::Unterminated(block))?;
        let line = &rest[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = &rest[nl + 1..];
        if line.is_empty() {
            return Ok((fields, rest));
        }
        let bad = || Error::HeaderLine {
            block,
            line: String::from_utf8_lossy(line).into_owned(),
        };
        let text = std::str::from_utf8(line).map_err(|_| bad())?;
        let (name, value) = text.split_once(':').ok_or_else(bad)?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(bad());
        }
        // One space after the colon is the separator (`Subject:;lang=` has none).
        let value = value.strip_prefix(' ').unwrap_or(value);
        fields.push((name.to_string(), value.to_string()));
    }
}

#[cfg(test)]
mod tests;
