//! MSRP frames as typed values (RFC 4975 section 7 and 9): the start line, To-Path and
//! From-Path, the typed header fields, the body and the end-line's continuation flag.
//! Values only: reading bytes is `codec`'s job.

use std::fmt;

use crate::sdp::MsrpUri;

/// A transaction identifier: 3 to 31 alphanumerics (RFC 4975 section 9, `ident` is wider,
/// but `transact-id` is what the end-line repeats, and we keep to the safe set).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactId(String);

impl TransactId {
    /// A transaction id from its text; `None` unless 3..=31 ASCII alphanumerics.
    pub fn new(s: &str) -> Option<TransactId> {
        let ok = (3..=31).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| TransactId(s.to_string()))
    }

    /// A fresh random id: 26 base32 characters from the same source as MSRP session ids;
    /// random ids also keep a body from holding the end-line by chance (section 7.1).
    pub fn random() -> TransactId {
        TransactId::new(&crate::sdp::new_session_id()).expect("26 alphanumerics")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TransactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request method (RFC 4975 section 7.1); unknown ones are kept so the endpoint can
/// answer 501 (section 12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Send,
    Report,
    /// Upper-case letters only (`method = 1*UPALPHA`).
    Other(String),
}

impl Method {
    pub(crate) fn parse(s: &str) -> Option<Method> {
        match s {
            "SEND" => Some(Method::Send),
            "REPORT" => Some(Method::Report),
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
                Some(Method::Other(m.to_string()))
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Send => "SEND",
            Method::Report => "REPORT",
            Method::Other(m) => m,
        }
    }
}

/// What the start line says: a request and its method, or a response and its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request(Method),
    /// `status-code` is three digits (RFC 4975 section 7.2); the comment is optional.
    Response {
        code: u16,
        comment: Option<String>,
    },
}

/// The end-line's continuation flag (RFC 4975 section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// `$`: the last chunk of the message.
    Complete,
    /// `+`: more chunks follow.
    More,
    /// `#`: the sender aborted the message.
    Aborted,
}

impl Flag {
    pub(crate) fn from_byte(b: u8) -> Option<Flag> {
        match b {
            b'$' => Some(Flag::Complete),
            b'+' => Some(Flag::More),
            b'#' => Some(Flag::Aborted),
            _ => None,
        }
    }

    pub fn as_byte(self) -> u8 {
        match self {
            Flag::Complete => b'$',
            Flag::More => b'+',
            Flag::Aborted => b'#',
        }
    }
}

/// `Byte-Range: start-end/total` (RFC 4975 section 7.1.1 and 9); `None` stands for `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    /// 1-based first byte of the chunk.
    pub start: u64,
    /// Last byte, inclusive; `*` when the sender did not know it.
    pub end: Option<u64>,
    /// Size of the whole message; `*` when unknown.
    pub total: Option<u64>,
}

impl ByteRange {
    /// Parses the field value; the error says why.
    pub fn parse(s: &str) -> Result<ByteRange, String> {
        let bad = || format!("bad Byte-Range {s:?}");
        let (range, total) = s.trim().split_once('/').ok_or_else(bad)?;
        let (start, end) = range.split_once('-').ok_or_else(bad)?;
        let num = |t: &str| -> Result<Option<u64>, String> {
            match t {
                "*" => Ok(None),
                t if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                    t.parse().map(Some).map_err(|_| bad())
                }
                _ => Err(bad()),
            }
        };
        let start = num(start)?.ok_or_else(bad)?;
        let (end, total) = (num(end)?, num(total)?);
        // range-start is 1-based; an empty message is `1-0/0` (section 7.1.1).
        let consistent = start >= 1
            && end.is_none_or(|e| e >= start - 1)
            && total.is_none_or(|t| end.unwrap_or(start - 1) <= t && start - 1 <= t);
        if consistent {
            Ok(ByteRange { start, end, total })
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-", self.start)?;
        match self.end {
            Some(e) => write!(f, "{e}")?,
            None => f.write_str("*")?,
        }
        match self.total {
            Some(t) => write!(f, "/{t}"),
            None => f.write_str("/*"),
        }
    }
}

/// `Failure-Report` (RFC 4975 sections 5.3 and 7.1.1); absent means `yes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReport {
    Yes,
    No,
    Partial,
}

impl FailureReport {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReport::Yes => "yes",
            FailureReport::No => "no",
            FailureReport::Partial => "partial",
        }
    }
}

/// `Status: 000 NNN [comment]` of a REPORT (RFC 4975 section 9: namespace `000`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Status {
    pub code: u16,
    pub comment: Option<String>,
}

impl Status {
    pub fn parse(s: &str) -> Result<Status, String> {
        let bad = || format!("bad Status {s:?}");
        let mut parts = s.trim().splitn(3, ' ');
        if parts.next() != Some("000") {
            return Err(bad());
        }
        let code = parts.next().and_then(parse_code).ok_or_else(bad)?;
        let comment = parts.next().map(str::to_string);
        Ok(Status { code, comment })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "000 {:03}", self.code)?;
        if let Some(c) = &self.comment {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

/// Three digits, as a status code (RFC 4975 section 9).
pub(crate) fn parse_code(s: &str) -> Option<u16> {
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// One header field after To-Path and From-Path, typed where RFC 4975 defines it, in the
/// order received (the encoder writes them back in that order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    MessageId(String),
    ByteRange(ByteRange),
    /// `Success-Report: yes|no` (section 5.3).
    SuccessReport(bool),
    FailureReport(FailureReport),
    Status(Status),
    /// Any other field, e.g. `Use-Path`, `Content-ID`, extensions: name and value as sent.
    Other {
        name: String,
        value: String,
    },
}

impl Header {
    /// The header from its name and value; an error for a known field with a bad value.
    pub(crate) fn parse(name: &str, value: &str) -> Result<Header, String> {
        let v = value.trim();
        let yes_no = |what: &str| match v {
            "yes" => Ok(true),
            "no" => Ok(false),
            _ => Err(format!("bad {what} {v:?}")),
        };
        Ok(match name.to_ascii_lowercase().as_str() {
            "message-id" => {
                // ident = alphanum 3*31ident-char (section 9)
                let ok = (4..=32).contains(&v.len())
                    && v.as_bytes()[0].is_ascii_alphanumeric()
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-+%=".contains(&b));
                if !ok {
                    return Err(format!("bad Message-ID {v:?}"));
                }
                Header::MessageId(v.to_string())
            }
            "byte-range" => Header::ByteRange(ByteRange::parse(v)?),
            "success-report" => Header::SuccessReport(yes_no("Success-Report")?),
            "failure-report" => Header::FailureReport(match v {
                "yes" => FailureReport::Yes,
                "no" => FailureReport::No,
                "partial" => FailureReport::Partial,
                _ => return Err(format!("bad Failure-Report {v:?}")),
            }),
            "status" => Header::Status(Status::parse(v)?),
            _ => Header::Other {
                name: name.to_string(),
                value: v.to_string(),
            },
        })
    }

    /// The canonical field name.
    pub fn name(&self) -> &str {
        match self {
            Header::MessageId(_) => "Message-ID",
            Header::ByteRange(_) => "Byte-Range",
            Header::SuccessReport(_) => "Success-Report",
            Header::FailureReport(_) => "Failure-Report",
            Header::Status(_) => "Status",
            Header::Other { name, .. } => name,
        }
    }

    /// The value as written on the wire.
    pub fn value(&self) -> String {
        match self {
            Header::MessageId(m) => m.clone(),
            Header::ByteRange(r) => r.to_string(),
            Header::SuccessReport(b) => if *b { "yes" } else { "no" }.to_string(),
            Header::FailureReport(f) => f.as_str().to_string(),
            Header::Status(s) => s.to_string(),
            Header::Other { value, .. } => value.clone(),
        }
    }
}

/// The content of a frame: its type (written last before the blank line, RFC 4975
/// section 9 `content-stuff`) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub content_type: String,
    pub data: Vec<u8>,
}

/// One MSRP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub transact_id: TransactId,
    pub start: StartLine,
    /// Never empty: a frame without To-Path or From-Path is refused (section 7.1).
    pub to_path: Vec<MsrpUri>,
    pub from_path: Vec<MsrpUri>,
    pub headers: Vec<Header>,
    pub body: Option<Body>,
    pub flag: Flag,
}

impl Frame {
    /// The request's method, `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request(m) => Some(m),
            StartLine::Response { .. } => None,
        }
    }

    pub fn message_id(&self) -> Option<&str> {
        self.headers.iter().find_map(|h| match h {
            Header::MessageId(m) => Some(m.as_str()),
            _ => None,
        })
    }

    pub fn byte_range(&self) -> Option<ByteRange> {
        self.headers.iter().find_map(|h| match h {
            Header::ByteRange(r) => Some(*r),
            _ => None,
        })
    }

    /// `Success-Report`, `false` when absent (section 7.1.1).
    pub fn success_report(&self) -> bool {
        self.headers
            .iter()
            .find_map(|h| match h {
                Header::SuccessReport(b) => Some(*b),
                _ => None,
            })
            .unwrap_or(false)
    }

    /// `Failure-Report`, `yes` when absent (section 7.1.1).
    pub fn failure_report(&self) -> FailureReport {
        self.headers
            .iter()
            .find_map(|h| match h {
                Header::FailureReport(f) => Some(*f),
                _ => None,
            })
            .unwrap_or(FailureReport::Yes)
    }

    pub fn status(&self) -> Option<&Status> {
        self.headers.iter().find_map(|h| match h {
            Header::Status(s) => Some(s),
            _ => None,
        })
    }

    /// An unknown field's value by case-insensitive name.
    pub fn other(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| match h {
            Header::Other { name: n, value } if n.eq_ignore_ascii_case(name) => {
                Some(value.as_str())
            }
            _ => None,
        })
    }

    /// The response to this request (RFC 4975 section 7.2): same transaction id, To-Path
    /// the request's From-Path, From-Path the responder's own URI (the request's first
    /// To-Path entry), no body.
    pub fn response(&self, code: u16, comment: Option<&str>) -> Frame {
        Frame {
            transact_id: self.transact_id.clone(),
            start: StartLine::Response {
                code,
                comment: comment.map(sanitise),
            },
            to_path: self.from_path.clone(),
            from_path: self.to_path.first().cloned().into_iter().collect(),
            headers: Vec::new(),
            body: None,
            flag: Flag::Complete,
        }
    }
}

impl Frame {
    /// One SEND chunk (RFC 4975 section 7.1.1): Message-ID, Byte-Range, the report
    /// requests when they differ from the defaults (Success-Report no, Failure-Report
    /// yes, section 7.1.1), then the body.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        transact_id: TransactId,
        to_path: Vec<MsrpUri>,
        from_path: Vec<MsrpUri>,
        message_id: &str,
        byte_range: ByteRange,
        reports: (bool, FailureReport),
        body: Option<Body>,
        flag: Flag,
    ) -> Frame {
        let mut headers = vec![
            Header::MessageId(message_id.to_string()),
            Header::ByteRange(byte_range),
        ];
        if reports.0 {
            headers.push(Header::SuccessReport(true));
        }
        if reports.1 != FailureReport::Yes {
            headers.push(Header::FailureReport(reports.1));
        }
        Frame {
            transact_id,
            start: StartLine::Request(Method::Send),
            to_path,
            from_path,
            headers,
            body,
            flag,
        }
    }

    /// The REPORT on this SEND (RFC 4975 section 7.1.2): its own transaction id, To-Path
    /// the SEND's From-Path, From-Path the reporter's own URI (the SEND's first To-Path
    /// entry), the same Message-ID, the Byte-Range it covers and the Status.
    pub fn report(&self, transact_id: TransactId, range: ByteRange, status: Status) -> Frame {
        let mut headers: Vec<Header> = self
            .message_id()
            .map(|m| Header::MessageId(m.to_string()))
            .into_iter()
            .collect();
        headers.push(Header::ByteRange(range));
        headers.push(Header::Status(status));
        Frame {
            transact_id,
            start: StartLine::Request(Method::Report),
            to_path: self.from_path.clone(),
            from_path: self.to_path.first().cloned().into_iter().collect(),
            headers,
            body: None,
            flag: Flag::Complete,
        }
    }
}

/// A value with CR, LF and other controls replaced by spaces, so no value can end a line.
pub(crate) fn sanitise(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
