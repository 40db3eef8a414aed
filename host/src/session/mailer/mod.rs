//! The e-mail side of a CPM session (F2, 5.2.4.2.4; F4, 5.2.4.2.5; F6, 5.2.4.2.6): one task
//! per session mails the invitation (AA1, AA2) and reports its SMTP outcome (AA3), mails
//! the CPM side's chat messages (BB1, BB2) over the same channel, and keeps the channel,
//! the addresses used and the Message-IDs sent until the session closes; then it mails
//! the CC2 notification when the policy wants one and QUITs (CC1, CC2).
//!
//! Owns the per-session mail state and the policy calls of those mails (on the blocking
//! pool). Must not touch SIP (that is `core`, which it answers through the outcome
//! channel), MSRP (that is the endpoint; `chat` maps between them) nor write mail text
//! itself (that is `mail::compose`).
//!
//! Here: the handles, the session's task and its channels (routes, MAIL/RCPT/DATA, QUIT).
//! The flows, one file each: `invitation` (F2, AA1-AA3), `chat_mail` (F4, BB1-BB2),
//! `closed` (F6, CC1-CC2); `draft`: the AA2/BB2/CC2 tables row by row, without I/O.

mod bounce;
mod chat_mail;
mod closed;
mod draft;
mod invitation;

use super::chat::{self, ChatMessage, Refused, Undelivered};
use super::core::{InvitationOutcome, MailFacts, Notify, SessionKey};
use super::directory::Directory;
use super::registry::{Protocol, Registry};
use super::stats::{Direction, SessionStats};
use crate::config::SmtpOutboundConfig;
use crate::mail::header::HeaderError;
use crate::mail::{AddrSpec, Mailbox, MsgId, compose};
use crate::msrp::{Disposition, Held};
use crate::policy::world::{
    self, Additions, ChatContext, Identity, MailKind, Session as PolicySession, SipStatus,
};
use crate::policy::{Decision, PolicyHost};
use crate::sip::cpm::Identities;
use crate::smtp::{
    self, Channel, ClientSettings, DeliverBy, Destinations, Envelope, Router, SmtpFailure, Stage,
};
use crate::store::{Store, Unspooled};
pub use bounce::Bouncer;
use chat_mail::chat_mail;
use chrono::Utc;
use closed::close;
pub use draft::nonce;
use draft::{
    Addresses, Decisions, Kind, Parent, addresses, chat_message_id, decide, draft, envelope,
    generated_id, invitation_id,
};
use invitation::invitation;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{Semaphore, mpsc};

/// What the mail tasks share: the policy, where mail goes, how the client talks.
struct Shared {
    policy: Arc<PolicyHost>,
    router: Router,
    settings: ClientSettings,
    /// `[smtp.outbound] max_mail_operations`: one permit per operation running.
    slots: Semaphore,
    max_operations: usize,
    /// `invitation_timeout_ms`: past it the invitation is a temporary connect failure (AA3).
    deadline: std::time::Duration,
    /// Connections per destination, and channels kept between mails.
    destinations: Arc<Destinations>,
    /// Where replies find their session: addresses and every Message-ID sent.
    directory: Arc<Directory>,
    /// The sessions' ladders: each mail's SMTP outcome goes there.
    registry: Arc<Registry>,
    /// Where the threads and the outbound spool are kept across restarts.
    store: Arc<Store>,
    stats: Arc<SessionStats>,
    retry: Retry,
    /// `chat_max_waiting`: a session's chat messages queued or being mailed, at most.
    max_waiting: usize,
}

/// The outcome of a session's invitation, with the policy's invitation expiry (F3: no
/// answer within it is a reject) and, when it was mailed, the session's thread for the
/// store (committed with the session, before its 200 OK).
pub struct Invited {
    pub key: SessionKey,
    pub outcome: InvitationOutcome,
    pub expiry: std::time::Duration,
    pub thread: Option<StoredThread>,
}

impl Invited {
    fn refused(key: &SessionKey, refusal: (SipStatus, String)) -> Self {
        Self {
            key: key.clone(),
            outcome: Err(refusal),
            expiry: std::time::Duration::ZERO,
            thread: None,
        }
    }
}

/// A session's mail thread as the store keeps it: the session id and the JSON.
pub type StoredThread = (String, String);

/// A chat message of F4's outbound spool (issue 15), for its session's mail task: stored,
/// answered MSRP 200, and mailed in its session's order, tried again after a temporary
/// failure until `give_up_at`.
pub struct Outbound {
    pub message: ChatMessage,
    /// Its row in the spool: the session's id and the MSRP Message-ID.
    pub session_id: String,
    pub msrp_message_id: String,
    /// The random part of its mail's Message-ID (the same at every attempt).
    pub mail_nonce: String,
    pub give_up_at: SystemTime,
    /// Where its outcome goes, as a REPORT; `None` when read back after a restart (its
    /// MSRP connection is gone).
    pub held: Option<Held>,
    /// Its place among the session's messages waiting (`ChatMailer::room`); `None` when
    /// read back after a restart (the spool bounds those).
    pub room: Option<Room>,
}

/// How a spooled chat message's mail is tried again after a temporary failure:
/// `[smtp.outbound] chat_retry_initial_ms`, doubling up to `chat_retry_max_ms`, until its
/// give-up time (`chat_give_up_ms` after it was taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub initial: Duration,
    pub max: Duration,
    pub give_up: Duration,
}

impl Retry {
    pub fn from_config(config: &SmtpOutboundConfig) -> Self {
        Self {
            initial: Duration::from_millis(config.chat_retry_initial_ms.max(1)),
            max: Duration::from_millis(config.chat_retry_max_ms.max(1)),
            give_up: Duration::from_millis(config.chat_give_up_ms),
        }
    }

    /// The wait after `attempts` failed attempts: doubled each time, at most `max`.
    fn delay(&self, attempts: u32) -> Duration {
        let doubled = self
            .initial
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        doubled.min(self.max)
    }
}

/// What a session's task is asked to do after its start.
enum Command {
    /// F4: mail this chat message (BB1, BB2) and settle it with its outcome. Boxed: the
    /// queue's first block of 32 slots is made with the session, slots as large as the
    /// largest command.
    Chat(Box<Outbound>),
    /// The session is over: the CC2 notification when `notify` says so, then QUIT.
    Close { notify: Notify },
    /// The session is parked (issue 15): QUIT, and the task ends; the directory keeps
    /// what finds its replies, and [`Mailer::restore`] starts it again.
    Park,
}

/// The way to one session's mail task, for whoever carries its chat messages (the MSRP
/// side); cheap to clone, and harmless once the session is gone.
#[derive(Clone)]
pub struct ChatMailer {
    commands: mpsc::Sender<Command>,
    /// Room for its chat messages queued or being mailed: `chat_max_waiting` permits.
    room: Arc<Semaphore>,
}

/// One session's task, as the mailer reaches it.
struct Task {
    commands: mpsc::Sender<Command>,
    room: Arc<Semaphore>,
}

/// A place among a session's chat messages waiting for their mail; freed when the
/// message is mailed or failed.
pub type Room = tokio::sync::OwnedSemaphorePermit;

impl ChatMailer {
    /// A place for one more chat message of the session (`[smtp.outbound]
    /// chat_max_waiting`: a mail server refusing for an hour must not make the session
    /// hold an hour of chat in memory): waits for the mails before to free one.
    pub async fn room(&self) -> Option<Room> {
        self.room.clone().acquire_owned().await.ok()
    }

    /// F4 steps 2-4: queues the spooled `chat` behind the session's mails before it; its
    /// outcome settles its `held` reply. `Err` gives it back when the session's mail side
    /// is closed.
    pub async fn queue(&self, chat: Outbound) -> Result<(), Box<Outbound>> {
        match self.commands.send(Command::Chat(Box::new(chat))).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(Command::Chat(chat))) => Err(chat),
            Err(_) => unreachable!("a chat command comes back as sent"),
        }
    }
}

/// Where the mail side records what others read: the replies' correlation keys, the
/// sessions' ladders, and the threads kept across restarts.
pub struct Records {
    pub directory: Arc<Directory>,
    pub registry: Arc<Registry>,
    pub store: Arc<Store>,
    /// Chat messages mailed or not (`iwf_chat_messages_total`).
    pub stats: Arc<SessionStats>,
}

/// The sessions with mail state, by key; each entry is the way to its task.
pub struct Mailer {
    shared: Arc<Shared>,
    sessions: HashMap<SessionKey, Task>,
    outcomes: mpsc::UnboundedSender<Invited>,
}

impl Mailer {
    /// A mailer and the channel of its invitation outcomes, for `Core::on_invitation`; its
    /// channels take connections from `destinations`.
    pub fn new(
        policy: Arc<PolicyHost>,
        router: Router,
        settings: ClientSettings,
        config: &SmtpOutboundConfig,
        destinations: Arc<Destinations>,
        records: Records,
    ) -> (Self, mpsc::UnboundedReceiver<Invited>) {
        let Records {
            directory,
            registry,
            store,
            stats,
        } = records;
        let (outcomes, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            policy,
            router,
            settings,
            slots: Semaphore::new(config.max_mail_operations),
            max_operations: config.max_mail_operations,
            deadline: std::time::Duration::from_millis(config.invitation_timeout_ms),
            destinations,
            directory,
            registry,
            store,
            stats,
            retry: Retry::from_config(config),
            max_waiting: config.chat_max_waiting,
        });
        let mailer = Self {
            shared,
            sessions: HashMap::new(),
            outcomes,
        };
        (mailer, receiver)
    }

    /// The sender of F5's bounces, on this mailer's routes.
    pub fn bouncer(&self) -> Bouncer {
        Bouncer::new(self.shared.clone())
    }

    /// Sessions with mail state.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Mail operations running (an invitation or chat mail being sent).
    pub fn in_flight(&self) -> usize {
        self.shared.max_operations - self.shared.slots.available_permits()
    }

    /// 5.2.4.2.4 steps 1-5: starts the task of session `key`, which mails the invitation
    /// and sends its outcome on the outcome channel.
    pub fn invite(&mut self, key: SessionKey, mail: Box<MailFacts>) {
        self.spawn(key, mail, Start::Invite);
    }

    /// F1 (5.2.1.3): session `key` was accepted on the e-mail user's behalf; its task
    /// mails chat messages as they come, opening the channel at the first.
    pub fn accepted(&mut self, key: SessionKey, mail: Box<MailFacts>) {
        self.spawn(key, mail, Start::Accepted);
    }

    /// Session `key` was restored from the store with its thread `stored` (the JSON that
    /// the task saved; none for an F1 session before its first mail) and the chat messages
    /// `spooled` for it: replies find it again, and its task mails those first, continuing
    /// the thread. `Err` when the stored thread cannot be read (no task is started).
    pub fn restore(
        &mut self,
        key: SessionKey,
        mail: Box<MailFacts>,
        stored: Option<&str>,
        spooled: Vec<Outbound>,
    ) -> Result<(), String> {
        let thread = match stored {
            Some(stored) => {
                let record: ThreadRecord =
                    serde_json::from_str(stored).map_err(|e| format!("stored mail thread: {e}"))?;
                let thread = Thread::restore(&self.shared.router, record);
                register(&self.shared, &key, &mail, &thread);
                Some(Box::new(thread))
            }
            None => None,
        };
        self.spawn(key, mail, Start::Restored { thread, spooled });
        Ok(())
    }

    /// Parked session `key` is lost (its row could not be read back): its replies are
    /// refused from now on.
    pub fn forget_parked(&self, key: &SessionKey) {
        self.shared.directory.remove(key);
    }

    /// Session `key` (id `id`) was restored parked (issue 15) with its thread `stored`:
    /// its replies find it; no task runs until it comes back ([`Mailer::restore`]).
    pub fn restore_parked(
        &self,
        key: &Arc<SessionKey>,
        id: &str,
        stored: &str,
    ) -> Result<(), String> {
        let record: ThreadRecord =
            serde_json::from_str(stored).map_err(|e| format!("stored mail thread: {e}"))?;
        let thread = Thread::restore(&self.shared.router, record);
        register_as(&self.shared, key, Parked::Yes(key, id), &thread);
        Ok(())
    }

    /// Session `key` as the directory holds it (its replies' index), to share; a copy
    /// when the directory has none.
    pub fn shared_key(&self, key: &SessionKey) -> Arc<SessionKey> {
        self.shared
            .directory
            .shared_key(key)
            .unwrap_or_else(|| Arc::new(key.clone()))
    }

    fn spawn(&mut self, key: SessionKey, mail: Box<MailFacts>, start: Start) {
        // Room for every chat message allowed to wait, and the close behind them.
        let (commands, receiver) = mpsc::channel(self.shared.max_waiting + 1);
        let room = Arc::new(Semaphore::new(self.shared.max_waiting));
        if self
            .sessions
            .insert(key.clone(), Task { commands, room })
            .is_some()
        {
            tracing::warn!(session = %key, "a second start for one session: the first one's mail state is dropped");
        }
        let (shared, outcomes) = (self.shared.clone(), self.outcomes.clone());
        tokio::spawn(run(shared, key, mail, start, outcomes, receiver));
    }

    /// The way to session `key`'s task for its chat messages (F4), while it has one.
    pub fn chat(&self, key: &SessionKey) -> Option<ChatMailer> {
        self.sessions.get(key).map(|task| ChatMailer {
            commands: task.commands.clone(),
            room: task.room.clone(),
        })
    }

    /// The core has taken the outcome of `key`'s invitation: a refused invitation leaves no
    /// mail state (its task has ended).
    pub fn settled(&mut self, key: &SessionKey, outcome: &InvitationOutcome) {
        if outcome.is_err() {
            self.sessions.remove(key);
        }
    }

    /// Session `key` is parked (issue 15): an invitation awaiting its answer, with no
    /// mail in flight (none is, before the accept). Its task QUITs and ends; its replies
    /// still find it in the directory, without its facts.
    pub fn park(&mut self, key: &SessionKey) {
        if let Some(task) = self.sessions.remove(key) {
            self.shared.directory.park(key);
            let _ = task.commands.try_send(Command::Park);
        }
    }

    /// Session `key` is over (5.2.4.2.6): its task sends the CC2 notification if `notify`
    /// and the policy wants one, then QUITs, once the mails before are done.
    pub fn closed(&mut self, key: &SessionKey, notify: Notify) {
        match self.sessions.remove(key) {
            Some(task) => {
                // A full queue or a task already gone: dropping the sender ends the task
                // after its queue, with QUIT only.
                let _ = task.commands.try_send(Command::Close { notify });
            }
            None => tracing::debug!(session = %key, "session closed without mail state"),
        }
    }
}

/// What a session's task keeps between its mails.
struct Thread {
    /// Where the session's mails go, one route per destination (BB1, CC1: later mails
    /// go over the same channels).
    routes: Vec<Route>,
    /// AA1 MAIL FROM (a 1-1 chat mail goes from its author instead, BB1).
    from: Option<AddrSpec>,
    addresses: Addresses,
    /// The session's subject: the invitation's, else the INVITE's.
    subject: Option<String>,
    /// Every Message-ID the session sent, oldest first (F3 correlates replies with them).
    sent: Vec<MsgId>,
    /// The last mail: the next one's In-Reply-To and References.
    last: Option<Parent>,
    /// Chat mails sent (the policy's `chat-context`).
    chats: u32,
}

/// One destination of a session's mails (the smart host, or the servers of a recipient
/// domain, RFC 5321 5.1) with the recipients it takes and the channel kept to it. A
/// group's recipients may be at several domains, and each domain's servers take mail for
/// their own users only.
struct Route {
    /// A recipient domain of this destination, to look its servers up by.
    domain: String,
    to: Vec<AddrSpec>,
    /// While open.
    channel: Option<Channel>,
}

impl Thread {
    /// A session's mail state before its first mail: the envelope's sender, and its
    /// recipients (AA1/BB1 RCPT TO) grouped by destination, in the order they come.
    fn new(
        router: &Router,
        addresses: Addresses,
        envelope: Envelope,
        subject: Option<String>,
    ) -> Self {
        let mut routes: Vec<(String, Route)> = Vec::new();
        for rcpt in envelope.to {
            let destination = router.destination(rcpt.domain());
            match routes.iter_mut().find(|(d, _)| *d == destination) {
                Some((_, route)) => route.to.push(rcpt),
                None => routes.push((
                    destination,
                    Route {
                        domain: rcpt.domain().to_owned(),
                        to: vec![rcpt],
                        channel: None,
                    },
                )),
            }
        }
        Self {
            routes: routes.into_iter().map(|(_, route)| route).collect(),
            from: envelope.from,
            addresses,
            subject,
            sent: Vec::new(),
            last: None,
            chats: 0,
        }
    }

    fn sent(&mut self, id: MsgId, references: Vec<MsgId>) {
        self.sent.push(id.clone());
        self.last = Some(Parent { id, references });
    }

    /// What the store keeps of the thread, for session `mail` (JSON).
    fn stored(&self, mail: &MailFacts) -> Option<StoredThread> {
        let id = &mail.session.session_id;
        match serde_json::to_string(&self.record()) {
            Ok(json) => Some((id.clone(), json)),
            Err(e) => {
                // Strings, vectors and options of them: not expected; the old row stays.
                tracing::error!(session = %id, error = %e, "mail thread not serialised");
                None
            }
        }
    }

    /// What the store keeps of the thread: all but its channels.
    fn record(&self) -> ThreadRecord {
        ThreadRecord {
            from: self.from.clone(),
            to: self
                .routes
                .iter()
                .flat_map(|r| r.to.iter().cloned())
                .collect(),
            addresses: self.addresses.clone(),
            subject: self.subject.clone(),
            sent: self.sent[self.sent.len().saturating_sub(STORED_SENT)..].to_vec(),
            last: self.last.clone(),
            chats: self.chats,
        }
    }

    /// The thread `record` kept, its routes made again (channels open at the next mail).
    fn restore(router: &Router, record: ThreadRecord) -> Self {
        let envelope = Envelope {
            from: record.from,
            to: record.to,
            deliver_by: None,
        };
        Self {
            sent: record.sent,
            last: record.last,
            chats: record.chats,
            ..Self::new(router, record.addresses, envelope, record.subject)
        }
    }
}

/// The Message-IDs a stored thread keeps, the newest: the record is written again at each
/// chat mail, and a long chat must not make that write grow with it. A reply to an older
/// mail still finds its session by the session token in a generated Message-ID, or by
/// its addresses.
const STORED_SENT: usize = 32;

/// A session's thread as stored (`store`, JSON): the correlation keys of its replies
/// (addresses, the newest Message-IDs) and what its next mail continues.
#[derive(serde::Serialize, serde::Deserialize)]
struct ThreadRecord {
    from: Option<AddrSpec>,
    to: Vec<AddrSpec>,
    addresses: Addresses,
    subject: Option<String>,
    sent: Vec<MsgId>,
    last: Option<Parent>,
    chats: u32,
}

/// How a session's task starts.
enum Start {
    /// F2: with the invitation.
    Invite,
    /// F1: with nothing; the thread at the first chat mail.
    Accepted,
    /// After a restart, with the thread stored (if any) and the chat messages spooled.
    Restored {
        thread: Option<Box<Thread>>,
        spooled: Vec<Outbound>,
    },
}

/// The task of one session: the invitation and its outcome (F2) or nothing (F1), then its
/// chat mails in order, until the close. Each mail's future is boxed: the task lives as
/// long as the session, and between mails it should hold its queue and thread, not the
/// state of its largest mail (7.6 KB unboxed, per live session).
async fn run(
    shared: Arc<Shared>,
    key: SessionKey,
    mail: Box<MailFacts>,
    start: Start,
    outcomes: mpsc::UnboundedSender<Invited>,
    mut commands: mpsc::Receiver<Command>,
) {
    let (mut thread, spooled): (Option<Thread>, Vec<Outbound>) = match start {
        Start::Invite => match Box::pin(invitation(&shared, &key, &mail, &outcomes)).await {
            Some(invited) => (Some(invited), Vec::new()),
            None => return,
        },
        Start::Accepted => (None, Vec::new()),
        Start::Restored { thread, spooled } => (thread.map(|t| *t), spooled),
    };
    let restored = spooled.len();
    for (n, chat) in spooled.into_iter().enumerate() {
        let last = n + 1 == restored;
        let chat = Box::new(chat);
        if !Box::pin(mail_chat(&shared, &key, &mail, &mut thread, chat, last)).await {
            return;
        }
    }
    // The sender dropped without a word: the gateway is going away; QUIT only.
    let mut notify = Notify::No;
    while let Some(command) = commands.recv().await {
        match command {
            Command::Chat(chat) => {
                let last = commands.is_empty();
                if !Box::pin(mail_chat(&shared, &key, &mail, &mut thread, chat, last)).await {
                    return;
                }
            }
            Command::Close { notify: n } => {
                notify = n;
                break;
            }
            Command::Park => {
                if let Some(mut thread) = thread {
                    quit_all(&mut thread, &mail.session.session_id).await;
                }
                tracing::debug!(session = %key, "mail state parked");
                return;
            }
        }
    }
    // Replies to this session are refused from here on (a clear 550, not silence).
    shared.directory.remove(&key);
    if let Some(thread) = thread {
        Box::pin(close(&shared, &mail.session, thread, notify)).await;
    }
    tracing::debug!(session = %key, "mail state freed");
}

/// A burst of chat mails stores its thread with every this many mails, and at its end.
const STORE_THREAD_EVERY: u32 = 16;

/// One spooled chat message mailed (or failed) in the session's thread, its row out of the
/// spool and its held reply settled; false when the gateway is going away (it stays).
/// `last`: no other message waits behind it, so the thread is stored with its row.
async fn mail_chat(
    shared: &Arc<Shared>,
    key: &SessionKey,
    mail: &MailFacts,
    thread: &mut Option<Thread>,
    chat: Box<Outbound>,
    last: bool,
) -> bool {
    let new = thread.is_none();
    let Some(outcome) = Box::pin(deliver(shared, key, &mail.session, thread, &chat)).await else {
        return false;
    };
    if let (true, Some(thread)) = (new, &thread) {
        register(shared, key, mail, thread);
    }
    if let Some(thread) = thread.as_mut() {
        Box::pin(keep_or_quit(thread, key)).await;
    }
    let Outbound {
        session_id,
        msrp_message_id,
        held,
        ..
    } = *chat;
    // Its row goes with the thread as it now is (the next mail's parent, the Message-IDs
    // replies correlate with), in one queued write: at the first mail, at the end of a
    // burst, and every STORE_THREAD_EVERY mails within one (its JSON is a few KB). A crash
    // within a burst leaves a thread up to that many mails old: the mails after a restart
    // reply to an older one, and replies to the newer find the session by the token in
    // their Message-ID or by the addresses.
    let store_thread = |t: &Thread| new || last || t.chats.is_multiple_of(STORE_THREAD_EVERY);
    let stored = thread.as_ref().filter(|t| store_thread(t));
    shared.store.unspool(Unspooled {
        session_id,
        msrp_message_id,
        thread: stored.and_then(|t| t.stored(mail)).map(|(_, json)| json),
    });
    shared.stats.chat(Direction::ToEmail, outcome.is_ok());
    if let Some(held) = held {
        held.settle(match outcome {
            Ok(()) => Disposition::Delivered,
            Err(refused) => Disposition::failed(refused.status, refused.comment),
        });
    }
    true
}

/// F4 steps 2-4 for the spooled `chat`: mailed, refused for good, or tried again after
/// each temporary failure (back-off, `Retry`) until its give-up time. `None` when the
/// gateway is going away (the message stays spooled for the next start).
async fn deliver(
    shared: &Arc<Shared>,
    key: &SessionKey,
    session: &PolicySession,
    thread: &mut Option<Thread>,
    chat: &Outbound,
) -> Option<Result<(), Refused>> {
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let outcome = {
            let _slot = shared.slots.acquire().await.ok()?;
            Box::pin(chat_mail(shared, key, session, thread, chat)).await
        };
        let failure = match outcome {
            Ok(()) => return Some(Ok(())),
            Err(Undelivered::Final(refused)) => return Some(Err(refused)),
            Err(Undelivered::Transient(failure)) => failure,
        };
        let wait = shared.retry.delay(attempts);
        if SystemTime::now() + wait > chat.give_up_at {
            tracing::info!(session = %key, attempts, %failure, "chat message given up");
            return Some(Err(chat::gave_up(&failure, attempts)));
        }
        tracing::debug!(session = %key, attempts, ?wait, %failure, "chat mail refused for now: trying again");
        shared.store.note_retry();
        shared.registry.record(
            &session.session_id,
            Protocol::Smtp,
            format_args!("chat mail: attempt {attempts} failed for now, again in {wait:?}"),
        );
        tokio::time::sleep(wait).await;
    }
}

/// Makes the session findable by its replies (DESIGN "Correlating inbound e-mail"): the
/// addresses its mails come from and go to, and the Message-IDs sent so far.
fn register(shared: &Shared, key: &SessionKey, mail: &MailFacts, thread: &Thread) {
    register_as(shared, key, Parked::No(mail), thread);
}

/// Whether a session registers with its facts, or parked with its key and id.
enum Parked<'a> {
    No(&'a MailFacts),
    Yes(&'a Arc<SessionKey>, &'a str),
}

/// As [`register`], for a session parked or not.
fn register_as(shared: &Shared, key: &SessionKey, mail: Parked<'_>, thread: &Thread) {
    let a = &thread.addresses;
    let ours: Vec<&str> = std::iter::once(&a.from)
        .chain(&a.reply_to)
        .map(|m| m.addr.as_str())
        .collect();
    let users: Vec<&str> =
        a.to.iter()
            .chain(&a.cc)
            .chain(&a.bcc)
            .map(|m| m.addr.as_str())
            .collect();
    match mail {
        Parked::No(mail) => shared.directory.register(key, mail, &ours, &users),
        Parked::Yes(key, id) => shared.directory.register_parked(key, id, &ours, &users),
    }
    for id in &thread.sent {
        shared.directory.sent(key, &bare(id));
    }
}

/// A msg-id without its angle brackets, as inbound mails' references are compared.
fn bare(id: &MsgId) -> String {
    id.to_string()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

/// Keeps the channel open until the session's next mail, within `max_idle_channels` and
/// `max_idle_channels_per_destination`; past them it is QUIT and reopened when needed.
async fn keep_or_quit(thread: &mut Thread, key: &SessionKey) {
    for route in &mut thread.routes {
        if route.channel.as_mut().is_none_or(Channel::keep) {
            continue;
        }
        tracing::debug!(session = %key, "too many idle SMTP channels: QUIT until the next mail");
        if let Some(channel) = route.channel.take() {
            quit(channel, &key.call_id).await;
        }
    }
}

/// Runs `f` on the blocking pool (the policy's calls are synchronous).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::error!(error = %e, "policy call on the blocking pool failed");
            None
        }
    }
}

/// QUIT on every channel of the session.
async fn quit_all(thread: &mut Thread, id: &str) {
    for route in &mut thread.routes {
        if let Some(channel) = route.channel.take() {
            quit(channel, id).await;
        }
    }
}

/// One mail of the session, MAIL FROM `from` with `deliver_by`, to each destination with
/// that destination's recipients. Taken when any destination took it, as a server taking
/// some recipients of a transaction is (RFC 5321 3.3); a destination that refused it is
/// logged. When none did, the first destination's failure says why. `what` names the
/// mail in the session's ladder.
async fn send(
    shared: &Arc<Shared>,
    thread: &mut Thread,
    from: Option<AddrSpec>,
    deliver_by: Option<DeliverBy>,
    message: &[u8],
    id: &str,
    what: &str,
) -> Result<(), SmtpFailure> {
    let several = thread.routes.len() > 1;
    let mut taken = false;
    let mut first_failure = None;
    for route in &mut thread.routes {
        let envelope = Envelope {
            from: from.clone(),
            to: route.to.clone(),
            deliver_by,
        };
        match send_on(shared, route, &envelope, message, id, what).await {
            Ok(()) => taken = true,
            Err(failure) => {
                if several {
                    tracing::warn!(session = %id, domain = %route.domain, %failure, "mail not taken for this domain's recipients");
                }
                first_failure.get_or_insert(failure);
            }
        }
    }
    match (taken, first_failure) {
        (false, Some(failure)) => Err(failure),
        (false, None) => Err(SmtpFailure::local(
            Stage::RcptTo,
            Some("5.1.3"),
            "no recipient to send to",
            true,
        )),
        (true, _) => Ok(()),
    }
}

/// A mail over the route's channel, opened when there is none; a kept channel found gone
/// is reopened once (the server closes idle connections, RFC 5321 4.5.3.2.7).
async fn send_on(
    shared: &Arc<Shared>,
    route: &mut Route,
    envelope: &Envelope,
    message: &[u8],
    id: &str,
    what: &str,
) -> Result<(), SmtpFailure> {
    let mut kept = route.channel.is_some();
    let ladder = |text: std::fmt::Arguments<'_>| shared.registry.record(id, Protocol::Smtp, text);
    loop {
        let mut channel = match route.channel.take().filter(Channel::is_open) {
            Some(channel) => channel,
            None => {
                let (router, settings) = (&shared.router, &shared.settings);
                let domain = &route.domain;
                match smtp::connect(router, settings, &shared.destinations, domain).await {
                    Ok(channel) => channel,
                    Err(failure) => {
                        ladder(format_args!("{what}: no channel: {failure}"));
                        return Err(failure);
                    }
                }
            }
        };
        match channel.send(envelope, message).await {
            Ok(sent) => {
                tracing::debug!(session = %id, host = %channel.host(), reply = sent.reply.code, "mail taken");
                ladder(format_args!(
                    "{what} {} from {}",
                    sent.reply.code,
                    channel.host()
                ));
                route.channel = Some(channel);
                return Ok(());
            }
            // No reply at all on a kept channel: the server dropped it; a fresh one may
            // take the mail.
            Err(failed) if failed.failure.code == 0 && kept => {
                tracing::debug!(session = %id, failure = %failed.failure, "channel lost: reopening");
                kept = false;
            }
            Err(failed) => {
                ladder(format_args!(
                    "{what} refused by {}: {}",
                    channel.host(),
                    failed.failure
                ));
                route.channel = Some(channel).filter(Channel::is_open);
                return Err(failed.failure);
            }
        }
    }
}

/// CC2: QUIT closes the channel (RFC 5321 4.1.1.10); its outcome is only logged.
async fn quit(channel: Channel, id: &str) {
    match channel.quit().await {
        Ok(_) => tracing::debug!(session = %id, "SMTP channel closed"),
        Err(e) => tracing::debug!(session = %id, error = %e, "SMTP QUIT failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::draft::tests::session;
    use super::*;
    use crate::policy::testing;

    #[test]
    fn a_stored_thread_keeps_only_the_newest_message_ids() {
        let s = session();
        let a = addresses(&s, &super::draft::tests::decisions()).unwrap();
        let config = SmtpOutboundConfig {
            smart_host: Some("127.0.0.1:25".into()),
            ..Default::default()
        };
        let router = Router::new(&config).unwrap();
        let mut thread = Thread::new(&router, a.clone(), envelope(&a, None), None);
        for n in 0..100 {
            let id = MsgId::new(&format!("m{n}"), "example.com").unwrap();
            thread.sent(id, Vec::new());
        }
        let record = thread.record();
        assert_eq!(record.sent.len(), STORED_SENT);
        let first = format!("<m{}@example.com>", 100 - STORED_SENT);
        assert_eq!(record.sent[0].to_string(), first);
        assert_eq!(
            record.sent[STORED_SENT - 1].to_string(),
            "<m99@example.com>"
        );
        assert_eq!(thread.sent.len(), 100, "the live thread keeps them all");
    }

    #[test]
    fn a_refused_chat_mail_waits_twice_as_long_each_time_up_to_the_maximum() {
        let config = SmtpOutboundConfig {
            chat_retry_initial_ms: 500,
            chat_retry_max_ms: 3_000,
            ..Default::default()
        };
        let retry = Retry::from_config(&config);
        let waits: Vec<u64> = (1..=6).map(|n| retry.delay(n).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 3000, 3000, 3000]);
        assert_eq!(retry.delay(u32::MAX), Duration::from_millis(3_000));
    }

    #[tokio::test]
    async fn an_invitation_past_its_deadline_is_a_temporary_failure_answered_480() {
        use crate::policy::PolicySource;
        use crate::store::StoreSettings;
        // A server that accepts the connection and never greets.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = SmtpOutboundConfig {
            smart_host: Some(silent.local_addr().unwrap().to_string()),
            command_timeout_ms: 30_000,
            invitation_timeout_ms: 300,
            ..Default::default()
        };
        let engine = testing::engine();
        let policy = Arc::new(PolicyHost::new(engine, PolicySource::Embedded).unwrap());
        let router = Router::new(&config).unwrap();
        let directory = Arc::new(Directory::default());
        let (mut mailer, mut outcomes) = Mailer::new(
            policy,
            router,
            ClientSettings::from_config(&config).unwrap(),
            &config,
            Arc::new(Destinations::new(&config)),
            Records {
                directory,
                registry: Arc::new(Registry::default()),
                store: Arc::new(Store::open(&StoreSettings::memory()).await.unwrap()),
                stats: Arc::new(SessionStats::default()),
            },
        );
        let key = SessionKey {
            call_id: "c".into(),
            local_tag: "t".into(),
        };
        let facts = MailFacts {
            session: session(),
            cpim_date_time: None,
            sip_date: None,
        };
        mailer.invite(key.clone(), Box::new(facts));
        let started = std::time::Instant::now();
        let Invited {
            key: done, outcome, ..
        } = outcomes.recv().await.unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(done, key);
        let (status, warning) = outcome.unwrap_err();
        assert_eq!(status.code, 480, "the default policy: a connect failure");
        assert!(
            warning.contains("no SMTP outcome within 300 ms"),
            "{warning}"
        );
        mailer.settled(&key, &Err((status, warning)));
        assert_eq!(mailer.sessions(), 0);
        drop(silent);
    }
}
