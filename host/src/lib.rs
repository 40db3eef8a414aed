//! cpm-iwf: the OMA CPM e-mail interworking function.
//!
//! The gateway does all SIP, MSRP and SMTP work; every service-provider decision is made
//! by a sandboxed Wasm policy (`policy`). Modules, one job each:
//! - `config`: the TOML configuration and its embedded defaults;
//! - `policy`: the policy plane (engine, sandbox, hot swap, fail-safes, test harness);
//! - `sip`: the SIP codec without I/O (framing, parsing, responses, CPM headers and bodies);
//! - `mail`: the composer of every outgoing mail, with its header and body codecs;
//! - `smtp`: outgoing SMTP: where to send (MX), the channel to the server, outcomes;
//! - `msrp`: the MSRP codec without I/O (RFC 4975 frames, streaming decoder, chunk
//!   reassembly) and the endpoint of F4/F5;
//! - `cpim`: message/cpim (RFC 3862) with the IMDN fields (RFC 5438);
//! - `hostname`: the DNS host-name check every URI and mail domain shares;
//! - `sdp`: SDP offer/answer for the MSRP chat without I/O (path, accept-types, setup roles);
//! - `session`: the CPM sessions, one state machine each (the flows of DESIGN.md);
//! - `store`: the durable store (SQLite through sqlx): what was acknowledged survives a crash;
//! - `net`: the tokio drivers (sockets, tasks) around the protocol modules;
//! - `gateway`: `iwf run`, the listeners started from a config;
//! - `admin`: the admin HTTP listener (`/metrics`, `/healthz`, `/policy`, `/sessions`);
//! - `metrics`: counters and histograms in the Prometheus text format;
//! - `demo`: `iwf demo`, a whole session through the gateway with built-in actors (CPM
//!   client, the e-mail user and their SMTP server); the gateway does not use it.

pub mod admin;
pub mod config;
pub mod cpim;
pub mod demo;
pub mod gateway;
pub mod hostname;
pub mod mail;
pub mod metrics;
pub mod msrp;
pub mod net;
pub mod policy;
pub mod sdp;
pub mod session;
pub mod sip;
pub mod smtp;
pub mod store;
