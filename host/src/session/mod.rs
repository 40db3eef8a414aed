//! The CPM sessions the IWF holds for e-mail users: the flows of DESIGN.md as one state
//! machine per session, driven by SIP events and instants, deciding through the policy.
//!
//! - `core`: the UA core (RFC 3261 8.2, 12, 13.3, 14, 15) over the transaction and dialog
//!   layers: F1 (accept on behalf, 5.2.1.3) with ACK, re-INVITE and BYE either way; an
//!   INVITE stays pending while the policy decides off the session task, and while the
//!   invitation is mailed (F2); a BYE closes it (F6).
//! - `mailer`: the e-mail side of a session (AA1-AA3, BB1-BB2, CC1-CC2): one task per
//!   session with its SMTP channel and Message-IDs.
//! - `chat`: F4 between MSRP and the mailer: a complete MSRP message as a chat message
//!   (CPIM unwrapped) and the MSRP status of its mail's outcome;
//! - `carry`: each session's MSRP side and its messages carried to the mailer, held
//!   until the e-mail user accepts (5.2.4.2.4).
//!
//! - `stats`: the session gauges for `GET /metrics`;
//! - `registry`: the sessions and their ladders as operators see them (`GET /sessions`).
//!
//! Must not touch sockets or clocks: the driver in `gateway` feeds it and sends its bytes.

pub mod carry;
pub mod chat;
pub mod core;
pub mod deliver;
pub mod directory;
pub mod mailer;
pub mod registry;
pub mod replies;
pub mod stats;
