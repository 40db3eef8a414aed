//! The AA2, BB2 and CC2 tables row by row (5.2.4.2.4 to 5.2.4.2.6): from a session's facts
//! and the policy's answers to the draft of each mail, its addresses, Message-ID and
//! envelope (AA1, BB1, CC1). Pure: the mail task (`super`) asks the policy and sends.

use super::super::chat::ChatMessage;
use crate::mail::header::HeaderError;
use crate::mail::{AutoSubmitted, Draft, Mailbox, MsgId, XPriority, aa2};
use crate::policy::PolicyHost;
use crate::policy::world::{
    self, Additions, CopyControl, Identity, InvitationMail, MailKind, Notification,
    Session as PolicySession,
};
use crate::smtp::{DeliverBy, Envelope};
use chrono::{DateTime, FixedOffset, Utc};

/// The policy's answers an invitation needs, asked in one go on the blocking pool.
pub(super) struct Decisions {
    /// AA2 From: P-Asserted-Identity, else From, mapped (5.2.4.1).
    pub(super) user: Option<world::Mailbox>,
    /// Privacy: id.
    pub(super) anonymous: Option<world::Mailbox>,
    /// Step 2b: the group's address.
    pub(super) group: Option<world::Mailbox>,
    /// AA2 Sender (groups): Referred-By, else From, mapped.
    pub(super) originator: Option<world::Mailbox>,
    /// AA2 Reply-To: the SIP Reply-To, mapped.
    pub(super) reply_to: Option<world::Mailbox>,
    /// The group's URI-list, each entry mapped.
    pub(super) recipients: Vec<(Option<world::Mailbox>, CopyControl)>,
    pub(super) body: InvitationMail,
    pub(super) x_priority: Option<u8>,
    pub(super) deliver_by: Option<world::ByRequest>,
    /// F3: seconds to wait for the e-mail user's answer (invitation only).
    pub(super) expiry: u32,
}

/// The policy's answers for a session's addresses, and with `invitation` those of its
/// invitation mail too (an F1 session mails no invitation).
pub(super) fn decide(policy: &PolicyHost, session: &PolicySession, invitation: bool) -> Decisions {
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

/// The addresses of a session's mails, fixed by the invitation (stored with its thread).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Addresses {
    /// A group session (step 2b): mails are from the group's address.
    pub(super) group: bool,
    pub(super) from: Mailbox,
    pub(super) sender: Option<Mailbox>,
    pub(super) reply_to: Option<Mailbox>,
    pub(super) to: Vec<Mailbox>,
    pub(super) cc: Vec<Mailbox>,
    /// Envelope only (RFC 5366 copyControl bcc).
    pub(super) bcc: Vec<Mailbox>,
}

/// AA2 address rows (From, Reply-To, Sender, To/Cc/Bcc) from the facts and the policy's
/// mappings; `Err` names what cannot be mapped.
pub(super) fn addresses(session: &PolicySession, d: &Decisions) -> Result<Addresses, String> {
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
pub(super) fn mailto(uri: &str) -> Option<&str> {
    let rest = uri
        .get(..7)?
        .eq_ignore_ascii_case("mailto:")
        .then(|| &uri[7..])?;
    let address = rest.split('?').next()?.trim();
    (!address.is_empty()).then_some(address)
}

/// Which mail of the session, with what only that mail has.
pub(super) enum Kind<'a> {
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
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Parent {
    pub(super) id: MsgId,
    pub(super) references: Vec<MsgId>,
}

/// AA2, BB2 and CC2 row by row: the one mapping from a session's facts to the draft of
/// its mail.
pub(super) fn draft(
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
pub(super) fn thread_under(
    answered: Option<MsgId>,
    parent: Option<&Parent>,
) -> (Option<MsgId>, Vec<MsgId>) {
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
pub(super) fn chat_message_id(
    session: &PolicySession,
    message: &ChatMessage,
    nonce: &str,
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
        None => nonce_id(session, nonce),
    }
}

/// BB2 message body: the policy's text before, the message, the policy's text after
/// (leave instructions, participants), as paragraphs.
pub(super) fn chat_body(text: &str, additions: &Additions) -> String {
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
pub(super) fn invitation_id(session: &PolicySession) -> Result<MsgId, HeaderError> {
    let domain = &session.gateway.mail_domain;
    match &session.contribution_id {
        Some(id) => MsgId::from_contribution_id(id, domain),
        None => generated_id(session),
    }
}

pub(super) fn generated_id(session: &PolicySession) -> Result<MsgId, HeaderError> {
    nonce_id(session, &nonce())
}

/// 128 random bits in hex: the unguessable part of a generated Message-ID.
pub fn nonce() -> String {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).expect("OS randomness for a Message-ID");
    hex::encode(random)
}

/// The generated Message-ID with the random part `nonce`, chosen before (a spooled chat
/// message's, so that every attempt to mail it carries the same Message-ID).
fn nonce_id(session: &PolicySession, nonce: &str) -> Result<MsgId, HeaderError> {
    let left = format!("iwf.{}.{nonce}", session.session_id);
    MsgId::new(&left, &session.gateway.mail_domain)
}

/// AA1 envelope: MAIL FROM the address the From row shows (step 2a the user's, 2b the
/// group's; with Privacy: id the anonymous one, so the envelope keeps the privacy too);
/// RCPT TO every recipient, Bcc included; BY= as the policy asks.
pub(super) fn envelope(addresses: &Addresses, deliver_by: Option<&world::ByRequest>) -> Envelope {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::mail::compose;
    use crate::policy::testing;
    use crate::policy::world::{GroupInfo, Recipient};
    use mail_parser::{HeaderValue, MessageParser};

    pub(in crate::session::mailer) fn session() -> PolicySession {
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

    pub(in crate::session::mailer) fn decisions() -> Decisions {
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
        let id = chat_message_id(&s, &message, "00ff", taken).unwrap();
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
        // A Contribution-ID the thread already used (the session's own) gets the id
        // generated from the message's nonce (spooled with it: the same at every attempt).
        let reused = ChatMessage {
            contribution_id: Some("c0ffee".into()),
            ..chat(None)
        };
        let id = chat_message_id(&s, &reused, "00ff", taken).unwrap();
        assert_ne!(id, invitation);
        let expected = format!("<iwf.{}.00ff@mail.example.com>", s.session_id);
        assert_eq!(id.to_string(), expected);
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

    #[test]
    fn generated_message_ids_carry_the_session_token_and_differ() {
        let mut s = session();
        s.contribution_id = None;
        let (a, b) = (invitation_id(&s).unwrap(), invitation_id(&s).unwrap());
        assert_ne!(a, b);
        assert!(a.to_string().starts_with("<iwf.s1a2b3."), "{a}");
    }
}
