//! The rules an MSRP endpoint applies to one transaction, as pure functions (RFC 4975):
//! which responses and REPORTs a request's Failure-Report and Success-Report ask for,
//! what a message's disposition turns into on the wire, which content types a session
//! takes, and whether a request's To-Path and From-Path belong to the session.
//! No I/O and no clock: `connection` applies them.

use std::collections::VecDeque;

use super::frame::{FailureReport, Status};
use crate::sdp::MsrpUri;

/// Does a request with this `Failure-Report` get a transaction response with `code`?
/// RFC 4975 section 7.1.2 (and 5.3): `yes` (the default) every response, `partial` only
/// error responses (no 200), `no` none at all.
pub fn sends_response(failure_report: FailureReport, code: u16) -> bool {
    match failure_report {
        FailureReport::Yes => true,
        FailureReport::Partial => code != 200,
        FailureReport::No => false,
    }
}

/// Does a failure found after the transaction response went out give a failure REPORT?
/// RFC 4975 section 7.1.2: for `yes` and `partial`, never for `no`.
pub fn sends_failure_report(failure_report: FailureReport) -> bool {
    failure_report != FailureReport::No
}

/// Does the sender of a request run the transaction timer (a missing response is a local
/// 408)? RFC 4975 section 7.1.1: only when it asked for every response (`yes`); with
/// `partial` or `no` a 200 never comes back.
pub fn expects_response(failure_report: FailureReport) -> bool {
    failure_report == FailureReport::Yes
}

/// What the session said became of a whole message it was handed (F4: the e-mail went
/// out, or why not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Delivered onwards: 200, and a success REPORT when asked.
    Delivered,
    /// Not delivered: `code` is the MSRP status to answer (4xx/5xx, RFC 4975 section 10;
    /// anything else is sent as 400), `comment` the reason phrase.
    Failed { code: u16, comment: Option<String> },
}

impl Disposition {
    /// A failure with its code and reason.
    pub fn failed(code: u16, comment: impl Into<String>) -> Disposition {
        Disposition::Failed {
            code,
            comment: Some(comment.into()),
        }
    }

    /// The status code and comment this disposition answers with.
    pub fn status(&self) -> (u16, Option<String>) {
        match self {
            Disposition::Delivered => (200, None),
            Disposition::Failed { code, comment } => {
                // RFC 4975 section 7.2: a failure is a 4xx or 5xx class code.
                let code = if (400..=599).contains(code) {
                    *code
                } else {
                    400
                };
                (code, comment.clone())
            }
        }
    }
}

/// The reports a SEND asked for (RFC 4975 section 7.1.1, defaults `no` and `yes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    pub success_report: bool,
    pub failure_report: FailureReport,
}

/// What the endpoint sends once a message's disposition is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The transaction response to the message's last chunk: code and comment.
    pub response: Option<(u16, Option<String>)>,
    /// A REPORT covering the whole message (Byte-Range `1-N/N`).
    pub report: Option<Status>,
}

/// The response and REPORT for a message's `disposition`. `responded`: the last chunk's
/// transaction response already went out (the disposition came after its deadline, so
/// a 200 was sent to keep the sender's transaction alive).
/// - in time: the disposition is the transaction response (section 7.2, F4), sent as
///   Failure-Report allows; a success REPORT (`Status: 000 200`) when Success-Report
///   asked for it and it was delivered (section 7.1.2); no failure REPORT, the error
///   response said it already;
/// - late: only REPORTs remain: success when asked, failure unless Failure-Report `no`.
pub fn on_disposition(disposition: &Disposition, asked: Requested, responded: bool) -> Outcome {
    let (code, comment) = disposition.status();
    let delivered = code == 200;
    let response =
        (!responded && sends_response(asked.failure_report, code)).then(|| (code, comment.clone()));
    let report = if delivered {
        asked.success_report.then_some(Status {
            code: 200,
            comment: None,
        })
    } else if responded && sends_failure_report(asked.failure_report) {
        Some(Status { code, comment })
    } else {
        None
    };
    Outcome { response, report }
}

/// The media type of a Content-Type value: parameters dropped, lower-cased.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Does a session that takes `accept_types` (its `a=accept-types`) take `content_type`?
/// RFC 4975 section 8.6: `*` takes anything, `type/*` any subtype of `type`; media
/// types compare case-insensitively (RFC 2045), parameters do not count.
pub fn accepts(accept_types: &[String], content_type: &str) -> bool {
    let ours = media_type(content_type);
    let major = ours.split('/').next().unwrap_or("");
    accept_types.iter().any(|t| {
        let t = media_type(t);
        t == "*" || t == ours || t.strip_suffix("/*").is_some_and(|m| m == major)
    })
}

/// Are two MSRP URIs the same (RFC 4975 section 6.1)? Scheme, host (case-insensitive:
/// `MsrpUri::parse` lower-cases it), port, session-id (case-sensitive) and transport
/// (case-insensitive) compare; userinfo and URI parameters do not.
pub fn same_uri(a: &MsrpUri, b: &MsrpUri) -> bool {
    a.secure == b.secure
        && a.host == b.host
        && a.port == b.port
        && a.session_id == b.session_id
        && a.transport.eq_ignore_ascii_case(&b.transport)
}

/// Is a request with this To-Path for the session at `local`? RFC 4975 section 7.3: the
/// first To-Path URI is the receiver's own; only its session-id is compared (as CEMA,
/// RFC 6714 section 4.3, does): the peer addresses the IWF by the `a=path` it was given,
/// and the host part may have been rewritten by an ALG or be a name for the listen
/// address. The session-id is 130 random bits, unguessable (section 14.1).
pub fn to_path_matches(to_path: &[MsrpUri], local: &MsrpUri) -> bool {
    to_path
        .first()
        .is_some_and(|u| u.session_id == local.session_id)
}

/// Does a request's From-Path come from the peer the SDP negotiated (`peer_path`, its
/// `a=path`, relays first, the peer's own URI last)? RFC 4975 section 7.3 has the
/// receiver check the From-Path against the session's peer URI.
/// - no relay (both one URI): the whole URI compares (section 6.1);
/// - relays on either side: a relay puts its own URI in front and may be reached by
///   another address than the one the peer wrote, so only the session-id of the last
///   URI (the originating endpoint) compares, as RFC 6714 section 4.3 does; that id is
///   unguessable, so this keeps what the check is for (no injection into a session).
pub fn from_path_matches(from_path: &[MsrpUri], peer_path: &[MsrpUri]) -> bool {
    match (from_path, peer_path) {
        ([from], [peer]) => same_uri(from, peer),
        ([.., from], [.., peer]) => from.session_id == peer.session_id,
        _ => false,
    }
}

/// The Message-IDs of messages refused as too large, so their later chunks get 413 too
/// (RFC 4975 section 7.1.1: the sender stops on the first 413, but chunks already on
/// their way must not start a new partial message). Bounded: oldest forgotten first.
#[derive(Debug, Default)]
pub struct Refused {
    ids: VecDeque<String>,
}

/// How many refused Message-IDs are remembered.
const REFUSED_REMEMBERED: usize = 32;

impl Refused {
    pub fn insert(&mut self, message_id: &str) {
        if self.contains(message_id) {
            return;
        }
        if self.ids.len() == REFUSED_REMEMBERED {
            self.ids.pop_front();
        }
        self.ids.push_back(message_id.to_string());
    }

    pub fn contains(&self, message_id: &str) -> bool {
        self.ids.iter().any(|m| m == message_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> MsrpUri {
        MsrpUri::parse(s).unwrap()
    }

    #[test]
    fn failure_report_yes_answers_everything() {
        assert!(sends_response(FailureReport::Yes, 200));
        assert!(sends_response(FailureReport::Yes, 413));
    }

    #[test]
    fn failure_report_partial_answers_errors_only() {
        assert!(!sends_response(FailureReport::Partial, 200));
        assert!(sends_response(FailureReport::Partial, 415));
        assert!(sends_failure_report(FailureReport::Partial));
        assert!(!expects_response(FailureReport::Partial));
    }

    #[test]
    fn failure_report_no_answers_nothing() {
        assert!(!sends_response(FailureReport::No, 200));
        assert!(!sends_response(FailureReport::No, 400));
        assert!(!sends_failure_report(FailureReport::No));
        assert!(!expects_response(FailureReport::No));
    }

    const DEFAULTS: Requested = Requested {
        success_report: false,
        failure_report: FailureReport::Yes,
    };

    #[test]
    fn delivered_in_time_answers_200_and_success_report_when_asked() {
        let o = on_disposition(&Disposition::Delivered, DEFAULTS, false);
        assert_eq!(o.response, Some((200, None)));
        assert_eq!(o.report, None);
        let asked = Requested {
            success_report: true,
            ..DEFAULTS
        };
        let o = on_disposition(&Disposition::Delivered, asked, false);
        assert_eq!(o.response, Some((200, None)));
        assert_eq!(o.report.map(|s| s.code), Some(200));
    }

    #[test]
    fn failed_in_time_answers_the_error_without_report() {
        let d = Disposition::failed(403, "mail refused");
        let o = on_disposition(&d, DEFAULTS, false);
        assert_eq!(o.response, Some((403, Some("mail refused".into()))));
        assert_eq!(o.report, None);
    }

    #[test]
    fn failed_late_sends_failure_report_unless_no() {
        let d = Disposition::failed(403, "mail refused");
        let o = on_disposition(&d, DEFAULTS, true);
        assert_eq!(o.response, None);
        assert_eq!(o.report.map(|s| s.code), Some(403));
        let no = Requested {
            failure_report: FailureReport::No,
            ..DEFAULTS
        };
        assert_eq!(
            on_disposition(&d, no, true),
            Outcome {
                response: None,
                report: None
            }
        );
    }

    #[test]
    fn partial_gets_no_200_but_gets_the_error() {
        let partial = Requested {
            success_report: true,
            failure_report: FailureReport::Partial,
        };
        let o = on_disposition(&Disposition::Delivered, partial, false);
        assert_eq!(o.response, None);
        assert_eq!(o.report.map(|s| s.code), Some(200));
        let o = on_disposition(&Disposition::failed(413, "big"), partial, false);
        assert_eq!(o.response.map(|r| r.0), Some(413));
    }

    #[test]
    fn a_failure_code_outside_4xx_5xx_is_sent_as_400() {
        let d = Disposition::Failed {
            code: 200,
            comment: None,
        };
        assert_eq!(d.status().0, 400);
    }

    #[test]
    fn accept_types_exact_and_case_insensitive() {
        let types = vec!["message/cpim".to_string(), "text/plain".to_string()];
        assert!(accepts(&types, "text/plain"));
        assert!(accepts(&types, "Text/Plain; charset=utf-8"));
        assert!(accepts(&types, "message/CPIM"));
        assert!(!accepts(&types, "text/html"));
        assert!(!accepts(&types, "image/png"));
    }

    #[test]
    fn accept_types_wildcards() {
        assert!(accepts(&["*".to_string()], "image/png"));
        let text = vec!["text/*".to_string()];
        assert!(accepts(&text, "text/html"));
        assert!(!accepts(&text, "image/png"));
        assert!(!accepts(&text, "textual/x"));
        assert!(!accepts(&[], "text/plain"));
    }

    #[test]
    fn uri_comparison_per_section_6_1() {
        let a = uri("msrp://Host.example.com:2855/abc;tcp");
        assert!(same_uri(
            &a,
            &uri("msrp://bob@host.example.com:2855/abc;TCP;x=y")
        ));
        assert!(!same_uri(&a, &uri("msrp://host.example.com:2855/ABC;tcp")));
        assert!(!same_uri(&a, &uri("msrp://host.example.com:2856/abc;tcp")));
        assert!(!same_uri(&a, &uri("msrps://host.example.com:2855/abc;tcp")));
        assert!(!same_uri(&a, &uri("msrp://other.example.com:2855/abc;tcp")));
    }

    #[test]
    fn to_path_matches_by_session_id() {
        let local = uri("msrp://127.0.0.1:2855/iwfsession;tcp");
        assert!(to_path_matches(
            &[uri("msrp://iwf.example.com:2855/iwfsession;tcp")],
            &local
        ));
        assert!(!to_path_matches(
            &[uri("msrp://127.0.0.1:2855/other;tcp")],
            &local
        ));
        assert!(!to_path_matches(&[], &local));
    }

    #[test]
    fn from_path_without_relay_compares_whole_uri() {
        let peer = [uri("msrp://192.0.2.1:7777/peer1;tcp")];
        assert!(from_path_matches(&peer, &peer));
        assert!(!from_path_matches(
            &[uri("msrp://192.0.2.9:7777/peer1;tcp")],
            &peer
        ));
        assert!(!from_path_matches(
            &[uri("msrp://192.0.2.1:7777/peer2;tcp")],
            &peer
        ));
    }

    #[test]
    fn from_path_through_relays_compares_the_sender_session_id() {
        let peer = [
            uri("msrp://relay.example.com:2855/r1;tcp"),
            uri("msrp://10.0.0.1:7777/peer1;tcp"),
        ];
        let from = [
            uri("msrp://relay2.example.com:2855/r9;tcp"),
            uri("msrp://192.0.2.1:1234/peer1;tcp"),
        ];
        assert!(from_path_matches(&from, &peer));
        let wrong = [
            uri("msrp://relay.example.com:2855/r1;tcp"),
            uri("msrp://10.0.0.1:7777/intruder;tcp"),
        ];
        assert!(!from_path_matches(&wrong, &peer));
    }

    #[test]
    fn refused_ids_are_remembered_and_bounded() {
        let mut r = Refused::default();
        r.insert("big1");
        assert!(r.contains("big1"));
        for i in 0..REFUSED_REMEMBERED {
            r.insert(&format!("m{i}"));
        }
        assert!(!r.contains("big1"));
        assert!(r.contains("m0"));
    }
}
