//! MSRP (RFC 4975, RFC 6135) for the chat side of a CPM session: a sans-I/O core and the
//! tokio endpoint over it.
//!
//! Owns: the frame types, the wire codec (streaming decoder and encoder, bounded by
//! `Limits`), the reassembly of chunked messages, the transaction rules, and the
//! endpoint (listener, connections, sessions). Must not touch: SIP, SDP negotiation
//! (`sdp` owns the MSRP URI type and the roles this module reuses), mail or the policy.
//! Only `connection`, `session` and `endpoint` do I/O; the rest is pure.
//! - `frame`: requests and responses as typed values (Byte-Range, Status, reports) and
//!   the frames the endpoint builds: `Frame::send`, `Frame::report`, `Frame::response`;
//! - `codec`: `Decoder` (bytes to frames, any split; a bad request's 400 via
//!   `DecodeError::response`) and `encode` (frames to bytes);
//! - `chunks`: a message put back together from its chunks by Message-ID and Byte-Range
//!   (`Reassembler`), and an outgoing one cut into chunks (`split`);
//! - `transaction`: the rules of a transaction (Failure-Report and Success-Report, a
//!   disposition's response and REPORT, accept-types, To-Path/From-Path checks);
//! - `inbound`: a session's verdict on each request from its peer (sans I/O);
//! - `connection`: one TCP connection carrying frames (keepalive, no Nagle);
//! - `session`: the task driving one session's bound connection;
//! - `endpoint`: the shared listener, `Endpoint::open(SessionSpec)`, the `MsrpSession`
//!   handle and its `Event`s.

pub mod chunks;
pub mod codec;
pub mod connection;
pub mod endpoint;
pub mod frame;
pub mod inbound;
mod session;
pub mod transaction;

pub use chunks::{Assembled, ChunkError, ChunkLimits, Progress, Reassembler, split};
pub use codec::{DecodeError, Decoder, Error, Limits, encode};
pub use endpoint::{
    CloseReason, Delivered, Endpoint, EndpointError, Event, Held, MsrpSession, OpenError, Received,
    Reply, SendError, SessionSpec, Settings,
};
pub use frame::{
    Body, ByteRange, FailureReport, Flag, Frame, Header, Method, StartLine, Status, TransactId,
};
pub use transaction::Disposition;

#[cfg(test)]
mod tests;
