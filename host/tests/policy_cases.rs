//! `iwf policy check` and `iwf policy test`: the shipped case files pass against the
//! shipped policies, cover every decision, and the harness reports what goes wrong (a
//! wrong expectation, a bad argument, a trap, a refused file) clearly.

use iwf::policy::harness::{self, Summary};
use iwf::policy::{Decision, Limits, LoadError, PolicyEngine};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// One engine for all tests: its compile cache saves compiling each policy per test.
fn engine() -> Arc<PolicyEngine> {
    static ENGINE: OnceLock<Arc<PolicyEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            PolicyEngine::new(Limits {
                timeout_ms: 1000,
                memory_bytes: 32 << 20,
                max_instances: 16,
                warm_instances: 0,
            })
            .unwrap()
        })
        .clone()
}

/// A component built by `host/build.rs` (or `policies/build.sh`) into `<target>/policies/`.
fn policy_file(name: &str) -> PathBuf {
    Path::new(env!("IWF_POLICIES_DIR")).join(format!("{name}.wasm"))
}

fn cases_file(policy: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policies")
        .join(policy)
        .join("cases.toml")
}

/// The `[[case]]` tables of a case file.
fn cases_of(path: &Path) -> Vec<toml::Table> {
    let file: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    file["case"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_table().unwrap().clone())
        .collect()
}

/// Runs `cases` (TOML text) against the policy `policy`: the summary and the report.
fn run(policy: &str, cases: &str) -> (Summary, String) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(cases.as_bytes()).unwrap();
    let mut out = Vec::new();
    let summary = harness::run_cases(&engine(), &policy_file(policy), file.path(), &mut out)
        .unwrap_or_else(|e| panic!("{e:#}"));
    (summary, String::from_utf8(out).unwrap())
}

const SESSION: &str = r#"
[fixtures.alice-invites-bob]
session-id = "s1"
gateway = { sip-domain = "iwf.example.com", mail-domain = "mail.example.com" }
request-uri = "mailto:bob@example.net"
from = { uri = "sip:+15551234567@ims.example.com", display-name = "Alice" }
privacy-id = false
"#;

fn shipped_cases_pass(policy: &str) {
    let path = cases_file(policy);
    let mut out = Vec::new();
    let summary = harness::run_cases(&engine(), &policy_file(policy), &path, &mut out).unwrap();
    let report = String::from_utf8(out).unwrap();
    let n = cases_of(&path).len();
    assert_eq!(
        summary,
        Summary {
            passed: n,
            failed: 0
        },
        "{report}"
    );
    assert_eq!(
        report.lines().last(),
        Some(format!("{n} passed, 0 failed").as_str())
    );
    assert_eq!(report.lines().filter(|l| l.starts_with("ok   ")).count(), n);
}

#[test]
fn default_cases_pass() {
    shipped_cases_pass("default");
}

#[test]
fn auto_accept_cases_pass() {
    shipped_cases_pass("auto-accept");
}

#[test]
fn default_cases_cover_every_decision() {
    let cases = cases_of(&cases_file("default"));
    let called: Vec<&str> = cases.iter().map(|c| c["call"].as_str().unwrap()).collect();
    for name in Decision::ALL
        .map(Decision::name)
        .into_iter()
        .chain(["info"])
    {
        assert!(called.contains(&name), "no case calls `{name}`");
    }
}

#[test]
fn the_auto_accept_cases_fail_against_default() {
    // The cases discriminate: the policy that asks the user fails the accepting ones.
    let mut out = Vec::new();
    let summary = harness::run_cases(
        &engine(),
        &policy_file("default"),
        &cases_file("auto-accept"),
        &mut out,
    )
    .unwrap();
    assert!(summary.failed >= 3, "{}", String::from_utf8_lossy(&out));
}

#[test]
fn a_wrong_expectation_is_reported_with_expected_and_actual() {
    let cases = format!(
        r#"{SESSION}
[[case]]
name = "right"
call = "on-invite"
args = {{ session = "@alice-invites-bob" }}
expect = "ask-user"

[[case]]
name = "wrong on purpose"
call = "on-invite"
args = {{ session = "@alice-invites-bob" }}
expect = "accept-on-behalf"

[[case]]
name = "wrong field"
call = "smtp-failure-status"
args = {{ session = "@alice-invites-bob", failure = {{ stage = "greeting", code = 554, text = "no", permanent = true }} }}
expect = {{ code = 480, reason = "Busy Here" }}
"#
    );
    let (summary, report) = run("default", &cases);
    assert_eq!(
        summary,
        Summary {
            passed: 1,
            failed: 2
        },
        "{report}"
    );
    assert!(report.contains("ok   right\n"), "{report}");
    assert!(
        report.contains(
            "FAIL wrong on purpose\n  expected: accept-on-behalf\n  actual:   ask-user\n"
        ),
        "{report}"
    );
    assert!(
        report.contains(
            "  expected: { code = 480, reason = \"Busy Here\" }\n  actual:   { code = 480, reason = \"Temporarily Unavailable\" }\n  differs at reason\n"
        ),
        "{report}"
    );
    assert!(report.ends_with("1 passed, 2 failed\n"), "{report}");
}

#[test]
fn bad_arguments_and_unknown_calls_fail_their_case_with_a_clear_message() {
    let cases = format!(
        r#"{SESSION}
[[case]]
name = "bad uri"
call = "on-invite"
args = {{ session = {{ base = "@alice-invites-bob", from = {{ uri = 5 }} }} }}
expect = "ask-user"

[[case]]
name = "no such call"
call = "on-invitation"
args = {{ session = "@alice-invites-bob" }}
expect = "ask-user"

[[case]]
name = "no such fixture"
call = "on-invite"
args = {{ session = "@carol" }}
expect = "ask-user"

[[case]]
name = "typo in a key"
call = "on-invite"
args = {{ session = "@alice-invites-bob" }}
expected = "ask-user"

[[case]]
name = "still runs after the bad ones"
call = "invitation-expiry"
args = {{ session = "@alice-invites-bob" }}
expect = 86400
"#
    );
    let (summary, report) = run("default", &cases);
    assert_eq!(
        summary,
        Summary {
            passed: 1,
            failed: 4
        },
        "{report}"
    );
    for needle in [
        "FAIL bad uri\n  bad arguments: session.from.uri: expected a string, found the integer 5\n",
        "FAIL no such call\n  no decision `on-invitation`; the policy exports info, on-invite,",
        "FAIL no such fixture\n  bad arguments: session: no fixture named `carol`",
        "FAIL typo in a key\n  bad case: unknown key `expected`",
        "ok   still runs after the bad ones\n",
    ] {
        assert!(report.contains(needle), "{needle:?} not in\n{report}");
    }
}

#[test]
fn traps_and_timeouts_fail_the_case_without_fail_safe() {
    let cases = format!(
        r#"{SESSION}
[[case]]
name = "trap"
call = "on-invite"
args = {{ session = {{ base = "@alice-invites-bob", request-uri = "mailto:trap@example.net" }} }}
expect = "ask-user"

[[case]]
name = "spin"
call = "on-invite"
args = {{ session = {{ base = "@alice-invites-bob", request-uri = "mailto:spin@example.net" }} }}
expect = "ask-user"

[[case]]
name = "out-of-range answers are shown as they are"
call = "on-invite"
args = {{ session = {{ base = "@alice-invites-bob", request-uri = "mailto:garbage@example.net" }} }}
expect = "ask-user"
"#
    );
    let (summary, report) = run("misbehaving", &cases);
    assert_eq!(
        summary,
        Summary {
            passed: 0,
            failed: 3
        },
        "{report}"
    );
    assert!(report.contains("FAIL trap\n  error:    trap: "), "{report}");
    assert!(
        report.contains("FAIL spin\n  error:    timeout: "),
        "{report}"
    );
    assert!(
        report.contains(r#"  actual:   { refuse = { code = 99, reason = "bad\r\ncode" } }"#),
        "{report}"
    );
}

#[test]
fn an_unreadable_case_file_is_an_error_not_a_result() {
    let mut out = Vec::new();
    let missing = Path::new("/nonexistent/cases.toml");
    let e = harness::run_cases(&engine(), &policy_file("default"), missing, &mut out).unwrap_err();
    assert!(format!("{e:#}").contains("cannot read"), "{e:#}");

    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"[[case]\nname = ").unwrap();
    let e =
        harness::run_cases(&engine(), &policy_file("default"), file.path(), &mut out).unwrap_err();
    assert!(
        format!("{e:#}").contains(&file.path().display().to_string()),
        "{e:#}"
    );
}

#[test]
fn check_describes_the_policy_and_its_decisions() {
    let path = policy_file("default");
    let mut out = Vec::new();
    harness::check(&engine(), &path, &mut out).unwrap();
    let report = String::from_utf8(out).unwrap();
    let sha256 = iwf::policy::engine::sha256_hex(&std::fs::read(&path).unwrap());
    assert!(report.contains("policy:    default 0.1.0\n"), "{report}");
    assert!(
        report.contains("world:     cpm:iwf-policy/policy@0.1.0"),
        "{report}"
    );
    assert!(
        report.contains(&format!("sha256:    {sha256}\n")),
        "{report}"
    );
    assert!(
        report.contains("  on-invite: func(session: session) -> invite-decision\n"),
        "{report}"
    );
    assert!(
        report.contains(
            "  smtp-failure-status: func(session: session, failure: smtp-failure) -> sip-status\n"
        ),
        "{report}"
    );
    for d in Decision::ALL {
        assert!(
            report.contains(&format!("  {}: func(", d.name())),
            "{} missing from\n{report}",
            d.name()
        );
    }
}

fn check_bytes(bytes: &[u8]) -> Result<(), LoadError> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    harness::check(&engine(), file.path(), &mut Vec::new())
}

#[test]
fn check_refuses_what_is_not_a_policy() {
    assert!(matches!(
        check_bytes(b"#!/bin/sh\necho policy\n"),
        Err(LoadError::NotWasm)
    ));
    assert!(matches!(
        check_bytes(b"\0asm\x01\0\0\0"),
        Err(LoadError::CoreModule)
    ));
    match check_bytes(b"(component)") {
        Err(e @ LoadError::WrongWorld { .. }) => {
            assert!(
                e.to_string().contains("cpm:iwf-policy/decisions@0.1.0"),
                "{e}"
            )
        }
        other => panic!("expected WrongWorld, got {:?}", other.err()),
    }
    assert!(matches!(
        harness::check(
            &engine(),
            Path::new("/nonexistent/policy.wasm"),
            &mut Vec::new()
        ),
        Err(LoadError::Read { .. })
    ));
}
