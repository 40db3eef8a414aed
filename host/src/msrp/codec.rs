//! The MSRP wire codec (RFC 4975 sections 7 and 9), bytes in and bytes out.
//!
//! `Decoder` is fed what arrived on the connection and answers a whole `Frame` or "need
//! more"; it keeps its scan offsets between calls, so a frame split at any byte offset
//! decodes the same and no byte is scanned twice for the end-line. `encode` writes a frame
//! exactly as the wire carries it. Bounded by `Limits`: nothing is buffered past them.

use thiserror::Error;

use super::frame::{
    Body, Flag, Frame, Header, Method, StartLine, TransactId, parse_code, sanitise,
};
use crate::sdp::MsrpUri;

/// Bounds on what one frame may hold; beyond them `Error::TooLarge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Start line and header fields, up to the blank line or end-line.
    pub max_head_bytes: usize,
    /// Header fields, To-Path and From-Path included.
    pub max_headers: usize,
    /// Body of one frame (one chunk).
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            // RFC 4975 sections 5.1, 7.1.1: chunks larger than 2048 octets MUST be interruptible;
            // peers commonly send up to 1 MiB, some whole messages in one chunk.
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// What is wrong with a frame; `Display` is the reason for an MSRP 400's comment.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    #[error("{what} larger than {limit}")]
    TooLarge { what: &'static str, limit: usize },
    #[error("bad start line {0:?}")]
    StartLine(String),
    #[error("bad transaction id {0:?}")]
    TransactId(String),
    #[error("missing {0}")]
    Missing(&'static str),
    /// RFC 4975 section 7.1: To-Path first, From-Path second.
    #[error("{0} out of order")]
    Order(&'static str),
    #[error("bad header line {0:?}")]
    HeaderLine(String),
    #[error("{0}")]
    HeaderValue(String),
    #[error("bad {field}: {reason}")]
    Path { field: &'static str, reason: String },
    #[error("body without Content-Type")]
    NoContentType,
    /// Encoding only: the body holds its own end-line (section 7.1: pick another id).
    #[error("body contains the end-line of transaction {0}")]
    EndLineInBody(TransactId),
}

/// A decoding failure: the error, the transaction id when the start line was read (so the
/// endpoint can answer 400 to a request), and whether the stream is still in step.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("MSRP frame{}: {error}", .transact_id.as_ref().map(|t| format!(" {t}")).unwrap_or_default())]
pub struct DecodeError {
    pub transact_id: Option<TransactId>,
    /// The start line, when read: a response must not be answered.
    pub method: Option<Method>,
    pub error: Error,
    /// False when the whole frame was consumed and decoding can go on; true when the
    /// framing is lost (bad start line, a limit hit) and the connection must be closed.
    pub fatal: bool,
    /// The request's To-Path and From-Path, when they were read before the error.
    /// (Boxed: errors stay small, they are returned often.)
    pub paths: Option<Box<(Vec<MsrpUri>, Vec<MsrpUri>)>>,
}

impl DecodeError {
    /// The 400 to send back (RFC 4975 section 7.3, section 10: "unintelligible"), with
    /// the error as its comment, when it can be sent: the bad frame was a request whose
    /// transaction id and paths were read.
    pub fn response(&self) -> Option<Frame> {
        let (to_path, from_path) = self.paths.as_deref()?;
        let request = Frame {
            transact_id: self.transact_id.clone()?,
            start: StartLine::Request(self.method.clone()?),
            to_path: to_path.clone(),
            from_path: from_path.clone(),
            headers: Vec::new(),
            body: None,
            flag: Flag::Complete,
        };
        Some(request.response(400, Some(&self.error.to_string())))
    }
}

#[derive(Debug)]
enum State {
    /// Reading lines: `line_start` is where the current line begins, `scan` where the
    /// search for its CRLF goes on.
    Head {
        line_start: usize,
        scan: usize,
        start: Option<(TransactId, StartLine)>,
        lines: usize,
    },
    /// Looking for `CRLF "-------" transact-id flag CRLF` from `scan` on.
    Body {
        transact_id: TransactId,
        /// `CRLF "-------" transact-id`, built once per frame.
        end: Vec<u8>,
        start: StartLine,
        head_end: usize,
        body_start: usize,
        scan: usize,
    },
}

impl State {
    fn new() -> State {
        State::Head {
            line_start: 0,
            scan: 0,
            start: None,
            lines: 0,
        }
    }
}

/// The streaming decoder of one connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    state: State,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new(Limits::default())
    }
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            state: State::new(),
        }
    }

    /// Takes one whole frame off the front of `buf`, or `Ok(None)` when more bytes are
    /// needed (the bytes stay in `buf`, the scan position is kept). On a non-fatal error
    /// the bad frame has been removed from `buf`. Between calls the caller only appends
    /// to `buf`; should it have dropped bytes, the decoder starts over instead of panicking.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Option<Frame>, DecodeError> {
        let limits = self.limits;
        let scanned = match &self.state {
            State::Head { scan, .. } | State::Body { scan, .. } => *scan,
        };
        if scanned > buf.len() {
            self.state = State::new();
        }
        loop {
            match &mut self.state {
                State::Head {
                    line_start,
                    scan,
                    start,
                    lines,
                } => {
                    let Some(eol) = find(&buf[*scan..], b"\r\n").map(|i| i + *scan) else {
                        *scan = buf.len().saturating_sub(1).max(*line_start);
                        if buf.len() > limits.max_head_bytes {
                            return Err(self.fail(Error::TooLarge {
                                what: "header section",
                                limit: limits.max_head_bytes,
                            }));
                        }
                        return Ok(None);
                    };
                    if eol + 2 > limits.max_head_bytes {
                        return Err(self.fail(Error::TooLarge {
                            what: "header section",
                            limit: limits.max_head_bytes,
                        }));
                    }
                    let line = &buf[*line_start..eol];
                    let next = eol + 2;
                    let Some((tid, _)) = start else {
                        let parsed = parse_start_line(line);
                        match parsed {
                            Ok(s) => *start = Some(s),
                            Err(e) => return Err(self.fail(e)),
                        }
                        (*line_start, *scan) = (next, next);
                        continue;
                    };
                    if line.is_empty() {
                        let (transact_id, start) = start.take().expect("start line read");
                        let mut end = b"\r\n-------".to_vec();
                        end.extend_from_slice(transact_id.as_str().as_bytes());
                        self.state = State::Body {
                            transact_id,
                            end,
                            start,
                            head_end: *line_start,
                            body_start: next,
                            scan: next,
                        };
                        continue;
                    }
                    if let Some(flag) = end_line_flag(line, tid) {
                        let (transact_id, start) = start.take().expect("start line read");
                        let head_end = *line_start;
                        let result = build(buf, transact_id, start, head_end, None, flag);
                        return self.finish(buf, next, result);
                    }
                    *lines += 1;
                    if *lines > limits.max_headers {
                        return Err(self.fail(Error::TooLarge {
                            what: "header count",
                            limit: limits.max_headers,
                        }));
                    }
                    (*line_start, *scan) = (next, next);
                }
                State::Body {
                    end: pattern,
                    body_start,
                    scan,
                    ..
                } => {
                    let found = find(&buf[*scan..], pattern).map(|i| i + *scan);
                    let Some(at) = found else {
                        *scan = (*scan).max(buf.len().saturating_sub(pattern.len() - 1));
                        if *scan - *body_start > limits.max_body_bytes {
                            return Err(self.fail(Error::TooLarge {
                                what: "body",
                                limit: limits.max_body_bytes,
                            }));
                        }
                        return Ok(None);
                    };
                    if at - *body_start > limits.max_body_bytes {
                        return Err(self.fail(Error::TooLarge {
                            what: "body",
                            limit: limits.max_body_bytes,
                        }));
                    }
                    let tail = at + pattern.len();
                    if buf.len() < tail + 3 {
                        *scan = at;
                        return Ok(None);
                    }
                    let flag = Flag::from_byte(buf[tail]);
                    match flag {
                        Some(flag) if &buf[tail + 1..tail + 3] == b"\r\n" => {
                            let State::Body {
                                transact_id,
                                start,
                                head_end,
                                body_start,
                                ..
                            } = std::mem::replace(&mut self.state, State::new())
                            else {
                                unreachable!("in body state")
                            };
                            let data = buf[body_start..at].to_vec();
                            let result = build(buf, transact_id, start, head_end, Some(data), flag);
                            return self.finish(buf, tail + 3, result);
                        }
                        // Not an end-line after all (section 7.1): part of the body.
                        _ => *scan = at + 1,
                    }
                }
            }
        }
    }

    /// Consumes `used` bytes of the frame just read and hands out its result.
    fn finish(
        &mut self,
        buf: &mut Vec<u8>,
        used: usize,
        result: Result<Frame, DecodeError>,
    ) -> Result<Option<Frame>, DecodeError> {
        buf.drain(..used);
        self.state = State::new();
        result.map(Some)
    }

    /// A fatal error: the framing is lost; the decoder starts afresh should it be fed again.
    fn fail(&mut self, error: Error) -> DecodeError {
        let start = match std::mem::replace(&mut self.state, State::new()) {
            State::Head { start, .. } => start,
            State::Body {
                transact_id, start, ..
            } => Some((transact_id, start)),
        };
        let (transact_id, method) = split_start(start);
        DecodeError {
            transact_id,
            method,
            error,
            fatal: true,
            paths: None,
        }
    }
}

fn split_start(start: Option<(TransactId, StartLine)>) -> (Option<TransactId>, Option<Method>) {
    match start {
        Some((t, StartLine::Request(m))) => (Some(t), Some(m)),
        Some((t, StartLine::Response { .. })) => (Some(t), None),
        None => (None, None),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `MSRP SP transact-id SP method` or `MSRP SP transact-id SP status-code [SP comment]`.
fn parse_start_line(line: &[u8]) -> Result<(TransactId, StartLine), Error> {
    let bad = || Error::StartLine(String::from_utf8_lossy(line).into_owned());
    let text = std::str::from_utf8(line).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ' ');
    if parts.next() != Some("MSRP") {
        return Err(bad());
    }
    let tid = parts.next().ok_or_else(bad)?;
    let transact_id = TransactId::new(tid).ok_or_else(|| Error::TransactId(tid.to_string()))?;
    let rest = parts.next().ok_or_else(bad)?;
    let start = match rest.split_once(' ') {
        None if rest.bytes().all(|b| b.is_ascii_digit()) => StartLine::Response {
            code: parse_code(rest).ok_or_else(bad)?,
            comment: None,
        },
        None => StartLine::Request(Method::parse(rest).ok_or_else(bad)?),
        Some((code, comment)) => StartLine::Response {
            code: parse_code(code).ok_or_else(bad)?,
            comment: Some(comment.to_string()),
        },
    };
    Ok((transact_id, start))
}

/// The flag of `"-------" transact-id flag`, when `line` is that end-line.
fn end_line_flag(line: &[u8], tid: &TransactId) -> Option<Flag> {
    let rest = line.strip_prefix(b"-------")?;
    let rest = rest.strip_prefix(tid.as_str().as_bytes())?;
    match rest {
        [f] => Flag::from_byte(*f),
        _ => None,
    }
}

/// Builds the frame from its header section `buf[..head_end]` (start line included).
fn build(
    buf: &[u8],
    transact_id: TransactId,
    start: StartLine,
    head_end: usize,
    data: Option<Vec<u8>>,
    flag: Flag,
) -> Result<Frame, DecodeError> {
    let err = |error| {
        let (transact_id, method) = split_start(Some((transact_id.clone(), start.clone())));
        DecodeError {
            transact_id,
            method,
            error,
            fatal: false,
            paths: None,
        }
    };
    let head = &buf[..head_end];
    let mut lines = head.split(|&b| b == b'\n').skip(1).filter_map(|l| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        (!l.is_empty()).then_some(l)
    });
    let to_path = parse_path(lines.next(), "To-Path").map_err(err)?;
    let from_path = parse_path(lines.next(), "From-Path").map_err(err)?;
    // From here on the error can be answered.
    let err = |error| DecodeError {
        paths: Some(Box::new((to_path.clone(), from_path.clone()))),
        ..err(error)
    };
    let mut headers = Vec::new();
    let mut content_type = None;
    for line in lines {
        let (name, value) = split_header(line).map_err(err)?;
        if name.eq_ignore_ascii_case("To-Path") {
            return Err(err(Error::Order("To-Path")));
        }
        if name.eq_ignore_ascii_case("From-Path") {
            return Err(err(Error::Order("From-Path")));
        }
        if data.is_some() && name.eq_ignore_ascii_case("Content-Type") {
            content_type = Some(value.trim().to_string());
            continue;
        }
        headers.push(Header::parse(name, value).map_err(|e| err(Error::HeaderValue(e)))?);
    }
    let body = match data {
        None => None,
        Some(data) => Some(Body {
            content_type: content_type.ok_or_else(|| err(Error::NoContentType))?,
            data,
        }),
    };
    Ok(Frame {
        transact_id,
        start,
        to_path,
        from_path,
        headers,
        body,
        flag,
    })
}

fn split_header(line: &[u8]) -> Result<(&str, &str), Error> {
    let bad = || Error::HeaderLine(String::from_utf8_lossy(line).into_owned());
    let text = std::str::from_utf8(line).map_err(|_| bad())?;
    let (name, value) = text.split_once(':').ok_or_else(bad)?;
    let token = |b: u8| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(bad());
    }
    Ok((name, value.trim_start_matches(' ')))
}

/// To-Path or From-Path: `name ":" SP MSRP-URI *(SP MSRP-URI)` (section 9), in its place.
fn parse_path(line: Option<&[u8]>, field: &'static str) -> Result<Vec<MsrpUri>, Error> {
    let line = line.ok_or(Error::Missing(field))?;
    let (name, value) = split_header(line)?;
    if !name.eq_ignore_ascii_case(field) {
        return Err(
            if name.eq_ignore_ascii_case("To-Path") || name.eq_ignore_ascii_case("From-Path") {
                Error::Order(field)
            } else {
                Error::Missing(field)
            },
        );
    }
    let uris = value
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(MsrpUri::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| Error::Path { field, reason })?;
    if uris.is_empty() {
        return Err(Error::Path {
            field,
            reason: "no URI".into(),
        });
    }
    Ok(uris)
}

/// Writes `frame` as the wire carries it: CRLF line ends, Content-Type last before the
/// blank line, the end-line with its flag (RFC 4975 section 7.1). Values are written with
/// control characters replaced by spaces, so no field can inject a line.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), Error> {
    let tid = frame.transact_id.as_str();
    if let Some(body) = &frame.body {
        let mut end = b"\r\n-------".to_vec();
        end.extend_from_slice(tid.as_bytes());
        if find(&body.data, &end).is_some() {
            return Err(Error::EndLineInBody(frame.transact_id.clone()));
        }
    }
    if frame.to_path.is_empty() {
        return Err(Error::Missing("To-Path"));
    }
    if frame.from_path.is_empty() {
        return Err(Error::Missing("From-Path"));
    }
    let mut head = format!("MSRP {tid} ");
    match &frame.start {
        StartLine::Request(m) => head.push_str(m.as_str()),
        StartLine::Response { code, comment } => {
            head.push_str(&format!("{code:03}"));
            if let Some(c) = comment {
                head.push(' ');
                head.push_str(&sanitise(c));
            }
        }
    }
    head.push_str("\r\n");
    let path = |uris: &[MsrpUri]| {
        uris.iter()
            .map(|u| sanitise(&u.to_string()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    head.push_str(&format!("To-Path: {}\r\n", path(&frame.to_path)));
    head.push_str(&format!("From-Path: {}\r\n", path(&frame.from_path)));
    for h in &frame.headers {
        let name: String = h
            .name()
            .chars()
            .filter(|c| !c.is_control() && *c != ':')
            .collect();
        head.push_str(&format!("{}: {}\r\n", name, sanitise(&h.value())));
    }
    out.extend_from_slice(head.as_bytes());
    if let Some(body) = &frame.body {
        out.extend_from_slice(
            format!("Content-Type: {}\r\n\r\n", sanitise(&body.content_type)).as_bytes(),
        );
        out.extend_from_slice(&body.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"-------");
    out.extend_from_slice(tid.as_bytes());
    out.push(frame.flag.as_byte());
    out.extend_from_slice(b"\r\n");
    Ok(())
}

impl Frame {
    /// The frame's wire bytes (see `encode`).
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        encode(self, &mut out)?;
        Ok(out)
    }
}
