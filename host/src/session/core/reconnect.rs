//! A live session after a restart (issue 15): its MSRP connection died with the process,
//! and the IWF re-establishes it with a re-INVITE carrying a fresh offer (RFC 4975 8.4;
//! the IWF is the offerer for that exchange, RFC 3264 8).
//!
//! ```text
//!  restored Live ─re-INVITE (a=setup:actpass)─> Reconnecting
//!      ─2xx─> ACK, the answer's MSRP parameters ─> Live: ChatOpen
//!      ─3xx-6xx (ACKed by the transaction), Timer B, transport error, an answer that
//!       cannot carry the chat─> BYE whose Reason says why ─> Ending
//! ```
//!
//! A re-INVITE of the CPM side's crossing the IWF's gets 491 (14.2).

use super::*;

/// A re-INVITE of the IWF's, until its final response.
pub(super) struct Reconnect {
    /// Its INVITE client transaction.
    invite: TransactionKey,
    /// The description it offered (RFC 4975 8.4), which the answer completes.
    offered: crate::sdp::session::SessionDescription,
}

impl<P: Peer> Core<P> {
    /// Sends session `key`'s re-INVITE with a fresh MSRP offer, moving it to Reconnecting;
    /// ends the session when the request cannot be sent.
    pub(super) fn reconnect(&mut self, key: &SessionKey, now: Instant) -> Vec<Effect<P>> {
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
        // RFC 3264 8: a changed description has a higher version than the last one sent.
        let version = session
            .answer
            .sdp
            .origin
            .session_version
            .parse::<u64>()
            .unwrap_or(0)
            + 1;
        let offered = msrp::reoffer(&session.answer, version);
        let body = offered.to_bytes();
        let extra = [("Contact", self.config.contact.as_str())];
        let invite =
            dialog.request_with_body("INVITE", &via, &extra, Some(("application/sdp", &body)));
        let to = (&session.peer, session.transport);
        let started = send_in_dialog(&mut self.transactions, to, invite, now);
        match started {
            Ok((invite, outputs)) => {
                tracing::info!(session = %session.id, %key, "re-INVITE sent: a new chat connection offered");
                self.journal
                    .sip(&session.id, now, "re-INVITE sent (a new chat connection)");
                self.journal.phase(&session.id, now, Shown::Reconnecting);
                *phase = Phase::Reconnecting(Box::new(Reconnect {
                    invite: invite.clone(),
                    offered,
                }));
                self.reinvites.insert(invite, key.clone());
                let transport = session.transport;
                self.touch(key);
                self.run(outputs, transport, now)
            }
            Err(e) => {
                let reason = EndReason {
                    cause: 500,
                    text: format!(
                        "the IWF restarted and could not offer a new chat connection: {e}"
                    ),
                };
                self.send_bye(key, &reason, now)
            }
        }
    }

    /// Whether client transaction `tx` is one of the IWF's re-INVITEs.
    pub(super) fn is_reinvite(&self, tx: &TransactionKey) -> bool {
        self.reinvites.contains_key(tx) || self.reinvite_acks.contains_key(tx)
    }

    /// A response to the IWF's re-INVITE `tx`, through `peer`.
    pub(super) fn on_reconnect_response(
        &mut self,
        tx: &TransactionKey,
        peer: P,
        response: Message,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let status = response.status().unwrap_or(0);
        if status < 200 {
            return Vec::new();
        }
        if status >= 300 {
            // 17.1.1.3: the transaction ACKed it.
            let reason = EndReason {
                cause: status,
                text: format!(
                    "the CPM side refused the re-INVITE that re-establishes the chat connection after the IWF restarted ({status})"
                ),
            };
            return self.reconnect_failed(tx, &reason, now);
        }
        // 13.2.2.4: every 2xx is ACKed, a retransmitted one with the same ACK.
        if let Some((peer, ack)) = self.reinvite_acks.get(tx) {
            return vec![Effect::Send {
                peer: peer.clone(),
                bytes: ack.clone(),
            }];
        }
        let Some(key) = self.reinvites.remove(tx) else {
            return Vec::new();
        };
        let Some(transport) = self.sessions.get(&key).map(|s| s.transport) else {
            return Vec::new();
        };
        let via = self.via(transport);
        let Some(session) = self.sessions.get_mut(&key).map(|s| &mut **s) else {
            return Vec::new();
        };
        let State::Dialog(dialog, phase) = &mut session.state else {
            return Vec::new();
        };
        // 12.2.1.2: the 2xx of a target refresh moves the remote target, where its ACK
        // goes (13.2.2.4).
        if let Err(e) = dialog.refresh_target(&response) {
            tracing::info!(session = %session.id, error = %e, "2xx Contact not taken");
        }
        let cseq = response.cseq().map_or(0, |(n, _)| n);
        let mut out = Vec::new();
        match dialog.ack(cseq, &via) {
            Ok(ack) => {
                let peer = session.peer.toward(&ack.next_hop).unwrap_or(peer);
                self.reinvite_acks
                    .insert(tx.clone(), (peer.clone(), ack.bytes.clone()));
                out.push(Effect::Send {
                    peer,
                    bytes: ack.bytes,
                });
            }
            Err(e) => {
                tracing::warn!(session = %session.id, error = %e, "ACK of the re-INVITE's 2xx not built")
            }
        }
        let Phase::Reconnecting(reconnect) = phase else {
            // Ended meanwhile (a BYE crossed it): ACKed, nothing more.
            return out;
        };
        if &reconnect.invite != tx {
            return out;
        }
        match msrp::reanswered(&session.answer, &reconnect.offered, &response.body) {
            Ok((theirs, answer)) => {
                tracing::info!(session = %session.id, role = ?answer.params.role, "re-INVITE answered: the chat connects again");
                self.journal
                    .sip(&session.id, now, "2xx to the re-INVITE: ACK sent");
                self.journal.phase(&session.id, now, Shown::Live);
                *phase = Phase::Live;
                session.offer = theirs;
                let msrp = Box::new(answer.params.clone());
                session.answer = answer;
                self.touch(&key);
                out.push(Effect::ChatOpen {
                    key,
                    msrp,
                    held: false,
                });
                out
            }
            Err(e) => {
                let reason = EndReason {
                    cause: 488,
                    text: format!("the answer to the IWF's re-INVITE cannot carry the chat: {e}"),
                };
                out.extend(self.send_bye(&key, &reason, now));
                out
            }
        }
    }

    /// The IWF's re-INVITE `tx` is over: its 2xx's ACK is no longer kept.
    pub(super) fn on_reconnect_terminated(&mut self, tx: &TransactionKey) {
        self.reinvite_acks.remove(tx);
    }

    /// The IWF's re-INVITE `tx` failed (refused, Timer B, a transport error): its session,
    /// if still reconnecting on it, is ended with `reason`.
    pub(super) fn reconnect_failed(
        &mut self,
        tx: &TransactionKey,
        reason: &EndReason,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let Some(key) = self.reinvites.remove(tx) else {
            return Vec::new();
        };
        let reconnecting = matches!(
            self.sessions.get(&key).map(|s| &s.state),
            Some(State::Dialog(_, Phase::Reconnecting(r))) if &r.invite == tx
        );
        if !reconnecting {
            return Vec::new();
        }
        tracing::info!(session = %key, cause = reason.cause, "the chat connection could not be re-established: ending the session");
        self.send_bye(&key, reason, now)
    }
}
