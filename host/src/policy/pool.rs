//! Single-use instances of one policy version, made ahead of the decisions that take them.
//!
//! A decision runs in an instance no other decision has used: that is the world's contract
//! (no state between calls) and what keeps one session's data out of another's answers.
//! Making that instance is most of a decision's cost: ~10 us for a Rust policy, ~2 ms for
//! an interpreter (componentize-py, componentize-js), mostly first-touch page faults of its
//! heap image. So a thread per policy version keeps `[policy] warm_instances` of them ready,
//! each already through one `info()` call (which faults in the interpreter's hot pages), and
//! drops used stores (the pooling allocator's reset of their memory) off the decision's
//! path too. A decision that finds the pool empty makes its own instance, as before.
//!
//! Measured (`cargo bench -p iwf --bench policy_decision`, BENCHMARKS.md): Python 1.8 ms
//! on demand -> 0.22 ms from the pool; Rust 9.8 us -> 1.6 us. The CPU is the same, it is
//! spent before the decision instead of during it.

use super::sandbox::GuestState;
use super::world;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, Instance};

/// An instance no decision has used yet, and its store.
pub struct Warm {
    pub store: Store<GuestState>,
    pub instance: Instance,
}

/// Makes one ready instance (fresh store, instantiate, warm-up call).
pub type Maker = Box<dyn Fn() -> wasmtime::Result<Warm> + Send + Sync>;

#[derive(Default)]
struct State {
    ready: VecDeque<Warm>,
    /// Stores of finished decisions, dropped by the pool's thread.
    spent: Vec<Store<GuestState>>,
    stopped: bool,
    /// The thread waits on `wake`: only then does a take or a retire signal it. A busy
    /// thread looks at the state again before it sleeps, so it misses nothing, and the
    /// decisions skip a futex call each (two per decision, at thousands a second).
    idle: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the thread: an instance was taken, a store was spent, or stop.
    wake: Condvar,
    target: usize,
    taken: AtomicU64,
    missed: AtomicU64,
}

/// The pool of one policy version. Dropping it stops its thread.
pub struct WarmPool {
    shared: Arc<Shared>,
}

/// How a pool has served, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Decisions that took a ready instance.
    pub taken: u64,
    /// Decisions that found the pool empty and made their own.
    pub missed: u64,
}

/// After a failed warm-up, wait this long before the next attempt (a policy that fails
/// its `info()` now passed it at load: this is a rare, transient state, not a loop).
const RETRY_AFTER: Duration = Duration::from_millis(100);

impl WarmPool {
    /// Starts a pool of `target` instances made by `make`; `None` when `target` is 0.
    pub fn start(target: usize, name: &str, make: Maker) -> Option<Self> {
        if target == 0 {
            return None;
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            target,
            taken: AtomicU64::new(0),
            missed: AtomicU64::new(0),
        });
        let thread_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("policy-warm".into())
            .spawn(move || fill(&thread_shared, &make));
        if let Err(e) = spawned {
            tracing::warn!(policy = name, error = %e, "no warm-instance thread; decisions make their own instances");
            return None;
        }
        Some(Self { shared })
    }

    /// A ready instance, or `None` when the pool is empty (the caller makes one).
    pub fn take(&self) -> Option<Warm> {
        let (warm, idle) = {
            let mut state = self.shared.lock();
            (state.ready.pop_front(), state.idle)
        };
        let counter = match warm {
            Some(_) => &self.shared.taken,
            None => &self.shared.missed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if idle {
            self.shared.wake.notify_one();
        }
        warm
    }

    /// Hands a finished decision's store to the pool's thread to drop, or drops it here
    /// when the thread is behind: a spent store holds a pooling-allocator slot, and the
    /// slots are for decisions.
    pub fn retire(&self, store: Store<GuestState>) {
        let mut state = self.shared.lock();
        if state.stopped || state.spent.len() >= self.shared.target {
            drop(state);
            drop(store);
            return;
        }
        state.spent.push(store);
        let idle = state.idle;
        drop(state);
        if idle {
            self.shared.wake.notify_one();
        }
    }

    pub fn counts(&self) -> PoolCounts {
        PoolCounts {
            taken: self.shared.taken.load(Ordering::Relaxed),
            missed: self.shared.missed.load(Ordering::Relaxed),
        }
    }

    /// Instances ready now.
    pub fn ready(&self) -> usize {
        self.shared.lock().ready.len()
    }
}

impl Drop for WarmPool {
    /// Frees the ready instances here and now: their pooling-allocator slots are needed
    /// by the version that replaced this one, and the thread may not run soon.
    fn drop(&mut self) {
        let (ready, spent) = {
            let mut state = self.shared.lock();
            state.stopped = true;
            (
                std::mem::take(&mut state.ready),
                std::mem::take(&mut state.spent),
            )
        };
        self.shared.wake.notify_one();
        drop((ready, spent));
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-done in `State`.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pool's thread: drop spent stores, top the pool up, sleep until woken.
fn fill(shared: &Shared, make: &Maker) {
    loop {
        let spent = {
            let mut state = shared.lock();
            while !state.stopped && state.spent.is_empty() && state.ready.len() >= shared.target {
                state.idle = true;
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            state.idle = false;
            if state.stopped {
                return;
            }
            std::mem::take(&mut state.spent)
        };
        drop(spent);
        if shared.lock().ready.len() >= shared.target {
            continue;
        }
        match make() {
            Ok(warm) => {
                let mut state = shared.lock();
                if state.stopped {
                    return;
                }
                state.ready.push_back(warm);
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "warm policy instance failed; retrying");
                std::thread::sleep(RETRY_AFTER);
            }
        }
    }
}

/// The warm-up: `info()` runs the guest's call path once (bindings, allocator, for an
/// interpreter its dispatch), so the decision does not pay those first-touch faults.
/// `info` is the export's index, found at load: only that function is looked up and
/// type-checked here (the generated `Policy::new` would check all of them, per instance).
pub fn warm_up(
    store: &mut Store<GuestState>,
    pre: &world::PolicyPre<GuestState>,
    info: ComponentExportIndex,
) -> wasmtime::Result<Instance> {
    let instance = pre.instance_pre().instantiate(&mut *store)?;
    let func = instance
        .get_func(&mut *store, info)
        .ok_or_else(|| wasmtime::format_err!("no export info"))?;
    func.typed::<(), (world::PolicyInfo,)>(&*store)?
        .call(&mut *store, ())?;
    Ok(instance)
}
