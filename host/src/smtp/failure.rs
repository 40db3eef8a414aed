//! The outcome of an outgoing SMTP step that failed, shaped 1:1 like the policy's
//! `smtp-failure` record (wit/policy.wit), so AA3 can be decided from it.

use crate::policy::world;
use std::fmt;

/// Where an outgoing SMTP transaction failed (wit `smtp-stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// No MX, no A/AAAA, a null MX, or a DNS failure.
    Dns,
    /// TCP connect failed or timed out (or the channel is gone).
    Connect,
    /// The server's greeting (a 554 here: 5.2.4.2.4 step 3).
    Greeting,
    Ehlo,
    /// STARTTLS (RFC 3207): refused, not offered or a failed handshake where TLS is
    /// required; a failed handshake in opportunistic mode.
    Tls,
    MailFrom,
    RcptTo,
    Data,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Greeting => "greeting",
            Self::Ehlo => "ehlo",
            Self::Tls => "tls",
            Self::MailFrom => "mail-from",
            Self::RcptTo => "rcpt-to",
            Self::Data => "data",
        }
    }
}

/// A failed step (wit `smtp-failure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpFailure {
    pub stage: Stage,
    /// The SMTP reply code; 0 where none was received (dns, connect, timeouts).
    pub code: u16,
    /// RFC 3463 enhanced status code, e.g. "5.1.1": the server's, or one the gateway
    /// assigns where it has none to quote (DNS: 5.1.2, 5.1.10, 4.4.3).
    pub enhanced_code: Option<String>,
    pub text: String,
    /// Retrying will not help: a 5yz reply, a domain that does not exist.
    pub permanent: bool,
}

impl SmtpFailure {
    /// A failure without an SMTP reply (DNS, connect, timeout, connection lost).
    pub fn local(
        stage: Stage,
        enhanced: Option<&str>,
        text: impl Into<String>,
        permanent: bool,
    ) -> Self {
        Self {
            stage,
            code: 0,
            enhanced_code: enhanced.map(str::to_owned),
            text: text.into(),
            permanent,
        }
    }
}

impl fmt::Display for SmtpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.permanent {
            "permanent"
        } else {
            "temporary"
        };
        write!(f, "SMTP {} failure ({kind})", self.stage.as_str())?;
        if self.code != 0 {
            write!(f, ": {}", self.code)?;
        }
        if let Some(e) = &self.enhanced_code {
            write!(f, " {e}")?;
        }
        write!(f, ": {}", self.text)
    }
}

impl std::error::Error for SmtpFailure {}

impl From<Stage> for world::SmtpStage {
    fn from(stage: Stage) -> Self {
        match stage {
            Stage::Dns => Self::Dns,
            Stage::Connect => Self::Connect,
            Stage::Greeting => Self::Greeting,
            Stage::Ehlo => Self::Ehlo,
            // The policy interface has no TLS stage (adding one would break every built
            // policy): to a policy, a server that gives no secure session is one that
            // cannot be reached now (AA3: 480), which is what a temporary 4.7.x means.
            Stage::Tls => Self::Connect,
            Stage::MailFrom => Self::MailFrom,
            Stage::RcptTo => Self::RcptTo,
            Stage::Data => Self::Data,
        }
    }
}

impl From<SmtpFailure> for world::SmtpFailure {
    fn from(f: SmtpFailure) -> Self {
        Self {
            stage: f.stage.into(),
            code: f.code,
            enhanced_code: f.enhanced_code,
            text: f.text,
            permanent: f.permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_onto_the_policy_record_field_by_field() {
        let f = SmtpFailure {
            stage: Stage::RcptTo,
            code: 550,
            enhanced_code: Some("5.1.1".into()),
            text: "no such user".into(),
            permanent: true,
        };
        assert_eq!(
            f.to_string(),
            "SMTP rcpt-to failure (permanent): 550 5.1.1: no such user"
        );
        let w: world::SmtpFailure = f.into();
        assert!(matches!(w.stage, world::SmtpStage::RcptTo));
        assert_eq!(
            (
                w.code,
                w.enhanced_code.as_deref(),
                w.text.as_str(),
                w.permanent
            ),
            (550, Some("5.1.1"), "no such user", true)
        );
    }

    #[test]
    fn a_tls_failure_reaches_the_policy_as_a_connect_failure_and_keeps_its_code() {
        let f = SmtpFailure::local(Stage::Tls, Some("4.7.4"), "STARTTLS not offered", false);
        assert_eq!(
            f.to_string(),
            "SMTP tls failure (temporary) 4.7.4: STARTTLS not offered"
        );
        let w: world::SmtpFailure = f.into();
        assert!(matches!(w.stage, world::SmtpStage::Connect));
        assert_eq!(w.enhanced_code.as_deref(), Some("4.7.4"));
    }
}
