//! Quoted text in a plain-text reply: where the quoted mail begins (an attribution line,
//! an Outlook header block, an "Original Message" separator) and the `>` lines of
//! RFC 3676 4.5 / RFC 5322 practice. Each rule names the clients it targets.

use super::signature;

/// `lines` without the quoted mail: everything from an "Original Message" separator or an
/// Outlook header block on is cut; an attribution line cuts too when only quotes (and a
/// signature) follow it (top-posting, the clients' default), and is dropped alone when
/// the user answered between the quoted lines (inline or bottom posting); every `>` line
/// goes.
pub fn remove_quotes<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&'a str> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if is_original_message_separator(lines[i]) {
            break;
        }
        if is_outlook_header_block(&lines[i..]) {
            out.truncate(underline_above(&out));
            break;
        }
        if let Some(used) = attribution_at(lines, i) {
            if answers_follow(&lines[i + used..]) {
                i += used;
                continue;
            }
            break;
        }
        if !is_quoted(lines[i]) {
            out.push(lines[i]);
        }
        i += 1;
    }
    out
}

/// True when the user wrote something after an attribution: a line that is not quoted,
/// not blank and not a mobile footer, before any signature or forwarded header.
fn answers_follow(rest: &[&str]) -> bool {
    for (k, line) in rest.iter().enumerate() {
        let t = line.trim();
        if t.is_empty() || is_quoted(line) || signature::is_mobile_footer(line) {
            continue;
        }
        let ends =
            t == "--" || is_original_message_separator(line) || is_outlook_header_block(&rest[k..]);
        return !ends;
    }
    false
}

/// Outlook (desktop, on the web, mobile) and Exchange: "-----Original Message-----" and
/// its translations; Thunderbird forwards "-------- Original Message --------"; Proton
/// Mail "------- Original Message -------".
pub fn is_original_message_separator(line: &str) -> bool {
    let t = line.trim().trim_matches('-').trim().to_lowercase();
    line.trim().starts_with("---")
        && matches!(
            t.as_str(),
            "original message"
                | "ursprüngliche nachricht"
                | "message d'origine"
                | "mensaje original"
                | "messaggio originale"
                | "oorspronkelijk bericht"
                | "mensagem original"
        )
}

/// Outlook's reply header: "From: ..." followed within four lines by at least two of
/// "Sent:/Date:", "To:", "Cc:", "Subject:" (and the labels Outlook writes in localised
/// installs). Outlook's `*From:*` bold form in the plain part
/// is accepted.
pub fn is_outlook_header_block(lines: &[&str]) -> bool {
    let Some(first) = lines.first() else {
        return false;
    };
    if !has_label(first, &["from", "von", "de", "van", "da"]) {
        return false;
    }
    let others = lines
        .iter()
        .skip(1)
        .take(4)
        .filter(|l| {
            has_label(
                l,
                &[
                    // English, German, French, Spanish, Portuguese, Italian, Dutch Outlook.
                    "sent",
                    "date",
                    "to",
                    "cc",
                    "subject",
                    "gesendet",
                    "datum",
                    "an",
                    "betreff",
                    "envoyé",
                    "à",
                    "objet",
                    "enviado",
                    "enviado el",
                    "fecha",
                    "para",
                    "asunto",
                    "enviada em",
                    "assunto",
                    "inviato",
                    "a",
                    "oggetto",
                    "verzonden",
                    "aan",
                    "onderwerp",
                ],
            )
        })
        .count();
    others >= 2
}

/// True when `line` starts with `label:` (or `*label:*`, or `label :` as French writes it)
/// followed by something.
fn has_label(line: &str, labels: &[&str]) -> bool {
    let t = line.trim_start().trim_start_matches('*');
    let Some(colon) = t.find(':') else {
        return false;
    };
    let label = t[..colon].trim_end().to_lowercase();
    let after = t[colon + 1..].trim_start_matches('*').trim();
    labels.contains(&label.as_str()) && !after.is_empty()
}

/// Outlook.com and Outlook mobile put a line of underscores above the header block; the
/// cut starts there when it does (blank lines between stay, they are trimmed later).
fn underline_above(kept: &[&str]) -> usize {
    let mut i = kept.len();
    while i > 0 && kept[i - 1].trim().is_empty() {
        i -= 1;
    }
    if i > 0 {
        let above = kept[i - 1].trim();
        if above.len() >= 10 && above.chars().all(|c| c == '_' || c == '-') {
            return i - 1;
        }
    }
    kept.len()
}

/// An attribution line ("On <date>, <name> wrote:") starting at `lines[i]`, possibly
/// wrapped over two lines as Gmail's plain part does at 78 columns; returns how many
/// lines it uses. A strong form (the client's whole sentence) is a cut on its own; a
/// weak one (only "... wrote:") must be followed by `>` lines or nothing.
pub fn attribution_at(lines: &[&str], i: usize) -> Option<usize> {
    for used in [1, 2] {
        if i + used > lines.len() {
            break;
        }
        let joined = lines[i..i + used]
            .iter()
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join(" ");
        if joined.len() > 400 || lines[i].trim().is_empty() {
            break;
        }
        // Gmail wraps a long attribution at a space near column 78: the first half is
        // long and ends mid-sentence. A short or finished first line is the user's text.
        let first = lines[i].trim_end();
        if used == 2 && (first.chars().count() < 40 || first.ends_with(['.', '!', '?'])) {
            break;
        }
        if is_strong_attribution(&joined) {
            return Some(used);
        }
        // The weak form is one line: joined with the line above it, any sentence ending
        // in "wrote:" would match.
        if used == 1 && is_weak_attribution(&joined) && only_quotes_follow(&lines[i + used..]) {
            return Some(used);
        }
    }
    None
}

/// The whole sentence as the clients write it:
/// - English (Gmail, Apple Mail, Thunderbird, K-9): "On <date>, <name> wrote:";
/// - German (Gmail, Thunderbird, Apple Mail): "Am <date> schrieb <name>:";
/// - French (Gmail, Thunderbird, Apple Mail): "Le <date>, <name> a écrit :";
/// - Spanish (Gmail, Apple Mail): "El <date>, <name> escribió:";
/// - Dutch "Op ... schreef ...:", Italian "Il ... ha scritto:", Portuguese "Em ... escreveu:".
///
/// Every client puts the date or time in it, so a line without a digit ("On second
/// thought, here is what Alice wrote:") is not one.
pub fn is_strong_attribution(line: &str) -> bool {
    let l = line.trim().to_lowercase();
    let l = l.trim_start_matches('>').trim_start();
    if !l.bytes().any(|b| b.is_ascii_digit()) {
        return false;
    }
    let ends = |suffixes: &[&str]| suffixes.iter().any(|s| l.ends_with(s));
    (l.starts_with("on ") && ends(&["wrote:"]))
        || (l.starts_with("am ") && l.contains("schrieb") && l.ends_with(':'))
        || (l.starts_with("le ") && ends(&["a écrit :", "a écrit:", "a ecrit :", "a ecrit:"]))
        || (l.starts_with("el ") && ends(&["escribió:", "escribio:"]))
        || (l.starts_with("op ") && l.contains("schreef") && l.ends_with(':'))
        || (l.starts_with("il ") && ends(&["ha scritto:"]))
        || (l.starts_with("em ") && ends(&["escreveu:"]))
}

/// Only the verb: "<name> wrote:" (mutt, some webmails), "<name> schrieb:", "<name> a écrit :";
/// or Gmail's form in CJK locales, "<date> <name> <<address>>:" with no verb at all.
fn is_weak_attribution(line: &str) -> bool {
    let l = line.trim().to_lowercase();
    [
        "wrote:",
        "schrieb:",
        "a écrit :",
        "a écrit:",
        "escribió:",
        "schreef:",
        "ha scritto:",
        "escreveu:",
    ]
    .iter()
    .any(|s| l.ends_with(s))
        || (l.ends_with(">:") && l.contains('@'))
}

fn only_quotes_follow(lines: &[&str]) -> bool {
    match lines.iter().find(|l| !l.trim().is_empty()) {
        None => true,
        Some(next) => is_quoted(next),
    }
}

/// A `>` line: the quoting of RFC 3676 4.5 and of every client's plain part.
pub fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many lines are kept (the cut index when nothing quoted precedes it).
    fn tail(text: &str) -> usize {
        remove_quotes(&text.lines().collect::<Vec<_>>()).len()
    }

    fn kept(text: &str) -> String {
        remove_quotes(&text.lines().collect::<Vec<_>>()).join("\n")
    }

    #[test]
    fn inline_answers_after_an_attribution_are_kept() {
        let text = "On Thu, 26 Nov 2026, Alice wrote:\n> Can you join?\nYes.\n> At 5?\nBetter 6.\n\n-- \nBob";
        assert_eq!(kept(text), "Yes.\nBetter 6.\n\n-- \nBob");
    }

    #[test]
    fn bottom_posted_answer_is_kept() {
        let text = "On 26/11/2026 14:15, Alice wrote:\n> Can you join?\n\nSure.";
        assert_eq!(kept(text), "\nSure.");
    }

    #[test]
    fn top_posted_answer_with_quote_then_signature_is_cut() {
        let text = "Sure.\n\nOn 26/11/2026 14:15, Alice wrote:\n> Can you join?\n\n-- \nGrace";
        assert_eq!(kept(text), "Sure.\n");
    }

    #[test]
    fn english_attribution_gmail() {
        assert_eq!(
            tail("yes\n\nOn Thu, Nov 26, 2026 at 2:15 PM Alice <a@x.org> wrote:\n> hi"),
            2
        );
    }

    #[test]
    fn english_attribution_wrapped_over_two_lines() {
        let text = "ok\n\nOn Thu, Nov 26, 2026 at 2:15 PM Alice Example via Chat <\nalice@example.com> wrote:\n\n> hi";
        assert_eq!(tail(text), 2);
    }

    #[test]
    fn apple_mail_attribution() {
        assert_eq!(
            tail("Sure\n\n> On 26 Nov 2026, at 14:15, Alice <a@x.org> wrote:\n> \n> hi"),
            2
        );
        assert_eq!(
            tail("Sure\n\nOn 26 Nov 2026, at 14:15, Alice <a@x.org> wrote:\n\n> hi"),
            2
        );
    }

    #[test]
    fn german_attribution() {
        assert_eq!(
            tail("Ja\n\nAm Do., 26. Nov. 2026 um 14:15 Uhr schrieb Alice <a@x.org>:\n> hi"),
            2
        );
        assert_eq!(tail("Ja\n\nAm 26.11.26 um 14:15 schrieb Alice:\n> hi"), 2);
    }

    #[test]
    fn french_attribution() {
        assert_eq!(
            tail("Oui\n\nLe jeu. 26 nov. 2026 à 14:15, Alice <a@x.org> a écrit :\n> hi"),
            2
        );
        assert_eq!(
            tail("Oui\n\nLe 26/11/2026 à 14:15, Alice a écrit :\n> hi"),
            2
        );
    }

    #[test]
    fn spanish_attribution() {
        assert_eq!(
            tail("Sí\n\nEl jue, 26 nov 2026 a las 14:15, Alice (<a@x.org>) escribió:\n> hi"),
            2
        );
    }

    #[test]
    fn weak_attribution_needs_quotes_after_it() {
        assert_eq!(tail("ok\nAlice wrote:\n> hi"), 1);
        assert_eq!(tail("ok\nAlice wrote:\nand then more"), 3);
    }

    #[test]
    fn gmail_japanese_attribution_without_a_verb() {
        assert_eq!(
            tail("了解\n\n2026年11月26日(木) 14:15 Alice <a@x.org>:\n> hi"),
            2
        );
    }

    #[test]
    fn a_sentence_with_on_is_not_an_attribution() {
        assert_eq!(tail("On Monday I will be there.\nBob"), 2);
        assert_eq!(
            tail("On second thought, here is what Alice wrote:\nthe plan"),
            2
        );
    }

    #[test]
    fn outlook_original_message() {
        assert_eq!(tail("yes\n-----Original Message-----\nFrom: a"), 1);
        assert_eq!(tail("ja\n-----Ursprüngliche Nachricht-----\nVon: a"), 1);
    }

    #[test]
    fn outlook_header_block() {
        let text = "Accept\n\nFrom: Alice <a@x.org>\nSent: Thursday, November 26, 2026 2:15 PM\nTo: bob@y.org\nSubject: Chat";
        assert_eq!(tail(text), 2);
    }

    #[test]
    fn outlook_header_block_bold_and_underline() {
        let text =
            "ok\n\n________________________________\n*From:* Alice\n*Sent:* today\n*To:* Bob";
        assert_eq!(tail(text), 2);
    }

    #[test]
    fn outlook_header_block_french() {
        let text = "oui\nDe : Alice\nEnvoyé : jeudi\nÀ : Bob\nObjet : Chat";
        assert_eq!(tail(text), 1);
    }

    #[test]
    fn a_finished_sentence_does_not_start_a_wrapped_attribution() {
        assert_eq!(
            tail("On Monday at 5 I can join.\nLater, Alice wrote:\nok"),
            3
        );
    }

    #[test]
    fn outlook_header_block_spanish_and_italian() {
        assert_eq!(
            tail("sí\nDe: Alice\nEnviado el: jueves\nPara: Bob\nAsunto: Chat"),
            1
        );
        assert_eq!(
            tail("sì\nDa: Alice\nInviato: giovedì\nA: Bob\nOggetto: Chat"),
            1
        );
    }

    #[test]
    fn a_lone_from_line_is_not_a_header_block() {
        assert_eq!(tail("From: me\nsee you"), 2);
    }
}
