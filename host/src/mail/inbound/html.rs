//! HTML-only mail to plain text. A small tokenizer, not a browser: block elements and
//! `<br>` become line breaks, list items get a marker, character references are decoded,
//! `<script>`, `<style>`, `<head>` and comments are dropped. With `Strip::QuotesAndSignatures`
//! the clients' quote and signature containers are dropped before any text is produced, so
//! nothing of the quoted mail can leak into the reply.

use super::entities;

/// What `to_text` removes besides markup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strip {
    /// Only markup: the text as the user saw it (the never-empty fallback).
    Nothing,
    /// Quote blocks, reply headers and signature blocks, as the clients mark them.
    QuotesAndSignatures,
}

/// Converts an HTML body to text.
pub fn to_text(html: &str, strip: Strip) -> String {
    let mut w = Writer::default();
    let mut skip: Option<(String, usize)> = None;
    let mut rest = html;

    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if skip.is_none() {
                w.text(rest);
            }
            break;
        };
        if skip.is_none() {
            w.text(&rest[..lt]);
        }
        rest = &rest[lt..];

        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            rest = rest.find('>').map_or("", |end| &rest[end + 1..]);
            continue;
        }
        let Some((tag, used)) = Tag::parse(rest) else {
            // A `<` that opens no tag is text (`a < b`).
            if skip.is_none() {
                w.text("<");
            }
            rest = &rest[1..];
            continue;
        };
        rest = &rest[used..];

        // Raw-text elements: their content is never markup and never shown.
        if !tag.end && (tag.name == "script" || tag.name == "style") {
            rest = skip_raw_text(rest, &tag.name);
            continue;
        }

        if let Some((name, depth)) = &mut skip {
            if *name == tag.name && !tag.self_closing && !is_void(&tag.name) {
                if tag.end {
                    *depth -= 1;
                } else {
                    *depth += 1;
                }
                if *depth == 0 {
                    skip = None;
                }
            }
            continue;
        }

        if !tag.end {
            if strip == Strip::QuotesAndSignatures && tag.ends_reply() {
                break;
            }
            let drop = tag.name == "head"
                || tag.name == "title"
                || (strip == Strip::QuotesAndSignatures && (tag.is_quote() || tag.is_signature()));
            if drop {
                if !tag.self_closing && !is_void(&tag.name) {
                    skip = Some((tag.name.clone(), 1));
                }
                continue;
            }
            w.open(&tag);
        } else {
            w.close(&tag.name);
        }
    }
    w.finish()
}

/// Skips past `</name` ... `>` (case-insensitive), or to the end. Linear in what it
/// skips: a mail full of <script> tags must not cost quadratic time.
fn skip_raw_text<'a>(rest: &'a str, name: &str) -> &'a str {
    let bytes = rest.as_bytes();
    let mut from = 0;
    while let Some(at) = rest[from..].find("</").map(|i| from + i) {
        let name_end = at + 2 + name.len();
        if bytes
            .get(at + 2..name_end)
            .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
        {
            return rest[name_end..]
                .find('>')
                .map_or("", |end| &rest[name_end + end + 1..]);
        }
        from = at + 2;
    }
    ""
}

fn is_void(name: &str) -> bool {
    matches!(
        name,
        "br" | "hr"
            | "img"
            | "meta"
            | "link"
            | "input"
            | "col"
            | "area"
            | "base"
            | "wbr"
            | "source"
    )
}

fn is_block(name: &str) -> bool {
    matches!(
        name,
        "div"
            | "tr"
            | "table"
            | "tbody"
            | "thead"
            | "tfoot"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "blockquote"
            | "pre"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "address"
            | "center"
            | "dl"
            | "dt"
            | "dd"
            | "form"
            | "fieldset"
            | "figure"
            | "main"
            | "nav"
            | "body"
    )
}

/// One start or end tag, its name lower-cased and the attributes this module reads.
#[derive(Debug, Default)]
struct Tag {
    name: String,
    end: bool,
    self_closing: bool,
    attrs: Vec<(String, String)>,
}

impl Tag {
    /// Parses the tag at the start of `s` (which starts with `<`); returns it and the
    /// bytes used, or None when `<` does not open a tag.
    fn parse(s: &str) -> Option<(Tag, usize)> {
        let bytes = s.as_bytes();
        let mut i = 1;
        let end = bytes.get(1) == Some(&b'/');
        if end {
            i += 1;
        }
        if !bytes.get(i)?.is_ascii_alphabetic() {
            return None;
        }
        let start = i;
        while i < bytes.len()
            && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b':' || bytes[i] == b'-')
        {
            i += 1;
        }
        let mut tag = Tag {
            name: s[start..i].to_ascii_lowercase(),
            end,
            ..Tag::default()
        };
        loop {
            while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
                if bytes[i] == b'/' {
                    tag.self_closing = true;
                }
                i += 1;
            }
            match bytes.get(i) {
                None => return Some((tag, i)),
                Some(b'>') => return Some((tag, i + 1)),
                _ => tag.self_closing = false,
            }
            let name_start = i;
            while i < bytes.len()
                && !matches!(bytes[i], b'=' | b'>' | b'/')
                && !bytes[i].is_ascii_whitespace()
            {
                i += 1;
            }
            let name = s[name_start..i].to_ascii_lowercase();
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let mut value = String::new();
            if bytes.get(i) == Some(&b'=') {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                match bytes.get(i) {
                    Some(&q) if q == b'"' || q == b'\'' => {
                        let v_start = i + 1;
                        let v_end = s[v_start..]
                            .find(q as char)
                            .map_or(s.len(), |e| v_start + e);
                        value = s[v_start..v_end].to_string();
                        i = (v_end + 1).min(s.len());
                    }
                    _ => {
                        let v_start = i;
                        while i < bytes.len() && bytes[i] != b'>' && !bytes[i].is_ascii_whitespace()
                        {
                            i += 1;
                        }
                        value = s[v_start..i].to_string();
                    }
                }
            }
            if !name.is_empty() {
                tag.attrs.push((name, value));
            }
        }
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_class(&self, wanted: &[&str]) -> bool {
        self.attr("class").is_some_and(|c| {
            c.split_ascii_whitespace()
                .any(|t| wanted.iter().any(|w| t.eq_ignore_ascii_case(w)))
        })
    }

    fn has_id(&self, wanted: &[&str]) -> bool {
        self.attr("id")
            .is_some_and(|id| wanted.iter().any(|w| id.eq_ignore_ascii_case(w)))
    }

    /// A container that holds the quoted mail.
    fn is_quote(&self) -> bool {
        // Apple Mail and Thunderbird: <blockquote type="cite"> (RFC 2392 style citation).
        (self.name == "blockquote" && self.attr("type").is_some_and(|t| t.eq_ignore_ascii_case("cite")))
            // Gmail: <div class="gmail_quote"> (newer: "gmail_quote gmail_quote_container"),
            // its attribution <div class="gmail_attr">; Thunderbird's attribution
            // <div class="moz-cite-prefix">; Yahoo Mail; Proton Mail.
            || self.has_class(&[
                "gmail_quote",
                "gmail_quote_container",
                "gmail_attr",
                "moz-cite-prefix",
                "yahoo_quoted",
                "protonmail_quote",
            ])
    }

    /// A container that holds the sender's signature.
    fn is_signature(&self) -> bool {
        // Gmail's signature block and its "-- " prefix; Thunderbird's <pre class="moz-signature">.
        self.has_class(&["gmail_signature", "gmail_signature_prefix", "moz-signature"])
            // Outlook for iOS/Android ("Get Outlook for iOS"), Outlook on the web, iOS Mail.
            || self.has_id(&["ms-outlook-mobile-signature", "Signature", "AppleMailSignature"])
    }

    /// The point after which an Outlook reply holds only the quoted mail: Outlook
    /// desktop and Outlook on the web write <div id="divRplyFwdMsg"> (after an <hr>) or
    /// <div id="appendonsend">; new Outlook <div id="mail-editor-reference-message-container">.
    fn ends_reply(&self) -> bool {
        self.has_id(&[
            "divRplyFwdMsg",
            "appendonsend",
            "mail-editor-reference-message-container",
        ])
    }
}

/// The text being produced, with HTML's white-space collapsing.
#[derive(Default)]
struct Writer {
    out: String,
    pending_space: bool,
    pre: usize,
    /// One entry per open list: None for <ul>, the next number for <ol>.
    lists: Vec<Option<u32>>,
}

impl Writer {
    fn at_line_start(&self) -> bool {
        self.out.is_empty() || self.out.ends_with('\n')
    }

    fn text(&mut self, raw: &str) {
        let decoded = entities::decode(raw);
        if self.pre > 0 {
            self.out.push_str(&decoded.replace("\r\n", "\n"));
            self.pending_space = false;
            return;
        }
        for c in decoded.chars() {
            // U+00A0 is not white space to collapse: Outlook writes empty lines as &nbsp;.
            if c.is_ascii_whitespace() {
                self.pending_space = true;
            } else {
                if self.pending_space && !self.at_line_start() {
                    self.out.push(' ');
                }
                self.pending_space = false;
                self.out.push(c);
            }
        }
    }

    fn newline(&mut self) {
        self.out.push('\n');
        self.pending_space = false;
    }

    fn ensure_line_start(&mut self) {
        if !self.at_line_start() {
            self.newline();
        }
        self.pending_space = false;
    }

    fn blank_line(&mut self) {
        self.ensure_line_start();
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.newline();
        }
    }

    fn open(&mut self, tag: &Tag) {
        match tag.name.as_str() {
            "br" => self.newline(),
            "hr" => self.ensure_line_start(),
            // Word/Outlook writes every line as <p class=MsoNormal> with no margin, and
            // empty lines as <p>&nbsp;</p>: a line break, not a paragraph gap.
            "p" if tag.has_class(&["MsoNormal", "MsoPlainText"]) => self.ensure_line_start(),
            "p" => self.blank_line(),
            "ul" => {
                self.ensure_line_start();
                self.lists.push(None);
            }
            "ol" => {
                self.ensure_line_start();
                let start = tag
                    .attr("start")
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(1);
                self.lists.push(Some(start));
            }
            "li" => {
                self.ensure_line_start();
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n = n.saturating_add(1);
                        m
                    }
                    _ => "- ".to_string(),
                };
                let indent = "  ".repeat(self.lists.len().saturating_sub(1));
                self.out.push_str(&indent);
                self.out.push_str(&marker);
            }
            "td" | "th" => self.pending_space = true,
            // Emoji drawn as images (Gmail `data-emoji`, Outlook and Yahoo `class="emoji"`):
            // the character is in the attributes; other images have no text.
            "img" => {
                let emoji = tag.attr("data-emoji").or_else(|| {
                    tag.has_class(&["emoji", "an1"])
                        .then(|| tag.attr("alt"))
                        .flatten()
                });
                let emoji = emoji.map(entities::decode);
                if let Some(e) = emoji.filter(|e| e.chars().count() <= 8) {
                    self.text(&e);
                }
            }
            "pre" => {
                self.ensure_line_start();
                self.pre += 1;
            }
            name if is_block(name) => self.ensure_line_start(),
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        match name {
            "p" => self.ensure_line_start(),
            "ul" | "ol" => {
                self.lists.pop();
                self.ensure_line_start();
            }
            "li" => self.ensure_line_start(),
            "pre" => {
                self.pre = self.pre.saturating_sub(1);
                self.ensure_line_start();
            }
            name if is_block(name) => self.ensure_line_start(),
            _ => {}
        }
    }

    /// No-break spaces to spaces, line ends trimmed, runs of blank lines to one.
    fn finish(self) -> String {
        let text = self.out.replace('\u{A0}', " ");
        let mut lines: Vec<&str> = Vec::new();
        for line in text.split('\n') {
            let line = line.trim_end();
            if line.is_empty() && lines.last().is_some_and(|l| l.is_empty()) {
                continue;
            }
            lines.push(line);
        }
        lines.join("\n").trim_matches('\n').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::{Strip, to_text};

    fn strip(html: &str) -> String {
        to_text(html, Strip::QuotesAndSignatures)
    }

    #[test]
    fn divs_and_br_become_lines() {
        let html = r#"<div dir="ltr">Yes, count me in.<div><br></div><div>Bob</div></div>"#;
        assert_eq!(strip(html), "Yes, count me in.\n\nBob");
    }

    #[test]
    fn paragraphs_are_separated_by_a_blank_line() {
        assert_eq!(strip("<p>one</p><p>two</p>"), "one\n\ntwo");
    }

    #[test]
    fn outlook_msonormal_paragraphs_are_single_lines() {
        let html = "<p class=MsoNormal>Hi<o:p></o:p></p><p class=MsoNormal><o:p>&nbsp;</o:p></p><p class=MsoNormal>Bob<o:p></o:p></p>";
        assert_eq!(strip(html), "Hi\n\nBob");
    }

    #[test]
    fn white_space_collapses() {
        assert_eq!(strip("<div>  a \n\t b  </div>"), "a b");
    }

    #[test]
    fn lists_get_markers() {
        assert_eq!(strip("<ul><li>one</li><li>two</li></ul>"), "- one\n- two");
        assert_eq!(strip("<ol><li>one<li>two</ol>"), "1. one\n2. two");
        assert_eq!(strip("<ol start=\"3\"><li>c</ol>"), "3. c");
    }

    #[test]
    fn emoji_images_become_their_character() {
        let html = r#"<div>Great <img data-emoji="👍" class="an1" alt="👍" src="x.png"> <img class="emoji" alt="&#x1F600;"> <img alt="logo" src="l.png"></div>"#;
        assert_eq!(strip(html), "Great 👍 😀");
    }

    #[test]
    fn entities_decode_in_text() {
        assert_eq!(
            strip("<p>caf&eacute; &amp; &#8364;5 &lt;ok&gt;</p>"),
            "café & €5 <ok>"
        );
    }

    #[test]
    fn script_style_head_and_comments_are_dropped() {
        let html = "<html><head><title>T</title><style>p > a { x: 1 }</style></head><body><!-- c --><script>if (a<b) {}</script><p>text</p></body></html>";
        assert_eq!(strip(html), "text");
    }

    #[test]
    fn script_end_tag_is_found_case_insensitively() {
        assert_eq!(strip("<SCRIPT>a</b> </ScRiPt >after"), "after");
        assert_eq!(strip("<style>never closed"), "");
    }

    #[test]
    fn gmail_quote_is_dropped() {
        let html = r#"<div dir="ltr">ok</div><br><div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">On Thu, Alice wrote:<br></div><blockquote class="gmail_quote"><div>invite</div></blockquote></div>"#;
        assert_eq!(strip(html), "ok");
        assert!(to_text(html, Strip::Nothing).contains("invite"));
    }

    #[test]
    fn blockquote_type_cite_is_dropped_with_nesting() {
        let html = r#"<div>yes</div><blockquote type="cite"><blockquote>inner</blockquote>outer</blockquote><div>after</div>"#;
        assert_eq!(strip(html), "yes\nafter");
    }

    #[test]
    fn plain_blockquote_is_kept() {
        assert_eq!(strip("<blockquote>indented</blockquote>"), "indented");
    }

    #[test]
    fn thunderbird_cite_prefix_and_signature_are_dropped() {
        let html = r#"<p>fine</p><div class="moz-cite-prefix">On 26/11/2026 14:15, Alice wrote:<br></div><blockquote type="cite" cite="mid:x@y">q</blockquote><pre class="moz-signature" cols="72">-- 
Bob</pre>"#;
        assert_eq!(strip(html), "fine");
    }

    #[test]
    fn outlook_div_rply_fwd_msg_ends_the_reply() {
        let html = r#"<div>Accept</div><div id="appendonsend"></div><hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg" dir="ltr"><b>From:</b> Alice</div><div>quoted</div>"#;
        assert_eq!(strip(html), "Accept");
    }

    #[test]
    fn malformed_markup_does_not_lose_text() {
        assert_eq!(strip("a < b and <3 <div"), "a < b and <3");
        assert_eq!(strip("<div class=\"x>never closed"), "");
        assert_eq!(strip("<p>unclosed <b>bold"), "unclosed bold");
    }

    #[test]
    fn pathological_markup_is_linear() {
        // Quadratic scans would take minutes on these; linear ones take milliseconds.
        let scripts = "<script>x</p>".repeat(20_000);
        assert_eq!(strip(&scripts), "");
        let amps = "&".repeat(200_000);
        assert_eq!(strip(&amps).len(), 200_000);
        let nested = "<blockquote type=cite>".repeat(20_000)
            + "q"
            + &"</blockquote>".repeat(20_000)
            + "after";
        assert_eq!(strip(&nested), "after");
    }

    #[test]
    fn unclosed_quote_drops_to_the_end() {
        assert_eq!(strip(r#"ok<blockquote type=cite>quoted"#), "ok");
    }
}
