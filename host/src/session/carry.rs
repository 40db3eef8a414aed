//! F4 for every session: its MSRP side opened as negotiated, and each whole message it
//! receives carried to the session's mail task (BB1, BB2). Step 4, as issue 15 reads it:
//! the message is committed to the outbound spool, then its last chunk is answered 200
//! (the IWF has taken responsibility); its mail's outcome goes back in a REPORT, success
//! when Success-Report asked, failure unless Failure-Report `no` (RFC 4975 7.1.2).
//!
//! In F2 nothing is mailed before the e-mail user accepts (5.2.4.2.4): where the CPM side
//! connects at the 200 OK (step 5a), its messages are held, each answered 200 at once and
//! bounded by `[msrp] held_max_messages` and `held_max_bytes` (beyond: 403), then mailed in
//! order at the accept, their outcome in a REPORT. If the session ends first, each held
//! message gets a failure REPORT where one was asked for (RFC 4975 7.1.2): nothing is lost
//! without a word.

use super::chat::{self, ChatMessage, Refused};
use super::core::{Consent, SessionKey};
use super::mailer::{self, ChatMailer, Outbound};
use super::registry::{Protocol, Registry};
use super::replies::{Chat, ChatSessions};
use super::stats::{Direction, SessionStats};
use crate::msrp::Reply;
use crate::msrp::{self, Disposition, Endpoint, Held, SessionSpec};
use crate::sdp::msrp::MsrpParams;
use crate::store::{SpooledChat, Store, Unspooled, unix_ms};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Where the carriers spool the chat messages they take (issue 15), and how long one may
/// wait for the mail servers (`[smtp.outbound] chat_give_up_ms`).
#[derive(Clone)]
pub struct Spool {
    pub store: Arc<Store>,
    pub give_up: Duration,
    /// How long a message's commit may take before it is refused (half of `[msrp]
    /// disposition_timeout_ms`, so the refusal is the answer, never a 200 at the deadline).
    pub commit_within: Duration,
}

/// How much a session may hold before the e-mail user's consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldLimits {
    pub messages: usize,
    pub bytes: u64,
}

/// The sessions' MSRP sides.
pub struct Chats {
    endpoint: Endpoint,
    /// Shared with the inbound side, which sends F5's messages on them.
    open: ChatSessions,
    /// The sessions still waiting for the e-mail user's answer: `Given` releases their held
    /// messages; `Refused`, or the sender dropped (the session is over), fails them.
    consents: HashMap<SessionKey, watch::Sender<Option<Consent>>>,
    /// Sessions whose MSRP side ended on its own (the peer left, a connect failed).
    ended: mpsc::UnboundedSender<(SessionKey, String)>,
    hold: HoldLimits,
    spool: Spool,
    stats: Arc<SessionStats>,
    registry: Arc<Registry>,
}

impl Chats {
    pub fn new(
        endpoint: Endpoint,
        open: ChatSessions,
        ended: mpsc::UnboundedSender<(SessionKey, String)>,
        (hold, spool): (HoldLimits, Spool),
        stats: Arc<SessionStats>,
        registry: Arc<Registry>,
    ) -> Chats {
        Chats {
            endpoint,
            open,
            consents: HashMap::new(),
            ended,
            hold,
            spool,
            stats,
            registry,
        }
    }

    /// Opens session `key`'s MSRP side as negotiated and carries its messages to `mailer`;
    /// `held`: until [`Chats::consent`].
    pub fn open(
        &mut self,
        key: SessionKey,
        params: &MsrpParams,
        mailer: Option<ChatMailer>,
        held: bool,
    ) {
        let spec = SessionSpec::from_params(params);
        match self.endpoint.open(spec) {
            Ok((session, events)) => {
                let chat = Chat {
                    session,
                    cpim: params.accept_types.iter().any(|t| t == "message/cpim"),
                    wrapped_types: params.peer_accept_wrapped_types.clone(),
                };
                self.sessions().insert(key.clone(), chat);
                let (consent, consented) = watch::channel((!held).then_some(Consent::Given));
                if held {
                    self.consents.insert(key.clone(), consent);
                }
                let carrier = Carrier {
                    key,
                    mailer,
                    ended: self.ended.clone(),
                    stats: self.stats.clone(),
                    ladder: Ladder {
                        registry: self.registry.clone(),
                        id: params.local_path.session_id.as_str().into(),
                    },
                    hold: self.hold,
                    spool: self.spool.clone(),
                    session_id: params.local_path.session_id.as_str().into(),
                    seq: AtomicI64::new(0),
                    taken: Mutex::new(VecDeque::new()),
                };
                tokio::spawn(carrier.run(events, consented));
            }
            Err(e) => {
                tracing::warn!(session = %key, error = %e, "MSRP session not opened");
                let _ = self
                    .ended
                    .send((key, format!("MSRP session not opened: {e}")));
            }
        }
    }

    /// The e-mail user answered: session `key`'s held messages are mailed or failed.
    pub fn consent(&mut self, key: &SessionKey, answer: Consent) {
        if let Some(consent) = self.consents.remove(key) {
            let _ = consent.send(Some(answer));
        }
    }

    /// The SIP session is over: its MSRP side closes (F6), failure REPORTs for what it held.
    pub fn close(&mut self, key: &SessionKey) {
        self.consents.remove(key);
        if let Some(chat) = self.sessions().remove(key) {
            chat.session.close();
        }
    }

    /// Forgets session `key`'s MSRP side, which ended on its own.
    pub fn ended(&mut self, key: &SessionKey) {
        self.consents.remove(key);
        self.sessions().remove(key);
    }

    /// How many sessions have an MSRP side.
    pub fn len(&self) -> usize {
        self.sessions().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Chat>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where one session's MSRP events go in its ladder (`GET /sessions/{id}`).
struct Ladder {
    registry: Arc<Registry>,
    id: Arc<str>,
}

impl Ladder {
    fn msrp(&self, what: std::fmt::Arguments<'_>) {
        self.registry.record(&self.id, Protocol::Msrp, what);
    }
}

/// One session's carrier: its MSRP events in, its mails out.
struct Carrier {
    key: SessionKey,
    mailer: Option<ChatMailer>,
    ended: mpsc::UnboundedSender<(SessionKey, String)>,
    stats: Arc<SessionStats>,
    ladder: Ladder,
    hold: HoldLimits,
    spool: Spool,
    /// The session's id: its spooled messages' rows name it.
    session_id: String,
    /// The next spooled message's place in the session's mailing order.
    seq: AtomicI64,
    /// The MSRP Message-IDs taken last (at most `TAKEN_KEPT`): a message sent again
    /// (its sender saw no 200) is answered 200 and not mailed twice.
    taken: Mutex<VecDeque<String>>,
}

/// MSRP Message-IDs remembered per session for duplicates.
const TAKEN_KEPT: usize = 64;

/// A message taken before the e-mail user's consent.
struct Waiting {
    message: ChatMessage,
    raw: Raw,
    held: Held,
}

/// A message as received, for its spool row.
struct Raw {
    message_id: String,
    content_type: String,
    body: Vec<u8>,
}

/// How a message is answered once it is spooled, or refused.
enum Answer {
    /// Its last chunk is unanswered: 200 once spooled (`Reply::take`), or the refusal.
    Now(Reply),
    /// Held until the e-mail user's consent, already answered 200: a REPORT says the rest.
    Held(Held),
}

impl Carrier {
    /// Each whole message, in order, mailed (or held until `consented` says `Given`). Ends
    /// when the MSRP side ends; a close the IWF did not ask for ends the SIP session too.
    async fn run(
        self,
        mut events: mpsc::Receiver<msrp::Event>,
        mut consented: watch::Receiver<Option<Consent>>,
    ) {
        let mut waiting: VecDeque<Waiting> = VecDeque::new();
        let mut held_bytes = 0u64;
        // Until the answer comes, or its sender is gone (the session is over).
        let mut asking = consented.borrow().is_none();
        loop {
            tokio::select! {
                changed = consented.changed(), if asking => {
                    asking = false;
                    let answer = if changed.is_ok() { *consented.borrow() } else { None };
                    if answer == Some(Consent::Given) {
                        let n = waiting.len();
                        self.ladder.msrp(format_args!("accepted: {n} held message(s) released"));
                        while let Some(w) = waiting.pop_front() {
                            self.take(w.message, w.raw, Answer::Held(w.held)).await;
                        }
                    } else {
                        // Refused, expired or over: each held message fails (a failure
                        // REPORT, RFC 4975 7.1.2), and none is mailed.
                        let n = waiting.len();
                        self.ladder.msrp(format_args!("not accepted: {n} held message(s) failed"));
                        for w in waiting.drain(..) {
                            let why = "not delivered: the e-mail user did not accept the chat";
                            self.stats.chat(Direction::ToEmail, false);
                            w.held.settle(Disposition::failed(403, why));
                        }
                    }
                    held_bytes = 0;
                }
                event = events.recv() => {
                    let Some(event) = event else { return };
                    let msrp::Event::Message(received) = event else {
                        if self.on_event(event) {
                            return;
                        }
                        continue;
                    };
                    let msrp::Received { content_type, body, message_id, reply, .. } = *received;
                    self.ladder.msrp(format_args!("SEND received ({} bytes)", body.len()));
                    let message = match ChatMessage::from_msrp(&content_type, &body) {
                        Ok(message) => message,
                        Err(refused) => {
                            let _ = reply.send(self.refused(&message_id, refused));
                            continue;
                        }
                    };
                    let bytes = body.len() as u64;
                    let raw = Raw { message_id: message_id.clone(), content_type, body };
                    if !asking {
                        self.take(message, raw, Answer::Now(reply)).await;
                        continue;
                    }
                    if waiting.len() >= self.hold.messages || held_bytes + bytes > self.hold.bytes {
                        let why = format!(
                            "{} message(s) of {held_bytes} bytes already wait for the e-mail user to accept (at most {} messages, {} bytes)",
                            waiting.len(), self.hold.messages, self.hold.bytes
                        );
                        let _ = reply.send(self.refused(&message_id, chat::Refused::new(403, why)));
                        continue;
                    }
                    self.ladder.msrp(format_args!("200 sent: held until the e-mail user accepts"));
                    tracing::debug!(session = %self.key, %message_id, "chat message held until the e-mail user accepts");
                    held_bytes += bytes;
                    waiting.push_back(Waiting { message, raw, held: reply.hold() });
                }
            }
        }
    }

    /// The session's other MSRP events; true when the MSRP side is over.
    fn on_event(&self, event: msrp::Event) -> bool {
        match event {
            msrp::Event::Connected => {
                tracing::debug!(session = %self.key, "MSRP connected");
                self.ladder.msrp(format_args!("connected"));
            }
            msrp::Event::DeliveryFailed { message_id, status } => {
                tracing::info!(session = %self.key, %message_id, status = status.code, "MSRP message not delivered");
                self.ladder.msrp(format_args!(
                    "message {message_id} not delivered: {}",
                    status.code
                ));
            }
            msrp::Event::Closed(reason) => {
                tracing::info!(session = %self.key, %reason, "MSRP side ended");
                self.ladder.msrp(format_args!("closed: {reason}"));
                let _ = self.ended.send((self.key.clone(), reason.to_string()));
                return true;
            }
            msrp::Event::Message(_) => {}
        }
        false
    }

    /// F4 step 4 (issue 15): `message` committed to the outbound spool, then answered
    /// (200 now, or nothing more for one already held) and queued for the session's mail
    /// task, which settles it with a REPORT. Refused instead when it cannot be stored.
    async fn take(&self, message: ChatMessage, raw: Raw, answer: Answer) {
        let Some(mailer) = &self.mailer else {
            let refused = chat::unmapped("the session has no mail side");
            return self.answer(&raw.message_id, answer, refused);
        };
        if matches!(answer, Answer::Now(_)) && self.taken_before(&raw.message_id) {
            // RFC 4975 Message-IDs are unique in a session: this one is spooled already,
            // and its first copy's outcome goes in that copy's REPORT. (A copy held for
            // the consent was answered already: it goes through, its row spooled once.)
            tracing::info!(session = %self.key, message_id = %raw.message_id, "chat message taken before: not mailed again");
            if let Answer::Now(reply) = answer {
                drop(reply.take());
            }
            return;
        }
        // Room among the session's messages waiting for their mail, and the commit, both
        // within `commit_within`, and well before the endpoint would answer 200 on its
        // own (a message that waited behind others): the answer is then the refusal.
        let mut deadline = Instant::now() + self.spool.commit_within;
        if let Answer::Now(reply) = &answer {
            let margin = self.spool.commit_within / 2;
            deadline = deadline.min(reply.deadline().checked_sub(margin).unwrap_or(deadline));
        }
        let Ok(Some(room)) = tokio::time::timeout_at(deadline, mailer.room()).await else {
            let why = "not taken: too many messages of this chat wait for the mail server";
            return self.answer(&raw.message_id, answer, Refused::new(403, why));
        };
        let mail_nonce = mailer::nonce();
        let give_up_at = SystemTime::now() + self.spool.give_up;
        let row = SpooledChat {
            session_id: self.session_id.clone(),
            msrp_message_id: raw.message_id.clone(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            content_type: raw.content_type,
            body: raw.body,
            mail_nonce: mail_nonce.clone(),
            give_up_at: unix_ms(give_up_at),
        };
        let committed = tokio::time::timeout_at(deadline, self.spool.store.spool(row));
        let failed = match committed.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => {
                // It may still commit: the row's delete is queued behind it.
                self.spool.store.unspool(Unspooled {
                    session_id: self.session_id.clone(),
                    msrp_message_id: raw.message_id.clone(),
                    thread: None,
                });
                Some(format!("no commit within {:?}", self.spool.commit_within))
            }
        };
        if let Some(e) = failed {
            tracing::error!(session = %self.key, error = %e, "chat message not spooled");
            let refused = Refused::new(403, "not taken: the IWF cannot store it now");
            return self.answer(&raw.message_id, answer, refused);
        }
        {
            let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
            if taken.len() == TAKEN_KEPT {
                taken.pop_front();
            }
            taken.push_back(raw.message_id.clone());
        }
        let held = match answer {
            Answer::Now(reply) => {
                self.ladder
                    .msrp(format_args!("200 sent: spooled for mailing"));
                reply.take()
            }
            Answer::Held(held) => held,
        };
        let chat = Outbound {
            message,
            session_id: self.session_id.clone(),
            msrp_message_id: raw.message_id,
            mail_nonce,
            give_up_at,
            held: Some(held),
            room: Some(room),
        };
        if let Err(chat) = mailer.queue(chat).await {
            // The session's mail side is closed: nothing will mail it.
            let Outbound {
                session_id,
                msrp_message_id,
                held,
                ..
            } = *chat;
            self.spool.store.unspool(Unspooled {
                session_id,
                msrp_message_id: msrp_message_id.clone(),
                thread: None,
            });
            let refused = Refused::new(403, "not delivered: the session's mail side is closed");
            let disposition = self.refused(&msrp_message_id, refused);
            if let Some(held) = held {
                held.settle(disposition);
            }
        }
    }

    /// Whether the message with MSRP Message-ID `id` was taken in this session before.
    fn taken_before(&self, id: &str) -> bool {
        let taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        taken.iter().any(|t| t == id)
    }

    /// `answer`'s refusal (`refused`), counted and in the ladder.
    fn answer(&self, message_id: &str, answer: Answer, refused: Refused) {
        let disposition = self.refused(message_id, refused);
        match answer {
            Answer::Now(reply) => {
                let _ = reply.send(disposition);
            }
            Answer::Held(held) => held.settle(disposition),
        }
    }

    /// A message not delivered (not mappable, refused by the mail side, over the hold
    /// bound): counted, in the ladder, and its MSRP status.
    fn refused(&self, message_id: &str, refused: Refused) -> Disposition {
        self.stats.chat(Direction::ToEmail, false);
        tracing::info!(session = %self.key, %message_id, status = refused.status, comment = %refused.comment, "chat message not delivered");
        self.ladder
            .msrp(format_args!("{} sent: {}", refused.status, refused.comment));
        Disposition::failed(refused.status, refused.comment)
    }
}
