//! `iwf run`: starts the gateway from a [`Config`] and serves until stopped: the store
//! (and the sessions it kept, `restore`), the policy plane (policy host, hot-swap
//! triggers), the admin listener, SIP, MSRP, outgoing and inbound mail, and the session
//! driver (`driver`).

mod driver;
mod restore;

use crate::config::Config;
use crate::msrp::Endpoint;
use crate::net::sip::SipListeners;
use crate::policy::world::Gateway as GatewayFacts;
use crate::policy::{Limits, PolicyEngine, PolicyHost, PolicySource, reload};
use crate::sdp::uri::Host;
use crate::session::carry::{Chats, HoldLimits};
use crate::session::core::{Core, CoreConfig};
use crate::session::directory::Directory;
use crate::session::mailer::{Mailer, Records};
use crate::session::registry::Registry;
use crate::session::replies::{ChatSessions, Replies};
use crate::session::stats::SessionStats;
use crate::sip::transaction::Timers;
use crate::smtp::{Destinations, Router};
use crate::store::Store;
use anyhow::Context;
use driver::{Mail, Seen, run_sessions};
use restore::restore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
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
