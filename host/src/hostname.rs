//! DNS host names, the one check shared by SIP/SDP/MSRP URIs and mail domains.

/// A host name of RFC 1123 2.1 (RFC 952 labels of letters, digits and hyphens, a hyphen
/// neither first nor last; at most 63 octets a label and 253 in all): what SIP (RFC 3261
/// 25.1 `hostname`), MSRP URIs and RFC 5321 4.1.2 `Domain` admit.
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::is_hostname;

    #[test]
    fn labels_of_letters_digits_and_inner_hyphens() {
        for ok in [
            "example.com",
            "a",
            "mx-1.example.net",
            "123.example",
            &"a".repeat(63),
        ] {
            assert!(is_hostname(ok), "{ok}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["a"; 127].join(".") + ".ab";
        for bad in [
            "",
            ".",
            "a..b",
            "-a.com",
            "a-.com",
            "a_b.com",
            "a b",
            "é.com",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(!is_hostname(bad), "{bad}");
        }
    }
}
