//! The inbound SMTP listener against real clients on loopback: swaks (Debian `swaks`) as
//! the e-mail user's mail server sending replies, and plain tokio clients for load and
//! timeouts. The ladder of each test: client -> greeting, EHLO, MAIL, RCPT (the gateway
//! is asked), DATA -> what the gateway got and what the client saw.
//!
//! Needs `swaks`: without it a swaks test fails, naming what to install.

mod common;

use common::peers::{self, Peer};
use iwf::smtp::inbound::{Delivery, EnvelopeSoFar, InboundSettings, ReceivedMail, Verdict, serve};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;

/// A gateway that records what it is given: recipients `nobody*` have no session, mail
/// to `refuse*` is refused after the data, the rest is taken; it never answers about
/// `hang-rcpt*` nor about a mail to `hang-data*`.
#[derive(Default)]
struct Recorder {
    mails: Mutex<Vec<ReceivedMail>>,
    asked: Mutex<Vec<(EnvelopeSoFar, String)>>,
}

impl Recorder {
    fn mails(&self) -> Vec<ReceivedMail> {
        self.mails.lock().unwrap().clone()
    }
}

impl Delivery for Recorder {
    async fn recipient(&self, envelope: &EnvelopeSoFar, rcpt: &str) -> Verdict {
        self.asked
            .lock()
            .unwrap()
            .push((envelope.clone(), rcpt.to_owned()));
        if rcpt.starts_with("hang-rcpt") {
            std::future::pending::<()>().await;
        }
        if rcpt.starts_with("slow-rcpt") {
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        if rcpt.starts_with("nobody") {
            Verdict::no_such_recipient(format!("<{rcpt}>: no chat session for this address"))
        } else {
            Verdict::recipient_ok()
        }
    }

    async fn deliver(&self, mail: ReceivedMail) -> Verdict {
        if mail.rcpt_to.iter().any(|r| r.starts_with("hang-data")) {
            std::future::pending::<()>().await;
        }
        if mail.rcpt_to.iter().any(|r| r.starts_with("refuse")) {
            return Verdict::not_authorized("sender is not the invited user");
        }
        self.mails.lock().unwrap().push(mail);
        Verdict::accepted("Queued for the chat")
    }
}

fn settings() -> InboundSettings {
    InboundSettings {
        domain: "iwf.test".into(),
        max_message_bytes: 65_536,
        max_recipients: 100,
        max_connections: 64,
        command_timeout: Duration::from_secs(5),
        data_timeout: Duration::from_secs(5),
    }
}

/// `serve` on a loopback port; stops accepting when dropped.
struct Server {
    addr: SocketAddr,
    gateway: Arc<Recorder>,
    _stop: oneshot::Sender<()>,
}

async fn start(settings: InboundSettings) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = Arc::new(Recorder::default());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, settings, gateway.clone(), async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        gateway,
        _stop: stop,
    }
}

/// The server of a swaks test; the test fails where swaks is missing.
async fn swaks_server() -> Server {
    peers::require(&[Peer::Swaks]);
    start(settings()).await
}

/// Runs swaks against `server` (its own timeout 10 s, ours 30 s) and asserts whether it
/// `succeeds`; its transcript.
async fn swaks(server: &Server, succeeds: bool, args: &[&str]) -> String {
    let mut command = Command::new("swaks");
    command
        .args(["--server", &server.addr.to_string()])
        .args(["--timeout", "10", "--helo", "mail.example.org"])
        .args(args);
    let output = timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("swaks ran over 30 s")
    .unwrap()
    .expect("swaks runs");
    let transcript = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.success(), succeeds, "{transcript}");
    transcript
}

/// swaks sending the message `text` from bob@example.org to s1@iwf.test, as
/// [`swaks`]. `text` has LF line ends: swaks sends CRLF, stuffs leading dots and ends the
/// data with `CRLF.CRLF` (so the last line needs no LF).
async fn swaks_message(server: &Server, succeeds: bool, text: &str) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    let data = format!("@{}", file.path().display());
    let args = [
        "--from",
        "bob@example.org",
        "--to",
        "s1@iwf.test",
        "--data",
        &data,
    ];
    swaks(server, succeeds, &args).await
}

/// The server's 220 greeting on a new connection (within 5 s).
async fn expect_greeting(stream: &mut TcpStream) {
    let mut greeting = [0; 512];
    let n = timeout(Duration::from_secs(5), stream.read(&mut greeting))
        .await
        .expect("greeting within 5 s")
        .unwrap();
    assert!(greeting[..n].starts_with(b"220 "));
}

/// All the server says until it closes the connection (within 5 s).
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut replies = Vec::new();
    timeout(Duration::from_secs(5), stream.read_to_end(&mut replies))
        .await
        .expect("closed within 5 s")
        .unwrap();
    String::from_utf8(replies).unwrap()
}

/// The message of a mail without the server's Received header (its first 4 lines).
fn without_received(data: &[u8]) -> &[u8] {
    assert!(
        data.starts_with(b"Received: from "),
        "{}",
        String::from_utf8_lossy(data)
    );
    let mut rest = data;
    for _ in 0..4 {
        let lf = rest.iter().position(|&b| b == b'\n').unwrap();
        rest = &rest[lf + 1..];
    }
    rest
}

#[tokio::test]
async fn f3_reply_mail_is_taken_with_its_bytes() {
    let server = swaks_server().await;
    let transcript = swaks_message(
        &server,
        true,
        "From: bob@example.org\nTo: s1@iwf.test\nSubject: Re: Chat with Alice?\n\nACCEPT\n.a line with a dot",
    )
    .await;
    assert!(
        transcript.contains("<-  250 2.0.0 Queued for the chat"),
        "{transcript}"
    );
    let mails = server.gateway.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.mail_from.as_deref(), Some("bob@example.org"));
    assert_eq!(mail.rcpt_to, ["s1@iwf.test"]);
    assert_eq!(mail.helo, "mail.example.org");
    assert_eq!(mail.peer.ip(), server.addr.ip());
    let received = String::from_utf8_lossy(&mail.data[..120]);
    assert!(
        received.starts_with("Received: from mail.example.org ([127.0.0.1])\r\n\tby iwf.test with ESMTP\r\n\tfor <s1@iwf.test>;"),
        "{received}"
    );
    assert_eq!(
        String::from_utf8_lossy(without_received(&mail.data)),
        "From: bob@example.org\r\nTo: s1@iwf.test\r\nSubject: Re: Chat with Alice?\r\n\r\nACCEPT\r\n.a line with a dot\r\n"
    );
}

#[tokio::test]
async fn f3_rcpt_without_session_is_550_with_the_gateways_text() {
    let server = swaks_server().await;
    let args = ["--from", "bob@example.org", "--to", "nobody@iwf.test"];
    let transcript = swaks(&server, false, &args).await;
    assert!(
        transcript.contains("550 5.1.1 <nobody@iwf.test>: no chat session for this address"),
        "{transcript}"
    );
    assert!(server.gateway.mails().is_empty());
}

#[tokio::test]
async fn f3_gateway_refusing_the_mail_is_the_reply_to_the_dot() {
    let server = swaks_server().await;
    let args = ["--from", "eve@example.org", "--to", "refuse@iwf.test"];
    let transcript = swaks(&server, false, &args).await;
    assert!(transcript.contains("<-  354 "), "{transcript}");
    assert!(
        transcript.contains("550 5.7.1 sender is not the invited user"),
        "{transcript}"
    );
    assert!(server.gateway.mails().is_empty());
}

#[tokio::test]
async fn f3_message_over_max_size_is_552() {
    let server = swaks_server().await;
    let big = "Subject: big\n\n".to_owned()
        + &"0123456789abcdef0123456789abcdef0123456789abcdef\n".repeat(2000);
    let transcript = swaks_message(&server, false, &big).await;
    assert!(
        transcript.contains("552 5.3.4 Message size exceeds fixed maximum message size"),
        "{transcript}"
    );
    // The server read to the end and answered QUIT: the conversation stayed in step.
    assert!(transcript.contains("<-  221 2.0.0 "), "{transcript}");
    assert!(server.gateway.mails().is_empty());
}

#[tokio::test]
async fn f3_pipelined_transaction_with_two_recipients() {
    let server = swaks_server().await;
    let args = [
        "--pipeline",
        "--from",
        "bob@example.org",
        "--to",
        "s1@iwf.test,s2@iwf.test",
    ];
    let transcript = swaks(&server, true, &args).await;
    // RFC 2920: MAIL, both RCPT and DATA went out before the first of their replies.
    let data_sent = transcript.find(" -> DATA").expect("DATA sent");
    let mail_ok = transcript
        .find("<-  250 2.1.0 Sender OK")
        .expect("MAIL answered");
    assert!(data_sent < mail_ok, "not pipelined:\n{transcript}");
    let mails = server.gateway.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt_to, ["s1@iwf.test", "s2@iwf.test"]);
    let asked = server.gateway.asked.lock().unwrap().clone();
    assert_eq!(asked[1].0.rcpt_to, ["s1@iwf.test"]);
}

#[tokio::test]
async fn f3_bounce_with_null_sender_reaches_the_gateway_as_such() {
    let server = swaks_server().await;
    let transcript = swaks(&server, true, &["--from", "<>", "--to", "s1@iwf.test"]).await;
    assert!(transcript.contains("-> MAIL FROM:<>"), "{transcript}");
    let mails = server.gateway.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].mail_from, None);
}

/// One whole pipelined conversation from a plain client; everything the server said.
async fn converse(addr: SocketAddr, n: usize) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let script = format!(
        "EHLO client{n}\r\nMAIL FROM:<u{n}@example.org>\r\nRCPT TO:<s{n}@iwf.test>\r\nDATA\r\nSubject: {n}\r\n\r\nhello {n}\r\n.\r\nQUIT\r\n"
    );
    stream.write_all(script.as_bytes()).await.unwrap();
    let mut replies = Vec::new();
    stream.read_to_end(&mut replies).await.unwrap();
    String::from_utf8(replies).unwrap()
}

#[tokio::test]
async fn fifty_concurrent_connections_are_all_served() {
    let server = start(settings()).await;
    let clients: Vec<_> = (0..50)
        .map(|n| tokio::spawn(converse(server.addr, n)))
        .collect();
    for (n, client) in clients.into_iter().enumerate() {
        let replies = timeout(Duration::from_secs(20), client)
            .await
            .expect("client done within 20 s")
            .unwrap();
        assert!(replies.starts_with("220 iwf.test"), "{n}: {replies}");
        assert!(
            replies.ends_with("354 Start mail input; end with <CRLF>.<CRLF>\r\n250 2.0.0 Queued for the chat\r\n221 2.0.0 iwf.test Service closing transmission channel\r\n"),
            "{n}: {replies}"
        );
    }
    let mut mails = server.gateway.mails();
    assert_eq!(mails.len(), 50);
    mails.sort_by_key(|m| {
        m.rcpt_to[0]
            .trim_start_matches('s')
            .trim_end_matches("@iwf.test")
            .parse::<u32>()
            .unwrap()
    });
    for (n, mail) in mails.iter().enumerate() {
        assert_eq!(mail.mail_from, Some(format!("u{n}@example.org")));
        assert!(
            mail.data
                .ends_with(format!("\r\n\r\nhello {n}\r\n").as_bytes())
        );
    }
}

#[tokio::test]
async fn connection_over_max_connections_gets_421_at_the_greeting() {
    let server = start(InboundSettings {
        max_connections: 2,
        ..settings()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        expect_greeting(&mut stream).await;
        held.push(stream);
    }
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        until_closed(&mut third).await,
        "421 4.3.2 iwf.test Too many connections, try again later\r\n"
    );
    // A slot freed is a slot served.
    held.pop();
    let replies = timeout(Duration::from_secs(10), async {
        loop {
            let replies = converse(server.addr, 7).await;
            if replies.starts_with("220 ") {
                return replies;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("served after a slot was freed");
    assert!(replies.contains("250 2.0.0 Queued"), "{replies}");
}

#[tokio::test]
async fn idle_connection_gets_421_after_the_command_timeout() {
    let server = start(InboundSettings {
        command_timeout: Duration::from_millis(300),
        ..settings()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"EHLO idle.example.org\r\n")
        .await
        .unwrap();
    let replies = until_closed(&mut stream).await;
    let elapsed = started.elapsed();
    assert!(
        replies.ends_with(
            "250 ENHANCEDSTATUSCODES\r\n421 4.4.2 iwf.test Timeout waiting for command, closing\r\n"
        ),
        "{replies}"
    );
    assert!(
        elapsed >= Duration::from_millis(280),
        "421 after {elapsed:?}"
    );
}

#[tokio::test]
async fn stalled_message_data_gets_421_after_the_data_timeout() {
    let server = start(InboundSettings {
        data_timeout: Duration::from_millis(300),
        ..settings()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"EHLO c\r\nMAIL FROM:<b@x.org>\r\nRCPT TO:<s@iwf.test>\r\nDATA\r\nSubject: half\r\n",
        )
        .await
        .unwrap();
    let replies = until_closed(&mut stream).await;
    assert!(
        replies.ends_with("354 Start mail input; end with <CRLF>.<CRLF>\r\n421 4.4.2 iwf.test Timeout waiting for message data, closing\r\n"),
        "{replies}"
    );
    assert!(server.gateway.mails().is_empty());
}

#[tokio::test]
async fn shutdown_closes_idle_connections_with_421_then_serve_returns() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        settings(),
        Arc::new(Recorder::default()),
        async {
            let _ = stopped.await;
        },
    ));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"EHLO c\r\n").await.unwrap();
    expect_greeting(&mut stream).await;
    stop.send(()).unwrap();
    let replies = until_closed(&mut stream).await;
    assert!(
        replies.ends_with("421 4.3.2 iwf.test Service shutting down, closing\r\n"),
        "{replies}"
    );
    timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returned within 5 s")
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

/// While a connection's RCPT is being decided, the drain waits for it; meanwhile a new
/// connection is greeted 421 (RFC 5321 3.8), and the busy one gets its answer, then 421.
#[tokio::test]
async fn a_drain_greets_new_connections_421_and_waits_for_the_answer_in_progress() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        settings(),
        Arc::new(Recorder::default()),
        async {
            let _ = stopped.await;
        },
    ));
    let mut busy = TcpStream::connect(addr).await.unwrap();
    expect_greeting(&mut busy).await;
    busy.write_all(b"EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<slow-rcpt@iwf.test>\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // the RCPT is being decided
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut late = TcpStream::connect(addr).await.unwrap();
    let greeting = until_closed(&mut late).await;
    assert_eq!(
        greeting,
        "421 4.3.2 iwf.test Service shutting down, try again later\r\n"
    );
    let replies = until_closed(&mut busy).await;
    assert!(
        replies.contains("\r\n250 "),
        "the RCPT was answered: {replies}"
    );
    assert!(
        replies.ends_with("421 4.3.2 iwf.test Service shutting down, closing\r\n"),
        "{replies}"
    );
    timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returned within 5 s")
        .unwrap();
}

/// The gateway not answering is bounded: 451 4.3.0 (the client keeps the mail and
/// retries) after the command timeout for RCPT, after the data timeout for the mail.
#[tokio::test]
async fn gateway_answering_too_late_is_451_and_the_connection_goes_on() {
    let server = start(InboundSettings {
        command_timeout: Duration::from_millis(300),
        data_timeout: Duration::from_millis(300),
        ..settings()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut replies = Vec::new();
    let mut say = async |stream: &mut TcpStream, what: &[u8], until: &str| {
        stream.write_all(what).await.unwrap();
        let mut buf = [0; 1024];
        timeout(Duration::from_secs(5), async {
            while !String::from_utf8_lossy(&replies).ends_with(until) {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed: {}", String::from_utf8_lossy(&replies));
                replies.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {until:?} in {}", String::from_utf8_lossy(&replies)));
    };
    say(
        &mut stream,
        b"EHLO c\r\nMAIL FROM:<b@x.org>\r\n",
        "Sender OK\r\n",
    )
    .await;
    say(
        &mut stream,
        b"RCPT TO:<hang-rcpt@iwf.test>\r\n",
        "451 4.3.0 Recipient check timed out, try again later\r\n",
    )
    .await;
    say(
        &mut stream,
        b"RCPT TO:<hang-data@iwf.test>\r\nDATA\r\nhi\r\n.\r\n",
        "451 4.3.0 Delivery timed out, try again later\r\n",
    )
    .await;
    say(
        &mut stream,
        b"QUIT\r\n",
        "221 2.0.0 iwf.test Service closing transmission channel\r\n",
    )
    .await;
    assert!(server.gateway.mails().is_empty());
}

/// RFC 5321 4.5.3.2.7: the timeout is for the whole next command, so a client that
/// trickles a byte at a time cannot hold the connection (and its slot) for ever.
#[tokio::test]
async fn command_trickled_byte_by_byte_still_times_out() {
    let server = start(InboundSettings {
        command_timeout: Duration::from_millis(400),
        ..settings()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    expect_greeting(&mut stream).await;
    let started = Instant::now();
    let mut replies = Vec::new();
    for byte in b"NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP" {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        let mut buf = [0; 256];
        if let Ok(read) = timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
            let n = read.unwrap_or(0);
            replies.extend_from_slice(&buf[..n]);
            if n == 0 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never timed out"
        );
    }
    let elapsed = started.elapsed();
    assert_eq!(
        String::from_utf8(replies).unwrap(),
        "421 4.4.2 iwf.test Timeout waiting for command, closing\r\n"
    );
    assert!(
        (Duration::from_millis(380)..Duration::from_millis(2_000)).contains(&elapsed),
        "421 after {elapsed:?}"
    );
}
