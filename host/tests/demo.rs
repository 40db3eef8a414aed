//! `iwf demo` as a user runs it: the built binary as a subprocess, its ladder read from
//! stdout. It needs no real peer: the demo brings its own.

mod common;

use std::process::{Command, Output};

/// Runs `iwf demo` with `args`; its output is plain text (a pipe, and NO_COLOR).
fn demo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iwf"))
        .arg("demo")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("the iwf binary runs")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Each of `lines` appears in `stdout`, in this order (each after the one before).
fn assert_in_order(stdout: &str, lines: &[&str]) {
    let mut from = 0;
    for line in lines {
        match stdout[from..].find(line) {
            Some(at) => from += at + line.len(),
            None => panic!("{line:?} missing, or out of order, in the ladder:\n{stdout}"),
        }
    }
}

/// F2 -> accept -> F5 -> F4 -> F8 as DESIGN.md orders them, each step's key messages.
const F2_LADDER: &[&str] = &[
    "step 1: INVITE",
    "CPM client → IWF          SIP INVITE mailto:bob@example.net",
    "IWF → CPM client   SIP 100 Trying",
    "step 2: invitation e-mail (F2)",
    "IWF → SMTP server  SMTP invitation e-mail: MAIL FROM:<",
    "Subject: Lunch?",
    "step 3: 200 OK and ACK",
    "IWF → CPM client   SIP 200 OK",
    "a=setup:passive",
    "CPM client → IWF          SIP ACK",
    "step 4: MSRP connected",
    "IWF → CPM client   MSRP 200",
    "step 5: reply \"accept\" (F3)",
    "e-mail user → IWF          SMTP MAIL FROM:<bob@example.net>",
    "Text: accept",
    "IWF → e-mail user  SMTP 250",
    "step 6: e-mail becomes MSRP SEND (F5)",
    "IWF → CPM client   MSRP SEND message/cpim",
    "CPIM DateTime: ",
    "Text: Hi Alice, noon works for me.",
    "step 7: MSRP SEND becomes e-mail (F4)",
    "CPM client → IWF          MSRP SEND message/cpim",
    "IWF → SMTP server  SMTP chat e-mail",
    "In-Reply-To: <",
    "Text: Great, see you at noon!",
    "IWF → CPM client   MSRP 200",
    "step 8: reply \"leave\", BYE (F8)",
    "Text: leave",
    "IWF → CPM client   SIP BYE",
    "Reason: SIP;cause=200",
    "CPM client → IWF          SIP 200 OK",
    "IWF → CPM client   MSRP connection closed",
    "demo passed: all 8 steps happened",
];

#[test]
fn demo_plays_f2_accept_f5_f4_f8_and_exits_0() {
    let output = demo(&[]);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{stderr}",
        output.status
    );
    assert_in_order(&stdout, F2_LADDER);
    assert!(
        !stdout.contains('\x1b'),
        "no escape codes on a pipe:\n{stdout}"
    );
}

#[test]
fn demo_names_the_failed_step_when_the_smtp_server_refuses() {
    let output = demo(&["--break-step", "smtp-refuse", "--step-timeout", "5s"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_in_order(
        &stdout,
        &[
            "step 2: invitation e-mail (F2)",
            "SMTP server → IWF          SMTP 550 5.1.1",
            "IWF → CPM client   SIP 488 Not Acceptable Here",
            "demo failed at step 2 (invitation e-mail (F2)): the e-mail user's SMTP server refused the invitation",
        ],
    );
    assert!(
        stderr.contains("step 2 (invitation e-mail (F2)) failed") && stderr.contains("488"),
        "{stderr}"
    );
    assert!(!stdout.contains("step 3:"), "{stdout}");
}

#[test]
fn demo_with_an_auto_accept_policy_plays_f1_without_invitation_or_accept() {
    let policy = common::policy_file("auto-accept");
    let output = demo(&["--policy", policy.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{stderr}",
        output.status
    );
    assert_in_order(
        &stdout,
        &[
            "policy auto-accept",
            "step 1: INVITE",
            "step 2: 200 OK and ACK",
            "the policy accepted on the e-mail user's behalf (F1",
            "IWF → CPM client   SIP 200 OK",
            "step 3: MSRP connected",
            "step 4: MSRP SEND becomes e-mail (F4)",
            "IWF → SMTP server  SMTP chat e-mail",
            "step 5: e-mail becomes MSRP SEND (F5)",
            "Text: Hi Alice, noon works for me.",
            "step 6: reply \"leave\", BYE (F8)",
            "IWF → CPM client   SIP BYE",
            "demo passed: all 6 steps happened",
        ],
    );
    assert!(!stdout.contains("SMTP invitation e-mail"), "{stdout}");
    assert!(!stdout.contains("reply \"accept\""), "{stdout}");
}

#[test]
fn demo_with_a_missing_or_broken_policy_file_says_so_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.wasm");
    let output = demo(&["--policy", missing.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("--policy {}: cannot read it", missing.display())),
        "{stderr}"
    );
    assert!(!stdout.contains("step 1"), "{stdout}");

    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, "not a component").unwrap();
    let output = demo(&["--policy", broken.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("cannot start the gateway")
            && stderr.contains(&broken.display().to_string()),
        "{stderr}"
    );
}
