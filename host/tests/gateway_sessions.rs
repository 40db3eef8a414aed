//! The sessions on the admin API (`GET /sessions`, `GET /sessions/{id}`) of a running
//! `iwf` binary, with real peers on loopback: sipp as the CPM client
//! (tests/sipp/f3-iwf-ends.xml: INVITE, 200, ACK, then it waits for the IWF's BYE),
//! tests/smtp/recipient_server.py (aiosmtpd) as the e-mail user's server (smart host), and
//! the MSRP test client of `common::msrp`.
//!
//! The ladder: a pending F2 session under the `default` policy (the invitation mailed,
//! the e-mail user has not answered), then the policy swapped to `auto-accept` and a live
//! F1 session (the IWF connects its MSRP side to the client); both are listed with their
//! phase, users and the policy version that decided them, paged one at a time, and shown
//! with their ladders.
//!
//! Needs `python3-aiosmtpd` and `sip-tester`: without them the test fails, naming what to
//! install (`tests/run.sh` installs them).

mod common;

use common::mail::{server, wait_for};
use common::msrp::MsrpListener;
use common::peers::{self, Peer};
use iwf::msrp::Method;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// sipp running tests/sipp/f3-iwf-ends.xml once in the background; killed when dropped.
struct Sipp(Child);

impl Sipp {
    /// An INVITE to `rcpt` offering `a=setup:<setup>` and the client's path on
    /// `msrp_port` with session-id `session`.
    fn start(sip: SocketAddr, dir: &Path, rcpt: &str, setup: &str, msrp_port: u16) -> Sipp {
        let scenario =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/sipp/f3-iwf-ends.xml");
        let port = msrp_port.to_string();
        let answer = dir.join(format!("answer-{rcpt}"));
        let keys = [
            ("setup", setup),
            ("msrp_port", port.as_str()),
            ("client_session", "cl13nt"),
            ("rcpt", rcpt),
            ("answer_file", answer.to_str().unwrap()),
        ];
        let mut command = Command::new("sipp");
        command.arg("-sf").arg(scenario);
        for (key, value) in keys {
            command.args(["-key", key, value]);
        }
        let child = command
            .args(["-m", "1", "-t", "u1", "-i", "127.0.0.1", "-p", "0"])
            .args(["-timeout", "60s", "-nostdin"])
            .arg(sip.to_string())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp (Debian package sip-tester)");
        Sipp(child)
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on the admin listener: (status, JSON body).
fn get(admin: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = common::http(admin, "GET", path).unwrap();
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, json)
}

/// The listed session whose e-mail user is `user`, once it is in `phase`.
fn session_of(admin: SocketAddr, user: &str, phase: &str) -> Value {
    let find = || {
        get(admin, "/sessions").1["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["email_user"] == user && s["phase"] == phase)
            .cloned()
    };
    wait_for(|| find().is_some(), &format!("{user}'s session {phase}"));
    find().unwrap()
}

/// The events of a session's ladder as "protocol event", in order; their times must not
/// go back.
fn ladder(session: &Value) -> Vec<String> {
    let events = session["ladder"].as_array().unwrap();
    let times: Vec<u64> = events
        .iter()
        .map(|e| e["at_unix_ms"].as_u64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "in time order: {events:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["at"].as_str().unwrap().ends_with('Z'))
    );
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["protocol"].as_str().unwrap(),
                e["event"].as_str().unwrap()
            )
        })
        .collect()
}

/// `wanted` appear in `ladder` in this order (other events may come between).
fn in_order(ladder: &[String], wanted: &[&str]) {
    let mut at = 0;
    for want in wanted {
        match ladder[at..].iter().position(|e| e.starts_with(want)) {
            Some(found) => at += found + 1,
            None => panic!("{want:?} missing or out of order in {ladder:#?}"),
        }
    }
}

fn sha_of(name: &str) -> String {
    iwf::policy::engine::sha256_hex(&std::fs::read(common::policy_file(name)).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_lists_a_pending_f2_and_a_live_f1_session_pages_them_and_shows_their_ladders() {
    peers::require(&[Peer::Aiosmtpd, Peer::Sipp]);
    let srv = server(&[]);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.wasm");
    std::fs::copy(common::policy_file("default"), &policy).unwrap();
    let config = dir.path().join("iwf.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nlisten = \"127.0.0.1:0\"\ndomain = \"iwf.test\"\n\
             [msrp]\nlisten = \"127.0.0.1:0\"\nconnect_timeout_ms = 60000\n\
             [smtp.inbound]\nlisten = \"127.0.0.1:0\"\ndomain = \"mail.iwf.test\"\n\
             [smtp.outbound]\nsmart_host = \"127.0.0.1:{}\"\nhelo = \"iwf.test\"\n\
             [policy]\npath = {:?}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"state\"\n",
            srv.port,
            policy.display().to_string()
        ),
    )
    .unwrap();
    let (_gateway, at) = common::run_gateway(&config);
    let admin = at.admin;

    // F2 under `default`: the invitation is mailed, 200, ACK; the e-mail user has not
    // answered. The client is active: the IWF waits for its connection.
    let _f2 = Sipp::start(
        at.sip,
        dir.path(),
        "bob@example.net",
        "active",
        common::free_port(),
    );
    let pending = session_of(admin, "bob@example.net", "awaiting-answer");

    // The policy swapped to `auto-accept`: the next session is accepted on behalf (F1).
    std::fs::copy(common::policy_file("auto-accept"), &policy).unwrap();
    let (status, body) = common::http(admin, "POST", "/policy/reload").unwrap();
    assert_eq!(status, 200, "{body}");
    let listener = MsrpListener::bind("cl13nt").await;
    let msrp_port = listener.uri.port.unwrap();
    let _f1 = Sipp::start(
        at.sip,
        dir.path(),
        "carol@example.net",
        "passive",
        msrp_port,
    );
    // The client is passive: the IWF connects and binds with an empty SEND.
    let mut client = listener.accept(vec![], WAIT).await;
    let bind = client.expect_request(Method::Send, WAIT).await;
    client.respond(&bind, 200).await;
    let live = tokio::task::block_in_place(|| session_of(admin, "carol@example.net", "live"));

    // GET /sessions: both, each with its users and the policy version that decided it.
    let (status, list) = get(admin, "/sessions");
    assert_eq!(status, 200);
    assert_eq!(list["total"], 2);
    assert!(list["next_cursor"].is_null(), "one page holds both: {list}");
    for (session, policy) in [(&pending, "default"), (&live, "auto-accept")] {
        assert_eq!(
            session["cpm_user"], "tel:+15551234567",
            "P-Asserted-Identity"
        );
        assert_eq!(session["policy"]["name"], policy);
        assert_eq!(session["policy"]["sha256"], sha_of(policy));
        assert!(session["policy"]["version"].is_string());
        assert!(session["started_at"].as_str().unwrap().ends_with('Z'));
        assert!(session["age_seconds"].as_u64().unwrap() < 60);
    }

    // Paging one at a time walks both, in id order, and says when it is done.
    let (_, first) = get(admin, "/sessions?limit=1");
    assert_eq!(first["sessions"].as_array().unwrap().len(), 1);
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let (_, second) = get(admin, &format!("/sessions?limit=1&cursor={cursor}"));
    assert_eq!(second["sessions"].as_array().unwrap().len(), 1);
    assert!(second["next_cursor"].is_null(), "{second}");
    let walked = [&first, &second].map(|p| p["sessions"][0]["id"].as_str().unwrap().to_owned());
    assert!(walked[0] < walked[1], "in id order: {walked:?}");
    let mut ids = [
        pending["id"].as_str().unwrap(),
        live["id"].as_str().unwrap(),
    ];
    ids.sort();
    assert_eq!(walked, ids);

    // GET /sessions/{id}: the session and its ladder, in order, with times.
    let (status, f2) = get(
        admin,
        &format!("/sessions/{}", pending["id"].as_str().unwrap()),
    );
    assert_eq!(status, 200);
    assert_eq!(f2["phase"], "awaiting-answer");
    assert_eq!(f2["ladder_dropped"], 0);
    in_order(
        &ladder(&f2),
        &[
            "sip INVITE received",
            "policy on-invite -> ask-user",
            "smtp invitation 250 from ",
            "sip 200 OK sent",
            "sip ACK received",
        ],
    );
    let (status, f1) = get(
        admin,
        &format!("/sessions/{}", live["id"].as_str().unwrap()),
    );
    assert_eq!(status, 200);
    assert_eq!(f1["email_user"], "carol@example.net");
    in_order(
        &ladder(&f1),
        &[
            "sip INVITE received",
            "policy on-invite -> accept-on-behalf",
            "sip 200 OK sent",
            "msrp connected",
        ],
    );
    assert!(ladder(&f1).contains(&"sip ACK received".to_owned()));

    // An unknown id is 404, a bad limit or cursor 400: JSON with the reason.
    let (status, missing) = get(admin, "/sessions/n0such");
    assert_eq!(status, 404);
    assert!(missing["error"].as_str().unwrap().contains("n0such"));
    for bad in ["limit=0", "limit=1001", "limit=many", "cursor=xyz"] {
        let (status, refused) = get(admin, &format!("/sessions?{bad}"));
        assert_eq!(status, 400, "{bad}");
        assert!(refused["error"].is_string(), "{bad}: {refused}");
    }
}
