//! The `Received:` trace header the server puts on top of every mail it hands over
//! (RFC 5321 4.4). No I/O: the time is passed in.

use chrono::{DateTime, Utc};
use std::net::{IpAddr, SocketAddr};

/// RFC 5321 4.4 `Time-stamp-line`:
/// `Received: from <helo> (<address-literal>) by <domain> with ESMTP|SMTP [for <rcpt>]; <date>`.
/// `for` names the recipient only when there is one (more would disclose the others).
pub fn received_header(
    helo: &str,
    esmtp: bool,
    peer: SocketAddr,
    domain: &str,
    rcpt_to: &[String],
    now: DateTime<Utc>,
) -> String {
    // RFC 5321 4.1.3 address literals: `[192.0.2.1]`, `[IPv6:2001:db8::1]`.
    let literal = match peer.ip().to_canonical() {
        IpAddr::V4(ip) => format!("[{ip}]"),
        IpAddr::V6(ip) => format!("[IPv6:{ip}]"),
    };
    let protocol = if esmtp { "ESMTP" } else { "SMTP" };
    let recipient = match rcpt_to {
        [one] if one.is_ascii() && !one.contains(['\r', '\n', '<', '>']) => {
            format!("\r\n\tfor <{one}>")
        }
        _ => String::new(),
    };
    format!(
        "Received: from {} ({literal})\r\n\tby {} with {protocol}{recipient};\r\n\t{}\r\n",
        domain_or_literal(helo),
        domain_or_literal(domain),
        now.to_rfc2822(),
    )
}

/// The client's EHLO/HELO argument as it may stand in the header: a domain or an
/// address literal; anything else (it is client input) is shown as `unknown`.
fn domain_or_literal(name: &str) -> &str {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:_".contains(&b));
    if ok { name } else { "unknown" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T11:00:00Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn received_for_one_recipient() {
        let h = received_header(
            "mail.example.org",
            true,
            "192.0.2.7:40000".parse().unwrap(),
            "iwf.example.com",
            &["s1@iwf.example.com".into()],
            at(),
        );
        assert_eq!(
            h,
            "Received: from mail.example.org ([192.0.2.7])\r\n\tby iwf.example.com with ESMTP\r\n\tfor <s1@iwf.example.com>;\r\n\tThu, 26 Nov 2026 11:00:00 +0000\r\n"
        );
    }

    #[test]
    fn ipv6_literal_no_for_and_client_text_neutralised() {
        let h = received_header(
            "evil\r\nX-Injected: 1",
            false,
            "[2001:db8::1]:25".parse().unwrap(),
            "gw",
            &["a@gw".into(), "b@gw".into()],
            at(),
        );
        assert!(
            h.starts_with("Received: from unknown ([IPv6:2001:db8::1])\r\n\tby gw with SMTP;"),
            "{h}"
        );
        assert!(!h.contains("Injected") && !h.contains("for"));
        let mapped = received_header(
            "h",
            true,
            "[::ffff:10.0.0.1]:25".parse().unwrap(),
            "gw",
            &[],
            at(),
        );
        assert!(mapped.contains("([10.0.0.1])"), "{mapped}");
    }
}
