//! F2 (5.2.4.2.4 steps 1-5): the invitation mailed (AA1, AA2) within the deadline, and its
//! SMTP outcome turned into the INVITE's answer (AA3: the status, and the reply as Warning).

use super::*;

/// The longest SMTP reply text carried into a SIP Warning.
const MAX_WARNING: usize = 200;

/// F2 steps 1-5: mails the invitation within `invitation_timeout_ms` and sends its
/// outcome; the session's thread when it went out, `None` when refused (the task ends).
pub(super) async fn invitation(
    shared: &Arc<Shared>,
    key: &SessionKey,
    mail: &MailFacts,
    outcomes: &mpsc::UnboundedSender<Invited>,
) -> Option<Thread> {
    // The deadline covers the wait for a slot too: the INVITE is pending all along.
    let slotted = async {
        let _slot = shared.slots.acquire().await.ok()?;
        Some(invite(shared, mail).await)
    };
    let invited = {
        match tokio::time::timeout(shared.deadline, slotted).await {
            Ok(invited) => invited?,
            Err(_) => {
                let ms = shared.deadline.as_millis();
                let text = format!("no SMTP outcome within {ms} ms");
                let failure = SmtpFailure::local(Stage::Connect, Some("4.4.1"), text, false);
                Err(refusal(shared, &mail.session, failure).await)
            }
        }
    };
    match invited {
        Ok((mut invited, expiry)) => {
            register(shared, key, mail, &invited);
            // The thread goes with the outcome, to be stored with the session before the
            // 200 OK: replies still find it after a restart (issue 15).
            let thread = invited.stored(mail);
            let _ = outcomes.send(Invited {
                key: key.clone(),
                outcome: Ok(()),
                expiry,
                thread,
            });
            keep_or_quit(&mut invited, key).await;
            Some(invited)
        }
        Err(refusal) => {
            let _ = outcomes.send(Invited::refused(key, refusal));
            None
        }
    }
}

/// A refusal that is not the SMTP server's: `code`, and `why` as the Warning.
fn local_refusal(code: u16, reason: &str, why: impl Into<String>) -> (SipStatus, String) {
    let status = SipStatus {
        code,
        reason: reason.into(),
    };
    (status, why.into())
}

/// AA3: the SIP status of an SMTP failure, as the policy maps it (steps 3, 5b), with the
/// SMTP reply (stage, code, enhanced code, text) as the Warning text.
async fn refusal(
    shared: &Arc<Shared>,
    session: &PolicySession,
    failure: SmtpFailure,
) -> (SipStatus, String) {
    let warning = warning_text(&failure);
    let (policy, facts, failure) = (shared.policy.clone(), session.clone(), failure.into());
    let decided = blocking(move || policy.smtp_failure_status(&facts, &failure)).await;
    let status = decided.map(|decided| {
        let answer = decided.value.code.to_string();
        let (id, which) = (&session.session_id, Decision::SmtpFailureStatus);
        shared.registry.decided(id, which, &answer, &decided.by);
        decided.value
    });
    let status = status.unwrap_or(SipStatus {
        code: 500,
        reason: "Server Internal Error".into(),
    });
    (status, warning)
}

/// AA3: the SMTP stage, code, enhanced code and text of `failure` for a SIP Warning: one
/// line (CR/LF from the server's text never reach SIP), at most [`MAX_WARNING`] bytes.
fn warning_text(failure: &SmtpFailure) -> String {
    let mut warning = failure.to_string().replace(['\r', '\n'], " ");
    if warning.len() > MAX_WARNING {
        let mut cut = MAX_WARNING;
        while !warning.is_char_boundary(cut) {
            cut -= 1;
        }
        warning.truncate(cut);
    }
    warning
}

/// 5.2.4.2.4 steps 1-5 for one session.
/// The thread and the policy's invitation expiry when the server took the invitation.
async fn invite(
    shared: &Arc<Shared>,
    mail: &MailFacts,
) -> Result<(Thread, std::time::Duration), (SipStatus, String)> {
    let session = &mail.session;
    let (policy, facts) = (shared.policy.clone(), session.clone());
    let Some(decisions) = blocking(move || decide(&policy, &facts, true)).await else {
        return Err(local_refusal(
            500,
            "Server Internal Error",
            "the invitation could not be decided",
        ));
    };
    let addresses =
        addresses(session, &decisions).map_err(|why| local_refusal(404, "Not Found", why))?;
    let envelope = envelope(&addresses, decisions.deliver_by.as_ref());
    let bad_header = |e: HeaderError| local_refusal(400, "Bad Request", e.to_string());
    let message_id = invitation_id(session).map_err(bad_header)?;
    let kind = Kind::Invitation {
        cpim_date_time: mail.cpim_date_time,
        sip_date: mail.sip_date,
        body: &decisions.body,
    };
    let draft = draft(
        session,
        &addresses,
        &kind,
        message_id.clone(),
        decisions.x_priority,
        Utc::now(),
    )
    .map_err(bad_header)?;
    let message = compose(&draft);
    let deliver_by = envelope.deliver_by;
    let mut thread = Thread::new(&shared.router, addresses, envelope, draft.subject.clone());
    // Steps 1-2: DNS (or the smart host) and the channel to the recipients' servers; step
    // 4: the mail transaction; step 5: its outcome.
    let (from, id) = (thread.from.clone(), &session.session_id);
    match send(
        shared,
        &mut thread,
        from,
        deliver_by,
        &message,
        id,
        "invitation",
    )
    .await
    {
        Ok(()) => {
            tracing::info!(session = %id, message_id = %message_id, "invitation mailed");
            thread.sent(message_id, draft.references);
            let expiry = std::time::Duration::from_secs(decisions.expiry.into());
            Ok((thread, expiry))
        }
        Err(failure) => {
            quit_all(&mut thread, id).await;
            Err(refusal(shared, session, failure).await)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aa3_warning_text_is_one_bounded_line_with_code_and_enhanced_code() {
        let failure = SmtpFailure {
            stage: Stage::RcptTo,
            code: 550,
            enhanced_code: Some("5.1.1".into()),
            text: format!("no such user\r\nX-Injected: 1 {}", "\u{e9}".repeat(200)),
            permanent: true,
        };
        let w = warning_text(&failure);
        assert!(
            w.starts_with("SMTP rcpt-to failure (permanent): 550 5.1.1: no such user  X-Injected"),
            "{w}"
        );
        assert!(!w.contains(['\r', '\n']));
        assert!(w.len() <= MAX_WARNING);
    }
}
