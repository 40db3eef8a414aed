//! F4 (5.2.4.2.5) end to end over real sockets: sipp sets up the SIP session
//! (tests/sipp/f4-chat.xml), the MSRP test client of `common::msrp` plays the CPM client's
//! MSRP side in both RFC 6135 roles, and tests/smtp/recipient_server.py (aiosmtpd) is the
//! e-mail user's server (as `smart_host`). Each whole MSRP message becomes one e-mail per
//! Table BB2 over the session's SMTP channel; the response to its last chunk says how the
//! mail went; the BYE closes the MSRP side and mails the CC2 notification.
//!
//! Needs `python3-aiosmtpd` and `sip-tester`: without them a test fails, naming what to
//! install (`tests/run.sh` installs them).

mod common;

use common::chat::{
    Gateway, Keys, Sipp, address, bodies, client_uri, gateway, gateway_keyed, mails, parse,
};
use common::mail::{server, wait_for};
use common::msrp::{MsrpClient, MsrpListener};
use common::peers::{self, Peer};
use iwf::msrp::{ByteRange, FailureReport, Flag, Frame, Header, Method, Status};
use iwf::sdp::MsrpUri;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

const CPIM: &str = "From: Alice <sip:alice@ims.example.com>\r\n\
    To: <mailto:bob@example.net>\r\n\
    DateTime: 2026-11-26T10:00:00.000+01:00\r\n\
    NS: imdn <urn:ietf:params:imdn>\r\n\
    imdn.Message-ID: m1d1\r\n\
    \r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    \r\n\
    Lunch at noon? \u{2615}";

fn status_of(frame: &Frame) -> Option<u16> {
    frame.headers.iter().find_map(|h| match h {
        Header::Status(Status { code, .. }) => Some(*code),
        _ => None,
    })
}

/// sipp offers an F4 session to `rcpt`, `a=setup:active`, its path on a free port with
/// session-id `session`; the MSRP test client connects to the path the IWF answered.
/// sipp, the IWF's a=path and a=setup, and the client.
async fn offered_active(
    gw: &Gateway,
    session: &str,
    rcpt: &str,
) -> (Sipp, MsrpUri, String, MsrpClient) {
    let port = common::free_port();
    let sipp = Sipp::start(gw, "f4-chat.xml", "active", port, session, rcpt);
    let (iwf_uri, setup) = tokio::task::block_in_place(|| sipp.answer());
    let local = client_uri(port, session);
    let client = MsrpClient::connect(gw.msrp, local, vec![iwf_uri.clone()]).await;
    (sipp, iwf_uri, setup, client)
}

/// Sends a whole message in chunks of `chunk_size`, no Success-Report; the response code
/// to each chunk, in order.
async fn send(
    client: &mut MsrpClient,
    message_id: &str,
    content_type: &str,
    body: &[u8],
    chunk_size: usize,
) -> Vec<u16> {
    let reports = (false, FailureReport::Yes);
    let sent = client
        .send_message(message_id, content_type, body, chunk_size, reports)
        .await;
    let mut codes = Vec::new();
    for chunk in &sent {
        codes.push(client.expect_response(chunk, WAIT).await);
    }
    codes
}

/// sipp played the F4 ladder to its end (the BYE included).
fn assert_ladder_passed(sipp: Sipp) {
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp F4 ladder"
    );
}

/// aiosmtpd and sipp, or the test fails.
fn require_peers() {
    peers::require(&[Peer::Aiosmtpd, Peer::Sipp]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_iwf_passive_each_whole_message_is_one_bb2_mail_and_errors_are_msrp_statuses() {
    require_peers();
    let srv = server(&[]);
    let gw = gateway("auto-accept", &srv);
    let (sipp, iwf_uri, setup, mut client) =
        offered_active(&gw, "cl13nt1", "bob@example.net").await;
    // RFC 6135 4.2: the offer was active, so the IWF answers passive and waits.
    assert_eq!(setup, "passive");
    assert_eq!(iwf_uri.port, Some(gw.msrp.port()));

    // 1. One SEND, message/cpim, Success-Report: 200 once the mail went out, then a REPORT.
    let sent = client
        .send_message(
            "msg1",
            "message/cpim",
            CPIM.as_bytes(),
            2048,
            (true, FailureReport::Yes),
        )
        .await;
    assert_eq!(client.expect_response(&sent[0], WAIT).await, 200);
    let report = client.expect_request(Method::Report, WAIT).await;
    assert_eq!(report.message_id(), Some("msg1"));
    assert_eq!(status_of(&report), Some(200));
    let all = mails(&srv, 1);
    let (meta, eml) = &all[0];
    // BB1: MAIL FROM the CPM user's address (here the CPIM From, mapped), RCPT TO the
    // Request-URI's address.
    assert_eq!(meta["mail_from"], "alice=ims.example.com@mail.iwf.test");
    assert_eq!(meta["rcpt_tos"], serde_json::json!(["bob@example.net"]));
    let first = parse(eml);
    // BB2 From: the CPIM From, mapped by the policy.
    assert_eq!(
        address(&first, "From"),
        (
            Some("Alice".into()),
            "alice=ims.example.com@mail.iwf.test".into()
        )
    );
    // BB2 Date: the CPIM DateTime.
    assert_eq!(
        first.date().unwrap().to_rfc3339(),
        "2026-11-26T10:00:00+01:00"
    );
    // BB2 To: the Request-URI's mailto address.
    assert_eq!(address(&first, "To").1, "bob@example.net");
    // BB2 msg-id: a Message-ID of the IWF's domain; the first mail replies to nothing.
    let first_id = first.message_id().unwrap().to_owned();
    assert!(first_id.ends_with("@mail.iwf.test"), "{first_id}");
    assert!(first.in_reply_to().as_text().is_none());
    // BB2 X-Priority: the policy's, from Priority: normal -> 3.
    assert_eq!(first.header("X-Priority").unwrap().as_text(), Some("3"));
    // BB2 body: the message, then the policy's additions (how to leave).
    let body = first.body_text(0).unwrap();
    assert!(body.starts_with("Lunch at noon? \u{2615}"), "{body}");
    assert!(body.contains("reply LEAVE to leave"), "{body}");
    assert!(first.header("Auto-Submitted").is_none());

    // 2. text/plain in three chunks: each chunk answered, one mail, threaded under the first.
    let text = b"first part, second part, third part";
    assert_eq!(
        send(&mut client, "msg2", "text/plain", text, 12).await,
        [200; 3]
    );
    let all = mails(&srv, 2);
    let second = parse(&all[1].1);
    assert_eq!(second.in_reply_to().as_text(), Some(first_id.as_str()));
    // No CPIM From: the CPM user's own address (P-Asserted-Identity tel:, mapped).
    assert_eq!(address(&second, "From").1, "+15551234567@mail.iwf.test");
    assert!(
        second
            .body_text(0)
            .unwrap()
            .starts_with("first part, second part, third part")
    );

    // 3. A message aborted with `#`: its chunks answered, no mail.
    let c1 = client.chunk(
        "msg3",
        ByteRange {
            start: 1,
            end: Some(5),
            total: Some(10),
        },
        "text/plain",
        b"abort",
        Flag::More,
        (false, FailureReport::Yes),
    );
    let c2 = client.chunk(
        "msg3",
        ByteRange {
            start: 6,
            end: Some(7),
            total: Some(10),
        },
        "text/plain",
        b"ed",
        Flag::Aborted,
        (false, FailureReport::Yes),
    );
    client.send_frame(&c1).await;
    client.send_frame(&c2).await;
    assert_eq!(client.expect_response(&c1, WAIT).await, 200);
    assert_eq!(client.expect_response(&c2, WAIT).await, 200);

    // 4. Over `[msrp] max_message_size` (4096): 413 (RFC 4975 7.3.1).
    let big = vec![b'x'; 5000];
    let codes = send(&mut client, "msg4", "text/plain", &big, 2048).await;
    assert!(codes.contains(&413), "{codes:?}");

    // 5. A type outside the negotiated accept-types: 415.
    let octets = b"\x00\x01";
    assert_eq!(
        send(
            &mut client,
            "msg5",
            "application/octet-stream",
            octets,
            2048
        )
        .await,
        [415]
    );

    // 6. message/cpim wrapping an image: the e-mail side carries text only: 415.
    let image = "From: <sip:alice@ims.example.com>\r\nTo: <mailto:bob@example.net>\r\n\r\n\
        Content-Type: image/png\r\n\r\nPNG";
    assert_eq!(
        send(&mut client, "msg6", "message/cpim", image.as_bytes(), 2048).await,
        [415]
    );

    assert_eq!(
        gw.metric("iwf_chat_messages_total{direction=\"to_email\",outcome=\"delivered\"}"),
        2
    );
    // The 413 and the first 415 are the endpoint's; the image in CPIM is refused after.
    assert_eq!(
        gw.metric("iwf_chat_messages_total{direction=\"to_email\",outcome=\"failed\"}"),
        1
    );
    assert_eq!(gw.metric("iwf_msrp_sessions"), 1);

    // The BYE (sipp, after its pause) closes the MSRP side and mails CC2 after the chat.
    client.expect_closed(Duration::from_secs(20)).await;
    assert_ladder_passed(sipp);
    let all = mails(&srv, 3);
    assert_eq!(
        all.len(),
        3,
        "two chat mails and the CC2 notification, nothing else"
    );
    let closed = parse(&all[2].1);
    assert_eq!(
        closed.header("Auto-Submitted").unwrap().as_text(),
        Some("auto-generated")
    );
    let second_id = second.message_id().unwrap();
    assert_eq!(closed.in_reply_to().as_text(), Some(second_id));
    // One SMTP connection for the whole session: every mail over it, then QUIT.
    let peers: std::collections::HashSet<String> = all
        .iter()
        .map(|(meta, _)| meta["peer"].to_string())
        .collect();
    assert_eq!(peers.len(), 1, "{peers:?}");
    wait_for(|| !srv.records("quit").is_empty(), "QUIT after the session");
    assert_eq!(
        srv.records("quit")[0]["peer"].to_string(),
        *peers.iter().next().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_iwf_active_connects_to_the_offered_path_binds_with_an_empty_send_and_carries_chat() {
    require_peers();
    let srv = server(&[]);
    let gw = gateway("auto-accept", &srv);
    let listener = MsrpListener::bind("cl13nt2").await;
    let port = listener.uri.port.unwrap();
    let sipp = Sipp::start(
        &gw,
        "f4-chat.xml",
        "actpass",
        port,
        "cl13nt2",
        "bob@example.net",
    );
    let (iwf_uri, setup) = tokio::task::block_in_place(|| sipp.answer());
    // RFC 6135 4.2: actpass offered, so the IWF is active and connects to the offered path.
    assert_eq!(setup, "active");
    let mut client = listener.accept(vec![iwf_uri.clone()], WAIT).await;
    // RFC 4975 5.4: the active side binds the connection with a SEND (empty here).
    let bind = client.expect_request(Method::Send, WAIT).await;
    assert!(bind.body.is_none(), "{bind:?}");
    assert_eq!(bind.to_path, vec![listener.uri.clone()]);
    assert_eq!(bind.from_path, vec![iwf_uri.clone()]);
    client.respond(&bind, 200).await;
    assert_eq!(
        send(&mut client, "actv1", "message/cpim", CPIM.as_bytes(), 2048).await,
        [200]
    );
    let all = mails(&srv, 1);
    let msg = parse(&all[0].1);
    assert!(msg.body_text(0).unwrap().starts_with("Lunch at noon?"));
    assert_ladder_passed(sipp);
    client.expect_closed(WAIT).await;
}

/// A chat message in CPIM with the OMA CPM Contribution-ID fields (BB2 msg-id row).
fn cpim_with_ids(text: &str, contribution_id: Option<&str>, in_reply_to: Option<&str>) -> String {
    let mut fields = String::new();
    if contribution_id.is_some() || in_reply_to.is_some() {
        fields.push_str("NS: cpm <http://www.openmobilealliance.org/cpm/>\r\n");
    }
    if let Some(id) = contribution_id {
        fields.push_str(&format!("cpm.Contribution-ID: {id}\r\n"));
    }
    if let Some(id) = in_reply_to {
        fields.push_str(&format!("cpm.InReplyTo-Contribution-ID: {id}\r\n"));
    }
    format!(
        "From: Alice <sip:alice@ims.example.com>\r\nTo: <mailto:bob@example.net>\r\n\
         {fields}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}"
    )
}

/// BB2 msg-id and In-Reply-To rows on a three-message exchange: a message's Contribution-ID
/// is its mail's Message-ID, its InReplyTo-Contribution-ID the In-Reply-To; a message
/// without them is threaded under the previous mail; References grows in every case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_three_messages_thread_by_their_contribution_ids_with_a_references_chain() {
    require_peers();
    let srv = server(&[]);
    let gw = gateway("auto-accept", &srv);
    let (sipp, _, _, mut client) = offered_active(&gw, "cl13nt9", "bob@example.net").await;
    let messages = [
        cpim_with_ids("first", Some("cm1"), None),
        cpim_with_ids("second", Some("cm2"), Some("cm1")),
        cpim_with_ids("third", None, None),
    ];
    for (i, body) in messages.iter().enumerate() {
        let id = format!("thr{i}");
        assert_eq!(
            send(&mut client, &id, "message/cpim", body.as_bytes(), 2048).await,
            [200]
        );
    }
    let all = mails(&srv, 3);
    let parsed: Vec<_> = all.iter().map(|(_, eml)| parse(eml)).collect();
    let id = |i: usize| parsed[i].message_id().unwrap().to_owned();
    let domain = id(0).split_once('@').unwrap().1.to_owned();
    let references = |i: usize| -> Vec<String> {
        match parsed[i].references() {
            mail_parser::HeaderValue::TextList(list) => {
                list.iter().map(|s| s.to_string()).collect()
            }
            mail_parser::HeaderValue::Text(one) => vec![one.to_string()],
            _ => Vec::new(),
        }
    };
    assert_eq!(id(0), format!("cm1@{domain}"));
    assert!(
        parsed[0].in_reply_to().is_empty(),
        "the first mail of an F1 session"
    );
    assert!(references(0).is_empty());
    assert_eq!(id(1), format!("cm2@{domain}"));
    assert_eq!(parsed[1].in_reply_to().as_text(), Some(id(0).as_str()));
    assert_eq!(references(1), [id(0)]);
    assert!(
        id(2).starts_with("iwf."),
        "no Contribution-ID: a generated id, {}",
        id(2)
    );
    assert_eq!(parsed[2].in_reply_to().as_text(), Some(id(1).as_str()));
    assert_eq!(references(2), [id(0), id(1)]);
    assert!(parsed[2].body_text(0).unwrap().starts_with("third"));
    assert_ladder_passed(sipp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_a_mail_the_server_refuses_for_good_gets_200_then_a_failure_report_with_the_smtp_reply()
{
    require_peers();
    let srv = server(&["--refuse-rcpt", "carol@example.net"]);
    let gw = gateway("auto-accept", &srv);
    let (sipp, _, _, mut client) = offered_active(&gw, "cl13nt4", "carol@example.net").await;
    let sent = client
        .send_message(
            "carol1",
            "text/plain",
            b"Hello Carol",
            2048,
            (false, FailureReport::Yes),
        )
        .await;
    // Issue 15: the 200 says the IWF took the message (it is spooled), not that it went.
    assert_eq!(client.expect_response(&sent[0], WAIT).await, 200);
    // F4 step 4: RCPT 550 is final: a failure REPORT (RFC 4975 7.1.2), 403 with the SMTP
    // reply in the comment, and no second attempt.
    let report = client.expect_request(Method::Report, WAIT).await;
    assert_eq!(report.message_id(), Some("carol1"));
    let status = report.headers.iter().find_map(|h| match h {
        Header::Status(status) => Some(status.clone()),
        _ => None,
    });
    let status = status.expect("a Status header");
    assert_eq!(status.code, 403);
    let comment = status.comment.unwrap_or_default();
    assert!(comment.contains("550"), "{comment}");
    assert!(srv.mails().is_empty());
    assert_eq!(gw.metric("iwf_spool_retries_total{spool=\"outbound\"}"), 0);
    assert_ladder_passed(sipp);
}

/// Issue 15: a mail server that answers 451 for a minute. The message is answered 200 at
/// once (spooled), tried again with back-off, mailed once the server recovers, and its
/// Success REPORT follows; the spool is empty again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_a_chat_mail_refused_451_for_a_minute_arrives_after_the_recovery_then_a_success_report()
{
    require_peers();
    let srv = server(&["--refuse-data-for", "60"]);
    let keys = Keys {
        outbound: "chat_retry_initial_ms = 500\nchat_retry_max_ms = 4000\n",
        ..Keys::default()
    };
    let gw = gateway_keyed("auto-accept", &srv, keys);
    let port = common::free_port();
    let msrp_port = port.to_string();
    let keys = [
        ("setup", "active"),
        ("msrp_port", msrp_port.as_str()),
        ("client_session", "m1nut3"),
        ("rcpt", "bob@example.net"),
        ("privacy", "none"),
    ];
    let sipp = Sipp::run_within(&gw, "f4-chat-long.xml", "m1nut3", &keys, "120s");
    let (iwf_uri, _) = tokio::task::block_in_place(|| sipp.answer());
    let mut client = MsrpClient::connect(gw.msrp, client_uri(port, "m1nut3"), vec![iwf_uri]).await;
    let started = std::time::Instant::now();
    let sent = client
        .send_message(
            "late1",
            "text/plain",
            b"see you at noon",
            2048,
            (true, FailureReport::Yes),
        )
        .await;
    assert_eq!(client.expect_response(&sent[0], WAIT).await, 200);
    assert!(srv.mails().is_empty(), "answered before any mail was taken");
    assert_eq!(gw.metric("iwf_spool_depth{spool=\"outbound\"}"), 1);

    let report = client
        .expect_request(Method::Report, Duration::from_secs(80))
        .await;
    let waited = started.elapsed();
    assert_eq!(report.message_id(), Some("late1"));
    assert_eq!(status_of(&report), Some(200));
    assert!(waited >= Duration::from_secs(55), "{waited:?}");
    let all = mails(&srv, 1);
    assert!(
        parse(&all[0].1)
            .body_text(0)
            .unwrap()
            .starts_with("see you at noon")
    );
    let refused = srv
        .record("refused-data")
        .map_or(0, |r| r["mails"].as_u64().unwrap());
    assert!(refused >= 5, "attempts refused: {refused}");
    assert!(gw.metric("iwf_spool_retries_total{spool=\"outbound\"}") >= 5);
    // The REPORT went after its row left the spool's queue; the commit follows at once.
    tokio::task::block_in_place(|| gw.wait_spool_empty(WAIT));
    assert_eq!(srv.mails().len(), 1, "mailed once");
    assert_ladder_passed(sipp);
}

/// `[smtp.outbound] chat_max_waiting`: while the mail server refuses, a session's chat
/// messages wait, at most that many; one more waits for room before its 200 and, none
/// coming within half of `disposition_timeout_ms`, is refused 403 (no 200 for what the
/// gateway will not hold). Once the server takes the waiting ones, there is room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_beyond_chat_max_waiting_a_message_waits_for_room_then_is_refused_403() {
    require_peers();
    let srv = server(&["--refuse-data-for", "3"]);
    let keys = Keys {
        msrp: "disposition_timeout_ms = 2000\nheld_max_messages = 2\n",
        outbound: "chat_retry_initial_ms = 500\nchat_retry_max_ms = 1000\nchat_max_waiting = 2\n",
        ..Keys::default()
    };
    let gw = gateway_keyed("auto-accept", &srv, keys);
    let (sipp, _, _, mut client) = offered_active(&gw, "w41t1ng", "bob@example.net").await;
    let mut codes = Vec::new();
    for n in 1..=3 {
        let text = format!("waiting {n}");
        let sent = client
            .send_message(
                &format!("wait{n}"),
                "text/plain",
                text.as_bytes(),
                2048,
                (false, FailureReport::Yes),
            )
            .await;
        codes.push(client.expect_response(&sent[0], WAIT).await);
    }
    assert_eq!(codes, [200, 200, 403]);
    let all = mails(&srv, 2);
    let bodies = bodies(&all);
    assert!(bodies[0].starts_with("waiting 1"), "{bodies:?}");
    assert!(bodies[1].starts_with("waiting 2"), "{bodies:?}");
    // The server took them: room again.
    let sent = client
        .send_message(
            "wait4",
            "text/plain",
            b"waiting 4",
            2048,
            (false, FailureReport::Yes),
        )
        .await;
    assert_eq!(client.expect_response(&sent[0], WAIT).await, 200);
    let all = mails(&srv, 3);
    assert!(
        parse(&all[2].1)
            .body_text(0)
            .unwrap()
            .starts_with("waiting 4")
    );
    assert_ladder_passed(sipp);
    let refused_mailed = srv.mails().iter().any(|(_, eml)| {
        parse(eml)
            .body_text(0)
            .is_some_and(|b| b.starts_with("waiting 3"))
    });
    assert!(!refused_mailed, "the refused one is not mailed");
}

/// RFC 4975 Message-IDs are unique in a session: a message sent again under the same one
/// (its sender saw no 200) is answered 200 and mailed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_a_message_sent_again_under_its_message_id_gets_200_and_is_mailed_once() {
    require_peers();
    let srv = server(&[]);
    let gw = gateway("auto-accept", &srv);
    let (sipp, _, _, mut client) = offered_active(&gw, "tw1c3", "bob@example.net").await;
    for (id, text) in [
        ("twice", "said once"),
        ("twice", "said once"),
        ("other", "then this"),
    ] {
        let sent = client
            .send_message(
                id,
                "text/plain",
                text.as_bytes(),
                2048,
                (false, FailureReport::Yes),
            )
            .await;
        assert_eq!(client.expect_response(&sent[0], WAIT).await, 200);
    }
    let all = mails(&srv, 2);
    let bodies = bodies(&all);
    assert!(bodies[0].starts_with("said once"), "{bodies:?}");
    assert!(bodies[1].starts_with("then this"), "{bodies:?}");
    assert_ladder_passed(sipp);
    let said = srv
        .mails()
        .iter()
        .filter(|(_, eml)| {
            parse(eml)
                .body_text(0)
                .is_some_and(|b| b.starts_with("said once"))
        })
        .count();
    assert_eq!(said, 1, "mailed once");
}
