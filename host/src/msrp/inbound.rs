//! What a session does with each request its peer sends (RFC 4975 sections 7.1 to 7.3),
//! sans I/O: a request in, a verdict out (answer with this code, deliver this whole
//! message, route this REPORT). Holds the session's reassembly and the Message-IDs it
//! refused. `session` carries the verdicts out on the socket.

use super::chunks::{Assembled, Progress, Reassembler};
use super::frame::{Flag, Frame, Method, StartLine, Status};
use super::transaction::{self, Refused, Requested};
use crate::sdp::MsrpUri;

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send this transaction response (Failure-Report already applied: it is wanted).
    Respond { code: u16, comment: Option<String> },
    /// Send nothing (the Failure-Report said so).
    Nothing,
    /// A whole message for the session; the response to this (completing) chunk waits
    /// for its disposition.
    Deliver {
        message: Assembled,
        asked: Requested,
    },
    /// A REPORT on one of the session's messages (REPORTs get no response, 7.1.2).
    Report { message_id: String, status: Status },
}

/// The inbound side of one session.
#[derive(Debug)]
pub struct Inbound {
    local: MsrpUri,
    peer_path: Vec<MsrpUri>,
    accept_types: Vec<String>,
    reassembler: Reassembler,
    refused: Refused,
}

impl Inbound {
    pub fn new(
        local: MsrpUri,
        peer_path: Vec<MsrpUri>,
        accept_types: Vec<String>,
        reassembler: Reassembler,
    ) -> Inbound {
        Inbound {
            local,
            peer_path,
            accept_types,
            reassembler,
            refused: Refused::default(),
        }
    }

    /// The verdict on a request (`None` for a response: those are the sender's).
    pub fn on_request(&mut self, frame: &Frame) -> Option<Verdict> {
        let StartLine::Request(method) = &frame.start else {
            return None;
        };
        // RFC 4975 section 7.3: the request must be for this session (481) and from its
        // peer (see `transaction::from_path_matches`).
        if !transaction::to_path_matches(&frame.to_path, &self.local) {
            return Some(answer(frame, 481, "no such session"));
        }
        if !transaction::from_path_matches(&frame.from_path, &self.peer_path) {
            return Some(answer(frame, 403, "From-Path is not the session's peer"));
        }
        Some(match method {
            Method::Send => self.on_send(frame),
            Method::Report => match (frame.message_id(), frame.status()) {
                (Some(id), Some(status)) => Verdict::Report {
                    message_id: id.to_string(),
                    status: status.clone(),
                },
                _ => Verdict::Nothing,
            },
            // RFC 4975 section 12: an unknown method is answered 501.
            Method::Other(_) => answer(frame, 501, "method not implemented"),
        })
    }

    fn on_send(&mut self, frame: &Frame) -> Verdict {
        // An empty SEND (no body, Byte-Range 1-0/0 or none): the peer binding the
        // connection (RFC 4975 section 5.4) or keeping it up. 200, nothing to deliver.
        let empty = frame.body.is_none()
            && frame.flag == Flag::Complete
            && frame.byte_range().is_none_or(|r| r.total == Some(0));
        if empty {
            return ok(frame);
        }
        if let Some(id) = frame.message_id()
            && self.refused.contains(id)
        {
            return answer(frame, 413, "message too large");
        }
        // RFC 4975 section 7.3: a type the session did not offer is refused with 415.
        if let Some(body) = &frame.body
            && !transaction::accepts(&self.accept_types, &body.content_type)
        {
            if let Some(id) = frame.message_id() {
                self.reassembler.discard(id);
            }
            return answer(frame, 415, "Content-Type not accepted");
        }
        match self.reassembler.push(frame) {
            Err(e) => {
                let code = e.status();
                // 413: later chunks of the message get 413 too (section 7.1.1).
                if code == 413
                    && let Some(id) = frame.message_id()
                {
                    self.refused.insert(id);
                }
                tracing::info!(error = %e, code, "MSRP: chunk refused");
                answer(frame, code, &e.to_string())
            }
            // A `#` chunk: the partial message is dropped; the chunk itself is fine.
            Ok(Progress::Pending | Progress::Duplicate { .. } | Progress::Aborted { .. }) => {
                ok(frame)
            }
            Ok(Progress::Complete(message)) => Verdict::Deliver {
                message,
                asked: Requested {
                    success_report: frame.success_report(),
                    failure_report: frame.failure_report(),
                },
            },
        }
    }
}

fn ok(frame: &Frame) -> Verdict {
    respond(frame, 200, None)
}

fn answer(frame: &Frame, code: u16, comment: &str) -> Verdict {
    respond(frame, code, Some(comment.to_string()))
}

/// The response, when the request's Failure-Report wants it (`sends_response`).
fn respond(frame: &Frame, code: u16, comment: Option<String>) -> Verdict {
    if transaction::sends_response(frame.failure_report(), code) {
        Verdict::Respond { code, comment }
    } else {
        Verdict::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msrp::chunks::ChunkLimits;
    use crate::msrp::frame::{Body, ByteRange, FailureReport, TransactId};

    fn uri(s: &str) -> MsrpUri {
        MsrpUri::parse(s).unwrap()
    }

    fn inbound() -> Inbound {
        Inbound::new(
            uri("msrp://127.0.0.1:2855/iwf1;tcp"),
            vec![uri("msrp://192.0.2.1:7777/peer1;tcp")],
            vec!["text/plain".into()],
            Reassembler::new(ChunkLimits {
                max_message_bytes: 20,
                max_in_progress: 4,
            }),
        )
    }

    fn send(id: &str, range: (u64, u64, u64), data: &[u8], flag: Flag) -> Frame {
        Frame::send(
            TransactId::random(),
            vec![uri("msrp://127.0.0.1:2855/iwf1;tcp")],
            vec![uri("msrp://192.0.2.1:7777/peer1;tcp")],
            id,
            ByteRange {
                start: range.0,
                end: Some(range.1),
                total: Some(range.2),
            },
            (false, FailureReport::Yes),
            (!data.is_empty()).then(|| Body {
                content_type: "text/plain".into(),
                data: data.to_vec(),
            }),
            flag,
        )
    }

    fn code(v: Option<Verdict>) -> Option<u16> {
        match v {
            Some(Verdict::Respond { code, .. }) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn empty_send_gets_200_and_no_message() {
        let mut i = inbound();
        let f = send("bind1", (1, 0, 0), b"", Flag::Complete);
        assert_eq!(code(i.on_request(&f)), Some(200));
    }

    #[test]
    fn whole_message_is_delivered_without_response() {
        let mut i = inbound();
        let v = i.on_request(&send("m001", (1, 2, 2), b"hi", Flag::Complete));
        match v {
            Some(Verdict::Deliver { message, asked }) => {
                assert_eq!(message.data, b"hi");
                assert_eq!(asked.failure_report, FailureReport::Yes);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_session_gets_481_and_other_sender_403() {
        let mut i = inbound();
        let mut f = send("m002", (1, 2, 2), b"hi", Flag::Complete);
        f.to_path = vec![uri("msrp://127.0.0.1:2855/other;tcp")];
        assert_eq!(code(i.on_request(&f)), Some(481));
        let mut f = send("m002", (1, 2, 2), b"hi", Flag::Complete);
        f.from_path = vec![uri("msrp://192.0.2.1:7777/intruder;tcp")];
        assert_eq!(code(i.on_request(&f)), Some(403));
    }

    #[test]
    fn unaccepted_type_gets_415() {
        let mut i = inbound();
        let mut f = send("m003", (1, 2, 2), b"hi", Flag::Complete);
        f.body.as_mut().unwrap().content_type = "image/png".into();
        assert_eq!(code(i.on_request(&f)), Some(415));
    }

    #[test]
    fn oversize_gets_413_for_later_chunks_too() {
        let mut i = inbound();
        let first = send("m004", (1, 10, 30), b"0123456789", Flag::More);
        assert_eq!(code(i.on_request(&first)), Some(413));
        let second = send("m004", (11, 20, 30), b"0123456789", Flag::More);
        assert_eq!(code(i.on_request(&second)), Some(413));
    }

    #[test]
    fn failure_report_no_gives_nothing_even_for_errors() {
        let mut i = inbound();
        let mut f = send("m005", (1, 2, 2), b"hi", Flag::Complete);
        f.headers
            .push(crate::msrp::Header::FailureReport(FailureReport::No));
        f.body.as_mut().unwrap().content_type = "image/png".into();
        assert_eq!(i.on_request(&f), Some(Verdict::Nothing));
    }

    #[test]
    fn unknown_method_gets_501_and_report_is_routed() {
        let mut i = inbound();
        let mut f = send("m006", (1, 0, 0), b"", Flag::Complete);
        f.start = StartLine::Request(Method::Other("FETCH".into()));
        assert_eq!(code(i.on_request(&f)), Some(501));
        let report = send("m006", (1, 2, 2), b"hi", Flag::Complete).report(
            TransactId::random(),
            ByteRange {
                start: 1,
                end: Some(2),
                total: Some(2),
            },
            Status {
                code: 200,
                comment: None,
            },
        );
        // The REPORT flows the other way: from the peer, to the IWF.
        let mut report = report;
        std::mem::swap(&mut report.to_path, &mut report.from_path);
        report.from_path = vec![uri("msrp://192.0.2.1:7777/peer1;tcp")];
        match i.on_request(&report) {
            Some(Verdict::Report { message_id, status }) => {
                assert_eq!((message_id.as_str(), status.code), ("m006", 200));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn aborted_message_is_dropped_and_answered_200() {
        let mut i = inbound();
        let first = send("m007", (1, 4, 8), b"0123", Flag::More);
        assert_eq!(code(i.on_request(&first)), Some(200));
        let abort = send("m007", (5, 6, 8), b"45", Flag::Aborted);
        assert_eq!(code(i.on_request(&abort)), Some(200));
        // Completing it now starts afresh: the first half is gone.
        let rest = send("m007", (5, 8, 8), b"4567", Flag::Complete);
        assert_eq!(code(i.on_request(&rest)), Some(200));
    }
}
