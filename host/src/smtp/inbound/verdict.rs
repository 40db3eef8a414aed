//! The replies the inbound server sends (RFC 5321 4.2) with RFC 3463 enhanced status
//! codes (RFC 2034), and the gateway's verdicts on a recipient or a mail. No I/O.

/// A reply to one command: what the gateway answers to RCPT TO and to the end of the
/// data, and what the session answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// RFC 5321 4.2: 2yz accepted, 4yz transient refusal, 5yz permanent refusal.
    pub code: u16,
    /// RFC 3463 `class.subject.detail`; its class must match the code's first digit.
    pub enhanced: Option<String>,
    /// Human-readable text; CR, LF and other controls are dropped when it is sent.
    pub text: String,
}

impl Verdict {
    /// `code enhanced text`. A code outside 200..=599 or an enhanced code of another
    /// class is a programming error of the caller: it is sent as 451 4.3.0 (RFC 3463
    /// "other mail system problem") rather than as a reply the client could misread.
    pub fn new(code: u16, enhanced: Option<&str>, text: impl Into<String>) -> Self {
        let text = text.into();
        let class_ok = enhanced.is_none_or(|e| {
            super::super::reply::enhanced_code(e).as_deref() == Some(e)
                && e.as_bytes()[0] == b'0' + (code / 100) as u8
        });
        if !(200..=599).contains(&code) || !class_ok {
            tracing::warn!(code, ?enhanced, %text, "malformed SMTP verdict, sending 451");
            return Self::local(451, "4.3.0", "Local error, try again later");
        }
        Self {
            code,
            enhanced: enhanced.map(str::to_owned),
            text,
        }
    }

    pub(crate) fn local(code: u16, enhanced: &str, text: &str) -> Self {
        Self {
            code,
            enhanced: Some(enhanced.to_owned()),
            text: text.to_owned(),
        }
    }

    /// 250 2.1.5 for a recipient (RFC 3463 X.1.5 destination address valid).
    pub fn recipient_ok() -> Self {
        Self::local(250, "2.1.5", "Recipient OK")
    }

    /// 250 2.0.0: the gateway took responsibility for the mail.
    pub fn accepted(text: impl Into<String>) -> Self {
        Self::new(250, Some("2.0.0"), text)
    }

    /// 550 5.1.1: no such mailbox (no live session answers to the address).
    pub fn no_such_recipient(text: impl Into<String>) -> Self {
        Self::new(550, Some("5.1.1"), text)
    }

    /// 550 5.7.1: delivery not authorized (e.g. the sender is not the session's user).
    pub fn not_authorized(text: impl Into<String>) -> Self {
        Self::new(550, Some("5.7.1"), text)
    }

    /// 451 4.3.0: the gateway cannot take the mail now; the client retries later.
    pub fn try_later(text: impl Into<String>) -> Self {
        Self::new(451, Some("4.3.0"), text)
    }

    /// 2yz (RFC 5321 4.2.1).
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The reply on the wire, one line (RFC 5321 4.2: `code SP text CRLF`).
    pub fn to_wire(&self) -> Vec<u8> {
        reply(self.code, self.enhanced.as_deref(), &[self.text.as_str()])
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.enhanced {
            Some(e) => write!(f, "{} {} {}", self.code, e, clean(&self.text)),
            None => write!(f, "{} {}", self.code, clean(&self.text)),
        }
    }
}

/// Longest text of one reply line: RFC 5321 4.5.3.1.5 allows 512 octets with code and CRLF.
const MAX_TEXT: usize = 400;

/// A (multi-line, RFC 5321 4.2.1: `code-text` on all lines but the last) reply; each line
/// carries the enhanced code when there is one.
pub(crate) fn reply(code: u16, enhanced: Option<&str>, lines: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        let sep = if i == last { ' ' } else { '-' };
        let text = clean(line);
        let line = match enhanced {
            Some(e) => format!("{code}{sep}{e} {text}\r\n"),
            None => format!("{code}{sep}{text}\r\n"),
        };
        out.extend_from_slice(line.as_bytes());
    }
    if lines.is_empty() {
        out.extend_from_slice(format!("{code}\r\n").as_bytes());
    }
    out
}

/// Reply text is ASCII without controls (RFC 5321 4.2: printable US-ASCII): a gateway's
/// text can never split a reply or inject a second one.
fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| match c {
            '\r' | '\n' | '\t' => ' ',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect();
    if out.len() > MAX_TEXT {
        out.truncate(MAX_TEXT);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_on_the_wire() {
        assert_eq!(
            Verdict::no_such_recipient("<x@gw>: no live chat session").to_wire(),
            b"550 5.1.1 <x@gw>: no live chat session\r\n"
        );
        assert_eq!(
            Verdict::new(554, None, "no").to_wire(),
            b"554 no\r\n".to_vec()
        );
    }

    #[test]
    fn text_cannot_inject_a_reply() {
        let v = Verdict::new(550, Some("5.7.1"), "bad\r\n250 2.0.0 ok");
        assert_eq!(v.to_wire(), b"550 5.7.1 bad  250 2.0.0 ok\r\n");
        let long = "x".repeat(2000);
        assert!(Verdict::accepted(long).to_wire().len() < 512);
        assert_eq!(Verdict::accepted("é").to_wire(), b"250 2.0.0 ?\r\n");
    }

    #[test]
    fn malformed_verdicts_become_451() {
        for v in [
            Verdict::new(250, Some("5.1.1"), "class mismatch"),
            Verdict::new(700, None, "code"),
            Verdict::new(550, Some("5.1"), "short"),
        ] {
            assert_eq!((v.code, v.enhanced.as_deref()), (451, Some("4.3.0")));
        }
    }

    #[test]
    fn multi_line_reply() {
        assert_eq!(
            reply(250, None, &["gw hello", "SIZE 10", "8BITMIME"]),
            b"250-gw hello\r\n250-SIZE 10\r\n250 8BITMIME\r\n"
        );
    }
}
