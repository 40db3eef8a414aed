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
//!
//! Here: the types, the transaction plumbing and the dispatch. The flows, one file each:
//! `invite` (the INVITE until its answer, F1/F2), `dialog` (ACK, BYE and re-INVITE within
//! the dialog, F6), `ending` (the e-mail user's answers and every way a session ends);
//! `durable`: the sessions as the store keeps them, and restored after a restart;
//! `reconnect`: the IWF's re-INVITE that gives a restored live session a new chat
//! connection; `park`: invitations awaiting their answer kept in the store only, and
//! brought back when something comes for them.

mod dialog;
mod durable;
mod ending;
mod invite;
mod park;
mod reconnect;

pub use durable::{Restored, Resumed};
pub use park::Parked;

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
    /// Restored after a restart, the IWF's re-INVITE offering a new chat connection is
    /// out (RFC 4975 8.4); Live again at its 2xx.
    Reconnecting(Box<reconnect::Reconnect>),
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
    /// The INVITE as received, until the session is first stored (the store keeps it
    /// from then on, not the memory).
    unstored: Option<Box<[u8]>>,
    /// Whether the store holds the session (its row goes when it is freed).
    stored: bool,
}

/// What an INVITE makes of a session (`Core::prepare`).
struct Prepared {
    dialog: Dialog,
    offer: Offer,
    answer: Answer,
    facts: MailFacts,
}

/// Why an INVITE cannot make a session: its final status and the Warning.
#[derive(Debug)]
struct Refusal {
    status: u16,
    warn_code: u16,
    why: String,
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
    /// The sessions Reconnecting, by their re-INVITE's client transaction.
    reinvites: HashMap<TransactionKey, SessionKey>,
    /// The ACK of each re-INVITE's 2xx, sent again for its retransmissions until the
    /// transaction ends (13.2.2.4).
    reinvite_acks: HashMap<TransactionKey, (P, Vec<u8>)>,
    /// What operators see of the sessions, changed this turn (`session::registry`).
    journal: Journal,
    /// What the store must hold, changed this turn (`durable`).
    changes: Vec<durable::Change>,
    /// Draining (SIGTERM): new INVITEs are refused 503 with this Retry-After (seconds).
    draining: Option<u32>,
    /// The sessions invited, by when: candidates to park once idle (`park`).
    idle: std::collections::VecDeque<(Instant, SessionKey)>,
    /// The sessions parked: in the store, not in memory (`park`).
    parked: HashMap<Arc<SessionKey>, Parked<P>>,
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
            reinvites: HashMap::new(),
            reinvite_acks: HashMap::new(),
            journal: Journal::default(),
            changes: Vec::new(),
            draining: None,
            idle: Default::default(),
            parked: HashMap::new(),
        }
    }

    /// The sessions' changes since the driver last applied them to the registry.
    pub fn journal(&mut self) -> &mut Journal {
        &mut self.journal
    }

    /// Sessions held (pending, or with a dialog), parked ones included.
    pub fn sessions(&self) -> usize {
        self.sessions.len() + self.parked.len()
    }

    /// Transactions alive.
    pub fn transactions(&self) -> usize {
        self.transactions.len()
    }

    /// From now on, new INVITEs are answered 503 with `Retry-After: retry_after` (seconds);
    /// the sessions held go on.
    pub fn drain(&mut self, retry_after: u32) {
        self.draining = Some(retry_after);
    }

    /// The top Via of a request of the IWF's over `transport`, with a new branch
    /// (8.1.1.7).
    fn via(&self, transport: Transport) -> String {
        let protocol = match transport {
            Transport::Datagram => "UDP",
            Transport::Stream => "TCP",
        };
        format!(
            "SIP/2.0/{protocol} {};branch={MAGIC_COOKIE}{};rport",
            self.config.sent_by,
            new_tag()
        )
    }

    /// Sessions in the middle of an exchange: an INVITE waiting for its answer, a 2xx for
    /// its ACK, a BYE for its response. A drain waits for them; the others (invited,
    /// live) are stored and carry on after the restart.
    pub fn in_flight(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| {
                matches!(
                    s.state,
                    State::Pending(_)
                        | State::Dialog(
                            _,
                            Phase::AwaitingAck(_) | Phase::Ending { .. } | Phase::Reconnecting(_)
                        )
                )
            })
            .count()
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
                Action::Response(response) if self.is_reinvite(&key) => {
                    out.extend(self.on_reconnect_response(&key, peer, response, now))
                }
                Action::Response(response) => {
                    if let Some(status) = response.status().filter(|s| *s >= 200) {
                        let how = format_args!("{status} received for the BYE");
                        out.extend(self.on_request_done(&key, how, now));
                    }
                }
                Action::Timeout if self.is_reinvite(&key) => {
                    let reason = EndReason {
                        cause: 408,
                        text: "no answer to the re-INVITE that re-establishes the chat connection after the IWF restarted".into(),
                    };
                    out.extend(self.reconnect_failed(&key, &reason, now))
                }
                Action::Timeout => {
                    let how = format_args!("no response to the BYE");
                    out.extend(self.on_request_done(&key, how, now))
                }
                Action::TransportError if self.is_reinvite(&key) => {
                    let reason = EndReason {
                        cause: 503,
                        text: "the re-INVITE that re-establishes the chat connection after the IWF restarted was not delivered".into(),
                    };
                    out.extend(self.reconnect_failed(&key, &reason, now))
                }
                Action::TransportError => {
                    let how = format_args!("BYE not delivered (transport error)");
                    out.extend(self.on_request_done(&key, how, now))
                }
                Action::Terminated => self.on_reconnect_terminated(&key),
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
            "INVITE" => match self.draining {
                // RFC 3261 21.5.4: 503 with Retry-After: another node (or this one, once
                // restarted) takes the call.
                Some(retry_after) => {
                    let retry_after = retry_after.to_string();
                    let warning = warning_value(AGENT, "the IWF is shutting down");
                    let extra = [("Retry-After", retry_after.as_str()), ("Warning", &warning)];
                    self.respond(tx, 503, &new_tag(), &extra, None, now)
                }
                None => self.on_invite(tx, &request, transport, peer, now),
            },
            "ACK" => Vec::new(), // an ACK is never answered
            // 12.2.2 and 8.2.2.2: a request for a dialog needs the To tag of that dialog.
            "BYE" => self.refuse(tx, 481, "", "no such session", now),
            _ => self.refuse(tx, 405, "", "method not handled here", now),
        }
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
/// Starts the client transaction of `request`, a request of the IWF's in a dialog, toward
/// its next hop through the peer of the INVITE (RFC 3261 12.2.1.1); why not, in words.
fn send_in_dialog<P: Peer>(
    transactions: &mut TransactionTable<P>,
    (peer, transport): (&P, Transport),
    request: Result<crate::sip::dialog::OutRequest, String>,
    now: Instant,
) -> Result<(TransactionKey, Vec<Output<P>>), String> {
    let request = request?;
    let peer = peer
        .toward(&request.next_hop)
        .ok_or_else(|| format!("next hop {} not reachable", request.next_hop))?;
    transactions
        .send_request(request.bytes, transport, peer, now)
        .map_err(|e| e.to_string())
}

fn same_media(offer: &Offer, first: &Offer) -> bool {
    let (a, b) = (&offer.sdp, &first.sdp);
    a.connection == b.connection && a.attributes == b.attributes && a.media == b.media
}

/// The `tag` parameter of To, if any.
fn to_tag(request: &Message) -> Option<String> {
    tag_param(request.header("To")?).map(str::to_string)
}

#[cfg(test)]
mod tests;
