//! The policy engine: loading and refusing components, every fail-safe cause, isolation
//! between calls, and hot swap under load.

mod common;

use common::{engine, policy_file};
use iwf::policy::testing::session;
use iwf::policy::world::*;
use iwf::policy::{
    DecidedBy, Decision, FailCause, LoadError, PolicyHost, PolicySource, Reloaded, failsafe,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

fn misbehaving_host(timeout_ms: u64) -> PolicyHost {
    PolicyHost::new(
        engine(timeout_ms),
        PolicySource::File(policy_file("misbehaving")),
    )
    .unwrap()
}

#[test]
fn embedded_default_loads_and_asks_the_user() {
    let host = PolicyHost::new(engine(50), PolicySource::Embedded).unwrap();
    assert_eq!(host.current().info().name, "default");
    let d = host.on_invite(&session("mailto:bob@example.net"));
    assert!(matches!(d.value, InviteDecision::AskUser));
    assert!(matches!(d.by, DecidedBy::Policy(_)));
}

#[test]
fn shipped_policies_load_from_files() {
    let e = engine(50);
    for (file, name) in [("default", "default"), ("auto-accept", "auto-accept")] {
        let p = e.load_file(&policy_file(file)).unwrap();
        assert_eq!(p.info().name, name);
        assert_eq!(
            p.sha256_hex(),
            iwf::policy::engine::sha256_hex(&std::fs::read(policy_file(file)).unwrap())
        );
    }
}

#[test]
fn refuses_what_is_not_a_component_and_says_why() {
    let e = engine(50);
    let err = e.load_bytes(b"hello", "x").err().unwrap();
    assert!(matches!(err, LoadError::NotWasm), "{err}");
    let err = e.load_bytes(b"\0asm\x01\0\0\0", "x").err().unwrap();
    assert!(matches!(err, LoadError::CoreModule), "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
}

#[test]
fn refuses_a_component_of_another_world() {
    let err = engine(50).load_bytes(b"(component)", "x").err().unwrap();
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err}");
    assert!(
        err.to_string().contains("cpm:iwf-policy/decisions@0.1.0"),
        "{err}"
    );
}

#[test]
fn refuses_another_version_of_the_world() {
    let wat =
        br#"(component (instance $i) (export "cpm:iwf-policy/decisions@0.2.0" (instance $i)))"#;
    let err = engine(50).load_bytes(wat, "x").err().unwrap();
    assert!(
        matches!(&err, LoadError::WrongVersion { found } if found == "0.2.0"),
        "{err}"
    );
    assert!(err.to_string().contains("serves 0.1.0"), "{err}");
}

#[test]
fn refuses_missing_decisions_naming_them() {
    let wat =
        br#"(component (instance $i) (export "cpm:iwf-policy/decisions@0.1.0" (instance $i)))"#;
    let err = engine(50).load_bytes(wat, "x").err().unwrap();
    assert!(matches!(err, LoadError::Exports(_)), "{err}");
    assert!(
        err.to_string().contains("info") || err.to_string().contains("on-invite"),
        "{err}"
    );
}

#[test]
fn refuses_imports_the_sandbox_does_not_give() {
    let wat = br#"(component
        (import "wasi:http/outgoing-handler@0.2.6" (instance (export "handle" (func))))
        (instance $i) (export "cpm:iwf-policy/decisions@0.1.0" (instance $i)))"#;
    let err = engine(50).load_bytes(wat, "x").err().unwrap();
    assert!(matches!(err, LoadError::Imports(_)), "{err}");
    assert!(
        err.to_string().contains("wasi:http/outgoing-handler"),
        "{err}"
    );
}

fn assert_fail_safe<T>(d: &iwf::policy::Decided<T>, cause: FailCause) {
    match &d.by {
        DecidedBy::FailSafe(c) => assert_eq!(*c, cause),
        DecidedBy::Policy(_) => panic!("expected the {cause} fail-safe, the policy answered"),
    }
}

#[test]
fn a_trap_gives_the_fail_safe() {
    let host = misbehaving_host(50);
    let d = host.on_invite(&session("mailto:trap@example.net"));
    assert_fail_safe(&d, FailCause::Trap);
    assert!(matches!(d.value, InviteDecision::AskUser));
    assert_eq!(host.counts(Decision::OnInvite, FailCause::Trap), (1, 1));
}

#[test]
fn a_guest_that_never_returns_is_stopped_at_its_deadline() {
    let host = misbehaving_host(20);
    let started = std::time::Instant::now();
    let d = host.invitation_expiry(&session("mailto:spin@example.net"));
    let elapsed = started.elapsed();
    assert_fail_safe(&d, FailCause::Timeout);
    assert_eq!(d.value, failsafe::invitation_expiry());
    // 20 ms deadline; a loaded CI machine may add scheduling delay, not seconds.
    assert!(
        elapsed < std::time::Duration::from_millis(1000),
        "{elapsed:?}"
    );
}

#[test]
fn a_guest_that_allocates_without_bound_hits_the_memory_cap() {
    let host = misbehaving_host(5000);
    let s = session("mailto:hog@example.net");
    let d = host.session_closed(&s);
    assert_fail_safe(&d, FailCause::OutOfMemory);
    assert!(d.value.is_none());
}

#[test]
fn out_of_range_answers_give_the_fail_safe() {
    let host = misbehaving_host(50);
    let s = session("mailto:garbage@example.net");
    let d = host.on_invite(&s);
    assert_fail_safe(&d, FailCause::InvalidResult);
    assert!(matches!(d.value, InviteDecision::AskUser));
    let d = host.x_priority(
        &Session {
            priority: Some(Priority::Urgent),
            ..s.clone()
        },
        MailKind::Chat,
    );
    assert_fail_safe(&d, FailCause::InvalidResult);
    assert_eq!(d.value, Some(1));
    let failure = SmtpFailure {
        stage: SmtpStage::RcptTo,
        code: 550,
        enhanced_code: None,
        text: "no".into(),
        permanent: true,
    };
    let d = host.smtp_failure_status(&s, &failure);
    assert_fail_safe(&d, FailCause::InvalidResult);
    assert_eq!(d.value.code, 488);
    assert_fail_safe(&host.invitation_expiry(&s), FailCause::InvalidResult);
    assert_fail_safe(
        &host.deliver_by(&s, MailKind::Invitation),
        FailCause::InvalidResult,
    );
    assert_fail_safe(&host.group_address(&s), FailCause::InvalidResult);
    assert_fail_safe(&host.anonymous_identity(&s), FailCause::InvalidResult);
    assert_fail_safe(
        &host.participant_info_frequency(&s),
        FailCause::InvalidResult,
    );
    let forged = Identity {
        uri: "sip:garbage@x.example".into(),
        display_name: None,
    };
    let d = host.cpm_to_email(&s.gateway, &forged);
    assert_fail_safe(&d, FailCause::InvalidResult);
    assert_eq!(d.value.unwrap().address, "garbage@mail.example.com");
}

#[test]
fn every_call_gets_a_fresh_instance() {
    let host = misbehaving_host(50);
    let s = session("mailto:count@example.net");
    for _ in 0..20 {
        let d = host.invitation_expiry(&s);
        assert!(!d.is_fail_safe());
        assert_eq!(d.value, 1, "state leaked from an earlier call");
    }
}

#[test]
fn the_sandbox_grants_no_ambient_authority() {
    // A listener the guest would reach if it had the network: its address in Subject.
    // (Rust std on wasip2 may answer "unsupported" to a connect whatever the sandbox
    // grants, so the +8 bit proves less than the others; the WASI context denies every
    // socket address in any case. Granting the environment makes this test fail: checked.)
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s = Session {
        subject: Some(listener.local_addr().unwrap().to_string()),
        ..session("mailto:snoop@example.net")
    };
    let host = misbehaving_host(1000);
    let d = host.invitation_expiry(&s);
    assert!(!d.is_fail_safe(), "printing to stdout/stderr must not trap");
    assert_eq!(
        d.value, 100,
        "the guest found ambient authority (+1 env, +2 args, +4 files, +8 network): {}",
        d.value
    );
}

#[test]
fn a_failing_policy_does_not_break_the_next_decision() {
    let host = misbehaving_host(20);
    for user in ["trap", "spin", "hog", "garbage"] {
        let _ = host.on_invite(&session(&format!("mailto:{user}@example.net")));
        let d = host.on_invite(&session("mailto:bob@example.net"));
        assert!(!d.is_fail_safe(), "after {user}");
        assert!(matches!(d.value, InviteDecision::AcceptOnBehalf));
    }
}

/// 8 threads decide continuously while the file is swapped 100 times between `default`
/// and `auto-accept`: no decision fails, and each is made by one of the two versions.
#[test]
fn hot_swap_under_load_fails_no_decision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.wasm");
    let default = std::fs::read(policy_file("default")).unwrap();
    let auto = std::fs::read(policy_file("auto-accept")).unwrap();
    std::fs::write(&path, &default).unwrap();
    let host = Arc::new(PolicyHost::new(engine(1000), PolicySource::File(path.clone())).unwrap());
    let default_sha = host.current().sha256();
    let auto_sha = iwf::policy::engine::PolicyEngine::load_bytes(host.engine(), &auto, "x")
        .unwrap()
        .sha256();

    let stop = Arc::new(AtomicBool::new(false));
    let decisions = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (host, stop, decisions) = (host.clone(), stop.clone(), decisions.clone());
            std::thread::spawn(move || {
                let s = session("mailto:bob@example.net");
                let mut seen = [0u64; 2];
                while !stop.load(Ordering::Relaxed) {
                    let d = host.on_invite(&s);
                    let p = match &d.by {
                        DecidedBy::Policy(p) => p,
                        DecidedBy::FailSafe(cause) => panic!("fail-safe during a swap: {cause}"),
                    };
                    match d.value {
                        InviteDecision::AskUser => {
                            assert_eq!(p.sha256(), default_sha);
                            seen[0] += 1
                        }
                        InviteDecision::AcceptOnBehalf => {
                            assert_eq!(p.sha256(), auto_sha);
                            seen[1] += 1
                        }
                        InviteDecision::Refuse(_) => panic!("neither version refuses"),
                    }
                    decisions.fetch_add(1, Ordering::Relaxed);
                }
                seen
            })
        })
        .collect();

    for i in 0..100 {
        let next = if i % 2 == 0 { &auto } else { &default };
        let tmp = dir.path().join("policy.wasm.new");
        std::fs::write(&tmp, next).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert!(matches!(host.reload().unwrap(), Reloaded::Swapped { .. }));
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = [0u64; 2];
    for w in workers {
        let seen = w.join().expect("a decision thread failed");
        total[0] += seen[0];
        total[1] += seen[1];
    }
    assert!(
        total[0] > 0 && total[1] > 0,
        "both versions served: {total:?}"
    );
    assert_eq!(host.load_counts(), (101, 0));
    for cause in FailCause::ALL {
        assert_eq!(host.counts(Decision::OnInvite, cause).1, 0, "{cause}");
    }
    assert_eq!(
        host.counts(Decision::OnInvite, FailCause::Trap).0,
        decisions.load(Ordering::Relaxed)
    );
}

#[test]
fn a_broken_file_is_refused_and_the_old_version_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.wasm");
    std::fs::copy(policy_file("default"), &path).unwrap();
    let host = PolicyHost::new(engine(50), PolicySource::File(path.clone())).unwrap();
    let before = host.current().sha256();
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    assert!(matches!(host.reload(), Err(LoadError::CoreModule)));
    assert_eq!(host.current().sha256(), before);
    assert!(
        !host
            .on_invite(&session("mailto:bob@example.net"))
            .is_fail_safe()
    );
    assert_eq!(host.load_counts(), (1, 1));
}

/// Waits (bounded) until `policy`'s warm pool holds `n` instances.
fn wait_for_pool(policy: &iwf::policy::Policy, n: usize) {
    let started = std::time::Instant::now();
    while policy.pool_ready() < n {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the warm pool never filled"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn decisions_take_warm_instances_and_the_pool_refills() {
    let host = PolicyHost::new(engine(50), PolicySource::Embedded).unwrap();
    let policy = host.current();
    wait_for_pool(&policy, 2);
    let d = host.on_invite(&session("mailto:bob@example.net"));
    assert!(!d.is_fail_safe());
    assert_eq!(policy.pool_counts().taken, 1);
    assert_eq!(policy.pool_counts().missed, 0);
    wait_for_pool(&policy, 2);
    // Whether the pool keeps up or not, every decision is served, once.
    for _ in 0..10 {
        assert!(
            !host
                .on_invite(&session("mailto:bob@example.net"))
                .is_fail_safe()
        );
    }
    let counts = policy.pool_counts();
    assert_eq!(counts.taken + counts.missed, 11, "{counts:?}");
}

#[test]
fn a_warm_instance_gets_its_deadline_when_taken_not_when_made() {
    // The instance waits in the pool far longer than the 20 ms deadline; the decision
    // must still have its whole deadline.
    let host = misbehaving_host(20);
    let policy = host.current();
    wait_for_pool(&policy, 2);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let d = host.on_invite(&session("mailto:bob@example.net"));
    assert!(!d.is_fail_safe(), "a waiting instance timed out");
    assert_eq!(policy.pool_counts().taken, 1);
}

#[test]
fn a_swapped_out_version_stops_serving_from_its_pool() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.wasm");
    std::fs::copy(policy_file("default"), &path).unwrap();
    let host = PolicyHost::new(engine(50), PolicySource::File(path.clone())).unwrap();
    let old = host.current();
    wait_for_pool(&old, 2);
    std::fs::copy(policy_file("auto-accept"), &path).unwrap();
    assert!(matches!(host.reload().unwrap(), Reloaded::Swapped { .. }));
    let d = host.on_invite(&session("mailto:bob@example.net"));
    assert!(matches!(d.value, InviteDecision::AcceptOnBehalf));
    assert_eq!(
        old.pool_counts().taken,
        0,
        "the old version's instances were used"
    );
}

#[test]
fn compiled_components_are_kept_in_the_cache_dir_and_used_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let limits = iwf::policy::Limits {
        timeout_ms: 50,
        memory_bytes: 32 << 20,
        max_instances: 8,
        warm_instances: 0,
    };
    let with_cache =
        || iwf::policy::PolicyEngine::with_cache_dir(limits, Some(dir.path().into())).unwrap();
    let default = std::fs::read(policy_file("default")).unwrap();
    let auto = std::fs::read(policy_file("auto-accept")).unwrap();

    // A first engine compiles both and keeps them.
    let first = with_cache();
    first.load_bytes(&default, "default").unwrap();
    first.load_bytes(&auto, "auto").unwrap();
    let cached = |sha: &str| -> std::path::PathBuf {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(sha))
            .unwrap_or_else(|| panic!("no cache file for {sha}"))
    };
    let default_file = cached(&iwf::policy::engine::sha256_hex(&default));
    let auto_file = cached(&iwf::policy::engine::sha256_hex(&auto));

    // A second engine loads from the cache, not from the bytes: shown by planting the
    // compile of auto-accept under default's name (which is why only the gateway may
    // write to the directory).
    // (Files are replaced by rename, as the cache itself does: a loaded component maps
    // its file, and rewriting a mapped file in place would pull pages from under it.)
    let replace = |with: &dyn Fn(&std::path::Path)| {
        let tmp = dir.path().join("replacement");
        with(&tmp);
        std::fs::rename(&tmp, &default_file).unwrap();
    };
    replace(&|tmp| {
        std::fs::copy(&auto_file, tmp).unwrap();
    });
    let planted = with_cache().load_bytes(&default, "default").unwrap();
    assert_eq!(planted.info().name, "auto-accept");

    // An unusable cache file is compiled over, not served.
    replace(&|tmp| std::fs::write(tmp, b"not a compiled component").unwrap());
    let recompiled = with_cache().load_bytes(&default, "default").unwrap();
    assert_eq!(recompiled.info().name, "default");
}
