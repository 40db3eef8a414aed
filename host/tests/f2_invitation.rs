//! F2 (5.2.4.2.4) and F6 (5.2.4.2.6) end to end, with real peers on loopback: the `iwf`
//! binary with the default policy (ask the user), sipp or a UDP socket as the CPM client,
//! dnsmasq as DNS (MX `mx.test` -> 127.0.0.1) and tests/smtp/recipient_server.py as the
//! e-mail user's SMTP server. The ladder: INVITE -> MX look-up -> SMTP (AA1) -> the
//! invitation (AA2) -> the SIP answer from the SMTP outcome (AA3); BYE -> 200 -> the CC2
//! notification -> QUIT.
//!
//! Needs `dnsmasq`, `python3-aiosmtpd` and `sip-tester`: without them a test fails, naming
//! what to install (`tests/run.sh` installs them).

mod common;

use common::mail::{Server, dnsmasq, server, wait_for};
use common::peers::{self, Peer};
use mail_parser::{Message, MessageParser};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The gateway under test; killed when dropped.
struct Gateway {
    _process: common::Running,
    sip: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// The lines of `GET /metrics` that start with `name`.
    fn metric(&self, name: &str) -> Vec<String> {
        let (status, body) = common::http(self.admin, "GET", "/metrics").unwrap();
        assert_eq!(status, 200);
        body.lines()
            .filter(|l| l.starts_with(name))
            .map(str::to_owned)
            .collect()
    }
}

/// The gateway with the default policy; `outbound` are its `[smtp.outbound]` routing keys.
fn gateway(outbound: &str) -> Gateway {
    gateway_with("", outbound)
}

/// [`gateway`] with more `[sip]` keys.
fn gateway_with(sip_keys: &str, outbound: &str) -> Gateway {
    gateway_with_policy(sip_keys, outbound, "")
}

/// As [`gateway_with`], with `[policy]` keys (`path = ...`).
fn gateway_with_policy(sip_keys: &str, outbound: &str, policy_keys: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("iwf.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nlisten = \"127.0.0.1:0\"\ndomain = \"iwf.test\"\n{sip_keys}\
             [msrp]\nlisten = \"127.0.0.1:0\"\n\
             [smtp.inbound]\nlisten = \"127.0.0.1:0\"\ndomain = \"mail.iwf.test\"\n\
             [smtp.outbound]\n{outbound}helo = \"iwf.test\"\ndns_timeout_ms = 1000\n\
             dns_attempts = 1\nconnect_timeout_ms = 2000\ncommand_timeout_ms = 5000\n\
             data_timeout_ms = 5000\n\
             [policy]\n{policy_keys}\
             [admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"state\"\n"
        ),
    )
    .unwrap();
    let (process, at) = common::run_gateway(&config);
    Gateway {
        _process: process,
        sip: at.sip,
        admin: at.admin,
        _dir: dir,
    }
}

/// `[smtp.outbound]` keys for MX look-ups at `dns`, mail on `srv`'s port.
fn via_mx(dns: SocketAddr, srv: &Server) -> String {
    format!("dns_servers = [\"{dns}\"]\nmx_port = {}\n", srv.port)
}

const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
    m=message 7394 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\n\
    a=path:msrp://127.0.0.1:7394/abc;tcp\r\na=setup:active\r\n";

/// A CPM client on a UDP socket, sending INVITEs from Alice.
struct Client {
    socket: UdpSocket,
    port: u16,
}

impl Client {
    fn new() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        Self { socket, port }
    }

    /// Sends INVITE (`method` INVITE) or CANCEL (same branch, 9.1) for call `n` to `uri`
    /// with `extra` header lines.
    fn send(&self, gw: &Gateway, method: &str, n: u32, uri: &str, extra: &str) {
        let port = self.port;
        let to = uri.split('?').next().unwrap();
        let body = if method == "INVITE" { OFFER } else { "" };
        let content = if body.is_empty() {
            ""
        } else {
            "Contact: <sip:alice@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\n"
        }
        .replace("{port}", &port.to_string());
        let text = format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-f2-{n}\r\n\
             Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@iwf.test>;tag=a{n}\r\n\
             To: <{to}>\r\nCall-ID: f2-{n}-{}@test\r\nCSeq: 1 {method}\r\n\
             {extra}{content}Content-Length: {}\r\n\r\n{body}",
            std::process::id(),
            body.len()
        );
        self.socket.send_to(text.as_bytes(), gw.sip).unwrap();
    }

    /// The next response.
    fn recv(&self) -> String {
        let mut buf = [0u8; 65536];
        let (len, _) = self.socket.recv_from(&mut buf).expect("no response");
        String::from_utf8_lossy(&buf[..len]).to_string()
    }

    /// The next final response (1xx skipped).
    fn recv_final(&self) -> String {
        loop {
            let response = self.recv();
            if !response.starts_with("SIP/2.0 1") {
                return response;
            }
        }
    }
}

/// A fresh call number.
fn call() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// An INVITE to `uri` from Alice over UDP with `extra` header lines; returns the final
/// response (1xx skipped).
fn invite(gw: &Gateway, uri: &str, extra: &str) -> String {
    let client = Client::new();
    client.send(gw, "INVITE", call(), uri, extra);
    client.recv_final()
}

fn parse(eml: &[u8]) -> Message<'_> {
    MessageParser::default().parse(eml).unwrap()
}

/// The address of the first mailbox of `header` in `msg`.
fn address(msg: &Message, header: &str) -> (Option<String>, String) {
    let value = msg.header(header).unwrap_or_else(|| panic!("no {header}"));
    let first = value.as_address().unwrap().first().unwrap();
    (
        first.name().map(str::to_owned),
        first.address().unwrap().to_owned(),
    )
}

/// Waits until the server stored `n` mails and returns them.
fn mails(srv: &Server, n: usize) -> Vec<(serde_json::Value, Vec<u8>)> {
    wait_for(|| srv.mails().len() >= n, "the mails");
    srv.mails()
}

/// The RCPT TO addresses of a stored mail's record, sorted.
fn rcpt_tos(meta: &serde_json::Value) -> Vec<String> {
    let mut to: Vec<String> = meta["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    to.sort();
    to
}

/// The SIP Warning of `response`.
fn warning(response: &str) -> &str {
    response
        .split("\r\n")
        .find(|l| l.starts_with("Warning: "))
        .unwrap_or_else(|| panic!("no Warning: {response}"))
}

/// dnsmasq, aiosmtpd and sipp, or the test fails.
fn require_peers() {
    peers::require(&[Peer::Dnsmasq, Peer::Aiosmtpd, Peer::Sipp]);
}

#[test]
fn f2_250_answers_200_with_sdp_and_the_invitation_maps_aa2_row_by_row() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    let srv = server(&[]);
    let gw = gateway(&via_mx(dns, &srv));
    // sipp checks the 200's SDP answer (path, setup:passive, m=message), ACKs and BYEs.
    assert!(
        common::sipp(gw.sip, "f2-uac.xml", "u1", &["-key", "rcpt", "bob@mx.test"]),
        "F2 ladder"
    );
    let all = mails(&srv, 1);
    let (meta, eml) = &all[0];
    // AA1: MAIL FROM the CPM user's mapped address (step 2a), RCPT TO the Request-URI's.
    assert_eq!(meta["mail_from"], "alice@mail.iwf.test");
    assert_eq!(meta["rcpt_tos"], serde_json::json!(["bob@mx.test"]));
    assert_eq!(meta["helo"], "iwf.test");
    let msg = parse(eml);
    // AA2 From: P-Asserted-Identity (not From), mapped by the policy.
    assert_eq!(
        address(&msg, "From"),
        (Some("Alice A.".into()), "alice@mail.iwf.test".into())
    );
    // AA2 Reply-To: the SIP Reply-To, mapped.
    assert_eq!(address(&msg, "Reply-To").1, "alice.reply@mail.iwf.test");
    // AA2 Sender: only for groups.
    assert!(msg.header("Sender").is_none());
    // AA2 Date: no message/cpim part in this INVITE, so the SIP Date.
    assert_eq!(
        msg.date().unwrap().to_rfc3339(),
        "2026-11-26T08:30:00Z",
        "Date from the SIP Date"
    );
    // AA2 To: the Request-URI's mailto address; no Cc, and never a Bcc header.
    assert_eq!(address(&msg, "To").1, "bob@mx.test");
    assert!(msg.header("Cc").is_none());
    assert!(msg.header_raw("Bcc").is_none());
    // AA2 msg-id: Contribution-ID; In-Reply-To: InReplyTo-Contribution-ID.
    let id = msg.message_id().unwrap();
    assert!(
        id.starts_with("c0ntr1b") && id.ends_with("@mail.iwf.test"),
        "{id}"
    );
    assert_eq!(msg.in_reply_to().as_text(), Some("pr3v10us@mail.iwf.test"));
    // AA2 Subject: the SIP Subject.
    assert_eq!(msg.subject(), Some("Lunch?"));
    // AA2 X-Priority: Priority urgent -> 1.
    assert_eq!(msg.header_raw("X-Priority").map(str::trim), Some("1"));
    assert!(msg.header("Auto-Submitted").is_none());
    // AA2 body: the policy's invitation with the accept/reject/leave instructions.
    let body = msg.body_text(0).unwrap().to_string();
    for word in ["ACCEPT", "REJECT", "LEAVE"] {
        assert!(body.contains(word), "{word} missing from {body}");
    }
}

#[test]
fn f2_and_f6_over_tcp() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    let srv = server(&[]);
    let gw = gateway(&via_mx(dns, &srv));
    assert!(
        common::sipp(gw.sip, "f2-uac.xml", "t1", &["-key", "rcpt", "bob@mx.test"]),
        "F2 then BYE over TCP"
    );
    let all = mails(&srv, 2);
    assert!(parse(&all[1].1).header("Auto-Submitted").is_some());
}

#[test]
fn f6_bye_is_200_then_the_cc2_notification_and_quit() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    let srv = server(&[]);
    let gw = gateway(&via_mx(dns, &srv));
    assert!(
        common::sipp(gw.sip, "f2-uac.xml", "u1", &["-key", "rcpt", "bob@mx.test"]),
        "F2 then BYE: 200"
    );
    let all = mails(&srv, 2);
    let invitation = parse(&all[0].1);
    let (meta, eml) = &all[1];
    // CC1: the same envelope as the invitation.
    assert_eq!(meta["mail_from"], "alice@mail.iwf.test");
    assert_eq!(meta["rcpt_tos"], serde_json::json!(["bob@mx.test"]));
    let msg = parse(eml);
    // CC2: From as AA2, To the Request-URI, threaded under the invitation, generated.
    assert_eq!(address(&msg, "From").1, "alice@mail.iwf.test");
    assert_eq!(address(&msg, "To").1, "bob@mx.test");
    assert_eq!(
        msg.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-generated")
    );
    assert_eq!(msg.in_reply_to().as_text(), invitation.message_id());
    assert_eq!(msg.references().as_text(), invitation.message_id());
    assert_ne!(msg.message_id(), invitation.message_id());
    assert_eq!(msg.subject(), Some("Chat ended"));
    // The channel is closed: QUIT seen by the server; no mail state is left.
    wait_for(|| !srv.records("quit").is_empty(), "QUIT");
    // The task frees its state just after the QUIT: wait for it, don't race it.
    wait_for(
        || gw.metric("iwf_mail_sessions ") == ["iwf_mail_sessions 0"],
        "mail state freed",
    );
    assert_eq!(
        gw.metric("iwf_invitations_total{"),
        [
            "iwf_invitations_total{outcome=\"mailed\"} 1",
            "iwf_invitations_total{outcome=\"refused\"} 0"
        ]
    );
}

/// F6 (5.2.4.2.6): CC2 takes From, Privacy and P-Asserted-Identity from the BYE, not the
/// INVITE (whose P-Asserted-Identity is "Alice A." <sip:alice@iwf.test>): the BYE's own
/// identity is mapped, and under the BYE's Privacy: id the notification is anonymous,
/// its envelope too.
#[test]
fn f6_the_cc2_notification_is_from_the_byes_identity() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    for privacy in ["none", "id"] {
        let srv = server(&[]);
        let gw = gateway(&via_mx(dns, &srv));
        let keys = [
            "-key",
            "rcpt",
            "bob@mx.test",
            "-key",
            "bye_privacy",
            privacy,
        ];
        assert!(
            common::sipp(gw.sip, "f6-bye-identity.xml", "u1", &keys),
            "F2 then a BYE with its own identity ({privacy})"
        );
        let all = mails(&srv, 2);
        assert_eq!(address(&parse(&all[0].1), "From").1, "alice@mail.iwf.test");
        let (meta, eml) = &all[1];
        let msg = parse(eml);
        assert_eq!(msg.subject(), Some("Chat ended"));
        let (name, from) = address(&msg, "From");
        if privacy == "none" {
            assert_eq!(
                (name.as_deref(), from.as_str()),
                (Some("Alice B."), "alice.b@mail.iwf.test")
            );
        } else {
            assert_eq!(name.as_deref(), Some("Anonymous"));
            assert!(
                from.starts_with("anon-") && from.ends_with("@mail.iwf.test"),
                "{from}"
            );
            let text = String::from_utf8_lossy(eml).to_lowercase();
            assert!(!text.contains("alice"), "the identity leaked: {text}");
        }
        // AA1/CC1: MAIL FROM follows the From row; the recipients are the invitation's.
        assert_eq!(meta["mail_from"], from.as_str());
        assert_eq!(rcpt_tos(meta), ["bob@mx.test"]);
    }
}

#[test]
fn f2_privacy_id_mails_from_the_anonymous_identity() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    let srv = server(&[]);
    let gw = gateway(&via_mx(dns, &srv));
    let extra = "P-Asserted-Identity: \"Alice A.\" <sip:alice@iwf.test>\r\nPrivacy: id\r\n\
                 Reply-To: <sip:alice@iwf.test>\r\n";
    let response = invite(&gw, "mailto:bob@mx.test", extra);
    assert!(response.starts_with("SIP/2.0 200 "), "{response}");
    let all = mails(&srv, 1);
    let (meta, eml) = &all[0];
    let msg = parse(eml);
    // An answerable address of the gateway's mail domain, one per session.
    let (name, from) = address(&msg, "From");
    assert_eq!(name.as_deref(), Some("Anonymous"));
    assert!(
        from.starts_with("anon-") && from.ends_with("@mail.iwf.test"),
        "{from}"
    );
    assert_eq!(address(&msg, "Reply-To").1, from);
    assert_eq!(meta["mail_from"], from.as_str());
    let text = String::from_utf8_lossy(eml).to_lowercase();
    assert!(!text.contains("alice"), "the identity leaked: {text}");
}

#[test]
fn f2_greeting_554_answers_4xx_with_the_reply_as_warning() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    let srv = server(&["--refuse-greeting"]);
    let gw = gateway(&via_mx(dns, &srv));
    let response = invite(&gw, "mailto:bob@mx.test", "");
    assert!(response.starts_with("SIP/2.0 4"), "step 3: {response}");
    assert!(!response.contains("application/sdp"));
    let w = warning(&response);
    assert!(w.contains("greeting") && w.contains("554"), "{w}");
}

#[test]
fn f2_rcpt_550_answers_488() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    let srv = server(&["--refuse-rcpt", "bob@mx.test"]);
    let gw = gateway(&via_mx(dns, &srv));
    let response = invite(&gw, "mailto:bob@mx.test", "");
    assert!(response.starts_with("SIP/2.0 488 "), "step 5b: {response}");
    let w = warning(&response);
    assert!(w.contains("550 5.1.1"), "{w}");
    // The channel is QUIT after the failure.
    wait_for(|| !srv.records("quit").is_empty(), "QUIT");
    assert!(srv.mails().is_empty());
    // The task frees its state just after the QUIT: wait for it, don't race it.
    wait_for(
        || gw.metric("iwf_mail_sessions ") == ["iwf_mail_sessions 0"],
        "mail state freed",
    );
    assert_eq!(
        gw.metric("iwf_invitations_total{outcome=\"refused\"}"),
        ["iwf_invitations_total{outcome=\"refused\"} 1"]
    );
}

#[test]
fn f2_data_451_answers_488() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    let srv = server(&["--refuse-data"]);
    let gw = gateway(&via_mx(dns, &srv));
    let response = invite(&gw, "mailto:bob@mx.test", "");
    assert!(response.starts_with("SIP/2.0 488 "), "step 5b: {response}");
    assert!(warning(&response).contains("451 4.3.0"), "{response}");
}

#[test]
fn f2_no_mx_and_no_address_is_an_error_answer_with_a_warning() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    let srv = server(&[]);
    let gw = gateway(&via_mx(dns, &srv));
    let response = invite(&gw, "mailto:bob@noaddr.test", "");
    let status: u16 = response[8..11].parse().unwrap();
    assert!((400..600).contains(&status), "{response}");
    assert!(warning(&response).contains("dns"), "{response}");
    assert!(srv.mails().is_empty());
}

#[test]
fn f2_smart_host_takes_the_invitation_for_any_domain() {
    require_peers();
    let srv = server(&[]);
    // No DNS server at all: the smart host is used without a look-up.
    let gw = gateway(&format!("smart_host = \"127.0.0.1:{}\"\n", srv.port));
    let response = invite(&gw, "mailto:carol@elsewhere.example", "");
    assert!(response.starts_with("SIP/2.0 200 "), "{response}");
    let all = mails(&srv, 1);
    assert_eq!(
        all[0].0["rcpt_tos"],
        serde_json::json!(["carol@elsewhere.example"])
    );
}

#[test]
fn f2_crlf_and_non_ascii_from_sip_make_a_clean_mail() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    let srv = server(&[]);
    let gw = gateway(&via_mx(dns, &srv));
    // A folded Subject carrying a header, a non-ASCII display name and subject, and a
    // Request-URI with a bcc hfield (RFC 6068) that must not add a recipient.
    let extra = "P-Asserted-Identity: \"\u{c5}lice \\\"Al\\\" <x>\" <sip:alice@iwf.test>\r\n\
                 Subject: Caf\u{e9} time?\r\n Bcc: evil@mx.test\r\n";
    let response = invite(&gw, "mailto:bob@mx.test?bcc=evil@mx.test", extra);
    assert!(response.starts_with("SIP/2.0 200 "), "{response}");
    let all = mails(&srv, 1);
    let (meta, eml) = &all[0];
    assert_eq!(meta["rcpt_tos"], serde_json::json!(["bob@mx.test"]));
    assert!(eml.is_ascii(), "8-bit header or body on the wire");
    let msg = parse(eml);
    assert!(msg.header_raw("Bcc").is_none(), "header injected");
    let names: Vec<String> = msg
        .headers()
        .iter()
        .map(|h| h.name().to_ascii_lowercase())
        .collect();
    assert_eq!(
        names.iter().filter(|n| *n == "subject").count(),
        1,
        "{names:?}"
    );
    let subject = msg.subject().unwrap();
    assert!(subject.starts_with("Caf\u{e9} time?"), "{subject}");
    let (name, addr) = address(&msg, "From");
    assert_eq!(addr, "alice@mail.iwf.test");
    assert_eq!(name.as_deref(), Some("\u{c5}lice \"Al\" <x>"));
}

#[test]
fn f2_cancel_while_mailing_is_487_then_the_mail_side_notifies_and_quits() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    // The server holds MAIL FROM for a second: the invitation is in flight at the CANCEL.
    let srv = server(&["--delay-mail", "1"]);
    let gw = gateway(&via_mx(dns, &srv));
    let (client, n) = (Client::new(), call());
    client.send(&gw, "INVITE", n, "mailto:bob@mx.test", "");
    assert!(client.recv().starts_with("SIP/2.0 100 "));
    std::thread::sleep(Duration::from_millis(300));
    client.send(&gw, "CANCEL", n, "mailto:bob@mx.test", "");
    let mut finals: Vec<String> = (0..2)
        .map(|_| client.recv_final().lines().next().unwrap().to_string())
        .collect();
    finals.sort();
    assert_eq!(
        finals,
        ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"],
        "9.2"
    );
    // The invitation lands after all; its late 250 makes no 200, and the session's mail
    // side closes: the CC2 notification, then QUIT.
    let all = mails(&srv, 2);
    assert_eq!(
        parse(&all[1].1).header_raw("Auto-Submitted").map(str::trim),
        Some("auto-generated")
    );
    wait_for(|| !srv.records("quit").is_empty(), "QUIT");
    client
        .socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 65536];
    while let Ok((len, _)) = client.socket.recv_from(&mut buf) {
        let late = String::from_utf8_lossy(&buf[..len]).to_string();
        assert!(
            !late.starts_with("SIP/2.0 200 OK") || late.contains("CSeq: 1 CANCEL"),
            "{late}"
        );
    }
}

#[test]
fn f6_the_notification_reopens_a_channel_the_server_dropped() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    let srv = server(&["--close-after-data"]);
    let gw = gateway(&via_mx(dns, &srv));
    // sipp pauses 200 ms after the ACK: the server has dropped the channel by the BYE.
    assert!(
        common::sipp(gw.sip, "f2-uac.xml", "u1", &["-key", "rcpt", "bob@mx.test"]),
        "F2 then BYE"
    );
    let all = mails(&srv, 2);
    assert_ne!(all[0].0["peer"], all[1].0["peer"], "a second connection");
    assert!(parse(&all[1].1).header("Auto-Submitted").is_some());
}

#[test]
fn f2_the_iwf_ending_an_invited_session_quits_without_a_notification() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    let srv = server(&[]);
    // T1 = 50 ms: no ACK within 64*T1 (3.2 s) and the IWF ends the session (13.3.1.4).
    let gw = gateway_with("t1_ms = 50\n", &via_mx(dns, &srv));
    let (client, n) = (Client::new(), call());
    client.send(&gw, "INVITE", n, "mailto:bob@mx.test", "");
    assert!(client.recv_final().starts_with("SIP/2.0 200 "));
    // No ACK: the 200 is retransmitted, then the IWF's BYE comes; it is answered 200.
    let bye = loop {
        let m = client.recv();
        if m.starts_with("BYE ") {
            break m;
        }
    };
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for line in bye.split("\r\n").skip(1) {
        if ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
            .iter()
            .any(|h| line.starts_with(h))
        {
            ok.push_str(line);
            ok.push_str("\r\n");
        }
    }
    ok.push_str("Content-Length: 0\r\n\r\n");
    client.socket.send_to(ok.as_bytes(), gw.sip).unwrap();
    // The channel is QUIT; no CC2 mail, as the CPM side did not close the session.
    wait_for(|| !srv.records("quit").is_empty(), "QUIT");
    assert_eq!(srv.mails().len(), 1, "the invitation only");
    wait_for(
        || gw.metric("iwf_mail_sessions ") == ["iwf_mail_sessions 0"],
        "mail state freed",
    );
}

#[test]
fn f2_group_invitation_maps_the_uri_list_to_to_cc_and_the_envelope() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    let srv = server(&[]);
    let gw = gateway(&via_mx(dns, &srv));
    assert!(
        common::sipp(
            gw.sip,
            "f2-group-uac.xml",
            "u1",
            &[
                "-key",
                "rcpt",
                "bob@mx.test",
                "-key",
                "cc",
                "dora@mx.test",
                "-key",
                "bcc",
                "eve@mx.test"
            ]
        ),
        "F2 ladder for a group session"
    );
    let all = mails(&srv, 1);
    let (meta, eml) = &all[0];
    let msg = parse(eml);
    // 5.2.4.2.4 step 2b: a new address represents the group and sends every mail (AA1
    // MAIL FROM, AA2 From); the policy names it (default: group-<session>@<mail domain>).
    let (name, from) = address(&msg, "From");
    assert!(
        from.starts_with("group-") && from.ends_with("@mail.iwf.test"),
        "{from}"
    );
    assert_eq!(name.as_deref(), Some("Lunch? (group chat)"));
    assert_eq!(meta["mail_from"], from.as_str());
    // AA2 Sender: the inviting user, from Referred-By, mapped.
    assert_eq!(
        address(&msg, "Sender"),
        (Some("Carol".into()), "carol@mail.iwf.test".into())
    );
    // AA2 To/Cc/Bcc from copyControl; the bcc entry only in the envelope (AA1 RCPT TO).
    assert_eq!(address(&msg, "To").1, "bob@mx.test");
    assert_eq!(
        address(&msg, "Cc"),
        (Some("Dora".into()), "dora@mx.test".into())
    );
    assert!(msg.header_raw("Bcc").is_none());
    assert_eq!(
        rcpt_tos(meta),
        ["bob@mx.test", "dora@mx.test", "eve@mx.test"]
    );
    // AA2 Date: the DateTime of the INVITE's message/cpim part, before its SIP Date.
    assert_eq!(
        msg.date().map(|d| d.to_rfc3339()).as_deref(),
        Some("2026-11-26T09:45:00+01:00")
    );
    // CC2 at the BYE: from the group, Sender the originator, X-Priority per the policy
    // (the INVITE's Priority: urgent), to the same recipients.
    let all = mails(&srv, 2);
    let (closed_meta, closed) = &all[1];
    let closed = parse(closed);
    assert_eq!(closed.subject(), Some("Chat ended"));
    assert_eq!(address(&closed, "From").1, from);
    assert_eq!(
        address(&closed, "Sender"),
        (Some("Carol".into()), "carol@mail.iwf.test".into())
    );
    assert_eq!(closed.header_raw("X-Priority").map(str::trim), Some("1"));
    assert_eq!(
        rcpt_tos(closed_meta),
        ["bob@mx.test", "dora@mx.test", "eve@mx.test"]
    );
    // The policy's group invitation text names the group's topic.
    let body = msg.body_text(0).unwrap().to_string();
    assert!(
        body.contains("group chat") && body.contains("Lunch?"),
        "{body}"
    );
}

/// RFC 2852 end to end: the policy asks for `BY=` (the test policy `misbehaving` in its
/// well-behaved `deliverby` mode); it reaches MAIL FROM only when the server advertised
/// DELIVERBY (AA1 BY row).
#[test]
fn by_is_sent_when_the_policy_asks_and_only_if_the_server_advertised_deliverby() {
    require_peers();
    let policy = format!(
        "path = {:?}\n",
        common::policy_file("misbehaving").display().to_string()
    );
    for (options, expected) in [(&["--deliverby"][..], Some("86400;N")), (&[][..], None)] {
        let (_dns, dns) = dnsmasq();
        let srv = server(options);
        let gw = gateway_with_policy("", &via_mx(dns, &srv), &policy);
        assert!(
            common::sipp(
                gw.sip,
                "f2-uac.xml",
                "u1",
                &["-key", "rcpt", "deliverby@mx.test"]
            ),
            "F2 ladder"
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
        for e in std::fs::read_dir(srv.dir.path()).unwrap() {
            let p = e.unwrap().path();
            eprintln!(
                "DEBUG {} {}",
                p.display(),
                std::fs::read_to_string(&p).unwrap_or_default()
            );
        }
        let all = mails(&srv, 1);
        for (meta, _) in &all {
            let by = meta["mail_args"].as_str().unwrap_or_default();
            match expected {
                Some(value) => assert!(by.contains(&format!("BY={value}")), "{by}"),
                None => assert!(!by.contains("BY="), "{by}"),
            }
        }
    }
}

/// What `recipient_server.py --max-connections` saw: the most connections open at once,
/// and how many it refused with 421.
fn connections(srv: &Server) -> (u64, u64) {
    let path = srv.dir.path().join("connections.json");
    let seen: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    (
        seen["peak"].as_u64().unwrap(),
        seen["refused"].as_u64().unwrap(),
    )
}

#[test]
fn f2_sessions_share_a_destination_within_its_connection_limit() {
    require_peers();
    const CALLS: u32 = 12;
    // A server that takes 3 connections from us at once and greets a 4th with 421, as
    // Postfix does past smtpd_client_connection_count_limit; each mail takes 200 ms, so
    // the invitations overlap.
    let srv = server(&["--max-connections", "3", "--delay-mail", "0.2"]);
    let smart_host = format!("smart_host = \"127.0.0.1:{}\"\n", srv.port);
    let rcpt = ["-key", "rcpt", "bob@mx.test"];

    // Twelve sessions at once, each waiting 200 ms before its BYE: the gateway holds three
    // connections at most (the others wait for one), keeps one between mails, and every
    // session gets its invitation and its CC2 through.
    let limits = "max_connections_per_destination = 3\nmax_idle_channels_per_destination = 1\n";
    let gw = gateway(&format!("{smart_host}{limits}"));
    assert!(
        common::sipp_calls(gw.sip, "f2-uac.xml", "u1", CALLS, &rcpt),
        "every call answered 200"
    );
    mails(&srv, 2 * CALLS as usize);
    let (peak, refused) = connections(&srv);
    assert!(peak <= 3, "{peak} connections open at once");
    assert_eq!(refused, 0);
    // Sessions waited for connections, none in vain, and every one is closed at the end.
    let waits = gw.metric("iwf_smtp_connection_waits_total{");
    assert_eq!(
        waits[1],
        "iwf_smtp_connection_waits_total{outcome=\"timed_out\"} 0"
    );
    let waited: u64 = waits[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(waited > 0, "{waits:?}");
    wait_for(
        || {
            gw.metric("iwf_smtp_connections{")
                == [
                    "iwf_smtp_connections{state=\"open\"} 0",
                    "iwf_smtp_connections{state=\"kept\"} 0",
                ]
        },
        "every connection closed",
    );
    assert_eq!(
        gw.metric("iwf_invitations_total{"),
        [
            format!("iwf_invitations_total{{outcome=\"mailed\"}} {CALLS}"),
            "iwf_invitations_total{outcome=\"refused\"} 0".into()
        ]
    );
    drop(gw);

    // The control: with room for twelve kept channels the server refuses some, and their
    // invitations fail. So the limit above is what kept every call.
    let roomy = "max_connections_per_destination = 40\nmax_idle_channels_per_destination = 20\n";
    let gw = gateway(&format!("{smart_host}{roomy}"));
    assert!(!common::sipp_calls(
        gw.sip,
        "f2-uac.xml",
        "u1",
        CALLS,
        &rcpt
    ));
    assert!(connections(&srv).1 > 0, "the server refused connections");
}

/// A group across two domains: each domain's MX gets the mail for its own recipients only
/// (RFC 5321 5.1), the same message, and the session's later mails and QUIT go to both.
#[test]
fn f2_group_mail_goes_to_each_recipient_domains_servers() {
    require_peers();
    let (_dns, dns) = dnsmasq();
    // mx.test's MX is 127.0.0.1, other.test's 127.0.0.2; both on the same mx_port.
    let here = server(&[]);
    let port = here.port.to_string();
    let there = server(&["--host", "127.0.0.2", "--port", &port]);
    let gw = gateway(&via_mx(dns, &here));
    let keys = ["bob@mx.test", "dora@other.test", "eve@mx.test"];
    let args = [
        "-key", "rcpt", keys[0], "-key", "cc", keys[1], "-key", "bcc", keys[2],
    ];
    assert!(
        common::sipp(gw.sip, "f2-group-uac.xml", "u1", &args),
        "F2 ladder, then BYE"
    );
    // The invitation and the CC2 notification, at each domain's server.
    let (at_here, at_there) = (mails(&here, 2), mails(&there, 2));
    for (meta, _) in &at_here {
        assert_eq!(rcpt_tos(meta), ["bob@mx.test", "eve@mx.test"]);
    }
    for (meta, _) in &at_there {
        assert_eq!(rcpt_tos(meta), ["dora@other.test"]);
    }
    // One message: the same headers for all (To bob, Cc dora), the same Message-ID.
    for i in 0..2 {
        let (a, b) = (parse(&at_here[i].1), parse(&at_there[i].1));
        assert_eq!(a.message_id(), b.message_id());
        assert_eq!(address(&a, "To").1, "bob@mx.test");
        assert_eq!(address(&b, "Cc").1, "dora@other.test");
    }
    assert_eq!(
        parse(&at_here[1].1).in_reply_to().as_text(),
        parse(&at_here[0].1).message_id()
    );
    wait_for(
        || !here.records("quit").is_empty(),
        "QUIT at mx.test's server",
    );
    wait_for(
        || !there.records("quit").is_empty(),
        "QUIT at other.test's server",
    );
}
