//! The tokio drivers: sockets, tasks and clocks around the sans-I/O protocol modules.
//! They move bytes and hand parsed messages on; they decide nothing about the flows.
//!
//! - `sip`: the SIP transports, UDP and TCP on `[sip] listen` (RFC 3261 18).

pub mod sip;
