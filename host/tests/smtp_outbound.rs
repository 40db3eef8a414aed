//! Outgoing mail against real peers on loopback: dnsmasq as the DNS server with MX
//! records, an aiosmtpd server (tests/smtp/recipient_server.py) as the e-mail user's SMTP
//! server. The ladder of each test: route (MX) -> channel (greeting, EHLO) -> MAIL, RCPT,
//! DATA -> what the server stored.
//!
//! Needs `dnsmasq` and `python3-aiosmtpd` (Debian): without them a test fails, naming what
//! to install (`tests/run.sh` installs them).

mod common;

use common::mail::{dnsmasq, self_signed, server};
use common::peers;

use iwf::config::SmtpOutboundConfig;
use iwf::mail::{AddrSpec, AutoSubmitted, Draft, Mailbox, MsgId, XPriority, compose};
use iwf::smtp::{
    self, ByMode, Channel, ClientSettings, DeliverBy, Destinations, Envelope, Router, Stage,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
    ClientSettings::from_config(config).unwrap()
}

/// A TCP listener that takes one connection and never speaks (for 5 s); abort the handle
/// when done.
async fn silent_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(socket);
    });
    (addr, hold)
}

#[tokio::test]
async fn f2_mx_lookup_then_invitation_delivered_on_mx_port() {
    peers::require(peers::MAIL);
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
    peers::require(peers::MAIL);
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

    let mut channel = smtp::connect(
        &router,
        &settings(&config),
        &Destinations::new(&config),
        "pref.test",
    )
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
    peers::require(peers::MAIL);
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
    peers::require(peers::MAIL);
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
    peers::require(peers::MAIL);
    let srv = server(&[]);
    let config = SmtpOutboundConfig {
        smart_host: Some(format!("127.0.0.1:{}", srv.port)),
        ..outbound(None, 1)
    };
    let router = Router::new(&config).unwrap();
    // No DNS server knows this domain: the smart host takes it all the same.
    let mut channel = smtp::connect(
        &router,
        &settings(&config),
        &Destinations::new(&config),
        "nowhere.invalid",
    )
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
    peers::require(peers::MAIL);
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
async fn a_server_greeting_554_or_silent_is_passed_over_for_the_next_mx() {
    peers::require(peers::MAIL);
    let refusing = server(&["--refuse-greeting"]);
    let good = server(&[]);
    let (silent_addr, hold) = silent_server().await;
    let config = SmtpOutboundConfig {
        command_timeout_ms: 500,
        ..outbound(None, good.port)
    };
    let target = |host: &str, addr: SocketAddr| smtp::Target {
        host: host.into(),
        addrs: vec![addr],
    };
    let targets = [
        target("refusing.test", ([127, 0, 0, 1], refusing.port).into()),
        target("silent.test", silent_addr),
        target("good.test", ([127, 0, 0, 1], good.port).into()),
    ];
    let mut channel = Channel::open(&targets, &settings(&config)).await.unwrap();
    assert_eq!(channel.host(), "good.test");
    channel
        .send(
            &envelope(&["bob@good.test"], None),
            &invitation("bob@good.test", "cid-next-mx"),
        )
        .await
        .unwrap();
    assert_eq!(good.mails().len(), 1);
    assert!(refusing.mails().is_empty());
    hold.abort();
}

#[tokio::test]
async fn when_every_mx_fails_the_last_server_that_answered_decides_and_all_are_named() {
    peers::require(peers::MAIL);
    let refusing = server(&["--refuse-greeting"]);
    let closed = common::free_port();
    let targets = [
        smtp::Target {
            host: "refusing.test".into(),
            addrs: vec![([127, 0, 0, 1], refusing.port).into()],
        },
        smtp::Target {
            host: "down.test".into(),
            addrs: vec![([127, 0, 0, 1], closed).into()],
        },
    ];
    let f = Channel::open(&targets, &settings(&outbound(None, refusing.port)))
        .await
        .unwrap_err();
    // The 554 greeting, not the refused connection after it (AA3: 554 greeting -> 4xx).
    assert_eq!(
        (f.stage, f.code, f.permanent),
        (Stage::Greeting, 554, true),
        "{f}"
    );
    assert!(f.text.contains("refusing.test"), "{f}");
    assert!(f.text.contains("down.test"), "{f}");
}

#[tokio::test]
async fn connect_refused_everywhere_is_a_connect_failure() {
    peers::require(peers::MAIL);
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
    // No external peer needed.
    let (addr, hold) = silent_server().await;
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
    peers::require(peers::MAIL);
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
    peers::require(peers::MAIL);
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
    peers::require(peers::MAIL);
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
        assert_eq!(
            sent.deliver_by.is_some(),
            expect_by,
            "{options:?} {request:?}"
        );
        let args = srv.mails()[0].0["mail_args"].as_str().unwrap().to_owned();
        assert_eq!(args.contains("BY=120;R"), expect_by, "{args}");
        assert_eq!(args.contains("BY="), expect_by, "{args}");
    }
}

/// RFC 2852 4.1: a server advertising `DELIVERBY 120` refuses `BY=60;R` (the test server
/// does, with 501), so the channel raises the by-time to 120 and the mail goes through.
#[tokio::test]
async fn a_by_time_below_the_servers_minimum_is_raised_to_it() {
    peers::require(peers::MAIL);
    let srv = server(&["--deliverby", "120"]);
    let config = outbound(None, srv.port);
    let mut channel = Channel::open(&[srv.target()], &settings(&config))
        .await
        .unwrap();
    let asked = DeliverBy::new(60, ByMode::Return, true);
    let sent = channel
        .send(
            &envelope(&["bob@mx.test"], asked),
            &invitation("bob@mx.test", "cid-by-min"),
        )
        .await
        .unwrap();
    assert_eq!(sent.deliver_by, DeliverBy::new(120, ByMode::Return, true));
    let mails = srv.mails();
    assert_eq!(mails.len(), 1);
    let args = mails[0].0["mail_args"].as_str().unwrap();
    assert!(args.contains("BY=120;RT"), "{args}");
    // A notify-mode by-time below the minimum is not refused, and goes as asked.
    let asked = DeliverBy::new(60, ByMode::Notify, false);
    let sent = channel
        .send(
            &envelope(&["bob@mx.test"], asked),
            &invitation("bob@mx.test", "cid-by-min-n"),
        )
        .await
        .unwrap();
    assert_eq!(sent.deliver_by, asked);
    assert!(
        srv.mails()[1].0["mail_args"]
            .as_str()
            .unwrap()
            .contains("BY=60;N")
    );
}

#[tokio::test]
async fn two_mails_share_one_connection_then_quit_is_seen() {
    peers::require(peers::MAIL);
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

/// A server offering STARTTLS with a fresh self-signed certificate for `localhost`, and
/// `options` more; the certificate's folder stays with it.
fn tls_server(options: &[&str]) -> (common::mail::Server, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path(), "localhost");
    let mut args = vec!["--starttls", cert.to_str().unwrap(), key.to_str().unwrap()];
    args.extend_from_slice(options);
    (server(&args), certs)
}

fn with_starttls(mut config: SmtpOutboundConfig, mode: &str) -> SmtpOutboundConfig {
    config.starttls = mode.into();
    config
}

#[tokio::test]
async fn opportunistic_starttls_encrypts_and_takes_the_extensions_of_the_second_ehlo() {
    peers::require(peers::MAIL);
    // DELIVERBY only after STARTTLS: seen only if the second EHLO's reply is the one read.
    let (srv, _certs) = tls_server(&["--deliverby", "60", "--deliverby-tls-only"]);
    let config = outbound(None, srv.port);
    let mut channel = Channel::open(&[srv.target()], &settings(&config))
        .await
        .unwrap();
    assert!(channel.encrypted());
    assert_eq!(
        channel.extensions().deliver_by().map(|o| o.min_by_time),
        Some(Some(60))
    );
    // RFC 3207 4.2: not offered again once the session is TLS.
    assert!(!channel.extensions().has("STARTTLS"));
    let by = DeliverBy::new(120, ByMode::Return, false);
    let sent = channel
        .send(
            &envelope(&["bob@mx.test"], by),
            &invitation("bob@mx.test", "cid-tls-1"),
        )
        .await
        .unwrap();
    assert_eq!(sent.deliver_by, by);
    channel.quit().await.unwrap();
    let mails = srv.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].0["tls"], true, "{}", mails[0].0);
}

#[tokio::test]
async fn opportunistic_without_starttls_offered_or_off_sends_in_clear() {
    peers::require(peers::MAIL);
    let plain = server(&[]);
    let (offering, _certs) = tls_server(&[]);
    for (srv, mode) in [(&plain, "opportunistic"), (&offering, "off")] {
        let config = with_starttls(outbound(None, srv.port), mode);
        let mut channel = Channel::open(&[srv.target()], &settings(&config))
            .await
            .unwrap();
        assert!(!channel.encrypted(), "{mode}");
        channel
            .send(
                &envelope(&["bob@mx.test"], None),
                &invitation("bob@mx.test", "cid-tls-2"),
            )
            .await
            .unwrap();
        assert_eq!(srv.mails()[0].0["tls"], false, "{mode}");
    }
    // "off" did not even ask: the offering server still lists STARTTLS to it.
    let config = with_starttls(outbound(None, offering.port), "off");
    let channel = Channel::open(&[offering.target()], &settings(&config))
        .await
        .unwrap();
    assert!(channel.extensions().has("STARTTLS"));
}

#[tokio::test]
async fn opportunistic_goes_on_in_clear_when_starttls_is_refused_or_the_handshake_fails() {
    peers::require(peers::MAIL);
    // 454: on the same connection; a broken handshake: a second connection, no STARTTLS.
    for flag in ["--refuse-starttls", "--break-starttls"] {
        let (srv, _certs) = tls_server(&[flag]);
        let config = outbound(None, srv.port);
        let mut channel = Channel::open(&[srv.target()], &settings(&config))
            .await
            .unwrap();
        assert!(!channel.encrypted(), "{flag}");
        let env = envelope(&["bob@mx.test"], None);
        channel
            .send(&env, &invitation("bob@mx.test", "cid-tls-3"))
            .await
            .unwrap();
        channel.quit().await.unwrap();
        let mails = srv.mails();
        assert_eq!(mails[0].0["tls"], false, "{flag}");
        let quits = srv.records("quit");
        assert_eq!(quits.len(), 1, "{flag}");
        // The session that sent the mail is the one that said QUIT; with a broken
        // handshake it is not the first connection (its port is another one).
        assert_eq!(quits[0]["peer"], mails[0].0["peer"], "{flag}");
    }
}

#[tokio::test]
async fn required_passes_over_a_server_without_tls_for_one_with_a_trusted_certificate() {
    peers::require(peers::MAIL);
    let plain = server(&[]);
    let refusing = tls_server(&["--refuse-starttls"]);
    let (good, certs) = tls_server(&[]);
    let mut config = with_starttls(outbound(None, good.port), "required");
    config.tls_ca_file = Some(certs.path().join("localhost.crt"));
    let s = settings(&config);

    // Alone, each bad one is a temporary `tls` failure, X.7.4 (RFC 3463).
    for (srv, says) in [(&plain, "not offered"), (&refusing.0, "refused")] {
        let f = Channel::open(&[srv.target_named("localhost")], &s)
            .await
            .unwrap_err();
        assert_eq!(f.stage, Stage::Tls, "{f}");
        assert!(!f.permanent, "{f}");
        assert!(f.text.contains(says), "{f}");
        assert!(
            f.enhanced_code.as_deref().unwrap().starts_with("4.7."),
            "{f}"
        );
    }
    assert!(plain.mails().is_empty());
    // RFC 5321 4.1.1.10: given up on, but politely.
    assert_eq!(plain.records("quit").len(), 1);

    let targets = [
        plain.target_named("localhost"),
        refusing.0.target_named("localhost"),
        good.target_named("localhost"),
    ];
    let mut channel = Channel::open(&targets, &s).await.unwrap();
    assert!(channel.encrypted());
    assert_eq!(channel.peer().port(), good.port);
    channel
        .send(
            &envelope(&["bob@mx.test"], None),
            &invitation("bob@mx.test", "cid-tls-4"),
        )
        .await
        .unwrap();
    assert_eq!(good.mails()[0].0["tls"], true);
}

#[tokio::test]
async fn required_refuses_a_certificate_not_trusted_or_for_another_name() {
    peers::require(peers::MAIL);
    let (srv, certs) = tls_server(&[]);
    // Trusting another self-signed certificate only.
    let other = tempfile::tempdir().unwrap();
    let (other_cert, _) = self_signed(other.path(), "localhost");
    let mut config = with_starttls(outbound(None, srv.port), "required");
    config.tls_ca_file = Some(other_cert);
    let f = Channel::open(&[srv.target_named("localhost")], &settings(&config))
        .await
        .unwrap_err();
    assert_eq!(
        (f.stage, f.enhanced_code.as_deref(), f.permanent),
        (Stage::Tls, Some("4.7.5"), false),
        "{f}"
    );
    // Trusted, but the target is named otherwise than the certificate.
    config.tls_ca_file = Some(certs.path().join("localhost.crt"));
    let f = Channel::open(&[srv.target()], &settings(&config))
        .await
        .unwrap_err();
    assert_eq!(
        (f.stage, f.enhanced_code.as_deref()),
        (Stage::Tls, Some("4.7.5")),
        "{f}"
    );
    assert!(srv.mails().is_empty());
    // Trusted and named right, but a reply is smuggled in after the 220 to STARTTLS.
    let (injecting, injecting_certs) = tls_server(&["--inject-after-starttls"]);
    let mut injected = config.clone();
    injected.tls_ca_file = Some(injecting_certs.path().join("localhost.crt"));
    let f = Channel::open(&[injecting.target_named("localhost")], &settings(&injected))
        .await
        .unwrap_err();
    assert_eq!(
        (f.stage, f.enhanced_code.as_deref()),
        (Stage::Tls, Some("4.7.5")),
        "{f}"
    );
    assert!(f.text.contains("after its 220"), "{f}");
    // Trusted and named right.
    let channel = Channel::open(&[srv.target_named("localhost")], &settings(&config))
        .await
        .unwrap();
    assert!(channel.encrypted());
}
