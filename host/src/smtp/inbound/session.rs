//! One inbound SMTP connection as a state machine without I/O (RFC 5321 server side, with
//! SIZE RFC 1869, 8BITMIME RFC 6152, PIPELINING RFC 2920, ENHANCEDSTATUSCODES RFC 2034).
//!
//! The driver feeds what it read ([`Session::receive`]), asks what to do next
//! ([`Session::poll`]), sends [`Session::take_output`] before it waits on anything, and
//! hands back the gateway's answers ([`Session::answer`]) and timeouts
//! ([`Session::timed_out`]). Commands are parsed by `smtp-proto`; the message data is
//! unstuffed by its `DataReceiver`. Every buffer is bounded: a command line by
//! [`MAX_COMMAND_LINE`], the message by `max_message_bytes` (plus one read), and input is
//! only taken when the session asked for it.
//!
//! Message data: only `<CRLF>.<CRLF>` ends it (RFC 5321 4.1.1.4), so a bare LF before a
//! dot cannot end a mail early (SMTP smuggling); bare LFs and text lines over 1000 octets
//! (RFC 5321 4.5.3.1.6) are passed on as sent, bounded by the size limit; the mail parser
//! downstream reads them leniently.

use super::trace::received_header;
use super::verdict::{Verdict, reply};
use super::{EnvelopeSoFar, InboundSettings, ReceivedMail};
use chrono::{DateTime, Utc};
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use smtp_proto::{Error as ParseError, MailFrom, RcptTo, Request};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Longest command line taken, CRLF included. RFC 5321 4.5.3.1.4 sets 512 octets and lets
/// extensions (SIZE=, BODY=) add to it; a longer line gets 500 5.5.2 and is skipped.
pub const MAX_COMMAND_LINE: usize = 1024;

/// Bad commands in a row before the server gives up on the client (421 4.7.0).
const MAX_ERRORS: u32 = 20;

/// What the driver does next. Before any of them it sends [`Session::take_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read more (all input so far is used), waiting at most `timeout` counted as
    /// `since` says, then [`Session::receive`] it or call [`Session::timed_out`].
    Read { timeout: Duration, since: Since },
    /// Ask the gateway about this recipient, then [`Session::answer`].
    Recipient {
        envelope: EnvelopeSoFar,
        rcpt: String,
    },
    /// Hand the mail to the gateway, then [`Session::answer`] with its verdict; wait at
    /// most `timeout` (then answer [`Verdict::try_later`]).
    Deliver {
        mail: ReceivedMail,
        timeout: Duration,
    },
    /// Close the connection (after QUIT or a 421).
    Close,
}

/// Where a read's timeout counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// From the last reply sent (or the greeting): the whole next command must come
    /// within it (RFC 5321 4.5.3.2.7), however slowly its bytes trickle in.
    LastReply,
    /// From now: each piece of the message must come within it (RFC 5321 4.5.3.2.5,
    /// per data block); the size limit bounds the whole.
    Now,
}

/// The transaction between MAIL and the end of the data (RFC 5321 3.3).
#[derive(Debug, Clone)]
struct Transaction {
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

/// The message being received.
enum Data {
    Keeping(DataReceiver, Vec<u8>),
    /// Over the size limit: read to the end, keep nothing, then 552 (RFC 1869 6.3).
    Discarding(DummyDataReceiver),
}

enum State {
    /// Waiting for a command (`skipping`: inside a command line over the limit).
    Command { skipping: bool },
    /// The gateway is asked about `rcpt`.
    AwaitRecipient { rcpt: String },
    /// After 354, until `<CRLF>.<CRLF>`.
    Data(Data),
    /// The gateway has the mail.
    AwaitDelivery,
    /// Send what is queued, then close.
    Closing,
}

/// One connection, from the greeting to the close.
pub struct Session {
    settings: Arc<InboundSettings>,
    peer: SocketAddr,
    state: State,
    /// `(argument, was EHLO)` once the client said hello.
    helo: Option<(String, bool)>,
    transaction: Option<Transaction>,
    input: Vec<u8>,
    output: Vec<u8>,
    errors: u32,
}

impl Session {
    /// A new connection: the 220 greeting is queued (RFC 5321 4.3.1).
    pub fn new(settings: Arc<InboundSettings>, peer: SocketAddr) -> Self {
        let greeting = reply(220, None, &[&format!("{} ESMTP cpm-iwf", settings.domain)]);
        Self {
            settings,
            peer,
            state: State::Command { skipping: false },
            helo: None,
            transaction: None,
            input: Vec::new(),
            output: greeting,
            errors: 0,
        }
    }

    /// The greeting for a connection over `max_connections` (RFC 5321 3.1: 421, then
    /// close without reading).
    pub fn busy_greeting(settings: &InboundSettings) -> Vec<u8> {
        reply(
            421,
            Some("4.3.2"),
            &[&format!(
                "{} Too many connections, try again later",
                settings.domain
            )],
        )
    }

    /// The greeting of a connection that comes while the gateway drains (RFC 5321 3.8).
    pub fn draining_greeting(settings: &InboundSettings) -> Vec<u8> {
        let text = format!("{} Service shutting down, try again later", settings.domain);
        reply(421, Some("4.3.2"), &[&text])
    }

    /// What was read from the client. Call only after [`Step::Read`].
    pub fn receive(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// The replies queued so far (RFC 2920: sent before the server waits on anything).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// No input within the timeout of [`Step::Read`]: 421 4.4.2 and close (RFC 5321
    /// 4.5.3.2, 3.8).
    pub fn timed_out(&mut self) {
        let what = match self.state {
            State::Data(_) => "message data",
            _ => "command",
        };
        tracing::info!(peer = %self.peer, "SMTP inbound: timeout waiting for {what}, closing");
        self.close_with(
            421,
            "4.4.2",
            &format!(
                "{} Timeout waiting for {what}, closing",
                self.settings.domain
            ),
        );
    }

    /// The gateway is stopping: 421 4.3.2 and close (RFC 5321 3.8). A mail not yet
    /// answered is not taken; the client keeps it and retries (a 4yz).
    pub fn shutting_down(&mut self) {
        tracing::info!(peer = %self.peer, "SMTP inbound: shutting down, closing");
        let text = format!("{} Service shutting down, closing", self.settings.domain);
        self.close_with(421, "4.3.2", &text);
    }

    /// The gateway's verdict on the recipient or the mail of the last [`Step`].
    pub fn answer(&mut self, verdict: Verdict) {
        match std::mem::replace(&mut self.state, State::Command { skipping: false }) {
            State::AwaitRecipient { rcpt } => {
                let tx = self.transaction.as_mut();
                tracing::info!(peer = %self.peer, %rcpt, verdict = %verdict, "SMTP inbound: RCPT");
                if verdict.is_positive()
                    && let Some(tx) = tx
                {
                    tx.rcpt_to.push(rcpt);
                }
                self.output.extend(verdict.to_wire());
            }
            State::AwaitDelivery => {
                let tx = self.transaction.take();
                tracing::info!(
                    peer = %self.peer,
                    from = tx.as_ref().and_then(|t| t.mail_from.as_deref()).unwrap_or("<>"),
                    rcpt = ?tx.as_ref().map(|t| &t.rcpt_to),
                    verdict = %verdict,
                    "SMTP inbound: mail"
                );
                self.output.extend(verdict.to_wire());
            }
            other => {
                // A driver bug: keep the state, say nothing to the client.
                tracing::error!(peer = %self.peer, "SMTP inbound: answer without a question");
                self.state = other;
            }
        }
    }

    /// Runs the protocol on the input received so far: queues replies and says what the
    /// driver does next. Commands pipelined in one read are answered in order.
    pub fn poll(&mut self, now: DateTime<Utc>) -> Step {
        loop {
            match &mut self.state {
                State::Closing => return Step::Close,
                State::AwaitRecipient { .. } | State::AwaitDelivery => {
                    // A driver bug (poll before answer): do not run ahead of the gateway.
                    tracing::error!(peer = %self.peer, "SMTP inbound: poll while the gateway decides");
                    return Step::Read {
                        timeout: self.settings.command_timeout,
                        since: Since::LastReply,
                    };
                }
                State::Data(_) => {
                    if let Some(step) = self.data(now) {
                        return step;
                    }
                }
                State::Command { skipping } => {
                    let skipping = *skipping;
                    if let Some(step) = self.command(skipping) {
                        return step;
                    }
                }
            }
        }
    }

    /// One command line from the input, if there is a whole one. `None`: go on.
    fn command(&mut self, skipping: bool) -> Option<Step> {
        let read = Step::Read {
            timeout: self.settings.command_timeout,
            since: Since::LastReply,
        };
        let Some(lf) = self.input.iter().position(|&b| b == b'\n') else {
            if self.input.len() >= MAX_COMMAND_LINE {
                // RFC 5321 4.5.3.1.4: over the limit; the reply comes at its end.
                self.input.clear();
                self.state = State::Command { skipping: true };
            }
            return Some(read);
        };
        let line: Vec<u8> = self.input.drain(..=lf).collect();
        if skipping || line.len() > MAX_COMMAND_LINE {
            self.state = State::Command { skipping: false };
            self.error(500, "5.5.2", "Line too long");
            return None;
        }
        if is_postmaster_rcpt(&line) {
            return self.rcpt(RcptTo {
                address: "Postmaster".into(),
                ..RcptTo::default()
            });
        }
        // RFC 5321 2.3.8 says CRLF; a bare LF ending a command is taken too (robustness):
        // it cannot end message data, where the difference matters.
        match Request::parse(&mut line.iter()).map(Request::into_owned) {
            Ok(request) => self.request(request),
            Err(e) => self.parse_error(e),
        }
    }

    fn request(&mut self, request: Request<String>) -> Option<Step> {
        match request {
            // RFC 5321 4.1.1.1: EHLO/HELO, which also reset the transaction (4.1.4).
            Request::Ehlo { host } => {
                self.transaction = None;
                self.helo = Some((host.clone(), true));
                let s = &self.settings;
                let lines = [
                    format!("{} Hello {host}", s.domain),
                    format!("SIZE {}", s.max_message_bytes), // RFC 1869 4
                    "8BITMIME".into(),                       // RFC 6152 2
                    "PIPELINING".into(),                     // RFC 2920 3
                    "ENHANCEDSTATUSCODES".into(),            // RFC 2034 3
                ];
                let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
                self.ok(reply(250, None, &lines));
            }
            Request::Helo { host } => {
                self.transaction = None;
                self.helo = Some((host, false));
                let text = self.settings.domain.clone();
                self.ok(reply(250, None, &[&text]));
            }
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => return self.rcpt(to),
            Request::Data => return self.data_command(),
            // RFC 5321 4.1.1.5
            Request::Rset => {
                self.transaction = None;
                self.ok(reply(250, Some("2.0.0"), &["OK"]));
            }
            // RFC 5321 4.1.1.9
            Request::Noop { .. } => self.ok(reply(250, Some("2.0.0"), &["OK"])),
            // RFC 5321 3.5.3: 252 when the server will not verify but accepts mail.
            Request::Vrfy { .. } => self.ok(reply(
                252,
                Some("2.5.0"),
                &["Cannot VRFY user, but will accept message and attempt delivery"],
            )),
            // RFC 5321 4.1.1.8
            Request::Help { .. } => self.ok(reply(
                214,
                Some("2.0.0"),
                &["Commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT"],
            )),
            // RFC 5321 4.1.1.10
            Request::Quit => {
                let text = format!(
                    "{} Service closing transmission channel",
                    self.settings.domain
                );
                self.close_with(221, "2.0.0", &text);
            }
            // Recognised but not offered (RFC 5321 4.2.4: 502), e.g. EXPN (3.5.2 allows
            // refusing it), BDAT without CHUNKING, STARTTLS, AUTH.
            other => {
                let text = format!("{} not implemented", other.name());
                self.error(502, "5.5.1", &text);
            }
        }
        None
    }

    /// RFC 5321 4.1.1.2 MAIL FROM, with SIZE (RFC 1869) and BODY (RFC 6152).
    fn mail(&mut self, from: MailFrom<String>) {
        if self.helo.is_none() {
            return self.error(503, "5.5.1", "Send EHLO or HELO first");
        }
        if self.transaction.is_some() {
            return self.error(503, "5.5.1", "Nested MAIL command");
        }
        if let Some(param) = unsupported_mail_parameter(&from) {
            // RFC 5321 4.1.1.11: a parameter not offered.
            return self.error(555, "5.5.4", &format!("{param} parameter not supported"));
        }
        if from.size > self.settings.max_message_bytes {
            // RFC 1869 6.1: the declared size is over the fixed maximum.
            return self.error(
                552,
                "5.3.4",
                &format!(
                    "Message size exceeds fixed maximum message size ({} octets)",
                    self.settings.max_message_bytes
                ),
            );
        }
        // RFC 5321 4.5.5: the null reverse-path `<>` is how bounces come.
        let mail_from = Some(from.address).filter(|a| !a.is_empty());
        self.transaction = Some(Transaction {
            mail_from,
            rcpt_to: Vec::new(),
        });
        self.ok(reply(250, Some("2.1.0"), &["Sender OK"]));
    }

    /// RFC 5321 4.1.1.3 RCPT TO: the gateway decides.
    fn rcpt(&mut self, to: RcptTo<String>) -> Option<Step> {
        let Some(tx) = &self.transaction else {
            self.error(503, "5.5.1", "Need MAIL before RCPT");
            return None;
        };
        if to.flags != 0 || to.orcpt.is_some() || to.rrvs != 0 {
            self.error(555, "5.5.4", "RCPT parameters not supported");
            return None;
        }
        if to.address.is_empty() {
            self.error(501, "5.1.3", "Bad recipient address syntax");
            return None;
        }
        if tx.rcpt_to.len() >= self.settings.max_recipients {
            // RFC 5321 4.5.3.1.10: 452 for too many recipients; the client sends the
            // rest in another transaction.
            self.error(452, "4.5.3", "Too many recipients");
            return None;
        }
        self.errors = 0;
        let envelope = EnvelopeSoFar {
            peer: self.peer,
            helo: self.helo_name(),
            mail_from: tx.mail_from.clone(),
            rcpt_to: tx.rcpt_to.clone(),
        };
        self.state = State::AwaitRecipient {
            rcpt: to.address.clone(),
        };
        Some(Step::Recipient {
            envelope,
            rcpt: to.address,
        })
    }

    /// RFC 5321 4.1.1.4 DATA.
    fn data_command(&mut self) -> Option<Step> {
        match &self.transaction {
            None => self.error(503, "5.5.1", "Need MAIL command"),
            // RFC 5321 3.3: no accepted recipient: 554 (or 503).
            Some(tx) if tx.rcpt_to.is_empty() => self.error(554, "5.5.1", "No valid recipients"),
            Some(_) => {
                self.ok(reply(
                    354,
                    None,
                    &["Start mail input; end with <CRLF>.<CRLF>"],
                ));
                // The DATA line ended with CRLF: the data starts at a line start, where a
                // `.` is stuffing or the end (RFC 5321 4.5.2).
                let mut receiver = DataReceiver::new();
                receiver.ingest(&mut b"\r\n".iter(), &mut Vec::new());
                self.state = State::Data(Data::Keeping(receiver, Vec::new()));
            }
        }
        None
    }

    /// Message data from the input. `Some(step)`: what the driver does; `None`: go on.
    fn data(&mut self, now: DateTime<Utc>) -> Option<Step> {
        let State::Data(data) = &mut self.state else {
            return None;
        };
        let mut bytes = self.input.iter();
        // RFC 5321 4.1.1.4: only <CRLF>.<CRLF> ends the data; a bare LF before the dot
        // does not (no SMTP smuggling).
        let done = match data {
            Data::Keeping(receiver, buf) => {
                let done = receiver.ingest(&mut bytes, buf);
                if !done && buf.len() > self.settings.max_message_bytes {
                    *data = Data::Discarding(DummyDataReceiver::new_data(receiver));
                }
                done
            }
            Data::Discarding(receiver) => receiver.ingest(&mut bytes),
        };
        let used = self.input.len() - bytes.as_slice().len();
        self.input.drain(..used);
        if !done {
            return Some(Step::Read {
                timeout: self.settings.data_timeout,
                since: Since::Now,
            });
        }
        let State::Data(data) =
            std::mem::replace(&mut self.state, State::Command { skipping: false })
        else {
            return None;
        };
        let message = match data {
            Data::Keeping(_, buf) if buf.len() <= self.settings.max_message_bytes => buf,
            _ => {
                // RFC 1869 6.3 / RFC 5321 4.5.3.1.10: read to the end, then 552.
                let tx = self.transaction.take();
                tracing::info!(
                    peer = %self.peer,
                    from = tx.as_ref().and_then(|t| t.mail_from.as_deref()).unwrap_or("<>"),
                    limit = self.settings.max_message_bytes,
                    "SMTP inbound: message over the size limit refused"
                );
                self.error(
                    552,
                    "5.3.4",
                    "Message size exceeds fixed maximum message size",
                );
                return None;
            }
        };
        let Some(tx) = self.transaction.clone() else {
            return None; // not reachable: DATA needs a transaction
        };
        let (helo, esmtp) = self.helo.clone().unwrap_or_default();
        let mut data = received_header(
            &helo,
            esmtp,
            self.peer,
            &self.settings.domain,
            &tx.rcpt_to,
            now,
        )
        .into_bytes();
        data.extend_from_slice(&message);
        self.state = State::AwaitDelivery;
        Some(Step::Deliver {
            mail: ReceivedMail {
                peer: self.peer,
                helo,
                mail_from: tx.mail_from,
                rcpt_to: tx.rcpt_to,
                data,
            },
            timeout: self.settings.data_timeout,
        })
    }

    fn parse_error(&mut self, error: ParseError) -> Option<Step> {
        match error {
            // RFC 5321 4.2.4: 500 for a command not recognised.
            ParseError::UnknownCommand => self.error(500, "5.5.1", "Command unrecognized"),
            ParseError::InvalidSenderAddress => {
                self.error(501, "5.1.7", "Bad sender address syntax")
            }
            ParseError::InvalidRecipientAddress => {
                self.error(501, "5.1.3", "Bad recipient address syntax")
            }
            ParseError::SyntaxError { syntax } => {
                self.error(501, "5.5.4", &format!("Syntax: {syntax}"))
            }
            ParseError::InvalidParameter { param } => {
                self.error(501, "5.5.4", &format!("Invalid {param} parameter"))
            }
            // RFC 5321 4.1.1.11: 555 for an unknown MAIL/RCPT parameter.
            ParseError::UnsupportedParameter { param } => {
                let param: String = param.chars().take(64).collect();
                self.error(555, "5.5.4", &format!("{param} parameter not supported"))
            }
            ParseError::ResponseTooLong => self.error(500, "5.5.2", "Line too long"),
            ParseError::NeedsMoreData { .. } | ParseError::InvalidResponse { .. } => {
                self.error(500, "5.5.2", "Syntax error")
            }
        }
        None
    }

    fn helo_name(&self) -> String {
        self.helo
            .as_ref()
            .map(|(h, _)| h.clone())
            .unwrap_or_default()
    }

    fn ok(&mut self, reply: Vec<u8>) {
        self.errors = 0;
        self.output.extend(reply);
    }

    /// A refused command; too many in a row end the connection.
    fn error(&mut self, code: u16, enhanced: &str, text: &str) {
        tracing::debug!(peer = %self.peer, code, enhanced, text, "SMTP inbound: command refused");
        self.output.extend(reply(code, Some(enhanced), &[text]));
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            tracing::info!(peer = %self.peer, "SMTP inbound: too many errors, closing");
            self.close_with(421, "4.7.0", "Too many errors, closing");
        }
    }

    fn close_with(&mut self, code: u16, enhanced: &str, text: &str) {
        self.output.extend(reply(code, Some(enhanced), &[text]));
        self.input.clear();
        self.state = State::Closing;
    }
}

/// RFC 5321 4.5.1: `RCPT TO:<Postmaster>` (any case, no domain) must be taken; the
/// parser wants a domain, so this one form is recognised here.
fn is_postmaster_rcpt(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(rest) = line
        .get(..8)
        .filter(|head| head.eq_ignore_ascii_case(b"RCPT TO:"))
        .map(|_| &line[8..])
    else {
        return false;
    };
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    rest.eq_ignore_ascii_case(b"<postmaster>")
}

/// The first MAIL parameter this server did not offer in EHLO, if any: only SIZE and
/// BODY=7BIT/8BITMIME are (RFC 5321 4.1.1.11: others get 555).
fn unsupported_mail_parameter(from: &MailFrom<String>) -> Option<&'static str> {
    use smtp_proto::*;
    let allowed = MAIL_BODY_7BIT | MAIL_BODY_8BITMIME;
    if from.flags & MAIL_BODY_BINARYMIME != 0 {
        Some("BODY=BINARYMIME")
    } else if from.flags & MAIL_SMTPUTF8 != 0 {
        Some("SMTPUTF8")
    } else if from.flags & (MAIL_RET_FULL | MAIL_RET_HDRS) != 0 || from.env_id.is_some() {
        Some("RET/ENVID")
    } else if from.by != 0 || from.flags & (MAIL_BY_NOTIFY | MAIL_BY_RETURN | MAIL_BY_TRACE) != 0 {
        Some("BY")
    } else if from.auth.is_some() {
        Some("AUTH")
    } else if from.flags & !allowed != 0
        || from.trans_id.is_some()
        || from.solicit.is_some()
        || from.mtrk.is_some()
        || from.hold_for != 0
        || from.hold_until != 0
        || from.mt_priority != 0
    {
        Some("MAIL")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy as _;

    fn settings() -> InboundSettings {
        InboundSettings {
            domain: "iwf.test".into(),
            max_message_bytes: 100,
            max_recipients: 2,
            max_connections: 10,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T11:00:00Z")
            .unwrap()
            .to_utc()
    }

    /// A session and a scripted gateway: recipients starting with `nobody` are refused,
    /// the mail gets `deliver`.
    struct Peer {
        session: Session,
        deliver: Verdict,
        mails: Vec<ReceivedMail>,
        asked: Vec<EnvelopeSoFar>,
        closed: bool,
        last_read: Option<(Duration, Since)>,
    }

    impl Peer {
        fn new() -> Self {
            let mut session =
                Session::new(Arc::new(settings()), "192.0.2.7:40000".parse().unwrap());
            assert_eq!(session.take_output(), b"220 iwf.test ESMTP cpm-iwf\r\n");
            Self {
                session,
                deliver: Verdict::accepted("Queued"),
                mails: Vec::new(),
                asked: Vec::new(),
                closed: false,
                last_read: None,
            }
        }

        /// After EHLO.
        fn hello() -> Self {
            let mut p = Self::new();
            assert!(p.send(b"EHLO mail.example.org\r\n").starts_with("250-"));
            p
        }

        /// Feeds `input`, plays the gateway until the session wants input; the replies.
        fn send(&mut self, input: &[u8]) -> String {
            self.session.receive(input);
            let mut out = Vec::new();
            loop {
                let step = self.session.poll(now());
                out.extend(self.session.take_output());
                match step {
                    Step::Read { timeout, since } => {
                        self.last_read = Some((timeout, since));
                        break;
                    }
                    Step::Recipient { envelope, rcpt } => {
                        self.asked.push(envelope);
                        self.session.answer(if rcpt.starts_with("nobody") {
                            Verdict::no_such_recipient(format!(
                                "<{rcpt}>: no chat session for this address"
                            ))
                        } else {
                            Verdict::recipient_ok()
                        });
                    }
                    Step::Deliver { mail, .. } => {
                        self.mails.push(mail);
                        self.session.answer(self.deliver.clone());
                    }
                    Step::Close => {
                        self.closed = true;
                        break;
                    }
                }
            }
            String::from_utf8(out).unwrap()
        }

        /// The message of the only mail, without the Received header.
        fn body(&self) -> Vec<u8> {
            assert_eq!(self.mails.len(), 1);
            let data = &self.mails[0].data;
            let at = data
                .windows(6)
                .position(|w| w == b"+0000\r")
                .expect("Received header")
                + 7;
            data[at..].to_vec()
        }
    }

    #[test]
    fn ehlo_announces_size_8bitmime_pipelining_enhancedstatuscodes() {
        let mut p = Peer::new();
        assert_eq!(
            p.send(b"EHLO mail.example.org\r\n"),
            "250-iwf.test Hello mail.example.org\r\n250-SIZE 100\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"
        );
        assert_eq!(p.send(b"HELO mail.example.org\r\n"), "250 iwf.test\r\n");
    }

    #[test]
    fn plain_mail_is_delivered_with_a_received_header() {
        let mut p = Peer::hello();
        assert_eq!(
            p.send(b"MAIL FROM:<bob@example.org>\r\n"),
            "250 2.1.0 Sender OK\r\n"
        );
        assert_eq!(
            p.send(b"RCPT TO:<s1@iwf.test>\r\n"),
            "250 2.1.5 Recipient OK\r\n"
        );
        assert_eq!(
            p.send(b"DATA\r\n"),
            "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
        );
        assert_eq!(p.last_read, Some((Duration::from_secs(180), Since::Now)));
        assert_eq!(
            p.send(b"Subject: hi\r\n\r\nyes\r\n.\r\n"),
            "250 2.0.0 Queued\r\n"
        );
        assert_eq!(
            p.last_read,
            Some((Duration::from_secs(300), Since::LastReply))
        );
        let mail = &p.mails[0];
        assert_eq!(mail.mail_from.as_deref(), Some("bob@example.org"));
        assert_eq!(mail.rcpt_to, ["s1@iwf.test"]);
        assert_eq!(mail.helo, "mail.example.org");
        assert!(mail.data.starts_with(b"Received: from mail.example.org ([192.0.2.7])\r\n\tby iwf.test with ESMTP\r\n\tfor <s1@iwf.test>;\r\n\tThu, 26 Nov 2026 11:00:00 +0000\r\n"));
        assert_eq!(p.body(), b"Subject: hi\r\n\r\nyes\r\n");
        // The transaction is over: a new one may start.
        assert_eq!(
            p.send(b"MAIL FROM:<bob@example.org>\r\n"),
            "250 2.1.0 Sender OK\r\n"
        );
    }

    #[test]
    fn null_sender_is_a_bounce_with_no_reverse_path() {
        let mut p = Peer::hello();
        p.send(b"MAIL FROM:<>\r\nRCPT TO:<s1@iwf.test>\r\nDATA\r\nx\r\n.\r\n");
        assert_eq!(p.mails[0].mail_from, None);
        assert_eq!(p.asked[0].mail_from, None);
    }

    #[test]
    fn refused_recipient_gets_the_gateways_text_and_no_data() {
        let mut p = Peer::hello();
        p.send(b"MAIL FROM:<bob@example.org>\r\n");
        assert_eq!(
            p.send(b"RCPT TO:<nobody@iwf.test>\r\n"),
            "550 5.1.1 <nobody@iwf.test>: no chat session for this address\r\n"
        );
        assert_eq!(p.send(b"DATA\r\n"), "554 5.5.1 No valid recipients\r\n");
        assert!(p.mails.is_empty());
    }

    #[test]
    fn delivery_refusal_is_the_reply_to_the_dot() {
        let mut p = Peer::hello();
        p.deliver = Verdict::not_authorized("sender is not the invited user");
        let out =
            p.send(b"MAIL FROM:<eve@example.org>\r\nRCPT TO:<s1@iwf.test>\r\nDATA\r\nx\r\n.\r\n");
        assert!(out.ends_with("354 Start mail input; end with <CRLF>.<CRLF>\r\n550 5.7.1 sender is not the invited user\r\n"), "{out}");
    }

    #[test]
    fn too_many_recipients_is_452_and_the_gateway_sees_those_accepted() {
        let mut p = Peer::hello();
        let out = p.send(b"MAIL FROM:<b@x>\r\nRCPT TO:<a@iwf.test>\r\nRCPT TO:<b@iwf.test>\r\nRCPT TO:<c@iwf.test>\r\n");
        assert!(
            out.ends_with("250 2.1.5 Recipient OK\r\n452 4.5.3 Too many recipients\r\n"),
            "{out}"
        );
        assert_eq!(p.asked.len(), 2);
        assert_eq!(p.asked[1].rcpt_to, ["a@iwf.test"]);
    }

    #[test]
    fn pipelined_commands_are_answered_in_order_in_one_batch() {
        let mut p = Peer::hello();
        let out = p.send(
            b"MAIL FROM:<bob@example.org> BODY=8BITMIME SIZE=50\r\nRCPT TO:<nobody@iwf.test>\r\nRCPT TO:<s1@iwf.test>\r\nDATA\r\n..leading dot\r\n\xc3\xa9\r\n.\r\nQUIT\r\n",
        );
        assert_eq!(
            out,
            "250 2.1.0 Sender OK\r\n\
             550 5.1.1 <nobody@iwf.test>: no chat session for this address\r\n\
             250 2.1.5 Recipient OK\r\n\
             354 Start mail input; end with <CRLF>.<CRLF>\r\n\
             250 2.0.0 Queued\r\n\
             221 2.0.0 iwf.test Service closing transmission channel\r\n"
        );
        assert_eq!(p.body(), b".leading dot\r\n\xc3\xa9\r\n");
        assert_eq!(p.mails[0].rcpt_to, ["s1@iwf.test"]);
        assert!(p.closed);
    }

    #[test]
    fn a_conversation_split_at_any_byte_gives_the_same_replies_and_mail() {
        let input: &[u8] = b"EHLO c\r\nMAIL FROM:<b@x>\r\nRCPT TO:<s@iwf.test>\r\nDATA\r\n.a\r\n..\r\n\r\n.\r\nQUIT\r\n";
        let mut whole = Peer::new();
        let expected = whole.send(input);
        for cut in 0..input.len() {
            let mut p = Peer::new();
            let out = p.send(&input[..cut]) + &p.send(&input[cut..]);
            assert_eq!(out, expected, "cut {cut}");
            assert_eq!(p.mails, whole.mails, "cut {cut}");
        }
        assert_eq!(whole.body(), b"a\r\n.\r\n\r\n");
    }

    #[test]
    fn empty_message_and_bare_lf_dot_does_not_end_the_data() {
        let mut p = Peer::hello();
        p.send(b"MAIL FROM:<b@x>\r\nRCPT TO:<s@iwf.test>\r\nDATA\r\n.\r\n");
        assert_eq!(p.body(), b"");
        let mut p = Peer::hello();
        // RFC 5321 4.1.1.4: only CRLF.CRLF ends it (SMTP smuggling uses LF.LF / LF.CRLF).
        let out =
            p.send(b"MAIL FROM:<b@x>\r\nRCPT TO:<s@iwf.test>\r\nDATA\r\na\n.\nMAIL FROM:<e@x>\r\n");
        assert!(
            out.ends_with("354 Start mail input; end with <CRLF>.<CRLF>\r\n"),
            "{out}"
        );
        assert!(p.mails.is_empty());
        assert_eq!(p.send(b"\r\n.\r\n"), "250 2.0.0 Queued\r\n");
        assert_eq!(p.body(), b"a\n.\nMAIL FROM:<e@x>\r\n\r\n");
    }

    #[test]
    fn size_over_the_limit_declared_or_sent_is_552() {
        let mut p = Peer::hello();
        assert_eq!(
            p.send(b"MAIL FROM:<b@x> SIZE=101\r\n"),
            "552 5.3.4 Message size exceeds fixed maximum message size (100 octets)\r\n"
        );
        p.send(b"MAIL FROM:<b@x> SIZE=100\r\nRCPT TO:<s@iwf.test>\r\nDATA\r\n");
        // Sent in pieces: the server reads to the end, keeps at most a piece over the limit.
        for _ in 0..50 {
            assert_eq!(p.send(&[b'x'; 60]), "");
            assert_eq!(p.send(b"\r\n"), "");
        }
        assert_eq!(
            p.send(b".\r\n"),
            "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
        );
        assert!(p.mails.is_empty());
        // The transaction is gone; the connection goes on.
        assert_eq!(p.send(b"DATA\r\n"), "503 5.5.1 Need MAIL command\r\n");
        assert_eq!(p.send(b"NOOP\r\n"), "250 2.0.0 OK\r\n");
    }

    #[test]
    fn mail_parameters_not_offered_are_555() {
        let mut p = Peer::hello();
        for cmd in [
            &b"MAIL FROM:<b@x> RET=FULL\r\n"[..],
            b"MAIL FROM:<b@x> BY=120;R\r\n",
            b"MAIL FROM:<b@x> SMTPUTF8\r\n",
            b"MAIL FROM:<b@x> BODY=BINARYMIME\r\n",
            b"MAIL FROM:<b@x> FOO=bar\r\n",
        ] {
            let out = p.send(cmd);
            assert!(out.starts_with("555 5.5.4 "), "{out}");
        }
        assert!(
            p.send(b"MAIL FROM:<b@x> BODY=7BIT\r\nRCPT TO:<s@iwf.test> NOTIFY=NEVER\r\n")
                .ends_with("555 5.5.4 RCPT parameters not supported\r\n")
        );
    }

    #[test]
    fn postmaster_and_lenient_spacing_reach_the_gateway() {
        let mut p = Peer::hello();
        // RFC 5321 4.5.1: `<Postmaster>` without a domain must be accepted as a recipient.
        let out = p.send(b"MAIL FROM: <b@x>\r\nRCPT TO:<Postmaster>\r\nrcpt to: <POSTMASTER>\n");
        assert_eq!(
            out,
            "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n250 2.1.5 Recipient OK\r\n"
        );
        assert_eq!(
            p.session.transaction.as_ref().unwrap().rcpt_to,
            ["Postmaster", "Postmaster"]
        );
        let out = p.send(b"RCPT TO:<Postmaster> X=1\r\n");
        assert!(out.starts_with("555 5.5.4 X=1"), "{out}");
    }

    #[test]
    fn sequence_errors_are_503() {
        let mut p = Peer::new();
        assert_eq!(
            p.send(b"MAIL FROM:<b@x>\r\n"),
            "503 5.5.1 Send EHLO or HELO first\r\n"
        );
        p.send(b"HELO c\r\n");
        assert_eq!(
            p.send(b"RCPT TO:<s@iwf.test>\r\n"),
            "503 5.5.1 Need MAIL before RCPT\r\n"
        );
        assert_eq!(p.send(b"DATA\r\n"), "503 5.5.1 Need MAIL command\r\n");
        p.send(b"MAIL FROM:<b@x>\r\n");
        assert_eq!(
            p.send(b"MAIL FROM:<b@x>\r\n"),
            "503 5.5.1 Nested MAIL command\r\n"
        );
        assert_eq!(p.send(b"RSET\r\n"), "250 2.0.0 OK\r\n");
        assert_eq!(
            p.send(b"RCPT TO:<s@iwf.test>\r\n"),
            "503 5.5.1 Need MAIL before RCPT\r\n"
        );
        p.send(b"MAIL FROM:<b@x>\r\n");
        // EHLO resets the transaction too (RFC 5321 4.1.4).
        p.send(b"EHLO c\r\n");
        assert_eq!(
            p.send(b"RCPT TO:<s@iwf.test>\r\n"),
            "503 5.5.1 Need MAIL before RCPT\r\n"
        );
    }

    #[test]
    fn other_commands_and_syntax_errors() {
        let mut p = Peer::hello();
        assert_eq!(p.send(b"NOOP\r\n"), "250 2.0.0 OK\r\n");
        assert!(p.send(b"VRFY bob\r\n").starts_with("252 2.5.0 "));
        assert!(p.send(b"HELP\r\n").starts_with("214 2.0.0 Commands: "));
        assert_eq!(p.send(b"FOO bar\r\n"), "500 5.5.1 Command unrecognized\r\n");
        assert_eq!(
            p.send(b"EXPN list\r\n"),
            "502 5.5.1 EXPN not implemented\r\n"
        );
        assert!(
            p.send(b"MAIL TO:<b@x>\r\n")
                .starts_with("501 5.5.4 Syntax: MAIL FROM")
        );
        assert!(p.send(b"MAIL FROM:<b@x\r\n").starts_with("501 "));
        assert!(p.send(b"EHLO\r\n").starts_with("501 5.5.4 Syntax: EHLO"));
        // A bare LF ends a command (robustness); the reply is in CRLF.
        assert_eq!(p.send(b"NOOP\n"), "250 2.0.0 OK\r\n");
        assert!(!p.closed);
        assert_eq!(
            p.send(b"QUIT\r\nNOOP\r\n"),
            "221 2.0.0 iwf.test Service closing transmission channel\r\n"
        );
        assert!(p.closed);
    }

    #[test]
    fn overlong_command_line_is_500_and_skipped_even_in_pieces() {
        let mut p = Peer::hello();
        let long = [b'A'; MAX_COMMAND_LINE + 10];
        assert_eq!(p.send(&long), "");
        assert_eq!(p.send(&long), "");
        assert_eq!(
            p.send(b"\r\nNOOP\r\n"),
            "500 5.5.2 Line too long\r\n250 2.0.0 OK\r\n"
        );
        let mut line = b"NOOP ".to_vec();
        line.resize(MAX_COMMAND_LINE + 1, b'x');
        line.extend(b"\r\n");
        assert_eq!(p.send(&line), "500 5.5.2 Line too long\r\n");
        assert!(p.session.input.is_empty());
    }

    #[test]
    fn timeout_is_421_and_close() {
        let mut p = Peer::hello();
        p.session.timed_out();
        assert_eq!(
            p.send(b""),
            "421 4.4.2 iwf.test Timeout waiting for command, closing\r\n"
        );
        assert!(p.closed);
    }

    #[test]
    fn shutdown_is_421_and_close_even_mid_message() {
        let mut p = Peer::hello();
        p.send(b"MAIL FROM:<b@x>\r\nRCPT TO:<s@iwf.test>\r\nDATA\r\nhalf");
        p.session.shutting_down();
        assert_eq!(
            p.send(b""),
            "421 4.3.2 iwf.test Service shutting down, closing\r\n"
        );
        assert!(p.closed && p.mails.is_empty());
    }

    #[test]
    fn too_many_errors_close_the_connection() {
        let mut p = Peer::hello();
        let out = p.send(&b"BAD\r\n".repeat(MAX_ERRORS as usize + 5));
        assert!(
            out.ends_with("421 4.7.0 Too many errors, closing\r\n"),
            "{out}"
        );
        assert_eq!(out.matches("500 ").count(), MAX_ERRORS as usize);
        assert!(p.closed);
    }

    proptest::proptest! {
        /// Whatever the client sends, in whatever pieces: no panic, the input held stays
        /// under a command line, the message under its limit plus one piece, and the
        /// output is whole, well-formed replies.
        #[test]
        fn any_input_in_any_pieces_is_answered_within_bounds(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        &b"EHLO c\r\n"[..], b"HELO c\r\n", b"MAIL FROM:<b@x>\r\n",
                        b"MAIL FROM:<>\r\n", b"RCPT TO:<s@iwf.test>\r\n",
                        b"RCPT TO:<nobody@iwf.test>\r\n", b"DATA\r\n", b".\r\n", b"\r\n",
                        b"\n", b".", b"..", b"RSET\r\n", b"QUIT\r\n", b"MAIL FROM:<b@x> SIZE=",
                    ]).prop_map(|s| s.to_vec()),
                    proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                ],
                0..40,
            )
        ) {
            let mut p = Peer::new();
            for piece in &pieces {
                let out = p.send(piece);
                let replies = crate::smtp::reply::parse_replies(out.as_bytes()).unwrap();
                let whole: usize = replies.iter().map(|r| r.lines.iter().map(|l| l.len() + 6).sum::<usize>()).sum();
                proptest::prop_assert_eq!(whole, out.len(), "partial or malformed reply: {:?}", out);
                proptest::prop_assert!(p.session.input.len() < MAX_COMMAND_LINE);
                if let State::Data(Data::Keeping(_, buf)) = &p.session.state {
                    proptest::prop_assert!(buf.len() <= 100 + piece.len());
                }
                if p.closed {
                    break;
                }
            }
        }
    }

    #[test]
    fn busy_greeting_is_421() {
        assert_eq!(
            Session::busy_greeting(&settings()),
            b"421 4.3.2 iwf.test Too many connections, try again later\r\n"
        );
    }
}
