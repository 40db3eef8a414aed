//! HTML character references (HTML Living Standard 13.2.5.72-80): numeric `&#NNN;` and
//! `&#xHH;`, and the named ones mail clients actually write. A reference that is not
//! recognised is left as it stands, never dropped.

/// Decodes every character reference in `text`.
pub fn decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        match reference(rest) {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character `s` (starting at `&`) refers to, and how many bytes the reference used.
/// A reference must end in `;` (the legacy forms without it are not accepted: a bare
/// `&copy` in running text is more often text than a reference).
fn reference(s: &str) -> Option<(char, usize)> {
    // Look no further than the longest reference: a body full of `&` without `;` must
    // not cost quadratic time.
    let end = s.bytes().skip(1).take(40).position(|b| b == b';')? + 1;
    let body = &s[1..end];
    let c = if let Some(num) = body.strip_prefix('#') {
        numeric(num)?
    } else {
        named(body)?
    };
    Some((c, end + 1))
}

/// `&#NNN;` or `&#xHH;`. NUL, surrogates and values beyond U+10FFFF become U+FFFD; the
/// C1 range is read as windows-1252, as browsers do (13.2.5.80).
fn numeric(num: &str) -> Option<char> {
    let value = match num.strip_prefix(['x', 'X']) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).unwrap_or(u32::MAX)
        }
        Some(_) => return None,
        None if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) => {
            num.parse::<u32>().unwrap_or(u32::MAX)
        }
        None => return None,
    };
    if let Some(c) = windows_1252_c1(value) {
        return Some(c);
    }
    match value {
        0 => Some('\u{FFFD}'),
        v => Some(char::from_u32(v).unwrap_or('\u{FFFD}')),
    }
}

fn windows_1252_c1(value: u32) -> Option<char> {
    let c = match value {
        0x80 => '\u{20AC}',
        0x82 => '\u{201A}',
        0x84 => '\u{201E}',
        0x85 => '\u{2026}',
        0x91 => '\u{2018}',
        0x92 => '\u{2019}',
        0x93 => '\u{201C}',
        0x94 => '\u{201D}',
        0x95 => '\u{2022}',
        0x96 => '\u{2013}',
        0x97 => '\u{2014}',
        0x99 => '\u{2122}',
        _ => return None,
    };
    Some(c)
}

/// The named references seen in mail clients' HTML (Outlook/Word, Gmail, Apple Mail).
fn named(name: &str) -> Option<char> {
    let c = match name {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "nbsp" => '\u{A0}',
        "ensp" => '\u{2002}',
        "emsp" => '\u{2003}',
        "thinsp" => '\u{2009}',
        "zwnj" => '\u{200C}',
        "zwj" => '\u{200D}',
        "shy" => '\u{AD}',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "sect" => '§',
        "para" => '¶',
        "deg" => '°',
        "plusmn" => '±',
        "times" => '×',
        "divide" => '÷',
        "middot" => '·',
        "bull" => '•',
        "hellip" => '…',
        "ndash" => '–',
        "mdash" => '—',
        "lsquo" => '‘',
        "rsquo" => '’',
        "sbquo" => '‚',
        "ldquo" => '“',
        "rdquo" => '”',
        "bdquo" => '„',
        "laquo" => '«',
        "raquo" => '»',
        "iexcl" => '¡',
        "iquest" => '¿',
        "agrave" => 'à',
        "aacute" => 'á',
        "acirc" => 'â',
        "atilde" => 'ã',
        "auml" => 'ä',
        "aring" => 'å',
        "aelig" => 'æ',
        "ccedil" => 'ç',
        "egrave" => 'è',
        "eacute" => 'é',
        "ecirc" => 'ê',
        "euml" => 'ë',
        "igrave" => 'ì',
        "iacute" => 'í',
        "icirc" => 'î',
        "iuml" => 'ï',
        "ntilde" => 'ñ',
        "ograve" => 'ò',
        "oacute" => 'ó',
        "ocirc" => 'ô',
        "otilde" => 'õ',
        "ouml" => 'ö',
        "oslash" => 'ø',
        "ugrave" => 'ù',
        "uacute" => 'ú',
        "ucirc" => 'û',
        "uuml" => 'ü',
        "yacute" => 'ý',
        "yuml" => 'ÿ',
        "szlig" => 'ß',
        "Agrave" => 'À',
        "Aacute" => 'Á',
        "Acirc" => 'Â',
        "Auml" => 'Ä',
        "Aring" => 'Å',
        "AElig" => 'Æ',
        "Ccedil" => 'Ç',
        "Egrave" => 'È',
        "Eacute" => 'É',
        "Ecirc" => 'Ê',
        "Iacute" => 'Í',
        "Ntilde" => 'Ñ',
        "Oacute" => 'Ó',
        "Ouml" => 'Ö',
        "Oslash" => 'Ø',
        "Uacute" => 'Ú',
        "Uuml" => 'Ü',
        _ => return None,
    };
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn named_references_decode() {
        assert_eq!(
            decode("Tom &amp; Jerry &lt;b&gt; &quot;hi&quot;"),
            "Tom & Jerry <b> \"hi\""
        );
        assert_eq!(decode("caf&eacute; &euro;5"), "café €5");
        assert_eq!(decode("a&nbsp;b"), "a\u{A0}b");
    }

    #[test]
    fn numeric_references_decode_decimal_and_hex() {
        assert_eq!(decode("&#233;t&#xE9; &#X1F600;"), "été 😀");
    }

    #[test]
    fn numeric_references_out_of_range_become_replacement() {
        assert_eq!(
            decode("&#0;&#xD800;&#99999999999;"),
            "\u{FFFD}\u{FFFD}\u{FFFD}"
        );
    }

    #[test]
    fn c1_numeric_references_read_as_windows_1252() {
        assert_eq!(decode("&#146;&#150;"), "\u{2019}\u{2013}");
    }

    #[test]
    fn unknown_or_unterminated_references_stay_as_text() {
        assert_eq!(decode("AT&T &bogus; &amp"), "AT&T &bogus; &amp");
        assert_eq!(decode("&#;&#x;&#12a;"), "&#;&#x;&#12a;");
        assert_eq!(decode("&"), "&");
    }
}
