//! The MSRP endpoint of the IWF (RFC 4975, RFC 6135): one TCP listener on `[msrp] listen`
//! shared by every session, the sessions registered by the SIP side, and the handle each
//! session is driven through.
//!
//! Owns: the listener, the registry of sessions by MSRP session-id, the binding of an
//! accepted connection to its session (by the To-Path of its first request, as CEMA,
//! RFC 6714, does), the active role's connect, the connection limit. Must not touch: SIP,
//! SDP negotiation (the caller hands in what `sdp::answer` decided), mail, the policy.
//!
//! Use: `Endpoint::bind(&config.msrp)`, then per session `endpoint.open(SessionSpec)`,
//! which gives the `MsrpSession` handle (send, close) and the receiver of its `Event`s
//! (connected, a whole message to deliver with a reply for its disposition, closed).
//!
//! Not supported: several sessions sharing one connection (RFC 4975 section 5.4 allows
//! it; here a connection serves the session that bound it, others get 481), `msrps:`
//! (TLS), and authenticating to a relay (RFC 4976): a relay in the peer's path is
//! simply the first hop.
//!
//! ```ignore
//! let endpoint = Endpoint::bind(&config.msrp).await?;           // once, at start
//! // per session, once `sdp::answer` gave `answer.params`:
//! let (msrp, mut events) = endpoint.open(SessionSpec::from_params(&answer.params))?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Connected => {}
//!         Event::Message(message) => {
//!             // F4: mail it, then say how it went (200, or the code of the failure).
//!             let _ = message.reply.send(match mail(message.body).await {
//!                 Ok(()) => Disposition::Delivered,
//!                 Err(e) => Disposition::failed(403, e.to_string()),
//!             });
//!         }
//!         Event::DeliveryFailed { .. } => {}
//!         Event::Closed(reason) => break, // BYE
//!     }
//! }
//! msrp.send("message/cpim", &cpim, (true, FailureReport::Yes)).await?; // F5
//! msrp.close(); // F6: BYE received
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tracing::Instrument;

use super::chunks::{ChunkLimits, split};
use super::codec::Limits;
use super::connection::{Connection, ReadError};
use super::frame::{Body, ByteRange, FailureReport, Flag, Frame, StartLine, Status, TransactId};
use super::session::{Command, Driver, Link};
use super::transaction::{self, Disposition};
use crate::config::MsrpConfig;
use crate::sdp::{Host, MsrpParams, MsrpUri, Role};

/// Events of one session, in order: `Connected` once, any number of `Message`s, and
/// `Closed` when the connection ended without `MsrpSession::close` (the lead sends BYE).
#[derive(Debug)]
pub enum Event {
    /// The MSRP connection is up and bound (RFC 4975 section 5.4, RFC 6135).
    Connected,
    /// A whole message (all chunks in). The response to its last chunk waits for `reply`
    /// (F4: 200 only once the e-mail went out, else the failure's code), at most
    /// `disposition_timeout_ms`; a later reply still goes out, as a REPORT (success
    /// when asked, failure unless Failure-Report `no`). A dropped `reply` is a 403.
    /// Boxed: a session's event queue makes its first block of 32 slots when opened, and
    /// a slot is as large as the largest event.
    Message(Box<Received>),
    /// A message the IWF sent did not arrive, and its `send` no longer waits: a failure
    /// REPORT (RFC 4975 section 7.1.2) after the 200s, or an error response to a chunk
    /// sent with Failure-Report `partial` (whose `send` returned without waiting).
    DeliveryFailed { message_id: String, status: Status },
    /// The session is over on the MSRP side.
    Closed(CloseReason),
}

/// A whole message received, and the way to answer it (see [`Event::Message`]).
#[derive(Debug)]
pub struct Received {
    pub content_type: String,
    pub body: Vec<u8>,
    pub message_id: String,
    pub success_report: bool,
    pub failure_report: FailureReport,
    pub reply: Reply,
}

/// How the session answers a whole message: [`Reply::send`] its disposition now, or
/// [`Reply::hold`] it and settle later. Dropped unanswered, it reads as a 403.
#[derive(Debug)]
pub struct Reply {
    pub(super) disposition: oneshot::Sender<Disposition>,
    pub(super) hold: oneshot::Sender<Hold>,
    /// When the endpoint answers 200 on its own if nothing was said by then
    /// (`disposition_timeout_ms` after the last chunk, RFC 4975 7.1.1's 30 s in view).
    pub(super) deadline: tokio::time::Instant,
}

/// Why a message is answered 200 before its outcome is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Waiting for a decision ([`Reply::hold`]): if the session ends first, it failed.
    Pending,
    /// Taken into the IWF's custody ([`Reply::take`]): it is delivered even if the
    /// session ends first, so then nothing more is said of it.
    Custody,
}

impl Reply {
    /// The disposition: the response to the last chunk (RFC 4975 7.2, F4 step 4), or a
    /// REPORT if it comes after `disposition_timeout_ms`. `Err` when the session is gone.
    /// When the endpoint answers 200 on its own, the outcome left to a REPORT: an answer
    /// that must not be a 200 (nothing taken yet) has to come before.
    pub fn deadline(&self) -> tokio::time::Instant {
        self.deadline
    }

    pub fn send(self, disposition: Disposition) -> Result<(), Disposition> {
        self.disposition.send(disposition)
    }

    /// Takes the message now and decides later (5.2.4.2.4: SENDs that come before the
    /// e-mail user accepted are held): its last chunk is answered 200 at once, and the
    /// outcome goes in a REPORT when [`Held::settle`]d, success when asked, failure unless
    /// Failure-Report `no` (RFC 4975 7.1.2). One still held when the session closes gets
    /// a failure REPORT then.
    pub fn hold(self) -> Held {
        let _ = self.hold.send(Hold::Pending);
        Held {
            disposition: self.disposition,
        }
    }

    /// Takes the message into the IWF's custody (it is stored, issue 15: F4's outbound
    /// spool): its last chunk is answered 200 at once; [`Held::settle`] sends a REPORT as
    /// for [`Reply::hold`]. Unlike a held message, one the session closes on, or whose
    /// `Held` is dropped, gets no failure REPORT: it is still being delivered.
    pub fn take(self) -> Held {
        let _ = self.hold.send(Hold::Custody);
        Held {
            disposition: self.disposition,
        }
    }
}

/// A message taken and not yet settled (see [`Reply::hold`]).
#[derive(Debug)]
pub struct Held {
    disposition: oneshot::Sender<Disposition>,
}

impl Held {
    /// The outcome, as a REPORT. Dropped unsettled: a failure (403).
    pub fn settle(self, disposition: Disposition) {
        let _ = self.disposition.send(disposition);
    }
}

/// Why a session's MSRP side ended.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CloseReason {
    #[error("the peer did not connect within {0:?}")]
    ConnectTimeout(Duration),
    #[error("cannot connect to the peer: {0}")]
    ConnectFailed(String),
    #[error("the peer answered the binding SEND with {code}")]
    BindRefused { code: u16 },
    #[error("no response to the binding SEND within {0:?}")]
    BindTimeout(Duration),
    #[error("connection closed by the peer")]
    PeerClosed,
    #[error("connection lost: {0}")]
    Io(String),
    #[error("malformed MSRP from the peer: {0}")]
    Malformed(String),
    #[error("more than {0} MSRP connections open")]
    TooManyConnections(usize),
}

/// What the SIP side negotiated for one session (from `sdp::MsrpParams`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    /// The IWF's own URI, as sent in `a=path`; its session-id keys the session.
    pub local: MsrpUri,
    /// The peer's `a=path`: relays first, the peer's own URI last; requests go to it
    /// (To-Path) and come from it (From-Path).
    pub remote_path: Vec<MsrpUri>,
    /// Active: the IWF connects to the first URI of `remote_path`; passive: it waits.
    pub role: Role,
    /// The types the IWF takes (its `a=accept-types`); others get 415.
    pub accept_types: Vec<String>,
    /// The peer's `a=max-size` (RFC 4975 section 8.6): larger messages are not sent.
    pub peer_max_size: Option<u64>,
}

impl SessionSpec {
    /// The spec of a session whose SDP answer was `params` (`sdp::answer`).
    pub fn from_params(params: &MsrpParams) -> SessionSpec {
        SessionSpec {
            local: params.local_path.clone(),
            remote_path: params.peer_path.clone(),
            role: params.role,
            accept_types: params.accept_types.clone(),
            peer_max_size: params.max_size,
        }
    }
}

/// Why `open` refused a session.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpenError {
    #[error("MSRP session {0} is already open")]
    Duplicate(String),
    #[error("the local MSRP URI has no session-id")]
    NoSessionId,
    #[error("the peer's MSRP path is empty")]
    NoRemotePath,
}

/// Why the endpoint could not start.
#[derive(Debug, Error)]
pub enum EndpointError {
    #[error("[msrp] listen = {addr}: cannot listen: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("[msrp] {key} = {value}: {fix}")]
    Config {
        key: &'static str,
        value: String,
        fix: &'static str,
    },
}

/// A message the peer took: its Message-ID, and whether a success REPORT confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub message_id: String,
    /// A `Status: 000 200` REPORT came back (only when Success-Report was asked).
    pub reported: bool,
}

/// Why an outgoing message failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    #[error("MSRP session not connected within {0:?}")]
    NotConnected(Duration),
    #[error("MSRP session closed")]
    Closed,
    /// Larger than the peer's `a=max-size`; nothing was sent.
    #[error("message of {size} bytes exceeds the peer's max-size {max}")]
    TooLarge { size: u64, max: u64 },
    /// No transaction response in time: a local 408 (RFC 4975 section 7.1.1).
    #[error("408 no response to chunk {chunk} of message {message_id} within {after:?}")]
    Timeout {
        message_id: String,
        chunk: usize,
        after: Duration,
    },
    /// The peer answered a chunk with an error.
    #[error("the peer answered {code}{} to message {message_id}", .comment.as_ref().map(|c| format!(" {c}")).unwrap_or_default())]
    Refused {
        message_id: String,
        code: u16,
        comment: Option<String>,
    },
    /// A failure REPORT for the message (RFC 4975 section 7.1.2).
    #[error("the peer reported {} for message {message_id}", .status)]
    Reported { message_id: String, status: Status },
    #[error("no REPORT for message {message_id} within {after:?}")]
    ReportTimeout { message_id: String, after: Duration },
}

/// The endpoint's limits and timers, from `[msrp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub max_message_size: u64,
    pub chunk_size: usize,
    pub transaction_timeout: Duration,
    pub connect_timeout: Duration,
    pub disposition_timeout: Duration,
    pub max_connections: usize,
    pub keepalive: Option<Duration>,
}

impl Settings {
    /// The settings of `[msrp]`, checked; an error names the key and the fix.
    pub fn from_config(c: &MsrpConfig) -> Result<Settings, EndpointError> {
        let bad = |key, value: String, fix| Err(EndpointError::Config { key, value, fix });
        if c.chunk_size == 0 {
            return bad("chunk_size", "0".into(), "use at least 1 (2048 is usual)");
        }
        if c.max_message_size == 0 {
            return bad("max_message_size", "0".into(), "use at least 1 byte");
        }
        if c.max_connections == 0 {
            return bad("max_connections", "0".into(), "use at least 1");
        }
        for (key, ms) in [
            ("transaction_timeout_ms", c.transaction_timeout_ms),
            ("connect_timeout_ms", c.connect_timeout_ms),
            ("disposition_timeout_ms", c.disposition_timeout_ms),
        ] {
            if ms == 0 {
                return bad(key, "0".into(), "use a positive number of milliseconds");
            }
        }
        // The peer's transaction timer is 30 s (RFC 4975 section 7.1.1): the deferred
        // response must leave before it fires, or the peer sees 408 and tears down.
        if c.disposition_timeout_ms >= 30_000 {
            return bad(
                "disposition_timeout_ms",
                c.disposition_timeout_ms.to_string(),
                "keep it below the peer's 30000 ms transaction timeout (20000 is the default)",
            );
        }
        Ok(Settings {
            max_message_size: c.max_message_size,
            chunk_size: c.chunk_size,
            transaction_timeout: Duration::from_millis(c.transaction_timeout_ms),
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            disposition_timeout: Duration::from_millis(c.disposition_timeout_ms),
            max_connections: c.max_connections,
            keepalive: (c.keepalive_secs > 0).then(|| Duration::from_secs(c.keepalive_secs)),
        })
    }

    /// The codec's bounds: one chunk may be as large as a whole message (some peers send
    /// a message in one chunk); beyond that the framing is given up.
    pub(super) fn codec_limits(&self) -> Limits {
        let max_body =
            usize::try_from(self.max_message_size.saturating_add(64 * 1024)).unwrap_or(usize::MAX);
        Limits {
            max_body_bytes: max_body,
            ..Limits::default()
        }
    }

    /// The bounds before a connection is bound to a session: nobody is known yet, so
    /// a first request may carry at most the codec's default body (1 MiB), whatever
    /// `max_message_size` allows a session's peer.
    pub(super) fn unbound_limits(&self) -> Limits {
        let bound = self.codec_limits();
        Limits {
            max_body_bytes: bound.max_body_bytes.min(Limits::default().max_body_bytes),
            ..bound
        }
    }

    pub(super) fn chunk_limits(&self) -> ChunkLimits {
        ChunkLimits {
            max_message_bytes: self.max_message_size,
            ..ChunkLimits::default()
        }
    }
}

/// A connection accepted for a passive session: the socket, with its first request.
pub(super) struct Accepted {
    pub conn: Connection,
    pub first: Frame,
    pub permit: OwnedSemaphorePermit,
}

/// A registered session.
struct Slot {
    /// The peer's path, to check the From-Path of a connection before binding it.
    remote_path: Vec<MsrpUri>,
    /// Where an accepted connection goes; `Some` while a passive session waits for it.
    accept: Option<oneshot::Sender<Accepted>>,
}

struct Shared {
    settings: Settings,
    local_addr: SocketAddr,
    sessions: Mutex<HashMap<String, Slot>>,
    /// Woken when a session is registered: a connection that came first waits for it.
    opened: Notify,
    permits: Arc<Semaphore>,
}

impl Shared {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Stops the accept loop when the last `Endpoint` handle goes.
struct AcceptTask(JoinHandle<()>);

impl Drop for AcceptTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The IWF's MSRP endpoint: a cheap-clone handle.
#[derive(Clone)]
pub struct Endpoint {
    shared: Arc<Shared>,
    _accept: Arc<AcceptTask>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addr", &self.shared.local_addr)
            .field("sessions", &self.sessions())
            .finish()
    }
}

impl Endpoint {
    /// Listens on `[msrp] listen` and starts accepting connections.
    pub async fn bind(config: &MsrpConfig) -> Result<Endpoint, EndpointError> {
        let settings = Settings::from_config(config)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| EndpointError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| EndpointError::Listen {
                addr: config.listen,
                source,
            })?;
        let shared = Arc::new(Shared {
            permits: Arc::new(Semaphore::new(settings.max_connections)),
            settings,
            local_addr,
            sessions: Mutex::new(HashMap::new()),
            opened: Notify::new(),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        tracing::info!(%local_addr, "MSRP endpoint listening");
        Ok(Endpoint {
            shared,
            _accept: Arc::new(AcceptTask(task)),
        })
    }

    /// The address the listener is bound to (the port, when `listen` said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Sessions registered now.
    pub fn sessions(&self) -> usize {
        self.shared.sessions().len()
    }

    /// Registers a session and starts its MSRP side: connects (active) or waits for the
    /// peer (passive, at most `connect_timeout_ms`). Open it before the SDP answer goes
    /// out: a peer connecting to a session not yet open gets 481. The session ends, and is
    /// unregistered, on `MsrpSession::close`, when every handle is dropped, or when the
    /// connection ends (then `Event::Closed`).
    pub fn open(
        &self,
        spec: SessionSpec,
    ) -> Result<(MsrpSession, mpsc::Receiver<Event>), OpenError> {
        let session_id = spec.local.session_id.clone();
        if session_id.is_empty() {
            return Err(OpenError::NoSessionId);
        }
        if spec.remote_path.is_empty() {
            return Err(OpenError::NoRemotePath);
        }
        let (accept_tx, accept_rx) = oneshot::channel();
        {
            let mut sessions = self.shared.sessions();
            if sessions.contains_key(&session_id) {
                return Err(OpenError::Duplicate(session_id));
            }
            let accept = (spec.role == Role::Passive).then_some(accept_tx);
            sessions.insert(
                session_id.clone(),
                Slot {
                    remote_path: spec.remote_path.clone(),
                    accept,
                },
            );
        }
        self.shared.opened.notify_waiters();
        let (events_tx, events_rx) = mpsc::channel(32);
        let (commands_tx, commands_rx) = mpsc::channel(32);
        let (link_tx, link_rx) = watch::channel(Link::Connecting);
        let close = Arc::new(Notify::new());
        let session = MsrpSession {
            inner: Arc::new(Handle {
                local: spec.local.clone(),
                remote_path: spec.remote_path.clone(),
                peer_max_size: spec.peer_max_size,
                settings: self.shared.settings.clone(),
                commands: commands_tx,
                link: link_rx,
                close: close.clone(),
            }),
        };
        let span = tracing::info_span!("msrp", session = %session_id);
        let shared = self.shared.clone();
        tokio::spawn(
            async move {
                // `close` is watched inside: once connected, a local close first settles
                // the messages still awaiting their disposition (failure REPORTs).
                let reason = run_session(
                    &shared,
                    spec,
                    events_tx.clone(),
                    accept_rx,
                    commands_rx,
                    &link_tx,
                    close,
                )
                .await;
                shared.sessions().remove(&session_id);
                link_tx.send_replace(Link::Closed);
                match reason {
                    Some(reason) => {
                        tracing::info!(%reason, "MSRP session closed");
                        let _ = events_tx.send(Event::Closed(reason)).await;
                    }
                    None => tracing::debug!("MSRP session closed locally"),
                }
            }
            .instrument(span),
        );
        Ok((session, events_rx))
    }
}

/// Connects or waits, then drives the connection; `None` when closed locally (`close`).
async fn run_session(
    shared: &Shared,
    spec: SessionSpec,
    events: mpsc::Sender<Event>,
    accept: oneshot::Receiver<Accepted>,
    commands: mpsc::Receiver<Command>,
    link: &watch::Sender<Link>,
    close: Arc<Notify>,
) -> Option<CloseReason> {
    let settings = &shared.settings;
    match spec.role {
        Role::Passive => {
            // RFC 6135 section 4.2: the active peer opens the connection; bounded wait.
            let accepted = tokio::select! {
                biased;
                _ = close.notified() => return None,
                accepted = timeout(settings.connect_timeout, accept) => match accepted {
                    Ok(Ok(a)) => a,
                    Ok(Err(_)) => return Some(CloseReason::PeerClosed),
                    Err(_) => return Some(CloseReason::ConnectTimeout(settings.connect_timeout)),
                },
            };
            let Accepted {
                mut conn,
                first,
                permit,
            } = accepted;
            conn.set_limits(settings.codec_limits());
            tracing::info!(peer = ?conn.peer_addr(), "MSRP connection bound");
            // Boxed: the connected phase's state is most of a session's task, and a
            // session waiting for its peer (or never joined) should not hold it.
            let driver = Driver::new(spec, settings.clone(), events, close);
            Box::pin(driver.run(conn, Some(first), None, commands, link, permit)).await
        }
        Role::Active => {
            let permit = match shared.permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    return Some(CloseReason::TooManyConnections(settings.max_connections));
                }
            };
            let connecting = Box::pin(connect(&spec.remote_path, settings.connect_timeout));
            let stream = tokio::select! {
                biased;
                _ = close.notified() => return None,
                connected = connecting => match connected {
                    Ok(s) => s,
                    Err(reason) => return Some(reason),
                },
            };
            let conn = Connection::new(stream, settings.codec_limits(), settings.keepalive);
            tracing::info!(peer = ?conn.peer_addr(), "MSRP connection opened");
            // RFC 4975 section 5.4 / RFC 6135: the active end binds the connection with
            // a SEND (empty: no body, Byte-Range 1-0/0); its 200 confirms.
            let bind = Frame::send(
                TransactId::random(),
                spec.remote_path.clone(),
                vec![spec.local.clone()],
                TransactId::random().as_str(),
                ByteRange {
                    start: 1,
                    end: Some(0),
                    total: Some(0),
                },
                (false, FailureReport::Yes),
                None,
                Flag::Complete,
            );
            let driver = Driver::new(spec, settings.clone(), events, close);
            Box::pin(driver.run(conn, None, Some(bind), commands, link, permit)).await
        }
    }
}

/// A TCP connection to the first URI of the peer's path (RFC 4975 section 6.2).
async fn connect(path: &[MsrpUri], within: Duration) -> Result<TcpStream, CloseReason> {
    let failed = |e: String| CloseReason::ConnectFailed(e);
    let first = path.first().ok_or_else(|| failed("empty path".into()))?;
    let port = first
        .port
        .ok_or_else(|| failed(format!("{first} has no port")))?;
    let attempt = async {
        let addrs: Vec<SocketAddr> = match &first.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
            Host::Name(name) => tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|e| failed(format!("resolving {name}: {e}")))?
                .collect(),
        };
        let mut last = failed(format!("{first}: no address"));
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = failed(format!("{addr}: {e}")),
            }
        }
        Err(last)
    };
    timeout(within, attempt)
        .await
        .map_err(|_| failed(format!("{first}: no connection within {within:?}")))?
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin on the error.
                tracing::warn!(error = %e, "MSRP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = shared.settings.max_connections,
                "MSRP connection refused: too many connections");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let settings = &shared.settings;
            let conn = Connection::new(stream, settings.unbound_limits(), settings.keepalive);
            bind_accepted(&shared, conn, permit)
                .instrument(tracing::info_span!("msrp-accept", %peer))
                .await
        });
    }
}

/// Hands an accepted connection to its session by the session-id of the To-Path of its
/// first request (RFC 6714 section 4.3; RFC 4975 section 7.3: an unknown session gets
/// 481), after checking its From-Path against the session's peer path (403 otherwise).
/// A connection that is not bound is closed after the response.
async fn bind_accepted(shared: &Shared, mut conn: Connection, permit: OwnedSemaphorePermit) {
    let within = shared.settings.connect_timeout;
    let mut first = match timeout(within, conn.read_frame()).await {
        Ok(Ok(f)) => f,
        Ok(Err(ReadError::Decode(e))) => {
            tracing::info!(error = %e, "MSRP: malformed first frame");
            if let Some(response) = e.response() {
                let _ = conn.write_frame(&response).await;
            }
            return conn.shutdown().await;
        }
        Ok(Err(e)) => return tracing::debug!(error = %e, "MSRP connection ended before a request"),
        Err(_) => return tracing::info!("MSRP: no request within {within:?}, closing"),
    };
    if matches!(first.start, StartLine::Response { .. }) {
        tracing::info!("MSRP: a response as first frame, closing");
        return conn.shutdown().await;
    }
    let session_id = first
        .to_path
        .first()
        .map(|u| u.session_id.clone())
        .unwrap_or_default();
    // The peer may connect before the IWF has the answer that opens the session: after
    // its 2xx to the IWF's re-INVITE (RFC 6135: the answerer chose active), the 2xx and
    // the connection race. A connection to an unknown session waits for it a moment.
    let grace = tokio::time::Instant::now() + BIND_GRACE.min(within);
    let found = loop {
        let opened = shared.opened.notified();
        tokio::pin!(opened);
        opened.as_mut().enable();
        let found = find_slot(shared, &session_id, &first);
        if !matches!(found, Err((481, "no such session")))
            || tokio::time::timeout_at(grace, opened).await.is_err()
        {
            break found;
        }
    };
    let (code, comment) = match found {
        Ok(tx) => {
            let accepted = Accepted {
                conn,
                first,
                permit,
            };
            match tx.send(accepted) {
                Ok(()) => return,
                // The session ended meanwhile.
                Err(Accepted {
                    conn: c, first: f, ..
                }) => {
                    (conn, first) = (c, f);
                    (481, "session closed")
                }
            }
        }
        Err(refusal) => refusal,
    };
    tracing::info!(%session_id, code, "MSRP connection refused");
    refuse(&mut conn, &first, code, comment).await;
}

/// How long a connection to a session not yet registered waits for it before its 481.
const BIND_GRACE: Duration = Duration::from_secs(2);

/// The waiting session `session_id` the first request `first` binds to: its acceptor,
/// or the refusal.
fn find_slot(
    shared: &Shared,
    session_id: &str,
    first: &Frame,
) -> Result<oneshot::Sender<Accepted>, (u16, &'static str)> {
    let mut sessions = shared.sessions();
    match sessions.get_mut(session_id) {
        None => Err((481, "no such session")),
        Some(slot) if !transaction::from_path_matches(&first.from_path, &slot.remote_path) => {
            Err((403, "From-Path is not the session's peer"))
        }
        Some(slot) => slot
            .accept
            .take()
            .ok_or((481, "session not waiting for a connection")),
    }
}

/// Answers the request with an error (as its Failure-Report allows; REPORTs get none)
/// and closes the connection.
async fn refuse(conn: &mut Connection, request: &Frame, code: u16, comment: &str) {
    let answer = request.method() == Some(&super::frame::Method::Send)
        || matches!(request.method(), Some(super::frame::Method::Other(_)));
    if answer && transaction::sends_response(request.failure_report(), code) {
        let _ = conn
            .write_frame(&request.response(code, Some(comment)))
            .await;
    }
    conn.shutdown().await;
}

/// Chunks of one message sent before the oldest one's response is needed.
const WINDOW: usize = 8;

/// Waits for the response to chunk `n` (sent with deadline `until`): 200 goes on, an
/// error response or none in time (local 408) fails the message.
async fn chunk_response(
    message_id: &str,
    (n, rx, until): (usize, oneshot::Receiver<Frame>, tokio::time::Instant),
    after: Duration,
) -> Result<(), SendError> {
    match tokio::time::timeout_at(until, rx).await {
        Err(_) => Err(SendError::Timeout {
            message_id: message_id.to_string(),
            chunk: n,
            after,
        }),
        Ok(Err(_)) => Err(SendError::Closed),
        Ok(Ok(response)) => match response.start {
            StartLine::Response { code: 200, .. } => Ok(()),
            StartLine::Response { code, comment } => Err(SendError::Refused {
                message_id: message_id.to_string(),
                code,
                comment,
            }),
            StartLine::Request(_) => Err(SendError::Closed),
        },
    }
}

/// What the handles of one session share.
struct Handle {
    local: MsrpUri,
    remote_path: Vec<MsrpUri>,
    peer_max_size: Option<u64>,
    settings: Settings,
    commands: mpsc::Sender<Command>,
    link: watch::Receiver<Link>,
    close: Arc<Notify>,
}

impl Drop for Handle {
    /// The last handle gone: the session ends as on `close`.
    fn drop(&mut self) {
        self.close.notify_one();
    }
}

/// One session's MSRP side, as the CPM session drives it. Clones share the session;
/// it ends on `close` or when the last clone is dropped.
#[derive(Clone)]
pub struct MsrpSession {
    inner: Arc<Handle>,
}

impl std::fmt::Debug for MsrpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsrpSession")
            .field("local", &self.inner.local.to_string())
            .finish()
    }
}

impl MsrpSession {
    /// The IWF's MSRP session-id for this session.
    pub fn session_id(&self) -> &str {
        &self.inner.local.session_id
    }

    /// Waits until the connection is up and bound, at most `connect_timeout_ms`.
    pub async fn connected(&self) -> Result<(), SendError> {
        let within = self.inner.settings.connect_timeout;
        let mut link = self.inner.link.clone();
        match timeout(within, link.wait_for(|l| *l != Link::Connecting)).await {
            Err(_) => Err(SendError::NotConnected(within)),
            Ok(Ok(l)) if *l == Link::Connected => Ok(()),
            Ok(_) => Err(SendError::Closed),
        }
    }

    /// Waits until the session's MSRP side has ended and it is unregistered.
    pub async fn closed(&self) {
        let mut link = self.inner.link.clone();
        let _ = link.wait_for(|l| *l == Link::Closed).await;
    }

    /// Sends one message (F5): cut into chunks of `chunk_size` (RFC 4975 section 7.1.1),
    /// each waited for its transaction response when Failure-Report is `yes` (none in
    /// `transaction_timeout_ms`: a local 408), then, when Success-Report is asked, for
    /// the REPORT (as long again). `reports`: (Success-Report, Failure-Report).
    pub async fn send(
        &self,
        content_type: &str,
        body: &[u8],
        reports: (bool, FailureReport),
    ) -> Result<Delivered, SendError> {
        let message_id = TransactId::random().as_str().to_string();
        self.send_as(&message_id, content_type, body, reports).await
    }

    /// [`MsrpSession::send`] with the Message-ID `message_id` (RFC 4975 ident): the same
    /// message sent again after a crash carries the same id, so the peer can tell.
    pub async fn send_as(
        &self,
        message_id: &str,
        content_type: &str,
        body: &[u8],
        reports: (bool, FailureReport),
    ) -> Result<Delivered, SendError> {
        let h = &self.inner;
        if let Some(max) = h.peer_max_size
            && body.len() as u64 > max
        {
            return Err(SendError::TooLarge {
                size: body.len() as u64,
                max,
            });
        }
        self.connected().await?;
        let (success_report, failure_report) = reports;
        let message_id = message_id.to_string();
        let report = if success_report {
            let (tx, rx) = oneshot::channel();
            self.command(Command::ExpectReport {
                message_id: message_id.clone(),
                report: tx,
            })
            .await?;
            Some(rx)
        } else {
            None
        };
        // Chunks are pipelined, at most `WINDOW` awaiting their response; each response
        // is awaited `transaction_timeout` from its chunk's hand-over (RFC 4975 7.1.1).
        let after = h.settings.transaction_timeout;
        let mut in_flight = std::collections::VecDeque::new();
        for (i, (range, bytes, flag)) in split(body.len(), h.settings.chunk_size).enumerate() {
            let data = (!body.is_empty()).then(|| Body {
                content_type: content_type.to_string(),
                data: body[bytes].to_vec(),
            });
            let frame = Frame::send(
                TransactId::random(),
                h.remote_path.clone(),
                vec![h.local.clone()],
                &message_id,
                range,
                reports,
                data,
                flag,
            );
            if !transaction::expects_response(failure_report) {
                self.command(Command::Transmit {
                    frame: Box::new(frame),
                    response: None,
                })
                .await?;
                continue;
            }
            if in_flight.len() == WINDOW
                && let Some(oldest) = in_flight.pop_front()
            {
                chunk_response(&message_id, oldest, after).await?;
            }
            let (tx, rx) = oneshot::channel();
            self.command(Command::Transmit {
                frame: Box::new(frame),
                response: Some(tx),
            })
            .await?;
            in_flight.push_back((i + 1, rx, tokio::time::Instant::now() + after));
        }
        for waiting in in_flight {
            chunk_response(&message_id, waiting, after).await?;
        }
        let Some(report) = report else {
            return Ok(Delivered {
                message_id,
                reported: false,
            });
        };
        let after = h.settings.transaction_timeout;
        match timeout(after, report).await {
            Err(_) => Err(SendError::ReportTimeout { message_id, after }),
            Ok(Err(_)) => Err(SendError::Closed),
            Ok(Ok(status)) if status.code == 200 => Ok(Delivered {
                message_id,
                reported: true,
            }),
            Ok(Ok(status)) => Err(SendError::Reported { message_id, status }),
        }
    }

    /// Ends the session's MSRP side (the SIP session ended): the connection is closed
    /// and the session unregistered; no `Event::Closed` follows.
    pub fn close(&self) {
        self.inner.close.notify_one();
    }

    async fn command(&self, command: Command) -> Result<(), SendError> {
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| SendError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_valid() {
        let s = Settings::from_config(&MsrpConfig::default()).unwrap();
        assert!(s.disposition_timeout < Duration::from_secs(30));
        assert_eq!(s.keepalive, Some(Duration::from_secs(60)));
    }

    #[test]
    fn settings_errors_name_the_key() {
        let bad = MsrpConfig {
            disposition_timeout_ms: 30_000,
            ..MsrpConfig::default()
        };
        let e = Settings::from_config(&bad).unwrap_err().to_string();
        assert!(e.contains("[msrp] disposition_timeout_ms = 30000"), "{e}");
        let bad = MsrpConfig {
            chunk_size: 0,
            ..MsrpConfig::default()
        };
        let e = Settings::from_config(&bad).unwrap_err().to_string();
        assert!(e.contains("chunk_size"), "{e}");
        let off = MsrpConfig {
            keepalive_secs: 0,
            ..MsrpConfig::default()
        };
        assert_eq!(Settings::from_config(&off).unwrap().keepalive, None);
    }

    #[test]
    fn spec_from_the_sdp_answer() {
        let local = MsrpUri::parse("msrp://127.0.0.1:2855/iwf1;tcp").unwrap();
        let peer = MsrpUri::parse("msrp://192.0.2.1:7777/peer1;tcp").unwrap();
        let params = MsrpParams {
            peer_path: vec![peer.clone()],
            local_path: local.clone(),
            role: Role::Passive,
            accept_types: vec!["message/cpim".into()],
            accept_wrapped_types: vec!["text/plain".into()],
            peer_accept_wrapped_types: vec!["image/jpeg".into()],
            max_size: Some(4096),
        };
        let spec = SessionSpec::from_params(&params);
        assert_eq!(spec.local, local);
        assert_eq!(spec.remote_path, vec![peer]);
        assert_eq!(spec.role, Role::Passive);
        assert_eq!(spec.accept_types, vec!["message/cpim".to_string()]);
        assert_eq!(spec.peer_max_size, Some(4096));
    }
}
