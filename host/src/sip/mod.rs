//! The SIP layer of the gateway, sans I/O.
//!
//! Owns: the codec (stream framing, message parsing and validation, responses built from
//! requests), the typed CPM facts an INVITE carries and its multipart body; later the
//! transaction and dialog layers, as state machines fed with bytes and instants.
//!
//! Must not touch: sockets, clocks, tasks or the policy engine. The tokio driver in the
//! gateway reads and writes the bytes; the session layer decides what to answer.
//! - `framing`: Content-Length framing of a stream transport, keep-alives, size limits;
//! - `message`: one message from bytes (rsip where it works, a pre-parse for `tel:`),
//!   validation with the status and reason to answer, and response building;
//! - `cpm`: the CPM header fields of an INVITE as typed values and policy inputs;
//! - `multipart`: multipart/mixed bodies, the SDP part and the RFC 5366 URI-list;
//! - `stateless`: OPTIONS and unsupported methods, answered without a transaction;
//! - `transaction`: RFC 3261 17 server and non-INVITE client transactions, timers by instant;
//! - `dialog`: the UAS dialog (RFC 3261 12): route set, remote target, CSeq checks, and the
//!   one builder of the IWF's requests within a dialog.

pub mod cpm;
pub mod dialog;
pub mod framing;
pub mod message;
pub mod multipart;
pub mod stateless;
pub mod transaction;
