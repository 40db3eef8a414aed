//! The CPM facts of an INVITE as typed values: the identities (P-Asserted-Identity, From,
//! Referred-By, Reply-To), Privacy, Date, Subject, Priority, the CPM conversation and
//! contribution ids and the Request-URI; and their mapping to the policy's input
//! (`crate::policy::world::Session`).
//!
//! `tel:` URIs are read here (rsip 0.4 fails on them). No value carries CR, LF or another
//! control character onward: `message::parse` removes them and this module checks again.

use super::message::{Message, ParseError, UriScheme, check_uri, sanitize};
use crate::policy::world::{Gateway, GroupInfo, Identity, Priority, Session};

/// A `name-addr` or `addr-spec` (RFC 3261 25.1) of an identity header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display_name: Option<String>,
    /// The URI without the angle brackets.
    pub uri: String,
    /// `None` for a scheme other than sip/sips/tel/mailto (kept, not checked).
    pub scheme: Option<UriScheme>,
    /// Header parameters after the URI (`tag`, ...), names lower-cased.
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// The policy's view of this identity.
    pub fn identity(&self) -> Identity {
        Identity {
            uri: self.uri.clone(),
            display_name: self.display_name.clone(),
        }
    }

    /// A header parameter's value (`tag`), `None` when absent or valueless.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Splits a header value at commas outside quoted strings and angle brackets.
fn split_top_level(value: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped, mut angle) =
        (Vec::new(), 0, false, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// Parses one name-addr / addr-spec with its header parameters.
pub fn parse_name_addr(value: &str) -> Result<NameAddr, String> {
    let value = value.trim();
    let malformed = || format!("malformed name-addr {value:?}");
    let (display_name, rest) = if let Some(quoted) = value.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => name.push(chars.next().ok_or_else(malformed)?.1),
                Some((_, c)) => name.push(c),
                None => return Err(malformed()),
            }
        };
        let rest = quoted[end + 1..].trim_start();
        if !rest.starts_with('<') {
            return Err(malformed());
        }
        (Some(name), rest)
    } else if let Some(lt) = value.find('<') {
        let name = value[..lt].trim();
        (
            Some(name.to_string()).filter(|n| !n.is_empty()),
            &value[lt..],
        )
    } else {
        (None, value)
    };
    let (uri, params) = if let Some(inner) = rest.strip_prefix('<') {
        let gt = inner.find('>').ok_or_else(malformed)?;
        (inner[..gt].trim(), &inner[gt + 1..])
    } else {
        // addr-spec: parameters after the URI belong to the header (RFC 3261 20.10).
        match rest.find(';') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        }
    };
    let params = params.trim();
    if !params.is_empty() && !params.starts_with(';') {
        return Err(malformed());
    }
    let params = params
        .split(';')
        .skip(1)
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (
                n.trim().to_ascii_lowercase(),
                Some(v.trim().trim_matches('"').to_string()),
            ),
            None => (p.trim().to_ascii_lowercase(), None),
        })
        .filter(|(n, _)| !n.is_empty())
        .collect();
    let scheme_ok = uri.split_once(':').is_some_and(|(s, r)| {
        !s.is_empty()
            && !r.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    if !scheme_ok {
        return Err(format!("malformed URI {uri:?}"));
    }
    let scheme = match UriScheme::of(uri) {
        Some(_) => Some(check_uri(uri)?),
        None => None,
    };
    let clean = |s: String| sanitize(&s).trim().to_string();
    Ok(NameAddr {
        display_name: display_name.map(clean).filter(|n| !n.is_empty()),
        uri: clean(uri.to_string()),
        scheme,
        params,
    })
}

/// Every name-addr of a (possibly comma-separated) header value.
pub fn parse_name_addrs(value: &str) -> Result<Vec<NameAddr>, String> {
    split_top_level(value)
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .map(parse_name_addr)
        .collect()
}

/// SIP Date (RFC 3261 20.17): the RFC 1123 text as received, and its time when it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipDate {
    pub raw: String,
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix: Option<i64>,
}

/// `Sat, 13 Nov 2010 23:29:00 GMT` to seconds since the epoch.
pub fn parse_rfc1123(s: &str) -> Option<i64> {
    let mut it = s.split_whitespace();
    let wkday = it.next()?;
    if !wkday.ends_with(',') {
        return None;
    }
    let day: i64 = it.next()?.parse().ok()?;
    let month = it.next()?;
    let year: i64 = it.next()?.parse().ok()?;
    let time = it.next()?;
    if it.next()? != "GMT" || it.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from civil (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

/// SIP Priority (RFC 3261 20.26); any other value is no priority.
pub fn parse_priority(value: &str) -> Option<Priority> {
    match value.trim().to_ascii_lowercase().as_str() {
        "emergency" => Some(Priority::Emergency),
        "urgent" => Some(Priority::Urgent),
        "normal" => Some(Priority::Normal),
        "non-urgent" => Some(Priority::NonUrgent),
        _ => None,
    }
}

/// Who sent a request, as its identity headers say: From, the first sip/sips/tel identity
/// of P-Asserted-Identity (RFC 3325) and Privacy (RFC 3323). An INVITE's make AA2's From;
/// a BYE's, CC2's (5.2.4.2.6).
#[derive(Debug, Clone)]
pub struct Originator {
    pub from: NameAddr,
    pub asserted_identity: Option<NameAddr>,
    /// Privacy values, lower-cased, in order.
    pub privacy: Vec<String>,
}

impl Originator {
    /// Reads the identity headers of a parsed request; a malformed one is 400, named.
    pub fn from_message(msg: &Message) -> Result<Originator, ParseError> {
        let from = msg
            .header("From")
            .map(|v| parse_name_addr(v).map_err(|e| bad(format!("bad From: {e}"))))
            .transpose()?
            .ok_or_else(|| bad("missing From header".to_string()))?;
        let mut asserted_identity = None;
        for value in msg.headers_named("P-Asserted-Identity") {
            let ids = parse_name_addrs(value)
                .map_err(|e| bad(format!("bad P-Asserted-Identity: {e}")))?;
            asserted_identity = asserted_identity.or_else(|| {
                ids.into_iter().find(|id| {
                    matches!(
                        id.scheme,
                        Some(UriScheme::Sip | UriScheme::Sips | UriScheme::Tel)
                    )
                })
            });
        }
        let privacy = msg
            .headers_named("Privacy")
            .flat_map(|v| v.split([';', ',']))
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        Ok(Originator {
            from,
            asserted_identity,
            privacy,
        })
    }

    /// `Privacy: id` was requested (RFC 3325 9.3).
    pub fn privacy_id(&self) -> bool {
        self.privacy.iter().any(|p| p == "id")
    }

    /// The identities this request carries, for the policy's session record.
    pub fn identities(&self) -> Identities {
        Identities {
            from: self.from.identity(),
            asserted_identity: self.asserted_identity.as_ref().map(NameAddr::identity),
            privacy_id: (!self.privacy.is_empty()).then(|| self.privacy_id()),
        }
    }
}

/// The identities a later request of the session (a BYE) carries. `None`: the request
/// had no such header, so the INVITE's stands (proxies often assert only the first).
#[derive(Debug, Clone)]
pub struct Identities {
    pub from: Identity,
    pub asserted_identity: Option<Identity>,
    pub privacy_id: Option<bool>,
}

impl Identities {
    /// `session` with these identities where the request carried them; `None` when that
    /// changes nothing.
    pub fn update(&self, session: &Session) -> Option<Session> {
        // The bindings' `Identity` has no `PartialEq`.
        let same = |a: &Identity, b: &Identity| a.uri == b.uri && a.display_name == b.display_name;
        let asserted = self
            .asserted_identity
            .as_ref()
            .or(session.asserted_identity.as_ref());
        let privacy_id = self.privacy_id.unwrap_or(session.privacy_id);
        let unchanged = same(&self.from, &session.from)
            && match (asserted, &session.asserted_identity) {
                (Some(a), Some(b)) => same(a, b),
                (None, None) => true,
                _ => false,
            }
            && privacy_id == session.privacy_id;
        (!unchanged).then(|| Session {
            from: self.from.clone(),
            asserted_identity: asserted.cloned(),
            privacy_id,
            ..session.clone()
        })
    }
}

/// The CPM facts of one INVITE.
#[derive(Debug, Clone)]
pub struct CpmInvite {
    /// The Request-URI as received and its scheme.
    pub request_uri: String,
    pub request_uri_scheme: UriScheme,
    /// The first sip/sips/tel identity of P-Asserted-Identity (RFC 3325).
    pub asserted_identity: Option<NameAddr>,
    pub from: NameAddr,
    /// Privacy values (RFC 3323), lower-cased, in order.
    pub privacy: Vec<String>,
    pub referred_by: Option<NameAddr>,
    pub reply_to: Option<NameAddr>,
    pub date: Option<SipDate>,
    pub subject: Option<String>,
    pub priority: Option<Priority>,
    pub conversation_id: Option<String>,
    pub contribution_id: Option<String>,
    pub in_reply_to_contribution_id: Option<String>,
}

fn bad(reason: String) -> ParseError {
    ParseError {
        status: 400,
        reason: sanitize(&reason),
        partial: None,
    }
}

impl CpmInvite {
    /// Reads the CPM header fields of a parsed request. A malformed identity header or id
    /// answers 400 with the header named.
    pub fn from_message(msg: &Message) -> Result<CpmInvite, ParseError> {
        let (uri, scheme) = msg
            .request_uri()
            .ok_or_else(|| bad("not a request".to_string()))?;
        let one = |name: &str| -> Result<Option<NameAddr>, ParseError> {
            msg.header(name)
                .map(|v| parse_name_addr(v).map_err(|e| bad(format!("bad {name}: {e}"))))
                .transpose()
        };
        let Originator {
            from,
            asserted_identity,
            privacy,
        } = Originator::from_message(msg)?;
        let id = |name: &str| -> Result<Option<String>, ParseError> {
            match msg.header(name).map(str::trim) {
                None => Ok(None),
                Some(v) if !v.is_empty() && !v.contains(char::is_whitespace) && v.is_ascii() => {
                    Ok(Some(v.to_string()))
                }
                Some(v) => Err(bad(format!("bad {name} {v:?}"))),
            }
        };
        let text = |name: &str| {
            msg.header(name)
                .map(|v| sanitize(v).trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Ok(CpmInvite {
            request_uri: uri.to_string(),
            request_uri_scheme: scheme,
            asserted_identity,
            from,
            privacy,
            referred_by: one("Referred-By")?,
            reply_to: one("Reply-To")?,
            date: text("Date").map(|raw| SipDate {
                unix: parse_rfc1123(&raw),
                raw,
            }),
            subject: text("Subject"),
            priority: msg.header("Priority").and_then(parse_priority),
            conversation_id: id("Conversation-ID")?,
            contribution_id: id("Contribution-ID")?,
            in_reply_to_contribution_id: id("InReplyTo-Contribution-ID")?,
        })
    }

    /// `Privacy: id` was requested (RFC 3325 9.3).
    pub fn privacy_id(&self) -> bool {
        self.privacy.iter().any(|p| p == "id")
    }

    /// The policy's input for this session.
    pub fn session(&self, session_id: &str, gateway: Gateway, group: Option<GroupInfo>) -> Session {
        Session {
            session_id: session_id.to_string(),
            gateway,
            request_uri: self.request_uri.clone(),
            asserted_identity: self.asserted_identity.as_ref().map(NameAddr::identity),
            from: self.from.identity(),
            privacy_id: self.privacy_id(),
            referred_by: self.referred_by.as_ref().map(NameAddr::identity),
            reply_to: self.reply_to.as_ref().map(NameAddr::identity),
            subject: self.subject.clone(),
            priority: self.priority,
            conversation_id: self.conversation_id.clone(),
            contribution_id: self.contribution_id.clone(),
            in_reply_to_contribution_id: self.in_reply_to_contribution_id.clone(),
            group,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::tests::{MSRP_SDP, cpm_invite};
    use crate::sip::message::{Limits, Transport, parse};

    /// A BYE's identities override the INVITE's only where the BYE has the header.
    #[test]
    fn a_byes_identities_update_the_session_where_it_has_them() {
        let mut session = crate::policy::testing::session("mailto:bob@example.net");
        session.asserted_identity = Some(Identity {
            uri: "sip:alice@iwf.example.com".into(),
            display_name: Some("Alice A.".into()),
        });
        let id = |uri: &str, name: Option<&str>| Identity {
            uri: uri.into(),
            display_name: name.map(Into::into),
        };
        let bye = |asserted: Option<Identity>, privacy_id: Option<bool>| Identities {
            from: session.from.clone(),
            asserted_identity: asserted,
            privacy_id,
        };
        // The same From, no P-Asserted-Identity, no Privacy: nothing changes.
        assert!(bye(None, None).update(&session).is_none());
        assert!(bye(None, Some(false)).update(&session).is_none());
        // Its own P-Asserted-Identity, the INVITE's privacy kept.
        let other = bye(
            Some(id("sip:alice.b@iwf.example.com", Some("Alice B."))),
            None,
        );
        let updated = other.update(&session).unwrap();
        assert_eq!(
            updated.asserted_identity.unwrap().uri,
            "sip:alice.b@iwf.example.com"
        );
        assert!(!updated.privacy_id);
        // Privacy: id on the BYE alone; the INVITE's P-Asserted-Identity stays.
        let updated = bye(None, Some(true)).update(&session).unwrap();
        assert!(updated.privacy_id);
        assert_eq!(
            updated.asserted_identity.unwrap().uri,
            "sip:alice@iwf.example.com"
        );
        assert_eq!(updated.session_id, session.session_id);
    }

    const CPM_HEADERS: &str = "Privacy: id;header\r\n\
        Referred-By: <sip:carol@ims.example.com>\r\n\
        Reply-To: \"Alice \\\"Al\\\" A.\" <sip:alice.reply@example.com>\r\n\
        Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n\
        Subject: Lunch today?\r\n\
        Priority: Urgent\r\n\
        Conversation-ID: f81d4fae7dec11d0a76500a0c91e6bf6\r\n\
        Contribution-ID: 8ab49a2e7dec11d0a76500a0c91e6bf6\r\n\
        InReplyTo-Contribution-ID: 7bc49a2e7dec11d0a76500a0c91e6bf6\r\n";

    fn invite(uri: &str, extra: &str) -> CpmInvite {
        let msg = parse(
            &cpm_invite(uri, extra, MSRP_SDP),
            Transport::Datagram,
            &Limits::default(),
        )
        .unwrap();
        CpmInvite::from_message(&msg).unwrap()
    }

    fn invite_err(extra: &str) -> ParseError {
        let msg = parse(
            &cpm_invite("mailto:bob@example.org", extra, ""),
            Transport::Datagram,
            &Limits::default(),
        )
        .unwrap();
        CpmInvite::from_message(&msg).unwrap_err()
    }

    #[test]
    fn all_cpm_headers_read_into_typed_values() {
        let inv = invite("mailto:bob@example.org", CPM_HEADERS);
        assert_eq!(inv.request_uri, "mailto:bob@example.org");
        assert_eq!(inv.request_uri_scheme, UriScheme::Mailto);
        assert_eq!(inv.from.uri, "tel:+15551234567");
        assert_eq!(inv.from.display_name.as_deref(), Some("Alice"));
        assert_eq!(inv.from.param("tag"), Some("9fxced76sl"));
        let pai = inv.asserted_identity.as_ref().unwrap();
        assert_eq!(pai.uri, "sip:+15551234567@ims.example.com;user=phone");
        assert_eq!(pai.display_name.as_deref(), Some("Alice A."));
        assert_eq!(inv.privacy, ["id", "header"]);
        assert!(inv.privacy_id());
        assert_eq!(
            inv.referred_by.as_ref().unwrap().uri,
            "sip:carol@ims.example.com"
        );
        assert_eq!(
            inv.reply_to.as_ref().unwrap().display_name.as_deref(),
            Some("Alice \"Al\" A.")
        );
        let date = inv.date.as_ref().unwrap();
        assert_eq!(date.raw, "Sat, 13 Nov 2010 23:29:00 GMT");
        assert_eq!(date.unix, Some(1_289_690_940));
        assert_eq!(inv.subject.as_deref(), Some("Lunch today?"));
        assert_eq!(inv.priority, Some(Priority::Urgent));
        assert_eq!(
            inv.conversation_id.as_deref(),
            Some("f81d4fae7dec11d0a76500a0c91e6bf6")
        );
        assert_eq!(
            inv.contribution_id.as_deref(),
            Some("8ab49a2e7dec11d0a76500a0c91e6bf6")
        );
        assert_eq!(
            inv.in_reply_to_contribution_id.as_deref(),
            Some("7bc49a2e7dec11d0a76500a0c91e6bf6")
        );
    }

    #[test]
    fn absent_optional_headers_are_none() {
        let inv = invite("mailto:bob@example.org", "");
        assert!(!inv.privacy_id());
        assert!(inv.referred_by.is_none() && inv.reply_to.is_none() && inv.date.is_none());
        assert!(inv.subject.is_none() && inv.priority.is_none() && inv.conversation_id.is_none());
    }

    #[test]
    fn session_maps_to_the_policy_input() {
        let inv = invite("mailto:bob@example.org", CPM_HEADERS);
        let gw = Gateway {
            sip_domain: "iwf.example.net".into(),
            mail_domain: "mail.example.net".into(),
        };
        let s = inv.session("s1a2b3", gw, None);
        assert_eq!(s.session_id, "s1a2b3");
        assert_eq!(s.request_uri, "mailto:bob@example.org");
        assert_eq!(s.from.uri, "tel:+15551234567");
        assert_eq!(
            s.asserted_identity.unwrap().display_name.as_deref(),
            Some("Alice A.")
        );
        assert!(s.privacy_id);
        assert_eq!(s.priority, Some(Priority::Urgent));
        assert_eq!(s.subject.as_deref(), Some("Lunch today?"));
        assert!(s.group.is_none());
    }

    #[test]
    fn tel_request_uri_and_tel_pai_read() {
        let inv = invite("tel:+15551234567", "");
        assert_eq!(inv.request_uri_scheme, UriScheme::Tel);
        let bytes = String::from_utf8(cpm_invite("sip:bob@iwf.example.net", "", ""))
            .unwrap()
            .replace(
                "\"Alice A.\" <sip:+15551234567@ims.example.com;user=phone>, ",
                "",
            );
        let msg = parse(bytes.as_bytes(), Transport::Datagram, &Limits::default()).unwrap();
        let inv = CpmInvite::from_message(&msg).unwrap();
        assert_eq!(inv.asserted_identity.unwrap().uri, "tel:+15551234567");
    }

    #[test]
    fn pai_skips_non_sip_tel_uris() {
        let ids = parse_name_addrs("<mailto:x@y.org>, \"A, B\" <tel:+44123>;x=1").unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[1].display_name.as_deref(), Some("A, B"));
        assert_eq!(ids[1].param("x"), Some("1"));
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        let na = parse_name_addr("sip:alice@example.com;tag=88sja8x").unwrap();
        assert_eq!(na.uri, "sip:alice@example.com");
        assert_eq!(na.param("tag"), Some("88sja8x"));
        let na = parse_name_addr("Alice Smith <tel:+15551234567;phone-context=x>").unwrap();
        assert_eq!(na.display_name.as_deref(), Some("Alice Smith"));
        assert_eq!(na.uri, "tel:+15551234567;phone-context=x");
    }

    #[test]
    fn malformed_identity_headers_answer_400_naming_the_header() {
        let e = invite_err("Referred-By: \"unterminated <sip:c@d>\r\n");
        assert_eq!(e.status, 400);
        assert!(e.reason.starts_with("bad Referred-By"), "{}", e.reason);
        let e = invite_err("Reply-To: <tel:abc>\r\n");
        assert!(e.reason.starts_with("bad Reply-To"), "{}", e.reason);
        let e = invite_err("Contribution-ID: two words\r\n");
        assert!(e.reason.starts_with("bad Contribution-ID"), "{}", e.reason);
    }

    #[test]
    fn priority_values_and_unknown_is_none() {
        assert_eq!(parse_priority("emergency"), Some(Priority::Emergency));
        assert_eq!(parse_priority("non-urgent"), Some(Priority::NonUrgent));
        assert_eq!(parse_priority("Normal"), Some(Priority::Normal));
        assert_eq!(parse_priority("whenever"), None);
    }

    #[test]
    fn unreadable_date_kept_raw() {
        let inv = invite("mailto:bob@example.org", "Date: yesterday\r\n");
        assert_eq!(
            inv.date,
            Some(SipDate {
                raw: "yesterday".into(),
                unix: None
            })
        );
        assert_eq!(parse_rfc1123("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_rfc1123("Tue, 29 Feb 2000 12:00:01 GMT"),
            Some(951_825_601)
        );
    }

    #[test]
    fn corrupted_identity_values_never_panic() {
        let value =
            "\"Al\\\"ice\" <sip:+15551234567@ims.example.com;user=phone>;tag=x, <tel:+1555>";
        for i in 0..value.len() {
            let _ = parse_name_addrs(&value[..i]);
            for c in ['"', '<', '>', ';', ',', '\\', ':', '='] {
                let mut m = value.as_bytes().to_vec();
                m[i] = c as u8;
                let _ = parse_name_addrs(std::str::from_utf8(&m).unwrap());
            }
        }
        for i in 0..40 {
            let _ = parse_rfc1123(&"Sat, 13 Nov 2010 23:29:00 GMT"[..i.min(29)]);
        }
    }

    #[test]
    fn display_name_never_carries_control_characters() {
        let na = parse_name_addr("\"Mallory\\\r\\\nBcc: x\" <sip:m@example.com>").unwrap();
        assert_eq!(na.display_name.as_deref(), Some("MalloryBcc: x"));
    }
}
