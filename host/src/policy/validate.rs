//! Range checks on what a policy answers. The WIT types say what shape an answer has;
//! these say which values of that shape the gateway can use. An answer that fails them
//! is a malformed result: the fail-safe is used instead, and the reason is logged.

use super::world::*;
use policy_sdk::address::is_addr_spec;

pub type Check = Result<(), String>;

/// Header text (display name, subject, reason phrase): no control characters, bounded.
fn header_text(what: &str, text: &str, max: usize) -> Check {
    if text.len() > max {
        return Err(format!("{what} longer than {max} bytes"));
    }
    if text.chars().any(char::is_control) {
        return Err(format!(
            "{what} contains a control character (CR/LF would break a header): {text:?}"
        ));
    }
    Ok(())
}

/// Body text: bounded, not empty.
fn body_text(what: &str, text: &str, max: usize) -> Check {
    if text.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if text.len() > max {
        return Err(format!("{what} longer than {max} bytes"));
    }
    Ok(())
}

const DISPLAY_NAME_MAX: usize = 256;
const SUBJECT_MAX: usize = 512;
const BODY_MAX: usize = 64 * 1024;

pub fn sip_status(status: &SipStatus) -> Check {
    if !(400..=699).contains(&status.code) {
        return Err(format!(
            "SIP status {} is not a final error status (400-699)",
            status.code
        ));
    }
    if status.reason.trim().is_empty() {
        return Err("empty SIP reason phrase".into());
    }
    header_text("SIP reason phrase", &status.reason, 128)
}

pub fn invite_decision(decision: &InviteDecision) -> Check {
    match decision {
        InviteDecision::Refuse(status) => sip_status(status),
        InviteDecision::AcceptOnBehalf | InviteDecision::AskUser => Ok(()),
    }
}

pub fn mailbox(mailbox: &Mailbox) -> Check {
    if !is_addr_spec(&mailbox.address) {
        return Err(format!(
            "{:?} is not a plain local@domain address",
            mailbox.address
        ));
    }
    match &mailbox.display_name {
        Some(name) => header_text("display name", name, DISPLAY_NAME_MAX),
        None => Ok(()),
    }
}

/// Privacy: id: the anonymous address must be answerable (at the gateway's mail domain,
/// where the inbound SMTP listener takes the replies) and must not name the CPM user (no
/// user part of their From or P-Asserted-Identity in it, RFC 3323 4.1.1.3).
pub fn anonymous_mailbox(answer: &Mailbox, session: &Session) -> Check {
    mailbox(answer)?;
    let (local, domain) = answer.address.rsplit_once('@').unwrap_or_default();
    if !domain.eq_ignore_ascii_case(&session.gateway.mail_domain) {
        return Err(format!(
            "{:?} is not at the gateway's mail domain {}: the e-mail user could not answer",
            answer.address, session.gateway.mail_domain
        ));
    }
    let local = local.to_ascii_lowercase();
    let identities = std::iter::once(&session.from).chain(&session.asserted_identity);
    for identity in identities {
        let user = identifying_part(&identity.uri);
        // Short ones ("bob", "42") turn up in a random session id by chance.
        if user.len() >= 4 && local.contains(&user) {
            return Err(format!(
                "{:?} names the CPM user, whose identity Privacy: id hides",
                answer.address
            ));
        }
        let name = identity.display_name.as_deref().unwrap_or_default();
        if let Some(display) = &answer.display_name
            && name.len() >= 4
            && display
                .to_ascii_lowercase()
                .contains(&name.to_ascii_lowercase())
        {
            return Err(format!(
                "display name {display:?} names the CPM user, whose identity Privacy: id hides"
            ));
        }
    }
    Ok(())
}

/// What names a CPM user in their URI, lower-cased: a sip/sips user part, or the digits
/// of a tel: number (RFC 3966, visual separators and `+` dropped).
fn identifying_part(uri: &str) -> String {
    match uri.get(..4) {
        Some(scheme) if scheme.eq_ignore_ascii_case("tel:") => uri[4..]
            .split(';')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase(),
        _ => policy_sdk::address::user_part(uri)
            .unwrap_or_default()
            .to_ascii_lowercase(),
    }
}

pub fn optional_mailbox(answer: &Option<Mailbox>) -> Check {
    answer.as_ref().map_or(Ok(()), mailbox)
}

pub fn cpm_uri(answer: &Option<String>) -> Check {
    let Some(uri) = answer else { return Ok(()) };
    let scheme = policy_sdk::address::scheme(uri);
    if !matches!(scheme.as_deref(), Some("sip" | "sips" | "tel")) {
        return Err(format!("{uri:?} is not a sip:, sips: or tel: URI"));
    }
    if uri.len() > 512
        || uri
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
    {
        return Err(format!("{uri:?} has characters a URI cannot have"));
    }
    Ok(())
}

pub fn invitation_mail(mail: &InvitationMail) -> Check {
    if let Some(subject) = &mail.subject {
        header_text("subject", subject, SUBJECT_MAX)?;
    }
    body_text("invitation body", &mail.body, BODY_MAX)
}

pub fn reply_action(action: &ReplyAction) -> Check {
    match action {
        ReplyAction::Chat(text) => body_text("chat text", text, 1024 * 1024),
        ReplyAction::Ignore(reason) => header_text("ignore reason", reason, 1024),
        ReplyAction::Accept | ReplyAction::Reject | ReplyAction::Leave => Ok(()),
    }
}

/// 1 second to 30 days.
pub fn invitation_expiry(seconds: &u32) -> Check {
    if !(1..=2_592_000).contains(seconds) {
        return Err(format!(
            "invitation expiry {seconds} s is outside 1..=2592000"
        ));
    }
    Ok(())
}

/// RFC 2852 by-time: a positive number of seconds, at most 9 digits.
pub fn deliver_by(answer: &Option<ByRequest>) -> Check {
    match answer {
        Some(by) if !(1..=999_999_999).contains(&by.seconds) => {
            Err(format!("BY= time {} is outside 1..=999999999", by.seconds))
        }
        _ => Ok(()),
    }
}

pub fn x_priority(answer: &Option<u8>) -> Check {
    match answer {
        Some(p) if !(1..=5).contains(p) => Err(format!("X-Priority {p} is outside 1..=5")),
        _ => Ok(()),
    }
}

pub fn additions(additions: &Additions) -> Check {
    for text in [&additions.before, &additions.after].into_iter().flatten() {
        if text.len() > 16 * 1024 {
            return Err("body addition longer than 16 KiB".into());
        }
    }
    Ok(())
}

pub fn notification(answer: &Option<Notification>) -> Check {
    let Some(n) = answer else { return Ok(()) };
    if let Some(subject) = &n.subject {
        header_text("subject", subject, SUBJECT_MAX)?;
    }
    body_text("notification body", &n.body, BODY_MAX)
}

pub fn participant_frequency(answer: &ParticipantFrequency) -> Check {
    match answer {
        ParticipantFrequency::AtMostEvery(0) => Err("at-most-every(0): use every-change".into()),
        _ => Ok(()),
    }
}

/// Every value of the type is usable.
pub fn any<T>(_: &T) -> Check {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_outside_final_errors_are_refused() {
        let s = |code| SipStatus {
            code,
            reason: "x".into(),
        };
        assert!(sip_status(&s(488)).is_ok());
        assert!(sip_status(&s(200)).is_err());
        assert!(sip_status(&s(700)).is_err());
        assert!(
            sip_status(&SipStatus {
                code: 480,
                reason: "a\r\nVia: x".into()
            })
            .is_err()
        );
    }

    #[test]
    fn mailboxes_cannot_inject_headers() {
        let m = |address: &str, name: Option<&str>| Mailbox {
            address: address.into(),
            display_name: name.map(Into::into),
        };
        assert!(mailbox(&m("a@b.example", Some("Alice"))).is_ok());
        assert!(mailbox(&m("a@b.example\r\nBcc: c@d", None)).is_err());
        assert!(mailbox(&m("a@b.example", Some("A\nBcc: c@d"))).is_err());
    }

    #[test]
    fn an_anonymous_address_is_answerable_and_names_nobody() {
        let mut s = crate::policy::testing::session("mailto:bob@example.net");
        s.privacy_id = true;
        s.asserted_identity = Some(Identity {
            uri: "tel:+15551234567".into(),
            display_name: None,
        });
        let m = |address: &str, name: &str| Mailbox {
            address: address.into(),
            display_name: Some(name.into()),
        };
        let ok = m("anon-s1a2b3@mail.example.com", "Anonymous");
        assert!(anonymous_mailbox(&ok, &s).is_ok());
        assert!(anonymous_mailbox(&m("anon-s1a2b3@MAIL.example.com", "Anon"), &s).is_ok());
        // Not answerable: RFC 3323's .invalid, or another domain than the gateway's.
        let invalid = m("anonymous@anonymous.invalid", "Anonymous");
        assert!(
            anonymous_mailbox(&invalid, &s)
                .unwrap_err()
                .contains("answer")
        );
        assert!(anonymous_mailbox(&m("anon-1@example.org", "Anonymous"), &s).is_err());
        // Naming the CPM user: From's user part, P-Asserted-Identity's, the display name.
        for named in [
            m("alice-s1@mail.example.com", "Anonymous"),
            m("x15551234567@mail.example.com", "Anonymous"),
            m("anon-s1@mail.example.com", "Alice's alias"),
        ] {
            assert!(anonymous_mailbox(&named, &s).is_err(), "{named:?}");
        }
    }

    #[test]
    fn ranges() {
        assert!(x_priority(&Some(9)).is_err());
        assert!(x_priority(&Some(1)).is_ok());
        assert!(invitation_expiry(&0).is_err());
        assert!(
            deliver_by(&Some(ByRequest {
                seconds: 0,
                mode: ByMode::Return,
                trace: false
            }))
            .is_err()
        );
        assert!(cpm_uri(&Some("http://x".into())).is_err());
        assert!(cpm_uri(&Some("tel:+1555".into())).is_ok());
    }
}
