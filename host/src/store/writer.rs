//! The store's one writer: every write (a turn's session changes, a mail thread, a chat
//! message spooled or unspooled) is queued here, and whatever is queued when a commit starts goes in
//! that commit, one transaction and one sync of the WAL for all (group commit). SQLite
//! takes one writer at a time anyway; many small commits each waiting for the write lock
//! and for its own sync are what this avoids.

use super::inbound::{write_mails, write_mails_done};
use super::outbound::{write_spools, write_unspools};
use super::sessions::write_changes;
use super::{Queued, StoreError, Write, unix_ms};
use crate::metrics::Histogram;
use sqlx::SqlitePool;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

/// Writes in one commit at most: a bound on the transaction a burst makes.
const MAX_BATCH: usize = 1024;

/// Starts the writer on `pool`; its commits are timed into `commits`.
pub(super) fn spawn(pool: SqlitePool, commits: Arc<Histogram>) -> mpsc::UnboundedSender<Queued> {
    let (queue, queued) = mpsc::unbounded_channel();
    tokio::spawn(run(pool, queued, commits));
    queue
}

async fn run(
    pool: SqlitePool,
    mut queued: mpsc::UnboundedReceiver<Queued>,
    commits: Arc<Histogram>,
) {
    let mut batch = Vec::new();
    while let Some(first) = queued.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queued.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let outcome = commit(&pool, &batch).await.map_err(|e| e.to_string());
        match &outcome {
            Ok(()) => commits.observe(started.elapsed()),
            Err(e) => tracing::error!(error = %e, writes = batch.len(), "store commit failed"),
        }
        for queued in batch.drain(..) {
            let _ = queued.done.send(outcome.clone());
        }
    }
}

/// The writes of `batch` in one transaction.
async fn commit(pool: &SqlitePool, batch: &[Queued]) -> Result<(), StoreError> {
    let now = unix_ms(SystemTime::now());
    let mut tx = pool
        .begin()
        .await
        .map_err(StoreError::query("beginning a commit"))?;
    // The spooled chat messages first, the unspooled ones last, each in one statement: a
    // session freed in this batch sees the messages spooled in it (it stays, closed), and
    // a closed session whose last message leaves in it goes.
    // F5's mails likewise: spooled first, delivered or bounced last.
    let (mut spools, mut unspools) = (Vec::new(), Vec::new());
    let (mut mails, mut mails_done) = (Vec::new(), Vec::new());
    for queued in batch {
        match &queued.write {
            Write::Spool(chat) => spools.push(&**chat),
            Write::Unspool(done) => unspools.push(&**done),
            Write::SpoolMail(mail) => mails.push(&**mail),
            Write::MailDone(done) => mails_done.push(&**done),
            Write::Changes(_) => {}
        }
    }
    write_spools(&mut tx, &spools, now).await?;
    write_mails(&mut tx, &mails, now).await?;
    for queued in batch {
        if let Write::Changes(changes) = &queued.write {
            write_changes(&mut tx, changes, now).await?;
        }
    }
    write_unspools(&mut tx, &unspools, now).await?;
    write_mails_done(&mut tx, &mails_done).await?;
    tx.commit().await.map_err(StoreError::query("committing"))
}
