//! Test fixture for the policy host's fail-safes: a policy that misbehaves on request.
//!
//! The user part of the session's Request-URI chooses the misbehaviour, so one component
//! covers every fail-safe cause:
//! - `trap`: panics (a trap);
//! - `spin`: loops forever (the epoch deadline must stop it);
//! - `hog`: allocates without bound (the memory cap must stop it);
//! - `garbage`: answers out of range (status 99, X-Priority 9, an address with CR/LF,
//!   expiry 0, BY=0);
//! - `count`: `invitation-expiry` answers how many calls this instance has seen (a fresh
//!   instance per decision must always answer 1);
//! - `snoop`: `invitation-expiry` answers 100 plus what ambient authority it found:
//!   +1 environment variables, +2 arguments, +4 a readable `/etc/passwd` or listable `/`,
//!   +8 a TCP connection to the address in the session's Subject; it also prints to stdout and stderr (which must
//!   not trap). The sandbox must make it answer exactly 100;
//! - `deliverby`: well behaved: asks the e-mail user, and asks for `BY=86400;N` on every
//!   mail (the default never asks), for the tests of RFC 2852 end to end;
//! - `expire`: well behaved, but gives the e-mail user 2 seconds to answer an invitation
//!   (the tests of F3's expiry);
//! - `mapped`: well behaved, asks the e-mail user; and as `email-to-cpm` has no session,
//!   it keys on the e-mail address: `mapped@...` maps to `sip:mapped@ims.example.com` (the
//!   default maps only addresses of the gateway's own domain), for the tests of EE1 From;
//! - `reports`: well behaved, asks the e-mail user, and asks for Success-Report `yes` and
//!   Failure-Report `partial` on the SENDs towards the CPM side (EE1);
//! - anything else: the `default` policy.
//!
//! Never shipped: the build puts it beside the real policies for the tests.

use default_policy::DefaultPolicy as Base;
use policy_sdk::decisions::*;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Misbehaving;

static CALLS: AtomicU32 = AtomicU32::new(0);

fn misbehave(session: &Session) -> Option<&'static str> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let user = policy_sdk::address::user_part(&session.request_uri)?;
    match user.as_str() {
        "trap" => panic!("misbehaving policy: trap on request"),
        "spin" => {
            let mut x: u64 = 1;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        "hog" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![0xA5; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "garbage" => Some("garbage"),
        "count" => Some("count"),
        "snoop" => Some("snoop"),
        "deliverby" => Some("deliverby"),
        "expire" => Some("expire"),
        "mapped" => Some("mapped"),
        "reports" => Some("reports"),
        _ => None,
    }
}

/// Tries every ambient authority a policy must not have; see the module doc.
fn snoop(session: &Session) -> u32 {
    println!("a policy printing to stdout");
    eprintln!("a policy printing to stderr");
    let mut found = 100;
    if std::env::vars_os().next().is_some() {
        found += 1;
    }
    if std::env::args_os().next().is_some() {
        found += 2;
    }
    if std::fs::read("/etc/passwd").is_ok() || std::fs::read_dir("/").is_ok() {
        found += 4;
    }
    let target = session.subject.as_deref().unwrap_or("127.0.0.1:9");
    if std::net::TcpStream::connect(target).is_ok() {
        found += 8;
    }
    found
}

impl Guest for Misbehaving {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "misbehaving".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
    fn on_invite(session: Session) -> InviteDecision {
        match misbehave(&session) {
            Some("garbage") => InviteDecision::Refuse(SipStatus {
                code: 99,
                reason: "bad\r\ncode".into(),
            }),
            // Asks the e-mail user, so that the invitation is mailed (with BY=).
            Some("deliverby" | "expire" | "mapped" | "reports") => InviteDecision::AskUser,
            _ => InviteDecision::AcceptOnBehalf,
        }
    }
    fn interpret_reply(session: Session, reply: Reply) -> ReplyAction {
        misbehave(&session);
        Base::interpret_reply(session, reply)
    }
    fn cpm_to_email(gateway: Gateway, cpm: Identity) -> Option<Mailbox> {
        if cpm.uri.contains("garbage") {
            return Some(Mailbox {
                address: "x@y\r\nBcc: victim@example.org".into(),
                display_name: None,
            });
        }
        Base::cpm_to_email(gateway, cpm)
    }
    fn email_to_cpm(gateway: Gateway, email: Mailbox) -> Option<String> {
        if email.address.starts_with("mapped@") {
            return Some("sip:mapped@ims.example.com".into());
        }
        Base::email_to_cpm(gateway, email)
    }
    fn group_address(session: Session) -> Mailbox {
        match misbehave(&session) {
            Some("garbage") => Mailbox {
                address: "not an address".into(),
                display_name: None,
            },
            _ => Base::group_address(session),
        }
    }
    fn invitation_body(session: Session) -> InvitationMail {
        misbehave(&session);
        Base::invitation_body(session)
    }
    fn invitation_expiry(session: Session) -> u32 {
        match misbehave(&session) {
            Some("garbage") => 0,
            Some("count") => CALLS.load(Ordering::Relaxed),
            Some("snoop") => snoop(&session),
            Some("expire") => 2,
            _ => Base::invitation_expiry(session),
        }
    }
    fn deliver_by(session: Session, kind: MailKind) -> Option<ByRequest> {
        match misbehave(&session) {
            Some("garbage") => Some(ByRequest {
                seconds: 0,
                mode: ByMode::Return,
                trace: false,
            }),
            Some("deliverby") => Some(ByRequest {
                seconds: 86_400,
                mode: ByMode::Notify,
                trace: false,
            }),
            _ => Base::deliver_by(session, kind),
        }
    }
    fn smtp_failure_status(session: Session, failure: SmtpFailure) -> SipStatus {
        match misbehave(&session) {
            Some("garbage") => SipStatus {
                code: 200,
                reason: "OK".into(),
            },
            _ => Base::smtp_failure_status(session, failure),
        }
    }
    fn x_priority(session: Session, kind: MailKind) -> Option<u8> {
        match misbehave(&session) {
            Some("garbage") => Some(9),
            _ => Base::x_priority(session, kind),
        }
    }
    fn body_additions(session: Session, chat: ChatContext) -> Additions {
        misbehave(&session);
        Base::body_additions(session, chat)
    }
    fn session_closed(session: Session) -> Option<Notification> {
        misbehave(&session);
        Base::session_closed(session)
    }
    fn participant_info_frequency(session: Session) -> ParticipantFrequency {
        match misbehave(&session) {
            Some("garbage") => ParticipantFrequency::AtMostEvery(0),
            _ => Base::participant_info_frequency(session),
        }
    }
    fn participant_info_text(
        session: Session,
        participants: Vec<Participant>,
    ) -> Option<Notification> {
        misbehave(&session);
        Base::participant_info_text(session, participants)
    }
    fn msrp_reports(session: Session) -> ReportFlags {
        match misbehave(&session) {
            Some("reports") => ReportFlags {
                success_report: true,
                failure_report: FailureReport::Partial,
            },
            _ => Base::msrp_reports(session),
        }
    }
    fn anonymous_identity(session: Session) -> Mailbox {
        match misbehave(&session) {
            Some("garbage") => Mailbox {
                address: "anonymous@anonymous.invalid".into(),
                display_name: Some("A\r\nBcc: x".into()),
            },
            _ => Base::anonymous_identity(session),
        }
    }
}

// Exported only when built as the component (see policies/default).
#[cfg(target_arch = "wasm32")]
policy_sdk::export_policy!(Misbehaving with_types_in policy_sdk::bindings);
