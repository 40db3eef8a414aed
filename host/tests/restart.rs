//! Issue 15, end to end: what the gateway acknowledged survives `kill -9`, and SIGTERM
//! drains. The gateway runs
//! on its durable store (`[store] path` in the test's folder) and fixed ports; sipp is the
//! CPM client's SIP side, the MSRP test client its chat side, aiosmtpd the e-mail user's
//! server and swaks the e-mail user.
//!
//! Needs `python3-aiosmtpd`, `sip-tester` and `swaks`: without them a test fails, naming
//! what to install (`tests/run.sh` installs them).

mod common;

use common::chat::{
    Gateway, Keys, Sipp, address, bodies, client_uri, durable_gateway, durable_gateway_keyed,
    mails, parse,
};
use common::mail::server;
use common::msrp::{MsrpClient, MsrpListener};
use common::peers::{self, Peer};
use common::user::{answer, plain, reply, send, swaks};
use iwf::cpim;
use iwf::msrp::{FailureReport, Method};
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

/// An F1 session to bob@example.net played by sipp's `scenario` (the IWF passive), its
/// chat connected by the MSRP test client and bound (session-id `session`), and live; the
/// client's MSRP port and the IWF's path, to connect again after a restart.
async fn live_chat(
    gw: &Gateway,
    scenario: &str,
    session: &str,
) -> (Sipp, MsrpClient, u16, iwf::sdp::MsrpUri) {
    let port = common::free_port();
    let sipp = Sipp::start(gw, scenario, "active", port, session, "bob@example.net");
    let (iwf_uri, _) = block_in_place(|| sipp.answer());
    let client = connect_chat(gw, port, session, iwf_uri.clone()).await;
    (sipp, client, port, iwf_uri)
}

/// The MSRP test client on `port` (session-id `session`) connected to the IWF's `path`
/// and bound by an empty SEND (RFC 6714 4.3); once the session shows live.
async fn connect_chat(
    gw: &Gateway,
    port: u16,
    session: &str,
    path: iwf::sdp::MsrpUri,
) -> MsrpClient {
    let mut client = MsrpClient::connect(gw.msrp, client_uri(port, session), vec![path]).await;
    let bind = client.empty_send();
    client.send_frame(&bind).await;
    assert_eq!(client.expect_response(&bind, WAIT).await, 200);
    block_in_place(|| wait_for_phase(gw, "live"));
    client
}

/// Sends one text/plain chat message, no success REPORT asked; its 200 (it is spooled).
async fn send_chat(client: &mut MsrpClient, message_id: &str, text: &str) {
    let reports = (false, FailureReport::Yes);
    let sent = client
        .send_message(message_id, "text/plain", text.as_bytes(), 2048, reports)
        .await;
    assert_eq!(client.expect_response(&sent[0], WAIT).await, 200);
}

/// Keys that retry a refused chat mail soon (the server refuses for seconds, not hours).
const RETRY_SOON: Keys = Keys {
    msrp: "",
    outbound: "chat_retry_initial_ms = 300\nchat_retry_max_ms = 1000\n",
    store: "",
};

/// Waits until the one mail `srv` takes, and a moment more for a copy; its body.
fn the_one_mail(srv: &common::mail::Server) -> String {
    let all = mails(srv, 1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(srv.mails().len(), 1, "mailed exactly once");
    parse(&all[0].1).body_text(0).unwrap().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_message_answered_200_survives_kill_9_and_is_mailed_once_after_the_restart() {
    require_peers();
    // The server refuses for 6 s: the message is spooled, not mailed, at the crash.
    let srv = server(&["--refuse-data-for", "6"]);
    let mut gw = durable_gateway_keyed("auto-accept", &srv, RETRY_SOON);
    let (sipp, mut client, ..) = live_chat(&gw, "f3-reinvite-refused.xml", "sp00l3d").await;
    send_chat(&mut client, "spooled1", "taken before the crash").await;
    assert!(srv.mails().is_empty());

    block_in_place(|| gw.kill_and_restart());
    // The chat connection died with the process; the CPM side refuses the new one.
    let reason = block_in_place(|| sipp.bye_reason());
    assert!(reason.contains("cause=488"), "{reason}");
    assert_eq!(gw.metric("iwf_spool_depth{spool=\"outbound\"}"), 1);
    // The message the IWF answered 200 for is mailed once the server recovers, once.
    let body = block_in_place(|| the_one_mail(&srv));
    assert!(body.starts_with("taken before the crash"), "{body}");
    assert!(block_in_place(|| sipp.passed()), "sipp answered the BYE");
    gw.wait_spool_empty(WAIT);
    // Nothing left: a second restart mails nothing again.
    block_in_place(|| gw.kill_and_restart());
    assert_eq!(gw.metric("iwf_spool_depth{spool=\"outbound\"}"), 0);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(srv.mails().len(), 1);
}

/// A number from the OS's randomness (through std's hasher keys), for a test's moment.
fn random_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % n
}

/// Issue 15: F4 under load, `kill -9` at a moment chosen at random (printed). Every message
/// answered 200 is mailed after the restart; a message mailed twice (the crash came
/// between its mail and the commit of its row's delete) carries the same Message-ID both
/// times; nothing that was not sent is mailed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_load_kill_9_at_a_random_moment_loses_no_message_answered_200() {
    require_peers();
    const TOTAL: usize = 5_000;
    let srv = server(&[]);
    let mut gw = durable_gateway("auto-accept", &srv);
    let (sipp, mut client, ..) = live_chat(&gw, "f3-reinvite-refused.xml", "l04d3d").await;
    let kill_after = Duration::from_millis(500 + random_below(2_500));
    println!("kill -9 after {kill_after:?} of sending");
    let pid = gw.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(kill_after);
        common::chat::signal_process(pid, "KILL");
    });
    let mut answered = Vec::new();
    let mut sent = 0;
    for n in 0..TOTAL {
        let text = format!("chat message {n}");
        let reports = (false, FailureReport::Yes);
        let chunks = client
            .send_message(
                &format!("load{n}"),
                "text/plain",
                text.as_bytes(),
                2048,
                reports,
            )
            .await;
        sent = n + 1;
        match client.next_frame(WAIT).await {
            Ok(frame) if frame.transact_id == chunks[0].transact_id => {
                assert_eq!(status_code(&frame), Some(200), "{frame:?}");
                answered.push(n);
            }
            Ok(frame) => panic!("not the response to load{n}: {frame:?}"),
            Err(_) => break, // the gateway is gone
        }
    }
    killer.join().unwrap();
    assert!(sent < TOTAL, "the kill came after the load");
    block_in_place(|| {
        gw.exited(WAIT);
        gw.start_again();
    });
    println!(
        "{} of {sent} sent answered 200 before the kill",
        answered.len()
    );
    let reason = block_in_place(|| sipp.bye_reason());
    assert!(reason.contains("cause=488"), "{reason}");
    block_in_place(|| gw.wait_spool_empty(Duration::from_secs(120)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Each mail: the message's number and its Message-ID.
    let mut mailed: std::collections::HashMap<usize, Vec<String>> = Default::default();
    for (_, eml) in srv.mails() {
        let mail = parse(&eml);
        let body = mail.body_text(0).unwrap().into_owned();
        let Some(n) = body
            .strip_prefix("chat message ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
        else {
            continue; // the session's CC2 notification, if the policy sends one
        };
        mailed
            .entry(n)
            .or_default()
            .push(mail.message_id().unwrap().to_owned());
    }
    let lost: Vec<&usize> = answered
        .iter()
        .filter(|n| !mailed.contains_key(n))
        .collect();
    assert!(lost.is_empty(), "answered 200, never mailed: {lost:?}");
    assert!(mailed.keys().all(|n| *n < sent), "mailed, never sent");
    let copies: Vec<(&usize, &Vec<String>)> =
        mailed.iter().filter(|(_, ids)| ids.len() > 1).collect();
    for (n, ids) in &copies {
        assert!(
            ids.iter().all(|id| id == &ids[0]),
            "message {n}: copies under other Message-IDs {ids:?}"
        );
    }
    println!(
        "mailed {} messages, {} of them twice (same Message-ID)",
        mailed.len(),
        copies.len()
    );
}

/// The status code of a response frame.
fn status_code(frame: &iwf::msrp::Frame) -> Option<u16> {
    match frame.start {
        iwf::msrp::StartLine::Response { code, .. } => Some(code),
        iwf::msrp::StartLine::Request(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_closed_with_chat_messages_spooled_keeps_them_across_kill_9() {
    require_peers();
    // The CPM side leaves (f4-chat.xml's BYE at 8 s) while the server still refuses.
    let srv = server(&["--refuse-data-for", "14"]);
    let mut gw = durable_gateway_keyed("auto-accept", &srv, RETRY_SOON);
    let (sipp, mut client, ..) = live_chat(&gw, "f4-chat.xml", "cl0s3d").await;
    send_chat(&mut client, "closed1", "first, still spooled").await;
    send_chat(&mut client, "closed2", "second, still spooled").await;
    assert!(block_in_place(|| sipp.passed()), "sipp F4 ladder");
    // The session is over; its row stays ("closed") for its spooled messages.
    block_in_place(|| gw.kill_and_restart());
    assert_eq!(
        gw.metric("iwf_sessions_recovered_total{phase=\"closed\",outcome=\"mailing\"}"),
        1
    );
    let all = mails(&srv, 2);
    let bodies = bodies(&all);
    assert!(bodies[0].starts_with("first, still spooled"), "{bodies:?}");
    assert!(bodies[1].starts_with("second, still spooled"), "{bodies:?}");
    // Threaded: the second replies to the first, as before the crash.
    let first_id = parse(&all[0].1).message_id().unwrap().to_owned();
    assert_eq!(
        parse(&all[1].1).in_reply_to().as_text(),
        Some(first_id.as_str())
    );
    // Its last message mailed, the closed session's row goes: the next start finds none.
    gw.wait_spool_empty(WAIT);
    std::thread::sleep(Duration::from_millis(500));
    block_in_place(|| gw.kill_and_restart());
    assert_eq!(
        gw.metric("iwf_sessions_recovered_total{phase=\"closed\",outcome=\"mailing\"}"),
        0
    );
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
    // Restored parked: in the store only, until its reply brings it back (issue 15).
    block_in_place(|| gw.wait_metric("iwf_sessions_parked", 1, WAIT));
    assert_eq!(gw.metric("iwf_mail_sessions"), 0);

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
    // 250 once spooled; the SEND follows from the spool.
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

/// Issue 15 step 3: the chat connection died with the process, so the restarted IWF offers
/// a new one in the session's dialog (RFC 4975 8.4): the client connects to it, and chat
/// flows both ways in the mail thread of before the crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_session_after_kill_9_gets_a_re_invite_and_the_chat_goes_on_in_its_thread() {
    require_peers();
    let srv = server(&[]);
    let mut gw = durable_gateway("auto-accept", &srv);
    let session = "r31nv1t3";
    let (sipp, mut client, port, iwf_uri) = live_chat(&gw, "f3-reinvited.xml", session).await;
    send_chat(&mut client, "b4crash", "before the crash").await;
    let before = block_in_place(|| mails(&srv, 1)).remove(0).1;
    // The crash comes once that mail left the spool: a crash between the mail's 250 and the
    // commit would send a copy (same Message-ID) after the restart, the spool tests' case.
    block_in_place(|| gw.wait_spool_empty(WAIT));

    block_in_place(|| gw.kill_and_restart());
    drop(client);
    // The offer: the IWF's path of before, either role (RFC 6135), a newer o= version.
    let (path, setup, origin) = block_in_place(|| sipp.reinvite());
    assert_eq!(path, iwf_uri);
    assert_eq!(setup, "actpass");
    let version: u64 = origin.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(version > 0, "{origin}");
    assert_eq!(
        gw.metric("iwf_sessions_recovered_total{phase=\"live\",outcome=\"reconnecting\"}"),
        1
    );
    // sipp answered a=setup:active: the client connects and binds (RFC 6714 4.3).
    let mut client = connect_chat(&gw, port, session, path).await;

    // CPM -> e-mail: the thread of before the crash goes on.
    send_chat(&mut client, "aftr1", "after the crash").await;
    let chat_mail = block_in_place(|| mails(&srv, 2)).remove(1).1;
    let msg = parse(&chat_mail);
    assert!(msg.body_text(0).unwrap().starts_with("after the crash"));
    assert_eq!(msg.in_reply_to().as_text(), parse(&before).message_id());
    // E-mail -> CPM over the new connection; 250 once the client took it.
    let to = address(&msg, "From").1;
    let mail = reply(&chat_mail, "bob@example.net", "", &plain("welcome back"));
    let smtp = gw.smtp;
    let said = std::thread::spawn(move || swaks(smtp, "bob@example.net", &to, &mail));
    let sent = client.expect_request(Method::Send, WAIT).await;
    client.respond(&sent, 200).await;
    let said = block_in_place(|| said.join().unwrap());
    assert!(said.starts_with("250"), "{said}");
    let cpim = cpim::Message::parse(&sent.body.unwrap().data).unwrap();
    assert!(String::from_utf8_lossy(&cpim.body).starts_with("welcome back"));
    // Leave: the BYE goes in the original dialog, after the re-INVITE's CSeq.
    answer(&gw, &chat_mail, "bob@example.net", "leave");
    let reason = block_in_place(|| sipp.bye_reason());
    assert!(reason.contains("cause=200"), "{reason}");
    assert!(block_in_place(|| sipp.passed()), "sipp's re-INVITE ladder");
}

/// Issue 15 step 3: a CPM side that refuses the new connection gets a BYE whose Reason
/// says why (RFC 3326), and the session leaves the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_session_whose_re_invite_is_refused_after_kill_9_gets_a_bye_that_says_why() {
    require_peers();
    let srv = server(&[]);
    let mut gw = durable_gateway("auto-accept", &srv);
    let (sipp, _client, ..) = live_chat(&gw, "f3-reinvite-refused.xml", "r3fus3d").await;

    block_in_place(|| gw.kill_and_restart());
    let (_, setup, _) = block_in_place(|| sipp.reinvite());
    assert_eq!(setup, "actpass");
    let reason = block_in_place(|| sipp.bye_reason());
    assert!(reason.contains("cause=488"), "{reason}");
    assert!(reason.contains("re-INVITE"), "{reason}");
    assert!(block_in_place(|| sipp.passed()), "sipp answered the BYE");
    assert_eq!(
        gw.metric("iwf_sessions_recovered_total{phase=\"live\",outcome=\"reconnecting\"}"),
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
        gw.metric("iwf_sessions_recovered_total{phase=\"live\",outcome=\"reconnecting\"}"),
        0
    );
}

/// An INVITE over UDP from a socket of the test's; the first final response to it.
fn invite_over_udp(sip: std::net::SocketAddr) -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = socket.local_addr().unwrap();
    let sdp = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=message 9 TCP/MSRP *\r\na=accept-types:text/plain\r\n\
               a=path:msrp://127.0.0.1:9/dr41n;tcp\r\n";
    let invite = format!(
        "INVITE mailto:carol@example.net SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-dr41n;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@ims.example.com>;tag=d1\r\nTo: <mailto:carol@example.net>\r\n\
         Call-ID: drain-{me}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    socket.send_to(invite.as_bytes(), sip).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = vec![0; 65536];
    loop {
        let n = socket.recv(&mut buf).expect("a response to the INVITE");
        let response = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !response.starts_with("SIP/2.0 1") {
            return response;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_call_in_flight_refuses_new_ones_exits_0_and_the_next_start_carries_on()
 {
    require_peers();
    // The invitation takes 1.5 s to be taken: the INVITE is in flight when SIGTERM comes.
    let srv = server(&["--delay-mail", "1.5"]);
    let mut gw = durable_gateway("default", &srv);
    let listener = MsrpListener::bind("dr41nng").await;
    let port = listener.uri.port.unwrap();
    let sipp = Sipp::start(
        &gw,
        "f3-iwf-ends.xml",
        "actpass",
        port,
        "dr41nng",
        "bob@example.net",
    );
    block_in_place(|| wait_for_phase(&gw, "pending-invitation"));

    gw.signal("TERM");
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = common::http(gw.admin, "GET", "/healthz").unwrap();
        if status == 503 {
            assert_eq!(body, "draining\n");
            break;
        }
        assert!(Instant::now() < deadline, "/healthz never said draining");
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = block_in_place(|| invite_over_udp(gw.sip));
    assert!(refused.starts_with("SIP/2.0 503 "), "{refused}");
    assert!(refused.contains("\r\nRetry-After: 20\r\n"), "{refused}");
    // The call in flight got its 200 OK and was acknowledged before the exit.
    let (_, setup) = block_in_place(|| sipp.answer());
    assert_eq!(setup, "active");
    let status = block_in_place(|| gw.exited(WAIT));
    assert!(status.success(), "{status}");
    assert_eq!(srv.mails().len(), 1, "the invitation was mailed once");

    block_in_place(|| gw.start_again());
    assert_eq!(
        gw.metric("iwf_sessions_recovered_total{phase=\"invited\",outcome=\"waiting\"}"),
        1
    );
    let invitation = block_in_place(|| mails(&srv, 1)).remove(0).1;
    answer(&gw, &invitation, "bob@example.net", "reject");
    let reason = block_in_place(|| sipp.bye_reason());
    assert!(reason.contains("cause=603"), "{reason}");
    assert!(block_in_place(|| sipp.passed()), "sipp F3 ladder");
}

/// Sends `mails` (numbers) over one SMTP connection to `smtp`, one transaction each,
/// from bob@example.net to `to`, each a reply in `thread` with Message-ID
/// `<f5-N@example.net>` and text `f5 mail N`; the numbers whose data got 250. Stops when
/// the connection goes (the gateway was killed).
fn smtp_load(
    smtp: std::net::SocketAddr,
    to: &str,
    thread: &str,
    mails: std::ops::Range<usize>,
) -> Vec<usize> {
    use std::io::{BufRead, BufReader, Write};
    let Ok(stream) = std::net::TcpStream::connect(smtp) else {
        return Vec::new();
    };
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    // A reply's last line (multi-line replies: `250-...`, then `250 ...`).
    let mut reply = move || -> Option<String> {
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) if line.as_bytes().get(3) == Some(&b'-') => continue,
                Ok(_) => return Some(line),
            }
        }
    };
    let mut say = |text: &str| writer.write_all(text.as_bytes()).is_ok();
    let mut taken = Vec::new();
    if reply().is_none() || !say("EHLO mail.example.net\r\n") || reply().is_none() {
        return taken;
    }
    for n in mails {
        let message = format!(
            "From: Bob <bob@example.net>\r\nTo: <{to}>\r\nSubject: Re: chat\r\n\
             Message-ID: <f5-{n}@example.net>\r\nIn-Reply-To: {thread}\r\n\
             References: {thread}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             f5 mail {n}\r\n.\r\n"
        );
        let envelope = format!("MAIL FROM:<bob@example.net>\r\nRCPT TO:<{to}>\r\nDATA\r\n");
        // Pipelined envelope (RFC 2920), then the data once 354 came.
        if !say(&envelope) {
            break;
        }
        let (Some(_), Some(_), Some(data)) = (reply(), reply(), reply()) else {
            break;
        };
        if !data.starts_with("354") {
            let _ = say("RSET\r\n");
            if reply().is_none() {
                break;
            }
            continue;
        }
        if !say(&message) {
            break;
        }
        match reply() {
            Some(r) if r.starts_with("250") => taken.push(n),
            Some(_) => {}
            None => break,
        }
    }
    taken
}

/// Receives every SEND on `client`, answering each 200, into `got`: (MSRP Message-ID,
/// text) in arrival order; until the connection goes or `stop` is set.
async fn collect_sends(
    mut client: MsrpClient,
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    while !stop.load(Ordering::Relaxed) {
        match client.next_frame(Duration::from_millis(200)).await {
            Ok(frame) if frame.method() == Some(&Method::Send) => {
                client.respond(&frame, 200).await;
                let Some(body) = &frame.body else { continue };
                let cpim = cpim::Message::parse(&body.data).unwrap();
                let text = String::from_utf8_lossy(&cpim.body).into_owned();
                let id = frame.message_id().unwrap_or_default().to_owned();
                got.lock().unwrap().push((id, text));
            }
            Ok(_) | Err(common::msrp::NextError::Timeout) => {}
            Err(_) => return,
        }
    }
}

/// Issue 15: F5 under load, `kill -9` at a moment chosen at random (printed), then a
/// restart and the re-INVITE. Every mail that got its 250 is delivered over MSRP, after
/// the restart if not before; a mail delivered twice (the crash came between its SEND's
/// 200 and the commit of its record) carries the same MSRP Message-ID both times, so the
/// CPM side sees one message (RFC 4975 7.1.1); nothing that was not sent is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f5_load_kill_9_at_a_random_moment_loses_no_mail_answered_250() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    require_peers();
    const TOTAL: usize = 5_000;
    let srv = server(&[]);
    let mut gw = durable_gateway("auto-accept", &srv);
    let session = "f5l04d";
    let (sipp, mut client, port, _) = live_chat(&gw, "f3-reinvited.xml", session).await;
    // The chat mail the e-mail user's mails reply to.
    send_chat(&mut client, "f5start", "mail me").await;
    let chat_mail = block_in_place(|| mails(&srv, 1)).remove(0).1;
    let msg = parse(&chat_mail);
    let to = address(&msg, "From").1;
    let thread = format!("<{}>", msg.message_id().unwrap());

    let got = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let before = tokio::spawn(collect_sends(client, got.clone(), stop.clone()));
    let kill_after = Duration::from_millis(500 + random_below(2_500));
    println!("kill -9 after {kill_after:?} of sending");
    let pid = gw.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(kill_after);
        common::chat::signal_process(pid, "KILL");
    });
    let smtp = gw.smtp;
    let senders: Vec<_> = (0..2)
        .map(|s| {
            let (to, thread) = (to.clone(), thread.clone());
            std::thread::spawn(move || {
                smtp_load(smtp, &to, &thread, s * TOTAL / 2..(s + 1) * TOTAL / 2)
            })
        })
        .collect();
    let taken: Vec<usize> = block_in_place(|| {
        senders
            .into_iter()
            .flat_map(|s| s.join().unwrap())
            .collect()
    });
    killer.join().unwrap();
    before.await.unwrap();
    let delivered_before = got.lock().unwrap().len();
    println!(
        "{} mails answered 250 before the kill, {delivered_before} delivered",
        taken.len()
    );
    assert!(taken.len() < TOTAL, "the kill came after the load");
    assert!(!taken.is_empty(), "no mail was taken before the kill");

    block_in_place(|| {
        gw.exited(WAIT);
        gw.start_again();
    });
    let (path, _, _) = block_in_place(|| sipp.reinvite());
    let client = connect_chat(&gw, port, session, path).await;
    let after = tokio::spawn(collect_sends(client, got.clone(), stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(120);
    while gw.metric("iwf_spool_depth{spool=\"inbound\"}") != 0 {
        assert!(Instant::now() < deadline, "the inbound spool did not empty");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    after.await.unwrap();

    // Each mail delivered: its number and the MSRP Message-IDs it came under.
    let mut delivered: std::collections::HashMap<usize, Vec<String>> = Default::default();
    for (id, text) in got.lock().unwrap().iter() {
        let n: usize = text
            .strip_prefix("f5 mail ")
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("not a mail of the load: {text:?}"));
        delivered.entry(n).or_default().push(id.clone());
    }
    let lost: Vec<&usize> = taken
        .iter()
        .filter(|n| !delivered.contains_key(n))
        .collect();
    assert!(lost.is_empty(), "answered 250, never delivered: {lost:?}");
    assert!(
        delivered.keys().all(|n| *n < TOTAL),
        "delivered, never sent"
    );
    let copies: Vec<_> = delivered.iter().filter(|(_, ids)| ids.len() > 1).collect();
    for (n, ids) in &copies {
        assert!(
            ids.iter().all(|id| id == &ids[0]),
            "mail {n}: copies under other MSRP Message-IDs {ids:?}"
        );
    }
    println!(
        "delivered {} mails ({} after the restart), {} of them twice (same Message-ID)",
        delivered.len(),
        got.lock().unwrap().len() - delivered_before,
        copies.len()
    );
    assert_eq!(srv.mails().len(), 1, "no bounce: every mail was delivered");
}
