//! `iwf run`: starts the gateway from a [`Config`] and serves until stopped: the store
//! (and the sessions it kept, `restore`), the policy plane (policy host, hot-swap
//! triggers), the admin listener, SIP, MSRP, outgoing and inbound mail, and the session
//! driver (`driver`).

mod driver;
mod expiry;
mod restore;
mod writer;

use crate::admin::Health;
use crate::config::Config;
use crate::msrp::Endpoint;
use crate::net::sip::SipListeners;
use crate::policy::world::Gateway as GatewayFacts;
use crate::policy::{Limits, PolicyEngine, PolicyHost, PolicySource, reload};
use crate::sdp::uri::Host;
use crate::session::carry::{Chats, HoldLimits, Spool};
use crate::session::core::{Core, CoreConfig};
use crate::session::deliver::{Deliveries, DeliverySettings};
use crate::session::directory::Directory;
use crate::session::mailer::{Mailer, Records};
use crate::session::registry::Registry;
use crate::session::replies::{ChatSessions, Replies};
use crate::session::stats::SessionStats;
use crate::sip::transaction::Timers;
use crate::smtp::{Destinations, Router};
use crate::store::Store;
use anyhow::Context;
use driver::{Drain, Mail, Seen, run_sessions};
use expiry::Expiries;
use restore::{restore, restore_mails};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The running gateway's handles, for tests and for `main`.
pub struct Gateway {
    pub policy: Arc<PolicyHost>,
    pub admin_addr: std::net::SocketAddr,
    pub sip_addr: std::net::SocketAddr,
    pub msrp_addr: std::net::SocketAddr,
    pub smtp_addr: std::net::SocketAddr,
    stopping: Stopping,
}

/// What a drain tells, and waits for.
struct Stopping {
    health: Arc<Health>,
    sessions: mpsc::Sender<Drain>,
    smtp_stop: oneshot::Sender<()>,
    smtp_done: tokio::task::JoinHandle<()>,
    store: Arc<Store>,
    timeout: Duration,
}

impl Gateway {
    /// SIGTERM (issue 15): `GET /healthz` says `draining`; new INVITEs get 503 with
    /// Retry-After and new SMTP connections 421; the INVITEs, ACKs, BYEs, SMTP
    /// transactions and mails in flight finish, within `[store] drain_timeout_ms`; then
    /// the store is closed. What is stored carries on at the next start. `false` when
    /// the timeout cut the drain short.
    pub async fn drain(self) -> bool {
        let s = self.stopping;
        s.health.set_draining();
        let retry_after = u32::try_from(s.timeout.as_secs().max(1)).unwrap_or(u32::MAX);
        let (done, sessions_done) = oneshot::channel();
        let _ = s.sessions.send(Drain { retry_after, done }).await;
        let _ = s.smtp_stop.send(());
        let all = async {
            let _ = sessions_done.await;
            let _ = s.smtp_done.await;
        };
        let in_time = tokio::time::timeout(s.timeout, all).await.is_ok();
        if !in_time {
            let ms = s.timeout.as_millis();
            tracing::warn!(drain_timeout_ms = %ms, "drain cut short: exchanges still in flight");
        }
        s.store.close().await;
        in_time
    }
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
    let health = Arc::new(Health::default());
    let admin_router = crate::admin::router(
        admin_policy,
        admin_metrics,
        registry.clone(),
        health.clone(),
    );
    tokio::spawn(async move {
        if let Err(e) = crate::admin::serve(admin, admin_router).await {
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
            stats: stats.clone(),
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
        crate::sip::message::Limits::default(),
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
    // F5: the inbound spool's deliveries, and their bounces on the mailer's routes.
    let deliveries = Deliveries::new(
        (chat_sessions.clone(), user_events.clone()),
        store.clone(),
        mailer.bouncer(),
        DeliverySettings {
            domain: config.smtp.inbound.domain.clone(),
            give_up: Duration::from_millis(config.smtp.inbound.chat_give_up_ms),
            retry: Duration::from_millis(config.smtp.inbound.chat_retry_ms),
        },
        (stats.clone(), registry.clone()),
    );
    let replies = Replies::new(
        directory.clone(),
        policy.clone(),
        chat_sessions.clone(),
        user_events.clone(),
        (stats.clone(), registry.clone()),
        (store.clone(), deliveries.clone()),
    );
    let (smtp_stop, smtp_stopped) = oneshot::channel::<()>();
    let smtp_done = tokio::spawn(crate::smtp::inbound::serve(
        smtp_listener,
        smtp_settings,
        Arc::new(replies),
        async {
            // Only a drain stops it, not the handle dropped.
            if smtp_stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        },
    ));
    tracing::info!(%smtp_addr, "inbound SMTP listening");

    let mut mail = Mail {
        mailer,
        invited,
        chats: Chats::new(
            endpoint,
            chat_sessions,
            chat_ended,
            (
                HoldLimits {
                    messages: config.msrp.held_max_messages,
                    bytes: config.msrp.held_max_bytes,
                },
                Spool {
                    store: store.clone(),
                    give_up: Duration::from_millis(config.smtp.outbound.chat_give_up_ms),
                    commit_within: Duration::from_millis(config.msrp.disposition_timeout_ms / 2),
                },
            ),
            stats.clone(),
            registry.clone(),
        ),
        expiries: Expiries::default(),
        threads: Vec::new(),
        park_after: config.store.park_after(),
    };
    let (restored, going_on) = restore(&store, &mut core, &mut mail, &stats, restored_peer).await?;
    restore_mails(&store, &going_on, &directory, &deliveries).await?;
    let (drain, drains) = mpsc::channel(1);
    tokio::spawn(run_sessions(
        core,
        policy.clone(),
        mail,
        Seen { stats, registry },
        store.clone(),
        requests,
        ended,
        users,
        restored,
        drains,
    ));
    tracing::info!(%sip_addr, "SIP listening on UDP and TCP");
    Ok(Gateway {
        policy,
        admin_addr,
        sip_addr,
        msrp_addr,
        smtp_addr,
        stopping: Stopping {
            health,
            sessions: drain,
            smtp_stop,
            smtp_done,
            store,
            timeout: Duration::from_millis(config.store.drain_timeout_ms),
        },
    })
}

/// `iwf run`: [`start`], then one line on stdout once every listener is bound, for
/// supervisors and tests (with port 0, the port the system chose):
/// `iwf ready sip=ADDR msrp=ADDR smtp=ADDR admin=ADDR`; then serves until SIGTERM or ^C,
/// and drains ([`Gateway::drain`]) before it returns.
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
    tracing::info!("SIGTERM: draining");
    let in_time = gateway.drain().await;
    tracing::info!(in_time, "drained: exiting");
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
