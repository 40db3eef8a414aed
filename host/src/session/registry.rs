//! What operators see of the sessions (`GET /sessions`, `GET /sessions/{id}` on the admin
//! listener): every pending and live session by its id, with its phase, its users, the
//! policy version serving it, and its ladder: the last [`LADDER`] SIP, SMTP, MSRP and
//! policy events, with their times.
//!
//! The registry only mirrors the sessions; no flow reads it back. The core's events come
//! in batches, one lock per driver turn ([`Journal`], [`Registry::apply`]), so the SIP
//! hot path never locks per event; the mail, chat and reply tasks record theirs one at a
//! time ([`Registry::record`]), each behind a network round trip anyway. Memory stays
//! bounded: an event is a fixed-size record of 64 bytes, a ladder keeps the last 64 and
//! counts the ones it let go, and an entry goes when its session ends.
//!
//! Ordered by id (a `BTreeMap`), so that paging with a cursor is stable while sessions
//! come and go: a page starts after the last id of the one before.

use crate::policy::{DecidedBy, Decision};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::{self, Write as _};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Events kept per session; older ones are dropped and counted.
pub const LADDER: usize = 64;

/// Bytes of an event's text: with its time and protocol, an event is 64 bytes.
const LABEL: usize = 54;

/// Which side of the IWF an event is on (its number: a packed ladder's byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Protocol {
    Sip = 0,
    Smtp = 1,
    Msrp = 2,
    Policy = 3,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Sip => "sip",
            Protocol::Smtp => "smtp",
            Protocol::Msrp => "msrp",
            Protocol::Policy => "policy",
        }
    }
}

/// Where a session stands, as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The INVITE waits for the policy's on-invite decision.
    PendingDecision,
    /// The INVITE waits for the SMTP outcome of the invitation mail (F2).
    PendingInvitation,
    /// The 200 OK went out; its ACK has not come.
    AwaitingAck,
    /// The invitation was mailed and the 200 acknowledged; the e-mail user has not
    /// answered (F3).
    AwaitingAnswer,
    Live,
    /// Restored after a restart: the IWF's re-INVITE offers a new chat connection.
    Reconnecting,
    /// The IWF sent its BYE.
    Ending,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::PendingDecision => "pending-decision",
            Phase::PendingInvitation => "pending-invitation",
            Phase::AwaitingAck => "awaiting-ack",
            Phase::AwaitingAnswer => "awaiting-answer",
            Phase::Live => "live",
            Phase::Reconnecting => "reconnecting",
            Phase::Ending => "ending",
        }
    }
}

/// An event's text, held inline (no allocation per event); a longer text is cut at a
/// character boundary.
#[derive(Clone, Copy)]
pub struct Label {
    len: u8,
    bytes: [u8; LABEL],
}

impl Label {
    pub fn as_str(&self) -> &str {
        // Only whole characters are ever copied in.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Write for Label {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let at = usize::from(self.len);
            if at + c.len_utf8() > LABEL {
                break;
            }
            c.encode_utf8(&mut self.bytes[at..]);
            self.len += c.len_utf8() as u8;
        }
        Ok(())
    }
}

impl From<fmt::Arguments<'_>> for Label {
    fn from(args: fmt::Arguments<'_>) -> Self {
        let mut label = Label {
            len: 0,
            bytes: [0; LABEL],
        };
        let _ = label.write_fmt(args);
        label
    }
}

impl From<&str> for Label {
    fn from(s: &str) -> Self {
        Label::from(format_args!("{s}"))
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One step of a session's ladder.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    pub protocol: Protocol,
    pub what: Label,
}

/// The last [`LADDER`] events of a session, oldest first, and how many went before them.
/// A parked session's are packed (`pack`): an event takes its text's length and 10 bytes
/// instead of 64, until the next event unpacks them.
#[derive(Debug, Default, Clone)]
pub struct Ladder {
    events: VecDeque<Event>,
    /// The events before `events`, packed: per event its time (8 bytes, little-endian),
    /// its protocol (1), its text's length (1) and its text.
    packed: Box<[u8]>,
    dropped: u64,
}

impl Ladder {
    pub fn push(&mut self, event: Event) {
        if !self.packed.is_empty() {
            self.events = self.unpacked().collect();
            self.packed = Box::default();
        }
        if self.events.len() == LADDER {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }

    /// The events, oldest first.
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        self.unpacked().chain(self.events.iter().copied())
    }

    /// Events let go to keep the last [`LADDER`].
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Packs the events into as few bytes as they take (a parked session's ladder waits
    /// for hours, mostly unread).
    pub fn pack(&mut self) {
        // One allocation of the exact size: a parked session's memory is freed around it.
        let size = self.events().map(|e| 10 + e.what.as_str().len()).sum();
        let mut packed = Vec::with_capacity(size);
        for event in self.events() {
            let what = event.what.as_str().as_bytes();
            packed.extend_from_slice(&event.at_ms.to_le_bytes());
            packed.push(event.protocol as u8);
            packed.push(what.len() as u8); // at most LABEL bytes
            packed.extend_from_slice(what);
        }
        self.packed = packed.into_boxed_slice();
        self.events = VecDeque::new();
    }

    fn unpacked(&self) -> impl Iterator<Item = Event> + '_ {
        let mut rest = &self.packed[..];
        std::iter::from_fn(move || {
            let (at, tail) = rest.split_first_chunk::<8>()?;
            let [protocol, len, tail @ ..] = tail else {
                return None;
            };
            let (what, tail) = tail.split_at_checked(usize::from(*len))?;
            rest = tail;
            let protocol = match protocol {
                0 => Protocol::Sip,
                1 => Protocol::Smtp,
                2 => Protocol::Msrp,
                _ => Protocol::Policy,
            };
            Some(Event {
                at_ms: u64::from_le_bytes(*at),
                protocol,
                what: Label::from(std::str::from_utf8(what).unwrap_or_default()),
            })
        })
    }
}

/// The policy version that made a session's latest decision, as the session records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    pub name: Box<str>,
    pub version: Box<str>,
    pub sha256: [u8; 32],
}

/// What the registry holds of one session.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Unix time in milliseconds of the INVITE.
    pub started_ms: u64,
    pub phase: Phase,
    /// The Request-URI's address.
    pub email_user: Box<str>,
    /// P-Asserted-Identity, else From.
    pub cpm_user: Box<str>,
    /// `None` until the policy (not its fail-safe) made a decision for the session.
    /// Shared by the sessions a version served (a pending invitation holds a pointer).
    pub policy: Option<Arc<PolicyVersion>>,
    pub ladder: Ladder,
}

/// One page of [`Registry::page`]: sessions in id order; `next` is the id to page on
/// from when more follow.
pub struct Page {
    pub sessions: Vec<(Arc<str>, Entry)>,
    pub next: Option<Arc<str>>,
    /// Sessions held in all.
    pub total: usize,
}

/// A change the core records for the registry, applied at the end of the driver's turn.
#[derive(Debug)]
enum Change {
    Opened {
        email_user: Box<str>,
        cpm_user: Box<str>,
    },
    Phase(Phase),
    Event(Protocol, Label),
    /// Parked (issue 15): its ladder keeps what it has, in no more memory than that.
    Parked,
    Closed,
}

/// The core's changes of one driver turn, handed to [`Registry::apply`] in one go.
#[derive(Debug, Default)]
pub struct Journal {
    changes: Vec<(Arc<str>, Instant, Change)>,
}

impl Journal {
    /// Session `id` was created (its INVITE arrived).
    pub fn opened(&mut self, id: &Arc<str>, at: Instant, email_user: &str, cpm_user: &str) {
        let change = Change::Opened {
            email_user: email_user.into(),
            cpm_user: cpm_user.into(),
        };
        self.changes.push((id.clone(), at, change));
    }

    pub fn phase(&mut self, id: &Arc<str>, at: Instant, phase: Phase) {
        self.changes.push((id.clone(), at, Change::Phase(phase)));
    }

    /// A SIP event of session `id`, e.g. `"INVITE received"`.
    pub fn sip(&mut self, id: &Arc<str>, at: Instant, what: impl Into<Label>) {
        let change = Change::Event(Protocol::Sip, what.into());
        self.changes.push((id.clone(), at, change));
    }

    /// Session `id` is parked: it waits in the store only.
    pub fn parked(&mut self, id: &Arc<str>, at: Instant) {
        self.changes.push((id.clone(), at, Change::Parked));
    }

    /// Session `id` is freed: its entry goes.
    pub fn closed(&mut self, id: &Arc<str>, at: Instant) {
        self.changes.push((id.clone(), at, Change::Closed));
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The sessions as operators see them, shared by the session layer's tasks and the admin
/// listener.
pub struct Registry {
    /// An instant and the Unix time it was, to date the core's instants.
    anchor: (Instant, u64),
    entries: Mutex<BTreeMap<Arc<str>, Entry>>,
    /// The policy version of the latest decision, shared by the entries it served.
    last_version: Mutex<Option<Arc<PolicyVersion>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            anchor: (Instant::now(), unix_ms(SystemTime::now())),
            entries: Mutex::default(),
            last_version: Mutex::default(),
        }
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Arc<str>, Entry>> {
        // Every update leaves the map consistent: a panic elsewhere poisons nothing real.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Unix time in milliseconds of `at`.
    fn date(&self, at: Instant) -> u64 {
        let (instant, ms) = self.anchor;
        match at.checked_duration_since(instant) {
            Some(after) => ms + after.as_millis() as u64,
            None => ms.saturating_sub(instant.duration_since(at).as_millis() as u64),
        }
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.date(Instant::now())
    }

    /// Applies the core's changes of one turn, under one lock, and empties `journal`
    /// (keeping its capacity for the next turn).
    pub fn apply(&self, journal: &mut Journal) {
        if journal.is_empty() {
            return;
        }
        let mut entries = self.lock();
        for (id, at, change) in journal.changes.drain(..) {
            let at_ms = self.date(at);
            match change {
                Change::Opened {
                    email_user,
                    cpm_user,
                } => {
                    let entry = Entry {
                        started_ms: at_ms,
                        phase: Phase::PendingDecision,
                        email_user,
                        cpm_user,
                        policy: None,
                        ladder: Ladder::default(),
                    };
                    entries.insert(id, entry);
                }
                Change::Phase(phase) => {
                    if let Some(entry) = entries.get_mut(&id) {
                        entry.phase = phase;
                    }
                }
                Change::Event(protocol, what) => {
                    if let Some(entry) = entries.get_mut(&id) {
                        entry.ladder.push(Event {
                            at_ms,
                            protocol,
                            what,
                        });
                    }
                }
                Change::Parked => {
                    if let Some(entry) = entries.get_mut(&id) {
                        let what = Label::from("parked: awaiting the answer in the store");
                        entry.ladder.push(Event {
                            at_ms,
                            protocol: Protocol::Sip,
                            what,
                        });
                        entry.ladder.pack();
                    }
                }
                Change::Closed => {
                    entries.remove(&id);
                }
            }
        }
    }

    /// An event of session `id` now; nothing when the session is not held (any more).
    pub fn record(&self, id: &str, protocol: Protocol, what: impl Into<Label>) {
        let event = Event {
            at_ms: self.now_ms(),
            protocol,
            what: what.into(),
        };
        if let Some(entry) = self.lock().get_mut(id) {
            entry.ladder.push(event);
        }
    }

    /// A policy decision for session `id`: `decision -> answer` in its ladder, and the
    /// version that answered as the one serving it (a fail-safe answer names its cause
    /// and leaves the version as it was).
    pub fn decided(&self, id: &str, decision: Decision, answer: &str, by: &DecidedBy) {
        let (what, version) = match by {
            DecidedBy::Policy(policy) => (
                Label::from(format_args!("{} -> {answer}", decision.name())),
                Some(policy),
            ),
            DecidedBy::FailSafe(cause) => (
                Label::from(format_args!(
                    "{} -> {answer} (fail-safe: {cause})",
                    decision.name()
                )),
                None,
            ),
        };
        let event = Event {
            at_ms: self.now_ms(),
            protocol: Protocol::Policy,
            what,
        };
        let version = version.map(|policy| self.version_of(policy));
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(id) else {
            return;
        };
        entry.ladder.push(event);
        if let Some(version) = version {
            entry.policy = Some(version);
        }
    }

    /// The record of `policy`'s version, the same for every session it serves.
    fn version_of(&self, policy: &crate::policy::Policy) -> Arc<PolicyVersion> {
        let mut last = self.last_version.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some(version) if version.sha256 == policy.sha256() => version.clone(),
            _ => {
                let version = Arc::new(PolicyVersion {
                    name: policy.info().name.as_str().into(),
                    version: policy.info().version.as_str().into(),
                    sha256: policy.sha256(),
                });
                *last = Some(version.clone());
                version
            }
        }
    }

    /// Up to `limit` sessions in id order, after id `after` when given.
    pub fn page(&self, after: Option<&str>, limit: usize) -> Page {
        let entries = self.lock();
        let from = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let mut sessions: Vec<(Arc<str>, Entry)> = entries
            .range::<str, _>((from, Bound::Unbounded))
            .take(limit.saturating_add(1))
            .map(|(id, entry)| (id.clone(), entry.clone()))
            .collect();
        let next = match sessions.len() > limit {
            true => {
                sessions.truncate(limit);
                sessions.last().map(|(id, _)| id.clone())
            }
            false => None,
        };
        Page {
            sessions,
            next,
            total: entries.len(),
        }
    }

    /// Session `id`, ladder included.
    pub fn get(&self, id: &str) -> Option<Entry> {
        self.lock().get(id).cloned()
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(registry: &Registry, ids: &[&str]) {
        let mut journal = Journal::default();
        let now = Instant::now();
        for id in ids {
            let id: Arc<str> = (*id).into();
            journal.opened(&id, now, "bob@example.net", "sip:alice@ims.example.com");
        }
        registry.apply(&mut journal);
        assert!(journal.is_empty(), "applied and emptied");
    }

    #[test]
    fn a_ladder_keeps_the_last_64_events_and_counts_the_dropped() {
        let registry = Registry::default();
        open(&registry, &["s1"]);
        for n in 0..70 {
            registry.record("s1", Protocol::Msrp, format_args!("SEND {n} received"));
        }
        let entry = registry.get("s1").unwrap();
        let events: Vec<String> = entry
            .ladder
            .events()
            .map(|e| e.what.as_str().into())
            .collect();
        assert_eq!(events.len(), LADDER);
        assert_eq!(entry.ladder.dropped(), 6);
        assert_eq!(events[0], "SEND 6 received", "the oldest ones go");
        assert_eq!(events[63], "SEND 69 received");
        assert!(entry.ladder.events.capacity() <= LADDER);
    }

    #[test]
    fn a_packed_ladder_reads_the_same_and_unpacks_at_its_next_event() {
        let mut ladder = Ladder::default();
        let texts = [
            "INVITE received",
            "on-invite -> ask-user",
            "",
            &"é".repeat(27),
        ];
        for (n, what) in texts.iter().enumerate() {
            let protocol = [
                Protocol::Sip,
                Protocol::Policy,
                Protocol::Smtp,
                Protocol::Msrp,
            ][n];
            let at_ms = 1_790_000_000_000 + n as u64;
            ladder.push(Event {
                at_ms,
                protocol,
                what: Label::from(*what),
            });
        }
        let before: Vec<_> = ladder.events().map(|e| format!("{e:?}")).collect();
        ladder.pack();
        assert!(ladder.events.is_empty() && ladder.events.capacity() == 0);
        let text_bytes: usize = texts.iter().map(|t| t.len()).sum();
        assert_eq!(
            ladder.packed.len(),
            4 * 10 + text_bytes,
            "10 bytes and the text"
        );
        assert!(ladder.packed.len() < 4 * 64);
        let after: Vec<_> = ladder.events().map(|e| format!("{e:?}")).collect();
        assert_eq!(before, after);
        ladder.push(Event {
            at_ms: 1,
            protocol: Protocol::Sip,
            what: Label::from("BYE received"),
        });
        assert!(ladder.packed.is_empty());
        let texts: Vec<String> = ladder.events().map(|e| e.what.as_str().into()).collect();
        assert_eq!(texts.len(), 5);
        assert_eq!(texts[4], "BYE received");
    }

    #[test]
    fn paging_walks_every_session_once_in_id_order_while_sessions_come_and_go() {
        let registry = Registry::default();
        open(&registry, &["c", "a", "e", "b", "d"]);
        let first = registry.page(None, 2);
        let ids =
            |p: &Page| -> Vec<String> { p.sessions.iter().map(|(id, _)| id.to_string()).collect() };
        assert_eq!(ids(&first), ["a", "b"]);
        assert_eq!(first.total, 5);
        // A session before the cursor ends, one after it starts: the walk goes on.
        let mut journal = Journal::default();
        journal.closed(&"a".into(), Instant::now());
        journal.opened(&"f".into(), Instant::now(), "x@y", "sip:z@w");
        registry.apply(&mut journal);
        let second = registry.page(first.next.as_deref(), 2);
        assert_eq!(ids(&second), ["c", "d"]);
        let third = registry.page(second.next.as_deref(), 2);
        assert_eq!(ids(&third), ["e", "f"]);
        assert!(third.next.is_none(), "nothing after the last page");
        assert_eq!(ids(&registry.page(None, 10)), ["b", "c", "d", "e", "f"]);
        assert!(registry.page(None, 10).next.is_none());
    }

    #[test]
    fn the_core_s_changes_move_a_session_and_its_close_removes_it() {
        let registry = Registry::default();
        let id: Arc<str> = "s1".into();
        let start = Instant::now();
        let mut journal = Journal::default();
        journal.opened(&id, start, "bob@example.net", "tel:+15551234567");
        journal.sip(&id, start, "INVITE received");
        journal.phase(&id, start, Phase::AwaitingAck);
        let later = start + std::time::Duration::from_millis(250);
        journal.sip(&id, later, format_args!("{} sent", 200));
        registry.apply(&mut journal);
        let entry = registry.get("s1").unwrap();
        assert_eq!(entry.phase, Phase::AwaitingAck);
        assert_eq!(&*entry.cpm_user, "tel:+15551234567");
        let events: Vec<_> = entry.ladder.events().collect();
        assert_eq!(events[0].what.as_str(), "INVITE received");
        assert_eq!(
            events[1].at_ms - events[0].at_ms,
            250,
            "dated from the core's instants"
        );
        assert_eq!(events[1].protocol, Protocol::Sip);
        // An event for a session not held is dropped, not an entry of its own.
        registry.record("gone", Protocol::Smtp, "250");
        journal.closed(&id, later);
        registry.apply(&mut journal);
        assert!(registry.is_empty());
    }

    #[test]
    fn a_long_label_is_cut_at_a_character_boundary() {
        let label = Label::from(format_args!("{}", "é".repeat(40)));
        assert_eq!(label.as_str(), "é".repeat(LABEL / 2));
        assert_eq!(std::mem::size_of::<Event>(), 64);
    }
}
