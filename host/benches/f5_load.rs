//! F5 e-mails/s into MSRP (issue 7): the CPM side of the bench that
//! `host/benches/f5_rate.sh` runs against a running release `iwf` with the `default` policy.
//!
//! 1. For each of `--sessions` S sessions, one after the other: INVITE
//!    `mailto:userN@example.net` over UDP with an MSRP offer `a=setup:active` and its own
//!    P-Asserted-Identity `tel:+1555000NNNN` (so its own reply address
//!    `+1555000NNNN@<mail domain>`); the 200's `a=path` read; ACK; the MSRP connection
//!    opened to that path and bound with an empty SEND (RFC 4975 5.4); the session accepted
//!    with one "ACCEPT" mail from `userN@example.net` to the reply address, sent over SMTP to
//!    the IWF's inbound listener by this tool (the IWF answers 250 "... live").
//! 2. Writes `<work>/addresses` (one `sender reply-address` line per session), then
//!    `<work>/ready`, and serves the MSRP side: every SEND chunk answered 200 (as its
//!    Failure-Report asks), whole messages counted, while the script runs smtp-source.
//! 3. Once `<work>/done` exists and no chunk arrived for 500 ms: BYE for each session, and
//!    the counts printed as `key value` lines on stdout.
//!
//! Usage: `f5_load --sip ADDR --smtp ADDR --work DIR [--sessions S] [--mail-domain D]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iwf::msrp::{ByteRange, Decoder, FailureReport, Flag, Frame, StartLine, TransactId};
use iwf::sdp::{Host, MsrpUri};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};

type Error = Box<dyn std::error::Error>;

struct Args {
    sip: SocketAddr,
    smtp: SocketAddr,
    work: PathBuf,
    sessions: usize,
    mail_domain: String,
}

fn args() -> Result<Args, Error> {
    let (mut sip, mut smtp, mut work) = (None, None, None);
    let (mut sessions, mut mail_domain) = (10, "mail.iwf.test".to_string());
    let mut it = std::env::args().skip(1);
    while let Some(key) = it.next() {
        // `cargo bench` appends `--bench`.
        if key == "--bench" {
            continue;
        }
        let value = it.next().ok_or(format!("{key} needs a value"))?;
        match key.as_str() {
            "--sip" => sip = Some(value.parse()?),
            "--smtp" => smtp = Some(value.parse()?),
            "--work" => work = Some(PathBuf::from(value)),
            "--sessions" => sessions = value.parse()?,
            "--mail-domain" => mail_domain = value,
            _ => return Err(format!("unknown option {key}").into()),
        }
    }
    Ok(Args {
        sip: sip.ok_or("--sip is required")?,
        smtp: smtp.ok_or("--smtp is required")?,
        work: work.ok_or("--work is required")?,
        sessions,
        mail_domain,
    })
}

/// What the MSRP side received, over every session.
#[derive(Default)]
struct Counts {
    messages: AtomicU64,
    chunks: AtomicU64,
    bytes: AtomicU64,
    /// Nanoseconds since `start` of the first and the last chunk (0: none yet).
    first_ns: AtomicU64,
    last_ns: AtomicU64,
}

/// One established session: what its BYE needs.
struct Session {
    n: usize,
    call_id: String,
    to: String,
}

fn sender(n: usize) -> String {
    format!("user{n}@example.net")
}

fn identity(n: usize) -> String {
    format!("+1555{n:07}")
}

/// The From of the invitation the default policy mails: `tel:+X` -> `+X@<mail domain>`.
fn reply_address(n: usize, domain: &str) -> String {
    format!("{}@{domain}", identity(n))
}

fn client_uri(n: usize) -> MsrpUri {
    // The IWF compares the From-Path with the SDP, not with the socket's source port.
    MsrpUri::tcp(Host::Ip([127, 0, 0, 1].into()), 7777, &format!("f5c{n}"))
}

/// The SIP side: one UDP socket for every session; the sessions are set up one at a time.
struct Sip {
    socket: UdpSocket,
    peer: SocketAddr,
    local: SocketAddr,
    tag: String,
}

impl Sip {
    async fn new(peer: SocketAddr) -> Result<Sip, Error> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let local = socket.local_addr()?;
        Ok(Sip {
            socket,
            peer,
            local,
            tag: format!("{}", std::process::id()),
        })
    }

    fn call_id(&self, n: usize) -> String {
        format!("f5-{n}-{}@bench.example.com", self.tag)
    }

    fn from(&self, n: usize) -> String {
        format!("<sip:cpm{n}@ims.example.com>;tag=f5{n}x{}", self.tag)
    }

    fn invite(&self, n: usize) -> String {
        let client = client_uri(n);
        let sdp = format!(
            "v=0\r\no=cpm{n} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=message 7777 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\n\
             a=accept-wrapped-types:text/plain\r\na=path:{client}\r\na=setup:active\r\n\
             a=sendrecv\r\n"
        );
        format!(
            "INVITE mailto:{rcpt} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-f5-{n}-{tag}-1\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: <mailto:{rcpt}>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:cpm{n}@{local};transport=udp>\r\n\
             P-Asserted-Identity: <tel:{id}>\r\nSubject: F5 bench\r\n\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            rcpt = sender(n),
            local = self.local,
            tag = self.tag,
            from = self.from(n),
            call_id = self.call_id(n),
            id = identity(n),
            len = sdp.len(),
        )
    }

    /// ACK (`cseq` 1) or BYE (`cseq` 2) in the dialog whose To (with tag) is `to`.
    fn in_dialog(&self, method: &str, cseq: u32, n: usize, to: &str) -> String {
        format!(
            "{method} mailto:{rcpt} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-f5-{n}-{tag}-{method}\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            rcpt = sender(n),
            local = self.local,
            tag = self.tag,
            from = self.from(n),
            call_id = self.call_id(n),
        )
    }

    /// Sends `request` (resent every 500 ms, RFC 3261 Timer E/A style) until a final
    /// response of `call_id` comes; that response.
    async fn transact(&self, request: &str, call_id: &str) -> Result<String, Error> {
        let mut buf = vec![0u8; 65536];
        for _ in 0..16 {
            self.socket.send_to(request.as_bytes(), self.peer).await?;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
            loop {
                let got = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await;
                let Ok(got) = got else { break };
                let (len, _) = got?;
                let msg = String::from_utf8_lossy(&buf[..len]).into_owned();
                let Some(code) = status(&msg) else { continue };
                if code >= 200 && header(&msg, "call-id", "i").as_deref() == Some(call_id) {
                    return Ok(msg);
                }
            }
        }
        Err(format!("no final response for {call_id}").into())
    }
}

/// The status code of a response, `None` for a request.
fn status(msg: &str) -> Option<u16> {
    let line = msg.lines().next()?;
    let rest = line.strip_prefix("SIP/2.0 ")?;
    rest.get(..3)?.parse().ok()
}

/// The value of the first header field `name` (or its compact form).
fn header(msg: &str, name: &str, compact: &str) -> Option<String> {
    msg.lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(compact))
                .then(|| v.trim().to_string())
        })
}

/// Reads one SMTP reply (all its lines); its text.
async fn smtp_reply(r: &mut BufReader<TcpStream>) -> Result<String, Error> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Err(format!("SMTP connection closed after {all:?}").into());
        }
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(all);
        }
    }
}

/// Sends one mail over SMTP; the reply to the end of its data.
async fn send_mail(smtp: SocketAddr, from: &str, to: &str, data: &str) -> Result<String, Error> {
    let mut r = BufReader::new(TcpStream::connect(smtp).await?);
    smtp_reply(&mut r).await?;
    let steps = [
        "EHLO bench.example.net\r\n".to_string(),
        format!("MAIL FROM:<{from}>\r\n"),
        format!("RCPT TO:<{to}>\r\n"),
        "DATA\r\n".to_string(),
    ];
    for step in steps {
        r.get_mut().write_all(step.as_bytes()).await?;
        let reply = smtp_reply(&mut r).await?;
        if !(reply.starts_with('2') || reply.starts_with('3')) {
            return Err(format!("{} -> {reply}", step.trim_end()).into());
        }
    }
    r.get_mut().write_all(data.as_bytes()).await?;
    r.get_mut().write_all(b".\r\n").await?;
    let reply = smtp_reply(&mut r).await?;
    r.get_mut().write_all(b"QUIT\r\n").await?;
    Ok(reply)
}

/// Sets up session `n`: INVITE, 200, ACK, MSRP connect and bind, the ACCEPT mail; the
/// bound MSRP connection and what the BYE needs.
async fn establish(sip: &Sip, args: &Args, n: usize) -> Result<(Session, TcpStream), Error> {
    let call_id = sip.call_id(n);
    let ok = sip.transact(&sip.invite(n), &call_id).await?;
    if status(&ok) != Some(200) {
        return Err(format!("INVITE {n}: {}", ok.lines().next().unwrap_or("")).into());
    }
    let to = header(&ok, "to", "t").ok_or("a 200 without To")?;
    sip.socket
        .send_to(sip.in_dialog("ACK", 1, n, &to).as_bytes(), sip.peer)
        .await?;
    let path = ok
        .lines()
        .find_map(|l| l.strip_prefix("a=path:"))
        .ok_or("a 200 without a=path")?;
    let iwf = MsrpUri::parse(path.trim())?;

    let host = iwf.host.sdp_address();
    let port = iwf.port.ok_or("an a=path without port")?;
    let mut stream = TcpStream::connect((host.as_str(), port)).await?;
    stream.set_nodelay(true)?;
    // RFC 4975 5.4: the active end binds the connection with a first SEND (empty here).
    let empty = ByteRange {
        start: 1,
        end: Some(0),
        total: Some(0),
    };
    let bind = Frame::send(
        TransactId::random(),
        vec![iwf],
        vec![client_uri(n)],
        TransactId::random().as_str(),
        empty,
        (false, FailureReport::Yes),
        None,
        Flag::Complete,
    );
    stream.write_all(&bind.to_bytes()?).await?;
    let (mut decoder, mut buf) = (Decoder::default(), Vec::new());
    let answer = loop {
        if let Some(f) = decoder.decode(&mut buf)? {
            break f;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err("the IWF closed the MSRP connection at the bind".into());
        }
    };
    match answer.start {
        StartLine::Response { code: 200, .. } => {}
        other => return Err(format!("bind answered {other:?}").into()),
    }

    let reply_to = reply_address(n, &args.mail_domain);
    let mail = format!(
        "From: <{from}>\r\nTo: <{reply_to}>\r\nSubject: Re: F5 bench\r\n\
         Message-ID: <accept{n}.{tag}@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nACCEPT\r\n",
        from = sender(n),
        tag = sip.tag,
    );
    let said = send_mail(args.smtp, &sender(n), &reply_to, &mail).await?;
    if !(said.starts_with("250") && said.contains("live")) {
        return Err(format!("ACCEPT of session {n}: {}", said.trim_end()).into());
    }
    Ok((Session { n, call_id, to }, stream))
}

/// Serves one session's MSRP connection: every SEND answered 200 as its Failure-Report
/// asks, its chunks and whole messages counted.
async fn serve(mut stream: TcpStream, counts: Arc<Counts>, start: Instant) {
    let (mut decoder, mut buf, mut out) = (Decoder::default(), Vec::new(), Vec::new());
    loop {
        buf.reserve(64 * 1024);
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("f5_load: undecodable MSRP from the IWF: {e:?}");
                    return;
                }
            };
            if !matches!(frame.start, StartLine::Request(iwf::msrp::Method::Send)) {
                continue;
            }
            let now = start.elapsed().as_nanos() as u64;
            let _ = counts
                .first_ns
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            counts.last_ns.fetch_max(now, Ordering::Relaxed);
            counts.chunks.fetch_add(1, Ordering::Relaxed);
            let len = frame.body.as_ref().map_or(0, |b| b.data.len());
            counts.bytes.fetch_add(len as u64, Ordering::Relaxed);
            if frame.flag == Flag::Complete {
                counts.messages.fetch_add(1, Ordering::Relaxed);
            }
            if frame.failure_report() == FailureReport::Yes {
                match frame.response(200, None).to_bytes() {
                    Ok(bytes) => out.extend_from_slice(&bytes),
                    Err(e) => eprintln!("f5_load: cannot encode a 200: {e:?}"),
                }
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

async fn wait_for_file(path: &Path) {
    while !path.exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // `cargo test --all-targets` runs every bench target without arguments.
    if std::env::args().len() <= 1 {
        println!("f5_load: nothing to do without arguments; host/benches/f5_rate.sh runs it");
        return Ok(());
    }
    let args = args()?;
    let start = Instant::now();
    let sip = Sip::new(args.sip).await?;
    let counts = Arc::new(Counts::default());
    let mut sessions = Vec::new();
    let mut addresses = String::new();
    for n in 1..=args.sessions {
        let (session, stream) = establish(&sip, &args, n).await?;
        tokio::spawn(serve(stream, counts.clone(), start));
        addresses.push_str(&format!(
            "{} {}\n",
            sender(n),
            reply_address(n, &args.mail_domain)
        ));
        sessions.push(session);
    }
    let setup = start.elapsed();
    std::fs::write(args.work.join("addresses"), addresses)?;
    std::fs::write(args.work.join("ready"), "")?;

    wait_for_file(&args.work.join("done")).await;
    // The last SENDs: until no chunk came for 500 ms.
    loop {
        let before = counts.chunks.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        if counts.chunks.load(Ordering::Relaxed) == before {
            break;
        }
    }
    let mut byes = 0;
    for s in &sessions {
        let bye = sip.in_dialog("BYE", 2, s.n, &s.to);
        match sip.transact(&bye, &s.call_id).await {
            Ok(r) if status(&r) == Some(200) => byes += 1,
            Ok(r) => eprintln!("f5_load: BYE {}: {}", s.n, r.lines().next().unwrap_or("")),
            Err(e) => eprintln!("f5_load: BYE {}: {e}", s.n),
        }
    }
    let c = &counts;
    let secs = |ns: &AtomicU64| ns.load(Ordering::Relaxed) as f64 / 1e9;
    println!("sessions {}", sessions.len());
    println!("setup_s {:.2}", setup.as_secs_f64());
    println!("msrp_messages {}", c.messages.load(Ordering::Relaxed));
    println!("msrp_chunks {}", c.chunks.load(Ordering::Relaxed));
    println!("msrp_bytes {}", c.bytes.load(Ordering::Relaxed));
    println!(
        "first_to_last_s {:.3}",
        secs(&c.last_ns) - secs(&c.first_ns)
    );
    println!("byes_ok {byes}");
    Ok(())
}
