//! F4 load generator for host/benches/f4_rate.sh: S CPM sessions, each carrying M chat
//! messages MSRP -> e-mail through a running `iwf` (auto-accept policy).
//!
//! Per session, in parallel:
//! - SIP over UDP (RFC 3261, no sipp: one socket per session): INVITE with an MSRP offer
//!   (a=setup:active, so the IWF answers passive and waits, RFC 6135 4.2); 100; 200 with
//!   the answer, whose a=path is the IWF's URI; ACK.
//! - MSRP (RFC 4975) over one TCP connection to that URI: M SENDs of message/cpim
//!   (~200 bytes, one chunk each), each waiting for its 200, which the IWF sends once the
//!   message is committed to its outbound spool (issue 15); the mail follows.
//! - BYE; 200.
//!
//! The rate is whole messages answered 200 over the wall-clock time of the message phase
//! (all sessions set up first, then all send at once).
//!
//! Usage: `cargo bench -p iwf --bench f4_load -- SIP_ADDR SESSIONS MESSAGES`
//! Prints one line: `rate=<msgs/s> ok=<n> failed=<n> secs=<s> p50_ms=<ms> p99_ms=<ms>
//! setup_failed=<n>`.

use iwf::msrp::{Body, ByteRange, Decoder, FailureReport, Flag, Frame, StartLine, TransactId};
use iwf::sdp::MsrpUri;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const RCPT: &str = "bob@example.net";
/// How long one SIP or MSRP exchange may take before the session counts as failed.
const WAIT: Duration = Duration::from_secs(30);

/// A session set up: its dialog and the MSRP connection, bound on the first SEND.
struct Session {
    sip: UdpSocket,
    gateway: SocketAddr,
    id: String,
    to: String,
    msrp: TcpStream,
    iwf: MsrpUri,
    local: MsrpUri,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    // `cargo test --all-targets` runs every bench target without arguments.
    if args.is_empty() {
        println!("f4_load: nothing to do without arguments; host/benches/f4_rate.sh runs it");
        return;
    }
    let [sip, sessions, messages] = &args[..] else {
        eprintln!("usage: f4_load SIP_ADDR SESSIONS MESSAGES");
        std::process::exit(2);
    };
    let gateway: SocketAddr = sip.parse().expect("SIP_ADDR ip:port");
    let sessions: usize = sessions.parse().expect("SESSIONS");
    let messages: usize = messages.parse().expect("MESSAGES");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(gateway, sessions, messages));
}

async fn run(gateway: SocketAddr, sessions: usize, messages: usize) {
    // 1. All sessions set up (INVITE/200/ACK, MSRP connection).
    let setups: Vec<_> = (0..sessions)
        .map(|n| tokio::spawn(setup(gateway, n)))
        .collect();
    let mut ready = Vec::new();
    let mut setup_failed = 0;
    for s in setups {
        match s.await.unwrap() {
            Ok(s) => ready.push(s),
            Err(e) => {
                setup_failed += 1;
                eprintln!("session setup failed: {e}");
            }
        }
    }
    // 2. The message phase, timed: every session sends its M messages one after another.
    let start = Instant::now();
    let chats: Vec<_> = ready
        .into_iter()
        .enumerate()
        .map(|(n, s)| tokio::spawn(chat(s, n, messages)))
        .collect();
    let mut latencies = Vec::new();
    let mut failed = 0;
    let mut done = Vec::new();
    for c in chats {
        let (s, lat, f) = c.await.unwrap();
        latencies.extend(lat);
        failed += f;
        done.push(s);
    }
    let secs = start.elapsed().as_secs_f64();
    // 3. BYE each session (not timed).
    let byes: Vec<_> = done.into_iter().map(|s| tokio::spawn(bye(s))).collect();
    for b in byes {
        if let Err(e) = b.await.unwrap() {
            eprintln!("BYE failed: {e}");
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1e3)
    };
    println!(
        "rate={:.0} ok={} failed={} secs={:.2} p50_ms={:.1} p99_ms={:.1} setup_failed={}",
        latencies.len() as f64 / secs,
        latencies.len(),
        failed,
        secs,
        pct(0.50),
        pct(0.99),
        setup_failed
    );
}

fn invite(local: SocketAddr, id: &str, branch: &str) -> String {
    let sdp = format!(
        "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=message 9 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\n\
         a=accept-wrapped-types:text/plain\r\na=path:msrp://127.0.0.1:9/{id};tcp\r\n\
         a=setup:active\r\na=sendrecv\r\n"
    );
    format!(
        "INVITE mailto:{RCPT} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@ims.example.com>;tag={id}\r\n\
         To: <mailto:{RCPT}>\r\n\
         Call-ID: {id}@load\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{local};transport=udp>\r\n\
         P-Asserted-Identity: <tel:+15551234567>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn in_dialog(method: &str, cseq: u32, local: SocketAddr, id: &str, to: &str) -> String {
    let branch = TransactId::random();
    format!(
        "{method} mailto:{RCPT} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{}\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@ims.example.com>;tag={id}\r\n\
         {to}\r\n\
         Call-ID: {id}@load\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n",
        branch.as_str()
    )
}

/// Sends `request` (resent every 500 ms, RFC 3261 timer A's start over UDP) until a
/// final response comes; that response.
async fn transact(sock: &UdpSocket, to: SocketAddr, request: &str) -> Result<String, String> {
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0u8; 65536];
    sock.send_to(request.as_bytes(), to)
        .await
        .map_err(|e| e.to_string())?;
    let mut provisional = false;
    loop {
        if Instant::now() > deadline {
            return Err("no final response".into());
        }
        let wait = if provisional {
            WAIT
        } else {
            Duration::from_millis(500)
        };
        match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let code: u16 = text.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
                if (100..200).contains(&code) {
                    provisional = true;
                } else if code >= 200 {
                    return Ok(text);
                }
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) if !provisional => {
                sock.send_to(request.as_bytes(), to)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Err(_) => return Err("no final response after 1xx".into()),
        }
    }
}

async fn setup(gateway: SocketAddr, n: usize) -> Result<Session, String> {
    let sip = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let local = sip.local_addr().unwrap();
    let id = format!("ld{n}x{}", TransactId::random().as_str());
    let branch = TransactId::random();
    let ok = transact(&sip, gateway, &invite(local, &id, branch.as_str())).await?;
    if !ok.starts_with("SIP/2.0 200") {
        return Err(format!(
            "INVITE answered {}",
            ok.lines().next().unwrap_or("")
        ));
    }
    let to = ok
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("to:"))
        .ok_or("200 without To")?
        .to_string();
    let path = ok
        .lines()
        .find_map(|l| l.strip_prefix("a=path:"))
        .ok_or("200 without a=path")?;
    let iwf = MsrpUri::parse(path.trim()).map_err(|e| format!("a=path: {e:?}"))?;
    let ack = in_dialog("ACK", 1, local, &id, &to);
    sip.send_to(ack.as_bytes(), gateway)
        .await
        .map_err(|e| e.to_string())?;
    let addr = format!("{}:{}", iwf.host, iwf.port.ok_or("a=path without port")?);
    let msrp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    msrp.set_nodelay(true).unwrap();
    let local = MsrpUri::parse(&format!("msrp://127.0.0.1:9/{id};tcp")).unwrap();
    Ok(Session {
        sip,
        gateway,
        id,
        to,
        msrp,
        iwf,
        local,
    })
}

/// ~200 bytes of message/cpim (RFC 3862) wrapping text/plain.
fn cpim(session: usize, n: usize) -> Vec<u8> {
    let head = "From: <sip:alice@ims.example.com>\r\nTo: <mailto:bob@example.net>\r\n\
        DateTime: 2026-11-26T10:00:00.000+01:00\r\n\r\nContent-Type: text/plain\r\n\r\n";
    let mut text = format!("{head}session {session} message {n}: ");
    while text.len() < 200 {
        text.push_str("lorem ipsum ");
    }
    text.into_bytes()
}

/// M SENDs one after another, each waiting for its response; the session back, the
/// latencies of the 200s, the count of failures (other codes, timeouts, closed).
async fn chat(mut s: Session, session: usize, messages: usize) -> (Session, Vec<Duration>, usize) {
    let mut decoder = Decoder::default();
    let mut buf = Vec::with_capacity(8192);
    let mut latencies = Vec::with_capacity(messages);
    let mut failed = 0;
    for n in 0..messages {
        let data = cpim(session, n);
        let len = data.len() as u64;
        let frame = Frame::send(
            TransactId::random(),
            vec![s.iwf.clone()],
            vec![s.local.clone()],
            &format!("m{session}x{n}"),
            ByteRange {
                start: 1,
                end: Some(len),
                total: Some(len),
            },
            (false, FailureReport::Yes),
            Some(Body {
                content_type: "message/cpim".into(),
                data,
            }),
            Flag::Complete,
        );
        let sent = Instant::now();
        if s.msrp.write_all(&frame.to_bytes().unwrap()).await.is_err() {
            failed += messages - n;
            break;
        }
        let code = tokio::time::timeout(WAIT, async {
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(f)) if f.transact_id == frame.transact_id => {
                        if let StartLine::Response { code, .. } = f.start {
                            return Some(code);
                        }
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => {}
                    Err(_) => return None,
                }
                buf.reserve(8192);
                match s.msrp.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .ok()
        .flatten();
        match code {
            Some(200) => latencies.push(sent.elapsed()),
            other => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("message {n} of session {session}: {other:?}");
                }
            }
        }
    }
    (s, latencies, failed)
}

async fn bye(s: Session) -> Result<(), String> {
    let local = s.sip.local_addr().unwrap();
    let bye = in_dialog("BYE", 2, local, &s.id, &s.to);
    let ok = transact(&s.sip, s.gateway, &bye).await?;
    drop(s.msrp);
    if ok.starts_with("SIP/2.0 200") {
        Ok(())
    } else {
        Err(ok.lines().next().unwrap_or("").to_string())
    }
}
