//! Requests within an established dialog (RFC 3261 12.2): the ACK, the CPM side's BYE
//! (F6, 5.2.4.2.6) and re-INVITE (14.2).

use super::*;

impl<P: Peer> Core<P> {
    /// A request with a To tag: within one of the IWF's dialogs, or answered 481 (12.2.2).
    pub(super) fn on_in_dialog(
        &mut self,
        tx: &TransactionKey,
        method: &str,
        request: &Message,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let Some(key) = self.dialog_of(request) else {
            return match method {
                "ACK" => Vec::new(),
                _ => self.refuse(tx, 481, "", "no such session", now),
            };
        };
        let Some(Session {
            id,
            state: State::Dialog(dialog, phase),
            ..
        }) = self.sessions.get_mut(&key).map(|s| &mut **s)
        else {
            return Vec::new();
        };
        if method == "ACK" {
            // 13.3.1.4: the ACK for the 2xx being retransmitted (same CSeq number).
            if let Phase::AwaitingAck(a) = phase
                && request.cseq().is_some_and(|(n, _)| n == a.cseq)
            {
                self.journal.sip(id, now, "ACK received");
                if a.invited {
                    *phase = Phase::Invited;
                    tracing::info!(session = %id, "session invited: awaiting the e-mail user");
                    self.journal.phase(id, now, Shown::AwaitingAnswer);
                    self.idle.push_back((now, key.clone()));
                } else {
                    *phase = Phase::Live;
                    tracing::info!(session = %id, "session live");
                    self.journal.phase(id, now, Shown::Live);
                }
                // The phase stored moves with it (what a restart finds, and counts).
                self.changes.push(durable::Change::Save(key.clone()));
            }
            return Vec::new();
        }
        if matches!(phase, Phase::Ending { .. }) {
            // 15.1.1: once the IWF sent its BYE the session is over; a crossing BYE is
            // answered, anything else finds no session.
            return match method {
                "BYE" => self.respond(tx, 200, "", &[], None, now),
                _ => self.refuse(tx, 481, "", "session ending", now),
            };
        }
        if let Err(why) = dialog.check_cseq(request) {
            return self.refuse(tx, 500, "", &why, now);
        }
        // Its CSeq moved, and a re-INVITE may move its target: saved with the turn.
        self.changes.push(durable::Change::Save(key.clone()));
        match method {
            "BYE" => {
                // F6 (5.2.4.2.6): 200 OK at once, then the mail side's CC2, from the BYE's
                // identities, and QUIT. Malformed ones do not keep the session alive: CC2
                // then takes the INVITE's.
                tracing::info!(session = %id, "BYE: session closed");
                self.journal.sip(id, now, "BYE received: 200 sent");
                let by = match Originator::from_message(request) {
                    Ok(originator) => Some(Box::new(originator.identities())),
                    Err(e) => {
                        tracing::info!(session = %id, reason = %e.reason, "BYE identity not read: CC2 from the INVITE's");
                        None
                    }
                };
                let mut out = self.respond(tx, 200, "", &[], None, now);
                out.extend(self.free(&key, Notify::Yes { by }, now));
                out
            }
            "INVITE" => self.on_reinvite(&key, tx, request, now),
            _ => self.refuse(tx, 405, "", "method not handled within a session", now),
        }
    }

    /// A re-INVITE (14.2) in session `key`: a refresh (no offer, or the same media) gets the
    /// same answer in a 200 and refreshes the remote target (12.2.2); a change of media is
    /// refused 488 and the session goes on as negotiated.
    pub(super) fn on_reinvite(
        &mut self,
        key: &SessionKey,
        tx: &TransactionKey,
        request: &Message,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let Some(session) = self.sessions.get(key) else {
            return Vec::new();
        };
        self.journal.sip(&session.id, now, "re-INVITE received");
        if let State::Dialog(_, Phase::AwaitingAck(_)) = session.state {
            // 14.2: the last offer/answer is not complete before its ACK.
            let retry = [("Retry-After", "1")];
            return self.respond(tx, 500, "", &retry, None, now);
        }
        if let State::Dialog(_, Phase::Reconnecting(_)) = session.state {
            // 14.2: the IWF's own re-INVITE is pending.
            return self.refuse(tx, 491, "", "the IWF's re-INVITE is pending", now);
        }
        let same_media = match multipart::invite_body(request.header("Content-Type"), &request.body)
        {
            Err(e) => return self.refuse(tx, e.status, "", &e.reason, now),
            // No offer: the 200 offers the same description (13.2.1); the ACK answers it.
            Ok(body) => match body.sdp {
                None => true,
                Some(sdp) => match Offer::parse(&sdp) {
                    Ok(offer) => same_media(&offer, &session.offer),
                    Err(e) => {
                        return self.refuse_with(tx, 488, e.warn_code(), "", &e.to_string(), now);
                    }
                },
            },
        };
        if !same_media {
            self.journal
                .sip(&session.id, now, "488 sent: the media may not change");
            return self.refuse(
                tx,
                488,
                "",
                "changing the media of a session is not supported; it goes on as negotiated",
                now,
            );
        }
        let body = session.answer.to_bytes();
        let invited = matches!(session.state, State::Dialog(_, Phase::Invited));
        let cseq = request.cseq().map_or(0, |(n, _)| n);
        let sent = self.answer_2xx(tx, "", &[], &body, now);
        let phase = self.awaiting_ack(&sent, cseq, invited, now);
        if let Some(Session {
            id,
            state: State::Dialog(dialog, current),
            ..
        }) = self.sessions.get_mut(key).map(|s| &mut **s)
            && let Some(phase) = phase
        {
            if let Err(e) = dialog.refresh_target(request) {
                tracing::info!(session = %id, error = %e, "re-INVITE Contact not taken");
            }
            *current = phase;
            tracing::info!(session = %id, "re-INVITE: session refreshed");
            self.journal.sip(id, now, "200 OK sent (the same answer)");
            self.journal.phase(id, now, Shown::AwaitingAck);
            self.watch_ack(key);
        }
        sent
    }
}
