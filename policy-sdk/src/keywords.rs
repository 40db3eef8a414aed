//! Finding the e-mail user's answer in a reply (5.2.4.2.4: "the keyword for session
//! 'accept' or 'reject' in the replying text ... is interpreted by the IWF").
//!
//! Replies are written by people with mail clients: `ACCEPT`, `Accept.`, `"accept"`,
//! `> accept` left over from a quote, `Yes, accept!` and a signature below. The helpers
//! here look at the *first meaningful line* of the reply (the host already removed
//! quoted text and signatures, but a policy is also unit-tested on raw text), split it
//! into words ignoring case and punctuation, and match whole words only: "unacceptable"
//! does not contain the keyword "accept".

/// The words of `text`, lower-cased, split on anything that is not a letter or digit.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// The first line of `text` that carries words: skips blank lines, quoted lines
/// (`>`), and stops at a signature separator (`-- `).
pub fn first_meaningful_line(text: &str) -> Option<&str> {
    for line in text.lines() {
        let trimmed = line.trim();
        if line.trim_end() == "--" {
            return None; // RFC 3676 4.3 signature separator: nothing of the answer below.
        }
        if trimmed.is_empty() || trimmed.starts_with('>') {
            continue;
        }
        if words(trimmed).next().is_some() {
            return Some(trimmed);
        }
    }
    None
}

/// Whether the first meaningful line of `text` starts with one of `keywords`,
/// as a whole word, within its first `within` words (1 = must be the first word).
///
/// Keywords may have several words ("opt out"); they match as a sequence.
pub fn answer_starts_with(text: &str, keywords: &[&str], within: usize) -> bool {
    let Some(line) = first_meaningful_line(text) else {
        return false;
    };
    let line_words: Vec<String> = words(line).collect();
    keywords.iter().any(|keyword| {
        let key: Vec<String> = words(keyword).collect();
        !key.is_empty()
            && (0..within.min(line_words.len())).any(|start| line_words[start..].starts_with(&key))
    })
}

/// Whether `text` is, in substance, only one of `keywords` ("Accept", "accept!",
/// "  ACCEPT  "): a reply that says nothing else.
pub fn is_only(text: &str, keywords: &[&str]) -> bool {
    let Some(line) = first_meaningful_line(text) else {
        return false;
    };
    let line_words: Vec<String> = words(line).collect();
    keywords
        .iter()
        .any(|keyword| words(keyword).collect::<Vec<_>>() == line_words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_words_regardless_of_case_and_punctuation() {
        assert!(answer_starts_with("ACCEPT", &["accept"], 1));
        assert!(answer_starts_with("  Accept.\n", &["accept"], 1));
        assert!(answer_starts_with("\"accept\"", &["accept"], 1));
        assert!(answer_starts_with("Yes, accept!", &["accept"], 2));
        assert!(!answer_starts_with("Yes, accept!", &["accept"], 1));
        assert!(!answer_starts_with("unacceptable", &["accept"], 1));
    }

    #[test]
    fn skips_quotes_and_stops_at_the_signature() {
        let reply = "\n> Reply ACCEPT to join\n\nreject\n-- \nBob";
        assert!(answer_starts_with(reply, &["reject"], 1));
        assert!(!answer_starts_with(reply, &["accept"], 1));
        assert!(!answer_starts_with("-- \naccept", &["accept"], 1));
    }

    #[test]
    fn multi_word_keywords_match_as_a_sequence() {
        assert!(answer_starts_with("Opt out please", &["opt out"], 1));
        assert!(!answer_starts_with("out opt", &["opt out"], 1));
    }

    #[test]
    fn is_only_rejects_longer_text() {
        assert!(is_only("Leave!", &["leave"]));
        assert!(!is_only("leave me alone", &["leave"]));
        assert!(!is_only("", &["leave"]));
    }
}
