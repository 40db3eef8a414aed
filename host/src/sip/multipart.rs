//! The body of a CPM INVITE: a single SDP offer, or a multipart/mixed body (RFC 2046 5.1)
//! with the SDP offer and, for a group session, a URI-list (`application/resource-lists+xml`,
//! RFC 4826, with RFC 5366 `copyControl`). The URI-list is read by a small tolerant XML scan:
//! elements by local name, attributes, entities; no DTDs, no external anything.

use super::message::{ParseError, sanitize};
use crate::cpim;
use crate::policy::world::{CopyControl, Recipient};
use chrono::{DateTime, FixedOffset};

/// One body part: its header fields (full names as sent, values trimmed), its media type
/// (`type/subtype`, lower-cased, without parameters) and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub media_type: String,
    pub body: Vec<u8>,
}

/// A media type and its parameters (names lower-cased, values unquoted).
pub fn media_type(content_type: &str) -> (String, Vec<(String, String)>) {
    let mut it = content_type.split(';');
    let media = it.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = it
        .filter_map(|p| p.split_once('='))
        .map(|(n, v)| {
            (
                n.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            )
        })
        .collect();
    (media, params)
}

fn bad(reason: impl Into<String>) -> ParseError {
    ParseError {
        status: 400,
        reason: sanitize(&reason.into()),
        partial: None,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a multipart body at its boundary (RFC 2046 5.1.1): preamble and epilogue dropped,
/// the CRLF before each delimiter belongs to the delimiter.
pub fn split(content_type: &str, body: &[u8]) -> Result<Vec<Part>, ParseError> {
    let (media, params) = media_type(content_type);
    if !media.starts_with("multipart/") {
        return Err(bad(format!("not a multipart body: {media}")));
    }
    let boundary = params
        .iter()
        .find(|(n, _)| n == "boundary")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| bad("multipart body without boundary"))?;
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(bad("multipart boundary empty or longer than 70 characters"));
    }
    let dash = format!("--{boundary}").into_bytes();
    let delim = format!("\r\n--{boundary}").into_bytes();
    // The first delimiter may open the body (no preamble) or follow a CRLF.
    let mut pos = if body.starts_with(&dash) {
        dash.len()
    } else {
        find(body, &delim).ok_or_else(|| bad("multipart boundary not found in body"))? + delim.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            if parts.is_empty() {
                return Err(bad("multipart body without any part"));
            }
            return Ok(parts);
        }
        // Transport padding, then CRLF.
        let pad = rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if !rest[pad..].starts_with(b"\r\n") {
            return Err(bad("malformed multipart delimiter line"));
        }
        let start = pos + pad + 2;
        let len = find(&body[start..], &delim)
            .ok_or_else(|| bad("multipart body without closing boundary"))?;
        parts.push(parse_part(&body[start..start + len])?);
        pos = start + len + delim.len();
    }
}

fn parse_part(part: &[u8]) -> Result<Part, ParseError> {
    let (head, body) = if part.starts_with(b"\r\n") {
        (&b""[..], &part[2..])
    } else {
        let end = find(part, b"\r\n\r\n").ok_or_else(|| bad("body part without an empty line"))?;
        (&part[..end], &part[end + 4..])
    };
    let head = std::str::from_utf8(head).map_err(|_| bad("body part header not UTF-8"))?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            let (_, value) = headers
                .last_mut()
                .ok_or_else(|| bad("malformed body part header"))?;
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("malformed body part header"))?;
        headers.push((name.trim().to_string(), sanitize(value).trim().to_string()));
    }
    let media_type = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Type") || n.eq_ignore_ascii_case("c"))
        .map(|(_, v)| media_type(v).0)
        .unwrap_or_else(|| "text/plain".to_string());
    Ok(Part {
        headers,
        media_type,
        body: body.to_vec(),
    })
}

/// What an INVITE body carries for the gateway.
#[derive(Debug, Clone, Default)]
pub struct InviteBody {
    /// The SDP offer.
    pub sdp: Option<Vec<u8>>,
    /// The URI-list of a group invitation, in body order.
    pub recipients: Option<Vec<Recipient>>,
    /// The DateTime of a `message/cpim` part (the CPM user's first message, when the
    /// client sends one with the INVITE): AA2's first choice for the mail's Date.
    pub cpim_date_time: Option<DateTime<FixedOffset>>,
}

/// Reads the body of an INVITE by its Content-Type: `application/sdp`, or multipart/mixed
/// with an `application/sdp` part, an optional `application/resource-lists+xml` part and an
/// optional `message/cpim` part. An empty body is an INVITE without offer. Other types: 415.
pub fn invite_body(content_type: Option<&str>, body: &[u8]) -> Result<InviteBody, ParseError> {
    if body.is_empty() {
        return Ok(InviteBody::default());
    }
    let Some(content_type) = content_type else {
        return Err(bad("body without Content-Type"));
    };
    let (media, _) = media_type(content_type);
    let parts = match media.as_str() {
        "application/sdp" => {
            return Ok(InviteBody {
                sdp: Some(body.to_vec()),
                ..InviteBody::default()
            });
        }
        "multipart/mixed" => split(content_type, body)?,
        other => {
            return Err(ParseError::new(
                415,
                format!("unsupported body type {other}"),
            ));
        }
    };
    let mut out = InviteBody::default();
    let mut cpim_seen = false;
    for part in parts {
        match part.media_type.as_str() {
            "application/sdp" if out.sdp.is_none() => out.sdp = Some(part.body),
            "application/resource-lists+xml" if out.recipients.is_none() => {
                out.recipients =
                    Some(resource_list(&part.body).map_err(|e| bad(format!("bad URI-list: {e}")))?);
            }
            // AA2 Date row: the CPIM DateTime (RFC 3862 5.4) of the message sent with the
            // INVITE. Only its date is the gateway's: the invitation body is the policy's.
            "message/cpim" if !cpim_seen => {
                cpim_seen = true;
                let message = cpim::Message::parse(&part.body)
                    .map_err(|e| bad(format!("bad message/cpim part: {e}")))?;
                out.cpim_date_time = message.date_time;
            }
            "application/sdp" | "application/resource-lists+xml" | "message/cpim" => {
                return Err(bad(format!("two {} parts", part.media_type)));
            }
            _ => {} // Other parts are not for the gateway.
        }
    }
    if out.sdp.is_none() {
        return Err(bad("multipart body without an application/sdp part"));
    }
    Ok(out)
}

/// One XML tag as the scanner saw it.
enum Tag<'a> {
    Open {
        local: &'a str,
        attrs: Vec<(&'a str, String)>,
        empty: bool,
    },
    Close {
        local: &'a str,
    },
}

fn local_name(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// Replaces the five XML entities and character references.
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(';').ok_or("unterminated entity")? + i;
        let entity = &rest[i + 1..end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{entity};"))?
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse_tag(inner: &str) -> Result<Tag<'_>, String> {
    if let Some(name) = inner.strip_prefix('/') {
        return Ok(Tag::Close {
            local: local_name(name.trim()),
        });
    }
    let (inner, empty) = match inner.strip_suffix('/') {
        Some(i) => (i, true),
        None => (inner, false),
    };
    let name_end = inner
        .find(|c: char| c.is_whitespace())
        .unwrap_or(inner.len());
    let name = &inner[..name_end];
    if name.is_empty() {
        return Err("empty tag name".into());
    }
    let mut attrs = Vec::new();
    let mut rest = inner[name_end..].trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("malformed attribute in <{name}>"))?;
        let attr = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next().filter(|q| *q == '"' || *q == '\'');
        let quote = quote.ok_or_else(|| format!("unquoted attribute {attr} in <{name}>"))?;
        let close = after[1..]
            .find(quote)
            .ok_or_else(|| format!("unterminated attribute {attr}"))?;
        attrs.push((local_name(attr), unescape(&after[1..1 + close])?));
        rest = after[close + 2..].trim_start();
    }
    Ok(Tag::Open {
        local: local_name(name),
        attrs,
        empty,
    })
}

/// The entries of a `resource-lists` document (RFC 4826 3.4), in document order, with their
/// `display-name` and RFC 5366 `copyControl` (default `to`).
pub fn resource_list(xml: &[u8]) -> Result<Vec<Recipient>, String> {
    let xml = std::str::from_utf8(xml).map_err(|_| "not UTF-8".to_string())?;
    let mut entries = Vec::new();
    let mut root = false;
    // The entry being read, and whether its display-name is being read.
    let mut entry: Option<Recipient> = None;
    let mut in_display_name = false;
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        if let (true, Some(e)) = (in_display_name, entry.as_mut()) {
            let text = sanitize(&unescape(text)?);
            e.display_name
                .get_or_insert_with(String::new)
                .push_str(text.trim());
        }
        rest = &rest[lt..];
        for (open, close) in [("<?", "?>"), ("<!--", "-->"), ("<!", ">")] {
            if rest.starts_with(open) {
                let end = rest.find(close).ok_or("unterminated markup")?;
                rest = &rest[end + close.len()..];
            }
        }
        if !rest.starts_with('<') || rest.starts_with("<!") || rest.starts_with("<?") {
            continue;
        }
        let gt = rest.find('>').ok_or("unterminated tag")?;
        let tag = parse_tag(rest[1..gt].trim())?;
        rest = &rest[gt + 1..];
        match tag {
            Tag::Open {
                local: "resource-lists",
                ..
            } => root = true,
            Tag::Open {
                local: "entry",
                attrs,
                empty,
            } => {
                if !root {
                    return Err("entry outside resource-lists".into());
                }
                if entry.is_some() {
                    return Err("entry inside an entry".into());
                }
                let mut uri = None;
                let mut copy = CopyControl::To;
                for (name, value) in attrs {
                    match name {
                        "uri" => uri = Some(sanitize(&value).trim().to_string()),
                        "copyControl" => {
                            copy = match value.trim() {
                                "to" => CopyControl::To,
                                "cc" => CopyControl::Cc,
                                "bcc" => CopyControl::Bcc,
                                other => return Err(format!("unknown copyControl {other:?}")),
                            }
                        }
                        _ => {}
                    }
                }
                let uri = uri.filter(|u| !u.is_empty()).ok_or("entry without uri")?;
                let recipient = Recipient {
                    uri,
                    display_name: None,
                    copy_control: copy,
                };
                if empty {
                    entries.push(recipient);
                } else {
                    entry = Some(recipient);
                }
            }
            Tag::Open {
                local: "display-name",
                empty: false,
                ..
            } if entry.is_some() => {
                in_display_name = true;
            }
            Tag::Close {
                local: "display-name",
            } => in_display_name = false,
            Tag::Close { local: "entry" } => {
                let mut recipient = entry.take().ok_or("unbalanced </entry>")?;
                recipient.display_name = recipient.display_name.filter(|n| !n.is_empty());
                entries.push(recipient);
            }
            _ => {}
        }
    }
    if !root {
        return Err("no resource-lists element".into());
    }
    if entry.is_some() {
        return Err("unterminated entry".into());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::tests::{MSRP_SDP, cpm_invite};
    use crate::sip::message::{Limits, Transport, parse};

    fn tuples(r: &[Recipient]) -> Vec<(&str, Option<&str>, CopyControl)> {
        r.iter()
            .map(|r| (r.uri.as_str(), r.display_name.as_deref(), r.copy_control))
            .collect()
    }

    const URI_LIST: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
        <resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"\r\n \
        xmlns:cp=\"urn:ietf:params:xml:ns:copycontrol\">\r\n\
        <list>\r\n\
        <entry uri=\"mailto:bob@example.org\" cp:copyControl=\"to\"/>\r\n\
        <entry uri=\"sip:carol@ims.example.com\" cp:copyControl=\"cc\">\r\n\
        <display-name>Carol &amp; Co</display-name>\r\n\
        </entry>\r\n\
        <!-- a hidden one -->\r\n\
        <entry uri='tel:+15559876543' cp:copyControl='bcc'/>\r\n\
        <entry uri=\"mailto:dave@example.org\"><display-name>Dave</display-name></entry>\r\n\
        </list>\r\n\
        </resource-lists>\r\n";

    fn group_body() -> String {
        format!(
            "--boundary1\r\n\
             Content-Type: application/sdp\r\n\r\n\
             {MSRP_SDP}\r\n\
             --boundary1\r\n\
             Content-Type: application/resource-lists+xml\r\n\
             Content-Disposition: recipient-list\r\n\r\n\
             {URI_LIST}\r\n\
             --boundary1--\r\n"
        )
    }

    #[test]
    fn group_invite_multipart_yields_sdp_and_uri_list() {
        let bytes = String::from_utf8(cpm_invite("sip:conf@iwf.example.net", "", &group_body()))
            .unwrap()
            .replace(
                "Content-Type: application/sdp\r\nContent-Length",
                "Content-Type: multipart/mixed;boundary=\"boundary1\"\r\nContent-Length",
            );
        let msg = parse(bytes.as_bytes(), Transport::Datagram, &Limits::default()).unwrap();
        let body = invite_body(msg.header("Content-Type"), &msg.body).unwrap();
        assert_eq!(body.sdp.as_deref(), Some(MSRP_SDP.as_bytes()));
        assert_eq!(
            tuples(&body.recipients.unwrap()),
            [
                ("mailto:bob@example.org", None, CopyControl::To),
                (
                    "sip:carol@ims.example.com",
                    Some("Carol & Co"),
                    CopyControl::Cc
                ),
                ("tel:+15559876543", None, CopyControl::Bcc),
                ("mailto:dave@example.org", Some("Dave"), CopyControl::To),
            ]
        );
    }

    #[test]
    fn a_cpim_part_gives_its_date_time_and_a_bad_one_is_400() {
        let body = |cpim: &str| {
            format!(
                "--b\r\nContent-Type: application/sdp\r\n\r\n{MSRP_SDP}\r\n\
                 --b\r\nContent-Type: message/cpim\r\n\r\n{cpim}\r\n--b--\r\n"
            )
        };
        let cpim = "From: <sip:alice@ims.example.com>\r\nTo: <mailto:bob@example.org>\r\n\
                    DateTime: 2026-12-01T09:30:00+01:00\r\n\r\n\
                    Content-Type: text/plain\r\n\r\nhello";
        let read = invite_body(Some("multipart/mixed; boundary=b"), body(cpim).as_bytes()).unwrap();
        assert_eq!(read.sdp.as_deref(), Some(MSRP_SDP.as_bytes()));
        assert_eq!(
            read.cpim_date_time,
            Some(DateTime::parse_from_rfc3339("2026-12-01T09:30:00+01:00").unwrap())
        );
        let bad = cpim.replace("2026-12-01T09:30:00+01:00", "yesterday");
        let e =
            invite_body(Some("multipart/mixed; boundary=b"), body(&bad).as_bytes()).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.to_string().contains("message/cpim"), "{e}");
    }

    #[test]
    fn single_sdp_body_is_the_offer() {
        let body = invite_body(Some("application/sdp"), MSRP_SDP.as_bytes()).unwrap();
        assert_eq!(body.sdp.as_deref(), Some(MSRP_SDP.as_bytes()));
        assert!(body.recipients.is_none());
        let empty = invite_body(None, b"").unwrap();
        assert!(empty.sdp.is_none() && empty.recipients.is_none());
    }

    #[test]
    fn preamble_epilogue_padding_and_headerless_part() {
        let body = "This is a preamble.\r\n--b  \r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\
                    \r\n--b\r\n\r\nplain text\r\n--b--\r\nepilogue";
        let parts = split("multipart/mixed; boundary=b", body.as_bytes()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].media_type, "application/sdp");
        assert_eq!(parts[0].body, b"v=0\r\n");
        assert_eq!(parts[1].media_type, "text/plain");
        assert_eq!(parts[1].body, b"plain text");
    }

    #[test]
    fn missing_boundary_parameter_is_rejected() {
        let e = invite_body(Some("multipart/mixed"), group_body().as_bytes()).unwrap_err();
        assert_eq!(
            (e.status, e.reason.as_str()),
            (400, "multipart body without boundary")
        );
    }

    #[test]
    fn boundary_not_in_body_is_rejected() {
        let e = invite_body(
            Some("multipart/mixed;boundary=other"),
            group_body().as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.reason, "multipart boundary not found in body");
    }

    #[test]
    fn missing_closing_boundary_is_rejected() {
        let body = group_body().replace("--boundary1--\r\n", "");
        let e =
            invite_body(Some("multipart/mixed;boundary=boundary1"), body.as_bytes()).unwrap_err();
        assert_eq!(e.reason, "multipart body without closing boundary");
    }

    #[test]
    fn part_without_empty_line_is_rejected() {
        let body = "--b\r\nContent-Type: application/sdp\r\n--b--";
        let e = split("multipart/mixed;boundary=b", body.as_bytes()).unwrap_err();
        assert_eq!(e.reason, "body part without an empty line");
    }

    #[test]
    fn multipart_without_sdp_is_rejected() {
        let body = "--b\r\nContent-Type: application/resource-lists+xml\r\n\r\n\
                    <resource-lists><list/></resource-lists>\r\n--b--\r\n";
        let e = invite_body(Some("multipart/mixed;boundary=b"), body.as_bytes()).unwrap_err();
        assert_eq!(e.reason, "multipart body without an application/sdp part");
    }

    #[test]
    fn other_body_type_answers_415() {
        assert_eq!(
            invite_body(Some("text/html"), b"<p>").unwrap_err().status,
            415
        );
    }

    #[test]
    fn uri_list_errors_are_named() {
        let cases = [
            (
                "<list><entry uri=\"sip:a@b\"/></list>",
                "entry outside resource-lists",
            ),
            (
                "<?xml version=\"1.0\"?><list/>",
                "no resource-lists element",
            ),
            (
                "<resource-lists><list><entry/></list></resource-lists>",
                "entry without uri",
            ),
            (
                "<resource-lists><entry uri=\"sip:a@b\" cp:copyControl=\"xx\"/></resource-lists>",
                "unknown copyControl \"xx\"",
            ),
            (
                "<resource-lists><entry uri=\"sip:a@b\">",
                "unterminated entry",
            ),
            (
                "<resource-lists><entry uri=sip:a@b/>",
                "unquoted attribute uri in <entry>",
            ),
            (
                "<resource-lists><entry uri=\"sip:a&bogus;b\"/>",
                "unknown entity &bogus;",
            ),
        ];
        for (xml, why) in cases {
            assert_eq!(resource_list(xml.as_bytes()).unwrap_err(), why, "{xml}");
        }
    }

    #[test]
    fn prefixed_elements_and_numeric_entities_read() {
        let xml = "<rl:resource-lists xmlns:rl=\"urn:ietf:params:xml:ns:resource-lists\">\
                   <rl:list><rl:entry uri=\"mailto:b&#64;example.org\">\
                   <rl:display-name>B&#x00e9;a</rl:display-name></rl:entry></rl:list></rl:resource-lists>";
        let entries = resource_list(xml.as_bytes()).unwrap();
        assert_eq!(
            tuples(&entries),
            [("mailto:b@example.org", Some("Béa"), CopyControl::To)]
        );
    }

    #[test]
    fn truncated_or_corrupted_group_body_never_panics() {
        let body = group_body().into_bytes();
        let ct = "multipart/mixed;boundary=boundary1";
        for i in 0..body.len() {
            let _ = invite_body(Some(ct), &body[..i]);
            for b in [b'<', b'>', b'"', b'&', b';', b'/', b'-', b'\r', 0xff] {
                let mut m = body.clone();
                m[i] = b;
                let _ = invite_body(Some(ct), &m);
            }
        }
    }

    #[test]
    fn display_name_control_characters_are_removed() {
        let xml = "<resource-lists><entry uri=\"sip:a@b\"><display-name>Eve&#13;&#10;Bcc: x</display-name></entry></resource-lists>";
        let entries = resource_list(xml.as_bytes()).unwrap();
        assert_eq!(entries[0].display_name.as_deref(), Some("EveBcc: x"));
    }
}
