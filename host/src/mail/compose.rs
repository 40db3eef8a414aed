//! The one composer of every mail the gateway sends (AA2 invitation, BB2 chat message,
//! CC2 session closed, DD2 participant information): typed inputs in, an RFC 5322
//! message out, 7-bit clean, every header line within 998 characters.
//!
//! The tables decide what goes in a `Draft` (the session core fills it); this module only
//! decides how it is written. Bcc is never a header: blind recipients are only in the
//! SMTP envelope.

use super::body::encode_text;
use super::header::{AutoSubmitted, Mailbox, MsgId, XPriority, address_list, field, unstructured};
use chrono::{DateTime, FixedOffset};

/// What a mail says, header by header (RFC 5322 3.6), and its text.
#[derive(Debug, Clone)]
pub struct Draft {
    /// AA2/BB2/CC2/DD2 From row (RFC 5322 3.6.2).
    pub from: Mailbox,
    /// AA2/CC2/DD2 Sender row: the inviting user of a group session.
    pub sender: Option<Mailbox>,
    /// AA2 Reply-To row.
    pub reply_to: Option<Mailbox>,
    /// To, Cc (RFC 5322 3.6.3); Bcc recipients go in the envelope only.
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Date row: CPIM DateTime, else SIP Date, else now (RFC 5322 3.3 format).
    pub date: DateTime<FixedOffset>,
    /// msg-id row: see `MsgId::from_contribution_id`.
    pub message_id: MsgId,
    /// In-Reply-To and References (RFC 5322 3.6.4), oldest first in `references`.
    pub in_reply_to: Option<MsgId>,
    pub references: Vec<MsgId>,
    /// Subject row (RFC 5322 3.6.5); sanitised and encoded as needed.
    pub subject: Option<String>,
    /// X-Priority row (as the policy chose it).
    pub x_priority: Option<XPriority>,
    /// RFC 3834: `auto-generated` on notifications (CC2, DD2).
    pub auto_submitted: Option<AutoSubmitted>,
    /// The text/plain body, UTF-8, any line ends.
    pub body: String,
}

/// Writes `draft` as an RFC 5322 message (CRLF line ends) ready for SMTP DATA.
pub fn compose(draft: &Draft) -> Vec<u8> {
    let mut head = String::with_capacity(1024);
    head += &field("From", &address_list(std::slice::from_ref(&draft.from)));
    if let Some(sender) = &draft.sender {
        head += &field("Sender", &address_list(std::slice::from_ref(sender)));
    }
    if let Some(reply_to) = &draft.reply_to {
        head += &field("Reply-To", &address_list(std::slice::from_ref(reply_to)));
    }
    if !draft.to.is_empty() {
        head += &field("To", &address_list(&draft.to));
    }
    if !draft.cc.is_empty() {
        head += &field("Cc", &address_list(&draft.cc));
    }
    head += &field("Date", &[draft.date.to_rfc2822()]);
    head += &field("Message-ID", &[draft.message_id.to_string()]);
    if let Some(parent) = &draft.in_reply_to {
        head += &field("In-Reply-To", &[parent.to_string()]);
    }
    if !draft.references.is_empty() {
        let ids: Vec<String> = draft.references.iter().map(MsgId::to_string).collect();
        head += &field("References", &ids);
    }
    if let Some(subject) = &draft.subject {
        let tokens = unstructured(subject);
        if !tokens.is_empty() {
            head += &field("Subject", &tokens);
        }
    }
    if let Some(priority) = draft.x_priority {
        head += &field("X-Priority", &[priority.get().to_string()]);
    }
    if let Some(auto) = draft.auto_submitted {
        head += &field("Auto-Submitted", &[auto.as_str().into()]);
    }
    let body = encode_text(&draft.body);
    // RFC 2045 4, 5.1, 6.1.
    head += "MIME-Version: 1.0\r\n";
    head += "Content-Type: text/plain; charset=utf-8\r\n";
    head += &field(
        "Content-Transfer-Encoding",
        &[body.encoding.as_str().into()],
    );
    head += "\r\n";
    let mut message = head.into_bytes();
    message.extend_from_slice(&body.bytes);
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{Address, MessageParser, MimeHeaders};

    fn mailbox(name: Option<&str>, addr: &str) -> Mailbox {
        Mailbox::new(name, addr).unwrap()
    }

    fn draft() -> Draft {
        Draft {
            from: mailbox(Some("Alice"), "alice@iwf.example.com"),
            sender: None,
            reply_to: None,
            to: vec![mailbox(None, "bob@example.org")],
            cc: vec![],
            date: DateTime::parse_from_rfc3339("2026-11-26T10:37:24+01:00").unwrap(),
            message_id: MsgId::from_contribution_id("c0ffee", "mail.example.com").unwrap(),
            in_reply_to: None,
            references: vec![],
            subject: Some("Lunch?".into()),
            x_priority: None,
            auto_submitted: None,
            body: "Hello Bob\nsee you".into(),
        }
    }

    /// The header names of `raw`, in order, lower-cased.
    fn names(raw: &[u8]) -> Vec<String> {
        let msg = MessageParser::default().parse(raw).unwrap();
        msg.headers()
            .iter()
            .map(|h| h.name().to_ascii_lowercase())
            .collect()
    }

    fn first(addr: Option<&Address>) -> (Option<String>, String) {
        let a = addr.unwrap().first().unwrap();
        (a.name().map(str::to_owned), a.address().unwrap().to_owned())
    }

    /// Every line of the wire form: ASCII, CRLF-terminated, within 998 characters.
    fn assert_wire_safe(raw: &[u8]) {
        assert!(raw.is_ascii(), "8-bit data on the wire");
        assert!(raw.ends_with(b"\r\n"));
        for line in raw.split(|&b| b == b'\n') {
            assert!(line.len() <= 999, "line over 998");
            assert!(
                !line[..line.len().saturating_sub(1)].contains(&b'\r'),
                "bare CR"
            );
        }
        assert!(!raw.windows(1).any(|w| w[0] == 0), "NUL on the wire");
    }

    #[test]
    fn every_header_round_trips_through_mail_parser() {
        let mut d = draft();
        d.sender = Some(mailbox(Some("Carol Inviter"), "carol@iwf.example.com"));
        d.reply_to = Some(mailbox(Some("Alice"), "alice-reply@iwf.example.com"));
        d.to.push(mailbox(Some("Dave"), "dave@example.org"));
        d.cc = vec![mailbox(Some("Erin, Q."), "erin@example.net")];
        d.in_reply_to = Some(MsgId::parse("<p2@mail.example.com>").unwrap());
        d.references = vec![
            MsgId::parse("<p1@mail.example.com>").unwrap(),
            MsgId::parse("<p2@mail.example.com>").unwrap(),
        ];
        d.x_priority = Some(XPriority::new(1).unwrap());
        d.auto_submitted = Some(AutoSubmitted::AutoGenerated);
        let raw = compose(&d);
        assert_wire_safe(&raw);
        let msg = MessageParser::default().parse(&raw[..]).unwrap();
        assert_eq!(
            first(msg.from()),
            (Some("Alice".into()), "alice@iwf.example.com".into())
        );
        assert_eq!(
            first(msg.sender()),
            (Some("Carol Inviter".into()), "carol@iwf.example.com".into())
        );
        assert_eq!(first(msg.reply_to()).1, "alice-reply@iwf.example.com");
        let to: Vec<_> = msg
            .to()
            .unwrap()
            .iter()
            .map(|a| a.address().unwrap())
            .collect();
        assert_eq!(to, ["bob@example.org", "dave@example.org"]);
        assert_eq!(
            first(msg.cc()),
            (Some("Erin, Q.".into()), "erin@example.net".into())
        );
        assert_eq!(
            msg.date().unwrap().to_rfc3339(),
            "2026-11-26T10:37:24+01:00"
        );
        assert_eq!(msg.message_id(), Some("c0ffee@mail.example.com"));
        assert_eq!(msg.in_reply_to().as_text(), Some("p2@mail.example.com"));
        let refs: Vec<String> = msg
            .references()
            .as_text_list()
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(refs, ["p1@mail.example.com", "p2@mail.example.com"]);
        assert_eq!(msg.subject(), Some("Lunch?"));
        assert_eq!(msg.header_raw("X-Priority").map(str::trim), Some("1"));
        assert_eq!(
            msg.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-generated")
        );
        assert_eq!(msg.header_raw("MIME-Version").map(str::trim), Some("1.0"));
        let ct = msg.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("plain")));
        assert_eq!(ct.attribute("charset"), Some("utf-8"));
        assert_eq!(msg.body_text(0).unwrap(), "Hello Bob\r\nsee you\r\n");
        assert_eq!(
            names(&raw),
            [
                "from",
                "sender",
                "reply-to",
                "to",
                "cc",
                "date",
                "message-id",
                "in-reply-to",
                "references",
                "subject",
                "x-priority",
                "auto-submitted",
                "mime-version",
                "content-type",
                "content-transfer-encoding"
            ]
        );
    }

    #[test]
    fn minimal_draft_writes_only_what_is_given() {
        let mut d = draft();
        d.subject = None;
        let raw = compose(&d);
        assert_eq!(
            names(&raw),
            [
                "from",
                "to",
                "date",
                "message-id",
                "mime-version",
                "content-type",
                "content-transfer-encoding"
            ]
        );
    }

    #[test]
    fn crlf_in_display_name_and_subject_cannot_smuggle_headers() {
        let mut d = draft();
        d.from = mailbox(
            Some("Alice\r\nBcc: eve@evil.example\r\nX-Injected: 1"),
            "alice@iwf.example.com",
        );
        d.subject = Some("Hi\r\nBcc: eve@evil.example\n\nbody takeover\0".into());
        let raw = compose(&d);
        assert_wire_safe(&raw);
        assert!(!names(&raw).iter().any(|n| n == "bcc" || n == "x-injected"));
        let msg = MessageParser::default().parse(&raw[..]).unwrap();
        assert_eq!(
            first(msg.from()),
            (
                Some("Alice Bcc: eve@evil.example X-Injected: 1".into()),
                "alice@iwf.example.com".into()
            )
        );
        assert_eq!(
            msg.subject(),
            Some("Hi Bcc: eve@evil.example body takeover")
        );
        assert_eq!(msg.body_text(0).unwrap(), "Hello Bob\r\nsee you\r\n");
        assert_eq!(names(&raw).len(), 8);
    }

    #[test]
    fn injection_sweep_never_adds_a_header_or_changes_an_address() {
        let nasty = [
            "\r\nBcc: eve@evil.example",
            "\nBcc: eve@evil.example",
            "\rBcc: eve@evil.example",
            "x\r\n\r\nbody",
            "\0\0\0",
            "=?utf-8?B?DQpCY2M6IGV2ZUBldmlsLmV4YW1wbGU=?=",
            "\"Quoted\" <eve@evil.example>, ",
            "a\u{2028}Bcc: eve@evil.example\u{85}",
            "\u{feff}zero\u{200b}width",
            "\\\"\\",
            "x\ty",
            "",
            " ",
        ];
        let expected = [
            "from",
            "to",
            "date",
            "message-id",
            "subject",
            "mime-version",
            "content-type",
            "content-transfer-encoding",
        ];
        for bad in nasty {
            let mut d = draft();
            d.from = mailbox(Some(bad), "alice@iwf.example.com");
            d.to = vec![mailbox(Some(bad), "bob@example.org")];
            d.subject = Some(format!("s{bad}"));
            let raw = compose(&d);
            assert_wire_safe(&raw);
            assert_eq!(names(&raw), expected, "{bad:?}");
            let msg = MessageParser::default().parse(&raw[..]).unwrap();
            assert_eq!(first(msg.from()).1, "alice@iwf.example.com", "{bad:?}");
            assert_eq!(msg.to().unwrap().iter().count(), 1, "{bad:?}");
            assert_eq!(first(msg.to()).1, "bob@example.org", "{bad:?}");
            assert_eq!(
                msg.body_text(0).unwrap(),
                "Hello Bob\r\nsee you\r\n",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn crlf_in_an_address_is_refused_not_encoded() {
        assert!(Mailbox::new(Some("x"), "bob@example.org\r\nBcc: eve@evil.example").is_err());
        assert!(Mailbox::new(None, "bob@example.org>, <eve@evil.example").is_err());
    }

    #[test]
    fn non_ascii_name_and_subject_are_encoded_words() {
        let mut d = draft();
        d.from = mailbox(Some("Zoë Ångström"), "zoe@iwf.example.com");
        d.subject = Some("Café ☕ ce soir ? 日本語".into());
        d.body = "Ça va ? On se voit ce soir ☕".into();
        let raw = compose(&d);
        assert_wire_safe(&raw);
        let text = String::from_utf8(raw.clone()).unwrap();
        assert!(text.contains("From: =?utf-8?B?"), "{text}");
        assert!(text.contains("Content-Transfer-Encoding: quoted-printable"));
        let msg = MessageParser::default().parse(&raw[..]).unwrap();
        assert_eq!(first(msg.from()).0.as_deref(), Some("Zoë Ångström"));
        assert_eq!(msg.subject(), Some("Café ☕ ce soir ? 日本語"));
        assert_eq!(
            msg.body_text(0).unwrap(),
            "Ça va ? On se voit ce soir ☕\r\n"
        );
    }

    #[test]
    fn very_long_subject_is_folded_and_read_back_whole() {
        let mut d = draft();
        let subject = format!(
            "{} {} ünïcödé",
            "word ".repeat(300).trim(),
            "x".repeat(1500)
        );
        d.subject = Some(subject.clone());
        let raw = compose(&d);
        assert_wire_safe(&raw);
        let msg = MessageParser::default().parse(&raw[..]).unwrap();
        assert_eq!(msg.subject(), Some(subject.as_str()));
        let ascii = "plain ".repeat(200);
        d.subject = Some(ascii.clone());
        let raw = compose(&d);
        assert_wire_safe(&raw);
        let text = String::from_utf8(raw.clone()).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap();
        assert!(head.lines().all(|l| l.len() <= 78), "{head}");
        let msg = MessageParser::default().parse(&raw[..]).unwrap();
        assert_eq!(msg.subject(), Some(ascii.trim()));
    }

    #[test]
    fn many_recipients_fold_between_addresses() {
        let mut d = draft();
        d.to = (0..30)
            .map(|i| mailbox(Some(&format!("User {i}")), &format!("user{i}@example.org")))
            .collect();
        let raw = compose(&d);
        assert_wire_safe(&raw);
        let msg = MessageParser::default().parse(&raw[..]).unwrap();
        let to = msg.to().unwrap();
        assert_eq!(to.iter().count(), 30);
        assert_eq!(
            to.iter().nth(29).unwrap().address(),
            Some("user29@example.org")
        );
        assert_eq!(to.iter().nth(29).unwrap().name(), Some("User 29"));
    }

    #[test]
    fn display_name_in_to_cannot_add_a_cc() {
        let mut d = draft();
        d.to = vec![mailbox(Some("To: x\r\nCc: y"), "bob@example.org")];
        let raw = compose(&d);
        let hs = names(&raw);
        assert_eq!(hs.iter().filter(|n| *n == "cc").count(), 0);
        let msg = MessageParser::default().parse(&raw[..]).unwrap();
        assert_eq!(first(msg.to()).0.as_deref(), Some("To: x Cc: y"));
    }
}
