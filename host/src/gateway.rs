//! `iwf run`: starts the gateway's listeners from a [`Config`] and serves until stopped.
//!
//! Today that is the policy plane (policy host, hot-swap triggers), the admin listener,
//! the SIP transports, the sessions and their outgoing mail; MSRP and inbound SMTP join
//! here as their issues land.

use crate::config::Config;
use crate::msrp::Endpoint;
use crate::net::sip::{Inbound, Replier, SipListeners};
use crate::policy::world::{Gateway as GatewayFacts, InviteDecision};
use crate::policy::{Decision, Limits, PolicyEngine, PolicyHost, PolicySource, reload};
use crate::sdp::uri::Host;
use crate::session::carry::{Chats, HoldLimits};
use crate::session::core::{
    Core, CoreConfig, Effect, EndReason, InvitationOutcome, Notify, Peer, Restored, Resumed,
    SessionKey,
};
use crate::session::directory::Directory;
use crate::session::mailer::{Invited, Mailer, Records};
use crate::session::registry::Registry;
use crate::session::replies::{ChatSessions, Replies, UserEvent};
use crate::session::stats::SessionStats;
use crate::sip;
use crate::sip::dialog::Target;
use crate::sip::transaction::Timers;
use crate::smtp::{Destinations, Router};
use crate::store::{self, Changes, Store};
use anyhow::Context;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

/// The running gateway's handles, for tests and for `main`.
pub struct Gateway {
    pub policy: Arc<PolicyHost>,
    pub admin_addr: std::net::SocketAddr,
    pub sip_addr: std::net::SocketAddr,
    pub msrp_addr: std::net::SocketAddr,
    pub smtp_addr: std::net::SocketAddr,
}

/// Binds every listener and starts serving in the background of the current runtime.
pub async fn start(config: &Config) -> anyhow::Result<Gateway> {
    let engine = PolicyEngine::with_cache_dir(
        Limits::from(&config.policy),
        config.policy.cache_dir.clone(),
    )
    .map_err(|e| anyhow::anyhow!("creating the policy engine: {e:#}"))?;
    let source = match &config.policy.path {
        Some(path) => PolicySource::File(path.clone()),
        None => PolicySource::Embedded,
    };
    let policy = tokio::task::spawn_blocking(move || PolicyHost::new(engine, source))
        .await?
        .map_err(|e| match &config.policy.path {
            Some(path) => anyhow::anyhow!("[policy] path = {}: {e}", path.display()),
            None => anyhow::anyhow!("embedded default policy: {e}"),
        })?;
    let policy = Arc::new(policy);
    {
        let p = policy.current();
        tracing::info!(
            name = %p.info().name,
            version = %p.info().version,
            sha256 = %p.sha256_hex(),
            source = %p.source(),
            "policy loaded"
        );
    }

    reload::spawn_file_watch(
        policy.clone(),
        Duration::from_millis(config.policy.watch_interval_ms),
    );
    #[cfg(unix)]
    reload::spawn_sighup(policy.clone()).context("installing the SIGHUP handler")?;

    // Before any listener: what was acknowledged before a restart is served first.
    let store = Store::open(&config.store)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Arc::new(store);
    tracing::info!(location = %store.location(), "store open");

    let admin = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("[admin] listen = {}: cannot bind", config.admin.listen))?;
    let admin_addr = admin.local_addr()?;
    let admin_policy = policy.clone();
    let stats = Arc::new(SessionStats::default());
    let destinations = Arc::new(Destinations::new(&config.smtp.outbound));
    let admin_metrics = (stats.clone(), destinations.clone(), store.clone());
    // What operators see of the sessions: the session layer writes, the admin API reads.
    let registry = Arc::new(Registry::default());
    let admin_sessions = registry.clone();
    tokio::spawn(async move {
        let served = crate::admin::serve(admin, admin_policy, admin_metrics, admin_sessions);
        if let Err(e) = served.await {
            tracing::error!(error = %e, "admin listener stopped");
        }
    });
    tracing::info!(%admin_addr, "admin listener ready");

    // F2: where invitations go (MX look-ups or the smart host), built once.
    let router = Router::new(&config.smtp.outbound).map_err(|e| {
        anyhow::anyhow!(
            "[smtp.outbound]: cannot set up outgoing mail: {e} (check smart_host and dns_servers)"
        )
    })?;
    let settings = crate::smtp::ClientSettings::from_config(&config.smtp.outbound)
        .map_err(|e| anyhow::anyhow!("[smtp.outbound] {e}"))?;
    let directory = Arc::new(Directory::default());
    let (mailer, invited) = Mailer::new(
        policy.clone(),
        router,
        settings,
        &config.smtp.outbound,
        destinations,
        Records {
            directory: directory.clone(),
            registry: registry.clone(),
            store: store.clone(),
        },
    );

    // F4: the one MSRP listener of every session.
    let endpoint = Endpoint::bind(&config.msrp)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let msrp_addr = endpoint.local_addr();
    tracing::info!(%msrp_addr, "MSRP listening");

    let sip = SipListeners::bind(
        config.sip.listen,
        sip::message::Limits::default(),
        config.sip.udp_receive_buffer,
    )
    .await
    .with_context(|| {
        format!(
            "[sip] listen = {}: cannot bind UDP and TCP",
            config.sip.listen
        )
    })?;
    let sip_addr = sip.local_addr();
    let restored_peer = sip.udp_replier();
    let (inbound, requests) = mpsc::channel(1024);
    sip.serve(inbound);
    let mut core = Core::new(CoreConfig {
        gateway: GatewayFacts {
            sip_domain: config.sip.domain.clone(),
            mail_domain: config.smtp.inbound.domain.clone(),
        },
        contact: format!("<sip:iwf@{sip_addr}>"),
        sent_by: sip_addr.to_string(),
        // Checked at load: a wildcard listener has an advertised host.
        msrp_host: match &config.msrp.advertise {
            Some(host) => {
                Host::parse(host).map_err(|e| anyhow::anyhow!("[msrp] advertise: {e}"))?
            }
            None => Host::Ip(msrp_addr.ip()),
        },
        msrp_port: msrp_addr.port(),
        timers: Timers {
            t1: Duration::from_millis(config.sip.t1_ms),
            ..Timers::default()
        },
    });
    let (chat_ended, ended) = mpsc::unbounded_channel();
    let chat_sessions = ChatSessions::default();
    let (user_events, users) = mpsc::unbounded_channel();

    // F3, F5, F8: the e-mail user's mail comes in here.
    let (smtp_listener, smtp_settings) = crate::smtp::inbound::bind(&config.smtp.inbound)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let smtp_addr = smtp_listener.local_addr()?;
    let replies = Replies::new(
        directory,
        policy.clone(),
        chat_sessions.clone(),
        user_events.clone(),
        stats.clone(),
        registry.clone(),
        store.clone(),
    );
    tokio::spawn(crate::smtp::inbound::serve(
        smtp_listener,
        smtp_settings,
        Arc::new(replies),
        std::future::pending(),
    ));
    tracing::info!(%smtp_addr, "inbound SMTP listening");

    let mut mail = Mail {
        mailer,
        invited,
        chats: Chats::new(
            endpoint,
            chat_sessions,
            chat_ended,
            HoldLimits {
                messages: config.msrp.held_max_messages,
                bytes: config.msrp.held_max_bytes,
            },
            stats.clone(),
            registry.clone(),
        ),
        expiries: user_events,
        timers: HashMap::new(),
    };
    let restored = restore(&store, &mut core, &mut mail, &stats, restored_peer).await?;
    tokio::spawn(run_sessions(
        core,
        policy.clone(),
        mail,
        Seen { stats, registry },
        store,
        requests,
        ended,
        users,
        restored,
    ));
    tracing::info!(%sip_addr, "SIP listening on UDP and TCP");
    Ok(Gateway {
        policy,
        admin_addr,
        sip_addr,
        msrp_addr,
        smtp_addr,
    })
}

/// The mail side of the sessions, the outcomes of their invitations, and their chats.
struct Mail {
    mailer: Mailer,
    invited: mpsc::UnboundedReceiver<Invited>,
    chats: Chats,
    /// Where an invitation's expiry timer reports (F3).
    expiries: mpsc::UnboundedSender<UserEvent>,
    /// The expiry timers running, stopped when their session ends (a day by default:
    /// they must not outlive it).
    timers: HashMap<SessionKey, Expiry>,
}

/// An invitation's expiry: its timer, and when it fires (stored with the session).
struct Expiry {
    timer: tokio::task::AbortHandle,
    /// Unix ms.
    at: i64,
}

impl Mail {
    /// The outcome of `key`'s invitation, for the core; a mailed one starts its expiry.
    fn invited(&mut self, key: &SessionKey, outcome: &InvitationOutcome, expiry: Duration) {
        self.mailer.settled(key, outcome);
        if outcome.is_ok() {
            let at = store::unix_ms(SystemTime::now() + expiry);
            self.expire(key, at);
        }
    }

    /// Starts `key`'s invitation expiry, at `at` (Unix ms; at once when past).
    fn expire(&mut self, key: &SessionKey, at: i64) {
        let wait = u64::try_from(at - store::unix_ms(SystemTime::now())).unwrap_or(0);
        let (events, expired) = (self.expiries.clone(), key.clone());
        let timer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let _ = events.send(UserEvent::Expired { key: expired });
        });
        let timer = timer.abort_handle();
        self.timers.insert(key.clone(), Expiry { timer, at });
    }

    /// Session `key` is over: its chat closes, its mail side finishes, its timer stops.
    fn closed(&mut self, key: &SessionKey, notify: Notify) {
        self.chats.close(key);
        self.mailer.closed(key, notify);
        if let Some(expiry) = self.timers.remove(key) {
            expiry.timer.abort();
        }
    }
}

/// Reads back every session stored before the start (issue 15): invitations awaiting
/// the e-mail user wait on, with their mail threads and expiry; others lost their chat
/// connection and get a BYE (the effects returned, for the first turn). A row that
/// cannot be read is logged and dropped.
async fn restore(
    store: &Store,
    core: &mut Core<Replier>,
    mail: &mut Mail,
    stats: &SessionStats,
    peer: Replier,
) -> anyhow::Result<Vec<Effect<Replier>>> {
    let rows = store.sessions().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let threads = store.threads().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = Instant::now();
    let mut effects = Vec::new();
    let mut unreadable = Changes::default();
    for row in &rows {
        let restored = match core.restore(row, peer.clone(), now) {
            Ok(restored) => restored,
            Err(why) => {
                tracing::error!(session = %row.id, error = %why, "stored session unreadable: dropped");
                stats.recovered(&row.phase, "unreadable");
                unreadable.forgotten.push(row.id.clone());
                continue;
            }
        };
        let Restored {
            key,
            facts,
            resumed,
            ..
        } = restored;
        effects.extend(restored.effects);
        if let Resumed::Ended = resumed {
            stats.recovered(&row.phase, "ended");
            continue;
        }
        let thread = threads
            .get(&row.id)
            .ok_or("no stored mail thread".to_string());
        match thread.and_then(|thread| mail.mailer.restore(key.clone(), facts, thread)) {
            Ok(()) => {
                stats.recovered(&row.phase, "waiting");
                if let Some(at) = row.expires_at {
                    mail.expire(&key, at);
                }
            }
            Err(why) => {
                tracing::error!(session = %row.id, error = %why, "stored session without its mail thread: ending it");
                stats.recovered(&row.phase, "ended");
                let reason = EndReason {
                    cause: 500,
                    text: format!("the IWF restarted and lost the session's mail thread ({why})"),
                };
                effects.extend(core.end_session(&key, &reason, now));
            }
        }
    }
    store
        .commit(&unreadable)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !rows.is_empty() {
        tracing::info!(sessions = rows.len(), "sessions restored from the store");
    }
    Ok(effects)
}

/// What operators see of the sessions: the gauges of `GET /metrics` and the registry of
/// `GET /sessions`.
struct Seen {
    stats: Arc<SessionStats>,
    registry: Arc<Registry>,
}

/// Drives the session core: requests from the transports, decisions, invitation outcomes,
/// timers, bytes back out. Policy decisions run on the blocking pool (`spawn_blocking`) and
/// mail on the mailer's tasks, never on this task: a slow policy or SMTP server holds its
/// own INVITE pending, not every session. Each turn ends with one commit of what it
/// changed, before its messages go out.
#[allow(clippy::too_many_arguments)]
async fn run_sessions(
    mut core: Core<Replier>,
    policy: Arc<PolicyHost>,
    mut mail: Mail,
    seen: Seen,
    store: Arc<Store>,
    mut requests: mpsc::Receiver<Inbound>,
    mut chats_ended: mpsc::UnboundedReceiver<(SessionKey, String)>,
    mut users: mpsc::UnboundedReceiver<UserEvent>,
    restored: Vec<Effect<Replier>>,
) {
    let (decided, mut decisions) = mpsc::unbounded_channel::<(SessionKey, InviteDecision)>();
    let mut effects = restored;
    loop {
        seen.stats.set(core.sessions(), core.transactions());
        // Before the effects: a decision or mail they start may record into the entries
        // this turn opened.
        seen.registry.apply(core.journal());
        let effects_now = commit(&mut core, &mail, &store, std::mem::take(&mut effects)).await;
        for effect in effects_now {
            match effect {
                Effect::Send { peer, bytes } => peer.send(bytes).await,
                Effect::Decide { key, session } => {
                    let (policy, decided) = (policy.clone(), decided.clone());
                    let registry = seen.registry.clone();
                    tokio::task::spawn_blocking(move || {
                        let decision = policy.on_invite(&session);
                        let answer = invite_answer(&decision.value);
                        let id = &session.session_id;
                        registry.decided(id, Decision::OnInvite, &answer, &decision.by);
                        let decision = decision.value;
                        // The receiver lives as long as this loop; gone means shutting down.
                        let _ = decided.send((key, decision));
                    });
                }
                Effect::MailInvitation { key, mail: facts } => mail.mailer.invite(key, facts),
                Effect::MailAccepted { key, mail: facts } => mail.mailer.accepted(key, facts),
                Effect::ChatOpen { key, msrp, held } => {
                    let mailer = mail.mailer.chat(&key);
                    mail.chats.open(key, &msrp, mailer, held);
                }
                Effect::ChatConsent { key, consent } => mail.chats.consent(&key, consent),
                Effect::SessionClosed { key, notify } => mail.closed(&key, notify),
            }
        }
        seen.stats.set_mail(mail.mailer.sessions());
        seen.stats.set_chats(mail.chats.len());

        let wake = core.poll_timeout();
        effects = tokio::select! {
            inbound = requests.recv() => {
                let Some(inbound) = inbound else { return };
                on_inbound(&mut core, inbound)
            }
            Some((key, decision)) = decisions.recv() => core.on_decision(&key, decision, Instant::now()),
            Some((key, outcome, expiry)) = mail.invited.recv() => {
                seen.stats.invitation(outcome.is_ok());
                mail.invited(&key, &outcome, expiry);
                core.on_invitation(&key, outcome, Instant::now())
            }
            Some((key, why)) = chats_ended.recv() => {
                mail.chats.ended(&key);
                core.end_session(&key, &chat_lost(why), Instant::now())
            }
            Some(event) = users.recv() => on_user(&mut core, event, Instant::now()),
            _ = sleep_until(wake) => core.handle_timeout(Instant::now()),
        };
        // Whatever else is ready goes in the same turn: the core's timers are polled once per
        // turn, not once per message, and the store commits once per turn.
        for _ in 0..BATCH {
            if let Ok(inbound) = requests.try_recv() {
                effects.extend(on_inbound(&mut core, inbound));
            } else if let Ok((key, decision)) = decisions.try_recv() {
                effects.extend(core.on_decision(&key, decision, Instant::now()));
            } else if let Ok((key, outcome, expiry)) = mail.invited.try_recv() {
                seen.stats.invitation(outcome.is_ok());
                mail.invited(&key, &outcome, expiry);
                effects.extend(core.on_invitation(&key, outcome, Instant::now()));
            } else {
                break;
            }
        }
    }
}

/// Commits what the turn changed (issue 15: nothing is acknowledged before it is stored)
/// and gives back the effects to carry out. When the commit fails, the turn's messages
/// are held back (a 200 OK then goes out with its next retransmission, once a commit
/// succeeds; the peer retransmits its requests) and the changes wait for the next turn.
async fn commit(
    core: &mut Core<Replier>,
    mail: &Mail,
    store: &Store,
    mut effects: Vec<Effect<Replier>>,
) -> Vec<Effect<Replier>> {
    let mut changes = core.changes();
    if changes.is_empty() {
        return effects;
    }
    for row in &mut changes.saved {
        let key = SessionKey {
            call_id: row.call_id.clone(),
            local_tag: row.local_tag.clone(),
        };
        row.expires_at = mail.timers.get(&key).map(|expiry| expiry.at);
    }
    if let Err(e) = store.commit(&changes).await {
        tracing::error!(error = %e, "store commit failed: this turn's SIP messages are held back");
        core.uncommitted(changes);
        effects.retain(|effect| !matches!(effect, Effect::Send { .. }));
    }
    effects
}

/// The on-invite answer as the ladder shows it.
fn invite_answer(decision: &InviteDecision) -> String {
    match decision {
        InviteDecision::AcceptOnBehalf => "accept-on-behalf".into(),
        InviteDecision::AskUser => "ask-user".into(),
        InviteDecision::Refuse(status) => format!("refuse {}", status.code),
    }
}

/// What the e-mail user's mail asks of the core (F3, F8), answered in the same turn.
fn on_user(core: &mut Core<Replier>, event: UserEvent, now: Instant) -> Vec<Effect<Replier>> {
    match event {
        UserEvent::Phase { key, reply } => {
            let _ = reply.send(core.user_phase(&key));
            Vec::new()
        }
        UserEvent::Accepted { key, done } => {
            let effects = core.user_accepted(&key);
            let _ = done.send(effects.is_some());
            effects.unwrap_or_default()
        }
        UserEvent::End { key, cause, text } => {
            core.end_session(&key, &EndReason { cause, text }, now)
        }
        UserEvent::Expired { key } => core.invitation_expired(&key, now),
    }
}

/// The Reason of the BYE (RFC 3326) when a session's MSRP side ended without the SIP side
/// asking: the chat cannot go on.
fn chat_lost(why: String) -> EndReason {
    EndReason {
        cause: 480,
        text: format!("MSRP: {why}"),
    }
}

/// Messages and decisions taken in one turn of [`run_sessions`] at most.
const BATCH: usize = 64;

fn on_inbound(core: &mut Core<Replier>, inbound: Inbound) -> Vec<Effect<Replier>> {
    let transport = match inbound.reply {
        Replier::Udp { .. } | Replier::UdpHost { .. } => sip::message::Transport::Datagram,
        Replier::Tcp(_) => sip::message::Transport::Stream,
    };
    match inbound.message.method() {
        Some(_) => core.on_request(inbound.message, transport, inbound.reply, Instant::now()),
        None => core.on_response(inbound.message, Instant::now()),
    }
}

/// The IWF's requests within a dialog: over UDP from the listening socket to the next hop
/// (a domain looked up when sent); over TCP on the connection the dialog came on (RFC 3261
/// 18.1.1 reuse; no new outbound connection yet).
impl Peer for Replier {
    fn toward(&self, target: &Target) -> Option<Self> {
        match self {
            Replier::Udp { socket, .. } | Replier::UdpHost { socket, .. } => {
                let socket = socket.clone();
                Some(match &target.host {
                    Host::Ip(ip) => Replier::Udp {
                        socket,
                        target: std::net::SocketAddr::new(*ip, target.port),
                    },
                    Host::Name(host) => Replier::UdpHost {
                        socket,
                        host: host.clone(),
                        port: target.port,
                    },
                })
            }
            Replier::Tcp(connection) => Some(Replier::Tcp(connection.clone())),
        }
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Serves until SIGINT or SIGTERM.
/// `iwf run`: [`start`], then one line on stdout once every listener is bound, for
/// supervisors and tests (with port 0, the port the system chose):
/// `iwf ready sip=ADDR msrp=ADDR smtp=ADDR admin=ADDR`; then serves until SIGTERM or ^C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let gateway = start(&config).await?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let line = format!(
            "iwf ready sip={} msrp={} smtp={} admin={}",
            gateway.sip_addr, gateway.msrp_addr, gateway.smtp_addr, gateway.admin_addr
        );
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            tracing::warn!(error = %e, "the ready line could not be written on stdout");
        }
    }
    wait_for_shutdown().await;
    tracing::info!("shutting down");
    Ok(())
}

async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
