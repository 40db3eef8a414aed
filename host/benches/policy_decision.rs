//! One policy decision (`on-invite` on a full 1-1 session), three ways, in one run:
//! - native: the host's fail-safe answer, plain Rust (the floor);
//! - wasm fresh: the gateway's mode, a fresh store and instance per decision;
//! - wasm reused: one instance for every call (what pooling instances per session would
//!   give; isolation between sessions would then need a reset).
//!
//! Prints median and p99 of each, and each as a ratio of the others. `cargo bench -p iwf`.

use iwf::policy::world::{Gateway, Identity, InviteDecision, Priority, Session};
use iwf::policy::{Limits, PolicyEngine, PolicyHost, PolicySource, failsafe};
use std::hint::black_box;
use std::time::{Duration, Instant};

const WARMUP: usize = 2_000;
const SAMPLES: usize = 20_000;

fn session() -> Session {
    Session {
        session_id: "k3j4h5g6f7d8s9a0".into(),
        gateway: Gateway {
            sip_domain: "iwf.example.com".into(),
            mail_domain: "mail.example.com".into(),
        },
        request_uri: "mailto:bob@example.net".into(),
        asserted_identity: Some(Identity {
            uri: "tel:+15551234567".into(),
            display_name: Some("Alice".into()),
        }),
        from: Identity {
            uri: "sip:alice@ims.example.com".into(),
            display_name: Some("Alice".into()),
        },
        privacy_id: false,
        referred_by: None,
        reply_to: None,
        subject: Some("Lunch?".into()),
        priority: Some(Priority::Normal),
        conversation_id: Some("c0nv3rs4t10n".into()),
        contribution_id: Some("c0ntr1b".into()),
        in_reply_to_contribution_id: None,
        group: None,
    }
}

struct Stats {
    median: Duration,
    p99: Duration,
}

fn measure(mut f: impl FnMut()) -> Stats {
    for _ in 0..WARMUP {
        f();
    }
    let mut samples: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    Stats {
        median: samples[SAMPLES / 2],
        p99: samples[SAMPLES * 99 / 100],
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run briefly there.
    let engine = PolicyEngine::new(Limits {
        timeout_ms: 50,
        memory_bytes: 32 << 20,
        max_instances: 64,
    })
    .unwrap();
    let host = PolicyHost::new(engine, PolicySource::Embedded).unwrap();
    let s = session();

    let native = measure(|| {
        black_box(failsafe::on_invite());
        black_box(&s);
    });

    let fresh = measure(|| {
        let d = host.on_invite(black_box(&s));
        assert!(matches!(d.value, InviteDecision::AskUser) && !d.is_fail_safe());
    });

    let policy = host.current();
    let mut store = policy.new_store();
    let instance = policy.instantiate(&mut store).unwrap();
    let reused = measure(|| {
        store.set_epoch_deadline(50);
        let d = instance
            .cpm_iwf_policy_decisions()
            .call_on_invite(&mut store, black_box(&s))
            .unwrap();
        assert!(matches!(d, InviteDecision::AskUser));
    });

    println!("policy decision (on-invite, default policy), {SAMPLES} samples each");
    println!("{:<14} {:>12} {:>12}", "mode", "median", "p99");
    for (name, st) in [
        ("native", &native),
        ("wasm reused", &reused),
        ("wasm fresh", &fresh),
    ] {
        println!("{name:<14} {:>12.2?} {:>12.2?}", st.median, st.p99);
    }
    let ratio = |a: &Stats, b: &Stats| a.median.as_secs_f64() / b.median.as_secs_f64().max(1e-12);
    println!("ratio fresh/reused  {:>8.1}x", ratio(&fresh, &reused));
    println!("ratio reused/native {:>8.1}x", ratio(&reused, &native));
    println!("ratio fresh/native  {:>8.1}x", ratio(&fresh, &native));
    println!(
        "goal: fresh median <= 10 us: {}",
        if fresh.median <= Duration::from_micros(10) {
            "met"
        } else {
            "NOT met"
        }
    );
}
