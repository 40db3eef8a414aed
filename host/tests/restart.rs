//! Issue 15, end to end: what the gateway acknowledged survives `kill -9`. The gateway runs
//! on its durable store (`[store] path` in the test's folder) and fixed ports; sipp is the
//! CPM client's SIP side, the MSRP test client its chat side, aiosmtpd the e-mail user's
//! server and swaks the e-mail user.
//!
//! Needs `python3-aiosmtpd`, `sip-tester` and `swaks`: without them a test fails, naming
//! what to install (`tests/run.sh` installs them).

mod common;

use common::chat::{Gateway, Sipp, address, client_uri, durable_gateway, mails, parse};
use common::mail::server;
use common::msrp::{MsrpClient, MsrpListener};
use common::peers::{self, Peer};
use common::user::{answer, plain, reply, send, swaks};
use iwf::cpim;
use iwf::msrp::Method;
use std::time::{Duration, Instant};
use tokio::task::block_in_place;

const WAIT: Duration = Duration::from_secs(10);

fn require_peers() {
    peers::require(&[Peer::Aiosmtpd, Peer::Sipp, Peer::Swaks]);
}

/// Waits until `GET /sessions` shows a session in `phase`.
fn wait_for_phase(gw: &Gateway, phase: &str) {
    let deadline = Instant::now() + WAIT;
    let wanted = format!("\"phase\":\"{phase}\"");
    loop {
        let (status, body) = common::http(gw.admin, "GET", "/sessions").unwrap();
        if status == 200 && body.contains(&wanted) {
            return;
        }
        assert!(Instant::now() < deadline, "no session {phase}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_invitation_survives_kill_9_then_accept_chat_and_leave_use_its_dialog() {
    require_peers();
    let srv = server(&[]);
    let mut gw = durable_gateway("default", &srv);
    // actpass: the IWF connects the chat once the e-mail user accepts (5.2.4.2.4).
    let listener = MsrpListener::bind("r3st0rd").await;
    let port = listener.uri.port.unwrap();
    let sipp = Sipp::start(
        &gw,
        "f3-iwf-ends.xml",
        "actpass",
        port,
        "r3st0rd",
        "bob@example.net",
    );
    let (iwf_uri, setup) = block_in_place(|| sipp.answer());
    assert_eq!(setup, "active");
    let invitation = block_in_place(|| mails(&srv, 1)).remove(0).1;
    block_in_place(|| wait_for_phase(&gw, "awaiting-answer"));

    block_in_place(|| gw.kill_and_restart());
    assert_eq!(
        gw.metric("iwf_sessions_recovered_total{phase=\"invited\",outcome=\"waiting\"}"),
        1
    );
    block_in_place(|| wait_for_phase(&gw, "awaiting-answer"));

    // The reply to the invitation mailed before the crash finds its session.
    answer(&gw, &invitation, "bob@example.net", "accept");
    let mut client = listener.accept(vec![iwf_uri], WAIT).await;
    let bind = client.expect_request(Method::Send, WAIT).await;
    client.respond(&bind, 200).await;
    // CPM -> e-mail: mailed in the invitation's thread.
    assert_eq!(
        send(&mut client, "aftr1", "text/plain", b"still there?").await,
        200
    );
    let chat_mail = block_in_place(|| mails(&srv, 2)).remove(1).1;
    let msg = parse(&chat_mail);
    assert!(msg.body_text(0).unwrap().starts_with("still there?"));
    assert_eq!(
        msg.in_reply_to().as_text(),
        parse(&invitation).message_id(),
        "the thread goes on from the invitation"
    );
    // E-mail -> CPM: a reply to that chat mail reaches the chat.
    let to = address(&msg, "From").1;
    let mail = reply(&chat_mail, "bob@example.net", "", &plain("yes, here"));
    // 250 only once the CPM side took the SEND: swaks waits while the client answers.
    let smtp = gw.smtp;
    let said = std::thread::spawn(move || swaks(smtp, "bob@example.net", &to, &mail));
    let sent = client.expect_request(Method::Send, WAIT).await;
    client.respond(&sent, 200).await;
    let said = block_in_place(|| said.join().unwrap());
    assert!(said.starts_with("250"), "{said}");
    let cpim = cpim::Message::parse(&sent.body.unwrap().data).unwrap();
    assert!(
        String::from_utf8_lossy(&cpim.body).starts_with("yes, here"),
        "{cpim:?}"
    );
    // Leave: the BYE goes in the dialog of before the crash, and sipp's ladder passes.
    answer(&gw, &invitation, "bob@example.net", "leave");
    let reason = block_in_place(|| sipp.bye_reason());
    assert!(reason.contains("cause=200"), "{reason}");
    assert!(block_in_place(|| sipp.passed()), "sipp F3 ladder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_session_after_kill_9_gets_a_bye_whose_reason_says_the_chat_was_lost() {
    require_peers();
    let srv = server(&[]);
    let mut gw = durable_gateway("auto-accept", &srv);
    let port = common::free_port();
    let sipp = Sipp::start(
        &gw,
        "f3-iwf-ends.xml",
        "active",
        port,
        "l1v3s3ss",
        "bob@example.net",
    );
    let (iwf_uri, _) = block_in_place(|| sipp.answer());
    let mut client =
        MsrpClient::connect(gw.msrp, client_uri(port, "l1v3s3ss"), vec![iwf_uri]).await;
    let bind = client.empty_send();
    client.send_frame(&bind).await;
    assert_eq!(client.expect_response(&bind, WAIT).await, 200);
    block_in_place(|| wait_for_phase(&gw, "live"));

    block_in_place(|| gw.kill_and_restart());
    let reason = block_in_place(|| sipp.bye_reason());
    assert!(reason.contains("cause=480"), "{reason}");
    assert!(reason.contains("restarted"), "{reason}");
    assert!(block_in_place(|| sipp.passed()), "sipp answered the BYE");
    assert_eq!(
        gw.metric("iwf_sessions_recovered_total{phase=\"live\",outcome=\"ended\"}"),
        1
    );
    // Its BYE answered, the session is gone from the store: a second restart finds none.
    let deadline = Instant::now() + WAIT;
    while !common::http(gw.admin, "GET", "/sessions")
        .unwrap()
        .1
        .contains("[]")
    {
        assert!(Instant::now() < deadline, "the ended session stayed");
        std::thread::sleep(Duration::from_millis(50));
    }
    block_in_place(|| gw.kill_and_restart());
    assert_eq!(
        gw.metric("iwf_sessions_recovered_total{phase=\"live\",outcome=\"ended\"}"),
        0
    );
}
