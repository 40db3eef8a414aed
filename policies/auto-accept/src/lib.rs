//! The `auto-accept` policy: accepts every invitation on behalf of the e-mail user
//! (5.2.4.2.4 first paragraph, 5.2.1.3); every other decision is the `default` policy's.

use default_policy::DefaultPolicy as Base;
use policy_sdk::decisions::*;

pub struct AutoAccept;

impl Guest for AutoAccept {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "auto-accept".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
    fn on_invite(_session: Session) -> InviteDecision {
        InviteDecision::AcceptOnBehalf
    }
    fn interpret_reply(session: Session, reply: Reply) -> ReplyAction {
        // The user never saw an invitation to answer: everything but LEAVE is chat.
        let reply = Reply {
            phase: SessionPhase::Live,
            ..reply
        };
        Base::interpret_reply(session, reply)
    }
    fn cpm_to_email(gateway: Gateway, cpm: Identity) -> Option<Mailbox> {
        Base::cpm_to_email(gateway, cpm)
    }
    fn email_to_cpm(gateway: Gateway, email: Mailbox) -> Option<String> {
        Base::email_to_cpm(gateway, email)
    }
    fn group_address(session: Session) -> Mailbox {
        Base::group_address(session)
    }
    fn invitation_body(session: Session) -> InvitationMail {
        Base::invitation_body(session)
    }
    fn invitation_expiry(session: Session) -> u32 {
        Base::invitation_expiry(session)
    }
    fn deliver_by(session: Session, kind: MailKind) -> Option<ByRequest> {
        Base::deliver_by(session, kind)
    }
    fn smtp_failure_status(session: Session, failure: SmtpFailure) -> SipStatus {
        Base::smtp_failure_status(session, failure)
    }
    fn x_priority(session: Session, kind: MailKind) -> Option<u8> {
        Base::x_priority(session, kind)
    }
    fn body_additions(session: Session, chat: ChatContext) -> Additions {
        Base::body_additions(session, chat)
    }
    fn session_closed(session: Session) -> Option<Notification> {
        Base::session_closed(session)
    }
    fn participant_info_frequency(session: Session) -> ParticipantFrequency {
        Base::participant_info_frequency(session)
    }
    fn participant_info_text(
        session: Session,
        participants: Vec<Participant>,
    ) -> Option<Notification> {
        Base::participant_info_text(session, participants)
    }
    fn msrp_reports(session: Session) -> ReportFlags {
        Base::msrp_reports(session)
    }
    fn anonymous_identity(session: Session) -> Mailbox {
        Base::anonymous_identity(session)
    }
}

// Exported only when built as the component (see policies/default).
#[cfg(target_arch = "wasm32")]
policy_sdk::export_policy!(AutoAccept with_types_in policy_sdk::bindings);
