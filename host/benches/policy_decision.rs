//! One policy decision (`on-invite` on a full 1-1 session) in one run, for the `default`
//! policy in each language it ships in (Rust, Python, JavaScript):
//! - native: the host's fail-safe answer, plain Rust (the floor);
//! - fresh: the gateway's mode, a fresh store and instance per decision;
//! - reused: one instance for every call (no isolation between calls: the reference a
//!   reuse mode would approach);
//! - load: compile of a file never seen, and a compile-cache hit.
//!
//! Prints median and p99 of each, and ratios against the Rust policy and the native
//! floor measured in the same run. `cargo bench -p iwf --bench policy_decision`.

use iwf::config::PolicyConfig;
use iwf::policy::testing;
use iwf::policy::world::{Identity, InviteDecision, Priority, Session};
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
        asserted_identity: Some(Identity {
            uri: "tel:+15551234567".into(),
            display_name: Some("Alice".into()),
        }),
        from: Identity {
            uri: "sip:alice@ims.example.com".into(),
            display_name: Some("Alice".into()),
        },
        subject: Some("Lunch?".into()),
        priority: Some(Priority::Normal),
        conversation_id: Some("c0nv3rs4t10n".into()),
        contribution_id: Some("c0ntr1b".into()),
        ..testing::session("mailto:bob@example.net")
    }
}

struct Stats {
    median: Duration,
    p99: Duration,
}

fn measure(samples: usize, f: impl FnMut()) -> Stats {
    measure_paced(samples, || {}, f)
}

/// As [`measure`], with `wait` run (untimed) before each sample.
fn measure_paced(samples: usize, mut wait: impl FnMut(), mut f: impl FnMut()) -> Stats {
    for _ in 0..samples / 10 {
        wait();
        f();
    }
    let mut samples: Vec<Duration> = (0..samples)
        .map(|_| {
            wait();
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

/// One policy build measured by this bench.
struct Subject {
    language: &'static str,
    source: PolicySource,
    bytes: Vec<u8>,
}

/// The `default` policy in each language; the Python and JavaScript builds come from
/// `policies/build.sh` (they are skipped, and say so, when not built).
fn subjects() -> Vec<Subject> {
    let built = std::path::Path::new(env!("IWF_POLICIES_DIR"));
    let mut subjects = vec![Subject {
        language: "rust",
        source: PolicySource::Embedded,
        bytes: iwf::policy::host::EMBEDDED_DEFAULT.to_vec(),
    }];
    for (language, file) in [
        ("python", "default-py.wasm"),
        ("javascript", "default-js.wasm"),
    ] {
        let path = built.join(file);
        match std::fs::read(&path) {
            Ok(bytes) => subjects.push(Subject {
                language,
                source: PolicySource::File(path),
                bytes,
            }),
            Err(_) => println!(
                "{language}: {} not built (policies/build.sh): skipped",
                path.display()
            ),
        }
    }
    subjects
}

/// The gateway's own limits (`[policy]` defaults), so the figures are those it serves,
/// but a 1 s deadline: on a loaded machine an interpreter's on-demand instance can take
/// longer than the default 50 ms, and a fail-safe would end the run.
fn limits() -> Limits {
    Limits {
        timeout_ms: 1000,
        ..Limits::from(&PolicyConfig::default())
    }
}

struct Figures {
    language: &'static str,
    size: usize,
    fresh: Stats,
    pooled: Stats,
    reused: Stats,
    compile: Duration,
    cached: Duration,
}

fn measure_subject(subject: &Subject, samples: usize) -> Figures {
    let s = session();
    let host = |warm_instances| {
        let engine = PolicyEngine::new(Limits {
            warm_instances,
            ..limits()
        })
        .unwrap();
        PolicyHost::new(engine, subject.source.clone()).unwrap()
    };
    let decide = |host: &PolicyHost| {
        let d = host.on_invite(black_box(&s));
        assert!(matches!(d.value, InviteDecision::AskUser) && !d.is_fail_safe());
    };

    // On demand: each decision instantiates its own instance.
    let on_demand = host(0);
    let fresh = measure(samples, || decide(&on_demand));

    // The gateway's mode: a single-use instance from the warm pool. Paced so the pool has
    // one ready (the untimed wait), as it has whenever decisions come slower than its
    // thread makes instances; a miss would be an on-demand decision, so none is allowed.
    let pooled_host = host(limits().warm_instances);
    let pooled_policy = pooled_host.current();
    let pooled = measure_paced(
        samples,
        || {
            while pooled_policy.pool_ready() == 0 {
                std::thread::sleep(Duration::from_micros(50));
            }
        },
        || decide(&pooled_host),
    );
    assert_eq!(pooled_policy.pool_counts().missed, 0, "the pool ran dry");

    // No isolation between calls: one instance for all (the floor of any reuse mode).
    let policy = on_demand.current();
    let deadline = on_demand.engine().deadline_ticks();
    let mut store = policy.new_store();
    let instance = policy.instantiate(&mut store).unwrap();
    let reused = measure(samples, || {
        store.set_epoch_deadline(deadline);
        let d = instance
            .cpm_iwf_policy_decisions()
            .call_on_invite(&mut store, black_box(&s))
            .unwrap();
        assert!(matches!(d, InviteDecision::AskUser));
    });

    // Reload: a file never seen (compile) against one seen before (compile cache hit).
    let rounds = if bench_mode() { 5 } else { 1 };
    let (mut compile, mut cached) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let engine = PolicyEngine::new(limits()).unwrap();
        let t = Instant::now();
        engine.load_bytes(&subject.bytes, "bench").unwrap();
        compile.push(t.elapsed());
        let t = Instant::now();
        engine.load_bytes(&subject.bytes, "bench").unwrap();
        cached.push(t.elapsed());
    }
    compile.sort();
    cached.sort();
    Figures {
        language: subject.language,
        size: subject.bytes.len(),
        fresh,
        pooled,
        reused,
        compile: compile[rounds / 2],
        cached: cached[rounds / 2],
    }
}

fn main() {
    let samples = if bench_mode() { 20_000 } else { 50 };
    let s = session();
    let native = measure(samples, || {
        black_box(failsafe::on_invite());
        black_box(&s);
    });
    let figures: Vec<Figures> = subjects()
        .iter()
        .map(|subject| {
            // Interpreters are ~100x slower per call: fewer samples keep the run short.
            let n = if subject.language == "rust" {
                samples
            } else {
                samples / 10
            };
            measure_subject(subject, n.max(20))
        })
        .collect();

    if !bench_mode() {
        println!("smoke run: `cargo bench -p iwf --bench policy_decision` for figures");
        return;
    }
    let ms = |d: Duration| format!("{:.2?}", d);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-12);
    let rust = &figures[0];
    println!(
        "policy decision (on-invite, default policy), {samples} samples (rust), {} (others)",
        samples / 10
    );
    println!(
        "native fail-safe: median {} p99 {}",
        ms(native.median),
        ms(native.p99)
    );
    println!(
        "{:<11} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>10} {:>10} {:>10}",
        "language",
        "pool p50",
        "pool p99",
        "fresh p50",
        "fresh p99",
        "reuse p50",
        "reuse p99",
        "pool/rs",
        "size",
        "compile",
        "cache hit"
    );
    for f in &figures {
        println!(
            "{:<11} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8.1}x {:>10} {:>10} {:>10}",
            f.language,
            ms(f.pooled.median),
            ms(f.pooled.p99),
            ms(f.fresh.median),
            ms(f.fresh.p99),
            ms(f.reused.median),
            ms(f.reused.p99),
            ratio(f.pooled.median, rust.pooled.median),
            f.size,
            ms(f.compile),
            ms(f.cached),
        );
    }
    for f in &figures {
        println!(
            "{:<11} fresh/pool {:.1}x, pool/reuse {:.1}x",
            f.language,
            ratio(f.fresh.median, f.pooled.median),
            ratio(f.pooled.median, f.reused.median)
        );
    }
    println!(
        "rust pool / native {:.0}x, rust fresh / native {:.0}x",
        ratio(rust.pooled.median, native.median),
        ratio(rust.fresh.median, native.median)
    );
    for f in &figures {
        let goal = if f.language == "rust" {
            Duration::from_micros(10)
        } else {
            Duration::from_millis(1)
        };
        println!(
            "goal {}: median <= {:?} in the gateway's mode (pool): {}",
            f.language,
            goal,
            if f.pooled.median <= goal {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}
