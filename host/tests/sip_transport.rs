//! The SIP transports over real sockets: the `iwf` binary on UDP and TCP, driven by sipp
//! (scenarios in `tests/sipp/`) and by raw sockets for what sipp cannot send (malformed
//! requests).

mod common;

use common::free_port;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

struct Gateway {
    _process: common::Running,
    sip: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
    _turn: Turn,
}

/// The load check measures retransmissions: it runs alone, the other tests side by side.
static LOAD_CHECK: RwLock<()> = RwLock::new(());

enum Turn {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

impl Turn {
    fn shared() -> Turn {
        Turn::Shared(LOAD_CHECK.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn alone() -> Turn {
        Turn::Alone(LOAD_CHECK.write().unwrap_or_else(|e| e.into_inner()))
    }
}

fn start() -> Gateway {
    start_with("")
}

/// The gateway serving the `auto-accept` policy (F1).
fn start_auto_accept() -> Gateway {
    let policy = common::policy_file("auto-accept");
    start_with(&format!(
        "[policy]\npath = {:?}\n",
        policy.display().to_string()
    ))
}

fn start_with(extra_config: &str) -> Gateway {
    start_with_sip("", extra_config, Turn::shared())
}

/// `sip_keys` go in `[sip]` after `listen`; `extra_config` after the other sections.
fn start_with_sip(sip_keys: &str, extra_config: &str, turn: Turn) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("iwf.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nlisten = \"127.0.0.1:0\"\n{sip_keys}[msrp]\nlisten = \"127.0.0.1:0\"\n[smtp.inbound]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"state\"\n{extra_config}"
        ),
    )
    .unwrap();
    let (process, at) = common::run_gateway(&config);
    Gateway {
        _process: process,
        sip: at.sip,
        admin: at.admin,
        _dir: dir,
        _turn: turn,
    }
}

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/sipp")
        .join(name)
}

/// Runs one call of a sipp scenario against the gateway; true when it passed.
fn sipp(gw: &Gateway, name: &str, transport: &str) -> bool {
    sipp_with(gw, name, transport, &[])
}

/// [`sipp`] with more arguments (`-key name value` for `[name]` in the scenario).
fn sipp_with(gw: &Gateway, name: &str, transport: &str, args: &[&str]) -> bool {
    common::sipp(gw.sip, name, transport, args)
}

#[test]
fn options_over_udp_and_tcp_answer_200_with_allow_and_accept() {
    let gw = start();
    assert!(sipp(&gw, "options.xml", "u1"), "OPTIONS over UDP");
    assert!(sipp(&gw, "options.xml", "t1"), "OPTIONS over TCP");
}

#[test]
fn unknown_method_is_501_over_udp_and_tcp() {
    let gw = start();
    assert!(sipp(&gw, "unknown-method.xml", "u1"));
    assert!(sipp(&gw, "unknown-method.xml", "t1"));
}

const VIA: &str = "Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{n}\r\n";

/// A request with the mandatory fields but `skip`; port 0 leaves `{port}` in the Via for
/// [`udp_exchange`] to fill with its socket's port.
fn request(port: u16, n: u32, start: &str, skip: &str, extra: &str, body: &str) -> String {
    let mut text = format!("{start}\r\n");
    let port = if port == 0 {
        "{port}".to_string()
    } else {
        port.to_string()
    };
    let fields = [
        VIA.replace("{port}", &port).replace("{n}", &n.to_string()),
        "Max-Forwards: 70\r\n".into(),
        "From: <sip:alice@example.com>;tag=a1\r\n".into(),
        "To: <sip:bob@example.net>\r\n".into(),
        format!("Call-ID: call-{n}@test\r\n"),
        format!("CSeq: 1 {}\r\n", start.split(' ').next().unwrap()),
    ];
    for f in fields {
        if skip.is_empty() || !f.starts_with(skip) {
            text.push_str(&f);
        }
    }
    text.push_str(extra);
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    text
}

/// Sends a datagram, returns the response's status line and the whole response.
fn udp_exchange(gw: &Gateway, bytes: &[u8]) -> (String, String) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let bytes = String::from_utf8_lossy(bytes)
        .replace("{port}", &socket.local_addr().unwrap().port().to_string());
    socket.send_to(bytes.as_bytes(), gw.sip).unwrap();
    let mut buf = [0u8; 65536];
    let (n, _) = socket.recv_from(&mut buf).expect("no answer");
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    (text.lines().next().unwrap_or_default().to_string(), text)
}

#[test]
fn malformed_requests_get_400_with_the_reason() {
    let gw = start();
    // Bad start line: the request line has no SIP version.
    let (status, text) = udp_exchange(
        &gw,
        request(0, 1, "OPTIONS sip:bob@example.net", "", "", "").as_bytes(),
    );
    assert!(status.starts_with("SIP/2.0 400 "), "{text}");
    assert!(text.contains("Warning: 399 cpm-iwf"), "{text}");

    // No Call-ID.
    let (status, text) = udp_exchange(
        &gw,
        request(
            0,
            2,
            "OPTIONS sip:bob@example.net SIP/2.0",
            "Call-ID",
            "",
            "",
        )
        .as_bytes(),
    );
    assert!(status.starts_with("SIP/2.0 400 "), "{text}");
    assert!(
        text.contains("Call-ID"),
        "the reason names the missing field: {text}"
    );

    // Content-Length beyond the body.
    let mut bytes = request(
        0,
        3,
        "OPTIONS sip:bob@example.net SIP/2.0",
        "",
        "Content-Type: text/plain\r\n",
        "hello",
    );
    bytes = bytes.replace("Content-Length: 5", "Content-Length: 50");
    let (status, text) = udp_exchange(&gw, bytes.as_bytes());
    assert!(status.starts_with("SIP/2.0 400 "), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("content-length"),
        "{text}"
    );
}

#[test]
fn a_known_but_unhandled_method_is_405_with_allow() {
    let gw = start();
    let (status, text) = udp_exchange(
        &gw,
        request(0, 4, "REGISTER sip:example.net SIP/2.0", "", "", "").as_bytes(),
    );
    assert!(status.starts_with("SIP/2.0 405 "), "{text}");
    assert!(text.contains("Allow: INVITE"), "{text}");
}

#[test]
fn responses_follow_rport_to_the_source_port() {
    let gw = start();
    // The Via claims port 9 but asks for rport: the answer must come back to our socket.
    let bytes = request(9, 5, "OPTIONS sip:bob@example.net SIP/2.0", "", "", "")
        .replace(";branch=", ";rport;branch=");
    let (status, text) = udp_exchange(&gw, bytes.as_bytes());
    assert!(status.starts_with("SIP/2.0 200 "), "{text}");
    assert!(text.contains(";rport="), "rport stamped: {text}");
    assert!(
        text.contains(";received=127.0.0.1") || text.contains("rport="),
        "{text}"
    );
}

#[test]
fn tcp_frames_split_across_writes_and_refuses_a_missing_content_length() {
    let gw = start();
    let mut s = TcpStream::connect(gw.sip).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let bytes = request(5060, 6, "OPTIONS sip:bob@example.net SIP/2.0", "", "", "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let (a, b) = bytes.as_bytes().split_at(bytes.len() / 2);
    s.write_all(a).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 200 "), "{text}");

    // A request without Content-Length on a stream cannot be framed: 400, then close.
    let no_length = bytes.replace("Content-Length: 0\r\n", "");
    s.write_all(no_length.as_bytes()).unwrap();
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    assert!(rest.starts_with("SIP/2.0 400 "), "{rest}");
}

const OFFER: &str = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=message 7394 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\n\
a=path:msrp://127.0.0.1:7394/abc;tcp\r\na=setup:active\r\n";

/// The Contact (RFC 3261 8.1.1.8) and Content-Type of an INVITE with an offer.
const SDP: &str = "Contact: <sip:alice@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\n";

#[test]
fn f1_over_udp_and_tcp_with_the_auto_accept_policy() {
    let gw = start_auto_accept();
    assert!(sipp(&gw, "f1-uac.xml", "u1"), "F1 over UDP");
    assert!(sipp(&gw, "f1-uac.xml", "t1"), "F1 over TCP");
}

/// The default policy asks the user (F2): the invitation goes to the smart host, where
/// nothing listens, so the INVITE is answered as AA3 maps a connect failure, with a Warning.
#[test]
fn default_policy_asks_the_user_and_an_unreachable_mail_server_is_480_with_a_warning() {
    let closed = free_port();
    let gw = start_with(&format!(
        "[smtp.outbound]\nsmart_host = \"127.0.0.1:{closed}\"\nconnect_timeout_ms = 1000\n"
    ));
    let invite = request(
        0,
        7,
        "INVITE mailto:bob@example.net SIP/2.0",
        "",
        SDP,
        OFFER,
    );
    let final_response = invite_exchange(&gw, &invite);
    assert!(
        final_response.starts_with("SIP/2.0 480 "),
        "{final_response}"
    );
    assert!(
        final_response.contains("Warning: 399 cpm-iwf \"SMTP connect failure"),
        "{final_response}"
    );
}

#[test]
fn an_invite_without_msrp_media_is_488_with_a_warning() {
    let gw = start_auto_accept();
    let audio = OFFER.replace("m=message 7394 TCP/MSRP *", "m=audio 49170 RTP/AVP 0");
    let invite = request(
        0,
        8,
        "INVITE mailto:bob@example.net SIP/2.0",
        "",
        SDP,
        &audio,
    );
    let final_response = invite_exchange(&gw, &invite);
    assert!(
        final_response.starts_with("SIP/2.0 488 "),
        "{final_response}"
    );
    assert!(
        final_response.contains("Warning: 304 cpm-iwf"),
        "{final_response}"
    );
}

#[test]
fn a_retransmitted_invite_makes_one_session_not_two() {
    let gw = start_auto_accept();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let port = socket.local_addr().unwrap().port().to_string();
    let invite = request(
        0,
        9,
        "INVITE mailto:bob@example.net SIP/2.0",
        "",
        SDP,
        OFFER,
    )
    .replace("{port}", &port);
    socket.send_to(invite.as_bytes(), gw.sip).unwrap();
    let first = recv_final(&socket);
    socket.send_to(invite.as_bytes(), gw.sip).unwrap();
    let second = recv_final(&socket);
    assert!(first.starts_with("SIP/2.0 200 "), "{first}");
    assert!(second.starts_with("SIP/2.0 200 "), "{second}");
    // The same To tag: the retransmission was answered by the same transaction with the
    // same 200, not by a second session.
    let tag = |r: &str| r.lines().find(|l| l.starts_with("To:")).map(str::to_string);
    assert_eq!(tag(&first), tag(&second));
    assert!(tag(&first).unwrap().contains(";tag="));
}

/// Sends an INVITE from a fresh socket; returns the final response.
fn invite_exchange(gw: &Gateway, invite: &str) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let port = socket.local_addr().unwrap().port().to_string();
    socket
        .send_to(invite.replace("{port}", &port).as_bytes(), gw.sip)
        .unwrap();
    recv_final(&socket)
}

/// Reads responses until a final one (skipping 1xx).
fn recv_final(socket: &UdpSocket) -> String {
    let mut buf = [0u8; 65536];
    loop {
        let (n, _) = socket.recv_from(&mut buf).expect("no final response");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if !text.starts_with("SIP/2.0 1") {
            return text;
        }
    }
}

/// CANCEL while the INVITE is pending (RFC 3261 9.2): the `misbehaving` policy spins on
/// user `spin` until its 0.8 s deadline, so the INVITE waits on the decision when the CANCEL
/// comes. 200 to the CANCEL, 487 to the INVITE, and the late decision leaves no session.
#[test]
fn cancel_while_the_decision_is_pending_answers_487_and_leaves_no_session() {
    let policy = common::policy_file("misbehaving");
    let gw = start_with(&format!(
        "[policy]\npath = {:?}\ntimeout_ms = 800\n",
        policy.display().to_string()
    ));
    assert!(sipp(&gw, "cancel-pending.xml", "u1"), "CANCEL over UDP");
    assert_eq!(gauge(&gw, "iwf_sip_sessions"), 0, "cancelled: no session");
    // The decision comes back after the deadline and is dropped: still no session.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(gauge(&gw, "iwf_sip_sessions"), 0, "late decision dropped");
    assert!(sipp(&gw, "cancel-pending.xml", "t1"), "CANCEL over TCP");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(gauge(&gw, "iwf_sip_sessions"), 0);
}

/// Polls a gauge until it reads `want` (2 s at most); returns the last reading.
fn gauge_settles(gw: &Gateway, name: &str, want: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let value = gauge(gw, name);
        if value == want || std::time::Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The gateway with the `auto-accept` policy and T1 = 20 ms: 64*T1 is 1.28 s.
fn start_auto_accept_short_t1() -> Gateway {
    let policy = common::policy_file("auto-accept");
    start_with_sip(
        "t1_ms = 20\n",
        &format!("[policy]\npath = {:?}\n", policy.display().to_string()),
        Turn::shared(),
    )
}

/// No ACK for the 200 (RFC 3261 13.3.1.4): 64*T1 later the IWF sends a BYE with a Reason,
/// sipp answers 200, and the session is freed.
#[test]
fn no_ack_within_64_t1_ends_the_session_with_a_bye() {
    let gw = start_auto_accept_short_t1();
    assert!(sipp(&gw, "no-ack-bye.xml", "u1"), "over UDP");
    assert_eq!(gauge_settles(&gw, "iwf_sip_sessions", 0), 0);
    assert!(sipp(&gw, "no-ack-bye.xml", "t1"), "over TCP");
    assert_eq!(gauge_settles(&gw, "iwf_sip_sessions", 0), 0);
}

/// The route set (RFC 3261 12.1.1, 12.2.1.1): with `Record-Route: <sip:sipp;lr>` and a
/// Contact nobody listens on, the IWF's BYE reaches sipp through the route, carries it as
/// `Route`, and names the Contact as Request-URI; the route's host by address or by name.
#[test]
fn the_iwf_bye_follows_the_record_route() {
    let gw = start_auto_accept_short_t1();
    for host in ["127.0.0.1", "localhost"] {
        let key = ["-key", "rr_host", host];
        assert!(sipp_with(&gw, "record-route-bye.xml", "u1", &key), "{host}");
        assert_eq!(gauge_settles(&gw, "iwf_sip_sessions", 0), 0);
    }
}

/// re-INVITE (RFC 3261 14.2): the same offer gets the same answer (RFC 3264 8), another
/// media line gets 488; the session survives both and ends with the peer's BYE.
#[test]
fn reinvite_refresh_is_200_media_change_is_488_and_the_session_goes_on() {
    let gw = start_auto_accept();
    assert!(sipp(&gw, "reinvite.xml", "u1"), "over UDP");
    assert!(sipp(&gw, "reinvite.xml", "t1"), "over TCP");
    assert_eq!(gauge_settles(&gw, "iwf_sip_sessions", 0), 0);
}

/// An in-dialog request with an old CSeq is 500 (RFC 3261 12.2.2); the session goes on.
#[test]
fn an_in_dialog_request_with_an_old_cseq_is_500() {
    let gw = start_auto_accept();
    assert!(sipp(&gw, "old-cseq.xml", "u1"));
    assert_eq!(gauge_settles(&gw, "iwf_sip_sessions", 0), 0);
}

/// A gauge from `GET /metrics`.
fn gauge(gw: &Gateway, name: &str) -> u64 {
    let mut s = TcpStream::connect(gw.admin).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// The load check of issue 4: sipp at 300 F1 calls/s for 10 s over UDP. Every call
/// succeeds, sipp retransmits nothing (every request answered within 500 ms), and the
/// session table is empty afterwards.
#[test]
fn f1_load_300_calls_per_second_for_10_seconds() {
    let policy = common::policy_file("auto-accept");
    let config = format!("[policy]\npath = {:?}\n", policy.display().to_string());
    let gw = start_with_sip("", &config, Turn::alone());
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.csv");
    let status = Command::new("sipp")
        .arg("-sf")
        .arg(scenario("f1-uac.xml"))
        .args([
            "-r",
            "300",
            "-m",
            "3000",
            "-l",
            "2000",
            "-t",
            "u1",
            "-i",
            "127.0.0.1",
            "-p",
            "0",
        ])
        .args([
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
            "-trace_stat",
            "-fd",
            "1",
            "-stf",
        ])
        .arg(&stats)
        .arg(gw.sip.to_string())
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let csv = std::fs::read_to_string(&stats).unwrap_or_default();
    assert!(status.success(), "sipp reported failed calls:\n{csv}");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(';').collect();
    let last: Vec<&str> = lines.last().unwrap_or_default().split(';').collect();
    let column = |name: &str| -> u64 {
        let i = header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column"));
        last[i].trim().parse().unwrap()
    };
    assert_eq!(column("SuccessfulCall(C)"), 3000, "{csv}");
    assert_eq!(column("FailedCall(C)"), 0);
    assert_eq!(
        column("Retransmissions(C)"),
        0,
        "unexpected retransmissions"
    );
    assert_eq!(
        gauge(&gw, "iwf_sip_sessions"),
        0,
        "sessions left after every BYE"
    );
}
