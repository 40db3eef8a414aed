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

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
/// as a smoke test: then it takes few samples and claims no figures.
fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

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

fn measure(samples: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..samples / 10 {
        f();
    }
    let mut samples: Vec<Duration> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    let n = samples.len();
    Stats {
        median: samples[n / 2],
        p99: samples[n * 99 / 100],
    }
}

fn main() {
    let samples = if bench_mode() { 20_000 } else { 200 };
    let engine = PolicyEngine::new(Limits {
        timeout_ms: 50,
        memory_bytes: 32 << 20,
        max_instances: 64,
    })
    .unwrap();
    let host = PolicyHost::new(engine, PolicySource::Embedded).unwrap();
    let s = session();

    let native = measure(samples, || {
        black_box(failsafe::on_invite());
        black_box(&s);
    });

    let fresh = measure(samples, || {
        let d = host.on_invite(black_box(&s));
        assert!(matches!(d.value, InviteDecision::AskUser) && !d.is_fail_safe());
    });

    let policy = host.current();
    let mut store = policy.new_store();
    let instance = policy.instantiate(&mut store).unwrap();
    let reused = measure(samples, || {
        store.set_epoch_deadline(50);
        let d = instance
            .cpm_iwf_policy_decisions()
            .call_on_invite(&mut store, black_box(&s))
            .unwrap();
        assert!(matches!(d, InviteDecision::AskUser));
    });

    if !bench_mode() {
        println!("smoke run ({samples} samples): `cargo bench -p iwf` for figures");
        return;
    }
    println!("policy decision (on-invite, default policy), {samples} samples each");
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
    // Reload: a file never seen (compile) against one seen before (compile cache hit).
    let bytes = iwf::policy::host::EMBEDDED_DEFAULT;
    let (mut compile, mut cached) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let limits = Limits {
            timeout_ms: 50,
            memory_bytes: 32 << 20,
            max_instances: 4,
        };
        let engine = PolicyEngine::new(limits).unwrap();
        let t = Instant::now();
        engine.load_bytes(bytes, "bench").unwrap();
        compile.push(t.elapsed());
        let t = Instant::now();
        engine.load_bytes(bytes, "bench").unwrap();
        cached.push(t.elapsed());
    }
    compile.sort();
    cached.sort();
    println!(
        "load (compile)      {:>12.2?}  component of {} bytes",
        compile[2],
        bytes.len()
    );
    println!(
        "load (cache hit)    {:>12.2?}  ratio compile/cache hit {:.0}x",
        cached[2],
        compile[2].as_secs_f64() / cached[2].as_secs_f64()
    );
    println!(
        "goal: fresh median <= 10 us: {}",
        if fresh.median <= Duration::from_micros(10) {
            "met"
        } else {
            "NOT met"
        }
    );
}
