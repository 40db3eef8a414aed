//! A stream that records the opening of an SMTP session: every byte read until recording
//! stops, and whether anything was written. lettre reads the greeting and sends EHLO in
//! one call; the record lets the client tell a refused greeting from a refused EHLO and
//! read the EHLO keywords itself (lettre's `ServerInfo` drops unknown ones: DELIVERBY).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the opening looked like so far.
#[derive(Debug, Default)]
pub(crate) struct Opening {
    pub read: Vec<u8>,
    pub wrote: bool,
    recording: bool,
}

/// A handle on the record, kept by the client while lettre owns the stream.
#[derive(Debug, Clone)]
pub(crate) struct Record(Arc<Mutex<Opening>>);

impl Record {
    pub fn take(&self) -> Opening {
        let mut opening = self.0.lock().expect("record lock");
        opening.recording = false;
        std::mem::take(&mut *opening)
    }
}

/// `inner`, recording into the returned `Record` until `Record::take`.
#[derive(Debug)]
pub(crate) struct Recorded<S> {
    inner: S,
    record: Arc<Mutex<Opening>>,
}

pub(crate) fn record<S>(inner: S) -> (Recorded<S>, Record) {
    let record = Arc::new(Mutex::new(Opening {
        recording: true,
        ..Opening::default()
    }));
    (
        Recorded {
            inner,
            record: record.clone(),
        },
        Record(record),
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let mut opening = self.record.lock().expect("record lock");
            if opening.recording {
                opening.read.extend_from_slice(&buf.filled()[before..]);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            let mut opening = self.record.lock().expect("record lock");
            if opening.recording {
                opening.wrote = true;
            }
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
