//! The e-mail user's chat mails delivered (F5), by session and Message-ID: duplicates of a
//! mail its sender sends again are found here.

use super::{Store, StoreError, Write};

impl Store {
    /// Whether session `session_id` delivered a mail with Message-ID `message_id`.
    pub async fn delivered(&self, session_id: &str, message_id: &str) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT delivered_at FROM inbound_mails WHERE session_id = $1 AND message_id = $2",
        )
        .bind(session_id)
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("looking an inbound mail up"))?;
        Ok(row.is_some())
    }

    /// Session `session_id` delivered the mail `message_id`: queued for the writer's next
    /// commit, not waited for. The record only shortens the window in which a copy sent
    /// again is delivered twice (it opens after the MSRP 200s anyway), so the mail's 250
    /// does not wait for a sync of the disk; a drain flushes it (`Store::close`).
    pub fn note_delivered(&self, session_id: &str, message_id: &str) {
        let write = Write::Delivered {
            session_id: session_id.to_owned(),
            message_id: message_id.to_owned(),
        };
        self.queue(write);
    }
}

/// Writes "session `session_id` delivered `message_id`" in the transaction `tx`.
pub(super) async fn write_delivered(
    tx: &mut sqlx::SqliteConnection,
    session_id: &str,
    message_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO inbound_mails (session_id, message_id, delivered_at) VALUES ($1, $2, $3) \
         ON CONFLICT (session_id, message_id) DO NOTHING",
    )
    .bind(session_id)
    .bind(message_id)
    .bind(now)
    .execute(tx)
    .await
    .map_err(StoreError::query("recording an inbound mail delivered"))?;
    Ok(())
}
