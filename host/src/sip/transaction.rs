//! RFC 3261 section 17 transactions, sans I/O: the INVITE server transaction (17.2.1, with
//! the RFC 6026 Accepted state), the non-INVITE server transaction (17.2.2), the INVITE
//! client transaction (17.1.1, with RFC 6026's Accepted) and the non-INVITE client
//! transaction (17.1.2), matched by [`TransactionKey`] (17.1.3, 17.2.3) and owned by a
//! [`TransactionTable`]. CANCEL (9.2) is answered by the table.
//!
//! Owns: transaction states, retransmissions and timers A, B, D, E, F, G, H, I, J, K, L
//! and M. Every
//! input carries its `now: Instant`; every output is an [`Action`] (send these bytes to the
//! transaction's peer, deliver this to the TU, timed out, terminated); `poll_timeout` says
//! when to call `handle_timeout` next.
//!
//! Must not touch: sockets, clocks, tasks, dialogs. The TU (dialog/session layer) decides the
//! responses and retransmits a 2xx to an INVITE itself (RFC 3261 13.3.1.4); an ACK to a 2xx
//! has its own branch and is handed to the TU without a transaction.
//!
//! Choices: the INVITE server transaction sends `100 Trying` itself, at once, when it is
//! created (17.2.1 allows the TU to do it within 200 ms; at once is simpler and always right
//! for the IWF, whose answer waits on mail and policy). A 2xx moves it to Accepted (RFC 6026
//! 8.7), where INVITE retransmissions are absorbed and further 2xx are sent, until Timer L
//! (64*T1) terminates it. Zero-length timers (I, J, K on a reliable transport) terminate the
//! transaction within the call that would have started them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use super::message::{
    Limits, Message, ResponseSpec, StartLine, Transport, Via, build_response, parse,
};

/// The RFC 3261 branch prefix (8.1.1.7): a branch starting with it is unique per transaction.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// The timer base values of RFC 3261 17.1.1.1 (table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate: first retransmission interval (E, G) and 64*T1 timeouts (F, H, J, L).
    pub t1: Duration,
    /// Cap of the retransmission interval of non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Maximum time a message stays in the network: timers I and K on unreliable transports.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64*T1: timers B, F, H, J (unreliable) and L.
    pub fn t1_x64(&self) -> Duration {
        self.t1 * 64
    }

    /// Timers I and K: T4 on an unreliable transport, zero on a reliable one.
    pub fn linger(&self, transport: Transport) -> Duration {
        match transport {
            Transport::Datagram => self.t4,
            Transport::Stream => Duration::ZERO,
        }
    }

    /// Timer J: 64*T1 on an unreliable transport, zero on a reliable one.
    pub fn timer_j(&self, transport: Transport) -> Duration {
        match transport {
            Transport::Datagram => self.t1_x64(),
            Transport::Stream => Duration::ZERO,
        }
    }
}

/// What identifies a transaction (RFC 3261 17.2.3 for requests, 17.1.3 for responses).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransactionKey {
    /// The top Via branch starts with the magic cookie: branch, sent-by and method. An ACK
    /// carries method INVITE (it matches the INVITE it acknowledges).
    Branch {
        branch: String,
        /// `host` (lower-cased) or `host:port`, as in the top Via.
        sent_by: String,
        method: String,
    },
    /// An RFC 2543 request (no magic cookie): Request-URI, From tag, Call-ID, CSeq number,
    /// top Via and method (ACK as INVITE). The To tag is not compared.
    Legacy {
        request_uri: String,
        from_tag: String,
        call_id: String,
        cseq: u32,
        top_via: String,
        method: String,
    },
}

impl TransactionKey {
    /// The method of the request that created the transaction.
    pub fn method(&self) -> &str {
        match self {
            TransactionKey::Branch { method, .. } | TransactionKey::Legacy { method, .. } => method,
        }
    }

    /// The same key with another method: the INVITE a CANCEL targets (9.2).
    pub fn with_method(&self, new: &str) -> TransactionKey {
        let mut key = self.clone();
        match &mut key {
            TransactionKey::Branch { method, .. } | TransactionKey::Legacy { method, .. } => {
                *method = new.to_string()
            }
        }
        key
    }
}

fn sent_by(via: &Via) -> String {
    let host = via.host.to_ascii_lowercase();
    match via.port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// The `tag` parameter of a From/To value, empty when absent.
fn tag_of(value: &str) -> String {
    super::message::tag_param(value)
        .unwrap_or_default()
        .to_string()
}

/// The server transaction key of a request (17.2.3); `None` when it is a response or has no
/// readable top Via or CSeq.
pub fn key_for(request: &Message) -> Option<TransactionKey> {
    let method = request.method()?.as_str();
    let method = if method == "ACK" { "INVITE" } else { method };
    let top = request.header("Via")?;
    let via = Via::parse(top)?;
    match via.param("branch") {
        Some(Some(branch)) if branch.starts_with(MAGIC_COOKIE) => Some(TransactionKey::Branch {
            branch: branch.to_string(),
            sent_by: sent_by(&via),
            method: method.to_string(),
        }),
        _ => Some(TransactionKey::Legacy {
            request_uri: request.request_uri()?.0.to_string(),
            from_tag: tag_of(request.header("From")?),
            call_id: request.header("Call-ID")?.to_string(),
            cseq: request.cseq()?.0,
            top_via: via.to_string(),
            method: method.to_string(),
        }),
    }
}

/// The client transaction key a response matches (17.1.3): top Via branch and sent-by,
/// CSeq method. `None` for a request or a response without a magic-cookie branch.
pub fn key_for_response(response: &Message) -> Option<TransactionKey> {
    if response.method().is_some() {
        return None;
    }
    let via = Via::parse(response.header("Via")?)?;
    let branch = match via.param("branch") {
        Some(Some(b)) if b.starts_with(MAGIC_COOKIE) => b.to_string(),
        _ => return None,
    };
    Some(TransactionKey::Branch {
        branch,
        sent_by: sent_by(&via),
        method: response.cseq()?.1.to_string(),
    })
}

/// What a transaction asks of its driver and its TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the transaction's peer.
    Send(Vec<u8>),
    /// A request for the TU: a new request (once, however often it is retransmitted), or an
    /// ACK that belongs to no transaction or reached an INVITE in Accepted (an ACK to a 2xx).
    Request(Message),
    /// A response for the TU (client transaction): each provisional and the final, once.
    Response(Message),
    /// A CANCEL matched this INVITE before its final response: the TU answers it 487.
    Cancelled,
    /// Timer F (client: treat as a 408 Request Timeout) or Timer H (INVITE server: no ACK).
    Timeout,
    /// The driver could not send (17.1.4, 17.2.4); client: treat as a 503 (8.1.3.1).
    TransportError,
    /// The transaction is over; the table has removed it.
    Terminated,
}

/// Why the TU's response or request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionError {
    /// No transaction with this key (it terminated, or never was).
    NoSuchTransaction,
    /// A final response was already sent; this one is discarded (17.2.1, 17.2.2).
    AlreadyAnswered,
    /// The status is not 100..=699.
    BadStatus(u16),
    /// The request to send does not parse, has no magic-cookie branch, or is an ACK.
    BadRequest(String),
    /// A client transaction with this key exists already.
    DuplicateKey,
}

impl fmt::Display for TransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransactionError::NoSuchTransaction => write!(f, "no such transaction"),
            TransactionError::AlreadyAnswered => write!(f, "final response already sent"),
            TransactionError::BadStatus(s) => write!(f, "bad status {s}"),
            TransactionError::BadRequest(why) => write!(f, "bad request to send: {why}"),
            TransactionError::DuplicateKey => write!(f, "transaction key already in use"),
        }
    }
}

impl std::error::Error for TransactionError {}

fn check_status(status: u16) -> Result<(), TransactionError> {
    if (100..=699).contains(&status) {
        Ok(())
    } else {
        Err(TransactionError::BadStatus(status))
    }
}

fn due(timer: Option<Instant>, now: Instant) -> bool {
    timer.is_some_and(|t| t <= now)
}

fn earliest(timers: &[Option<Instant>]) -> Option<Instant> {
    timers.iter().flatten().min().copied()
}

/// A retransmission timer (E, G): next deadline and current interval.
#[derive(Debug, Clone, Copy)]
struct Retransmit {
    at: Instant,
    interval: Duration,
}

/// States of the INVITE server transaction (17.2.1, RFC 6026 8.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteServerState {
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
    Terminated,
}

/// The INVITE server transaction (17.2.1, with Accepted per RFC 6026).
#[derive(Debug, Clone)]
pub struct InviteServer {
    request: Message,
    transport: Transport,
    timers: Timers,
    state: InviteServerState,
    last_response: Vec<u8>,
    to_tag: Option<String>,
    timer_g: Option<Retransmit>,
    timer_h: Option<Instant>,
    timer_i: Option<Instant>,
    timer_l: Option<Instant>,
}

impl InviteServer {
    /// A transaction for a new INVITE: sends 100 Trying and delivers the INVITE to the TU.
    pub fn new(request: Message, transport: Transport, timers: Timers) -> (Self, Vec<Action>) {
        let trying = build_response(
            &request,
            &ResponseSpec {
                status: 100,
                ..ResponseSpec::default()
            },
        );
        let actions = vec![
            Action::Send(trying.clone()),
            Action::Request(request.clone()),
        ];
        let tx = InviteServer {
            request,
            transport,
            timers,
            state: InviteServerState::Proceeding,
            last_response: trying,
            to_tag: None,
            timer_g: None,
            timer_h: None,
            timer_i: None,
            timer_l: None,
        };
        (tx, actions)
    }

    pub fn state(&self) -> InviteServerState {
        self.state
    }

    /// The INVITE that created the transaction.
    pub fn request(&self) -> &Message {
        &self.request
    }

    /// The To tag of the responses sent so far, if one was given.
    pub fn to_tag(&self) -> Option<&str> {
        self.to_tag.as_deref()
    }

    /// A retransmitted INVITE or an ACK matching this transaction.
    pub fn on_request(&mut self, request: &Message, now: Instant) -> Vec<Action> {
        let is_ack = request.method().is_some_and(|m| m.as_str() == "ACK");
        match (self.state, is_ack) {
            // 17.2.1: a retransmission is answered with the last response sent.
            (InviteServerState::Proceeding | InviteServerState::Completed, false) => {
                vec![Action::Send(self.last_response.clone())]
            }
            // 17.2.1: ACK in Completed -> Confirmed, G and H stop, Timer I starts.
            (InviteServerState::Completed, true) => {
                self.timer_g = None;
                self.timer_h = None;
                let linger = self.timers.linger(self.transport);
                if linger.is_zero() {
                    self.state = InviteServerState::Terminated;
                    vec![Action::Terminated]
                } else {
                    self.state = InviteServerState::Confirmed;
                    self.timer_i = Some(now + linger);
                    Vec::new()
                }
            }
            // RFC 6026 8.7: an ACK in Accepted goes to the TU.
            (InviteServerState::Accepted, true) => vec![Action::Request(request.clone())],
            // Absorbed: INVITE in Accepted/Confirmed, ACKs elsewhere.
            _ => Vec::new(),
        }
    }

    /// The TU's response `bytes` with `status`; `to_tag` is remembered for a CANCEL's 200.
    pub fn respond(
        &mut self,
        status: u16,
        bytes: Vec<u8>,
        to_tag: Option<&str>,
        now: Instant,
    ) -> Result<Vec<Action>, TransactionError> {
        check_status(status)?;
        match self.state {
            InviteServerState::Proceeding => {}
            // RFC 6026 8.7: further 2xx go out, nothing else.
            InviteServerState::Accepted if (200..300).contains(&status) => {
                return Ok(vec![Action::Send(bytes)]);
            }
            _ => return Err(TransactionError::AlreadyAnswered),
        }
        if self.to_tag.is_none() {
            self.to_tag = to_tag.map(str::to_string);
        }
        self.last_response = bytes.clone();
        match status {
            100..=199 => {}
            200..=299 => {
                self.state = InviteServerState::Accepted;
                self.timer_l = Some(now + self.timers.t1_x64());
            }
            _ => {
                self.state = InviteServerState::Completed;
                if self.transport == Transport::Datagram {
                    self.timer_g = Some(Retransmit {
                        at: now + self.timers.t1,
                        interval: self.timers.t1,
                    });
                }
                self.timer_h = Some(now + self.timers.t1_x64());
            }
        }
        Ok(vec![Action::Send(bytes)])
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        if due(self.timer_h, now) {
            // Timer H: no ACK came.
            self.state = InviteServerState::Terminated;
            self.timer_g = None;
            self.timer_h = None;
            return vec![Action::Timeout, Action::Terminated];
        }
        if due(self.timer_i, now) || due(self.timer_l, now) {
            self.state = InviteServerState::Terminated;
            self.timer_i = None;
            self.timer_l = None;
            return vec![Action::Terminated];
        }
        match self.timer_g {
            Some(g) if g.at <= now => {
                // Timer G: resend, interval doubled up to T2.
                let interval = (g.interval * 2).min(self.timers.t2);
                self.timer_g = Some(Retransmit {
                    at: now + interval,
                    interval,
                });
                vec![Action::Send(self.last_response.clone())]
            }
            _ => Vec::new(),
        }
    }

    /// When `handle_timeout` is to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[
            self.timer_g.map(|g| g.at),
            self.timer_h,
            self.timer_i,
            self.timer_l,
        ])
    }
}

/// States of the non-INVITE server transaction (17.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteServerState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// The non-INVITE server transaction (17.2.2).
#[derive(Debug, Clone)]
pub struct NonInviteServer {
    request: Message,
    transport: Transport,
    timers: Timers,
    state: NonInviteServerState,
    last_response: Option<Vec<u8>>,
    timer_j: Option<Instant>,
}

impl NonInviteServer {
    /// A transaction for a new request: delivers it to the TU.
    pub fn new(request: Message, transport: Transport, timers: Timers) -> (Self, Vec<Action>) {
        let actions = vec![Action::Request(request.clone())];
        let tx = NonInviteServer {
            request,
            transport,
            timers,
            state: NonInviteServerState::Trying,
            last_response: None,
            timer_j: None,
        };
        (tx, actions)
    }

    pub fn state(&self) -> NonInviteServerState {
        self.state
    }

    /// The request that created the transaction.
    pub fn request(&self) -> &Message {
        &self.request
    }

    /// A retransmission: absorbed in Trying, answered with the last response after.
    pub fn on_request(&mut self, _request: &Message, _now: Instant) -> Vec<Action> {
        match (&self.last_response, self.state) {
            (Some(last), NonInviteServerState::Proceeding | NonInviteServerState::Completed) => {
                vec![Action::Send(last.clone())]
            }
            _ => Vec::new(),
        }
    }

    /// The TU's response `bytes` with `status`.
    pub fn respond(
        &mut self,
        status: u16,
        bytes: Vec<u8>,
        now: Instant,
    ) -> Result<Vec<Action>, TransactionError> {
        check_status(status)?;
        if !matches!(
            self.state,
            NonInviteServerState::Trying | NonInviteServerState::Proceeding
        ) {
            return Err(TransactionError::AlreadyAnswered);
        }
        self.last_response = Some(bytes.clone());
        let mut actions = vec![Action::Send(bytes)];
        if status < 200 {
            self.state = NonInviteServerState::Proceeding;
            return Ok(actions);
        }
        let j = self.timers.timer_j(self.transport);
        if j.is_zero() {
            self.state = NonInviteServerState::Terminated;
            actions.push(Action::Terminated);
        } else {
            self.state = NonInviteServerState::Completed;
            self.timer_j = Some(now + j);
        }
        Ok(actions)
    }

    /// Fires Timer J when due.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        if due(self.timer_j, now) {
            self.timer_j = None;
            self.state = NonInviteServerState::Terminated;
            vec![Action::Terminated]
        } else {
            Vec::new()
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer_j
    }
}

/// States of the non-INVITE client transaction (17.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteClientState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// The non-INVITE client transaction (17.1.2): BYE, later SUBSCRIBE and others.
#[derive(Debug, Clone)]
pub struct NonInviteClient {
    request: Vec<u8>,
    transport: Transport,
    timers: Timers,
    state: NonInviteClientState,
    timer_e: Option<Retransmit>,
    timer_f: Option<Instant>,
    timer_k: Option<Instant>,
}

impl NonInviteClient {
    /// Starts the transaction for the request `bytes`: sends them, starts E (unreliable
    /// transport) and F.
    pub fn new(
        request: Vec<u8>,
        transport: Transport,
        timers: Timers,
        now: Instant,
    ) -> (Self, Vec<Action>) {
        let timer_e = (transport == Transport::Datagram).then(|| Retransmit {
            at: now + timers.t1,
            interval: timers.t1,
        });
        let actions = vec![Action::Send(request.clone())];
        let tx = NonInviteClient {
            request,
            transport,
            timers,
            state: NonInviteClientState::Trying,
            timer_e,
            timer_f: Some(now + timers.t1_x64()),
            timer_k: None,
        };
        (tx, actions)
    }

    pub fn state(&self) -> NonInviteClientState {
        self.state
    }

    /// A response matching the transaction.
    pub fn on_response(&mut self, response: Message, now: Instant) -> Vec<Action> {
        let StartLine::Response { status, .. } = response.start else {
            return Vec::new();
        };
        if !matches!(
            self.state,
            NonInviteClientState::Trying | NonInviteClientState::Proceeding
        ) {
            // Completed: retransmitted responses are absorbed.
            return Vec::new();
        }
        let mut actions = vec![Action::Response(response)];
        if status < 200 {
            self.state = NonInviteClientState::Proceeding;
            return actions;
        }
        self.timer_e = None;
        self.timer_f = None;
        let k = self.timers.linger(self.transport);
        if k.is_zero() {
            self.state = NonInviteClientState::Terminated;
            actions.push(Action::Terminated);
        } else {
            self.state = NonInviteClientState::Completed;
            self.timer_k = Some(now + k);
        }
        actions
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        if due(self.timer_f, now) {
            // Timer F: the TU treats it as 408 (8.1.3.1).
            self.timer_e = None;
            self.timer_f = None;
            self.state = NonInviteClientState::Terminated;
            return vec![Action::Timeout, Action::Terminated];
        }
        if due(self.timer_k, now) {
            self.timer_k = None;
            self.state = NonInviteClientState::Terminated;
            return vec![Action::Terminated];
        }
        match self.timer_e {
            Some(e) if e.at <= now => {
                // Timer E: doubled up to T2 in Trying, T2 in Proceeding.
                let interval = match self.state {
                    NonInviteClientState::Proceeding => self.timers.t2,
                    _ => (e.interval * 2).min(self.timers.t2),
                };
                self.timer_e = Some(Retransmit {
                    at: now + interval,
                    interval,
                });
                vec![Action::Send(self.request.clone())]
            }
            _ => Vec::new(),
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_e.map(|e| e.at), self.timer_f, self.timer_k])
    }
}

/// States of the INVITE client transaction (17.1.1, RFC 6026 7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClientState {
    Calling,
    Proceeding,
    /// A 2xx came (RFC 6026): its retransmissions go to the TU, which ACKs each, until
    /// Timer M.
    Accepted,
    /// A non-2xx final came and was ACKed here (17.1.1.3); its retransmissions get the ACK
    /// again until Timer D.
    Completed,
    Terminated,
}

/// How long an INVITE may stay in Proceeding before the IWF gives up on it (the role of a
/// proxy's Timer C, RFC 3261 16.6 step 11: more than 3 minutes): the IWF's re-INVITE is
/// answered by a UA, not a person, so a final response is due soon after a 1xx.
pub const PROCEEDING_LIMIT: Duration = Duration::from_secs(180);

/// Timer D over an unreliable transport (17.1.1.2: at least 32 s).
const TIMER_D: Duration = Duration::from_secs(32);

/// The INVITE client transaction (17.1.1, RFC 6026): the IWF's re-INVITE, which
/// re-establishes a chat connection after a restart (RFC 4975 8.4).
#[derive(Debug, Clone)]
pub struct InviteClient {
    request: Message,
    bytes: Vec<u8>,
    transport: Transport,
    timers: Timers,
    state: InviteClientState,
    timer_a: Option<Retransmit>,
    /// Timer B in Calling; [`PROCEEDING_LIMIT`] in Proceeding.
    timer_b: Option<Instant>,
    /// Timer D (Completed) or Timer M (Accepted).
    timer_end: Option<Instant>,
    /// The ACK of a non-2xx final, sent again for each retransmission of it.
    ack: Option<Vec<u8>>,
}

impl InviteClient {
    /// Starts the transaction for the INVITE `request` (its wire form `bytes`): sends it,
    /// starts A (unreliable transport) and B.
    pub fn new(
        request: Message,
        bytes: Vec<u8>,
        transport: Transport,
        timers: Timers,
        now: Instant,
    ) -> (Self, Vec<Action>) {
        let timer_a = (transport == Transport::Datagram).then(|| Retransmit {
            at: now + timers.t1,
            interval: timers.t1,
        });
        let actions = vec![Action::Send(bytes.clone())];
        let tx = InviteClient {
            request,
            bytes,
            transport,
            timers,
            state: InviteClientState::Calling,
            timer_a,
            timer_b: Some(now + timers.t1_x64()),
            timer_end: None,
            ack: None,
        };
        (tx, actions)
    }

    pub fn state(&self) -> InviteClientState {
        self.state
    }

    /// A response matching the transaction.
    pub fn on_response(&mut self, response: Message, now: Instant) -> Vec<Action> {
        let Some(status) = response.status() else {
            return Vec::new();
        };
        match (self.state, status) {
            (InviteClientState::Calling | InviteClientState::Proceeding, 100..=199) => {
                self.state = InviteClientState::Proceeding;
                self.timer_a = None;
                self.timer_b = Some(now + PROCEEDING_LIMIT);
                vec![Action::Response(response)]
            }
            (
                InviteClientState::Calling
                | InviteClientState::Proceeding
                | InviteClientState::Accepted,
                200..=299,
            ) => {
                // RFC 6026 7.2: each 2xx goes to the TU, which sends the ACK (13.2.2.4).
                if self.state != InviteClientState::Accepted {
                    self.state = InviteClientState::Accepted;
                    self.timer_a = None;
                    self.timer_b = None;
                    self.timer_end = Some(now + self.timers.t1_x64());
                }
                vec![Action::Response(response)]
            }
            (InviteClientState::Calling | InviteClientState::Proceeding, _) => {
                let ack = ack_for_final(&self.request, &response);
                self.timer_a = None;
                self.timer_b = None;
                let mut actions = vec![Action::Send(ack.clone()), Action::Response(response)];
                // Timer D: at least 32 s over UDP, zero over a reliable transport.
                let d = match self.transport {
                    Transport::Datagram => TIMER_D,
                    Transport::Stream => Duration::ZERO,
                };
                if d.is_zero() {
                    self.state = InviteClientState::Terminated;
                    actions.push(Action::Terminated);
                } else {
                    self.state = InviteClientState::Completed;
                    self.timer_end = Some(now + d);
                    self.ack = Some(ack);
                }
                actions
            }
            (InviteClientState::Completed, 300..=699) => {
                // A retransmitted final: its ACK again, nothing for the TU.
                self.ack.clone().map(Action::Send).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        if due(self.timer_b, now) {
            // Timer B (or the Proceeding limit): the TU treats it as 408 (8.1.3.1).
            self.timer_a = None;
            self.timer_b = None;
            self.state = InviteClientState::Terminated;
            return vec![Action::Timeout, Action::Terminated];
        }
        if due(self.timer_end, now) {
            self.timer_end = None;
            self.state = InviteClientState::Terminated;
            return vec![Action::Terminated];
        }
        match self.timer_a {
            Some(a) if a.at <= now => {
                // Timer A: doubled each time, no cap (17.1.1.2).
                let interval = a.interval * 2;
                self.timer_a = Some(Retransmit {
                    at: now + interval,
                    interval,
                });
                vec![Action::Send(self.bytes.clone())]
            }
            _ => Vec::new(),
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_a.map(|a| a.at), self.timer_b, self.timer_end])
    }
}

/// 17.1.1.3: the ACK of a non-2xx final response, built by the transaction: the INVITE's
/// Request-URI, top Via, Call-ID, From, Route and CSeq number, the response's To (its tag).
fn ack_for_final(invite: &Message, response: &Message) -> Vec<u8> {
    let uri = invite.request_uri().map_or("", |(uri, _)| uri);
    let mut out = format!("ACK {uri} SIP/2.0\r\n");
    let mut header = |name: &str, value: Option<&str>| {
        if let Some(value) = value {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    };
    header("Via", invite.header("Via"));
    header("Max-Forwards", Some("70"));
    header("From", invite.header("From"));
    header("To", response.header("To"));
    header("Call-ID", invite.header("Call-ID"));
    let cseq = invite.cseq().map(|(n, _)| format!("{n} ACK"));
    header("CSeq", cseq.as_deref());
    for route in invite.headers_named("Route") {
        out.push_str(&format!("Route: {route}\r\n"));
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

/// A client transaction in the table.
#[derive(Debug, Clone)]
pub enum ClientTransaction {
    Invite(InviteClient),
    NonInvite(NonInviteClient),
}

impl ClientTransaction {
    fn on_response(&mut self, response: Message, now: Instant) -> Vec<Action> {
        match self {
            ClientTransaction::Invite(tx) => tx.on_response(response, now),
            ClientTransaction::NonInvite(tx) => tx.on_response(response, now),
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        match self {
            ClientTransaction::Invite(tx) => tx.handle_timeout(now),
            ClientTransaction::NonInvite(tx) => tx.handle_timeout(now),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ClientTransaction::Invite(tx) => tx.poll_timeout(),
            ClientTransaction::NonInvite(tx) => tx.poll_timeout(),
        }
    }
}

/// A server transaction in the table.
#[derive(Debug, Clone)]
pub enum ServerTransaction {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

impl ServerTransaction {
    fn on_request(&mut self, request: &Message, now: Instant) -> Vec<Action> {
        match self {
            ServerTransaction::Invite(tx) => tx.on_request(request, now),
            ServerTransaction::NonInvite(tx) => tx.on_request(request, now),
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        match self {
            ServerTransaction::Invite(tx) => tx.handle_timeout(now),
            ServerTransaction::NonInvite(tx) => tx.handle_timeout(now),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ServerTransaction::Invite(tx) => tx.poll_timeout(),
            ServerTransaction::NonInvite(tx) => tx.poll_timeout(),
        }
    }

    /// The request that created the transaction.
    pub fn request(&self) -> &Message {
        match self {
            ServerTransaction::Invite(tx) => tx.request(),
            ServerTransaction::NonInvite(tx) => tx.request(),
        }
    }
}

/// One action of one transaction, with the peer to send to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output<P> {
    pub key: TransactionKey,
    /// Where the request came from (server) or goes to (client), as the driver named it.
    pub peer: P,
    pub action: Action,
}

/// The transactions of one UA, by key. `P` names a peer for the driver (an address, a
/// connection id); the table only stores and returns it.
#[derive(Debug, Clone)]
pub struct TransactionTable<P> {
    timers: Timers,
    servers: HashMap<TransactionKey, (P, ServerTransaction)>,
    clients: HashMap<TransactionKey, (P, ClientTransaction)>,
    /// Every live transaction's next timer, earliest first, so that neither `poll_timeout`
    /// nor `handle_timeout` scans the table. An entry is pushed whenever a transaction
    /// changes; one that no longer matches its transaction's timer is skipped when it comes.
    deadlines: BinaryHeap<Reverse<(Instant, TransactionKey)>>,
}

impl<P: Clone> TransactionTable<P> {
    pub fn new(timers: Timers) -> Self {
        TransactionTable {
            timers,
            servers: HashMap::new(),
            clients: HashMap::new(),
            deadlines: BinaryHeap::new(),
        }
    }

    /// Live server transactions.
    pub fn server(&self, key: &TransactionKey) -> Option<&ServerTransaction> {
        self.servers.get(key).map(|(_, tx)| tx)
    }

    /// Live client transactions.
    pub fn client(&self, key: &TransactionKey) -> Option<&ClientTransaction> {
        self.clients.get(key).map(|(_, tx)| tx)
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn outputs(
        &mut self,
        key: &TransactionKey,
        peer: P,
        actions: Vec<Action>,
        client: bool,
    ) -> Vec<Output<P>> {
        if actions.contains(&Action::Terminated) {
            if client {
                self.clients.remove(key);
            } else {
                self.servers.remove(key);
            }
        } else if let Some(at) = self.deadline(key, client) {
            self.deadlines.push(Reverse((at, key.clone())));
        }
        self.prune();
        actions
            .into_iter()
            .map(|action| Output {
                key: key.clone(),
                peer: peer.clone(),
                action,
            })
            .collect()
    }

    /// A request received from `peer` over `transport`. A retransmission goes to its
    /// transaction; an ACK without one goes to the TU; a CANCEL is answered here (9.2); any
    /// other request creates a server transaction and goes to the TU. `None`: no key can be
    /// made (no readable top Via or CSeq); drop it.
    pub fn on_request(
        &mut self,
        request: Message,
        transport: Transport,
        peer: P,
        now: Instant,
    ) -> Option<Vec<Output<P>>> {
        let key = key_for(&request)?;
        let method = request.method()?.as_str().to_string();
        if let Some((known, tx)) = self.servers.get_mut(&key) {
            let known = known.clone();
            let actions = tx.on_request(&request, now);
            return Some(self.outputs(&key, known, actions, false));
        }
        match method.as_str() {
            // An ACK to a 2xx (or a stray one): the TU's, no transaction.
            "ACK" => Some(vec![Output {
                key,
                peer,
                action: Action::Request(request),
            }]),
            "CANCEL" => Some(self.on_cancel(key, request, transport, peer, now)),
            "INVITE" => {
                let (tx, actions) = InviteServer::new(request, transport, self.timers);
                self.servers
                    .insert(key.clone(), (peer.clone(), ServerTransaction::Invite(tx)));
                Some(self.outputs(&key, peer, actions, false))
            }
            _ => {
                let (tx, actions) = NonInviteServer::new(request, transport, self.timers);
                self.servers.insert(
                    key.clone(),
                    (peer.clone(), ServerTransaction::NonInvite(tx)),
                );
                Some(self.outputs(&key, peer, actions, false))
            }
        }
    }

    /// A new CANCEL (9.2): its own transaction, answered 200 when it matches an INVITE server
    /// transaction (with that transaction's To tag), 481 otherwise. An INVITE not yet finally
    /// answered yields [`Action::Cancelled`] under the INVITE's key: the TU answers it 487.
    fn on_cancel(
        &mut self,
        key: TransactionKey,
        request: Message,
        transport: Transport,
        peer: P,
        now: Instant,
    ) -> Vec<Output<P>> {
        let invite_key = key.with_method("INVITE");
        let invite = match self.servers.get(&invite_key) {
            Some((invite_peer, ServerTransaction::Invite(tx))) => Some((
                invite_peer.clone(),
                tx.state() == InviteServerState::Proceeding,
                tx.to_tag().map(str::to_string),
            )),
            _ => None,
        };
        let (status, to_tag) = match &invite {
            Some((_, _, to_tag)) => (200, to_tag.clone()),
            None => (481, None),
        };
        let bytes = build_response(
            &request,
            &ResponseSpec {
                status,
                to_tag: to_tag.as_deref(),
                ..ResponseSpec::default()
            },
        );
        let (mut tx, _deliver) = NonInviteServer::new(request, transport, self.timers);
        let actions = tx.respond(status, bytes, now).unwrap_or_default();
        if tx.state() != NonInviteServerState::Terminated {
            self.servers.insert(
                key.clone(),
                (peer.clone(), ServerTransaction::NonInvite(tx)),
            );
        }
        let mut out = self.outputs(&key, peer, actions, false);
        if let Some((invite_peer, true, _)) = invite {
            out.push(Output {
                key: invite_key,
                peer: invite_peer,
                action: Action::Cancelled,
            });
        }
        out
    }

    /// The TU answers the server transaction `key`: the response is built from its request
    /// (8.2.6.2).
    pub fn respond(
        &mut self,
        key: &TransactionKey,
        spec: &ResponseSpec<'_>,
        now: Instant,
    ) -> Result<Vec<Output<P>>, TransactionError> {
        let (peer, tx) = self
            .servers
            .get_mut(key)
            .ok_or(TransactionError::NoSuchTransaction)?;
        let peer = peer.clone();
        let bytes = build_response(tx.request(), spec);
        let actions = match tx {
            ServerTransaction::Invite(tx) => tx.respond(spec.status, bytes, spec.to_tag, now)?,
            ServerTransaction::NonInvite(tx) => tx.respond(spec.status, bytes, now)?,
        };
        Ok(self.outputs(key, peer, actions, false))
    }

    /// Starts a client transaction (INVITE or not) for the request `bytes` to `peer`. The request
    /// must carry a top Via with a magic-cookie branch unique to it (the caller makes it).
    pub fn send_request(
        &mut self,
        bytes: Vec<u8>,
        transport: Transport,
        peer: P,
        now: Instant,
    ) -> Result<(TransactionKey, Vec<Output<P>>), TransactionError> {
        let request = parse(&bytes, transport, &Limits::default())
            .map_err(|e| TransactionError::BadRequest(e.reason))?;
        let key =
            key_for(&request).ok_or_else(|| TransactionError::BadRequest("no top Via".into()))?;
        if !matches!(key, TransactionKey::Branch { .. }) {
            return Err(TransactionError::BadRequest(
                "no magic-cookie branch".into(),
            ));
        }
        let method = request.method().map(|m| m.as_str().to_string());
        if method.as_deref() == Some("ACK") {
            // 17.1.1.3, 13.2.2.4: an ACK has no transaction of its own.
            return Err(TransactionError::BadRequest(
                "an ACK is sent without a transaction".into(),
            ));
        }
        if self.clients.contains_key(&key) {
            return Err(TransactionError::DuplicateKey);
        }
        let (tx, actions) = if method.as_deref() == Some("INVITE") {
            let (tx, actions) = InviteClient::new(request, bytes, transport, self.timers, now);
            (ClientTransaction::Invite(tx), actions)
        } else {
            let (tx, actions) = NonInviteClient::new(bytes, transport, self.timers, now);
            (ClientTransaction::NonInvite(tx), actions)
        };
        self.clients.insert(key.clone(), (peer.clone(), tx));
        let out = self.outputs(&key, peer, actions, true);
        Ok((key, out))
    }

    /// A response received: to its client transaction, else dropped (an empty list).
    pub fn on_response(&mut self, response: Message, now: Instant) -> Vec<Output<P>> {
        let Some(key) = key_for_response(&response) else {
            return Vec::new();
        };
        let Some((peer, tx)) = self.clients.get_mut(&key) else {
            return Vec::new();
        };
        let peer = peer.clone();
        let actions = tx.on_response(response, now);
        self.outputs(&key, peer, actions, true)
    }

    /// The driver failed to send for transaction `key` (17.1.4, 17.2.4): the transaction
    /// ends, the TU is told. Both the server and the client transaction of that key, if any.
    pub fn transport_error(&mut self, key: &TransactionKey) -> Vec<Output<P>> {
        let peers = [
            self.servers.remove(key).map(|(peer, _)| peer),
            self.clients.remove(key).map(|(peer, _)| peer),
        ];
        self.prune();
        peers
            .into_iter()
            .flatten()
            .flat_map(|peer| {
                [Action::TransportError, Action::Terminated].map(|action| Output {
                    key: key.clone(),
                    peer: peer.clone(),
                    action,
                })
            })
            .collect()
    }

    /// The next timer of transaction `key`, if it lives.
    fn deadline(&self, key: &TransactionKey, client: bool) -> Option<Instant> {
        if client {
            self.clients.get(key)?.1.poll_timeout()
        } else {
            self.servers.get(key)?.1.poll_timeout()
        }
    }

    /// Drops the earliest deadlines that are no transaction's timer any more, so that the
    /// first one is current (called after every change).
    fn prune(&mut self) {
        while let Some(Reverse((at, key))) = self.deadlines.peek() {
            let at = Some(*at);
            if self.deadline(key, false) == at || self.deadline(key, true) == at {
                break;
            }
            self.deadlines.pop();
        }
    }

    /// The earliest timer of any transaction.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    /// Fires every timer due at `now`; terminated transactions are removed.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Output<P>> {
        let mut out = Vec::new();
        while let Some(Reverse((at, key))) = self.deadlines.peek().cloned() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            // The entry is current when the transaction's timer is still `at`.
            for client in [false, true] {
                if self.deadline(&key, client) != Some(at) {
                    continue;
                }
                let (peer, actions) = if client {
                    let Some((peer, tx)) = self.clients.get_mut(&key) else {
                        continue;
                    };
                    (peer.clone(), tx.handle_timeout(now))
                } else {
                    let Some((peer, tx)) = self.servers.get_mut(&key) else {
                        continue;
                    };
                    (peer.clone(), tx.handle_timeout(now))
                };
                out.extend(self.outputs(&key, peer, actions, client));
            }
        }
        self.prune();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: Transport = Transport::Datagram;
    const TCP: Transport = Transport::Stream;
    const PEER: &str = "192.0.2.10:5060";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn request(method: &str, branch: &str, cseq_method: &str, transport: Transport) -> Message {
        let proto = if transport == UDP { "UDP" } else { "TCP" };
        let bytes = format!(
            "{method} mailto:bob@example.org SIP/2.0\r\n\
             Via: SIP/2.0/{proto} 192.0.2.10:5060;branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <tel:+15551234567>;tag=a1\r\n\
             To: <mailto:bob@example.org>\r\n\
             Call-ID: call-1@192.0.2.10\r\n\
             CSeq: 1 {cseq_method}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        parse(bytes.as_bytes(), transport, &Limits::default()).unwrap()
    }

    fn invite(transport: Transport) -> Message {
        request("INVITE", "z9hG4bKinv1", "INVITE", transport)
    }

    fn ack(transport: Transport) -> Message {
        request("ACK", "z9hG4bKinv1", "ACK", transport)
    }

    fn cancel(transport: Transport) -> Message {
        request("CANCEL", "z9hG4bKinv1", "CANCEL", transport)
    }

    fn bye_bytes(transport: Transport) -> Vec<u8> {
        let proto = if transport == UDP { "UDP" } else { "TCP" };
        format!(
            "BYE sip:alice@192.0.2.10 SIP/2.0\r\n\
             Via: SIP/2.0/{proto} 192.0.2.99:5060;branch=z9hG4bKbye1\r\n\
             Max-Forwards: 70\r\n\
             From: <mailto:bob@example.org>;tag=iwf1\r\n\
             To: <tel:+15551234567>;tag=a1\r\n\
             Call-ID: call-1@192.0.2.10\r\n\
             CSeq: 2 BYE\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn bye_response(status: u16, transport: Transport) -> Message {
        let proto = if transport == UDP { "UDP" } else { "TCP" };
        let bytes = format!(
            "SIP/2.0 {status} X\r\n\
             Via: SIP/2.0/{proto} 192.0.2.99:5060;branch=z9hG4bKbye1\r\n\
             From: <mailto:bob@example.org>;tag=iwf1\r\n\
             To: <tel:+15551234567>;tag=a1\r\n\
             Call-ID: call-1@192.0.2.10\r\n\
             CSeq: 2 BYE\r\n\
             Content-Length: 0\r\n\r\n"
        );
        parse(bytes.as_bytes(), transport, &Limits::default()).unwrap()
    }

    fn status_of(bytes: &[u8]) -> u16 {
        std::str::from_utf8(&bytes[8..11]).unwrap().parse().unwrap()
    }

    fn actions(out: &[Output<&'static str>]) -> Vec<Action> {
        out.iter().map(|o| o.action.clone()).collect()
    }

    /// The statuses of the Send actions, in order.
    fn sent(out: &[Output<&'static str>]) -> Vec<u16> {
        out.iter()
            .filter_map(|o| match &o.action {
                Action::Send(b) => Some(status_of(b)),
                _ => None,
            })
            .collect()
    }

    fn spec(status: u16) -> ResponseSpec<'static> {
        ResponseSpec {
            status,
            to_tag: Some("iwf1"),
            ..ResponseSpec::default()
        }
    }

    /// A table with one INVITE received at `t0`, its key and the outputs.
    fn table_with_invite(
        transport: Transport,
        t0: Instant,
    ) -> (
        TransactionTable<&'static str>,
        TransactionKey,
        Vec<Output<&'static str>>,
    ) {
        let mut table = TransactionTable::new(Timers::default());
        let out = table
            .on_request(invite(transport), transport, PEER, t0)
            .unwrap();
        let key = key_for(&invite(transport)).unwrap();
        (table, key, out)
    }

    #[test]
    fn key_uses_branch_sent_by_and_method_ack_as_invite() {
        let key = key_for(&invite(UDP)).unwrap();
        assert_eq!(
            key,
            TransactionKey::Branch {
                branch: "z9hG4bKinv1".into(),
                sent_by: "192.0.2.10:5060".into(),
                method: "INVITE".into()
            }
        );
        assert_eq!(key_for(&ack(UDP)), Some(key.clone()));
        let cancel_key = key_for(&cancel(UDP)).unwrap();
        assert_eq!(cancel_key.method(), "CANCEL");
        assert_eq!(cancel_key.with_method("INVITE"), key);
        assert_ne!(
            key_for(&request("INVITE", "z9hG4bKother", "INVITE", UDP)),
            Some(key)
        );
    }

    #[test]
    fn key_without_magic_cookie_is_rfc2543() {
        let key = key_for(&request("INVITE", "old1", "INVITE", UDP)).unwrap();
        assert!(
            matches!(key, TransactionKey::Legacy { ref from_tag, cseq: 1, .. } if from_tag == "a1")
        );
        assert_eq!(key_for(&request("ACK", "old1", "ACK", UDP)), Some(key));
    }

    #[test]
    fn response_key_matches_the_client_request_key() {
        let req = parse(&bye_bytes(UDP), UDP, &Limits::default()).unwrap();
        assert_eq!(key_for_response(&bye_response(200, UDP)), key_for(&req));
        assert_eq!(key_for_response(&req), None);
    }

    #[test]
    fn invite_sends_100_at_once_and_reaches_the_tu_once() {
        let t0 = Instant::now();
        let (mut table, key, out) = table_with_invite(UDP, t0);
        assert_eq!(sent(&out), vec![100]);
        assert!(matches!(out[1].action, Action::Request(_)));
        assert_eq!(out[0].peer, PEER);
        // N retransmissions: each answered with the 100, none delivered.
        for i in 1..=5 {
            let out = table
                .on_request(invite(UDP), UDP, PEER, t0 + ms(i * 500))
                .unwrap();
            assert_eq!(sent(&out), vec![100]);
            assert_eq!(out.len(), 1);
        }
        // A provisional replaces the 100 as the answer to retransmissions.
        let out = table.respond(&key, &spec(180), t0 + ms(3000)).unwrap();
        assert_eq!(sent(&out), vec![180]);
        let out = table
            .on_request(invite(UDP), UDP, PEER, t0 + ms(3100))
            .unwrap();
        assert_eq!(sent(&out), vec![180]);
        assert_eq!(table.poll_timeout(), None);
    }

    #[test]
    fn invite_3xx_6xx_timer_g_doubles_up_to_t2_and_h_times_out() {
        let t0 = Instant::now();
        let (mut table, key, _) = table_with_invite(UDP, t0);
        let out = table.respond(&key, &spec(486), t0).unwrap();
        assert_eq!(sent(&out), vec![486]);
        // G fires at 0.5, 1.5, 3.5, 7.5 (interval 4 s = T2 from then), 11.5, ...
        let mut expected = vec![500u64, 1500, 3500, 7500];
        let mut t = 7500;
        while t + 4000 < 32_000 {
            t += 4000;
            expected.push(t);
        }
        for at in expected {
            assert_eq!(table.poll_timeout(), Some(t0 + ms(at)), "G at {at}");
            assert!(table.handle_timeout(t0 + ms(at) - ms(1)).is_empty());
            let out = table.handle_timeout(t0 + ms(at));
            assert_eq!(sent(&out), vec![486], "G at {at}");
        }
        // H at 64*T1 = 32 s: timeout, terminated, removed.
        assert_eq!(table.poll_timeout(), Some(t0 + ms(32_000)));
        let out = table.handle_timeout(t0 + ms(32_000));
        assert_eq!(actions(&out), vec![Action::Timeout, Action::Terminated]);
        assert!(table.is_empty());
        assert_eq!(table.poll_timeout(), None);
    }

    #[test]
    fn invite_final_absorbs_retransmissions_with_the_final() {
        let t0 = Instant::now();
        let (mut table, key, _) = table_with_invite(UDP, t0);
        table.respond(&key, &spec(488), t0).unwrap();
        let out = table
            .on_request(invite(UDP), UDP, PEER, t0 + ms(100))
            .unwrap();
        assert_eq!(sent(&out), vec![488]);
        assert_eq!(
            table.respond(&key, &spec(500), t0 + ms(200)),
            Err(TransactionError::AlreadyAnswered)
        );
    }

    #[test]
    fn ack_confirms_stops_g_and_h_then_timer_i_terminates() {
        let t0 = Instant::now();
        let (mut table, key, _) = table_with_invite(UDP, t0);
        table.respond(&key, &spec(603), t0).unwrap();
        let out = table.on_request(ack(UDP), UDP, PEER, t0 + ms(600)).unwrap();
        assert!(out.is_empty(), "the ACK is absorbed, not delivered");
        let Some(ServerTransaction::Invite(tx)) = table.server(&key) else {
            panic!("no transaction")
        };
        assert_eq!(tx.state(), InviteServerState::Confirmed);
        // Timer I = T4 = 5 s; no more retransmissions; retransmitted ACKs and INVITEs absorbed.
        assert_eq!(table.poll_timeout(), Some(t0 + ms(5600)));
        assert!(
            table
                .on_request(ack(UDP), UDP, PEER, t0 + ms(700))
                .unwrap()
                .is_empty()
        );
        assert!(
            table
                .on_request(invite(UDP), UDP, PEER, t0 + ms(800))
                .unwrap()
                .is_empty()
        );
        assert!(table.handle_timeout(t0 + ms(5599)).is_empty());
        let out = table.handle_timeout(t0 + ms(5600));
        assert_eq!(actions(&out), vec![Action::Terminated]);
        assert!(table.is_empty());
    }

    #[test]
    fn invite_2xx_accepted_absorbs_invites_passes_acks_and_timer_l_terminates() {
        let t0 = Instant::now();
        let (mut table, key, _) = table_with_invite(UDP, t0);
        let out = table.respond(&key, &spec(200), t0).unwrap();
        assert_eq!(sent(&out), vec![200]);
        let Some(ServerTransaction::Invite(tx)) = table.server(&key) else {
            panic!("no transaction")
        };
        assert_eq!(tx.state(), InviteServerState::Accepted);
        // No Timer G for a 2xx: the TU retransmits it.
        assert_eq!(table.poll_timeout(), Some(t0 + ms(32_000)));
        assert!(
            table
                .on_request(invite(UDP), UDP, PEER, t0 + ms(500))
                .unwrap()
                .is_empty()
        );
        // The TU's 2xx retransmission goes out; a non-2xx does not.
        assert_eq!(
            sent(&table.respond(&key, &spec(200), t0 + ms(500)).unwrap()),
            vec![200]
        );
        assert_eq!(
            table.respond(&key, &spec(486), t0 + ms(500)),
            Err(TransactionError::AlreadyAnswered)
        );
        let out = table.on_request(ack(UDP), UDP, PEER, t0 + ms(600)).unwrap();
        assert!(matches!(
            out[..],
            [Output {
                action: Action::Request(_),
                ..
            }]
        ));
        let out = table.handle_timeout(t0 + ms(32_000));
        assert_eq!(actions(&out), vec![Action::Terminated]);
        // An ACK to a 2xx with its own branch reaches the TU without a transaction.
        let out = table
            .on_request(
                request("ACK", "z9hG4bKack2", "ACK", UDP),
                UDP,
                PEER,
                t0 + ms(32_001),
            )
            .unwrap();
        assert!(matches!(
            out[..],
            [Output {
                action: Action::Request(_),
                ..
            }]
        ));
        assert!(table.is_empty());
    }

    #[test]
    fn invite_over_tcp_no_g_and_ack_terminates_at_once() {
        let t0 = Instant::now();
        let (mut table, key, _) = table_with_invite(TCP, t0);
        table.respond(&key, &spec(486), t0).unwrap();
        // Only Timer H is running.
        assert_eq!(table.poll_timeout(), Some(t0 + ms(32_000)));
        let out = table.on_request(ack(TCP), TCP, PEER, t0 + ms(10)).unwrap();
        assert_eq!(actions(&out), vec![Action::Terminated]);
        assert!(table.is_empty());
    }

    #[test]
    fn invite_over_tcp_without_ack_times_out_by_h_only() {
        let t0 = Instant::now();
        let (mut table, key, _) = table_with_invite(TCP, t0);
        table.respond(&key, &spec(404), t0).unwrap();
        assert!(table.handle_timeout(t0 + ms(31_999)).is_empty());
        let out = table.handle_timeout(t0 + ms(32_000));
        assert_eq!(actions(&out), vec![Action::Timeout, Action::Terminated]);
    }

    #[test]
    fn cancel_answers_200_and_tells_the_tu_to_answer_487() {
        let t0 = Instant::now();
        let (mut table, key, _) = table_with_invite(UDP, t0);
        table.respond(&key, &spec(180), t0).unwrap();
        let out = table
            .on_request(cancel(UDP), UDP, PEER, t0 + ms(100))
            .unwrap();
        let cancel_key = key_for(&cancel(UDP)).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].key, cancel_key);
        let Action::Send(ok) = &out[0].action else {
            panic!("no 200")
        };
        let ok = String::from_utf8(ok.clone()).unwrap();
        assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
        assert!(ok.contains("CSeq: 1 CANCEL\r\n"), "{ok}");
        // The same To tag as the INVITE's responses (9.2).
        assert!(
            ok.contains("To: <mailto:bob@example.org>;tag=iwf1\r\n"),
            "{ok}"
        );
        assert_eq!((&out[1].key, &out[1].action), (&key, &Action::Cancelled));
        // A retransmitted CANCEL gets the 200 again, and no second Cancelled.
        let out = table
            .on_request(cancel(UDP), UDP, PEER, t0 + ms(600))
            .unwrap();
        assert_eq!(sent(&out), vec![200]);
        assert_eq!(out.len(), 1);
        // The TU answers 487; the ACK confirms.
        let out = table.respond(&key, &spec(487), t0 + ms(700)).unwrap();
        assert_eq!(sent(&out), vec![487]);
        assert!(
            table
                .on_request(ack(UDP), UDP, PEER, t0 + ms(800))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn cancel_after_final_answers_200_without_cancelled_and_unknown_481() {
        let t0 = Instant::now();
        let (mut table, key, _) = table_with_invite(TCP, t0);
        table.respond(&key, &spec(200), t0).unwrap();
        let out = table.on_request(cancel(TCP), TCP, PEER, t0).unwrap();
        // Over TCP Timer J is zero: the CANCEL transaction ends at once.
        assert_eq!(sent(&out), vec![200]);
        assert!(!actions(&out).contains(&Action::Cancelled));
        let stray = request("CANCEL", "z9hG4bKnone", "CANCEL", TCP);
        let out = table.on_request(stray, TCP, PEER, t0).unwrap();
        assert_eq!(sent(&out), vec![481]);
        assert_eq!(table.len(), 1, "only the INVITE is left");
    }

    #[test]
    fn non_invite_server_absorbs_in_trying_answers_last_after_and_timer_j() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(Timers::default());
        let bye = request("BYE", "z9hG4bKb1", "BYE", UDP);
        let key = key_for(&bye).unwrap();
        let out = table.on_request(bye.clone(), UDP, PEER, t0).unwrap();
        assert!(matches!(
            out[..],
            [Output {
                action: Action::Request(_),
                ..
            }]
        ));
        // Trying: retransmissions are absorbed, not delivered.
        assert!(
            table
                .on_request(bye.clone(), UDP, PEER, t0 + ms(500))
                .unwrap()
                .is_empty()
        );
        let out = table.respond(&key, &spec(100), t0 + ms(600)).unwrap();
        assert_eq!(sent(&out), vec![100]);
        // Proceeding: answered with the provisional.
        let out = table
            .on_request(bye.clone(), UDP, PEER, t0 + ms(700))
            .unwrap();
        assert_eq!(sent(&out), vec![100]);
        let out = table.respond(&key, &spec(200), t0 + ms(1000)).unwrap();
        assert_eq!(sent(&out), vec![200]);
        // Completed: answered with the final; further responses refused.
        let out = table
            .on_request(bye.clone(), UDP, PEER, t0 + ms(2000))
            .unwrap();
        assert_eq!(sent(&out), vec![200]);
        assert_eq!(
            table.respond(&key, &spec(500), t0 + ms(2000)),
            Err(TransactionError::AlreadyAnswered)
        );
        // Timer J = 64*T1 = 32 s after the final.
        assert_eq!(table.poll_timeout(), Some(t0 + ms(33_000)));
        assert!(table.handle_timeout(t0 + ms(32_999)).is_empty());
        assert_eq!(
            actions(&table.handle_timeout(t0 + ms(33_000))),
            vec![Action::Terminated]
        );
        assert!(table.is_empty());
        assert_eq!(
            table.respond(&key, &spec(200), t0 + ms(33_001)),
            Err(TransactionError::NoSuchTransaction)
        );
    }

    #[test]
    fn non_invite_server_over_tcp_timer_j_is_zero() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(Timers::default());
        let bye = request("BYE", "z9hG4bKb1", "BYE", TCP);
        let key = key_for(&bye).unwrap();
        table.on_request(bye, TCP, PEER, t0).unwrap();
        let out = table.respond(&key, &spec(200), t0).unwrap();
        assert_eq!(actions(&out)[1], Action::Terminated);
        assert!(table.is_empty());
    }

    #[test]
    fn non_invite_client_timer_e_doubles_to_t2_and_f_times_out() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(Timers::default());
        let (key, out) = table.send_request(bye_bytes(UDP), UDP, PEER, t0).unwrap();
        assert_eq!(actions(&out), vec![Action::Send(bye_bytes(UDP))]);
        // E at 0.5, 1.5, 3.5, 7.5, then every 4 s (T2) until F at 32 s.
        let mut expected = vec![500u64, 1500, 3500, 7500];
        let mut t = 7500;
        while t + 4000 < 32_000 {
            t += 4000;
            expected.push(t);
        }
        for at in expected {
            assert_eq!(table.poll_timeout(), Some(t0 + ms(at)), "E at {at}");
            let out = table.handle_timeout(t0 + ms(at));
            assert_eq!(actions(&out), vec![Action::Send(bye_bytes(UDP))]);
        }
        assert_eq!(table.poll_timeout(), Some(t0 + ms(32_000)));
        let out = table.handle_timeout(t0 + ms(32_000));
        assert_eq!(actions(&out), vec![Action::Timeout, Action::Terminated]);
        assert!(out.iter().all(|o| o.key == key));
        assert!(table.is_empty());
    }

    #[test]
    fn non_invite_client_proceeding_retransmits_every_t2() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(Timers::default());
        table.send_request(bye_bytes(UDP), UDP, PEER, t0).unwrap();
        let out = table.on_response(bye_response(100, UDP), t0 + ms(200));
        assert!(matches!(
            out[..],
            [Output {
                action: Action::Response(_),
                ..
            }]
        ));
        // E already set for 0.5 s, then T2 each time in Proceeding.
        for at in [500u64, 4500, 8500] {
            assert_eq!(table.poll_timeout(), Some(t0 + ms(at)));
            assert_eq!(table.handle_timeout(t0 + ms(at)).len(), 1);
        }
    }

    #[test]
    fn non_invite_client_final_then_timer_k_and_absorbs_retransmissions() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(Timers::default());
        let (key, _) = table.send_request(bye_bytes(UDP), UDP, PEER, t0).unwrap();
        let out = table.on_response(bye_response(200, UDP), t0 + ms(700));
        assert!(matches!(
            out[..],
            [Output {
                action: Action::Response(_),
                ..
            }]
        ));
        let Some(ClientTransaction::NonInvite(tx)) = table.client(&key) else {
            panic!("a BYE's transaction is non-INVITE");
        };
        assert_eq!(tx.state(), NonInviteClientState::Completed);
        // Retransmitted responses absorbed; no more E; K = T4 = 5 s.
        assert!(
            table
                .on_response(bye_response(200, UDP), t0 + ms(800))
                .is_empty()
        );
        assert_eq!(table.poll_timeout(), Some(t0 + ms(5700)));
        assert_eq!(
            actions(&table.handle_timeout(t0 + ms(5700))),
            vec![Action::Terminated]
        );
        assert!(table.is_empty());
        // Late responses match nothing.
        assert!(
            table
                .on_response(bye_response(200, UDP), t0 + ms(6000))
                .is_empty()
        );
    }

    #[test]
    fn non_invite_client_over_tcp_no_e_and_k_zero() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(Timers::default());
        table.send_request(bye_bytes(TCP), TCP, PEER, t0).unwrap();
        // Only F runs.
        assert_eq!(table.poll_timeout(), Some(t0 + ms(32_000)));
        let out = table.on_response(bye_response(200, TCP), t0 + ms(50));
        assert_eq!(actions(&out)[1], Action::Terminated);
        assert!(table.is_empty());
    }

    #[test]
    fn send_request_refuses_ack_duplicate_and_cookieless() {
        let t0 = Instant::now();
        let mut table: TransactionTable<&str> = TransactionTable::new(Timers::default());
        table.send_request(bye_bytes(UDP), UDP, PEER, t0).unwrap();
        assert_eq!(
            table
                .send_request(bye_bytes(UDP), UDP, PEER, t0)
                .unwrap_err(),
            TransactionError::DuplicateKey
        );
        let ack = String::from_utf8(bye_bytes(UDP))
            .unwrap()
            .replace("BYE", "ACK")
            .replace("bye1", "ack1");
        assert!(matches!(
            table.send_request(ack.into_bytes(), UDP, PEER, t0),
            Err(TransactionError::BadRequest(_))
        ));
        let old = String::from_utf8(bye_bytes(UDP))
            .unwrap()
            .replace("z9hG4bKbye1", "bye1");
        assert!(matches!(
            table.send_request(old.into_bytes(), UDP, PEER, t0),
            Err(TransactionError::BadRequest(_))
        ));
    }

    #[test]
    fn transport_error_ends_the_transaction_and_tells_the_tu() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(Timers::default());
        let (key, _) = table.send_request(bye_bytes(UDP), UDP, PEER, t0).unwrap();
        let out = table.transport_error(&key);
        assert_eq!(
            actions(&out),
            vec![Action::TransportError, Action::Terminated]
        );
        assert!(table.is_empty());
        assert_eq!(table.poll_timeout(), None);
        assert!(table.transport_error(&key).is_empty());
    }

    #[test]
    fn timers_are_configurable() {
        let timers = Timers {
            t1: ms(100),
            t2: ms(300),
            t4: ms(1000),
        };
        let t0 = Instant::now();
        let (mut tx, _) = NonInviteClient::new(bye_bytes(UDP), UDP, timers, t0);
        for at in [100u64, 300, 600, 900] {
            assert_eq!(tx.poll_timeout(), Some(t0 + ms(at)));
            tx.handle_timeout(t0 + ms(at));
        }
        assert_eq!(
            tx.handle_timeout(t0 + ms(6400)),
            vec![Action::Timeout, Action::Terminated]
        );
    }

    fn reinvite_bytes(transport: Transport) -> Vec<u8> {
        String::from_utf8(bye_bytes(transport))
            .unwrap()
            .replace("BYE", "INVITE")
            .replace("bye1", "inv1")
            .replace(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nRoute: <sip:p1.example.com;lr>\r\n",
            )
            .into_bytes()
    }

    fn reinvite_response(status: u16, transport: Transport) -> Message {
        let bytes = String::from_utf8(bye_response(status, transport).to_bytes())
            .unwrap()
            .replace("BYE", "INVITE")
            .replace("bye1", "inv1");
        parse(bytes.as_bytes(), transport, &Limits::default()).unwrap()
    }

    fn sent_text(out: &[Output<&str>]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match &o.action {
                Action::Send(bytes) => Some(String::from_utf8(bytes.clone()).unwrap()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn invite_client_retransmits_on_timer_a_and_times_out_on_timer_b() {
        let t0 = Instant::now();
        let mut table: TransactionTable<&str> = TransactionTable::new(Timers::default());
        let (_, out) = table
            .send_request(reinvite_bytes(UDP), UDP, PEER, t0)
            .unwrap();
        assert_eq!(sent_text(&out).len(), 1);
        // Timer A: 500 ms, doubled each time with no T2 cap (17.1.1.2).
        for at in [500u64, 1500, 3500, 7500, 15500] {
            assert_eq!(table.poll_timeout(), Some(t0 + ms(at)));
            let out = table.handle_timeout(t0 + ms(at));
            assert!(
                sent_text(&out)[0].starts_with("INVITE "),
                "retransmitted at {at}"
            );
        }
        // Timer B: 64*T1.
        assert_eq!(table.poll_timeout(), Some(t0 + ms(31500)));
        table.handle_timeout(t0 + ms(31500));
        let out = table.handle_timeout(t0 + ms(32000));
        assert_eq!(actions(&out), vec![Action::Timeout, Action::Terminated]);
        assert!(table.is_empty());
    }

    #[test]
    fn invite_client_2xx_and_its_retransmissions_go_to_the_tu_until_timer_m() {
        let t0 = Instant::now();
        let mut table: TransactionTable<&str> = TransactionTable::new(Timers::default());
        table
            .send_request(reinvite_bytes(UDP), UDP, PEER, t0)
            .unwrap();
        let out = table.on_response(reinvite_response(180, UDP), t0 + ms(100));
        assert!(matches!(actions(&out)[..], [Action::Response(_)]));
        // Proceeding: no more retransmissions.
        assert!(sent_text(&table.handle_timeout(t0 + ms(600))).is_empty());
        for at in [200u64, 900] {
            // RFC 6026 7.2: each 2xx to the TU (which ACKs it), none ACKed here.
            let out = table.on_response(reinvite_response(200, UDP), t0 + ms(at));
            assert!(matches!(actions(&out)[..], [Action::Response(_)]));
        }
        let out = table.handle_timeout(t0 + ms(200) + ms(32000));
        assert_eq!(actions(&out), vec![Action::Terminated]);
        assert!(table.is_empty());
    }

    #[test]
    fn invite_client_acks_a_non_2xx_final_itself_and_again_for_each_retransmission() {
        let t0 = Instant::now();
        let mut table: TransactionTable<&str> = TransactionTable::new(Timers::default());
        table
            .send_request(reinvite_bytes(UDP), UDP, PEER, t0)
            .unwrap();
        let out = table.on_response(reinvite_response(488, UDP), t0 + ms(100));
        let acks = sent_text(&out);
        assert_eq!(acks.len(), 1);
        let ack = &acks[0];
        // 17.1.1.3: the INVITE's Request-URI, Via, From, Call-ID, Route and CSeq number,
        // the response's To.
        assert!(
            ack.starts_with("ACK sip:alice@192.0.2.10 SIP/2.0\r\n"),
            "{ack}"
        );
        assert!(ack.contains("branch=z9hG4bKinv1"), "{ack}");
        assert!(ack.contains("CSeq: 2 ACK\r\n"), "{ack}");
        assert!(ack.contains("To: <tel:+15551234567>;tag=a1\r\n"), "{ack}");
        assert!(ack.contains("Route: <sip:p1.example.com;lr>\r\n"), "{ack}");
        assert!(
            out.iter()
                .any(|o| matches!(&o.action, Action::Response(r) if r.status() == Some(488)))
        );
        // A retransmitted 488: the ACK again, nothing for the TU.
        let out = table.on_response(reinvite_response(488, UDP), t0 + ms(600));
        assert_eq!(sent_text(&out), vec![ack.clone()]);
        assert_eq!(out.len(), 1);
        // Timer D (32 s) ends it.
        let out = table.handle_timeout(t0 + ms(100) + Duration::from_secs(32));
        assert_eq!(actions(&out), vec![Action::Terminated]);
        // Over TCP, no Timer D: over at the final.
        table
            .send_request(reinvite_bytes(TCP), TCP, PEER, t0)
            .unwrap();
        let out = table.on_response(reinvite_response(486, TCP), t0 + ms(100));
        assert_eq!(actions(&out).last(), Some(&Action::Terminated));
        assert!(table.is_empty());
    }
}
