//! F4's outbound spool (5.2.4.2.5 step 4, issue 15): each chat message of the CPM side is
//! committed here before its MSRP 200, and leaves once its mail is taken, refused for
//! good, or given up. Rows are read back in order at start, their session's mails resumed.

use super::sessions::{CLOSED, forget_unless_spooled, upsert_thread};
use super::{Store, StoreError, Write};
use std::sync::atomic::Ordering;

/// A chat message the IWF took responsibility for (it answered MSRP 200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledChat {
    pub session_id: String,
    /// RFC 4975 Message-ID, unique in its session.
    pub msrp_message_id: String,
    /// Mailing order within the session.
    pub seq: i64,
    /// The message as received: its Content-Type and body (CPIM or text).
    pub content_type: String,
    pub body: Vec<u8>,
    /// The random part of its mail's Message-ID, the same at every attempt.
    pub mail_nonce: String,
    /// Unix ms past which it is given up while the mail servers refuse it for now.
    pub give_up_at: i64,
}

/// What the mail of a spooled chat message became, for its row.
#[derive(Debug, Clone)]
pub struct Unspooled {
    pub session_id: String,
    pub msrp_message_id: String,
    /// The session's thread after the mail (JSON), when it was mailed.
    pub thread: Option<String>,
}

impl Store {
    /// Spools `chat`: `Ok` once it is on disk, so the MSRP 200 may go. A message spooled
    /// already (the same Message-ID in the session) is left as it was.
    pub async fn spool(&self, chat: SpooledChat) -> Result<(), StoreError> {
        self.write(Write::Spool(Box::new(chat))).await?;
        self.spool.depth.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A spooled message's mail is tried again after a temporary failure.
    pub fn note_retry(&self) {
        self.spool.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Chat message `done` is mailed or failed: its row goes, and its session's row too
    /// when the session was freed and this was its last. Queued, not waited for: a crash
    /// before the commit mails it again, under the same Message-ID.
    pub fn unspool(&self, done: Unspooled) {
        self.queue(Write::Unspool(Box::new(done)));
        // Saturating: a message spooled twice (the same Message-ID) counted once.
        let _ = (self.spool.depth).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
            Some(d.saturating_sub(1))
        });
    }

    /// Every chat message spooled, each session's in mailing order.
    pub async fn spooled(&self) -> Result<Vec<SpooledChat>, StoreError> {
        type Row = (String, String, i64, String, Vec<u8>, String, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT session_id, msrp_message_id, seq, content_type, body, mail_nonce, give_up_at \
             FROM outbound_chats ORDER BY session_id, seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("loading the outbound spool"))?;
        Ok(rows
            .into_iter()
            .map(|r| SpooledChat {
                session_id: r.0,
                msrp_message_id: r.1,
                seq: r.2,
                content_type: r.3,
                body: r.4,
                mail_nonce: r.5,
                give_up_at: r.6,
            })
            .collect())
    }

    /// How many chat messages are spooled (`iwf_spool_depth` at start).
    pub async fn spool_depth(&self) -> Result<u64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbound_chats")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::query("counting the outbound spool"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// Writes `chat` in the transaction `tx`.
pub(super) async fn write_spool(
    tx: &mut sqlx::SqliteConnection,
    chat: &SpooledChat,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbound_chats \
             (session_id, msrp_message_id, seq, content_type, body, mail_nonce, give_up_at, taken_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (session_id, msrp_message_id) DO NOTHING",
    )
    .bind(&chat.session_id)
    .bind(&chat.msrp_message_id)
    .bind(chat.seq)
    .bind(&chat.content_type)
    .bind(&chat.body)
    .bind(&chat.mail_nonce)
    .bind(chat.give_up_at)
    .bind(now)
    .execute(tx)
    .await
    .map_err(StoreError::query("spooling a chat message"))?;
    Ok(())
}

/// Writes `done` in the transaction `tx`: the row out, the thread as it now is, and a
/// closed session's row and thread out after its last message.
pub(super) async fn write_unspool(
    tx: &mut sqlx::SqliteConnection,
    done: &Unspooled,
    now: i64,
) -> Result<(), StoreError> {
    let id = &done.session_id;
    sqlx::query("DELETE FROM outbound_chats WHERE session_id = $1 AND msrp_message_id = $2")
        .bind(id)
        .bind(&done.msrp_message_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("unspooling a chat message"))?;
    if let Some(thread) = &done.thread {
        upsert_thread(id, thread, now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("saving a mail thread"))?;
    }
    let (closed,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM sessions WHERE id = $1 AND phase = $2")
            .bind(id)
            .bind(CLOSED)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::query("reading a session's phase"))?;
    if closed > 0 {
        forget_unless_spooled(tx, id).await?;
    }
    Ok(())
}
