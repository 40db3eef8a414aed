//! At start, the sessions stored before (issue 15) back in the core, the mailer and the
//! timers, before any listener serves.

use super::driver::Mail;
use crate::net::sip::Replier;
use crate::session::core::{Core, Effect, EndReason, Restored, Resumed};
use crate::session::stats::SessionStats;
use crate::store::{Changes, Store};
use std::time::Instant;

/// Reads back every session stored before the start (issue 15): invitations awaiting
/// the e-mail user wait on, with their mail threads and expiry; others lost their chat
/// connection and get a BYE (the effects returned, for the first turn). A row that
/// cannot be read is logged and dropped.
pub(super) async fn restore(
    store: &Store,
    core: &mut Core<Replier>,
    mail: &mut Mail,
    stats: &SessionStats,
    peer: Replier,
) -> anyhow::Result<Vec<Effect<Replier>>> {
    let rows = store.sessions().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let threads = store.threads().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = Instant::now();
    let mut effects = Vec::new();
    let mut unreadable = Changes::default();
    for row in &rows {
        let restored = match core.restore(row, peer.clone(), now) {
            Ok(restored) => restored,
            Err(why) => {
                tracing::error!(session = %row.id, error = %why, "stored session unreadable: dropped");
                stats.recovered(&row.phase, "unreadable");
                unreadable.forgotten.push(row.id.clone());
                continue;
            }
        };
        let Restored {
            key,
            facts,
            resumed,
            ..
        } = restored;
        effects.extend(restored.effects);
        if let Resumed::Ended = resumed {
            stats.recovered(&row.phase, "ended");
            continue;
        }
        let thread = threads
            .get(&row.id)
            .ok_or("no stored mail thread".to_string());
        match thread.and_then(|thread| mail.mailer.restore(key.clone(), facts, thread)) {
            Ok(()) => {
                stats.recovered(&row.phase, "waiting");
                if let Some(at) = row.expires_at {
                    mail.expire(&key, at);
                }
            }
            Err(why) => {
                tracing::error!(session = %row.id, error = %why, "stored session without its mail thread: ending it");
                stats.recovered(&row.phase, "ended");
                let reason = EndReason {
                    cause: 500,
                    text: format!("the IWF restarted and lost the session's mail thread ({why})"),
                };
                effects.extend(core.end_session(&key, &reason, now));
            }
        }
    }
    store
        .commit(&unreadable)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !rows.is_empty() {
        tracing::info!(sessions = rows.len(), "sessions restored from the store");
    }
    Ok(effects)
}
