//! Addresses: CPM URIs (`sip:`, `sips:`, `tel:`, `mailto:`) and e-mail mailboxes.
//!
//! 5.2.4.1 leaves the CPM <-> e-mail address mapping to the provider. These helpers do the
//! parts every mapping needs: take the user part out of a URI and make it a safe e-mail
//! local part (RFC 5322 dot-atom), and read the address out of a `mailto:` URI.

/// The scheme of a URI, lower-cased (`"sip"`, `"tel"`, ...), if it has one.
pub fn scheme(uri: &str) -> Option<String> {
    let (scheme, _) = uri.trim().split_once(':')?;
    let ok = !scheme.is_empty()
        && scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then(|| scheme.to_ascii_lowercase())
}

/// `<uri>` without the angle brackets and the white space around and inside them: the
/// scheme must start the string, since the rest is sliced after it.
fn unbracket(uri: &str) -> &str {
    uri.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
}

/// The user part of a `sip:`/`sips:` URI (before `@`), the number of a `tel:` URI, or the
/// address of a `mailto:` URI; parameters and headers removed. `None` if there is none.
pub fn user_part(uri: &str) -> Option<String> {
    let uri = unbracket(uri);
    let scheme = scheme(uri)?;
    let rest = &uri[scheme.len() + 1..];
    let user = match scheme.as_str() {
        "sip" | "sips" => rest.split_once('@')?.0.split(';').next()?,
        "tel" => rest.split(';').next()?,
        "mailto" => rest.split('?').next()?.split('@').next()?,
        _ => return None,
    };
    let user = percent_decode(user);
    (!user.is_empty()).then_some(user)
}

/// The address of a `mailto:` URI (RFC 6068), without headers (`?subject=`).
pub fn mailto_address(uri: &str) -> Option<String> {
    let uri = unbracket(uri);
    if scheme(uri)?.as_str() != "mailto" {
        return None;
    }
    let address = percent_decode(uri["mailto:".len()..].split('?').next()?);
    is_addr_spec(&address).then_some(address)
}

/// `text` turned into a dot-atom local part (RFC 5322 3.2.3): characters outside `atext`
/// become `-`, runs of dots collapse, and the result never starts or ends with a dot.
/// `"+1 (555) 123"` becomes `"+1--555--123"`.
pub fn to_local_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let keep = c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
        if c == '.' {
            if !out.is_empty() && !out.ends_with('.') {
                out.push('.');
            }
        } else {
            out.push(if keep { c } else { '-' });
        }
    }
    while out.ends_with('.') {
        out.pop();
    }
    out
}

/// Whether `address` is a plain `local@domain` address with no space, control character,
/// angle bracket or second `@`: safe to put in a header and an SMTP command.
pub fn is_addr_spec(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let clean = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| {
                c.is_ascii_graphic()
                    && !matches!(
                        c,
                        '<' | '>' | '@' | '(' | ')' | ',' | ';' | ':' | '"' | '\\' | '[' | ']'
                    )
            })
    };
    clean(local)
        && clean(domain)
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && domain.split('.').all(|label| !label.is_empty())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if let (b'%', Some(Some(hi)), Some(Some(lo))) = (
            bytes[i],
            bytes.get(i + 1).map(|&b| hex(b)),
            bytes.get(i + 2).map(|&b| hex(b)),
        ) {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_space_inside_angle_brackets_is_not_part_of_the_uri() {
        // Once sliced by the bytes of a scheme found after trimming: ":alice", or a panic
        // inside a multi-byte space.
        assert_eq!(user_part("< sip:alice@h>").as_deref(), Some("alice"));
        assert_eq!(user_part("<\u{3000}sip:alice@h>").as_deref(), Some("alice"));
        assert_eq!(user_part("<\u{3000}a:x@y>"), None);
        assert_eq!(
            mailto_address("<\u{3000}mailto:bob@example.net>").as_deref(),
            Some("bob@example.net")
        );
    }

    #[test]
    fn user_parts_of_each_scheme() {
        assert_eq!(
            user_part("sip:alice@ims.example.com;transport=tcp").as_deref(),
            Some("alice")
        );
        assert_eq!(
            user_part("<sips:%2B1555@example.com>").as_deref(),
            Some("+1555")
        );
        assert_eq!(
            user_part("tel:+15551234567;phone-context=x").as_deref(),
            Some("+15551234567")
        );
        assert_eq!(
            user_part("mailto:bob@example.net?subject=hi").as_deref(),
            Some("bob")
        );
        assert_eq!(user_part("sip:example.com"), None);
        assert_eq!(user_part("http://example.com"), None);
        // A '%' before non-ASCII or at the end is kept as it is, never a panic.
        assert_eq!(user_part("sip:a%é@x").as_deref(), Some("a%é"));
        assert_eq!(user_part("tel:+1%4").as_deref(), Some("+1%4"));
    }

    #[test]
    fn mailto_addresses_are_checked() {
        assert_eq!(
            mailto_address("mailto:bob@example.net").as_deref(),
            Some("bob@example.net")
        );
        assert_eq!(
            mailto_address("MAILTO:bob@example.net?cc=x").as_deref(),
            Some("bob@example.net")
        );
        assert_eq!(mailto_address("mailto:bob%0d%0aBcc:@x"), None);
        assert_eq!(mailto_address("sip:bob@example.net"), None);
    }

    #[test]
    fn local_parts_are_dot_atoms() {
        assert_eq!(to_local_part("+1 (555) 123"), "+1--555--123");
        assert_eq!(to_local_part(".a..b."), "a.b");
        assert!(is_addr_spec(&format!(
            "{}@example.org",
            to_local_part("x\r\ny")
        )));
    }

    #[test]
    fn addr_spec_refuses_injection() {
        assert!(is_addr_spec("a.b@example.org"));
        assert!(!is_addr_spec("a b@example.org"));
        assert!(!is_addr_spec("a@b@example.org"));
        assert!(!is_addr_spec("a@example.org\r\nBcc: x@y"));
        assert!(!is_addr_spec("a@example..org"));
        assert!(!is_addr_spec("@example.org"));
    }
}
