//! The reply text the policy sees (DESIGN "Correlating inbound e-mail with a session"):
//! quoted text and signature removed, white space trimmed, and never emptied to nothing:
//! when cleaning would leave nothing, the uncleaned text is given instead and
//! `Cleaned::fell_back` says so.

use super::html::{self, Strip};
use super::{quote, signature};

/// A cleaned reply.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Cleaned {
    /// The reply as the e-mail user wrote it.
    pub text: String,
    /// True when cleaning left nothing and `text` is the uncleaned body.
    pub fell_back: bool,
}

/// Cleans a plain-text reply (already decoded from its charset and, if it was
/// format=flowed, already unflowed).
pub fn clean_reply(text: &str) -> Cleaned {
    let text = normalise(text);
    let cleaned = strip_lines(&text);
    never_empty(cleaned, || trim(&text))
}

/// Cleans an HTML-only reply: the clients' quote and signature blocks are dropped from
/// the markup first, then the text rules apply to what is left.
pub fn clean_html_reply(html_body: &str) -> Cleaned {
    let stripped = normalise(&html::to_text(html_body, Strip::QuotesAndSignatures));
    let cleaned = strip_lines(&stripped);
    never_empty(cleaned, || {
        trim(&normalise(&html::to_text(html_body, Strip::Nothing)))
    })
}

fn never_empty(cleaned: String, uncleaned: impl FnOnce() -> String) -> Cleaned {
    if cleaned.is_empty() {
        Cleaned {
            text: uncleaned(),
            fell_back: true,
        }
    } else {
        Cleaned {
            text: cleaned,
            fell_back: false,
        }
    }
}

/// LF line ends, no-break and zero-width characters as the clients' HTML leaves them.
fn normalise(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\u{A0}', " ")
        .replace(['\u{200B}', '\u{FEFF}'], "")
}

/// The rules in order: cut the quoted mail and drop `>` lines (see `quote`),
/// cut at the signature separator, drop trailing mobile footers, trim.
fn strip_lines(text: &str) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let lines = quote::remove_quotes(&lines);
    let lines = &lines[..signature::separator_at(&lines)];
    let lines = &lines[..lines.len() - signature::trailing_footer_len(lines)];
    trim(&lines.join("\n"))
}

/// Line ends trimmed, runs of blank lines to one, no blank lines at either end.
fn trim(text: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end();
        if line.is_empty() && out.last().is_none_or(|l| l.is_empty()) {
            continue;
        }
        out.push(line);
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(text: &str) -> String {
        let c = clean_reply(text);
        assert!(!c.fell_back, "fell back on {text:?}");
        c.text
    }

    #[test]
    fn attribution_and_quote_are_removed() {
        assert_eq!(
            clean(
                "Yes!\r\n\r\nOn Thu, Nov 26, 2026 at 2:15 PM Alice <a@x.org> wrote:\r\n> Join?\r\n"
            ),
            "Yes!"
        );
    }

    #[test]
    fn inline_quoted_lines_are_removed() {
        assert_eq!(clean("> Are you in?\nYes\n> When?\nAt 5"), "Yes\nAt 5");
    }

    #[test]
    fn thunderbird_bottom_posting_keeps_the_answer() {
        assert_eq!(
            clean("On 26/11/2026 14:15, Alice wrote:\n> Join?\n\nYes, now.\n\n-- \nGrace"),
            "Yes, now."
        );
    }

    #[test]
    fn signature_is_removed() {
        assert_eq!(clean("ok\n\n-- \nBob Builder\nACME"), "ok");
    }

    #[test]
    fn mobile_footer_is_removed() {
        assert_eq!(
            clean("ok\n\nSent from my iPhone\n\n> On 26 Nov, Alice wrote:"),
            "ok"
        );
    }

    #[test]
    fn outlook_original_message_is_removed() {
        assert_eq!(
            clean("Accept\n\n-----Original Message-----\nFrom: Alice\nSent: now\n\nJoin?"),
            "Accept"
        );
    }

    #[test]
    fn blank_lines_collapse_and_trailing_white_space_goes() {
        assert_eq!(clean("\n\nfirst  \n\n\n\nsecond\t\n\n"), "first\n\nsecond");
    }

    #[test]
    fn only_a_quote_falls_back_to_the_uncleaned_text() {
        let c = clean_reply("> Join the chat?\n> Alice\n");
        assert_eq!(
            c,
            Cleaned {
                text: "> Join the chat?\n> Alice".into(),
                fell_back: true
            }
        );
    }

    #[test]
    fn only_a_signature_falls_back() {
        let c = clean_reply("-- \nBob\n");
        assert_eq!(
            c,
            Cleaned {
                text: "--\nBob".into(),
                fell_back: true
            }
        );
    }

    #[test]
    fn empty_body_stays_empty_and_says_so() {
        assert_eq!(
            clean_reply(" \n"),
            Cleaned {
                text: String::new(),
                fell_back: true
            }
        );
    }

    #[test]
    fn html_reply_is_cleaned() {
        let html = r#"<div dir="ltr">Yes<br></div><div class="gmail_quote"><div class="gmail_attr">On Thu, Alice wrote:</div><blockquote class="gmail_quote">Join?</blockquote></div>"#;
        assert_eq!(
            clean_html_reply(html),
            Cleaned {
                text: "Yes".into(),
                fell_back: false
            }
        );
    }

    #[test]
    fn html_reply_that_is_only_a_quote_falls_back_to_all_its_text() {
        let html = r#"<blockquote type="cite">Join?</blockquote>"#;
        assert_eq!(
            clean_html_reply(html),
            Cleaned {
                text: "Join?".into(),
                fell_back: true
            }
        );
    }

    #[test]
    fn outlook_header_block_after_hr_in_html() {
        let html = "<p class=MsoNormal>Accept</p><div style='border-top:solid #E1E1E1 1.0pt'><p class=MsoNormal><b>From:</b> Alice<br><b>Sent:</b> Thursday<br><b>To:</b> Bob<br><b>Subject:</b> Chat</p></div><p class=MsoNormal>Join?</p>";
        assert_eq!(clean_html_reply(html).text, "Accept");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn blank(s: &str) -> bool {
        s.chars()
            .all(|c| c.is_whitespace() || c == '\u{200B}' || c == '\u{FEFF}')
    }

    proptest! {
        #[test]
        fn plain_cleaning_never_empties_a_non_blank_text(text in "(On [0-9] x wrote:|> [a-z]{0,5}|-- |Sent from my iPhone|From: a|Sent: b|To: c|[\\PC]{0,10}|\n|\r\n)*") {
            let c = clean_reply(&text);
            prop_assert!(!c.text.is_empty() || blank(&text));
        }

        #[test]
        fn html_cleaning_never_panics_and_keeps_text(html in "(<[a-z]{1,10}( [a-z]{1,5}=\"[a-z_ ]{0,12}\")?/?>|</[a-z]{1,10}>|<blockquote type=cite>|<div class=gmail_quote>|&[#a-z0-9]{0,6};?|[\\PC]{0,10})*") {
            let c = clean_html_reply(&html);
            let all = html::to_text(&html, Strip::Nothing);
            prop_assert!(!c.text.is_empty() || all.trim().is_empty() || blank(&all));
        }
    }
}
