//! The rows of Table AA2 (and the same rows of BB2, CC2, DD2) that need no policy: pure
//! mappings from CPM facts to `Draft` fields. The rows that need the policy (From,
//! Reply-To, Sender addresses, X-Priority, body) are the session core's, with the policy.

use super::header::{HeaderError, Mailbox, MsgId};
use crate::policy::world::CopyControl;
use chrono::{DateTime, FixedOffset, Utc};

/// AA2 Date: CPIM DateTime, else SIP Date, else now (BB2/CC2/DD2: no SIP Date).
pub fn date(
    cpim_date_time: Option<DateTime<FixedOffset>>,
    sip_date: Option<DateTime<FixedOffset>>,
    now: DateTime<Utc>,
) -> DateTime<FixedOffset> {
    cpim_date_time
        .or(sip_date)
        .unwrap_or_else(|| now.fixed_offset())
}

/// SIP Date (RFC 3261 20.17: RFC 1123 date, always GMT), `None` when malformed.
pub fn parse_sip_date(value: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc2822(value.trim()).ok()
}

/// AA2 msg-id row: Contribution-ID -> Message-ID; InReplyTo-Contribution-ID ->
/// In-Reply-To (none on the first mail of a session).
pub fn in_reply_to(
    in_reply_to_contribution_id: Option<&str>,
    mail_domain: &str,
) -> Result<Option<MsgId>, HeaderError> {
    in_reply_to_contribution_id
        .map(|id| MsgId::from_contribution_id(id, mail_domain))
        .transpose()
}

/// References of a reply (RFC 5322 3.6.4): the parent's References, else its
/// In-Reply-To, then the parent's own id; at most `MAX_REFERENCES`, the first kept.
pub fn references(parent_references: &[MsgId], parent: &MsgId) -> Vec<MsgId> {
    let mut chain: Vec<MsgId> = parent_references.to_vec();
    chain.push(parent.clone());
    if chain.len() > MAX_REFERENCES {
        let cut = chain.len() - (MAX_REFERENCES - 1);
        chain.drain(1..cut);
    }
    chain
}

/// Enough for threading without growing a header without bound.
pub const MAX_REFERENCES: usize = 20;

/// AA2/CC2 To, Cc, Bcc rows with a URI-list (RFC 5366 copyControl): `to` -> To,
/// `cc` -> Cc, `bcc` -> envelope only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
}

pub fn recipients(list: impl IntoIterator<Item = (Mailbox, CopyControl)>) -> Recipients {
    let mut r = Recipients::default();
    for (mailbox, control) in list {
        match control {
            CopyControl::To => r.to.push(mailbox),
            CopyControl::Cc => r.cc.push(mailbox),
            CopyControl::Bcc => r.bcc.push(mailbox),
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aa2_date_cpim_date_time_else_sip_date_else_now() {
        // The CPIM DateTime is parsed by the CPIM codec, which F4 reads it with.
        let cpim = crate::cpim::parse_date_time("2026-11-26T09:00:00+01:00").ok();
        let sip = parse_sip_date("Thu, 26 Nov 2026 08:30:00 GMT");
        let now = DateTime::parse_from_rfc3339("2026-11-26T08:45:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            date(cpim, sip, now).to_rfc2822(),
            "Thu, 26 Nov 2026 09:00:00 +0100"
        );
        assert_eq!(
            date(None, sip, now).to_rfc2822(),
            "Thu, 26 Nov 2026 08:30:00 +0000"
        );
        assert_eq!(
            date(None, None, now).to_rfc2822(),
            "Thu, 26 Nov 2026 08:45:00 +0000"
        );
        assert_eq!(parse_sip_date("26/11/2026"), None);
    }

    #[test]
    fn aa2_in_reply_to_from_in_reply_to_contribution_id() {
        assert_eq!(in_reply_to(None, "m.example").unwrap(), None);
        assert_eq!(
            in_reply_to(Some("c1"), "m.example")
                .unwrap()
                .unwrap()
                .to_string(),
            "<c1@m.example>"
        );
    }

    #[test]
    fn references_chain_keeps_first_and_latest() {
        let id = |n: usize| MsgId::new(&format!("m{n}"), "x.example").unwrap();
        assert_eq!(references(&[], &id(1)), [id(1)]);
        assert_eq!(references(&[id(1)], &id(2)), [id(1), id(2)]);
        let long: Vec<MsgId> = (0..30).map(id).collect();
        let chain = references(&long, &id(30));
        assert_eq!(chain.len(), MAX_REFERENCES);
        assert_eq!(chain[0], id(0));
        assert_eq!(chain[1], id(12));
        assert_eq!(chain[MAX_REFERENCES - 1], id(30));
    }

    #[test]
    fn aa2_to_cc_bcc_from_copy_control() {
        let m = |a: &str| Mailbox::new(None, a).unwrap();
        let r = recipients([
            (m("a@x.example"), CopyControl::To),
            (m("b@x.example"), CopyControl::Cc),
            (m("c@x.example"), CopyControl::Bcc),
            (m("d@x.example"), CopyControl::To),
        ]);
        assert_eq!(r.to, [m("a@x.example"), m("d@x.example")]);
        assert_eq!(r.cc, [m("b@x.example")]);
        assert_eq!(r.bcc, [m("c@x.example")]);
    }
}
