//! The MSRP endpoint alone (no SIP) over loopback sockets: a test client plays the CPM
//! client, passive (it connects to the IWF) or active (the IWF connects to it).

mod common;

use std::time::{Duration, Instant};

use common::msrp::{MsrpClient, MsrpListener, NextError, client_uri};
use iwf::config::MsrpConfig;
use iwf::msrp::{
    ByteRange, CloseReason, Disposition, Endpoint, Event, FailureReport, Flag, Method, MsrpSession,
    Progress, Reassembler, Received, SendError, SessionSpec, StartLine,
};
use iwf::sdp::{Host, MsrpUri, Role, new_session_id};
use tokio::sync::mpsc;

/// Every wait for something that must happen.
const WAIT: Duration = Duration::from_secs(5);
/// The IWF's transaction timeout in these tests.
const TRANSACTION_MS: u64 = 300;

fn config() -> MsrpConfig {
    MsrpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        max_message_size: 1000,
        chunk_size: 10,
        transaction_timeout_ms: TRANSACTION_MS,
        connect_timeout_ms: 2000,
        disposition_timeout_ms: 2000,
        max_connections: 16,
        keepalive_secs: 1,
        held_max_messages: 4,
        held_max_bytes: 1000,
    }
}

const DEFAULT_REPORTS: (bool, FailureReport) = (false, FailureReport::Yes);

struct Passive {
    endpoint: Endpoint,
    session: MsrpSession,
    events: mpsc::Receiver<Event>,
    client: MsrpClient,
}

fn spec(endpoint: &Endpoint, remote: MsrpUri, role: Role) -> SessionSpec {
    let local = MsrpUri::tcp(
        Host::Ip([127, 0, 0, 1].into()),
        endpoint.local_addr().port(),
        &new_session_id(),
    );
    SessionSpec {
        local,
        remote_path: vec![remote],
        role,
        accept_types: vec!["message/cpim".into(), "text/*".into()],
        peer_max_size: Some(1000),
    }
}

/// A passive IWF session and a client connected to it, not yet bound.
async fn passive_with(config: MsrpConfig) -> Passive {
    let endpoint = Endpoint::bind(&config).await.unwrap();
    let spec = spec(&endpoint, client_uri("client1session"), Role::Passive);
    let local = spec.local.clone();
    let (session, events) = endpoint.open(spec).unwrap();
    let client = MsrpClient::connect(
        endpoint.local_addr(),
        client_uri("client1session"),
        vec![local],
    )
    .await;
    Passive {
        endpoint,
        session,
        events,
        client,
    }
}

/// A passive session bound by the client's empty SEND.
async fn bound() -> Passive {
    bound_with(config()).await
}

async fn bound_with(config: MsrpConfig) -> Passive {
    let mut p = passive_with(config).await;
    let bind = p.client.empty_send();
    p.client.send_frame(&bind).await;
    assert_eq!(p.client.expect_response(&bind, WAIT).await, 200);
    assert!(matches!(next_event(&mut p.events).await, Event::Connected));
    p
}

async fn next_event(events: &mut mpsc::Receiver<Event>) -> Event {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .expect("the event channel open")
}

/// The next event, which must be a message: (content type, body, message id, reply).
async fn next_message(
    events: &mut mpsc::Receiver<Event>,
) -> (String, Vec<u8>, String, iwf::msrp::Reply) {
    match next_event(events).await {
        Event::Message(message) => {
            let Received {
                content_type,
                body,
                message_id,
                reply,
                ..
            } = *message;
            (content_type, body, message_id, reply)
        }
        other => panic!("expected a message, got {other:?}"),
    }
}

fn code_of(frame: &iwf::msrp::Frame) -> Option<u16> {
    match frame.start {
        StartLine::Response { code, .. } => Some(code),
        StartLine::Request(_) => None,
    }
}

#[tokio::test]
async fn passive_client_binds_with_empty_send_and_gets_200_without_message() {
    let mut p = bound().await;
    // The next event is this message, so the empty SEND gave none.
    let sent = p
        .client
        .send_message("msg0001", "text/plain", b"hi", 100, DEFAULT_REPORTS)
        .await;
    let (_, body, id, reply) = next_message(&mut p.events).await;
    assert_eq!((body.as_slice(), id.as_str()), (&b"hi"[..], "msg0001"));
    reply.send(Disposition::Delivered).unwrap();
    assert_eq!(p.client.expect_response(&sent[0], WAIT).await, 200);
}

#[tokio::test]
async fn active_iwf_connects_and_binds_with_an_empty_send() {
    let endpoint = Endpoint::bind(&config()).await.unwrap();
    let listener = MsrpListener::bind("peer1session").await;
    let spec = spec(&endpoint, listener.uri.clone(), Role::Active);
    let local = spec.local.clone();
    let (_session, mut events) = endpoint.open(spec).unwrap();
    let mut client = listener.accept(vec![local.clone()], WAIT).await;
    let bind = client.expect_request(Method::Send, WAIT).await;
    assert!(bind.body.is_none(), "the binding SEND has no body");
    assert_eq!(
        bind.byte_range(),
        Some(ByteRange {
            start: 1,
            end: Some(0),
            total: Some(0)
        })
    );
    assert_eq!(bind.to_path, vec![listener.uri.clone()]);
    assert_eq!(bind.from_path, vec![local]);
    // Not connected until the 200.
    assert!(events.try_recv().is_err());
    client.respond(&bind, 200).await;
    assert!(matches!(next_event(&mut events).await, Event::Connected));
}

#[tokio::test]
async fn active_iwf_closes_when_the_bind_is_refused() {
    let endpoint = Endpoint::bind(&config()).await.unwrap();
    let listener = MsrpListener::bind("peer2session").await;
    let spec = spec(&endpoint, listener.uri.clone(), Role::Active);
    let (_session, mut events) = endpoint.open(spec.clone()).unwrap();
    let mut client = listener.accept(vec![spec.local], WAIT).await;
    let bind = client.expect_request(Method::Send, WAIT).await;
    client.respond(&bind, 481).await;
    match next_event(&mut events).await {
        Event::Closed(CloseReason::BindRefused { code: 481 }) => {}
        other => panic!("expected Closed(BindRefused 481), got {other:?}"),
    }
}

#[tokio::test]
async fn single_send_answered_200_only_after_the_disposition_then_success_report() {
    let mut p = bound().await;
    let sent = p
        .client
        .send_message(
            "msg0002",
            "text/plain",
            b"hello mail",
            100,
            (true, FailureReport::Yes),
        )
        .await;
    let event = next_event(&mut p.events).await;
    let Event::Message(message) = event else {
        panic!("expected a message, got {event:?}")
    };
    let Received {
        content_type,
        body,
        message_id,
        success_report,
        failure_report,
        reply,
    } = *message;
    assert_eq!(content_type, "text/plain");
    assert_eq!(body, b"hello mail");
    assert_eq!(message_id, "msg0002");
    assert!(success_report);
    assert_eq!(failure_report, FailureReport::Yes);
    // F4: no response while the e-mail is on its way.
    p.client.expect_silence(Duration::from_millis(200)).await;
    reply.send(Disposition::Delivered).unwrap();
    assert_eq!(p.client.expect_response(&sent[0], WAIT).await, 200);
    let report = p.client.expect_request(Method::Report, WAIT).await;
    assert_eq!(report.message_id(), Some("msg0002"));
    assert_eq!(report.status().map(|s| s.code), Some(200));
    assert_eq!(
        report.byte_range(),
        Some(ByteRange {
            start: 1,
            end: Some(10),
            total: Some(10)
        })
    );
    assert_eq!(report.to_path, vec![p.client.local.clone()]);
}

#[tokio::test]
async fn disposition_error_answers_its_code_and_no_report() {
    let mut p = bound().await;
    let sent = p
        .client
        .send_message(
            "msg0003",
            "text/plain",
            b"to a bad mailbox",
            100,
            (true, FailureReport::Yes),
        )
        .await;
    let (_, _, _, reply) = next_message(&mut p.events).await;
    reply
        .send(Disposition::failed(403, "mailbox unavailable"))
        .unwrap();
    let response = p.client.expect_frame(WAIT).await;
    assert_eq!(response.transact_id, sent[0].transact_id);
    assert_eq!(code_of(&response), Some(403));
    // No success REPORT for a failure: the next frame answers the next message.
    let next = p
        .client
        .send_message("msg0004", "text/plain", b"x", 100, DEFAULT_REPORTS)
        .await;
    let (_, _, _, reply) = next_message(&mut p.events).await;
    reply.send(Disposition::Delivered).unwrap();
    assert_eq!(p.client.expect_response(&next[0], WAIT).await, 200);
}

#[tokio::test]
async fn dropped_reply_is_a_failure_response() {
    let mut p = bound().await;
    let sent = p
        .client
        .send_message("msg0005", "text/plain", b"lost", 100, DEFAULT_REPORTS)
        .await;
    let (_, _, _, reply) = next_message(&mut p.events).await;
    drop(reply);
    assert_eq!(p.client.expect_response(&sent[0], WAIT).await, 403);
}

#[tokio::test]
async fn late_disposition_gets_200_at_the_deadline_then_a_report() {
    let config = MsrpConfig {
        disposition_timeout_ms: 200,
        ..config()
    };
    let mut p = bound_with(config).await;
    let started = Instant::now();
    let sent = p
        .client
        .send_message(
            "msg0006",
            "text/plain",
            b"slow mail",
            100,
            (true, FailureReport::Yes),
        )
        .await;
    let (_, _, _, reply) = next_message(&mut p.events).await;
    assert_eq!(p.client.expect_response(&sent[0], WAIT).await, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "200 before the deadline"
    );
    reply.send(Disposition::failed(403, "refused")).unwrap();
    let report = p.client.expect_request(Method::Report, WAIT).await;
    assert_eq!(report.status().map(|s| s.code), Some(403));
}

/// `Reply::hold` (F2 before the accept, 5.2.4.2.4): the last chunk is answered 200 at
/// once; the outcome follows as a REPORT when settled (success when asked); a message still
/// held when the session closes gets a failure REPORT before the connection goes.
#[tokio::test]
async fn a_held_message_is_answered_at_once_and_reported_when_settled_or_closed() {
    let config = MsrpConfig {
        disposition_timeout_ms: 5000,
        ..config()
    };
    let mut p = bound_with(config).await;
    let started = Instant::now();
    let first = p
        .client
        .send_message(
            "held01",
            "text/plain",
            b"one",
            100,
            (true, FailureReport::Yes),
        )
        .await;
    let (_, _, _, reply) = next_message(&mut p.events).await;
    let held = reply.hold();
    assert_eq!(p.client.expect_response(&first[0], WAIT).await, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "held: 200 at once"
    );
    held.settle(Disposition::Delivered);
    let report = p.client.expect_request(Method::Report, WAIT).await;
    assert_eq!(report.message_id(), Some("held01"));
    assert_eq!(report.status().map(|s| s.code), Some(200));
    // Held, then the session closes: a failure REPORT (Failure-Report yes), then the close.
    let second = p
        .client
        .send_message("held02", "text/plain", b"two", 100, DEFAULT_REPORTS)
        .await;
    let (_, _, _, reply) = next_message(&mut p.events).await;
    let _held = reply.hold();
    assert_eq!(p.client.expect_response(&second[0], WAIT).await, 200);
    p.session.close();
    let report = p.client.expect_request(Method::Report, WAIT).await;
    assert_eq!(report.message_id(), Some("held02"));
    assert_eq!(report.status().map(|s| s.code), Some(403));
    p.client.expect_closed(WAIT).await;
}

/// `Reply::take` (F4's outbound spool, issue 15): 200 at once and a REPORT when settled,
/// as held; but a message in custody is still delivered after the session, so neither a
/// dropped `Held` nor the close says it failed: no failure REPORT, only the close.
#[tokio::test]
async fn a_message_taken_into_custody_gets_200_its_report_when_settled_and_no_failure_at_close() {
    let config = MsrpConfig {
        disposition_timeout_ms: 5000,
        ..config()
    };
    let mut p = bound_with(config).await;
    let reports = (true, FailureReport::Yes);
    let first = p
        .client
        .send_message("kept01", "text/plain", b"one", 100, reports)
        .await;
    let (_, _, _, reply) = next_message(&mut p.events).await;
    let taken = reply.take();
    assert_eq!(p.client.expect_response(&first[0], WAIT).await, 200);
    taken.settle(Disposition::failed(408, "given up"));
    let report = p.client.expect_request(Method::Report, WAIT).await;
    assert_eq!(report.message_id(), Some("kept01"));
    assert_eq!(report.status().map(|s| s.code), Some(408));
    // One dropped unsettled, one still in custody at the close: nothing but the close.
    let mut kept = Vec::new();
    for id in ["kept02", "kept03"] {
        let sent = p
            .client
            .send_message(id, "text/plain", b"two", 100, DEFAULT_REPORTS)
            .await;
        let (_, _, _, reply) = next_message(&mut p.events).await;
        let taken = reply.take();
        assert_eq!(p.client.expect_response(&sent[0], WAIT).await, 200);
        if id == "kept03" {
            kept.push(taken);
        }
    }
    p.session.close();
    match p.client.next_frame(WAIT).await {
        Ok(frame) => panic!("nothing but the close was expected: {frame:?}"),
        Err(e) => assert!(!matches!(e, NextError::Timeout), "no close: {e:?}"),
    }
    drop(kept);
}

#[tokio::test]
async fn three_chunks_out_of_order_make_one_message() {
    let mut p = bound().await;
    let chunks = p.client.chunks(
        "msg0007",
        "text/plain",
        b"0123456789abcdefghijKLMNOPQRS",
        10,
        DEFAULT_REPORTS,
    );
    assert_eq!(chunks.len(), 3);
    for i in [2, 0] {
        p.client.send_frame(&chunks[i]).await;
        assert_eq!(p.client.expect_response(&chunks[i], WAIT).await, 200);
    }
    assert!(
        p.events.try_recv().is_err(),
        "no message before the last chunk"
    );
    p.client.send_frame(&chunks[1]).await;
    let (_, body, _, reply) = next_message(&mut p.events).await;
    assert_eq!(body, b"0123456789abcdefghijKLMNOPQRS");
    reply.send(Disposition::Delivered).unwrap();
    assert_eq!(p.client.expect_response(&chunks[1], WAIT).await, 200);
    assert!(p.events.try_recv().is_err(), "one message only");
}

#[tokio::test]
async fn aborted_message_gives_no_event() {
    let mut p = bound().await;
    let first = p.client.chunk(
        "msg0008",
        ByteRange {
            start: 1,
            end: Some(10),
            total: Some(30),
        },
        "text/plain",
        b"0123456789",
        Flag::More,
        DEFAULT_REPORTS,
    );
    let abort = p.client.chunk(
        "msg0008",
        ByteRange {
            start: 11,
            end: None,
            total: Some(30),
        },
        "text/plain",
        b"abc",
        Flag::Aborted,
        DEFAULT_REPORTS,
    );
    for c in [&first, &abort] {
        p.client.send_frame(c).await;
        assert_eq!(p.client.expect_response(c, WAIT).await, 200);
    }
    p.client
        .send_message("msg0009", "text/plain", b"next", 100, DEFAULT_REPORTS)
        .await;
    let (_, _, id, _) = next_message(&mut p.events).await;
    assert_eq!(id, "msg0009", "the aborted message was not delivered");
}

#[tokio::test]
async fn oversize_message_gets_413_for_every_chunk() {
    let mut p = bound().await;
    let body = vec![b'a'; 1500];
    let chunks = p
        .client
        .send_message("msg0010", "text/plain", &body, 500, DEFAULT_REPORTS)
        .await;
    for c in &chunks {
        assert_eq!(p.client.expect_response(c, WAIT).await, 413);
    }
    p.client
        .send_message("msg0011", "text/plain", b"small", 100, DEFAULT_REPORTS)
        .await;
    let (_, _, id, _) = next_message(&mut p.events).await;
    assert_eq!(id, "msg0011");
}

#[tokio::test]
async fn unknown_content_type_gets_415() {
    let mut p = bound().await;
    let sent = p
        .client
        .send_message("msg0012", "image/png", b"\x89PNG", 100, DEFAULT_REPORTS)
        .await;
    assert_eq!(p.client.expect_response(&sent[0], WAIT).await, 415);
    // `text/*` in the accept-types takes text/html.
    let sent = p
        .client
        .send_message("msg0013", "text/html", b"<p>", 100, DEFAULT_REPORTS)
        .await;
    let (_, _, id, reply) = next_message(&mut p.events).await;
    assert_eq!(id, "msg0013");
    reply.send(Disposition::Delivered).unwrap();
    assert_eq!(p.client.expect_response(&sent[0], WAIT).await, 200);
}

#[tokio::test]
async fn failure_report_no_gets_no_response() {
    let mut p = bound().await;
    p.client
        .send_message(
            "msg0014",
            "text/plain",
            b"quiet",
            100,
            (false, FailureReport::No),
        )
        .await;
    let (_, _, _, reply) = next_message(&mut p.events).await;
    reply.send(Disposition::Delivered).unwrap();
    let loud = p
        .client
        .send_message("msg0015", "text/plain", b"loud", 100, DEFAULT_REPORTS)
        .await;
    let (_, _, _, reply) = next_message(&mut p.events).await;
    reply.send(Disposition::Delivered).unwrap();
    // The first frame back answers the second message: the first got none.
    assert_eq!(p.client.expect_response(&loud[0], WAIT).await, 200);
}

#[tokio::test]
async fn unknown_method_gets_501() {
    let mut p = bound().await;
    let mut request = p.client.empty_send();
    request.start = StartLine::Request(Method::Other("FETCH".into()));
    p.client.send_frame(&request).await;
    assert_eq!(p.client.expect_response(&request, WAIT).await, 501);
}

#[tokio::test]
async fn malformed_header_gets_400_and_the_connection_goes_on() {
    let mut p = bound().await;
    let to = p.client.to_path[0].to_string();
    let from = p.client.local.to_string();
    let raw = format!(
        "MSRP bad1tid SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: m1\r\nByte-Range: x\r\n-------bad1tid$\r\n"
    );
    p.client.send_raw(raw.as_bytes()).await;
    let response = p.client.expect_frame(WAIT).await;
    assert_eq!(response.transact_id.as_str(), "bad1tid");
    assert_eq!(code_of(&response), Some(400));
    let ok = p.client.empty_send();
    p.client.send_frame(&ok).await;
    assert_eq!(p.client.expect_response(&ok, WAIT).await, 200);
}

#[tokio::test]
async fn unknown_session_id_gets_481_and_the_connection_is_closed() {
    let endpoint = Endpoint::bind(&config()).await.unwrap();
    let nobody = MsrpUri::tcp(
        Host::Ip([127, 0, 0, 1].into()),
        endpoint.local_addr().port(),
        "nosuchsession",
    );
    let mut client =
        MsrpClient::connect(endpoint.local_addr(), client_uri("client9"), vec![nobody]).await;
    let request = client.empty_send();
    client.send_frame(&request).await;
    assert_eq!(client.expect_response(&request, WAIT).await, 481);
    client.expect_closed(WAIT).await;
}

/// RFC 6135: after the peer's 2xx to a re-INVITE of the IWF's, the peer's connection may
/// arrive before the 2xx that opens the session; it waits for the session, then binds.
#[tokio::test]
async fn a_connection_that_comes_before_its_session_is_opened_binds_once_it_is() {
    let endpoint = Endpoint::bind(&config()).await.unwrap();
    let spec = spec(&endpoint, client_uri("early1"), Role::Passive);
    let mut client = MsrpClient::connect(
        endpoint.local_addr(),
        client_uri("early1"),
        vec![spec.local.clone()],
    )
    .await;
    let bind = client.empty_send();
    client.send_frame(&bind).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_session, mut events) = endpoint.open(spec).unwrap();
    assert_eq!(client.expect_response(&bind, WAIT).await, 200);
    assert!(matches!(next_event(&mut events).await, Event::Connected));
}

#[tokio::test]
async fn wrong_from_path_gets_403_and_the_session_keeps_waiting() {
    let mut p = passive_with(config()).await;
    let mut intruder = MsrpClient::connect(
        p.endpoint.local_addr(),
        client_uri("intruder"),
        p.client.to_path.clone(),
    )
    .await;
    let request = intruder.empty_send();
    intruder.send_frame(&request).await;
    assert_eq!(intruder.expect_response(&request, WAIT).await, 403);
    intruder.expect_closed(WAIT).await;
    // The real peer still binds.
    let bind = p.client.empty_send();
    p.client.send_frame(&bind).await;
    assert_eq!(p.client.expect_response(&bind, WAIT).await, 200);
    assert!(matches!(next_event(&mut p.events).await, Event::Connected));
}

#[tokio::test]
async fn passive_session_without_peer_closes_after_the_connect_timeout() {
    let config = MsrpConfig {
        connect_timeout_ms: 200,
        ..config()
    };
    let endpoint = Endpoint::bind(&config).await.unwrap();
    let spec = spec(&endpoint, client_uri("never"), Role::Passive);
    let (_session, mut events) = endpoint.open(spec).unwrap();
    match next_event(&mut events).await {
        Event::Closed(CloseReason::ConnectTimeout(_)) => {}
        other => panic!("expected Closed(ConnectTimeout), got {other:?}"),
    }
}

#[tokio::test]
async fn iwf_send_to_a_silent_client_fails_with_408_in_time() {
    let mut p = bound().await;
    let session = p.session.clone();
    let started = Instant::now();
    let send = tokio::spawn(async move {
        session
            .send("text/plain", b"are you there?", DEFAULT_REPORTS)
            .await
    });
    // The client reads the chunk and never answers.
    p.client.expect_request(Method::Send, WAIT).await;
    let result = tokio::time::timeout(WAIT, send).await.unwrap().unwrap();
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(SendError::Timeout { chunk: 1, .. })),
        "{result:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(TRANSACTION_MS),
        "{elapsed:?}"
    );
    assert!(elapsed < WAIT, "{elapsed:?}");
}

#[tokio::test]
async fn client_disconnect_gives_closed() {
    let mut p = bound().await;
    drop(p.client);
    match next_event(&mut p.events).await {
        Event::Closed(CloseReason::PeerClosed) => {}
        other => panic!("expected Closed(PeerClosed), got {other:?}"),
    }
    tokio::time::timeout(WAIT, p.session.closed())
        .await
        .unwrap();
    assert_eq!(p.endpoint.sessions(), 0);
}

#[tokio::test]
async fn close_ends_the_connection_and_unregisters() {
    let mut p = bound().await;
    assert_eq!(p.endpoint.sessions(), 1);
    p.session.close();
    p.client.expect_closed(WAIT).await;
    tokio::time::timeout(WAIT, p.session.closed())
        .await
        .unwrap();
    assert_eq!(p.endpoint.sessions(), 0);
    assert!(
        tokio::time::timeout(WAIT, p.events.recv())
            .await
            .is_ok_and(|e| e.is_none()),
        "no Closed event after a local close"
    );
}

#[tokio::test]
async fn iwf_chunked_send_is_reassembled_by_the_client_with_success_report() {
    let mut p = bound().await;
    let body = b"Hello from e-mail, in four chunks!!".to_vec();
    let session = p.session.clone();
    let to_send = body.clone();
    let send = tokio::spawn(async move {
        session
            .send("text/plain", &to_send, (true, FailureReport::Yes))
            .await
    });
    let mut reassembler = Reassembler::default();
    let mut chunks = 0;
    let message = loop {
        let chunk = p.client.expect_request(Method::Send, WAIT).await;
        chunks += 1;
        assert!(chunk.success_report());
        p.client.respond(&chunk, 200).await;
        match reassembler.push(&chunk).unwrap() {
            Progress::Complete(m) => break (m, chunk),
            Progress::Pending => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    let (message, last) = message;
    assert_eq!(chunks, 4, "35 bytes in chunks of 10");
    assert_eq!(message.data, body);
    let range = ByteRange {
        start: 1,
        end: Some(body.len() as u64),
        total: Some(body.len() as u64),
    };
    let report = last.report(
        iwf::msrp::TransactId::random(),
        range,
        iwf::msrp::Status {
            code: 200,
            comment: None,
        },
    );
    p.client.send_frame(&report).await;
    let delivered = tokio::time::timeout(WAIT, send)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(delivered.reported);
    assert_eq!(delivered.message_id, message.message_id);
}

#[tokio::test]
async fn iwf_send_refused_by_the_client_reports_its_code() {
    let mut p = bound().await;
    let session = p.session.clone();
    let send =
        tokio::spawn(async move { session.send("text/plain", b"no", DEFAULT_REPORTS).await });
    let chunk = p.client.expect_request(Method::Send, WAIT).await;
    p.client.respond(&chunk, 415).await;
    let result = tokio::time::timeout(WAIT, send).await.unwrap().unwrap();
    assert!(
        matches!(result, Err(SendError::Refused { code: 415, .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn fatal_framing_error_closes_the_connection() {
    let mut p = bound().await;
    p.client.send_raw(b"GARBAGE LINE\r\n").await;
    p.client.expect_closed(WAIT).await;
    match next_event(&mut p.events).await {
        Event::Closed(CloseReason::Malformed(_)) => {}
        other => panic!("expected Closed(Malformed), got {other:?}"),
    }
}

#[tokio::test]
async fn active_iwf_closes_when_the_bind_gets_no_response() {
    let endpoint = Endpoint::bind(&config()).await.unwrap();
    let listener = MsrpListener::bind("peer3session").await;
    let spec = spec(&endpoint, listener.uri.clone(), Role::Active);
    let (_session, mut events) = endpoint.open(spec.clone()).unwrap();
    let mut client = listener.accept(vec![spec.local], WAIT).await;
    client.expect_request(Method::Send, WAIT).await;
    // The bind waits `transaction_timeout_ms` (300) for its 200; WAIT bounds the test.
    match next_event(&mut events).await {
        Event::Closed(CloseReason::BindTimeout(_)) => {}
        other => panic!("expected Closed(BindTimeout), got {other:?}"),
    }
    client.expect_closed(WAIT).await;
}

#[tokio::test]
async fn active_iwf_reports_a_failed_connect() {
    let endpoint = Endpoint::bind(&config()).await.unwrap();
    // A port nobody listens on: bind one, note it, close it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let peer = MsrpUri::tcp(Host::Ip([127, 0, 0, 1].into()), port, "gone");
    let (_session, mut events) = endpoint.open(spec(&endpoint, peer, Role::Active)).unwrap();
    match next_event(&mut events).await {
        Event::Closed(CloseReason::ConnectFailed(_)) => {}
        other => panic!("expected Closed(ConnectFailed), got {other:?}"),
    }
}

#[tokio::test]
async fn failure_report_partial_gets_errors_but_no_200() {
    let mut p = bound().await;
    let partial = (false, FailureReport::Partial);
    p.client
        .send_message("msg0016", "text/plain", b"ok", 100, partial)
        .await;
    let (_, _, _, reply) = next_message(&mut p.events).await;
    reply.send(Disposition::Delivered).unwrap();
    let refused = p
        .client
        .send_message("msg0017", "image/png", b"png", 100, partial)
        .await;
    // The first frame back is the 415: the delivered message got no 200.
    assert_eq!(p.client.expect_response(&refused[0], WAIT).await, 415);
}

#[tokio::test]
async fn failure_report_for_a_sent_message_reaches_the_session() {
    let mut p = bound().await;
    let session = p.session.clone();
    let send =
        tokio::spawn(async move { session.send("text/plain", b"hi", DEFAULT_REPORTS).await });
    let chunk = p.client.expect_request(Method::Send, WAIT).await;
    p.client.respond(&chunk, 200).await;
    let delivered = tokio::time::timeout(WAIT, send)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!delivered.reported);
    let range = chunk.byte_range().unwrap();
    let status = iwf::msrp::Status {
        code: 413,
        comment: Some("too big downstream".into()),
    };
    let report = chunk.report(iwf::msrp::TransactId::random(), range, status);
    p.client.send_frame(&report).await;
    match next_event(&mut p.events).await {
        Event::DeliveryFailed { message_id, status } => {
            assert_eq!(message_id, delivered.message_id);
            assert_eq!(status.code, 413);
        }
        other => panic!("expected DeliveryFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn iwf_send_larger_than_the_window_is_pipelined_and_complete() {
    let mut p = bound().await;
    // 20 chunks of 10 bytes: more than the 8 chunks sent ahead of their responses.
    let body: Vec<u8> = (0..200u8).collect();
    let session = p.session.clone();
    let to_send = body.clone();
    let send =
        tokio::spawn(async move { session.send("text/plain", &to_send, DEFAULT_REPORTS).await });
    let (message, last) = p.client.receive_message(WAIT).await;
    assert_eq!(
        last.byte_range(),
        Some(ByteRange {
            start: 191,
            end: Some(200),
            total: Some(200)
        })
    );
    assert_eq!(message.data, body);
    tokio::time::timeout(WAIT, send)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn iwf_send_over_the_peer_max_size_is_refused_locally() {
    let mut p = bound().await;
    let result = p
        .session
        .send("text/plain", &[b'x'; 1001], DEFAULT_REPORTS)
        .await;
    assert_eq!(
        result,
        Err(SendError::TooLarge {
            size: 1001,
            max: 1000
        })
    );
    // Nothing went out: the next frame is the response to this empty SEND.
    let probe = p.client.empty_send();
    p.client.send_frame(&probe).await;
    assert_eq!(p.client.expect_response(&probe, WAIT).await, 200);
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_at_once() {
    let config = MsrpConfig {
        max_connections: 1,
        ..config()
    };
    let p = bound_with(config).await;
    let mut second = MsrpClient::connect(
        p.endpoint.local_addr(),
        client_uri("client1session"),
        p.client.to_path.clone(),
    )
    .await;
    // Without the limit the request would get a 481 (the session is bound already).
    let request = second.empty_send();
    // The IWF may have closed already: a failed write is what is expected then.
    if second.try_send_frame(&request).await.is_err() {
        return;
    }
    match second.next_frame(WAIT).await {
        Err(NextError::Closed | NextError::Io(_)) => {}
        other => panic!("expected the connection closed unanswered, got {other:?}"),
    }
}

#[tokio::test]
async fn passive_session_through_a_relay_checks_the_sender_session_id() {
    let endpoint = Endpoint::bind(&config()).await.unwrap();
    let relay = MsrpUri::parse("msrp://relay.example.com:2855/relay1;tcp").unwrap();
    let peer = MsrpUri::parse("msrp://10.0.0.1:7777/peer9;tcp").unwrap();
    let mut spec = spec(&endpoint, peer.clone(), Role::Passive);
    spec.remote_path = vec![relay, peer];
    let local = spec.local.clone();
    let (_session, mut events) = endpoint.open(spec).unwrap();
    // The relay connects; its From-Path has another relay URI in front and the peer's
    // own URI as the relay saw it: only the sender's session-id must match.
    let mut client = MsrpClient::connect_to(
        MsrpUri::parse("msrp://relay2.example.net:2855/hop7;tcp").unwrap(),
        vec![local],
    )
    .await;
    let mut bind = client.empty_send();
    bind.from_path
        .push(MsrpUri::parse("msrp://198.51.100.7:40000/peer9;tcp").unwrap());
    client.send_frame(&bind).await;
    assert_eq!(client.expect_response(&bind, WAIT).await, 200);
    assert!(matches!(next_event(&mut events).await, Event::Connected));
    let mut intruder = client.empty_send();
    intruder
        .from_path
        .push(MsrpUri::parse("msrp://198.51.100.7:40000/other;tcp").unwrap());
    client.send_frame(&intruder).await;
    assert_eq!(client.expect_response(&intruder, WAIT).await, 403);
}

#[tokio::test]
async fn error_response_to_a_partial_send_reaches_the_session() {
    let mut p = bound().await;
    let delivered = p
        .session
        .send(
            "text/plain",
            b"fire and forget",
            (false, FailureReport::Partial),
        )
        .await
        .unwrap();
    let chunk = p.client.expect_request(Method::Send, WAIT).await;
    assert_eq!(chunk.failure_report(), FailureReport::Partial);
    p.client.respond(&chunk, 413).await;
    match next_event(&mut p.events).await {
        Event::DeliveryFailed { message_id, status } => {
            assert_eq!(message_id, delivered.message_id);
            assert_eq!(status.code, 413);
        }
        other => panic!("expected DeliveryFailed, got {other:?}"),
    }
}
