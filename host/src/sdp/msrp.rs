//! SDP offer/answer for an MSRP chat (RFC 3264, RFC 4975 section 8, RFC 6135).
//!
//! `Offer::parse` reads the SDP of an INVITE and picks its MSRP media; `answer` builds the
//! IWF's answer and the `MsrpParams` the session keeps. Every refusal is an `OfferError`
//! whose text goes into the `Warning` of a 488.
//!
//! Readings of the RFCs taken here:
//! - the IWF answers `TCP/MSRP` only; an offer whose MSRP media are all `TCP/TLS/MSRP` is
//!   refused (`OfferError::TlsOnly`);
//! - `a=setup` absent means `active` (RFC 6135 section 4.2 defers to RFC 4145 section 4,
//!   whose default is `active`; it also matches RFC 4975, where the offerer connects): the
//!   IWF then listens. `actpass` or `passive` -> the IWF is `active` and connects; `active`
//!   -> the IWF is `passive`; `holdconn` is refused;
//! - the answer's MSRP port is the IWF's listen port, the one in its `a=path` URI
//!   (RFC 4975 section 8.1), whichever role it takes;
//! - the first `m=message` `TCP/MSRP` line with a non-zero port is the chat; every other
//!   media line, including further MSRP lines, is rejected with port 0 (RFC 3264 section 6),
//!   so the answer has the offer's m-lines in the offer's order;
//! - `a=accept-types` is required in the offer (RFC 4975 section 8.6 says MUST).

use std::fmt;

use super::session::{Attribute, Connection, Media, Origin, SdpError, SessionDescription};
use super::uri::{Host, MsrpUri};

/// The media types the IWF takes in a SEND: CPIM around text, or bare text.
pub const LOCAL_ACCEPT_TYPES: [&str; 2] = ["message/cpim", "text/plain"];
/// What the IWF takes inside CPIM.
pub const LOCAL_ACCEPT_WRAPPED_TYPES: [&str; 1] = ["text/plain"];

/// Why an offer cannot be answered. `Display` is the Warning text of the 488.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferError {
    /// The body is not a session description.
    Malformed(SdpError),
    /// No `m=message` line with `TCP/MSRP` or `TCP/TLS/MSRP`.
    NoMsrpMedia,
    /// MSRP offered over TLS only.
    TlsOnly,
    PathMissing,
    /// An `a=path` URI that does not parse: the URI and what is wrong.
    MalformedPath(String),
    AcceptTypesMissing,
    /// Neither `message/cpim` nor `text/plain` is acceptable to the peer.
    NoCommonAcceptTypes,
    /// `a=setup:holdconn`, or a value RFC 4145 does not define.
    UnsupportedSetup(String),
    MalformedMaxSize(String),
}

impl fmt::Display for OfferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OfferError::Malformed(e) => write!(f, "malformed SDP: {e}"),
            OfferError::NoMsrpMedia => f.write_str("no MSRP media in offer"),
            OfferError::TlsOnly => f.write_str("only TCP/MSRP is supported, offer has TLS only"),
            OfferError::PathMissing => f.write_str("a=path missing"),
            OfferError::MalformedPath(e) => write!(f, "malformed a=path URI: {e}"),
            OfferError::AcceptTypesMissing => f.write_str("a=accept-types missing"),
            OfferError::NoCommonAcceptTypes => {
                f.write_str("no common accept-types (message/cpim or text/plain)")
            }
            OfferError::UnsupportedSetup(s) => write!(f, "a=setup:{s} not supported"),
            OfferError::MalformedMaxSize(s) => write!(f, "malformed a=max-size: {s}"),
        }
    }
}

impl std::error::Error for OfferError {}

impl OfferError {
    /// The RFC 3261 section 20.43 warn-code for the 488's Warning header.
    pub fn warn_code(&self) -> u16 {
        match self {
            OfferError::NoMsrpMedia => 304,         // Media type not available
            OfferError::TlsOnly => 302,             // Incompatible transport protocol
            OfferError::NoCommonAcceptTypes => 305, // Incompatible media format
            OfferError::Malformed(_) => 399,        // Miscellaneous warning
            _ => 307,                               // Session description parameter not understood
        }
    }
}

/// `a=setup` (RFC 4145 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Active,
    Passive,
    ActPass,
    HoldConn,
}

impl Setup {
    fn parse(s: &str) -> Result<Setup, OfferError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "active" => Ok(Setup::Active),
            "passive" => Ok(Setup::Passive),
            "actpass" => Ok(Setup::ActPass),
            "holdconn" => Ok(Setup::HoldConn),
            _ => Err(OfferError::UnsupportedSetup(s.trim().to_string())),
        }
    }
}

/// Who opens the MSRP TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The IWF connects to the first URI of the peer's path.
    Active,
    /// The IWF waits for the peer on its listen port.
    Passive,
}

/// The direction attribute (RFC 3264 section 5.1), `sendrecv` when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attributes(attrs: &[Attribute]) -> Option<Direction> {
        attrs.iter().rev().find_map(|a| match a.name.as_str() {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        })
    }

    /// The answer's direction for this offered one (RFC 3264 section 6.1).
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    fn attribute_name(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// The MSRP media of an offer, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsrpMedia {
    /// Its position among the offer's m-lines.
    pub index: usize,
    pub port: u16,
    /// The peer's `a=path`, in order: the first URI is the next hop, the last the peer.
    pub path: Vec<MsrpUri>,
    pub accept_types: Vec<String>,
    pub accept_wrapped_types: Vec<String>,
    /// As offered, `Setup::Active` when absent (see the module doc).
    pub setup: Setup,
    pub max_size: Option<u64>,
    pub direction: Direction,
    /// The media-level `c=`, else the session-level one.
    pub connection: Option<Connection>,
}

/// An SDP offer with its MSRP media found and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub sdp: SessionDescription,
    pub msrp: MsrpMedia,
}

fn is_msrp(m: &Media) -> bool {
    m.media.eq_ignore_ascii_case("message") && m.proto.eq_ignore_ascii_case("TCP/MSRP")
}

fn is_msrp_tls(m: &Media) -> bool {
    m.media.eq_ignore_ascii_case("message") && m.proto.eq_ignore_ascii_case("TCP/TLS/MSRP")
}

fn media_types(v: &str) -> Vec<String> {
    v.split_ascii_whitespace()
        .map(|t| t.to_ascii_lowercase())
        .collect()
}

impl Offer {
    /// Reads an offer and its MSRP media; the error is the reason for a 488.
    pub fn parse(bytes: &[u8]) -> Result<Offer, OfferError> {
        let sdp = SessionDescription::parse(bytes).map_err(OfferError::Malformed)?;
        let Some(index) = sdp.media.iter().position(|m| is_msrp(m) && m.port != 0) else {
            if sdp.media.iter().any(|m| is_msrp_tls(m) && m.port != 0) {
                return Err(OfferError::TlsOnly);
            }
            return Err(OfferError::NoMsrpMedia);
        };
        let m = &sdp.media[index];
        let path = m.attribute("path").ok_or(OfferError::PathMissing)?;
        let path = path
            .split_ascii_whitespace()
            .map(MsrpUri::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(OfferError::MalformedPath)?;
        if path.is_empty() {
            return Err(OfferError::PathMissing);
        }
        let accept_types = media_types(
            m.attribute("accept-types")
                .ok_or(OfferError::AcceptTypesMissing)?,
        );
        if accept_types.is_empty() {
            return Err(OfferError::AcceptTypesMissing);
        }
        let accept_wrapped_types = media_types(m.attribute("accept-wrapped-types").unwrap_or(""));
        let setup = m
            .attribute("setup")
            .map_or(Ok(Setup::Active), Setup::parse)?;
        let max_size = match m.attribute("max-size") {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| OfferError::MalformedMaxSize(v.to_string()))?,
            ),
        };
        let direction = Direction::from_attributes(&m.attributes)
            .or_else(|| Direction::from_attributes(&sdp.attributes))
            .unwrap_or(Direction::SendRecv);
        let msrp = MsrpMedia {
            index,
            port: m.port,
            path,
            accept_types,
            accept_wrapped_types,
            setup,
            max_size,
            direction,
            connection: m.connection.clone().or_else(|| sdp.connection.clone()),
        };
        Ok(Offer { sdp, msrp })
    }
}

/// The IWF's own MSRP endpoint for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMsrp {
    /// The host written in the path URI, `c=` and `o=` (`IP6` for an IPv6 address, else
    /// `IP4`, a domain name included).
    pub host: Host,
    /// The `[msrp] listen` port.
    pub port: u16,
    /// From `new_session_id`.
    pub session_id: String,
    /// The largest message the IWF takes, announced as `a=max-size` when set.
    pub max_size: Option<u64>,
}

/// What the session records of the negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsrpParams {
    /// The peer's path as offered: connect to (or expect) the first, address the last.
    pub peer_path: Vec<MsrpUri>,
    pub local_path: MsrpUri,
    pub role: Role,
    /// The types both ends take, as answered.
    pub accept_types: Vec<String>,
    /// The types the IWF takes inside CPIM, as answered (empty without CPIM).
    pub accept_wrapped_types: Vec<String>,
    /// The types the peer takes inside CPIM, as offered (RFC 4975 8.6): what the IWF may
    /// wrap for it (F5 attachments).
    pub peer_accept_wrapped_types: Vec<String>,
    /// The peer's `a=max-size`: the largest message the IWF may send it.
    pub max_size: Option<u64>,
}

/// The IWF's answer: the description to send and the parameters to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub sdp: SessionDescription,
    pub params: MsrpParams,
}

impl Answer {
    /// The answer in wire form (CRLF).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.sdp.to_bytes()
    }
}

/// Does the peer, which takes `offered`, take `ours`? `*` and `type/*` are wildcards.
fn acceptable(ours: &str, offered: &[String]) -> bool {
    let major = ours.split('/').next().unwrap_or("");
    offered
        .iter()
        .any(|t| t == "*" || t == ours || t.strip_suffix("/*").is_some_and(|m| m == major))
}

/// The IWF's role for the offered setup (RFC 6135 section 4.2).
pub fn role_for(setup: Setup) -> Result<Role, OfferError> {
    match setup {
        Setup::ActPass | Setup::Passive => Ok(Role::Active),
        Setup::Active => Ok(Role::Passive),
        Setup::HoldConn => Err(OfferError::UnsupportedSetup("holdconn".into())),
    }
}

/// Builds the answer to `offer` for the IWF endpoint `local`, with a fresh `o=` session id.
pub fn answer(offer: &Offer, local: &LocalMsrp) -> Result<Answer, OfferError> {
    let mut b = [0u8; 8];
    // Without OS randomness the origin id is still unique enough from the MSRP session id.
    let origin_id = match getrandom::fill(&mut b) {
        Ok(()) => u64::from_be_bytes(b) >> 2,
        Err(_) => {
            local
                .session_id
                .bytes()
                .fold(0u64, |h, c| h.wrapping_mul(31).wrapping_add(c.into()))
                >> 2
        }
    };
    answer_with_origin(offer, local, origin_id)
}

/// `answer` with the `o=` session id given (deterministic, for tests).
pub fn answer_with_origin(
    offer: &Offer,
    local: &LocalMsrp,
    origin_id: u64,
) -> Result<Answer, OfferError> {
    let m = &offer.msrp;
    let role = role_for(m.setup)?;
    let accept_types: Vec<String> = LOCAL_ACCEPT_TYPES
        .iter()
        .filter(|t| acceptable(t, &m.accept_types))
        .map(|t| t.to_string())
        .collect();
    if accept_types.is_empty() {
        return Err(OfferError::NoCommonAcceptTypes);
    }
    let accept_wrapped_types: Vec<String> = if accept_types.iter().any(|t| t == "message/cpim") {
        LOCAL_ACCEPT_WRAPPED_TYPES
            .iter()
            .map(|t| t.to_string())
            .collect()
    } else {
        Vec::new()
    };
    let local_path = MsrpUri::tcp(local.host.clone(), local.port, &local.session_id);
    let addrtype = if local.host.is_ipv6() { "IP6" } else { "IP4" };
    let address = local.host.sdp_address();

    let mut attributes = vec![
        attr("path", Some(local_path.to_string())),
        attr("accept-types", Some(accept_types.join(" "))),
    ];
    if !accept_wrapped_types.is_empty() {
        attributes.push(attr(
            "accept-wrapped-types",
            Some(accept_wrapped_types.join(" ")),
        ));
    }
    let setup = match role {
        Role::Active => "active",
        Role::Passive => "passive",
    };
    attributes.push(attr("setup", Some(setup.to_string())));
    if let Some(max) = local.max_size {
        attributes.push(attr("max-size", Some(max.to_string())));
    }
    attributes.push(attr(m.direction.reversed().attribute_name(), None));

    let media = offer
        .sdp
        .media
        .iter()
        .enumerate()
        .map(|(i, om)| {
            if i == m.index {
                Media {
                    media: om.media.clone(),
                    port: local.port,
                    proto: om.proto.clone(),
                    formats: om.formats.clone(),
                    connection: None,
                    attributes: attributes.clone(),
                }
            } else {
                // RFC 3264 section 6: rejected, port 0, the offered formats kept.
                Media {
                    media: om.media.clone(),
                    port: 0,
                    proto: om.proto.clone(),
                    formats: om.formats.clone(),
                    connection: None,
                    attributes: Vec::new(),
                }
            }
        })
        .collect();
    let sdp = SessionDescription {
        origin: Origin {
            username: "-".into(),
            session_id: origin_id.to_string(),
            session_version: origin_id.to_string(),
            nettype: "IN".into(),
            addrtype: addrtype.into(),
            address: address.clone(),
        },
        session_name: "-".into(),
        connection: Some(Connection {
            nettype: "IN".into(),
            addrtype: addrtype.into(),
            address,
        }),
        timing: "0 0".into(),
        attributes: Vec::new(),
        media,
    };
    Ok(Answer {
        sdp,
        params: MsrpParams {
            peer_path: m.path.clone(),
            local_path,
            role,
            accept_types,
            accept_wrapped_types,
            peer_accept_wrapped_types: m.accept_wrapped_types.clone(),
            max_size: m.max_size,
        },
    })
}

/// The IWF's own offer in a session it answered as `answer` (RFC 4975 8.4: after a
/// restart lost the chat connection): the same description at `o=` version `version`,
/// with `a=setup:actpass` (RFC 6135 4.1) so that the answerer says who connects. The
/// path is unchanged: the session id is the session's name in the store and the mails.
pub fn reoffer(answer: &Answer, version: u64) -> SessionDescription {
    let mut sdp = answer.sdp.clone();
    sdp.origin.session_version = version.to_string();
    set_setup(&mut sdp, "actpass");
    sdp
}

/// The answer `reply` to the IWF's re-offer `offered` (from [`reoffer`]) in the session
/// negotiated as `previous`: the session's description and parameters from now on. The
/// answerer chose the direction (RFC 6135 4.2: `active` or `passive`); the types are
/// those of before that the answerer still takes.
pub fn reanswered(
    previous: &Answer,
    offered: &SessionDescription,
    reply: &[u8],
) -> Result<(Offer, Answer), OfferError> {
    let theirs = Offer::parse(reply)?;
    let m = &theirs.msrp;
    let (role, setup) = match m.setup {
        Setup::Active => (Role::Passive, "passive"),
        Setup::Passive => (Role::Active, "active"),
        Setup::ActPass => return Err(OfferError::UnsupportedSetup("actpass in an answer".into())),
        Setup::HoldConn => return Err(OfferError::UnsupportedSetup("holdconn".into())),
    };
    let old = &previous.params;
    let accept_types: Vec<String> = old
        .accept_types
        .iter()
        .filter(|t| acceptable(t, &m.accept_types))
        .cloned()
        .collect();
    if accept_types.is_empty() {
        return Err(OfferError::NoCommonAcceptTypes);
    }
    let mut sdp = offered.clone();
    set_setup(&mut sdp, setup);
    let params = MsrpParams {
        peer_path: m.path.clone(),
        local_path: old.local_path.clone(),
        role,
        accept_types,
        accept_wrapped_types: old.accept_wrapped_types.clone(),
        peer_accept_wrapped_types: m.accept_wrapped_types.clone(),
        max_size: m.max_size,
    };
    Ok((theirs, Answer { sdp, params }))
}

/// `a=setup:value` on the MSRP media of the IWF's own description `sdp`.
fn set_setup(sdp: &mut SessionDescription, value: &str) {
    for media in sdp.media.iter_mut().filter(|m| is_msrp(m) && m.port != 0) {
        for a in media.attributes.iter_mut().filter(|a| a.name == "setup") {
            a.value = Some(value.to_string());
        }
    }
}

fn attr(name: &str, value: Option<String>) -> Attribute {
    Attribute {
        name: name.to_string(),
        value,
    }
}

/// The alphabet of session ids: RFC 4648 base32, lower-cased (safe in an MSRP URI and in
/// an e-mail local part).
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A fresh, unguessable MSRP session id: 130 bits from the OS, 26 characters of [a-z2-7].
///
/// # Panics
/// When the OS has no randomness to give: no session may start with a guessable id.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 17];
    getrandom::fill(&mut bytes).expect("OS randomness for an MSRP session id");
    encode_session_id(&bytes)
}

/// 26 base32 characters from the first 130 bits of `bytes` (at least 17 bytes).
fn encode_session_id(bytes: &[u8; 17]) -> String {
    let mut out = String::with_capacity(26);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 && out.len() < 26 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// A typical RCS/CPM INVITE offer with the given setup line (or none) and extra lines.
    fn offer(setup: Option<&str>) -> String {
        let mut s = String::from(
            "v=0\r\n\
             o=- 3912345678 3912345678 IN IP4 198.51.100.7\r\n\
             s=-\r\n\
             c=IN IP4 198.51.100.7\r\n\
             t=0 0\r\n\
             m=message 40123 TCP/MSRP *\r\n\
             a=accept-types:message/cpim application/im-iscomposing+xml\r\n\
             a=accept-wrapped-types:text/plain message/imdn+xml\r\n\
             a=path:msrp://198.51.100.7:40123/u8a7s6d5;tcp\r\n\
             a=max-size:65536\r\n\
             a=sendrecv\r\n",
        );
        if let Some(v) = setup {
            s.push_str(&format!("a=setup:{v}\r\n"));
        }
        s
    }

    fn local() -> LocalMsrp {
        LocalMsrp {
            host: Host::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))),
            port: 2855,
            session_id: "iwfsess1".into(),
            max_size: None,
        }
    }

    fn answered(sdp: &str) -> Answer {
        let o = Offer::parse(sdp.as_bytes()).unwrap();
        answer_with_origin(&o, &local(), 42).unwrap()
    }

    #[test]
    fn typical_offer_is_typed() {
        let o = Offer::parse(offer(Some("actpass")).as_bytes()).unwrap();
        let m = &o.msrp;
        assert_eq!(m.index, 0);
        assert_eq!(m.port, 40123);
        assert_eq!(m.path.len(), 1);
        assert_eq!(m.path[0].session_id, "u8a7s6d5");
        assert_eq!(m.path[0].port, Some(40123));
        assert_eq!(
            m.accept_types,
            vec!["message/cpim", "application/im-iscomposing+xml"]
        );
        assert_eq!(
            m.accept_wrapped_types,
            vec!["text/plain", "message/imdn+xml"]
        );
        assert_eq!(m.setup, Setup::ActPass);
        assert_eq!(m.max_size, Some(65536));
        assert_eq!(m.direction, Direction::SendRecv);
        assert_eq!(m.connection.as_ref().unwrap().address, "198.51.100.7");
        assert_eq!(o.sdp.origin.session_id, "3912345678");
    }

    #[test]
    fn a_reoffer_keeps_the_path_bumps_the_version_and_lets_the_answer_say_who_connects() {
        let first = answered(&offer(Some("active")));
        let offered = reoffer(&first, 43);
        assert_eq!(offered.origin.session_id, "42");
        assert_eq!(offered.origin.session_version, "43");
        let m = &offered.media[0];
        assert_eq!(m.attribute("setup"), Some("actpass"));
        assert_eq!(
            m.attribute("path"),
            Some("msrp://192.0.2.10:2855/iwfsess1;tcp")
        );
        // The CPM side answers passive with a new path: the IWF now connects to it.
        let reply = offer(Some("passive")).replace("u8a7s6d5", "n3wp4th");
        let (theirs, now) = reanswered(&first, &offered, reply.as_bytes()).unwrap();
        assert_eq!(theirs.msrp.path[0].session_id, "n3wp4th");
        assert_eq!(now.params.role, Role::Active);
        assert_eq!(now.params.peer_path[0].session_id, "n3wp4th");
        assert_eq!(now.params.local_path, first.params.local_path);
        assert_eq!(now.sdp.media[0].attribute("setup"), Some("active"));
        assert_eq!(now.sdp.origin.session_version, "43");
        // Active: it connects, the IWF waits.
        let reply = offer(Some("active"));
        let (_, now) = reanswered(&first, &offered, reply.as_bytes()).unwrap();
        assert_eq!(now.params.role, Role::Passive);
        // actpass is for offers only (RFC 6135 4.2); types no longer taken end it.
        let reply = offer(Some("actpass"));
        assert!(matches!(
            reanswered(&first, &offered, reply.as_bytes()),
            Err(OfferError::UnsupportedSetup(_))
        ));
        let reply = offer(Some("active"))
            .replace("message/cpim application/im", "image/png application/im");
        assert_eq!(
            reanswered(&first, &offered, reply.as_bytes()).unwrap_err(),
            OfferError::NoCommonAcceptTypes
        );
    }

    #[test]
    fn actpass_offer_makes_the_iwf_active() {
        let a = answered(&offer(Some("actpass")));
        assert_eq!(a.params.role, Role::Active);
        assert_eq!(a.sdp.media[0].attribute("setup"), Some("active"));
    }

    #[test]
    fn passive_offer_makes_the_iwf_active() {
        let a = answered(&offer(Some("passive")));
        assert_eq!(a.params.role, Role::Active);
        assert_eq!(a.sdp.media[0].attribute("setup"), Some("active"));
    }

    #[test]
    fn active_offer_makes_the_iwf_passive() {
        let a = answered(&offer(Some("active")));
        assert_eq!(a.params.role, Role::Passive);
        assert_eq!(a.sdp.media[0].attribute("setup"), Some("passive"));
    }

    #[test]
    fn offer_without_setup_is_active_so_the_iwf_listens() {
        let o = Offer::parse(offer(None).as_bytes()).unwrap();
        assert_eq!(o.msrp.setup, Setup::Active);
        let a = answer_with_origin(&o, &local(), 1).unwrap();
        assert_eq!(a.params.role, Role::Passive);
    }

    #[test]
    fn holdconn_offer_is_refused() {
        let o = Offer::parse(offer(Some("holdconn")).as_bytes()).unwrap();
        let e = answer_with_origin(&o, &local(), 1).unwrap_err();
        assert_eq!(e, OfferError::UnsupportedSetup("holdconn".into()));
        assert_eq!(e.to_string(), "a=setup:holdconn not supported");
        assert!(matches!(
            Offer::parse(offer(Some("sideways")).as_bytes()),
            Err(OfferError::UnsupportedSetup(_))
        ));
    }

    #[test]
    fn answer_has_the_wire_form_expected() {
        let a = answered(&offer(Some("actpass")));
        let text = String::from_utf8(a.to_bytes()).unwrap();
        assert_eq!(
            text,
            "v=0\r\n\
             o=- 42 42 IN IP4 192.0.2.10\r\n\
             s=-\r\n\
             c=IN IP4 192.0.2.10\r\n\
             t=0 0\r\n\
             m=message 2855 TCP/MSRP *\r\n\
             a=path:msrp://192.0.2.10:2855/iwfsess1;tcp\r\n\
             a=accept-types:message/cpim\r\n\
             a=accept-wrapped-types:text/plain\r\n\
             a=setup:active\r\n\
             a=sendrecv\r\n"
        );
        let p = &a.params;
        assert_eq!(
            p.local_path.to_string(),
            "msrp://192.0.2.10:2855/iwfsess1;tcp"
        );
        assert_eq!(
            p.peer_path[0].to_string(),
            "msrp://198.51.100.7:40123/u8a7s6d5;tcp"
        );
        assert_eq!(p.accept_types, vec!["message/cpim"]);
        assert_eq!(p.accept_wrapped_types, vec!["text/plain"]);
        assert_eq!(p.max_size, Some(65536));
    }

    #[test]
    fn answer_round_trips_through_the_parser() {
        let mut l = local();
        l.max_size = Some(1 << 20);
        let o = Offer::parse(offer(Some("actpass")).as_bytes()).unwrap();
        let a = answer_with_origin(&o, &l, 7).unwrap();
        let back = Offer::parse(&a.to_bytes()).unwrap();
        assert_eq!(back.sdp, a.sdp);
        assert_eq!(back.msrp.path, vec![a.params.local_path.clone()]);
        assert_eq!(back.msrp.setup, Setup::Active);
        assert_eq!(back.msrp.accept_types, a.params.accept_types);
        assert_eq!(
            back.msrp.accept_wrapped_types,
            a.params.accept_wrapped_types
        );
        assert_eq!(back.msrp.max_size, Some(1 << 20));
        assert_eq!(back.msrp.port, 2855);
    }

    #[test]
    fn answer_origin_is_fresh() {
        let o = Offer::parse(offer(Some("actpass")).as_bytes()).unwrap();
        let a = answer(&o, &local()).unwrap();
        let b = answer(&o, &local()).unwrap();
        assert_ne!(a.sdp.origin.session_id, b.sdp.origin.session_id);
        assert_ne!(a.sdp.origin.session_id, o.sdp.origin.session_id);
        assert!(a.sdp.origin.session_id.parse::<u64>().is_ok());
    }

    #[test]
    fn lf_offer_is_read_like_crlf() {
        let crlf = offer(Some("actpass"));
        let lf = crlf.replace("\r\n", "\n");
        assert_eq!(
            Offer::parse(lf.as_bytes()).unwrap(),
            Offer::parse(crlf.as_bytes()).unwrap()
        );
    }

    #[test]
    fn ipv6_offer_and_ipv6_local_host() {
        let sdp = "v=0\n\
                   o=- 1 1 IN IP6 2001:db8::7\n\
                   s=-\n\
                   c=IN IP6 2001:db8::7\n\
                   t=0 0\n\
                   m=message 9 TCP/MSRP *\n\
                   a=accept-types:*\n\
                   a=path:msrp://[2001:db8::7]:40123/v6sess;tcp\n\
                   a=setup:actpass\n";
        let o = Offer::parse(sdp.as_bytes()).unwrap();
        assert!(o.msrp.path[0].host.is_ipv6());
        assert_eq!(o.msrp.connection.as_ref().unwrap().addrtype, "IP6");
        let l = LocalMsrp {
            host: Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ..local()
        };
        let a = answer_with_origin(&o, &l, 3).unwrap();
        let text = String::from_utf8(a.to_bytes()).unwrap();
        assert!(text.contains("o=- 3 3 IN IP6 ::1\r\n"), "{text}");
        assert!(text.contains("c=IN IP6 ::1\r\n"), "{text}");
        assert!(
            text.contains("a=path:msrp://[::1]:2855/iwfsess1;tcp\r\n"),
            "{text}"
        );
        // `*` takes everything: both of ours are answered.
        assert!(
            text.contains("a=accept-types:message/cpim text/plain\r\n"),
            "{text}"
        );
    }

    #[test]
    fn relay_path_keeps_every_uri_in_order() {
        let sdp = offer(Some("passive")).replace(
            "a=path:msrp://198.51.100.7:40123/u8a7s6d5;tcp",
            "a=path:msrp://relay.example.net:2855/r3l4y;tcp msrp://198.51.100.7:40123/u8a7s6d5;tcp",
        );
        let o = Offer::parse(sdp.as_bytes()).unwrap();
        assert_eq!(o.msrp.path.len(), 2);
        assert_eq!(o.msrp.path[0].host, Host::Name("relay.example.net".into()));
        assert_eq!(o.msrp.path[1].session_id, "u8a7s6d5");
        let a = answer_with_origin(&o, &local(), 1).unwrap();
        assert_eq!(a.params.peer_path, o.msrp.path);
    }

    #[test]
    fn audio_and_message_offer_rejects_audio_with_port_0() {
        let sdp = "v=0\r\n\
                   o=- 5 5 IN IP4 198.51.100.7\r\n\
                   s=-\r\n\
                   c=IN IP4 198.51.100.7\r\n\
                   t=0 0\r\n\
                   m=audio 49170 RTP/AVP 0 8\r\n\
                   a=rtpmap:0 PCMU/8000\r\n\
                   m=message 40123 TCP/MSRP *\r\n\
                   a=accept-types:text/plain\r\n\
                   a=path:msrp://198.51.100.7:40123/abc;tcp\r\n\
                   m=video 51372 RTP/AVP 31\r\n";
        let o = Offer::parse(sdp.as_bytes()).unwrap();
        assert_eq!(o.msrp.index, 1);
        let a = answer_with_origin(&o, &local(), 9).unwrap();
        let ms = &a.sdp.media;
        assert_eq!(ms.len(), 3);
        assert_eq!((ms[0].media.as_str(), ms[0].port), ("audio", 0));
        assert_eq!(ms[0].formats, vec!["0", "8"]);
        assert!(ms[0].attributes.is_empty());
        assert_eq!((ms[1].media.as_str(), ms[1].port), ("message", 2855));
        assert_eq!((ms[2].media.as_str(), ms[2].port), ("video", 0));
        let text = String::from_utf8(a.to_bytes()).unwrap();
        assert!(
            text.contains("m=audio 0 RTP/AVP 0 8\r\nm=message 2855"),
            "{text}"
        );
        // text/plain only: no CPIM, so no wrapped types.
        assert_eq!(a.params.accept_types, vec!["text/plain"]);
        assert!(a.params.accept_wrapped_types.is_empty());
        assert_eq!(ms[1].attribute("accept-wrapped-types"), None);
    }

    #[test]
    fn offer_with_no_msrp_media_is_refused() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 h.example\r\ns=-\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n";
        let e = Offer::parse(sdp.as_bytes()).unwrap_err();
        assert_eq!(e, OfferError::NoMsrpMedia);
        assert_eq!(e.to_string(), "no MSRP media in offer");
        assert_eq!(e.warn_code(), 304);
        // An MSRP line already rejected (port 0) is no MSRP media either.
        let sdp = offer(None).replace("m=message 40123", "m=message 0");
        assert_eq!(Offer::parse(sdp.as_bytes()), Err(OfferError::NoMsrpMedia));
    }

    #[test]
    fn tls_only_offer_is_refused() {
        let sdp = offer(Some("actpass"))
            .replace("TCP/MSRP", "TCP/TLS/MSRP")
            .replace("msrp://", "msrps://");
        let e = Offer::parse(sdp.as_bytes()).unwrap_err();
        assert_eq!(e, OfferError::TlsOnly);
        assert_eq!(e.warn_code(), 302);
    }

    #[test]
    fn tls_and_tcp_offer_answers_tcp_and_rejects_tls() {
        let tcp = offer(Some("actpass"));
        let media = &tcp[tcp.find("m=message").unwrap()..];
        let tls = media
            .replace("TCP/MSRP", "TCP/TLS/MSRP")
            .replace("msrp://", "msrps://");
        let sdp = format!("{}{tls}{media}", &tcp[..tcp.find("m=message").unwrap()]);
        let o = Offer::parse(sdp.as_bytes()).unwrap();
        assert_eq!(o.msrp.index, 1);
        let a = answer_with_origin(&o, &local(), 1).unwrap();
        assert_eq!(a.sdp.media[0].port, 0);
        assert_eq!(a.sdp.media[0].proto, "TCP/TLS/MSRP");
        assert_eq!(a.sdp.media[1].port, 2855);
    }

    #[test]
    fn missing_path_is_refused() {
        let sdp = offer(None).replace("a=path:msrp://198.51.100.7:40123/u8a7s6d5;tcp\r\n", "");
        let e = Offer::parse(sdp.as_bytes()).unwrap_err();
        assert_eq!(e, OfferError::PathMissing);
        assert_eq!(e.to_string(), "a=path missing");
        let sdp = offer(None).replace("a=path:msrp://198.51.100.7:40123/u8a7s6d5;tcp", "a=path:");
        assert_eq!(Offer::parse(sdp.as_bytes()), Err(OfferError::PathMissing));
    }

    #[test]
    fn malformed_path_is_refused() {
        for bad in [
            "a=path:sip:bob@example.com",
            "a=path:msrp://198.51.100.7:40123/u8a7s6d5",
            "a=path:msrp://[2001:db8::7:40123/x;tcp",
            "a=path:msrp://relay.example.net:2855/r;tcp msrp://198.51.100.7:notaport/x;tcp",
        ] {
            let sdp = offer(None).replace("a=path:msrp://198.51.100.7:40123/u8a7s6d5;tcp", bad);
            let e = Offer::parse(sdp.as_bytes()).unwrap_err();
            assert!(matches!(e, OfferError::MalformedPath(_)), "{bad}: {e:?}");
            assert!(e.to_string().starts_with("malformed a=path URI: "), "{e}");
        }
    }

    #[test]
    fn accept_types_missing_or_incompatible_are_refused() {
        let sdp = offer(None).replace(
            "a=accept-types:message/cpim application/im-iscomposing+xml\r\n",
            "",
        );
        assert_eq!(
            Offer::parse(sdp.as_bytes()),
            Err(OfferError::AcceptTypesMissing)
        );
        let sdp = offer(None).replace(
            "a=accept-types:message/cpim application/im-iscomposing+xml",
            "a=accept-types:image/jpeg",
        );
        let o = Offer::parse(sdp.as_bytes()).unwrap();
        let e = answer_with_origin(&o, &local(), 1).unwrap_err();
        assert_eq!(e, OfferError::NoCommonAcceptTypes);
        assert_eq!(e.warn_code(), 305);
    }

    #[test]
    fn accept_types_wildcards() {
        let offered = |v: &str| media_types(v);
        assert!(acceptable("text/plain", &offered("text/*")));
        assert!(!acceptable("message/cpim", &offered("text/*")));
        assert!(acceptable("message/cpim", &offered("*")));
        assert!(acceptable("message/cpim", &offered("Message/CPIM")));
        assert!(!acceptable("text/plain", &offered("text/html")));
    }

    #[test]
    fn direction_is_mirrored() {
        let sdp = offer(None).replace("a=sendrecv", "a=sendonly");
        let a = answered(&sdp);
        assert_eq!(a.sdp.media[0].attribute("recvonly"), Some(""));
        let sdp = offer(None).replace("a=sendrecv\r\n", "");
        let o = Offer::parse(sdp.as_bytes()).unwrap();
        assert_eq!(o.msrp.direction, Direction::SendRecv);
    }

    #[test]
    fn malformed_max_size_and_sdp_are_refused() {
        let sdp = offer(None).replace("a=max-size:65536", "a=max-size:big");
        assert_eq!(
            Offer::parse(sdp.as_bytes()),
            Err(OfferError::MalformedMaxSize("big".into()))
        );
        let e = Offer::parse(b"hello").unwrap_err();
        assert!(matches!(e, OfferError::Malformed(_)));
        assert!(
            e.to_string().starts_with("malformed SDP: SDP line 1"),
            "{e}"
        );
    }

    #[test]
    fn session_ids_are_long_random_and_uri_and_mail_safe() {
        let a = new_session_id();
        let b = new_session_id();
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.len(), 26);
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            );
            let uri = MsrpUri::tcp(Host::Name("iwf.example".into()), 2855, id);
            assert_eq!(MsrpUri::parse(&uri.to_string()).unwrap().session_id, *id);
        }
        assert_eq!(encode_session_id(&[0; 17]), "a".repeat(26));
        assert_eq!(encode_session_id(&[0xff; 17]), "7".repeat(26));
    }
}
