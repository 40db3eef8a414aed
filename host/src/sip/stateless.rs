//! Requests answered without a transaction or dialog: OPTIONS (RFC 3261 11.2) and methods
//! the IWF does not handle (8.2.1). Pure: a request in, a response out.

use super::message::{Message, ResponseSpec, StartLine, build_response, unsupported_method_status};

/// The methods the IWF takes (RFC 3261 20.5 Allow).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS";
/// The bodies it understands (20.1 Accept): SDP, and multipart for group invitations.
pub const ACCEPT: &str = "application/sdp, multipart/mixed, application/resource-lists+xml";

/// What to do with a request that needs no session.
#[derive(Debug, PartialEq, Eq)]
pub enum Stateless {
    /// Send this response.
    Respond(Vec<u8>),
    /// Not for this layer: a transaction or session handles it.
    PassOn,
    /// Nothing to send (an ACK that matches nothing, a response to nobody).
    Drop,
}

/// Answers OPTIONS with 200 (Allow, Accept, Supported) and methods outside [`ALLOW`]
/// with 405 (a SIP method, with Allow) or 501 (an unknown one).
pub fn answer(request: &Message, to_tag: &str) -> Stateless {
    let StartLine::Request { method, .. } = &request.start else {
        return Stateless::Drop;
    };
    match method.as_str() {
        "OPTIONS" => Stateless::Respond(build_response(
            request,
            &ResponseSpec {
                status: 200,
                to_tag: Some(to_tag),
                extra_headers: &[("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", "")],
                ..ResponseSpec::default()
            },
        )),
        "INVITE" | "ACK" | "CANCEL" | "BYE" => Stateless::PassOn,
        _ => Stateless::Respond(build_response(
            request,
            &ResponseSpec {
                status: unsupported_method_status(method),
                to_tag: Some(to_tag),
                extra_headers: &[("Allow", ALLOW)],
                ..ResponseSpec::default()
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Limits, Transport, parse};

    fn request(method: &str) -> Message {
        let text = format!(
            "{method} sip:iwf@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@example.com>;tag=a\r\n\
             To: <sip:iwf@example.com>\r\n\
             Call-ID: c1\r\n\
             CSeq: 1 {method}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        parse(text.as_bytes(), Transport::Datagram, &Limits::default()).unwrap()
    }

    fn text(s: Stateless) -> String {
        match s {
            Stateless::Respond(bytes) => String::from_utf8(bytes).unwrap(),
            other => panic!("expected a response, got {other:?}"),
        }
    }

    #[test]
    fn options_gets_200_with_allow_and_accept() {
        let r = text(answer(&request("OPTIONS"), "t1"));
        assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
        assert!(
            r.contains("\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"),
            "{r}"
        );
        assert!(r.contains("\r\nAccept: application/sdp"), "{r}");
        assert!(r.contains("To: <sip:iwf@example.com>;tag=t1\r\n"), "{r}");
    }

    #[test]
    fn known_but_unhandled_methods_get_405_with_allow() {
        let r = text(answer(&request("REGISTER"), "t1"));
        assert!(r.starts_with("SIP/2.0 405 "), "{r}");
        assert!(r.contains("\r\nAllow: "), "{r}");
    }

    #[test]
    fn unknown_methods_get_501() {
        assert!(text(answer(&request("FROBNICATE"), "t1")).starts_with("SIP/2.0 501 "));
    }

    #[test]
    fn session_methods_are_passed_on() {
        for m in ["INVITE", "ACK", "CANCEL", "BYE"] {
            assert_eq!(answer(&request(m), "t"), Stateless::PassOn, "{m}");
        }
    }
}
