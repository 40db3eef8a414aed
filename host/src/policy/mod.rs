//! Policy hosting: every service-provider decision of the IWF is made by a sandboxed Wasm
//! component of world `cpm:iwf-policy/policy` (`wit/policy.wit`).
//!
//! - `world`: the host bindings of the world;
//! - `engine`: the wasmtime engine (pooling, epochs), the linker, the compile cache;
//! - `loaded`: one loaded, type-checked policy version and the load errors;
//! - `sandbox`: the store one decision runs in and the fail-safe causes;
//! - `pool`: single-use instances made ahead of the decisions that take them;
//! - `decision`: the decision points, one per exported function;
//! - `host`: [`PolicyHost`], the decisions the gateway calls, with hot swap and metrics;
//! - `failsafe`, `validate`: the fail-safe answers and the range checks on answers;
//! - `reload`: the triggers of a hot swap (file change, SIGHUP);
//! - `harness`, `value`: `iwf policy check` and `iwf policy test`;
//! - `testing`: fixtures for the tests and benches (hidden; no part of the gateway).
//!
//! This module holds no provider policy of its own, only the documented fail-safes.

pub mod decision;
pub mod engine;
pub mod failsafe;
pub mod harness;
pub mod host;
pub mod loaded;
pub mod pool;
pub mod reload;
pub mod sandbox;
#[doc(hidden)]
pub mod testing;
pub mod validate;
pub mod value;
pub mod world;

pub use decision::Decision;
pub use engine::{Limits, PolicyEngine};
pub use host::{Decided, DecidedBy, PolicyHost, PolicySource, Reloaded};
pub use loaded::{LoadError, Policy};
pub use sandbox::FailCause;
