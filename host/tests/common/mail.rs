//! The mail peers of the tests: dnsmasq as the DNS server with MX records and
//! tests/smtp/recipient_server.py (aiosmtpd) as the e-mail user's SMTP server.

use iwf::smtp;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use super::peers::{DNSMASQ, PYTHON};

/// A child process killed when dropped.
pub struct Peer(pub Child);

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
/// Names outside `.test` get REFUSED (no upstream). dnsmasq cannot bind port 0 and say
/// which port it got: it is started again on another port when its port was taken.
pub fn dnsmasq() -> (Peer, SocketAddr) {
    super::on_a_free_port("dnsmasq", dnsmasq_on)
}

fn dnsmasq_on(port: u16) -> Result<(Peer, SocketAddr), String> {
    let log = tempfile::NamedTempFile::new().unwrap();
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
            "--mx-host=other.test,mx2.other.test,10",
            "--host-record=mx2.other.test,127.0.0.2",
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
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("start dnsmasq");
    let mut peer = Peer(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Up once it answers a query: a TCP connect could reach whoever took the port.
    while !answers_dns(addr) {
        let stderr = || std::fs::read_to_string(log.path()).unwrap_or_default();
        if let Some(status) = peer.0.try_wait().unwrap() {
            let stderr = stderr();
            if stderr.contains("Address already in use") {
                return Err(stderr);
            }
            panic!("dnsmasq exited ({status}): {stderr}");
        }
        assert!(
            Instant::now() < deadline,
            "dnsmasq did not come up: {}",
            stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((peer, addr))
}

/// True when the DNS server at `addr` answers a query for `implicit.test` over UDP.
fn answers_dns(addr: SocketAddr) -> bool {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // ID 0x1d05, RD, one question: implicit.test A IN.
    let mut query = vec![0x1d, 0x05, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["implicit", "test"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut answer = [0u8; 512];
    socket.send_to(&query, addr).is_ok()
        && socket.recv_from(&mut answer).is_ok_and(|(n, from)| {
            from == addr && n >= 12 && answer[..2] == query[..2] && answer[2] & 0x80 != 0
        })
}

/// The recipient's SMTP server on 127.0.0.1:`port`, storing into a temporary folder.
pub struct Server {
    _peer: Peer,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// The recipient's SMTP server with `options`, on the port it bound (port 0).
pub fn server(options: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/smtp/recipient_server.py");
    let mut child = Command::new(PYTHON)
        .arg(script)
        .args(["--port", "0", "--dir"])
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
    let port = line
        .trim()
        .strip_prefix("READY ")
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("recipient_server.py did not start: {line:?}"));
    Server {
        _peer: Peer(child),
        dir,
        port,
    }
}

impl Server {
    /// The files `prefix-N.json` in order of N.
    pub fn numbered(&self, prefix: &str) -> Vec<PathBuf> {
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

    pub fn records(&self, prefix: &str) -> Vec<serde_json::Value> {
        self.numbered(prefix)
            .into_iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// The record `name.json`, when the server wrote it.
    pub fn record(&self, name: &str) -> Option<serde_json::Value> {
        let bytes = std::fs::read(self.dir.path().join(format!("{name}.json"))).ok()?;
        Some(serde_json::from_slice(&bytes).unwrap())
    }

    /// Each stored mail: its JSON record and the message as received.
    pub fn mails(&self) -> Vec<(serde_json::Value, Vec<u8>)> {
        self.numbered("mail")
            .into_iter()
            .map(|p| {
                let meta = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                (meta, std::fs::read(p.with_extension("eml")).unwrap())
            })
            .collect()
    }

    /// This server as the only target, without DNS.
    pub fn target(&self) -> smtp::Target {
        smtp::Target {
            host: "mx.test".into(),
            addrs: vec![([127, 0, 0, 1], self.port).into()],
        }
    }
}

pub fn wait_for(ready: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A self-signed certificate for `name` (its CN and only subjectAltName) and its key,
/// made by the openssl CLI into `dir`: (certificate, key), both PEM.
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj"])
        .arg(format!("/CN={name}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{name}"))
        // An end-entity certificate: webpki refuses a CA certificate as the server's.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

impl Server {
    /// This server as the only target, named `host` (the name a certificate must carry).
    pub fn target_named(&self, host: &str) -> smtp::Target {
        smtp::Target {
            host: host.into(),
            ..self.target()
        }
    }
}
