//! Incoming SMTP: the listener where the e-mail user's replies reach the gateway (F3, F5,
//! F8). `session` is the server's protocol logic without I/O (bytes in, replies and
//! questions out), `verdict` its replies, `trace` the `Received:` header, `server` the
//! tokio driver (listener, one task per connection).
//!
//! It owns the SMTP dialogue only: whether an address or a mail is wanted is asked of a
//! [`Delivery`] (the gateway, which correlates the mail with a session); it holds no
//! session state and parses no mail.

pub mod server;
pub mod session;
pub mod trace;
pub mod verdict;

pub use server::{StartError, bind, serve};
pub use session::{Session, Since, Step};
pub use verdict::Verdict;

use crate::config::SmtpInboundConfig;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// What the gateway decides for the inbound server. Both answers may take their time (a
/// look-up, a policy decision); the client waits for them (RFC 5321 4.5.3.2 gives it
/// minutes), bounded by the server's timeouts.
pub trait Delivery: Send + Sync + 'static {
    /// RCPT TO: [`Verdict::recipient_ok`] or a refusal, typically
    /// [`Verdict::no_such_recipient`] when no live session answers to `rcpt`.
    /// `envelope` is the transaction so far (sender and the recipients already accepted).
    fn recipient(
        &self,
        envelope: &EnvelopeSoFar,
        rcpt: &str,
    ) -> impl Future<Output = Verdict> + Send;

    /// After the final dot: a 2yz verdict only once the gateway has taken responsibility
    /// for the mail (RFC 5321 4.1.1.4, 6.1); else its 4yz (client retries) or 5yz.
    fn deliver(&self, mail: ReceivedMail) -> impl Future<Output = Verdict> + Send;
}

/// The transaction when a recipient is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSoFar {
    pub peer: SocketAddr,
    /// The EHLO/HELO argument.
    pub helo: String,
    /// The reverse-path; `None` for the null path `<>` (bounces, RFC 5321 4.5.5).
    pub mail_from: Option<String>,
    /// Recipients the gateway accepted so far in this transaction.
    pub rcpt_to: Vec<String>,
}

/// One mail, complete, for the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    pub peer: SocketAddr,
    pub helo: String,
    /// `None` for the null reverse-path `<>` (a bounce: never a chat message).
    pub mail_from: Option<String>,
    /// The recipients the gateway accepted, in RCPT order (at least one).
    pub rcpt_to: Vec<String>,
    /// The message (RFC 5322) as received, dot-unstuffed (RFC 5321 4.5.2), with the
    /// server's `Received:` header (RFC 5321 4.4) on top; lines end as the client sent them.
    pub data: Vec<u8>,
}

/// The inbound server's settings (`[smtp.inbound]`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSettings {
    /// Greeting, EHLO reply and `Received:` header name.
    pub domain: String,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_connections: usize,
    /// Wait for the next command (and for the gateway's answer to RCPT).
    pub command_timeout: Duration,
    /// Wait for the next piece of the message (and for the gateway's answer to the mail).
    pub data_timeout: Duration,
}

/// A `[smtp.inbound]` key out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[smtp.inbound] {key} = {value}: {fix}")]
pub struct InvalidSetting {
    pub key: &'static str,
    pub value: String,
    pub fix: &'static str,
}

impl InboundSettings {
    pub fn from_config(config: &SmtpInboundConfig) -> Result<Self, InvalidSetting> {
        let invalid = |key, value: &dyn std::fmt::Display, fix| InvalidSetting {
            key,
            value: value.to_string(),
            fix,
        };
        if !crate::hostname::is_hostname(&config.domain) {
            return Err(invalid(
                "domain",
                &format!("{:?}", config.domain),
                "use this gateway's mail domain, e.g. \"iwf.example.com\"",
            ));
        }
        // RFC 5321 4.5.3.1.7: at least 64 KiB must be accepted.
        if !(65_536..=1 << 30).contains(&config.max_message_bytes) {
            return Err(invalid(
                "max_message_bytes",
                &config.max_message_bytes,
                "use 65536 to 1073741824 (octets)",
            ));
        }
        // RFC 5321 4.5.3.1.8: at least 100 recipients must be accepted.
        if !(100..=10_000).contains(&config.max_recipients) {
            return Err(invalid(
                "max_recipients",
                &config.max_recipients,
                "use 100 to 10000",
            ));
        }
        if !(1..=100_000).contains(&config.max_connections) {
            return Err(invalid(
                "max_connections",
                &config.max_connections,
                "use 1 to 100000",
            ));
        }
        for (key, value) in [
            ("command_timeout_ms", config.command_timeout_ms),
            ("data_timeout_ms", config.data_timeout_ms),
        ] {
            if !(1..=3_600_000).contains(&value) {
                return Err(invalid(key, &value, "use 1 to 3600000 (milliseconds)"));
            }
        }
        // F5's inbound spool (session::deliver).
        if !(1..=7 * 86_400_000).contains(&config.chat_give_up_ms) {
            let value = config.chat_give_up_ms;
            return Err(invalid(
                "chat_give_up_ms",
                &value,
                "use 1 to 604800000 (seven days)",
            ));
        }
        if !(1..=60_000).contains(&config.chat_retry_ms) {
            let value = config.chat_retry_ms;
            return Err(invalid(
                "chat_retry_ms",
                &value,
                "use 1 to 60000 (milliseconds)",
            ));
        }
        Ok(Self {
            domain: config.domain.clone(),
            max_message_bytes: config.max_message_bytes,
            max_recipients: config.max_recipients,
            max_connections: config.max_connections,
            command_timeout: Duration::from_millis(config.command_timeout_ms),
            data_timeout: Duration::from_millis(config.data_timeout_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_follow_rfc_5321_timeouts() {
        let s = InboundSettings::from_config(&SmtpInboundConfig::default()).unwrap();
        assert_eq!(s.command_timeout, Duration::from_secs(300));
        assert_eq!(s.data_timeout, Duration::from_secs(180));
        assert!(s.max_recipients >= 100 && s.max_message_bytes >= 65_536);
    }

    #[test]
    fn out_of_range_keys_are_named() {
        let base = SmtpInboundConfig::default();
        for (config, key) in [
            (
                SmtpInboundConfig {
                    max_recipients: 5,
                    ..base.clone()
                },
                "max_recipients",
            ),
            (
                SmtpInboundConfig {
                    max_message_bytes: 10,
                    ..base.clone()
                },
                "max_message_bytes",
            ),
            (
                SmtpInboundConfig {
                    max_connections: 0,
                    ..base.clone()
                },
                "max_connections",
            ),
            (
                SmtpInboundConfig {
                    command_timeout_ms: 0,
                    ..base.clone()
                },
                "command_timeout_ms",
            ),
            (
                SmtpInboundConfig {
                    data_timeout_ms: 0,
                    ..base.clone()
                },
                "data_timeout_ms",
            ),
            (
                SmtpInboundConfig {
                    domain: "a b".into(),
                    ..base.clone()
                },
                "domain",
            ),
        ] {
            let e = InboundSettings::from_config(&config).unwrap_err();
            assert_eq!(e.key, key);
            assert!(
                e.to_string()
                    .starts_with(&format!("[smtp.inbound] {key} = ")),
                "{e}"
            );
        }
    }

    /// The gateway spawns the server and implements `Delivery` on its shared state.
    #[test]
    fn serve_is_send() {
        fn send_future<F: Future + Send>(_: F) {}
        struct Nobody;
        impl Delivery for Nobody {
            async fn recipient(&self, _: &EnvelopeSoFar, _: &str) -> Verdict {
                Verdict::no_such_recipient("no")
            }
            async fn deliver(&self, _: ReceivedMail) -> Verdict {
                Verdict::try_later("no")
            }
        }
        let _ = |l: tokio::net::TcpListener, s: InboundSettings| {
            send_future(serve(
                l,
                s,
                std::sync::Arc::new(Nobody),
                std::future::pending(),
            ))
        };
    }
}
