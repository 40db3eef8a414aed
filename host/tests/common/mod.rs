//! Shared by the integration tests: the built policies and the engine to load them in (the
//! session to decide on is `iwf::policy::testing::session`).
#![allow(dead_code)]

pub mod chat;
pub mod mail;
pub mod msrp;
pub mod peers;
pub mod user;

use iwf::policy::{Limits, PolicyEngine};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// A component built by `host/build.rs` (or `policies/build.sh`) into `<target>/policies/`.
pub fn policy_file(name: &str) -> PathBuf {
    PathBuf::from(env!("IWF_POLICIES_DIR")).join(format!("{name}.wasm"))
}

pub fn engine(timeout_ms: u64) -> Arc<PolicyEngine> {
    PolicyEngine::new(Limits {
        timeout_ms,
        memory_bytes: 32 << 20,
        max_instances: 32,
        // Decisions in the tests take the pool's instances as the gateway's do.
        warm_instances: 2,
    })
    .unwrap()
}

/// The `iwf` binary running `iwf run --config`; killed when dropped.
pub struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Waits for the process to end (after a signal).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.0.wait().unwrap()
    }

    /// The exit status, once the process has ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().unwrap()
    }
}

/// The addresses a gateway bound, from its ready line.
#[derive(Clone, Copy, Debug)]
pub struct Listening {
    pub sip: SocketAddr,
    pub msrp: SocketAddr,
    /// The inbound SMTP listener.
    pub smtp: SocketAddr,
    pub admin: SocketAddr,
}

impl Listening {
    /// `iwf ready sip=ADDR msrp=ADDR smtp=ADDR admin=ADDR`.
    fn parse(line: &str) -> Listening {
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("no {key}= address in the ready line {line:?}"))
        };
        Listening {
            sip: addr("sip"),
            msrp: addr("msrp"),
            smtp: addr("smtp"),
            admin: addr("admin"),
        }
    }
}

/// How long a gateway may take to print its ready line.
const GATEWAY_START: Duration = Duration::from_secs(30);

/// Starts `iwf run --config config` (listeners on port 0: the gateway chooses) and waits
/// for its ready line, 30 s at most; its logs go to `config` with the extension `log`.
pub fn run_gateway(config: &Path) -> (Running, Listening) {
    let log = config.with_extension("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_iwf"))
        .args(["run", "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut running = Running(child);
    let (ready, line) = std::sync::mpsc::channel();
    // Reads stdout to its end, so the gateway never waits on a full pipe.
    std::thread::spawn(move || {
        for read in BufReader::new(stdout).lines() {
            let Ok(read) = read else { break };
            if read.starts_with("iwf ready ") {
                let _ = ready.send(read);
            }
        }
    });
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    let deadline = Instant::now() + GATEWAY_START;
    loop {
        match line.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => return (running, Listening::parse(&line)),
            Err(RecvTimeoutError::Disconnected) => {
                let status = running.0.wait().unwrap();
                panic!(
                    "gateway exited ({status}) before its ready line; its stderr ends:\n{}",
                    tail()
                );
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Some(status) = running.0.try_wait().unwrap() {
                    panic!(
                        "gateway exited ({status}) before its ready line; its stderr ends:\n{}",
                        tail()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "gateway did not come up: no ready line within {GATEWAY_START:?}; \
                     its stderr ends:\n{}",
                    tail()
                );
            }
        }
    }
}

/// A loopback port free on both TCP and UDP when asked; for a port nothing binds (a closed
/// port) and for peers that cannot bind port 0 and say what they got ([`on_a_free_port`]).
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A peer that cannot bind port 0 and say which port it got (dnsmasq, Kamailio), started
/// on a free port: another process may take the port before the peer binds it, so `start`
/// answers `Err` with the peer's log when it was refused the port, and the peer is started
/// again on another one, 5 times at most.
pub fn on_a_free_port<T>(what: &str, mut start: impl FnMut(u16) -> Result<T, String>) -> T {
    let mut log = String::new();
    for _ in 0..5 {
        match start(free_port()) {
            Ok(peer) => return peer,
            Err(refused) => log = refused,
        }
    }
    panic!("{what} was refused its port 5 times; the last time:\n{log}");
}

/// One HTTP/1.1 request (the admin listener); returns (status, body).
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))?;
    // Generous: POST /policy/reload answers after compiling, seconds for an interpreter.
    s.set_read_timeout(Some(std::time::Duration::from_secs(300)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Runs sipp scenario `tests/sipp/<name>` once against `target` over `transport` ("u1" UDP,
/// "t1" TCP), with more arguments (`-key name value` for `[name]`); true when it passed.
pub fn sipp(target: std::net::SocketAddr, name: &str, transport: &str, args: &[&str]) -> bool {
    sipp_calls(target, name, transport, 1, args)
}

/// As [`sipp`], `calls` calls, all at once at up to 100 new calls per second; true when
/// every one passed.
pub fn sipp_calls(
    target: std::net::SocketAddr,
    name: &str,
    transport: &str,
    calls: u32,
    args: &[&str],
) -> bool {
    let calls = calls.to_string();
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/sipp")
        .join(name);
    let status = std::process::Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(args)
        .args(["-m", &calls, "-l", &calls, "-r", "100", "-t", transport])
        .args(["-i", "127.0.0.1", "-p", "0"])
        .args([
            "-timeout",
            "10s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .arg(target.to_string())
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("sipp (Debian package sip-tester) must be installed: .ci/run installs it");
    status.success()
}
