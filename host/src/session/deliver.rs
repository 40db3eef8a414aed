//! F5 (5.2.4.2.8, EE1) from the inbound spool (issue 15): a chat mail answered 250 is
//! delivered as its MSRP SENDs, in each session's order, by one task per session with
//! mails waiting. While the session's chat connection is down (a re-INVITE after a
//! restart) its mails wait for it; once delivered, the store keeps their record. A mail the
//! chat refuses, or cannot take before its give-up time, or whose session ended, is
//! bounced to its return path (RFC 3464), and leaves the spool: never silence.

use super::core::SessionKey;
use super::registry::{Protocol, Registry};
use super::replies::{ChatSessions, UserEvent};
use super::stats::{Direction, SessionStats};
use crate::mail::{AddrSpec, Bounce, Mailbox, MsgId, compose_bounce};
use crate::msrp::{FailureReport, SendError};
use crate::session::mailer::{Bouncer, nonce};
use crate::store::{MailDone, SpooledMail, Store, unix_ms};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// `[smtp.inbound]` keys of the spool's delivery.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// The reporting host of bounces (`domain`).
    pub domain: String,
    /// How long the chat has to take a mail (`chat_give_up_ms`).
    pub give_up: Duration,
    /// How often a mail whose chat connection is down is tried again (`chat_retry_ms`).
    pub retry: Duration,
}

/// The delivery tasks of the sessions with mails waiting; cheap to clone.
#[derive(Clone)]
pub struct Deliveries {
    inner: Arc<Inner>,
}

struct Inner {
    queues: Mutex<HashMap<SessionKey, mpsc::UnboundedSender<SpooledMail>>>,
    chats: ChatSessions,
    core: mpsc::UnboundedSender<UserEvent>,
    store: Arc<Store>,
    bouncer: Bouncer,
    settings: DeliverySettings,
    stats: Arc<SessionStats>,
    registry: Arc<Registry>,
}

/// What became of a mail.
enum Outcome {
    Delivered,
    /// Bounced with this RFC 3463 status and reason.
    Failed(&'static str, String),
}

/// Bounce attempts for one mail, a doubling pause between them from one second.
const BOUNCE_ATTEMPTS: u32 = 5;

impl Deliveries {
    pub fn new(
        (chats, core): (ChatSessions, mpsc::UnboundedSender<UserEvent>),
        store: Arc<Store>,
        bouncer: Bouncer,
        settings: DeliverySettings,
        (stats, registry): (Arc<SessionStats>, Arc<Registry>),
    ) -> Self {
        let inner = Inner {
            queues: Mutex::new(HashMap::new()),
            chats,
            core,
            store,
            bouncer,
            settings,
            stats,
            registry,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// How long a mail taken now has before it is bounced, as a stored deadline.
    pub fn give_up_at(&self) -> i64 {
        unix_ms(SystemTime::now() + self.inner.settings.give_up)
    }

    /// Delivers `mail` (spooled) on session `key`'s chat, after the mails before it.
    pub fn push(&self, key: &SessionKey, mail: SpooledMail) {
        let mut queues = self.inner.queues.lock().unwrap_or_else(|e| e.into_inner());
        let mail = match queues.get(key) {
            Some(queue) => match queue.send(mail) {
                Ok(()) => return,
                Err(mpsc::error::SendError(mail)) => mail,
            },
            None => mail,
        };
        let (queue, mails) = mpsc::unbounded_channel();
        let _ = queue.send(mail);
        queues.insert(key.clone(), queue);
        tokio::spawn(run(self.inner.clone(), key.clone(), mails));
    }

    /// Bounces `mail`, whose session is gone (found in the spool at start).
    pub fn orphan(&self, mail: SpooledMail) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let why = "the chat session ended before the message could be delivered";
            settle(&inner, &mail, Outcome::Failed("5.0.0", why.into())).await;
        });
    }
}

/// Session `key`'s mails, in order, until none waits.
async fn run(inner: Arc<Inner>, key: SessionKey, mut mails: mpsc::UnboundedReceiver<SpooledMail>) {
    loop {
        let mail = match mails.try_recv() {
            Ok(mail) => mail,
            Err(_) => {
                // Under the lock: a mail pushed meanwhile is taken, not left behind.
                let mut queues = inner.queues.lock().unwrap_or_else(|e| e.into_inner());
                match mails.try_recv() {
                    Ok(mail) => mail,
                    Err(_) => {
                        queues.remove(&key);
                        return;
                    }
                }
            }
        };
        let outcome = deliver(&inner, &key, &mail).await;
        settle(&inner, &mail, outcome).await;
    }
}

/// Sends `mail`'s parts on the session's chat, each once it took the one before; waits
/// while the connection is down.
async fn deliver(inner: &Inner, key: &SessionKey, mail: &SpooledMail) -> Outcome {
    let reports = (mail.success_report, failure_report(&mail.failure_report));
    let total = mail.parts.len();
    let mut next = 0;
    let mut waited = false;
    loop {
        if unix_ms(SystemTime::now()) > mail.give_up_at {
            let why = "the chat did not take the message before its give-up time";
            return Outcome::Failed("5.4.7", why.into());
        }
        let chat = inner
            .chats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        let Some(chat) = chat else {
            if phase(&inner.core, key).await.is_none() {
                let why = "the chat session ended before the message could be delivered";
                return Outcome::Failed("5.0.0", why.into());
            }
            if !waited {
                tracing::info!(session = %mail.session_id, "chat connection down: the mail waits for it");
                waited = true;
            }
            inner.store.note_mail_retry();
            tokio::time::sleep(inner.settings.retry).await;
            continue;
        };
        while next < total {
            let part = &mail.parts[next];
            let sent = chat
                .session
                .send_as(
                    &part.msrp_message_id,
                    &part.content_type,
                    &part.body,
                    reports,
                )
                .await;
            let id = &mail.session_id;
            match sent {
                Ok(_) => {
                    inner.stats.chat(Direction::ToCpm, true);
                    inner.registry.record(
                        id,
                        Protocol::Msrp,
                        format_args!("SEND {}/{total} delivered", next + 1),
                    );
                    next += 1;
                }
                Err(e) => {
                    inner.registry.record(
                        id,
                        Protocol::Msrp,
                        format_args!("SEND {}/{total} failed: {e}", next + 1),
                    );
                    let done = match next {
                        0 => String::new(),
                        n => format!(" (the text and {} attachment(s) were delivered)", n - 1),
                    };
                    match e {
                        SendError::Refused { .. }
                        | SendError::Reported { .. }
                        | SendError::TooLarge { .. } => {
                            return Outcome::Failed(
                                "5.6.0",
                                format!("the chat refused the message: {e}{done}"),
                            );
                        }
                        // The connection went or the peer was silent: the chat may come
                        // back (a re-INVITE); the parts not taken are sent again, under
                        // the same Message-IDs.
                        _ => {
                            tracing::info!(session = %id, error = %e, "chat did not take the mail: trying again");
                            inner.store.note_mail_retry();
                            tokio::time::sleep(inner.settings.retry).await;
                            break;
                        }
                    }
                }
            }
        }
        if next == total {
            return Outcome::Delivered;
        }
    }
}

/// Records what became of `mail`: delivered, or bounced and out of the spool.
async fn settle(inner: &Inner, mail: &SpooledMail, outcome: Outcome) {
    let delivered = matches!(outcome, Outcome::Delivered);
    match outcome {
        Outcome::Delivered => {
            tracing::info!(session = %mail.session_id, mail = %mail.mail_id, parts = mail.parts.len(), "e-mail delivered to the chat");
        }
        Outcome::Failed(status, why) => {
            inner.stats.chat(Direction::ToCpm, false);
            tracing::info!(session = %mail.session_id, mail = %mail.mail_id, %status, %why, "e-mail not delivered to the chat: bouncing it");
            bounce(inner, mail, status, &why).await;
        }
    }
    inner.store.mail_done(MailDone {
        session_id: mail.session_id.clone(),
        mail_id: mail.mail_id.clone(),
        delivered,
    });
}

/// Sends `mail`'s bounce to its return path, trying a few times; a mail from the null
/// sender (itself a bounce or a notification) gets none.
async fn bounce(inner: &Inner, mail: &SpooledMail, status: &str, why: &str) {
    let Some(to) = mail.return_path.as_deref() else {
        return tracing::info!(session = %mail.session_id, "no return path: no bounce");
    };
    let (Ok(spec), Ok(mailbox)) = (AddrSpec::parse(to), Mailbox::new(None, to)) else {
        return tracing::warn!(session = %mail.session_id, return_path = %to, "return path unusable: no bounce");
    };
    let domain = &inner.settings.domain;
    let Ok(message_id) = MsgId::new(&nonce(), domain) else {
        return tracing::error!(%domain, "no Message-ID for a bounce on this domain");
    };
    let message = compose_bounce(&Bounce {
        reporting_domain: domain.clone(),
        to: mailbox,
        recipient: mail.recipient.clone(),
        status: status.to_owned(),
        diagnostic: why.to_owned(),
        original_message_id: MsgId::parse(&format!("<{}>", mail.mail_id)).ok(),
        original_subject: mail.subject.clone(),
        date: chrono::Utc::now().fixed_offset(),
        message_id,
    });
    let mut pause = Duration::from_secs(1);
    for attempt in 1..=BOUNCE_ATTEMPTS {
        match inner.bouncer.send(&spec, &message).await {
            Ok(()) => {
                inner
                    .registry
                    .record(&mail.session_id, Protocol::Smtp, "bounce sent");
                return;
            }
            Err(failure) if attempt < BOUNCE_ATTEMPTS && !failure.permanent => {
                tracing::info!(session = %mail.session_id, %failure, attempt, "bounce not taken: trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(failure) => {
                return tracing::error!(session = %mail.session_id, %failure, return_path = %to, "bounce not taken: given up");
            }
        }
    }
}

/// The delivery order of a mail taken now: microseconds since the epoch, made strictly
/// increasing, so it also orders the mails of before a restart first.
pub fn next_seq() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(0);
    now.max(previous + 1)
}

/// Where the session's user stands (`None`: the session is over), from the core.
pub(super) async fn phase(
    core: &mpsc::UnboundedSender<UserEvent>,
    key: &SessionKey,
) -> Option<crate::policy::world::SessionPhase> {
    let (reply, phase) = oneshot::channel();
    let key = key.clone();
    core.send(UserEvent::Phase { key, reply }).ok()?;
    phase.await.ok().flatten()
}

/// The stored Failure-Report value; anything else is the default, `yes`.
fn failure_report(value: &str) -> FailureReport {
    match value {
        "no" => FailureReport::No,
        "partial" => FailureReport::Partial,
        _ => FailureReport::Yes,
    }
}
