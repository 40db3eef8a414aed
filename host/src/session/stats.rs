//! What the session layer shows on `GET /metrics`: gauges set by the driver after each
//! event (the core itself stays free of shared state).

use crate::metrics;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct SessionStats {
    sessions: AtomicU64,
    transactions: AtomicU64,
}

impl SessionStats {
    pub fn set(&self, sessions: usize, transactions: usize) {
        self.sessions.store(sessions as u64, Ordering::Relaxed);
        self.transactions
            .store(transactions as u64, Ordering::Relaxed);
    }

    pub fn render_metrics(&self, out: &mut String) {
        metrics::family(
            out,
            "iwf_sip_sessions",
            "gauge",
            "CPM sessions held (awaiting ACK or live).",
        );
        let _ = writeln!(
            out,
            "iwf_sip_sessions {}",
            self.sessions.load(Ordering::Relaxed)
        );
        metrics::family(
            out,
            "iwf_sip_transactions",
            "gauge",
            "SIP transactions alive.",
        );
        let _ = writeln!(
            out,
            "iwf_sip_transactions {}",
            self.transactions.load(Ordering::Relaxed)
        );
    }
}
