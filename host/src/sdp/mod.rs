//! SDP offer/answer for the MSRP chat of a CPM session, sans I/O.
//!
//! Owns: reading a session description (RFC 4566), the MSRP media of an INVITE's offer
//! (RFC 4975 section 8: `a=path`, `a=accept-types`, `a=accept-wrapped-types`, `a=max-size`;
//! RFC 6135 / RFC 4145 `a=setup`), the IWF's answer (RFC 3264) and the MSRP parameters the
//! session keeps, and fresh unguessable MSRP session ids.
//!
//! Must not touch: sockets, clocks, SIP messages or the policy engine. The SIP layer hands
//! in the body bytes and answers 488 with `OfferError`'s text as Warning; the MSRP layer
//! opens or awaits the connection the `MsrpParams` describe.
//! - `session`: a session description as typed lines, parsed (CRLF or LF) and printed (CRLF);
//! - `uri`: MSRP URIs (`msrp://host:port/session-id;tcp`, IPv6 in brackets);
//! - `msrp`: the offer, the answer, the setup roles and `new_session_id`.

pub mod msrp;
pub mod session;
pub mod uri;

pub use msrp::{
    Answer, Direction, LocalMsrp, MsrpMedia, MsrpParams, Offer, OfferError, Role, Setup, answer,
    new_session_id,
};
pub use session::SessionDescription;
pub use uri::{Host, MsrpUri};
