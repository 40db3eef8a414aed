//! SMTP replies as the client reads them (RFC 5321 4.2): an incremental parser for
//! multi-line replies, RFC 3463 enhanced status codes, and the EHLO keywords (RFC 5321
//! 4.1.1.1) with DELIVERBY (RFC 2852 4). No I/O.

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line, without code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// RFC 3463 enhanced status code at the start of the first line, if the server gave one.
    pub fn enhanced_code(&self) -> Option<String> {
        self.lines.first().and_then(|l| enhanced_code(l))
    }

    /// The lines joined by spaces, with the enhanced code of the first line left out.
    pub fn text(&self) -> String {
        let mut lines = self.lines.iter().map(|l| strip_enhanced(l));
        let first = lines.next().unwrap_or_default().to_owned();
        lines.fold(first, |acc, l| acc + " " + l)
    }

    /// 4yz: transient; 5yz: permanent (RFC 5321 4.2.1).
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// Parses one reply from the start of `input`: `Some((reply, bytes used))` when a whole
/// reply is there, `None` to wait for more. A line that is not `ddd[ -]text` ends the
/// parse with `Err` (a text of what was wrong).
pub fn parse_reply(input: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let mut used = 0;
    let mut lines = Vec::new();
    let mut code = None;
    while let Some(end) = input[used..].windows(2).position(|w| w == b"\r\n") {
        let line = &input[used..used + end];
        used += end + 2;
        let text = String::from_utf8_lossy(line);
        let (digits, rest) = text
            .split_at_checked(3)
            .ok_or_else(|| format!("short reply line {text:?}"))?;
        let this: u16 = digits
            .parse()
            .ok()
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| format!("bad reply code in {text:?}"))?;
        if *code.get_or_insert(this) != this {
            return Err(format!("reply code changes within a reply at {text:?}"));
        }
        let (last, rest) = match rest.as_bytes().first() {
            None => (true, ""),
            Some(b' ') => (true, &rest[1..]),
            Some(b'-') => (false, &rest[1..]),
            _ => return Err(format!("bad separator in {text:?}")),
        };
        lines.push(rest.to_owned());
        if last {
            let code = code.expect("set above");
            return Ok(Some((Reply { code, lines }, used)));
        }
    }
    Ok(None)
}

/// All complete replies in `input`, in order; a trailing partial reply is left out.
pub fn parse_replies(mut input: &[u8]) -> Result<Vec<Reply>, String> {
    let mut replies = Vec::new();
    while let Some((reply, used)) = parse_reply(input)? {
        replies.push(reply);
        input = &input[used..];
    }
    Ok(replies)
}

/// RFC 3463 2: `class.subject.detail` with class 2, 4 or 5, subject and detail 1-3 digits.
pub fn enhanced_code(text: &str) -> Option<String> {
    let word = text.split_whitespace().next()?;
    let mut parts = word.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let digits =
        |s: &str, max| !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
    (parts.next().is_none()
        && matches!(class, "2" | "4" | "5")
        && digits(subject, 3)
        && digits(detail, 3))
    .then(|| word.to_owned())
}

fn strip_enhanced(line: &str) -> &str {
    match enhanced_code(line) {
        Some(code) => line[code.len()..].trim_start(),
        None => line,
    }
}

/// The service extensions a server announced in its EHLO reply (RFC 5321 4.1.1.1: every
/// line after the first is `keyword [params]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// Upper-cased keyword and its parameters.
    keywords: Vec<(String, String)>,
}

impl Extensions {
    pub fn from_ehlo(reply: &Reply) -> Self {
        let keywords = reply
            .lines
            .iter()
            .skip(1)
            .filter_map(|line| {
                let mut parts = line.trim().splitn(2, ' ');
                let keyword = parts.next().filter(|k| !k.is_empty())?;
                Some((
                    keyword.to_ascii_uppercase(),
                    parts.next().unwrap_or("").trim().to_owned(),
                ))
            })
            .collect();
        Self { keywords }
    }

    pub fn has(&self, keyword: &str) -> bool {
        self.keywords
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(keyword))
    }

    /// RFC 2852 4: `DELIVERBY [min-by-time]`: `Some(min)` when advertised.
    pub fn deliver_by(&self) -> Option<DeliverByOffer> {
        let (_, params) = self.keywords.iter().find(|(k, _)| k == "DELIVERBY")?;
        Some(DeliverByOffer {
            min_by_time: params
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok()),
        })
    }
}

/// What a server said about DELIVERBY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverByOffer {
    /// The smallest by-time it accepts, if it said.
    pub min_by_time: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_reply_needs_its_last_line() {
        let input = b"250-mx.example.org hello\r\n250-DELIVERBY 240\r\n";
        assert_eq!(parse_reply(input), Ok(None));
        let full = b"250-mx.example.org hello\r\n250-DELIVERBY 240\r\n250 8BITMIME\r\n354 rest";
        let (reply, used) = parse_reply(full).unwrap().unwrap();
        assert_eq!(used, full.len() - 8);
        assert_eq!(reply.code, 250);
        assert_eq!(
            reply.lines,
            ["mx.example.org hello", "DELIVERBY 240", "8BITMIME"]
        );
    }

    #[test]
    fn a_reply_split_at_any_byte_decodes_the_same() {
        let full = b"220 mx ESMTP\r\n250-mx\r\n250-DELIVERBY\r\n250 OK\r\n";
        let whole = parse_replies(full).unwrap();
        assert_eq!(whole.len(), 2);
        for cut in 0..full.len() {
            let head = parse_replies(&full[..cut]).unwrap();
            assert!(head.len() <= 2 && whole.starts_with(&head), "cut {cut}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_reply(b"hello\r\n").is_err());
        assert!(parse_reply(b"250-a\r\n251 b\r\n").is_err());
        assert!(parse_reply(b"250_a\r\n").is_err());
        assert_eq!(parse_reply(b"250\r\n").unwrap().unwrap().0.lines, [""]);
    }

    #[test]
    fn enhanced_codes_per_rfc_3463() {
        assert_eq!(
            enhanced_code("5.1.1 no such user").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(enhanced_code("4.7.100 x").as_deref(), Some("4.7.100"));
        assert_eq!(enhanced_code("3.1.1 x"), None);
        assert_eq!(enhanced_code("5.1 x"), None);
        assert_eq!(enhanced_code("5.1.1.1 x"), None);
        assert_eq!(enhanced_code("no code"), None);
        let r = Reply {
            code: 550,
            lines: vec!["5.1.1 <bob@x>: no such user".into(), "5.1.1 really".into()],
        };
        assert_eq!(r.enhanced_code().as_deref(), Some("5.1.1"));
        assert_eq!(r.text(), "<bob@x>: no such user really");
        assert!(r.is_permanent() && !r.is_positive());
    }

    #[test]
    fn ehlo_keywords_and_deliverby() {
        let reply = parse_reply(
            b"250-mx.example.org\r\n250-PIPELINING\r\n250-deliverby 120\r\n250 SIZE 1000\r\n",
        )
        .unwrap()
        .unwrap()
        .0;
        let ext = Extensions::from_ehlo(&reply);
        assert!(ext.has("pipelining") && ext.has("SIZE"));
        assert!(!ext.has("mx.example.org"));
        assert_eq!(
            ext.deliver_by(),
            Some(DeliverByOffer {
                min_by_time: Some(120)
            })
        );
        let bare = parse_reply(b"250-mx\r\n250 DELIVERBY\r\n")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(
            Extensions::from_ehlo(&bare).deliver_by(),
            Some(DeliverByOffer { min_by_time: None })
        );
        let none = parse_reply(b"250-mx\r\n250 8BITMIME\r\n")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(Extensions::from_ehlo(&none).deliver_by(), None);
    }
}
