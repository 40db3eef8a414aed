//! The session rows: saved before the session's 200 OK and at each change of its dialog,
//! deleted with the session; and the rows of its mail thread.

use super::{Store, StoreError, Write};
use std::collections::HashMap;

/// One stored session, as the session layer writes and reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The MSRP session id.
    pub id: String,
    pub call_id: String,
    pub local_tag: String,
    pub phase: String,
    /// The INVITE as received: written with the session's first save (`None` after it:
    /// the row has it), always there when read back.
    pub invite: Option<Vec<u8>>,
    /// The dialog and the answer (JSON).
    pub state: String,
    /// When the invitation expires (Unix ms).
    pub expires_at: Option<i64>,
}

/// What one turn of the session driver changed: committed together, in one transaction.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub saved: Vec<SessionRow>,
    /// Session ids freed: their rows and threads go.
    pub forgotten: Vec<String>,
    /// Mail threads (session id, JSON), saved with the sessions.
    pub threads: Vec<(String, String)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.saved.is_empty() && self.forgotten.is_empty() && self.threads.is_empty()
    }

    /// `later`'s changes after these, for one commit.
    pub fn extend(&mut self, later: Changes) {
        self.saved.extend(later.saved);
        self.forgotten.extend(later.forgotten);
        self.threads.extend(later.threads);
    }
}

/// Writes `changes` in the transaction `tx` (the writer's).
pub(super) async fn write_changes(
    tx: &mut sqlx::SqliteConnection,
    changes: &Changes,
    now: i64,
) -> Result<(), StoreError> {
    for row in &changes.saved {
        let query = match &row.invite {
            Some(invite) => sqlx::query(
                "INSERT INTO sessions \
                     (id, call_id, local_tag, phase, state, expires_at, updated_at, invite) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (id) DO UPDATE SET \
                     phase = excluded.phase, state = excluded.state, \
                     expires_at = excluded.expires_at, updated_at = excluded.updated_at",
            )
            .bind(&row.id)
            .bind(&row.call_id)
            .bind(&row.local_tag)
            .bind(&row.phase)
            .bind(&row.state)
            .bind(row.expires_at)
            .bind(now)
            .bind(invite),
            None => sqlx::query(
                "UPDATE sessions SET phase = $2, state = $3, expires_at = $4, updated_at = $5 \
                 WHERE id = $1",
            )
            .bind(&row.id)
            .bind(&row.phase)
            .bind(&row.state)
            .bind(row.expires_at)
            .bind(now),
        };
        query
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("saving a session"))?;
    }
    for (id, state) in &changes.threads {
        upsert_thread(id, state, now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("saving a mail thread"))?;
    }
    for id in &changes.forgotten {
        // Chat messages still spooled for its mails (F4): the row stays, "closed", with
        // its thread, until the last is mailed or given up (`outbound::write_unspool`).
        sqlx::query(
            "UPDATE sessions SET phase = $2, updated_at = $3 WHERE id = $1 \
             AND EXISTS (SELECT 1 FROM outbound_chats WHERE session_id = $1)",
        )
        .bind(id)
        .bind(CLOSED)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("closing a session with spooled chats"))?;
        forget_unless_spooled(tx, id).await?;
    }
    Ok(())
}

/// The phase of a session freed while chat messages of its were still spooled.
pub const CLOSED: &str = "closed";

/// Deletes session `id`'s row and thread, unless chat messages of its are still spooled.
async fn forget_unless_spooled(
    tx: &mut sqlx::SqliteConnection,
    id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM sessions WHERE id = $1 \
         AND NOT EXISTS (SELECT 1 FROM outbound_chats WHERE session_id = $1)",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::query("deleting a session"))?;
    sqlx::query(
        "DELETE FROM mail_threads WHERE session_id = $1 \
         AND NOT EXISTS (SELECT 1 FROM outbound_chats WHERE outbound_chats.session_id = $1)",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::query("deleting a mail thread"))?;
    super::inbound::forget_delivered(tx, id).await?;
    Ok(())
}

impl Store {
    /// Commits `changes` at once (with whatever else is queued for the writer): on disk
    /// when this returns `Ok`.
    pub async fn commit(&self, changes: &Changes) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write(Write::Changes(changes.clone())).await
    }

    /// Every stored session, oldest first.
    pub async fn sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sessions ORDER BY updated_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("loading the sessions"))?;
        Ok(rows.into_iter().map(session_row).collect())
    }

    /// Session `id`'s row and mail thread, for a parked session brought back (`None` when
    /// it is not stored).
    pub async fn session(
        &self,
        id: &str,
    ) -> Result<Option<(SessionRow, Option<String>)>, StoreError> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM sessions WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::query("loading a session"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let thread: Option<(String,)> =
            sqlx::query_as("SELECT state FROM mail_threads WHERE session_id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::query("loading a mail thread"))?;
        Ok(Some((session_row(row), thread.map(|(t,)| t))))
    }

    /// Every stored mail thread, by session id. Threads of no stored session (the process
    /// died between a thread's save and its session's) are deleted.
    pub async fn threads(&self) -> Result<HashMap<String, String>, StoreError> {
        sqlx::query("DELETE FROM mail_threads WHERE session_id NOT IN (SELECT id FROM sessions)")
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("deleting orphan mail threads"))?;
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT session_id, state FROM mail_threads")
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::query("loading the mail threads"))?;
        Ok(rows.into_iter().collect())
    }
}

/// The columns of a session row, in [`Row`]'s order.
const COLUMNS: &str = "id, call_id, local_tag, phase, invite, state, expires_at";

type Row = (String, String, String, String, Vec<u8>, String, Option<i64>);

fn session_row((id, call_id, local_tag, phase, invite, state, expires_at): Row) -> SessionRow {
    SessionRow {
        id,
        call_id,
        local_tag,
        phase,
        invite: Some(invite),
        state,
        expires_at,
    }
}

/// The query that writes session `id`'s thread, replacing the one before.
pub(super) fn upsert_thread<'q>(
    id: &'q str,
    state: &'q str,
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    sqlx::query(
        "INSERT INTO mail_threads (session_id, state, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (session_id) DO UPDATE SET \
             state = excluded.state, updated_at = excluded.updated_at",
    )
    .bind(id)
    .bind(state)
    .bind(now)
}
