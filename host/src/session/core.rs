//! The UA core for CPM sessions (sans I/O): INVITE -> policy -> answer; ACK; BYE.
//!
//! ```text
//!  INVITE ──policy──> accept-on-behalf ──200 OK + SDP──> AwaitingAck ──ACK──> Live ──BYE──> freed
//!                 ├─> ask-user ──480 (e-mail invitation not built yet)
//!                 └─> refuse(status) ──status
//! ```

use crate::net::sip::{AGENT, new_tag};
use crate::policy::PolicyHost;
use crate::policy::world::{Gateway, InviteDecision};
use crate::sdp::msrp::{self, LocalMsrp, MsrpParams, Offer};
use crate::sdp::uri::Host;
use crate::sip::cpm::CpmInvite;
use crate::sip::message::{Message, ResponseSpec, StartLine, Transport, tag_param, warning_value};
use crate::sip::multipart;
use crate::sip::transaction::{Action, Output, Timers, TransactionKey, TransactionTable};
use std::collections::HashMap;
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

/// Bytes for a peer.
#[derive(Debug)]
pub struct Send<P> {
    pub peer: P,
    pub bytes: Vec<u8>,
}

/// A dialog is found by Call-ID and the IWF's own tag (RFC 3261 12: the remote tag is
/// the peer's; the local tag alone is unique to this IWF).
type DialogId = (String, String);

/// Where a session stands. The 200 OK is the TU's to retransmit until the ACK (13.3.1.4).
enum Phase<P> {
    AwaitingAck {
        ok: Vec<u8>,
        peer: P,
        next: Instant,
        interval: Duration,
        give_up: Instant,
    },
    Live,
}

/// One CPM session, accepted on behalf of the e-mail user.
struct Session<P> {
    id: String,
    phase: Phase<P>,
    /// Recorded for the MSRP endpoint (issue 6).
    #[allow(dead_code)]
    msrp: MsrpParams,
}

pub struct Core<P> {
    config: CoreConfig,
    transactions: TransactionTable<P>,
    sessions: HashMap<DialogId, Session<P>>,
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

    /// Sessions held (accepted, awaiting ACK or live).
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
        policy: &PolicyHost,
    ) -> Vec<Send<P>> {
        let Some(outputs) = self.transactions.on_request(request, transport, peer, now) else {
            return Vec::new(); // no usable Via branch or method: nothing can be answered
        };
        self.run(outputs, transport, now, policy)
    }

    /// The earliest instant at which [`Core::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retransmits = self.sessions.values().filter_map(|s| match &s.phase {
            Phase::AwaitingAck { next, give_up, .. } => Some((*next).min(*give_up)),
            Phase::Live => None,
        });
        retransmits.chain(self.transactions.poll_timeout()).min()
    }

    pub fn handle_timeout(&mut self, now: Instant, policy: &PolicyHost) -> Vec<Send<P>> {
        let mut out = Vec::new();
        let mut abandoned = Vec::new();
        for (dialog, session) in &mut self.sessions {
            if let Phase::AwaitingAck {
                ok,
                peer,
                next,
                interval,
                give_up,
            } = &mut session.phase
            {
                if now >= *give_up {
                    abandoned.push(dialog.clone());
                } else if now >= *next {
                    out.push(Send {
                        peer: peer.clone(),
                        bytes: ok.clone(),
                    });
                    *interval = (*interval * 2).min(self.config.timers.t2);
                    *next = now + *interval;
                }
            }
        }
        for dialog in abandoned {
            // 13.3.1.4: no ACK within 64*T1. The session is dropped; sending the BYE that
            // the RFC asks for needs the dialog's route set (the next part of this issue).
            if let Some(s) = self.sessions.remove(&dialog) {
                tracing::warn!(session = %s.id, call_id = %dialog.0, "no ACK for the 200 OK; session dropped");
            }
        }
        let outputs = self.transactions.handle_timeout(now);
        out.extend(self.run(outputs, Transport::Datagram, now, policy));
        out
    }

    /// Carries out what the transaction layer asked: sends, and requests for the TU.
    fn run(
        &mut self,
        outputs: Vec<Output<P>>,
        transport: Transport,
        now: Instant,
        policy: &PolicyHost,
    ) -> Vec<Send<P>> {
        let mut out = Vec::new();
        for Output { key, peer, action } in outputs {
            match action {
                Action::Send(bytes) => out.push(Send { peer, bytes }),
                Action::Request(request) => {
                    out.extend(self.on_tu_request(&key, request, transport, peer, now, policy))
                }
                Action::Cancelled => {
                    out.extend(self.respond(&key, 487, None, &[], None, now));
                }
                Action::Response(_)
                | Action::Timeout
                | Action::TransportError
                | Action::Terminated => {}
            }
        }
        out
    }

    fn on_tu_request(
        &mut self,
        key: &TransactionKey,
        request: Message,
        transport: Transport,
        peer: P,
        now: Instant,
        policy: &PolicyHost,
    ) -> Vec<Send<P>> {
        let StartLine::Request { method, .. } = &request.start else {
            return Vec::new();
        };
        match method.as_str() {
            "INVITE" if to_tag(&request).is_none() => {
                self.on_invite(key, &request, transport, peer, now, policy)
            }
            // A re-INVITE (12.2.2, 14.2): session changes are not supported yet.
            "INVITE" => match self.dialog_of(&request) {
                Some(_) => self.refuse(
                    key,
                    488,
                    "session changes (re-INVITE) are not supported",
                    now,
                ),
                None => self.refuse(key, 481, "no such session", now),
            },
            "ACK" => {
                if let Some(dialog) = self.dialog_of(&request)
                    && let Some(session) = self.sessions.get_mut(&dialog)
                    && matches!(session.phase, Phase::AwaitingAck { .. })
                {
                    session.phase = Phase::Live;
                    tracing::info!(session = %session.id, "session live");
                }
                Vec::new() // an ACK is never answered
            }
            "BYE" => match self
                .dialog_of(&request)
                .and_then(|d| self.sessions.remove(&d))
            {
                Some(session) => {
                    tracing::info!(session = %session.id, "BYE: session closed");
                    self.respond(key, 200, None, &[], None, now)
                }
                None => self.refuse(key, 481, "no such session", now),
            },
            _ => self.refuse(key, 405, "method not handled here", now),
        }
    }

    /// F1 (5.2.1.3) and the branches of 5.2.4.2.4.
    fn on_invite(
        &mut self,
        key: &TransactionKey,
        request: &Message,
        _transport: Transport,
        peer: P,
        now: Instant,
        policy: &PolicyHost,
    ) -> Vec<Send<P>> {
        let cpm = match CpmInvite::from_message(request) {
            Ok(cpm) => cpm,
            Err(e) => return self.refuse(key, e.status, &e.reason, now),
        };
        let body = match multipart::invite_body(request.header("Content-Type"), &request.body) {
            Ok(body) => body,
            Err(e) => return self.refuse(key, e.status, &e.reason, now),
        };
        let Some(sdp) = body.sdp else {
            return self.refuse_with(
                key,
                488,
                304,
                "no SDP offer: the IWF answers MSRP chat offers only",
                now,
            );
        };
        let offer = match Offer::parse(&sdp) {
            Ok(offer) => offer,
            Err(e) => return self.refuse_with(key, 488, e.warn_code(), &e.to_string(), now),
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
            Err(e) => return self.refuse_with(key, 488, e.warn_code(), &e.to_string(), now),
        };
        // Group sessions (F7) carry their URI-list to the policy with the focus: not yet.
        let facts = cpm.session(&session_id, self.config.gateway.clone(), None);
        match policy.on_invite(&facts).value {
            InviteDecision::AcceptOnBehalf => {
                let tag = new_tag();
                let contact = self.config.contact.clone();
                let body = answer.to_bytes();
                let sent = self.respond(
                    key,
                    200,
                    Some(&tag),
                    &[("Contact", &contact)],
                    Some(("application/sdp", &body)),
                    now,
                );
                let Some(ok) = sent.first().map(|s| s.bytes.clone()) else {
                    return sent;
                };
                let call_id = request.header("Call-ID").unwrap_or_default().to_string();
                let t1 = self.config.timers.t1;
                tracing::info!(session = %session_id, %call_id, "INVITE accepted on behalf of the e-mail user");
                self.sessions.insert(
                    (call_id, tag),
                    Session {
                        id: session_id,
                        phase: Phase::AwaitingAck {
                            ok,
                            peer,
                            next: now + t1,
                            interval: t1,
                            give_up: now + t1 * 64,
                        },
                        msrp: answer.params,
                    },
                );
                sent
            }
            InviteDecision::AskUser => {
                tracing::warn!(session = %session_id, "policy asks the e-mail user: inviting by e-mail is not built yet, answering 480");
                self.refuse(
                    key,
                    480,
                    "inviting the e-mail user by e-mail is not available yet",
                    now,
                )
            }
            InviteDecision::Refuse(status) => self
                .respond(key, status.code, Some(&new_tag()), &[], None, now)
                .into_iter()
                .collect(),
        }
    }

    /// The session a request belongs to: its Call-ID and To tag (the IWF's tag).
    fn dialog_of(&self, request: &Message) -> Option<DialogId> {
        let dialog = (request.header("Call-ID")?.to_string(), to_tag(request)?);
        self.sessions.contains_key(&dialog).then_some(dialog)
    }

    fn refuse(
        &mut self,
        key: &TransactionKey,
        status: u16,
        why: &str,
        now: Instant,
    ) -> Vec<Send<P>> {
        self.refuse_with(key, status, 399, why, now)
    }

    /// An error response with `Warning: <code> cpm-iwf "<why>"` (RFC 3261 20.43).
    fn refuse_with(
        &mut self,
        key: &TransactionKey,
        status: u16,
        warn_code: u16,
        why: &str,
        now: Instant,
    ) -> Vec<Send<P>> {
        let warning = warning_value(AGENT, why).replacen("399", &warn_code.to_string(), 1);
        let tag = new_tag();
        self.respond(key, status, Some(&tag), &[("Warning", &warning)], None, now)
    }

    fn respond(
        &mut self,
        key: &TransactionKey,
        status: u16,
        to_tag: Option<&str>,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
        now: Instant,
    ) -> Vec<Send<P>> {
        let spec = ResponseSpec {
            status,
            to_tag,
            extra_headers: extra,
            body,
            ..ResponseSpec::default()
        };
        match self.transactions.respond(key, &spec, now) {
            Ok(outputs) => outputs
                .into_iter()
                .filter_map(|o| match o.action {
                    Action::Send(bytes) => Some(Send {
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
    use crate::policy::{Limits, PolicyEngine, PolicySource};
    use crate::sip::message::{Limits as SipLimits, parse};
    use std::path::PathBuf;

    fn policy(name: &str) -> PolicyHost {
        let engine = PolicyEngine::new(Limits {
            timeout_ms: 1000,
            memory_bytes: 32 << 20,
            max_instances: 4,
            warm_instances: 0,
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

    fn statuses(sends: &[Send<u8>]) -> Vec<String> {
        sends
            .iter()
            .map(|s| {
                String::from_utf8_lossy(&s.bytes)
                    .split("\r\n")
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn tag_of(bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        let to = text
            .lines()
            .find(|l| l.starts_with("To:"))
            .unwrap()
            .to_string();
        to.split(";tag=").nth(1).unwrap().to_string()
    }

    #[test]
    fn f1_invite_accept_ack_bye_frees_the_session() {
        let (mut core, policy, now) = (core(), policy("auto-accept"), Instant::now());
        let sends = core.on_request(
            request("INVITE", 1, None, OFFER),
            Transport::Datagram,
            1,
            now,
            &policy,
        );
        assert_eq!(statuses(&sends), ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]);
        let ok = String::from_utf8_lossy(&sends[1].bytes).to_string();
        assert!(
            ok.contains("Contact: <sip:iwf@192.0.2.10:5060>\r\n"),
            "{ok}"
        );
        assert!(
            ok.contains("a=path:msrp://192.0.2.10:2855/") && ok.contains("a=setup:active"),
            "{ok}"
        );
        assert_eq!(core.sessions(), 1);
        let tag = tag_of(&sends[1].bytes);

        assert!(
            core.on_request(
                request("ACK", 1, Some(&tag), ""),
                Transport::Datagram,
                1,
                now,
                &policy
            )
            .is_empty()
        );
        // Live: no 2xx retransmission is due any more.
        let later = now + Duration::from_secs(2);
        assert!(
            core.handle_timeout(later, &policy)
                .iter()
                .all(|s| !s.bytes.starts_with(b"SIP/2.0 200"))
        );

        let sends = core.on_request(
            request("BYE", 2, Some(&tag), ""),
            Transport::Datagram,
            1,
            later,
            &policy,
        );
        assert_eq!(statuses(&sends), ["SIP/2.0 200 OK"]);
        assert_eq!(core.sessions(), 0);
    }

    #[test]
    fn the_200_is_retransmitted_until_the_ack_then_given_up() {
        let (mut core, policy, start) = (core(), policy("auto-accept"), Instant::now());
        core.on_request(
            request("INVITE", 1, None, OFFER),
            Transport::Datagram,
            1,
            start,
            &policy,
        );
        // 13.3.1.4: T1, then doubling up to T2.
        let mut resent = Vec::new();
        let mut now = start;
        while let Some(at) = core.poll_timeout() {
            if at > start + Duration::from_secs(40) {
                break;
            }
            now = at;
            for s in core.handle_timeout(now, &policy) {
                if s.bytes.starts_with(b"SIP/2.0 200") {
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
    fn bye_for_no_session_is_481_and_default_policy_is_480() {
        let (mut core, policy, now) = (core(), policy("default"), Instant::now());
        let sends = core.on_request(
            request("BYE", 2, Some("nope"), ""),
            Transport::Datagram,
            1,
            now,
            &policy,
        );
        assert_eq!(
            statuses(&sends),
            ["SIP/2.0 481 Call/Transaction Does Not Exist"]
        );
        let sends = core.on_request(
            request("INVITE", 1, None, OFFER),
            Transport::Datagram,
            1,
            now,
            &policy,
        );
        assert_eq!(statuses(&sends)[1], "SIP/2.0 480 Temporarily Unavailable");
        assert_eq!(core.sessions(), 0);
    }
}
