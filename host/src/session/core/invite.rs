//! An INVITE until its answer (5.2.1.3 F1, 5.2.4.2.4 F2): the policy's decision, the
//! invitation's SMTP outcome (AA3), CANCEL (RFC 3261 9.2), the 200 OK retransmitted until
//! its ACK (13.3.1.4), and the chat opened only with the e-mail user's consent.

use super::*;

impl<P: Peer> Core<P> {
    /// The policy's answer to the [`Effect::Decide`] of session `key`. Dropped when the INVITE
    /// is no longer pending on it (cancelled meanwhile).
    pub fn on_decision(
        &mut self,
        key: &SessionKey,
        decision: InviteDecision,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let Some(session) = self.take_pending(key, Awaiting::Decision) else {
            tracing::debug!(session = %key, "decision for an INVITE no longer pending dropped");
            return Vec::new();
        };
        let State::Pending(pending) = session.state else {
            return Vec::new();
        };
        // Rebuilt whole so that each branch can take it; an INVITE the decision leaves
        // pending (ask-user) waits on the invitation from here on.
        let session = Session {
            state: State::Pending(Pending {
                awaiting: Awaiting::Invitation,
                ..pending
            }),
            ..session
        };
        match decision {
            InviteDecision::AcceptOnBehalf => {
                tracing::info!(session = %session.id, %key, "INVITE accepted on behalf of the e-mail user");
                self.answer_invite(key, session, false, now)
            }
            InviteDecision::AskUser => {
                // 5.2.4.2.4: ask the e-mail user; the INVITE stays pending on the mail.
                tracing::info!(session = %session.id, %key, "policy asks the e-mail user: mailing the invitation");
                self.journal
                    .phase(&session.id, now, Shown::PendingInvitation);
                let mail = session.facts.clone();
                self.sessions.insert(
                    key.clone(),
                    Box::new(Session {
                        mailed: true,
                        ..session
                    }),
                );
                vec![Effect::MailInvitation {
                    key: key.clone(),
                    mail,
                }]
            }
            InviteDecision::Refuse(status) => {
                let State::Pending(pending) = &session.state else {
                    return Vec::new();
                };
                self.journal
                    .sip(&session.id, now, format_args!("{} sent", status.code));
                self.journal.closed(&session.id, now);
                self.respond(&pending.invite, status.code, &key.local_tag, &[], None, now)
            }
        }
    }

    /// The SMTP outcome (AA3) of the [`Effect::MailInvitation`] of session `key`: 250 ->
    /// 200 OK with the SDP answer (step 5a), the session then Invited once acknowledged;
    /// a refusal -> its status with the SMTP reply as Warning (steps 3, 5b). Dropped when
    /// the INVITE is no longer pending on it (cancelled meanwhile).
    pub fn on_invitation(
        &mut self,
        key: &SessionKey,
        outcome: InvitationOutcome,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let Some(session) = self.take_pending(key, Awaiting::Invitation) else {
            tracing::debug!(session = %key, "invitation outcome for an INVITE no longer pending dropped");
            return Vec::new();
        };
        match outcome {
            Ok(()) => {
                tracing::info!(session = %session.id, %key, "invitation mailed: INVITE answered 200");
                self.answer_invite(key, session, true, now)
            }
            // The mail side has already let go of the session: no SessionClosed.
            Err((status, warning)) => {
                tracing::info!(session = %session.id, %key, status = status.code, %warning, "invitation not mailed");
                let State::Pending(pending) = &session.state else {
                    return Vec::new();
                };
                let sent = format_args!("{} {} sent (AA3)", status.code, status.reason);
                self.journal.sip(&session.id, now, sent);
                self.journal.closed(&session.id, now);
                // AA3: the status and its reason phrase as the policy chose them.
                let warning = warning_value(AGENT, &warning);
                let extra = [("Warning", warning.as_str())];
                self.respond_status(&pending.invite, &status, &key.local_tag, &extra, None, now)
            }
        }
    }

    /// 200 OK with the SDP answer to the pending INVITE of `session` (5.2.1.3, and
    /// 5.2.4.2.4 step 5a when `invited`): the dialog is established, the 2xx retransmitted
    /// until its ACK.
    pub(super) fn answer_invite(
        &mut self,
        key: &SessionKey,
        session: Session<P>,
        invited: bool,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let State::Pending(pending) = session.state else {
            return Vec::new();
        };
        let (cseq, body) = (pending.dialog.remote_cseq(), session.answer.to_bytes());
        let record_route = pending.dialog.record_route();
        let tag = key.local_tag.as_str();
        let mut sent = self.answer_2xx(&pending.invite, tag, record_route, &body, now);
        let Some(phase) = self.awaiting_ack(&sent, cseq, invited, now) else {
            // No 2xx went out (the transaction is gone): the mail side lets go too.
            self.journal.closed(&session.id, now);
            if session.mailed {
                sent.push(Effect::SessionClosed {
                    key: key.clone(),
                    notify: Notify::No,
                });
            }
            return sent;
        };
        // F1: the mail side starts for the chat; F2: it has been there since the invitation.
        // Both go before the 200 OK: the peer may connect as soon as it has the answer,
        // and the MSRP session must be open by then (else its connection gets 481). In F2
        // the IWF does not connect before the e-mail user accepted (5.2.4.2.4); a CPM side
        // that connects (step 5a) is taken, its messages held until then.
        let mut first = Vec::with_capacity(2);
        if !invited {
            first.push(Effect::MailAccepted {
                key: key.clone(),
                mail: session.facts.clone(),
            });
        }
        let iwf_connects = session.answer.params.role == Role::Active;
        if !(invited && iwf_connects) {
            first.push(Effect::ChatOpen {
                key: key.clone(),
                msrp: Box::new(session.answer.params.clone()),
                held: invited,
            });
        }
        sent.splice(0..0, first);
        self.journal
            .sip(&session.id, now, "200 OK sent (SDP answer)");
        self.journal.phase(&session.id, now, Shown::AwaitingAck);
        let state = State::Dialog(pending.dialog, phase);
        let session = Session {
            state,
            mailed: true,
            ..session
        };
        self.sessions.insert(key.clone(), Box::new(session));
        self.watch_ack(key);
        // Stored before the 200 OK goes out: the driver commits the turn's changes first.
        self.touch(key);
        sent
    }

    /// Removes session `key` when its INVITE is pending on `awaiting`.
    pub(super) fn take_pending(
        &mut self,
        key: &SessionKey,
        awaiting: Awaiting,
    ) -> Option<Session<P>> {
        match &self.sessions.get(key)?.state {
            State::Pending(p) if p.awaiting == awaiting => self.sessions.remove(key).map(|s| *s),
            _ => None,
        }
    }

    /// When session `key` next retransmits its 2xx or gives up, if it is waiting for an ACK.
    pub(super) fn ack_deadline(&self, key: &SessionKey) -> Option<Instant> {
        match &self.sessions.get(key)?.state {
            State::Dialog(_, Phase::AwaitingAck(a)) => Some(a.next.min(a.give_up)),
            _ => None,
        }
    }

    /// Records session `key`'s current ACK deadline in `acks`.
    pub(super) fn watch_ack(&mut self, key: &SessionKey) {
        if let Some(at) = self.ack_deadline(key) {
            self.acks.push(Reverse((at, key.clone())));
        }
    }

    /// 9.2: a CANCEL reached the INVITE `invite` before its final response. The INVITE is
    /// answered 487 and its session freed; an outcome arriving later finds nothing.
    pub(super) fn on_cancelled(&mut self, invite: &TransactionKey, now: Instant) -> Vec<Effect<P>> {
        let key = self.sessions.iter().find_map(|(key, s)| match &s.state {
            State::Pending(p) if &p.invite == invite => Some(key.clone()),
            _ => None,
        });
        let mut closed = Vec::new();
        let tag = match key.and_then(|key| self.sessions.remove_entry(&key)) {
            Some((key, session)) => {
                tracing::info!(session = %session.id, %key, "INVITE cancelled while pending");
                self.journal
                    .sip(&session.id, now, "CANCEL received: 487 sent");
                self.journal.closed(&session.id, now);
                // An invitation in flight: the mail side closes its channel once it is done.
                let notify = Notify::Yes { by: None };
                closed.extend(Self::closed_effect(&key, &session, notify));
                key.local_tag
            }
            None => new_tag(),
        };
        let mut out = self.respond(invite, 487, &tag, &[], None, now);
        out.extend(closed);
        out
    }

    /// F1 (5.2.1.3) and the branches of 5.2.4.2.4: the INVITE is checked, its dialog and
    /// answer prepared, and the decision asked for; it stays pending until that comes.
    pub(super) fn on_invite(
        &mut self,
        invite: &TransactionKey,
        request: &Message,
        transport: Transport,
        peer: P,
        now: Instant,
    ) -> Vec<Effect<P>> {
        let tag = new_tag();
        let session_id = msrp::new_session_id();
        let prepared = match self.prepare(request, &tag, &session_id, None) {
            Ok(prepared) => prepared,
            Err(r) => return self.refuse_with(invite, r.status, r.warn_code, &tag, &r.why, now),
        };
        let key = SessionKey {
            call_id: prepared.dialog.call_id.clone(),
            local_tag: tag,
        };
        tracing::debug!(session = %session_id, %key, "INVITE pending on the policy's decision");
        let id: Arc<str> = session_id.into();
        self.journal_opened(&id, &prepared.facts, now);
        self.journal
            .sip(&id, now, "INVITE received: 100 Trying sent");
        let facts = prepared.facts.session.clone();
        self.sessions.insert(
            key.clone(),
            Box::new(Session {
                id,
                peer,
                transport,
                offer: prepared.offer,
                answer: prepared.answer,
                state: State::Pending(Pending {
                    invite: invite.clone(),
                    dialog: prepared.dialog,
                    awaiting: Awaiting::Decision,
                }),
                facts: Box::new(prepared.facts),
                mailed: false,
                unstored: Some(request.to_bytes().into()),
                stored: false,
            }),
        );
        vec![Effect::Decide {
            key,
            session: Box::new(facts),
        }]
    }

    /// The ladder's first entry of session `id`: who invites whom.
    pub(super) fn journal_opened(&mut self, id: &Arc<str>, facts: &MailFacts, now: Instant) {
        let facts = &facts.session;
        let email_user = facts.request_uri.trim_start_matches("mailto:");
        let cpm_user = &facts.asserted_identity.as_ref().unwrap_or(&facts.from).uri;
        self.journal.opened(id, now, email_user, cpm_user);
    }

    /// What INVITE `request` makes of session `session_id` with the IWF's tag `tag`: the
    /// dialog, the offer and the IWF's answer (with the `o=` session id `origin`, fresh
    /// when `None`), the facts of the policy and the mails. Read the same way when the
    /// INVITE arrives and when a stored session is restored from it.
    pub(super) fn prepare(
        &self,
        request: &Message,
        tag: &str,
        session_id: &str,
        origin: Option<u64>,
    ) -> Result<Prepared, Refusal> {
        let refusal = |status, warn_code, why: String| Refusal {
            status,
            warn_code,
            why,
        };
        let cpm = CpmInvite::from_message(request).map_err(|e| refusal(e.status, 399, e.reason))?;
        let dialog = Dialog::uas(request, tag).map_err(|why| refusal(400, 399, why))?;
        let body = multipart::invite_body(request.header("Content-Type"), &request.body)
            .map_err(|e| refusal(e.status, 399, e.reason))?;
        let Some(sdp) = body.sdp else {
            let why = "no SDP offer: the IWF answers MSRP chat offers only";
            return Err(refusal(488, 304, why.into()));
        };
        let offer = Offer::parse(&sdp).map_err(|e| refusal(488, e.warn_code(), e.to_string()))?;
        let local = LocalMsrp {
            host: self.config.msrp_host.clone(),
            port: self.config.msrp_port,
            session_id: session_id.to_string(),
            max_size: None,
        };
        let answer = match origin {
            Some(origin) => msrp::answer_with_origin(&offer, &local, origin),
            None => msrp::answer(&offer, &local),
        }
        .map_err(|e| refusal(488, e.warn_code(), e.to_string()))?;
        // 5.2.4.2.4 step 2b, AA2 To/Cc/Bcc: an INVITE with a URI-list (RFC 5366) invites to
        // a group session; its Contact is the conference focus (RFC 4579).
        let group = body.recipients.map(|recipients| GroupInfo {
            focus_uri: dialog.remote_target().to_string(),
            recipients,
        });
        let facts = cpm.session(session_id, self.config.gateway.clone(), group);
        let facts = MailFacts {
            session: facts,
            cpim_date_time: body.cpim_date_time,
            sip_date: cpm
                .date
                .as_ref()
                .and_then(|d| crate::mail::aa2::parse_sip_date(&d.raw)),
        };
        Ok(Prepared {
            dialog,
            offer,
            answer,
            facts,
        })
    }

    /// A 200 with `record_route` copied (12.1.1), the IWF's Contact and SDP `body` to the
    /// INVITE `tx`.
    pub(super) fn answer_2xx(
        &mut self,
        tx: &TransactionKey,
        to_tag: &str,
        record_route: &[String],
        body: &[u8],
        now: Instant,
    ) -> Vec<Effect<P>> {
        let contact = self.config.contact.clone();
        let mut headers: Vec<(&str, &str)> = record_route
            .iter()
            .map(|r| ("Record-Route", r.as_str()))
            .collect();
        headers.push(("Contact", contact.as_str()));
        let body = Some(("application/sdp", body));
        self.respond(tx, 200, to_tag, &headers, body, now)
    }

    /// The retransmission state of the 2xx in `sent` (13.3.1.4): T1, doubling up to T2,
    /// given up after 64*T1. `None` when no 2xx went out.
    pub(super) fn awaiting_ack(
        &self,
        sent: &[Effect<P>],
        cseq: u32,
        invited: bool,
        now: Instant,
    ) -> Option<Phase<P>> {
        let Some(Effect::Send { peer, bytes }) = sent.first() else {
            return None;
        };
        let t1 = self.config.timers.t1;
        Some(Phase::AwaitingAck(AwaitingAck {
            ok: bytes.clone(),
            peer: peer.clone(),
            cseq,
            next: now + t1,
            interval: t1,
            give_up: now + self.config.timers.t1_x64(),
            invited,
        }))
    }
}
