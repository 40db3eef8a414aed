//! The store writer (issue 15): the session driver hands it each turn's changes with the
//! acknowledgements that must wait for them (the turn's SIP messages, the e-mail user's
//! accept). It commits everything queued meanwhile in one transaction (group commit: the
//! driver goes on with the next turn while a commit is on its way to disk), then sends.
//! A turn with nothing to store, and nothing queued before it, sends directly.

use crate::net::sip::Replier;
use crate::store::{Changes, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};

/// What waits for a commit.
pub(super) enum After {
    Send(Replier, Vec<u8>),
    /// The e-mail user's accept (`UserEvent::Accepted`): whether the session awaited it.
    /// Dropped unanswered when the commit fails (the mail is then answered 451).
    Answer(oneshot::Sender<bool>, bool),
}

struct Batch {
    changes: Changes,
    after: Vec<After>,
}

/// The driver's end of the writer.
pub(super) struct Writer {
    batches: mpsc::UnboundedSender<Batch>,
    /// Batches queued and not yet carried out.
    queued: Arc<AtomicUsize>,
}

impl Writer {
    /// Starts the writer on `store`; the changes of a failed commit come back on the
    /// receiver, for the next one.
    pub(super) fn start(store: Arc<Store>) -> (Self, mpsc::UnboundedReceiver<Changes>) {
        let (batches, receiver) = mpsc::unbounded_channel();
        let (failed, failures) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(write(store, receiver, failed, queued.clone()));
        let writer = Self { batches, queued };
        (writer, failures)
    }

    /// Nothing queued: what the driver sends now cannot pass what waits for a commit.
    pub(super) fn idle(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0
    }

    /// `after` is carried out once `changes` (and whatever is queued before) are on disk.
    pub(super) async fn carry_out(&self, changes: Changes, after: Vec<After>) {
        if changes.is_empty() && self.idle() {
            for a in after {
                a.run().await;
            }
            return;
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError(batch)) = self.batches.send(Batch { changes, after }) {
            // The writer is gone (shutting down): nothing can be stored, nothing is said.
            self.queued.fetch_sub(1, Ordering::AcqRel);
            drop(batch);
        }
    }
}

impl After {
    async fn run(self) {
        match self {
            After::Send(peer, bytes) => peer.send(bytes).await,
            After::Answer(done, value) => {
                let _ = done.send(value);
            }
        }
    }
}

async fn write(
    store: Arc<Store>,
    mut batches: mpsc::UnboundedReceiver<Batch>,
    failed: mpsc::UnboundedSender<Changes>,
    queued: Arc<AtomicUsize>,
) {
    while let Some(first) = batches.recv().await {
        let (mut changes, mut after, mut n) = (first.changes, first.after, 1);
        while let Ok(more) = batches.try_recv() {
            changes.extend(more.changes);
            after.extend(more.after);
            n += 1;
        }
        match store.commit(&changes).await {
            Ok(()) => {
                for a in after {
                    a.run().await;
                }
            }
            Err(e) => {
                // Held back: a 200 OK goes with its next retransmission once a commit
                // succeeds, the peers retransmit their requests, the accept is retried.
                let held = after.len();
                tracing::error!(error = %e, held, "store commit failed: the acknowledgements waiting for it are held back");
                let _ = failed.send(changes);
            }
        }
        queued.fetch_sub(n, Ordering::AcqRel);
    }
}
