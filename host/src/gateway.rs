//! `iwf run`: starts the gateway's listeners from a [`Config`] and serves until stopped.
//!
//! Today that is the policy plane (policy host, hot-swap triggers), the admin listener and
//! the SIP transports; sessions, MSRP and SMTP join here as their issues land.

use crate::config::Config;
use crate::net::sip::{Inbound, SipListeners};
use crate::policy::{Limits, PolicyEngine, PolicyHost, PolicySource, reload};
use crate::sip;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// The running gateway's handles, for tests and for `main`.
pub struct Gateway {
    pub policy: Arc<PolicyHost>,
    pub admin_addr: std::net::SocketAddr,
    pub sip_addr: std::net::SocketAddr,
}

/// Binds every listener and starts serving in the background of the current runtime.
pub async fn start(config: &Config) -> anyhow::Result<Gateway> {
    let engine = PolicyEngine::new(Limits::from(&config.policy))
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

    let admin = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("[admin] listen = {}: cannot bind", config.admin.listen))?;
    let admin_addr = admin.local_addr()?;
    let admin_policy = policy.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::admin::serve(admin, admin_policy).await {
            tracing::error!(error = %e, "admin listener stopped");
        }
    });
    tracing::info!(%admin_addr, "admin listener ready");

    let sip = SipListeners::bind(config.sip.listen, sip::message::Limits::default())
        .await
        .with_context(|| {
            format!(
                "[sip] listen = {}: cannot bind UDP and TCP",
                config.sip.listen
            )
        })?;
    let sip_addr = sip.local_addr();
    let (inbound, requests) = tokio::sync::mpsc::channel(1024);
    sip.serve(inbound);
    tokio::spawn(refuse_sessions(requests));
    tracing::info!(%sip_addr, "SIP listening on UDP and TCP");
    tracing::warn!(
        "chat sessions (INVITE), MSRP and SMTP are not built yet: INVITE is answered 480"
    );
    Ok(Gateway {
        policy,
        admin_addr,
        sip_addr,
    })
}

/// Until the session layer lands (issue 4's session core), a request that needs a session
/// is refused with a temporary error that says why; nothing pretends to be a session.
async fn refuse_sessions(mut requests: tokio::sync::mpsc::Receiver<Inbound>) {
    use crate::sip::message::{ResponseSpec, StartLine, build_response};
    while let Some(inbound) = requests.recv().await {
        let StartLine::Request { method, .. } = &inbound.request.start else {
            continue;
        };
        if method.as_str() == "ACK" {
            continue; // never answered (RFC 3261 17.2.1)
        }
        let (status, why) = match method.as_str() {
            "INVITE" => (480, "chat sessions are not available yet on this gateway"),
            _ => (481, "no such session"),
        };
        let warning = sip::message::warning_value(crate::net::sip::AGENT, why);
        let response = build_response(
            &inbound.request,
            &ResponseSpec {
                status,
                to_tag: Some(&crate::net::sip::new_tag()),
                extra_headers: &[("Warning", &warning)],
                ..ResponseSpec::default()
            },
        );
        tracing::info!(source = %inbound.source, method = method.as_str(), status, "session request refused: {why}");
        inbound.reply.send(response).await;
    }
}

/// Serves until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let _gateway = start(&config).await?;
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
