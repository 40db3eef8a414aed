//! The SMTP channel to the e-mail user's server (RFC 5321; AA1/BB1/CC1/DD1): opened once
//! per session, used for every mail of it, closed with QUIT (5.2.4.2.6).
//!
//! Built on lettre's low-level `AsyncSmtpConnection`: lettre's high-level send cannot add
//! `BY=` (RFC 2852), so MAIL, RCPT and DATA are issued here, and DELIVERBY is read from the
//! EHLO reply recorded by `transcript`. Every wait is bounded (connect, command, data).
//!
//! STARTTLS (RFC 3207) per `[smtp.outbound] starttls` (`tls`): after the first EHLO the
//! client sends STARTTLS itself, swaps the stream under lettre for TLS (`layer`) and sends
//! EHLO again, taking its keywords from that reply only (RFC 3207 4.2).

use super::destination::Lease;
use super::envelope::{DeliverBy, Envelope};
use super::failure::{SmtpFailure, Stage};
use super::layer::{self, Switch};
use super::mx::Target;
use super::reply::{self, Extensions, Reply};
use super::tls::{StartTls, TlsPolicy};
use super::transcript::{self, Recorded};
use crate::config::SmtpOutboundConfig;
use lettre::Address;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset, Starttls};
use lettre::transport::smtp::extension::{ClientId, MailParameter};
use lettre::transport::smtp::response::Response;
use std::error::Error as _;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// RFC 3463 X.4.1: no answer from host; X.4.2: bad connection.
const NO_ANSWER: &str = "4.4.1";
const BAD_CONNECTION: &str = "4.4.2";
/// RFC 3463 X.7.4: security features (TLS) not supported; X.7.5: cryptographic failure
/// (the handshake or the certificate). Temporary, as Postfix defers: the server may be
/// fixed, and another MX may do.
const TLS_NOT_SUPPORTED: &str = "4.7.4";
const TLS_FAILED: &str = "4.7.5";

/// How the client greets and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// EHLO domain (`[smtp.outbound] helo`).
    pub helo: String,
    pub connect_timeout: Duration,
    /// Greeting, EHLO, MAIL, RCPT, DATA (the 354), RSET, QUIT.
    pub command_timeout: Duration,
    /// The reply to the end of the data (RFC 5321 4.5.3.2.6).
    pub data_timeout: Duration,
    /// STARTTLS (`[smtp.outbound] starttls`, `tls_ca_file`).
    pub tls: TlsPolicy,
}

impl ClientSettings {
    /// Fails only on what the configuration check lets through at load: no trust root in
    /// the system nor in `tls_ca_file` with `starttls = "required"`.
    pub fn from_config(config: &SmtpOutboundConfig) -> Result<Self, String> {
        let mode = StartTls::parse(&config.starttls)
            .ok_or_else(|| format!("starttls = {:?}: {}", config.starttls, StartTls::CHOICES))?;
        let tls = TlsPolicy::new(mode, config.tls_ca_file.as_deref())
            .map_err(|e| format!("starttls = {:?}: {e}", config.starttls))?;
        Ok(Self {
            helo: config.helo.clone(),
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            command_timeout: Duration::from_millis(config.command_timeout_ms),
            data_timeout: Duration::from_millis(config.data_timeout_ms),
            tls,
        })
    }
}

/// What the server said to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptOutcome {
    pub recipient: crate::mail::AddrSpec,
    pub result: Result<Reply, SmtpFailure>,
}

/// A mail the server accepted (for the recipients whose RCPT it accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The reply to the end of the data (250).
    pub reply: Reply,
    pub recipients: Vec<RcptOutcome>,
    /// The `BY=` that went out with MAIL FROM (asked for and advertised), raised to the
    /// server's min-by-time where it was below it.
    pub deliver_by: Option<DeliverBy>,
}

/// A mail that was not accepted: the failure that ended it and the recipients seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    pub failure: SmtpFailure,
    pub recipients: Vec<RcptOutcome>,
}

/// An open SMTP session with one server, after a successful EHLO.
pub struct Channel {
    conn: AsyncSmtpConnection,
    host: String,
    peer: SocketAddr,
    greeting: Reply,
    extensions: Extensions,
    settings: ClientSettings,
    /// TLS after STARTTLS (RFC 3207).
    encrypted: bool,
    /// The connection is lost or in an unknown state (a timeout mid-command).
    broken: bool,
    /// Its destination's connection, given back when the channel closes (none: opened
    /// without limits).
    lease: Option<Lease>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("host", &self.host)
            .field("peer", &self.peer)
            .field("encrypted", &self.encrypted)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Connects to the addresses of `targets` in order (MX preference, RFC 5321 5.1) until
    /// one greets and takes EHLO. A server that refuses the connection, does not answer,
    /// greets with 4yz/5yz or refuses EHLO is passed over for the next one, as RFC 5321
    /// 5.1 asks for temporary failures and as MTAs do for a 5yz greeting (Postfix
    /// `smtp_skip_5xx_greeting`): one bad MX must not fail a mail the others would take.
    /// When none works, the failure is that of the last server that took the connection
    /// (what it said, or its silence, tells more than a refused connection: a 554 greeting
    /// stays a `greeting` failure, 5.2.4.2.4 step 3), else `connect`; its text names every
    /// server tried.
    ///
    /// TLS (RFC 3207): where it is required, a server that does not offer STARTTLS,
    /// refuses it or fails the handshake is passed over (stage `tls`). In opportunistic
    /// mode a refused STARTTLS goes on in clear on the same connection; a failed handshake
    /// leaves the connection unusable, so the same address is tried once more without
    /// STARTTLS, as Postfix does.
    pub async fn open(targets: &[Target], settings: &ClientSettings) -> Result<Self, SmtpFailure> {
        let mut tried = Vec::new();
        let mut connected: Option<SmtpFailure> = None;
        for target in targets {
            for &addr in &target.addrs {
                let mut failure = match Self::connect(target, addr, settings, true).await {
                    Ok(channel) => return Ok(channel),
                    Err(failure) => failure,
                };
                if failure.stage == Stage::Tls && settings.tls.mode() == StartTls::Opportunistic {
                    tracing::debug!(host = %target.host, %addr, %failure, "again in clear");
                    failure = match Self::connect(target, addr, settings, false).await {
                        Ok(channel) => return Ok(channel),
                        Err(failure) => failure,
                    };
                }
                tracing::debug!(host = %target.host, %addr, %failure, "SMTP server passed over");
                tried.push(failure.text.clone());
                if failure.stage != Stage::Connect {
                    connected = Some(failure);
                }
            }
        }
        Err(match connected {
            Some(mut failure) if tried.len() > 1 => {
                failure.text = format!("no server took the session: {}", tried.join("; "));
                failure
            }
            Some(failure) => failure,
            None if tried.is_empty() => SmtpFailure::local(
                Stage::Connect,
                Some(NO_ANSWER),
                "no address to connect to",
                false,
            ),
            None => SmtpFailure::local(
                Stage::Connect,
                Some(NO_ANSWER),
                format!("no server answered: {}", tried.join("; ")),
                false,
            ),
        })
    }

    /// A TCP connection to `addr`, then `start`; `starttls` false: never STARTTLS.
    async fn connect(
        target: &Target,
        addr: SocketAddr,
        settings: &ClientSettings,
        starttls: bool,
    ) -> Result<Self, SmtpFailure> {
        match timeout(settings.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // Each command waits for its reply, and lettre writes a command and the DATA
                // terminator in separate writes: with Nagle on, the second write waits for
                // the server's delayed ACK (~40 ms on Linux).
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%addr, error = %e, "TCP_NODELAY not set");
                }
                Self::start(stream, target, addr, settings, starttls).await
            }
            Ok(Err(e)) => Err(SmtpFailure::local(
                Stage::Connect,
                Some(NO_ANSWER),
                format!("{} ({addr}): {e}", target.host),
                false,
            )),
            Err(_) => Err(SmtpFailure::local(
                Stage::Connect,
                Some(NO_ANSWER),
                format!(
                    "{} ({addr}): no connection within {} ms",
                    target.host,
                    settings.connect_timeout.as_millis()
                ),
                false,
            )),
        }
    }

    /// Greeting and EHLO on a connected stream (RFC 5321 3.1, 4.1.1.1), then STARTTLS
    /// and EHLO again when `starttls` and the mode ask for it.
    async fn start(
        stream: TcpStream,
        target: &Target,
        peer: SocketAddr,
        settings: &ClientSettings,
        starttls: bool,
    ) -> Result<Self, SmtpFailure> {
        let (stream, record) = transcript::record(stream);
        let (stream, switch) = layer::layered(stream, peer);
        let hello = ClientId::Domain(settings.helo.clone());
        let opened = timeout(
            settings.command_timeout,
            AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello),
        )
        .await;
        let opening = record.take();
        let stage = if opening.wrote {
            Stage::Ehlo
        } else {
            Stage::Greeting
        };
        let replies = reply::parse_replies(&opening.read).unwrap_or_default();
        let at = |text: String| format!("{} ({peer}): {text}", target.host);
        let conn = match opened {
            Ok(Ok(conn)) => conn,
            Err(_) => {
                let what = if opening.wrote { "EHLO" } else { "greeting" };
                let text = at(format!(
                    "no reply to {what} within {} ms",
                    settings.command_timeout.as_millis()
                ));
                return Err(SmtpFailure::local(stage, Some(NO_ANSWER), text, false));
            }
            Ok(Err(e)) => {
                // The reply as recorded (all lines, enhanced code), else lettre's account.
                let index = if opening.wrote { 1 } else { 0 };
                let mut failure = match replies.get(index).filter(|r| !r.is_positive()) {
                    Some(reply) => reply_failure(stage, reply),
                    None => lettre_failure(stage, &e),
                };
                failure.text = at(failure.text);
                return Err(failure);
            }
        };
        let (greeting, ehlo) = match replies.as_slice() {
            [greeting, ehlo, ..] => (greeting.clone(), ehlo),
            _ => {
                let text = at("greeting or EHLO reply not understood".into());
                return Err(SmtpFailure::local(stage, None, text, false));
            }
        };
        let mut channel = Self {
            conn,
            host: target.host.clone(),
            peer,
            greeting,
            extensions: Extensions::from_ehlo(ehlo),
            settings: settings.clone(),
            encrypted: false,
            broken: false,
            lease: None,
        };
        let mode = if starttls {
            settings.tls.mode()
        } else {
            StartTls::Off
        };
        if mode != StartTls::Off
            && let Err(failure) = channel.starttls(mode, &switch, &hello).await
        {
            // RFC 5321 4.1.1.10: a session the client gives up on ends with QUIT.
            if !channel.broken {
                let _ = timeout(settings.command_timeout, channel.conn.quit()).await;
            }
            return Err(failure);
        }
        tracing::debug!(
            host = %target.host,
            %peer,
            encrypted = channel.encrypted,
            extensions = ?channel.extensions,
            "SMTP channel open"
        );
        Ok(channel)
    }

    /// RFC 3207 4: STARTTLS when offered, the handshake, EHLO again. Required mode fails
    /// (stage `tls`) where opportunistic mode goes on in clear: not offered, refused.
    /// STARTTLS unanswered or a failed handshake fails in both modes (stage `tls`): the
    /// connection is unusable.
    async fn starttls(
        &mut self,
        mode: StartTls,
        switch: &Switch<Recorded<TcpStream>>,
        hello: &ClientId,
    ) -> Result<(), SmtpFailure> {
        let required = mode == StartTls::Required;
        let t = self.settings.command_timeout;
        let (host, peer) = (self.host.clone(), self.peer);
        let at = |text: &str| format!("{host} ({peer}): {text}");
        let tls_failure =
            |enhanced, text: String| SmtpFailure::local(Stage::Tls, Some(enhanced), text, false);
        if !self.extensions.has("STARTTLS") {
            if required {
                let text = at("TLS is required, but STARTTLS was not offered");
                return Err(tls_failure(TLS_NOT_SUPPORTED, text));
            }
            return Ok(());
        }
        switch.by_line();
        let r = timeout(t, self.conn.command(Starttls)).await;
        match self.judge(Stage::Tls, r, t) {
            Ok(_) => {}
            // A reply other than 220 (454: "TLS not available due to temporary reason"):
            // the session goes on in clear if allowed (RFC 3207 4). Always temporary: the
            // next attempt may find TLS working.
            Err(mut failure) if !self.broken => {
                if !required {
                    tracing::debug!(host = %self.host, peer = %self.peer, %failure,
                        "STARTTLS refused, going on in clear");
                    return Ok(());
                }
                let said = failure.text.strip_prefix(&at("")).unwrap_or(&failure.text);
                failure.text = at(&format!(
                    "TLS is required, but STARTTLS was refused: {said}"
                ));
                failure.permanent = false;
                failure
                    .enhanced_code
                    .get_or_insert_with(|| TLS_NOT_SUPPORTED.into());
                return Err(failure);
            }
            Err(failure) => return Err(failure),
        }
        // RFC 3207 4.2: the server now awaits the TLS handshake, nothing else; until it
        // succeeds the connection is of no use.
        self.broken = true;
        let plain = switch
            .take_plain()
            .map_err(|e| tls_failure(TLS_FAILED, at(e)))?;
        let tls = match timeout(t, self.settings.tls.handshake(&self.host, plain)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return Err(tls_failure(TLS_FAILED, at(&format!("TLS handshake: {e}")))),
            Err(_) => {
                let text = at(&format!("no TLS handshake within {} ms", t.as_millis()));
                return Err(tls_failure(TLS_FAILED, text));
            }
        };
        switch.put_tls(tls);
        self.broken = false;
        self.encrypted = switch.is_tls();
        // RFC 3207 4.2: forget what the first EHLO said; this reply alone counts.
        let r = timeout(t, self.conn.command(Ehlo::new(hello.clone()))).await;
        let ehlo = self.judge(Stage::Ehlo, r, t)?;
        self.extensions = Extensions::from_ehlo(&ehlo);
        Ok(())
    }

    /// The host name this channel was opened to (MX exchange, domain or smart host).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// True when the session runs over TLS (STARTTLS succeeded).
    pub fn encrypted(&self) -> bool {
        self.encrypted
    }

    /// The EHLO keywords of the server (after STARTTLS: those of the second EHLO).
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The channel holding `lease`, its destination's connection.
    pub fn leased(mut self, lease: Lease) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Keeps the channel open for the session's next mail, within the limits of kept
    /// channels (see [`Lease::keep`]); `false`: QUIT it. A channel opened without limits
    /// is always kept.
    pub fn keep(&mut self) -> bool {
        self.lease.as_mut().is_none_or(Lease::keep)
    }

    /// False once the connection is lost or a reply timed out: open a new channel.
    pub fn is_open(&self) -> bool {
        !self.broken
    }

    /// One mail transaction (RFC 5321 3.3): MAIL FROM (with `BY=` when the envelope asks
    /// for it and the server advertised DELIVERBY, AA1 BY row), RCPT TO for each
    /// recipient, then DATA to those accepted. The channel stays open for the next mail;
    /// a transaction that fails on a reply is reset (RSET) so the next one starts clean.
    pub async fn send(&mut self, envelope: &Envelope, message: &[u8]) -> Result<Sent, SendFailure> {
        let fail = |failure, recipients| {
            Err(SendFailure {
                failure,
                recipients,
            })
        };
        if self.broken {
            let text = format!("the channel to {} ({}) is closed", self.host, self.peer);
            return fail(
                SmtpFailure::local(Stage::Connect, Some(BAD_CONNECTION), text, false),
                Vec::new(),
            );
        }
        if envelope.to.is_empty() {
            let failure =
                SmtpFailure::local(Stage::RcptTo, Some("5.5.1"), "no recipient given", true);
            return fail(failure, Vec::new());
        }
        let mut params = Vec::new();
        let deliver_by = match (envelope.deliver_by, self.extensions.deliver_by()) {
            (Some(asked), Some(offer)) => {
                let by = asked.for_server(offer.min_by_time);
                if by != asked {
                    tracing::info!(
                        server = %self.host,
                        asked = asked.seconds(),
                        sent = by.seconds(),
                        "BY= raised to the server's DELIVERBY minimum (RFC 2852 4.1)"
                    );
                }
                params.push(MailParameter::Other {
                    keyword: "BY".into(),
                    value: Some(by.value()),
                });
                Some(by)
            }
            _ => None,
        };
        let from = envelope.from.as_ref().map(address);
        let t = self.settings.command_timeout;
        let r = timeout(t, self.conn.command(Mail::new(from, params))).await;
        if let Err(failure) = self.judge(Stage::MailFrom, r, t) {
            self.reset().await;
            return fail(failure, Vec::new());
        }
        let mut recipients = Vec::new();
        for rcpt in &envelope.to {
            let r = timeout(t, self.conn.command(Rcpt::new(address(rcpt), Vec::new()))).await;
            let result = self.judge(Stage::RcptTo, r, t);
            recipients.push(RcptOutcome {
                recipient: rcpt.clone(),
                result,
            });
            if self.broken {
                let failure = recipients.last().and_then(|o| o.result.clone().err());
                return fail(failure.expect("a broken channel failed"), recipients);
            }
        }
        if !recipients.iter().any(|o| o.result.is_ok()) {
            self.reset().await;
            let failure = recipients.iter().find_map(|o| o.result.clone().err());
            return fail(failure.expect("every recipient failed"), recipients);
        }
        let r = timeout(t, self.conn.command(Data)).await;
        if let Err(failure) = self.judge(Stage::Data, r, t) {
            self.reset().await;
            return fail(failure, recipients);
        }
        // RFC 5321 4.1.1.4: the CRLF that ends the last line is the first CRLF of
        // <CRLF>.<CRLF>, which lettre writes whole; leaving it in would add an empty line.
        let data = message.strip_suffix(b"\r\n").unwrap_or(message);
        let d = self.settings.data_timeout;
        let r = timeout(d, self.conn.message(data)).await;
        match self.judge(Stage::Data, r, d) {
            Ok(reply) => Ok(Sent {
                reply,
                recipients,
                deliver_by,
            }),
            Err(failure) => fail(failure, recipients),
        }
    }

    /// QUIT (RFC 5321 4.1.1.10) and close. QUIT has no stage of its own: a failure here
    /// comes back at stage `connect`, for the log only.
    pub async fn quit(mut self) -> Result<Reply, SmtpFailure> {
        if self.broken {
            let text = format!("the channel to {} ({}) is closed", self.host, self.peer);
            return Err(SmtpFailure::local(
                Stage::Connect,
                Some(BAD_CONNECTION),
                text,
                false,
            ));
        }
        let t = self.settings.command_timeout;
        let r = timeout(t, self.conn.quit()).await;
        self.judge(Stage::Connect, r, t)
    }

    /// RSET after a failed transaction, so the channel serves the next mail.
    async fn reset(&mut self) {
        if self.broken {
            return;
        }
        let t = self.settings.command_timeout;
        let r = timeout(t, self.conn.command(Rset)).await;
        let _ = self.judge(Stage::MailFrom, r, t);
    }

    /// A reply (or its absence) as the outcome of `stage`; marks the channel broken when
    /// the connection can no longer be trusted (no reply in time, I/O error, garbage).
    fn judge(
        &mut self,
        stage: Stage,
        result: Result<
            Result<Response, lettre::transport::smtp::Error>,
            tokio::time::error::Elapsed,
        >,
        waited: Duration,
    ) -> Result<Reply, SmtpFailure> {
        let at = |text: String| format!("{} ({}): {text}", self.host, self.peer);
        match result {
            Ok(Ok(response)) => Ok(from_response(&response)),
            Ok(Err(e)) if e.status().is_some() => {
                let mut failure = lettre_failure(stage, &e);
                failure.text = at(failure.text);
                Err(failure)
            }
            Ok(Err(e)) => {
                self.broken = true;
                let mut failure = lettre_failure(stage, &e);
                failure.text = at(failure.text);
                failure.enhanced_code = Some(BAD_CONNECTION.into());
                Err(failure)
            }
            Err(_) => {
                self.broken = true;
                let text = at(format!("no reply within {} ms", waited.as_millis()));
                Err(SmtpFailure::local(stage, Some(NO_ANSWER), text, false))
            }
        }
    }
}

/// An addr-spec already checked by `AddrSpec::parse` (ASCII, no controls, no `<>`), so it
/// is safe in `MAIL FROM:<..>` / `RCPT TO:<..>`; lettre's own check refuses some valid
/// ones (quoted local parts).
fn address(addr: &crate::mail::AddrSpec) -> Address {
    Address::new_dangerous(addr.local_part(), addr.domain())
}

fn from_response(response: &Response) -> Reply {
    Reply {
        code: code_number(response.code()),
        lines: response.message().map(str::to_owned).collect(),
    }
}

fn code_number(code: lettre::transport::smtp::response::Code) -> u16 {
    code.to_string().parse().unwrap_or(0)
}

/// A negative reply as a failure of `stage` (RFC 5321 4.2.1: 5yz permanent).
fn reply_failure(stage: Stage, reply: &Reply) -> SmtpFailure {
    SmtpFailure {
        stage,
        code: reply.code,
        enhanced_code: reply.enhanced_code(),
        text: reply.text(),
        permanent: reply.is_permanent(),
    }
}

/// A lettre error as a failure of `stage`: a negative reply keeps its code and text;
/// anything else (I/O, unparsable reply) is code 0, temporary.
fn lettre_failure(stage: Stage, e: &lettre::transport::smtp::Error) -> SmtpFailure {
    match e.status() {
        Some(code) => {
            let text = e.source().map(|s| s.to_string()).unwrap_or_default();
            reply_failure(
                stage,
                &Reply {
                    code: code_number(code),
                    lines: vec![text],
                },
            )
        }
        None => SmtpFailure::local(stage, None, e.to_string(), false),
    }
}
