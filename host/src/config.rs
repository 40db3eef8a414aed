//! The gateway's configuration file (TOML), with the embedded defaults `iwf run` uses
//! when no file is given. Key names are the operator contract of DESIGN.md.
//!
//! Every key is optional; unknown keys are refused (a typo must not silently fall back to
//! a default), and an error names the file, the key and what would fix it.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub sip: SipConfig,
    #[serde(default)]
    pub msrp: MsrpConfig,
    #[serde(default)]
    pub smtp: SmtpConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub store: crate::store::StoreSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP and TCP, both on this address.
    pub listen: SocketAddr,
    pub domain: String,
    /// RFC 3261 T1 (the RTT estimate behind every SIP timer), in milliseconds.
    pub t1_ms: u64,
    /// SO_RCVBUF of the UDP socket, in bytes: what absorbs a burst of INVITEs while the
    /// session task is busy. The kernel caps it at `net.core.rmem_max` (the gateway logs a
    /// warning when it got less than asked).
    pub udp_receive_buffer: usize,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 5060).into(),
            domain: "localhost".into(),
            t1_ms: 500,
            udp_receive_buffer: 4 << 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MsrpConfig {
    /// The one TCP listener shared by every session (`a=path` carries this address).
    pub listen: SocketAddr,
    /// The host peers reach the listener at, written in `a=path` and `c=` (an IP address
    /// or a domain name). Needed when `listen` is a wildcard address (0.0.0.0, ::) or
    /// behind NAT; by default the `listen` address.
    pub advertise: Option<String>,
    /// The largest whole message taken from a peer, in bytes; beyond it 413 (RFC 4975
    /// section 7.1.1). Default 10 MiB: a chat message becomes one e-mail.
    pub max_message_size: u64,
    /// The body size of each chunk the IWF sends, in bytes (RFC 4975 section 7.1.1).
    /// Default 2048: chunks up to that size need not be interruptible (section 5.1).
    pub chunk_size: usize,
    /// How long a sent request waits for its transaction response before the IWF treats
    /// it as a local 408 (RFC 4975 section 7.1.1 recommends 30 s). Default 30000.
    pub transaction_timeout_ms: u64,
    /// Deadline of the TCP connect (active role), and of the peer's connection and first
    /// request (passive role, RFC 6135). Default 30000.
    pub connect_timeout_ms: u64,
    /// How long the response to a message's last chunk waits for the session to say how
    /// the e-mail went (F4). Must stay below the peer's 30 s transaction timeout; when it
    /// passes the IWF answers 200 and reports the outcome later by REPORT. Default 20000.
    pub disposition_timeout_ms: u64,
    /// MSRP connections open at once, accepted and opened; more are refused. Default 1024.
    pub max_connections: usize,
    /// TCP keepalive idle time and probe interval, in seconds; 0 turns it off. Default 60.
    pub keepalive_secs: u64,
    /// Messages a session holds before the e-mail user accepts (5.2.4.2.4: the CPM side
    /// connected at the 200 OK, step 5a), answered 200 and mailed after the accept; more
    /// get 403. Default 32.
    pub held_max_messages: usize,
    /// Bytes a session holds so, at most. Default 1 MiB.
    pub held_max_bytes: u64,
}

impl Default for MsrpConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 2855).into(),
            advertise: None,
            max_message_size: 10 * 1024 * 1024,
            chunk_size: 2048,
            transaction_timeout_ms: 30_000,
            connect_timeout_ms: 30_000,
            disposition_timeout_ms: 20_000,
            max_connections: 1024,
            keepalive_secs: 60,
            held_max_messages: 32,
            held_max_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    #[serde(default)]
    pub inbound: SmtpInboundConfig,
    #[serde(default)]
    pub outbound: SmtpOutboundConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpInboundConfig {
    pub listen: SocketAddr,
    /// The domain of the addresses the gateway mails from and receives replies at; also
    /// the name in the 220 greeting and in the `Received:` header it adds.
    pub domain: String,
    /// Largest message accepted (octets of data after dot-unstuffing), announced as
    /// `SIZE` in the EHLO reply (RFC 1869); larger ones get 552 5.3.4.
    pub max_message_bytes: usize,
    /// Recipients accepted per mail; more get 452 4.5.3 (RFC 5321 4.5.3.1.8: at least 100).
    pub max_recipients: usize,
    /// Client connections served at once; a connection over it gets 421 at the greeting.
    pub max_connections: usize,
    /// How long the server waits for the next command (RFC 5321 4.5.3.2.7: 5 minutes);
    /// then it answers 421 4.4.2 and closes.
    pub command_timeout_ms: u64,
    /// How long the server waits for the next piece of the message after the 354
    /// (RFC 5321 4.5.3.2.5: 3 minutes per data block); then 421 4.4.2 and close.
    pub data_timeout_ms: u64,
    /// F5's inbound spool: how long the chat has to take a mail answered 250 (its
    /// connection down, its peer silent) before the mail is bounced.
    pub chat_give_up_ms: u64,
    /// How often a spooled mail is tried again while its chat connection is down.
    pub chat_retry_ms: u64,
}

impl Default for SmtpInboundConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 2525).into(),
            domain: "localhost".into(),
            max_message_bytes: 10 * 1024 * 1024,
            max_recipients: 100,
            max_connections: 1024,
            command_timeout_ms: 300_000,
            data_timeout_ms: 180_000,
            chat_give_up_ms: 600_000,
            chat_retry_ms: 500,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpOutboundConfig {
    /// Send every mail through this relay ("host:port") instead of the MX hosts.
    pub smart_host: Option<String>,
    /// DNS servers ("ip:port") for MX look-ups instead of the system's.
    pub dns_servers: Vec<SocketAddr>,
    pub mx_port: u16,
    pub helo: String,
    /// Deadline of one DNS query; each query is tried `dns_attempts` times.
    pub dns_timeout_ms: u64,
    pub dns_attempts: u32,
    /// Deadline of one TCP connect (each MX address is tried in turn).
    pub connect_timeout_ms: u64,
    /// Deadline of the greeting and of each reply to EHLO, STARTTLS, MAIL, RCPT, DATA,
    /// QUIT, and of the TLS handshake.
    pub command_timeout_ms: u64,
    /// Deadline of the reply to the end of the message data (RFC 5321 4.5.3.2.6).
    pub data_timeout_ms: u64,
    /// Deadline of a whole invitation, DNS to the reply to its data: the INVITE waits on
    /// it, and proxies give up on a pending INVITE after Timer C (over 3 min, RFC 3261 16.6).
    pub invitation_timeout_ms: u64,
    /// Mail operations (an invitation, a session's closing) running at once; more wait.
    pub max_mail_operations: usize,
    /// SMTP channels kept open between a session's mails; beyond it a channel is QUIT
    /// after the invitation and reopened for the session's next mail.
    pub max_idle_channels: usize,
    /// SMTP connections open at once to one destination (the smart host, else the
    /// recipient's domain); more wait for one to close, up to `connect_timeout_ms`.
    /// The default stays under Postfix smtpd's default per-client limit (50).
    pub max_connections_per_destination: usize,
    /// Of those, channels kept open between a session's mails; fewer than
    /// `max_connections_per_destination`, so that kept channels leave room for mails.
    pub max_idle_channels_per_destination: usize,
    /// STARTTLS (RFC 3207) to MX hosts and the smart host: "opportunistic" (when offered,
    /// certificate not checked, RFC 7435), "required" (verified TLS or the server is
    /// passed over) or "off".
    pub starttls: String,
    /// Extra trust roots (PEM) for `starttls = "required"`, besides the system's.
    pub tls_ca_file: Option<PathBuf>,
    /// F4's outbound spool (issue 15): a chat message whose mail the servers refuse for
    /// now (4yz, no connection, DNS) is tried again after this wait, doubled at each
    /// failure up to `chat_retry_max_ms`, until `chat_give_up_ms` after the IWF took it;
    /// then its failure REPORT goes.
    pub chat_retry_initial_ms: u64,
    pub chat_retry_max_ms: u64,
    pub chat_give_up_ms: u64,
    /// A session's chat messages waiting for their mail (queued, or being tried again), at
    /// most; one more waits for room before its 200, and is refused 403 if none comes
    /// within half of `[msrp] disposition_timeout_ms`.
    pub chat_max_waiting: usize,
}

impl Default for SmtpOutboundConfig {
    fn default() -> Self {
        Self {
            smart_host: None,
            dns_servers: Vec::new(),
            mx_port: 25,
            helo: "localhost".into(),
            dns_timeout_ms: 2_000,
            dns_attempts: 2,
            connect_timeout_ms: 10_000,
            command_timeout_ms: 30_000,
            data_timeout_ms: 60_000,
            invitation_timeout_ms: 150_000,
            max_mail_operations: 256,
            max_idle_channels: 1024,
            max_connections_per_destination: 40,
            max_idle_channels_per_destination: 20,
            starttls: "opportunistic".into(),
            tls_ca_file: None,
            chat_retry_initial_ms: 1_000,
            chat_retry_max_ms: 300_000,
            // A chat message older than an hour is no longer a chat (Postfix keeps mail
            // five days; a person waiting on a reply does not).
            chat_give_up_ms: 3_600_000,
            chat_max_waiting: 64,
        }
    }
}

impl SmtpOutboundConfig {
    /// Checks the `[smtp.outbound]` keys; `Err((key, value, fix))`.
    fn check(&self) -> Result<(), (&'static str, String, &'static str)> {
        if let Some(host) = &self.smart_host {
            let ok = host
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
            if !ok {
                return Err((
                    "smart_host",
                    host.clone(),
                    "use \"host:port\", e.g. \"relay.example.com:25\"",
                ));
            }
        }
        if self.mx_port == 0 {
            return Err((
                "mx_port",
                "0".into(),
                "use 1 to 65535 (25 for real MX hosts)",
            ));
        }
        if self.helo.is_empty()
            || self
                .helo
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err((
                "helo",
                format!("{:?}", self.helo),
                "use this gateway's host name",
            ));
        }
        if !(1..=10).contains(&self.dns_attempts) {
            return Err(("dns_attempts", self.dns_attempts.to_string(), "use 1 to 10"));
        }
        for (key, value) in [
            ("dns_timeout_ms", self.dns_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("command_timeout_ms", self.command_timeout_ms),
            ("data_timeout_ms", self.data_timeout_ms),
            ("invitation_timeout_ms", self.invitation_timeout_ms),
        ] {
            if !(1..=600_000).contains(&value) {
                return Err((key, value.to_string(), "use 1 to 600000 (milliseconds)"));
            }
        }
        for (key, value) in [
            ("chat_retry_initial_ms", self.chat_retry_initial_ms),
            ("chat_retry_max_ms", self.chat_retry_max_ms),
        ] {
            if !(1..=86_400_000).contains(&value) {
                return Err((key, value.to_string(), "use 1 to 86400000 (milliseconds)"));
            }
        }
        if self.chat_retry_max_ms < self.chat_retry_initial_ms {
            let value = self.chat_retry_max_ms.to_string();
            return Err((
                "chat_retry_max_ms",
                value,
                "use at least chat_retry_initial_ms",
            ));
        }
        if self.chat_give_up_ms > 7 * 86_400_000 {
            let value = self.chat_give_up_ms.to_string();
            return Err(("chat_give_up_ms", value, "use 0 to 604800000 (seven days)"));
        }
        if !(1..=10_000).contains(&self.chat_max_waiting) {
            let value = self.chat_max_waiting.to_string();
            return Err(("chat_max_waiting", value, "use 1 to 10000"));
        }
        if !(1..=100_000).contains(&self.max_mail_operations) {
            let value = self.max_mail_operations.to_string();
            return Err(("max_mail_operations", value, "use 1 to 100000"));
        }
        if self.max_idle_channels > 100_000 {
            let value = self.max_idle_channels.to_string();
            return Err(("max_idle_channels", value, "use 0 to 100000"));
        }
        if !(1..=100_000).contains(&self.max_connections_per_destination) {
            let value = self.max_connections_per_destination.to_string();
            return Err(("max_connections_per_destination", value, "use 1 to 100000"));
        }
        if self.max_idle_channels_per_destination >= self.max_connections_per_destination {
            let value = self.max_idle_channels_per_destination.to_string();
            return Err((
                "max_idle_channels_per_destination",
                value,
                "use fewer than max_connections_per_destination: kept channels must leave \
                 connections for the mails being sent",
            ));
        }
        let starttls = crate::smtp::StartTls::parse(&self.starttls).ok_or((
            "starttls",
            format!("{:?}", self.starttls),
            crate::smtp::StartTls::CHOICES,
        ))?;
        if let Some(path) = &self.tls_ca_file {
            if starttls != crate::smtp::StartTls::Required {
                return Err((
                    "tls_ca_file",
                    path.display().to_string(),
                    "only verified TLS uses it: set starttls = \"required\" or remove it",
                ));
            }
            if crate::smtp::tls::load_ca_file(path).is_err() {
                return Err((
                    "tls_ca_file",
                    path.display().to_string(),
                    "name a readable PEM file with at least one CERTIFICATE",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The policy component; none serves the embedded `default` policy.
    pub path: Option<PathBuf>,
    /// Deadline of one decision.
    pub timeout_ms: u64,
    /// Linear memory cap of one policy instance.
    pub memory_mb: u32,
    /// Policy instances alive at once (decisions in flight); sizes the pooling allocator.
    pub max_instances: u32,
    /// How often the file at `path` is checked for a new version.
    pub watch_interval_ms: u64,
    /// Single-use instances kept ready per policy version, made off the decision's path
    /// (`policy/pool.rs`); 0 makes each decision instantiate its own.
    pub warm_instances: u32,
    /// Compiled components kept here across restarts (an interpreter policy compiles in
    /// seconds); none: compile at every start. Only the gateway's user may write to it.
    pub cache_dir: Option<PathBuf>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            path: None,
            timeout_ms: 50,
            memory_mb: 32,
            max_instances: 64,
            watch_interval_ms: 250,
            warm_instances: 4,
            cache_dir: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `GET /metrics`, `GET /healthz`, `GET /policy`, `POST /policy/reload`.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 9090).into(),
        }
    }
}

/// A configuration error, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: [{section}] {key} = {value}: {fix}")]
    Invalid {
        path: PathBuf,
        section: &'static str,
        key: &'static str,
        value: String,
        fix: &'static str,
    },
}

impl Config {
    /// Reads and checks `path`. A relative `[policy] path` is taken relative to the
    /// config file's folder, so a config and its policy can move together.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        // Relative file names are relative to the configuration file, checked as such.
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Self::parse_unchecked(&text, path)?;
        // A `[store] path` written in the file is the file's too (`:memory:` is no path);
        // without the key it is `iwf-state/` in the working directory.
        let store = (!config.store.in_memory()).then_some(&mut config.store.path);
        for file in [
            &mut config.policy.path,
            &mut config.smtp.outbound.tls_ca_file,
        ]
        .into_iter()
        .chain(store)
        {
            if let Some(relative) = file.as_ref().filter(|f| f.is_relative()) {
                *file = Some(base.join(relative));
            }
        }
        config.check(path)?;
        Ok(config)
    }

    /// Parses and checks `text`; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config = Self::parse_unchecked(text, path)?;
        config.check(path)?;
        Ok(config)
    }

    fn parse_unchecked(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        self.smtp
            .outbound
            .check()
            .map_err(|(key, value, fix)| ConfigError::Invalid {
                path: path.into(),
                section: "smtp.outbound",
                key,
                value,
                fix,
            })?;
        // The listeners' own checks, so that a bad value fails at load, naming the key.
        crate::smtp::inbound::InboundSettings::from_config(&self.smtp.inbound).map_err(|e| {
            ConfigError::Invalid {
                path: path.into(),
                section: "smtp.inbound",
                key: e.key,
                value: e.value,
                fix: e.fix,
            }
        })?;
        if let Err(crate::msrp::EndpointError::Config { key, value, fix }) =
            crate::msrp::Settings::from_config(&self.msrp)
        {
            return Err(ConfigError::Invalid {
                path: path.into(),
                section: "msrp",
                key,
                value,
                fix,
            });
        }
        match &self.msrp.advertise {
            Some(host) if crate::sdp::Host::parse(host).is_err() => {
                return Err(ConfigError::Invalid {
                    path: path.into(),
                    section: "msrp",
                    key: "advertise",
                    value: host.clone(),
                    fix: "use an IP address or a domain name (no port, no scheme)",
                });
            }
            None if self.msrp.listen.ip().is_unspecified() => {
                return Err(ConfigError::Invalid {
                    path: path.into(),
                    section: "msrp",
                    key: "listen",
                    value: self.msrp.listen.to_string(),
                    fix: "a wildcard address cannot go in a=path: set [msrp] advertise to the host peers reach",
                });
            }
            _ => {}
        }
        // The messages held until the e-mail user's consent are spooled at once when it
        // comes: room for all of them, or the last would be refused (F4, issue 15).
        if self.smtp.outbound.chat_max_waiting < self.msrp.held_max_messages {
            return Err(ConfigError::Invalid {
                path: path.into(),
                section: "smtp.outbound",
                key: "chat_max_waiting",
                value: self.smtp.outbound.chat_max_waiting.to_string(),
                fix: "use at least [msrp] held_max_messages",
            });
        }
        // T1 at most T2 (4 s, RFC 3261 17.1.2.2), and never 0: every timer is a multiple.
        if !(1..=4000).contains(&self.sip.t1_ms) {
            return Err(ConfigError::Invalid {
                path: path.into(),
                section: "sip",
                key: "t1_ms",
                value: self.sip.t1_ms.to_string(),
                fix: "use 1 to 4000 (milliseconds; RFC 3261 T1, 500 by default)",
            });
        }
        let invalid = |key, value: &dyn std::fmt::Display, fix| ConfigError::Invalid {
            path: path.into(),
            section: "policy",
            key,
            value: value.to_string(),
            fix,
        };
        let p = &self.policy;
        if !(1..=10_000).contains(&p.timeout_ms) {
            return Err(invalid(
                "timeout_ms",
                &p.timeout_ms,
                "use 1 to 10000 (milliseconds)",
            ));
        }
        if !(1..=4096).contains(&p.memory_mb) {
            return Err(invalid("memory_mb", &p.memory_mb, "use 1 to 4096 (MiB)"));
        }
        if !(1..=10_000).contains(&p.max_instances) {
            return Err(invalid("max_instances", &p.max_instances, "use 1 to 10000"));
        }
        // The pool's ready instances and the spent stores waiting for its thread (as many
        // again) hold pooling-allocator slots: leave most for decisions in flight.
        if p.warm_instances > p.max_instances / 4 {
            return Err(invalid(
                "warm_instances",
                &p.warm_instances,
                "use 0 to a quarter of max_instances",
            ));
        }
        if !(10..=60_000).contains(&p.watch_interval_ms) {
            return Err(invalid(
                "watch_interval_ms",
                &p.watch_interval_ms,
                "use 10 to 60000 (milliseconds)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_embedded_defaults() {
        let c = Config::parse("", Path::new("x.toml")).unwrap();
        assert_eq!(c.policy.timeout_ms, 50);
        assert_eq!(c.policy.memory_mb, 32);
        assert_eq!(c.smtp.outbound.mx_port, 25);
        assert!(c.policy.path.is_none());
        assert_eq!(c.sip.t1_ms, 500);
    }

    #[test]
    fn msrp_and_inbound_smtp_limits_are_checked_at_load() {
        let e = Config::parse(
            "[msrp]\ndisposition_timeout_ms = 40000\n",
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("[msrp] disposition_timeout_ms = 40000"), "{e}");
        let e = Config::parse("[smtp.inbound]\nmax_recipients = 0\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[smtp.inbound] max_recipients = 0"), "{e}");
    }

    #[test]
    fn a_wildcard_msrp_listener_needs_an_advertised_host() {
        let e = Config::parse("[msrp]\nlisten = \"0.0.0.0:2855\"\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[msrp] listen = 0.0.0.0:2855") && e.contains("advertise"),
            "{e}"
        );
        let c = Config::parse(
            "[msrp]\nlisten = \"0.0.0.0:2855\"\nadvertise = \"iwf.example.com\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.msrp.advertise.as_deref(), Some("iwf.example.com"));
        assert!(Config::parse("[msrp]\nadvertise = \"msrp://x\"\n", Path::new("x.toml")).is_err());
    }

    #[test]
    fn sip_t1_ms_is_checked() {
        let c = Config::parse("[sip]\nt1_ms = 20\n", Path::new("x.toml")).unwrap();
        assert_eq!(c.sip.t1_ms, 20);
        let e = Config::parse("[sip]\nt1_ms = 0\n", Path::new("gw.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("[sip] t1_ms = 0") && msg.contains("1 to 4000"),
            "{msg}"
        );
    }

    #[test]
    fn contract_keys_parse() {
        let text = r#"
            [sip]
            listen = "127.0.0.1:5070"
            domain = "iwf.example.com"
            [msrp]
            listen = "127.0.0.1:2856"
            [smtp.inbound]
            listen = "127.0.0.1:2526"
            domain = "mail.example.com"
            [smtp.outbound]
            smart_host = "relay.example.com:587"
            dns_servers = ["127.0.0.1:5353"]
            mx_port = 2525
            helo = "iwf.example.com"
            [policy]
            path = "p.wasm"
            timeout_ms = 20
            memory_mb = 16
            [admin]
            listen = "127.0.0.1:9191"
        "#;
        let c = Config::parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(c.sip.domain, "iwf.example.com");
        assert_eq!(c.smtp.outbound.dns_servers.len(), 1);
        assert_eq!(c.policy.timeout_ms, 20);
    }

    #[test]
    fn smtp_outbound_timeouts_and_smart_host_are_checked() {
        let c = Config::parse(
            "[smtp.outbound]\nconnect_timeout_ms = 500\ncommand_timeout_ms = 700\ndata_timeout_ms = 900\ndns_timeout_ms = 300\ndns_attempts = 1\n",
            Path::new("gw.toml"),
        )
        .unwrap();
        let o = &c.smtp.outbound;
        assert_eq!(
            (
                o.connect_timeout_ms,
                o.command_timeout_ms,
                o.data_timeout_ms,
                o.dns_timeout_ms,
                o.dns_attempts
            ),
            (500, 700, 900, 300, 1)
        );
        for (text, key) in [
            ("smart_host = \"relay.example.com\"", "smart_host"),
            ("smart_host = \"relay:0\"", "smart_host"),
            ("command_timeout_ms = 0", "command_timeout_ms"),
            ("dns_attempts = 0", "dns_attempts"),
            ("mx_port = 0", "mx_port"),
            ("helo = \"a b\"", "helo"),
            ("invitation_timeout_ms = 0", "invitation_timeout_ms"),
            ("max_mail_operations = 0", "max_mail_operations"),
            ("max_idle_channels = 100001", "max_idle_channels"),
            (
                "max_connections_per_destination = 0",
                "max_connections_per_destination",
            ),
            (
                "max_idle_channels_per_destination = 40",
                "max_idle_channels_per_destination",
            ),
            ("chat_retry_initial_ms = 0", "chat_retry_initial_ms"),
            (
                "chat_retry_initial_ms = 5000\nchat_retry_max_ms = 1000",
                "chat_retry_max_ms",
            ),
            ("chat_give_up_ms = 604800001", "chat_give_up_ms"),
            ("chat_max_waiting = 0", "chat_max_waiting"),
            ("chat_max_waiting = 31", "chat_max_waiting"), // < held_max_messages (32)
        ] {
            let e = Config::parse(&format!("[smtp.outbound]\n{text}\n"), Path::new("gw.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("[smtp.outbound] {key} =")), "{e}");
        }
    }

    /// A self-signed certificate (CN=test), for the PEM check only.
    const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBdTCCARugAwIBAgIUUpz1JXTUnOQ30F1oGv06L7MAkwYwCgYIKoZIzj0EAwIw\n\
DzENMAsGA1UEAwwEdGVzdDAgFw0yNjExMjYxNzAyNTVaGA8yMTI2MTEwMjE3MDI1\n\
NVowDzENMAsGA1UEAwwEdGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABE+k\n\
VuZKVQl15Yk/IaAUISL9xqRFrn+log3CJWMrryKD/K1iRGowo0i+3lZqY5O734qn\n\
D5LDFp6Kh/kDxDg5M6ijUzBRMB0GA1UdDgQWBBTaULy9GcwFtTrcGLhEjGIcbAbA\n\
QTAfBgNVHSMEGDAWgBTaULy9GcwFtTrcGLhEjGIcbAbAQTAPBgNVHRMBAf8EBTAD\n\
AQH/MAoGCCqGSM49BAMCA0gAMEUCIQD2zwboukVB4hT1rZXpdygyyv1bSZn/meDb\n\
GKzqzjPc0QIgNR44x7Vt1iN9s26804NKS3Pmhipg7DKuztPZl+r00gk=\n\
-----END CERTIFICATE-----\n";

    #[test]
    fn starttls_is_opportunistic_by_default_and_checked() {
        let c = Config::parse("", Path::new("gw.toml")).unwrap();
        assert_eq!(c.smtp.outbound.starttls, "opportunistic");
        for mode in ["off", "required", "opportunistic"] {
            let text = format!("[smtp.outbound]\nstarttls = \"{mode}\"\n");
            let c = Config::parse(&text, Path::new("gw.toml")).unwrap();
            assert_eq!(c.smtp.outbound.starttls, mode);
        }
        let e = Config::parse(
            "[smtp.outbound]\nstarttls = \"may\"\n",
            Path::new("gw.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("[smtp.outbound] starttls = \"may\"") && e.contains("\"required\""),
            "{e}"
        );
    }

    #[test]
    fn tls_ca_file_must_be_pem_and_is_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let gw = dir.path().join("gw.toml");
        // Only with required mode.
        std::fs::write(&gw, "[smtp.outbound]\ntls_ca_file = \"ca.pem\"\n").unwrap();
        let e = Config::load(&gw).unwrap_err().to_string();
        assert!(e.contains("tls_ca_file") && e.contains("required"), "{e}");
        // Not PEM.
        let text = "[smtp.outbound]\nstarttls = \"required\"\ntls_ca_file = \"ca.pem\"\n";
        std::fs::write(&gw, text).unwrap();
        std::fs::write(dir.path().join("ca.pem"), "junk\n").unwrap();
        let e = Config::load(&gw).unwrap_err().to_string();
        assert!(e.contains("tls_ca_file") && e.contains("PEM"), "{e}");
        // A certificate: the check reads the file, trust is the handshake's business.
        std::fs::write(dir.path().join("ca.pem"), TEST_CERT).unwrap();
        let c = Config::load(&gw).unwrap();
        assert_eq!(c.smtp.outbound.tls_ca_file, Some(dir.path().join("ca.pem")));
    }

    #[test]
    fn store_path_is_relative_to_the_config_file_and_memory_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let gw = dir.path().join("gw.toml");
        std::fs::write(&gw, "[store]\npath = \"state\"\n").unwrap();
        let c = Config::load(&gw).unwrap();
        assert_eq!(c.store.folder(), dir.path().join("state"));
        std::fs::write(&gw, "[store]\npath = \":memory:\"\n").unwrap();
        assert!(Config::load(&gw).unwrap().store.in_memory());
        // No key: `iwf-state/` where the gateway runs, as without a file.
        std::fs::write(&gw, "[store]\nbusy_timeout_ms = 100\n").unwrap();
        let c = Config::load(&gw).unwrap();
        assert_eq!(c.store.folder(), Path::new("iwf-state"));
        assert_eq!(Config::default().store.folder(), Path::new("iwf-state"));
        let e = Config::parse("[store]\nfolder = \"x\"\n", &gw).unwrap_err();
        assert!(e.to_string().contains("folder"), "{e}");
    }

    #[test]
    fn typos_and_bad_values_name_file_and_key() {
        let e = Config::parse("[policy]\ntimeot_ms = 5\n", Path::new("gw.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("gw.toml") && msg.contains("timeot_ms"),
            "{msg}"
        );
        let e = Config::parse("[policy]\ntimeout_ms = 0\n", Path::new("gw.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("[policy] timeout_ms = 0") && msg.contains("1 to 10000"),
            "{msg}"
        );
    }

    #[test]
    fn a_warm_pool_may_not_take_the_slots_of_decisions() {
        let toml = "[policy]\nmax_instances = 16\nwarm_instances = 5\n";
        let msg = Config::parse(toml, Path::new("gw.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("[policy] warm_instances = 5"), "{msg}");
        let toml = "[policy]\nmax_instances = 16\nwarm_instances = 4\n";
        assert_eq!(
            Config::parse(toml, Path::new("gw.toml"))
                .unwrap()
                .policy
                .warm_instances,
            4
        );
    }
}
