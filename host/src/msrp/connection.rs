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
