//! The policy host: the one place the gateway asks for a decision.
//!
//! It holds the current policy version behind an atomic pointer: a decision takes the
//! version current when it starts and finishes on it, a reload swaps the pointer, so a
//! swap never fails a decision. Each decision runs in a fresh instance (no state leaks
//! between sessions), its answer is range-checked, and any failure is answered by the
//! documented fail-safe (`failsafe.rs`), with a warning and a counter.

use super::decision::Decision;
use super::engine::PolicyEngine;
use super::failsafe;
use super::loaded::{LoadError, Policy};
use super::sandbox::{CallError, FailCause};
use super::validate::{self, Check};
use super::world::*;
use crate::metrics::{self, Counter, Histogram};
use arc_swap::ArcSwap;
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::{ComponentNamedList, Lift, Lower};

/// Who made a decision.
#[derive(Clone)]
pub enum DecidedBy {
    /// The policy version that answered.
    Policy(Arc<Policy>),
    /// The fail-safe, because the policy failed so.
    FailSafe(FailCause),
}

/// A decision's answer and who made it.
pub struct Decided<T> {
    pub value: T,
    pub by: DecidedBy,
}

impl<T> Decided<T> {
    pub fn is_fail_safe(&self) -> bool {
        matches!(self.by, DecidedBy::FailSafe(_))
    }
}

#[derive(Default)]
struct DecisionMetrics {
    calls: Counter,
    fail_safes: [Counter; FailCause::ALL.len()],
    latency: Histogram,
}

#[derive(Default)]
struct Metrics {
    decisions: [DecisionMetrics; Decision::ALL.len()],
    loads_ok: Counter,
    loads_failed: Counter,
}

/// Where the served policy comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// The `default` policy built into the binary.
    Embedded,
    /// `[policy] path`.
    File(PathBuf),
}

pub struct PolicyHost {
    engine: Arc<PolicyEngine>,
    current: ArcSwap<Policy>,
    source: PolicySource,
    metrics: Metrics,
    /// Reloads one at a time, so two triggers cannot race an older file over a newer one.
    reloading: Mutex<()>,
}

/// The `default` policy, built by `host/build.rs` from `policies/default`.
pub static EMBEDDED_DEFAULT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/default.wasm"));

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A new version is being served.
    Swapped { sha256: String },
    /// The file is the version already served.
    Unchanged,
}

impl PolicyHost {
    /// Loads the policy from `source`; fails (with the reason) when it cannot be served.
    pub fn new(engine: Arc<PolicyEngine>, source: PolicySource) -> Result<Self, LoadError> {
        let policy = match &source {
            PolicySource::Embedded => engine.load_bytes(EMBEDDED_DEFAULT, "embedded:default")?,
            PolicySource::File(path) => engine.load_file(path)?,
        };
        let host = Self {
            engine,
            current: ArcSwap::from_pointee(policy),
            source,
            metrics: Metrics::default(),
            reloading: Mutex::new(()),
        };
        host.metrics.loads_ok.inc();
        Ok(host)
    }

    /// The version serving new decisions now.
    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// Reloads from the source. A file that fails to load is refused and the served
    /// version stays; decisions in flight finish on the version they started with.
    pub fn reload(&self) -> Result<Reloaded, LoadError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let loaded = match &self.source {
            PolicySource::Embedded => self.engine.load_bytes(EMBEDDED_DEFAULT, "embedded:default"),
            PolicySource::File(path) => self.engine.load_file(path),
        };
        let policy = match loaded {
            Ok(policy) => policy,
            Err(e) => {
                self.metrics.loads_failed.inc();
                tracing::error!(source = ?self.source, error = %e, "policy reload refused; the served version stays");
                return Err(e);
            }
        };
        self.metrics.loads_ok.inc();
        if policy.sha256() == self.current.load().sha256() {
            return Ok(Reloaded::Unchanged);
        }
        let sha256 = policy.sha256_hex();
        tracing::info!(
            name = %policy.info().name,
            version = %policy.info().version,
            sha256 = %sha256,
            "policy swapped"
        );
        self.current.store(Arc::new(policy));
        Ok(Reloaded::Swapped { sha256 })
    }

    /// Runs one decision: fresh instance, deadline, memory cap, range check, fail-safe.
    fn decide<P, R>(
        &self,
        which: Decision,
        params: P,
        check: impl FnOnce(&R) -> Check,
        fail_safe: impl FnOnce() -> R,
    ) -> Decided<R>
    where
        P: ComponentNamedList + Lower,
        (R,): ComponentNamedList + Lift,
    {
        let policy = self.current.load_full();
        let started = Instant::now();
        let answer = policy
            .call_decision(which, params)
            .and_then(|value| match check(&value) {
                Ok(()) => Ok(value),
                Err(detail) => Err(CallError {
                    cause: FailCause::InvalidResult,
                    detail,
                }),
            });
        let m = &self.metrics.decisions[which.index()];
        m.calls.inc();
        m.latency.observe(started.elapsed());
        match answer {
            Ok(value) => Decided {
                value,
                by: DecidedBy::Policy(policy),
            },
            Err(error) => {
                m.fail_safes[error.cause as usize].inc();
                tracing::warn!(
                    decision = which.name(),
                    policy = %policy.info().name,
                    sha256 = %policy.sha256_hex(),
                    cause = %error.cause,
                    detail = %error.detail,
                    "policy failed; fail-safe answer used"
                );
                Decided {
                    value: fail_safe(),
                    by: DecidedBy::FailSafe(error.cause),
                }
            }
        }
    }

    pub fn on_invite(&self, session: &Session) -> Decided<InviteDecision> {
        self.decide(
            Decision::OnInvite,
            (session,),
            validate::invite_decision,
            failsafe::on_invite,
        )
    }

    pub fn cpm_to_email(&self, gateway: &Gateway, cpm: &Identity) -> Decided<Option<Mailbox>> {
        self.decide(
            Decision::CpmToEmail,
            (gateway, cpm),
            validate::optional_mailbox,
            || failsafe::cpm_to_email(gateway, cpm),
        )
    }

    pub fn email_to_cpm(&self, gateway: &Gateway, email: &Mailbox) -> Decided<Option<String>> {
        self.decide(
            Decision::EmailToCpm,
            (gateway, email),
            validate::cpm_uri,
            failsafe::email_to_cpm,
        )
    }

    pub fn group_address(&self, session: &Session) -> Decided<Mailbox> {
        self.decide(
            Decision::GroupAddress,
            (session,),
            validate::mailbox,
            || failsafe::group_address(session),
        )
    }

    pub fn invitation_body(&self, session: &Session) -> Decided<InvitationMail> {
        self.decide(
            Decision::InvitationBody,
            (session,),
            validate::invitation_mail,
            failsafe::invitation_body,
        )
    }

    pub fn interpret_reply(&self, session: &Session, reply: &Reply) -> Decided<ReplyAction> {
        self.decide(
            Decision::InterpretReply,
            (session, reply),
            validate::reply_action,
            || failsafe::interpret_reply(reply),
        )
    }

    pub fn invitation_expiry(&self, session: &Session) -> Decided<u32> {
        self.decide(
            Decision::InvitationExpiry,
            (session,),
            validate::invitation_expiry,
            failsafe::invitation_expiry,
        )
    }

    pub fn deliver_by(&self, session: &Session, kind: MailKind) -> Decided<Option<ByRequest>> {
        self.decide(
            Decision::DeliverBy,
            (session, kind),
            validate::deliver_by,
            failsafe::deliver_by,
        )
    }

    pub fn smtp_failure_status(
        &self,
        session: &Session,
        failure: &SmtpFailure,
    ) -> Decided<SipStatus> {
        self.decide(
            Decision::SmtpFailureStatus,
            (session, failure),
            validate::sip_status,
            || failsafe::smtp_failure_status(failure),
        )
    }

    pub fn x_priority(&self, session: &Session, kind: MailKind) -> Decided<Option<u8>> {
        self.decide(
            Decision::XPriority,
            (session, kind),
            validate::x_priority,
            || failsafe::x_priority(session.priority),
        )
    }

    pub fn body_additions(&self, session: &Session, chat: &ChatContext) -> Decided<Additions> {
        self.decide(
            Decision::BodyAdditions,
            (session, chat),
            validate::additions,
            failsafe::body_additions,
        )
    }

    pub fn session_closed(&self, session: &Session) -> Decided<Option<Notification>> {
        self.decide(
            Decision::SessionClosed,
            (session,),
            validate::notification,
            failsafe::session_closed,
        )
    }

    pub fn participant_info_frequency(&self, session: &Session) -> Decided<ParticipantFrequency> {
        self.decide(
            Decision::ParticipantInfoFrequency,
            (session,),
            validate::participant_frequency,
            failsafe::participant_info_frequency,
        )
    }

    pub fn participant_info_text(
        &self,
        session: &Session,
        participants: &[Participant],
    ) -> Decided<Option<Notification>> {
        self.decide(
            Decision::ParticipantInfoText,
            (session, participants),
            validate::notification,
            failsafe::participant_info_text,
        )
    }

    pub fn msrp_reports(&self, session: &Session) -> Decided<ReportFlags> {
        self.decide(
            Decision::MsrpReports,
            (session,),
            validate::any,
            failsafe::msrp_reports,
        )
    }

    pub fn anonymous_identity(&self, session: &Session) -> Decided<Mailbox> {
        self.decide(
            Decision::AnonymousIdentity,
            (session,),
            |answer| validate::anonymous_mailbox(answer, session),
            || failsafe::anonymous_identity(session),
        )
    }

    /// Calls of `decision` so far, and fail-safes taken for `cause`.
    pub fn counts(&self, decision: Decision, cause: FailCause) -> (u64, u64) {
        let m = &self.metrics.decisions[decision.index()];
        (m.calls.get(), m.fail_safes[cause as usize].get())
    }

    /// Policy loads so far: (succeeded, refused).
    pub fn load_counts(&self) -> (u64, u64) {
        (self.metrics.loads_ok.get(), self.metrics.loads_failed.get())
    }

    /// Appends the policy metrics in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        metrics::family(
            out,
            "iwf_policy_decisions_total",
            "counter",
            "Policy decisions asked for, by decision function.",
        );
        for d in Decision::ALL {
            let _ = writeln!(
                out,
                "iwf_policy_decisions_total{{decision=\"{}\"}} {}",
                d.name(),
                self.metrics.decisions[d.index()].calls.get()
            );
        }
        metrics::family(
            out,
            "iwf_policy_fail_safe_total",
            "counter",
            "Decisions answered by the fail-safe, by decision function and cause.",
        );
        for d in Decision::ALL {
            for cause in FailCause::ALL {
                let n = self.metrics.decisions[d.index()].fail_safes[cause as usize].get();
                let _ = writeln!(
                    out,
                    "iwf_policy_fail_safe_total{{decision=\"{}\",cause=\"{}\"}} {n}",
                    d.name(),
                    cause.as_str()
                );
            }
        }
        metrics::family(
            out,
            "iwf_policy_decision_seconds",
            "histogram",
            "Time of one decision, instance creation included.",
        );
        for d in Decision::ALL {
            self.metrics.decisions[d.index()].latency.render(
                out,
                "iwf_policy_decision_seconds",
                &format!("decision=\"{}\"", d.name()),
            );
        }
        let p = self.current();
        metrics::family(
            out,
            "iwf_policy_info",
            "gauge",
            "The policy version being served (always 1).",
        );
        let _ = writeln!(
            out,
            "iwf_policy_info{{name=\"{}\",version=\"{}\",sha256=\"{}\",world=\"{}\"}} 1",
            label(&p.info().name),
            label(&p.info().version),
            p.sha256_hex(),
            super::world::WORLD_VERSION
        );
        metrics::family(
            out,
            "iwf_policy_warm_ready",
            "gauge",
            "Single-use instances of the served version ready in its warm pool.",
        );
        let _ = writeln!(out, "iwf_policy_warm_ready {}", p.pool_ready());
        metrics::family(
            out,
            "iwf_policy_instances_total",
            "counter",
            "Instances decisions of the served version ran in, taken from the warm pool or made on demand (since the version was loaded; a swap starts it again; not counted with [policy] warm_instances = 0).",
        );
        let counts = p.pool_counts();
        let _ = writeln!(
            out,
            "iwf_policy_instances_total{{from=\"pool\"}} {}",
            counts.taken
        );
        let _ = writeln!(
            out,
            "iwf_policy_instances_total{{from=\"on_demand\"}} {}",
            counts.missed
        );
        metrics::family(
            out,
            "iwf_policy_loads_total",
            "counter",
            "Policy loads, by result.",
        );
        let _ = writeln!(
            out,
            "iwf_policy_loads_total{{result=\"ok\"}} {}",
            self.metrics.loads_ok.get()
        );
        let _ = writeln!(
            out,
            "iwf_policy_loads_total{{result=\"refused\"}} {}",
            self.metrics.loads_failed.get()
        );
    }
}

/// A Prometheus label value: the policy names itself, so escape what the format needs.
fn label(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(64) {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_cannot_break_the_exposition_format() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c d");
    }
}
