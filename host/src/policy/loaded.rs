//! One loaded, type-checked version of a policy, ready to instantiate per decision.

use super::decision::Decision;
use super::engine::PolicyEngine;
use super::pool::{self, PoolCounts, Warm, WarmPool};
use super::sandbox::{self, CallError, FailCause, GuestState};
use super::world::{self, DECISIONS_INTERFACE, DECISIONS_UNVERSIONED, WORLD_VERSION};
use std::sync::Arc;
use std::time::SystemTime;
use wasmtime::Store;
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, Lift, Linker, Lower,
};

/// Why a policy file was refused. The message names what is wrong and what to do.
/// The deadline of the `info()` call that checks a policy at load, in epoch ticks (ms).
const LOAD_DEADLINE_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("not a WebAssembly file (no \\0asm header)")]
    NotWasm,
    #[error(
        "a core Wasm module, not a component: build for wasm32-wasip2 (or run `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("the component does not compile: {0}")]
    Compile(String),
    #[error(
        "the policy does not fit the gateway's instance limits: {0} (a memory too large: raise [policy] memory_mb)"
    )]
    Limits(String),
    #[error(
        "policy built for world version {found}, this gateway serves {WORLD_VERSION}: rebuild it against wit/ of this gateway (export `{DECISIONS_INTERFACE}`)"
    )]
    WrongVersion { found: String },
    #[error(
        "not a policy of world cpm:iwf-policy/policy: it must export `{DECISIONS_INTERFACE}`; it exports {}",
        list(.exports)
    )]
    WrongWorld { exports: Vec<String> },
    #[error(
        "the policy imports what the sandbox does not provide (it provides WASI 0.2 with no file, socket, environment or stdio granted, and `cpm:iwf-policy/log`): {0}"
    )]
    Imports(String),
    #[error("the policy's `{DECISIONS_INTERFACE}` does not match the world: {0}")]
    Exports(String),
    #[error("the policy's info() did not answer: {0}{hint}", hint = memory_hint(.0))]
    Info(CallError),
}

/// An interpreter needs tens of MiB before its first call: say which key to raise.
fn memory_hint(error: &CallError) -> &'static str {
    if error.cause == FailCause::OutOfMemory {
        " (it needs more memory than [policy] memory_mb gives: raise it)"
    } else {
        ""
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A loaded policy version. Cheap to share; calls in flight keep their version alive.
pub struct Policy {
    engine: Arc<PolicyEngine>,
    pre: world::PolicyPre<GuestState>,
    component: Component,
    sha256: [u8; 32],
    source: String,
    loaded_at: SystemTime,
    info: world::PolicyInfo,
    /// Each decision's export, looked up once at load.
    exports: Vec<ComponentExportIndex>,
    /// The `info` export (the warm-up call).
    info_export: ComponentExportIndex,
    /// For log lines written by the guest: "name version".
    log_name: Arc<str>,
    /// Instances made ahead of decisions; `None` with `[policy] warm_instances = 0`.
    pool: Option<WarmPool>,
    /// The largest memory of the instance that answered `info()` at load, in bytes: what
    /// the policy needs before any decision (`[policy] memory_mb` must exceed it).
    memory_at_load: usize,
}

impl Policy {
    pub(super) fn new(
        engine: Arc<PolicyEngine>,
        linker: &Linker<GuestState>,
        component: Component,
        sha256: [u8; 32],
        source: &str,
    ) -> Result<Self, LoadError> {
        check_exports(engine.engine(), &component)?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Imports(format!("{e:#}")))?;
        let pre = world::PolicyPre::new(instance_pre)
            .map_err(|e| LoadError::Exports(format!("{e:#}")))?;
        // `PolicyPre::new` type-checked every export; these lookups cannot fail.
        let interface = component.get_export_index(None, DECISIONS_INTERFACE);
        let exports = Decision::ALL
            .iter()
            .map(|d| component.get_export_index(interface.as_ref(), d.name()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| LoadError::Exports("a decision is missing".into()))?;
        let info_export = component
            .get_export_index(interface.as_ref(), "info")
            .ok_or_else(|| LoadError::Exports("`info` is missing".into()))?;
        let mut policy = Self {
            engine,
            pre,
            component,
            sha256,
            source: source.to_string(),
            loaded_at: SystemTime::now(),
            info: world::PolicyInfo {
                name: String::new(),
                version: String::new(),
            },
            log_name: Arc::from(source),
            exports,
            info_export,
            pool: None,
            memory_at_load: 0,
        };
        // Loading is off every decision's path, and an interpreter's instantiation and first
        // call on a busy machine can take longer than a decision may: the load check gets
        // its own deadline; a hang is still refused.
        let deadline = LOAD_DEADLINE_MS.max(policy.engine.deadline_ticks());
        let (info, memory) = policy
            .call_within(deadline, |decisions, store| {
                let info = decisions.call_info(&mut *store)?;
                Ok((info, sandbox::largest_memory(store)))
            })
            .map_err(LoadError::Info)?;
        policy.memory_at_load = memory;
        policy.log_name = Arc::from(format!("{} {}", info.name, info.version).as_str());
        policy.info = info;
        policy.pool = WarmPool::start(
            policy.engine.limits().warm_instances,
            &policy.log_name,
            policy.warm_maker(),
        );
        Ok(policy)
    }

    /// Runs `f` against a fresh instance in a fresh sandbox, within a decision's deadline.
    pub fn call<R>(
        &self,
        f: impl FnOnce(
            &world::exports::cpm::iwf_policy::decisions::Guest,
            &mut Store<GuestState>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.call_within(self.engine.deadline_ticks(), f)
    }

    /// [`Policy::call`] with `deadline` epoch ticks for the instantiation and `f` together.
    fn call_within<R>(
        &self,
        deadline: u64,
        f: impl FnOnce(
            &world::exports::cpm::iwf_policy::decisions::Guest,
            &mut Store<GuestState>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let mut store = self.new_store();
        store.set_epoch_deadline(deadline);
        let instance = self.pre.instantiate(&mut store).map_err(|e| CallError {
            cause: match sandbox::classify(&store, &e) {
                FailCause::Trap => FailCause::Instantiate,
                other => other,
            },
            detail: format!("{e:#}"),
        })?;
        f(instance.cpm_iwf_policy_decisions(), &mut store).map_err(|e| CallError {
            cause: sandbox::classify(&store, &e),
            detail: format!("{e:#}"),
        })
    }

    /// Runs one decision in an instance no other call has used, in its own sandbox: one
    /// from the warm pool when there is one ready, else a fresh one made here.
    ///
    /// Only the function asked for is looked up and type-checked on the instance: the
    /// generated bindings would check all of them per instance, which is most of the cost
    /// of a decision.
    pub fn call_decision<P, R>(&self, which: Decision, params: P) -> Result<R, CallError>
    where
        P: ComponentNamedList + Lower,
        (R,): ComponentNamedList + Lift,
    {
        let Warm {
            mut store,
            instance,
        } = match self.pool.as_ref().and_then(WarmPool::take) {
            Some(mut warm) => {
                // The deadline counts from the decision, not from when the instance was made.
                warm.store.set_epoch_deadline(self.engine.deadline_ticks());
                warm
            }
            None => {
                let mut store = self.new_store();
                match self.pre.instance_pre().instantiate(&mut store) {
                    Ok(instance) => Warm { store, instance },
                    Err(e) => {
                        return Err(CallError {
                            cause: match sandbox::classify(&store, &e) {
                                FailCause::Trap => FailCause::Instantiate,
                                other => other,
                            },
                            detail: format!("{e:#}"),
                        });
                    }
                }
            }
        };
        let answer = call_export(
            &mut store,
            &instance,
            self.exports[which.index()],
            which,
            params,
        );
        if let Some(pool) = &self.pool {
            pool.retire(store);
        }
        answer
    }

    /// Makes warm instances of this version for its pool.
    fn warm_maker(&self) -> pool::Maker {
        let engine = self.engine.clone();
        let pre = self.pre.clone();
        let log_name = self.log_name.clone();
        let info = self.info_export;
        Box::new(move || {
            let mut store = sandbox::new_store(
                engine.engine(),
                engine.limits().memory_bytes,
                engine.deadline_ticks(),
                log_name.clone(),
            );
            let instance = pool::warm_up(&mut store, &pre, info)?;
            Ok(Warm { store, instance })
        })
    }

    /// The largest memory of an instance after `info()`, in bytes.
    pub fn memory_at_load(&self) -> usize {
        self.memory_at_load
    }

    /// How the warm pool served this version; zeros without a pool.
    pub fn pool_counts(&self) -> PoolCounts {
        self.pool.as_ref().map(WarmPool::counts).unwrap_or_default()
    }

    /// Warm instances ready now.
    pub fn pool_ready(&self) -> usize {
        self.pool.as_ref().map_or(0, WarmPool::ready)
    }

    /// A fresh sandboxed store for one decision of this policy.
    pub fn new_store(&self) -> Store<GuestState> {
        sandbox::new_store(
            self.engine.engine(),
            self.engine.limits().memory_bytes,
            self.engine.deadline_ticks(),
            self.log_name.clone(),
        )
    }

    /// An instance of this policy in `store`, for callers that reuse one instance for many
    /// calls (the benchmark's reuse mode). The gateway itself never does: see [`Policy::call`].
    pub fn instantiate(&self, store: &mut Store<GuestState>) -> wasmtime::Result<world::Policy> {
        self.pre.instantiate(store)
    }

    /// The untyped view, for the test harness's dynamic calls.
    pub fn instance_pre(&self) -> &wasmtime::component::InstancePre<GuestState> {
        self.pre.instance_pre()
    }

    pub fn component(&self) -> &Component {
        &self.component
    }

    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    pub fn info(&self) -> &world::PolicyInfo {
        &self.info
    }
}

/// Calls one export of `instance`, type-checking only that function.
fn call_export<P, R>(
    store: &mut Store<GuestState>,
    instance: &wasmtime::component::Instance,
    export: ComponentExportIndex,
    which: Decision,
    params: P,
) -> Result<R, CallError>
where
    P: ComponentNamedList + Lower,
    (R,): ComponentNamedList + Lift,
{
    let func = instance
        .get_func(&mut *store, export)
        .ok_or_else(|| CallError {
            cause: FailCause::Instantiate,
            detail: format!("no export {}", which.name()),
        })?;
    let typed = func.typed::<P, (R,)>(&*store).map_err(|e| CallError {
        cause: FailCause::Instantiate,
        detail: format!("{e:#}"),
    })?;
    typed
        .call(&mut *store, params)
        .map(|(r,)| r)
        .map_err(|e| CallError {
            cause: sandbox::classify(store, &e),
            detail: format!("{e:#}"),
        })
}

/// Names what is missing before the linker's checks do, for the common mistakes: a
/// component of another world, or of another version of this one.
fn check_exports(engine: &wasmtime::Engine, component: &Component) -> Result<(), LoadError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if exports.iter().any(|e| e == DECISIONS_INTERFACE) {
        return Ok(());
    }
    if let Some(other) = exports
        .iter()
        .find(|e| e.starts_with(DECISIONS_UNVERSIONED))
    {
        let found = other
            .rsplit_once('@')
            .map_or("none", |(_, v)| v)
            .to_string();
        return Err(LoadError::WrongVersion { found });
    }
    Err(LoadError::WrongWorld { exports })
}
