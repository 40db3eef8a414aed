//! F4 through an independent MSRP implementation: Kamailio's msrp module as an RFC 4976
//! relay (tests/kamailio/msrp-relay.cfg) between the MSRP test client and the IWF.
//!
//! Ladder:
//! 1. client -> relay: AUTH (RFC 4976: a client connects to its relay and AUTHs);
//!    <- 200 with Use-Path (the relay's URI for this client).
//! 2. sipp (tests/sipp/f4-relay.xml) -> IWF: INVITE whose offer says a=setup:active and
//!    a=path: the Use-Path URI, then the client's URI (relays first);
//!    <- 200 with the IWF's answer: a=setup:passive (RFC 6135 4.2), its own a=path.
//! 3. client -> relay -> IWF: SENDs with To-Path: relay, IWF. Kamailio rewrites the
//!    paths (To-Path loses its URI, From-Path gains it: RFC 4976 forwarding) and opens the
//!    connection to the IWF, which binds it by the To-Path session id and checks the
//!    From-Path against the SDP path. The IWF mails each whole message, answers, and
//!    Kamailio carries the answer (and the IWF's REPORT) down the client's connection.
//! 4. The BYE ends the session.
//!
//! The second test offers a=setup:actpass: the IWF is active, connects to the first URI
//! of the offered path (the relay) and binds with an empty SEND, which Kamailio carries
//! down the client's connection; the client's 200 and SENDs go back up the IWF's own
//! connection.
//!
//! So Kamailio parses every frame the IWF writes (responses, REPORT) and the IWF parses
//! every frame Kamailio rewrites. Needs `kamailio`, `sip-tester` and `python3-aiosmtpd`;
//! without them the test fails, naming what to install.

mod common;

use common::chat::{Gateway, Sipp, gateway};
use common::mail::{server, wait_for};
use common::msrp::MsrpClient;
use common::peers::{self, KAMAILIO, Peer};
use iwf::msrp::{FailureReport, Flag, Frame, Header, Method, StartLine, Status, TransactId};
use iwf::sdp::{Host, MsrpUri};
use mail_parser::MessageParser;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// Kamailio running tests/kamailio/msrp-relay.cfg in the foreground on a free loopback
/// port, with its own runtime dir; stopped (SIGTERM, which stops its workers) when dropped.
struct Kamailio {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    /// Kamailio cannot bind port 0 and say which port it got: it is started again on
    /// another port when its port was taken.
    fn start() -> Kamailio {
        common::on_a_free_port("kamailio", Kamailio::start_on)
    }

    fn start_on(port: u16) -> Result<Kamailio, String> {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let cfg =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/kamailio/msrp-relay.cfg");
        let log = dir.path().join("kamailio.log");
        let child = Command::new(KAMAILIO)
            .arg("-f")
            .arg(&cfg)
            // -DD: no daemon, the main process stays ours; -E: log to stderr.
            .args(["-DD", "-E"])
            .args(["-l", &format!("tcp:{addr}")])
            .arg("-Y")
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .arg("-w")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start kamailio");
        let mut k = Kamailio {
            child,
            addr,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT;
        // Up once its workers started (`child_init`, after the listener is bound) and it
        // accepts: a connect alone could reach whoever took the port.
        while !(k.log().contains("child_init") && TcpStream::connect(addr).is_ok()) {
            if let Some(status) = k.child.try_wait().unwrap() {
                let log = k.log();
                if log.contains("Address already in use") {
                    return Err(log);
                }
                panic!("kamailio exited ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "kamailio did not listen:\n{}",
                k.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(k)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The relay's URI without a session id, as a client addresses its AUTH (RFC 4976).
    fn uri(&self) -> MsrpUri {
        MsrpUri::tcp(Host::Ip(self.addr.ip()), self.addr.port(), "")
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // Exited already (refused its port): its pid may be another process's by now.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The relay, the CPM client and the mail peers, or the test fails.
fn require_relay_peers() {
    peers::require(&[Peer::Kamailio, Peer::Sipp, Peer::Aiosmtpd]);
}

/// sipp running tests/sipp/f4-relay.xml once (the offer's whole `a=path` is a key).
fn relay_call(gw: &Gateway, setup: &str, relay_port: u16, path: &str) -> Sipp {
    let port = relay_port.to_string();
    let keys = [
        ("setup", setup),
        ("msrp_port", port.as_str()),
        ("path", path),
        ("rcpt", "bob@example.net"),
    ];
    Sipp::run(gw, "f4-relay.xml", "relay", &keys)
}

fn code_of(frame: &Frame) -> Option<u16> {
    match frame.start {
        StartLine::Response { code, .. } => Some(code),
        StartLine::Request(_) => None,
    }
}

fn header<'a>(frame: &'a Frame, name: &str) -> Option<&'a str> {
    frame.headers.iter().find_map(|h| match h {
        Header::Other { name: n, value } if n.eq_ignore_ascii_case(name) => Some(value.as_str()),
        _ => None,
    })
}

/// The client's AUTH at the relay (RFC 4976, no digest asked: see the config); the 200's
/// Use-Path, the relay's URI for this client.
async fn auth(client: &mut MsrpClient, relay: &Kamailio) -> MsrpUri {
    let auth = Frame {
        transact_id: TransactId::random(),
        start: StartLine::Request(Method::Other("AUTH".into())),
        to_path: vec![relay.uri()],
        from_path: vec![client.local.clone()],
        headers: Vec::new(),
        body: None,
        flag: Flag::Complete,
    };
    client.send_frame(&auth).await;
    let answer = client.expect_frame(WAIT).await;
    assert_eq!(answer.transact_id, auth.transact_id, "{}", relay.log());
    assert_eq!(code_of(&answer), Some(200), "{answer:?}\n{}", relay.log());
    let use_path = MsrpUri::parse(header(&answer, "Use-Path").expect("Use-Path")).unwrap();
    assert_eq!(use_path.port, Some(relay.addr.port()));
    assert!(!use_path.session_id.is_empty(), "{use_path:?}");
    use_path
}

const CPIM: &str = "From: Alice <sip:alice@ims.example.com>\r\n\
    To: <mailto:bob@example.net>\r\n\
    DateTime: 2026-11-26T10:00:00.000+01:00\r\n\
    \r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    \r\n\
    Relayed by Kamailio";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_through_kamailio_msrp_relay_iwf_responses_and_reports_reach_the_client() {
    require_relay_peers();
    let srv = server(&[]);
    let gw = gateway("auto-accept", &srv);
    let relay = tokio::task::block_in_place(Kamailio::start);
    let client_port = common::free_port();
    let local = MsrpUri::tcp(Host::Ip([127, 0, 0, 1].into()), client_port, "kamcl13nt");
    let mut client = MsrpClient::connect(relay.addr, local.clone(), vec![relay.uri()]).await;

    // 1. AUTH at the relay (RFC 4976); 200 with Use-Path, the URI to put in the path.
    let use_path = auth(&mut client, &relay).await;

    // 2. The offer's path: the relay, then the client (RFC 4976: Use-Path goes first).
    let path = format!("{use_path} {local}");
    let sipp = relay_call(&gw, "active", relay.addr.port(), &path);
    let (iwf_uri, setup) = tokio::task::block_in_place(|| sipp.answer());
    // RFC 6135 4.2: the offer was active, so the IWF is passive; the relay connects.
    assert_eq!(setup, "passive");
    assert_eq!(iwf_uri.port, Some(gw.msrp.port()));
    client.to_path = vec![use_path.clone(), iwf_uri.clone()];

    // 3a. One SEND with a Success-Report: the IWF's 200 comes back through the relay
    // (the IWF wrote To-Path: relay, client and From-Path: itself, RFC 4975 section 7.2;
    // the relay moved its URI from one to the other, RFC 4976 forwarding), then its
    // REPORT (section 7.1.2), both framed by the IWF and re-framed by Kamailio.
    let sent = client
        .send_message(
            "kam1",
            "message/cpim",
            CPIM.as_bytes(),
            2048,
            (true, FailureReport::Yes),
        )
        .await;
    let response = client.expect_frame(WAIT).await;
    assert_eq!(response.transact_id, sent[0].transact_id, "{response:?}");
    assert_eq!(
        code_of(&response),
        Some(200),
        "{response:?}\n{}",
        relay.log()
    );
    assert_eq!(
        response.from_path,
        vec![use_path.clone(), iwf_uri.clone()],
        "the IWF's own response, through the relay"
    );
    assert_eq!(
        response.to_path,
        vec![local.clone()],
        "the relay took its URI off"
    );
    let report = client.expect_request(Method::Report, WAIT).await;
    assert_eq!(report.message_id(), Some("kam1"));
    assert!(
        report
            .headers
            .iter()
            .any(|h| matches!(h, Header::Status(Status { code: 200, .. }))),
        "{report:?}"
    );
    assert_eq!(report.from_path, vec![use_path.clone(), iwf_uri.clone()]);
    wait_for(
        || !srv.mails().is_empty(),
        "the first mail reaches the server",
    );
    let mail = &srv.mails()[0];
    let msg = MessageParser::default().parse(&mail.1).unwrap();
    assert!(
        msg.body_text(0).unwrap().starts_with("Relayed by Kamailio"),
        "{:?}",
        msg.body_text(0)
    );

    // 3b. A message in three chunks through the relay: each chunk's response, one mail
    // carrying the three parts in order.
    let text = b"chunk one; chunk two; chunk three.";
    let sent = client
        .send_message("kam2", "text/plain", text, 12, (false, FailureReport::Yes))
        .await;
    assert_eq!(sent.len(), 3);
    for chunk in &sent {
        assert_eq!(
            client.expect_response(chunk, WAIT).await,
            200,
            "{}",
            relay.log()
        );
    }
    wait_for(
        || srv.mails().len() >= 2,
        "the second mail reaches the server",
    );
    let mail = &srv.mails()[1];
    let msg = MessageParser::default().parse(&mail.1).unwrap();
    assert!(
        msg.body_text(0)
            .unwrap()
            .starts_with("chunk one; chunk two; chunk three.")
    );

    // 3c. An error status, framed with a comment, comes back the same way: 415 for a
    // type outside the negotiated accept-types (RFC 4975 section 7.3.1).
    let sent = client
        .send_message(
            "kam3",
            "application/octet-stream",
            b"\x00\x01",
            2048,
            (false, FailureReport::Yes),
        )
        .await;
    assert_eq!(client.expect_response(&sent[0], WAIT).await, 415);

    // 4. The BYE (sipp, after its pause) ends the session; two chat mails went out and
    // the CC2 notification follows.
    assert!(tokio::task::block_in_place(|| sipp.passed()), "sipp ladder");
    wait_for(|| srv.mails().len() >= 3, "the CC2 notification");
    assert_eq!(srv.mails().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_through_kamailio_msrp_relay_iwf_active_binds_via_the_relay_and_carries_chat() {
    require_relay_peers();
    let srv = server(&[]);
    let gw = gateway("auto-accept", &srv);
    let relay = tokio::task::block_in_place(Kamailio::start);
    let local = MsrpUri::tcp(
        Host::Ip([127, 0, 0, 1].into()),
        common::free_port(),
        "kamact1v",
    );
    let mut client = MsrpClient::connect(relay.addr, local.clone(), vec![relay.uri()]).await;
    let use_path = auth(&mut client, &relay).await;

    // RFC 6135 4.2: actpass offered, so the IWF is active: it connects to the first URI
    // of the offered path, the relay (RFC 4975 section 6.2), which carries its frames on.
    let path = format!("{use_path} {local}");
    let sipp = relay_call(&gw, "actpass", relay.addr.port(), &path);
    let (iwf_uri, setup) = tokio::task::block_in_place(|| sipp.answer());
    assert_eq!(setup, "active");
    // RFC 4975 section 5.4: the active side binds with a SEND (empty here), To-Path the
    // offered path; the relay took its URI off the To-Path and put it on the From-Path.
    let bind = client.expect_request(Method::Send, WAIT).await;
    assert!(bind.body.is_none(), "{bind:?}");
    assert_eq!(bind.to_path, vec![local.clone()]);
    assert_eq!(bind.from_path, vec![use_path.clone(), iwf_uri.clone()]);
    // The 200 goes back through the relay, down the IWF's own connection.
    client.respond(&bind, 200).await;

    client.to_path = vec![use_path.clone(), iwf_uri.clone()];
    let sent = client
        .send_message(
            "kamact1",
            "message/cpim",
            CPIM.as_bytes(),
            2048,
            (false, FailureReport::Yes),
        )
        .await;
    assert_eq!(
        client.expect_response(&sent[0], WAIT).await,
        200,
        "{}",
        relay.log()
    );
    wait_for(|| !srv.mails().is_empty(), "the mail reaches the server");
    let mail = &srv.mails()[0];
    let msg = MessageParser::default().parse(&mail.1).unwrap();
    assert!(msg.body_text(0).unwrap().starts_with("Relayed by Kamailio"));
    assert!(tokio::task::block_in_place(|| sipp.passed()), "sipp ladder");
}
