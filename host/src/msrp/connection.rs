//! One MSRP connection (RFC 4975 over TCP): framed reading and writing over the sans-I/O
//! `codec`, and the TCP options every MSRP socket gets (no Nagle, keepalive).
//! Owns the socket and its read buffer; knows nothing of sessions (`session` drives it).

use std::io;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{self, DecodeError, Decoder, Limits};
use super::frame::Frame;

/// How much is read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

/// Why no frame could be read.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("connection closed by the peer")]
    Closed,
    #[error("reading: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Why a frame could not be written.
#[derive(Debug, Error)]
pub enum WriteError {
    #[error("writing: {0}")]
    Io(#[from] io::Error),
    /// The frame itself cannot be encoded (e.g. its body holds its end-line).
    #[error("encoding: {0}")]
    Encode(#[from] codec::Error),
}

/// A TCP connection carrying MSRP frames.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    decoder: Decoder,
    buf: Vec<u8>,
}

impl Connection {
    /// Wraps a connected socket: TCP_NODELAY (a chunk's end-line must not wait for the
    /// delayed ACK) and, when `keepalive` is set, TCP keepalive with that idle time and
    /// probe interval, so a peer that vanished without a FIN is noticed (RFC 4975 has no
    /// keep-alive of its own). Failing to set an option is logged, not fatal.
    pub fn new(stream: TcpStream, limits: Limits, keepalive: Option<Duration>) -> Connection {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(error = %e, "MSRP: cannot set TCP_NODELAY");
        }
        if let Some(every) = keepalive {
            let params = socket2::TcpKeepalive::new()
                .with_time(every)
                .with_interval(every);
            if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&params) {
                tracing::warn!(error = %e, "MSRP: cannot set TCP keepalive");
            }
        }
        Connection {
            stream,
            decoder: Decoder::new(limits),
            buf: Vec::new(),
        }
    }

    /// New bounds for the frames to come; only at a frame boundary (after `read_frame`
    /// returned a frame), where the decoder holds no state. Bytes already read stay.
    pub fn set_limits(&mut self, limits: Limits) {
        self.decoder = Decoder::new(limits);
    }

    /// The next whole frame. Cancel-safe: what was read stays buffered for the next call
    /// (the socket read and the decoder's scan state both survive a dropped future).
    pub async fn read_frame(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                return Ok(frame);
            }
            self.buf.reserve(READ_CHUNK);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ReadError::Closed);
            }
        }
    }

    /// Writes one frame whole.
    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), WriteError> {
        let bytes = frame.to_bytes()?;
        self.stream.write_all(&bytes).await?;
        Ok(())
    }

    /// Closes the sending side (FIN) after what was written; errors do not matter here.
    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msrp::frame::Flag;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn keepalive_and_nodelay_are_set() {
        let (a, _b) = pair().await;
        let conn = Connection::new(a, Limits::default(), Some(Duration::from_secs(7)));
        let sock = socket2::SockRef::from(&conn.stream);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        assert!(conn.stream.nodelay().unwrap());
    }

    #[tokio::test]
    async fn keepalive_off_when_not_asked() {
        let (a, _b) = pair().await;
        let conn = Connection::new(a, Limits::default(), None);
        assert!(!socket2::SockRef::from(&conn.stream).keepalive().unwrap());
    }

    #[tokio::test]
    async fn frames_written_are_read_back_in_order() {
        let (a, b) = pair().await;
        let (mut a, mut b) = (
            Connection::new(a, Limits::default(), None),
            Connection::new(b, Limits::default(), None),
        );
        let uri = crate::sdp::MsrpUri::parse("msrp://127.0.0.1:2855/s1;tcp").unwrap();
        let frame = |n: &str| {
            Frame::send(
                crate::msrp::TransactId::new(n).unwrap(),
                vec![uri.clone()],
                vec![uri.clone()],
                "msg1",
                crate::msrp::ByteRange {
                    start: 1,
                    end: Some(0),
                    total: Some(0),
                },
                (false, crate::msrp::FailureReport::Yes),
                None,
                Flag::Complete,
            )
        };
        a.write_frame(&frame("tid1")).await.unwrap();
        a.write_frame(&frame("tid2")).await.unwrap();
        assert_eq!(b.read_frame().await.unwrap(), frame("tid1"));
        b.set_limits(Limits::default());
        assert_eq!(b.read_frame().await.unwrap(), frame("tid2"));
        drop(a);
        assert!(matches!(b.read_frame().await, Err(ReadError::Closed)));
    }
}
