//! At start, the sessions stored before (issue 15) back in the core, the mailer and the
//! timers, before any listener serves.

use super::driver::Mail;
use crate::net::sip::Replier;
use crate::session::chat::ChatMessage;
use crate::session::core::{Core, Effect, EndReason, Notify, Restored, Resumed, SessionKey};
use crate::session::deliver::Deliveries;
use crate::session::directory::Directory;
use crate::session::mailer::Outbound;
use crate::session::stats::SessionStats;
use crate::store::{CLOSED, Changes, Store, Unspooled};
use std::collections::HashMap;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// Reads back every session stored before the start (issue 15): invitations awaiting
/// the e-mail user wait on, with their mail threads and expiry; live sessions are offered
/// a new chat connection by a re-INVITE, their mail side back; others lost their chat
/// connection and get a BYE (the effects returned, for the first turn). The chat messages
/// of the outbound spool are mailed in their session's thread, first, whatever became of
/// the session (one freed before the restart kept its row for them). A row that cannot be
/// read is logged and dropped.
pub(super) async fn restore(
    store: &Store,
    core: &mut Core<Replier>,
    mail: &mut Mail,
    stats: &SessionStats,
    peer: Replier,
) -> anyhow::Result<(Vec<Effect<Replier>>, HashMap<String, SessionKey>)> {
    let rows = store.sessions().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let threads = store.threads().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut spooled = spooled_by_session(store).await?;
    let now = Instant::now();
    let mut effects = Vec::new();
    let mut unreadable = Changes::default();
    // The sessions that go on (waiting, reconnecting): their spooled chat mails too.
    let mut going_on = HashMap::new();
    for row in &rows {
        let chats = spooled.remove(&row.id).unwrap_or_default();
        // Out of the spool if the row is dropped, else the next start finds them again.
        let chat_ids: Vec<String> = chats.iter().map(|c| c.msrp_message_id.clone()).collect();
        let mut drop_row = |id: &str| {
            unreadable.forgotten.push(id.to_owned());
            for msrp_message_id in &chat_ids {
                store.unspool(Unspooled {
                    session_id: id.to_owned(),
                    msrp_message_id: msrp_message_id.clone(),
                    thread: None,
                });
            }
        };
        let thread = threads.get(&row.id).map(String::as_str);
        if row.phase == CLOSED {
            // Freed before the restart, its last chat messages not yet mailed.
            let outcome = core
                .closed_facts(row)
                .and_then(|(key, facts)| {
                    mail.mailer.restore(key.clone(), facts, thread, chats)?;
                    Ok(key)
                })
                .map(|key| mail.mailer.closed(&key, Notify::No));
            if let Err(why) = outcome {
                tracing::error!(session = %row.id, error = %why, "closed session's spooled chat messages unreadable: dropped");
                stats.recovered(&row.phase, "unreadable");
                drop_row(&row.id);
            } else {
                stats.recovered(&row.phase, "mailing");
            }
            continue;
        }
        // Awaiting its answer with nothing spooled: restored parked, out of memory.
        if mail.park_after.is_some() && chats.is_empty() {
            match core.restore_parked(row, peer.clone(), now) {
                Ok(None) => {}
                Ok(Some(key)) => {
                    let thread = thread.ok_or_else(|| "no stored mail thread".to_string());
                    match thread.and_then(|t| mail.mailer.restore_parked(&key, &row.id, t)) {
                        Ok(()) => {
                            going_on.insert(row.id.clone(), SessionKey::clone(&key));
                            stats.recovered(&row.phase, "waiting");
                            if let Some(at) = row.expires_at {
                                mail.expiries.set(key.clone(), at);
                            }
                        }
                        Err(why) => {
                            tracing::error!(session = %row.id, error = %why, "stored session without its mail thread: ending it");
                            stats.recovered(&row.phase, "ended");
                            effects.extend(end_parked(core, row, &key, &why, now));
                        }
                    }
                    continue;
                }
                Err(why) => {
                    tracing::error!(session = %row.id, error = %why, "stored session unreadable: dropped");
                    stats.recovered(&row.phase, "unreadable");
                    drop_row(&row.id);
                    continue;
                }
            }
        }
        let restored = match core.restore(row, peer.clone(), now) {
            Ok(restored) => restored,
            Err(why) => {
                tracing::error!(session = %row.id, error = %why, "stored session unreadable: dropped");
                stats.recovered(&row.phase, "unreadable");
                drop_row(&row.id);
                continue;
            }
        };
        let Restored {
            key,
            facts,
            resumed,
            ..
        } = restored;
        let waits = matches!(resumed, Resumed::Waiting);
        let reconnects = matches!(resumed, Resumed::Reconnecting);
        if !waits && !reconnects && chats.is_empty() {
            stats.recovered(&row.phase, "ended");
            effects.extend(restored.effects);
            continue;
        }
        // Waiting: its thread is needed for the replies; reconnecting: for its chat mails
        // to go on in it (an F1 session that mailed nothing has none yet); ended: for its
        // spooled chat messages, mailed before the close its BYE brings.
        let thread = match (thread, waits) {
            (None, true) => Err("no stored mail thread".to_string()),
            (thread, _) => Ok(thread),
        };
        match thread.and_then(|thread| mail.mailer.restore(key.clone(), facts, thread, chats)) {
            Ok(()) if waits => {
                going_on.insert(row.id.clone(), key.clone());
                stats.recovered(&row.phase, "waiting");
                if let Some(at) = row.expires_at {
                    mail.expiries.set(mail.mailer.shared_key(&key), at);
                }
                effects.extend(restored.effects);
            }
            Ok(()) => {
                if reconnects {
                    going_on.insert(row.id.clone(), key.clone());
                }
                let outcome = if reconnects { "reconnecting" } else { "ended" };
                stats.recovered(&row.phase, outcome);
                effects.extend(restored.effects);
            }
            Err(why) => {
                tracing::error!(session = %row.id, error = %why, "stored session without its mail thread: ending it");
                stats.recovered(&row.phase, "ended");
                effects.extend(restored.effects);
                effects.extend(core.end_session(&key, &lost_thread(&why), now));
            }
        }
    }
    for (session, chats) in spooled {
        // Kept only while their session's row is: not expected.
        tracing::error!(%session, messages = chats.len(), "spooled chat messages without their session: dropped");
        for chat in chats {
            store.unspool(Unspooled {
                session_id: chat.session_id,
                msrp_message_id: chat.msrp_message_id,
                thread: None,
            });
        }
    }
    store
        .commit(&unreadable)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !rows.is_empty() {
        tracing::info!(sessions = rows.len(), "sessions restored from the store");
    }
    Ok((effects, going_on))
}

/// The Reason of the BYE of a session restored without its mail thread.
fn lost_thread(why: &str) -> EndReason {
    EndReason {
        cause: 500,
        text: format!("the IWF restarted and lost the session's mail thread ({why})"),
    }
}

/// Session `key`, restored parked but without a readable mail thread: back in memory
/// from `row`, for the BYE that ends it.
fn end_parked(
    core: &mut Core<Replier>,
    row: &crate::store::SessionRow,
    key: &SessionKey,
    why: &str,
    now: Instant,
) -> Vec<Effect<Replier>> {
    let Some(parked) = core.unpark(key) else {
        return Vec::new();
    };
    match core.revive(row, parked, now) {
        Ok(_) => core.end_session(key, &lost_thread(why), now),
        Err(e) => {
            tracing::error!(session = %row.id, error = %e, "stored session unreadable: dropped");
            Vec::new()
        }
    }
}

/// F5's inbound spool after a restart: the mails delivered before are known again to
/// their sessions (a copy is not delivered twice), and those not delivered go on in their
/// session's order once its chat connects; a mail whose session did not go on is bounced.
pub(super) async fn restore_mails(
    store: &Store,
    going_on: &HashMap<String, SessionKey>,
    directory: &Directory,
    deliveries: &Deliveries,
) -> anyhow::Result<()> {
    let delivered = store
        .delivered_mails()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (session_id, mail_id) in delivered {
        if let Some(key) = going_on.get(&session_id) {
            directory.claim_mail(key, &mail_id);
        }
    }
    let spooled = store
        .spooled_mails()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !spooled.is_empty() {
        tracing::info!(
            mails = spooled.len(),
            "chat mails of the inbound spool resumed"
        );
    }
    for mail in spooled {
        match going_on.get(&mail.session_id) {
            Some(key) => {
                directory.claim_mail(key, &mail.mail_id);
                deliveries.push(key, mail);
            }
            None => deliveries.orphan(mail),
        }
    }
    Ok(())
}

/// The outbound spool, each session's messages in their mailing order, read back as the
/// mail tasks take them (no held reply: their MSRP connections are gone).
async fn spooled_by_session(store: &Store) -> anyhow::Result<HashMap<String, Vec<Outbound>>> {
    let rows = store.spooled().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut by_session: HashMap<String, Vec<Outbound>> = HashMap::new();
    for row in rows {
        let message = match ChatMessage::from_msrp(&row.content_type, &row.body) {
            Ok(message) => message,
            Err(refused) => {
                // It was read when taken: not expected.
                tracing::error!(session = %row.session_id, message_id = %row.msrp_message_id, why = %refused.comment, "spooled chat message unreadable: dropped");
                store.unspool(Unspooled {
                    session_id: row.session_id,
                    msrp_message_id: row.msrp_message_id,
                    thread: None,
                });
                continue;
            }
        };
        let give_up_ms = u64::try_from(row.give_up_at).unwrap_or(0);
        by_session
            .entry(row.session_id.clone())
            .or_default()
            .push(Outbound {
                message,
                session_id: row.session_id,
                msrp_message_id: row.msrp_message_id,
                mail_nonce: row.mail_nonce,
                give_up_at: UNIX_EPOCH + Duration::from_millis(give_up_ms),
                held: None,
                room: None,
            });
    }
    Ok(by_session)
}
