//! The UA core for CPM sessions (sans I/O): INVITE -> policy -> answer; the dialog (RFC 3261
//! 12) with ACK, re-INVITE and BYE either way.
//!
//! ```text
//!  INVITE ─100─> Pending ──Decide──> (the driver asks the policy off this task)
//!                   │  <─on_decision─┘
//!                   ├─ accept-on-behalf ──200 OK + SDP, MailAccepted, ChatOpen──> Dialog:
//!                   │                       AwaitingAck ──ACK──> Live
//!                   ├─ ask-user ──MailInvitation──> (the mail side sends AA2, off this task)
//!                   │     <─on_invitation─┘ Ok: 200 OK + SDP ─> AwaitingAck ──ACK──> Invited
//!                   │       (ChatOpen held when the CPM side connects, 5.2.4.2.4 step 5a)
//!                   │       Invited ─user_accepted─> Live: ChatOpen (the IWF connects) or
//!                   │       ChatConsent Given; reject/expiry: ChatConsent Refused, BYE
//!                   │                       Err(status, warning): status + Warning (AA3)
//!                   ├─ refuse(status) ──status
//!                   └─ CANCEL ──200 (CANCEL), 487 (INVITE); a later outcome is dropped
//!  Live/Invited ─re-INVITE, same media─> 200 (same answer) ─> AwaitingAck; other media ─> 488
//!  Live/Invited/AwaitingAck ─BYE in─> 200, freed, SessionClosed (F6: CC2 mail, QUIT)
//!  Live/Invited/AwaitingAck ─end_session, or no ACK in 64*T1─> BYE out ─> Ending
//!      ─final/timeout─> freed (SessionClosed without notification: QUIT only)
//!  Pending on the invitation ─CANCEL─> 487, SessionClosed (CC2 mail once it is sent, QUIT)
//! ```
//!
//! The core never calls the policy: it emits [`Effect::Decide`] and takes the answer back in
//! [`Core::on_decision`]. Until then the INVITE is pending (a `State::Pending` session),
//! the general shape of an INVITE waiting for an outcome (the policy's decision, or the
//! e-mail invitation's SMTP outcome for F2: [`Effect::MailInvitation`] and
//! [`Core::on_invitation`]). A session whose invitation was mailed, or whose 200 OK went
//! out, has mail and chat state on the driver's side ([`Effect::MailInvitation`],
//! [`Effect::MailAccepted`], [`Effect::ChatOpen`]); whenever such a session ends the core
//! emits [`Effect::SessionClosed`].

use crate::net::sip::{AGENT, new_tag};
use crate::policy::world::{
    Gateway, GroupInfo, InviteDecision, Session as PolicySession, SessionPhase, SipStatus,
};
use crate::sdp::msrp::{self, Answer, LocalMsrp, MsrpParams, Offer, Role};
use crate::sdp::uri::Host;
use crate::session::registry::{Journal, Phase as Shown};
use crate::sip::cpm::{CpmInvite, Identities, Originator};
use crate::sip::dialog::{Dialog, Target};
use crate::sip::message::{
    Message, ResponseSpec, Transport, reason_value, tag_param, warning_value,
};
use crate::sip::multipart;
use crate::sip::transaction::{
    Action, MAGIC_COOKIE, Output, Timers, TransactionKey, TransactionTable,
};
use chrono::{DateTime, FixedOffset};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the core needs to know of the gateway.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub gateway: Gateway,
    /// The Contact of the IWF's dialogs (RFC 3261 12.1.1), e.g. `<sip:iwf@192.0.2.1:5060>`.
    pub contact: String,
    /// The sent-by of the IWF's own requests' Via (18.1.1), e.g. `192.0.2.1:5060`.
    pub sent_by: String,
    /// Where the IWF's MSRP endpoint listens (`[msrp] listen`).
    pub msrp_host: Host,
    pub msrp_port: u16,
    pub timers: Timers,
}

/// A peer as the driver names it: where responses go (the transaction layer's `P`), and the
/// way to a dialog's next hop for the IWF's own requests.
pub trait Peer: Clone {
    /// Where a request within the dialog established through `self` goes when its next hop
    /// is `target` (12.2.1.1); `None` when the driver cannot reach it.
    fn toward(&self, target: &Target) -> Option<Self>;
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
        session: Box<PolicySession>,
    },
    /// 5.2.4.2.4 steps 1-5: mail the invitation (AA1, AA2) for `session`, off the session
    /// task, and hand the SMTP outcome (AA3) to [`Core::on_invitation`] under `key`.
    MailInvitation {
        key: SessionKey,
        mail: Box<MailFacts>,
    },
    /// F1 (5.2.1.3): session `key` was accepted on the e-mail user's behalf: the mail side
    /// starts for its chat mails (F4).
    MailAccepted {
        key: SessionKey,
        mail: Box<MailFacts>,
    },
    /// Open session `key`'s MSRP session as negotiated (RFC 4975, RFC 6135 roles); its
    /// messages go to the mail side (F4). At the 200 OK of an F1 session. In F2 only with
    /// the e-mail user's consent (5.2.4.2.4): at the accept when the IWF connects; at the
    /// 200 OK when the CPM side does (step 5a), then `held`: its messages wait for
    /// [`Effect::ChatConsent`].
    ChatOpen {
        key: SessionKey,
        msrp: Box<MsrpParams>,
        held: bool,
    },
    /// The e-mail user answered the invitation of session `key`, whose MSRP side holds the
    /// CPM side's messages: accepted (F3), they go to the mail side in order, and the later
    /// ones as they come; refused (reject, expiry), each is failed.
    ChatConsent { key: SessionKey, consent: Consent },
    /// Session `key`, which has a mail side (an invitation mailed, or a 200 OK sent), is
    /// over: its MSRP session is closed, and the mail side sends the CC2 notification when
    /// `notify` says so (the CPM side closed it: BYE, CANCEL; 5.2.4.2.6), then QUITs the
    /// channel (CC2) and frees its state.
    SessionClosed { key: SessionKey, notify: Notify },
}

/// The e-mail user's answer, for the chat messages held until it (5.2.4.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    Given,
    Refused,
}

/// Whether the mail side mails the CC2 notification (5.2.4.2.6) before its QUIT.
#[derive(Debug, Clone)]
pub enum Notify {
    /// The IWF ended the session, or it never was set up: QUIT only.
    No,
    /// The CPM side closed it. `by`: the identities of the BYE that did (CC2 From, Privacy,
    /// P-Asserted-Identity come from the request that caused the mail); `None` (a CANCEL,
    /// or a BYE whose identity headers are malformed): the INVITE's.
    Yes { by: Option<Box<Identities>> },
}

/// What the mail side needs of a session: the policy's facts and the dates of the INVITE
/// (AA2 Date row; the policy's record has no date).
#[derive(Debug, Clone)]
pub struct MailFacts {
    pub session: PolicySession,
    /// The DateTime of the INVITE's message/cpim part.
    pub cpim_date_time: Option<DateTime<FixedOffset>>,
    pub sip_date: Option<DateTime<FixedOffset>>,
}

/// The outcome of the invitation mail (AA3): `Ok` when the server took it (250), else the
/// SIP status to answer and the text of its Warning (the SMTP reply, sanitised there).
pub type InvitationOutcome = Result<(), (SipStatus, String)>;

/// A session: its Call-ID and the IWF's own tag (RFC 3261 12: the remote tag is the peer's;
/// the local tag alone is unique to this IWF). The tag is chosen when the INVITE arrives and
/// is the To tag of every response to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    pub call_id: String,
    pub local_tag: String,
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};tag={}", self.call_id, self.local_tag)
    }
}

/// Why the IWF ends a session: the `Reason` of its BYE (RFC 3326), e.g. cause 200 "the
/// e-mail user left".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndReason {
    pub cause: u16,
    pub text: String,
}

/// What a pending INVITE waits for before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// The policy's `on-invite` decision (5.2.4.2.4).
    Decision,
    /// The SMTP outcome of the invitation mail (5.2.4.2.4 step 5, AA3).
    Invitation,
}

/// An INVITE answered 100 Trying and held, without a final response, until its outcome.
struct Pending {
    invite: TransactionKey,
    /// The dialog the 2xx will establish.
    dialog: Dialog,
    awaiting: Awaiting,
}

/// A 2xx to an INVITE or re-INVITE, the TU's to retransmit until its ACK (13.3.1.4).
struct AwaitingAck<P> {
    ok: Vec<u8>,
    peer: P,
    /// The CSeq number of the INVITE, which its ACK carries (13.2.2.4).
    cseq: u32,
    next: Instant,
    interval: Duration,
    give_up: Instant,
    /// Where the ACK takes the session: Invited when the e-mail user has not answered yet.
    invited: bool,
}

/// Where an established dialog stands.
enum Phase<P> {
    AwaitingAck(AwaitingAck<P>),
    Live,
    /// 5.2.4.2.4 step 5a: the invitation was mailed and the 200 acknowledged; the e-mail
    /// user has not answered. Behaves as Live for BYE and re-INVITE until F3 (issue 7).
    Invited,
    /// The IWF sent a BYE (`bye` is its client transaction); the session is freed when that
    /// transaction ends, whatever its outcome (15.1.1).
    Ending {
        bye: TransactionKey,
    },
}

/// Where a session stands: an INVITE still pending cannot be in a dialog phase.
enum State<P> {
    Pending(Pending),
    Dialog(Dialog, Phase<P>),
}

/// One CPM session for an e-mail user.
struct Session<P> {
    /// The MSRP session id: the session's id in logs, mail tokens and `GET /sessions`.
    id: Arc<str>,
    /// Where the INVITE came from, and over what: the IWF's requests in the dialog go out
    /// through it ([`Peer::toward`]).
    peer: P,
    transport: Transport,
    /// The INVITE's offer and the IWF's answer; a re-INVITE with the same media gets the
    /// same answer again (RFC 3264 8: unchanged, `o=` version included).
    offer: Offer,
    answer: Answer,
    state: State<P>,
    /// The facts the mail side works from.
    facts: Box<MailFacts>,
    /// Set once the mail side holds state for this session (the invitation handed to it,
    /// or the 200 OK sent), until [`Effect::SessionClosed`].
    mailed: bool,
}

pub struct Core<P> {
    config: CoreConfig,
    transactions: TransactionTable<P>,
    /// Boxed: the map's table holds a slot per capacity (up to twice the sessions), and a
    /// session is ~1.5 KB.
    sessions: HashMap<SessionKey, Box<Session<P>>>,
    /// The sessions retransmitting a 2xx, by the instant of their next retransmission or
    /// give-up (13.3.1.4), so that timers need no scan of every session. Pushed whenever
    /// that instant changes; an entry that no longer matches its session is dropped.
    acks: BinaryHeap<Reverse<(Instant, SessionKey)>>,
    /// The sessions Ending, by their BYE's client transaction.
    byes: HashMap<TransactionKey, SessionKey>,
    /// What operators see of the sessions, changed this turn (`session::registry`).
    journal: Journal,
}

impl<P: Peer> Core<P> {
    pub fn new(config: CoreConfig) -> Self {
        let transactions = TransactionTable::new(config.timers);
        Self {
            config,
            transactions,
            sessions: HashMap::new(),
            acks: BinaryHeap::new(),
            byes: HashMap::new(),
            journal: Journal::default(),
        }
    }

    /// The sessions' changes since the driver last applied them to the registry.
    pub fn journal(&mut self) -> &mut Journal {
        &mut self.journal
    }

    /// Sessions held (pending, or with a dialog).
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
        self.run(outputs, transport, now)
    }

    /// A response from the transport: to its client transaction (17.1.3), else dropped.
    pub fn on_response(&mut self, response: Message, now: Instant) -> Vec<Effect<P>> {
        let outputs = self.transactions.on_response(response, now);
        self.run(outputs, Transport::Datagram, now)
    }

    /// The policy's answer to the [`Effect::Decide`] of session `key`. Dropped when the INVITE
    /// is no longer pending on it (cancelled meanwhile).
    pub fn on_decision(
        &mut self,
        key: &SessionKey,
        decision: InviteDecision,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let Some(session) = self.take_pending(key, Awaiting::Decision) else {
            tracing::debug!(session = %key, "decision for an INVITE no longer pending dropped");
            return Vec::new();
        };
        let State::Pending(pending) = session.state else {
            return Vec::new();
        };
        // Rebuilt whole so that each branch can take it; an INVITE the decision leaves
        // pending (ask-user) waits on the invitation from here on.
        let session = Session {
            state: State::Pending(Pending {
                awaiting: Awaiting::Invitation,
                ..pending
            }),
            ..session
        };
        match decision {
            InviteDecision::AcceptOnBehalf => {
                tracing::info!(session = %session.id, %key, "INVITE accepted on behalf of the e-mail user");
                self.answer_invite(key, session, false, now)
            }
            InviteDecision::AskUser => {
                // 5.2.4.2.4: ask the e-mail user; the INVITE stays pending on the mail.
                tracing::info!(session = %session.id, %key, "policy asks the e-mail user: mailing the invitation");
                self.journal
                    .phase(&session.id, now, Shown::PendingInvitation);
                let mail = session.facts.clone();
                self.sessions.insert(
                    key.clone(),
                    Box::new(Session {
                        mailed: true,
                        ..session
                    }),
                );
                vec![Effect::MailInvitation {
                    key: key.clone(),
                    mail,
                }]
            }
            InviteDecision::Refuse(status) => {
                let State::Pending(pending) = &session.state else {
                    return Vec::new();
                };
                self.journal
                    .sip(&session.id, now, format_args!("{} sent", status.code));
                self.journal.closed(&session.id, now);
                self.respond(&pending.invite, status.code, &key.local_tag, &[], None, now)
            }
        }
    }

    /// The SMTP outcome (AA3) of the [`Effect::MailInvitation`] of session `key`: 250 ->
    /// 200 OK with the SDP answer (step 5a), the session then Invited once acknowledged;
    /// a refusal -> its status with the SMTP reply as Warning (steps 3, 5b). Dropped when
    /// the INVITE is no longer pending on it (cancelled meanwhile).
    pub fn on_invitation(
        &mut self,
        key: &SessionKey,
        outcome: InvitationOutcome,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let Some(session) = self.take_pending(key, Awaiting::Invitation) else {
            tracing::debug!(session = %key, "invitation outcome for an INVITE no longer pending dropped");
            return Vec::new();
        };
        match outcome {
            Ok(()) => {
                tracing::info!(session = %session.id, %key, "invitation mailed: INVITE answered 200");
                self.answer_invite(key, session, true, now)
            }
            // The mail side has already let go of the session: no SessionClosed.
            Err((status, warning)) => {
                tracing::info!(session = %session.id, %key, status = status.code, %warning, "invitation not mailed");
                let State::Pending(pending) = &session.state else {
                    return Vec::new();
                };
                let sent = format_args!("{} {} sent (AA3)", status.code, status.reason);
                self.journal.sip(&session.id, now, sent);
                self.journal.closed(&session.id, now);
                // AA3: the status and its reason phrase as the policy chose them.
                let warning = warning_value(AGENT, &warning);
                let extra = [("Warning", warning.as_str())];
                self.respond_status(&pending.invite, &status, &key.local_tag, &extra, None, now)
            }
        }
    }

    /// 200 OK with the SDP answer to the pending INVITE of `session` (5.2.1.3, and
    /// 5.2.4.2.4 step 5a when `invited`): the dialog is established, the 2xx retransmitted
    /// until its ACK.
    fn answer_invite(
        &mut self,
        key: &SessionKey,
        session: Session<P>,
        invited: bool,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let State::Pending(pending) = session.state else {
            return Vec::new();
        };
        let (cseq, body) = (pending.dialog.remote_cseq(), session.answer.to_bytes());
        let record_route = pending.dialog.record_route();
        let tag = key.local_tag.as_str();
        let mut sent = self.answer_2xx(&pending.invite, tag, record_route, &body, now);
        let Some(phase) = self.awaiting_ack(&sent, cseq, invited, now) else {
            // No 2xx went out (the transaction is gone): the mail side lets go too.
            self.journal.closed(&session.id, now);
            if session.mailed {
                sent.push(Effect::SessionClosed {
                    key: key.clone(),
                    notify: Notify::No,
                });
            }
            return sent;
        };
        // F1: the mail side starts for the chat; F2: it has been there since the invitation.
        // Both go before the 200 OK: the peer may connect as soon as it has the answer,
        // and the MSRP session must be open by then (else its connection gets 481). In F2
        // the IWF does not connect before the e-mail user accepted (5.2.4.2.4); a CPM side
        // that connects (step 5a) is taken, its messages held until then.
        let mut first = Vec::with_capacity(2);
        if !invited {
            first.push(Effect::MailAccepted {
                key: key.clone(),
                mail: session.facts.clone(),
            });
        }
        let iwf_connects = session.answer.params.role == Role::Active;
        if !(invited && iwf_connects) {
            first.push(Effect::ChatOpen {
                key: key.clone(),
                msrp: Box::new(session.answer.params.clone()),
                held: invited,
            });
        }
        sent.splice(0..0, first);
        self.journal
            .sip(&session.id, now, "200 OK sent (SDP answer)");
        self.journal.phase(&session.id, now, Shown::AwaitingAck);
        let state = State::Dialog(pending.dialog, phase);
        let session = Session {
            state,
            mailed: true,
            ..session
        };
        self.sessions.insert(key.clone(), Box::new(session));
        self.watch_ack(key);
        sent
    }

    /// [`Effect::SessionClosed`] for a session freed, when its invitation was mailed.
    fn closed_effect(key: &SessionKey, session: &Session<P>, notify: Notify) -> Option<Effect<P>> {
        session.mailed.then(|| Effect::SessionClosed {
            key: key.clone(),
            notify,
        })
    }

    /// Frees session `key`; the mail side is told when it holds state for it.
    fn free(&mut self, key: &SessionKey, notify: Notify, now: Instant) -> Vec<Effect<P>> {
        let session = self.sessions.remove(key);
        if let Some(session) = &session {
            self.journal.closed(&session.id, now);
        }
        session
            .and_then(|session| Self::closed_effect(key, &session, notify))
            .into_iter()
            .collect()
    }

    /// Records a SIP event of session `key`, when held (for calls that know only the key).
    fn note(&mut self, key: &SessionKey, now: Instant, what: fmt::Arguments<'_>) {
        if let Some(session) = self.sessions.get(key) {
            self.journal.sip(&session.id, now, what);
        }
    }

    /// Where the e-mail user stands in session `key` (the policy's `session-phase`):
    /// `None` while the INVITE is pending or once the session is ending.
    pub fn user_phase(&self, key: &SessionKey) -> Option<SessionPhase> {
        match &self.sessions.get(key)?.state {
            State::Dialog(_, Phase::Invited) => Some(SessionPhase::AwaitingAnswer),
            State::Dialog(_, Phase::AwaitingAck(a)) if a.invited => {
                Some(SessionPhase::AwaitingAnswer)
            }
            State::Dialog(_, Phase::AwaitingAck(_) | Phase::Live) => Some(SessionPhase::Live),
            State::Dialog(_, Phase::Ending { .. }) | State::Pending(_) => None,
        }
    }

    /// F3 (5.2.4.2.4): the e-mail user accepted the invitation: the session is live, and
    /// its chat starts: the IWF connects now (when it is the active end), or the messages
    /// the CPM side sent meanwhile go out. `None` when session `key` was not awaiting an
    /// answer.
    pub fn user_accepted(&mut self, key: &SessionKey) -> Option<Vec<Effect<P>>> {
        let session = self.sessions.get_mut(key)?;
        let State::Dialog(_, phase) = &mut session.state else {
            return None;
        };
        match phase {
            Phase::Invited => {
                *phase = Phase::Live;
                self.journal.phase(&session.id, Instant::now(), Shown::Live);
            }
            // Accepted before the ACK came: the ACK then makes it live.
            Phase::AwaitingAck(a) if a.invited => a.invited = false,
            _ => return None,
        }
        tracing::info!(session = %session.id, "the e-mail user accepted: session live");
        let chat = match session.answer.params.role {
            Role::Active => Effect::ChatOpen {
                key: key.clone(),
                msrp: Box::new(session.answer.params.clone()),
                held: false,
            },
            Role::Passive => Effect::ChatConsent {
                key: key.clone(),
                consent: Consent::Given,
            },
        };
        Some(vec![chat])
    }

    /// F3: the invitation's expiry passed; a session still awaiting the e-mail user's
    /// answer is ended as rejected (BYE with the reason).
    pub fn invitation_expired(&mut self, key: &SessionKey, now: Instant) -> Vec<Effect<P>> {
        if self.user_phase(key) != Some(SessionPhase::AwaitingAnswer) {
            return Vec::new();
        }
        tracing::info!(session = %key, "no answer from the e-mail user in time: treated as reject");
        let reason = EndReason {
            cause: 408,
            text: "the e-mail user did not answer the invitation in time".into(),
        };
        self.end_session(key, &reason, now)
    }

    /// Ends session `key` from the IWF's side (reject, leave, expiry): a BYE within the dialog
    /// with `reason` (15.1.1, RFC 3326); the session is freed when the BYE's transaction
    /// ends. An INVITE still pending is answered 480 with the reason as Warning instead.
    pub fn end_session(
        &mut self,
        key: &SessionKey,
        reason: &EndReason,
        now: Instant,
    ) -> Vec<Effect<P>> {
        match self.sessions.get(key).map(|s| &s.state) {
            None => {
                tracing::debug!(session = %key, "end of a session not held: nothing to do");
                Vec::new()
            }
            Some(State::Pending(pending)) => {
                let invite = pending.invite.clone();
                self.note(key, now, format_args!("480 sent: {}", reason.text));
                let mut out = self.refuse(&invite, 480, &key.local_tag, &reason.text, now);
                out.extend(self.free(key, Notify::No, now));
                out
            }
            Some(State::Dialog(_, Phase::Ending { .. })) => Vec::new(),
            Some(State::Dialog(..)) => {
                // Not accepted (rejected, expired): the messages the CPM side sent
                // meanwhile are refused first (failure REPORTs), while its MSRP
                // connection is still there to take them, then the BYE.
                let mut out = Vec::new();
                if self.user_phase(key) == Some(SessionPhase::AwaitingAnswer) {
                    out.push(Effect::ChatConsent {
                        key: key.clone(),
                        consent: Consent::Refused,
                    });
                }
                out.extend(self.send_bye(key, reason, now));
                out
            }
        }
    }

    /// Sends the BYE of session `key` and moves it to Ending (15.1.1); frees it when the BYE
    /// cannot be built or sent.
    fn send_bye(&mut self, key: &SessionKey, reason: &EndReason, now: Instant) -> Vec<Effect<P>> {
        let Some(session) = self.sessions.get_mut(key) else {
            return Vec::new();
        };
        let State::Dialog(dialog, phase) = &mut session.state else {
            return Vec::new();
        };
        let protocol = match session.transport {
            Transport::Datagram => "UDP",
            Transport::Stream => "TCP",
        };
        let via = format!(
            "SIP/2.0/{protocol} {};branch={MAGIC_COOKIE}{};rport",
            self.config.sent_by,
            new_tag()
        );
        let reason_header = reason_value(reason.cause, &reason.text);
        let started = dialog
            .request("BYE", &via, &[("Reason", &reason_header)])
            .and_then(|bye| {
                let peer = session
                    .peer
                    .toward(&bye.next_hop)
                    .ok_or_else(|| format!("next hop {} not reachable", bye.next_hop))?;
                self.transactions
                    .send_request(bye.bytes, session.transport, peer, now)
                    .map_err(|e| e.to_string())
            });
        match started {
            Ok((bye, outputs)) => {
                tracing::info!(session = %session.id, %key, cause = reason.cause, text = %reason.text, "BYE sent");
                let sent = format_args!("BYE sent ({}: {})", reason.cause, reason.text);
                self.journal.sip(&session.id, now, sent);
                self.journal.phase(&session.id, now, Shown::Ending);
                *phase = Phase::Ending { bye: bye.clone() };
                self.byes.insert(bye, key.clone());
                let transport = session.transport;
                self.run(outputs, transport, now)
            }
            Err(e) => {
                tracing::warn!(session = %session.id, %key, error = %e, "BYE not sent; session freed");
                self.free(key, Notify::No, now)
            }
        }
    }

    /// Removes session `key` when its INVITE is pending on `awaiting`.
    fn take_pending(&mut self, key: &SessionKey, awaiting: Awaiting) -> Option<Session<P>> {
        match &self.sessions.get(key)?.state {
            State::Pending(p) if p.awaiting == awaiting => self.sessions.remove(key).map(|s| *s),
            _ => None,
        }
    }

    /// When session `key` next retransmits its 2xx or gives up, if it is waiting for an ACK.
    fn ack_deadline(&self, key: &SessionKey) -> Option<Instant> {
        match &self.sessions.get(key)?.state {
            State::Dialog(_, Phase::AwaitingAck(a)) => Some(a.next.min(a.give_up)),
            _ => None,
        }
    }

    /// Records session `key`'s current ACK deadline in `acks`.
    fn watch_ack(&mut self, key: &SessionKey) {
        if let Some(at) = self.ack_deadline(key) {
            self.acks.push(Reverse((at, key.clone())));
        }
    }

    /// The earliest instant at which [`Core::handle_timeout`] has work.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, key))) = self.acks.peek() {
            if self.ack_deadline(key) == Some(*at) {
                break;
            }
            self.acks.pop();
        }
        let ack = self.acks.peek().map(|Reverse((at, _))| *at);
        ack.into_iter()
            .chain(self.transactions.poll_timeout())
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Effect<P>> {
        let mut out = Vec::new();
        let mut abandoned = Vec::new();
        while let Some(Reverse((at, key))) = self.acks.peek().cloned() {
            if at > now {
                break;
            }
            self.acks.pop();
            if self.ack_deadline(&key) != Some(at) {
                continue; // acknowledged, ended, or moved since
            }
            let Some(Session {
                state: State::Dialog(_, Phase::AwaitingAck(a)),
                ..
            }) = self.sessions.get_mut(&key).map(|s| &mut **s)
            else {
                continue;
            };
            if now >= a.give_up {
                abandoned.push(key);
                continue;
            }
            out.push(Effect::Send {
                peer: a.peer.clone(),
                bytes: a.ok.clone(),
            });
            a.interval = (a.interval * 2).min(self.config.timers.t2);
            a.next = now + a.interval;
            self.watch_ack(&key);
        }
        for key in abandoned {
            // 13.3.1.4: no ACK within 64*T1: the session SHOULD be ended with a BYE.
            tracing::warn!(session = %key, "no ACK for the 2xx; ending the session");
            let reason = EndReason {
                cause: 408,
                text: "no ACK for the 2xx".into(),
            };
            out.extend(self.send_bye(&key, &reason, now));
        }
        let outputs = self.transactions.handle_timeout(now);
        out.extend(self.run(outputs, Transport::Datagram, now));
        out
    }

    /// Carries out what the transaction layer asked: sends, requests for the TU, and the ends
    /// of the IWF's own requests. `transport` is what the requests among `outputs` came over
    /// (only [`Core::on_request`] delivers requests; other callers pass any).
    fn run(
        &mut self,
        outputs: Vec<Output<P>>,
        transport: Transport,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let mut out = Vec::new();
        for Output { key, peer, action } in outputs {
            match action {
                Action::Send(bytes) => out.push(Effect::Send { peer, bytes }),
                Action::Request(request) => {
                    out.extend(self.on_tu_request(&key, request, transport, peer, now))
                }
                Action::Cancelled => out.extend(self.on_cancelled(&key, now)),
                Action::Response(response) => {
                    if let Some(status) = response.status().filter(|s| *s >= 200) {
                        let how = format_args!("{status} received for the BYE");
                        out.extend(self.on_request_done(&key, how, now));
                    }
                }
                Action::Timeout => {
                    let how = format_args!("no response to the BYE");
                    out.extend(self.on_request_done(&key, how, now))
                }
                Action::TransportError => {
                    let how = format_args!("BYE not delivered (transport error)");
                    out.extend(self.on_request_done(&key, how, now))
                }
                Action::Terminated => {}
            }
        }
        out
    }

    /// The IWF's request `request` ended (a final response, Timer F or a transport error):
    /// a session Ending on it is freed (15.1.1; 481 and 408 end the dialog too, 12.2.1.2).
    fn on_request_done(
        &mut self,
        request: &TransactionKey,
        how: fmt::Arguments<'_>,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let Some(key) = self.byes.remove(request) else {
            return Vec::new();
        };
        match self.sessions.get(&key).map(|s| &**s) {
            Some(Session {
                id,
                state: State::Dialog(_, Phase::Ending { bye }),
                ..
            }) if bye == request => {
                tracing::info!(session = %id, "BYE done: session closed");
                self.journal.sip(id, now, how);
            }
            _ => return Vec::new(),
        }
        // The IWF ended it: the mail side only QUITs.
        self.free(&key, Notify::No, now)
    }

    /// 9.2: a CANCEL reached the INVITE `invite` before its final response. The INVITE is
    /// answered 487 and its session freed; an outcome arriving later finds nothing.
    fn on_cancelled(&mut self, invite: &TransactionKey, now: Instant) -> Vec<Effect<P>> {
        let key = self.sessions.iter().find_map(|(key, s)| match &s.state {
            State::Pending(p) if &p.invite == invite => Some(key.clone()),
            _ => None,
        });
        let mut closed = Vec::new();
        let tag = match key.and_then(|key| self.sessions.remove_entry(&key)) {
            Some((key, session)) => {
                tracing::info!(session = %session.id, %key, "INVITE cancelled while pending");
                self.journal
                    .sip(&session.id, now, "CANCEL received: 487 sent");
                self.journal.closed(&session.id, now);
                // An invitation in flight: the mail side closes its channel once it is done.
                let notify = Notify::Yes { by: None };
                closed.extend(Self::closed_effect(&key, &session, notify));
                key.local_tag
            }
            None => new_tag(),
        };
        let mut out = self.respond(invite, 487, &tag, &[], None, now);
        out.extend(closed);
        out
    }

    fn on_tu_request(
        &mut self,
        tx: &TransactionKey,
        request: Message,
        transport: Transport,
        peer: P,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let Some(method) = request.method().map(|m| m.as_str().to_string()) else {
            return Vec::new();
        };
        if to_tag(&request).is_some() {
            return self.on_in_dialog(tx, &method, &request, now);
        }
        match method.as_str() {
            "INVITE" => self.on_invite(tx, &request, transport, peer, now),
            "ACK" => Vec::new(), // an ACK is never answered
            // 12.2.2 and 8.2.2.2: a request for a dialog needs the To tag of that dialog.
            "BYE" => self.refuse(tx, 481, "", "no such session", now),
            _ => self.refuse(tx, 405, "", "method not handled here", now),
        }
    }

    /// A request with a To tag: within one of the IWF's dialogs, or answered 481 (12.2.2).
    fn on_in_dialog(
        &mut self,
        tx: &TransactionKey,
        method: &str,
        request: &Message,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let Some(key) = self.dialog_of(request) else {
            return match method {
                "ACK" => Vec::new(),
                _ => self.refuse(tx, 481, "", "no such session", now),
            };
        };
        let Some(Session {
            id,
            state: State::Dialog(dialog, phase),
            ..
        }) = self.sessions.get_mut(&key).map(|s| &mut **s)
        else {
            return Vec::new();
        };
        if method == "ACK" {
            // 13.3.1.4: the ACK for the 2xx being retransmitted (same CSeq number).
            if let Phase::AwaitingAck(a) = phase
                && request.cseq().is_some_and(|(n, _)| n == a.cseq)
            {
                self.journal.sip(id, now, "ACK received");
                if a.invited {
                    *phase = Phase::Invited;
                    tracing::info!(session = %id, "session invited: awaiting the e-mail user");
                    self.journal.phase(id, now, Shown::AwaitingAnswer);
                } else {
                    *phase = Phase::Live;
                    tracing::info!(session = %id, "session live");
                    self.journal.phase(id, now, Shown::Live);
                }
            }
            return Vec::new();
        }
        if matches!(phase, Phase::Ending { .. }) {
            // 15.1.1: once the IWF sent its BYE the session is over; a crossing BYE is
            // answered, anything else finds no session.
            return match method {
                "BYE" => self.respond(tx, 200, "", &[], None, now),
                _ => self.refuse(tx, 481, "", "session ending", now),
            };
        }
        if let Err(why) = dialog.check_cseq(request) {
            return self.refuse(tx, 500, "", &why, now);
        }
        match method {
            "BYE" => {
                // F6 (5.2.4.2.6): 200 OK at once, then the mail side's CC2, from the BYE's
                // identities, and QUIT. Malformed ones do not keep the session alive: CC2
                // then takes the INVITE's.
                tracing::info!(session = %id, "BYE: session closed");
                self.journal.sip(id, now, "BYE received: 200 sent");
                let by = match Originator::from_message(request) {
                    Ok(originator) => Some(Box::new(originator.identities())),
                    Err(e) => {
                        tracing::info!(session = %id, reason = %e.reason, "BYE identity not read: CC2 from the INVITE's");
                        None
                    }
                };
                let mut out = self.respond(tx, 200, "", &[], None, now);
                out.extend(self.free(&key, Notify::Yes { by }, now));
                out
            }
            "INVITE" => self.on_reinvite(&key, tx, request, now),
            _ => self.refuse(tx, 405, "", "method not handled within a session", now),
        }
    }

    /// A re-INVITE (14.2) in session `key`: a refresh (no offer, or the same media) gets the
    /// same answer in a 200 and refreshes the remote target (12.2.2); a change of media is
    /// refused 488 and the session goes on as negotiated.
    fn on_reinvite(
        &mut self,
        key: &SessionKey,
        tx: &TransactionKey,
        request: &Message,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let Some(session) = self.sessions.get(key) else {
            return Vec::new();
        };
        self.journal.sip(&session.id, now, "re-INVITE received");
        if let State::Dialog(_, Phase::AwaitingAck(_)) = session.state {
            // 14.2: the last offer/answer is not complete before its ACK.
            let retry = [("Retry-After", "1")];
            return self.respond(tx, 500, "", &retry, None, now);
        }
        let same_media = match multipart::invite_body(request.header("Content-Type"), &request.body)
        {
            Err(e) => return self.refuse(tx, e.status, "", &e.reason, now),
            // No offer: the 200 offers the same description (13.2.1); the ACK answers it.
            Ok(body) => match body.sdp {
                None => true,
                Some(sdp) => match Offer::parse(&sdp) {
                    Ok(offer) => same_media(&offer, &session.offer),
                    Err(e) => {
                        return self.refuse_with(tx, 488, e.warn_code(), "", &e.to_string(), now);
                    }
                },
            },
        };
        if !same_media {
            self.journal
                .sip(&session.id, now, "488 sent: the media may not change");
            return self.refuse(
                tx,
                488,
                "",
                "changing the media of a session is not supported; it goes on as negotiated",
                now,
            );
        }
        let body = session.answer.to_bytes();
        let invited = matches!(session.state, State::Dialog(_, Phase::Invited));
        let cseq = request.cseq().map_or(0, |(n, _)| n);
        let sent = self.answer_2xx(tx, "", &[], &body, now);
        let phase = self.awaiting_ack(&sent, cseq, invited, now);
        if let Some(Session {
            id,
            state: State::Dialog(dialog, current),
            ..
        }) = self.sessions.get_mut(key).map(|s| &mut **s)
            && let Some(phase) = phase
        {
            if let Err(e) = dialog.refresh_target(request) {
                tracing::info!(session = %id, error = %e, "re-INVITE Contact not taken");
            }
            *current = phase;
            tracing::info!(session = %id, "re-INVITE: session refreshed");
            self.journal.sip(id, now, "200 OK sent (the same answer)");
            self.journal.phase(id, now, Shown::AwaitingAck);
            self.watch_ack(key);
        }
        sent
    }

    /// F1 (5.2.1.3) and the branches of 5.2.4.2.4: the INVITE is checked, its dialog and
    /// answer prepared, and the decision asked for; it stays pending until that comes.
    fn on_invite(
        &mut self,
        invite: &TransactionKey,
        request: &Message,
        transport: Transport,
        peer: P,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let tag = new_tag();
        let cpm = match CpmInvite::from_message(request) {
            Ok(cpm) => cpm,
            Err(e) => return self.refuse(invite, e.status, &tag, &e.reason, now),
        };
        let dialog = match Dialog::uas(request, &tag) {
            Ok(dialog) => dialog,
            Err(why) => return self.refuse(invite, 400, &tag, &why, now),
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
            call_id: dialog.call_id.clone(),
            local_tag: tag,
        };
        // 5.2.4.2.4 step 2b, AA2 To/Cc/Bcc: an INVITE with a URI-list (RFC 5366) invites to
        // a group session; its Contact is the conference focus (RFC 4579).
        let group = body.recipients.map(|recipients| GroupInfo {
            focus_uri: dialog.remote_target().to_string(),
            recipients,
        });
        let facts = cpm.session(&session_id, self.config.gateway.clone(), group);
        tracing::debug!(session = %session_id, %key, "INVITE pending on the policy's decision");
        let id: Arc<str> = session_id.into();
        let email_user = facts.request_uri.trim_start_matches("mailto:");
        let cpm_user = &facts.asserted_identity.as_ref().unwrap_or(&facts.from).uri;
        self.journal.opened(&id, now, email_user, cpm_user);
        self.journal
            .sip(&id, now, "INVITE received: 100 Trying sent");
        self.sessions.insert(
            key.clone(),
            Box::new(Session {
                id,
                peer,
                transport,
                offer,
                answer,
                state: State::Pending(Pending {
                    invite: invite.clone(),
                    dialog,
                    awaiting: Awaiting::Decision,
                }),
                facts: Box::new(MailFacts {
                    session: facts.clone(),
                    cpim_date_time: body.cpim_date_time,
                    sip_date: cpm
                        .date
                        .as_ref()
                        .and_then(|d| crate::mail::aa2::parse_sip_date(&d.raw)),
                }),
                mailed: false,
            }),
        );
        vec![Effect::Decide {
            key,
            session: Box::new(facts),
        }]
    }

    /// A 200 with `record_route` copied (12.1.1), the IWF's Contact and SDP `body` to the
    /// INVITE `tx`.
    fn answer_2xx(
        &mut self,
        tx: &TransactionKey,
        to_tag: &str,
        record_route: &[String],
        body: &[u8],
        now: Instant,
    ) -> Vec<Effect<P>> {
        let contact = self.config.contact.clone();
        let mut headers: Vec<(&str, &str)> = record_route
            .iter()
            .map(|r| ("Record-Route", r.as_str()))
            .collect();
        headers.push(("Contact", contact.as_str()));
        let body = Some(("application/sdp", body));
        self.respond(tx, 200, to_tag, &headers, body, now)
    }

    /// The retransmission state of the 2xx in `sent` (13.3.1.4): T1, doubling up to T2,
    /// given up after 64*T1. `None` when no 2xx went out.
    fn awaiting_ack(
        &self,
        sent: &[Effect<P>],
        cseq: u32,
        invited: bool,
        now: Instant,
    ) -> Option<Phase<P>> {
        let Some(Effect::Send { peer, bytes }) = sent.first() else {
            return None;
        };
        let t1 = self.config.timers.t1;
        Some(Phase::AwaitingAck(AwaitingAck {
            ok: bytes.clone(),
            peer: peer.clone(),
            cseq,
            next: now + t1,
            interval: t1,
            give_up: now + self.config.timers.t1_x64(),
            invited,
        }))
    }

    /// The session with a dialog an in-dialog request belongs to: Call-ID, To tag (the
    /// IWF's) and From tag (the peer's) match (12.2.2).
    fn dialog_of(&self, request: &Message) -> Option<SessionKey> {
        let key = SessionKey {
            call_id: request.header("Call-ID")?.to_string(),
            local_tag: to_tag(request)?,
        };
        match &self.sessions.get(&key)?.state {
            State::Dialog(dialog, _) if dialog.is_from_remote(request) => Some(key),
            _ => None,
        }
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
        let status = SipStatus {
            code: status,
            reason: String::new(),
        };
        self.respond_status(key, &status, to_tag, extra, body, now)
    }

    /// [`Core::respond`] with the policy's reason phrase (the standard one when empty).
    fn respond_status(
        &mut self,
        key: &TransactionKey,
        status: &SipStatus,
        to_tag: &str,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let spec = ResponseSpec {
            status: status.code,
            reason: &status.reason,
            to_tag: Some(to_tag).filter(|t| !t.is_empty()),
            extra_headers: extra,
            body,
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
                tracing::debug!(status = status.code, error = %e, "response not sent");
                Vec::new()
            }
        }
    }
}

/// RFC 3264 8: an offer with the same media (every m= section with its attributes, and the
/// session-level c= and attributes) as the first one changes nothing; `o=` may differ.
fn same_media(offer: &Offer, first: &Offer) -> bool {
    let (a, b) = (&offer.sdp, &first.sdp);
    a.connection == b.connection && a.attributes == b.attributes && a.media == b.media
}

/// The `tag` parameter of To, if any.
fn to_tag(request: &Message) -> Option<String> {
    tag_param(request.header("To")?).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::world::SipStatus;
    use crate::policy::{PolicyHost, PolicySource};
    use crate::session::registry::{Entry, Registry};
    use crate::sip::message::{Limits as SipLimits, parse};
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
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../target/policies/{name}.wasm"));
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

    fn ladder(entry: &Entry) -> Vec<&str> {
        entry.ladder.events().map(|e| e.what.as_str()).collect()
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
}
