//! One loaded, type-checked version of a policy, ready to instantiate per decision.

use super::engine::PolicyEngine;
use super::sandbox::{self, CallError, FailCause, GuestState};
use super::world::{self, DECISIONS_INTERFACE, DECISIONS_UNVERSIONED, WORLD_VERSION};
use std::sync::Arc;
use std::time::SystemTime;
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

/// Why a policy file was refused. The message names what is wrong and what to do.
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
        "policy built for world version {found}, this gateway serves {WORLD_VERSION}: rebuild it against wit/ of this gateway (export `{DECISIONS_INTERFACE}`)"
    )]
    WrongVersion { found: String },
    #[error(
        "not a policy of world cpm:iwf-policy/policy: it must export `{DECISIONS_INTERFACE}`; it exports {}",
        list(.exports)
    )]
    WrongWorld { exports: Vec<String> },
    #[error(
        "the policy imports what the sandbox does not give (only WASI clocks, random and `cpm:iwf-policy/log` are there): {0}"
    )]
    Imports(String),
    #[error("the policy's `{DECISIONS_INTERFACE}` does not match the world: {0}")]
    Exports(String),
    #[error("the policy's info() did not answer: {0}")]
    Info(CallError),
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
    /// For log lines written by the guest: "name version".
    log_name: Arc<str>,
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
        };
        let info = policy
            .call(|decisions, store| decisions.call_info(store))
            .map_err(LoadError::Info)?;
        policy.log_name = Arc::from(format!("{} {}", info.name, info.version).as_str());
        policy.info = info;
        Ok(policy)
    }

    /// Runs `f` against a fresh instance in a fresh sandbox.
    pub fn call<R>(
        &self,
        f: impl FnOnce(
            &world::exports::cpm::iwf_policy::decisions::Guest,
            &mut Store<GuestState>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let mut store = self.new_store();
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

    /// A fresh sandboxed store for one decision of this policy.
    pub fn new_store(&self) -> Store<GuestState> {
        sandbox::new_store(
            self.engine.engine(),
            self.engine.limits().memory_bytes,
            self.engine.deadline_ticks(),
            self.log_name.clone(),
        )
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
