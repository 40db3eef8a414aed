//! Shared by the integration tests: the built policies and the engine to load them in (the
//! session to decide on is `iwf::policy::testing::session`).
#![allow(dead_code)]

pub mod chat;
pub mod mail;
pub mod msrp;

use iwf::policy::{Limits, PolicyEngine};
use std::path::PathBuf;
use std::sync::Arc;

/// A component built by `host/build.rs` into `target/policies/`.
pub fn policy_file(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("policies").join(format!("{name}.wasm"))
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
}

/// Starts `iwf run --config config` and waits (30 s at most) until `ready` says it serves.
pub fn run_gateway(config: &std::path::Path, ready: impl Fn() -> bool) -> Running {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_iwf"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = Running(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "gateway did not come up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    running
}

/// A loopback port free on both TCP and UDP.
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
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
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/sipp")
        .join(name);
    let status = std::process::Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(args)
        .args(["-m", "1", "-t", transport, "-i", "127.0.0.1", "-p", "0"])
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
