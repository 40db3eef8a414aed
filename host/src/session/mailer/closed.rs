//! F6 (5.2.4.2.6): a session over, its CC2 notification when the CPM side closed it and the
//! policy wants one (CC1: the same recipients, the same channel), then QUIT.

use super::*;

/// 5.2.4.2.6: the CC2 notification when `notify` says so and the policy wants one (CC1:
/// the same recipients, over the same channel, reopened if the server closed it), then
/// QUIT; within a `max_mail_operations` slot (none left: the gateway is going away, the
/// channel drops).
pub(super) async fn close(
    shared: &Arc<Shared>,
    session: &PolicySession,
    mut thread: Thread,
    notify: Notify,
) {
    let Ok(_slot) = shared.slots.acquire().await else {
        return;
    };
    let id = &session.session_id;
    if let Notify::Yes { by } = notify {
        Box::pin(notify_closed(shared, session, &mut thread, by.map(|b| *b))).await;
    }
    quit_all(&mut thread, id).await;
}

/// The CC2 mail of a session the CPM side closed. Its From, Privacy and P-Asserted-Identity
/// rows come from the request that closed it (`by`, the BYE's identities, each where the
/// BYE has it): when they differ from the INVITE's, the address rows are mapped again, and
/// MAIL FROM follows the From row (AA1), so a BYE under Privacy: id keeps the envelope
/// anonymous too.
async fn notify_closed(
    shared: &Arc<Shared>,
    session: &PolicySession,
    thread: &mut Thread,
    by: Option<Identities>,
) {
    let id = &session.session_id;
    let facts = by.and_then(|by| by.update(session));
    let remap = facts.is_some();
    let facts = facts.unwrap_or_else(|| session.clone());
    let (policy, asked) = (shared.policy.clone(), facts.clone());
    let decided = blocking(move || {
        let kind = MailKind::SessionClosed;
        (
            policy.session_closed(&asked).value,
            policy.x_priority(&asked, kind).value,
            policy.deliver_by(&asked, kind).value,
            remap.then(|| decide(&policy, &asked, false)),
        )
    })
    .await;
    let Some((Some(notification), x_priority, deliver_by, remapped)) = decided else {
        return;
    };
    let closer = remapped.map(|d| addresses(&facts, &d));
    let (addresses, from) = match closer {
        Some(Ok(a)) => {
            let from = Some(a.from.addr.clone());
            let addresses = Addresses {
                from: a.from,
                sender: a.sender,
                ..thread.addresses.clone()
            };
            (addresses, from)
        }
        Some(Err(why)) => {
            tracing::info!(session = %id, %why, "the BYE's identity has no address: CC2 from the INVITE's");
            (thread.addresses.clone(), thread.from.clone())
        }
        None => (thread.addresses.clone(), thread.from.clone()),
    };
    let kind = Kind::Closed {
        parent: thread.last.as_ref(),
        body: &notification,
    };
    let drafted = generated_id(session).and_then(|message_id| {
        draft(
            &facts,
            &addresses,
            &kind,
            message_id,
            x_priority,
            Utc::now(),
        )
    });
    let draft = match drafted {
        Ok(draft) => draft,
        Err(e) => {
            tracing::warn!(session = %id, error = %e, "session-closed mail not built");
            return;
        }
    };
    let by = deliver_by.as_ref().and_then(DeliverBy::from_policy);
    let mail = compose(&draft);
    let closing = "session-closed mail";
    match send(shared, thread, from, by, &mail, id, closing).await {
        Ok(()) => tracing::info!(session = %id, "session-closed mail sent"),
        Err(failure) => {
            tracing::warn!(session = %id, %failure, "session-closed mail not sent")
        }
    }
}
