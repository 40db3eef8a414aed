//! The session driver: one task that feeds the session core (requests, decisions,
//! invitation outcomes, the e-mail user's answers, timers) and carries each turn's effects
//! out: policy calls, the mail and chat sides at once; the turn's changes to the store
//! writer, with the messages and answers that wait for them. It parks idle invitations
//! once their changes are on disk, and brings a parked one back from the store before
//! anything for it is taken (issue 15).

use super::expiry::Expiries;
use super::writer::{After, Writer};
use crate::net::sip::{Inbound, Replier};
use crate::policy::world::InviteDecision;
use crate::policy::{Decision, PolicyHost};
use crate::sdp::uri::Host;
use crate::session::carry::Chats;
use crate::session::core::{Core, Effect, EndReason, InvitationOutcome, Notify, Peer, SessionKey};
use crate::session::mailer::{Invited, Mailer, StoredThread};
use crate::session::registry::Registry;
use crate::session::replies::UserEvent;
use crate::session::stats::SessionStats;
use crate::sip;
use crate::sip::dialog::Target;
use crate::store::{self, Changes, Store};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// The mail side of the sessions, the outcomes of their invitations, and their chats.
pub(super) struct Mail {
    pub(super) mailer: Mailer,
    pub(super) invited: mpsc::UnboundedReceiver<Invited>,
    pub(super) chats: Chats,
    /// The invitations' expiries (F3), stopped when their session ends.
    pub(super) expiries: Expiries,
    /// The threads of the invitations mailed this turn, for its commit.
    pub(super) threads: Vec<StoredThread>,
    /// `[store] park_after_ms`: how long an invitation awaiting its answer stays in
    /// memory once idle and stored (issue 15); `None`: always.
    pub(super) park_after: Option<Duration>,
}

impl Mail {
    /// The outcome of `key`'s invitation, for the core; a mailed one starts its expiry.
    fn invited(&mut self, key: &SessionKey, outcome: &InvitationOutcome, expiry: Duration) {
        self.mailer.settled(key, outcome);
        if outcome.is_ok() {
            let at = store::unix_ms(SystemTime::now() + expiry);
            self.expiries.set(self.mailer.shared_key(key), at);
        }
    }

    /// Session `key` is over: its chat closes, its mail side finishes, its expiry stops.
    fn closed(&mut self, key: &SessionKey, notify: Notify) {
        self.chats.close(key);
        self.mailer.closed(key, notify);
        self.expiries.stop(key);
    }
}

/// What operators see of the sessions: the gauges of `GET /metrics` and the registry of
/// `GET /sessions`.
pub(super) struct Seen {
    pub(super) stats: Arc<SessionStats>,
    pub(super) registry: Arc<Registry>,
}

/// Drives the session core: requests from the transports, decisions, invitation outcomes,
/// timers, bytes back out. Policy decisions run on the blocking pool (`spawn_blocking`) and
/// mail on the mailer's tasks, never on this task: a slow policy or SMTP server holds its
/// own INVITE pending, not every session. Each turn's changes go to the store writer
/// with the turn's messages, which go out once they are on disk (`writer`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_sessions(
    mut core: Core<Replier>,
    policy: Arc<PolicyHost>,
    mut mail: Mail,
    seen: Seen,
    store: Arc<Store>,
    mut requests: mpsc::Receiver<Inbound>,
    mut chats_ended: mpsc::UnboundedReceiver<(SessionKey, String)>,
    mut users: mpsc::UnboundedReceiver<UserEvent>,
    restored: Vec<Effect<Replier>>,
    mut drains: mpsc::Receiver<Drain>,
) {
    let (decided, mut decisions) = mpsc::unbounded_channel::<(SessionKey, InviteDecision)>();
    let (writer, mut uncommitted) = Writer::start(store.clone());
    let mut park_tick = tokio::time::interval(PARK_SWEEP);
    park_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut effects = restored;
    // The e-mail user's accepts of this turn: answered once the turn is stored.
    let mut answers: Vec<After> = Vec::new();
    // Once draining: told when nothing is in flight any more.
    let mut draining: Option<oneshot::Sender<()>> = None;
    loop {
        seen.stats.set(core.sessions(), core.transactions());
        seen.stats.set_parked(core.parked());
        // Before the effects: a decision or mail they start may record into the entries
        // this turn opened.
        seen.registry.apply(core.journal());
        // Issue 15: nothing is acknowledged before it is stored. The turn's messages (a
        // 200 OK names a stored session) and answers wait for its commit, on the writer;
        // the other effects acknowledge nothing and run now.
        let changes = changes(&mut core, &mut mail);
        let mut after = std::mem::take(&mut answers);
        for effect in effects.drain(..) {
            match effect {
                Effect::Send { peer, bytes } => after.push(After::Send(peer, bytes)),
                Effect::Decide { key, session } => {
                    let (policy, decided) = (policy.clone(), decided.clone());
                    let registry = seen.registry.clone();
                    tokio::task::spawn_blocking(move || {
                        let decision = policy.on_invite(&session);
                        let answer = invite_answer(&decision.value);
                        let id = &session.session_id;
                        registry.decided(id, Decision::OnInvite, &answer, &decision.by);
                        let decision = decision.value;
                        // The receiver lives as long as this loop; gone means shutting down.
                        let _ = decided.send((key, decision));
                    });
                }
                Effect::MailInvitation { key, mail: facts } => mail.mailer.invite(key, facts),
                Effect::MailAccepted { key, mail: facts } => mail.mailer.accepted(key, facts),
                Effect::ChatOpen { key, msrp, held } => {
                    let mailer = mail.mailer.chat(&key);
                    mail.chats.open(key, &msrp, mailer, held);
                }
                Effect::ChatConsent { key, consent } => mail.chats.consent(&key, consent),
                Effect::SessionClosed { key, notify } => mail.closed(&key, notify),
            }
        }
        // After the other effects: an MSRP session opened this turn is there before the
        // 200 OK that lets the peer connect.
        writer.carry_out(changes, after).await;
        seen.stats.set_mail(mail.mailer.sessions());
        seen.stats.set_chats(mail.chats.len());
        if draining.is_some()
            && core.in_flight() == 0
            && mail.mailer.in_flight() == 0
            && writer.idle()
        {
            tracing::info!(
                sessions = core.sessions(),
                "drained: nothing in flight, the sessions stored"
            );
            if let Some(done) = draining.take() {
                let _ = done.send(());
            }
        }

        let wake = core.poll_timeout();
        let expiry = mail.expiries.next();
        effects = tokio::select! {
            inbound = requests.recv() => {
                let Some(inbound) = inbound else { return };
                on_inbound(&mut core, &mut mail, &store, inbound).await
            }
            Some((key, decision)) = decisions.recv() => core.on_decision(&key, decision, Instant::now()),
            Some(invited) = mail.invited.recv() => on_invited(&mut core, &mut mail, &seen, invited),
            Some((key, why)) = chats_ended.recv() => {
                mail.chats.ended(&key);
                core.end_session(&key, &chat_lost(why), Instant::now())
            }
            Some(event) = users.recv() => {
                let mut out = unpark(&mut core, &mut mail, &store, event.key()).await;
                out.extend(on_user(&mut core, event, &mut answers, Instant::now()));
                out
            }
            () = sleep_until_unix(expiry) => {
                let mut out = Vec::new();
                for key in mail.expiries.due(store::unix_ms(SystemTime::now())) {
                    out.extend(unpark(&mut core, &mut mail, &store, &key).await);
                    out.extend(core.invitation_expired(&key, Instant::now()));
                }
                out
            }
            // Not guarded on the writer: a guard is read when the select starts, and a
            // commit then in flight would keep the sweep off until something else came.
            _ = park_tick.tick(), if mail.park_after.is_some() => {
                // Every change before is on disk (the writer idle), or back from a failed
                // commit first; else the next sweep.
                let idle = writer.idle();
                while let Ok(mut failed) = uncommitted.try_recv() {
                    mail.threads.append(&mut failed.threads);
                    core.uncommitted(failed);
                }
                let after = mail.park_after.unwrap_or_default();
                if let Some(since) = Instant::now().checked_sub(after)
                    && idle
                    && mail.threads.is_empty()
                {
                    let parked = core.park_idle(since, |key| mail.mailer.shared_key(key));
                    for key in parked {
                        mail.mailer.park(&key);
                    }
                }
                Vec::new()
            }
            Some(mut failed) = uncommitted.recv() => {
                mail.threads.append(&mut failed.threads);
                core.uncommitted(failed);
                Vec::new()
            }
            _ = sleep_until(wake) => core.handle_timeout(Instant::now()),
            Some(drain) = drains.recv() => {
                tracing::info!(in_flight = core.in_flight(), "draining: new INVITEs get 503");
                core.drain(drain.retry_after);
                draining = Some(drain.done);
                Vec::new()
            }
            // A mail in flight ends off this task: look again now and then.
            () = tokio::time::sleep(DRAIN_POLL), if draining.is_some() => Vec::new(),
        };
        // Whatever else is ready goes in the same turn: the core's timers are polled once per
        // turn, not once per message, and the store commits once per turn.
        for _ in 0..BATCH {
            if let Ok(inbound) = requests.try_recv() {
                effects.extend(on_inbound(&mut core, &mut mail, &store, inbound).await);
            } else if let Ok((key, decision)) = decisions.try_recv() {
                effects.extend(core.on_decision(&key, decision, Instant::now()));
            } else if let Ok(invited) = mail.invited.try_recv() {
                effects.extend(on_invited(&mut core, &mut mail, &seen, invited));
            } else {
                break;
            }
        }
    }
}

/// The SMTP outcome of an invitation (AA3) for the core; a mailed one's thread is stored
/// with the turn, and its expiry starts.
fn on_invited(
    core: &mut Core<Replier>,
    mail: &mut Mail,
    seen: &Seen,
    invited: Invited,
) -> Vec<Effect<Replier>> {
    let Invited {
        key,
        outcome,
        expiry,
        thread,
    } = invited;
    seen.stats.invitation(outcome.is_ok());
    mail.invited(&key, &outcome, expiry);
    mail.threads.extend(thread);
    core.on_invitation(&key, outcome, Instant::now())
}

/// What the turn changed, for the store: the core's rows with their invitation expiry,
/// and the threads of the invitations mailed.
fn changes(core: &mut Core<Replier>, mail: &mut Mail) -> Changes {
    let mut changes = core.changes();
    changes.threads = std::mem::take(&mut mail.threads);
    for row in &mut changes.saved {
        let key = SessionKey {
            call_id: row.call_id.clone(),
            local_tag: row.local_tag.clone(),
        };
        row.expires_at = mail.expiries.get(&key);
    }
    changes
}

/// The on-invite answer as the ladder shows it.
fn invite_answer(decision: &InviteDecision) -> String {
    match decision {
        InviteDecision::AcceptOnBehalf => "accept-on-behalf".into(),
        InviteDecision::AskUser => "ask-user".into(),
        InviteDecision::Refuse(status) => format!("refuse {}", status.code),
    }
}

/// What the e-mail user's mail asks of the core (F3, F8). An accept is answered once the
/// turn is stored (`answers`): the 250 to its mail means the session is live for good.
fn on_user(
    core: &mut Core<Replier>,
    event: UserEvent,
    answers: &mut Vec<After>,
    now: Instant,
) -> Vec<Effect<Replier>> {
    match event {
        UserEvent::Phase { key, reply } => {
            let _ = reply.send(core.user_phase(&key));
            Vec::new()
        }
        UserEvent::Accepted { key, done } => {
            let effects = core.user_accepted(&key);
            answers.push(After::Answer(done, effects.is_some()));
            effects.unwrap_or_default()
        }
        UserEvent::End { key, cause, text } => {
            core.end_session(&key, &EndReason { cause, text }, now)
        }
    }
}

/// Brings parked session `key` back from the store (issue 15) before anything is done
/// with it: the core and the mail side as they were before it parked, by the reading of a
/// restart. A row that cannot be read now leaves it parked (the request or mail is
/// answered as for a session not there yet, and tried again); one that cannot be read at
/// all loses the session, loudly. The effects: a session back without its mail thread is
/// ended, as after a restart.
async fn unpark(
    core: &mut Core<Replier>,
    mail: &mut Mail,
    store: &Store,
    key: &SessionKey,
) -> Vec<Effect<Replier>> {
    let Some(parked) = core.unpark(key) else {
        return Vec::new();
    };
    let (row, thread) = match store.session(parked.id()).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            tracing::error!(session = %parked.id(), "parked session not in the store: lost");
            mail.mailer.forget_parked(key);
            return Vec::new();
        }
        Err(e) => {
            tracing::error!(session = %parked.id(), error = %e, "parked session not read back: it stays parked");
            core.repark(key.clone(), parked);
            return Vec::new();
        }
    };
    let id = row.id.clone();
    let facts = match core.revive(&row, parked, Instant::now()) {
        Ok(facts) => facts,
        Err(why) => {
            tracing::error!(session = %id, error = %why, "parked session unreadable: lost");
            mail.mailer.forget_parked(key);
            return Vec::new();
        }
    };
    tracing::debug!(session = %id, "parked session back from the store");
    match mail
        .mailer
        .restore(key.clone(), facts, thread.as_deref(), Vec::new())
    {
        Ok(()) => Vec::new(),
        Err(why) => {
            tracing::error!(session = %id, error = %why, "parked session without its mail thread: ending it");
            let reason = EndReason {
                cause: 500,
                text: format!("the IWF lost the session's mail thread ({why})"),
            };
            core.end_session(key, &reason, Instant::now())
        }
    }
}

/// The Reason of the BYE (RFC 3326) when a session's MSRP side ended without the SIP side
/// asking: the chat cannot go on.
fn chat_lost(why: String) -> EndReason {
    EndReason {
        cause: 480,
        text: format!("MSRP: {why}"),
    }
}

/// SIGTERM for the session driver: refuse new INVITEs with `Retry-After: retry_after`
/// (seconds), and say on `done` when nothing is in flight.
pub(super) struct Drain {
    pub(super) retry_after: u32,
    pub(super) done: oneshot::Sender<()>,
}

/// How often a draining driver looks whether the mails in flight are done.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// How often the driver looks for invitations idle long enough to park.
const PARK_SWEEP: Duration = Duration::from_millis(500);

/// Messages and decisions taken in one turn of [`run_sessions`] at most.
const BATCH: usize = 64;

async fn on_inbound(
    core: &mut Core<Replier>,
    mail: &mut Mail,
    store: &Store,
    inbound: Inbound,
) -> Vec<Effect<Replier>> {
    let mut out = match core.parked_for(&inbound.message) {
        Some(key) => unpark(core, mail, store, &key).await,
        None => Vec::new(),
    };
    out.extend(take_inbound(core, inbound));
    out
}

fn take_inbound(core: &mut Core<Replier>, inbound: Inbound) -> Vec<Effect<Replier>> {
    let transport = match inbound.reply {
        Replier::Udp { .. } | Replier::UdpHost { .. } => sip::message::Transport::Datagram,
        Replier::Tcp(_) => sip::message::Transport::Stream,
    };
    match inbound.message.method() {
        Some(_) => core.on_request(inbound.message, transport, inbound.reply, Instant::now()),
        None => core.on_response(inbound.message, Instant::now()),
    }
}

/// The IWF's requests within a dialog: over UDP from the listening socket to the next hop
/// (a domain looked up when sent); over TCP on the connection the dialog came on (RFC 3261
/// 18.1.1 reuse; no new outbound connection yet).
impl Peer for Replier {
    fn toward(&self, target: &Target) -> Option<Self> {
        match self {
            Replier::Udp { socket, .. } | Replier::UdpHost { socket, .. } => {
                let socket = socket.clone();
                Some(match &target.host {
                    Host::Ip(ip) => Replier::Udp {
                        socket,
                        target: std::net::SocketAddr::new(*ip, target.port),
                    },
                    Host::Name(host) => Replier::UdpHost {
                        socket,
                        host: host.clone(),
                        port: target.port,
                    },
                })
            }
            Replier::Tcp(connection) => Some(Replier::Tcp(connection.clone())),
        }
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at` (Unix ms), for ever when `None`.
async fn sleep_until_unix(at: Option<i64>) {
    match at {
        Some(at) => {
            let wait = u64::try_from(at - store::unix_ms(SystemTime::now())).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(wait)).await
        }
        None => std::future::pending().await,
    }
}
