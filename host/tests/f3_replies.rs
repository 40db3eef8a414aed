//! F3 (5.2.4.2.4), F5 (5.2.4.2.8) and F8 (5.2.4.2.9) end to end over real sockets: sipp
//! is the CPM client's SIP side, the MSRP test client its chat side, aiosmtpd the e-mail
//! user's server (the invitation arrives there) and swaks the e-mail user answering: the
//! reply reaches the IWF's inbound SMTP listener, is correlated with the session, its
//! sender checked, cleaned, interpreted by the policy and carried out before the SMTP reply.
//!
//! Needs `python3-aiosmtpd`, `sip-tester` and `swaks`: without them a test fails, naming
//! what to install (`tests/run.sh` installs them).

mod common;

use common::chat::{
    Gateway, Keys, Sipp, address, client_uri, gateway, gateway_keyed, mails, parse,
};
use common::mail::{Server, server};
use common::msrp::{MsrpClient, MsrpListener};
use common::peers::{self, Peer};
use common::user::{answer, plain, reply, send, swaks};
use iwf::cpim;
use iwf::msrp::{ByteRange, FailureReport, Method};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Base64 in lines of 76 (RFC 2045 6.8).
fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    text.as_bytes()
        .chunks(76)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The e-mail user's invitation for the call whose client session is `session`: the
/// gateway with `policy`, sipp running `scenario` towards `rcpt`, the MSRP client
/// connected (the offer is active: the IWF waits for it).
async fn invited(
    policy: &str,
    srv: &Server,
    scenario: &str,
    session: &str,
    rcpt: &str,
) -> (Gateway, Sipp, MsrpClient, Vec<u8>) {
    invited_private(policy, srv, scenario, session, rcpt, "none").await
}

/// As [`invited`], the INVITE with `Privacy: <privacy>`.
async fn invited_private(
    policy: &str,
    srv: &Server,
    scenario: &str,
    session: &str,
    rcpt: &str,
    privacy: &str,
) -> (Gateway, Sipp, MsrpClient, Vec<u8>) {
    let gw = gateway(policy, srv);
    let port = common::free_port();
    let sipp = Sipp::start_private(&gw, scenario, "active", port, session, rcpt, privacy);
    let (iwf_uri, _) = tokio::task::block_in_place(|| sipp.answer());
    let mut client = MsrpClient::connect(gw.msrp, client_uri(port, session), vec![iwf_uri]).await;
    // RFC 4975 5.4: the active end binds the connection with a first SEND (empty here).
    let bind = client.empty_send();
    client.send_frame(&bind).await;
    assert_eq!(client.expect_response(&bind, WAIT).await, 200);
    let invitation = tokio::task::block_in_place(|| mails(srv, 1)).remove(0).1;
    (gw, sipp, client, invitation)
}

const QUOTED_ACCEPT: &str = "Accept\n\nOn Thu, 26 Nov 2026 at 10:00, Alice <alice@mail.iwf.test> wrote:\n\
    > Alice invites you to a chat. Reply ACCEPT to join, REJECT to decline,\n\
    > or LEAVE to leave it later.\n";

/// aiosmtpd, sipp and swaks, or the test fails.
fn require_peers() {
    peers::require(&[Peer::Aiosmtpd, Peer::Sipp, Peer::Swaks]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_a_quoted_accept_makes_the_session_live_and_chat_mails_become_ee1_sends() {
    require_peers();
    let srv = server(&[]);
    let (gw, sipp, mut client, invitation) =
        invited("default", &srv, "f4-chat.xml", "cl13ntA", "bob@example.net").await;
    let to = address(&parse(&invitation), "From").1;

    // Accept, quoting the invitation (whose text says REJECT and LEAVE too).
    let answer = reply(&invitation, "bob@example.net", "", &plain(QUOTED_ACCEPT));
    let said = tokio::task::block_in_place(|| swaks(gw.smtp, "bob@example.net", &to, &answer));
    assert!(said.starts_with("250") && said.contains("live"), "{said}");

    // F5: a chat mail becomes a message/cpim SEND per EE1.
    let chat = reply(
        &invitation,
        "bob@example.net",
        "",
        &plain("See you at noon!\n\n-- \nBob\nSent from my phone"),
    );
    let smtp = gw.smtp;
    let to2 = to.clone();
    let sending = tokio::task::spawn_blocking(move || swaks(smtp, "bob@example.net", &to2, &chat));
    let (message, last) = client.receive_message(WAIT).await;
    assert_eq!(message.content_type.as_deref(), Some("message/cpim"));
    let cpim = cpim::Message::parse(&message.data).unwrap();
    // EE1 DateTime: the e-mail's Date.
    assert_eq!(
        cpim.date_time.unwrap().to_rfc3339(),
        "2026-11-26T11:45:00+01:00"
    );
    assert_eq!(cpim.from.as_ref().unwrap().uri, "mailto:bob@example.net");
    assert_eq!(
        cpim.from.as_ref().unwrap().display_name.as_deref(),
        Some("Bob")
    );
    assert_eq!(cpim.to[0].uri, "tel:+15551234567");
    // The cleaned reply: no signature.
    assert_eq!(String::from_utf8_lossy(&cpim.body), "See you at noon!");
    assert!(cpim.content_type.starts_with("text/plain"));
    assert!(last.message_id().is_some());
    let said = sending.await.unwrap();
    assert!(
        said.starts_with("250"),
        "the 250 comes once the chat took it: {said}"
    );

    // A chat mail over 2 KiB: several SENDs with Byte-Range (chunk_size 2048).
    let long = "0123456789abcdef".repeat(200);
    let chat = reply(&invitation, "bob@example.net", "", &plain(&long));
    let to3 = to.clone();
    let sending = tokio::task::spawn_blocking(move || swaks(smtp, "bob@example.net", &to3, &chat));
    let first = client.expect_request(Method::Send, WAIT).await;
    let range = first.byte_range().unwrap();
    assert_eq!(
        (range.start, range.end),
        (1, Some(2048)),
        "the first chunk: {range:?}"
    );
    let total = range.total.unwrap();
    assert!(total > 3200, "{total}");
    client.respond(&first, 200).await;
    let mut got = first.body.unwrap().data;
    while (got.len() as u64) < total {
        let chunk = client.expect_request(Method::Send, WAIT).await;
        let ByteRange { start, .. } = chunk.byte_range().unwrap();
        assert_eq!(start, got.len() as u64 + 1);
        client.respond(&chunk, 200).await;
        got.extend(chunk.body.unwrap().data);
    }
    let cpim = cpim::Message::parse(&got).unwrap();
    assert_eq!(String::from_utf8_lossy(&cpim.body), long);
    assert!(sending.await.unwrap().starts_with("250"));

    // Attachments: the offer takes image/jpeg inside CPIM, so the photo is carried as a
    // message of its own; the PDF is named in the text.
    let photo: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let mixed = format!(
        "Content-Type: multipart/mixed; boundary=\"mix\"\n\n--mix\n\
         Content-Type: text/plain; charset=utf-8\n\nHere is the photo\n--mix\n\
         Content-Type: image/jpeg; name=\"photo.jpg\"\nContent-Disposition: attachment; \
         filename=\"photo.jpg\"\nContent-Transfer-Encoding: base64\n\n{}\n--mix\n\
         Content-Type: application/pdf; name=\"menu.pdf\"\nContent-Disposition: attachment; \
         filename=\"menu.pdf\"\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--mix--\n",
        base64_lines(&photo)
    );
    let chat = reply(&invitation, "bob@example.net", "", &mixed);
    let to4 = to.clone();
    let sending = tokio::task::spawn_blocking(move || swaks(smtp, "bob@example.net", &to4, &chat));
    let (text, _) = client.receive_message(WAIT).await;
    let text = cpim::Message::parse(&text.data).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&text.body),
        "Here is the photo\n[attachment not carried: menu.pdf (application/pdf, 9 bytes)]"
    );
    let (image, _) = client.receive_message(WAIT).await;
    assert_eq!(image.content_type.as_deref(), Some("message/cpim"));
    let image = cpim::Message::parse(&image.data).unwrap();
    assert_eq!(image.content_type, "image/jpeg");
    assert_eq!(image.body, photo);
    assert!(sending.await.unwrap().starts_with("250"));
    // Counted as each SEND's 200 comes back, after the 250 (the mail was spooled).
    let delivered = "iwf_chat_messages_total{direction=\"to_cpm\",outcome=\"delivered\"}";
    let deadline = std::time::Instant::now() + WAIT;
    while gw.metric(delivered) < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gw.metric(delivered), 4);
    assert_eq!(gw.metric("iwf_inbound_mails_total{result=\"taken\"}"), 4);
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp F4 ladder"
    );
}

/// 5.2.4.2.4: the CPM side connects at the 200 OK (offer `active`, step 5a), but what it
/// sends before the e-mail user accepts is held: answered 200 at once, no mail; at the
/// accept the held messages are mailed in order, threaded under the invitation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_sends_before_the_accept_are_held_then_mailed_in_order() {
    require_peers();
    let srv = server(&[]);
    let (gw, sipp, mut client, invitation) =
        invited("default", &srv, "f4-chat.xml", "cl13ntH", "bob@example.net").await;
    for (id, text) in [("hld1", "first, before the accept"), ("hld2", "second")] {
        assert_eq!(
            send(&mut client, id, "text/plain", text.as_bytes()).await,
            200,
            "{id} held"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        srv.mails().len(),
        1,
        "nothing but the invitation before the accept"
    );
    answer(&gw, &invitation, "bob@example.net", "accept");
    let all = tokio::task::block_in_place(|| mails(&srv, 3));
    let first = parse(&all[1].1);
    let second = parse(&all[2].1);
    assert!(
        first
            .body_text(0)
            .unwrap()
            .starts_with("first, before the accept")
    );
    assert!(second.body_text(0).unwrap().starts_with("second"));
    assert_eq!(
        first.in_reply_to().as_text(),
        parse(&invitation).message_id()
    );
    assert_eq!(second.in_reply_to().as_text(), first.message_id());
    // A message after the accept goes out as it comes (F4 step 4: 200 once mailed).
    assert_eq!(send(&mut client, "hld3", "text/plain", b"third").await, 200);
    assert_eq!(tokio::task::block_in_place(|| mails(&srv, 4)).len(), 4);
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp F4 ladder"
    );
}

/// 5.2.4.2.4: with an `actpass` offer the IWF is the active end (RFC 6135), and it
/// connects only once the e-mail user accepted: no connection after the 200 OK, one
/// right after the accept, bound with its SEND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_with_an_actpass_offer_the_iwf_connects_only_after_the_accept() {
    require_peers();
    let srv = server(&[]);
    let gw = gateway("default", &srv);
    let listener = MsrpListener::bind("cl13ntL").await;
    let port = listener.uri.port.unwrap();
    let sipp = Sipp::start(
        &gw,
        "f4-chat.xml",
        "actpass",
        port,
        "cl13ntL",
        "bob@example.net",
    );
    let (iwf_uri, setup) = tokio::task::block_in_place(|| sipp.answer());
    assert_eq!(
        setup, "active",
        "RFC 6135: the answerer of actpass is active"
    );
    let invitation = tokio::task::block_in_place(|| mails(&srv, 1)).remove(0).1;
    assert!(
        !listener.connects_within(Duration::from_millis(1500)).await,
        "the IWF connected before the e-mail user accepted"
    );
    answer(&gw, &invitation, "bob@example.net", "accept");
    let mut client = listener.accept(vec![iwf_uri], WAIT).await;
    let bind = client.expect_request(Method::Send, WAIT).await;
    client.respond(&bind, 200).await;
    assert_eq!(
        send(&mut client, "act1", "text/plain", b"now we talk").await,
        200
    );
    let mail = tokio::task::block_in_place(|| mails(&srv, 2)).remove(1).1;
    assert!(
        parse(&mail)
            .body_text(0)
            .unwrap()
            .starts_with("now we talk")
    );
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp F4 ladder"
    );
}

/// A reject with two held messages: each gets a failure REPORT (Failure-Report yes), none
/// is mailed; the session ends with a BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_a_reject_fails_each_held_message_with_a_report_and_mails_none() {
    require_peers();
    let srv = server(&[]);
    let (gw, sipp, mut client, invitation) = invited(
        "default",
        &srv,
        "f3-iwf-ends.xml",
        "cl13ntJ",
        "bob@example.net",
    )
    .await;
    for id in ["rjc1", "rjc2"] {
        assert_eq!(
            send(&mut client, id, "text/plain", b"are you there?").await,
            200,
            "{id} held"
        );
    }
    answer(&gw, &invitation, "bob@example.net", "reject");
    let mut reported = Vec::new();
    for _ in 0..2 {
        let report = client.expect_request(Method::Report, WAIT).await;
        assert_eq!(report.status().map(|s| s.code), Some(403), "{report:?}");
        reported.push(report.message_id().unwrap().to_owned());
    }
    reported.sort();
    assert_eq!(reported, ["rjc1", "rjc2"], "one failure REPORT each");
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "the IWF's BYE"
    );
    assert_eq!(srv.mails().len(), 1, "only the invitation was mailed");
}

/// `[msrp] held_max_messages`: beyond it a message before the accept gets 403, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_a_message_beyond_the_hold_bound_gets_403() {
    require_peers();
    let srv = server(&[]);
    let gw = common::chat::gateway_with("default", &srv, "held_max_messages = 1\n");
    let port = common::free_port();
    let sipp = Sipp::start(
        &gw,
        "f4-chat.xml",
        "active",
        port,
        "cl13ntK",
        "bob@example.net",
    );
    let (iwf_uri, _) = tokio::task::block_in_place(|| sipp.answer());
    let mut client = MsrpClient::connect(gw.msrp, client_uri(port, "cl13ntK"), vec![iwf_uri]).await;
    let codes = {
        let mut codes = Vec::new();
        for id in ["bnd1", "bnd2"] {
            let chunks = client
                .send_message(
                    id,
                    "text/plain",
                    b"hello?",
                    2048,
                    (false, FailureReport::Yes),
                )
                .await;
            let response = client.expect_frame(WAIT).await;
            assert_eq!(response.transact_id, chunks[0].transact_id);
            codes.push(response);
        }
        codes
    };
    let code = |f: &iwf::msrp::Frame| match &f.start {
        iwf::msrp::StartLine::Response { code, comment } => (*code, comment.clone()),
        _ => panic!("not a response: {f:?}"),
    };
    assert_eq!(code(&codes[0]).0, 200);
    let (status, comment) = code(&codes[1]);
    assert_eq!(status, 403);
    assert!(
        comment.unwrap_or_default().contains("accept"),
        "the 403 says why"
    );
    drop(sipp);
}

/// Privacy: id (RFC 3323) on a whole session: the invitation comes from a per-session
/// anonymous address of the gateway's mail domain, the e-mail user answers it, the chat
/// runs both ways, and no header or envelope of any mail names the CPM user (From
/// sip:alice@ims.example.com, P-Asserted-Identity tel:+15551234567).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_a_privacy_id_session_is_answered_and_chats_and_no_mail_names_the_cpm_user() {
    require_peers();
    let srv = server(&[]);
    let (gw, sipp, mut client, invitation) = invited_private(
        "default",
        &srv,
        "f4-chat.xml",
        "cl13ntP",
        "bob@example.net",
        "id",
    )
    .await;
    let (name, anonymous) = address(&parse(&invitation), "From");
    assert_eq!(name.as_deref(), Some("Anonymous"));
    assert!(
        anonymous.starts_with("anon-") && anonymous.ends_with("@mail.iwf.test"),
        "{anonymous}"
    );
    let accept = reply(&invitation, "bob@example.net", "", &plain("accept"));
    let said =
        tokio::task::block_in_place(|| swaks(gw.smtp, "bob@example.net", &anonymous, &accept));
    assert!(said.starts_with("250") && said.contains("live"), "{said}");
    // CPM -> e-mail: a CPIM message whose From names Alice; the mail must not.
    let cpim = "From: Alice <sip:alice@ims.example.com>\r\nTo: <mailto:bob@example.net>\r\n\r\n\
                Content-Type: text/plain; charset=utf-8\r\n\r\nHi, guess who";
    assert_eq!(
        send(&mut client, "prv1", "message/cpim", cpim.as_bytes()).await,
        200
    );
    // E-mail -> CPM: the e-mail user answers the anonymous address.
    let chat = reply(&invitation, "bob@example.net", "", &plain("No idea!"));
    let smtp = gw.smtp;
    let to = anonymous.clone();
    let sending = tokio::task::spawn_blocking(move || swaks(smtp, "bob@example.net", &to, &chat));
    let (message, _) = client.receive_message(WAIT).await;
    let cpim = cpim::Message::parse(&message.data).unwrap();
    assert_eq!(String::from_utf8_lossy(&cpim.body), "No idea!");
    assert!(sending.await.unwrap().starts_with("250"));
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp F4 ladder"
    );
    // The invitation, the chat mail (BB2) and the session-closed mail (CC2) at the BYE.
    let all = tokio::task::block_in_place(|| mails(&srv, 3));
    assert_eq!(parse(&all[2].1).subject(), Some("Chat ended"));
    for (meta, eml) in &all {
        assert_eq!(meta["mail_from"], anonymous.as_str(), "MAIL FROM");
        let msg = parse(eml);
        let headers = String::from_utf8_lossy(&eml[..msg.root_part().raw_body_offset() as usize])
            .to_ascii_lowercase();
        for leak in ["alice", "15551234567", "ims.example.com"] {
            assert!(!headers.contains(leak), "{leak} in the headers:\n{headers}");
        }
        assert_eq!(address(&msg, "From").1, anonymous);
    }
    assert!(
        parse(&all[1].1)
            .body_text(0)
            .unwrap()
            .starts_with("Hi, guess who")
    );
}

/// BB2 From of a 1-1 chat mail is its CPIM author's address, which can differ from the
/// invitation's (here sip:alice@ims.example.com against P-Asserted-Identity tel:...): a
/// reply to that address reaches the same session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f5_a_reply_to_a_chat_mail_from_its_authors_address_reaches_the_session() {
    require_peers();
    let srv = server(&[]);
    let (gw, sipp, mut client, invitation) =
        invited("default", &srv, "f4-chat.xml", "cl13ntR", "bob@example.net").await;
    let invited_from = address(&parse(&invitation), "From").1;
    let accept = reply(&invitation, "bob@example.net", "", &plain("accept"));
    let said =
        tokio::task::block_in_place(|| swaks(gw.smtp, "bob@example.net", &invited_from, &accept));
    assert!(said.starts_with("250"), "{said}");
    let cpim = "From: Alice <sip:alice@ims.example.com>\r\nTo: <mailto:bob@example.net>\r\n\r\n\
                Content-Type: text/plain; charset=utf-8\r\n\r\nFrom my other identity";
    assert_eq!(
        send(&mut client, "auth1", "message/cpim", cpim.as_bytes()).await,
        200
    );
    let chat_mail = tokio::task::block_in_place(|| mails(&srv, 2)).remove(1).1;
    let author = address(&parse(&chat_mail), "From").1;
    assert_ne!(author, invited_from, "the test needs an author of its own");
    let answer = reply(&chat_mail, "bob@example.net", "", &plain("Got it"));
    let smtp = gw.smtp;
    let sending =
        tokio::task::spawn_blocking(move || swaks(smtp, "bob@example.net", &author, &answer));
    let (message, _) = client.receive_message(WAIT).await;
    let cpim = cpim::Message::parse(&message.data).unwrap();
    assert_eq!(String::from_utf8_lossy(&cpim.body), "Got it");
    assert!(sending.await.unwrap().starts_with("250"));
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp F4 ladder"
    );
}

/// A mail its sender sends again (its 250 was lost, or the gateway died before it) is
/// taken (250) and not delivered twice: the same Message-ID in the same session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f5_a_mail_sent_again_is_taken_and_not_delivered_twice() {
    require_peers();
    let srv = server(&[]);
    let (gw, sipp, mut client, invitation) =
        invited("default", &srv, "f4-chat.xml", "cl13ntD", "bob@example.net").await;
    let to = answer(&gw, &invitation, "bob@example.net", "accept");
    let mail = reply(&invitation, "bob@example.net", "", &plain("only once"));
    let smtp = gw.smtp;
    let first = mail.clone();
    let sending = tokio::task::spawn_blocking({
        let to = to.clone();
        move || swaks(smtp, "bob@example.net", &to, &first)
    });
    let (message, _) = client.receive_message(WAIT).await;
    let cpim = cpim::Message::parse(&message.data).unwrap();
    assert_eq!(String::from_utf8_lossy(&cpim.body), "only once");
    assert!(sending.await.unwrap().starts_with("250"));
    let again = tokio::task::block_in_place(|| swaks(gw.smtp, "bob@example.net", &to, &mail));
    assert!(again.starts_with("250"), "{again}");
    assert!(again.contains("already taken"), "{again}");
    client.expect_silence(Duration::from_millis(1000)).await;
    // Another mail (another Message-ID) is delivered as usual.
    let other = reply(&invitation, "bob@example.net", "", &plain("and this"));
    let other = other.replacen("Message-ID: <r", "Message-ID: <other-r", 1);
    let sending = tokio::task::spawn_blocking(move || swaks(smtp, "bob@example.net", &to, &other));
    let (message, _) = client.receive_message(WAIT).await;
    let cpim = cpim::Message::parse(&message.data).unwrap();
    assert_eq!(String::from_utf8_lossy(&cpim.body), "and this");
    assert!(sending.await.unwrap().starts_with("250"));
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp F4 ladder"
    );
}

/// EE1 Success-Report and Failure-Report as the policy's `msrp-reports` asks (the test
/// policy: yes and partial): the SEND carries them, and the 250 waits for the success
/// REPORT. EE1 DateTime of a mail without Date: the time it came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f5_reports_are_the_policys_and_a_mail_without_date_is_dated_now() {
    require_peers();
    let srv = server(&[]);
    let user = "reports@example.net";
    let (gw, sipp, mut client, invitation) =
        invited("misbehaving", &srv, "f4-chat.xml", "cl13ntS", user).await;
    let to = answer(&gw, &invitation, user, "accept");
    let dated = reply(&invitation, user, "", &plain("no date on this one"));
    let undated: String = dated
        .lines()
        .filter(|l| !l.starts_with("Date:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let smtp = gw.smtp;
    let before = chrono::Utc::now();
    let sending = tokio::task::spawn_blocking(move || swaks(smtp, user, &to, &undated));
    let (message, last) = client.receive_message(WAIT).await;
    assert!(
        last.success_report(),
        "Success-Report: yes, as the policy asks"
    );
    assert_eq!(last.failure_report(), FailureReport::Partial);
    let cpim = cpim::Message::parse(&message.data).unwrap();
    let date = cpim
        .date_time
        .expect("EE1 DateTime")
        .with_timezone(&chrono::Utc);
    let after = chrono::Utc::now();
    assert!(
        date >= before - chrono::Duration::seconds(1)
            && date <= after + chrono::Duration::seconds(1),
        "{date} not between {before} and {after}"
    );
    client
        .report_success(&last, message.data.len() as u64)
        .await;
    let said = sending.await.unwrap();
    assert!(said.starts_with("250"), "{said}");
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp F4 ladder"
    );
}

/// RFC 2852 on every mail of a session: the policy asks `BY=` for the invitation (AA1),
/// the chat mail (BB1) and the session-closed mail (CC1) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_goes_with_the_invitation_the_chat_mail_and_the_notification() {
    require_peers();
    let srv = server(&["--deliverby"]);
    let user = "deliverby@example.net";
    let (gw, sipp, mut client, invitation) =
        invited("misbehaving", &srv, "f4-chat.xml", "cl13ntB", user).await;
    answer(&gw, &invitation, user, "accept");
    assert_eq!(
        send(&mut client, "byt1", "text/plain", b"by when?").await,
        200
    );
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp F4 ladder"
    );
    let all = tokio::task::block_in_place(|| mails(&srv, 3));
    for (meta, eml) in &all {
        let args = meta["mail_args"].as_str().unwrap();
        assert!(
            args.contains("BY=86400;N"),
            "{args}: {:?}",
            parse(eml).subject()
        );
    }
    assert_eq!(parse(&all[2].1).subject(), Some("Chat ended"));
}

/// EE1 From: the CPM identity the policy's `email-to-cpm` maps the sender to (the test
/// policy maps `mapped@...`); the sender's mailto URI only where the policy has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f5_the_cpim_from_is_the_policys_email_to_cpm_mapping() {
    require_peers();
    let srv = server(&[]);
    let user = "mapped@example.net";
    let (gw, sipp, mut client, invitation) =
        invited("misbehaving", &srv, "f4-chat.xml", "cl13ntM", user).await;
    let to = answer(&gw, &invitation, user, "accept");
    let chat = reply(&invitation, user, "", &plain("Mapped, I hope"));
    let smtp = gw.smtp;
    let sending = tokio::task::spawn_blocking(move || swaks(smtp, user, &to, &chat));
    let (message, _) = client.receive_message(WAIT).await;
    let cpim = cpim::Message::parse(&message.data).unwrap();
    let from = cpim.from.as_ref().unwrap();
    assert_eq!(from.uri, "sip:mapped@ims.example.com");
    assert_eq!(from.display_name.as_deref(), Some("Bob"));
    let said = sending.await.unwrap();
    assert!(said.starts_with("250"), "{said}");
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp F4 ladder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_html_only_accept_a_forged_sender_and_an_auto_reply_never_reach_the_chat() {
    require_peers();
    let srv = server(&[]);
    let (gw, sipp, mut client, invitation) =
        invited("default", &srv, "f4-chat.xml", "cl13ntB", "bob@example.net").await;
    let to = address(&parse(&invitation), "From").1;
    let html = "Content-Type: text/html; charset=utf-8\n\n<html><body><div dir=\"ltr\">Accept</div>\
        <br><div class=\"gmail_quote\"><div class=\"gmail_attr\">On Thu, 26 Nov 2026 at 10:00, Alice \
        wrote:</div><blockquote class=\"gmail_quote\">Reply ACCEPT or REJECT.</blockquote></div>\
        </body></html>\n";
    let answer = reply(&invitation, "bob@example.net", "", html);
    let said = tokio::task::block_in_place(|| swaks(gw.smtp, "bob@example.net", &to, &answer));
    assert!(said.starts_with("250") && said.contains("live"), "{said}");

    // Eve knows the thread (In-Reply-To) but is not the session's e-mail user.
    let forged = reply(
        &invitation,
        "eve@example.org",
        "",
        &plain("Send me the code"),
    );
    let said = tokio::task::block_in_place(|| swaks(gw.smtp, "eve@example.org", &to, &forged));
    assert!(said.starts_with("550"), "{said}");
    assert!(said.contains("not the e-mail user"), "{said}");

    // An out-of-office (RFC 3834 Auto-Submitted) is taken but never becomes chat.
    let auto = reply(
        &invitation,
        "bob@example.net",
        "Auto-Submitted: auto-replied\n",
        &plain("I am out of the office until Monday."),
    );
    let said = tokio::task::block_in_place(|| swaks(gw.smtp, "bob@example.net", &to, &auto));
    assert!(
        said.starts_with("250") && said.contains("not a chat"),
        "{said}"
    );
    // Nothing reached the MSRP side for any of them.
    client.expect_silence(Duration::from_secs(1)).await;

    // The CPM side refuses the chat message: taken (250, spooled), then bounced to its
    // sender with a delivery status notification that says why (nothing vanishes).
    let chat = reply(&invitation, "bob@example.net", "", &plain("one more thing"));
    let (smtp, to2) = (gw.smtp, to.clone());
    let said = tokio::task::block_in_place(|| swaks(smtp, "bob@example.net", &to2, &chat));
    assert!(said.starts_with("250") && said.contains("queued"), "{said}");
    let send = client.expect_request(Method::Send, WAIT).await;
    client.respond(&send, 403).await;
    let all = tokio::task::block_in_place(|| mails(&srv, 2));
    let (envelope, bounce) = &all[1];
    assert_eq!(
        envelope["mail_from"], "<>",
        "a bounce has the null reverse-path"
    );
    assert_eq!(envelope["rcpt_tos"][0], "bob@example.net");
    let bounce = String::from_utf8_lossy(bounce);
    assert!(bounce.contains("report-type=delivery-status"), "{bounce}");
    assert!(bounce.contains("Status: 5.6.0"), "{bounce}");
    assert!(bounce.contains("403"), "{bounce}");
    assert!(
        bounce.contains(&format!("Final-Recipient: rfc822; {to}")),
        "{bounce}"
    );

    // An address no session mails from is refused at RCPT.
    let stray = plain("hello?");
    let said = tokio::task::block_in_place(|| {
        swaks(gw.smtp, "bob@example.net", "nobody@mail.iwf.test", &stray)
    });
    assert!(said.starts_with("550"), "{said}");
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp F4 ladder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_reject_ends_the_session_with_bye_and_a_later_mail_is_refused() {
    require_peers();
    let srv = server(&[]);
    let (gw, sipp, mut client, invitation) = invited(
        "default",
        &srv,
        "f3-iwf-ends.xml",
        "cl13ntC",
        "bob@example.net",
    )
    .await;
    let to = answer(&gw, &invitation, "bob@example.net", "reject, sorry");
    let reason = tokio::task::block_in_place(|| sipp.bye_reason());
    assert!(reason.contains("cause=603"), "{reason}");
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp saw the IWF's BYE"
    );
    client.expect_closed(WAIT).await;
    // The session is over: a clear refusal, not silence.
    let late = reply(&invitation, "bob@example.net", "", &plain("wait, accept"));
    let said = tokio::task::block_in_place(|| swaks(gw.smtp, "bob@example.net", &to, &late));
    assert!(said.starts_with("550"), "{said}");
    assert!(said.contains("no live chat session"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f8_leave_in_a_live_session_ends_it_with_bye() {
    require_peers();
    let srv = server(&[]);
    let (gw, sipp, _client, invitation) = invited(
        "default",
        &srv,
        "f3-iwf-ends.xml",
        "cl13ntD",
        "bob@example.net",
    )
    .await;
    let to = address(&parse(&invitation), "From").1;
    let answer = reply(&invitation, "bob@example.net", "", &plain("ACCEPT"));
    let said = tokio::task::block_in_place(|| swaks(gw.smtp, "bob@example.net", &to, &answer));
    assert!(said.contains("live"), "{said}");
    let leave = reply(&invitation, "bob@example.net", "", &plain("leave"));
    let said = tokio::task::block_in_place(|| swaks(gw.smtp, "bob@example.net", &to, &leave));
    assert!(said.starts_with("250") && said.contains("left"), "{said}");
    let reason = tokio::task::block_in_place(|| sipp.bye_reason());
    assert!(reason.contains("cause=200"), "{reason}");
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp saw the IWF's BYE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_no_answer_within_the_policys_expiry_ends_the_session() {
    require_peers();
    let srv = server(&[]);
    // The test policy's `expire` mode gives the e-mail user 2 s.
    let (_gw, sipp, _client, _invitation) = invited(
        "misbehaving",
        &srv,
        "f3-iwf-ends.xml",
        "cl13ntE",
        "expire@example.net",
    )
    .await;
    let reason = tokio::task::block_in_place(|| sipp.bye_reason());
    assert!(reason.contains("cause=408"), "{reason}");
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp saw the IWF's BYE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_a_bounce_of_the_invitation_ends_the_session() {
    require_peers();
    let srv = server(&[]);
    let (gw, sipp, mut client, invitation) = invited(
        "default",
        &srv,
        "f3-iwf-ends.xml",
        "cl13ntF",
        "bob@example.net",
    )
    .await;
    let msg = parse(&invitation);
    let to = address(&msg, "From").1;
    let id = msg.message_id().unwrap();
    let dsn = format!(
        "From: Mail Delivery System <MAILER-DAEMON@example.net>\nTo: {to}\n\
         Subject: Undelivered Mail Returned to Sender\nDate: Thu, 26 Nov 2026 11:50:00 +0100\n\
         Message-ID: <dsn1@example.net>\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\n\n\
         --b1\nContent-Type: text/plain\n\nThe mail could not be delivered.\n\n\
         --b1\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n\
         Final-Recipient: rfc822; bob@example.net\nAction: failed\nStatus: 5.1.1\n\n\
         --b1\nContent-Type: text/rfc822-headers\n\nFrom: {to}\nTo: bob@example.net\n\
         Message-ID: <{id}>\nSubject: invitation\n\n--b1--\n"
    );
    let said = tokio::task::block_in_place(|| swaks(gw.smtp, "<>", &to, &dsn));
    assert!(said.starts_with("250") && said.contains("bounce"), "{said}");
    let reason = tokio::task::block_in_place(|| sipp.bye_reason());
    assert!(
        reason.contains("cause=480") && reason.contains("5.1.1"),
        "{reason}"
    );
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp saw the IWF's BYE"
    );
    // A bounce never becomes a chat message.
    client.expect_closed(WAIT).await;
}

/// Issue 15: invitations awaiting their answer leave memory for the store after this.
const PARKING: Keys = Keys {
    store: "park_after_ms = 300\n",
    msrp: "",
    outbound: "",
};

/// Whether `mail` names Message-ID `id` in In-Reply-To or References: it continues its
/// thread.
fn replies_to(mail: &mail_parser::Message, id: &str) -> bool {
    [mail.in_reply_to(), mail.references()]
        .iter()
        .filter_map(|h| h.as_text_list())
        .any(|ids| ids.iter().any(|i| i == id))
}

/// An actpass invitation (the IWF connects at the accept, so it may park) on a gateway
/// that parks after 300 ms, once parked: the gateway, sipp, the MSRP listener the IWF
/// connects to, the SDP path the IWF answered, the invitation.
async fn parked(
    policy: &str,
    srv: &Server,
    scenario: &str,
    session: &str,
    rcpt: &str,
) -> (Gateway, Sipp, MsrpListener, iwf::sdp::MsrpUri, Vec<u8>) {
    let gw = gateway_keyed(policy, srv, PARKING);
    let listener = MsrpListener::bind(session).await;
    let port = listener.uri.port.unwrap();
    let sipp = Sipp::start(&gw, scenario, "actpass", port, session, rcpt);
    let (iwf_uri, _) = tokio::task::block_in_place(|| sipp.answer());
    let invitation = tokio::task::block_in_place(|| mails(srv, 1)).remove(0).1;
    tokio::task::block_in_place(|| {
        gw.wait_metric("iwf_sessions_parked", 1, WAIT);
        // Its mail task went with it; the session is still counted.
        assert_eq!(gw.metric("iwf_mail_sessions"), 0);
        assert_eq!(gw.metric("iwf_sip_sessions"), 1);
    });
    (gw, sipp, listener, iwf_uri, invitation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_a_parked_invitation_comes_back_from_the_store_for_its_accept_and_chats() {
    require_peers();
    let srv = server(&[]);
    let (gw, sipp, listener, iwf_uri, invitation) =
        parked("default", &srv, "f4-chat.xml", "cl13ntP", "bob@example.net").await;
    // The operators still see it, with its ladder.
    let (status, body) = common::http(gw.admin, "GET", "/sessions").unwrap();
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["sessions"][0]["phase"], "awaiting-answer", "{body}");
    let id = list["sessions"][0]["id"].as_str().unwrap();
    let (status, body) = common::http(gw.admin, "GET", &format!("/sessions/{id}")).unwrap();
    assert_eq!(status, 200);
    let one: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ladder: Vec<&str> = one["ladder"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(
        ladder.first() == Some(&"INVITE received: 100 Trying sent")
            && ladder.last() == Some(&"parked: awaiting the answer in the store"),
        "{ladder:?}"
    );
    // The accept finds it by the same keys and brings it back: the IWF connects.
    answer(&gw, &invitation, "bob@example.net", "accept");
    let mut client = listener.accept(vec![iwf_uri], WAIT).await;
    let bind = client.expect_request(Method::Send, WAIT).await;
    client.respond(&bind, 200).await;
    assert_eq!(
        send(&mut client, "prk1", "text/plain", b"back from the store").await,
        200
    );
    let mail = tokio::task::block_in_place(|| mails(&srv, 2)).remove(1).1;
    let chat = parse(&mail);
    assert!(
        chat.body_text(0)
            .unwrap()
            .starts_with("back from the store")
    );
    // The chat mail continues the invitation's thread, read back with the session.
    let invitation_id = parse(&invitation).message_id().unwrap().to_owned();
    assert!(
        replies_to(&chat, &invitation_id),
        "the chat mail does not reply to the invitation"
    );
    assert_eq!(
        tokio::task::block_in_place(|| gw.metric("iwf_sessions_parked")),
        0
    );
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp F4 ladder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f6_a_bye_for_a_parked_invitation_is_answered_in_its_dialog_and_notified_by_mail() {
    require_peers();
    let srv = server(&[]);
    // f4-chat.xml hangs up after 8 s: the session has long been parked by then.
    let (gw, sipp, _listener, _iwf_uri, invitation) =
        parked("default", &srv, "f4-chat.xml", "cl13ntQ", "bob@example.net").await;
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "the BYE was not answered 200"
    );
    let notification = tokio::task::block_in_place(|| mails(&srv, 2)).remove(1).1;
    let notification = parse(&notification);
    let invitation_id = parse(&invitation).message_id().unwrap().to_owned();
    assert!(
        replies_to(&notification, &invitation_id),
        "the CC2 mail does not reply to the invitation"
    );
    tokio::task::block_in_place(|| {
        gw.wait_metric("iwf_sip_sessions", 0, WAIT);
        assert_eq!(gw.metric("iwf_sessions_parked"), 0);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_a_parked_invitation_expires_on_time_with_a_bye() {
    require_peers();
    let srv = server(&[]);
    // The test policy's `expire` mode gives the e-mail user 2 s: parked within 300 ms.
    let (gw, sipp, _listener, _iwf_uri, _invitation) = parked(
        "misbehaving",
        &srv,
        "f3-iwf-ends.xml",
        "cl13ntR",
        "expire@example.net",
    )
    .await;
    let reason = tokio::task::block_in_place(|| sipp.bye_reason());
    assert!(reason.contains("cause=408"), "{reason}");
    assert!(
        tokio::task::block_in_place(|| sipp.passed()),
        "sipp saw the IWF's BYE"
    );
    tokio::task::block_in_place(|| gw.wait_metric("iwf_sip_sessions", 0, WAIT));
}
