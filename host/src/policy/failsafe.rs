//! The documented fail-safe answers: what the gateway does when the policy cannot answer a
//! decision (trap, timeout, out of memory, out-of-range answer). They are not a policy of
//! the host's own: each is the answer that consents to nothing on the e-mail user's behalf,
//! sends nothing the spec does not require, and loses nothing already entrusted to the IWF.
//! README.md ("Fail-safes") lists the same table for operators.

use super::world::*;
use policy_sdk::address::{to_local_part, user_part};

/// Never accept on the user's behalf: ask them (5.2.4.2.4, the branch that needs consent).
pub fn on_invite() -> InviteDecision {
    InviteDecision::AskUser
}

/// The URI's user part as the local part at the gateway's mail domain (`tel:+1555` ->
/// `+1555@<mail-domain>`); none when the URI has no user part.
pub fn cpm_to_email(gateway: &Gateway, cpm: &Identity) -> Option<Mailbox> {
    let local = to_local_part(&user_part(&cpm.uri)?);
    (!local.is_empty()).then(|| Mailbox {
        address: format!("{local}@{}", gateway.mail_domain),
        display_name: cpm.display_name.clone(),
    })
}

/// No mapping: mail to the address is refused, nothing is delivered to a guessed user.
pub fn email_to_cpm() -> Option<String> {
    None
}

/// `group-<session-id>@<mail-domain>`.
pub fn group_address(session: &Session) -> Mailbox {
    Mailbox {
        address: format!(
            "group-{}@{}",
            to_local_part(&session.session_id),
            session.gateway.mail_domain
        ),
        display_name: Some("Group chat".into()),
    }
}

/// A plain English invitation with the accept/reject/leave instructions.
pub fn invitation_body() -> InvitationMail {
    InvitationMail {
        subject: Some("Invitation to a chat".into()),
        body: "You are invited to a chat.\n\n\
               To join, reply to this e-mail with the word ACCEPT.\n\
               To decline, reply with the word REJECT.\n\
               Once you have joined, reply with the word LEAVE to leave the chat.\n"
            .into(),
    }
}

/// While the invitation is open, an unreadable answer is no answer (ignored, logged);
/// in a live session the text is delivered as chat, so nothing the user wrote is lost.
pub fn interpret_reply(reply: &Reply) -> ReplyAction {
    match reply.phase {
        SessionPhase::AwaitingAnswer => {
            ReplyAction::Ignore("policy failed: answer not interpreted".into())
        }
        SessionPhase::Live => ReplyAction::Chat(reply.text.clone()),
    }
}

/// One hour.
pub fn invitation_expiry() -> u32 {
    3600
}

/// No `BY=`.
pub fn deliver_by() -> Option<ByRequest> {
    None
}

/// AA3 with 5.2.4.2.4 steps 3 and 5b: 554 greeting -> 480, 4yz/5yz -> 488; DNS: a domain
/// that does not exist -> 404, anything else that may pass -> 480.
pub fn smtp_failure_status(failure: &SmtpFailure) -> SipStatus {
    let (code, reason) = match failure.stage {
        SmtpStage::Dns if failure.permanent => (404, "Not Found"),
        SmtpStage::Dns | SmtpStage::Connect | SmtpStage::Greeting => {
            (480, "Temporarily Unavailable")
        }
        SmtpStage::Ehlo | SmtpStage::MailFrom | SmtpStage::RcptTo | SmtpStage::Data => {
            (488, "Not Acceptable Here")
        }
    };
    SipStatus {
        code,
        reason: reason.into(),
    }
}

/// AA2 X-Priority row: non-urgent 5, normal 3, urgent (and emergency) 1; none without Priority.
pub fn x_priority(priority: Option<Priority>) -> Option<u8> {
    priority.map(|p| match p {
        Priority::NonUrgent => 5,
        Priority::Normal => 3,
        Priority::Urgent | Priority::Emergency => 1,
    })
}

/// Nothing added to the message.
pub fn body_additions() -> Additions {
    Additions {
        before: None,
        after: None,
    }
}

/// No notification (5.2.4.2.6 makes it a MAY).
pub fn session_closed() -> Option<Notification> {
    None
}

/// No participant mails.
pub fn participant_info_frequency() -> ParticipantFrequency {
    ParticipantFrequency::Never
}

/// No participant mail.
pub fn participant_info_text() -> Option<Notification> {
    None
}

/// RFC 4975 7.1 defaults: no Success-Report, Failure-Report yes.
pub fn msrp_reports() -> ReportFlags {
    ReportFlags {
        success_report: false,
        failure_report: FailureReport::Yes,
    }
}

/// Privacy: id (RFC 3323, DESIGN.md): `anon-<session-id>@<mail-domain>`, "Anonymous" as
/// display name. Not RFC 3323's `anonymous.invalid`: the e-mail user must be able to
/// answer, and servers refuse a `.invalid` envelope sender. The session id is random, so
/// the address names nothing of the CPM user.
pub fn anonymous_identity(session: &Session) -> Mailbox {
    Mailbox {
        address: format!(
            "anon-{}@{}",
            to_local_part(&session.session_id),
            session.gateway.mail_domain
        ),
        display_name: Some("Anonymous".into()),
    }
}
