//! The stream lettre drives, whose transport the client can swap for TLS between two
//! commands (RFC 3207 4: after the 220 to STARTTLS, before the next command).
//!
//! lettre's own `starttls` cannot serve: it quits when the server refuses STARTTLS (RFC
//! 3207 4 lets the client go on in clear), and it sends the second EHLO itself and keeps
//! only the keywords it knows (DELIVERBY is dropped). So lettre owns a `Layered` and the
//! client keeps its `Switch`: lettre only ever sees a byte stream.
//!
//! While STARTTLS awaits its reply, reads stop at each line's end, so that lettre's
//! buffer never holds what the server sent after the 220: such bytes would be read as if
//! they came over TLS (response injection, as in CVE-2011-0411 the other way round).
//! They stay here, and the switch to TLS refuses to happen over them.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::client::TlsStream;

struct Shared<S> {
    transport: Transport<S>,
    /// Reads end at a line's end (STARTTLS sent, TLS not started).
    by_line: bool,
    /// Read from the plain transport, not yet handed to lettre.
    pending: Vec<u8>,
}

enum Transport<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
    /// Taken for the handshake; a handshake that failed leaves it so.
    Gone,
}

/// The stream handed to lettre.
pub(crate) struct Layered<S> {
    transport: Arc<Mutex<Shared<S>>>,
    peer: SocketAddr,
}

/// The client's handle on the transport under lettre.
pub(crate) struct Switch<S>(Arc<Mutex<Shared<S>>>);

pub(crate) fn layered<S>(plain: S, peer: SocketAddr) -> (Layered<S>, Switch<S>) {
    let transport = Arc::new(Mutex::new(Shared {
        transport: Transport::Plain(plain),
        by_line: false,
        pending: Vec::new(),
    }));
    (
        Layered {
            transport: transport.clone(),
            peer,
        },
        Switch(transport),
    )
}

impl<S> Switch<S> {
    /// Call before sending STARTTLS: reads end at each line's end from now on.
    pub fn by_line(&self) {
        lock(&self.0).by_line = true;
    }

    /// The plain transport, for the handshake (the transport is gone until `put_tls`).
    /// Err when the server sent more after its reply to STARTTLS (RFC 3207 4.2: the next
    /// bytes must be the handshake's), or when it is not plain any more.
    pub fn take_plain(&self) -> Result<S, &'static str> {
        let mut shared = lock(&self.0);
        if !shared.pending.is_empty() {
            shared.transport = Transport::Gone;
            return Err("the server sent data after its 220 to STARTTLS");
        }
        match std::mem::replace(&mut shared.transport, Transport::Gone) {
            Transport::Plain(s) => Ok(s),
            other => {
                shared.transport = other;
                Err("the connection is not plain text")
            }
        }
    }

    /// From now on lettre reads and writes through `tls`.
    pub fn put_tls(&self, tls: TlsStream<S>) {
        let mut shared = lock(&self.0);
        shared.transport = Transport::Tls(Box::new(tls));
        shared.by_line = false;
    }

    pub fn is_tls(&self) -> bool {
        matches!(lock(&self.0).transport, Transport::Tls(_))
    }
}

fn lock<S>(shared: &Mutex<Shared<S>>) -> MutexGuard<'_, Shared<S>> {
    // Nothing panics while holding it; a poisoned lock still holds a usable transport.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the TLS handshake failed")
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Layered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let shared = &mut *lock(&self.transport);
        match &mut shared.transport {
            Transport::Plain(s) if shared.by_line => {
                if shared.pending.is_empty() {
                    let mut chunk = [0u8; 1024];
                    let mut chunk = ReadBuf::new(&mut chunk);
                    std::task::ready!(Pin::new(s).poll_read(cx, &mut chunk))?;
                    shared.pending.extend_from_slice(chunk.filled());
                }
                let line = match shared.pending.iter().position(|&b| b == b'\n') {
                    Some(lf) => lf + 1,
                    None => shared.pending.len(),
                };
                let n = line.min(buf.remaining());
                buf.put_slice(&shared.pending[..n]);
                shared.pending.drain(..n);
                Poll::Ready(Ok(()))
            }
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Layered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut lock(&self.transport).transport {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, data),
            Transport::Tls(s) => Pin::new(s).poll_write(cx, data),
            Transport::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut lock(&self.transport).transport {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s).poll_flush(cx),
            Transport::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut lock(&self.transport).transport {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Gone => Poll::Ready(Ok(())),
        }
    }
}

impl<S> std::fmt::Debug for Layered<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match lock(&self.transport).transport {
            Transport::Plain(_) => "plain",
            Transport::Tls(_) => "tls",
            Transport::Gone => "gone",
        };
        f.debug_struct("Layered")
            .field("peer", &self.peer)
            .field("transport", &kind)
            .finish()
    }
}

impl<S> lettre::transport::smtp::client::AsyncTokioStream for Layered<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_and_writes_go_through_the_current_transport() {
        let (a, mut b) = tokio::io::duplex(64);
        let (mut layered, switch) = layered(a, ([127, 0, 0, 1], 25).into());
        layered.write_all(b"EHLO x\r\n").await.unwrap();
        let mut got = [0u8; 8];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"EHLO x\r\n");
        assert!(!switch.is_tls());
        assert!(switch.take_plain().is_ok());
        assert!(switch.take_plain().is_err(), "taken once");
        let e = layered.write_all(b"QUIT\r\n").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
    }

    #[tokio::test]
    async fn after_starttls_reads_stop_at_line_ends_and_more_data_blocks_the_switch() {
        let (a, mut b) = tokio::io::duplex(256);
        let (mut stream, switch) = layered(a, ([127, 0, 0, 1], 25).into());
        switch.by_line();
        b.write_all(b"220 2.0.0 go ahead\r\n").await.unwrap();
        let mut got = vec![0u8; 64];
        let n = stream.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"220 2.0.0 go ahead\r\n");
        assert!(switch.take_plain().is_ok(), "nothing after the reply");

        let (a, mut b) = tokio::io::duplex(256);
        let (mut stream, switch) = layered(a, ([127, 0, 0, 1], 25).into());
        switch.by_line();
        // One segment: the reply and an injected one, as a man in the middle would send.
        b.write_all(b"220 go ahead\r\n250 PIPELINING\r\n")
            .await
            .unwrap();
        let n = stream.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"220 go ahead\r\n");
        assert!(switch.take_plain().is_err(), "data after the 220");
    }
}
