//! `iwf demo`: one whole CPM session through the real gateway on loopback, with nothing
//! installed beyond the build, its ladder printed as it happens.
//!
//! The gateway is started in-process (`gateway::start`, every listener on a port the
//! system chose, the embedded `default` policy or `--policy`), its outgoing mail sent to
//! the demo's own SMTP server as smart host (`[smtp.outbound] smart_host`: no DNS). Three
//! small actors play the other ends over real sockets:
//! - `cpm`: the CPM user's client (SIP UAC over UDP, MSRP endpoint);
//! - `mail`: the e-mail user's SMTP server, and the e-mail user replying by SMTP;
//! - `ladder`: the printing.
//!
//! The session is F2 → accept → F5 → F4 → F8 of DESIGN.md (5.2.4.2.4 to 5.2.4.2.9), in
//! the order the spec gives it. The CPM client offers `a=setup:active` (RFC 4975 5.4: the
//! offerer connects), so its MSRP connection is made, and taken by the IWF, at the 200 OK,
//! before the e-mail user's accept (DESIGN.md F3, step 5a). When the policy accepts on
//! the e-mail user's behalf (F1, 5.2.1.3) no invitation is mailed and no accept is
//! awaited: the demo follows, and the e-mail user first hears of the chat by its first
//! message (F4 before F5). Nothing here is used by the gateway.

pub mod cpm;
pub mod ladder;
pub mod mail;

use crate::config::{
    AdminConfig, Config, MsrpConfig, PolicyConfig, SipConfig, SmtpConfig, SmtpInboundConfig,
    SmtpOutboundConfig,
};
use cpm::{CpmClient, MsrpLink, Parties, SipIn, Wait};
use ladder::{Actor, Ladder};
use mail::{EmailUser, Read, RecipientServer, ServerEvent};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio::time::Instant as Deadline;

/// `iwf demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Play the session with this policy component instead of the embedded `default`.
    #[arg(long, value_name = "FILE.wasm")]
    pub policy: Option<PathBuf>,
    /// How long each step may take: seconds, or with a unit (`500ms`, `10s`).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub step_timeout: Duration,
    /// Break a step on purpose, to see (and test) the failure path.
    #[arg(long, value_enum, hide = true)]
    pub break_step: Option<BreakStep>,
}

/// What `--break-step` breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BreakStep {
    /// The e-mail user's SMTP server refuses the recipient (550 5.1.1).
    SmtpRefuse,
}

impl BreakStep {
    fn name(self) -> &'static str {
        match self {
            BreakStep::SmtpRefuse => "smtp-refuse",
        }
    }
}

/// `10`, `2.5`, `10s` or `500ms`; more than 0, at most 600 s (the gateway's SMTP
/// timeouts, which the demo sets from it, go no further).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = match text.strip_suffix("ms") {
        Some(ms) => (ms, 1e-3),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    let seconds = number
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("{text:?}: use seconds, e.g. 10, 10s or 500ms"))?
        * scale;
    if !(0.001..=600.0).contains(&seconds) {
        return Err(format!("{text:?}: use 1ms to 600s"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Runs the demo: 0 when every step happened, 1 when one did not (named on stdout and
/// stderr), 2 when the demo could not start (e.g. a policy file that does not load).
pub fn main(options: Options) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("iwf demo: cannot start the tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(run(&options));
    // The gateway's tasks end with the runtime; a policy call in flight is not waited for.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Setup(why)) => {
            eprintln!("iwf demo: {why}");
            ExitCode::from(2)
        }
        Err(Failure::Step { number, step, why }) => {
            eprintln!("iwf demo: step {number} ({}) failed: {why}", step.name());
            ExitCode::FAILURE
        }
    }
}

/// Why the demo did not pass.
#[derive(Debug)]
pub enum Failure {
    /// It could not start (the gateway, a policy file, a socket).
    Setup(String),
    /// Step `number` did not happen.
    Step {
        number: usize,
        step: Step,
        why: String,
    },
}

/// The steps of the session, in the spec's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The CPM client's INVITE to the e-mail user's `mailto:` URI, and its first answer.
    Invite,
    /// F2 (5.2.4.2.4 steps 1-4): the invitation mailed per AA1/AA2.
    Invitation,
    /// 5.2.1.3 / 5.2.4.2.4 step 5a: the 200 OK with the SDP answer, the ACK.
    Answer,
    /// RFC 4975 5.4: the client's connection, bound by its first SEND.
    Msrp,
    /// F3: the e-mail user's reply "accept".
    Accept,
    /// F5 (5.2.4.2.8, EE1): the user's mail as an MSRP SEND.
    MailToChat,
    /// F4 (5.2.4.2.5, BB1/BB2): the client's MSRP SEND as a mail.
    ChatToMail,
    /// F8 (5.2.4.2.9): the user's reply "leave", the IWF's BYE.
    Leave,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Invite => "INVITE",
            Step::Invitation => "invitation e-mail (F2)",
            Step::Answer => "200 OK and ACK",
            Step::Msrp => "MSRP connected",
            Step::Accept => "reply \"accept\" (F3)",
            Step::MailToChat => "e-mail becomes MSRP SEND (F5)",
            Step::ChatToMail => "MSRP SEND becomes e-mail (F4)",
            Step::Leave => "reply \"leave\", BYE (F8)",
        }
    }
}

/// Who the demo's people are.
const CPM_FROM: &str = "\"Alice\" <sip:alice@ims.example.com>";
const CPM_IDENTITY: &str = "tel:+15551234567";
const EMAIL_NAME: &str = "Bob";
const EMAIL_ADDRESS: &str = "bob@example.net";
/// What they say.
const SUBJECT: &str = "Lunch?";
const EMAIL_CHAT: &str = "Hi Alice, noon works for me.";
const CPM_CHAT: &str = "Great, see you at noon!";

/// The gateway's configuration for the demo: loopback, ports chosen by the system, mail
/// to the demo's SMTP server at `mx` as smart host, timeouts no longer than a step.
fn gateway_config(options: &Options, mx: std::net::SocketAddr) -> Config {
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let step_ms = options.step_timeout.as_millis().clamp(1, 600_000) as u64;
    Config {
        sip: SipConfig {
            listen: any,
            domain: "iwf.example.com".into(),
            ..SipConfig::default()
        },
        msrp: MsrpConfig {
            listen: any,
            connect_timeout_ms: step_ms,
            ..MsrpConfig::default()
        },
        smtp: SmtpConfig {
            inbound: SmtpInboundConfig {
                listen: any,
                domain: "mail.example.com".into(),
                ..SmtpInboundConfig::default()
            },
            outbound: SmtpOutboundConfig {
                smart_host: Some(mx.to_string()),
                helo: "iwf.example.com".into(),
                connect_timeout_ms: step_ms,
                command_timeout_ms: step_ms,
                data_timeout_ms: step_ms,
                invitation_timeout_ms: step_ms,
                ..SmtpOutboundConfig::default()
            },
        },
        policy: PolicyConfig {
            path: options.policy.clone(),
            ..PolicyConfig::default()
        },
        admin: AdminConfig { listen: any },
        // The demo's session is its own: nothing to keep, nothing of another run to find.
        store: crate::store::StoreSettings::memory(),
    }
}

/// Plays the session; the ladder goes to stdout.
pub async fn run(options: &Options) -> Result<(), Failure> {
    let setup = |what: &str| {
        let what = what.to_owned();
        move |e: &dyn std::fmt::Display| Failure::Setup(format!("{what}: {e}"))
    };
    if let Some(path) = &options.policy {
        // Said plainly before the gateway's own, longer, refusal.
        std::fs::metadata(path)
            .map_err(|e| setup(&format!("--policy {}: cannot read it", path.display()))(&e))?;
    }
    let refuse = options.break_step == Some(BreakStep::SmtpRefuse);
    let server = RecipientServer::start("mx.example.net", refuse)
        .await
        .map_err(|e| setup("the e-mail user's SMTP server")(&e))?;
    let config = gateway_config(options, server.addr);
    let gateway = crate::gateway::start(&config)
        .await
        .map_err(|e| Failure::Setup(format!("cannot start the gateway: {e:#}")))?;
    let parties = Parties {
        from: CPM_FROM.into(),
        asserted: CPM_IDENTITY.into(),
        invitee: EMAIL_ADDRESS.into(),
        subject: SUBJECT.into(),
    };
    let cpm = CpmClient::new(gateway.sip_addr, parties)
        .await
        .map_err(|e| setup("the CPM client's sockets")(&e))?;
    let user = EmailUser::new(
        EMAIL_NAME,
        EMAIL_ADDRESS,
        gateway.smtp_addr,
        options.step_timeout,
    );
    let mut ladder = Ladder::stdout();
    let policy = gateway.policy.current();
    ladder.intro(&format!(
        "iwf demo: the gateway on sip={} msrp={} smtp={}, policy {} {} ({}); \
         the e-mail user's SMTP server on {}",
        gateway.sip_addr,
        gateway.msrp_addr,
        gateway.smtp_addr,
        policy.info().name,
        policy.info().version,
        policy.source(),
        server.addr,
    ));
    if let Some(broken) = options.break_step {
        ladder.note(&format!(
            "--break-step {}: a step fails on purpose",
            broken.name()
        ));
    }
    let mut demo = Demo {
        ladder,
        timeout: options.step_timeout,
        number: 0,
        step: Step::Invite,
        headed: false,
        deadline: Deadline::now(),
        cpm,
        msrp: None,
        answer_path: Vec::new(),
        server,
        user,
        thread: None,
        early_final: None,
        refusal: None,
    };
    match demo.play().await {
        Ok(()) => {
            demo.ladder.passed(demo.number);
            Ok(())
        }
        Err(why) => {
            demo.heading();
            demo.ladder.failed(demo.number, demo.step.name(), &why);
            Err(Failure::Step {
                number: demo.number,
                step: demo.step,
                why,
            })
        }
    }
}

/// The session being played.
struct Demo {
    ladder: Ladder,
    timeout: Duration,
    /// The step being played, its number, whether its heading is out, its deadline.
    number: usize,
    step: Step,
    headed: bool,
    deadline: Deadline,
    cpm: CpmClient,
    msrp: Option<MsrpLink>,
    /// The IWF's `a=path` from the SDP answer.
    answer_path: Vec<crate::sdp::MsrpUri>,
    server: RecipientServer,
    user: EmailUser,
    /// The last mail the e-mail user got from the gateway: what it replies to.
    thread: Option<Read>,
    /// A final response to the INVITE that came as its first answer.
    early_final: Option<SipIn>,
    /// What the SMTP server refused, for the step that fails on it.
    refusal: Option<String>,
}

/// A step's outcome: `Err` says why it did not happen.
type Played = Result<(), String>;

/// The e-mail user's mail on its way: when the gateway answered, and what.
type Sending = JoinHandle<(Instant, Result<String, String>)>;

/// `Wait`s as a step's words.
fn waited(what: &str) -> impl Fn(Wait) -> String + '_ {
    move |w| match w {
        Wait::Timeout => format!("no {what} before the step's timeout"),
        Wait::Failed(why) => why,
    }
}

/// A SIP response's status line, e.g. `SIP 200 OK`.
fn status_line(message: &crate::sip::message::Message) -> String {
    match &message.start {
        crate::sip::message::StartLine::Response { status, reason } => {
            format!("SIP {status} {reason}")
        }
        crate::sip::message::StartLine::Request { method, uri, .. } => {
            format!("SIP {} {uri}", method.as_str())
        }
    }
}

impl Demo {
    /// Starts the next step: numbered, its deadline set; its heading waits for its first
    /// line (a step may turn out to be another, see [`Demo::retitle`]).
    fn begin(&mut self, step: Step) {
        self.number += 1;
        self.step = step;
        self.headed = false;
        self.deadline = Deadline::now() + self.timeout;
    }

    /// The step under way is `step` after all (the policy's decision showed).
    fn retitle(&mut self, step: Step) {
        self.step = step;
    }

    fn heading(&mut self) {
        if !self.headed {
            self.ladder.step(self.number, self.step.name());
            self.headed = true;
        }
    }

    fn line(
        &mut self,
        at: Instant,
        from: Actor,
        to: Actor,
        what: &str,
        headers: &[(&str, String)],
    ) {
        self.heading();
        self.ladder.message(at, from, to, what, headers);
    }

    fn note(&mut self, text: &str) {
        self.heading();
        self.ladder.note(text);
    }

    fn sip_line(&mut self, sip: &SipIn) {
        let m = &sip.message;
        let header = |name: &str| m.header(name).unwrap_or("").to_owned();
        let mut headers = vec![("Reason", header("Reason")), ("Warning", header("Warning"))];
        if m.status().is_some_and(|s| (200..300).contains(&s)) {
            headers.push(("Contact", header("Contact")));
            if let Ok((path, setup)) = cpm::answer_path(&m.body) {
                let path: Vec<String> = path.iter().map(ToString::to_string).collect();
                headers.push(("SDP", format!("a=path:{} a=setup:{setup}", path.join(" "))));
            }
        }
        self.line(sip.at, Actor::Iwf, Actor::Cpm, &status_line(m), &headers);
    }

    async fn play(&mut self) -> Played {
        self.begin(Step::Invite);
        self.invite().await?;
        self.begin(Step::Invitation);
        let accepted_on_behalf = self.invitation().await?;
        if !accepted_on_behalf {
            self.begin(Step::Answer);
        }
        self.answer().await?;
        self.begin(Step::Msrp);
        self.connect_msrp().await?;
        if accepted_on_behalf {
            // F1: the user has nothing to answer yet; the chat's first message reaches it.
            self.begin(Step::ChatToMail);
            self.chat_to_mail().await?;
            self.begin(Step::MailToChat);
            self.mail_to_chat().await?;
        } else {
            self.begin(Step::Accept);
            self.accept().await?;
            self.begin(Step::MailToChat);
            self.mail_to_chat().await?;
            self.begin(Step::ChatToMail);
            self.chat_to_mail().await?;
        }
        self.begin(Step::Leave);
        self.leave().await
    }

    /// Step 1: the INVITE, until its first response (100 Trying, RFC 3261 17.2.1).
    async fn invite(&mut self) -> Played {
        let (at, headers) = self.cpm.invite().await.map_err(waited("INVITE"))?;
        let what = format!("SIP INVITE mailto:{EMAIL_ADDRESS}");
        self.line(at, Actor::Cpm, Actor::Iwf, &what, &headers);
        let first = self
            .cpm
            .next(self.deadline)
            .await
            .map_err(waited("response to the INVITE"))?;
        self.sip_line(&first);
        if first.message.status().is_some_and(|s| s >= 200) {
            self.early_final = Some(first);
        }
        Ok(())
    }

    /// Step 2: the invitation reaches the e-mail user's server (F2), or the INVITE is
    /// answered 200 at once (F1: true), or refused (the step fails with the reason).
    async fn invitation(&mut self) -> Result<bool, String> {
        loop {
            let sip = match self.early_final.take() {
                Some(sip) => sip,
                None => tokio::select! {
                    event = self.server.next(self.deadline) => {
                        let event = event.ok_or(
                            "no invitation reached the e-mail user's SMTP server and the \
                             INVITE had no final answer before the step's timeout",
                        )?;
                        if self.invitation_event(event)? {
                            return Ok(false);
                        }
                        continue;
                    }
                    sip = self.cpm.next(self.deadline) => {
                        sip.map_err(waited("invitation e-mail nor final answer to the INVITE"))?
                    }
                },
            };
            if sip.message.status().is_some_and(|s| s < 200) {
                self.sip_line(&sip);
                continue;
            }
            // F2's 200 follows the server's 250 (AA3), and the server reports a mail
            // before it answers 250: a mailed invitation is waiting here by now, whichever
            // of the two the wait happened to take first.
            while let Some(event) = self.server.ready() {
                if self.invitation_event(event)? {
                    self.early_final = Some(sip);
                    return Ok(false);
                }
            }
            return self.invite_answered_without_mail(sip);
        }
    }

    /// Prints what reached the server while the invitation was awaited; true when it is
    /// the invitation.
    fn invitation_event(&mut self, event: ServerEvent) -> Result<bool, String> {
        match event {
            ServerEvent::Mail { at, mail } => {
                self.mail_line(at, &mail, "invitation e-mail")?;
                Ok(true)
            }
            ServerEvent::Refused {
                at,
                mail_from,
                rcpt,
                reply,
            } => {
                let what = format!(
                    "SMTP MAIL FROM:<{}> RCPT TO:<{rcpt}>",
                    mail_from.unwrap_or_default()
                );
                self.line(at, Actor::Iwf, Actor::Mx, &what, &[]);
                self.line(at, Actor::Mx, Actor::Iwf, &format!("SMTP {reply}"), &[]);
                self.refusal = Some(reply);
                Ok(false)
            }
        }
    }

    /// The INVITE got its final answer and no invitation was mailed: 2xx is F1 (the
    /// policy accepted on the user's behalf), anything else ends the demo here.
    fn invite_answered_without_mail(&mut self, sip: SipIn) -> Result<bool, String> {
        let status = sip.message.status().unwrap_or(0);
        if (200..300).contains(&status) {
            self.retitle(Step::Answer);
            self.note(
                "the policy accepted on the e-mail user's behalf (F1, 5.2.1.3): \
                 no invitation e-mail, no accept reply",
            );
            self.early_final = Some(sip);
            return Ok(true);
        }
        self.sip_line(&sip);
        let warning = sip
            .message
            .header("Warning")
            .map(|w| format!(" (Warning: {w})"))
            .unwrap_or_default();
        Err(match self.refusal.take() {
            Some(refused) => format!(
                "the e-mail user's SMTP server refused the invitation ({refused}), so the \
                 gateway answered the INVITE {} (AA3)",
                status_line(&sip.message)
            ),
            None => format!(
                "the gateway answered the INVITE {}{warning}",
                status_line(&sip.message)
            ),
        })
    }

    /// Prints a mail the e-mail user's server took; the user reads it.
    fn mail_line(
        &mut self,
        at: Instant,
        mail: &crate::smtp::inbound::ReceivedMail,
        what: &str,
    ) -> Played {
        let read = Read::parse(&mail.data).map_err(|e| format!("the {what} is unreadable: {e}"))?;
        let envelope = format!(
            "SMTP {what}: MAIL FROM:<{}> RCPT TO:<{}>",
            mail.mail_from.as_deref().unwrap_or(""),
            mail.rcpt_to.join(">, <")
        );
        self.line(at, Actor::Iwf, Actor::Mx, &envelope, &read.headers());
        self.line(
            at,
            Actor::Mx,
            Actor::Iwf,
            "SMTP 250 2.0.0 queued for the mailbox",
            &[],
        );
        self.thread = Some(read);
        Ok(())
    }

    /// Step 3 (or 2 in F1): the 200 OK with the SDP answer, then the ACK.
    async fn answer(&mut self) -> Played {
        let ok = loop {
            let sip = match self.early_final.take() {
                Some(sip) => sip,
                None => self
                    .cpm
                    .next(self.deadline)
                    .await
                    .map_err(waited("200 OK to the INVITE"))?,
            };
            self.sip_line(&sip);
            match sip.message.status() {
                Some(200..=299) => break sip,
                Some(status) if status >= 300 => {
                    return Err(format!(
                        "the gateway answered the INVITE {} after mailing the invitation",
                        status_line(&sip.message)
                    ));
                }
                _ => {}
            }
        };
        let at = self.cpm.ack(&ok.message).await.map_err(waited("ACK"))?;
        self.line(at, Actor::Cpm, Actor::Iwf, "SIP ACK", &[]);
        let (path, setup) = cpm::answer_path(&ok.message.body)?;
        if setup != "passive" {
            return Err(format!(
                "the SDP answer says a=setup:{setup}; to the client's active offer the IWF must be passive (RFC 6135)"
            ));
        }
        self.answer_path = path;
        Ok(())
    }

    fn link(&mut self) -> Result<&mut MsrpLink, String> {
        self.msrp
            .as_mut()
            .ok_or_else(|| "the chat is not connected".to_owned())
    }

    /// The client connects to the IWF's `a=path` and binds the connection with an empty
    /// SEND (RFC 4975 5.4).
    async fn connect_msrp(&mut self) -> Played {
        let deadline = self.deadline;
        let path = std::mem::take(&mut self.answer_path);
        let link = self
            .cpm
            .connect_msrp(path)
            .await
            .map_err(waited("MSRP connection"))?;
        let link = self.msrp.insert(link);
        let to = link
            .to_path
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        let from = link.local.to_string();
        let (sent, at, code) = link
            .bind(deadline)
            .await
            .map_err(waited("response to the binding SEND"))?;
        let headers = [("To-Path", to), ("From-Path", from)];
        self.line(
            sent,
            Actor::Cpm,
            Actor::Iwf,
            "MSRP SEND (empty: binds the connection, RFC 4975 5.4)",
            &headers,
        );
        self.line(at, Actor::Iwf, Actor::Cpm, &format!("MSRP {code}"), &[]);
        if code != 200 {
            return Err(format!("the gateway answered the binding SEND {code}"));
        }
        Ok(())
    }

    /// The e-mail user replies `text` to the last mail it got, sent on a task of its
    /// own: the gateway's answer may wait on the CPM side (F5: the 250 comes once the
    /// chat took the message).
    fn user_replies(&mut self, text: &str) -> Result<Sending, String> {
        let read = self
            .thread
            .as_ref()
            .ok_or("the e-mail user has no mail from the gateway to answer")?;
        let reply = self.user.reply(read, text);
        let what = format!("SMTP MAIL FROM:<{EMAIL_ADDRESS}> RCPT TO:<{}>", reply.to);
        let headers = reply.headers(&self.user.mailbox);
        self.line(Instant::now(), Actor::User, Actor::Iwf, &what, &headers);
        let user = self.user.clone();
        Ok(tokio::spawn(async move {
            let outcome = user.send(&reply).await;
            (Instant::now(), outcome)
        }))
    }

    /// Prints the gateway's answer to the user's mail; `Err` unless 2yz.
    fn user_answered(&mut self, at: Instant, outcome: Result<String, String>) -> Played {
        match outcome {
            Ok(reply) => {
                self.line(at, Actor::Iwf, Actor::User, &format!("SMTP {reply}"), &[]);
                Ok(())
            }
            Err(why) => Err(format!(
                "the gateway did not take the e-mail user's mail: {why}"
            )),
        }
    }

    async fn sent(&mut self, sending: Sending) -> Played {
        let (at, outcome) = tokio::time::timeout_at(self.deadline, sending)
            .await
            .map_err(|_| {
                "the gateway did not answer the e-mail user's mail before the step's timeout"
                    .to_owned()
            })?
            .map_err(|e| format!("the e-mail user's task failed: {e}"))?;
        self.user_answered(at, outcome)
    }

    /// F3: the user answers the invitation "accept".
    async fn accept(&mut self) -> Played {
        let sending = self.user_replies("accept")?;
        self.sent(sending).await
    }

    /// F5: the user's mail becomes a SEND on the chat (EE1: message/cpim, DateTime from
    /// the mail's Date); the client answers each chunk.
    async fn mail_to_chat(&mut self) -> Played {
        let mut sending = Some(self.user_replies(EMAIL_CHAT)?);
        let deadline = self.deadline;
        let chat = loop {
            let link = self.msrp.as_mut().ok_or("the chat is not connected")?;
            tokio::select! {
                chat = link.receive_message(deadline) => break chat.map_err(waited("MSRP SEND from the gateway"))?,
                joined = async { sending.as_mut().expect("checked").await }, if sending.is_some() => {
                    sending = None;
                    let (at, outcome) = joined.map_err(|e| format!("the e-mail user's task failed: {e}"))?;
                    // Answered before the SEND came: a refusal ends the step with its reason.
                    self.user_answered(at, outcome)?;
                }
            }
        };
        let content_type = chat.message.content_type.clone().unwrap_or_default();
        let (text, mut headers) = if content_type.starts_with("message/cpim") {
            let m = crate::cpim::Message::parse(&chat.message.data)
                .map_err(|e| format!("the SEND's message/cpim is malformed: {e}"))?;
            let text = String::from_utf8_lossy(&m.body).into_owned();
            let headers = vec![
                (
                    "CPIM From",
                    m.from.as_ref().map(ToString::to_string).unwrap_or_default(),
                ),
                (
                    "CPIM To",
                    m.to.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                (
                    "CPIM DateTime",
                    m.date_time
                        .map(|t| crate::cpim::format_date_time(&t))
                        .unwrap_or_default(),
                ),
            ];
            (text, headers)
        } else {
            (
                String::from_utf8_lossy(&chat.message.data).into_owned(),
                Vec::new(),
            )
        };
        headers.insert(0, ("Message-ID", chat.message.message_id.clone()));
        headers.push(("Text", text.trim().to_owned()));
        let what = format!(
            "MSRP SEND {content_type} ({} chunk{})",
            chat.chunks,
            if chat.chunks == 1 { "" } else { "s" }
        );
        self.line(chat.first_at, Actor::Iwf, Actor::Cpm, &what, &headers);
        self.line(Instant::now(), Actor::Cpm, Actor::Iwf, "MSRP 200", &[]);
        if !text.contains(EMAIL_CHAT) {
            return Err(format!(
                "the SEND carries {text:?}, not the e-mail user's {EMAIL_CHAT:?}"
            ));
        }
        match sending {
            Some(sending) => self.sent(sending).await,
            None => Ok(()),
        }
    }

    /// F4: the client's SEND becomes a mail to the user (BB2: Date from CPIM DateTime),
    /// and its response comes once the mail is out (5.2.4.2.5 step 4).
    async fn chat_to_mail(&mut self) -> Played {
        // CPIM From: the identity the network asserted (P-Asserted-Identity), as a CPM
        // client signs its messages.
        let from = format!("\"Alice\" <{CPM_IDENTITY}>");
        let message = cpm::chat_message(&from, &format!("mailto:{EMAIL_ADDRESS}"), CPM_CHAT);
        let date_time = message
            .date_time
            .map(|t| crate::cpim::format_date_time(&t))
            .unwrap_or_default();
        let headers = vec![
            (
                "CPIM From",
                message
                    .from
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
            ("CPIM DateTime", date_time),
            ("Text", CPM_CHAT.to_owned()),
        ];
        let deadline = self.deadline;
        let (sent, chunks) = self
            .link()?
            .send_message(&message)
            .await
            .map_err(waited("SEND"))?;
        self.line(
            sent,
            Actor::Cpm,
            Actor::Iwf,
            "MSRP SEND message/cpim",
            &headers,
        );
        // The mail reaches the server while the SEND waits for its response.
        let mut mailed = false;
        let (at, code, comment) = loop {
            let link = self.msrp.as_mut().ok_or("the chat is not connected")?;
            tokio::select! {
                response = link.response_to_last(&chunks, deadline) => {
                    break response.map_err(waited("response to the SEND"))?;
                }
                event = self.server.next(deadline), if !mailed => match event {
                    Some(ServerEvent::Mail { at, mail }) => {
                        self.mail_line(at, &mail, "chat e-mail")?;
                        mailed = true;
                    }
                    Some(ServerEvent::Refused { reply, .. }) => self.note(&format!("the SMTP server refused: {reply}")),
                    None => return Err("no chat e-mail reached the e-mail user's SMTP server before the step's timeout".into()),
                },
            }
        };
        // Both may be ready at once: the mail, which came first, is printed first.
        if code == 200 && !mailed {
            match self.server.next(deadline).await {
                Some(ServerEvent::Mail { at, mail }) => self.mail_line(at, &mail, "chat e-mail")?,
                _ => return Err("the SEND was answered 200, but no e-mail reached the e-mail user's SMTP server".into()),
            }
        }
        let comment = if comment.is_empty() {
            String::new()
        } else {
            format!(" {comment}")
        };
        self.line(
            at,
            Actor::Iwf,
            Actor::Cpm,
            &format!("MSRP {code}{comment}"),
            &[],
        );
        if code != 200 {
            return Err(format!("the gateway answered the SEND {code}{comment}"));
        }
        let text = &self.thread.as_ref().expect("a mail was read").first_line;
        if !text.contains(CPM_CHAT) {
            return Err(format!(
                "the chat e-mail says {text:?}, not the CPM user's {CPM_CHAT:?}"
            ));
        }
        Ok(())
    }

    /// F8: the user replies "leave"; the IWF sends BYE (RFC 3326 Reason), the client
    /// answers 200, the chat's connection closes.
    async fn leave(&mut self) -> Played {
        let mut sending = Some(self.user_replies("leave")?);
        let deadline = self.deadline;
        let bye = loop {
            tokio::select! {
                sip = self.cpm.next(deadline) => {
                    let sip = sip.map_err(waited("BYE from the gateway"))?;
                    if sip.message.method().is_some_and(|m| m.as_str() == "BYE") {
                        break sip;
                    }
                    self.sip_line(&sip);
                }
                joined = async { sending.as_mut().expect("checked").await }, if sending.is_some() => {
                    sending = None;
                    let (at, outcome) = joined.map_err(|e| format!("the e-mail user's task failed: {e}"))?;
                    self.user_answered(at, outcome)?;
                }
            }
        };
        let reason = bye.message.header("Reason").unwrap_or("").to_owned();
        self.line(
            bye.at,
            Actor::Iwf,
            Actor::Cpm,
            "SIP BYE",
            &[("Reason", reason)],
        );
        let at = self
            .cpm
            .respond(&bye.message, 200)
            .await
            .map_err(waited("200 to the BYE"))?;
        self.line(at, Actor::Cpm, Actor::Iwf, "SIP 200 OK", &[]);
        if let Some(sending) = sending {
            self.sent(sending).await?;
        }
        let link = self.link()?;
        let at = link
            .closed(deadline)
            .await
            .map_err(waited("close of the MSRP connection"))?;
        self.line(at, Actor::Iwf, Actor::Cpm, "MSRP connection closed", &[]);
        Ok(())
    }
}
