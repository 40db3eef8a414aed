//! The tokio driver of the inbound SMTP server: accepts connections (at most
//! `max_connections`, the next get 421), runs one [`Session`] per connection in its own
//! task and asks the [`Delivery`] what the session asks. Owns the sockets and the clocks;
//! the protocol is all in `session`.

use super::session::{Session, Since, Step};
use super::{Delivery, InboundSettings, InvalidSetting, Verdict};
use crate::config::SmtpInboundConfig;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, timeout, timeout_at};

/// Bytes read at once; with a command line or the message bounded by the session, this
/// bounds what one connection holds.
const READ_CHUNK: usize = 16 * 1024;

/// Why the inbound listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
    #[error("[smtp.inbound] listen = {addr}: cannot listen there: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Checks `[smtp.inbound]` and binds its `listen` address: what [`serve`] takes.
pub async fn bind(
    config: &SmtpInboundConfig,
) -> Result<(TcpListener, InboundSettings), StartError> {
    let settings = InboundSettings::from_config(config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    Ok((listener, settings))
}

/// Serves `listener` until `shutdown` resolves. Then it drains: each connection answers
/// 421 4.3.2 and closes when it next waits for the client (a gateway decision in progress
/// is waited for), a new connection is greeted 421 (RFC 5321 3.8: the client tries again
/// later, or another MX), and `serve` returns once every connection has ended.
/// A failed `accept` (e.g. out of file descriptors) is logged and retried after a pause,
/// never fatal.
pub async fn serve<D: Delivery>(
    listener: TcpListener,
    settings: InboundSettings,
    delivery: Arc<D>,
    shutdown: impl Future<Output = ()>,
) {
    let settings = Arc::new(settings);
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let (closing, closing_seen) = watch::channel(false);
    let local = listener.local_addr().ok();
    tracing::info!(listen = ?local, domain = %settings.domain, "SMTP inbound: listening");
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(listen = ?local, error = %e, "SMTP inbound: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let settings = settings.clone();
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let delivery = delivery.clone();
                let closing = closing_seen.clone();
                tokio::spawn(connection(
                    stream, peer, settings, delivery, permit, closing,
                ));
            }
            Err(_) => refuse_busy(stream, peer, &settings),
        }
    }
    let _ = closing.send(true);
    let open = settings.max_connections - slots.available_permits();
    tracing::info!(listen = ?local, open, "SMTP inbound: draining: new connections 421, closing the others");
    // Every slot back: every connection task has ended. `max_connections` is at most
    // 100000 (checked), so it fits.
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    let drained = slots.acquire_many(all);
    tokio::pin!(drained);
    loop {
        tokio::select! {
            _ = &mut drained => break,
            accepted = listener.accept() => {
                if let Ok((stream, peer)) = accepted {
                    tracing::info!(%peer, "SMTP inbound: draining, 421");
                    let greeting = Session::draining_greeting(&settings);
                    let _ = stream.try_write(&greeting);
                }
            }
        }
    }
    drop(listener);
    tracing::info!(listen = ?local, "SMTP inbound: stopped");
}

/// RFC 5321 3.1: a server that cannot serve now answers 421 and closes. Written without
/// waiting (a new socket's buffer has room) and without a task: a flood of connections
/// costs no memory beyond the moment.
fn refuse_busy(stream: TcpStream, peer: SocketAddr, settings: &InboundSettings) {
    tracing::warn!(%peer, max = settings.max_connections, "SMTP inbound: too many connections, 421");
    let greeting = Session::busy_greeting(settings);
    if let Err(e) = stream.try_write(&greeting) {
        tracing::debug!(%peer, error = %e, "SMTP inbound: 421 not written");
    }
}

async fn connection<D: Delivery>(
    mut stream: TcpStream,
    peer: SocketAddr,
    settings: Arc<InboundSettings>,
    delivery: Arc<D>,
    _slot: OwnedSemaphorePermit,
    mut closing: watch::Receiver<bool>,
) {
    // Replies are written once per batch of input (RFC 2920): no need to wait for ACKs.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
    }
    tracing::debug!(%peer, "SMTP inbound: connection");
    let mut session = Session::new(settings.clone(), peer);
    let mut buf = vec![0; READ_CHUNK];
    // When the client's next command is due (`Since::LastReply`); reset by each reply.
    let mut command_due: Option<Instant> = None;
    loop {
        let step = session.poll(chrono::Utc::now());
        let output = session.take_output();
        if !output.is_empty() {
            command_due = None;
            match timeout(settings.command_timeout, stream.write_all(&output)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "SMTP inbound: write failed, closing");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "SMTP inbound: client not reading replies, closing");
                    return;
                }
            }
        }
        match step {
            Step::Read {
                timeout: wait,
                since,
            } => {
                let due = match since {
                    Since::LastReply => *command_due.get_or_insert_with(|| Instant::now() + wait),
                    Since::Now => Instant::now() + wait,
                };
                // `closing` also fires if `serve` was dropped (its sender gone): the same end.
                let read = tokio::select! {
                    read = timeout_at(due, stream.read(&mut buf)) => read,
                    _ = closing.wait_for(|&closing| closing) => {
                        session.shutting_down();
                        continue;
                    }
                };
                match read {
                    Ok(Ok(0)) => {
                        tracing::debug!(%peer, "SMTP inbound: client closed the connection");
                        return;
                    }
                    Ok(Ok(n)) => session.receive(&buf[..n]),
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "SMTP inbound: read failed, closing");
                        return;
                    }
                    Err(_) => session.timed_out(),
                }
            }
            Step::Recipient { envelope, rcpt } => {
                let asked = delivery.recipient(&envelope, &rcpt);
                let verdict = timeout(settings.command_timeout, asked).await;
                session.answer(verdict.unwrap_or_else(|_| {
                    tracing::warn!(%peer, %rcpt, "SMTP inbound: no RCPT verdict in time, 451");
                    Verdict::try_later("Recipient check timed out, try again later")
                }));
            }
            Step::Deliver {
                mail,
                timeout: wait,
            } => {
                let verdict = timeout(wait, delivery.deliver(mail)).await;
                session.answer(verdict.unwrap_or_else(|_| {
                    tracing::warn!(%peer, "SMTP inbound: no delivery verdict in time, 451");
                    Verdict::try_later("Delivery timed out, try again later")
                }));
            }
            Step::Close => {
                let _ = timeout(settings.command_timeout, stream.shutdown()).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_checks_the_settings_and_names_the_address_it_cannot_take() {
        let config = SmtpInboundConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            ..SmtpInboundConfig::default()
        };
        let (listener, settings) = bind(&config).await.unwrap();
        assert_eq!(settings.domain, "localhost");
        let taken = SmtpInboundConfig {
            listen: listener.local_addr().unwrap(),
            ..config.clone()
        };
        let e = bind(&taken).await.unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "[smtp.inbound] listen = {}: cannot listen there: ",
                taken.listen
            )),
            "{e}"
        );
        let bad = SmtpInboundConfig {
            max_recipients: 1,
            ..config
        };
        let e = bind(&bad).await.unwrap_err().to_string();
        assert!(e.starts_with("[smtp.inbound] max_recipients = 1: "), "{e}");
    }
}
