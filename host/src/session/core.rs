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
use crate::sip::message::{Message, ResponseSpec, StartLine, Transport, warning_value};
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
    let to = request.header("To")?;
    let params = to.rfind('>').map_or(to, |i| &to[i..]);
    params.split(';').skip(1).find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("tag")
            .then(|| value.trim().to_string())
    })
}
