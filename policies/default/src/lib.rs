//! The `default` policy: faithful to OMA CPM 5.2.4.2.4-5.2.4.2.9.
//!
//! - asks the e-mail user (never accepts on their behalf);
//! - English keywords: ACCEPT / REJECT to answer, LEAVE to leave;
//! - texts that tell the e-mail user how to accept, reject and leave;
//! - one new e-mail address per group session;
//! - Priority -> X-Priority (non-urgent 5, normal 3, urgent 1);
//! - no `BY=`; 488 for SMTP failures (step 5b), 4xx for a 554 greeting (step 3);
//! - a notification when the CPM side ends the session.

use policy_sdk::address::{is_addr_spec, mailto_address, scheme, to_local_part, user_part};
use policy_sdk::decisions::*;
use policy_sdk::keywords::{answer_starts_with, is_only};

pub struct DefaultPolicy;

const ACCEPT: &[&str] = &["accept", "yes", "join"];
const REJECT: &[&str] = &["reject", "decline", "no"];
const LEAVE: &[&str] = &["leave", "quit", "unsubscribe"];

/// Default answer window: one day.
const EXPIRY_SECONDS: u32 = 24 * 60 * 60;

impl Guest for DefaultPolicy {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "default".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn on_invite(_session: Session) -> InviteDecision {
        InviteDecision::AskUser
    }

    /// tel:+1555 -> `+1555@<mail-domain>`; sip:alice@<sip-domain> -> `alice@<mail-domain>`;
    /// sip:alice@other.example -> `alice=other.example@<mail-domain>`: reversible by
    /// `email_to_cpm`, so replies reach the right CPM user.
    fn cpm_to_email(gateway: Gateway, cpm: Identity) -> Option<Mailbox> {
        let local = match scheme(&cpm.uri)?.as_str() {
            "mailto" => {
                let address = mailto_address(&cpm.uri)?;
                return Some(Mailbox {
                    address,
                    display_name: cpm.display_name,
                });
            }
            "tel" => user_part(&cpm.uri)?,
            "sip" | "sips" => {
                let user = user_part(&cpm.uri)?;
                let host = sip_host(&cpm.uri)?;
                if host.eq_ignore_ascii_case(&gateway.sip_domain) {
                    user
                } else {
                    format!("{user}={host}")
                }
            }
            _ => return None,
        };
        let address = format!("{}@{}", to_local_part(&local), gateway.mail_domain);
        is_addr_spec(&address).then_some(Mailbox {
            address,
            display_name: cpm.display_name,
        })
    }

    fn email_to_cpm(gateway: Gateway, email: Mailbox) -> Option<String> {
        let (local, domain) = email.address.rsplit_once('@')?;
        if !domain.eq_ignore_ascii_case(&gateway.mail_domain) || local.is_empty() {
            return None;
        }
        if let Some(digits) = local.strip_prefix('+')
            && !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
        {
            return Some(format!("tel:{local}"));
        }
        Some(match local.split_once('=') {
            Some((user, host)) if !user.is_empty() && !host.is_empty() => {
                format!("sip:{user}@{host}")
            }
            _ => format!("sip:{local}@{}", gateway.sip_domain),
        })
    }

    fn group_address(session: Session) -> Mailbox {
        Mailbox {
            address: format!(
                "group-{}@{}",
                to_local_part(&session.session_id),
                session.gateway.mail_domain
            ),
            display_name: Some(match &session.subject {
                Some(subject) => format!("{subject} (group chat)"),
                None => "Group chat".into(),
            }),
        }
    }

    fn invitation_body(session: Session) -> InvitationMail {
        let inviter = inviter_name(&session);
        let mut body = match &session.group {
            Some(group) => {
                let mut text = format!("{inviter} invites you to a group chat.\n");
                if let Some(subject) = &session.subject {
                    text.push_str(&format!("Topic: {subject}\n"));
                }
                if !group.recipients.is_empty() {
                    text.push_str("\nInvited:\n");
                    for r in &group.recipients {
                        text.push_str(&format!("  {}\n", display(&r.display_name, &r.uri)));
                    }
                }
                text
            }
            None => format!("{inviter} invites you to a chat.\n"),
        };
        body.push_str(
            "\nTo join, reply to this e-mail with the word ACCEPT.\n\
             To decline, reply with the word REJECT.\n\
             Once you have joined, every reply is sent to the chat; \
             reply with the word LEAVE to leave it.\n",
        );
        InvitationMail {
            subject: Some(format!("{inviter} invites you to a chat")),
            body,
        }
    }

    fn interpret_reply(_session: Session, reply: Reply) -> ReplyAction {
        match reply.phase {
            SessionPhase::AwaitingAnswer => {
                if answer_starts_with(&reply.text, ACCEPT, 1) {
                    ReplyAction::Accept
                } else if answer_starts_with(&reply.text, REJECT, 1)
                    || answer_starts_with(&reply.text, LEAVE, 1)
                {
                    ReplyAction::Reject
                } else {
                    ReplyAction::Ignore("no ACCEPT or REJECT in the answer to an invitation".into())
                }
            }
            // Only a reply that says nothing but the keyword leaves: "leave it to me" is chat.
            SessionPhase::Live if is_only(&reply.text, LEAVE) => ReplyAction::Leave,
            SessionPhase::Live => ReplyAction::Chat(reply.text),
        }
    }

    fn invitation_expiry(_session: Session) -> u32 {
        EXPIRY_SECONDS
    }

    fn deliver_by(_session: Session, _kind: MailKind) -> Option<ByRequest> {
        None
    }

    fn smtp_failure_status(_session: Session, failure: SmtpFailure) -> SipStatus {
        let (code, reason) = match failure.stage {
            SmtpStage::Dns if failure.permanent => (404, "Not Found"),
            SmtpStage::Dns | SmtpStage::Connect => (480, "Temporarily Unavailable"),
            // 5.2.4.2.4 step 3: a 554 greeting -> SIP 4xx.
            SmtpStage::Greeting => (480, "Temporarily Unavailable"),
            // Step 5b: 4yz and 5yz -> 488.
            _ => (488, "Not Acceptable Here"),
        };
        SipStatus {
            code,
            reason: reason.into(),
        }
    }

    fn x_priority(session: Session, _kind: MailKind) -> Option<u8> {
        // AA2 X-Priority row: 5 = non-urgent, 3 = normal, 1 = urgent.
        session.priority.map(|p| match p {
            Priority::NonUrgent => 5,
            Priority::Normal => 3,
            Priority::Urgent | Priority::Emergency => 1,
        })
    }

    fn body_additions(_session: Session, chat: ChatContext) -> Additions {
        let mut after = String::from(
            "--\nReply to this e-mail to answer in the chat; reply LEAVE to leave it.\n",
        );
        if !chat.participants.is_empty() {
            after.push_str("Participants: ");
            let names: Vec<String> = chat
                .participants
                .iter()
                .map(|p| display(&p.display_name, &p.uri))
                .collect();
            after.push_str(&names.join(", "));
            after.push('\n');
        }
        Additions {
            before: None,
            after: Some(after),
        }
    }

    fn session_closed(session: Session) -> Option<Notification> {
        Some(Notification {
            subject: Some("Chat ended".into()),
            body: format!(
                "{} ended the chat. Replies to this e-mail are no longer delivered.\n",
                inviter_name(&session)
            ),
        })
    }

    fn participant_info_frequency(_session: Session) -> ParticipantFrequency {
        ParticipantFrequency::EveryChange
    }

    fn participant_info_text(
        _session: Session,
        participants: Vec<Participant>,
    ) -> Option<Notification> {
        if participants.is_empty() {
            return None;
        }
        let mut body = String::from("Participants of the chat:\n");
        for p in &participants {
            body.push_str(&format!(
                "  {} ({})\n",
                display(&p.identity.display_name, &p.identity.uri),
                p.status
            ));
        }
        Some(Notification {
            subject: Some("Chat participants".into()),
            body,
        })
    }

    fn msrp_reports(_session: Session) -> ReportFlags {
        // RFC 4975 defaults: no Success-Report, Failure-Report yes.
        ReportFlags {
            success_report: false,
            failure_report: FailureReport::Yes,
        }
    }

    fn anonymous_identity(session: Session) -> Mailbox {
        // RFC 3323 4.1.1.3 hides who is calling, "Anonymous" as display name; but the
        // address must stay answerable (not `anonymous.invalid`): one per session at the
        // gateway's mail domain, from the random session id, so it names nobody.
        Mailbox {
            address: format!(
                "anon-{}@{}",
                to_local_part(&session.session_id),
                session.gateway.mail_domain
            ),
            display_name: Some("Anonymous".into()),
        }
    }
}

/// How the invitation names the inviter: nobody is named under Privacy: id.
fn inviter_name(session: &Session) -> String {
    if session.privacy_id {
        return "Someone".into();
    }
    let id = session.asserted_identity.as_ref().unwrap_or(&session.from);
    display(&id.display_name, &id.uri)
}

fn display(name: &Option<String>, uri: &str) -> String {
    match name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => user_part(uri).unwrap_or_else(|| uri.to_string()),
    }
}

fn sip_host(uri: &str) -> Option<String> {
    let after_at = uri.trim().trim_end_matches('>').split_once('@')?.1;
    let host = after_at.split([';', '?', ':']).next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

// Exported only when built as the component: the world's export names (`cpm:iwf-policy/...`)
// are not symbols a native linker takes, and the native build is for the unit tests.
#[cfg(all(target_arch = "wasm32", not(feature = "library")))]
policy_sdk::export_policy!(DefaultPolicy with_types_in policy_sdk::bindings);

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> Gateway {
        Gateway {
            sip_domain: "iwf.example.com".into(),
            mail_domain: "mail.example.com".into(),
        }
    }

    fn id(uri: &str) -> Identity {
        Identity {
            uri: uri.into(),
            display_name: None,
        }
    }

    #[test]
    fn address_mapping_round_trips() {
        for uri in [
            "tel:+15551234567",
            "sip:alice@iwf.example.com",
            "sip:bob@ims.other.net",
        ] {
            let mailbox = DefaultPolicy::cpm_to_email(gateway(), id(uri)).unwrap();
            assert!(is_addr_spec(&mailbox.address), "{}", mailbox.address);
            assert_eq!(
                DefaultPolicy::email_to_cpm(gateway(), mailbox).as_deref(),
                Some(uri)
            );
        }
    }

    #[test]
    fn foreign_domains_do_not_map_back() {
        let mailbox = Mailbox {
            address: "alice@elsewhere.org".into(),
            display_name: None,
        };
        assert_eq!(DefaultPolicy::email_to_cpm(gateway(), mailbox), None);
    }
}
