//! What the session layer shows on `GET /metrics`: gauges set by the driver after each
//! event (the core itself stays free of shared state).

use crate::metrics;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// What became of the sessions read back from the store at start: waiting on (an
/// invitation), reconnecting (a live one offered a new chat connection by a re-INVITE),
/// ended with a BYE (their chat was lost), mailing (freed before the restart,
/// its spooled chat messages mailed now), or unreadable (dropped).
pub const RECOVERED: [&str; 5] = ["waiting", "reconnecting", "ended", "mailing", "unreadable"];

/// The phases a session is stored in (`core::durable`), and `unknown` for a row that
/// cannot be read.
pub const STORED_PHASES: [&str; 6] = [
    "awaiting-ack",
    "invited",
    "live",
    "ending",
    "closed",
    "unknown",
];

#[derive(Debug, Default)]
pub struct SessionStats {
    sessions: AtomicU64,
    transactions: AtomicU64,
    mail_sessions: AtomicU64,
    /// Sessions parked: waiting in the store only (issue 15).
    parked: AtomicU64,
    /// Invitations mailed (250) and refused (AA3 error answer).
    invitations_mailed: AtomicU64,
    invitations_refused: AtomicU64,
    /// Sessions read back from the store at start, by stored phase and outcome.
    recovered: [[AtomicU64; RECOVERED.len()]; STORED_PHASES.len()],
    chat_sessions: AtomicU64,
    /// F4 chat messages by outcome: mailed, or answered with an MSRP error.
    to_email: [AtomicU64; 2],
    /// F5 chat mails by outcome: delivered over MSRP, or refused to their sender.
    to_cpm: [AtomicU64; 2],
    /// Inbound mails by the SMTP answer to their data: taken (2yz) or refused.
    inbound: [AtomicU64; 2],
}

/// Which way a chat message went (`iwf_chat_messages_total{direction}`).
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// F4: MSRP -> e-mail.
    ToEmail,
    /// F5: e-mail -> MSRP.
    ToCpm,
}

impl SessionStats {
    pub fn set(&self, sessions: usize, transactions: usize) {
        self.sessions.store(sessions as u64, Ordering::Relaxed);
        self.transactions
            .store(transactions as u64, Ordering::Relaxed);
    }

    /// Sessions parked (`session::core::park`).
    pub fn set_parked(&self, parked: usize) {
        self.parked.store(parked as u64, Ordering::Relaxed);
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

    /// Sessions with an MSRP side open.
    pub fn set_chats(&self, chats: usize) {
        self.chat_sessions.store(chats as u64, Ordering::Relaxed);
    }

    /// One chat message carried (`ok`) or refused, either way.
    pub fn chat(&self, direction: Direction, ok: bool) {
        let counters = match direction {
            Direction::ToEmail => &self.to_email,
            Direction::ToCpm => &self.to_cpm,
        };
        counters[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// One session read back from the store at start: the phase it was stored in (one
    /// of [`STORED_PHASES`], else counted as unknown) and its [`RECOVERED`] outcome.
    pub fn recovered(&self, phase: &str, outcome: &str) {
        let p = STORED_PHASES.iter().position(|p| *p == phase);
        let p = p.unwrap_or(STORED_PHASES.len() - 1);
        if let Some(o) = RECOVERED.iter().position(|o| *o == outcome) {
            self.recovered[p][o].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One inbound mail's data answered: taken (2yz) or refused.
    pub fn inbound(&self, taken: bool) {
        self.inbound[usize::from(!taken)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn render_metrics(&self, out: &mut String) {
        metrics::family(
            out,
            "iwf_sip_sessions",
            "gauge",
            "CPM sessions held: pending (on the policy or the invitation), awaiting ACK, awaiting the e-mail user, live or ending.",
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
            "iwf_sessions_parked",
            "gauge",
            "Invitations awaiting the e-mail user in the store only (in iwf_sessions too).",
        );
        let _ = writeln!(
            out,
            "iwf_sessions_parked {}",
            self.parked.load(Ordering::Relaxed)
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
        metrics::family(
            out,
            "iwf_msrp_sessions",
            "gauge",
            "Sessions with an MSRP side open (connected or awaited).",
        );
        let _ = writeln!(
            out,
            "iwf_msrp_sessions {}",
            self.chat_sessions.load(Ordering::Relaxed)
        );
        metrics::family(
            out,
            "iwf_chat_messages_total",
            "counter",
            "Chat messages by direction (to_email: F4, to_cpm: F5) and outcome.",
        );
        for (direction, counters) in [("to_email", &self.to_email), ("to_cpm", &self.to_cpm)] {
            for (i, outcome) in ["delivered", "failed"].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "iwf_chat_messages_total{{direction=\"{direction}\",outcome=\"{outcome}\"}} {}",
                    counters[i].load(Ordering::Relaxed)
                );
            }
        }
        metrics::family(
            out,
            "iwf_inbound_mails_total",
            "counter",
            "Mails received on [smtp.inbound] by the answer to their data: taken or refused.",
        );
        for (i, result) in ["taken", "refused"].iter().enumerate() {
            let _ = writeln!(
                out,
                "iwf_inbound_mails_total{{result=\"{result}\"}} {}",
                self.inbound[i].load(Ordering::Relaxed)
            );
        }
        metrics::family(
            out,
            "iwf_sessions_recovered_total",
            "counter",
            "Sessions read back from the store at start, by the phase stored and what became of them: waiting on, ended with a BYE, or unreadable.",
        );
        for (phase, counters) in STORED_PHASES.iter().zip(&self.recovered) {
            for (outcome, counter) in RECOVERED.iter().zip(counters) {
                let _ = writeln!(
                    out,
                    "iwf_sessions_recovered_total{{phase=\"{phase}\",outcome=\"{outcome}\"}} {}",
                    counter.load(Ordering::Relaxed)
                );
            }
        }
    }
}
