//! What the session layer shows on `GET /metrics`: gauges set by the driver after each
//! event (the core itself stays free of shared state).

use crate::metrics;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct SessionStats {
    sessions: AtomicU64,
    transactions: AtomicU64,
    mail_sessions: AtomicU64,
    /// Invitations mailed (250) and refused (AA3 error answer).
    invitations_mailed: AtomicU64,
    invitations_refused: AtomicU64,
}

impl SessionStats {
    pub fn set(&self, sessions: usize, transactions: usize) {
        self.sessions.store(sessions as u64, Ordering::Relaxed);
        self.transactions
            .store(transactions as u64, Ordering::Relaxed);
    }

    /// Sessions with mail state (`session::mailer`).
    pub fn set_mail(&self, mail_sessions: usize) {
        self.mail_sessions
            .store(mail_sessions as u64, Ordering::Relaxed);
    }

    /// One invitation's outcome (F2).
    pub fn invitation(&self, mailed: bool) {
        let counter = if mailed {
            &self.invitations_mailed
        } else {
            &self.invitations_refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
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
        metrics::family(
            out,
            "iwf_mail_sessions",
            "gauge",
            "Sessions with outgoing mail state (invitation in flight or mailed).",
        );
        let _ = writeln!(
            out,
            "iwf_mail_sessions {}",
            self.mail_sessions.load(Ordering::Relaxed)
        );
        metrics::family(
            out,
            "iwf_invitations_total",
            "counter",
            "E-mail invitations by outcome: mailed (250, INVITE answered 200) or refused.",
        );
        for (outcome, counter) in [
            ("mailed", &self.invitations_mailed),
            ("refused", &self.invitations_refused),
        ] {
            let _ = writeln!(
                out,
                "iwf_invitations_total{{outcome=\"{outcome}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
    }
}
