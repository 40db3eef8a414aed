//! Policies in any Wasm language: the `default` policy written in Python (componentize-py)
//! and in JavaScript (componentize-js), built by `policies/build.sh`, pass the Rust
//! `default`'s case file, and a running gateway swaps Rust -> Python -> JavaScript -> Rust
//! while it is deciding, with no failed decision.
//!
//! The first test to need a build runs `policies/build.sh`, which fetches the toolchains
//! (PyPI, npm) on a fresh machine and does nothing when the components are up to date.

mod common;

use common::{free_port, http, policy_file};
use iwf::policy::harness;
use iwf::policy::{Limits, LoadError, PolicyEngine};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds `default-<lang>` (once per test process) and returns its component's path.
fn built(lang: &str) -> PathBuf {
    static BUILDS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let done = BUILDS.get_or_init(|| Mutex::new(Vec::new()));
    let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
    let path = policy_file(&format!("default-{lang}"));
    if !done.iter().any(|l| l == lang) {
        let out = Command::new(workspace().join("policies/build.sh"))
            .arg(lang)
            .stdin(Stdio::null())
            .output()
            .expect("run policies/build.sh");
        assert!(
            out.status.success(),
            "policies/build.sh {lang} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(path.exists(), "policies/build.sh {lang} made no {path:?}");
        done.push(lang.to_string());
    }
    path
}

/// Compiled components shared by these tests' engines and gateways: an interpreter
/// policy compiles in seconds, once.
fn cache_dir() -> PathBuf {
    policy_file("default")
        .parent()
        .unwrap()
        .with_file_name("policy-cache")
}

/// Runs both case files of `default` against its build in `lang` ("rust", "py", "js").
fn run_default_cases(lang: &str) {
    let component = match lang {
        "rust" => policy_file("default"),
        _ => built(lang),
    };
    let limits = Limits {
        timeout_ms: 1000,
        warm_instances: 0,
        ..Limits::from(&iwf::config::PolicyConfig::default())
    };
    let engine = PolicyEngine::with_cache_dir(limits, Some(cache_dir())).unwrap();
    // cases.toml: the policy's behaviour; edge-cases.toml: where ports of policy-sdk
    // easily differ (Unicode, bytes).
    for (file, at_least) in [("cases.toml", 59), ("edge-cases.toml", 43)] {
        let cases = workspace().join("policies/default").join(file);
        let mut report = Vec::new();
        let summary = harness::run_cases(&engine, &component, &cases, &mut report)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let report = String::from_utf8(report).unwrap();
        assert!(
            summary.failed == 0 && summary.passed >= at_least,
            "default ({lang}) against policies/default/{file}:\n{report}"
        );
    }
}

#[test]
fn the_rust_default_passes_the_edge_cases_too() {
    run_default_cases("rust");
}

#[test]
fn the_python_default_passes_the_default_cases() {
    run_default_cases("py");
}

#[test]
fn the_javascript_default_passes_the_default_cases() {
    run_default_cases("js");
}

/// Sum of a metric family's samples whose line contains `filter`.
fn metric(admin: SocketAddr, name: &str, filter: &str) -> u64 {
    let (_, body) = http(admin, "GET", "/metrics").unwrap();
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_running_gateway_swaps_rust_python_javascript_rust_while_deciding() {
    let versions: Vec<(&str, PathBuf)> = vec![
        ("rust", policy_file("default")),
        ("python", built("py")),
        ("javascript", built("js")),
        ("rust", policy_file("default")),
    ];
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.wasm");
    std::fs::copy(&versions[0].1, &policy).unwrap();
    let config = dir.path().join("iwf.toml");
    // The file is swapped by POST /policy/reload; no polling, so each swap is the test's.
    // Asking the user mails the invitation: to a smart host where nothing listens, so each
    // call ends at once (480) without the machine's DNS. The deadline is 1 s, not the 50 ms
    // default: what is checked here is that a swap fails no decision, and on a loaded CI
    // machine an interpreter's decision can pass 50 ms (the deadline has tests of its own).
    let closed = free_port();
    std::fs::write(
        &config,
        format!(
            "[sip]\nlisten = \"127.0.0.1:0\"\n[msrp]\nlisten = \"127.0.0.1:0\"\n[smtp.inbound]\nlisten = \"127.0.0.1:0\"\n[policy]\npath = {:?}\ntimeout_ms = 1000\nwatch_interval_ms = 60000\ncache_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"state\"\n[smtp.outbound]\nsmart_host = \"127.0.0.1:{closed}\"\n",
            policy.display().to_string(),
            cache_dir().display().to_string()
        ),
    )
    .unwrap();
    let (_gw, at) = common::run_gateway(&config);
    let (sip, admin) = (at.sip, at.admin);

    // Invitations all along, 10 calls/s, until the swaps are done; then sipp is told to
    // stop (SIGUSR1: no new calls, the ones in progress finish).
    let mut sipp = Command::new("sipp")
        .arg("-sf")
        .arg(workspace().join("tests/sipp/invite-any-final.xml"))
        .args(["-r", "10", "-l", "20"])
        .args(["-t", "u1", "-i", "127.0.0.1", "-p", "0", "-nostdin"])
        .args(["-timeout", "240s", "-timeout_error", "-trace_err"])
        .arg(sip.to_string())
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("sipp (Debian package sip-tester) must be installed: .ci/run installs it");

    let decided = |admin| metric(admin, "iwf_policy_decisions_total", "on-invite");
    for (language, file) in &versions[1..] {
        // Some decisions on the version served now (20 at least), then the swap.
        let before = decided(admin);
        let started = Instant::now();
        while decided(admin) < before + 20 {
            assert!(started.elapsed() < Duration::from_secs(180), "no decisions");
            std::thread::sleep(Duration::from_millis(50));
        }
        let tmp = policy.with_extension("new");
        std::fs::copy(file, &tmp).unwrap();
        std::fs::rename(&tmp, &policy).unwrap();
        let (status, body) = http(admin, "POST", "/policy/reload").unwrap();
        assert_eq!(status, 200, "swap to {language}: {body}");
        let (_, served) = http(admin, "GET", "/policy").unwrap();
        let served: serde_json::Value = serde_json::from_str(&served).unwrap();
        assert_eq!(
            served["sha256"],
            iwf::policy::engine::sha256_hex(&std::fs::read(file).unwrap()),
            "{language} is served"
        );
    }
    // The last version decides too.
    let before = decided(admin);
    let started = Instant::now();
    while decided(admin) < before + 20 {
        assert!(started.elapsed() < Duration::from_secs(180), "no decisions");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = Command::new("kill")
        .args(["-USR1", &sipp.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = sipp.wait().unwrap();
    assert!(
        status.success(),
        "sipp saw a call without a final answer (see its error trace in {:?})",
        dir.path()
    );
    assert_eq!(
        metric(admin, "iwf_policy_fail_safe_total", ""),
        0,
        "a decision failed during the swaps"
    );
    assert_eq!(metric(admin, "iwf_policy_loads_total", "refused"), 0);
}

#[test]
fn an_interpreter_that_does_not_fit_memory_mb_is_refused_with_the_key_to_raise() {
    let component = built("py");
    let engine = PolicyEngine::with_cache_dir(
        Limits {
            memory_bytes: 4 << 20,
            warm_instances: 0,
            ..Limits::from(&iwf::config::PolicyConfig::default())
        },
        Some(cache_dir()),
    )
    .unwrap();
    let error = engine.load_file(&component).err().expect("refused");
    let message = error.to_string();
    assert!(
        matches!(error, LoadError::Limits(_)) && message.contains("raise [policy] memory_mb"),
        "{message}"
    );
    // With the default cap it loads, and says how much it needs.
    let engine = PolicyEngine::with_cache_dir(
        Limits {
            warm_instances: 0,
            ..Limits::from(&iwf::config::PolicyConfig::default())
        },
        Some(cache_dir()),
    )
    .unwrap();
    let policy = engine.load_file(&component).unwrap();
    assert!(
        policy.memory_at_load() > 4 << 20,
        "{}",
        policy.memory_at_load()
    );
}
