//! The running gateway's policy plane over real sockets: the `iwf` binary started with a
//! config, its admin listener asked over HTTP, the policy swapped by replacing the file,
//! by SIGHUP and by `POST /policy/reload`.

mod common;

use common::{http, policy_file};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Gateway {
    process: common::Running,
    admin: SocketAddr,
}

fn start(dir: &Path, policy: &Path) -> Gateway {
    let config = dir.join("iwf.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nlisten = \"127.0.0.1:0\"\n[msrp]\nlisten = \"127.0.0.1:0\"\n[smtp.inbound]\nlisten = \"127.0.0.1:0\"\n[policy]\npath = {:?}\nwatch_interval_ms = 100\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"state\"\n",
            policy.display().to_string()
        ),
    )
    .unwrap();
    let (process, at) = common::run_gateway(&config);
    Gateway {
        process,
        admin: at.admin,
    }
}

fn served_sha(gw: &Gateway) -> String {
    let (status, body) = http(gw.admin, "GET", "/policy").unwrap();
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["sha256"].as_str().unwrap().to_string()
}

fn sha_of(name: &str) -> String {
    iwf::policy::engine::sha256_hex(&std::fs::read(policy_file(name)).unwrap())
}

/// Replaces `path` the way a deploy does: write beside it, rename over it.
fn deploy(from: &Path, path: &Path) {
    let tmp = path.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn get_policy_says_what_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.wasm");
    std::fs::copy(policy_file("default"), &path).unwrap();
    let gw = start(dir.path(), &path);
    let (_, body) = http(gw.admin, "GET", "/policy").unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["sha256"], sha_of("default"));
    assert_eq!(json["world_version"], "0.1.0");
    assert_eq!(json["name"], "default");
    assert!(json["loaded_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn a_replaced_file_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.wasm");
    std::fs::copy(policy_file("default"), &path).unwrap();
    let gw = start(dir.path(), &path);
    assert_eq!(served_sha(&gw), sha_of("default"));

    let replaced = Instant::now();
    deploy(&policy_file("auto-accept"), &path);
    while served_sha(&gw) != sha_of("auto-accept") {
        // Polled every 250 ms; the bound only stops a test that would hang (a loaded
        // machine compiles slowly), it measures nothing.
        assert!(
            replaced.elapsed() < Duration::from_secs(20),
            "not reloaded within 20 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sighup_and_post_reload_swap_and_a_bad_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.wasm");
    std::fs::copy(policy_file("default"), &path).unwrap();
    let gw = start(dir.path(), &path);

    // A broken file: refused, the old version keeps serving, the refusal says why.
    std::fs::write(&path, b"not wasm at all").unwrap();
    let (status, body) = http(gw.admin, "POST", "/policy/reload").unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("not a WebAssembly file"), "{body}");
    assert_eq!(served_sha(&gw), sha_of("default"));

    // POST /policy/reload.
    std::fs::copy(policy_file("auto-accept"), &path).unwrap();
    let (status, body) = http(gw.admin, "POST", "/policy/reload").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&sha_of("auto-accept")), "{body}");
    assert_eq!(served_sha(&gw), sha_of("auto-accept"));

    // SIGHUP.
    std::fs::copy(policy_file("default"), &path).unwrap();
    let kill = Command::new("kill")
        .args(["-HUP", &gw.process.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let sent = Instant::now();
    while served_sha(&gw) != sha_of("default") {
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "SIGHUP did not reload"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let (status, metrics) = http(gw.admin, "GET", "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("iwf_policy_loads_total{result=\"refused\"}"),
        "{metrics}"
    );
    let refused: u64 = metrics
        .lines()
        .find(|l| l.starts_with("iwf_policy_loads_total{result=\"refused\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert!(refused >= 1, "{metrics}");
    for series in [
        "iwf_policy_decisions_total{decision=\"on-invite\"}",
        "iwf_policy_fail_safe_total{decision=\"on-invite\",cause=\"timeout\"}",
        "iwf_policy_decision_seconds_bucket{decision=\"on-invite\",le=\"+Inf\"}",
        &format!(
            "iwf_policy_info{{name=\"default\",version=\"0.1.0\",sha256=\"{}\",world=\"0.1.0\"}} 1",
            sha_of("default")
        ),
    ] {
        assert!(metrics.contains(series), "missing {series}");
    }
}
