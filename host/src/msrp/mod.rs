//! MSRP (RFC 4975) for the chat side of a CPM session, sans I/O.
//!
//! Owns: the frame types, the wire codec (streaming decoder and encoder, bounded by
//! `Limits`) and the reassembly of chunked messages. Must not touch: sockets, clocks, SIP,
//! SDP negotiation (`sdp` owns the MSRP URI type this module reuses) or the policy.
//! - `frame`: requests and responses as typed values (Byte-Range, Status, reports) and
//!   the frames the endpoint builds: `Frame::send`, `Frame::report`, `Frame::response`;
//! - `codec`: `Decoder` (bytes to frames, any split; a bad request's 400 via
//!   `DecodeError::response`) and `encode` (frames to bytes);
//! - `chunks`: a message put back together from its chunks by Message-ID and Byte-Range
//!   (`Reassembler`), and an outgoing one cut into chunks (`split`).

pub mod chunks;
pub mod codec;
pub mod frame;

pub use chunks::{Assembled, ChunkError, ChunkLimits, Progress, Reassembler, split};
pub use codec::{DecodeError, Decoder, Error, Limits, encode};
pub use frame::{
    Body, ByteRange, FailureReport, Flag, Frame, Header, Method, StartLine, Status, TransactId,
};

#[cfg(test)]
mod tests;
