//! An inbound e-mail in, the facts the gateway needs out: addresses, the ids correlation
//! works with, the mail-loop headers, the cleaned reply text and the attachments.
//! mail-parser (0.11) does the RFC 5322/2045-2049/2047/2231 decoding, charsets
//! (ISO-8859-x, windows-125x, ISO-2022-JP, ...) and transfer encodings.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use mail_parser::{
    Address, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

use super::classify::{Kind, classify};
use super::clean::{Cleaned, clean_html_reply, clean_reply};
use super::flowed;
use super::report::{self, Report};

/// Why a message could not be parsed at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("the message is empty")]
    Empty,
    #[error("no RFC 5322 header fields found")]
    NoHeaders,
}

/// A mailbox as written in a header: display name (RFC 2047 decoded) and address.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InboundAddress {
    pub name: Option<String>,
    pub address: String,
}

/// The raw mail-loop facts (RFC 3834, RFC 2076, RFC 2919, Exchange), unfolded and trimmed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LoopHeaders {
    pub auto_submitted: Option<String>,
    pub precedence: Option<String>,
    pub x_autoreply: Option<String>,
    pub x_autorespond: Option<String>,
    pub list_id: Option<String>,
    pub x_auto_response_suppress: Option<String>,
    /// X-MS-Exchange-Inbox-Rules-Loop: Exchange's mark on mail its rules (and OOF) sent.
    pub exchange_inbox_rules_loop: Option<String>,
    /// Return-Path as written by a delivering MTA (RFC 5321 4.4); `<>` is a null sender.
    pub return_path: Option<String>,
    /// Other vacation-style headers present: (name as written, value).
    pub vacation: Vec<(String, String)>,
}

/// Which body the reply text came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BodySource {
    /// text/plain (RFC 2046), preferred over HTML.
    Plain,
    /// text/plain; format=flowed (RFC 3676), unflowed before cleaning.
    FlowedPlain,
    /// text/html, converted to text: the mail had no text/plain.
    Html,
    /// No text body at all.
    #[default]
    None,
}

/// An attached (or inline) non-body part.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Attachment {
    /// Content-Disposition filename, else Content-Type name (RFC 2183, RFC 2231 decoded).
    pub file_name: Option<String>,
    /// "type/subtype", lower-cased.
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: usize,
    /// The decoded content.
    pub bytes: Vec<u8>,
    /// Content-Disposition: inline, or no disposition (an image shown in the body).
    pub inline: bool,
}

/// Everything the gateway needs from one inbound e-mail.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InboundMail {
    pub from: Option<InboundAddress>,
    pub sender: Option<InboundAddress>,
    pub reply_to: Vec<InboundAddress>,
    pub to: Vec<InboundAddress>,
    pub cc: Vec<InboundAddress>,
    /// Message-ID without `<>`.
    pub message_id: Option<String>,
    /// In-Reply-To msg-ids without `<>`, in order.
    pub in_reply_to: Vec<String>,
    /// References msg-ids without `<>`, in order.
    pub references: Vec<String>,
    pub date: Option<DateTime<FixedOffset>>,
    pub subject: Option<String>,
    pub loop_headers: LoopHeaders,
    /// The top-level Content-Type, "type/subtype" lower-cased (text/plain when absent).
    pub content_type: String,
    pub body_source: BodySource,
    /// The cleaned reply text (see `clean`).
    pub reply: Cleaned,
    pub attachments: Vec<Attachment>,
    /// The machine-readable parts of a multipart/report, if the mail is one.
    pub report: Option<Report>,
}

impl InboundMail {
    /// Classifies this mail; `null_reverse_path` is true when `MAIL FROM:<>` was sent.
    pub fn kind(&self, null_reverse_path: bool) -> Kind {
        classify(self, null_reverse_path)
    }

    /// Every msg-id this mail refers to (In-Reply-To first, then References from the
    /// newest), without duplicates: the order correlation tries them in.
    pub fn referenced_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        for id in self.in_reply_to.iter().chain(self.references.iter().rev()) {
            if !ids.contains(&id.as_str()) {
                ids.push(id);
            }
        }
        ids
    }
}

/// Parses a raw RFC 5322 message. Never panics, whatever the bytes.
pub fn parse(raw: &[u8]) -> Result<InboundMail, ParseError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or(ParseError::NoHeaders)?;
    if msg.headers().is_empty() {
        return Err(ParseError::NoHeaders);
    }
    let (body_source, reply) = reply_text(&msg);
    Ok(InboundMail {
        from: msg.from().and_then(|a| addresses(a).into_iter().next()),
        sender: msg.sender().and_then(|a| addresses(a).into_iter().next()),
        reply_to: msg.reply_to().map(addresses).unwrap_or_default(),
        to: msg.to().map(addresses).unwrap_or_default(),
        cc: msg.cc().map(addresses).unwrap_or_default(),
        message_id: msg
            .message_id()
            .map(report::normalise_msg_id)
            .filter(|id| !id.is_empty()),
        in_reply_to: msg_ids(msg.in_reply_to()),
        references: msg_ids(msg.references()),
        date: msg.date().and_then(date),
        subject: msg.subject().map(str::to_string),
        loop_headers: loop_headers(&msg),
        content_type: content_type(msg.root_part()),
        body_source,
        reply,
        attachments: msg.attachments().filter_map(attachment).collect(),
        report: report_of(&msg),
    })
}

fn addresses(address: &Address<'_>) -> Vec<InboundAddress> {
    let addrs: Vec<&mail_parser::Addr<'_>> = match address {
        Address::List(list) => list.iter().collect(),
        Address::Group(groups) => groups.iter().flat_map(|g| g.addresses.iter()).collect(),
    };
    addrs
        .into_iter()
        .filter_map(|a| {
            let address = a.address.as_deref()?.trim().to_string();
            let name = a
                .name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string);
            (!address.is_empty()).then_some(InboundAddress { name, address })
        })
        .collect()
}

fn msg_ids(value: &HeaderValue<'_>) -> Vec<String> {
    let raw: Vec<&str> = match value {
        HeaderValue::Text(t) => vec![t.as_ref()],
        HeaderValue::TextList(list) => list.iter().map(|t| t.as_ref()).collect(),
        _ => Vec::new(),
    };
    raw.into_iter()
        .map(report::normalise_msg_id)
        .filter(|id| !id.is_empty())
        .collect()
}

/// RFC 5322 3.3 date-time to chrono; an impossible date is no date.
fn date(dt: &mail_parser::DateTime) -> Option<DateTime<FixedOffset>> {
    let secs = (i32::from(dt.tz_hour) * 3600 + i32::from(dt.tz_minute) * 60)
        * if dt.tz_before_gmt { -1 } else { 1 };
    let offset = FixedOffset::east_opt(secs)?;
    let naive =
        NaiveDate::from_ymd_opt(i32::from(dt.year), u32::from(dt.month), u32::from(dt.day))?
            .and_hms_opt(
                u32::from(dt.hour),
                u32::from(dt.minute),
                u32::from(dt.second),
            )?;
    offset.from_local_datetime(&naive).single()
}

/// A header's raw value, unfolded (RFC 5322 2.2.3) and trimmed; the first occurrence.
fn raw_header(msg: &Message<'_>, name: &str) -> Option<String> {
    msg.headers_raw()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.replace("\r\n", "").replace('\n', "").trim().to_string())
}

/// Vacation-style headers beyond the ones `LoopHeaders` names (Sieve/Zimbra/cPanel/
/// FirstClass autoresponders).
const VACATION_HEADERS: &[&str] = &[
    "X-Autogenerated",
    "X-AutoReply-From",
    "X-Mail-Autoreply",
    "X-Vacation",
];

fn loop_headers(msg: &Message<'_>) -> LoopHeaders {
    LoopHeaders {
        auto_submitted: raw_header(msg, "Auto-Submitted"),
        // X-Precedence: the same field as some list managers and CRMs spell it.
        precedence: raw_header(msg, "Precedence").or_else(|| raw_header(msg, "X-Precedence")),
        x_autoreply: raw_header(msg, "X-Autoreply"),
        x_autorespond: raw_header(msg, "X-Autorespond"),
        list_id: raw_header(msg, "List-Id"),
        x_auto_response_suppress: raw_header(msg, "X-Auto-Response-Suppress"),
        exchange_inbox_rules_loop: raw_header(msg, "X-MS-Exchange-Inbox-Rules-Loop"),
        return_path: raw_header(msg, "Return-Path"),
        vacation: VACATION_HEADERS
            .iter()
            .filter_map(|n| raw_header(msg, n).map(|v| (n.to_string(), v)))
            .collect(),
    }
}

fn content_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "text/plain".to_string(),
    }
}

fn is_plain(part: &MessagePart<'_>) -> bool {
    part.content_type().is_none_or(|ct| {
        ct.ctype().eq_ignore_ascii_case("text")
            && ct.subtype().is_none_or(|s| s.eq_ignore_ascii_case("plain"))
    })
}

/// RFC 2046 5.1.4 and client practice: text/plain preferred over text/html; every
/// inline text/plain part of the body joined (Apple Mail splits the text around an
/// inline image); HTML only when no plain text has any content.
fn reply_text(msg: &Message<'_>) -> (BodySource, Cleaned) {
    let mut plain: Vec<String> = Vec::new();
    let mut flowed_seen = false;
    for part in msg.text_body.iter().filter_map(|&id| msg.part(id)) {
        if let PartType::Text(text) = &part.body
            && is_plain(part)
        {
            let ct = part.content_type();
            let is_flowed = ct
                .and_then(|c| c.attribute("format"))
                .is_some_and(|f| f.eq_ignore_ascii_case("flowed"));
            if is_flowed {
                let delsp = ct
                    .and_then(|c| c.attribute("delsp"))
                    .is_some_and(|d| d.eq_ignore_ascii_case("yes"));
                flowed_seen = true;
                plain.push(flowed::decode(text, delsp));
            } else {
                plain.push(text.to_string());
            }
        }
    }
    if plain.iter().any(|t| !t.trim().is_empty()) {
        let source = if flowed_seen {
            BodySource::FlowedPlain
        } else {
            BodySource::Plain
        };
        return (source, clean_reply(&plain.join("\n")));
    }
    let html: Vec<&str> = msg
        .html_body
        .iter()
        .filter_map(|&id| match &msg.part(id)?.body {
            PartType::Html(h) => Some(h.as_ref()),
            _ => None,
        })
        .collect();
    if !html.is_empty() {
        return (BodySource::Html, clean_html_reply(&html.join("<br>")));
    }
    (BodySource::None, clean_reply(&plain.join("\n")))
}

fn attachment(part: &MessagePart<'_>) -> Option<Attachment> {
    if matches!(part.body, PartType::Multipart(_)) {
        return None;
    }
    let bytes = part.contents().to_vec();
    let inline = part
        .content_disposition()
        .is_none_or(|d| !d.is_attachment());
    Some(Attachment {
        file_name: part.attachment_name().map(str::to_string),
        content_type: content_type(part),
        size: bytes.len(),
        bytes,
        inline,
    })
}

/// RFC 6522: the report parts of a top-level multipart/report.
fn report_of(msg: &Message<'_>) -> Option<Report> {
    let root = msg.root_part();
    let ct = root.content_type()?;
    if !ct.ctype().eq_ignore_ascii_case("multipart")
        || !ct
            .subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    {
        return None;
    }
    let mut report = Report {
        report_type: ct
            .attribute("report-type")
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
        ..Report::default()
    };
    for part in root
        .sub_parts()
        .unwrap_or(&[])
        .iter()
        .filter_map(|&id| msg.part(id))
    {
        let text = || String::from_utf8_lossy(part.contents()).into_owned();
        match content_type(part).as_str() {
            // RFC 3464 2.1, RFC 6533 6.2 (the UTF-8 form).
            "message/delivery-status" | "message/global-delivery-status" => {
                report.recipients.extend(report::delivery_status(&text()));
            }
            // RFC 8098 3.1, RFC 6533 6.3.
            "message/disposition-notification" | "message/global-disposition-notification" => {
                let (id, disposition) = report::disposition_notification(&text());
                report.original_message_ids.extend(id);
                report.disposition = disposition;
            }
            // RFC 6522 4: the returned message, whole or its header only.
            "message/rfc822" | "message/global" => {
                let id = match &part.body {
                    PartType::Message(m) => m.message_id().map(report::normalise_msg_id),
                    _ => report::message_id_in_headers(&text()),
                };
                report.original_message_ids.extend(id);
            }
            // RFC 6533 6.4: message/global-headers is the UTF-8 form.
            "text/rfc822-headers" | "message/rfc822-headers" | "message/global-headers" => {
                report
                    .original_message_ids
                    .extend(report::message_id_in_headers(&text()));
            }
            _ => {}
        }
    }
    // One id per returned message, in the order found (an MDN names it twice).
    let mut unique: Vec<String> = Vec::new();
    for id in report.original_message_ids.drain(..) {
        if !id.is_empty() && !unique.contains(&id) {
            unique.push(id);
        }
    }
    report.original_message_ids = unique;
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &str = "From: \"Bob Example\" <bob@example.net>\r\n\
Sender: Bob's Assistant <assistant@example.net>\r\n\
Reply-To: bob.private@example.net\r\n\
To: Alice <alice.cpm@iwf.example.com>, team: carol@example.net, dave@example.net;\r\n\
Cc: =?UTF-8?Q?Chlo=C3=A9?= <chloe@example.fr>\r\n\
Subject: =?UTF-8?B?UmU6IGNhZsOp?=\r\n\
Date: Thu, 26 Nov 2026 16:20:11 -0130\r\n\
Message-ID: <reply-1@example.net>\r\n\
In-Reply-To: <inv-2@iwf.example.com>\r\n\
References: <inv-1@iwf.example.com>\r\n <inv-2@iwf.example.com>\r\n\
Auto-Submitted: no\r\n\
List-Id: Chat <chat.example.net>\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
ok\r\n";

    #[test]
    fn addresses_names_and_groups() {
        let mail = parse(REPLY.as_bytes()).unwrap();
        let from = mail.from.as_ref().unwrap();
        assert_eq!(
            (from.name.as_deref(), from.address.as_str()),
            (Some("Bob Example"), "bob@example.net")
        );
        assert_eq!(
            mail.sender.as_ref().unwrap().address,
            "assistant@example.net"
        );
        assert_eq!(mail.reply_to[0].address, "bob.private@example.net");
        let to: Vec<&str> = mail.to.iter().map(|a| a.address.as_str()).collect();
        assert_eq!(
            to,
            [
                "alice.cpm@iwf.example.com",
                "carol@example.net",
                "dave@example.net"
            ]
        );
        assert_eq!(mail.cc[0].name.as_deref(), Some("Chloé"));
    }

    #[test]
    fn ids_are_normalised_without_angle_brackets() {
        let mail = parse(REPLY.as_bytes()).unwrap();
        assert_eq!(mail.message_id.as_deref(), Some("reply-1@example.net"));
        assert_eq!(mail.in_reply_to, ["inv-2@iwf.example.com"]);
        assert_eq!(
            mail.references,
            ["inv-1@iwf.example.com", "inv-2@iwf.example.com"]
        );
        assert_eq!(
            mail.referenced_ids(),
            ["inv-2@iwf.example.com", "inv-1@iwf.example.com"]
        );
    }

    #[test]
    fn date_keeps_its_offset() {
        let mail = parse(REPLY.as_bytes()).unwrap();
        assert_eq!(mail.date.unwrap().to_rfc3339(), "2026-11-26T16:20:11-01:30");
    }

    #[test]
    fn impossible_date_is_no_date() {
        let raw = "From: a@b\r\nDate: Thu, 31 Feb 2026 25:61:00 +0000\r\n\r\nx";
        assert_eq!(parse(raw.as_bytes()).unwrap().date, None);
    }

    #[test]
    fn subject_and_loop_facts() {
        let mail = parse(REPLY.as_bytes()).unwrap();
        assert_eq!(mail.subject.as_deref(), Some("Re: café"));
        assert_eq!(mail.loop_headers.auto_submitted.as_deref(), Some("no"));
        assert_eq!(
            mail.loop_headers.list_id.as_deref(),
            Some("Chat <chat.example.net>")
        );
        assert_eq!(mail.content_type, "text/plain");
        assert_eq!(mail.reply.text, "ok");
    }

    #[test]
    fn folded_loop_header_is_unfolded() {
        let raw = "From: a@b\r\nAuto-Submitted: auto-replied;\r\n owner-email=\"a@b\"\r\n\r\nx";
        let mail = parse(raw.as_bytes()).unwrap();
        assert_eq!(
            mail.loop_headers.auto_submitted.as_deref(),
            Some("auto-replied; owner-email=\"a@b\"")
        );
        assert!(!mail.kind(false).may_become_chat());
    }

    #[test]
    fn plain_is_preferred_over_html() {
        let raw = "From: a@b\r\nContent-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--x\r\nContent-Type: text/plain\r\n\r\nplain\r\n--x--\r\n";
        let mail = parse(raw.as_bytes()).unwrap();
        assert_eq!(
            (mail.body_source, mail.reply.text.as_str()),
            (BodySource::Plain, "plain")
        );
    }

    #[test]
    fn blank_plain_part_gives_way_to_html() {
        let raw = "From: a@b\r\nContent-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\n \r\n--x\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--x--\r\n";
        let mail = parse(raw.as_bytes()).unwrap();
        assert_eq!(
            (mail.body_source, mail.reply.text.as_str()),
            (BodySource::Html, "html")
        );
    }

    #[test]
    fn global_dsn_with_global_headers_is_read() {
        let raw = "From: MAILER-DAEMON@mx.example.jp\r\n\
Content-Type: multipart/report; report-type=global-delivery-status; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n配信できませんでした\r\n\
--b\r\nContent-Type: message/global-delivery-status\r\n\r\n\
Reporting-MTA: dns; mx.example.jp\r\n\r\n\
Final-Recipient: utf-8; 太郎@example.jp\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
--b\r\nContent-Type: message/global-headers\r\n\r\n\
Message-ID: <inv-9@iwf.example.com>\r\nSubject: x\r\n\r\n\
--b--\r\n";
        let mail = parse(raw.as_bytes()).unwrap();
        assert_eq!(
            mail.kind(true),
            Kind::Bounce {
                original_message_ids: vec!["inv-9@iwf.example.com".into()],
                status: Some("5.1.1".into()),
                action: Some("failed".into()),
            }
        );
        assert_eq!(mail.reply.text, "配信できませんでした");
    }

    #[test]
    fn report_ids_are_unique() {
        let raw = "From: a@b\r\nContent-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nread\r\n\
--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <x@y>\r\n\r\n\
--b\r\nContent-Type: message/disposition-notification\r\n\r\nOriginal-Message-ID: <x@y>\r\nDisposition: manual-action/MDN-sent-manually; displayed\r\n\r\n\
--b--\r\n";
        let report = parse(raw.as_bytes()).unwrap().report.unwrap();
        assert_eq!(report.original_message_ids, ["x@y"]);
        assert_eq!(
            report.disposition.as_deref(),
            Some("manual-action/MDN-sent-manually; displayed")
        );
    }

    #[test]
    fn empty_input_is_an_error() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b" \r\n"), Err(ParseError::Empty));
    }

    #[test]
    fn body_without_a_header_is_still_read() {
        // mail-parser reads a header-less message as a body; the gateway gets its text and
        // no From, and correlation refuses it.
        match parse(b"just text") {
            Ok(mail) => assert_eq!(mail.from, None),
            Err(e) => assert_eq!(e, ParseError::NoHeaders),
        }
    }
}
