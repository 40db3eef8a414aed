//! The UAS side of a dialog (RFC 3261 12), sans I/O: its state as the INVITE set it up
//! (12.1.1), the checks on requests within it (12.2.2) and the one place that builds the
//! IWF's own requests within it, with their next hop (12.2.1.1).
//!
//! Owns: Call-ID, tags, local and remote URIs, remote target, route set, CSeq numbers.
//! Must not touch: transactions (the caller starts the client transaction with the bytes
//! built here), sockets, clocks, sessions.

use super::cpm::{NameAddr, parse_name_addr, parse_name_addrs};
use super::message::{Message, sanitize};
use crate::sdp::uri::Host;
use std::fmt;

/// Where a request goes next (RFC 3261 8.1.2, without RFC 3263 DNS): host and port of a
/// SIP URI, the port 5060 (5061 for `sips:`) when the URI has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: Host,
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The host and port of a `sip:`/`sips:` URI.
pub fn uri_target(uri: &str) -> Result<Target, String> {
    let (scheme, rest) = uri
        .split_once(':')
        .ok_or_else(|| format!("no scheme in URI {uri:?}"))?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "sip" => 5060,
        "sips" => 5061,
        _ => return Err(format!("not a SIP URI: {uri:?}")),
    };
    // The user part may hold ';' and '?' (25.1), the host part never holds '@'.
    let host_part = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = host_part.split([';', '?']).next().unwrap_or("");
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (h, p) = v6
                .split_once(']')
                .ok_or_else(|| format!("unclosed IPv6 reference in {uri:?}"))?;
            (format!("[{h}]"), p.strip_prefix(':'))
        }
        None => match hostport.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        },
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("bad port in {uri:?}"))?,
        None => default_port,
    };
    let host = Host::parse(&host).map_err(|e| format!("{e} in {uri:?}"))?;
    Ok(Target { host, port })
}

/// Whether a route URI has the `lr` parameter (loose routing, RFC 3261 19.1.1).
fn is_loose(uri: &str) -> bool {
    let params = uri.split('?').next().unwrap_or("");
    let params = params.rsplit_once('@').map_or(params, |(_, h)| h);
    params.split(';').skip(1).any(|p| {
        p.split('=')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("lr")
    })
}

/// A URI as a Request-URI: without `method` parameter and headers (19.1.1, table 1).
fn as_request_uri(uri: &str) -> String {
    let without_headers = uri.split('?').next().unwrap_or(uri);
    let mut parts = without_headers.split(';');
    let mut out = parts.next().unwrap_or("").to_string();
    for p in parts.filter(|p| !p.to_ascii_lowercase().starts_with("method=")) {
        out.push(';');
        out.push_str(p);
    }
    out
}

/// A request built within the dialog, and where to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRequest {
    pub bytes: Vec<u8>,
    pub next_hop: Target,
}

/// One dialog, UAS side: created by the INVITE and the IWF's 2xx to it. Stored with its
/// session (`store`) as it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    /// The From tag of the INVITE (empty for an RFC 2543 peer without one).
    pub remote_tag: String,
    /// The INVITE's To with the IWF's tag: the From of the IWF's requests (12.2.1.1).
    local: String,
    /// The INVITE's From: the To of the IWF's requests.
    remote: String,
    /// The Contact URI of the INVITE, replaced by target refresh requests (12.2.2).
    remote_target: String,
    /// The Record-Route URIs of the INVITE, in order, parameters kept (12.1.1).
    route_set: Vec<String>,
    /// The INVITE's Record-Route header values as received, for the 2xx (12.1.1).
    record_route: Vec<String>,
    /// The CSeq number of the last request received in the dialog (not ACK or CANCEL).
    remote_cseq: u32,
    /// The CSeq number of the last request the IWF sent; none before the first (12.1.1).
    local_cseq: Option<u32>,
}

impl Dialog {
    /// The dialog state an INVITE sets up when answered 2xx with `local_tag` (12.1.1). The
    /// error says why the INVITE cannot make a dialog (for a 400).
    pub fn uas(invite: &Message, local_tag: &str) -> Result<Dialog, String> {
        let header = |name: &str| {
            invite
                .header(name)
                .ok_or_else(|| format!("missing {name} header"))
        };
        let from = header("From")?;
        let remote_tag = parse_name_addr(from)
            .map_err(|e| format!("bad From: {e}"))?
            .param("tag")
            .unwrap_or_default()
            .to_string();
        let (remote_cseq, _) = invite.cseq().ok_or("missing CSeq header")?;
        let mut route_set = Vec::new();
        for value in invite.headers_named("Record-Route") {
            let routes = parse_name_addrs(value).map_err(|e| format!("bad Record-Route: {e}"))?;
            for route in routes {
                uri_target(&route.uri).map_err(|e| format!("bad Record-Route: {e}"))?;
                route_set.push(route.uri);
            }
        }
        Ok(Dialog {
            call_id: header("Call-ID")?.to_string(),
            local_tag: local_tag.to_string(),
            remote_tag,
            local: format!("{};tag={}", header("To")?, sanitize(local_tag)),
            remote: from.to_string(),
            // 8.1.1.8: an INVITE MUST carry a Contact, one SIP or SIPS URI.
            remote_target: contact_uri(invite)?
                .ok_or("INVITE without Contact (RFC 3261 8.1.1.8)")?,
            route_set,
            record_route: invite
                .headers_named("Record-Route")
                .map(str::to_string)
                .collect(),
            remote_cseq,
            local_cseq: None,
        })
    }

    /// 12.1.1: the Record-Route values the 2xx to the INVITE must copy, in order.
    pub fn record_route(&self) -> &[String] {
        &self.record_route
    }

    /// The CSeq number of the last request received in the dialog.
    /// Where the IWF's requests in the dialog go: the INVITE's Contact, or the last
    /// target refresh's (12.2.1.1).
    pub fn remote_target(&self) -> &str {
        &self.remote_target
    }

    pub fn remote_cseq(&self) -> u32 {
        self.remote_cseq
    }

    /// Whether `request` (in this dialog by Call-ID and To tag) comes from the remote party:
    /// its From tag is the dialog's remote tag (12.2.2).
    pub fn is_from_remote(&self, request: &Message) -> bool {
        let tag = request
            .header("From")
            .and_then(|f| parse_name_addr(f).ok())
            .and_then(|f| f.param("tag").map(str::to_string))
            .unwrap_or_default();
        tag == self.remote_tag
    }

    /// 12.2.2: a request (other than ACK and CANCEL) must come with a CSeq number above the
    /// last one; it is then recorded. The error is the reason for a 500.
    pub fn check_cseq(&mut self, request: &Message) -> Result<(), String> {
        let (cseq, method) = request.cseq().ok_or("missing CSeq")?;
        if cseq <= self.remote_cseq {
            return Err(format!(
                "CSeq {cseq} {method} out of order: not above {} (RFC 3261 12.2.2)",
                self.remote_cseq
            ));
        }
        self.remote_cseq = cseq;
        Ok(())
    }

    /// 12.2.2: a target refresh request's Contact, if any, becomes the remote target.
    pub fn refresh_target(&mut self, request: &Message) -> Result<(), String> {
        if let Some(uri) = contact_uri(request)? {
            self.remote_target = uri;
        }
        Ok(())
    }

    /// A request within the dialog (12.2.1.1) with the top Via `via` (the caller's, with a
    /// new branch) and `extra` header fields, no body. The local CSeq goes up by one.
    pub fn request(
        &mut self,
        method: &str,
        via: &str,
        extra: &[(&str, &str)],
    ) -> Result<OutRequest, String> {
        self.request_with_body(method, via, extra, None)
    }

    /// [`Dialog::request`] with a body (its Content-Type, its bytes): a re-INVITE's offer.
    pub fn request_with_body(
        &mut self,
        method: &str,
        via: &str,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Result<OutRequest, String> {
        let cseq = self.local_cseq.map_or(1, |n| n + 1);
        let out = self.build(method, cseq, via, extra, body)?;
        self.local_cseq = Some(cseq);
        Ok(out)
    }

    /// The ACK of a 2xx to the IWF's INVITE with CSeq number `cseq` (13.2.2.4): a request
    /// of the dialog with that CSeq number (the local CSeq does not move) and its own
    /// branch in `via`.
    pub fn ack(&self, cseq: u32, via: &str) -> Result<OutRequest, String> {
        self.build("ACK", cseq, via, &[], None)
    }

    /// The CSeq number of the last request the IWF sent in the dialog, if any.
    pub fn local_cseq(&self) -> Option<u32> {
        self.local_cseq
    }

    fn build(
        &self,
        method: &str,
        cseq: u32,
        via: &str,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Result<OutRequest, String> {
        // 12.2.1.1: empty route set -> Request-URI = remote target, no Route. Loose first
        // route (lr) -> Request-URI = remote target, Route = route set. Strict first route ->
        // Request-URI = that route, Route = the rest, then the remote target.
        let (request_uri, routes) = match self.route_set.split_first() {
            None => (self.remote_target.clone(), Vec::new()),
            Some((first, _)) if is_loose(first) => {
                (self.remote_target.clone(), self.route_set.clone())
            }
            Some((first, rest)) => {
                let mut routes = rest.to_vec();
                routes.push(self.remote_target.clone());
                (as_request_uri(first), routes)
            }
        };
        // 8.1.2: the first Route if any (with strict routing, the Request-URI), else the
        // Request-URI.
        let next_hop = uri_target(self.route_set.first().unwrap_or(&self.remote_target))?;
        let mut out =
            format!("{method} {request_uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n");
        for route in &routes {
            out.push_str(&format!("Route: <{route}>\r\n"));
        }
        out.push_str(&format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n",
            self.local, self.remote, self.call_id
        ));
        for (name, value) in extra {
            out.push_str(&format!("{}: {}\r\n", sanitize(name), sanitize(value)));
        }
        let body = match body {
            Some((content_type, bytes)) => {
                out.push_str(&format!("Content-Type: {}\r\n", sanitize(content_type)));
                bytes
            }
            None => &[],
        };
        out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        Ok(OutRequest { bytes, next_hop })
    }
}

/// The URI of a request's one Contact, if it has one; a SIP or SIPS URI (8.1.1.8).
fn contact_uri(request: &Message) -> Result<Option<String>, String> {
    let Some(value) = request.header("Contact") else {
        return Ok(None);
    };
    let contacts = parse_name_addrs(value).map_err(|e| format!("bad Contact: {e}"))?;
    let [NameAddr { uri, .. }] = contacts.as_slice() else {
        return Err("Contact must hold one URI".into());
    };
    uri_target(uri).map_err(|e| format!("bad Contact: {e}"))?;
    Ok(Some(uri.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Limits, Transport, parse};

    fn invite(extra: &str) -> Message {
        let text = format!(
            "INVITE mailto:bob@example.net SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n\
             Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@ims.example.com>;tag=a1\r\n\
             To: <mailto:bob@example.net>\r\nCall-ID: c1@test\r\nCSeq: 7 INVITE\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        );
        parse(text.as_bytes(), Transport::Datagram, &Limits::default()).unwrap()
    }

    fn text(out: &OutRequest) -> String {
        String::from_utf8(out.bytes.clone()).unwrap()
    }

    #[test]
    fn uas_dialog_from_the_invite_and_a_bye_without_routes() {
        let mut d = Dialog::uas(
            &invite("Contact: <sip:alice@192.0.2.1:5070;transport=udp>\r\n"),
            "l1",
        )
        .unwrap();
        assert_eq!((d.remote_tag.as_str(), d.remote_cseq), ("a1", 7));
        let out = d
            .request(
                "BYE",
                "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKx",
                &[("Reason", "SIP;cause=200")],
            )
            .unwrap();
        let bye = text(&out);
        assert!(
            bye.starts_with("BYE sip:alice@192.0.2.1:5070;transport=udp SIP/2.0\r\n"),
            "{bye}"
        );
        assert!(!bye.contains("Route:"), "{bye}");
        assert!(
            bye.contains("From: <mailto:bob@example.net>;tag=l1\r\n"),
            "{bye}"
        );
        assert!(
            bye.contains("To: \"Alice\" <sip:alice@ims.example.com>;tag=a1\r\n"),
            "{bye}"
        );
        assert!(
            bye.contains("CSeq: 1 BYE\r\nReason: SIP;cause=200\r\n"),
            "{bye}"
        );
        assert!(bye.contains("Max-Forwards: 70\r\n") && bye.contains("Call-ID: c1@test\r\n"));
        assert_eq!(out.next_hop.to_string(), "192.0.2.1:5070");
        // The local CSeq goes up by one per request.
        let again = text(&d.request("BYE", "v", &[]).unwrap());
        assert!(again.contains("CSeq: 2 BYE\r\n"), "{again}");
    }

    #[test]
    fn loose_route_set_in_record_route_order_next_hop_is_the_first_route() {
        let mut d = Dialog::uas(
            &invite(
                "Record-Route: <sip:p1.example.com;lr>, <sip:192.0.2.7:5080;lr;x=y>\r\n\
                 Record-Route: <sip:[2001:db8::1]:5062;lr>\r\n\
                 Contact: <sip:alice@192.0.2.1>\r\n",
            ),
            "l1",
        )
        .unwrap();
        let out = d.request("BYE", "v", &[]).unwrap();
        let bye = text(&out);
        assert!(
            bye.starts_with("BYE sip:alice@192.0.2.1 SIP/2.0\r\n"),
            "{bye}"
        );
        assert!(
            bye.contains(
                "Route: <sip:p1.example.com;lr>\r\nRoute: <sip:192.0.2.7:5080;lr;x=y>\r\n\
                 Route: <sip:[2001:db8::1]:5062;lr>\r\n"
            ),
            "{bye}"
        );
        assert_eq!(out.next_hop.to_string(), "p1.example.com:5060");
    }

    #[test]
    fn strict_first_route_becomes_the_request_uri_and_the_target_the_last_route() {
        let mut d = Dialog::uas(
            &invite(
                "Record-Route: <sip:192.0.2.7:5080;method=INVITE>, <sip:p2.example.com;lr>\r\n\
                 Contact: <sip:alice@192.0.2.1:5070>\r\n",
            ),
            "l1",
        )
        .unwrap();
        let out = d.request("BYE", "v", &[]).unwrap();
        let bye = text(&out);
        assert!(
            bye.starts_with("BYE sip:192.0.2.7:5080 SIP/2.0\r\n"),
            "{bye}"
        );
        assert!(
            bye.contains("Route: <sip:p2.example.com;lr>\r\nRoute: <sip:alice@192.0.2.1:5070>\r\n"),
            "{bye}"
        );
        assert_eq!(out.next_hop.to_string(), "192.0.2.7:5080");
    }

    #[test]
    fn cseq_in_order_only_and_target_refresh() {
        let mut d = Dialog::uas(&invite("Contact: <sip:alice@192.0.2.1>\r\n"), "l1").unwrap();
        let with = |cseq: u32, contact: &str| {
            let text = format!(
                "INVITE sip:iwf@192.0.2.9 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-{cseq}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:alice@ims.example.com>;tag=a1\r\n\
                 To: <mailto:bob@example.net>;tag=l1\r\nCall-ID: c1@test\r\nCSeq: {cseq} INVITE\r\n\
                 {contact}Content-Length: 0\r\n\r\n"
            );
            parse(text.as_bytes(), Transport::Datagram, &Limits::default()).unwrap()
        };
        assert!(d.is_from_remote(&with(8, "")));
        let err = d.check_cseq(&with(7, "")).unwrap_err();
        assert!(err.contains("CSeq 7 INVITE out of order"), "{err}");
        assert!(d.check_cseq(&with(8, "")).is_ok());
        assert!(d.check_cseq(&with(8, "")).is_err(), "equal is not in order");
        d.refresh_target(&with(9, "Contact: <sip:alice@192.0.2.66:5999>\r\n"))
            .unwrap();
        assert_eq!(
            d.request("BYE", "v", &[]).unwrap().next_hop.to_string(),
            "192.0.2.66:5999"
        );
        d.refresh_target(&with(10, "")).unwrap();
        assert_eq!(
            d.request("BYE", "v", &[]).unwrap().next_hop.to_string(),
            "192.0.2.66:5999"
        );
    }

    #[test]
    fn an_invite_without_a_usable_contact_makes_no_dialog() {
        let e = Dialog::uas(&invite(""), "l1").unwrap_err();
        assert!(e.contains("without Contact"), "{e}");
        let e = Dialog::uas(&invite("Contact: <mailto:alice@example.com>\r\n"), "l1").unwrap_err();
        assert!(e.contains("bad Contact"), "{e}");
        let e = Dialog::uas(&invite("Contact: *\r\n"), "l1").unwrap_err();
        assert!(e.contains("Contact"), "{e}");
    }

    #[test]
    fn uri_targets() {
        let t = |u: &str| uri_target(u).map(|t| t.to_string());
        assert_eq!(
            t("sip:a;b?c@host.example.com:5070;lr").unwrap(),
            "host.example.com:5070"
        );
        assert_eq!(t("sips:[2001:db8::2]").unwrap(), "[2001:db8::2]:5061");
        assert_eq!(t("sip:127.0.0.1;lr?x=y").unwrap(), "127.0.0.1:5060");
        assert!(t("tel:+15551234567").is_err());
        assert!(t("sip:host:99999").is_err());
    }
}
