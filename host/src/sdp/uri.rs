//! MSRP URIs (RFC 4975 section 9): `msrp[s]://[userinfo@]host[:port]/session-id;transport`
//! with optional `;name[=value]` parameters, IPv6 hosts in brackets. Parsing and printing
//! only; a URI printed by `Display` parses back to the same value.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The host part of an MSRP URI: an IP address or a domain name (lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    /// A host from its text: `[v6]`, a bare IPv6 address, an IPv4 address or a domain name.
    pub fn parse(s: &str) -> Result<Host, String> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| format!("unclosed IPv6 bracket in {s:?}"))?;
            return inner
                .parse::<Ipv6Addr>()
                .map(|a| Host::Ip(IpAddr::V6(a)))
                .map_err(|_| format!("bad IPv6 address {inner:?}"));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if crate::hostname::is_hostname(s) {
            Ok(Host::Name(s.to_ascii_lowercase()))
        } else {
            Err(format!("bad host {s:?}"))
        }
    }

    /// True for an IPv6 address (SDP `IP6` address type).
    pub fn is_ipv6(&self) -> bool {
        matches!(self, Host::Ip(IpAddr::V6(_)))
    }

    /// The host as SDP writes it in `c=` and `o=`: no brackets around IPv6.
    pub fn sdp_address(&self) -> String {
        match self {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(n) => n.clone(),
        }
    }
}

impl fmt::Display for Host {
    /// The host as a URI writes it: IPv6 in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// One MSRP URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MsrpUri {
    /// `msrps:` (TLS) rather than `msrp:`.
    pub secure: bool,
    pub userinfo: Option<String>,
    pub host: Host,
    /// MSRP has no default port; a URI in an `a=path` normally carries one.
    pub port: Option<u16>,
    /// Empty for a relay URI without a session id.
    pub session_id: String,
    /// Lower-cased, e.g. `tcp`.
    pub transport: String,
    /// `;name[=value]` parameters after the transport, as sent.
    pub params: Vec<String>,
}

impl MsrpUri {
    /// A `msrp://host:port/session-id;tcp` URI.
    pub fn tcp(host: Host, port: u16, session_id: &str) -> MsrpUri {
        MsrpUri {
            secure: false,
            userinfo: None,
            host,
            port: Some(port),
            session_id: session_id.to_string(),
            transport: "tcp".to_string(),
            params: Vec::new(),
        }
    }

    /// Parses one URI; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<MsrpUri, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("not an msrp URI: {s:?}"))?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "msrp" => false,
            "msrps" => true,
            other => return Err(format!("scheme {other:?} is not msrp or msrps")),
        };
        // authority ends at the first '/' (session id follows) or ';' (relay URI, no id).
        let end = rest.find(['/', ';']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
            Some(_) => return Err(format!("empty userinfo in {s:?}")),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport)?;
        let (session_id, tail) = match tail.strip_prefix('/') {
            Some(t) => {
                let e = t.find(';').unwrap_or(t.len());
                (&t[..e], &t[e..])
            }
            None => ("", tail),
        };
        if tail.strip_prefix('/').is_some() || (tail.is_empty() && session_id.is_empty()) {
            return Err(format!("no transport in {s:?}"));
        }
        if !session_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+=/".contains(&b) || b == b'%')
        {
            return Err(format!("bad session id {session_id:?}"));
        }
        let mut parts = tail
            .strip_prefix(';')
            .ok_or_else(|| format!("no transport in {s:?}"))?
            .split(';');
        let transport = parts.next().unwrap_or("").to_ascii_lowercase();
        if transport.is_empty()
            || !transport
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!("bad transport {transport:?} in {s:?}"));
        }
        let params: Vec<String> = parts.map(str::to_string).collect();
        if params
            .iter()
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
        {
            return Err(format!("bad URI parameter in {s:?}"));
        }
        Ok(MsrpUri {
            secure,
            userinfo,
            host,
            port,
            session_id: session_id.to_string(),
            transport,
            params,
        })
    }
}

fn split_host_port(hostport: &str) -> Result<(Host, Option<u16>), String> {
    let (host, port) = if hostport.starts_with('[') {
        let close = hostport
            .find(']')
            .ok_or_else(|| format!("unclosed IPv6 bracket in {hostport:?}"))?;
        let (h, p) = hostport.split_at(close + 1);
        match p {
            "" => (h, None),
            _ => (
                h,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("junk after IPv6 address in {hostport:?}"))?,
                ),
            ),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let host = Host::parse(host)?;
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("bad port {p:?}")),
        },
    };
    Ok((host, port))
}

impl fmt::Display for MsrpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "msrps://" } else { "msrp://" })?;
        if let Some(u) = &self.userinfo {
            write!(f, "{u}@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if !self.session_id.is_empty() {
            write!(f, "/{}", self.session_id)?;
        }
        write!(f, ";{}", self.transport)?;
        for p in &self.params {
            write!(f, ";{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn ipv4_uri_round_trips() {
        let s = "msrp://192.0.2.1:7654/jshA7weztas;tcp";
        let u = MsrpUri::parse(s).unwrap();
        assert_eq!(u.host, Host::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
        assert_eq!(u.port, Some(7654));
        assert_eq!(u.session_id, "jshA7weztas");
        assert_eq!(u.transport, "tcp");
        assert!(!u.secure);
        assert_eq!(u.to_string(), s);
    }

    #[test]
    fn ipv6_uri_round_trips() {
        let s = "msrp://[2001:db8::1]:2855/abc;tcp";
        let u = MsrpUri::parse(s).unwrap();
        assert!(u.host.is_ipv6());
        assert_eq!(u.host.sdp_address(), "2001:db8::1");
        assert_eq!(u.port, Some(2855));
        assert_eq!(u.to_string(), s);
        assert!(MsrpUri::parse("msrp://[::1]/x;tcp").unwrap().port.is_none());
    }

    #[test]
    fn relay_uri_with_userinfo_and_params() {
        let u = MsrpUri::parse("msrps://bob@Relay.Example.com:2855;tcp;foo=bar").unwrap();
        assert!(u.secure);
        assert_eq!(u.userinfo.as_deref(), Some("bob"));
        assert_eq!(u.host, Host::Name("relay.example.com".into()));
        assert!(u.session_id.is_empty());
        assert_eq!(u.params, vec!["foo=bar".to_string()]);
        assert_eq!(
            u.to_string(),
            "msrps://bob@relay.example.com:2855;tcp;foo=bar"
        );
    }

    #[test]
    fn malformed_uris_are_refused() {
        for bad in [
            "sip:alice@example.com",
            "http://example.com:80/x;tcp",
            "msrp://example.com:80/x",
            "msrp://example.com:99999/x;tcp",
            "msrp://example.com:0/x;tcp",
            "msrp://[::1:2855/x;tcp",
            "msrp://[zz::1]:2855/x;tcp",
            "msrp://:2855/x;tcp",
            "msrp://ex ample.com:2855/x;tcp",
            "msrp://example.com:2855/x<y;tcp",
            "msrp://example.com:2855/x;",
        ] {
            assert!(MsrpUri::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
