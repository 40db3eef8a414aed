//! F4 (5.2.4.2.5 steps 2-4): one chat message of the CPM side mailed (BB1, BB2) over the
//! session's channel, opened at the first mail of an F1 session; its outcome as the MSRP
//! answer. A message the servers refuse for now is tried again, with back-off, until its
//! give-up time (issue 15: it is spooled, and its sender already has its 200).

use super::*;

/// F4 steps 2-3 (BB1, BB2): the chat mail of `message`, over the session's channel (opened
/// at the first mail of an F1 session); its outcome as F4 step 4's MSRP answer.
pub(super) async fn chat_mail(
    shared: &Arc<Shared>,
    key: &SessionKey,
    session: &PolicySession,
    thread: &mut Option<Thread>,
    chat: &Outbound,
) -> Result<(), Undelivered> {
    let message = &chat.message;
    let id = session.session_id.clone();
    let mails_sent = thread.as_ref().map_or(0, |t| t.chats);
    let (policy, facts, author) = (
        shared.policy.clone(),
        session.clone(),
        message.author.clone(),
    );
    let need_addresses = thread.is_none();
    let decided = blocking(move || {
        let kind = MailKind::Chat;
        let chat = ChatContext {
            mails_sent,
            participants: Vec::new(),
        };
        // BB2 From: the CPIM From, mapped; never with Privacy: id (the anonymous From stays).
        let author = author.filter(|_| !facts.privacy_id).and_then(|a| {
            let identity = Identity {
                uri: a.uri,
                display_name: a.display_name,
            };
            policy.cpm_to_email(&facts.gateway, &identity).value
        });
        ChatDecisions {
            addresses: need_addresses.then(|| decide(&policy, &facts, false)),
            author,
            additions: policy.body_additions(&facts, &chat).value,
            x_priority: policy.x_priority(&facts, kind).value,
            deliver_by: policy.deliver_by(&facts, kind).value,
        }
    })
    .await
    .ok_or_else(|| chat::unmapped("the chat mail could not be decided"))?;
    if let Some(decisions) = &decided.addresses {
        let addresses = addresses(session, decisions).map_err(|why| chat::unmapped(&why))?;
        let envelope = envelope(&addresses, None);
        let subject = session.subject.clone();
        *thread = Some(Thread::new(&shared.router, addresses, envelope, subject));
    }
    let Some(thread) = thread.as_mut() else {
        return Err(chat::unmapped("no mail state for the session").into());
    };
    let author = decided
        .author
        .as_ref()
        .and_then(|m| Mailbox::new(m.display_name.as_deref(), &m.address).ok());
    let kind = Kind::Chat {
        message,
        author: author.as_ref(),
        additions: &decided.additions,
        parent: thread.last.as_ref(),
        subject: thread.subject.as_deref(),
    };
    let bad_header = |e: HeaderError| chat::unmapped(&e.to_string());
    let taken = |id: &MsgId| shared.directory.knows(&bare(id));
    let message_id =
        chat_message_id(session, message, &chat.mail_nonce, taken).map_err(bad_header)?;
    let draft = draft(
        session,
        &thread.addresses,
        &kind,
        message_id.clone(),
        decided.x_priority,
        Utc::now(),
    )
    .map_err(bad_header)?;
    // BB1: the session's recipients, MAIL FROM the author's address in a 1-1 chat.
    let from = Some(draft.from.addr.clone());
    let by = decided.deliver_by.as_ref().and_then(DeliverBy::from_policy);
    match send(shared, thread, from, by, &compose(&draft), &id, "chat mail").await {
        Ok(()) => {
            tracing::info!(session = %id, message_id = %message_id, "chat message mailed");
            shared.directory.sent(key, &bare(&message_id));
            // BB2 From may be the author's address: the e-mail user answers that one.
            shared.directory.mails_from(key, draft.from.addr.as_str());
            thread.sent(message_id, draft.references);
            thread.chats += 1;
            Ok(())
        }
        Err(failure) => {
            tracing::info!(session = %id, %failure, "chat message not mailed");
            Err(Undelivered::smtp(failure))
        }
    }
}

/// The policy's answers for one chat mail, asked in one go on the blocking pool.
struct ChatDecisions {
    /// The session's addresses, at the first mail of an F1 session.
    addresses: Option<Decisions>,
    author: Option<world::Mailbox>,
    additions: Additions,
    x_priority: Option<u8>,
    deliver_by: Option<world::ByRequest>,
}
