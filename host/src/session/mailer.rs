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

use super::chat::{self, ChatMessage, Refused};
use super::core::{InvitationOutcome, MailFacts, Notify, SessionKey};
use super::directory::Directory;
use super::registry::{Protocol, Registry};
use crate::config::SmtpOutboundConfig;
use crate::mail::header::HeaderError;
use crate::mail::{AddrSpec, AutoSubmitted, Draft, Mailbox, MsgId, XPriority, aa2, compose};
use crate::policy::world::{
    self, Additions, ChatContext, CopyControl, Identity, InvitationMail, MailKind, Notification,
    Session as PolicySession, SipStatus,
};
use crate::policy::{Decision, PolicyHost};
use crate::sip::cpm::Identities;
use crate::smtp::{
    self, Channel, ClientSettings, DeliverBy, Destinations, Envelope, Router, SmtpFailure, Stage,
};
use chrono::{DateTime, FixedOffset, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// The longest SMTP reply text carried into a SIP Warning.
const MAX_WARNING: usize = 200;

/// Commands queued for one session's task; a chat message waits behind the invitation.
const COMMAND_QUEUE: usize = 64;

/// What the mail tasks share: the policy, where mail goes, how the client talks.
struct Shared {
    policy: Arc<PolicyHost>,
    router: Router,
    settings: ClientSettings,
    /// `[smtp.outbound] max_mail_operations`: one permit per operation running.
    slots: Semaphore,
    /// `invitation_timeout_ms`: past it the invitation is a temporary connect failure (AA3).
    deadline: std::time::Duration,
    /// Connections per destination, and channels kept between mails.
    destinations: Arc<Destinations>,
    /// Where replies find their session: addresses and every Message-ID sent.
    directory: Arc<Directory>,
    /// The sessions' ladders: each mail's SMTP outcome goes there.
    registry: Arc<Registry>,
}

/// The outcome of a session's invitation, with the policy's invitation expiry (F3: no
/// answer within it is a reject).
pub type Invited = (SessionKey, InvitationOutcome, std::time::Duration);

/// What a session's task is asked to do after its start.
enum Command {
    /// F4: mail this chat message (BB1, BB2) and answer with its MSRP outcome. Boxed:
    /// the queue's first block of 32 slots is made with the session, slots as large as
    /// the largest command.
    Chat {
        message: Box<ChatMessage>,
        done: oneshot::Sender<Result<(), Refused>>,
    },
    /// The session is over: the CC2 notification when `notify` says so, then QUIT.
    Close { notify: Notify },
}

/// The way to one session's mail task, for whoever carries its chat messages (the MSRP
/// side); cheap to clone, and harmless once the session is gone.
#[derive(Clone)]
pub struct ChatMailer {
    commands: mpsc::Sender<Command>,
}

impl ChatMailer {
    /// F4 steps 2-4: mails `message` and returns its MSRP outcome: `Ok` once the server
    /// took the mail (250), else the status that says what failed.
    pub async fn send(&self, message: ChatMessage) -> Result<(), Refused> {
        let (done, outcome) = oneshot::channel();
        if self
            .commands
            .send(Command::Chat {
                message: Box::new(message),
                done,
            })
            .await
            .is_err()
        {
            return Err(chat::msrp_status(&chat::channel_gone(
                "the session's mail side is closed",
            )));
        }
        outcome.await.unwrap_or_else(|_| {
            Err(chat::msrp_status(&chat::channel_gone(
                "the session's mail side closed before the mail went out",
            )))
        })
    }
}

/// The sessions with mail state, by key; each entry is the way to its task.
pub struct Mailer {
    shared: Arc<Shared>,
    sessions: HashMap<SessionKey, mpsc::Sender<Command>>,
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
        directory: Arc<Directory>,
        registry: Arc<Registry>,
    ) -> (Self, mpsc::UnboundedReceiver<Invited>) {
        let (outcomes, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            policy,
            router,
            settings,
            slots: Semaphore::new(config.max_mail_operations),
            deadline: std::time::Duration::from_millis(config.invitation_timeout_ms),
            destinations,
            directory,
            registry,
        });
        let mailer = Self {
            shared,
            sessions: HashMap::new(),
            outcomes,
        };
        (mailer, receiver)
    }

    /// Sessions with mail state.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// 5.2.4.2.4 steps 1-5: starts the task of session `key`, which mails the invitation
    /// and sends its outcome on the outcome channel.
    pub fn invite(&mut self, key: SessionKey, mail: Box<MailFacts>) {
        self.spawn(key, mail, true);
    }

    /// F1 (5.2.1.3): session `key` was accepted on the e-mail user's behalf; its task
    /// mails chat messages as they come, opening the channel at the first.
    pub fn accepted(&mut self, key: SessionKey, mail: Box<MailFacts>) {
        self.spawn(key, mail, false);
    }

    fn spawn(&mut self, key: SessionKey, mail: Box<MailFacts>, invite: bool) {
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        if self.sessions.insert(key.clone(), commands).is_some() {
            tracing::warn!(session = %key, "a second start for one session: the first one's mail state is dropped");
        }
        let (shared, outcomes) = (self.shared.clone(), self.outcomes.clone());
        tokio::spawn(run(shared, key, mail, invite, outcomes, receiver));
    }

    /// The way to session `key`'s task for its chat messages (F4), while it has one.
    pub fn chat(&self, key: &SessionKey) -> Option<ChatMailer> {
        self.sessions.get(key).map(|commands| ChatMailer {
            commands: commands.clone(),
        })
    }

    /// The core has taken the outcome of `key`'s invitation: a refused invitation leaves no
    /// mail state (its task has ended).
    pub fn settled(&mut self, key: &SessionKey, outcome: &InvitationOutcome) {
        if outcome.is_err() {
            self.sessions.remove(key);
        }
    }

    /// Session `key` is over (5.2.4.2.6): its task sends the CC2 notification if `notify`
    /// and the policy wants one, then QUITs, once the mails before are done.
    pub fn closed(&mut self, key: &SessionKey, notify: Notify) {
        match self.sessions.remove(key) {
            Some(commands) => {
                // A full queue or a task already gone: dropping the sender ends the task
                // after its queue, with QUIT only.
                let _ = commands.try_send(Command::Close { notify });
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
}

/// The task of one session: the invitation and its outcome (F2) or nothing (F1), then its
/// chat mails in order, until the close. Each mail's future is boxed: the task lives as
/// long as the session, and between mails it should hold its queue and thread, not the
/// state of its largest mail (7.6 KB unboxed, per live session).
async fn run(
    shared: Arc<Shared>,
    key: SessionKey,
    mail: Box<MailFacts>,
    invite_first: bool,
    outcomes: mpsc::UnboundedSender<Invited>,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut thread: Option<Thread> = None;
    if invite_first {
        match Box::pin(invitation(&shared, &key, &mail, &outcomes)).await {
            Some(invited) => thread = Some(invited),
            None => return,
        }
    }
    // The sender dropped without a word: the gateway is going away; QUIT only.
    let mut notify = Notify::No;
    while let Some(command) = commands.recv().await {
        match command {
            Command::Chat { message, done } => {
                let new = thread.is_none();
                let outcome = match shared.slots.acquire().await {
                    Ok(_slot) => {
                        Box::pin(chat_mail(
                            &shared,
                            &key,
                            &mail.session,
                            &mut thread,
                            *message,
                        ))
                        .await
                    }
                    Err(_) => return,
                };
                if let (true, Some(thread)) = (new, &thread) {
                    register(&shared, &key, &mail, thread);
                }
                if let Some(thread) = &mut thread {
                    Box::pin(keep_or_quit(thread, &key)).await;
                }
                let _ = done.send(outcome);
            }
            Command::Close { notify: n } => {
                notify = n;
                break;
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

/// F2 steps 1-5: mails the invitation within `invitation_timeout_ms` and sends its
/// outcome; the session's thread when it went out, `None` when refused (the task ends).
async fn invitation(
    shared: &Arc<Shared>,
    key: &SessionKey,
    mail: &MailFacts,
    outcomes: &mpsc::UnboundedSender<Invited>,
) -> Option<Thread> {
    // The deadline covers the wait for a slot too: the INVITE is pending all along.
    let slotted = async {
        let _slot = shared.slots.acquire().await.ok()?;
        Some(invite(shared, mail).await)
    };
    let invited = {
        match tokio::time::timeout(shared.deadline, slotted).await {
            Ok(invited) => invited?,
            Err(_) => {
                let ms = shared.deadline.as_millis();
                let text = format!("no SMTP outcome within {ms} ms");
                let failure = SmtpFailure::local(Stage::Connect, Some("4.4.1"), text, false);
                Err(refusal(shared, &mail.session, failure).await)
            }
        }
    };
    match invited {
        Ok((mut invited, expiry)) => {
            register(shared, key, mail, &invited);
            let _ = outcomes.send((key.clone(), Ok(()), expiry));
            keep_or_quit(&mut invited, key).await;
            Some(invited)
        }
        Err(refusal) => {
            let _ = outcomes.send((key.clone(), Err(refusal), std::time::Duration::ZERO));
            None
        }
    }
}

/// Makes the session findable by its replies (DESIGN "Correlating inbound e-mail"): the
/// addresses its mails come from and go to, and the Message-IDs sent so far.
fn register(shared: &Shared, key: &SessionKey, mail: &MailFacts, thread: &Thread) {
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
    shared.directory.register(key, mail, &ours, &users);
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

/// The policy's answers an invitation needs, asked in one go on the blocking pool.
struct Decisions {
    /// AA2 From: P-Asserted-Identity, else From, mapped (5.2.4.1).
    user: Option<world::Mailbox>,
    /// Privacy: id.
    anonymous: Option<world::Mailbox>,
    /// Step 2b: the group's address.
    group: Option<world::Mailbox>,
    /// AA2 Sender (groups): Referred-By, else From, mapped.
    originator: Option<world::Mailbox>,
    /// AA2 Reply-To: the SIP Reply-To, mapped.
    reply_to: Option<world::Mailbox>,
    /// The group's URI-list, each entry mapped.
    recipients: Vec<(Option<world::Mailbox>, CopyControl)>,
    body: InvitationMail,
    x_priority: Option<u8>,
    deliver_by: Option<world::ByRequest>,
    /// F3: seconds to wait for the e-mail user's answer (invitation only).
    expiry: u32,
}

/// The policy's answers for a session's addresses, and with `invitation` those of its
/// invitation mail too (an F1 session mails no invitation).
fn decide(policy: &PolicyHost, session: &PolicySession, invitation: bool) -> Decisions {
    let gateway = &session.gateway;
    let map = |id: &Identity| policy.cpm_to_email(gateway, id).value;
    let user = map(session.asserted_identity.as_ref().unwrap_or(&session.from));
    let group = session.group.as_ref();
    let recipients = group
        .map(|g| {
            g.recipients
                .iter()
                .map(|r| {
                    let mailbox = match mailto(&r.uri) {
                        Some(address) => Some(world::Mailbox {
                            address: address.into(),
                            display_name: r.display_name.clone(),
                        }),
                        None => map(&Identity {
                            uri: r.uri.clone(),
                            display_name: r.display_name.clone(),
                        }),
                    };
                    (mailbox, r.copy_control)
                })
                .collect()
        })
        .unwrap_or_default();
    Decisions {
        user,
        anonymous: session
            .privacy_id
            .then(|| policy.anonymous_identity(session).value),
        group: group.map(|_| policy.group_address(session).value),
        originator: group.and_then(|_| map(session.referred_by.as_ref().unwrap_or(&session.from))),
        reply_to: session.reply_to.as_ref().and_then(map),
        recipients,
        body: match invitation {
            true => policy.invitation_body(session).value,
            false => InvitationMail {
                subject: None,
                body: String::new(),
            },
        },
        x_priority: invitation
            .then(|| policy.x_priority(session, MailKind::Invitation).value)
            .flatten(),
        deliver_by: invitation
            .then(|| policy.deliver_by(session, MailKind::Invitation).value)
            .flatten(),
        expiry: match invitation {
            true => policy.invitation_expiry(session).value,
            false => 0,
        },
    }
}

/// The addresses of a session's mails, fixed by the invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Addresses {
    /// A group session (step 2b): mails are from the group's address.
    group: bool,
    from: Mailbox,
    sender: Option<Mailbox>,
    reply_to: Option<Mailbox>,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    /// Envelope only (RFC 5366 copyControl bcc).
    bcc: Vec<Mailbox>,
}

/// AA2 address rows (From, Reply-To, Sender, To/Cc/Bcc) from the facts and the policy's
/// mappings; `Err` names what cannot be mapped.
fn addresses(session: &PolicySession, d: &Decisions) -> Result<Addresses, String> {
    let mailbox = |m: &world::Mailbox| {
        Mailbox::new(m.display_name.as_deref(), &m.address)
            .map_err(|e| format!("policy address {:?}: {e}", m.address))
    };
    let anonymous = d.anonymous.as_ref().map(mailbox).transpose()?;
    let user = d.user.as_ref().map(mailbox).transpose()?;
    // AA2 From: step 2b the group's address; Privacy: id the anonymous one; else the user's.
    let from = match (&d.group, &anonymous) {
        (Some(group), _) => mailbox(group)?,
        (None, Some(anonymous)) => anonymous.clone(),
        (None, None) => user.ok_or("no e-mail address for the inviting CPM user")?,
    };
    // AA2 Sender (groups): the originator from Referred-By or From, anonymous with Privacy: id.
    let sender = match (&d.group, &anonymous) {
        (None, _) => None,
        (Some(_), Some(anonymous)) => Some(anonymous.clone()),
        (Some(_), None) => d.originator.as_ref().map(mailbox).transpose()?,
    };
    // AA2 Reply-To: the SIP Reply-To mapped; an anonymous URI with Privacy: id.
    let reply_to = match (&session.reply_to, &anonymous) {
        (None, _) => None,
        (Some(_), Some(anonymous)) => Some(anonymous.clone()),
        (Some(_), None) => d.reply_to.as_ref().map(mailbox).transpose()?,
    };
    // AA2 To/Cc/Bcc: the Request-URI's mailto address, or the URI-list by copyControl.
    let list = if session.group.is_some() {
        let mut list = Vec::new();
        for (m, control) in &d.recipients {
            match m {
                Some(m) => list.push((mailbox(m)?, *control)),
                None => {
                    tracing::info!(session = %session.session_id, "a URI-list entry without an e-mail address left out")
                }
            }
        }
        list
    } else {
        let address = mailto(&session.request_uri).ok_or_else(|| {
            format!(
                "the Request-URI {} is not a mailto: URI",
                session.request_uri
            )
        })?;
        let to = Mailbox::new(None, address)
            .map_err(|e| format!("the Request-URI {}: {e}", session.request_uri))?;
        vec![(to, CopyControl::To)]
    };
    let r = aa2::recipients(list);
    if r.to.is_empty() && r.cc.is_empty() && r.bcc.is_empty() {
        return Err("no recipient with an e-mail address".into());
    }
    Ok(Addresses {
        group: session.group.is_some(),
        from,
        sender,
        reply_to,
        to: r.to,
        cc: r.cc,
        bcc: r.bcc,
    })
}

/// The addr-spec of a `mailto:` URI (RFC 6068), without its `?hfields`.
fn mailto(uri: &str) -> Option<&str> {
    let rest = uri
        .get(..7)?
        .eq_ignore_ascii_case("mailto:")
        .then(|| &uri[7..])?;
    let address = rest.split('?').next()?.trim();
    (!address.is_empty()).then_some(address)
}

/// Which mail of the session, with what only that mail has.
enum Kind<'a> {
    /// AA2: the invitation.
    Invitation {
        cpim_date_time: Option<DateTime<FixedOffset>>,
        sip_date: Option<DateTime<FixedOffset>>,
        body: &'a InvitationMail,
    },
    /// BB2: a chat message of the CPM side, threaded under the session's last mail.
    Chat {
        message: &'a ChatMessage,
        /// The CPIM From, mapped (None: absent, unmapped, or Privacy: id).
        author: Option<&'a Mailbox>,
        additions: &'a Additions,
        parent: Option<&'a Parent>,
        /// The session's subject (the invitation's), so the chat reads as one thread.
        subject: Option<&'a str>,
    },
    /// CC2: the session-closed notification, threaded under the session's last mail.
    Closed {
        parent: Option<&'a Parent>,
        body: &'a Notification,
    },
}

/// A mail's Message-ID and References: the next mail's In-Reply-To and References.
#[derive(Debug, Clone)]
struct Parent {
    id: MsgId,
    references: Vec<MsgId>,
}

/// AA2, BB2 and CC2 row by row: the one mapping from a session's facts to the draft of
/// its mail.
fn draft(
    session: &PolicySession,
    addresses: &Addresses,
    kind: &Kind,
    message_id: MsgId,
    x_priority: Option<u8>,
    now: DateTime<Utc>,
) -> Result<Draft, HeaderError> {
    let mail_domain = &session.gateway.mail_domain;
    // AA2 Date: CPIM DateTime (of the INVITE's message/cpim part), else SIP Date, else
    // now; BB2: CPIM DateTime, else now; CC2: now.
    let date = match kind {
        Kind::Invitation {
            cpim_date_time,
            sip_date,
            ..
        } => aa2::date(*cpim_date_time, *sip_date, now),
        Kind::Chat { message, .. } => aa2::date(message.date_time, None, now),
        Kind::Closed { .. } => aa2::date(None, None, now),
    };
    // AA2 msg-id row: In-Reply-To from InReplyTo-Contribution-ID (none on the first mail
    // otherwise); BB2: the message's InReplyTo-Contribution-ID, else the previous mail of
    // the session; CC2: the previous mail (the chain the e-mail user's client threads, and
    // F3 correlates).
    let (in_reply_to, references) = match kind {
        Kind::Invitation { .. } => {
            let parent =
                aa2::in_reply_to(session.in_reply_to_contribution_id.as_deref(), mail_domain)?;
            let references = parent.iter().cloned().collect();
            (parent, references)
        }
        Kind::Chat {
            message, parent, ..
        } => {
            let answered =
                aa2::in_reply_to(message.in_reply_to_contribution_id.as_deref(), mail_domain)?;
            thread_under(answered, *parent)
        }
        Kind::Closed { parent, .. } => thread_under(None, *parent),
    };
    // AA2 Subject: the SIP Subject, else the policy's; BB2: the session's; CC2: the policy's.
    let (subject, body) = match kind {
        Kind::Invitation { body, .. } => (
            session.subject.clone().or_else(|| body.subject.clone()),
            body.body.clone(),
        ),
        Kind::Chat {
            message,
            additions,
            subject,
            ..
        } => (
            subject.map(str::to_owned),
            chat_body(&message.text, additions),
        ),
        Kind::Closed { body, .. } => (body.subject.clone(), body.body.clone()),
    };
    // BB2 From: the CPIM From (mapped) of a 1-1 chat, else the user's (anonymous with
    // Privacy: id); a group's mails are from the group, with the author as Sender.
    let (from, sender) = match kind {
        Kind::Chat {
            author: Some(author),
            ..
        } if addresses.group => (addresses.from.clone(), Some((*author).clone())),
        Kind::Chat {
            author: Some(author),
            ..
        } => ((*author).clone(), None),
        _ => (addresses.from.clone(), addresses.sender.clone()),
    };
    Ok(Draft {
        // AA2/BB2/CC2 From: mapped, anonymous, or the group's (see `addresses`).
        from,
        // AA2/CC2 Sender: the originator of a group session; BB2: the message's author.
        sender,
        // AA2 Reply-To: the SIP Reply-To mapped (the invitation only).
        reply_to: match kind {
            Kind::Invitation { .. } => addresses.reply_to.clone(),
            _ => None,
        },
        // To, Cc: the Request-URI, or the URI-list by copyControl; Bcc: envelope only.
        to: addresses.to.clone(),
        cc: addresses.cc.clone(),
        date,
        message_id,
        in_reply_to,
        references,
        subject,
        // AA2 X-Priority: from Priority, as the policy maps it; BB2/CC2: per the policy.
        x_priority: x_priority.and_then(|p| XPriority::new(p).ok()),
        // RFC 3834: the notification is generated, not written by the CPM user.
        auto_submitted: match kind {
            Kind::Closed { .. } => Some(AutoSubmitted::AutoGenerated),
            _ => None,
        },
        // AA2/CC2 message body: the policy's text; BB2: the message and the additions.
        body,
    })
}

/// In-Reply-To and References of a mail under `parent`, the session's last mail. The
/// References chain always continues the session's thread, so mail clients keep one
/// conversation; a message that names what it answers (`answered`, BB2) is In-Reply-To
/// that one, which joins the chain if the thread does not hold it yet.
fn thread_under(answered: Option<MsgId>, parent: Option<&Parent>) -> (Option<MsgId>, Vec<MsgId>) {
    let mut references = parent
        .map(|p| aa2::references(&p.references, &p.id))
        .unwrap_or_default();
    let in_reply_to = answered.or_else(|| parent.map(|p| p.id.clone()));
    if let Some(id) = &in_reply_to
        && !references.contains(id)
    {
        references = aa2::references(&references, id);
    }
    (in_reply_to, references)
}

/// BB2 msg-id row: from the message's Contribution-ID, unless a mail already went out with
/// that id (`taken`: a client reusing the session's Contribution-ID for its messages, or
/// another session's): then a new one, as a Message-ID is unique (RFC 5322 3.6.4).
fn chat_message_id(
    session: &PolicySession,
    message: &ChatMessage,
    taken: impl Fn(&MsgId) -> bool,
) -> Result<MsgId, HeaderError> {
    let domain = &session.gateway.mail_domain;
    let from_contribution = message
        .contribution_id
        .as_deref()
        .and_then(|cid| MsgId::from_contribution_id(cid, domain).ok())
        .filter(|id| !taken(id));
    match from_contribution {
        Some(id) => Ok(id),
        None => generated_id(session),
    }
}

/// BB2 message body: the policy's text before, the message, the policy's text after
/// (leave instructions, participants), as paragraphs.
fn chat_body(text: &str, additions: &Additions) -> String {
    [
        additions.before.as_deref(),
        Some(text),
        additions.after.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter(|part| !part.is_empty())
    .collect::<Vec<_>>()
    .join("\n\n")
}

/// AA2 msg-id: from Contribution-ID, else generated: the session's id (the correlation
/// token) and 128 random bits, so nobody can guess it.
fn invitation_id(session: &PolicySession) -> Result<MsgId, HeaderError> {
    let domain = &session.gateway.mail_domain;
    match &session.contribution_id {
        Some(id) => MsgId::from_contribution_id(id, domain),
        None => generated_id(session),
    }
}

fn generated_id(session: &PolicySession) -> Result<MsgId, HeaderError> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).expect("OS randomness for a Message-ID");
    let left = format!("iwf.{}.{}", session.session_id, hex::encode(random));
    MsgId::new(&left, &session.gateway.mail_domain)
}

/// AA1 envelope: MAIL FROM the address the From row shows (step 2a the user's, 2b the
/// group's; with Privacy: id the anonymous one, so the envelope keeps the privacy too);
/// RCPT TO every recipient, Bcc included; BY= as the policy asks.
fn envelope(addresses: &Addresses, deliver_by: Option<&world::ByRequest>) -> Envelope {
    let all = addresses
        .to
        .iter()
        .chain(&addresses.cc)
        .chain(&addresses.bcc);
    Envelope {
        from: Some(addresses.from.addr.clone()),
        to: all.map(|m| m.addr.clone()).collect(),
        deliver_by: deliver_by.and_then(DeliverBy::from_policy),
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

/// A refusal that is not the SMTP server's: `code`, and `why` as the Warning.
fn local_refusal(code: u16, reason: &str, why: impl Into<String>) -> (SipStatus, String) {
    let status = SipStatus {
        code,
        reason: reason.into(),
    };
    (status, why.into())
}

/// AA3: the SIP status of an SMTP failure, as the policy maps it (steps 3, 5b), with the
/// SMTP reply (stage, code, enhanced code, text) as the Warning text.
async fn refusal(
    shared: &Arc<Shared>,
    session: &PolicySession,
    failure: SmtpFailure,
) -> (SipStatus, String) {
    let warning = warning_text(&failure);
    let (policy, facts, failure) = (shared.policy.clone(), session.clone(), failure.into());
    let decided = blocking(move || policy.smtp_failure_status(&facts, &failure)).await;
    let status = decided.map(|decided| {
        let answer = decided.value.code.to_string();
        let (id, which) = (&session.session_id, Decision::SmtpFailureStatus);
        shared.registry.decided(id, which, &answer, &decided.by);
        decided.value
    });
    let status = status.unwrap_or(SipStatus {
        code: 500,
        reason: "Server Internal Error".into(),
    });
    (status, warning)
}

/// AA3: the SMTP stage, code, enhanced code and text of `failure` for a SIP Warning: one
/// line (CR/LF from the server's text never reach SIP), at most [`MAX_WARNING`] bytes.
fn warning_text(failure: &SmtpFailure) -> String {
    let mut warning = failure.to_string().replace(['\r', '\n'], " ");
    if warning.len() > MAX_WARNING {
        let mut cut = MAX_WARNING;
        while !warning.is_char_boundary(cut) {
            cut -= 1;
        }
        warning.truncate(cut);
    }
    warning
}

/// 5.2.4.2.4 steps 1-5 for one session.
/// The thread and the policy's invitation expiry when the server took the invitation.
async fn invite(
    shared: &Arc<Shared>,
    mail: &MailFacts,
) -> Result<(Thread, std::time::Duration), (SipStatus, String)> {
    let session = &mail.session;
    let (policy, facts) = (shared.policy.clone(), session.clone());
    let Some(decisions) = blocking(move || decide(&policy, &facts, true)).await else {
        return Err(local_refusal(
            500,
            "Server Internal Error",
            "the invitation could not be decided",
        ));
    };
    let addresses =
        addresses(session, &decisions).map_err(|why| local_refusal(404, "Not Found", why))?;
    let envelope = envelope(&addresses, decisions.deliver_by.as_ref());
    let bad_header = |e: HeaderError| local_refusal(400, "Bad Request", e.to_string());
    let message_id = invitation_id(session).map_err(bad_header)?;
    let kind = Kind::Invitation {
        cpim_date_time: mail.cpim_date_time,
        sip_date: mail.sip_date,
        body: &decisions.body,
    };
    let draft = draft(
        session,
        &addresses,
        &kind,
        message_id.clone(),
        decisions.x_priority,
        Utc::now(),
    )
    .map_err(bad_header)?;
    let message = compose(&draft);
    let deliver_by = envelope.deliver_by;
    let mut thread = Thread::new(&shared.router, addresses, envelope, draft.subject.clone());
    // Steps 1-2: DNS (or the smart host) and the channel to the recipients' servers; step
    // 4: the mail transaction; step 5: its outcome.
    let (from, id) = (thread.from.clone(), &session.session_id);
    match send(
        shared,
        &mut thread,
        from,
        deliver_by,
        &message,
        id,
        "invitation",
    )
    .await
    {
        Ok(()) => {
            tracing::info!(session = %id, message_id = %message_id, "invitation mailed");
            thread.sent(message_id, draft.references);
            let expiry = std::time::Duration::from_secs(decisions.expiry.into());
            Ok((thread, expiry))
        }
        Err(failure) => {
            quit_all(&mut thread, id).await;
            Err(refusal(shared, session, failure).await)
        }
    }
}

/// 5.2.4.2.6: the CC2 notification when `notify` says so and the policy wants one (CC1:
/// the same recipients, over the same channel, reopened if the server closed it), then
/// QUIT; within a `max_mail_operations` slot (none left: the gateway is going away, the
/// channel drops).
async fn close(shared: &Arc<Shared>, session: &PolicySession, mut thread: Thread, notify: Notify) {
    let Ok(_slot) = shared.slots.acquire().await else {
        return;
    };
    let id = &session.session_id;
    if let Notify::Yes { by } = notify {
        Box::pin(notify_closed(shared, session, &mut thread, by.map(|b| *b))).await;
    }
    quit_all(&mut thread, id).await;
}

/// The CC2 mail of a session the CPM side closed. Its From, Privacy and P-Asserted-Identity
/// rows come from the request that closed it (`by`, the BYE's identities, each where the
/// BYE has it): when they differ from the INVITE's, the address rows are mapped again, and
/// MAIL FROM follows the From row (AA1), so a BYE under Privacy: id keeps the envelope
/// anonymous too.
async fn notify_closed(
    shared: &Arc<Shared>,
    session: &PolicySession,
    thread: &mut Thread,
    by: Option<Identities>,
) {
    let id = &session.session_id;
    let facts = by.and_then(|by| by.update(session));
    let remap = facts.is_some();
    let facts = facts.unwrap_or_else(|| session.clone());
    let (policy, asked) = (shared.policy.clone(), facts.clone());
    let decided = blocking(move || {
        let kind = MailKind::SessionClosed;
        (
            policy.session_closed(&asked).value,
            policy.x_priority(&asked, kind).value,
            policy.deliver_by(&asked, kind).value,
            remap.then(|| decide(&policy, &asked, false)),
        )
    })
    .await;
    let Some((Some(notification), x_priority, deliver_by, remapped)) = decided else {
        return;
    };
    let closer = remapped.map(|d| addresses(&facts, &d));
    let (addresses, from) = match closer {
        Some(Ok(a)) => {
            let from = Some(a.from.addr.clone());
            let addresses = Addresses {
                from: a.from,
                sender: a.sender,
                ..thread.addresses.clone()
            };
            (addresses, from)
        }
        Some(Err(why)) => {
            tracing::info!(session = %id, %why, "the BYE's identity has no address: CC2 from the INVITE's");
            (thread.addresses.clone(), thread.from.clone())
        }
        None => (thread.addresses.clone(), thread.from.clone()),
    };
    let kind = Kind::Closed {
        parent: thread.last.as_ref(),
        body: &notification,
    };
    let drafted = generated_id(session).and_then(|message_id| {
        draft(
            &facts,
            &addresses,
            &kind,
            message_id,
            x_priority,
            Utc::now(),
        )
    });
    let draft = match drafted {
        Ok(draft) => draft,
        Err(e) => {
            tracing::warn!(session = %id, error = %e, "session-closed mail not built");
            return;
        }
    };
    let by = deliver_by.as_ref().and_then(DeliverBy::from_policy);
    let mail = compose(&draft);
    let closing = "session-closed mail";
    match send(shared, thread, from, by, &mail, id, closing).await {
        Ok(()) => tracing::info!(session = %id, "session-closed mail sent"),
        Err(failure) => {
            tracing::warn!(session = %id, %failure, "session-closed mail not sent")
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

/// F4 steps 2-3 (BB1, BB2): the chat mail of `message`, over the session's channel (opened
/// at the first mail of an F1 session); its outcome as F4 step 4's MSRP answer.
async fn chat_mail(
    shared: &Arc<Shared>,
    key: &SessionKey,
    session: &PolicySession,
    thread: &mut Option<Thread>,
    message: ChatMessage,
) -> Result<(), Refused> {
    let id = session.session_id.clone();
    let mails_sent = thread.as_ref().map_or(0, |t| t.chats);
    let (policy, facts, author) = (
        shared.policy.clone(),
        session.clone(),
        message.author.clone(),
    );
    let need_addresses = thread.is_none();
    let decided = blocking(move || {
        let kind = MailKind::Chat;
        let chat = ChatContext {
            mails_sent,
            participants: Vec::new(),
        };
        // BB2 From: the CPIM From, mapped; never with Privacy: id (the anonymous From stays).
        let author = author.filter(|_| !facts.privacy_id).and_then(|a| {
            let identity = Identity {
                uri: a.uri,
                display_name: a.display_name,
            };
            policy.cpm_to_email(&facts.gateway, &identity).value
        });
        ChatDecisions {
            addresses: need_addresses.then(|| decide(&policy, &facts, false)),
            author,
            additions: policy.body_additions(&facts, &chat).value,
            x_priority: policy.x_priority(&facts, kind).value,
            deliver_by: policy.deliver_by(&facts, kind).value,
        }
    })
    .await
    .ok_or_else(|| chat::unmapped("the chat mail could not be decided"))?;
    if let Some(decisions) = &decided.addresses {
        let addresses = addresses(session, decisions).map_err(|why| chat::unmapped(&why))?;
        let envelope = envelope(&addresses, None);
        let subject = session.subject.clone();
        *thread = Some(Thread::new(&shared.router, addresses, envelope, subject));
    }
    let Some(thread) = thread.as_mut() else {
        return Err(chat::unmapped("no mail state for the session"));
    };
    let author = decided
        .author
        .as_ref()
        .and_then(|m| Mailbox::new(m.display_name.as_deref(), &m.address).ok());
    let kind = Kind::Chat {
        message: &message,
        author: author.as_ref(),
        additions: &decided.additions,
        parent: thread.last.as_ref(),
        subject: thread.subject.as_deref(),
    };
    let bad_header = |e: HeaderError| chat::unmapped(&e.to_string());
    let taken = |id: &MsgId| shared.directory.knows(&bare(id));
    let message_id = chat_message_id(session, &message, taken).map_err(bad_header)?;
    let draft = draft(
        session,
        &thread.addresses,
        &kind,
        message_id.clone(),
        decided.x_priority,
        Utc::now(),
    )
    .map_err(bad_header)?;
    // BB1: the session's recipients, MAIL FROM the author's address in a 1-1 chat.
    let from = Some(draft.from.addr.clone());
    let by = decided.deliver_by.as_ref().and_then(DeliverBy::from_policy);
    match send(shared, thread, from, by, &compose(&draft), &id, "chat mail").await {
        Ok(()) => {
            tracing::info!(session = %id, message_id = %message_id, "chat message mailed");
            shared.directory.sent(key, &bare(&message_id));
            // BB2 From may be the author's address: the e-mail user answers that one.
            shared.directory.mails_from(key, draft.from.addr.as_str());
            thread.sent(message_id, draft.references);
            thread.chats += 1;
            Ok(())
        }
        Err(failure) => {
            tracing::info!(session = %id, %failure, "chat message not mailed");
            Err(chat::msrp_status(&failure))
        }
    }
}

/// The policy's answers for one chat mail, asked in one go on the blocking pool.
struct ChatDecisions {
    /// The session's addresses, at the first mail of an F1 session.
    addresses: Option<Decisions>,
    author: Option<world::Mailbox>,
    additions: Additions,
    x_priority: Option<u8>,
    deliver_by: Option<world::ByRequest>,
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
    use super::*;
    use crate::policy::testing;
    use crate::policy::world::{GroupInfo, Recipient};
    use mail_parser::{HeaderValue, MessageParser};

    fn session() -> PolicySession {
        PolicySession {
            from: Identity {
                uri: "sip:alice@ims.example.com".into(),
                display_name: Some("Alice".into()),
            },
            contribution_id: Some("c0ffee".into()),
            in_reply_to_contribution_id: Some("beef".into()),
            ..testing::session("mailto:bob@example.net")
        }
    }

    fn wmailbox(name: Option<&str>, address: &str) -> world::Mailbox {
        world::Mailbox {
            address: address.into(),
            display_name: name.map(str::to_owned),
        }
    }

    fn decisions() -> Decisions {
        Decisions {
            user: Some(wmailbox(Some("Alice"), "alice@mail.example.com")),
            anonymous: None,
            group: None,
            originator: None,
            reply_to: None,
            recipients: vec![],
            body: InvitationMail {
                subject: Some("Invitation to a chat".into()),
                body: "Reply ACCEPT or REJECT; LEAVE to leave.".into(),
            },
            x_priority: Some(1),
            deliver_by: None,
            expiry: 3600,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn text(raw: &[u8], name: &str) -> Option<String> {
        let msg = MessageParser::default().parse(raw).unwrap();
        msg.headers()
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case(name))
            .map(|h| match h.value() {
                HeaderValue::Text(t) => t.to_string(),
                HeaderValue::TextList(l) => l.join(" "),
                HeaderValue::Address(a) => a
                    .iter()
                    .map(|a| a.address().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                HeaderValue::DateTime(d) => d.to_rfc822(),
                other => format!("{other:?}"),
            })
    }

    #[test]
    fn aa2_rows_of_a_one_to_one_invitation() {
        let s = session();
        let a = addresses(&s, &decisions()).unwrap();
        let d = decisions();
        let kind = Kind::Invitation {
            cpim_date_time: None,
            sip_date: aa2::parse_sip_date("Thu, 26 Nov 2026 08:30:00 GMT"),
            body: &d.body,
        };
        let raw = compose(
            &draft(
                &s,
                &a,
                &kind,
                invitation_id(&s).unwrap(),
                d.x_priority,
                now(),
            )
            .unwrap(),
        );
        assert_eq!(text(&raw, "From").unwrap(), "alice@mail.example.com");
        assert_eq!(text(&raw, "To").unwrap(), "bob@example.net");
        assert_eq!(text(&raw, "Message-ID").unwrap(), "c0ffee@mail.example.com");
        assert_eq!(text(&raw, "In-Reply-To").unwrap(), "beef@mail.example.com");
        assert_eq!(text(&raw, "Subject").unwrap(), "Invitation to a chat");
        assert_eq!(text(&raw, "X-Priority").unwrap(), "1");
        assert!(
            String::from_utf8_lossy(&raw).contains("Date: Thu, 26 Nov 2026 08:30:00 +0000\r\n")
        );
        assert_eq!(text(&raw, "Auto-Submitted"), None);
        assert_eq!(text(&raw, "Sender"), None);
        let e = envelope(&a, None);
        assert_eq!(e.from.unwrap().as_str(), "alice@mail.example.com");
        assert_eq!(e.to.len(), 1);
        // AA2 Date row: the INVITE's CPIM DateTime comes before its SIP Date.
        let kind = Kind::Invitation {
            cpim_date_time: DateTime::parse_from_rfc3339("2026-11-26T09:15:00+01:00").ok(),
            sip_date: aa2::parse_sip_date("Thu, 26 Nov 2026 08:30:00 GMT"),
            body: &d.body,
        };
        let id = invitation_id(&s).unwrap();
        let raw = compose(&draft(&s, &a, &kind, id, None, now()).unwrap());
        assert!(
            String::from_utf8_lossy(&raw).contains("Date: Thu, 26 Nov 2026 09:15:00 +0100\r\n")
        );
    }

    #[test]
    fn aa2_privacy_id_makes_from_and_reply_to_anonymous() {
        let mut s = session();
        s.privacy_id = true;
        s.reply_to = Some(s.from.clone());
        let mut d = decisions();
        let anonymous = "anon-s1a2b3@mail.example.com";
        d.anonymous = Some(wmailbox(Some("Anonymous"), anonymous));
        d.reply_to = d.user.clone();
        let a = addresses(&s, &d).unwrap();
        assert_eq!(a.from.addr.as_str(), anonymous);
        assert_eq!(a.reply_to.unwrap().addr.as_str(), anonymous);
        // AA1: the envelope keeps the privacy, and stays routable.
        assert_eq!(
            envelope(&a_again(&s, &d), None).from.unwrap().as_str(),
            anonymous
        );
    }

    fn a_again(s: &PolicySession, d: &Decisions) -> Addresses {
        addresses(s, d).unwrap()
    }

    #[test]
    fn aa2_group_from_is_the_group_sender_the_originator_and_copy_control_splits() {
        let mut s = session();
        let r = |uri: &str, c| Recipient {
            uri: uri.into(),
            display_name: None,
            copy_control: c,
        };
        s.group = Some(GroupInfo {
            focus_uri: "sip:group@ims.example.com".into(),
            recipients: vec![
                r("mailto:bob@example.net", CopyControl::To),
                r("mailto:carol@example.net", CopyControl::Cc),
                r("mailto:dave@example.net", CopyControl::Bcc),
            ],
        });
        let mut d = decisions();
        d.group = Some(wmailbox(
            Some("Group chat"),
            "group-s1a2b3@mail.example.com",
        ));
        d.originator = d.user.clone();
        d.recipients = s
            .group
            .as_ref()
            .unwrap()
            .recipients
            .iter()
            .map(|r| {
                (
                    Some(wmailbox(None, mailto(&r.uri).unwrap())),
                    r.copy_control,
                )
            })
            .collect();
        let a = addresses(&s, &d).unwrap();
        assert_eq!(a.from.addr.as_str(), "group-s1a2b3@mail.example.com");
        assert_eq!(
            a.sender.as_ref().unwrap().addr.as_str(),
            "alice@mail.example.com"
        );
        assert_eq!(a.cc[0].addr.as_str(), "carol@example.net");
        let e = envelope(&a, None);
        assert_eq!(e.from.unwrap().as_str(), "group-s1a2b3@mail.example.com");
        assert_eq!(e.to.len(), 3, "Bcc in the envelope");
        let body = d.body.clone();
        let kind = Kind::Invitation {
            cpim_date_time: None,
            sip_date: None,
            body: &body,
        };
        let raw = compose(&draft(&s, &a, &kind, generated_id(&s).unwrap(), None, now()).unwrap());
        assert!(text(&raw, "Bcc").is_none());
        assert_eq!(text(&raw, "Sender").unwrap(), "alice@mail.example.com");
    }

    #[test]
    fn cc2_rows_thread_under_the_invitation_and_are_auto_generated() {
        let s = session();
        let a = addresses(&s, &decisions()).unwrap();
        let invitation = invitation_id(&s).unwrap();
        let notification = Notification {
            subject: Some("Chat closed".into()),
            body: "The chat is closed.".into(),
        };
        let parent = Parent {
            id: invitation,
            references: vec![],
        };
        let kind = Kind::Closed {
            parent: Some(&parent),
            body: &notification,
        };
        let raw = compose(&draft(&s, &a, &kind, generated_id(&s).unwrap(), None, now()).unwrap());
        assert_eq!(text(&raw, "Auto-Submitted").unwrap(), "auto-generated");
        assert_eq!(
            text(&raw, "In-Reply-To").unwrap(),
            "c0ffee@mail.example.com"
        );
        assert_eq!(text(&raw, "References").unwrap(), "c0ffee@mail.example.com");
        assert_eq!(text(&raw, "From").unwrap(), "alice@mail.example.com");
        assert_ne!(text(&raw, "Message-ID").unwrap(), "c0ffee@mail.example.com");
    }

    fn chat(author: Option<&str>) -> ChatMessage {
        ChatMessage {
            author: author.map(|uri| crate::cpim::Address::new(Some("Alice A."), uri)),
            date_time: Some(DateTime::parse_from_rfc3339("2026-11-26T09:15:00+01:00").unwrap()),
            text: "See you at 10?\r\nBcc: eve@evil.example".into(),
            contribution_id: None,
            in_reply_to_contribution_id: None,
        }
    }

    #[test]
    fn bb2_rows_of_a_chat_mail_threaded_under_the_last_mail() {
        let s = session();
        let a = addresses(&s, &decisions()).unwrap();
        let parent = Parent {
            id: MsgId::new("chat1", "mail.example.com").unwrap(),
            references: vec![invitation_id(&s).unwrap()],
        };
        let additions = Additions {
            before: None,
            after: Some("Reply LEAVE to leave the chat.".into()),
        };
        let message = chat(None);
        let kind = Kind::Chat {
            message: &message,
            author: None,
            additions: &additions,
            parent: Some(&parent),
            subject: Some("Lunch"),
        };
        let id = generated_id(&s).unwrap();
        let raw = compose(&draft(&s, &a, &kind, id.clone(), Some(5), now()).unwrap());
        let m = MessageParser::default().parse(&raw).unwrap();
        // BB2 From: no CPIM From -> the CPM user's e-mail address.
        assert_eq!(text(&raw, "From").unwrap(), "alice@mail.example.com");
        // BB2 Date: the CPIM DateTime.
        assert_eq!(m.date().unwrap().to_rfc3339(), "2026-11-26T09:15:00+01:00");
        // BB2 To: the Request-URI's address.
        assert_eq!(text(&raw, "To").unwrap(), "bob@example.net");
        // BB2 msg-id / In-Reply-To: a new id, under the previous mail, References the chain.
        assert_eq!(
            text(&raw, "Message-ID").unwrap(),
            id.to_string().trim_matches(['<', '>'])
        );
        assert_eq!(text(&raw, "In-Reply-To").unwrap(), "chat1@mail.example.com");
        let references = match m.header("References").unwrap() {
            HeaderValue::TextList(list) => list.join(" "),
            other => other.as_text().unwrap_or_default().to_owned(),
        };
        assert_eq!(references, "c0ffee@mail.example.com chat1@mail.example.com");
        // BB2 X-Priority: per the policy.
        assert_eq!(text(&raw, "X-Priority").unwrap(), "5");
        assert_eq!(text(&raw, "Subject").unwrap(), "Lunch");
        // BB2 body: the message, then the policy's additions; the CR/LF stays in the body.
        let body = m.body_text(0).unwrap();
        assert!(body.starts_with("See you at 10?"), "{body}");
        assert!(
            body.trim_end().ends_with("Reply LEAVE to leave the chat."),
            "{body}"
        );
        assert!(m.header("Bcc").is_none());
        assert!(m.header("Auto-Submitted").is_none());
        assert!(m.header("Reply-To").is_none());
    }

    /// BB2 msg-id and In-Reply-To rows from the message's Contribution-IDs; the References
    /// chain continues the session's thread in every case.
    #[test]
    fn bb2_ids_from_the_messages_contribution_ids_and_the_chain_kept() {
        let s = session();
        let a = addresses(&s, &decisions()).unwrap();
        let invitation = invitation_id(&s).unwrap();
        let parent = Parent {
            id: MsgId::new("chat1", "mail.example.com").unwrap(),
            references: vec![invitation.clone()],
        };
        let additions = Additions {
            before: None,
            after: None,
        };
        let message = ChatMessage {
            contribution_id: Some("m3".into()),
            in_reply_to_contribution_id: Some("m2".into()),
            ..chat(None)
        };
        let sent = [invitation.clone(), parent.id.clone()];
        let taken = |id: &MsgId| sent.contains(id);
        let id = chat_message_id(&s, &message, taken).unwrap();
        assert_eq!(id.to_string(), "<m3@mail.example.com>");
        let kind = Kind::Chat {
            message: &message,
            author: None,
            additions: &additions,
            parent: Some(&parent),
            subject: None,
        };
        let raw = compose(&draft(&s, &a, &kind, id, None, now()).unwrap());
        let m = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(m.message_id(), Some("m3@mail.example.com"));
        assert_eq!(text(&raw, "In-Reply-To").unwrap(), "m2@mail.example.com");
        let references = match m.header("References").unwrap() {
            HeaderValue::TextList(list) => list.join(" "),
            other => other.as_text().unwrap_or_default().to_owned(),
        };
        assert_eq!(
            references,
            "c0ffee@mail.example.com chat1@mail.example.com m2@mail.example.com"
        );
        // A Contribution-ID the thread already used (the session's own) gets a new id.
        let reused = ChatMessage {
            contribution_id: Some("c0ffee".into()),
            ..chat(None)
        };
        let id = chat_message_id(&s, &reused, taken).unwrap();
        assert_ne!(id, invitation);
        assert!(id.to_string().starts_with("<iwf."), "{id}");
    }

    #[test]
    fn bb2_from_is_the_cpim_author_in_1_1_and_the_sender_in_a_group() {
        let s = session();
        let a = addresses(&s, &decisions()).unwrap();
        let author = Mailbox::new(Some("Alice A."), "alice.a@mail.example.com").unwrap();
        let message = chat(Some("sip:alice@ims.example.com"));
        let additions = Additions {
            before: None,
            after: None,
        };
        let kind = Kind::Chat {
            message: &message,
            author: Some(&author),
            additions: &additions,
            parent: None,
            subject: None,
        };
        let raw = compose(&draft(&s, &a, &kind, generated_id(&s).unwrap(), None, now()).unwrap());
        assert_eq!(text(&raw, "From").unwrap(), "alice.a@mail.example.com");
        assert!(text(&raw, "Sender").is_none());
        assert!(text(&raw, "In-Reply-To").is_none());
        let group = Addresses {
            group: true,
            ..a.clone()
        };
        let raw =
            compose(&draft(&s, &group, &kind, generated_id(&s).unwrap(), None, now()).unwrap());
        assert_eq!(text(&raw, "From").unwrap(), "alice@mail.example.com");
        assert_eq!(text(&raw, "Sender").unwrap(), "alice.a@mail.example.com");
    }

    #[test]
    fn chat_body_joins_the_additions_as_paragraphs() {
        let additions = Additions {
            before: Some("Alice wrote:".into()),
            after: Some("".into()),
        };
        assert_eq!(chat_body("hi", &additions), "Alice wrote:\n\nhi");
    }

    #[test]
    fn a_request_uri_that_is_not_mailto_or_an_unmapped_user_is_an_error() {
        let mut s = session();
        s.request_uri = "tel:+15551234567".into();
        assert!(
            addresses(&s, &decisions())
                .unwrap_err()
                .contains("not a mailto")
        );
        let mut d = decisions();
        d.user = None;
        assert!(
            addresses(&session(), &d)
                .unwrap_err()
                .contains("no e-mail address")
        );
        assert_eq!(
            mailto("MAILTO:bob@x.example?subject=hi"),
            Some("bob@x.example")
        );
    }

    #[tokio::test]
    async fn an_invitation_past_its_deadline_is_a_temporary_failure_answered_480() {
        use crate::policy::PolicySource;
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
            directory,
            Arc::new(Registry::default()),
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
        let (done, outcome, _) = outcomes.recv().await.unwrap();
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

    #[test]
    fn aa3_warning_text_is_one_bounded_line_with_code_and_enhanced_code() {
        let failure = SmtpFailure {
            stage: Stage::RcptTo,
            code: 550,
            enhanced_code: Some("5.1.1".into()),
            text: format!("no such user\r\nX-Injected: 1 {}", "\u{e9}".repeat(200)),
            permanent: true,
        };
        let w = warning_text(&failure);
        assert!(
            w.starts_with("SMTP rcpt-to failure (permanent): 550 5.1.1: no such user  X-Injected"),
            "{w}"
        );
        assert!(!w.contains(['\r', '\n']));
        assert!(w.len() <= MAX_WARNING);
    }

    #[test]
    fn generated_message_ids_carry_the_session_token_and_differ() {
        let mut s = session();
        s.contribution_id = None;
        let (a, b) = (invitation_id(&s).unwrap(), invitation_id(&s).unwrap());
        assert_ne!(a, b);
        assert!(a.to_string().starts_with("<iwf.s1a2b3."), "{a}");
    }
}
