//! Outgoing mail against real peers on loopback: dnsmasq as the DNS server with MX
//! records, an aiosmtpd server (tests/smtp/recipient_server.py) as the e-mail user's SMTP
//! server. The ladder of each test: route (MX) -> channel (greeting, EHLO) -> MAIL, RCPT,
//! DATA -> what the server stored.
//!
//! Needs `dnsmasq` and `python3-aiosmtpd` (Debian). Without them a test prints why and
//! passes, except under CI (env CI set), where it fails.

mod common;

use iwf::config::SmtpOutboundConfig;
use iwf::mail::{AddrSpec, AutoSubmitted, Draft, Mailbox, MsgId, XPriority, compose};
use iwf::smtp::{self, ByMode, Channel, ClientSettings, DeliverBy, Envelope, Router, Stage};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";
const PYTHON: &str = "/usr/bin/python3";

/// True when the real peers are there; otherwise says why (and fails under CI).
fn peers_available(test: &str) -> bool {
    let mut missing = Vec::new();
    if !Path::new(DNSMASQ).exists() {
        missing.push("dnsmasq (apt-get install dnsmasq)");
    }
    let aiosmtpd = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !aiosmtpd {
        missing.push("/usr/bin/python3 with aiosmtpd (apt-get install python3-aiosmtpd)");
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("SKIPPED {test}: missing {}", missing.join(", "));
    assert!(
        std::env::var_os("CI").is_none(),
        "{why} (required under CI)"
    );
    eprintln!("{why}");
    false
}

/// A child process killed when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dnsmasq on a free loopback port (UDP and TCP), authoritative for `.test`:
/// - `mx.test`: MX 10 `mx1.mx.test` (127.0.0.1);
/// - `pref.test`: MX 10 `down.pref.test` (127.0.0.2, nothing listens), MX 20 `up.pref.test`
///   (127.0.0.1);
/// - `implicit.test`: no MX, A 127.0.0.1;
/// - `noaddr.test`: no MX, no A (a TXT record only); `nothing.test`: NXDOMAIN;
/// - `nullmx.test`: MX 0 `.` (RFC 7505).
///
/// Names outside `.test` get REFUSED (no upstream).
fn dnsmasq() -> (Peer, SocketAddr) {
    let port = common::free_port();
    let child = Command::new(DNSMASQ)
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--user=root",
            "--pid-file=",
            "--local=/test/",
            "--mx-host=mx.test,mx1.mx.test,10",
            "--host-record=mx1.mx.test,127.0.0.1",
            "--mx-host=pref.test,up.pref.test,20",
            "--mx-host=pref.test,down.pref.test,10",
            "--host-record=down.pref.test,127.0.0.2",
            "--host-record=up.pref.test,127.0.0.1",
            "--host-record=implicit.test,127.0.0.1",
            "--txt-record=noaddr.test,no address here",
            "--mx-host=nullmx.test,.,0",
        ])
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    let peer = Peer(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_for(|| std::net::TcpStream::connect(addr).is_ok(), "dnsmasq");
    (peer, addr)
}

/// The recipient's SMTP server on 127.0.0.1:`port`, storing into a temporary folder.
struct Server {
    _peer: Peer,
    dir: tempfile::TempDir,
    port: u16,
}

fn server(options: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/smtp/recipient_server.py");
    let mut child = Command::new(PYTHON)
        .arg(script)
        .args(["--port", &port.to_string(), "--dir"])
        .arg(dir.path())
        .args(options)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start recipient_server.py");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY", "recipient_server.py did not start");
    Server {
        _peer: Peer(child),
        dir,
        port,
    }
}

impl Server {
    /// The files `prefix-N.json` in order of N.
    fn numbered(&self, prefix: &str) -> Vec<PathBuf> {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| {
                let path = e.unwrap().path();
                let name = path.file_name()?.to_str()?;
                let n = name
                    .strip_prefix(prefix)?
                    .strip_prefix('-')?
                    .strip_suffix(".json")?;
                Some((n.parse().ok()?, path))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, path)| path).collect()
    }

    fn records(&self, prefix: &str) -> Vec<serde_json::Value> {
        self.numbered(prefix)
            .into_iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// Each stored mail: its JSON record and the message as received.
    fn mails(&self) -> Vec<(serde_json::Value, Vec<u8>)> {
        self.numbered("mail")
            .into_iter()
            .map(|p| {
                let meta = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                (meta, std::fs::read(p.with_extension("eml")).unwrap())
            })
            .collect()
    }

    /// This server as the only target, without DNS.
    fn target(&self) -> smtp::Target {
        smtp::Target {
            host: "mx.test".into(),
            addrs: vec![([127, 0, 0, 1], self.port).into()],
        }
    }
}

fn wait_for(ready: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn outbound(dns: Option<SocketAddr>, mx_port: u16) -> SmtpOutboundConfig {
    SmtpOutboundConfig {
        dns_servers: dns.into_iter().collect(),
        mx_port,
        helo: "iwf.test".into(),
        dns_timeout_ms: 1_000,
        dns_attempts: 1,
        connect_timeout_ms: 2_000,
        command_timeout_ms: 5_000,
        data_timeout_ms: 5_000,
        ..SmtpOutboundConfig::default()
    }
}

fn addr(a: &str) -> AddrSpec {
    AddrSpec::parse(a).unwrap()
}

/// An AA2 invitation from Alice to `to`.
fn invitation(to: &str, contribution_id: &str) -> Vec<u8> {
    compose(&Draft {
        from: Mailbox::new(Some("Alice Ångström"), "alice@iwf.test").unwrap(),
        sender: None,
        reply_to: None,
        to: vec![Mailbox::new(None, to).unwrap()],
        cc: vec![],
        date: chrono::DateTime::parse_from_rfc3339("2026-11-26T11:00:00+00:00").unwrap(),
        message_id: MsgId::from_contribution_id(contribution_id, "iwf.test").unwrap(),
        in_reply_to: None,
        references: vec![],
        subject: Some("Chat with Alice?".into()),
        x_priority: Some(XPriority::new(3).unwrap()),
        auto_submitted: None,
        body: "Alice invites you to a chat.\nReply ACCEPT or REJECT.".into(),
    })
}

fn envelope(to: &[&str], deliver_by: Option<DeliverBy>) -> Envelope {
    Envelope {
        from: Some(addr("alice@iwf.test")),
        to: to.iter().map(|a| addr(a)).collect(),
        deliver_by,
    }
}

fn settings(config: &SmtpOutboundConfig) -> ClientSettings {
    ClientSettings::from_config(config)
}

#[tokio::test]
async fn f2_mx_lookup_then_invitation_delivered_on_mx_port() {
    if !peers_available("f2_mx_lookup_then_invitation_delivered_on_mx_port") {
        return;
    }
    let (_dns, dns) = dnsmasq();
    let srv = server(&[]);
    let config = outbound(Some(dns), srv.port);
    let router = Router::new(&config).unwrap();
    let targets = router.route("mx.test").await.unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].host, "mx1.mx.test");
    assert_eq!(
        targets[0].addrs,
        [SocketAddr::from(([127, 0, 0, 1], srv.port))]
    );

    let mut channel = Channel::open(&targets, &settings(&config)).await.unwrap();
    let sent = channel
        .send(
            &envelope(&["bob@mx.test"], None),
            &invitation("bob@mx.test", "cid-1"),
        )
        .await
        .unwrap();
    assert_eq!(sent.reply.code, 250);
    assert_eq!(sent.recipients.len(), 1);
    assert!(sent.recipients[0].result.is_ok());
    channel.quit().await.unwrap();

    let mails = srv.mails();
    assert_eq!(mails.len(), 1);
    let (meta, eml) = &mails[0];
    assert_eq!(meta["mail_from"], "alice@iwf.test");
    assert_eq!(meta["rcpt_tos"], serde_json::json!(["bob@mx.test"]));
    assert_eq!(meta["helo"], "iwf.test");
    let msg = mail_parser::MessageParser::default()
        .parse(&eml[..])
        .unwrap();
    let from = msg.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("Alice Ångström"));
    assert_eq!(from.address(), Some("alice@iwf.test"));
    assert_eq!(
        msg.to().unwrap().first().unwrap().address(),
        Some("bob@mx.test")
    );
    assert_eq!(msg.subject(), Some("Chat with Alice?"));
    assert_eq!(msg.message_id(), Some("cid-1@iwf.test"));
    assert_eq!(msg.header_raw("X-Priority").map(str::trim), Some("3"));
    assert_eq!(
        msg.body_text(0).unwrap(),
        "Alice invites you to a chat.\r\nReply ACCEPT or REJECT.\r\n"
    );
}

#[tokio::test]
async fn mx_preference_order_first_refuses_connection_second_used() {
    if !peers_available("mx_preference_order_first_refuses_connection_second_used") {
        return;
    }
    let (_dns, dns) = dnsmasq();
    let srv = server(&[]);
    let config = outbound(Some(dns), srv.port);
    let router = Router::new(&config).unwrap();
    let targets = router.route("pref.test").await.unwrap();
    let hosts: Vec<_> = targets.iter().map(|t| t.host.as_str()).collect();
    assert_eq!(hosts, ["down.pref.test", "up.pref.test"]);
    assert_eq!(
        targets[0].addrs,
        [SocketAddr::from(([127, 0, 0, 2], srv.port))]
    );

    let mut channel = smtp::connect(&router, &settings(&config), "pref.test")
        .await
        .unwrap();
    assert_eq!(channel.host(), "up.pref.test");
    assert_eq!(channel.peer(), SocketAddr::from(([127, 0, 0, 1], srv.port)));
    channel
        .send(
            &envelope(&["bob@pref.test"], None),
            &invitation("bob@pref.test", "cid-2"),
        )
        .await
        .unwrap();
    assert_eq!(srv.mails().len(), 1);
}

#[tokio::test]
async fn implicit_mx_when_the_domain_has_only_an_address() {
    if !peers_available("implicit_mx_when_the_domain_has_only_an_address") {
        return;
    }
    let (_dns, dns) = dnsmasq();
    let srv = server(&[]);
    let config = outbound(Some(dns), srv.port);
    let router = Router::new(&config).unwrap();
    let targets = router.route("implicit.test").await.unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].host, "implicit.test");
    let mut channel = Channel::open(&targets, &settings(&config)).await.unwrap();
    channel
        .send(
            &envelope(&["carol@implicit.test"], None),
            &invitation("carol@implicit.test", "cid-3"),
        )
        .await
        .unwrap();
    assert_eq!(
        srv.mails()[0].0["rcpt_tos"],
        serde_json::json!(["carol@implicit.test"])
    );
}

#[tokio::test]
async fn dns_failures_are_typed_permanent_or_temporary() {
    if !peers_available("dns_failures_are_typed_permanent_or_temporary") {
        return;
    }
    let (_dns, dns) = dnsmasq();
    let router = Router::new(&outbound(Some(dns), 25)).unwrap();
    for (domain, enhanced) in [
        ("noaddr.test", "5.1.2"),  // no MX, no A/AAAA
        ("nothing.test", "5.1.2"), // NXDOMAIN
        ("nullmx.test", "5.1.10"), // RFC 7505
    ] {
        let f = router.route(domain).await.unwrap_err();
        assert_eq!(f.stage, Stage::Dns, "{domain}: {f}");
        assert!(f.permanent, "{domain}: {f}");
        assert_eq!(
            (f.code, f.enhanced_code.as_deref()),
            (0, Some(enhanced)),
            "{domain}: {f}"
        );
        assert!(f.text.contains(domain), "{f}");
    }
    // dnsmasq refuses names outside .test (no upstream): a server failure, it may pass.
    let f = router.route("unreachable.example").await.unwrap_err();
    assert_eq!(f.stage, Stage::Dns);
    assert!(!f.permanent, "{f}");
    assert_eq!(f.enhanced_code.as_deref(), Some("4.4.3"));
}

#[tokio::test]
async fn smart_host_bypasses_mx() {
    if !peers_available("smart_host_bypasses_mx") {
        return;
    }
    let srv = server(&[]);
    let config = SmtpOutboundConfig {
        smart_host: Some(format!("127.0.0.1:{}", srv.port)),
        ..outbound(None, 1)
    };
    let router = Router::new(&config).unwrap();
    // No DNS server knows this domain: the smart host takes it all the same.
    let mut channel = smtp::connect(&router, &settings(&config), "nowhere.invalid")
        .await
        .unwrap();
    assert_eq!(channel.host(), "127.0.0.1");
    channel
        .send(
            &envelope(&["dave@nowhere.invalid"], None),
            &invitation("dave@nowhere.invalid", "cid-4"),
        )
        .await
        .unwrap();
    assert_eq!(
        srv.mails()[0].0["rcpt_tos"],
        serde_json::json!(["dave@nowhere.invalid"])
    );
}

#[tokio::test]
async fn f2_greeting_554_is_a_greeting_failure() {
    if !peers_available("f2_greeting_554_is_a_greeting_failure") {
        return;
    }
    let srv = server(&["--refuse-greeting"]);
    let config = outbound(None, srv.port);
    let target = smtp::Target {
        host: "refusing.test".into(),
        addrs: vec![([127, 0, 0, 1], srv.port).into()],
    };
    let f = Channel::open(&[target], &settings(&config))
        .await
        .unwrap_err();
    assert_eq!(f.stage, Stage::Greeting, "{f}");
    assert_eq!(f.code, 554);
    assert_eq!(f.enhanced_code.as_deref(), Some("5.3.2"));
    assert!(f.permanent);
    assert!(f.text.contains("No SMTP service here"), "{f}");
}

#[tokio::test]
async fn connect_refused_everywhere_is_a_connect_failure() {
    if !peers_available("connect_refused_everywhere_is_a_connect_failure") {
        return;
    }
    let port = common::free_port();
    let target = smtp::Target {
        host: "down.test".into(),
        addrs: vec![([127, 0, 0, 1], port).into()],
    };
    let f = Channel::open(&[target], &settings(&outbound(None, port)))
        .await
        .unwrap_err();
    assert_eq!(
        (f.stage, f.code, f.permanent),
        (Stage::Connect, 0, false),
        "{f}"
    );
    assert!(f.text.contains("down.test"), "{f}");
}

#[tokio::test]
async fn silent_server_times_out_at_greeting_and_is_temporary() {
    // A TCP listener that never speaks: no external peer needed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(socket);
    });
    let config = SmtpOutboundConfig {
        command_timeout_ms: 300,
        ..outbound(None, addr.port())
    };
    let target = smtp::Target {
        host: "silent.test".into(),
        addrs: vec![addr],
    };
    let started = Instant::now();
    let f = Channel::open(&[target], &settings(&config))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        (f.stage, f.code, f.permanent),
        (Stage::Greeting, 0, false),
        "{f}"
    );
    assert!(f.text.contains("300 ms"), "{f}");
    hold.abort();
}

#[tokio::test]
async fn f2_rcpt_550_is_permanent_with_enhanced_code_per_recipient() {
    if !peers_available("f2_rcpt_550_is_permanent_with_enhanced_code_per_recipient") {
        return;
    }
    let srv = server(&["--refuse-rcpt", "nobody@mx.test"]);
    let config = outbound(None, srv.port);
    let mut channel = Channel::open(&[srv.target()], &settings(&config))
        .await
        .unwrap();
    let failed = channel
        .send(
            &envelope(&["nobody@mx.test"], None),
            &invitation("nobody@mx.test", "cid-5"),
        )
        .await
        .unwrap_err();
    let f = &failed.failure;
    assert_eq!(f.stage, Stage::RcptTo, "{f}");
    assert_eq!(
        (f.code, f.enhanced_code.as_deref(), f.permanent),
        (550, Some("5.1.1"), true)
    );
    assert!(f.text.contains("no such user"), "{f}");
    assert_eq!(failed.recipients.len(), 1);
    // The channel was reset and still serves: one good and one refused recipient.
    let sent = channel
        .send(
            &envelope(&["nobody@mx.test", "bob@mx.test"], None),
            &invitation("bob@mx.test", "cid-6"),
        )
        .await
        .unwrap();
    assert!(sent.recipients[0].result.is_err());
    assert_eq!(sent.recipients[1].result.as_ref().unwrap().code, 250);
    let mails = srv.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].0["rcpt_tos"], serde_json::json!(["bob@mx.test"]));
}

#[tokio::test]
async fn data_451_is_a_temporary_data_failure() {
    if !peers_available("data_451_is_a_temporary_data_failure") {
        return;
    }
    let srv = server(&["--refuse-data"]);
    let config = outbound(None, srv.port);
    let mut channel = Channel::open(&[srv.target()], &settings(&config))
        .await
        .unwrap();
    let failed = channel
        .send(
            &envelope(&["bob@mx.test"], None),
            &invitation("bob@mx.test", "cid-7"),
        )
        .await
        .unwrap_err();
    let f = &failed.failure;
    assert_eq!(f.stage, Stage::Data, "{f}");
    assert_eq!(
        (f.code, f.enhanced_code.as_deref(), f.permanent),
        (451, Some("4.3.0"), false)
    );
    assert!(channel.is_open());
    assert!(srv.mails().is_empty());
}

#[tokio::test]
async fn by_sent_only_when_requested_and_advertised() {
    if !peers_available("by_sent_only_when_requested_and_advertised") {
        return;
    }
    let by = DeliverBy::new(120, ByMode::Return, false);
    for (options, request, expect_by) in [
        (&["--deliverby", "60"][..], by, true),
        (&["--deliverby", "60"][..], None, false),
        (&[][..], by, false),
    ] {
        let srv = server(options);
        let config = outbound(None, srv.port);
        let mut channel = Channel::open(&[srv.target()], &settings(&config))
            .await
            .unwrap();
        assert_eq!(
            channel.extensions().deliver_by().map(|o| o.min_by_time),
            (!options.is_empty()).then_some(Some(60))
        );
        let sent = channel
            .send(
                &envelope(&["bob@mx.test"], request),
                &invitation("bob@mx.test", "cid-8"),
            )
            .await
            .unwrap();
        assert_eq!(sent.deliver_by_sent, expect_by, "{options:?} {request:?}");
        let args = srv.mails()[0].0["mail_args"].as_str().unwrap().to_owned();
        assert_eq!(args.contains("BY=120;R"), expect_by, "{args}");
        assert_eq!(args.contains("BY="), expect_by, "{args}");
    }
}

#[tokio::test]
async fn two_mails_share_one_connection_then_quit_is_seen() {
    if !peers_available("two_mails_share_one_connection_then_quit_is_seen") {
        return;
    }
    let srv = server(&[]);
    let config = outbound(None, srv.port);
    let mut channel = Channel::open(&[srv.target()], &settings(&config))
        .await
        .unwrap();
    let env = envelope(&["bob@mx.test"], None);
    channel
        .send(&env, &invitation("bob@mx.test", "cid-9"))
        .await
        .unwrap();
    // BB2-style chat mail on the same channel, then a CC2 notification.
    let chat = compose(&Draft {
        from: Mailbox::new(Some("Alice"), "alice@iwf.test").unwrap(),
        sender: None,
        reply_to: None,
        to: vec![Mailbox::new(None, "bob@mx.test").unwrap()],
        cc: vec![],
        date: chrono::DateTime::parse_from_rfc3339("2026-11-26T11:05:00+00:00").unwrap(),
        message_id: MsgId::from_contribution_id("cid-10", "iwf.test").unwrap(),
        in_reply_to: Some(MsgId::from_contribution_id("cid-9", "iwf.test").unwrap()),
        references: vec![MsgId::from_contribution_id("cid-9", "iwf.test").unwrap()],
        subject: None,
        x_priority: None,
        auto_submitted: Some(AutoSubmitted::AutoGenerated),
        // A line of just "." must survive (RFC 5321 4.5.2 transparency).
        body: "The chat session is closed.\n.\n..bye".into(),
    });
    channel.send(&env, &chat).await.unwrap();
    // No recipient: refused before MAIL FROM, and the channel stays usable.
    let f = channel.send(&envelope(&[], None), &chat).await.unwrap_err();
    assert_eq!(
        (f.failure.stage, f.failure.permanent),
        (Stage::RcptTo, true)
    );
    assert!(channel.is_open());
    assert!(srv.records("quit").is_empty());
    channel.quit().await.unwrap();

    let mails = srv.mails();
    assert_eq!(mails.len(), 2);
    assert_eq!(
        mails[0].0["peer"], mails[1].0["peer"],
        "one connection for both mails"
    );
    let msg = mail_parser::MessageParser::default()
        .parse(&mails[1].1[..])
        .unwrap();
    assert_eq!(msg.in_reply_to().as_text(), Some("cid-9@iwf.test"));
    assert_eq!(
        msg.body_text(0).unwrap(),
        "The chat session is closed.\r\n.\r\n..bye\r\n"
    );
    assert_eq!(
        msg.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-generated")
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while srv.records("quit").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let quits = srv.records("quit");
    assert_eq!(quits.len(), 1, "QUIT not seen");
    assert_eq!(quits[0]["peer"], mails[0].0["peer"]);
}
