//! F4's outbound spool (5.2.4.2.5 step 4, issue 15): each chat message of the CPM side is
//! committed here before its MSRP 200, and leaves once its mail is taken, refused for
//! good, or given up. Rows are read back in order at start, their session's mails resumed.

use super::sessions::CLOSED;
use super::{Store, StoreError, Write};
use sqlx::{QueryBuilder, Sqlite};
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

/// Rows per statement: binds stay far below SQLite's (32,766) and PostgreSQL's (65,535).
const ROWS_PER_STATEMENT: usize = 256;

/// Writes `chats` in the transaction `tx`: one statement for many rows (the writer's whole
/// batch), a row spooled already left as it was.
pub(super) async fn write_spools(
    tx: &mut sqlx::SqliteConnection,
    chats: &[&SpooledChat],
    now: i64,
) -> Result<(), StoreError> {
    for rows in chats.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO outbound_chats \
             (session_id, msrp_message_id, seq, content_type, body, mail_nonce, give_up_at, taken_at) ",
        );
        insert.push_values(rows, |mut row, chat| {
            row.push_bind(&chat.session_id)
                .push_bind(&chat.msrp_message_id)
                .push_bind(chat.seq)
                .push_bind(&chat.content_type)
                .push_bind(&chat.body)
                .push_bind(&chat.mail_nonce)
                .push_bind(chat.give_up_at)
                .push_bind(now);
        });
        insert.push(" ON CONFLICT (session_id, msrp_message_id) DO NOTHING");
        insert
            .build()
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("spooling chat messages"))?;
    }
    Ok(())
}

/// Writes `done` in the transaction `tx`, after everything else of the batch: the rows
/// out, each session's thread as its last mail left it, and the sessions freed before
/// whose last message this was out too (row and thread). A few statements for the batch.
pub(super) async fn write_unspools(
    tx: &mut sqlx::SqliteConnection,
    done: &[&Unspooled],
    now: i64,
) -> Result<(), StoreError> {
    for rows in done.chunks(ROWS_PER_STATEMENT) {
        let mut delete = QueryBuilder::<Sqlite>::new(
            "DELETE FROM outbound_chats WHERE (session_id, msrp_message_id) IN (",
        );
        delete.push_values(rows, |mut row, done| {
            row.push_bind(&done.session_id)
                .push_bind(&done.msrp_message_id);
        });
        delete.push(")");
        delete
            .build()
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("unspooling chat messages"))?;
    }
    // The last thread of each session (one upsert may not touch a row twice).
    let mut threads: Vec<(&str, &str)> = Vec::new();
    for done in done.iter().rev() {
        if let Some(thread) = &done.thread
            && !threads.iter().any(|(id, _)| *id == done.session_id)
        {
            threads.push((&done.session_id, thread));
        }
    }
    for rows in threads.chunks(ROWS_PER_STATEMENT) {
        let mut upsert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO mail_threads (session_id, state, updated_at) ",
        );
        upsert.push_values(rows, |mut row, (id, thread)| {
            row.push_bind(*id).push_bind(*thread).push_bind(now);
        });
        upsert.push(
            " ON CONFLICT (session_id) DO UPDATE SET \
             state = excluded.state, updated_at = excluded.updated_at",
        );
        upsert
            .build()
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("saving mail threads"))?;
    }
    let mut sessions: Vec<&str> = done.iter().map(|d| d.session_id.as_str()).collect();
    sessions.sort_unstable();
    sessions.dedup();
    for ids in sessions.chunks(ROWS_PER_STATEMENT) {
        let mut closed = QueryBuilder::<Sqlite>::new("DELETE FROM sessions WHERE phase = ");
        closed.push_bind(CLOSED).push(" AND id IN (");
        let mut list = closed.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        closed.push(
            ") AND NOT EXISTS \
             (SELECT 1 FROM outbound_chats WHERE outbound_chats.session_id = sessions.id)",
        );
        closed
            .build()
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("deleting closed sessions"))?;
        // Their threads, now that their rows are gone (a live session's stays).
        let mut orphans =
            QueryBuilder::<Sqlite>::new("DELETE FROM mail_threads WHERE session_id IN (");
        let mut list = orphans.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        orphans.push(
            ") AND NOT EXISTS (SELECT 1 FROM sessions WHERE sessions.id = mail_threads.session_id)",
        );
        orphans
            .build()
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("deleting closed sessions' threads"))?;
    }
    Ok(())
}
