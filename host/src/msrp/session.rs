//! One session's bound MSRP connection, driven by one task (RFC 4975 sections 7 and 8):
//! incoming SENDs answered and reassembled into messages for the session, the response
//! to a message's last chunk held until the session says how delivery went, REPORTs
//! sent and received, the session's own chunks written and their responses routed back
//! by transaction id. The decisions are `inbound`'s and `transaction`'s (pure); the
//! socket is `connection`'s; the listener and the handles are `endpoint`'s.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::{Instant, sleep, sleep_until};

use super::chunks::{Assembled, Reassembler};
use super::connection::{Connection, ReadError, WriteError};
use super::endpoint::{CloseReason, Event, Hold, Received, Reply, SessionSpec, Settings};
use super::frame::{ByteRange, FailureReport, Frame, Method, StartLine, Status, TransactId};
use super::inbound::{Inbound, Verdict};
use super::transaction::{self, Disposition, Requested};

/// How long a disposition is still awaited after its deadline passed (then only REPORTs
/// can carry it); beyond it the outcome is dropped.
const LATE_DISPOSITION: Duration = Duration::from_secs(300);

/// How many `partial` chunks are remembered for their error responses.
const DETACHED: usize = 256;

/// The state of a session's connection, as its handles see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    Connecting,
    Connected,
    Closed,
}

/// What a handle asks of the task.
#[derive(Debug)]
pub(super) enum Command {
    /// Write a request; its transaction response, when one is awaited, goes to `response`.
    /// The frame is boxed: a channel allocates its first block of 32 slots when made, one
    /// per session, and a slot is as large as the largest command.
    Transmit {
        frame: Box<Frame>,
        response: Option<oneshot::Sender<Frame>>,
    },
    /// Route the REPORT on `message_id` to `report`.
    ExpectReport {
        message_id: String,
        report: oneshot::Sender<Status>,
    },
}

/// Who waits for a transaction response.
enum Waiter {
    Handle(oneshot::Sender<Frame>),
    /// The active role's binding SEND (RFC 4975 section 5.4).
    Bind,
}

/// How a message's disposition came.
enum News {
    InTime(Disposition),
    /// The deadline passed: answer 200 now, REPORT the outcome later.
    Deadline,
    /// The session holds the message (`Reply::hold`, `Reply::take`): answer 200 now,
    /// REPORT it later.
    Held(Hold),
    /// A message in custody whose outcome will not come here: forget it, say nothing.
    Forgotten,
    Late(Disposition),
}

/// A whole message handed to the session, its last chunk's response held.
struct Deferred {
    last_chunk: Frame,
    len: u64,
    asked: Requested,
    responded: bool,
    /// Taken into custody (`Reply::take`): a close says nothing of it.
    custody: bool,
    waiter: AbortHandle,
}

/// The per-session task's state once the connection exists.
pub(super) struct Driver {
    settings: Settings,
    events: mpsc::Sender<Event>,
    inbound: Inbound,
    pending: HashMap<TransactId, Waiter>,
    reports: HashMap<String, oneshot::Sender<Status>>,
    /// Chunks sent with Failure-Report `partial` (no waiter): transaction id, Message-ID.
    detached: VecDeque<(TransactId, String)>,
    deferred: HashMap<u64, Deferred>,
    next_key: u64,
    news_tx: mpsc::UnboundedSender<(u64, News)>,
    news_rx: mpsc::UnboundedReceiver<(u64, News)>,
    bind_deadline: Option<Instant>,
    /// `MsrpSession::close`: settle what is still deferred, then end.
    close: Arc<Notify>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        for d in self.deferred.values() {
            d.waiter.abort();
        }
    }
}

/// Why the loop stops: `None` for a local close.
type Stop = Option<CloseReason>;

fn io_stop(e: impl std::fmt::Display) -> Stop {
    Some(CloseReason::Io(e.to_string()))
}

impl Driver {
    pub(super) fn new(
        spec: SessionSpec,
        settings: Settings,
        events: mpsc::Sender<Event>,
        close: Arc<Notify>,
    ) -> Driver {
        let (news_tx, news_rx) = mpsc::unbounded_channel();
        Driver {
            inbound: Inbound::new(
                spec.local.clone(),
                spec.remote_path.clone(),
                spec.accept_types.clone(),
                Reassembler::new(settings.chunk_limits()),
            ),
            settings,
            events,
            pending: HashMap::new(),
            reports: HashMap::new(),
            detached: VecDeque::new(),
            deferred: HashMap::new(),
            next_key: 0,
            news_tx,
            news_rx,
            bind_deadline: None,
            close,
        }
    }

    /// Drives the connection until it ends or every handle is gone. `first`: the request
    /// that bound an accepted connection; `bind`: the active role's binding SEND.
    pub(super) async fn run(
        mut self,
        mut conn: Connection,
        first: Option<Frame>,
        bind: Option<Frame>,
        mut commands: mpsc::Receiver<Command>,
        link: &watch::Sender<Link>,
        _permit: OwnedSemaphorePermit,
    ) -> Option<CloseReason> {
        let close = self.close.clone();
        if let Some(bind) = bind {
            self.bind_deadline = Some(Instant::now() + self.settings.transaction_timeout);
            self.pending.insert(bind.transact_id.clone(), Waiter::Bind);
            if let Err(stop) = write(&mut conn, &bind).await {
                return stop;
            }
        } else {
            self.connected(link).await;
        }
        if let Some(first) = first
            && let Err(stop) = self.on_frame(&mut conn, first, link).await
        {
            return stop;
        }
        let result = loop {
            let bind_deadline = self.bind_deadline;
            let step = tokio::select! {
                _ = sleep_until(bind_deadline.unwrap_or_else(Instant::now)), if bind_deadline.is_some() => {
                    Err(Some(CloseReason::BindTimeout(self.settings.transaction_timeout)))
                }
                read = conn.read_frame() => match read {
                    Ok(frame) => self.on_frame(&mut conn, frame, link).await,
                    Err(e) => self.on_read_error(&mut conn, e).await,
                },
                command = commands.recv() => match command {
                    Some(c) => self.on_command(&mut conn, c).await,
                    None => Err(None),
                },
                Some((key, news)) = self.news_rx.recv() => self.on_news(&mut conn, key, news).await,
                _ = close.notified() => {
                    self.settle_all(&mut conn).await;
                    Err(None)
                }
            };
            if let Err(stop) = step {
                break stop;
            }
        };
        conn.shutdown().await;
        result
    }

    async fn connected(&mut self, link: &watch::Sender<Link>) {
        link.send_replace(Link::Connected);
        let _ = self.events.send(Event::Connected).await;
    }

    async fn on_read_error(&mut self, conn: &mut Connection, e: ReadError) -> Result<(), Stop> {
        match e {
            ReadError::Closed => Err(Some(CloseReason::PeerClosed)),
            ReadError::Io(e) => Err(io_stop(e)),
            ReadError::Decode(e) => {
                // RFC 4975 section 7.3: a request that cannot be parsed gets 400 when its
                // transaction can be named; when the framing is lost (`fatal`) nothing
                // after it can be trusted and the connection is closed.
                tracing::info!(error = %e, fatal = e.fatal, "MSRP: malformed frame");
                // A REPORT is never answered (section 7.1.2), not even with 400.
                if e.method != Some(Method::Report)
                    && let Some(response) = e.response()
                {
                    write(conn, &response).await?;
                }
                if e.fatal {
                    Err(Some(CloseReason::Malformed(e.to_string())))
                } else {
                    Ok(())
                }
            }
        }
    }

    async fn on_frame(
        &mut self,
        conn: &mut Connection,
        frame: Frame,
        link: &watch::Sender<Link>,
    ) -> Result<(), Stop> {
        if let StartLine::Response { code, .. } = frame.start {
            return self.on_response(frame, code, link).await;
        }
        match self.inbound.on_request(&frame) {
            None | Some(Verdict::Nothing) => Ok(()),
            Some(Verdict::Respond { code, comment }) => {
                write(conn, &frame.response(code, comment.as_deref())).await
            }
            Some(Verdict::Report { message_id, status }) => {
                self.on_report(message_id, status).await;
                Ok(())
            }
            Some(Verdict::Deliver { message, asked }) => {
                self.deliver(frame, message, asked).await;
                Ok(())
            }
        }
    }

    async fn on_response(
        &mut self,
        frame: Frame,
        code: u16,
        link: &watch::Sender<Link>,
    ) -> Result<(), Stop> {
        match self.pending.remove(&frame.transact_id) {
            Some(Waiter::Handle(tx)) => {
                let _ = tx.send(frame);
            }
            Some(Waiter::Bind) if code == 200 => {
                self.bind_deadline = None;
                tracing::info!("MSRP connection bound");
                self.connected(link).await;
            }
            Some(Waiter::Bind) => return Err(Some(CloseReason::BindRefused { code })),
            None => {
                let detached = self
                    .detached
                    .iter()
                    .position(|(t, _)| *t == frame.transact_id);
                match detached.and_then(|i| self.detached.remove(i)) {
                    Some((_, message_id)) if code != 200 => {
                        let StartLine::Response { comment, .. } = frame.start else {
                            return Ok(());
                        };
                        let status = Status { code, comment };
                        tracing::warn!(%message_id, code, "MSRP: error response to a sent message");
                        let _ = self
                            .events
                            .send(Event::DeliveryFailed { message_id, status })
                            .await;
                    }
                    _ => tracing::debug!(tid = %frame.transact_id, code, "MSRP: stray response"),
                }
            }
        }
        Ok(())
    }

    /// A REPORT on one of the session's messages goes to the send waiting for it; a
    /// failure nobody waits for goes to the session as `Event::DeliveryFailed`.
    async fn on_report(&mut self, message_id: String, status: Status) {
        match self.reports.remove(&message_id) {
            Some(tx) => {
                let _ = tx.send(status);
            }
            None if status.code != 200 => {
                tracing::warn!(%message_id, status = %status, "MSRP: failure REPORT for a sent message");
                let _ = self
                    .events
                    .send(Event::DeliveryFailed { message_id, status })
                    .await;
            }
            None => tracing::debug!(%message_id, "MSRP: unexpected success REPORT"),
        }
    }

    /// A local close: every message still awaiting its disposition (held, or being
    /// delivered) failed; the sender hears it as RFC 4975 7.1.2 says, the response to the
    /// last chunk if not sent yet, else a failure REPORT unless Failure-Report `no`.
    async fn settle_all(&mut self, conn: &mut Connection) {
        // In custody: delivered after the session anyway, so no failure is reported.
        self.deferred.retain(|_, d| {
            if d.custody {
                d.waiter.abort();
            }
            !d.custody
        });
        let keys: Vec<u64> = self.deferred.keys().copied().collect();
        for key in keys {
            let closed = Disposition::failed(403, "the chat session ended before delivery");
            if self.settle(conn, key, closed).await.is_err() {
                return;
            }
        }
    }

    /// A whole message to the session, the response to `last_chunk` held until the
    /// session replies (or the disposition deadline passes).
    async fn deliver(&mut self, last_chunk: Frame, message: Assembled, asked: Requested) {
        let (disposition, rx) = oneshot::channel();
        let (hold, held) = oneshot::channel();
        let deadline = Instant::now() + self.settings.disposition_timeout;
        let reply = Reply {
            disposition,
            hold,
            deadline,
        };
        let len = message.data.len() as u64;
        let event = Event::Message(Box::new(Received {
            content_type: message.content_type.unwrap_or_default(),
            body: message.data,
            message_id: message.message_id.clone(),
            success_report: asked.success_report,
            failure_report: asked.failure_report,
            reply,
        }));
        tracing::debug!(message_id = %message.message_id, len, "MSRP: message complete");
        let key = self.next_key;
        self.next_key += 1;
        let waiter = tokio::spawn(await_disposition(
            rx,
            held,
            self.settings.disposition_timeout,
            key,
            self.news_tx.clone(),
        ))
        .abort_handle();
        self.deferred.insert(
            key,
            Deferred {
                last_chunk,
                len,
                asked,
                responded: false,
                custody: false,
                waiter,
            },
        );
        // Nobody to deliver to: the reply is dropped and reads as a failure.
        let _ = self.events.send(event).await;
    }

    async fn on_news(&mut self, conn: &mut Connection, key: u64, news: News) -> Result<(), Stop> {
        match news {
            News::Forgotten => {
                self.deferred.remove(&key);
                Ok(())
            }
            News::Deadline | News::Held(_) => {
                let Some(d) = self.deferred.get_mut(&key) else {
                    return Ok(());
                };
                d.custody = matches!(news, News::Held(Hold::Custody));
                // The sender's transaction would time out (30 s, RFC 4975 section
                // 7.1.1), or the session holds the message: the chunk is acknowledged
                // now, the outcome goes in a REPORT.
                let message_id = d.last_chunk.message_id().unwrap_or_default().to_owned();
                match news {
                    News::Held(_) => {
                        tracing::debug!(%message_id, "MSRP: message held, answering 200")
                    }
                    _ => tracing::warn!(%message_id, "MSRP: no disposition in time, answering 200"),
                }
                d.responded = true;
                let chunk = d.last_chunk.clone();
                respond(conn, &chunk, 200, None).await
            }
            News::InTime(d) | News::Late(d) => self.settle(conn, key, d).await,
        }
    }

    /// Sends what the disposition of message `key` calls for, and forgets the message.
    async fn settle(
        &mut self,
        conn: &mut Connection,
        key: u64,
        disposition: Disposition,
    ) -> Result<(), Stop> {
        let Some(deferred) = self.deferred.remove(&key) else {
            return Ok(());
        };
        deferred.waiter.abort();
        let outcome = transaction::on_disposition(&disposition, deferred.asked, deferred.responded);
        let chunk = &deferred.last_chunk;
        if let Some((code, comment)) = outcome.response {
            write(conn, &chunk.response(code, comment.as_deref())).await?;
        }
        if let Some(status) = outcome.report {
            // RFC 4975 section 7.1.2: the REPORT covers the whole message, 1-N/N.
            let range = ByteRange {
                start: 1,
                end: Some(deferred.len),
                total: Some(deferred.len),
            };
            write(conn, &chunk.report(TransactId::random(), range, status)).await?;
        }
        Ok(())
    }

    async fn on_command(&mut self, conn: &mut Connection, command: Command) -> Result<(), Stop> {
        match command {
            Command::Transmit { frame, response } => {
                if let Some(tx) = response {
                    // Waiters that gave up (their 408 fired) are dropped here.
                    self.pending
                        .retain(|_, w| !matches!(w, Waiter::Handle(t) if t.is_closed()));
                    self.pending
                        .insert(frame.transact_id.clone(), Waiter::Handle(tx));
                } else if frame.failure_report() == FailureReport::Partial
                    && let Some(id) = frame.message_id()
                {
                    // RFC 4975 section 5.3: with `partial` only an error comes back; it
                    // is remembered (boundedly) to tell the session.
                    if self.detached.len() == DETACHED {
                        self.detached.pop_front();
                    }
                    self.detached
                        .push_back((frame.transact_id.clone(), id.to_string()));
                }
                write(conn, &frame).await
            }
            Command::ExpectReport { message_id, report } => {
                self.reports.retain(|_, t| !t.is_closed());
                self.reports.insert(message_id, report);
                Ok(())
            }
        }
    }
}

/// Waits for the session's reply on a message: in time, or past the deadline (then the
/// deadline is announced and the reply still awaited, as long as `LATE_DISPOSITION`).
/// A dropped reply is a failure: the message was not delivered.
async fn await_disposition(
    mut rx: oneshot::Receiver<Disposition>,
    mut hold: oneshot::Receiver<Hold>,
    within: Duration,
    key: u64,
    news: mpsc::UnboundedSender<(u64, News)>,
) {
    let lost = || Disposition::failed(403, "message not delivered");
    let deadline = sleep(within);
    tokio::pin!(deadline);
    // `hold` closes unsent when the reply is sent (or dropped): then only `rx` counts.
    let mut may_hold = true;
    let held = loop {
        tokio::select! {
            d = &mut rx => {
                let _ = news.send((key, News::InTime(d.unwrap_or_else(|_| lost()))));
                return;
            }
            h = &mut hold, if may_hold => match h {
                Ok(how) => break Some(how),
                Err(_) => may_hold = false,
            },
            _ = &mut deadline => break None,
        }
    };
    if let Some(how) = held {
        // A held message waits as long as the session: settled, dropped, or closed.
        let _ = news.send((key, News::Held(how)));
        let late = match (rx.await, how) {
            (Ok(d), _) => News::Late(d),
            (Err(_), Hold::Pending) => News::Late(lost()),
            (Err(_), Hold::Custody) => News::Forgotten,
        };
        let _ = news.send((key, late));
        return;
    }
    let _ = news.send((key, News::Deadline));
    if let Ok(d) = tokio::time::timeout(LATE_DISPOSITION, rx).await {
        let _ = news.send((key, News::Late(d.unwrap_or_else(|_| lost()))));
    }
}

/// How long one frame may take to write: a peer that stops reading would otherwise
/// hold the session's task (and every send waiting on it) forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes a frame; an encoding failure drops the frame (logged), a socket error or a
/// write stalled past `WRITE_TIMEOUT` ends the connection.
async fn write(conn: &mut Connection, frame: &Frame) -> Result<(), Stop> {
    match tokio::time::timeout(WRITE_TIMEOUT, conn.write_frame(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(WriteError::Encode(e))) => {
            tracing::error!(error = %e, tid = %frame.transact_id, "MSRP: frame not sent");
            Ok(())
        }
        Ok(Err(WriteError::Io(e))) => Err(io_stop(e)),
        Err(_) => Err(io_stop(format!("write stalled for {WRITE_TIMEOUT:?}"))),
    }
}

/// The transaction response to `request`, when its Failure-Report asks for it
/// (`transaction::sends_response`).
async fn respond(
    conn: &mut Connection,
    request: &Frame,
    code: u16,
    comment: Option<&str>,
) -> Result<(), Stop> {
    if transaction::sends_response(request.failure_report(), code) {
        write(conn, &request.response(code, comment)).await?;
    }
    Ok(())
}
