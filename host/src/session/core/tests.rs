use super::*;
use crate::policy::world::SipStatus;
use crate::policy::{PolicyHost, PolicySource};
use crate::session::registry::{Entry, Registry};
use crate::sip::message::{Limits as SipLimits, parse};
use crate::store::{Changes, SessionRow};
use std::path::PathBuf;

/// Where the test's bytes go: back to the source of a request, or to a next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
enum To {
    Source,
    Hop(String),
}

impl Peer for To {
    fn toward(&self, target: &Target) -> Option<Self> {
        Some(To::Hop(target.to_string()))
    }
}

fn policy(name: &str) -> PolicyHost {
    let engine = crate::policy::testing::engine();
    let path = PathBuf::from(env!("IWF_POLICIES_DIR")).join(format!("{name}.wasm"));
    PolicyHost::new(engine, PolicySource::File(path)).unwrap()
}

fn core() -> Core<To> {
    Core::new(CoreConfig {
        gateway: Gateway {
            sip_domain: "iwf.example.com".into(),
            mail_domain: "mail.example.com".into(),
        },
        contact: "<sip:iwf@192.0.2.10:5060>".into(),
        sent_by: "192.0.2.10:5060".into(),
        msrp_host: Host::Ip("192.0.2.10".parse().unwrap()),
        msrp_port: 2855,
        timers: Timers::default(),
    })
}

const OFFER: &str = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
    m=message 7394 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\n\
    a=path:msrp://192.0.2.1:7394/abc;tcp\r\na=setup:actpass\r\n";

const CONTACT: &str = "Contact: <sip:alice@192.0.2.1:5070>\r\n";

/// The CANCEL of the INVITE with CSeq 1: it matches the INVITE's transaction (same
/// branch, 9.1).
fn cancel_of_the_invite() -> Message {
    let mut cancel = request("CANCEL", 1, None, "", "");
    cancel.headers.iter_mut().for_each(|(n, v)| {
        if n == "Via" {
            *v = v.replace("z9hG4bK-CANCEL-1", "z9hG4bK-INVITE-1");
        }
    });
    cancel
}

/// A request from Alice; `extra` header lines go before Content-Type.
fn request(method: &str, cseq: u32, to_tag: Option<&str>, extra: &str, body: &str) -> Message {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    let text = format!(
        "{method} mailto:bob@example.net SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{method}-{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@ims.example.com>;tag=a1\r\n\
         To: <mailto:bob@example.net>{to_tag}\r\nCall-ID: f1@test\r\nCSeq: {cseq} {method}\r\n\
         {extra}{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    parse(text.as_bytes(), Transport::Datagram, &SipLimits::default()).unwrap()
}

/// A response from the peer to the IWF's request `sent`.
fn response_to(sent: &str, status: u16) -> Message {
    let mut text = format!("SIP/2.0 {status} Whatever\r\n");
    for line in sent.split("\r\n").skip(1) {
        if ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
            .iter()
            .any(|h| line.starts_with(h))
        {
            text.push_str(line);
            text.push_str("\r\n");
        }
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    parse(text.as_bytes(), Transport::Datagram, &SipLimits::default()).unwrap()
}

/// The bytes sent, in order.
fn sent(effects: &[Effect<To>]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { bytes, .. } => Some(String::from_utf8_lossy(bytes).to_string()),
            _ => None,
        })
        .collect()
}

/// The status lines (or request lines) sent, in order.
fn statuses(effects: &[Effect<To>]) -> Vec<String> {
    sent(effects)
        .iter()
        .map(|s| s.split("\r\n").next().unwrap().to_string())
        .collect()
}

/// The decision asked for, if any.
fn decide(effects: &[Effect<To>]) -> Option<(SessionKey, PolicySession)> {
    effects.iter().find_map(|e| match e {
        Effect::Decide { key, session } => Some((key.clone(), (**session).clone())),
        _ => None,
    })
}

/// INVITE (with `extra` header lines) in, 100 out and a decision asked for: pending.
fn invite_with(core: &mut Core<To>, extra: &str, now: Instant) -> SessionKey {
    let invite = request("INVITE", 1, None, extra, OFFER);
    let effects = core.on_request(invite, Transport::Datagram, To::Source, now);
    assert_eq!(statuses(&effects), ["SIP/2.0 100 Trying"]);
    let (key, facts) = decide(&effects).expect("a decision is asked for");
    assert_eq!(facts.request_uri, "mailto:bob@example.net");
    key
}

fn invite(core: &mut Core<To>, now: Instant) -> SessionKey {
    invite_with(core, CONTACT, now)
}

/// Accepted on behalf; returns the 200.
fn accept(core: &mut Core<To>, key: &SessionKey, now: Instant) -> String {
    let effects = core.on_decision(key, InviteDecision::AcceptOnBehalf, now);
    assert_eq!(statuses(&effects), ["SIP/2.0 200 OK"]);
    sent(&effects).remove(0)
}

/// INVITE, accept-on-behalf, ACK: a live session; returns its key and the 200.
fn live(core: &mut Core<To>, now: Instant) -> (SessionKey, String) {
    let key = invite(core, now);
    let ok = accept(core, &key, now);
    let ack = request("ACK", 1, Some(&key.local_tag), "", "");
    assert!(
        core.on_request(ack, Transport::Datagram, To::Source, now)
            .is_empty()
    );
    (key, ok)
}

/// A request within the session `key`.
fn in_dialog(
    core: &mut Core<To>,
    key: &SessionKey,
    method: &str,
    cseq: u32,
    extra: &str,
    body: &str,
    now: Instant,
) -> Vec<Effect<To>> {
    let request = request(method, cseq, Some(&key.local_tag), extra, body);
    core.on_request(request, Transport::Datagram, To::Source, now)
}

fn body_of(message: &str) -> &str {
    message.split_once("\r\n\r\n").unwrap().1
}

#[test]
fn f1_invite_pending_then_accept_ack_bye_frees_the_session() {
    let (mut core, now) = (core(), Instant::now());
    let key = invite(&mut core, now);
    assert_eq!(core.sessions(), 1, "pending");
    // Pending: nothing more is sent until the decision comes back.
    assert!(core.poll_timeout().is_none());
    let ok = accept(&mut core, &key, now);
    assert!(ok.contains(&format!(";tag={}\r\n", key.local_tag)), "{ok}");
    assert!(
        ok.contains("Contact: <sip:iwf@192.0.2.10:5060>\r\n"),
        "{ok}"
    );
    assert!(
        ok.contains("a=path:msrp://192.0.2.10:2855/") && ok.contains("a=setup:active"),
        "{ok}"
    );
    let ack = request("ACK", 1, Some(&key.local_tag), "", "");
    assert!(
        core.on_request(ack, Transport::Datagram, To::Source, now)
            .is_empty()
    );
    // Live: no 2xx retransmission is due any more.
    let later = now + Duration::from_secs(2);
    assert!(
        statuses(&core.handle_timeout(later))
            .iter()
            .all(|s| !s.starts_with("SIP/2.0 200"))
    );
    let effects = in_dialog(&mut core, &key, "BYE", 2, "", "", later);
    assert_eq!(statuses(&effects), ["SIP/2.0 200 OK"]);
    assert_eq!(core.sessions(), 0);
}

#[test]
fn the_200_is_retransmitted_until_the_ack_then_a_bye_ends_the_session() {
    let (mut core, start) = (core(), Instant::now());
    let key = invite(&mut core, start);
    accept(&mut core, &key, start);
    // 13.3.1.4: T1, then doubling up to T2; no ACK in 64*T1: BYE.
    let mut resent = Vec::new();
    let mut bye = None;
    while let Some(at) = core.poll_timeout() {
        let effects = core.handle_timeout(at);
        for (s, e) in sent(&effects).into_iter().zip(&effects) {
            if s.starts_with("SIP/2.0 200") {
                resent.push((at - start).as_millis());
            } else if s.starts_with("BYE ") {
                let Effect::Send { peer, .. } = e else {
                    unreachable!()
                };
                bye = Some((at - start, s, peer.clone()));
            }
        }
        if bye.is_some() {
            break;
        }
    }
    assert_eq!(resent[..5], [500, 1500, 3500, 7500, 11500]);
    let (at, bye, peer) = bye.expect("a BYE after 64*T1");
    assert_eq!(at, Duration::from_secs(32));
    assert!(
        bye.starts_with("BYE sip:alice@192.0.2.1:5070 SIP/2.0\r\n"),
        "{bye}"
    );
    assert!(
        bye.contains("Reason: SIP;cause=408;text=\"no ACK for the 2xx\"\r\n"),
        "{bye}"
    );
    assert_eq!(
        peer,
        To::Hop("192.0.2.1:5070".into()),
        "to the remote target"
    );
    assert_eq!(core.sessions(), 1, "held until the BYE is done");
    let now = start + Duration::from_secs(33);
    core.on_response(response_to(&bye, 200), now);
    assert_eq!(core.sessions(), 0);
}

#[test]
fn end_session_sends_one_bye_with_reason_along_the_loose_route_set() {
    let (mut core, now) = (core(), Instant::now());
    let rr = "Record-Route: <sip:192.0.2.50:5090;lr>, <sip:p2.example.com;lr>\r\n";
    let key = invite_with(&mut core, &format!("{rr}{CONTACT}"), now);
    let ok = accept(&mut core, &key, now);
    assert!(
        ok.contains(&format!("\r\n{rr}")),
        "12.1.1: Record-Route copied: {ok}"
    );
    let reason = EndReason {
        cause: 200,
        text: "the e-mail user left".into(),
    };
    let effects = core.end_session(&key, &reason, now);
    let bye = sent(&effects).remove(0);
    let Effect::Send { peer, .. } = &effects[0] else {
        unreachable!()
    };
    assert_eq!(
        *peer,
        To::Hop("192.0.2.50:5090".into()),
        "to the first route"
    );
    assert!(
        bye.starts_with("BYE sip:alice@192.0.2.1:5070 SIP/2.0\r\n"),
        "{bye}"
    );
    assert!(
        bye.contains("Route: <sip:192.0.2.50:5090;lr>\r\nRoute: <sip:p2.example.com;lr>\r\n"),
        "{bye}"
    );
    assert!(
        bye.contains("Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK"),
        "{bye}"
    );
    assert!(bye.contains(&format!(
        "From: <mailto:bob@example.net>;tag={}\r\n",
        key.local_tag
    )));
    assert!(
        bye.contains("To: <sip:alice@ims.example.com>;tag=a1\r\n"),
        "{bye}"
    );
    assert!(bye.contains("CSeq: 1 BYE\r\n"), "{bye}");
    assert!(bye.contains("Reason: SIP;cause=200;text=\"the e-mail user left\"\r\n"));
    // Ending: no second BYE; a crossing BYE is answered; the ACK changes nothing.
    assert!(core.end_session(&key, &reason, now).is_empty());
    let crossing = in_dialog(&mut core, &key, "BYE", 2, "", "", now);
    assert_eq!(statuses(&crossing), ["SIP/2.0 200 OK"]);
    assert_eq!(core.sessions(), 1);
    // 481 (or any final response) ends the BYE and frees the session.
    core.on_response(response_to(&bye, 481), now);
    assert_eq!(core.sessions(), 0);
}

#[test]
fn a_bye_without_an_answer_frees_the_session_at_timer_f() {
    let (mut core, now) = (core(), Instant::now());
    let (key, _) = live(&mut core, now);
    let reason = EndReason {
        cause: 200,
        text: "invitation expired".into(),
    };
    core.end_session(&key, &reason, now);
    let mut retransmitted = 0;
    while let Some(at) = core.poll_timeout() {
        retransmitted += statuses(&core.handle_timeout(at))
            .iter()
            .filter(|s| s.starts_with("BYE "))
            .count();
        if core.sessions() == 0 {
            assert_eq!(at - now, Duration::from_secs(32), "Timer F = 64*T1");
            break;
        }
    }
    assert_eq!(core.sessions(), 0);
    assert!(retransmitted >= 5, "Timer E retransmits over UDP");
}

#[test]
fn reinvite_with_the_same_offer_or_none_gets_the_same_answer_and_refreshes_the_target() {
    let (mut core, now) = (core(), Instant::now());
    let (key, ok) = live(&mut core, now);
    // The same media under a new o= version (RFC 3264 8) and a new Contact.
    let offer = OFFER.replace("o=a 1 1", "o=a 1 2");
    let moved = "Contact: <sip:alice@192.0.2.99:6000>\r\n";
    let effects = in_dialog(&mut core, &key, "INVITE", 2, moved, &offer, now);
    assert_eq!(statuses(&effects), ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]);
    let again = sent(&effects).remove(1);
    assert_eq!(body_of(&again), body_of(&ok), "same answer, o= unchanged");
    assert!(again.contains("CSeq: 2 INVITE\r\n"));
    // Retransmitted until its ACK (CSeq 2); a re-INVITE meanwhile is 500 + Retry-After.
    let effects = core.handle_timeout(now + Duration::from_millis(500));
    assert_eq!(statuses(&effects), ["SIP/2.0 200 OK"]);
    let effects = in_dialog(&mut core, &key, "INVITE", 3, "", "", now);
    assert_eq!(statuses(&effects)[1], "SIP/2.0 500 Server Internal Error");
    assert!(sent(&effects)[1].contains("Retry-After: 1\r\n"));
    let ack = in_dialog(&mut core, &key, "ACK", 2, "", "", now);
    assert!(ack.is_empty());
    // No offer: the 200 offers the same description.
    let effects = in_dialog(&mut core, &key, "INVITE", 4, "", "", now);
    assert_eq!(body_of(&sent(&effects)[1]), body_of(&ok));
    in_dialog(&mut core, &key, "ACK", 4, "", "", now);
    // Live: no 2xx retransmission, no BYE for a missing ACK.
    while let Some(at) = core
        .poll_timeout()
        .filter(|t| *t < now + Duration::from_secs(40))
    {
        let out = statuses(&core.handle_timeout(at));
        assert!(
            out.iter()
                .all(|s| !s.starts_with("SIP/2.0 200") && !s.starts_with("BYE")),
            "{out:?}"
        );
    }
    assert_eq!(core.sessions(), 1);
    // The refreshed target receives the IWF's BYE (12.2.2).
    let reason = EndReason {
        cause: 200,
        text: "done".into(),
    };
    let effects = core.end_session(&key, &reason, now);
    let bye = sent(&effects).remove(0);
    assert!(
        bye.starts_with("BYE sip:alice@192.0.2.99:6000 SIP/2.0\r\n"),
        "{bye}"
    );
}

#[test]
fn reinvite_changing_the_media_is_488_and_the_session_goes_on() {
    let (mut core, now) = (core(), Instant::now());
    let (key, _) = live(&mut core, now);
    let offer = OFFER.replace("7394 TCP/MSRP", "7400 TCP/MSRP");
    let effects = in_dialog(&mut core, &key, "INVITE", 2, "", &offer, now);
    assert_eq!(statuses(&effects)[1], "SIP/2.0 488 Not Acceptable Here");
    assert!(sent(&effects)[1].contains("Warning: 399 cpm-iwf \"changing the media"));
    assert_eq!(core.sessions(), 1);
    let effects = in_dialog(&mut core, &key, "BYE", 3, "", "", now);
    assert_eq!(statuses(&effects), ["SIP/2.0 200 OK"]);
    assert_eq!(core.sessions(), 0);
}

#[test]
fn an_in_dialog_request_with_an_old_cseq_is_500_and_the_session_goes_on() {
    let (mut core, now) = (core(), Instant::now());
    let (key, _) = live(&mut core, now);
    // 12.2.2: not above the INVITE's CSeq 1.
    let mut bye = request("BYE", 1, Some(&key.local_tag), "", "");
    bye.headers.iter_mut().for_each(|(n, v)| {
        if n == "Via" {
            *v = v.replace("BYE-1", "BYE-old");
        }
    });
    let effects = core.on_request(bye, Transport::Datagram, To::Source, now);
    assert_eq!(statuses(&effects), ["SIP/2.0 500 Server Internal Error"]);
    assert!(sent(&effects)[0].contains("out of order"));
    assert_eq!(core.sessions(), 1);
    let effects = in_dialog(&mut core, &key, "BYE", 2, "", "", now);
    assert_eq!(statuses(&effects), ["SIP/2.0 200 OK"]);
}

#[test]
fn a_request_from_another_remote_tag_or_without_contact_finds_no_dialog() {
    let (mut core, now) = (core(), Instant::now());
    let (key, _) = live(&mut core, now);
    let mut bye = request("BYE", 2, Some(&key.local_tag), "", "");
    bye.headers.iter_mut().for_each(|(n, v)| {
        if n == "From" {
            *v = v.replace("tag=a1", "tag=other");
        }
    });
    let effects = core.on_request(bye, Transport::Datagram, To::Source, now);
    assert_eq!(
        statuses(&effects),
        ["SIP/2.0 481 Call/Transaction Does Not Exist"]
    );
    // 8.1.1.8: an INVITE without Contact makes no dialog.
    let mut core = self::core();
    let invite = request("INVITE", 1, None, "", OFFER);
    let effects = core.on_request(invite, Transport::Datagram, To::Source, now);
    assert_eq!(statuses(&effects)[1], "SIP/2.0 400 Bad Request");
    assert!(sent(&effects)[1].contains("without Contact"));
    assert_eq!(core.sessions(), 0);
}

#[test]
fn cancel_while_pending_answers_487_and_a_late_decision_is_dropped() {
    let (mut core, now) = (core(), Instant::now());
    let key = invite(&mut core, now);
    // The CANCEL matches the INVITE's transaction (same branch, 9.1).
    let cancel = cancel_of_the_invite();
    let effects = core.on_request(cancel, Transport::Datagram, To::Source, now);
    assert_eq!(
        statuses(&effects),
        ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"]
    );
    assert!(sent(&effects)[1].contains(&format!(";tag={}\r\n", key.local_tag)));
    assert_eq!(core.sessions(), 0, "the cancelled INVITE holds no session");
    let late = core.on_decision(&key, InviteDecision::AcceptOnBehalf, now);
    assert!(late.is_empty(), "a decision after the CANCEL is dropped");
    assert_eq!(core.sessions(), 0);
}

#[test]
fn end_session_on_a_pending_invite_answers_480_and_drops_the_late_decision() {
    let (mut core, now) = (core(), Instant::now());
    let key = invite(&mut core, now);
    let reason = EndReason {
        cause: 480,
        text: "gateway shutting down".into(),
    };
    let effects = core.end_session(&key, &reason, now);
    assert_eq!(statuses(&effects), ["SIP/2.0 480 Temporarily Unavailable"]);
    assert!(sent(&effects)[0].contains("Warning: 399 cpm-iwf \"gateway shutting down\""));
    assert_eq!(core.sessions(), 0);
    let late = core.on_decision(&key, InviteDecision::AcceptOnBehalf, now);
    assert!(late.is_empty());
    assert!(
        core.end_session(&key, &reason, now).is_empty(),
        "nothing held"
    );
}

/// The invitation asked of the mail side, if any.
fn mail_invitation(effects: &[Effect<To>]) -> Option<(SessionKey, MailFacts)> {
    effects.iter().find_map(|e| match e {
        Effect::MailInvitation { key, mail } => Some((key.clone(), (**mail).clone())),
        _ => None,
    })
}

/// The mail side told the session is over: (key, whether to notify).
fn session_closed(effects: &[Effect<To>]) -> Vec<(SessionKey, bool)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SessionClosed { key, notify } => {
                Some((key.clone(), matches!(notify, Notify::Yes { .. })))
            }
            _ => None,
        })
        .collect()
}

/// INVITE (with a SIP Date), ask-user: pending on the invitation mail.
fn invite_asking_the_user(core: &mut Core<To>, now: Instant) -> SessionKey {
    let date = "Date: Thu, 26 Nov 2026 08:30:00 GMT\r\n";
    let key = invite_with(core, &format!("{CONTACT}{date}"), now);
    let effects = core.on_decision(&key, InviteDecision::AskUser, now);
    assert!(
        sent(&effects).is_empty(),
        "nothing answered before the mail's outcome"
    );
    let (mailed, facts) = mail_invitation(&effects).expect("the invitation is mailed");
    assert_eq!(mailed, key);
    assert_eq!(facts.session.request_uri, "mailto:bob@example.net");
    assert_eq!(
        facts.sip_date.unwrap().to_rfc2822(),
        "Thu, 26 Nov 2026 08:30:00 +0000",
        "AA2 Date: the SIP Date goes to the mail side"
    );
    assert_eq!(core.sessions(), 1, "pending on the invitation");
    assert!(core.poll_timeout().is_none());
    key
}

#[test]
fn f2_ask_user_mails_then_250_is_200_with_the_sdp_answer_ack_invited_and_bye_closes_the_mail() {
    let (mut core, start) = (core(), Instant::now());
    let key = invite_asking_the_user(&mut core, start);
    // A late policy decision for the same INVITE changes nothing.
    assert!(
        core.on_decision(&key, InviteDecision::AcceptOnBehalf, start)
            .is_empty()
    );
    let at = start + Duration::from_millis(300);
    let effects = core.on_invitation(&key, Ok(()), at);
    assert_eq!(statuses(&effects), ["SIP/2.0 200 OK"], "step 5a");
    let ok = sent(&effects).remove(0);
    assert!(
        ok.contains("a=path:msrp://192.0.2.10:2855/") && ok.contains("a=setup:active"),
        "AA3 Body: the SDP answer, as for accept-on-behalf: {ok}"
    );
    assert!(ok.contains("Contact: <sip:iwf@192.0.2.10:5060>\r\n"));
    // Retransmitted from the outcome's instant until the ACK (13.3.1.4).
    assert_eq!(core.poll_timeout(), Some(at + Duration::from_millis(500)));
    let ack = request("ACK", 1, Some(&key.local_tag), "", "");
    assert!(
        core.on_request(ack, Transport::Datagram, To::Source, at)
            .is_empty()
    );
    // Invited: no retransmission, no BYE for a missing ACK.
    let later = at + Duration::from_secs(40);
    assert!(sent(&core.handle_timeout(later)).is_empty());
    // A re-INVITE refresh keeps it Invited; its ACK too.
    let effects = in_dialog(&mut core, &key, "INVITE", 2, "", "", later);
    assert_eq!(statuses(&effects), ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]);
    in_dialog(&mut core, &key, "ACK", 2, "", "", later);
    assert!(sent(&core.handle_timeout(later + Duration::from_secs(40))).is_empty());
    // F6: 200 at once, then the mail side notifies (CC2) and QUITs.
    let effects = in_dialog(&mut core, &key, "BYE", 3, "", "", later);
    assert_eq!(statuses(&effects), ["SIP/2.0 200 OK"]);
    assert_eq!(session_closed(&effects), [(key, true)]);
    assert!(
        matches!(effects[0], Effect::Send { .. }),
        "the 200 goes first"
    );
    assert_eq!(core.sessions(), 0);
}

#[test]
fn f2_an_invitation_refused_answers_the_aa3_status_with_the_smtp_warning() {
    let (mut core, now) = (core(), Instant::now());
    let key = invite_asking_the_user(&mut core, now);
    let status = SipStatus {
        code: 488,
        reason: "Mail Refused".into(),
    };
    let warning = "SMTP rcpt-to failure (permanent): 550 5.1.1: no such user".to_string();
    let effects = core.on_invitation(&key, Err((status, warning)), now);
    assert_eq!(
        statuses(&effects),
        ["SIP/2.0 488 Mail Refused"],
        "AA3: the policy's code and reason phrase"
    );
    let refused = sent(&effects).remove(0);
    assert!(
        refused.contains(
            "Warning: 399 cpm-iwf \"SMTP rcpt-to failure (permanent): 550 5.1.1: no such user\"\r\n"
        ),
        "{refused}"
    );
    assert!(refused.contains(&format!(";tag={}\r\n", key.local_tag)));
    assert!(!refused.contains("application/sdp"), "AA3 Body: none");
    assert!(
        session_closed(&effects).is_empty(),
        "the mail side let go itself"
    );
    assert_eq!(core.sessions(), 0);
    assert!(core.on_invitation(&key, Ok(()), now).is_empty());
}

#[test]
fn f2_cancel_while_mailing_is_487_the_mail_side_closes_and_the_late_outcome_is_dropped() {
    let (mut core, now) = (core(), Instant::now());
    let key = invite_asking_the_user(&mut core, now);
    let cancel = cancel_of_the_invite();
    let effects = core.on_request(cancel, Transport::Datagram, To::Source, now);
    assert_eq!(
        statuses(&effects),
        ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"]
    );
    assert_eq!(session_closed(&effects), [(key.clone(), true)]);
    assert_eq!(core.sessions(), 0);
    let late = core.on_invitation(&key, Ok(()), now + Duration::from_secs(1));
    assert!(late.is_empty(), "no 200 after the 487");
}

#[test]
fn f2_the_iwf_ending_an_invited_session_sends_bye_then_the_mail_side_quits_without_notice() {
    let (mut core, now) = (core(), Instant::now());
    let key = invite_asking_the_user(&mut core, now);
    core.on_invitation(&key, Ok(()), now);
    in_dialog(&mut core, &key, "ACK", 1, "", "", now);
    let reason = EndReason {
        cause: 200,
        text: "invitation expired".into(),
    };
    let effects = core.end_session(&key, &reason, now);
    let bye = sent(&effects).remove(0);
    assert!(bye.starts_with("BYE sip:alice@192.0.2.1:5070 SIP/2.0\r\n"));
    assert!(
        session_closed(&effects).is_empty(),
        "held until the BYE is done"
    );
    let effects = core.on_response(response_to(&bye, 200), now);
    assert_eq!(session_closed(&effects), [(key.clone(), false)]);
    assert_eq!(core.sessions(), 0);

    // Pending on the mail: 480 with the reason, and the mail side closes.
    let mut core = self::core();
    let key = invite_asking_the_user(&mut core, now);
    let effects = core.end_session(&key, &reason, now);
    assert_eq!(statuses(&effects), ["SIP/2.0 480 Temporarily Unavailable"]);
    assert_eq!(session_closed(&effects), [(key, false)]);
}

#[test]
fn f1_the_200_starts_the_mail_side_and_opens_the_chat_and_bye_closes_both() {
    let (mut core, now) = (core(), Instant::now());
    let key = invite(&mut core, now);
    let effects = core.on_decision(&key, InviteDecision::AcceptOnBehalf, now);
    let accepted: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::MailAccepted { key, mail } => Some((key.clone(), mail.session.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].0, key);
    assert_eq!(accepted[0].1.request_uri, "mailto:bob@example.net");
    let msrp = effects
        .iter()
        .find_map(|e| match e {
            Effect::ChatOpen { key: k, msrp, .. } if *k == key => Some(msrp.clone()),
            _ => None,
        })
        .expect("the chat opens with the 200");
    // The offer is actpass: the IWF connects to the peer's path (RFC 6135 4.2).
    assert_eq!(msrp.role, msrp::Role::Active);
    assert_eq!(
        msrp.peer_path[0].to_string(),
        "msrp://192.0.2.1:7394/abc;tcp"
    );
    assert_eq!(msrp.local_path.port, Some(2855));
    let ack = request("ACK", 1, Some(&key.local_tag), "", "");
    core.on_request(ack, Transport::Datagram, To::Source, now);
    let effects = in_dialog(&mut core, &key, "BYE", 2, "", "", now);
    assert_eq!(statuses(&effects), ["SIP/2.0 200 OK"]);
    assert_eq!(session_closed(&effects), [(key, true)]);
}

#[test]
fn refuse_answers_the_policys_status_and_ask_user_mails_the_invitation() {
    let (mut core, now) = (core(), Instant::now());
    let key = invite(&mut core, now);
    let refuse = InviteDecision::Refuse(SipStatus {
        code: 603,
        reason: "Decline".into(),
    });
    let effects = core.on_decision(&key, refuse, now);
    assert_eq!(statuses(&effects), ["SIP/2.0 603 Decline"]);
    assert_eq!(core.sessions(), 0);

    let mut core = self::core();
    invite_asking_the_user(&mut core, now);
}

#[test]
fn bye_for_no_session_is_481_and_the_default_policy_decides_ask_user() {
    let (mut core, now) = (core(), Instant::now());
    let bye = request("BYE", 2, Some("nope"), "", "");
    let effects = core.on_request(bye, Transport::Datagram, To::Source, now);
    assert_eq!(
        statuses(&effects),
        ["SIP/2.0 481 Call/Transaction Does Not Exist"]
    );
    // The facts the core hands out are what the policy decides on.
    let invite = request("INVITE", 1, None, CONTACT, OFFER);
    let effects = core.on_request(invite, Transport::Datagram, To::Source, now);
    let (key, facts) = decide(&effects).unwrap();
    let decision = policy("default").on_invite(&facts).value;
    assert!(matches!(decision, InviteDecision::AskUser));
    let effects = core.on_decision(&key, decision, now);
    assert!(mail_invitation(&effects).is_some());
    assert_eq!(core.sessions(), 1);
}

/// The registry after the core's journal of this turn is applied.
fn shown(core: &mut Core<To>, registry: &Registry) -> Vec<Entry> {
    registry.apply(core.journal());
    let page = registry.page(None, 10);
    page.sessions.into_iter().map(|(_, entry)| entry).collect()
}

fn ladder(entry: &Entry) -> Vec<String> {
    entry
        .ladder
        .events()
        .map(|e| e.what.as_str().into())
        .collect()
}

#[test]
fn the_registry_shows_an_f1_session_s_ladder_and_phase_and_forgets_it_at_the_bye() {
    let (mut core, registry, now) = (core(), Registry::default(), Instant::now());
    let (key, _) = live(&mut core, now);
    let live = shown(&mut core, &registry);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].phase, Shown::Live);
    assert_eq!(&*live[0].email_user, "bob@example.net");
    assert_eq!(&*live[0].cpm_user, "sip:alice@ims.example.com");
    assert_eq!(
        ladder(&live[0]),
        [
            "INVITE received: 100 Trying sent",
            "200 OK sent (SDP answer)",
            "ACK received"
        ]
    );
    in_dialog(&mut core, &key, "BYE", 2, "", "", now);
    assert!(shown(&mut core, &registry).is_empty());
}

#[test]
fn the_registry_forgets_a_session_whichever_way_it_ends() {
    let (registry, now) = (Registry::default(), Instant::now());
    let decline = SipStatus {
        code: 603,
        reason: "Decline".into(),
    };
    let reason = EndReason {
        cause: 200,
        text: "the e-mail user left".into(),
    };

    let mut core = self::core();
    let key = invite(&mut core, now);
    assert_eq!(shown(&mut core, &registry)[0].phase, Shown::PendingDecision);
    core.on_decision(&key, InviteDecision::Refuse(decline.clone()), now);
    assert!(shown(&mut core, &registry).is_empty(), "refused");

    let mut core = self::core();
    invite(&mut core, now);
    core.on_request(cancel_of_the_invite(), Transport::Datagram, To::Source, now);
    assert!(shown(&mut core, &registry).is_empty(), "cancelled");

    let mut core = self::core();
    let key = invite_asking_the_user(&mut core, now);
    assert_eq!(
        shown(&mut core, &registry)[0].phase,
        Shown::PendingInvitation
    );
    let warning = "SMTP rcpt-to failure (permanent): 550".to_string();
    core.on_invitation(&key, Err((decline, warning)), now);
    assert!(shown(&mut core, &registry).is_empty(), "invitation refused");

    let mut core = self::core();
    let key = invite_asking_the_user(&mut core, now);
    core.end_session(&key, &reason, now);
    assert!(
        shown(&mut core, &registry).is_empty(),
        "ended while pending"
    );

    let mut core = self::core();
    let key = invite_asking_the_user(&mut core, now);
    core.on_invitation(&key, Ok(()), now);
    in_dialog(&mut core, &key, "ACK", 1, "", "", now);
    assert_eq!(shown(&mut core, &registry)[0].phase, Shown::AwaitingAnswer);
    let bye = sent(&core.end_session(&key, &reason, now)).remove(0);
    let ending = shown(&mut core, &registry);
    assert_eq!(ending[0].phase, Shown::Ending);
    assert_eq!(
        ladder(&ending[0]),
        [
            "INVITE received: 100 Trying sent",
            "200 OK sent (SDP answer)",
            "ACK received",
            "BYE sent (200: the e-mail user left)"
        ]
    );
    core.on_response(response_to(&bye, 200), now);
    assert!(shown(&mut core, &registry).is_empty(), "ended by the IWF");
}

/// The rows a turn would commit.
fn committed(core: &mut Core<To>) -> Changes {
    core.changes()
}

/// An F2 session, invitation mailed, 200 sent and ACKed: Invited, the IWF connecting.
fn invited(core: &mut Core<To>, now: Instant) -> SessionKey {
    let key = invite_asking_the_user(core, now);
    assert!(committed(core).is_empty(), "a pending INVITE is not stored");
    let effects = core.on_invitation(&key, Ok(()), now);
    assert_eq!(statuses(&effects), ["SIP/2.0 200 OK"]);
    let saved = committed(core).saved;
    assert_eq!(saved.len(), 1, "the 200's turn stores the session");
    assert_eq!(saved[0].phase, "awaiting-ack");
    assert!(
        saved[0].invite.is_some(),
        "the first save writes the INVITE"
    );
    let ack = request("ACK", 1, Some(&key.local_tag), "", "");
    core.on_request(ack, Transport::Datagram, To::Source, now);
    key
}

#[test]
fn a_session_is_stored_from_its_200_and_forgotten_when_freed() {
    let (mut core, now) = (core(), Instant::now());
    let key = invited(&mut core, now);
    let changes = committed(&mut core);
    assert_eq!(changes.saved.len(), 1);
    assert_eq!(changes.saved[0].phase, "invited", "the ACK moved it");
    assert!(
        changes.saved[0].invite.is_none(),
        "the row has the INVITE already"
    );
    assert!(committed(&mut core).is_empty(), "nothing changed since");
    in_dialog(&mut core, &key, "BYE", 2, "", "", now);
    let changes = committed(&mut core);
    assert!(changes.saved.is_empty());
    assert_eq!(changes.forgotten.len(), 1);
    // Refused before any 200: never stored, nothing to forget.
    let mut core = self::core();
    let refused = invite(&mut core, now);
    let status = SipStatus {
        code: 486,
        reason: String::new(),
    };
    core.on_decision(&refused, InviteDecision::Refuse(status), now);
    assert!(committed(&mut core).is_empty());
}

#[test]
fn an_invited_session_restored_waits_then_leave_sends_bye_in_the_original_dialog() {
    let (mut before, now) = (core(), Instant::now());
    let key = invited(&mut before, now);
    // A re-INVITE moves the remote CSeq and the target; a restored dialog keeps both.
    let refresh = "Contact: <sip:alice@192.0.2.7:5070>\r\n";
    in_dialog(&mut before, &key, "INVITE", 2, refresh, "", now);
    in_dialog(&mut before, &key, "ACK", 2, "", "", now);
    let mut first = committed(&mut before).saved.remove(0);
    first.invite = Some(before_invite_bytes());
    drop(before); // the process dies

    let mut after = core();
    let restored = after.restore(&first, To::Source, now).unwrap();
    assert_eq!(restored.key, key);
    assert!(
        matches!(restored.resumed, Resumed::Waiting),
        "{:?}",
        restored.resumed
    );
    assert!(
        restored.effects.is_empty(),
        "nothing goes out for a waiting session"
    );
    assert_eq!(restored.facts.session.request_uri, "mailto:bob@example.net");
    assert_eq!(after.user_phase(&key), Some(SessionPhase::AwaitingAnswer));
    // The same answer again: a re-INVITE after the restart gets the o= of before.
    let effects = in_dialog(&mut after, &key, "INVITE", 3, "", "", now);
    let ok = sent(&effects).pop().unwrap();
    assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
    assert!(body_of(&ok).contains("a=setup:active"), "{ok}");
    in_dialog(&mut after, &key, "ACK", 3, "", "", now);
    // Accept: the IWF connects the chat, as before the restart.
    let effects = after.user_accepted(&key).expect("awaiting the answer");
    assert!(matches!(
        &effects[..],
        [Effect::ChatOpen { held: false, .. }]
    ));
    // Leave: a BYE in the original dialog, toward the refreshed target.
    let reason = EndReason {
        cause: 200,
        text: "the e-mail user left".into(),
    };
    let effects = after.end_session(&key, &reason, now);
    let bye = sent(&effects).remove(0);
    assert!(
        bye.starts_with("BYE sip:alice@192.0.2.7:5070 SIP/2.0\r\n"),
        "{bye}"
    );
    assert!(bye.contains(&format!(";tag={}", key.local_tag)), "{bye}");
    assert!(
        bye.contains("Call-ID: f1@test\r\n") && bye.contains("tag=a1"),
        "{bye}"
    );
    assert!(bye.contains("CSeq: 1 BYE\r\n"), "{bye}");
}

/// The INVITE of [`invited`], as the store wrote it with the session's first save.
fn before_invite_bytes() -> Vec<u8> {
    let date = "Date: Thu, 26 Nov 2026 08:30:00 GMT\r\n";
    request("INVITE", 1, None, &format!("{CONTACT}{date}"), OFFER).to_bytes()
}

/// The 2xx of the CPM side to the IWF's re-INVITE `sent`, with `sdp` and a Contact.
fn answer_to(sent: &str, sdp: &str) -> Message {
    let ok = response_to(sent, 200).to_bytes();
    let text = String::from_utf8(ok).unwrap().replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Contact: <sip:alice@192.0.2.8:5070>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    );
    parse(text.as_bytes(), Transport::Datagram, &SipLimits::default()).unwrap()
}

/// A live session's row, as stored before the process died.
fn live_row(now: Instant) -> (SessionKey, SessionRow) {
    let mut before = core();
    let (key, _) = live(&mut before, now);
    let mut row = committed(&mut before).saved.remove(0);
    assert_eq!(row.phase, "live");
    row.invite = Some(request("INVITE", 1, None, CONTACT, OFFER).to_bytes());
    (key, row)
}

#[test]
fn a_live_session_restored_offers_a_new_chat_connection_and_its_2xx_opens_the_chat() {
    let now = Instant::now();
    let (key, row) = live_row(now);
    let mut after = core();
    let restored = after.restore(&row, To::Source, now).unwrap();
    assert!(matches!(restored.resumed, Resumed::Reconnecting));
    let reinvite = sent(&restored.effects).remove(0);
    // RFC 4975 8.4: within the dialog, a fresh offer: the IWF's path, actpass, o= moved on.
    assert!(
        reinvite.starts_with("INVITE sip:alice@192.0.2.1:5070 SIP/2.0\r\n"),
        "{reinvite}"
    );
    assert!(reinvite.contains("CSeq: 1 INVITE\r\n"), "{reinvite}");
    assert!(
        reinvite.contains(&format!(";tag={}", key.local_tag)),
        "{reinvite}"
    );
    assert!(
        reinvite.contains("Contact: <sip:iwf@192.0.2.10:5060>\r\n"),
        "{reinvite}"
    );
    let offer = body_of(&reinvite);
    assert!(offer.contains("a=setup:actpass"), "{offer}");
    assert!(
        offer.contains(&format!("a=path:msrp://192.0.2.10:2855/{};tcp", row.id)),
        "{offer}"
    );
    let origin = offer.lines().find(|l| l.starts_with("o=")).unwrap();
    let fields: Vec<&str> = origin.split(' ').collect();
    let (id, version): (u64, u64) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    assert_eq!(version, id + 1, "{origin}");
    assert_eq!(
        committed(&mut after).saved[0].phase,
        "live",
        "a restart re-offers"
    );
    // A crossing re-INVITE of the CPM side: 491 (14.2).
    let effects = in_dialog(&mut after, &key, "INVITE", 2, "", "", now);
    assert_eq!(
        statuses(&effects),
        ["SIP/2.0 100 Trying", "SIP/2.0 491 Request Pending"]
    );
    // The 2xx: ACK with the INVITE's CSeq number, to the new target; the chat opens
    // with the answer's path, the IWF now connecting (the answer is passive).
    let sdp = OFFER
        .replace("a=setup:actpass", "a=setup:passive")
        .replace("/abc;tcp", "/n3w;tcp");
    let effects = after.on_response(answer_to(&reinvite, &sdp), now);
    let acks = sent(&effects);
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert!(
        acks[0].starts_with("ACK sip:alice@192.0.2.8:5070 SIP/2.0\r\n"),
        "{}",
        acks[0]
    );
    assert!(acks[0].contains("CSeq: 1 ACK\r\n"), "{}", acks[0]);
    let Some(Effect::ChatOpen {
        msrp, held: false, ..
    }) = effects
        .iter()
        .find(|e| matches!(e, Effect::ChatOpen { .. }))
    else {
        panic!("no ChatOpen: {effects:?}");
    };
    assert_eq!(msrp.role, Role::Active);
    assert_eq!(msrp.peer_path[0].session_id, "n3w");
    assert_eq!(after.user_phase(&key), Some(SessionPhase::Live));
    // A retransmitted 2xx gets the same ACK, and opens nothing again.
    let again = after.on_response(answer_to(&reinvite, &sdp), now);
    assert_eq!(sent(&again), acks);
    assert!(!again.iter().any(|e| matches!(e, Effect::ChatOpen { .. })));
    // The version the IWF moved to is stored: a later re-offer goes above it.
    let row = committed(&mut after).saved.remove(0);
    let mut again = core();
    let SessionRow { invite, .. } = &row;
    assert!(invite.is_none());
    let row = SessionRow {
        invite: Some(request("INVITE", 1, None, CONTACT, OFFER).to_bytes()),
        ..row
    };
    let restored = again.restore(&row, To::Source, now).unwrap();
    let offer = sent(&restored.effects).remove(0);
    assert!(
        offer.contains(&format!(" {id} {} IN IP4", id + 2)),
        "{offer}"
    );
    assert!(offer.contains("CSeq: 2 INVITE\r\n"), "{offer}");
}

#[test]
fn a_refused_or_unanswered_reinvite_ends_the_session_with_a_bye_that_says_why() {
    let now = Instant::now();
    let (key, row) = live_row(now);
    let mut after = core();
    let restored = after.restore(&row, To::Source, now).unwrap();
    let reinvite = sent(&restored.effects).remove(0);
    let effects = after.on_response(response_to(&reinvite, 488), now);
    let out = sent(&effects);
    assert!(
        out[0].starts_with("ACK "),
        "the transaction ACKs the 488: {out:?}"
    );
    let bye = &out[1];
    assert!(
        bye.starts_with("BYE sip:alice@192.0.2.1:5070 SIP/2.0\r\n"),
        "{bye}"
    );
    assert!(bye.contains("CSeq: 2 BYE\r\n"), "{bye}");
    assert!(
        bye.contains("Reason: SIP;cause=488;text=\"the CPM side refused the re-INVITE"),
        "{bye}"
    );
    assert_eq!(after.user_phase(&key), None, "ending");
    after.on_response(response_to(bye, 200), now);
    assert_eq!(after.sessions(), 0);

    // No answer at all: Timer B, then the BYE with cause 408.
    let mut after = core();
    let restored = after.restore(&row, To::Source, now).unwrap();
    assert_eq!(sent(&restored.effects).len(), 1);
    let effects = after.handle_timeout(now + Duration::from_secs(33));
    let bye = sent(&effects).pop().expect("a BYE");
    assert!(bye.starts_with("BYE "), "{bye}");
    assert!(bye.contains("cause=408"), "{bye}");
}

#[test]
fn a_session_restored_mid_exchange_gets_a_bye_with_a_reason_and_an_unreadable_row_is_refused() {
    let now = Instant::now();
    let (key, mut row) = live_row(now);
    // Its BYE was out when the process died.
    row.phase = "ending".into();
    let mut after = core();
    let restored = after.restore(&row, To::Source, now).unwrap();
    assert!(matches!(restored.resumed, Resumed::Ended));
    let bye = sent(&restored.effects).remove(0);
    assert!(
        bye.starts_with("BYE sip:alice@192.0.2.1:5070 SIP/2.0\r\n"),
        "{bye}"
    );
    assert!(
        bye.contains("Reason: SIP;cause=480;text=\"MSRP: the IWF restarted and the chat connection was lost\"\r\n"),
        "{bye}"
    );
    assert_eq!(after.user_phase(&key), None, "ending");
    // Its BYE's answer frees it, and the row goes.
    after.on_response(response_to(&bye, 200), now);
    assert_eq!(after.sessions(), 0);
    let changes = committed(&mut after);
    assert_eq!(changes.forgotten, [row.id.clone()]);

    let broken = SessionRow {
        invite: Some(b"not a SIP message".to_vec()),
        ..row
    };
    let Err(why) = after.restore(&broken, To::Source, now) else {
        panic!("a broken INVITE was restored");
    };
    assert!(why.starts_with("stored INVITE:"), "{why}");
}

#[test]
fn a_draining_core_refuses_new_invites_503_and_lets_the_sessions_held_go_on() {
    // Another call: its own Call-ID and Via branch.
    let another = |call: &str| {
        let mut invite = request("INVITE", 1, None, CONTACT, OFFER);
        for (name, value) in &mut invite.headers {
            match name.as_str() {
                "Call-ID" => *value = format!("{call}@test"),
                "Via" => *value = value.replace("z9hG4bK-INVITE-1", &format!("z9hG4bK-{call}")),
                _ => {}
            }
        }
        invite
    };
    let (mut core, now) = (core(), Instant::now());
    let (key, _) = live(&mut core, now);
    let effects = core.on_request(another("pending"), Transport::Datagram, To::Source, now);
    let pending = decide(&effects).unwrap().0;
    assert_eq!(
        core.in_flight(),
        1,
        "the pending INVITE; the live session is not"
    );
    core.drain(30);
    let effects = core.on_request(another("late"), Transport::Datagram, To::Source, now);
    let refused = sent(&effects).pop().unwrap(); // after the transaction layer's 100
    assert!(refused.starts_with("SIP/2.0 503 "), "{refused}");
    assert!(refused.contains("\r\nRetry-After: 30\r\n"), "{refused}");
    assert!(refused.contains("shutting down"), "{refused}");
    // The pending INVITE still gets its answer, the live session its BYE's 200.
    let effects = core.on_decision(&pending, InviteDecision::AcceptOnBehalf, now);
    assert_eq!(statuses(&effects), ["SIP/2.0 200 OK"]);
    let effects = in_dialog(&mut core, &key, "BYE", 2, "", "", now);
    assert_eq!(statuses(&effects), ["SIP/2.0 200 OK"]);
}

#[test]
fn an_idle_invited_session_parks_once_stored_and_comes_back_from_its_row_in_its_dialog() {
    let (mut core, now) = (core(), Instant::now());
    let key = invited(&mut core, now);
    assert!(
        core.park_idle(now, |k| Arc::new(k.clone())).is_empty(),
        "its ACK's change is not on disk yet"
    );
    let mut row = committed(&mut core).saved.remove(0);
    assert_eq!(
        core.park_idle(now, |k| Arc::new(k.clone())),
        std::slice::from_ref(&key)
    );
    assert_eq!((core.sessions(), core.parked()), (1, 1));
    assert!(core.is_parked(&key) && core.user_phase(&key).is_none());
    // What brings it back: an in-dialog request, not an ACK, not another dialog.
    let bye = request("BYE", 2, Some(&key.local_tag), "", "");
    assert_eq!(core.parked_for(&bye), Some(key.clone()));
    let ack = request("ACK", 1, Some(&key.local_tag), "", "");
    assert_eq!(core.parked_for(&ack), None);
    let other = request("BYE", 2, Some("not-ours"), "", "");
    assert_eq!(core.parked_for(&other), None);
    // Back from its row (the store has the INVITE from the first save).
    row.invite = Some(before_invite_bytes());
    let parked = core.unpark(&key).expect("parked");
    let facts = core.revive(&row, parked, now).expect("readable");
    assert_eq!(facts.session.request_uri, "mailto:bob@example.net");
    assert_eq!((core.sessions(), core.parked()), (1, 0));
    assert_eq!(core.user_phase(&key), Some(SessionPhase::AwaitingAnswer));
    // Its dialog as before: a re-INVITE gets the same answer, the BYE frees it.
    let effects = in_dialog(&mut core, &key, "INVITE", 2, "", "", now);
    let ok = sent(&effects).pop().unwrap();
    assert!(ok.starts_with("SIP/2.0 200 OK") && body_of(&ok).contains("a=setup:active"));
    in_dialog(&mut core, &key, "ACK", 2, "", "", now);
    // Still waiting: it parks again once idle and stored.
    committed(&mut core);
    assert_eq!(
        core.park_idle(now + Duration::from_secs(1), |k| Arc::new(k.clone())),
        std::slice::from_ref(&key)
    );
    let parked = core.unpark(&key).expect("parked again");
    core.revive(&row, parked, now).expect("readable");
    let effects = in_dialog(&mut core, &key, "BYE", 3, "", "", now);
    assert_eq!(statuses(&effects), ["SIP/2.0 200 OK"]);
    assert_eq!((core.sessions(), core.parked()), (0, 0));
    // A row stored as anything but invited does not come back as a parked session.
    let mut live = row.clone();
    live.phase = "live".into();
    let parked = Parked::for_test(&row.id, To::Source);
    assert!(core.revive(&live, parked, now).is_err());
}

#[test]
fn an_answered_invitation_does_not_park() {
    let (mut core, now) = (core(), Instant::now());
    let key = invited(&mut core, now);
    core.user_accepted(&key).expect("awaiting the answer");
    committed(&mut core);
    assert!(
        core.park_idle(now + Duration::from_secs(1), |k| Arc::new(k.clone()))
            .is_empty()
    );
    assert_eq!((core.sessions(), core.parked()), (1, 0));
}

#[test]
fn a_waiting_invitation_is_restored_parked_and_anything_else_is_left_to_restore() {
    let (mut before, now) = (core(), Instant::now());
    let key = invited(&mut before, now);
    let mut row = committed(&mut before).saved.remove(0);
    row.invite = Some(before_invite_bytes());
    drop(before); // the process dies

    let mut after = core();
    let registry = Registry::default();
    assert_eq!(
        after.restore_parked(&row, To::Source, now),
        Ok(Some(Arc::new(key.clone())))
    );
    assert_eq!((after.sessions(), after.parked()), (1, 1));
    assert!(after.is_parked(&key));
    let shown = shown(&mut after, &registry);
    assert_eq!(shown[0].phase.name(), "awaiting-answer");
    assert_eq!(
        ladder(&shown[0]).last().map(String::as_str),
        Some("parked: awaiting the answer in the store")
    );
    // Back from the same row when something comes for it.
    let parked = after.unpark(&key).unwrap();
    after.revive(&row, parked, now).unwrap();
    assert_eq!(after.user_phase(&key), Some(SessionPhase::AwaitingAnswer));
    // A live row is not restored parked.
    let (_, live) = live_row(now);
    let mut other = core();
    assert_eq!(other.restore_parked(&live, To::Source, now), Ok(None));
    assert_eq!(other.sessions(), 0);
}
