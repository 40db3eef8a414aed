//! The e-mail side of `iwf demo`: the e-mail user's SMTP server (where the gateway
//! delivers the invitation and the chat mails) and the e-mail user (who reads them and
//! replies by SMTP to the gateway's inbound listener).
//!
//! Both speak real SMTP over loopback on the project's own protocol code: the server is
//! the inbound listener's SMTP dialogue (`smtp::inbound`) with a [`Delivery`] that keeps
//! what arrives; the user sends through the outgoing SMTP client (`smtp::Channel`). Only
//! the demo uses them.

use crate::config::SmtpInboundConfig;
use crate::mail::AddrSpec;
use crate::smtp::inbound::{Delivery, EnvelopeSoFar, ReceivedMail, Verdict};
use crate::smtp::{Channel, ClientSettings, Envelope, StartTls, Target, TlsPolicy};
use mail_parser::MessageParser;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What reached the e-mail user's SMTP server.
#[derive(Debug)]
pub enum ServerEvent {
    /// It refused a recipient (`--break-step smtp-refuse`).
    Refused {
        at: Instant,
        mail_from: Option<String>,
        rcpt: String,
        reply: String,
    },
    /// It took a mail (250 after the data).
    Mail { at: Instant, mail: ReceivedMail },
}

/// The e-mail user's SMTP server on a loopback port the system chose; stops when dropped.
pub struct RecipientServer {
    pub addr: SocketAddr,
    events: mpsc::UnboundedReceiver<ServerEvent>,
    _stop: oneshot::Sender<()>,
}

impl RecipientServer {
    /// Starts the server for `domain`; with `refuse` every RCPT TO gets 550 5.1.1.
    pub async fn start(domain: &str, refuse: bool) -> anyhow::Result<RecipientServer> {
        let config = SmtpInboundConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            domain: domain.to_owned(),
            ..SmtpInboundConfig::default()
        };
        let (listener, settings) = crate::smtp::inbound::bind(&config).await?;
        let addr = listener.local_addr()?;
        let (events, received) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let mailbox = Arc::new(Mailbox { refuse, events });
        tokio::spawn(crate::smtp::inbound::serve(
            listener,
            settings,
            mailbox,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(RecipientServer {
            addr,
            events: received,
            _stop: stop,
        })
    }

    /// What reached the server already, without waiting.
    pub fn ready(&mut self) -> Option<ServerEvent> {
        self.events.try_recv().ok()
    }

    /// The next thing that reached the server, or `None` when `deadline` passed first.
    pub async fn next(&mut self, deadline: tokio::time::Instant) -> Option<ServerEvent> {
        tokio::time::timeout_at(deadline, self.events.recv())
            .await
            .ok()
            .flatten()
    }
}

/// The server's [`Delivery`]: every recipient and mail taken (or refused) and reported.
struct Mailbox {
    refuse: bool,
    events: mpsc::UnboundedSender<ServerEvent>,
}

impl Delivery for Mailbox {
    async fn recipient(&self, envelope: &EnvelopeSoFar, rcpt: &str) -> Verdict {
        if !self.refuse {
            return Verdict::recipient_ok();
        }
        // RFC 5321 4.2.2 / RFC 3463 5.1.1: the mailbox does not exist, permanently.
        let verdict =
            Verdict::no_such_recipient("demo: mailbox refused (--break-step smtp-refuse)");
        let _ = self.events.send(ServerEvent::Refused {
            at: Instant::now(),
            mail_from: envelope.mail_from.clone(),
            rcpt: rcpt.to_owned(),
            reply: String::from_utf8_lossy(&verdict.to_wire())
                .trim()
                .to_owned(),
        });
        verdict
    }

    async fn deliver(&self, mail: ReceivedMail) -> Verdict {
        let at = Instant::now();
        let _ = self.events.send(ServerEvent::Mail { at, mail });
        Verdict::accepted("queued for the mailbox")
    }
}

/// A mail as the e-mail user reads it: what the ladder shows and what a reply needs.
#[derive(Debug, Clone)]
pub struct Read {
    pub subject: String,
    pub from: String,
    /// Where a reply goes: Reply-To, else From (RFC 5322 3.6.2).
    pub reply_to: String,
    pub message_id: String,
    pub in_reply_to: String,
    pub date: String,
    /// The first line of the text, for the ladder.
    pub first_line: String,
}

impl Read {
    pub fn parse(data: &[u8]) -> Result<Read, String> {
        let msg = MessageParser::default()
            .parse(data)
            .ok_or("the mail is not RFC 5322")?;
        let raw = |name: &str| msg.header_raw(name).unwrap_or("").trim().to_owned();
        let address = |a: Option<&mail_parser::Address>| {
            a.and_then(|a| a.first())
                .and_then(|a| a.address())
                .map(str::to_owned)
        };
        let reply_to = address(msg.reply_to())
            .or_else(|| address(msg.from()))
            .ok_or("the mail has neither Reply-To nor From")?;
        let text = msg.body_text(0).unwrap_or_default();
        let first_line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .chars()
            .take(72)
            .collect();
        Ok(Read {
            subject: msg.subject().unwrap_or("").to_owned(),
            from: raw("From"),
            reply_to,
            message_id: msg
                .message_id()
                .ok_or("the mail has no Message-ID")?
                .to_owned(),
            in_reply_to: raw("In-Reply-To"),
            date: raw("Date"),
            first_line,
        })
    }

    /// Its key headers for the ladder.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Subject", self.subject.clone()),
            ("From", self.from.clone()),
            ("Message-ID", format!("<{}>", self.message_id)),
            ("In-Reply-To", self.in_reply_to.clone()),
            ("Date", self.date.clone()),
            ("Text", self.first_line.clone()),
        ]
    }
}

/// A reply the e-mail user writes.
#[derive(Debug, Clone)]
pub struct Reply {
    pub to: String,
    pub message_id: String,
    pub in_reply_to: String,
    pub subject: String,
    pub text: String,
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn headers(&self, from: &str) -> Vec<(&'static str, String)> {
        vec![
            ("Subject", self.subject.clone()),
            ("From", from.to_owned()),
            ("Message-ID", format!("<{}>", self.message_id)),
            ("In-Reply-To", format!("<{}>", self.in_reply_to)),
            ("Text", self.text.clone()),
        ]
    }
}

/// The e-mail user: reads what the server got, answers through the gateway's inbound
/// SMTP listener as a mail client's submission would reach it.
#[derive(Clone)]
pub struct EmailUser {
    /// `Bob <bob@example.net>`.
    pub mailbox: String,
    address: String,
    gateway: SocketAddr,
    settings: ClientSettings,
}

impl EmailUser {
    pub fn new(name: &str, address: &str, gateway: SocketAddr, timeout: Duration) -> EmailUser {
        EmailUser {
            mailbox: format!("{name} <{address}>"),
            address: address.to_owned(),
            gateway,
            settings: ClientSettings {
                helo: address
                    .rsplit_once('@')
                    .map_or("localhost", |(_, d)| d)
                    .to_owned(),
                connect_timeout: timeout,
                command_timeout: timeout,
                data_timeout: timeout,
                tls: TlsPolicy::new(StartTls::Off, None).expect("no TLS needs no trust roots"),
            },
        }
    }

    /// A reply to `read` saying `text`, quoting its first line as mail clients do (the
    /// gateway removes the quote before the policy reads it).
    pub fn reply(&self, read: &Read, text: &str) -> Reply {
        let subject = if read.subject.to_ascii_lowercase().starts_with("re:") {
            read.subject.clone()
        } else {
            format!("Re: {}", read.subject)
        };
        let domain = self
            .address
            .rsplit_once('@')
            .map_or("localhost", |(_, d)| d);
        let message_id = format!("{}@{domain}", crate::net::sip::new_tag());
        let date = chrono::Utc::now().to_rfc2822();
        let quote = if read.first_line.is_empty() {
            String::new()
        } else {
            format!("\r\n\r\n{} wrote:\r\n> {}", read.from, read.first_line)
        };
        let bytes = format!(
            "From: {mailbox}\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: {date}\r\n\
             Message-ID: <{message_id}>\r\nIn-Reply-To: <{id}>\r\nReferences: <{id}>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             {text}{quote}\r\n",
            mailbox = self.mailbox,
            to = read.reply_to,
            id = read.message_id,
        )
        .into_bytes();
        Reply {
            to: read.reply_to.clone(),
            message_id,
            in_reply_to: read.message_id.clone(),
            subject,
            text: text.to_owned(),
            bytes,
        }
    }

    /// Sends `reply` to the gateway's inbound listener: the server's reply to the data
    /// (`Ok` for 2yz), or what refused it.
    pub async fn send(&self, reply: &Reply) -> Result<String, String> {
        let target = Target {
            host: "IWF".into(),
            addrs: vec![self.gateway],
        };
        let mut channel = Channel::open(&[target], &self.settings)
            .await
            .map_err(|e| e.to_string())?;
        let envelope = Envelope {
            from: Some(AddrSpec::parse(&self.address).map_err(|e| e.to_string())?),
            to: vec![AddrSpec::parse(&reply.to).map_err(|e| e.to_string())?],
            deliver_by: None,
        };
        let sent = channel.send(&envelope, &reply.bytes).await;
        let _ = channel.quit().await;
        match sent {
            Ok(sent) => Ok(format!("{} {}", sent.reply.code, sent.reply.text())),
            Err(failed) => Err(failed.failure.to_string()),
        }
    }
}
