//! A session description (RFC 4566) as typed lines: the session-level `v=`, `o=`, `s=`,
//! `c=`, `t=` and attributes, then the media sections with their `m=`, `c=` and attributes.
//! Lines this gateway has no use for (`i=`, `u=`, `b=`, `k=`, ...) are skipped when parsing
//! and never written. Parsing takes CRLF or bare LF; printing always writes CRLF.

use std::fmt;

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: String,
    pub session_version: String,
    pub nettype: String,
    pub addrtype: String,
    pub address: String,
}

/// `c=<nettype> <addrtype> <connection-address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub nettype: String,
    /// `IP4` or `IP6` (upper-cased).
    pub addrtype: String,
    pub address: String,
}

/// `a=<name>[:<value>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

/// One media section: `m=<media> <port>[/<count>] <proto> <fmt> ...` and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub media: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<String>,
    pub connection: Option<Connection>,
    pub attributes: Vec<Attribute>,
}

impl Media {
    /// The value of the first attribute with that name (case-insensitive); `Some("")` for
    /// a flag attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        attribute(&self.attributes, name)
    }
}

/// A whole session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    pub connection: Option<Connection>,
    /// The `t=` value, e.g. `0 0`.
    pub timing: String,
    pub attributes: Vec<Attribute>,
    pub media: Vec<Media>,
}

/// Why a session description could not be read: the line number (1-based) and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SDP line {}: {}", self.line, self.reason)
    }
}

pub(crate) fn attribute<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .map(|a| a.value.as_deref().unwrap_or(""))
}

/// The most lines a description may have; an INVITE offer has a few dozen.
const MAX_LINES: usize = 1000;

impl SessionDescription {
    /// Parses a description. Requires `v=0` first and an `o=` line; `s=` and `t=` default to
    /// `-` and `0 0` when absent (some clients omit them; nothing here depends on them).
    pub fn parse(bytes: &[u8]) -> Result<SessionDescription, SdpError> {
        let text = std::str::from_utf8(bytes).map_err(|e| SdpError {
            line: 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            reason: "not UTF-8".into(),
        })?;
        let mut origin = None;
        let mut session_name = None;
        let mut connection = None;
        let mut timing = None;
        let mut attributes = Vec::new();
        let mut media: Vec<Media> = Vec::new();
        let mut seen_version = false;
        for (i, raw) in text.split('\n').enumerate() {
            let n = i + 1;
            let err = |reason: String| SdpError { line: n, reason };
            if n > MAX_LINES {
                return Err(err(format!("more than {MAX_LINES} lines")));
            }
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            let (kind, value) = match line.as_bytes() {
                [k, b'=', ..] if k.is_ascii_lowercase() => (*k, &line[2..]),
                _ => return Err(err(format!("not a <type>=<value> line: {line:?}"))),
            };
            if !seen_version {
                if kind != b'v' || value.trim() != "0" {
                    return Err(err("the first line must be v=0".into()));
                }
                seen_version = true;
                continue;
            }
            match (kind, media.last_mut()) {
                (b'm', _) => media.push(parse_media(value).map_err(err)?),
                (b'c', Some(m)) => m.connection = Some(parse_connection(value).map_err(err)?),
                (b'c', None) => connection = Some(parse_connection(value).map_err(err)?),
                (b'a', Some(m)) => m.attributes.push(parse_attribute(value).map_err(err)?),
                (b'a', None) => attributes.push(parse_attribute(value).map_err(err)?),
                (b'o', None) if origin.is_none() => {
                    origin = Some(parse_origin(value).map_err(err)?)
                }
                (b's', None) if session_name.is_none() => session_name = Some(value.to_string()),
                (b't', None) if timing.is_none() => timing = Some(value.trim().to_string()),
                (b'o' | b's' | b'v', _) => {
                    return Err(err(format!("unexpected {}= line", kind as char)));
                }
                _ => {}
            }
        }
        if !seen_version {
            return Err(SdpError {
                line: 1,
                reason: "empty session description".into(),
            });
        }
        Ok(SessionDescription {
            origin: origin.ok_or(SdpError {
                line: 2,
                reason: "o= line missing".into(),
            })?,
            session_name: session_name.unwrap_or_else(|| "-".into()),
            connection,
            timing: timing.unwrap_or_else(|| "0 0".into()),
            attributes,
            media,
        })
    }

    /// The description in wire form, CRLF line ends.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

fn parse_origin(v: &str) -> Result<Origin, String> {
    let f: Vec<&str> = v.split_ascii_whitespace().collect();
    match f.as_slice() {
        [u, id, ver, nt, at, addr] => Ok(Origin {
            username: u.to_string(),
            session_id: id.to_string(),
            session_version: ver.to_string(),
            nettype: nt.to_string(),
            addrtype: at.to_ascii_uppercase(),
            address: addr.to_string(),
        }),
        _ => Err(format!("malformed o= line: {v:?}")),
    }
}

fn parse_connection(v: &str) -> Result<Connection, String> {
    let f: Vec<&str> = v.split_ascii_whitespace().collect();
    match f.as_slice() {
        [nt, at, addr] => Ok(Connection {
            nettype: nt.to_string(),
            addrtype: at.to_ascii_uppercase(),
            address: addr.to_string(),
        }),
        _ => Err(format!("malformed c= line: {v:?}")),
    }
}

fn parse_attribute(v: &str) -> Result<Attribute, String> {
    let (name, value) = match v.split_once(':') {
        Some((n, val)) => (n, Some(val.trim().to_string())),
        None => (v, None),
    };
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("malformed a= line: {v:?}"));
    }
    Ok(Attribute {
        name: name.to_string(),
        value,
    })
}

fn parse_media(v: &str) -> Result<Media, String> {
    let mut f = v.split_ascii_whitespace();
    let (Some(media), Some(port), Some(proto)) = (f.next(), f.next(), f.next()) else {
        return Err(format!("malformed m= line: {v:?}"));
    };
    let port_only = port.split_once('/').map_or(port, |(p, _)| p);
    let port = port_only
        .parse::<u16>()
        .ok()
        .filter(|_| port_only.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("bad port in m= line: {v:?}"))?;
    let formats: Vec<String> = f.map(str::to_string).collect();
    if formats.is_empty() {
        return Err(format!("no format in m= line: {v:?}"));
    }
    Ok(Media {
        media: media.to_string(),
        port,
        proto: proto.to_string(),
        formats,
        connection: None,
        attributes: Vec::new(),
    })
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "c={} {} {}\r\n",
            self.nettype, self.addrtype, self.address
        )
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "a={}:{}\r\n", self.name, v),
            None => write!(f, "a={}\r\n", self.name),
        }
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        f.write_str("v=0\r\n")?;
        write!(
            f,
            "o={} {} {} {} {} {}\r\n",
            o.username, o.session_id, o.session_version, o.nettype, o.addrtype, o.address
        )?;
        write!(f, "s={}\r\n", self.session_name)?;
        if let Some(c) = &self.connection {
            write!(f, "{c}")?;
        }
        write!(f, "t={}\r\n", self.timing)?;
        for a in &self.attributes {
            write!(f, "{a}")?;
        }
        for m in &self.media {
            write!(
                f,
                "m={} {} {} {}\r\n",
                m.media,
                m.port,
                m.proto,
                m.formats.join(" ")
            )?;
            if let Some(c) = &m.connection {
                write!(f, "{c}")?;
            }
            for a in &m.attributes {
                write!(f, "{a}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lf_and_crlf_parse_the_same_and_print_crlf() {
        let crlf = b"v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                     m=message 7394 TCP/MSRP *\r\na=accept-types:text/plain\r\na=sendrecv\r\n";
        let lf = String::from_utf8(crlf.to_vec())
            .unwrap()
            .replace("\r\n", "\n");
        let a = SessionDescription::parse(crlf).unwrap();
        let b = SessionDescription::parse(lf.as_bytes()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_bytes(), crlf.to_vec());
        assert_eq!(a.media[0].attribute("sendrecv"), Some(""));
        assert_eq!(a.media[0].attribute("ACCEPT-TYPES"), Some("text/plain"));
    }

    #[test]
    fn malformed_descriptions_name_the_line() {
        let cases: [(&[u8], usize); 6] = [
            (b"", 1),
            (b"o=- 1 2 IN IP4 h\r\n", 1),
            (b"v=0\r\no=- 1 IN IP4 h\r\n", 2),
            (b"v=0\r\no=- 1 2 IN IP4 h\r\nm=message x TCP/MSRP *\r\n", 3),
            (b"v=0\r\no=- 1 2 IN IP4 h\r\nm=message 1 TCP/MSRP\r\n", 3),
            (b"v=0\r\no=- 1 2 IN IP4 h\r\nhello\r\n", 3),
        ];
        for (sdp, line) in cases {
            let e = SessionDescription::parse(sdp).unwrap_err();
            assert_eq!(e.line, line, "{e}");
        }
        assert!(SessionDescription::parse(b"v=0\r\ns=-\r\n").is_err());
        assert!(SessionDescription::parse(b"v=0\r\no=- 1 2 IN IP4 h\r\n\xff\r\n").is_err());
    }
}
