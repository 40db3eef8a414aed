//! One SIP message from bytes (a UDP datagram or a frame cut by `framing`), validated, and
//! responses built from a request (RFC 3261 8.2.6.2), bytes out.
//!
//! The start line and the header section are split here, not by `rsip`: rsip 0.4 fails on a
//! `tel:` Request-URI ("number too large to fit in target type"), knows no compact header
//! names, no line folding and no extension methods. rsip still checks every `sip:`/`sips:`
//! Request-URI and names the methods it knows (`Method::rsip`).
//!
//! Every refusal is a [`ParseError`] with the status to answer and a reason for a Warning.

use std::fmt;
use std::str::FromStr;

/// Size limits applied to every message, on any transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole message (header section and body). Over it: 513.
    pub max_message_bytes: usize,
    /// Header section, start line included, up to and with the empty line. Over it: 513.
    pub max_header_bytes: usize,
    /// Header fields, after unfolding. Over it: 513.
    pub max_headers: usize,
    /// Body. Over it: 413.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 65_535,
            max_header_bytes: 16_384,
            max_headers: 100,
            max_body_bytes: 60_000,
        }
    }
}

/// Where the bytes came from: it decides how Content-Length is read (RFC 3261 18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A datagram: Content-Length optional; a shorter one truncates the body.
    Datagram,
    /// A frame from a stream transport: Content-Length mandatory and exact.
    Stream,
}

/// Why a message was refused, and what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The response status: 400, 413, 416, 505 or 513.
    pub status: u16,
    /// Why, for a `Warning: 399` header and the log. Never contains CR or LF.
    pub reason: String,
    /// The message as far as it was read (start line and header fields), when it got that far,
    /// so that a response can still be built from its Via, From, To, Call-ID and CSeq.
    pub partial: Option<Box<Message>>,
}

impl ParseError {
    /// A refusal with `status` and `reason` (control characters removed), no partial message.
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        ParseError {
            status,
            reason: sanitize(&reason.into()),
            partial: None,
        }
    }

    fn bad(reason: impl Into<String>) -> Self {
        ParseError::new(400, reason)
    }

    /// The standard reason phrase of `status`.
    pub fn phrase(&self) -> &'static str {
        reason_phrase(self.status)
    }

    /// A response to the refused message, when it was a request and not an ACK (an ACK is
    /// never answered) and its header fields were read: `status` with a `Warning: 399` saying
    /// why. `None` means: drop it (log it), nothing can be answered.
    pub fn response(&self, agent: &str) -> Option<Vec<u8>> {
        let msg = self.partial.as_deref()?;
        match &msg.start {
            StartLine::Request { method, .. } if method.as_str() != "ACK" => {}
            _ => return None,
        }
        msg.header("Via")?;
        let warning = warning_value(agent, &self.reason);
        Some(build_response(
            msg,
            &ResponseSpec {
                status: self.status,
                reason: self.phrase(),
                extra_headers: &[("Warning", &warning)],
                ..ResponseSpec::default()
            },
        ))
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.phrase(), self.reason)
    }
}

impl std::error::Error for ParseError {}

/// A `Warning` header value (RFC 3261 20.43) with code 399 and `text` quoted.
pub fn warning_value(agent: &str, text: &str) -> String {
    format!("399 {} {}", sanitize(agent).replace(' ', ""), quoted(text))
}

/// A `Reason` header value (RFC 3326 2): `SIP;cause=<status>;text="<text>"`.
pub fn reason_value(cause: u16, text: &str) -> String {
    format!("SIP;cause={cause};text={}", quoted(text))
}

/// `text` as a quoted-string (RFC 3261 25.1), control characters removed.
fn quoted(text: &str) -> String {
    let text = sanitize(text).replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{text}\"")
}

/// A request method: any RFC 3261 token, so that extension methods can be answered 501/405.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method(String);

impl Method {
    /// The method as sent (methods are case-sensitive, RFC 3261 7.1).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The method as rsip knows it; `None` for an extension method rsip does not know.
    pub fn rsip(&self) -> Option<rsip::Method> {
        if self.0.bytes().all(|b| b.is_ascii_uppercase()) {
            rsip::Method::from_str(&self.0).ok()
        } else {
            None
        }
    }
}

/// The status for a request whose method the UA does not handle: 405 Method Not Allowed for a
/// SIP method it knows of but does not allow (answer with `Allow`), 501 Not Implemented for a
/// method it does not know at all (RFC 3261 8.2.1).
pub fn unsupported_method_status(method: &Method) -> u16 {
    if method.rsip().is_some() { 405 } else { 501 }
}

/// The scheme of a Request-URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriScheme {
    Sip,
    Sips,
    Tel,
    Mailto,
}

impl UriScheme {
    /// The scheme of `uri` (case-insensitive), `None` for any other scheme.
    pub fn of(uri: &str) -> Option<UriScheme> {
        let (scheme, _) = uri.split_once(':')?;
        match scheme.to_ascii_lowercase().as_str() {
            "sip" => Some(UriScheme::Sip),
            "sips" => Some(UriScheme::Sips),
            "tel" => Some(UriScheme::Tel),
            "mailto" => Some(UriScheme::Mailto),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UriScheme::Sip => "sip",
            UriScheme::Sips => "sips",
            UriScheme::Tel => "tel",
            UriScheme::Mailto => "mailto",
        }
    }
}

/// Checks a URI of a known scheme. `sip:`/`sips:` go through rsip, except an IPv6 host;
/// `tel:` (RFC 3966) and `mailto:` (RFC 6068) are checked here, because rsip 0.4 fails on
/// `tel:+15551234567` and on `sip:[2001:db8::1]`.
pub fn check_uri(uri: &str) -> Result<UriScheme, String> {
    let scheme = UriScheme::of(uri).ok_or_else(|| format!("unsupported URI scheme in {uri:?}"))?;
    let rest = &uri[scheme.as_str().len() + 1..];
    let ok = match scheme {
        UriScheme::Sip | UriScheme::Sips => match ipv6_hostport(rest) {
            Some(hostport) => ipv6_hostport_ok(hostport),
            None => rsip::Uri::try_from(uri).is_ok(),
        },
        UriScheme::Tel => tel_ok(rest),
        UriScheme::Mailto => mailto_ok(rest),
    };
    if ok && !uri.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        Ok(scheme)
    } else {
        Err(format!("malformed {} URI {uri:?}", scheme.as_str()))
    }
}

/// The `[v6]` or `[v6]:port` host part of a SIP URI after the scheme, if it has one
/// (RFC 3261 25.1: the user part may hold ';' and '?', the host part never '@').
fn ipv6_hostport(rest: &str) -> Option<&str> {
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = host.split([';', '?']).next()?;
    hostport.starts_with('[').then_some(hostport)
}

/// `[IPv6address]` with an optional `:port` (RFC 3261 25.1 IPv6reference).
fn ipv6_hostport_ok(hostport: &str) -> bool {
    let Some((address, port)) = hostport.strip_prefix('[').and_then(|h| h.split_once(']')) else {
        return false;
    };
    let port_ok = match port.strip_prefix(':') {
        Some(p) => p.parse::<u16>().is_ok(),
        None => port.is_empty(),
    };
    port_ok && address.parse::<std::net::Ipv6Addr>().is_ok()
}

/// RFC 3966: a global number (`+` digits and visual separators) or a local number with a
/// `phone-context` parameter; parameters after `;`.
fn tel_ok(rest: &str) -> bool {
    let (number, params) = match rest.split_once(';') {
        Some((n, p)) => (n, Some(p)),
        None => (rest, None),
    };
    let digits = |s: &str| {
        s.chars().any(|c| c.is_ascii_hexdigit())
            && s.chars()
                .all(|c| c.is_ascii_hexdigit() || "-.()*#".contains(c))
    };
    if let Some(global) = number.strip_prefix('+') {
        global.chars().any(|c| c.is_ascii_digit()) && digits(global)
    } else {
        digits(number)
            && params.is_some_and(|p| {
                p.split(';')
                    .any(|kv| kv.to_ascii_lowercase().starts_with("phone-context="))
            })
    }
}

/// RFC 6068: one or more addr-specs (`local@domain`), optional `?hfields`.
fn mailto_ok(rest: &str) -> bool {
    let to = rest.split('?').next().unwrap_or("");
    !to.is_empty()
        && to.split(',').all(|addr| {
            addr.rsplit_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        })
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        uri: String,
        scheme: UriScheme,
    },
    Response {
        status: u16,
        reason: String,
    },
}

/// A parsed, validated SIP message: header fields unfolded and under their full names, in
/// order, values trimmed and free of CR/LF; the body as delimited by Content-Length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Message {
    /// The message in wire form again, its Content-Length that of its body: [`parse`]
    /// reads it back as it is (the store keeps a session's INVITE so).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = match &self.start {
            StartLine::Request { method, uri, .. } => format!("{} {uri} SIP/2.0\r\n", method.0),
            StartLine::Response { status, reason } => format!("SIP/2.0 {status} {reason}\r\n"),
        };
        for (name, value) in &self.headers {
            if !name.eq_ignore_ascii_case("Content-Length") {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// The first value of header `name` (case-insensitive, full name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order (header lines, not comma-split).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request method, `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    /// The Request-URI as received, `None` for a response.
    pub fn request_uri(&self) -> Option<(&str, UriScheme)> {
        match &self.start {
            StartLine::Request { uri, scheme, .. } => Some((uri.as_str(), *scheme)),
            StartLine::Response { .. } => None,
        }
    }

    /// The CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        parse_cseq(self.header("CSeq")?).ok()
    }
}

/// Compact header names (RFC 3261 7.3.3 and extensions) to their full names.
fn full_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'e' => "Content-Encoding",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'f' => "From",
        b's' => "Subject",
        b'k' => "Supported",
        b't' => "To",
        b'v' => "Via",
        b'r' => "Refer-To",
        b'b' => "Referred-By",
        b'o' => "Event",
        b'u' => "Allow-Events",
        b'x' => "Session-Expires",
        _ => name,
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Removes CR, LF and other control characters (tab becomes a space).
pub fn sanitize(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_cseq(value: &str) -> Result<(u32, &str), String> {
    let mut it = value.split_whitespace();
    let (Some(num), Some(method), None) = (it.next(), it.next(), it.next()) else {
        return Err(format!("malformed CSeq {value:?}"));
    };
    let num: u32 = num
        .parse()
        .map_err(|_| format!("malformed CSeq number {num:?}"))?;
    if num >= 1 << 31 {
        return Err(format!("CSeq number {num} not below 2**31"));
    }
    if !is_token(method) {
        return Err(format!("malformed CSeq method {method:?}"));
    }
    Ok((num, method))
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    let bad = || ParseError::bad(format!("bad start line {:?}", truncate(line, 80)));
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (version, rest) = rest.split_once(' ').ok_or_else(bad)?;
        if version != "2.0" {
            return Err(ParseError::new(
                505,
                format!("SIP version SIP/{version} not supported"),
            ));
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let status: u16 = code.parse().map_err(|_| bad())?;
        if !(100..=699).contains(&status) {
            return Err(bad());
        }
        return Ok(StartLine::Response {
            status,
            reason: reason.to_string(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !is_token(method) || uri.is_empty() || !version.starts_with("SIP/") {
        return Err(bad());
    }
    if version != "SIP/2.0" {
        return Err(ParseError::new(
            505,
            format!("SIP version {version} not supported"),
        ));
    }
    let Some(scheme) = UriScheme::of(uri) else {
        return Err(ParseError::new(
            416,
            format!("unsupported Request-URI scheme in {uri:?}"),
        ));
    };
    check_uri(uri).map_err(|why| ParseError::bad(format!("bad Request-URI: {why}")))?;
    Ok(StartLine::Request {
        method: Method(method.to_string()),
        uri: uri.to_string(),
        scheme,
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Splits and checks the header section (without the empty line): start line and fields.
fn parse_head(
    head: &str,
    limits: &Limits,
) -> Result<(StartLine, Vec<(String, String)>), ParseError> {
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or("");
    let start = match parse_start_line(first) {
        Ok(start) => start,
        Err(mut refusal) => {
            // A broken request line with readable header fields is still answered, with a
            // 400 that says what is wrong (RFC 3261 21.4.1): keep what the answer needs.
            let method = first
                .split(' ')
                .next()
                .filter(|m| is_token(m) && !first.starts_with("SIP/"));
            if let (Some(method), Ok(headers)) = (method, parse_fields(lines, limits)) {
                let start = StartLine::Request {
                    method: Method(method.to_string()),
                    uri: String::new(),
                    scheme: UriScheme::Sip,
                };
                refusal.partial = Some(Box::new(Message {
                    start,
                    headers,
                    body: Vec::new(),
                }));
            }
            return Err(refusal);
        }
    };
    Ok((start, parse_fields(lines, limits)?))
}

/// The header fields after the start line: unfolded, full names, values sanitised.
fn parse_fields<'a>(
    lines: impl Iterator<Item = &'a str>,
    limits: &Limits,
) -> Result<Vec<(String, String)>, ParseError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.contains(['\r', '\n']) {
            return Err(ParseError::bad(format!(
                "bare CR or LF in header line {}",
                n + 2
            )));
        }
        if line.starts_with([' ', '\t']) {
            // Line folding (RFC 3261 7.3.1): the line continues the previous field.
            let Some((_, value)) = headers.last_mut() else {
                return Err(ParseError::bad("continuation line before any header field"));
            };
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::bad(format!(
                "malformed header line {:?}",
                truncate(line, 40)
            )));
        };
        let name = name.trim_end_matches([' ', '\t']);
        if !is_token(name) {
            return Err(ParseError::bad(format!(
                "malformed header name {:?}",
                truncate(name, 40)
            )));
        }
        if headers.len() == limits.max_headers {
            return Err(ParseError::new(
                513,
                format!("more than {} header fields", limits.max_headers),
            ));
        }
        headers.push((full_name(name).to_string(), value.trim().to_string()));
    }
    for (_, value) in &mut headers {
        *value = sanitize(value).trim().to_string();
    }
    Ok(headers)
}

/// Parses and validates one message. `bytes` is a whole datagram or one frame from
/// [`super::framing::frame`]; CRLFs before the start line are skipped (RFC 3261 7.5).
pub fn parse(bytes: &[u8], transport: Transport, limits: &Limits) -> Result<Message, ParseError> {
    let skip = bytes
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let bytes = &bytes[skip..];
    if bytes.is_empty() {
        return Err(ParseError::bad("empty message"));
    }
    if bytes.len() > limits.max_message_bytes {
        return Err(ParseError::new(
            513,
            format!(
                "message of {} bytes over the limit of {}",
                bytes.len(),
                limits.max_message_bytes
            ),
        ));
    }
    let Some(head_end) = find(bytes, b"\r\n\r\n") else {
        return Err(ParseError::bad("no empty line after the header fields"));
    };
    if head_end + 4 > limits.max_header_bytes {
        return Err(ParseError::new(
            513,
            format!(
                "header section over the limit of {} bytes",
                limits.max_header_bytes
            ),
        ));
    }
    let head = std::str::from_utf8(&bytes[..head_end])
        .map_err(|_| ParseError::bad("header section is not UTF-8"))?;
    let (start, headers) = parse_head(head, limits)?;
    let body = &bytes[head_end + 4..];
    let mut msg = Message {
        start,
        headers,
        body: Vec::new(),
    };
    let body = match validate(&msg, body, transport, limits) {
        Ok(body) => body,
        Err(mut e) => {
            e.partial = Some(Box::new(msg));
            return Err(e);
        }
    };
    msg.body = body.to_vec();
    Ok(msg)
}

/// The mandatory header fields, CSeq, Max-Forwards and Content-Length; returns the body.
fn validate<'b>(
    msg: &Message,
    body: &'b [u8],
    transport: Transport,
    limits: &Limits,
) -> Result<&'b [u8], ParseError> {
    let is_request = msg.method().is_some();
    let mut mandatory = vec!["Via", "From", "To", "Call-ID", "CSeq"];
    if is_request {
        mandatory.push("Max-Forwards");
    }
    for name in mandatory {
        match msg.headers_named(name).count() {
            0 => return Err(ParseError::bad(format!("missing {name} header"))),
            1 => {}
            _ if name == "Via" => {}
            _ => return Err(ParseError::bad(format!("more than one {name} header"))),
        }
        if msg.header(name).is_some_and(str::is_empty) {
            return Err(ParseError::bad(format!("empty {name} header")));
        }
    }
    let (_, cseq_method) = parse_cseq(msg.header("CSeq").unwrap_or("")).map_err(ParseError::bad)?;
    if let Some(method) = msg.method() {
        if cseq_method != method.as_str() {
            return Err(ParseError::bad(format!(
                "CSeq method {cseq_method} does not match request method {}",
                method.as_str()
            )));
        }
        let mf = msg.header("Max-Forwards").unwrap_or("");
        if mf.len() > 3 || mf.parse::<u8>().is_err() {
            return Err(ParseError::bad(format!("malformed Max-Forwards {mf:?}")));
        }
    }
    let mut length: Option<usize> = None;
    for value in msg.headers_named("Content-Length") {
        if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::bad(format!(
                "malformed Content-Length {value:?}"
            )));
        }
        let n: usize = value
            .parse()
            .map_err(|_| ParseError::bad("malformed Content-Length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(ParseError::bad("conflicting Content-Length headers"));
        }
        length = Some(n);
    }
    let length = match (length, transport) {
        (Some(n), _) => n,
        (None, Transport::Datagram) => body.len(),
        (None, Transport::Stream) => {
            return Err(ParseError::bad(
                "missing Content-Length on a stream transport",
            ));
        }
    };
    if length > limits.max_body_bytes {
        return Err(ParseError::new(
            413,
            format!(
                "body of {length} bytes over the limit of {}",
                limits.max_body_bytes
            ),
        ));
    }
    if length > body.len() {
        return Err(ParseError::bad("Content-Length exceeds body"));
    }
    if length < body.len() && transport == Transport::Stream {
        return Err(ParseError::bad(
            "bytes after the body beyond Content-Length",
        ));
    }
    // RFC 3261 18.3: on a datagram, octets past Content-Length are discarded.
    Ok(&body[..length])
}

/// The top Via of a request, split (RFC 3261 20.42): `SIP/2.0/UDP host:port;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `SIP/2.0/UDP`, as sent.
    pub protocol: String,
    /// The sent-by host (an IPv6 reference keeps its brackets).
    pub host: String,
    pub port: Option<u16>,
    /// Parameters in order, names lower-cased.
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// Parses one Via value (the first of a comma-separated list).
    pub fn parse(value: &str) -> Option<Via> {
        let first = value.split(',').next()?.trim();
        let (protocol, rest) = first.split_once([' ', '\t'])?;
        let mut parts = rest.trim().split(';');
        let sent_by = parts.next()?.trim();
        let (host, port) = if let Some(v6) = sent_by.strip_prefix('[') {
            let (h, p) = v6.split_once(']')?;
            (format!("[{h}]"), p.strip_prefix(':'))
        } else {
            match sent_by.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (sent_by.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => Some(p.trim().parse().ok()?),
            None => None,
        };
        if host.is_empty() || !protocol.to_ascii_uppercase().starts_with("SIP/2.0/") {
            return None;
        }
        let params = parts
            .map(|p| match p.split_once('=') {
                Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
                None => (p.trim().to_ascii_lowercase(), None),
            })
            .filter(|(n, _)| !n.is_empty())
            .collect();
        Some(Via {
            protocol: protocol.to_string(),
            host,
            port,
            params,
        })
    }

    /// A parameter: `None` when absent, `Some(None)` when present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    fn set_param(&mut self, name: &str, value: String) {
        match self.params.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = Some(value),
            None => self.params.push((name.to_string(), Some(value))),
        }
    }

    /// Where a response goes over a datagram transport (RFC 3261 18.2.2, RFC 3581 4):
    /// `received` (else the sent-by host) and `rport` (else the sent-by port, else 5060).
    pub fn response_target(&self) -> (String, u16) {
        let host = match self.param("received") {
            Some(Some(r)) => r.to_string(),
            _ => self
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        };
        let port = match self.param("rport") {
            Some(Some(p)) => p.parse().ok(),
            _ => None,
        };
        (host, port.or(self.port).unwrap_or(5060))
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for (name, value) in &self.params {
            match value {
                Some(v) => write!(f, ";{name}={v}")?,
                None => write!(f, ";{name}")?,
            }
        }
        Ok(())
    }
}

/// Stamps the top Via of a received request (RFC 3261 18.2.1, RFC 3581 4): `received` when
/// the sent-by host is not the source address (always when `rport` was asked for), and the
/// source port in an empty `rport`. Returns the stamped Via; `None` when there is no
/// readable top Via (the request is then answered by nobody).
pub fn stamp_top_via(msg: &mut Message, source: std::net::SocketAddr) -> Option<Via> {
    let index = msg
        .headers
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case("Via"))?;
    let value = &msg.headers[index].1;
    let mut via = Via::parse(value)?;
    let rport = via.param("rport").is_some();
    let ip = source.ip().to_string();
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    if rport || host.parse::<std::net::IpAddr>().ok() != Some(source.ip()) {
        via.set_param("received", ip);
    }
    if via.param("rport") == Some(None) {
        via.set_param("rport", source.port().to_string());
    }
    // Keep the other Via values of a comma-separated line.
    let others = value
        .split_once(',')
        .map(|(_, rest)| rest.trim().to_string());
    msg.headers[index].1 = match others {
        Some(rest) => format!("{via}, {rest}"),
        None => via.to_string(),
    };
    Some(via)
}

/// What to answer, for [`build_response`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseSpec<'a> {
    pub status: u16,
    /// Reason phrase; empty means the standard one.
    pub reason: &'a str,
    /// Added to To when To has no tag yet (every response but 100 of a dialog-creating
    /// request needs one, RFC 3261 8.2.6.2).
    pub to_tag: Option<&'a str>,
    /// Written after the copied fields, in order. CR/LF in them are removed.
    pub extra_headers: &'a [(&'a str, &'a str)],
    /// Content-Type and body.
    pub body: Option<(&'a str, &'a [u8])>,
}

/// A response to `request` (RFC 3261 8.2.6.2), after [`stamp_top_via`]: every Via in order, From, To (plus `tag` when
/// given and To has none), Call-ID and CSeq copied; then the extra headers, Content-Type and
/// Content-Length. Fields missing from the request are left out.
pub fn build_response(request: &Message, spec: &ResponseSpec<'_>) -> Vec<u8> {
    let reason = if spec.reason.is_empty() {
        reason_phrase(spec.status)
    } else {
        spec.reason
    };
    let mut out = format!("SIP/2.0 {} {}\r\n", spec.status, sanitize(reason));
    for via in request.headers_named("Via") {
        out.push_str(&format!("Via: {via}\r\n"));
    }
    if let Some(from) = request.header("From") {
        out.push_str(&format!("From: {from}\r\n"));
    }
    if let Some(to) = request.header("To") {
        match spec.to_tag {
            Some(tag) if !has_tag(to) => {
                out.push_str(&format!("To: {to};tag={}\r\n", sanitize(tag)));
            }
            _ => out.push_str(&format!("To: {to}\r\n")),
        }
    }
    for name in ["Call-ID", "CSeq"] {
        if let Some(value) = request.header(name) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    for (name, value) in spec.extra_headers {
        out.push_str(&format!("{}: {}\r\n", sanitize(name), sanitize(value)));
    }
    let body: &[u8] = match spec.body {
        Some((content_type, body)) => {
            out.push_str(&format!("Content-Type: {}\r\n", sanitize(content_type)));
            body
        }
        None => &[],
    };
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The `tag` parameter of a From/To value (outside the `<...>` URI), if any.
pub fn tag_param(value: &str) -> Option<&str> {
    let params = match value.rfind('>') {
        Some(i) => &value[i..],
        None => value,
    };
    params.split(';').skip(1).find_map(|p| {
        let (name, tag) = p.split_once('=')?;
        name.trim().eq_ignore_ascii_case("tag").then(|| tag.trim())
    })
}

/// Whether a From/To value has a `tag` parameter.
fn has_tag(value: &str) -> bool {
    tag_param(value).is_some()
}

/// The standard reason phrase of a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        603 => "Decline",
        s if s < 200 => "Provisional",
        s if s < 300 => "Success",
        s if s < 400 => "Redirection",
        s if s < 500 => "Client Error",
        s if s < 600 => "Server Error",
        _ => "Global Failure",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A CPM INVITE to an e-mail user, From a tel: URI, with an MSRP SDP offer.
    pub(crate) fn cpm_invite(request_uri: &str, extra: &str, body: &str) -> Vec<u8> {
        format!(
            "INVITE {request_uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;received=192.0.2.1\r\n\
             Max-Forwards: 70\r\n\
             From: \"Alice\" <tel:+15551234567>;tag=9fxced76sl\r\n\
             To: <mailto:bob@example.org>\r\n\
             P-Asserted-Identity: \"Alice A.\" <sip:+15551234567@ims.example.com;user=phone>, <tel:+15551234567>\r\n\
             Call-ID: 3848276298220188511@192.0.2.10\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:alice@192.0.2.10:5060>\r\n\
             Accept-Contact: *;+g.oma.sip-im\r\n\
             {extra}\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    pub(crate) const MSRP_SDP: &str = "v=0\r\n\
        o=alice 2890844526 2890844527 IN IP4 192.0.2.10\r\n\
        s=-\r\n\
        c=IN IP4 192.0.2.10\r\n\
        t=0 0\r\n\
        m=message 7394 TCP/MSRP *\r\n\
        a=accept-types:message/cpim text/plain\r\n\
        a=accept-wrapped-types:*\r\n\
        a=path:msrp://192.0.2.10:7394/2s93i93idj;tcp\r\n\
        a=setup:actpass\r\n";

    fn parse_udp(bytes: &[u8]) -> Result<Message, ParseError> {
        parse(bytes, Transport::Datagram, &Limits::default())
    }

    #[test]
    fn a_message_written_again_parses_to_itself() {
        // Compact forms, folding and a datagram's missing Content-Length all come back as
        // the full, unfolded form with the body's length.
        let invite = cpm_invite(
            "mailto:bob@example.org",
            "s: a\r\n  folded subject\r\n",
            MSRP_SDP,
        );
        let first = parse_udp(&invite).unwrap();
        let again = parse(&first.to_bytes(), Transport::Stream, &Limits::default()).unwrap();
        assert_eq!(again, first);
        let text = String::from_utf8(first.to_bytes()).unwrap();
        assert!(text.contains("\r\nSubject: a folded subject\r\n"), "{text}");
        assert_eq!(text.matches("Content-Length").count(), 1, "{text}");
    }

    fn err(bytes: &[u8]) -> ParseError {
        parse_udp(bytes).expect_err("must be refused")
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn invite_to_mailto_with_msrp_offer_parses() {
        let msg = parse_udp(&cpm_invite("mailto:bob@example.org", "", MSRP_SDP)).unwrap();
        assert_eq!(msg.method().unwrap().as_str(), "INVITE");
        assert_eq!(msg.method().unwrap().rsip(), Some(rsip::Method::Invite));
        assert_eq!(
            msg.request_uri(),
            Some(("mailto:bob@example.org", UriScheme::Mailto))
        );
        assert_eq!(msg.headers_named("Via").count(), 2);
        assert_eq!(msg.cseq(), Some((1, "INVITE")));
        assert_eq!(msg.body, MSRP_SDP.as_bytes());
    }

    #[test]
    fn tel_request_uri_parses_where_rsip_fails() {
        let bytes = cpm_invite("tel:+15551234567", "", MSRP_SDP);
        // The fact the pre-parse exists for: rsip 0.4 refuses this message.
        assert!(rsip::SipMessage::try_from(bytes.as_slice()).is_err());
        let msg = parse_udp(&bytes).unwrap();
        assert_eq!(
            msg.request_uri(),
            Some(("tel:+15551234567", UriScheme::Tel))
        );
        assert_eq!(
            msg.header("From"),
            Some("\"Alice\" <tel:+15551234567>;tag=9fxced76sl")
        );
    }

    #[test]
    fn tel_local_number_needs_phone_context() {
        assert!(check_uri("tel:7042;phone-context=example.com").is_ok());
        assert!(check_uri("tel:+1-555-123-4567").is_ok());
        assert!(check_uri("tel:7042").is_err());
        assert!(check_uri("tel:+").is_err());
        assert!(check_uri("tel:+1555 1234").is_err());
    }

    #[test]
    fn ipv6_hosts_in_sip_uris_are_checked_here() {
        assert!(check_uri("sip:[2001:db8::1]:5062;lr").is_ok());
        assert!(check_uri("sips:alice@[2001:db8::1]").is_ok());
        assert!(check_uri("sip:alice@[2001:db8::zz]:5060").is_err());
        assert!(check_uri("sip:[2001:db8::1]:99999").is_err());
        assert!(check_uri("sip:[2001:db8::1").is_err());
    }

    #[test]
    fn sip_request_uri_is_checked_by_rsip() {
        let msg = parse_udp(&cpm_invite("sip:bob@iwf.example.net", "", MSRP_SDP)).unwrap();
        assert_eq!(msg.request_uri().unwrap().1, UriScheme::Sip);
        let e = err(&cpm_invite("sip:", "", MSRP_SDP));
        assert_eq!(e.status, 400);
        assert!(e.reason.starts_with("bad Request-URI"), "{}", e.reason);
    }

    #[test]
    fn other_request_uri_scheme_answers_416() {
        let e = err(&cpm_invite("http://example.org/", "", ""));
        assert_eq!(e.status, 416);
    }

    #[test]
    fn bad_start_line_answers_400_with_reason() {
        let e = err(b"INVITE mailto:bob@example.org\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n");
        assert_eq!(e.status, 400);
        assert!(e.reason.starts_with("bad start line"), "{}", e.reason);
        let e = err(b"INV ITE mailto:bob@example.org SIP/2.0\r\n\r\n");
        assert_eq!(e.status, 400);
    }

    #[test]
    fn other_sip_version_answers_505() {
        let bytes = text(&cpm_invite("mailto:bob@example.org", "", "")).replacen(
            "SIP/2.0\r\n",
            "SIP/3.0\r\n",
            1,
        );
        assert_eq!(err(bytes.as_bytes()).status, 505);
    }

    #[test]
    fn missing_call_id_answers_400_with_warning() {
        let bytes = text(&cpm_invite("mailto:bob@example.org", "", MSRP_SDP))
            .replace("Call-ID: 3848276298220188511@192.0.2.10\r\n", "");
        let e = err(bytes.as_bytes());
        assert_eq!(
            (e.status, e.reason.as_str()),
            (400, "missing Call-ID header")
        );
        let resp = text(&e.response("iwf.example.net").unwrap());
        assert!(resp.starts_with("SIP/2.0 400 Bad Request\r\n"), "{resp}");
        assert!(resp.contains("Warning: 399 iwf.example.net \"missing Call-ID header\"\r\n"));
        assert!(resp.contains("Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n"));
        assert!(resp.contains("CSeq: 1 INVITE\r\n"));
    }

    #[test]
    fn each_missing_mandatory_header_is_named() {
        let full = text(&cpm_invite("mailto:bob@example.org", "", ""));
        for (line, name) in [
            ("CSeq: 1 INVITE\r\n", "CSeq"),
            ("Max-Forwards: 70\r\n", "Max-Forwards"),
            ("To: <mailto:bob@example.org>\r\n", "To"),
        ] {
            let e = err(full.replace(line, "").as_bytes());
            assert_eq!(e.reason, format!("missing {name} header"));
        }
        let no_from = full.replace("From: \"Alice\" <tel:+15551234567>;tag=9fxced76sl\r\n", "");
        assert_eq!(err(no_from.as_bytes()).reason, "missing From header");
        let no_via = full
            .replace(
                "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n",
                "",
            )
            .replace(
                "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;received=192.0.2.1\r\n",
                "",
            );
        let e = err(no_via.as_bytes());
        assert_eq!(e.reason, "missing Via header");
        // Without a Via nothing can be answered.
        assert!(e.response("iwf").is_none());
    }

    #[test]
    fn cseq_method_mismatch_answers_400() {
        let bytes = text(&cpm_invite("mailto:bob@example.org", "", ""))
            .replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
        let e = err(bytes.as_bytes());
        assert_eq!(
            e.reason,
            "CSeq method BYE does not match request method INVITE"
        );
    }

    #[test]
    fn content_length_beyond_body_answers_400() {
        let bytes = text(&cpm_invite("mailto:bob@example.org", "", MSRP_SDP));
        let cut = &bytes.as_bytes()[..bytes.len() - 10];
        let e = err(cut);
        assert_eq!(
            (e.status, e.reason.as_str()),
            (400, "Content-Length exceeds body")
        );
        let resp = text(&e.response("iwf").unwrap());
        assert!(resp.contains("\"Content-Length exceeds body\""), "{resp}");
    }

    #[test]
    fn datagram_bytes_past_content_length_are_discarded() {
        let mut bytes = cpm_invite("mailto:bob@example.org", "", MSRP_SDP);
        bytes.extend_from_slice(b"garbage after the body");
        let msg = parse_udp(&bytes).unwrap();
        assert_eq!(msg.body, MSRP_SDP.as_bytes());
        let e = parse(&bytes, Transport::Stream, &Limits::default()).unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn datagram_without_content_length_takes_the_rest_stream_refuses() {
        let bytes = text(&cpm_invite("mailto:bob@example.org", "", MSRP_SDP))
            .replace(&format!("Content-Length: {}\r\n", MSRP_SDP.len()), "");
        assert_eq!(
            parse_udp(bytes.as_bytes()).unwrap().body,
            MSRP_SDP.as_bytes()
        );
        let e = parse(bytes.as_bytes(), Transport::Stream, &Limits::default()).unwrap_err();
        assert_eq!(e.reason, "missing Content-Length on a stream transport");
    }

    #[test]
    fn compact_names_and_folded_lines_are_normalised() {
        let bytes = b"OPTIONS sip:iwf.example.net SIP/2.0\r\n\
            v: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bKx\r\n\
            f: <sip:alice@example.com>\r\n  ;tag=1\r\n\
            t: <sip:iwf.example.net>\r\n\
            i: abc@h\r\n\
            CSeq : 7 OPTIONS\r\n\
            Max-Forwards: 70\r\n\
            s: Hello\r\n\tworld\r\n\
            l: 0\r\n\r\n";
        let msg = parse(bytes, Transport::Stream, &Limits::default()).unwrap();
        assert_eq!(msg.header("From"), Some("<sip:alice@example.com> ;tag=1"));
        assert_eq!(msg.header("Call-ID"), Some("abc@h"));
        assert_eq!(msg.header("Subject"), Some("Hello world"));
        assert_eq!(msg.cseq(), Some((7, "OPTIONS")));
    }

    #[test]
    fn bare_lf_in_header_is_refused() {
        let bytes = text(&cpm_invite(
            "mailto:bob@example.org",
            "Subject: hi\nBcc: x@y\r\n",
            "",
        ));
        let e = err(bytes.as_bytes());
        assert!(e.reason.starts_with("bare CR or LF"), "{}", e.reason);
    }

    #[test]
    fn too_many_headers_answers_513() {
        let extra: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
        let e = err(&cpm_invite("mailto:bob@example.org", &extra, ""));
        assert_eq!(e.status, 513);
    }

    #[test]
    fn over_size_message_answers_513_and_body_413() {
        let limits = Limits {
            max_message_bytes: 600,
            ..Limits::default()
        };
        let bytes = cpm_invite("mailto:bob@example.org", "", MSRP_SDP);
        assert_eq!(
            parse(&bytes, Transport::Datagram, &limits)
                .unwrap_err()
                .status,
            513
        );
        let limits = Limits {
            max_body_bytes: 100,
            ..Limits::default()
        };
        let e = parse(&bytes, Transport::Datagram, &limits).unwrap_err();
        assert_eq!(e.status, 413);
        assert!(
            e.response("iwf")
                .unwrap()
                .starts_with(b"SIP/2.0 413 Request Entity Too Large\r\n")
        );
    }

    #[test]
    fn extension_method_parses_and_maps_to_501_known_to_405() {
        let bytes = b"FOO sip:iwf.example.net SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            From: <sip:a@b>;tag=1\r\nTo: <sip:iwf.example.net>\r\nCall-ID: c\r\nCSeq: 1 FOO\r\n\
            Max-Forwards: 70\r\n\r\n";
        let msg = parse_udp(bytes).unwrap();
        assert_eq!(unsupported_method_status(msg.method().unwrap()), 501);
        assert_eq!(unsupported_method_status(&Method("PUBLISH".into())), 405);
    }

    #[test]
    fn response_parses_and_is_never_answered() {
        let bytes = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: c\r\nCSeq: 1 BYE\r\n\r\n";
        let msg = parse_udp(bytes).unwrap();
        assert_eq!(
            msg.start,
            StartLine::Response {
                status: 200,
                reason: "OK".into()
            }
        );
        let e = err(&bytes[..bytes.len() - 20]);
        assert!(e.response("iwf").is_none());
    }

    #[test]
    fn leading_crlf_is_skipped() {
        let mut bytes = b"\r\n\r\n".to_vec();
        bytes.extend(cpm_invite("mailto:bob@example.org", "", ""));
        assert!(parse_udp(&bytes).is_ok());
        assert_eq!(err(b"\r\n\r\n").reason, "empty message");
    }

    #[test]
    fn response_copies_vias_from_to_call_id_cseq_and_adds_to_tag() {
        let msg = parse_udp(&cpm_invite("mailto:bob@example.org", "", MSRP_SDP)).unwrap();
        let resp = build_response(
            &msg,
            &ResponseSpec {
                status: 200,
                to_tag: Some("iwf1"),
                extra_headers: &[("Contact", "<sip:iwf@192.0.2.99:5060>")],
                body: Some(("application/sdp", b"v=0\r\n")),
                ..ResponseSpec::default()
            },
        );
        let expected = "SIP/2.0 200 OK\r\n\
            Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n\
            Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;received=192.0.2.1\r\n\
            From: \"Alice\" <tel:+15551234567>;tag=9fxced76sl\r\n\
            To: <mailto:bob@example.org>;tag=iwf1\r\n\
            Call-ID: 3848276298220188511@192.0.2.10\r\n\
            CSeq: 1 INVITE\r\n\
            Contact: <sip:iwf@192.0.2.99:5060>\r\n\
            Content-Type: application/sdp\r\n\
            Content-Length: 5\r\n\r\nv=0\r\n";
        assert_eq!(text(&resp), expected);
        // The response parses back.
        assert!(parse_udp(&resp).is_ok());
    }

    #[test]
    fn response_keeps_an_existing_to_tag_and_strips_crlf_from_extras() {
        let bytes = b"BYE sip:iwf@192.0.2.99 SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\n\
            From: <tel:+15551234567>;tag=a\r\nTo: <mailto:bob@example.org>;tag=iwf1\r\n\
            Call-ID: c\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let msg = parse(bytes, Transport::Stream, &Limits::default()).unwrap();
        let resp = text(&build_response(
            &msg,
            &ResponseSpec {
                status: 200,
                to_tag: Some("other"),
                extra_headers: &[("Reason", "x\r\nEvil: 1")],
                ..ResponseSpec::default()
            },
        ));
        assert!(
            resp.contains("To: <mailto:bob@example.org>;tag=iwf1\r\n"),
            "{resp}"
        );
        assert!(resp.contains("Reason: xEvil: 1\r\n"), "{resp}");
        assert!(resp.ends_with("Content-Length: 0\r\n\r\n"));
    }

    /// Every prefix and every one-byte corruption of a CPM INVITE is answered or parsed,
    /// never a panic (the codec is a fuzz target as it stands).
    #[test]
    fn truncated_or_corrupted_bytes_never_panic() {
        let bytes = cpm_invite("tel:+15551234567", "Subject: \u{e9}t\u{e9}\r\n", MSRP_SDP);
        let limits = Limits::default();
        for i in 0..bytes.len() {
            let _ = parse(&bytes[..i], Transport::Datagram, &limits);
            let _ = crate::sip::framing::frame(&bytes[..i], &limits);
            for b in [b'\r', b'\n', b':', b'<', b'"', b' ', 0x00, 0xff, b';'] {
                let mut m = bytes.clone();
                m[i] = b;
                for t in [Transport::Datagram, Transport::Stream] {
                    if let Err(e) = parse(&m, t, &limits) {
                        assert!(!e.reason.contains(['\r', '\n']));
                        let _ = e.response("iwf");
                    }
                }
                let _ = crate::sip::framing::frame(&m, &limits);
            }
        }
    }

    #[test]
    fn top_via_with_rport_is_stamped_and_routes_the_response() {
        let mut msg = parse_udp(&cpm_invite("mailto:bob@example.org", "", "")).unwrap();
        let via = stamp_top_via(&mut msg, "203.0.113.7:40123".parse().unwrap()).unwrap();
        assert_eq!(via.response_target(), ("203.0.113.7".to_string(), 40123));
        assert_eq!(
            msg.header("Via"),
            Some(
                "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport=40123;received=203.0.113.7"
            )
        );
        // The second Via is left alone.
        let second = msg.headers_named("Via").nth(1).unwrap();
        assert!(second.ends_with(";received=192.0.2.1"), "{second}");
        let resp = String::from_utf8(build_response(
            &msg,
            &ResponseSpec {
                status: 100,
                ..Default::default()
            },
        ))
        .unwrap();
        assert!(
            resp.contains("rport=40123;received=203.0.113.7\r\n"),
            "{resp}"
        );
    }

    #[test]
    fn top_via_without_rport_gets_received_only_when_host_differs() {
        let mut msg = parse_udp(&cpm_invite("mailto:bob@example.org", "", "")).unwrap();
        msg.headers[0].1 = "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK1".into();
        let via = stamp_top_via(&mut msg, "192.0.2.10:5070".parse().unwrap()).unwrap();
        assert_eq!(via.param("received"), None);
        assert_eq!(via.response_target(), ("192.0.2.10".to_string(), 5070));
        msg.headers[0].1 =
            "SIP/2.0/TCP client.example.com;branch=z9hG4bK1, SIP/2.0/UDP p;branch=z9hG4bK0".into();
        let via = stamp_top_via(&mut msg, "[2001:db8::1]:5060".parse().unwrap()).unwrap();
        assert_eq!(via.response_target(), ("2001:db8::1".to_string(), 5060));
        assert_eq!(
            msg.header("Via"),
            Some(
                "SIP/2.0/TCP client.example.com;branch=z9hG4bK1;received=2001:db8::1, SIP/2.0/UDP p;branch=z9hG4bK0"
            )
        );
    }

    #[test]
    fn via_ipv6_sent_by_and_bad_vias() {
        let via = Via::parse("SIP/2.0/UDP [2001:db8::9]:5062;branch=z9hG4bKa").unwrap();
        assert_eq!((via.host.as_str(), via.port), ("[2001:db8::9]", Some(5062)));
        assert_eq!(
            via.to_string(),
            "SIP/2.0/UDP [2001:db8::9]:5062;branch=z9hG4bKa"
        );
        assert!(Via::parse("SIP/2.0/UDP host:port").is_none());
        assert!(Via::parse("HTTP/1.1 host").is_none());
        assert!(Via::parse("garbage").is_none());
    }

    #[test]
    fn warning_value_escapes_quotes() {
        assert_eq!(
            warning_value("iwf", "say \"hi\"\r\n"),
            "399 iwf \"say \\\"hi\\\"\""
        );
    }
}
