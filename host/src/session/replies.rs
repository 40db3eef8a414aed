//! E-mail from the e-mail user (F3 5.2.4.2.4, F5 5.2.4.2.8, F8 5.2.4.2.9): the inbound
//! SMTP server's [`Delivery`]. A mail is parsed and classified (`mail::inbound`), its
//! session found ([`Directory`]) and its sender checked, the policy interprets the cleaned
//! reply, and the action is carried out before the SMTP reply is given:
//! - accept -> the session goes live (its MSRP side was opened with the 200 OK);
//! - reject, leave -> BYE towards the CPM user;
//! - chat -> the MSRP SEND(s) of Table EE1, committed to the inbound spool before the 250
//!   and delivered from there (`deliver`);
//! - ignore -> nothing (a log line).
//!
//! Auto-replies, reports and bounces never become chat (mail loops); a bounce of the
//! session's mail ends it. Nothing is silently dropped: a mail that cannot be delivered
//! is refused with a text that says why, while the sender's SMTP transaction is open.

use super::core::SessionKey;
use super::deliver::{self, Deliveries};
use super::directory::{Directory, Entry};
use super::registry::{Protocol, Registry};
use super::stats::SessionStats;
use crate::cpim;
use crate::mail::inbound::{self, Attachment, InboundMail, Kind};
use crate::msrp::transaction::accepts;
use crate::msrp::{FailureReport, MsrpSession};
use crate::policy::world::{self, Reply, ReplyAction, SessionPhase};
use crate::policy::{Decision, PolicyHost};
use crate::smtp::inbound::{Delivery, EnvelopeSoFar, ReceivedMail, Verdict};
use crate::store::{MailPart, SpooledMail, Store};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// The sessions' MSRP sides, by session: the gateway opens and closes them, F5 sends on
/// them.
pub type ChatSessions = Arc<Mutex<HashMap<SessionKey, Chat>>>;

/// One session's MSRP side and what its peer takes (from the SDP negotiation).
#[derive(Clone)]
pub struct Chat {
    pub session: MsrpSession,
    /// Both ends take message/cpim: the IWF wraps what it sends (CPM's form); else it
    /// sends text/plain as is.
    pub cpim: bool,
    /// The peer's `a=accept-wrapped-types`: attachments of these types are carried.
    pub wrapped_types: Vec<String>,
}

/// What the e-mail user's mail asks of the session core (the SIP side).
#[derive(Debug)]
pub enum UserEvent {
    /// Where the e-mail user stands in the session; `None` when it is not established.
    Phase {
        key: SessionKey,
        reply: oneshot::Sender<Option<SessionPhase>>,
    },
    /// F3: accepted: the session goes live; `done` says whether it was awaiting that.
    Accepted {
        key: SessionKey,
        done: oneshot::Sender<bool>,
    },
    /// F3 reject, F8 leave, a bounce: BYE towards the CPM user with `cause` and `text`
    /// as its Reason (RFC 3326).
    End {
        key: SessionKey,
        cause: u16,
        text: String,
    },
}

impl UserEvent {
    /// The session it is for.
    pub fn key(&self) -> &SessionKey {
        match self {
            UserEvent::Phase { key, .. }
            | UserEvent::Accepted { key, .. }
            | UserEvent::End { key, .. } => key,
        }
    }
}

/// The inbound side of every session.
pub struct Replies {
    directory: Arc<Directory>,
    policy: Arc<PolicyHost>,
    chats: ChatSessions,
    core: mpsc::UnboundedSender<UserEvent>,
    stats: Arc<SessionStats>,
    /// The sessions' ladders: each reply, its interpretation and its MSRP SENDs.
    registry: Arc<Registry>,
    /// F5's inbound spool, and its delivery.
    store: Arc<Store>,
    deliveries: Deliveries,
}

impl Replies {
    pub fn new(
        directory: Arc<Directory>,
        policy: Arc<PolicyHost>,
        chats: ChatSessions,
        core: mpsc::UnboundedSender<UserEvent>,
        (stats, registry): (Arc<SessionStats>, Arc<Registry>),
        (store, deliveries): (Arc<Store>, Deliveries),
    ) -> Self {
        Self {
            directory,
            policy,
            chats,
            core,
            stats,
            registry,
            store,
            deliveries,
        }
    }

    async fn phase(&self, key: &SessionKey) -> Option<SessionPhase> {
        deliver::phase(&self.core, key).await
    }

    fn end(&self, key: &SessionKey, cause: u16, text: &str) {
        let key = key.clone();
        let text = text.to_owned();
        let _ = self.core.send(UserEvent::End { key, cause, text });
    }

    /// A bounce or report of a mail the IWF sent: ends the session it belongs to.
    fn bounced(&self, original: &[String], status: Option<&str>) -> Verdict {
        let ids: Vec<&str> = original.iter().map(String::as_str).collect();
        match self.directory.find(&ids, &[], "") {
            Some(entry) => {
                let status = status.unwrap_or("unknown status");
                tracing::info!(session = %entry.key, %status, "a mail of the session bounced: ending it");
                let text = format!("the e-mail to the e-mail user bounced ({status})");
                self.end(&entry.key, 480, &text);
                Verdict::accepted("bounce taken: the chat session is ended")
            }
            None => {
                tracing::info!(?original, "a bounce for no live session: dropped");
                Verdict::accepted("bounce taken: no live session")
            }
        }
    }

    /// F5 (EE1): the text as a CPIM message for the session's MSRP side, then each
    /// attachment the peer takes inside CPIM as a message of its own; the others are named
    /// in the text. Committed to the inbound spool, then answered 250 (issue 15).
    async fn chat(
        &self,
        (entry, phase): (&Entry, SessionPhase),
        (received, mail): (&ReceivedMail, &InboundMail),
        sender: &str,
        text: String,
    ) -> Verdict {
        let Some(chat) = self.chats_of(&entry.key) else {
            // Live without a connection: the IWF is re-establishing it (a re-INVITE after
            // a restart); the sender's server tries again in a while.
            return match phase {
                SessionPhase::Live => Verdict::try_later(
                    "the chat connection is being re-established: try again later",
                ),
                SessionPhase::AwaitingAnswer => Verdict::new(
                    550,
                    Some("5.7.0"),
                    "the chat session has no MSRP connection: message not delivered",
                ),
            };
        };
        let session = &entry.facts.session;
        // A mail its sender sends again (no 250 reached it) is not delivered twice: the
        // same Message-ID in the same session (kept across restarts by the spool's record).
        let mail_id = match mail.message_id.as_deref() {
            Some(id) => id.to_owned(),
            None => format!("{}@iwf.invalid", super::mailer::nonce()),
        };
        if !self.directory.claim_mail(&entry.key, &mail_id) {
            tracing::info!(session = %entry.key, message_id = %mail_id, "mail taken before: not delivered again");
            return Verdict::accepted("already taken for the chat");
        }
        let spooled = self
            .spooled(entry, (received, mail), &chat, sender, text, &mail_id)
            .await;
        match self.store.spool_mail(spooled.clone()).await {
            Ok(()) => {
                self.registry.record(
                    &session.session_id,
                    Protocol::Smtp,
                    "mail spooled for the chat: 250",
                );
                self.deliveries.push(&entry.key, spooled);
                Verdict::accepted("queued for the chat")
            }
            Err(e) => {
                tracing::error!(session = %entry.key, error = %e, "chat mail not spooled");
                self.directory.release_mail(&entry.key, &mail_id);
                Verdict::try_later("the message could not be stored: try again later")
            }
        }
    }

    /// The spool's record of `mail`: its MSRP SENDs as EE1 maps them, the reports the
    /// policy asks for, and what a bounce needs.
    async fn spooled(
        &self,
        entry: &Entry,
        (received, mail): (&ReceivedMail, &InboundMail),
        chat: &Chat,
        sender: &str,
        text: String,
        mail_id: &str,
    ) -> SpooledMail {
        let session = &entry.facts.session;
        let (carried, described): (Vec<_>, Vec<_>) = mail
            .attachments
            .iter()
            .filter(|a| !a.inline)
            .partition(|a| chat.cpim && accepts(&chat.wrapped_types, &a.content_type));
        let text = with_attachments(text, &described);
        // EE1 DateTime: the e-mail's Date, else now.
        let date = mail.date.unwrap_or_else(|| Utc::now().fixed_offset());
        let name = mail.from.as_ref().and_then(|f| f.name.as_deref());
        // One trip to the blocking pool for the policy's two answers: EE1 From (the
        // e-mail user's CPM identity, `email-to-cpm`) and the MSRP reports to ask for.
        let email = world::Mailbox {
            address: sender.to_owned(),
            display_name: name.map(str::to_owned),
        };
        let (policy, facts) = (self.policy.clone(), session.clone());
        let (identity, reports) = tokio::task::spawn_blocking(move || {
            let identity = policy.email_to_cpm(&facts.gateway, &email).value;
            let r = policy.msrp_reports(&facts).value;
            (
                identity,
                (r.success_report, failure_report(r.failure_report)),
            )
        })
        .await
        .unwrap_or((None, (false, FailureReport::Yes)));
        // EE1 From: the URI the policy maps the sender to (validated: sip, sips or tel),
        // else the sender's mailto URI.
        let uri = identity.unwrap_or_else(|| format!("mailto:{sender}"));
        let from = cpim::Address::new(name, &uri);
        let user = session.asserted_identity.as_ref().unwrap_or(&session.from);
        let to = cpim::Address::new(user.display_name.as_deref(), &user.uri);
        let wrap = |content_type: &str, body: &[u8]| {
            let mut message = cpim::Message::text(from.clone(), to.clone(), "");
            message.date_time = Some(date);
            message.content_type = content_type.to_owned();
            message.body = body.to_vec();
            message.to_bytes()
        };
        let mut parts = vec![match chat.cpim {
            true => (
                "message/cpim".to_owned(),
                wrap("text/plain; charset=utf-8", text.as_bytes()),
            ),
            false => ("text/plain; charset=utf-8".to_owned(), text.into_bytes()),
        }];
        for a in carried {
            parts.push(("message/cpim".to_owned(), wrap(&a.content_type, &a.bytes)));
        }
        let parts = parts
            .into_iter()
            .enumerate()
            .map(|(n, (content_type, body))| MailPart {
                msrp_message_id: msrp_message_id(&session.session_id, Some(mail_id), n),
                content_type,
                body,
            })
            .collect();
        SpooledMail {
            session_id: session.session_id.clone(),
            mail_id: mail_id.to_owned(),
            seq: deliver::next_seq(),
            parts,
            success_report: reports.0,
            failure_report: reports.1.as_str().to_owned(),
            return_path: received.mail_from.clone(),
            recipient: received.rcpt_to.first().cloned().unwrap_or_default(),
            subject: mail.subject.clone(),
            give_up_at: self.deliveries.give_up_at(),
        }
    }

    fn chats_of(&self, key: &SessionKey) -> Option<Chat> {
        self.chats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }
}

impl Delivery for Replies {
    async fn recipient(&self, _envelope: &EnvelopeSoFar, rcpt: &str) -> Verdict {
        if self.directory.serves(rcpt) {
            Verdict::recipient_ok()
        } else {
            Verdict::no_such_recipient(format!("<{rcpt}>: no live chat session at this address"))
        }
    }

    async fn deliver(&self, received: ReceivedMail) -> Verdict {
        let verdict = self.take(received).await;
        self.stats.inbound(verdict.is_positive());
        verdict
    }
}

impl Replies {
    /// The mail, parsed, classified, correlated, checked and acted upon: its verdict.
    async fn take(&self, received: ReceivedMail) -> Verdict {
        let mail = match inbound::parse(&received.data) {
            Ok(mail) => mail,
            Err(e) => {
                return Verdict::new(554, Some("5.6.0"), format!("unreadable message: {e}"));
            }
        };
        // Mail loops (RFC 3834): only a person's mail may become chat or an answer.
        match mail.kind(received.mail_from.is_none()) {
            Kind::Personal => {}
            Kind::Bounce {
                original_message_ids,
                status,
                ..
            } => return self.bounced(&original_message_ids, status.as_deref()),
            kind => {
                tracing::info!(?kind, from = ?mail.from, "automatic mail: not a chat message");
                return Verdict::accepted("automatic mail taken: it is not a chat message");
            }
        }
        let Some(sender) = mail.from.as_ref().map(|f| f.address.to_ascii_lowercase()) else {
            return Verdict::new(550, Some("5.1.7"), "the message has no From address");
        };
        let referenced = mail.referenced_ids();
        let Some(found) = self.directory.find(&referenced, &received.rcpt_to, &sender) else {
            return Verdict::no_such_recipient(
                "no live chat session for this message: the chat may have ended",
            );
        };
        // Nobody injects into a chat by knowing its thread: the sender must be its user.
        if !found.is_user(&sender) {
            tracing::warn!(session = %found.key, %sender, peer = %received.peer, "mail from someone who is not the session's e-mail user refused");
            return Verdict::not_authorized(
                "the sender is not the e-mail user of this chat session",
            );
        }
        // The phase brings a parked session back into memory (issue 15), facts and all.
        let (Some(phase), Some(entry)) = (
            self.phase(&found.key).await,
            self.directory.session(&found.key),
        ) else {
            return Verdict::no_such_recipient("the chat session has ended");
        };
        let id = &entry.facts.session.session_id;
        self.registry
            .record(id, Protocol::Smtp, "mail from the e-mail user received");
        let reply = Reply {
            phase,
            sender: world::Mailbox {
                address: sender.clone(),
                display_name: mail.from.as_ref().and_then(|f| f.name.clone()),
            },
            subject: mail.subject.clone(),
            text: mail.reply.text.clone(),
            headers: policy_headers(&mail),
        };
        let (policy, facts) = (self.policy.clone(), entry.facts.session.clone());
        let Ok(decided) =
            tokio::task::spawn_blocking(move || policy.interpret_reply(&facts, &reply)).await
        else {
            return Verdict::try_later("the reply could not be interpreted");
        };
        let answer = reply_answer(&decided.value);
        self.registry
            .decided(id, Decision::InterpretReply, answer, &decided.by);
        let action = decided.value;
        let key = &entry.key;
        match action {
            ReplyAction::Accept => {
                let (done, accepted) = oneshot::channel();
                let _ = self.core.send(UserEvent::Accepted {
                    key: key.clone(),
                    done,
                });
                // Answered once the session is stored live; unanswered: not stored.
                match accepted.await {
                    Ok(true) => Verdict::accepted("accepted: the chat session is live"),
                    Ok(false) => Verdict::accepted("the chat session was already live"),
                    Err(_) => Verdict::try_later("the accept could not be stored"),
                }
            }
            ReplyAction::Reject => {
                self.end(key, 603, "the e-mail user declined the invitation");
                Verdict::accepted("declined: the chat session is ended")
            }
            ReplyAction::Leave => {
                self.end(key, 200, "the e-mail user left the chat");
                Verdict::accepted("you left the chat session")
            }
            ReplyAction::Chat(text) => {
                self.chat((&entry, phase), (&received, &mail), &sender, text)
                    .await
            }
            ReplyAction::Ignore(why) => {
                tracing::info!(session = %key, %why, "reply ignored by the policy");
                Verdict::accepted(format!("taken, nothing to do: {why}"))
            }
        }
    }
}

/// The MSRP Message-ID of part `n` of the mail `mail_id` in session `session_id`: the same
/// for the same mail sent again (a peer sees the duplicate), random without a Message-ID.
/// 24 hex digits: an RFC 4975 ident (at most 32 characters).
fn msrp_message_id(session_id: &str, mail_id: Option<&str>, n: usize) -> String {
    use sha2::Digest;
    match mail_id {
        Some(mail_id) => {
            let mut hash = sha2::Sha256::new();
            for part in [session_id.as_bytes(), mail_id.as_bytes(), &n.to_be_bytes()] {
                hash.update((part.len() as u64).to_be_bytes());
                hash.update(part);
            }
            hex::encode(&hash.finalize()[..12])
        }
        None => crate::msrp::TransactId::random().as_str().to_string(),
    }
}

/// The interpret-reply answer as the ladder shows it (the chat text stays out of it).
fn reply_answer(action: &ReplyAction) -> &'static str {
    match action {
        ReplyAction::Accept => "accept",
        ReplyAction::Reject => "reject",
        ReplyAction::Leave => "leave",
        ReplyAction::Chat(_) => "chat",
        ReplyAction::Ignore(_) => "ignore",
    }
}

/// The header fields the policy sees with a reply (WIT `reply.headers`), decoded.
fn policy_headers(mail: &InboundMail) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    if let Some(id) = &mail.message_id {
        headers.push(("Message-ID".into(), id.clone()));
    }
    for id in &mail.in_reply_to {
        headers.push(("In-Reply-To".into(), id.clone()));
    }
    if let Some(date) = mail.date {
        headers.push(("Date".into(), date.to_rfc2822()));
    }
    headers.push(("Content-Type".into(), mail.content_type.clone()));
    // Cleaning would have left nothing, so the text is the whole body, quotes included:
    // a policy looking for keywords should know.
    if mail.reply.fell_back {
        headers.push(("X-IWF-Uncleaned".into(), "yes".into()));
    }
    headers
}

/// Attachments the peer does not take are named in the text, so the CPM user knows
/// something was sent.
fn with_attachments(mut text: String, attachments: &[&Attachment]) -> String {
    for a in attachments {
        let name = a.file_name.as_deref().unwrap_or("unnamed");
        text.push_str(&format!(
            "\n[attachment not carried: {name} ({}, {} bytes)]",
            a.content_type, a.size
        ));
    }
    text
}

fn failure_report(f: world::FailureReport) -> FailureReport {
    match f {
        world::FailureReport::Yes => FailureReport::Yes,
        world::FailureReport::No => FailureReport::No,
        world::FailureReport::Partial => FailureReport::Partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_sent_again_gets_the_msrp_message_ids_of_its_first_delivery() {
        let first = msrp_message_id("s1", Some("m@example.net"), 0);
        assert_eq!(first, msrp_message_id("s1", Some("m@example.net"), 0));
        assert_eq!(first.len(), 24);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        for other in [
            msrp_message_id("s1", Some("m@example.net"), 1),
            msrp_message_id("s2", Some("m@example.net"), 0),
            msrp_message_id("s1", Some("n@example.net"), 0),
            msrp_message_id("s1", None, 0),
        ] {
            assert_ne!(first, other);
        }
    }

    #[test]
    fn attachments_not_carried_are_named_in_the_chat_text() {
        let attachments = [
            Attachment {
                file_name: Some("menu.pdf".into()),
                content_type: "application/pdf".into(),
                size: 1234,
                bytes: vec![],
                inline: false,
            },
            Attachment {
                file_name: Some("logo.png".into()),
                content_type: "image/png".into(),
                size: 99,
                bytes: vec![],
                inline: true,
            },
        ];
        let described: Vec<&Attachment> = attachments.iter().filter(|a| !a.inline).collect();
        let text = with_attachments("See the menu".into(), &described);
        assert_eq!(
            text,
            "See the menu\n[attachment not carried: menu.pdf (application/pdf, 1234 bytes)]"
        );
    }

    #[test]
    fn the_policy_sees_whether_cleaning_fell_back() {
        let mut mail = InboundMail {
            message_id: Some("r1@example.net".into()),
            in_reply_to: vec!["i1@mail.iwf.test".into()],
            content_type: "text/plain".into(),
            ..InboundMail::default()
        };
        let names = |m: &InboundMail| -> Vec<String> {
            policy_headers(m).into_iter().map(|(n, _)| n).collect()
        };
        assert_eq!(names(&mail), ["Message-ID", "In-Reply-To", "Content-Type"]);
        mail.reply.fell_back = true;
        assert!(names(&mail).contains(&"X-IWF-Uncleaned".to_owned()));
    }
}
