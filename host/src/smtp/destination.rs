//! How many SMTP connections go to one destination at once, and how many channels are kept
//! open between a session's mails. Receiving MTAs limit what one client may hold (RFC 5321
//! 4.5.3.2 leaves them free to; Postfix's smtpd greets a client's 51st connection with 421,
//! `smtpd_client_connection_count_limit`), and a channel kept per live session would
//! otherwise reach that limit with a few dozen sessions and turn every new invitation into
//! a refused greeting. So, as Postfix's own client does per destination
//! (`default_destination_concurrency_limit`), connections beyond the limit wait for one to
//! close instead of being refused by the server.
//!
//! A destination is the smart host when one is set, else the recipient's domain. Channels
//! are kept between mails only below a lower limit, so that kept channels never hold every
//! connection a destination allows: at least `max_connections_per_destination -
//! max_idle_channels_per_destination` are always left to mails being sent, and a wait for
//! one ends when a mail does.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::SmtpOutboundConfig;
use crate::metrics::{self, Counter};
use crate::smtp::{SmtpFailure, Stage};

/// RFC 3463 X.4.5: mail system congestion.
const CONGESTION: &str = "4.4.5";

/// The connection limits of every destination, made as destinations are first used and
/// forgotten when no channel to them is left.
pub struct Destinations {
    connections: usize,
    idle_per_destination: usize,
    /// `max_idle_channels`: channels kept between mails, all destinations together.
    idle: Arc<Semaphore>,
    table: Mutex<Table>,
    stats: Arc<Stats>,
}

/// `GET /metrics`: what the limits are doing.
#[derive(Debug, Default)]
struct Stats {
    /// Connections leased (open or opening), and those kept between mails.
    open: AtomicU64,
    kept: AtomicU64,
    /// Leases that had to wait for a connection, and those that waited in vain.
    waited: Counter,
    timed_out: Counter,
}

struct Table {
    limits: HashMap<String, Weak<Limits>>,
    /// The table's size at which entries of forgotten destinations are pruned.
    prune_at: usize,
}

/// One destination's limits.
struct Limits {
    connections: Arc<Semaphore>,
    idle: Arc<Semaphore>,
    /// The gateway-wide `max_idle_channels`.
    all_idle: Arc<Semaphore>,
    stats: Arc<Stats>,
}

/// The right to one open connection to a destination; its channel holds it, and closing
/// the channel gives it back.
pub struct Lease {
    limits: Arc<Limits>,
    _connection: OwnedSemaphorePermit,
    /// Held while the channel is kept between mails: this destination's place, then the
    /// gateway-wide one.
    kept: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("kept", &self.kept.is_some())
            .finish_non_exhaustive()
    }
}

impl Destinations {
    /// The limits of `[smtp.outbound]`: `max_connections_per_destination`,
    /// `max_idle_channels_per_destination` and `max_idle_channels`.
    pub fn new(config: &SmtpOutboundConfig) -> Self {
        Self {
            connections: config.max_connections_per_destination,
            idle_per_destination: config.max_idle_channels_per_destination,
            idle: Arc::new(Semaphore::new(config.max_idle_channels)),
            table: Mutex::new(Table {
                limits: HashMap::new(),
                prune_at: 64,
            }),
            stats: Arc::default(),
        }
    }

    /// A connection to `destination`, once fewer than the limit are open; waits at most
    /// `wait`, then fails as a temporary `connect` failure (the server was not asked).
    pub async fn lease(&self, destination: &str, wait: Duration) -> Result<Lease, SmtpFailure> {
        let limits = self.limits(destination);
        let permit = match limits.connections.clone().try_acquire_owned() {
            Ok(permit) => Ok(permit),
            Err(_) => {
                self.stats.waited.inc();
                let acquired = limits.connections.clone().acquire_owned();
                match tokio::time::timeout(wait, acquired).await {
                    Ok(Ok(permit)) => Ok(permit),
                    // The semaphores are never closed: a timeout is the only way here.
                    _ => Err(()),
                }
            }
        };
        match permit {
            Ok(permit) => {
                self.stats.open.fetch_add(1, Ordering::Relaxed);
                Ok(Lease {
                    limits,
                    _connection: permit,
                    kept: None,
                })
            }
            Err(()) => {
                self.stats.timed_out.inc();
                let text = format!(
                    "no connection to {destination} free within {} ms: {} are open \
                     (max_connections_per_destination)",
                    wait.as_millis(),
                    self.connections
                );
                Err(SmtpFailure::local(
                    Stage::Connect,
                    Some(CONGESTION),
                    text,
                    false,
                ))
            }
        }
    }

    /// `iwf_smtp_connections{state}` and `iwf_smtp_connection_waits_total{outcome}`.
    pub fn render_metrics(&self, out: &mut String) {
        let stats = &self.stats;
        metrics::family(
            out,
            "iwf_smtp_connections",
            "gauge",
            "Outgoing SMTP connections: open (or opening), and of those kept between a \
             session's mails.",
        );
        for (state, gauge) in [("open", &stats.open), ("kept", &stats.kept)] {
            let value = gauge.load(Ordering::Relaxed);
            let _ = writeln!(out, "iwf_smtp_connections{{state=\"{state}\"}} {value}");
        }
        metrics::family(
            out,
            "iwf_smtp_connection_waits_total",
            "counter",
            "Connections that waited for max_connections_per_destination: all, and those \
             that gave up after connect_timeout_ms.",
        );
        for (outcome, counter) in [("waited", &stats.waited), ("timed_out", &stats.timed_out)] {
            let value = counter.get();
            let _ = writeln!(
                out,
                "iwf_smtp_connection_waits_total{{outcome=\"{outcome}\"}} {value}"
            );
        }
    }

    fn limits(&self, destination: &str) -> Arc<Limits> {
        let mut table = self.table.lock().expect("destination table poisoned");
        if let Some(limits) = table.limits.get(destination).and_then(Weak::upgrade) {
            return limits;
        }
        if table.limits.len() >= table.prune_at {
            table.limits.retain(|_, limits| limits.strong_count() > 0);
            table.prune_at = (table.limits.len() * 2).max(64);
        }
        let limits = Arc::new(Limits {
            connections: Arc::new(Semaphore::new(self.connections)),
            idle: Arc::new(Semaphore::new(self.idle_per_destination)),
            all_idle: self.idle.clone(),
            stats: self.stats.clone(),
        });
        table
            .limits
            .insert(destination.to_owned(), Arc::downgrade(&limits));
        limits
    }
}

impl Lease {
    /// Reserves the channel a place among those kept between mails, this destination's
    /// and the gateway's; `false` when either is full: QUIT the channel, and open one
    /// again for the session's next mail. Kept once, kept until the channel closes.
    pub fn keep(&mut self) -> bool {
        if self.kept.is_some() {
            return true;
        }
        let Ok(here) = self.limits.idle.clone().try_acquire_owned() else {
            return false;
        };
        let Ok(everywhere) = self.limits.all_idle.clone().try_acquire_owned() else {
            return false;
        };
        self.kept = Some((here, everywhere));
        self.limits.stats.kept.fetch_add(1, Ordering::Relaxed);
        true
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let stats = &self.limits.stats;
        stats.open.fetch_sub(1, Ordering::Relaxed);
        if self.kept.is_some() {
            stats.kept.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destinations(connections: usize, per_destination: usize, idle: usize) -> Destinations {
        Destinations::new(&SmtpOutboundConfig {
            max_connections_per_destination: connections,
            max_idle_channels_per_destination: per_destination,
            max_idle_channels: idle,
            ..SmtpOutboundConfig::default()
        })
    }

    const SHORT: Duration = Duration::from_millis(30);

    #[tokio::test]
    async fn a_destination_has_at_most_its_limit_of_connections() {
        let d = destinations(2, 1, 10);
        let first = d.lease("example.net", SHORT).await.unwrap();
        let _second = d.lease("example.net", SHORT).await.unwrap();
        let refused = d.lease("example.net", SHORT).await.unwrap_err();
        assert_eq!(refused.stage, Stage::Connect);
        assert_eq!(refused.enhanced_code.as_deref(), Some("4.4.5"));
        assert!(!refused.permanent);
        assert!(refused.text.contains("example.net"), "{}", refused.text);
        assert!(refused.text.contains("max_connections_per_destination"));
        // Another destination has limits of its own.
        d.lease("example.org", SHORT).await.unwrap();
        let mut text = String::new();
        d.render_metrics(&mut text);
        // example.org's lease is gone already.
        assert!(
            text.contains("iwf_smtp_connections{state=\"open\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("iwf_smtp_connection_waits_total{outcome=\"waited\"} 1\n"));
        assert!(text.contains("iwf_smtp_connection_waits_total{outcome=\"timed_out\"} 1\n"));
        // A closed channel gives its connection back.
        drop(first);
        d.lease("example.net", SHORT).await.unwrap();
    }

    #[tokio::test]
    async fn a_waiting_connection_gets_the_first_one_given_back() {
        let d = Arc::new(destinations(1, 0, 10));
        let held = d.lease("example.net", SHORT).await.unwrap();
        let waiting = {
            let d = d.clone();
            tokio::spawn(async move { d.lease("example.net", Duration::from_secs(5)).await })
        };
        tokio::time::sleep(SHORT).await;
        assert!(!waiting.is_finished());
        drop(held);
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn channels_are_kept_within_both_idle_limits() {
        let d = destinations(10, 2, 3);
        let mut net: Vec<Lease> = Vec::new();
        for _ in 0..3 {
            net.push(d.lease("example.net", SHORT).await.unwrap());
        }
        assert!(net[0].keep());
        assert!(net[0].keep(), "kept once, kept until closed");
        assert!(net[1].keep());
        assert!(!net[2].keep(), "the destination's limit");
        let mut org = d.lease("example.org", SHORT).await.unwrap();
        assert!(org.keep());
        let mut com = d.lease("example.com", SHORT).await.unwrap();
        assert!(!com.keep(), "the gateway-wide limit");
        let mut text = String::new();
        d.render_metrics(&mut text);
        assert!(
            text.contains("iwf_smtp_connections{state=\"kept\"} 3\n"),
            "{text}"
        );
        // A kept channel that closes makes room.
        net.remove(0);
        assert!(net[1].keep());
        drop(org);
        assert!(com.keep());
    }

    #[tokio::test]
    async fn forgotten_destinations_are_pruned() {
        let d = destinations(1, 0, 0);
        let kept = d.lease("kept.example", SHORT).await.unwrap();
        for i in 0..200 {
            d.lease(&format!("d{i}.example"), SHORT).await.unwrap();
        }
        {
            let table = d.table.lock().unwrap();
            assert!(table.limits.len() <= 64, "{} entries", table.limits.len());
            assert!(table.limits.contains_key("kept.example"));
        }
        // Its limits are the ones still in force.
        assert!(d.lease("kept.example", SHORT).await.is_err());
        drop(kept);
    }
}
