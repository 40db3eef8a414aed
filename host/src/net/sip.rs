//! SIP over UDP and TCP on one address (RFC 3261 18): receives, frames (TCP), parses and
//! validates, stamps a request's top Via (received/rport), answers what needs no session
//! (`sip::stateless`), refuses what is malformed with the reason, and hands the rest on,
//! responses to the IWF's own requests included.
//!
//! Responses to a UDP request go where its Via says (18.2.2, RFC 3581 4); to a TCP request,
//! back over the connection it came on.

use crate::sip::framing::{self, StreamBuffer, StreamEvent};
use crate::sip::message::{self, Limits, Message, Transport};
use crate::sip::stateless::{self, Stateless};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// The `Warning` agent and `Server` of the gateway's responses.
pub const AGENT: &str = "cpm-iwf";

/// A request or response for the session layer, with the way back to its sender.
pub struct Inbound {
    pub message: Message,
    pub source: SocketAddr,
    pub reply: Replier,
}

/// Sends responses to the sender of a request, and the IWF's requests to a next hop.
#[derive(Clone)]
pub enum Replier {
    Udp {
        socket: Arc<UdpSocket>,
        target: SocketAddr,
    },
    /// A UDP next hop named by a domain: its address (A/AAAA, not RFC 3263 SRV/NAPTR) is
    /// looked up at each send.
    UdpHost {
        socket: Arc<UdpSocket>,
        host: String,
        port: u16,
    },
    Tcp(mpsc::Sender<Vec<u8>>),
}

impl Replier {
    pub async fn send(&self, bytes: Vec<u8>) {
        match self {
            Replier::Udp { socket, target } => {
                if let Err(e) = socket.send_to(&bytes, target).await {
                    tracing::warn!(%target, error = %e, "SIP message over UDP not sent");
                }
            }
            Replier::UdpHost { socket, host, port } => {
                let sent = match resolve_for(socket, host, *port).await {
                    Ok(target) => socket.send_to(&bytes, target).await.map(drop),
                    Err(e) => Err(e),
                };
                if let Err(e) = sent {
                    tracing::warn!(%host, port, error = %e, "SIP message over UDP not sent");
                }
            }
            Replier::Tcp(tx) => {
                // The connection closed: the peer left, nothing to answer to.
                let _ = tx.send(bytes).await;
            }
        }
    }
}

/// The first address of `host` in the socket's address family (IPv4 or IPv6).
async fn resolve_for(socket: &UdpSocket, host: &str, port: u16) -> std::io::Result<SocketAddr> {
    let ipv4 = socket.local_addr()?.is_ipv4();
    tokio::net::lookup_host((host, port))
        .await?
        .find(|a| a.is_ipv4() == ipv4)
        .ok_or_else(|| {
            std::io::Error::other(format!("no address for {host} in the socket's family"))
        })
}

/// How many ports [`SipListeners::bind`] tries for port 0 before it gives up.
pub const PORT_ZERO_ATTEMPTS: usize = 8;

/// The bound sockets; serving starts with [`SipListeners::serve`].
pub struct SipListeners {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    limits: Limits,
}

impl SipListeners {
    /// Binds UDP and TCP on `addr` (port 0: the same free port for both). With a port
    /// given, UDP is bound first: whoever finds the TCP listener finds the UDP socket too.
    /// With port 0, TCP picks the port; when another process holds it on UDP, another
    /// port is tried ([`PORT_ZERO_ATTEMPTS`] in all).
    /// `receive_buffer` is the UDP socket's SO_RCVBUF (`[sip] udp_receive_buffer`).
    pub async fn bind(
        addr: SocketAddr,
        limits: Limits,
        receive_buffer: usize,
    ) -> std::io::Result<Self> {
        let (udp, tcp) = if addr.port() != 0 {
            let udp = bind_udp(addr, receive_buffer)?;
            (udp, TcpListener::bind(addr).await?)
        } else {
            // The refused ports stay held until the end, so TCP is not given one again.
            let mut refused = Vec::new();
            loop {
                let tcp = TcpListener::bind(addr).await?;
                let port = tcp.local_addr()?;
                match bind_udp(port, receive_buffer) {
                    Ok(udp) => break (udp, tcp),
                    Err(e)
                        if e.kind() == std::io::ErrorKind::AddrInUse
                            && refused.len() + 1 < PORT_ZERO_ATTEMPTS =>
                    {
                        tracing::debug!(%port, "SIP: UDP port taken, trying another");
                        refused.push(tcp);
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        Ok(Self {
            udp: Arc::new(udp),
            tcp,
            limits,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.tcp
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The UDP socket as a peer of no request: the IWF's own requests of a session
    /// restored from the store go out through it ([`Replier`]'s `toward`).
    pub fn udp_replier(&self) -> Replier {
        Replier::Udp {
            socket: self.udp.clone(),
            target: self.local_addr(),
        }
    }

    /// Serves both transports; requests for the session layer go to `inbound`.
    pub fn serve(self, inbound: mpsc::Sender<Inbound>) {
        let limits = self.limits;
        tokio::spawn(serve_udp(self.udp, limits, inbound.clone()));
        tokio::spawn(serve_tcp(self.tcp, limits, inbound));
    }
}

/// The UDP socket with its receive buffer set before `bind`, so no datagram meets the
/// default buffer. Linux doubles what it is asked and caps it at `net.core.rmem_max`.
fn bind_udp(addr: SocketAddr, receive_buffer: usize) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(receive_buffer) {
        tracing::warn!(error = %e, receive_buffer, "[sip] udp_receive_buffer not applied");
    }
    let got = socket.recv_buffer_size().unwrap_or(0);
    if got < receive_buffer {
        tracing::warn!(
            asked = receive_buffer,
            got,
            "[sip] udp_receive_buffer capped by the kernel: raise net.core.rmem_max"
        );
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

async fn serve_udp(socket: Arc<UdpSocket>, limits: Limits, inbound: mpsc::Sender<Inbound>) {
    // One byte more than the limit, so an oversized datagram is seen as such, not cut.
    let mut buf = vec![0u8; limits.max_message_bytes + 1];
    loop {
        let (n, source) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                tracing::warn!(error = %e, "SIP UDP receive failed");
                continue;
            }
        };
        let datagram = &buf[..n];
        if datagram.iter().all(|b| b.is_ascii_whitespace()) {
            continue; // keep-alive (RFC 5626 4.4.1 uses STUN on UDP; bare CRLF is tolerated)
        }
        let reply_to = |via: Option<&message::Via>| {
            let target = via.map_or(source, |via| udp_target(via, source));
            Replier::Udp {
                socket: socket.clone(),
                target,
            }
        };
        let message = if n > limits.max_message_bytes {
            Err(message::ParseError::new(
                513,
                format!("datagram over {} bytes", limits.max_message_bytes),
            ))
        } else {
            message::parse(datagram, Transport::Datagram, &limits)
        };
        match message {
            Ok(mut message) => {
                // 18.2.1: a request's top Via is stamped; a response's is the IWF's own.
                let via = match message.method() {
                    Some(_) => message::stamp_top_via(&mut message, source),
                    None => None,
                };
                let reply = reply_to(via.as_ref());
                dispatch(message, source, reply, &inbound).await;
            }
            Err(refusal) => {
                tracing::info!(%source, status = refusal.status, reason = %refusal.reason, "SIP request refused");
                let via = refusal
                    .partial
                    .as_ref()
                    .and_then(|m| m.header("Via"))
                    .and_then(message::Via::parse);
                if let Some(response) = refusal.response(AGENT) {
                    reply_to(via.as_ref()).send(response).await;
                }
            }
        }
    }
}

/// `received`/`rport` of a stamped Via; the source address when the Via names a host
/// that is not an address (a name would need DNS: RFC 3263 5, not worth it for a reply
/// that the source address reaches).
fn udp_target(via: &message::Via, source: SocketAddr) -> SocketAddr {
    let (host, port) = via.response_target();
    match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => source,
    }
}

async fn serve_tcp(listener: TcpListener, limits: Limits, inbound: mpsc::Sender<Inbound>) {
    loop {
        match listener.accept().await {
            Ok((stream, source)) => {
                tokio::spawn(serve_connection(stream, source, limits, inbound.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIP TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Idle TCP connections are closed after this long (RFC 3261 18.3 leaves it to the
/// implementation; RFC 5626 keep-alives reset it).
const TCP_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

async fn serve_connection(
    stream: TcpStream,
    source: SocketAddr,
    limits: Limits,
    inbound: mpsc::Sender<Inbound>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let writer_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut stream = StreamBuffer::new(limits);
    let mut buf = vec![0u8; 16 * 1024];
    'connection: loop {
        let n = match tokio::time::timeout(TCP_IDLE, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        stream.push(&buf[..n]);
        loop {
            match stream.next_event() {
                Ok(None) => break,
                Ok(Some(StreamEvent::KeepAlive(n))) => {
                    if n >= 4 {
                        let _ = tx.send(b"\r\n".to_vec()).await; // RFC 5626 4.4.1 pong
                    }
                }
                Ok(Some(StreamEvent::Message(bytes))) => {
                    match message::parse(&bytes, Transport::Stream, &limits) {
                        Ok(mut message) => {
                            if message.method().is_some() {
                                message::stamp_top_via(&mut message, source);
                            }
                            dispatch(message, source, Replier::Tcp(tx.clone()), &inbound).await;
                        }
                        Err(refusal) => {
                            tracing::info!(%source, status = refusal.status, reason = %refusal.reason, "SIP request refused");
                            if let Some(response) = refusal.response(AGENT) {
                                let _ = tx.send(response).await;
                            }
                        }
                    }
                }
                Err(error) => {
                    // The stream cannot be framed any more: answer if possible, then close.
                    tracing::info!(%source, reason = %error.reason(), "SIP stream refused");
                    if let Some(response) =
                        framing::error_response(stream.bytes(), &error, &limits, AGENT)
                    {
                        let _ = tx.send(response).await;
                    }
                    break 'connection;
                }
            }
        }
    }
    drop(tx);
    let _ = writer_task.await;
}

/// Answers what needs no session; hands the rest, responses included (they belong to the
/// IWF's client transactions), to the session layer.
async fn dispatch(
    message: Message,
    source: SocketAddr,
    reply: Replier,
    inbound: &mpsc::Sender<Inbound>,
) {
    if message.method().is_some() {
        match stateless::answer(&message, &new_tag()) {
            Stateless::Respond(bytes) => return reply.send(bytes).await,
            Stateless::Drop => return,
            Stateless::PassOn => {}
        }
    }
    let inbound_message = Inbound {
        message,
        source,
        reply,
    };
    if inbound.send(inbound_message).await.is_err() {
        tracing::error!("SIP session layer gone; message dropped");
    }
}

/// A To tag (RFC 3261 19.3: globally unique, at least 32 bits of randomness): a counter
/// through SipHash under the process's random keys.
pub fn new_tag() -> String {
    use std::hash::BuildHasher;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", KEYS.get_or_init(Default::default).hash_one(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_zero_binds_udp_and_tcp_on_the_same_port() {
        for _ in 0..20 {
            let any = "127.0.0.1:0".parse().unwrap();
            let sip = SipListeners::bind(any, Limits::default(), 1 << 16)
                .await
                .unwrap();
            assert_eq!(sip.udp.local_addr().unwrap(), sip.local_addr());
        }
    }
}
