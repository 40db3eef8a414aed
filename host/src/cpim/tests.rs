//! message/cpim tests: RFC 3862 section 6's example, RFC 5438's IMDN headers, the exact
//! bytes built, DateTime with offsets, and no line injection from values.

use super::*;

/// RFC 3862 section 6 (with its outer MIME header), CRLF line ends.
const RFC3862_EXAMPLE: &str = "Content-type: Message/CPIM\r\n\
\r\n\
From: MR SANDERS <im:piglet@100akerwood.com>\r\n\
To: Depressed Donkey <im:eeyore@100akerwood.com>\r\n\
DateTime: 2000-12-13T13:40:00-08:00\r\n\
Subject: the weather will be fine today\r\n\
Subject:;lang=fr beau temps prevu pour aujourd'hui\r\n\
NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\n\
Require: MyFeatures.VitalMessageOption\r\n\
MyFeatures.VitalMessageOption: Confirmation-requested\r\n\
MyFeatures.WackyMessageOption: Use-silly-font\r\n\
\r\n\
Content-type: text/xml; charset=utf-8\r\n\
Content-ID: <1234567890@foo.com>\r\n\
\r\n\
<body>\r\n\
Here is the text of my message.\r\n\
</body>\r\n";

/// RFC 5438 section 7.1.1-style IMDN request, as an MSRP body (no outer header).
const IMDN_EXAMPLE: &str = "From: Alice <im:alice@example.com>\r\n\
To: Bob <im:bob@example.com>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\n\
imdn.Message-ID: 34jk324j\r\n\
DateTime: 2006-04-04T12:16:49-05:00\r\n\
imdn.Disposition-Notification: positive-delivery, display\r\n\
\r\n\
Content-type: text/plain\r\n\
Content-length: 11\r\n\
\r\n\
Hello World";

#[test]
fn rfc_3862_s6_example_parses() {
    let m = Message::parse(RFC3862_EXAMPLE.as_bytes()).unwrap();
    assert_eq!(
        m.from,
        Some(Address::new(
            Some("MR SANDERS"),
            "im:piglet@100akerwood.com"
        ))
    );
    assert_eq!(
        m.to,
        vec![Address::new(
            Some("Depressed Donkey"),
            "im:eeyore@100akerwood.com"
        )]
    );
    let t = m.date_time.unwrap();
    assert_eq!(t.offset().local_minus_utc(), -8 * 3600);
    assert_eq!(format_date_time(&t), "2000-12-13T13:40:00-08:00");
    assert_eq!(
        m.subject,
        vec![
            (None, "the weather will be fine today".into()),
            (
                Some("fr".into()),
                "beau temps prevu pour aujourd'hui".into()
            ),
        ]
    );
    assert_eq!(
        m.ns,
        vec![("MyFeatures".into(), "mid:MessageFeatures@id.foo.com".into())]
    );
    assert_eq!(m.require, vec!["MyFeatures.VitalMessageOption".to_string()]);
    assert_eq!(
        m.ns_field("mid:MessageFeatures@id.foo.com", "WackyMessageOption"),
        Some("Use-silly-font")
    );
    assert_eq!(m.content_type, "text/xml; charset=utf-8");
    assert_eq!(
        m.content_headers,
        vec![("Content-ID".into(), "<1234567890@foo.com>".into())]
    );
    assert_eq!(
        m.body,
        b"<body>\r\nHere is the text of my message.\r\n</body>\r\n"
    );
    let built = String::from_utf8(m.to_bytes()).unwrap();
    assert!(built.contains("\r\nSubject:;lang=fr beau temps prevu pour aujourd'hui\r\n"));
    // Built and parsed again: the same message.
    assert_eq!(Message::parse(&m.to_mime_bytes()).unwrap(), m);
    assert_eq!(Message::parse(&m.to_bytes()).unwrap(), m);
}

#[test]
fn rfc_5438_imdn_fields() {
    let m = Message::parse(IMDN_EXAMPLE.as_bytes()).unwrap();
    assert_eq!(m.imdn_message_id(), Some("34jk324j"));
    assert_eq!(
        m.ns_field(IMDN_NS, "Disposition-Notification"),
        Some("positive-delivery, display")
    );
    assert_eq!(m.body, b"Hello World");
    assert!(m.content_length);
    let t = m.date_time.unwrap();
    assert_eq!(t.offset().local_minus_utc(), -5 * 3600);
    assert_eq!(t.timestamp(), 1_144_171_009);
    assert_eq!(Message::parse(&m.to_bytes()).unwrap(), m);
}

#[test]
fn imdn_prefix_is_whatever_the_sender_declared() {
    let text = "NS: x <urn:ietf:params:imdn>\r\nx.Message-ID: abc\r\n\r\nContent-Type: text/plain\r\n\r\nhi";
    let m = Message::parse(text.as_bytes()).unwrap();
    assert_eq!(m.imdn_message_id(), Some("abc"));
    let other = "NS: x <urn:other>\r\nx.Message-ID: abc\r\n\r\nContent-Type: text/plain\r\n\r\nhi";
    assert_eq!(
        Message::parse(other.as_bytes()).unwrap().imdn_message_id(),
        None
    );
}

#[test]
fn build_is_byte_exact() {
    let mut m = Message::text(
        Address::new(Some("Alice"), "sip:alice@example.com"),
        Address::new(None, "tel:+15551234567"),
        "Hello",
    );
    m.date_time = Some(parse_date_time("2026-11-26T12:16:49.250+01:00").unwrap());
    m.ns.push(("imdn".into(), IMDN_NS.into()));
    m.other.push(("imdn.Message-ID".into(), "Msg123".into()));
    m.content_length = true;
    let want = "From: \"Alice\" <sip:alice@example.com>\r\n\
To: <tel:+15551234567>\r\n\
DateTime: 2026-11-26T12:16:49.250+01:00\r\n\
NS: imdn <urn:ietf:params:imdn>\r\n\
imdn.Message-ID: Msg123\r\n\
\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 5\r\n\
\r\n\
Hello";
    assert_eq!(String::from_utf8(m.to_bytes()).unwrap(), want);
    assert_eq!(Message::parse(want.as_bytes()).unwrap(), m);
}

#[test]
fn date_time_forms() {
    for (s, printed) in [
        ("2006-04-04T12:16:49-05:00", "2006-04-04T12:16:49-05:00"),
        ("2006-04-04T17:16:49Z", "2006-04-04T17:16:49Z"),
        ("2006-04-04T17:16:49+00:00", "2006-04-04T17:16:49Z"),
        (
            "2006-04-04T17:16:49.5+05:30",
            "2006-04-04T17:16:49.500+05:30",
        ),
    ] {
        assert_eq!(
            format_date_time(&parse_date_time(s).unwrap()),
            printed,
            "{s}"
        );
    }
    assert!(parse_date_time("Tue, 4 Apr 2006 12:16:49 -0500").is_err());
    let bad = "DateTime: yesterday\r\n\r\nContent-Type: text/plain\r\n\r\n";
    assert!(matches!(
        Message::parse(bad.as_bytes()),
        Err(Error::Value {
            field: "DateTime",
            ..
        })
    ));
}

#[test]
fn addresses_with_and_without_display_names() {
    for (s, name, uri) in [
        (
            "\"Alice\" <sip:alice@example.com>",
            Some("Alice"),
            "sip:alice@example.com",
        ),
        ("Alice Smith <im:a@b>", Some("Alice Smith"), "im:a@b"),
        ("<sip:bob@example.com>", None, "sip:bob@example.com"),
        ("\"A \\\"q\\\" B\" <sip:x@y>", Some("A \"q\" B"), "sip:x@y"),
    ] {
        let a = Address::parse(s).unwrap();
        assert_eq!(a, Address::new(name, uri), "{s}");
        assert_eq!(Address::parse(&a.to_string()).unwrap(), a);
    }
    for bad in [
        "sip:bob@example.com",
        "<>",
        "\"Alice <sip:a@b>",
        "Bob <sip:a@b",
    ] {
        assert!(Address::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn build_never_injects_lines() {
    let mut m = Message::text(
        Address::new(
            Some("Eve\r\nTo: <sip:victim@x>"),
            "sip:eve@x>\r\nInjected: 1",
        ),
        Address::new(None, "sip:bob@x"),
        "body\r\n\r\nstays body",
    );
    m.subject
        .push((Some("en\r\nX: y".into()), "s\r\nX-Injected: 1".into()));
    m.other
        .push(("Bad\r\nName".into(), "v\nX-Injected: 2".into()));
    m.content_type = "text/plain\r\n\r\nfake body".into();
    let bytes = m.to_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        !head
            .lines()
            .any(|l| l.starts_with("X-Injected") || l.starts_with("Injected"))
    );
    assert_eq!(head.lines().filter(|l| l.starts_with("To:")).count(), 1);
    let (mime, content) = body.split_once("\r\n\r\n").unwrap();
    assert_eq!(mime.lines().count(), 1);
    assert_eq!(content, "body\r\n\r\nstays body");
    let back = Message::parse(&bytes).unwrap();
    assert_eq!(back.to.len(), 1);
    assert_eq!(back.body, b"body\r\n\r\nstays body");
}

#[test]
fn malformed_bodies() {
    assert_eq!(
        Message::parse(b"From: <sip:a@b>\r\n"),
        Err(Error::Unterminated("CPIM"))
    );
    assert_eq!(
        Message::parse(b"From: <sip:a@b>\r\n\r\nContent-ID: <x>\r\n\r\nhi"),
        Err(Error::NoContentType)
    );
    assert_eq!(
        Message::parse(b"\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nhi"),
        Err(Error::ContentLength {
            declared: 9,
            available: 2
        })
    );
    assert!(matches!(
        Message::parse(b"no colon here\r\n\r\n"),
        Err(Error::HeaderLine { block: "CPIM", .. })
    ));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the values, the built header blocks have exactly one line per field.
        #[test]
        fn build_has_one_line_per_field(
            name in any::<String>(),
            uri in any::<String>(),
            subject in any::<String>(),
            other in any::<(String, String)>(),
            content_type in any::<String>(),
            body in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut m = Message {
                from: Some(Address::new(Some(&name), &uri)),
                subject: vec![(None, subject)],
                other: vec![other],
                content_type,
                content_length: true,
                body: body.clone(),
                ..Message::default()
            };
            m.to.push(Address::new(None, &uri));
            let bytes = m.to_bytes();
            let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let cpim = &bytes[..end + 2];
            prop_assert_eq!(cpim.split(|&b| b == b'\n').count() - 1, 4);
            prop_assert_eq!(cpim.iter().filter(|&&b| b == b'\r').count(), 4);
            let rest = &bytes[end + 4..];
            let end2 = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            prop_assert_eq!(rest[..end2 + 2].split(|&b| b == b'\n').count() - 1, 2);
            prop_assert_eq!(&rest[end2 + 4..], body.as_slice());
        }

        /// Printable values survive build then parse unchanged.
        #[test]
        fn build_then_parse_round_trips(
            name in "[ -~]{0,20}",
            uri in "[a-z]{1,5}:[!-;=?-~]{1,20}",
            subject in "[!-~]([ -~]{0,30}[!-~])?",
            text in prop::collection::vec(any::<u8>(), 0..200),
            secs in 0i64..4_000_000_000,
            offset_min in -720i32..=720,
        ) {
            let offset = FixedOffset::east_opt(offset_min * 60).unwrap();
            let m = Message {
                from: Some(Address::new((!name.trim().is_empty()).then_some(name.trim()), &uri)),
                to: vec![Address::new(None, &uri)],
                date_time: Some(DateTime::from_timestamp(secs, 0).unwrap().with_timezone(&offset)),
                subject: vec![(None, subject)],
                ns: vec![("imdn".into(), IMDN_NS.into())],
                other: vec![("imdn.Message-ID".into(), "abc123".into())],
                content_type: "text/plain".into(),
                body: text,
                ..Message::default()
            };
            prop_assert_eq!(Message::parse(&m.to_bytes()).unwrap(), m);
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = Message::parse(&bytes);
        }
    }
}
