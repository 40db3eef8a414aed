//! Signatures in a plain-text reply: the RFC 3676 4.3 separator and the footers mobile
//! clients append on their own.

/// The index of the signature separator line, or `lines.len()` if none. RFC 3676 4.3:
/// "-- " alone on a line; "--" is accepted too because many clients and gateways strip
/// trailing spaces (Outlook's plain part, HTML converted to text).
pub fn separator_at(lines: &[&str]) -> usize {
    lines
        .iter()
        .position(|l| l.trim_end() == "--")
        .unwrap_or(lines.len())
}

/// How many lines at the end of `lines` are a mobile footer (with blank lines around it).
pub fn trailing_footer_len(lines: &[&str]) -> usize {
    let mut end = lines.len();
    loop {
        let mut i = end;
        while i > 0 && lines[i - 1].trim().is_empty() {
            i -= 1;
        }
        if i > 0 && is_mobile_footer(lines[i - 1]) {
            end = i - 1;
        } else {
            // The blank lines above a removed footer go with it.
            if end < lines.len() {
                while end > 0 && lines[end - 1].trim().is_empty() {
                    end -= 1;
                }
            }
            return lines.len() - end;
        }
    }
}

/// The footers mobile clients add by default (one line each).
pub fn is_mobile_footer(line: &str) -> bool {
    let l = line.trim().to_lowercase();
    // iOS Mail: "Sent from my iPhone/iPad" and its translations; Samsung Email
    // "Sent from my Galaxy", Android stock "Sent from my Android" / "... device".
    const PREFIXES: &[&str] = &[
        "sent from my ",
        "sent from mobile",
        "sent from the mail app",
        "sent via ",
        "von meinem iphone gesendet",
        "von meinem ipad gesendet",
        "von meinem android",
        "envoyé de mon ",
        "envoyé depuis mon ",
        "enviado desde mi ",
        "enviado do meu ",
        "inviato da iphone",
        "inviato dal mio ",
        "verzonden vanaf mijn ",
        "verstuurd vanaf mijn ",
        // Outlook for iOS/Android: "Get Outlook for iOS" (plain part adds the link in <>).
        "get outlook for ",
        "obtenir outlook pour ",
        "outlook für ",
        "obtener outlook para ",
        // Windows Mail: "Sent from Mail for Windows"; Yahoo: "Sent from Yahoo Mail on Android".
        "sent from mail for windows",
        "sent from yahoo mail",
        // Outlook for Mac/Windows when the footer is on; Proton Mail's default footer.
        "sent from outlook",
        "sent with proton mail",
    ];
    l.len() < 120 && PREFIXES.iter().any(|p| l.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<&str> {
        s.split('\n').collect()
    }

    #[test]
    fn rfc3676_separator_is_found() {
        assert_eq!(separator_at(&lines("ok\n-- \nBob")), 1);
        assert_eq!(separator_at(&lines("ok\n--\nBob")), 1);
        assert_eq!(separator_at(&lines("ok\n--- \nBob")), 3);
        assert_eq!(separator_at(&lines("a -- b")), 1);
    }

    #[test]
    fn iphone_footer_is_trailing() {
        assert_eq!(trailing_footer_len(&lines("Yes\n\nSent from my iPhone")), 2);
        assert_eq!(
            trailing_footer_len(&lines("Yes\n\nSent from my iPhone\n\n")),
            4
        );
    }

    #[test]
    fn outlook_mobile_footer_with_link() {
        assert_eq!(
            trailing_footer_len(&lines("ok\n\nGet Outlook for iOS<https://aka.ms/o0ukef>")),
            2
        );
    }

    #[test]
    fn translated_footers() {
        assert!(is_mobile_footer("Von meinem iPhone gesendet"));
        assert!(is_mobile_footer("Envoyé de mon iPhone"));
        assert!(is_mobile_footer("Enviado desde mi iPhone"));
        assert!(is_mobile_footer("Sent with Proton Mail secure email."));
        assert!(!is_mobile_footer("Sent from the office: I will join."));
    }

    #[test]
    fn footer_text_in_the_middle_is_kept() {
        assert_eq!(
            trailing_footer_len(&lines("Sent from my iPhone\nbut really, yes")),
            0
        );
    }
}
