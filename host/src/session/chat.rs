//! F4 (5.2.4.2.5) between the MSRP endpoint and the mail side: what a complete MSRP
//! message says as a chat message (CPIM unwrapped, RFC 3862), and the MSRP status that
//! answers it once its mail went out, or did not (step 4).
//!
//! Pure: no I/O, no policy. The mail itself is built by `mailer` (Table BB2).

use crate::cpim;
use crate::msrp::transaction::media_type;
use crate::smtp::SmtpFailure;
use chrono::{DateTime, FixedOffset};

/// A chat message of the CPM side, as the e-mail will carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// BB2 From: the CPIM From, when the message was message/cpim.
    pub author: Option<cpim::Address>,
    /// BB2 Date: the CPIM DateTime (RFC 5438), when present.
    pub date_time: Option<DateTime<FixedOffset>>,
    /// BB2 message body: the text.
    pub text: String,
    /// BB2 msg-id row: the message's Contribution-ID, when its CPIM wrapper has one.
    pub contribution_id: Option<String>,
    /// BB2 In-Reply-To row: the message's InReplyTo-Contribution-ID.
    pub in_reply_to_contribution_id: Option<String>,
}

/// Why an MSRP message cannot become a chat mail: an MSRP status and its comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub comment: String,
}

impl Refused {
    pub fn new(status: u16, comment: impl Into<String>) -> Self {
        Self {
            status,
            comment: comment.into(),
        }
    }
}

impl ChatMessage {
    /// The chat message in a complete MSRP message of `content_type`: text/plain, or
    /// message/cpim wrapping text/plain (CPM's form). Anything else is 415 (RFC 4975
    /// 7.3.1): the e-mail side carries text; a malformed CPIM wrapper is 400.
    pub fn from_msrp(content_type: &str, body: &[u8]) -> Result<Self, Refused> {
        let media = media_type(content_type);
        if media == "message/cpim" {
            let cpim = cpim::Message::parse(body)
                .map_err(|e| Refused::new(400, format!("malformed message/cpim: {e}")))?;
            let inner = media_type(&cpim.content_type);
            if !inner.starts_with("text/") {
                return Err(Refused::new(
                    415,
                    format!("{inner} inside message/cpim is not carried to e-mail"),
                ));
            }
            let field = |name| cpim.ns_field(cpim::CPM_NS, name).map(str::to_owned);
            return Ok(Self {
                contribution_id: field("Contribution-ID"),
                in_reply_to_contribution_id: field("InReplyTo-Contribution-ID"),
                text: text_of(&cpim.body, &cpim.content_type)?,
                author: cpim.from,
                date_time: cpim.date_time,
            });
        }
        if media.starts_with("text/") {
            return Ok(Self {
                author: None,
                date_time: None,
                text: text_of(body, content_type)?,
                contribution_id: None,
                in_reply_to_contribution_id: None,
            });
        }
        Err(Refused::new(
            415,
            format!("{media} is not carried to e-mail"),
        ))
    }
}

/// The text of a text/* body. CPM text is UTF-8 (RFC 4975 8.6 leaves the charset to the
/// Content-Type; OMA CPM uses UTF-8): a body that is not UTF-8 is refused, not garbled.
fn text_of(body: &[u8], content_type: &str) -> Result<String, Refused> {
    let charset = content_type.split(';').skip(1).find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_ascii_lowercase())
    });
    match charset.as_deref() {
        None | Some("utf-8") | Some("utf8") | Some("us-ascii") => {}
        Some(other) => {
            return Err(Refused::new(
                415,
                format!("charset {other} is not supported"),
            ));
        }
    }
    String::from_utf8(body.to_vec()).map_err(|_| Refused::new(400, "the text is not UTF-8"))
}

/// Why a chat mail did not go out (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undelivered {
    /// For good: the server's final refusal (5yz, a domain that does not exist), or a
    /// message that cannot be mailed at all. Said at once, never tried again.
    Final(Refused),
    /// For now (4yz, no connection, no answer in time): tried again, with back-off, until
    /// the message's give-up time (issue 15: F4's outbound spool).
    Transient(SmtpFailure),
}

impl From<Refused> for Undelivered {
    fn from(refused: Refused) -> Self {
        Self::Final(refused)
    }
}

impl Undelivered {
    /// A failed SMTP exchange, final or not as the failure says.
    pub fn smtp(failure: SmtpFailure) -> Self {
        if failure.permanent {
            Self::Final(msrp_status(&failure))
        } else {
            Self::Transient(failure)
        }
    }
}

/// The failure REPORT of a message given up after `attempts` temporary failures, the last
/// `last` (RFC 4975 408: the next hop did not take it in time).
pub fn gave_up(last: &SmtpFailure, attempts: u32) -> Refused {
    let comment = format!("given up after {attempts} attempt(s), the last: {last}");
    Refused::new(408, bounded(comment.replace(['\r', '\n'], " "), 200))
}

/// Step 4: the MSRP status for a chat mail that did not go out. RFC 4975 has no status
/// for "the next hop refused": a refusal the server made final (5yz, a domain that does
/// not exist) is 403, the request must not be repeated; anything that may pass later
/// (4yz, no connection, no answer in time) is 408. The comment names the SMTP stage,
/// code and text, one line.
pub fn msrp_status(failure: &SmtpFailure) -> Refused {
    let status = if failure.permanent { 403 } else { 408 };
    let comment = failure.to_string().replace(['\r', '\n'], " ");
    Refused::new(status, bounded(comment, 200))
}

/// The MSRP status of a chat message that could not be mapped (no e-mail address).
pub fn unmapped(why: &str) -> Refused {
    Refused::new(403, bounded(why.replace(['\r', '\n'], " "), 200))
}

fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::Stage;

    #[test]
    fn text_plain_is_the_message_and_has_no_author() {
        let m =
            ChatMessage::from_msrp("text/plain; charset=UTF-8", "Hi Bob ☕".as_bytes()).unwrap();
        assert_eq!(m.text, "Hi Bob ☕");
        assert_eq!((m.author, m.date_time), (None, None));
    }

    #[test]
    fn message_cpim_gives_author_date_and_inner_text() {
        let body = "From: Alice <sip:alice@ims.example.com>\r\n\
            To: <mailto:bob@example.net>\r\n\
            DateTime: 2026-11-26T10:00:00.000+01:00\r\n\
            NS: imdn <urn:ietf:params:imdn>\r\n\
            imdn.Message-ID: 34jk324j\r\n\
            NS: oma <http://www.openmobilealliance.org/cpm/>\r\n\
            oma.Contribution-ID: m2\r\n\
            oma.InReplyTo-Contribution-ID: m1\r\n\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\r\n\
            Hello from CPM";
        let m = ChatMessage::from_msrp("message/cpim", body.as_bytes()).unwrap();
        assert_eq!(m.text, "Hello from CPM");
        assert_eq!(m.contribution_id.as_deref(), Some("m2"));
        assert_eq!(m.in_reply_to_contribution_id.as_deref(), Some("m1"));
        let author = m.author.unwrap();
        assert_eq!(author.uri, "sip:alice@ims.example.com");
        assert_eq!(author.display_name.as_deref(), Some("Alice"));
        assert_eq!(
            m.date_time.unwrap().to_rfc3339(),
            "2026-11-26T10:00:00+01:00"
        );
    }

    #[test]
    fn other_types_and_charsets_are_415_and_bad_text_400() {
        assert_eq!(
            ChatMessage::from_msrp("image/jpeg", b"\xff\xd8")
                .unwrap_err()
                .status,
            415
        );
        assert_eq!(
            ChatMessage::from_msrp("text/plain; charset=iso-8859-1", b"caf\xe9")
                .unwrap_err()
                .status,
            415
        );
        assert_eq!(
            ChatMessage::from_msrp("text/plain", b"caf\xe9")
                .unwrap_err()
                .status,
            400
        );
        let cpim_image =
            "From: <sip:a@b>\r\nTo: <sip:c@d>\r\n\r\nContent-Type: image/png\r\n\r\nPNG";
        assert_eq!(
            ChatMessage::from_msrp("message/cpim", cpim_image.as_bytes())
                .unwrap_err()
                .status,
            415
        );
        assert_eq!(
            ChatMessage::from_msrp("message/cpim", b"garbage without a blank line")
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn smtp_failures_map_to_403_when_final_and_408_when_not() {
        let mut f = SmtpFailure {
            stage: Stage::RcptTo,
            code: 550,
            enhanced_code: Some("5.1.1".into()),
            text: "no such user\r\nBcc: injected".into(),
            permanent: true,
        };
        let r = msrp_status(&f);
        assert_eq!(r.status, 403);
        assert!(r.comment.contains("550") && r.comment.contains("5.1.1"));
        assert!(!r.comment.contains('\n') && !r.comment.contains('\r'));
        f.permanent = false;
        f.code = 451;
        assert_eq!(msrp_status(&f).status, 408);
    }
}
