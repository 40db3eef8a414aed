//! RFC 3676 format=flowed decoding (Apple Mail, Thunderbird and mutt send it): a line that
//! ends in a space is soft-broken and joins the next line of the same quote depth
//! (4.2); one leading space is space-stuffing and is removed (4.4); `DelSp=yes` deletes
//! the trailing space at the join (4.1); the signature separator `-- ` is never flowed
//! (4.3). Quote markers stay, so the quote rules see `>` lines as they were sent.

/// Decodes a format=flowed body into fixed lines.
pub fn decode(text: &str, delsp: bool) -> String {
    let mut out: Vec<String> = Vec::new();
    // The paragraph being joined: its quote depth and text so far.
    let mut open: Option<(usize, String)> = None;

    for raw in text.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let depth = raw.bytes().take_while(|&b| b == b'>').count();
        let mut content = &raw[depth..];
        // 4.4: one leading space after the quote markers is stuffing.
        if let Some(unstuffed) = content.strip_prefix(' ') {
            content = unstuffed;
        }
        let flowed = content.ends_with(' ') && content != "-- ";

        // 4.5: a change of quote depth ends the paragraph even if it was flowed; 4.3: so
        // does a signature separator, which is never part of a paragraph.
        if let Some((d, _)) = &open
            && (*d != depth || content == "-- ")
            && let Some((d, para)) = open.take()
        {
            out.push(line(d, &para));
        }

        let piece = if flowed && delsp {
            &content[..content.len() - 1]
        } else {
            content
        };
        match &mut open {
            Some((_, para)) => para.push_str(piece),
            None => open = Some((depth, piece.to_string())),
        }
        if !flowed && let Some((d, para)) = open.take() {
            out.push(line(d, &para));
        }
    }
    if let Some((d, para)) = open.take() {
        out.push(line(d, &para));
    }
    out.join("\n")
}

fn line(depth: usize, text: &str) -> String {
    if depth == 0 {
        text.to_string()
    } else {
        format!("{} {}", ">".repeat(depth), text)
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn soft_breaks_join_lines() {
        let body = "Yes, I will join the chat this \nafternoon, see you \nthen.\nBob";
        assert_eq!(
            decode(body, false),
            "Yes, I will join the chat this afternoon, see you then.\nBob"
        );
    }

    #[test]
    fn delsp_yes_deletes_the_joining_space() {
        assert_eq!(decode("abc \ndef", true), "abcdef");
    }

    #[test]
    fn space_stuffing_is_removed() {
        assert_eq!(
            decode("  From the start\n >not a quote", false),
            " From the start\n>not a quote"
        );
    }

    #[test]
    fn quoted_paragraphs_join_at_the_same_depth_only() {
        let body = "> quoted line \n> continues\n>> deeper \n> back";
        assert_eq!(
            decode(body, false),
            "> quoted line continues\n>> deeper \n> back"
        );
    }

    #[test]
    fn signature_separator_is_not_flowed() {
        assert_eq!(decode("ok\n-- \nBob", false), "ok\n-- \nBob");
        assert_eq!(decode("ok \n-- \nBob", false), "ok \n-- \nBob");
    }

    #[test]
    fn crlf_is_accepted() {
        assert_eq!(decode("a \r\nb\r\n", false), "a b\n");
    }
}
