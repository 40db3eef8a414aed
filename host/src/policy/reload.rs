//! The triggers of a hot swap: the policy file changing on disk, and SIGHUP. (The third,
//! `POST /policy/reload`, is in `admin`.) Each calls [`PolicyHost::reload`], which loads
//! and type-checks the new file before swapping; a file that fails is refused and the
//! served version stays.
//!
//! The file is polled (metadata every `[policy] watch_interval_ms`, 250 ms by default):
//! a deploy that replaces the file by rename, rewrites it in place, or swaps a symlink is
//! seen the same way, with no inotify watch to lose when the file's inode changes.

use super::host::{PolicyHost, PolicySource};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What identifies a version of the file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    // `metadata` follows symlinks: a symlink swap changes the target's stamp.
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&meta),
    })
}

/// Reloads when the file at the host's source path changes. Returns at once for the
/// embedded policy (there is no file to watch).
pub fn spawn_file_watch(
    host: Arc<PolicyHost>,
    interval: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    let PolicySource::File(path) = host.source().clone() else {
        return None;
    };
    Some(tokio::spawn(watch(host, path, interval)))
}

async fn watch(host: Arc<PolicyHost>, path: PathBuf, interval: Duration) {
    let mut last = stamp(&path);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = stamp(&path);
        if now == last || now.is_none() {
            // Gone for a moment (a deploy between unlink and rename): keep serving.
            continue;
        }
        last = now;
        tracing::info!(path = %path.display(), "policy file changed; reloading");
        // A refused file is logged and counted by `reload`; the served version stays.
        let _ = reload_in_background(&host).await;
    }
}

/// Reloads on every SIGHUP.
#[cfg(unix)]
pub fn spawn_sighup(host: Arc<PolicyHost>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the policy");
            let _ = reload_in_background(&host).await;
        }
    }))
}

/// Compiling takes tens of milliseconds: off the async workers.
pub async fn reload_in_background(
    host: &Arc<PolicyHost>,
) -> Result<super::host::Reloaded, super::loaded::LoadError> {
    let host = host.clone();
    tokio::task::spawn_blocking(move || host.reload())
        .await
        .expect("policy reload task panicked")
}
