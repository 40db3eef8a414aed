//! A small MSRP peer for the tests (RFC 4975 over TCP), on tokio and the gateway's own
//! codec: it connects to the IWF or listens for it, sends messages in chunks, reads
//! frames with a bounded wait and answers requests. It plays the CPM client's side.

use std::net::SocketAddr;
use std::time::Duration;

use iwf::msrp::{
    Assembled, Body, ByteRange, Decoder, FailureReport, Flag, Frame, Method, Progress, Reassembler,
    StartLine, Status, TransactId, split,
};
use iwf::sdp::{Host, MsrpUri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Why `next_frame` returned no frame.
#[derive(Debug)]
pub enum NextError {
    Timeout,
    Closed,
    Io(std::io::Error),
    Decode(iwf::msrp::DecodeError),
}

/// A listening test peer (the IWF is active): its URI goes in the IWF's remote path.
pub struct MsrpListener {
    listener: TcpListener,
    /// `msrp://127.0.0.1:{port}/{session_id};tcp`
    pub uri: MsrpUri,
}

impl MsrpListener {
    pub async fn bind(session_id: &str) -> MsrpListener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let uri = MsrpUri::tcp(Host::Ip([127, 0, 0, 1].into()), port, session_id);
        MsrpListener { listener, uri }
    }

    /// Whether the IWF connects within `within` (the connection is dropped).
    pub async fn connects_within(&self, within: Duration) -> bool {
        tokio::time::timeout(within, self.listener.accept())
            .await
            .is_ok()
    }

    /// The IWF's connection, within `within`; the client addresses `to_path`.
    pub async fn accept(&self, to_path: Vec<MsrpUri>, within: Duration) -> MsrpClient {
        let (stream, _) = tokio::time::timeout(within, self.listener.accept())
            .await
            .expect("the IWF connects in time")
            .unwrap();
        MsrpClient::new(stream, self.uri.clone(), to_path)
    }
}

/// A connected test peer.
pub struct MsrpClient {
    stream: TcpStream,
    decoder: Decoder,
    buf: Vec<u8>,
    /// The client's own URI (From-Path).
    pub local: MsrpUri,
    /// Where its requests go (To-Path): the IWF's `a=path`.
    pub to_path: Vec<MsrpUri>,
}

/// A client URI with a fixed port: the IWF compares the From-Path with what the SDP
/// said, not with the socket's source port.
pub fn client_uri(session_id: &str) -> MsrpUri {
    MsrpUri::tcp(Host::Ip([127, 0, 0, 1].into()), 7777, session_id)
}

impl MsrpClient {
    /// Connects to the IWF at `addr` (the IWF is passive).
    pub async fn connect(addr: SocketAddr, local: MsrpUri, to_path: Vec<MsrpUri>) -> MsrpClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        MsrpClient::new(stream, local, to_path)
    }

    /// Connects to the first URI of `to_path` (e.g. the `a=path` of the IWF's SDP answer).
    pub async fn connect_to(local: MsrpUri, to_path: Vec<MsrpUri>) -> MsrpClient {
        let first = to_path.first().expect("a path to connect to");
        let host = first.host.sdp_address();
        let port = first.port.expect("a port in the path URI");
        let stream = TcpStream::connect((host.as_str(), port)).await.unwrap();
        MsrpClient::new(stream, local, to_path)
    }

    fn new(stream: TcpStream, local: MsrpUri, to_path: Vec<MsrpUri>) -> MsrpClient {
        stream.set_nodelay(true).unwrap();
        MsrpClient {
            stream,
            decoder: Decoder::default(),
            buf: Vec::new(),
            local,
            to_path,
        }
    }

    /// One SEND chunk from this client.
    #[allow(clippy::too_many_arguments)]
    pub fn chunk(
        &self,
        message_id: &str,
        range: ByteRange,
        content_type: &str,
        data: &[u8],
        flag: Flag,
        reports: (bool, FailureReport),
    ) -> Frame {
        let body = (!data.is_empty()).then(|| Body {
            content_type: content_type.to_string(),
            data: data.to_vec(),
        });
        Frame::send(
            TransactId::random(),
            self.to_path.clone(),
            vec![self.local.clone()],
            message_id,
            range,
            reports,
            body,
            flag,
        )
    }

    /// The chunks of a whole message cut at `chunk_size` (not sent).
    pub fn chunks(
        &self,
        message_id: &str,
        content_type: &str,
        body: &[u8],
        chunk_size: usize,
        reports: (bool, FailureReport),
    ) -> Vec<Frame> {
        split(body.len(), chunk_size)
            .map(|(range, bytes, flag)| {
                self.chunk(message_id, range, content_type, &body[bytes], flag, reports)
            })
            .collect()
    }

    /// An empty SEND (no body, Byte-Range 1-0/0), as an active peer binds with.
    pub fn empty_send(&self) -> Frame {
        let range = ByteRange {
            start: 1,
            end: Some(0),
            total: Some(0),
        };
        self.chunk(
            TransactId::random().as_str(),
            range,
            "",
            b"",
            Flag::Complete,
            (false, FailureReport::Yes),
        )
    }

    pub async fn send_frame(&mut self, frame: &Frame) {
        self.send_raw(&frame.to_bytes().unwrap()).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends a frame where the peer may already have closed the connection.
    pub async fn try_send_frame(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.stream.write_all(&frame.to_bytes().unwrap()).await
    }

    /// Sends a message in chunks of `chunk_size`; the chunks sent, in order.
    pub async fn send_message(
        &mut self,
        message_id: &str,
        content_type: &str,
        body: &[u8],
        chunk_size: usize,
        reports: (bool, FailureReport),
    ) -> Vec<Frame> {
        let chunks = self.chunks(message_id, content_type, body, chunk_size, reports);
        for c in &chunks {
            self.send_frame(c).await;
        }
        chunks
    }

    /// The next frame, waiting at most `within`.
    pub async fn next_frame(&mut self, within: Duration) -> Result<Frame, NextError> {
        let read = async {
            loop {
                if let Some(f) = self
                    .decoder
                    .decode(&mut self.buf)
                    .map_err(NextError::Decode)?
                {
                    return Ok(f);
                }
                self.buf.reserve(16 * 1024);
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) => return Err(NextError::Closed),
                    Ok(_) => {}
                    Err(e) => return Err(NextError::Io(e)),
                }
            }
        };
        tokio::time::timeout(within, read)
            .await
            .unwrap_or(Err(NextError::Timeout))
    }

    /// The next frame, which must come within `within`.
    pub async fn expect_frame(&mut self, within: Duration) -> Frame {
        match self.next_frame(within).await {
            Ok(f) => f,
            Err(e) => panic!("expected an MSRP frame within {within:?}: {e:?}"),
        }
    }

    /// The next frame, which must be the response to `request`; its status code.
    pub async fn expect_response(&mut self, request: &Frame, within: Duration) -> u16 {
        let f = self.expect_frame(within).await;
        assert_eq!(
            f.transact_id, request.transact_id,
            "response to another transaction: {f:?}"
        );
        match f.start {
            StartLine::Response { code, .. } => code,
            StartLine::Request(m) => panic!("expected a response, got a {} request", m.as_str()),
        }
    }

    /// The next frame, which must be a request with `method`.
    pub async fn expect_request(&mut self, method: Method, within: Duration) -> Frame {
        let f = self.expect_frame(within).await;
        assert_eq!(
            f.method(),
            Some(&method),
            "expected {}: {f:?}",
            method.as_str()
        );
        f
    }

    /// Receives one whole message the IWF sends: each SEND chunk answered 200 (as its
    /// Failure-Report allows), put together; the message and its last chunk (to build a
    /// REPORT on). Each chunk must come within `within`.
    pub async fn receive_message(&mut self, within: Duration) -> (Assembled, Frame) {
        let mut reassembler = Reassembler::default();
        loop {
            let chunk = self.expect_request(Method::Send, within).await;
            if chunk.failure_report() == FailureReport::Yes {
                self.respond(&chunk, 200).await;
            }
            match reassembler.push(&chunk).expect("a well-formed chunk") {
                Progress::Complete(m) => return (m, chunk),
                Progress::Pending => {}
                other => panic!("unexpected chunk outcome {other:?}"),
            }
        }
    }

    /// Sends the success REPORT (`Status: 000 200`, Byte-Range 1-N/N) on a message whose
    /// last chunk was `last` and size `len`.
    pub async fn report_success(&mut self, last: &Frame, len: u64) {
        let range = ByteRange {
            start: 1,
            end: Some(len),
            total: Some(len),
        };
        let status = Status {
            code: 200,
            comment: None,
        };
        let report = last.report(TransactId::random(), range, status);
        self.send_frame(&report).await;
    }

    /// Answers a request with `code` (from this client, RFC 4975 section 7.2).
    pub async fn respond(&mut self, request: &Frame, code: u16) {
        let response = request.response(code, None);
        self.send_frame(&response).await;
    }

    /// Nothing arrives within `within` (a bounded wait for silence, not a sleep-assert:
    /// anything arriving fails it at once).
    pub async fn expect_silence(&mut self, within: Duration) {
        match self.next_frame(within).await {
            Err(NextError::Timeout) => {}
            other => panic!("expected nothing within {within:?}, got {other:?}"),
        }
    }

    /// The IWF closed the connection within `within`.
    pub async fn expect_closed(&mut self, within: Duration) {
        loop {
            match self.next_frame(within).await {
                Err(NextError::Closed) | Err(NextError::Io(_)) => return,
                Err(e) => panic!("expected the connection closed within {within:?}: {e:?}"),
                Ok(_) => continue,
            }
        }
    }
}
