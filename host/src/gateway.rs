//! `iwf run`: starts the gateway's listeners from a [`Config`] and serves until stopped.
//!
//! Today that is the policy plane (policy host, hot-swap triggers) and the admin listener;
//! the SIP, MSRP and SMTP listeners join here as their issues land.

use crate::config::Config;
use crate::policy::{Limits, PolicyEngine, PolicyHost, PolicySource, reload};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// The running gateway's handles, for tests and for `main`.
pub struct Gateway {
    pub policy: Arc<PolicyHost>,
    pub admin_addr: std::net::SocketAddr,
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
    tracing::warn!(
        sip = %config.sip.listen,
        "SIP, MSRP and SMTP listeners are not built yet: this gateway serves the policy plane only"
    );
    Ok(Gateway { policy, admin_addr })
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
