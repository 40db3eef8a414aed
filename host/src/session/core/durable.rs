//! The session as the store keeps it (issue 15): the changes of each turn, saved by the
//! driver before that turn's messages go out (a 200 OK names a stored session), and the
//! sessions restored from the store after a restart.
//!
//! A row holds the INVITE as received, so the facts, offer and identities are read from
//! it again by the same [`Core::prepare`] as when it came; and the dialog with what moves
//! in it (CSeqs, remote target), the phase, and the answer's `o=` id.

use super::*;
use crate::sip::message::{self as sip_message, Limits};
use crate::store::{CLOSED, Changes, SessionRow};

/// A session's change, for the next commit.
#[derive(Debug)]
pub(super) enum Change {
    /// Its dialog or phase moved: its row is written again.
    Save(SessionKey),
    /// It was freed: its row goes.
    Forget(Arc<str>),
}

/// The part of a row the core writes and reads beside the INVITE.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Stored {
    pub(super) dialog: Dialog,
    /// The SIP transport the INVITE came over: stream (TCP) or datagram (UDP).
    stream: bool,
    /// The `o=` session id of the IWF's answer: a re-INVITE gets the same answer again.
    origin: u64,
    /// Awaiting the ACK of a 200 that answered after the invitation was mailed.
    #[serde(default)]
    invited: bool,
    /// The `o=` version of the IWF's description, above the id once a re-INVITE of the
    /// IWF's changed it (RFC 3264 8); the id when absent.
    #[serde(default)]
    version: Option<u64>,
}

/// What became of a stored session at restart.
#[derive(Debug)]
pub enum Resumed {
    /// The e-mail user has not answered the invitation, and the IWF connects the chat
    /// when they accept: the session waits on as before.
    Waiting,
    /// It was live, and its MSRP connection died with the process: the IWF offers a new
    /// one by a re-INVITE (RFC 4975 8.4), and the chat goes on at its 2xx.
    Reconnecting,
    /// Caught in the middle of an exchange (its 2xx unacknowledged, its BYE sent), or
    /// awaiting an answer with a chat connection the CPM side had opened: the IWF ended
    /// it with a BYE whose Reason says why.
    Ended,
}

/// A stored session back in the core.
pub struct Restored<P> {
    pub key: SessionKey,
    pub facts: Box<MailFacts>,
    pub resumed: Resumed,
    /// The phase it was stored in (`iwf_sessions_recovered_total{phase}`).
    pub phase: String,
    pub effects: Vec<Effect<P>>,
}

/// The key of the session `row` stores.
pub(super) fn row_key(row: &SessionRow) -> SessionKey {
    SessionKey {
        call_id: row.call_id.clone(),
        local_tag: row.local_tag.clone(),
    }
}

/// The Reason of the BYE of a session whose chat could not outlive the restart.
fn lost_in_restart() -> EndReason {
    EndReason {
        cause: 480,
        text: "MSRP: the IWF restarted and the chat connection was lost".into(),
    }
}

impl<P: Peer> Core<P> {
    /// Session `key` changed: it is saved at the end of the turn.
    pub(super) fn touch(&mut self, key: &SessionKey) {
        self.changes.push(Change::Save(key.clone()));
    }

    /// What changed since the last call, as rows for one commit; the invitation expiry is
    /// the driver's to fill in. Pending INVITEs are not stored: nothing was acknowledged.
    pub fn changes(&mut self) -> Changes {
        let mut out = Changes::default();
        let changes = std::mem::take(&mut self.changes);
        let mut seen = std::collections::HashSet::new();
        for change in changes.into_iter().rev() {
            match change {
                Change::Save(key) => {
                    if seen.insert(key.clone())
                        && let Some(row) = self.row(&key)
                    {
                        out.saved.push(row);
                    }
                }
                Change::Forget(id) => out.forgotten.push(id.to_string()),
            }
        }
        out
    }

    /// Marks `changes` (from [`Core::changes`], not committed) as changes again, for the
    /// next commit.
    pub fn uncommitted(&mut self, changes: Changes) {
        for row in changes.saved {
            let key = SessionKey {
                call_id: row.call_id,
                local_tag: row.local_tag,
            };
            if let Some(session) = self.sessions.get_mut(&key)
                && row.invite.is_some()
            {
                // Its first save failed: the next one must write the INVITE again.
                session.unstored = row.invite.map(Vec::into_boxed_slice);
                session.stored = false;
            }
            self.changes.push(Change::Save(key));
        }
        for id in changes.forgotten {
            self.changes.push(Change::Forget(id.into()));
        }
    }

    /// Session `key`'s row, when it has a dialog.
    fn row(&mut self, key: &SessionKey) -> Option<SessionRow> {
        let session = self.sessions.get_mut(key)?;
        let State::Dialog(dialog, phase) = &session.state else {
            return None;
        };
        let (phase, invited) = match phase {
            Phase::AwaitingAck(a) => ("awaiting-ack", a.invited),
            Phase::Invited => ("invited", false),
            // Reconnecting: a restart before the 2xx offers a new connection again.
            Phase::Live | Phase::Reconnecting(_) => ("live", false),
            Phase::Ending { .. } => ("ending", false),
        };
        let stored = Stored {
            dialog: dialog.clone(),
            stream: session.transport == Transport::Stream,
            origin: session.answer.sdp.origin.session_id.parse().unwrap_or(0),
            invited,
            version: session.answer.sdp.origin.session_version.parse().ok(),
        };
        let state = match serde_json::to_string(&stored) {
            Ok(state) => state,
            Err(e) => {
                tracing::error!(session = %session.id, error = %e, "session not stored");
                return None;
            }
        };
        session.stored = true;
        Some(SessionRow {
            id: session.id.to_string(),
            call_id: key.call_id.clone(),
            local_tag: key.local_tag.clone(),
            phase: phase.into(),
            invite: session.unstored.take().map(Vec::from),
            state,
            expires_at: None,
        })
    }

    /// Session `row`'s stored state and its INVITE read again, as when it came.
    pub(super) fn read(&self, row: &SessionRow) -> Result<(Stored, Prepared), String> {
        let stored: Stored =
            serde_json::from_str(&row.state).map_err(|e| format!("stored dialog: {e}"))?;
        let invite = row.invite.as_deref().ok_or("no stored INVITE")?;
        let request = sip_message::parse(invite, Transport::Stream, &Limits::default())
            .map_err(|e| format!("stored INVITE: {e}"))?;
        let mut prepared = self
            .prepare(&request, &row.local_tag, &row.id, Some(stored.origin))
            .map_err(|r| format!("stored INVITE: {} {}", r.status, r.why))?;
        if let Some(version) = stored.version {
            prepared.answer.sdp.origin.session_version = version.to_string();
        }
        Ok((stored, prepared))
    }

    /// The mail facts of a session freed before a restart whose row stayed for the chat
    /// messages still spooled (phase `closed`): their mails go on, the session does not.
    pub fn closed_facts(&self, row: &SessionRow) -> Result<(SessionKey, Box<MailFacts>), String> {
        let (_, prepared) = self.read(row)?;
        Ok((row_key(row), Box::new(prepared.facts)))
    }

    /// Session `row`, stored before a restart, back in its dialog, its requests going
    /// out through `peer` (toward the dialog's next hop, over UDP). A session awaiting the e-mail
    /// user's answer whose chat the IWF connects waits on; a live one is offered a new
    /// MSRP connection by a re-INVITE; any other lost its MSRP connection and is ended
    /// with a BYE (the effects). `Err` says why a row cannot be
    /// read (it is then forgotten).
    pub fn restore(
        &mut self,
        row: &SessionRow,
        peer: P,
        now: Instant,
    ) -> Result<Restored<P>, String> {
        if row.phase == CLOSED {
            return Err("the session was freed before the restart".into());
        }
        let (stored, prepared) = self.read(row)?;
        let key = row_key(row);
        let id: Arc<str> = row.id.as_str().into();
        self.journal_opened(&id, &prepared.facts, now);
        let iwf_connects = prepared.answer.params.role == Role::Active;
        let waits = row.phase == "invited" && iwf_connects;
        let facts = Box::new(prepared.facts);
        if stored.stream {
            // Its TCP connection died with the process, and the IWF opens none of its own
            // yet: its requests go over UDP toward the dialog's next hop.
            tracing::warn!(session = %id, "restored session came over TCP: its requests go over UDP");
        }
        let session = Session {
            id: id.clone(),
            peer,
            transport: Transport::Datagram,
            offer: prepared.offer,
            answer: prepared.answer,
            // Waiting as it was; anything else is ended from Live (its BYE goes now).
            state: State::Dialog(
                stored.dialog,
                if waits { Phase::Invited } else { Phase::Live },
            ),
            facts: facts.clone(),
            mailed: waits,
            unstored: None,
            stored: true,
        };
        self.sessions.insert(key.clone(), Box::new(session));
        let what = format_args!("restored from the store ({})", row.phase);
        self.journal.sip(&id, now, what);
        let (resumed, effects) = if waits {
            tracing::info!(session = %id, %key, "restored: awaiting the e-mail user's answer");
            self.journal.phase(&id, now, Shown::AwaitingAnswer);
            self.idle_from(&key, now);
            (Resumed::Waiting, Vec::new())
        } else if row.phase == "live" {
            tracing::info!(session = %id, %key, "restored live without its chat connection: offering a new one");
            (Resumed::Reconnecting, self.reconnect(&key, now))
        } else {
            tracing::info!(session = %id, %key, phase = %row.phase, "restored without its chat connection: ending it");
            (Resumed::Ended, self.send_bye(&key, &lost_in_restart(), now))
        };
        Ok(Restored {
            key,
            facts,
            resumed,
            phase: row.phase.clone(),
            effects,
        })
    }
}
