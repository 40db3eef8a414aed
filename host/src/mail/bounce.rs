//! The bounce of a chat mail the IWF took (250) and the chat did not (issue 15): a
//! delivery status notification (RFC 3464) in a multipart/report (RFC 6522), sent to the
//! mail's return path with the null reverse-path (RFC 5321 4.5.5), so it is never bounced
//! in turn. Its headers go through the composer's own field writers: nothing of the
//! original mail or of the chat's answer can add a header line.

use super::body::encode_text;
use super::header::{Mailbox, MsgId, address_list, field, unstructured};
use chrono::{DateTime, FixedOffset};

/// What a bounce says.
#[derive(Debug, Clone)]
pub struct Bounce {
    /// The reporting host (`[smtp.inbound] domain`): Reporting-MTA and the From's domain.
    pub reporting_domain: String,
    /// The return path of the mail bounced.
    pub to: Mailbox,
    /// The IWF address the mail was sent to (Final-Recipient).
    pub recipient: String,
    /// RFC 3463 status, class 5 (the IWF gives up: Action failed).
    pub status: String,
    /// Why, in words (Diagnostic-Code and the human part).
    pub diagnostic: String,
    /// The bounced mail's Message-ID and Subject (its text/rfc822-headers part).
    pub original_message_id: Option<MsgId>,
    pub original_subject: Option<String>,
    pub date: DateTime<FixedOffset>,
    pub message_id: MsgId,
}

/// Writes `bounce` as an RFC 5322 message ready for SMTP DATA.
pub fn compose_bounce(bounce: &Bounce) -> Vec<u8> {
    let boundary = format!(
        "=_iwf_{}",
        bounce.message_id.to_string().trim_matches(['<', '>'])
    );
    let daemon = Mailbox::new(
        Some("Mail Delivery System"),
        &format!("MAILER-DAEMON@{}", bounce.reporting_domain),
    )
    .ok();
    let mut head = String::with_capacity(1024);
    if let Some(daemon) = &daemon {
        head += &field("From", &address_list(std::slice::from_ref(daemon)));
    }
    head += &field("To", &address_list(std::slice::from_ref(&bounce.to)));
    head += &field("Date", &[bounce.date.to_rfc2822()]);
    head += &field("Message-ID", &[bounce.message_id.to_string()]);
    let subject = match &bounce.original_subject {
        Some(s) => format!("Undelivered chat message: {s}"),
        None => "Undelivered chat message".to_owned(),
    };
    head += &field("Subject", &unstructured(&subject));
    // RFC 3834 5: a bounce is auto-replied, never answered automatically.
    head += "Auto-Submitted: auto-replied\r\n";
    head += "MIME-Version: 1.0\r\n";
    head += &format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"{boundary}\"\r\n\r\n"
    );
    let diagnostic = one_line(&bounce.diagnostic);
    let text = encode_text(&format!(
        "Your message to <{}> was taken by the chat gateway but could not be delivered to the chat:\n\n  {diagnostic}\n\nNo further attempt will be made.\n",
        one_line(&bounce.recipient)
    ));
    let mut out = head.into_bytes();
    let mut part = |headers: String, body: &[u8]| {
        out.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n").as_bytes());
        out.extend_from_slice(body);
        if !body.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    };
    part(
        format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {}\r\n",
            text.encoding.as_str()
        ),
        &text.bytes,
    );
    // RFC 3464 2.2 (per message) and 2.3 (per recipient).
    let status = one_line(&bounce.status);
    let report = format!(
        "Reporting-MTA: dns; {}\r\n\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {status}\r\nDiagnostic-Code: smtp; 554 {status} {diagnostic}\r\n",
        one_line(&bounce.reporting_domain),
        one_line(&bounce.recipient),
    );
    part(
        "Content-Type: message/delivery-status\r\n".to_owned(),
        report.as_bytes(),
    );
    let mut original = String::new();
    if let Some(id) = &bounce.original_message_id {
        original += &field("Message-ID", &[id.to_string()]);
    }
    if let Some(s) = &bounce.original_subject {
        original += &field("Subject", &unstructured(s));
    }
    part(
        "Content-Type: text/rfc822-headers\r\n".to_owned(),
        original.as_bytes(),
    );
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// `text` as one line of printable ASCII (a DSN field is ASCII, RFC 3464 2.1.2), at
/// most 200 characters: no CR or LF of the chat's answer reaches the wire.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ' '..='~' => c,
            _ => ' ',
        })
        .take(200)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::inbound::{self, Kind};

    fn bounce(diagnostic: &str) -> Bounce {
        Bounce {
            reporting_domain: "mail.iwf.test".into(),
            to: Mailbox::new(None, "bob@example.net").unwrap(),
            recipient: "chat-abc@mail.iwf.test".into(),
            status: "5.6.0".into(),
            diagnostic: diagnostic.into(),
            original_message_id: Some(MsgId::parse("<m1@example.net>").unwrap()),
            original_subject: Some("Re: Lunch?".into()),
            date: DateTime::parse_from_rfc3339("2026-12-04T10:00:00+00:00").unwrap(),
            message_id: MsgId::new("b0unce", "mail.iwf.test").unwrap(),
        }
    }

    #[test]
    fn a_bounce_is_a_delivery_status_report_our_own_reader_takes_as_one() {
        let raw = compose_bounce(&bounce("the chat refused the message (403 Forbidden)"));
        let text = String::from_utf8(raw.clone()).unwrap();
        assert!(text.contains("Status: 5.6.0\r\n"), "{text}");
        assert!(text.contains("Final-Recipient: rfc822; chat-abc@mail.iwf.test\r\n"));
        assert!(text.contains("Action: failed\r\n"));
        let mail = inbound::parse(&raw).unwrap();
        match mail.kind(true) {
            Kind::Bounce {
                original_message_ids,
                status,
                ..
            } => {
                assert_eq!(original_message_ids, vec!["m1@example.net".to_string()]);
                assert_eq!(status.as_deref(), Some("5.6.0"));
            }
            other => panic!("not read as a bounce: {other:?}"),
        }
    }

    #[test]
    fn nothing_of_the_diagnostic_or_the_subject_becomes_a_header_line() {
        let mut b = bounce("refused\r\nBcc: eve@example.org\r\n\r\nforged");
        b.original_subject = Some("hi\r\nX-Injected: yes".into());
        let raw = compose_bounce(&b);
        let text = String::from_utf8(raw).unwrap();
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(!text.contains("\r\nX-Injected:"), "{text}");
        assert!(
            text.contains("refused  Bcc: eve@example.org    forged"),
            "{text}"
        );
    }
}
