//! Write cpm-iwf policies in Rust.
//!
//! A policy is a WebAssembly component of world `cpm:iwf-policy/policy`
//! (`wit/policy.wit`). This crate carries the Rust bindings of that world and
//! the helpers most policies need:
//!
//! - [`keywords`]: find an answer keyword ("accept", "yes", ...) in a reply, tolerant of
//!   case, punctuation, quoting and signatures;
//! - [`address`]: pull the user part out of `sip:`/`tel:`/`mailto:` URIs and turn it into a
//!   safe e-mail local part;
//! - [`log`](fn@log): write to the gateway's log.
//!
//! ```ignore
//! use policy_sdk::{decisions::*, types::*, Guest};
//! struct MyPolicy;
//! impl Guest for MyPolicy { /* one function per decision */ }
//! // Only in the component: a native build (for `cargo test`) cannot link the world's
//! // export names, which are not C symbols.
//! #[cfg(target_arch = "wasm32")]
//! policy_sdk::export_policy!(MyPolicy with_types_in policy_sdk::bindings);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release`, then check and test the
//! component with `iwf policy check` and `iwf policy test` (see `policy-sdk/README.md`).

pub mod address;
pub mod keywords;

/// The generated bindings of world `policy`.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "export_policy",
        default_bindings_module: "policy_sdk::bindings",
        generate_all,
    });
}

pub use bindings::cpm::iwf_policy::types;
pub use bindings::export_policy;
pub use bindings::exports::cpm::iwf_policy::decisions::{self, Guest};

use bindings::cpm::iwf_policy::log::Level;

/// Writes `message` to the gateway's log at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::cpm::iwf_policy::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message); // Native unit tests of a policy have no gateway to log to.
}

pub use bindings::cpm::iwf_policy::log::Level as LogLevel;

/// The version of the world these bindings were generated from.
pub const WORLD_VERSION: &str = "0.1.0";
