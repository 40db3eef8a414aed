//! Parked sessions (issue 15, "memory follows the work"). An invitation awaiting the
//! e-mail user's answer waits hours for one mail, with nothing to do meanwhile: once it is
//! stored, acknowledged and idle for `[store] park_after_ms`, it leaves memory but for its
//! entry here (its key, id and the way back to its peer). The driver brings it back from
//! its row when anything comes for it (an in-dialog request, the e-mail user's mail, its
//! expiry): [`Core::unpark`], the row read, [`Core::revive`], by the same reading as a
//! restart's ([`Core::restore`]).
//!
//! Only a session whose chat the IWF connects at the accept parks: one the CPM side
//! connected (5.2.4.2.4 step 5a) holds an MSRP connection, which no store keeps.

use super::*;
use crate::store::SessionRow;

/// What stays in memory of a parked session.
pub struct Parked<P> {
    id: Arc<str>,
    peer: P,
    transport: Transport,
}

impl<P> Parked<P> {
    /// Its session id: its row in the store.
    pub fn id(&self) -> &str {
        &self.id
    }

    #[cfg(test)]
    pub(super) fn for_test(id: &str, peer: P) -> Self {
        Self {
            id: id.into(),
            peer,
            transport: Transport::Datagram,
        }
    }
}

impl<P: Peer> Core<P> {
    /// Session `key` entered the invited phase: it parks once idle that long.
    pub(super) fn idle_from(&mut self, key: &SessionKey, now: Instant) {
        self.idle.push_back((now, key.clone()));
    }

    /// Parks every session invited since before `since` and still waiting, stored, with
    /// no change to store: the driver calls this when every change before is on disk.
    /// The keys parked, for the mail side to let go of them too; `share` gives the key
    /// as others hold it (the directory), so a parked session keeps one copy of it.
    pub fn park_idle(
        &mut self,
        since: Instant,
        share: impl Fn(&SessionKey) -> Arc<SessionKey>,
    ) -> Vec<SessionKey> {
        let pending: std::collections::HashSet<&SessionKey> = self
            .changes
            .iter()
            .filter_map(|c| match c {
                durable::Change::Save(key) => Some(key),
                durable::Change::Forget(_) => None,
            })
            .collect();
        let mut parked = Vec::new();
        let mut again = Vec::new();
        while let Some((at, _)) = self.idle.front() {
            if *at > since {
                break;
            }
            let Some((at, key)) = self.idle.pop_front() else {
                break;
            };
            let Some(session) = self.sessions.get(&key) else {
                continue; // gone meanwhile
            };
            let waiting = matches!(session.state, State::Dialog(_, Phase::Invited))
                && session.answer.params.role == Role::Active
                && session.mailed;
            if !waiting {
                continue; // answered, ending, or its chat connected by the CPM side
            }
            if !session.stored || pending.contains(&key) {
                again.push((at, key)); // its last change is not on disk yet
                continue;
            }
            let Some(session) = self.sessions.remove(&key) else {
                continue;
            };
            let Session {
                id,
                peer,
                transport,
                ..
            } = *session;
            tracing::debug!(session = %id, "parked: awaiting the e-mail user in the store");
            self.journal.parked(&id, Instant::now());
            self.parked.insert(
                share(&key),
                Parked {
                    id,
                    peer,
                    transport,
                },
            );
            parked.push(key);
        }
        for entry in again.into_iter().rev() {
            self.idle.push_front(entry);
        }
        parked
    }

    /// Whether session `key` is parked.
    pub fn is_parked(&self, key: &SessionKey) -> bool {
        self.parked.contains_key(key)
    }

    /// The parked session an in-dialog `request` is for (by Call-ID and To tag), which
    /// must come back before the request is taken. An ACK needs none: a parked session
    /// had its 2xx acknowledged long before.
    pub fn parked_for(&self, request: &Message) -> Option<SessionKey> {
        if self.parked.is_empty() || request.method().is_some_and(|m| m.as_str() == "ACK") {
            return None;
        }
        let key = SessionKey {
            call_id: request.header("Call-ID")?.to_string(),
            local_tag: to_tag(request)?,
        };
        self.parked.contains_key(&key).then_some(key)
    }

    /// Takes session `key` out of the parked ones, for the driver to read its row.
    pub fn unpark(&mut self, key: &SessionKey) -> Option<Parked<P>> {
        self.parked.remove(key)
    }

    /// Parks session `key` again as it was: its row could not be read now.
    pub fn repark(&mut self, key: SessionKey, parked: Parked<P>) {
        self.parked.insert(Arc::new(key), parked);
    }

    /// Session `row`, parked as `parked`, back in memory as it was: invited, its requests
    /// going out through the same peer. Its facts, for the mail side. `Err` says why the
    /// row cannot be read (the session is then lost: logged by the driver).
    pub fn revive(
        &mut self,
        row: &SessionRow,
        parked: Parked<P>,
        now: Instant,
    ) -> Result<Box<MailFacts>, String> {
        if row.phase != "invited" {
            return Err(format!("stored as {}, not invited", row.phase));
        }
        let (stored, prepared) = self.read(row)?;
        let key = durable::row_key(row);
        let Parked {
            id,
            peer,
            transport,
        } = parked;
        let facts = Box::new(prepared.facts);
        let session = Session {
            id: id.clone(),
            peer,
            transport,
            offer: prepared.offer,
            answer: prepared.answer,
            state: State::Dialog(stored.dialog, Phase::Invited),
            facts: facts.clone(),
            mailed: true,
            unstored: None,
            stored: true,
        };
        self.sessions.insert(key.clone(), Box::new(session));
        self.journal.sip(&id, now, "back from the store");
        self.idle_from(&key, now);
        Ok(facts)
    }

    /// Session `row`, stored before a restart as an invitation awaiting its answer that
    /// the IWF connects at the accept, restored parked: read (an unreadable row is `Err`,
    /// as for [`Core::restore`]) and shown, but not kept in memory; its key, for the
    /// others who hold it to share. `Ok(None)`: it is no such session, and
    /// [`Core::restore`] takes it.
    pub fn restore_parked(
        &mut self,
        row: &SessionRow,
        peer: P,
        now: Instant,
    ) -> Result<Option<Arc<SessionKey>>, String> {
        if row.phase != "invited" {
            return Ok(None);
        }
        let (_, prepared) = self.read(row)?;
        if prepared.answer.params.role != Role::Active {
            return Ok(None);
        }
        let id: Arc<str> = row.id.as_str().into();
        self.journal_opened(&id, &prepared.facts, now);
        self.journal
            .sip(&id, now, "restored from the store (invited)");
        self.journal.phase(&id, now, Shown::AwaitingAnswer);
        self.journal.parked(&id, now);
        let parked = Parked {
            id,
            peer,
            transport: Transport::Datagram,
        };
        let key = Arc::new(durable::row_key(row));
        self.parked.insert(key.clone(), parked);
        Ok(Some(key))
    }

    /// Sessions parked.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }
}
