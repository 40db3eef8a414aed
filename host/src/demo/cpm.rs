//! The CPM user's client in `iwf demo`: a SIP UAC over UDP (RFC 3261) that invites an
//! e-mail user, and the MSRP endpoint of its chat (RFC 4975), on loopback sockets.
//!
//! It writes real protocol bytes and reads the gateway's with the project's own codecs
//! (`sip::message`, `sdp`, `msrp`, `cpim`). It plays one session, not a general UA: an
//! INVITE retransmitted per Timer A until the first response, the ACK of the 2xx
//! (re-sent when the 2xx is, 13.2.2.4), 200 to the gateway's BYE. Only the demo uses it.

use crate::cpim;
use crate::msrp::{
    self, Assembled, Body, ByteRange, Decoder, FailureReport, Flag, Frame, Method, Progress,
    Reassembler, StartLine, Status, TransactId,
};
use crate::net::sip::new_tag;
use crate::sdp::{Host, MsrpUri, SessionDescription};
use crate::sip::message::{
    self, Limits, Message, ResponseSpec, Transport, build_response, tag_param,
};
use crate::sip::transaction::MAGIC_COOKIE;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::Instant as Deadline;

/// RFC 3261 T1 (17.1.1.1), the first INVITE retransmission interval over UDP.
const T1: Duration = Duration::from_millis(500);

/// Who the CPM user is and whom it invites.
#[derive(Debug, Clone)]
pub struct Parties {
    /// The From of the INVITE, e.g. `"Alice" <sip:alice@ims.example.com>`.
    pub from: String,
    /// P-Asserted-Identity, e.g. `tel:+15551234567` (CPM identities are often tel: URIs).
    pub asserted: String,
    /// The e-mail user's address: the Request-URI is `mailto:` it (5.2.4.2.4).
    pub invitee: String,
    pub subject: String,
}

/// A SIP message from the gateway and when it came.
#[derive(Debug)]
pub struct SipIn {
    pub at: Instant,
    pub message: Message,
}

/// The SIP side of the CPM client.
pub struct CpmClient {
    socket: UdpSocket,
    gateway: SocketAddr,
    local: SocketAddr,
    parties: Parties,
    call_id: String,
    from_tag: String,
    contribution_id: String,
    /// The INVITE sent, retransmitted until a response comes (17.1.1.2).
    invite: Vec<u8>,
    /// A response to the INVITE came: no more retransmissions (17.1.1.2, Proceeding).
    answered: bool,
    /// The ACK of the 2xx, sent again when the 2xx is retransmitted (13.2.2.4).
    ack: Option<Vec<u8>>,
    /// The client's own MSRP URI (its `a=path`), and the socket bound to its port: the
    /// connection is made from there, so the URI names the real endpoint.
    pub msrp_uri: MsrpUri,
    msrp_socket: Option<TcpSocket>,
}

/// Why a wait for the gateway ended without what was awaited.
#[derive(Debug)]
pub enum Wait {
    Timeout,
    Failed(String),
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::Timeout => write!(f, "nothing came before the step's timeout"),
            Wait::Failed(why) => write!(f, "{why}"),
        }
    }
}

fn failed(what: &str) -> impl Fn(std::io::Error) -> Wait + '_ {
    move |e| Wait::Failed(format!("{what}: {e}"))
}

impl CpmClient {
    pub async fn new(gateway: SocketAddr, parties: Parties) -> std::io::Result<CpmClient> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let local = socket.local_addr()?;
        let msrp_socket = TcpSocket::new_v4()?;
        msrp_socket.bind("127.0.0.1:0".parse().expect("an address"))?;
        let msrp_port = msrp_socket.local_addr()?.port();
        let msrp_uri = MsrpUri::tcp(
            Host::Ip(local.ip()),
            msrp_port,
            &crate::sdp::new_session_id(),
        );
        Ok(CpmClient {
            socket,
            gateway,
            local,
            parties,
            call_id: format!("{}@{}", new_tag(), local.ip()),
            from_tag: new_tag(),
            contribution_id: new_tag(),
            invite: Vec::new(),
            answered: false,
            ack: None,
            msrp_uri,
            msrp_socket: Some(msrp_socket),
        })
    }

    fn via(&self) -> String {
        format!(
            "SIP/2.0/UDP {};branch={MAGIC_COOKIE}{}",
            self.local,
            new_tag()
        )
    }

    /// The SDP offer (RFC 4975 section 8, RFC 6135): the chat as message/cpim, and the
    /// client active, as RFC 4975 5.4 makes the offerer by default: it connects to the
    /// gateway's `a=path` once it has the answer.
    fn offer(&self) -> String {
        let ip = self.local.ip();
        let port = self.msrp_uri.port.unwrap_or(9);
        format!(
            "v=0\r\no=alice 2890844526 2890844526 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\n\
             t=0 0\r\nm=message {port} TCP/MSRP *\r\n\
             a=accept-types:message/cpim text/plain\r\na=accept-wrapped-types:text/plain\r\n\
             a=path:{}\r\na=setup:active\r\na=sendrecv\r\n",
            self.msrp_uri
        )
    }

    /// Sends the INVITE (5.2.4.2.4: Request-URI the e-mail user's `mailto:` URI; the CPM
    /// headers the mail is built from). Its key headers, for the ladder.
    pub async fn invite(&mut self) -> Result<(Instant, Vec<(&'static str, String)>), Wait> {
        let p = &self.parties;
        let sdp = self.offer();
        let invite = format!(
            "INVITE mailto:{to} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
             From: {from};tag={tag}\r\nTo: <mailto:{to}>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:alice@{local}>\r\n\
             P-Asserted-Identity: <{pai}>\r\nSubject: {subject}\r\nPriority: normal\r\n\
             Contribution-ID: {contribution}\r\nConversation-ID: {conversation}\r\n\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            to = p.invitee,
            via = self.via(),
            from = p.from,
            tag = self.from_tag,
            call_id = self.call_id,
            local = self.local,
            pai = p.asserted,
            subject = p.subject,
            contribution = self.contribution_id,
            conversation = new_tag(),
            len = sdp.len(),
        );
        self.invite = invite.into_bytes();
        self.socket
            .send_to(&self.invite, self.gateway)
            .await
            .map_err(failed("sending the INVITE"))?;
        let headers = vec![
            ("From", p.from.clone()),
            ("P-Asserted-Identity", format!("<{}>", p.asserted)),
            ("Subject", p.subject.clone()),
            ("Contribution-ID", self.contribution_id.clone()),
            ("SDP", format!("a=path:{} a=setup:active", self.msrp_uri)),
        ];
        Ok((Instant::now(), headers))
    }

    /// The next SIP message from the gateway before `deadline`. Until the INVITE has a
    /// response it is retransmitted (Timer A, 17.1.1.2); a retransmitted 2xx is answered
    /// with the same ACK again and not returned.
    pub async fn next(&mut self, deadline: Deadline) -> Result<SipIn, Wait> {
        let mut interval = T1;
        let mut retransmit =
            (!self.answered && !self.invite.is_empty()).then(|| Deadline::now() + interval);
        let mut buf = vec![0u8; 65_535];
        loop {
            let timer = async {
                match retransmit {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let received = tokio::select! {
                r = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)) => r,
                () = timer => {
                    self.socket.send_to(&self.invite, self.gateway).await.map_err(failed("retransmitting the INVITE"))?;
                    interval = (interval * 2).min(Duration::from_secs(4));
                    retransmit = Some(Deadline::now() + interval);
                    continue;
                }
            };
            let (n, _) = received
                .map_err(|_| Wait::Timeout)?
                .map_err(failed("receiving SIP"))?;
            let message = message::parse(&buf[..n], Transport::Datagram, &Limits::default())
                .map_err(|e| Wait::Failed(format!("the gateway sent unreadable SIP: {e}")))?;
            let is_invite_response =
                message.status().is_some() && message.cseq().is_some_and(|(_, m)| m == "INVITE");
            if is_invite_response {
                retransmit = None;
                self.answered = true;
                if let (Some(ack), Some(200..=299)) = (&self.ack, message.status()) {
                    self.socket
                        .send_to(ack, self.gateway)
                        .await
                        .map_err(failed("re-sending the ACK"))?;
                    continue;
                }
            }
            return Ok(SipIn {
                at: Instant::now(),
                message,
            });
        }
    }

    /// The ACK of the 2xx `ok` (13.2.2.4): to its Contact (the remote target, 12.1.2),
    /// with its To tag, CSeq 1 ACK, a new branch.
    pub async fn ack(&mut self, ok: &Message) -> Result<Instant, Wait> {
        let target = ok
            .header("Contact")
            .and_then(|c| Some(c.split_once('<')?.1.split_once('>')?.0.to_owned()))
            .ok_or_else(|| Wait::Failed("the 200 OK has no Contact to ACK".into()))?;
        let to = ok
            .header("To")
            .filter(|to| tag_param(to).is_some())
            .ok_or_else(|| Wait::Failed("the 200 OK's To has no tag".into()))?;
        let ack = format!(
            "ACK {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
             From: {from};tag={tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\n\
             Content-Length: 0\r\n\r\n",
            via = self.via(),
            from = self.parties.from,
            tag = self.from_tag,
            call_id = self.call_id,
        )
        .into_bytes();
        self.socket
            .send_to(&ack, self.gateway)
            .await
            .map_err(failed("sending the ACK"))?;
        self.ack = Some(ack);
        Ok(Instant::now())
    }

    /// Answers a request of the gateway's (its BYE) with `status` (8.2.6).
    pub async fn respond(&mut self, request: &Message, status: u16) -> Result<Instant, Wait> {
        let response = build_response(
            request,
            &ResponseSpec {
                status,
                ..ResponseSpec::default()
            },
        );
        self.socket
            .send_to(&response, self.gateway)
            .await
            .map_err(failed("answering the gateway's request"))?;
        Ok(Instant::now())
    }

    /// Connects the chat to the gateway's `a=path` (its answer's `path`) from the
    /// client's own MSRP port.
    pub async fn connect_msrp(&mut self, to_path: Vec<MsrpUri>) -> Result<MsrpLink, Wait> {
        let first = to_path
            .first()
            .ok_or_else(|| Wait::Failed("the SDP answer has no a=path".into()))?;
        let ip = match &first.host {
            Host::Ip(ip) => *ip,
            Host::Name(name) => {
                return Err(Wait::Failed(format!(
                    "the a=path host {name} is a name; the demo connects on loopback only"
                )));
            }
        };
        let port = first
            .port
            .ok_or_else(|| Wait::Failed("the a=path URI has no port".into()))?;
        let socket = self
            .msrp_socket
            .take()
            .ok_or_else(|| Wait::Failed("the chat is connected already".into()))?;
        let stream = socket
            .connect(SocketAddr::new(ip, port))
            .await
            .map_err(failed("connecting MSRP"))?;
        stream.set_nodelay(true).map_err(failed("MSRP socket"))?;
        Ok(MsrpLink {
            stream,
            decoder: Decoder::default(),
            buf: Vec::new(),
            reassembler: Reassembler::default(),
            incoming: None,
            local: self.msrp_uri.clone(),
            to_path,
        })
    }
}

/// The `a=path` URIs and `a=setup` of an SDP answer.
pub fn answer_path(body: &[u8]) -> Result<(Vec<MsrpUri>, String), String> {
    let sdp = SessionDescription::parse(body).map_err(|e| format!("SDP answer: {e}"))?;
    let media = sdp
        .media
        .iter()
        .find(|m| m.media == "message")
        .ok_or("the SDP answer has no m=message")?;
    let path = media
        .attribute("path")
        .ok_or("the SDP answer has no a=path")?
        .split_whitespace()
        .map(MsrpUri::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("a=path: {e}"))?;
    let setup = media.attribute("setup").unwrap_or("active").to_owned();
    Ok((path, setup))
}

/// One MSRP frame from the gateway and when it came.
pub struct MsrpIn {
    pub at: Instant,
    pub frame: Frame,
}

/// A whole message the gateway sent on the chat, with when its first chunk came.
pub struct ChatIn {
    pub first_at: Instant,
    pub chunks: usize,
    pub message: Assembled,
}

/// The client's MSRP connection to the gateway.
pub struct MsrpLink {
    stream: TcpStream,
    decoder: Decoder,
    buf: Vec<u8>,
    reassembler: Reassembler,
    /// The message being received: when its first chunk came, chunks so far.
    incoming: Option<(Instant, usize)>,
    pub local: MsrpUri,
    pub to_path: Vec<MsrpUri>,
}

impl MsrpLink {
    async fn send_frame(&mut self, frame: &Frame) -> Result<Instant, Wait> {
        let bytes = frame
            .to_bytes()
            .map_err(|e| Wait::Failed(format!("encoding MSRP: {e}")))?;
        self.stream
            .write_all(&bytes)
            .await
            .map_err(failed("sending MSRP"))?;
        Ok(Instant::now())
    }

    /// The next frame before `deadline`; `Failed` when the gateway closed the connection.
    pub async fn next(&mut self, deadline: Deadline) -> Result<MsrpIn, Wait> {
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| Wait::Failed(format!("the gateway sent unreadable MSRP: {e:?}")))?
            {
                return Ok(MsrpIn {
                    at: Instant::now(),
                    frame,
                });
            }
            self.buf.reserve(16 * 1024);
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| Wait::Timeout)?
                .map_err(failed("reading MSRP"))?;
            if read == 0 {
                return Err(Wait::Failed(
                    "the gateway closed the MSRP connection".into(),
                ));
            }
        }
    }

    /// The response to `request` before `deadline` (other frames in between are refused:
    /// the demo's chat has one transaction at a time).
    async fn response_to(
        &mut self,
        request: &Frame,
        deadline: Deadline,
    ) -> Result<(Instant, u16, String), Wait> {
        let got = self.next(deadline).await?;
        match &got.frame.start {
            StartLine::Response { code, comment }
                if got.frame.transact_id == request.transact_id =>
            {
                Ok((got.at, *code, comment.clone().unwrap_or_default()))
            }
            other => Err(Wait::Failed(format!(
                "expected the response to SEND {}, got {other:?}",
                request.transact_id.as_str()
            ))),
        }
    }

    /// RFC 4975 5.4: the active end's first request binds the connection to the session;
    /// with nothing to say yet it is an empty SEND. The time sent and the response.
    pub async fn bind(&mut self, deadline: Deadline) -> Result<(Instant, Instant, u16), Wait> {
        let range = ByteRange {
            start: 1,
            end: Some(0),
            total: Some(0),
        };
        let id = TransactId::random();
        let send = Frame::send(
            id.clone(),
            self.to_path.clone(),
            vec![self.local.clone()],
            id.as_str(),
            range,
            (false, FailureReport::Yes),
            None,
            Flag::Complete,
        );
        let sent = self.send_frame(&send).await?;
        let (at, code, _) = self.response_to(&send, deadline).await?;
        Ok((sent, at, code))
    }

    /// Sends `message` in chunks of at most 2048 bytes (RFC 4975 7.1.1; 5.1: chunks that
    /// small need not be interruptible): when it went, and the chunks, whose responses
    /// [`MsrpLink::response_to_last`] awaits.
    pub async fn send_message(
        &mut self,
        message: &cpim::Message,
    ) -> Result<(Instant, Vec<Frame>), Wait> {
        let body = message.to_bytes();
        let message_id = TransactId::random();
        let chunks: Vec<Frame> = msrp::split(body.len(), 2048)
            .map(|(range, bytes, flag)| {
                Frame::send(
                    TransactId::random(),
                    self.to_path.clone(),
                    vec![self.local.clone()],
                    message_id.as_str(),
                    range,
                    (false, FailureReport::Yes),
                    Some(Body {
                        content_type: "message/cpim".into(),
                        data: body[bytes].to_vec(),
                    }),
                    flag,
                )
            })
            .collect();
        let mut sent = None;
        for chunk in &chunks {
            let at = self.send_frame(chunk).await?;
            sent.get_or_insert(at);
        }
        Ok((sent.expect("split gives at least one chunk"), chunks))
    }

    /// The response to the last of `chunks` (which the gateway sends once the e-mail is
    /// out, 5.2.4.2.5 step 4); an error response to an earlier chunk ends the wait.
    /// Restartable: responses to earlier chunks are passed over.
    pub async fn response_to_last(
        &mut self,
        chunks: &[Frame],
        deadline: Deadline,
    ) -> Result<(Instant, u16, String), Wait> {
        let last = chunks.last().expect("at least one chunk");
        loop {
            let got = self.next(deadline).await?;
            let StartLine::Response { code, comment } = &got.frame.start else {
                continue;
            };
            let ours = chunks
                .iter()
                .any(|c| c.transact_id == got.frame.transact_id);
            if ours && (got.frame.transact_id == last.transact_id || *code != 200) {
                return Ok((got.at, *code, comment.clone().unwrap_or_default()));
            }
        }
    }

    /// One whole message the gateway sends (F5): each chunk answered 200 where its
    /// Failure-Report asks for a response, and the success REPORT sent when it asks for
    /// one (RFC 4975 7.1.1, 7.1.2).
    /// Restartable: a message under way stays in the link when the wait is dropped.
    pub async fn receive_message(&mut self, deadline: Deadline) -> Result<ChatIn, Wait> {
        loop {
            let got = self.next(deadline).await?;
            let frame = got.frame;
            if frame.method() != Some(&Method::Send) {
                // A REPORT or a stray response: nothing the demo's chat waits for.
                continue;
            }
            let (first_at, chunks) = self.incoming.get_or_insert((got.at, 0));
            *chunks += 1;
            let (first_at, chunks) = (*first_at, *chunks);
            if frame.failure_report() == FailureReport::Yes {
                self.send_frame(&frame.response(200, None)).await?;
            }
            match self.reassembler.push(&frame) {
                Ok(Progress::Complete(message)) => {
                    if frame.success_report() {
                        let len = message.data.len() as u64;
                        let range = ByteRange {
                            start: 1,
                            end: Some(len),
                            total: Some(len),
                        };
                        let status = Status {
                            code: 200,
                            comment: None,
                        };
                        let report = frame.report(TransactId::random(), range, status);
                        self.send_frame(&report).await?;
                    }
                    self.incoming = None;
                    return Ok(ChatIn {
                        first_at,
                        chunks,
                        message,
                    });
                }
                Ok(Progress::Pending | Progress::Duplicate { .. }) => {}
                Ok(Progress::Aborted { message_id }) => {
                    return Err(Wait::Failed(format!(
                        "the gateway aborted message {message_id}"
                    )));
                }
                Err(e) => return Err(Wait::Failed(format!("a bad chunk: {e}"))),
            }
        }
    }

    /// Waits for the gateway to close the connection (its session ended), before
    /// `deadline`; frames still coming are read and dropped.
    pub async fn closed(&mut self, deadline: Deadline) -> Result<Instant, Wait> {
        loop {
            match self.next(deadline).await {
                Ok(_) => continue,
                Err(Wait::Failed(_)) => return Ok(Instant::now()),
                Err(Wait::Timeout) => return Err(Wait::Timeout),
            }
        }
    }
}

/// The CPIM wrapper of a chat message (RFC 3862, with the IMDN name space of RFC 5438
/// as CPM clients send it).
pub fn chat_message(from: &str, to: &str, text: &str) -> cpim::Message {
    let mut message = cpim::Message::text(
        cpim::Address::parse(from).unwrap_or_else(|_| cpim::Address::new(None, from)),
        cpim::Address::new(None, to),
        text,
    );
    // Whole seconds: what a mail's Date (RFC 5322 3.3) can carry on, BB2's Date row.
    let now = chrono::Utc::now().fixed_offset();
    message.date_time =
        Some(now - chrono::Duration::nanoseconds(now.timestamp_subsec_nanos().into()));
    message.ns = vec![("imdn".into(), "urn:ietf:params:imdn".into())];
    message.other = vec![("imdn.Message-ID".into(), new_tag())];
    message
}
