//! The UA core for CPM sessions (sans I/O): INVITE -> policy -> answer; ACK; BYE.
//!
//! ```text
//!  INVITE ─100─> Pending ──Decide──> (the driver asks the policy off this task)
//!                   │  <─on_decision─┘
//!                   ├─ accept-on-behalf ──200 OK + SDP──> AwaitingAck ──ACK──> Live ──BYE──> freed
//!                   ├─ ask-user ──480 (e-mail invitation not built yet)
//!                   ├─ refuse(status) ──status
//!                   └─ CANCEL ──200 (CANCEL), 487 (INVITE); a later outcome is dropped
//! ```
//!
//! The core never calls the policy: it emits [`Effect::Decide`] and takes the answer back in
//! [`Core::on_decision`]. Until then the INVITE is pending (a [`Pending`] session), which is
//! the general shape of an INVITE waiting for an outcome (the policy now; the e-mail
//! invitation's SMTP outcome for F2 later).

use crate::net::sip::{AGENT, new_tag};
use crate::policy::world::{Gateway, InviteDecision, Session as PolicySession};
use crate::sdp::msrp::{self, Answer, LocalMsrp, Offer};
use crate::sdp::uri::Host;
use crate::sip::cpm::CpmInvite;
use crate::sip::message::{Message, ResponseSpec, StartLine, Transport, tag_param, warning_value};
use crate::sip::multipart;
use crate::sip::transaction::{Action, Output, Timers, TransactionKey, TransactionTable};
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// What the core needs to know of the gateway.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub gateway: Gateway,
    /// The Contact of the IWF's dialogs (RFC 3261 12.1.1), e.g. `<sip:iwf@192.0.2.1:5060>`.
    pub contact: String,
    /// Where the IWF's MSRP endpoint listens (`[msrp] listen`).
    pub msrp_host: Host,
    pub msrp_port: u16,
    pub timers: Timers,
}

/// What the core asks of its driver.
#[derive(Debug)]
pub enum Effect<P> {
    /// Send these bytes to `peer`.
    Send { peer: P, bytes: Vec<u8> },
    /// Ask the policy's `on-invite` (5.2.4.2.4) about `session`, off the session task, and
    /// hand the answer to [`Core::on_decision`] under `key`.
    Decide {
        key: SessionKey,
        session: PolicySession,
    },
}

/// A session: its Call-ID and the IWF's own tag (RFC 3261 12: the remote tag is the peer's;
/// the local tag alone is unique to this IWF). The tag is chosen when the INVITE arrives and
/// is the To tag of every response to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub call_id: String,
    pub local_tag: String,
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};tag={}", self.call_id, self.local_tag)
    }
}

/// What a pending INVITE waits for before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// The policy's `on-invite` decision (5.2.4.2.4).
    Decision,
}

/// An INVITE answered 100 Trying and held, without a final response, until its outcome.
struct Pending<P> {
    invite: TransactionKey,
    peer: P,
    awaiting: Awaiting,
}

/// The 2xx to an INVITE, the TU's to retransmit until the ACK (13.3.1.4).
struct AwaitingAck<P> {
    ok: Vec<u8>,
    peer: P,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// Where a session stands.
enum State<P> {
    Pending(Pending<P>),
    AwaitingAck(AwaitingAck<P>),
    Live,
}

/// One CPM session for an e-mail user.
struct Session<P> {
    /// The MSRP session id (in logs; the MSRP endpoint, issue 6).
    id: String,
    /// The SDP answer to the INVITE's offer, sent with the 2xx.
    answer: Answer,
    state: State<P>,
}

pub struct Core<P> {
    config: CoreConfig,
    transactions: TransactionTable<P>,
    sessions: HashMap<SessionKey, Session<P>>,
}

impl<P: Clone> Core<P> {
    pub fn new(config: CoreConfig) -> Self {
        let transactions = TransactionTable::new(config.timers);
        Self {
            config,
            transactions,
            sessions: HashMap::new(),
        }
    }

    /// Sessions held (pending, awaiting ACK or live).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Transactions alive.
    pub fn transactions(&self) -> usize {
        self.transactions.len()
    }

    /// A request from the transport (after Via stamping).
    pub fn on_request(
        &mut self,
        request: Message,
        transport: Transport,
        peer: P,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let Some(outputs) = self.transactions.on_request(request, transport, peer, now) else {
            return Vec::new(); // no usable Via branch or method: nothing can be answered
        };
        self.run(outputs, now)
    }

    /// The policy's answer to the [`Effect::Decide`] of session `key`. Dropped when the INVITE
    /// is no longer pending on it (cancelled meanwhile).
    pub fn on_decision(
        &mut self,
        key: &SessionKey,
        decision: InviteDecision,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let Some((session, pending)) = self.take_pending(key, Awaiting::Decision) else {
            tracing::debug!(session = %key, "decision for an INVITE no longer pending dropped");
            return Vec::new();
        };
        let tag = key.local_tag.as_str();
        match decision {
            InviteDecision::AcceptOnBehalf => {
                let contact = self.config.contact.clone();
                let body = session.answer.to_bytes();
                let sent = self.respond(
                    &pending.invite,
                    200,
                    tag,
                    &[("Contact", &contact)],
                    Some(("application/sdp", &body)),
                    now,
                );
                let Some(Effect::Send { bytes: ok, .. }) = sent.first() else {
                    return sent;
                };
                let t1 = self.config.timers.t1;
                tracing::info!(session = %session.id, key = %key, "INVITE accepted on behalf of the e-mail user");
                let state = State::AwaitingAck(AwaitingAck {
                    ok: ok.clone(),
                    peer: pending.peer,
                    next: now + t1,
                    interval: t1,
                    give_up: now + t1 * 64,
                });
                self.sessions
                    .insert(key.clone(), Session { state, ..session });
                sent
            }
            InviteDecision::AskUser => {
                tracing::warn!(session = %session.id, "policy asks the e-mail user: inviting by e-mail is not built yet, answering 480");
                self.refuse(
                    &pending.invite,
                    480,
                    tag,
                    "inviting the e-mail user by e-mail is not available yet",
                    now,
                )
            }
            InviteDecision::Refuse(status) => {
                self.respond(&pending.invite, status.code, tag, &[], None, now)
            }
        }
    }

    /// Removes session `key` when its INVITE is pending on `awaiting`.
    fn take_pending(
        &mut self,
        key: &SessionKey,
        awaiting: Awaiting,
    ) -> Option<(Session<P>, Pending<P>)> {
        match &self.sessions.get(key)?.state {
            State::Pending(p) if p.awaiting == awaiting => {}
            _ => return None,
        }
        let mut session = self.sessions.remove(key)?;
        match std::mem::replace(&mut session.state, State::Live) {
            State::Pending(pending) => Some((session, pending)),
            _ => None,
        }
    }

    /// The earliest instant at which [`Core::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retransmits = self.sessions.values().filter_map(|s| match &s.state {
            State::AwaitingAck(a) => Some(a.next.min(a.give_up)),
            State::Pending(_) | State::Live => None,
        });
        retransmits.chain(self.transactions.poll_timeout()).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Effect<P>> {
        let mut out = Vec::new();
        let mut abandoned = Vec::new();
        for (key, session) in &mut self.sessions {
            let State::AwaitingAck(a) = &mut session.state else {
                continue;
            };
            if now >= a.give_up {
                abandoned.push(key.clone());
            } else if now >= a.next {
                out.push(Effect::Send {
                    peer: a.peer.clone(),
                    bytes: a.ok.clone(),
                });
                a.interval = (a.interval * 2).min(self.config.timers.t2);
                a.next = now + a.interval;
            }
        }
        for key in abandoned {
            // 13.3.1.4: no ACK within 64*T1. The session is dropped; sending the BYE that
            // the RFC asks for needs the dialog's route set (the next part of this issue).
            if let Some(s) = self.sessions.remove(&key) {
                tracing::warn!(session = %s.id, %key, "no ACK for the 200 OK; session dropped");
            }
        }
        let outputs = self.transactions.handle_timeout(now);
        out.extend(self.run(outputs, now));
        out
    }

    /// Carries out what the transaction layer asked: sends, and requests for the TU.
    fn run(&mut self, outputs: Vec<Output<P>>, now: Instant) -> Vec<Effect<P>> {
        let mut out = Vec::new();
        for Output { key, peer, action } in outputs {
            match action {
                Action::Send(bytes) => out.push(Effect::Send { peer, bytes }),
                Action::Request(request) => {
                    out.extend(self.on_tu_request(&key, request, peer, now))
                }
                Action::Cancelled => out.extend(self.on_cancelled(&key, now)),
                Action::Response(_)
                | Action::Timeout
                | Action::TransportError
                | Action::Terminated => {}
            }
        }
        out
    }

    /// 9.2: a CANCEL reached the INVITE `invite` before its final response. The INVITE is
    /// answered 487 and its session freed; an outcome arriving later finds nothing.
    fn on_cancelled(&mut self, invite: &TransactionKey, now: Instant) -> Vec<Effect<P>> {
        let key = self.sessions.iter().find_map(|(key, s)| match &s.state {
            State::Pending(p) if &p.invite == invite => Some(key.clone()),
            _ => None,
        });
        let tag = match key.and_then(|key| self.sessions.remove_entry(&key)) {
            Some((key, session)) => {
                tracing::info!(session = %session.id, %key, "INVITE cancelled while pending");
                key.local_tag
            }
            None => new_tag(),
        };
        self.respond(invite, 487, &tag, &[], None, now)
    }

    fn on_tu_request(
        &mut self,
        key: &TransactionKey,
        request: Message,
        peer: P,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let StartLine::Request { method, .. } = &request.start else {
            return Vec::new();
        };
        match method.as_str() {
            "INVITE" if to_tag(&request).is_none() => self.on_invite(key, &request, peer, now),
            // A re-INVITE (12.2.2, 14.2): session changes are not supported yet.
            "INVITE" => match self.session_of(&request) {
                Some(_) => self.refuse(
                    key,
                    488,
                    "",
                    "session changes (re-INVITE) are not supported",
                    now,
                ),
                None => self.refuse(key, 481, "", "no such session", now),
            },
            "ACK" => {
                if let Some(session) = self
                    .session_of(&request)
                    .and_then(|k| self.sessions.get_mut(&k))
                    && matches!(session.state, State::AwaitingAck(_))
                {
                    session.state = State::Live;
                    tracing::info!(session = %session.id, "session live");
                }
                Vec::new() // an ACK is never answered
            }
            "BYE" => match self
                .session_of(&request)
                .and_then(|k| self.sessions.remove(&k))
            {
                Some(session) => {
                    tracing::info!(session = %session.id, "BYE: session closed");
                    self.respond(key, 200, "", &[], None, now)
                }
                None => self.refuse(key, 481, "", "no such session", now),
            },
            _ => self.refuse(key, 405, "", "method not handled here", now),
        }
    }

    /// F1 (5.2.1.3) and the branches of 5.2.4.2.4: the INVITE is checked, its answer
    /// prepared, and the decision asked for; the INVITE stays pending until it comes.
    fn on_invite(
        &mut self,
        invite: &TransactionKey,
        request: &Message,
        peer: P,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let tag = new_tag();
        let cpm = match CpmInvite::from_message(request) {
            Ok(cpm) => cpm,
            Err(e) => return self.refuse(invite, e.status, &tag, &e.reason, now),
        };
        let body = match multipart::invite_body(request.header("Content-Type"), &request.body) {
            Ok(body) => body,
            Err(e) => return self.refuse(invite, e.status, &tag, &e.reason, now),
        };
        let Some(sdp) = body.sdp else {
            return self.refuse_with(
                invite,
                488,
                304,
                &tag,
                "no SDP offer: the IWF answers MSRP chat offers only",
                now,
            );
        };
        let offer = match Offer::parse(&sdp) {
            Ok(offer) => offer,
            Err(e) => {
                return self.refuse_with(invite, 488, e.warn_code(), &tag, &e.to_string(), now);
            }
        };
        let session_id = msrp::new_session_id();
        let local = LocalMsrp {
            host: self.config.msrp_host.clone(),
            port: self.config.msrp_port,
            session_id: session_id.clone(),
            max_size: None,
        };
        let answer = match msrp::answer(&offer, &local) {
            Ok(answer) => answer,
            Err(e) => {
                return self.refuse_with(invite, 488, e.warn_code(), &tag, &e.to_string(), now);
            }
        };
        let key = SessionKey {
            call_id: request.header("Call-ID").unwrap_or_default().to_string(),
            local_tag: tag,
        };
        // Group sessions (F7) carry their URI-list to the policy with the focus: not yet.
        let facts = cpm.session(&session_id, self.config.gateway.clone(), None);
        tracing::debug!(session = %session_id, %key, "INVITE pending on the policy's decision");
        self.sessions.insert(
            key.clone(),
            Session {
                id: session_id,
                answer,
                state: State::Pending(Pending {
                    invite: invite.clone(),
                    peer,
                    awaiting: Awaiting::Decision,
                }),
            },
        );
        vec![Effect::Decide {
            key,
            session: facts,
        }]
    }

    /// The session an in-dialog request belongs to: its Call-ID and To tag (the IWF's tag).
    fn session_of(&self, request: &Message) -> Option<SessionKey> {
        let key = SessionKey {
            call_id: request.header("Call-ID")?.to_string(),
            local_tag: to_tag(request)?,
        };
        self.sessions.contains_key(&key).then_some(key)
    }

    fn refuse(
        &mut self,
        key: &TransactionKey,
        status: u16,
        to_tag: &str,
        why: &str,
        now: Instant,
    ) -> Vec<Effect<P>> {
        self.refuse_with(key, status, 399, to_tag, why, now)
    }

    /// An error response with `Warning: <code> cpm-iwf "<why>"` (RFC 3261 20.43).
    fn refuse_with(
        &mut self,
        key: &TransactionKey,
        status: u16,
        warn_code: u16,
        to_tag: &str,
        why: &str,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let warning = warning_value(AGENT, why).replacen("399", &warn_code.to_string(), 1);
        self.respond(key, status, to_tag, &[("Warning", &warning)], None, now)
    }

    /// Answers the server transaction `key`. `to_tag` is added to a To without one (8.2.6.2;
    /// empty for in-dialog requests, whose To has the tag already).
    fn respond(
        &mut self,
        key: &TransactionKey,
        status: u16,
        to_tag: &str,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let spec = ResponseSpec {
            status,
            to_tag: Some(to_tag).filter(|t| !t.is_empty()),
            extra_headers: extra,
            body,
            ..ResponseSpec::default()
        };
        match self.transactions.respond(key, &spec, now) {
            Ok(outputs) => outputs
                .into_iter()
                .filter_map(|o| match o.action {
                    Action::Send(bytes) => Some(Effect::Send {
                        peer: o.peer,
                        bytes,
                    }),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::debug!(status, error = %e, "response not sent");
                Vec::new()
            }
        }
    }
}

/// The `tag` parameter of To, if any.
fn to_tag(request: &Message) -> Option<String> {
    tag_param(request.header("To")?).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::world::SipStatus;
    use crate::policy::{Limits, PolicyEngine, PolicyHost, PolicySource};
    use crate::sip::message::{Limits as SipLimits, parse};
    use std::path::PathBuf;

    fn policy(name: &str) -> PolicyHost {
        let engine = PolicyEngine::new(Limits {
            timeout_ms: 1000,
            memory_bytes: 32 << 20,
            max_instances: 4,
        })
        .unwrap();
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../target/policies/{name}.wasm"));
        PolicyHost::new(engine, PolicySource::File(path)).unwrap()
    }

    fn core() -> Core<u8> {
        Core::new(CoreConfig {
            gateway: Gateway {
                sip_domain: "iwf.example.com".into(),
                mail_domain: "mail.example.com".into(),
            },
            contact: "<sip:iwf@192.0.2.10:5060>".into(),
            msrp_host: Host::Ip("192.0.2.10".parse().unwrap()),
            msrp_port: 2855,
            timers: Timers::default(),
        })
    }

    const OFFER: &str = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
        m=message 7394 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\n\
        a=path:msrp://192.0.2.1:7394/abc;tcp\r\na=setup:actpass\r\n";

    fn request(method: &str, cseq: u32, to_tag: Option<&str>, body: &str) -> Message {
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
             {content_type}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        parse(text.as_bytes(), Transport::Datagram, &SipLimits::default()).unwrap()
    }

    /// The bytes sent, in order.
    fn sent(effects: &[Effect<u8>]) -> Vec<String> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { bytes, .. } => Some(String::from_utf8_lossy(bytes).to_string()),
                Effect::Decide { .. } => None,
            })
            .collect()
    }

    /// The status lines (or request lines) sent, in order.
    fn statuses(effects: &[Effect<u8>]) -> Vec<String> {
        sent(effects)
            .iter()
            .map(|s| s.split("\r\n").next().unwrap().to_string())
            .collect()
    }

    /// The decision asked for, if any.
    fn decide(effects: &[Effect<u8>]) -> Option<(SessionKey, PolicySession)> {
        effects.iter().find_map(|e| match e {
            Effect::Decide { key, session } => Some((key.clone(), session.clone())),
            Effect::Send { .. } => None,
        })
    }

    /// INVITE in, 100 out and a decision asked for; the session is pending.
    fn invite(core: &mut Core<u8>, now: Instant) -> SessionKey {
        let effects = core.on_request(
            request("INVITE", 1, None, OFFER),
            Transport::Datagram,
            1,
            now,
        );
        assert_eq!(statuses(&effects), ["SIP/2.0 100 Trying"]);
        let (key, facts) = decide(&effects).expect("a decision is asked for");
        assert_eq!(facts.request_uri, "mailto:bob@example.net");
        assert_eq!(core.sessions(), 1, "pending");
        key
    }

    #[test]
    fn f1_invite_pending_then_accept_ack_bye_frees_the_session() {
        let (mut core, now) = (core(), Instant::now());
        let key = invite(&mut core, now);
        // Pending: nothing more is sent until the decision comes back.
        assert!(core.poll_timeout().is_none());
        let effects = core.on_decision(&key, InviteDecision::AcceptOnBehalf, now);
        let ok = &sent(&effects)[0];
        assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
        assert!(ok.contains(&format!(";tag={}\r\n", key.local_tag)), "{ok}");
        assert!(
            ok.contains("Contact: <sip:iwf@192.0.2.10:5060>\r\n"),
            "{ok}"
        );
        assert!(
            ok.contains("a=path:msrp://192.0.2.10:2855/") && ok.contains("a=setup:active"),
            "{ok}"
        );
        let ack = request("ACK", 1, Some(&key.local_tag), "");
        assert!(core.on_request(ack, Transport::Datagram, 1, now).is_empty());
        // Live: no 2xx retransmission is due any more.
        let later = now + Duration::from_secs(2);
        assert!(
            statuses(&core.handle_timeout(later))
                .iter()
                .all(|s| !s.starts_with("SIP/2.0 200"))
        );

        let bye = request("BYE", 2, Some(&key.local_tag), "");
        let effects = core.on_request(bye, Transport::Datagram, 1, later);
        assert_eq!(statuses(&effects), ["SIP/2.0 200 OK"]);
        assert_eq!(core.sessions(), 0);
    }

    #[test]
    fn the_200_is_retransmitted_until_the_ack_then_given_up() {
        let (mut core, start) = (core(), Instant::now());
        let key = invite(&mut core, start);
        core.on_decision(&key, InviteDecision::AcceptOnBehalf, start);
        // 13.3.1.4: T1, then doubling up to T2.
        let mut resent = Vec::new();
        let mut now = start;
        while let Some(at) = core.poll_timeout() {
            if at > start + Duration::from_secs(40) {
                break;
            }
            now = at;
            for s in statuses(&core.handle_timeout(now)) {
                if s.starts_with("SIP/2.0 200") {
                    resent.push(now - start);
                }
            }
        }
        let ms: Vec<u128> = resent.iter().take(5).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [500, 1500, 3500, 7500, 11500]);
        assert_eq!(
            core.sessions(),
            0,
            "no ACK in 64*T1: the session is dropped"
        );
        assert!(now >= start + Duration::from_secs(32));
    }

    #[test]
    fn cancel_while_pending_answers_487_and_a_late_decision_is_dropped() {
        let (mut core, now) = (core(), Instant::now());
        let key = invite(&mut core, now);
        let cancel = request("CANCEL", 1, None, "");
        // The CANCEL matches the INVITE's transaction (same branch, 9.1).
        let cancel = Message {
            headers: cancel
                .headers
                .into_iter()
                .map(|(n, v)| match n.as_str() {
                    "Via" => (n, v.replace("z9hG4bK-CANCEL-1", "z9hG4bK-INVITE-1")),
                    _ => (n, v),
                })
                .collect(),
            ..cancel
        };
        let effects = core.on_request(cancel, Transport::Datagram, 1, now);
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
    fn refuse_answers_the_policys_status_and_ask_user_is_480_with_a_warning() {
        let (mut core, now) = (core(), Instant::now());
        let key = invite(&mut core, now);
        let effects = core.on_decision(
            &key,
            InviteDecision::Refuse(SipStatus {
                code: 603,
                reason: "Decline".into(),
            }),
            now,
        );
        assert_eq!(statuses(&effects), ["SIP/2.0 603 Decline"]);
        assert_eq!(core.sessions(), 0);

        let mut core = self::core();
        let key = invite(&mut core, now);
        let effects = core.on_decision(&key, InviteDecision::AskUser, now);
        assert_eq!(statuses(&effects), ["SIP/2.0 480 Temporarily Unavailable"]);
        assert!(sent(&effects)[0].contains("Warning: 399 cpm-iwf \"inviting"));
        assert_eq!(core.sessions(), 0);
    }

    #[test]
    fn bye_for_no_session_is_481_and_the_default_policy_decides_ask_user() {
        let (mut core, now) = (core(), Instant::now());
        let bye = request("BYE", 2, Some("nope"), "");
        let effects = core.on_request(bye, Transport::Datagram, 1, now);
        assert_eq!(
            statuses(&effects),
            ["SIP/2.0 481 Call/Transaction Does Not Exist"]
        );
        // The facts the core hands out are what the policy decides on.
        let effects = core.on_request(
            request("INVITE", 1, None, OFFER),
            Transport::Datagram,
            1,
            now,
        );
        let (key, facts) = decide(&effects).unwrap();
        let decision = policy("default").on_invite(&facts).value;
        assert!(matches!(decision, InviteDecision::AskUser));
        let effects = core.on_decision(&key, decision, now);
        assert_eq!(statuses(&effects), ["SIP/2.0 480 Temporarily Unavailable"]);
        assert_eq!(core.sessions(), 0);
    }
}
