//! Where the e-mail user stands, their answers (F3 accept, reject, expiry; F8 leave), and
//! every way a session ends: the IWF's BYE (15.1.1, RFC 3326 Reason) and freeing it.

use super::*;

impl<P: Peer> Core<P> {
    /// [`Effect::SessionClosed`] for a session freed, when its invitation was mailed.
    pub(super) fn closed_effect(
        key: &SessionKey,
        session: &Session<P>,
        notify: Notify,
    ) -> Option<Effect<P>> {
        session.mailed.then(|| Effect::SessionClosed {
            key: key.clone(),
            notify,
        })
    }

    /// Frees session `key`; the mail side is told when it holds state for it.
    pub(super) fn free(
        &mut self,
        key: &SessionKey,
        notify: Notify,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let session = self.sessions.remove(key);
        if let Some(session) = &session {
            self.journal.closed(&session.id, now);
            if session.stored {
                self.changes
                    .push(durable::Change::Forget(session.id.clone()));
            }
        }
        session
            .and_then(|session| Self::closed_effect(key, &session, notify))
            .into_iter()
            .collect()
    }

    /// Records a SIP event of session `key`, when held (for calls that know only the key).
    pub(super) fn note(&mut self, key: &SessionKey, now: Instant, what: fmt::Arguments<'_>) {
        if let Some(session) = self.sessions.get(key) {
            self.journal.sip(&session.id, now, what);
        }
    }

    /// Where the e-mail user stands in session `key` (the policy's `session-phase`):
    /// `None` while the INVITE is pending or once the session is ending.
    pub fn user_phase(&self, key: &SessionKey) -> Option<SessionPhase> {
        match &self.sessions.get(key)?.state {
            State::Dialog(_, Phase::Invited) => Some(SessionPhase::AwaitingAnswer),
            State::Dialog(_, Phase::AwaitingAck(a)) if a.invited => {
                Some(SessionPhase::AwaitingAnswer)
            }
            State::Dialog(_, Phase::AwaitingAck(_) | Phase::Live | Phase::Reconnecting(_)) => {
                Some(SessionPhase::Live)
            }
            State::Dialog(_, Phase::Ending { .. }) | State::Pending(_) => None,
        }
    }

    /// F3 (5.2.4.2.4): the e-mail user accepted the invitation: the session is live, and
    /// its chat starts: the IWF connects now (when it is the active end), or the messages
    /// the CPM side sent meanwhile go out. `None` when session `key` was not awaiting an
    /// answer.
    pub fn user_accepted(&mut self, key: &SessionKey) -> Option<Vec<Effect<P>>> {
        let session = self.sessions.get_mut(key)?;
        let State::Dialog(_, phase) = &mut session.state else {
            return None;
        };
        match phase {
            Phase::Invited => {
                *phase = Phase::Live;
                self.journal.phase(&session.id, Instant::now(), Shown::Live);
            }
            // Accepted before the ACK came: the ACK then makes it live.
            Phase::AwaitingAck(a) if a.invited => a.invited = false,
            _ => return None,
        }
        tracing::info!(session = %session.id, "the e-mail user accepted: session live");
        let chat = match session.answer.params.role {
            Role::Active => Effect::ChatOpen {
                key: key.clone(),
                msrp: Box::new(session.answer.params.clone()),
                held: false,
            },
            Role::Passive => Effect::ChatConsent {
                key: key.clone(),
                consent: Consent::Given,
            },
        };
        self.touch(key);
        Some(vec![chat])
    }

    /// F3: the invitation's expiry passed; a session still awaiting the e-mail user's
    /// answer is ended as rejected (BYE with the reason).
    pub fn invitation_expired(&mut self, key: &SessionKey, now: Instant) -> Vec<Effect<P>> {
        if self.user_phase(key) != Some(SessionPhase::AwaitingAnswer) {
            return Vec::new();
        }
        tracing::info!(session = %key, "no answer from the e-mail user in time: treated as reject");
        let reason = EndReason {
            cause: 408,
            text: "the e-mail user did not answer the invitation in time".into(),
        };
        self.end_session(key, &reason, now)
    }

    /// Ends session `key` from the IWF's side (reject, leave, expiry): a BYE within the dialog
    /// with `reason` (15.1.1, RFC 3326); the session is freed when the BYE's transaction
    /// ends. An INVITE still pending is answered 480 with the reason as Warning instead.
    pub fn end_session(
        &mut self,
        key: &SessionKey,
        reason: &EndReason,
        now: Instant,
    ) -> Vec<Effect<P>> {
        match self.sessions.get(key).map(|s| &s.state) {
            None => {
                tracing::debug!(session = %key, "end of a session not held: nothing to do");
                Vec::new()
            }
            Some(State::Pending(pending)) => {
                let invite = pending.invite.clone();
                self.note(key, now, format_args!("480 sent: {}", reason.text));
                let mut out = self.refuse(&invite, 480, &key.local_tag, &reason.text, now);
                out.extend(self.free(key, Notify::No, now));
                out
            }
            Some(State::Dialog(_, Phase::Ending { .. })) => Vec::new(),
            Some(State::Dialog(..)) => {
                // Not accepted (rejected, expired): the messages the CPM side sent
                // meanwhile are refused first (failure REPORTs), while its MSRP
                // connection is still there to take them, then the BYE.
                let mut out = Vec::new();
                if self.user_phase(key) == Some(SessionPhase::AwaitingAnswer) {
                    out.push(Effect::ChatConsent {
                        key: key.clone(),
                        consent: Consent::Refused,
                    });
                }
                out.extend(self.send_bye(key, reason, now));
                out
            }
        }
    }

    /// Sends the BYE of session `key` and moves it to Ending (15.1.1); frees it when the BYE
    /// cannot be built or sent.
    pub(super) fn send_bye(
        &mut self,
        key: &SessionKey,
        reason: &EndReason,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let Some(transport) = self.sessions.get(key).map(|s| s.transport) else {
            return Vec::new();
        };
        let via = self.via(transport);
        let Some(session) = self.sessions.get_mut(key) else {
            return Vec::new();
        };
        let State::Dialog(dialog, phase) = &mut session.state else {
            return Vec::new();
        };
        let reason_header = reason_value(reason.cause, &reason.text);
        let bye = dialog.request("BYE", &via, &[("Reason", &reason_header)]);
        let to = (&session.peer, session.transport);
        let started = send_in_dialog(&mut self.transactions, to, bye, now);
        match started {
            Ok((bye, outputs)) => {
                tracing::info!(session = %session.id, %key, cause = reason.cause, text = %reason.text, "BYE sent");
                let sent = format_args!("BYE sent ({}: {})", reason.cause, reason.text);
                self.journal.sip(&session.id, now, sent);
                self.journal.phase(&session.id, now, Shown::Ending);
                *phase = Phase::Ending { bye: bye.clone() };
                self.byes.insert(bye, key.clone());
                let transport = session.transport;
                self.touch(key);
                self.run(outputs, transport, now)
            }
            Err(e) => {
                tracing::warn!(session = %session.id, %key, error = %e, "BYE not sent; session freed");
                self.free(key, Notify::No, now)
            }
        }
    }
}
