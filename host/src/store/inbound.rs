//! F5's inbound spool (5.2.4.2.8, issue 15): each chat mail of the e-mail user is committed
//! here, as the MSRP SENDs it becomes, before its 250. It is delivered from here; once
//! delivered its rows stay (bodies emptied) as the record that finds a copy of it, until
//! its session is freed; a mail the chat cannot take is bounced and its rows go.

use super::{Store, StoreError, Write};
use sqlx::{QueryBuilder, Sqlite};
use std::sync::atomic::Ordering;

/// One MSRP SEND of a spooled mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailPart {
    /// RFC 4975 Message-ID: the same at every attempt, so the peer can tell a copy.
    pub msrp_message_id: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// A chat mail the IWF answered 250 for, not yet delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledMail {
    pub session_id: String,
    /// Its Message-ID (generated when it had none): one mail per session.
    pub mail_id: String,
    /// Delivery order within the session.
    pub seq: i64,
    /// The text first, then each attachment carried (EE1).
    pub parts: Vec<MailPart>,
    /// The reports its SENDs ask for: Success-Report, Failure-Report (RFC 4975 7.1.2).
    pub success_report: bool,
    pub failure_report: String,
    /// Where its bounce goes: the envelope's MAIL FROM (none for the null sender).
    pub return_path: Option<String>,
    /// The IWF address it was sent to, and its Subject: what the bounce names.
    pub recipient: String,
    pub subject: Option<String>,
    /// Unix ms past which it is bounced while the chat cannot take it.
    pub give_up_at: i64,
}

/// What a spooled mail's rows become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailDone {
    pub session_id: String,
    pub mail_id: String,
    /// Delivered: the rows stay, bodies emptied, against copies. Bounced: they go.
    pub delivered: bool,
}

impl Store {
    /// Spools `mail`: `Ok` once it is on disk, so the 250 may go. A mail spooled already
    /// (the same Message-ID in the session) is left as it was.
    pub async fn spool_mail(&self, mail: SpooledMail) -> Result<(), StoreError> {
        self.write(Write::SpoolMail(Box::new(mail))).await?;
        self.inbound.depth.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A spooled mail is delivered or bounced. Queued, not waited for: a crash before the
    /// commit delivers it again, under the same MSRP Message-IDs.
    pub fn mail_done(&self, done: MailDone) {
        self.queue(Write::MailDone(Box::new(done)));
        let _ = (self.inbound.depth).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
            Some(d.saturating_sub(1))
        });
    }

    /// A spooled mail's delivery is tried again (the chat connection was down).
    pub fn note_mail_retry(&self) {
        self.inbound.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Every mail spooled and not delivered, each session's in delivery order.
    pub async fn spooled_mails(&self) -> Result<Vec<SpooledMail>, StoreError> {
        type Row = (
            String,
            String,
            i64,
            String,
            String,
            Vec<u8>,
            bool,
            String,
            Option<String>,
            String,
            Option<String>,
            i64,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT session_id, mail_id, seq, msrp_message_id, content_type, body, \
             success_report, failure_report, return_path, recipient, subject, give_up_at \
             FROM inbound_chats WHERE NOT delivered ORDER BY session_id, seq, part",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("loading the inbound spool"))?;
        let mut mails: Vec<SpooledMail> = Vec::new();
        for r in rows {
            let part = MailPart {
                msrp_message_id: r.3,
                content_type: r.4,
                body: r.5,
            };
            match mails.last_mut() {
                Some(m) if m.session_id == r.0 && m.mail_id == r.1 => m.parts.push(part),
                _ => mails.push(SpooledMail {
                    session_id: r.0,
                    mail_id: r.1,
                    seq: r.2,
                    parts: vec![part],
                    success_report: r.6,
                    failure_report: r.7,
                    return_path: r.8,
                    recipient: r.9,
                    subject: r.10,
                    give_up_at: r.11,
                }),
            }
        }
        Ok(mails)
    }

    /// The Message-IDs of the mails delivered, by session (their copies are not delivered
    /// again).
    pub async fn delivered_mails(&self) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query_as(
            "SELECT session_id, mail_id FROM inbound_chats WHERE delivered AND part = 0 \
             ORDER BY session_id, seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("loading the delivered mails"))
    }

    /// How many mails are spooled and not delivered (`iwf_spool_depth` at start).
    pub(super) async fn inbound_depth(&self) -> Result<u64, StoreError> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM inbound_chats WHERE NOT delivered AND part = 0")
                .fetch_one(&self.pool)
                .await
                .map_err(StoreError::query("counting the inbound spool"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// Rows per statement: binds (15 a row) stay far below SQLite's 32,766.
const ROWS_PER_STATEMENT: usize = 128;

/// Writes `mails` in the transaction `tx`, every part a row, many rows a statement; a mail
/// spooled already is left as it was.
pub(super) async fn write_mails(
    tx: &mut sqlx::SqliteConnection,
    mails: &[&SpooledMail],
    now: i64,
) -> Result<(), StoreError> {
    let rows: Vec<(&SpooledMail, usize, &MailPart)> = mails
        .iter()
        .flat_map(|m| m.parts.iter().enumerate().map(move |(n, p)| (*m, n, p)))
        .collect();
    for rows in rows.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO inbound_chats (session_id, mail_id, part, parts, seq, \
             msrp_message_id, content_type, body, success_report, failure_report, \
             return_path, recipient, subject, give_up_at, delivered, taken_at) ",
        );
        insert.push_values(rows, |mut row, (mail, n, part)| {
            row.push_bind(&mail.session_id)
                .push_bind(&mail.mail_id)
                .push_bind(*n as i64)
                .push_bind(mail.parts.len() as i64)
                .push_bind(mail.seq)
                .push_bind(&part.msrp_message_id)
                .push_bind(&part.content_type)
                .push_bind(&part.body)
                .push_bind(mail.success_report)
                .push_bind(&mail.failure_report)
                .push_bind(&mail.return_path)
                .push_bind(&mail.recipient)
                .push_bind(&mail.subject)
                .push_bind(mail.give_up_at)
                .push_bind(false)
                .push_bind(now);
        });
        insert.push(" ON CONFLICT (session_id, mail_id, part) DO NOTHING");
        insert
            .build()
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("spooling chat mails"))?;
    }
    Ok(())
}

/// Writes `done` in the transaction `tx`: a delivered mail's rows kept with their bodies
/// emptied, a bounced one's deleted.
pub(super) async fn write_mails_done(
    tx: &mut sqlx::SqliteConnection,
    done: &[&MailDone],
) -> Result<(), StoreError> {
    for delivered in [true, false] {
        let of: Vec<&&MailDone> = done.iter().filter(|d| d.delivered == delivered).collect();
        for rows in of.chunks(ROWS_PER_STATEMENT) {
            let mut statement = match delivered {
                true => {
                    let mut update = QueryBuilder::<Sqlite>::new(
                        "UPDATE inbound_chats SET delivered = TRUE, body = ",
                    );
                    update.push_bind(Vec::<u8>::new());
                    update.push(" WHERE (session_id, mail_id) IN (");
                    update
                }
                false => QueryBuilder::<Sqlite>::new(
                    "DELETE FROM inbound_chats WHERE (session_id, mail_id) IN (",
                ),
            };
            statement.push_values(rows, |mut row, done| {
                row.push_bind(&done.session_id).push_bind(&done.mail_id);
            });
            statement.push(")");
            statement
                .build()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("unspooling chat mails"))?;
        }
    }
    Ok(())
}

/// Deletes the record of the mails delivered in session `id`, as its row goes.
pub(super) async fn forget_delivered(
    tx: &mut sqlx::SqliteConnection,
    id: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM inbound_chats WHERE session_id = $1 AND delivered")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("deleting delivered chat mails"))?;
    Ok(())
}
