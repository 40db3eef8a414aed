//! Framing of SIP messages on a stream transport (RFC 3261 18.3): the header section ends at
//! the first empty line, the body is exactly Content-Length bytes, and Content-Length is
//! mandatory. CRLFs between messages are keep-alives (RFC 5626 3.5.1) and are reported, not
//! parsed. The framer is a pure function of the bytes received so far: it never reads a
//! socket, and a message split at any byte offset frames the same.

use super::message::{Limits, ParseError, Transport, parse};

/// What the buffered bytes hold, from their start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// The first `n` bytes are a whole message: hand them to `message::parse`, then drop them.
    Message(usize),
    /// The first `n` bytes are CR/LF keep-alives: drop them. A double CRLF (a ping) is
    /// answered with a single CRLF (pong) by the connection owner.
    KeepAlive(usize),
    /// Not enough bytes yet for a whole message (or the buffer is empty).
    NeedMore,
    /// The stream cannot be framed: answer (when the header section was read) and close.
    Error(FrameError),
}

/// Why a stream could not be framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// No empty line within `max_header_bytes`.
    HeaderTooLarge { max: usize },
    /// More header lines than `max_headers`.
    TooManyHeaders { max: usize },
    /// Content-Length over `max_body_bytes`.
    BodyTooLarge { length: usize, max: usize },
    /// Header section plus body over `max_message_bytes`.
    MessageTooLarge { length: usize, max: usize },
    /// No Content-Length in the header section.
    MissingContentLength,
    /// Content-Length not a number, or two different ones.
    BadContentLength(String),
    /// A lone CR, or other bytes that are neither a message nor a keep-alive.
    BadFraming(String),
}

impl FrameError {
    /// The status to answer with: 413 for a body too large, 513 for a message (or header
    /// section) over the limit, 400 for bad framing.
    pub fn status(&self) -> u16 {
        match self {
            FrameError::BodyTooLarge { .. } => 413,
            FrameError::HeaderTooLarge { .. }
            | FrameError::TooManyHeaders { .. }
            | FrameError::MessageTooLarge { .. } => 513,
            FrameError::MissingContentLength
            | FrameError::BadContentLength(_)
            | FrameError::BadFraming(_) => 400,
        }
    }

    /// Why, for a `Warning` and the log.
    pub fn reason(&self) -> String {
        match self {
            FrameError::HeaderTooLarge { max } => {
                format!("header section over the limit of {max} bytes")
            }
            FrameError::TooManyHeaders { max } => format!("more than {max} header fields"),
            FrameError::BodyTooLarge { length, max } => {
                format!("body of {length} bytes over the limit of {max}")
            }
            FrameError::MessageTooLarge { length, max } => {
                format!("message of {length} bytes over the limit of {max}")
            }
            FrameError::MissingContentLength => {
                "missing Content-Length on a stream transport".to_string()
            }
            FrameError::BadContentLength(why) => format!("bad Content-Length: {why}"),
            FrameError::BadFraming(why) => format!("bad framing: {why}"),
        }
    }
}

/// Frames the start of `buf` (the unconsumed bytes of one connection).
pub fn frame(buf: &[u8], limits: &Limits) -> Framed {
    let crlf = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if crlf > 0 {
        // Keep-alives are whole CRLF pairs; a lone LF is tolerated, a CR must be followed by LF.
        let mut n = 0;
        while n < crlf {
            match (buf[n], buf.get(n + 1)) {
                (b'\r', Some(b'\n')) => n += 2,
                (b'\r', None) => break,
                (b'\r', Some(_)) => {
                    return Framed::Error(FrameError::BadFraming("CR without LF".into()));
                }
                _ => n += 1,
            }
        }
        return if n == 0 {
            Framed::NeedMore
        } else {
            Framed::KeepAlive(n)
        };
    }
    if buf.is_empty() {
        return Framed::NeedMore;
    }
    let scan = &buf[..buf.len().min(limits.max_header_bytes)];
    let Some(end) = scan.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() >= limits.max_header_bytes {
            return Framed::Error(FrameError::HeaderTooLarge {
                max: limits.max_header_bytes,
            });
        }
        // Header lines beyond the limit: refuse before the empty line arrives.
        if count_fields(scan) > limits.max_headers {
            return Framed::Error(FrameError::TooManyHeaders {
                max: limits.max_headers,
            });
        }
        return Framed::NeedMore;
    };
    let head = &buf[..end];
    let head_len = end + 4;
    let fields = count_fields(head);
    let mut length: Option<usize> = None;
    for line in head.split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"Content-Length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        let n = match std::str::from_utf8(value)
            .ok()
            .filter(|v| !v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()))
        {
            Some(v) => v.parse::<usize>().unwrap_or(usize::MAX),
            None => {
                let shown = String::from_utf8_lossy(&value[..value.len().min(20)]).into_owned();
                return Framed::Error(FrameError::BadContentLength(format!("{shown:?}")));
            }
        };
        if length.is_some_and(|l| l != n) {
            return Framed::Error(FrameError::BadContentLength("two different values".into()));
        }
        length = Some(n);
    }
    if fields > limits.max_headers {
        return Framed::Error(FrameError::TooManyHeaders {
            max: limits.max_headers,
        });
    }
    let Some(length) = length else {
        return Framed::Error(FrameError::MissingContentLength);
    };
    if length > limits.max_body_bytes {
        return Framed::Error(FrameError::BodyTooLarge {
            length,
            max: limits.max_body_bytes,
        });
    }
    let total = head_len + length;
    if total > limits.max_message_bytes {
        return Framed::Error(FrameError::MessageTooLarge {
            length: total,
            max: limits.max_message_bytes,
        });
    }
    if buf.len() >= total {
        Framed::Message(total)
    } else {
        Framed::NeedMore
    }
}

/// The response to a stream that could not be framed, built from its header section when that
/// arrived whole and is a request with a Via (else `None`: close without answering).
pub fn error_response(
    buf: &[u8],
    error: &FrameError,
    limits: &Limits,
    agent: &str,
) -> Option<Vec<u8>> {
    let skip = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let buf = &buf[skip..];
    let scan = &buf[..buf.len().min(limits.max_header_bytes)];
    let end = scan.windows(4).position(|w| w == b"\r\n\r\n")?;
    // Read the header section alone, without the limits that refused the stream.
    let lenient = Limits {
        max_message_bytes: usize::MAX,
        max_headers: usize::MAX,
        max_body_bytes: usize::MAX,
        ..*limits
    };
    let message = match parse(&buf[..end + 4], Transport::Stream, &lenient) {
        Ok(m) => m,
        Err(e) => *e.partial?,
    };
    let refusal = ParseError {
        status: error.status(),
        reason: error.reason(),
        partial: Some(Box::new(message)),
    };
    refusal.response(agent)
}

/// Header fields in a (possibly partial) header section: lines after the start line that are
/// neither empty nor continuations. Never more for a prefix than for the whole, so a limit
/// hit early is hit the same way late.
fn count_fields(head: &[u8]) -> usize {
    head.split(|b| *b == b'\n')
        .skip(1)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| line.first().is_some_and(|b| *b != b' ' && *b != b'\t'))
        .count()
}

/// The bytes of one connection and the messages framed from them, for a driver (and tests)
/// that want owned frames rather than offsets.
#[derive(Debug)]
pub struct StreamBuffer {
    buf: Vec<u8>,
    limits: Limits,
}

/// One event out of a [`StreamBuffer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Message(Vec<u8>),
    /// A CRLF keep-alive of this many bytes.
    KeepAlive(usize),
}

impl StreamBuffer {
    pub fn new(limits: Limits) -> Self {
        StreamBuffer {
            buf: Vec::new(),
            limits,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next event, `Ok(None)` when more bytes are needed. After an error the connection
    /// is to be closed; the buffer is left as it was.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, FrameError> {
        match frame(&self.buf, &self.limits) {
            Framed::Message(n) => Ok(Some(StreamEvent::Message(self.buf.drain(..n).collect()))),
            Framed::KeepAlive(n) => {
                self.buf.drain(..n);
                Ok(Some(StreamEvent::KeepAlive(n)))
            }
            Framed::NeedMore => Ok(None),
            Framed::Error(e) => Err(e),
        }
    }

    /// The bytes received and not yet framed (for [`error_response`] after an error).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes received and not yet framed.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::tests::{MSRP_SDP, cpm_invite};
    use crate::sip::message::{Transport, parse};

    fn limits() -> Limits {
        Limits::default()
    }

    const BYE: &[u8] = b"BYE sip:iwf@192.0.2.99 SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\n\
        From: <tel:+15551234567>;tag=a\r\nTo: <mailto:bob@example.org>;tag=iwf1\r\n\
        Call-ID: c\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nl: 0\r\n\r\n";

    /// Keep-alive, INVITE with SDP, ping, BYE: the stream every split test cuts.
    fn stream() -> Vec<u8> {
        let mut s = b"\r\n\r\n".to_vec();
        s.extend(cpm_invite("tel:+15551234567", "", MSRP_SDP));
        s.extend_from_slice(b"\r\n\r\n");
        s.extend_from_slice(BYE);
        s
    }

    /// Feeds the chunks one by one, draining events after each; returns the messages and the
    /// total keep-alive bytes.
    fn run(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, usize) {
        let mut sb = StreamBuffer::new(limits());
        let (mut msgs, mut ka) = (Vec::new(), 0);
        for chunk in chunks {
            sb.push(chunk);
            while let Some(ev) = sb.next_event().expect("frames") {
                match ev {
                    StreamEvent::Message(m) => msgs.push(m),
                    StreamEvent::KeepAlive(n) => ka += n,
                }
            }
        }
        assert_eq!(sb.pending(), 0);
        (msgs, ka)
    }

    #[test]
    fn whole_stream_frames_two_messages_and_keepalives() {
        let (msgs, ka) = run(&[&stream()]);
        assert_eq!(msgs.len(), 2);
        assert_eq!(ka, 8);
        assert_eq!(msgs[1], BYE);
        let invite = parse(&msgs[0], Transport::Stream, &limits()).unwrap();
        assert_eq!(invite.body, MSRP_SDP.as_bytes());
    }

    #[test]
    fn split_at_every_offset_frames_the_same() {
        let s = stream();
        let whole = run(&[&s]);
        for i in 0..=s.len() {
            assert_eq!(run(&[&s[..i], &s[i..]]), whole, "split at {i}");
        }
    }

    #[test]
    fn byte_by_byte_frames_the_same() {
        let s = stream();
        let chunks: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(run(&chunks), run(&[&s]));
    }

    #[test]
    fn partial_message_needs_more() {
        let s = cpm_invite("mailto:bob@example.org", "", MSRP_SDP);
        assert_eq!(frame(&s[..s.len() - 1], &limits()), Framed::NeedMore);
        assert_eq!(frame(&s, &limits()), Framed::Message(s.len()));
        assert_eq!(frame(b"", &limits()), Framed::NeedMore);
        assert_eq!(frame(b"\r", &limits()), Framed::NeedMore);
    }

    #[test]
    fn missing_content_length_is_400() {
        let e = match frame(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n", &limits()) {
            Framed::Error(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (e.status(), e.reason().as_str()),
            (400, "missing Content-Length on a stream transport")
        );
    }

    #[test]
    fn bad_or_conflicting_content_length_is_400() {
        for head in [
            &b"OPTIONS sip:x SIP/2.0\r\nContent-Length: abc\r\n\r\n"[..],
            b"OPTIONS sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n",
            b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n",
        ] {
            match frame(head, &limits()) {
                Framed::Error(e @ FrameError::BadContentLength(_)) => assert_eq!(e.status(), 400),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn lone_cr_is_bad_framing() {
        assert!(matches!(
            frame(b"\rX", &limits()),
            Framed::Error(FrameError::BadFraming(_))
        ));
    }

    #[test]
    fn body_over_limit_is_413_before_it_arrives() {
        let head = b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 100000\r\n\r\n";
        match frame(head, &limits()) {
            Framed::Error(e @ FrameError::BodyTooLarge { .. }) => assert_eq!(e.status(), 413),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn body_too_large_is_answered_413_from_the_header_section() {
        let l = Limits {
            max_body_bytes: 100,
            ..limits()
        };
        let s = cpm_invite("mailto:bob@example.org", "", MSRP_SDP);
        // Refused as soon as the header section is in, before the body.
        let head = &s[..s.len() - MSRP_SDP.len()];
        let Framed::Error(e) = frame(head, &l) else {
            panic!("must refuse")
        };
        let resp = String::from_utf8(error_response(head, &e, &l, "iwf").unwrap()).unwrap();
        assert!(
            resp.starts_with("SIP/2.0 413 Request Entity Too Large\r\n"),
            "{resp}"
        );
        assert!(resp.contains("CSeq: 1 INVITE\r\n"));
        let warning = format!(
            "Warning: 399 iwf \"body of {} bytes over the limit of 100\"\r\n",
            MSRP_SDP.len()
        );
        assert!(resp.contains(&warning), "{resp}");
    }

    #[test]
    fn missing_content_length_is_answered_400() {
        let s = String::from_utf8(cpm_invite("mailto:bob@example.org", "", ""))
            .unwrap()
            .replace("Content-Length: 0\r\n", "");
        let Framed::Error(e) = frame(s.as_bytes(), &limits()) else {
            panic!("must refuse")
        };
        let resp = error_response(s.as_bytes(), &e, &limits(), "iwf").unwrap();
        assert!(resp.starts_with(b"SIP/2.0 400 Bad Request\r\n"));
        // An incomplete header section cannot be answered.
        assert!(error_response(b"INVITE sip:x SIP/2.0\r\n", &e, &limits(), "iwf").is_none());
    }

    #[test]
    fn message_over_limit_is_513() {
        let l = Limits {
            max_message_bytes: 200,
            ..limits()
        };
        let s = cpm_invite("mailto:bob@example.org", "", MSRP_SDP);
        match frame(&s, &l) {
            Framed::Error(e @ FrameError::MessageTooLarge { .. }) => assert_eq!(e.status(), 513),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn endless_header_section_is_513_without_waiting() {
        let l = Limits {
            max_header_bytes: 256,
            ..limits()
        };
        let mut s = b"INVITE sip:x SIP/2.0\r\nSubject: ".to_vec();
        s.extend(std::iter::repeat_n(b'a', 300));
        match frame(&s, &l) {
            Framed::Error(e @ FrameError::HeaderTooLarge { .. }) => assert_eq!(e.status(), 513),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn too_many_header_lines_is_513_even_before_the_empty_line() {
        let l = Limits {
            max_headers: 5,
            ..limits()
        };
        let mut s = b"INVITE sip:x SIP/2.0\r\n".to_vec();
        for i in 0..10 {
            s.extend(format!("X-{i}: v\r\n").bytes());
        }
        assert!(matches!(
            frame(&s, &l),
            Framed::Error(FrameError::TooManyHeaders { max: 5 })
        ));
        s.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        assert!(matches!(
            frame(&s, &l),
            Framed::Error(FrameError::TooManyHeaders { max: 5 })
        ));
    }

    #[test]
    fn folded_lines_do_not_count_as_fields() {
        let l = Limits {
            max_headers: 2,
            ..limits()
        };
        let s = b"OPTIONS sip:x SIP/2.0\r\nSubject: a\r\n b\r\n c\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(frame(s, &l), Framed::Message(s.len()));
        // Not even while the header section is still arriving.
        for i in 0..s.len() {
            assert_eq!(frame(&s[..i], &l), Framed::NeedMore, "prefix {i}");
        }
    }
}
