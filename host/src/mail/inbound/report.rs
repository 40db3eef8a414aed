//! The machine-readable parts of a multipart/report (RFC 6522): the per-recipient fields
//! of a message/delivery-status (RFC 3464 2.3), the fields of a
//! message/disposition-notification (RFC 8098 3.2), and the Message-ID of the returned
//! message (text/rfc822-headers or message/rfc822, RFC 6522 3), by which the caller ties a
//! bounce to the invitation it sent.

/// What a multipart/report says.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Report {
    /// The `report-type` parameter, lower-cased: "delivery-status",
    /// "disposition-notification", ...
    pub report_type: String,
    /// One entry per recipient group of the message/delivery-status part.
    pub recipients: Vec<RecipientStatus>,
    /// Message-IDs (without `<>`) of the returned message(s), and an MDN's
    /// Original-Message-ID.
    pub original_message_ids: Vec<String>,
    /// An MDN's Disposition field (RFC 8098 3.2.6), as sent.
    pub disposition: Option<String>,
}

/// The fields of one per-recipient group (RFC 3464 2.3).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RecipientStatus {
    /// Final-Recipient, as sent ("rfc822; bob@example.org").
    pub final_recipient: Option<String>,
    /// Action, lower-cased: failed, delayed, delivered, relayed, expanded (2.3.3).
    pub action: Option<String>,
    /// Status: the RFC 3463 code ("5.1.1"), without a trailing comment (2.3.4).
    pub status: Option<String>,
    /// Diagnostic-Code, as sent ("smtp; 550 5.1.1 unknown user").
    pub diagnostic_code: Option<String>,
}

impl Report {
    /// The recipient a bounce is about: the first that failed, else the first delayed,
    /// else the first listed.
    pub fn main_recipient(&self) -> Option<&RecipientStatus> {
        let with = |a: &str| {
            self.recipients
                .iter()
                .find(|r| r.action.as_deref() == Some(a))
        };
        with("failed")
            .or_else(|| with("delayed"))
            .or_else(|| self.recipients.first())
    }
}

/// Parses a message/delivery-status body into its per-recipient groups (the first group
/// holds the per-message fields and is skipped unless it also names a recipient).
pub fn delivery_status(body: &str) -> Vec<RecipientStatus> {
    groups(body)
        .into_iter()
        .filter(|g| {
            g.iter()
                .any(|(n, _)| n == "final-recipient" || n == "action")
        })
        .map(|g| {
            let field = |name: &str| g.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
            RecipientStatus {
                final_recipient: field("final-recipient"),
                action: field("action").map(|a| first_token(&a).to_ascii_lowercase()),
                status: field("status").map(|s| first_token(&s).to_string()),
                diagnostic_code: field("diagnostic-code"),
            }
        })
        .collect()
}

/// The fields of a message/disposition-notification body: (Original-Message-ID, Disposition).
pub fn disposition_notification(body: &str) -> (Option<String>, Option<String>) {
    let fields: Vec<(String, String)> = groups(body).into_iter().flatten().collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    (
        field("original-message-id").map(|id| normalise_msg_id(&id)),
        field("disposition"),
    )
}

/// The Message-ID field of a header block (text/rfc822-headers, or the head of a
/// message/rfc822 that mail-parser could not parse).
pub fn message_id_in_headers(headers: &str) -> Option<String> {
    groups(headers)
        .into_iter()
        .next()?
        .into_iter()
        .find(|(n, _)| n == "message-id")
        .map(|(_, v)| normalise_msg_id(&v))
        .filter(|id| !id.is_empty())
}

/// `<a@b>` -> `a@b`, white space and comments around it removed.
pub fn normalise_msg_id(value: &str) -> String {
    let v = value.trim();
    match (v.find('<'), v.rfind('>')) {
        (Some(open), Some(close)) if open < close => v[open + 1..close].trim().to_string(),
        _ => v.trim_matches(['<', '>']).trim().to_string(),
    }
}

fn first_token(value: &str) -> &str {
    value
        .split(['(', ';', ' ', '\t'])
        .next()
        .unwrap_or("")
        .trim()
}

/// Header-style field groups separated by blank lines (RFC 3464 2.1), field names
/// lower-cased, folded lines unfolded (RFC 5322 2.2.3).
fn groups(body: &str) -> Vec<Vec<(String, String)>> {
    let mut groups: Vec<Vec<(String, String)>> = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            current.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    const POSTFIX: &str = "Reporting-MTA: dns; mx.example.net\r\nX-Postfix-Queue-ID: 4F1A2\r\nArrival-Date: Thu, 26 Nov 2026 14:15:02 +0000 (UTC)\r\n\r\nFinal-Recipient: rfc822; bob@example.net\r\nOriginal-Recipient: rfc822;bob@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx2.example.net\r\nDiagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: Recipient address\r\n    rejected: User unknown\r\n";

    #[test]
    fn postfix_delivery_status_per_recipient_fields() {
        let r = delivery_status(POSTFIX);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].action.as_deref(), Some("failed"));
        assert_eq!(r[0].status.as_deref(), Some("5.1.1"));
        assert_eq!(
            r[0].final_recipient.as_deref(),
            Some("rfc822; bob@example.net")
        );
        assert_eq!(
            r[0].diagnostic_code.as_deref(),
            Some("smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown")
        );
    }

    #[test]
    fn status_comment_is_dropped_and_action_lower_cased() {
        let r = delivery_status(
            "Final-Recipient: rfc822; a@b\nAction: Delayed\nStatus: 4.4.1 (connection timed out)\n",
        );
        assert_eq!(r[0].action.as_deref(), Some("delayed"));
        assert_eq!(r[0].status.as_deref(), Some("4.4.1"));
    }

    #[test]
    fn main_recipient_prefers_the_failed_one() {
        let report = Report {
            recipients: delivery_status(
                "Action: delivered\nStatus: 2.0.0\n\nAction: failed\nStatus: 5.2.2\n",
            ),
            ..Report::default()
        };
        assert_eq!(
            report.main_recipient().and_then(|r| r.status.as_deref()),
            Some("5.2.2")
        );
    }

    #[test]
    fn mdn_fields() {
        let (id, disp) = disposition_notification(
            "Reporting-UA: mail.example.net; Thunderbird\r\nFinal-Recipient: rfc822;bob@example.net\r\nOriginal-Message-ID: <inv-1@iwf.example.com>\r\nDisposition: manual-action/MDN-sent-manually; displayed\r\n",
        );
        assert_eq!(id.as_deref(), Some("inv-1@iwf.example.com"));
        assert_eq!(
            disp.as_deref(),
            Some("manual-action/MDN-sent-manually; displayed")
        );
    }

    #[test]
    fn message_id_in_returned_headers() {
        let h = "Received: by iwf\r\n  (Postfix)\r\nMessage-ID: <abc.123@iwf.example.com>\r\nSubject: hi\r\n";
        assert_eq!(
            message_id_in_headers(h).as_deref(),
            Some("abc.123@iwf.example.com")
        );
        assert_eq!(message_id_in_headers("Subject: x\r\n"), None);
    }

    #[test]
    fn msg_id_normalisation() {
        assert_eq!(normalise_msg_id(" <a@b> (comment)"), "a@b");
        assert_eq!(normalise_msg_id("a@b"), "a@b");
    }
}
