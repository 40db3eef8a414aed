//! Understanding an inbound e-mail: parse it, classify it, clean its reply text. Pure code,
//! no I/O, no session state: the SMTP listener hands the raw message (and whether the
//! envelope sender was null) in, the correlation and the policy take the facts out.
//! - `parse`: mail-parser in, an owned `InboundMail` out (headers, body, attachments);
//! - `classify`: personal mail, auto-reply, bounce or other report (mail loops: RFC 3834,
//!   RFC 3464, RFC 6522, RFC 8098); only `Kind::Personal` may become chat;
//! - `report`: the parts of a multipart/report: delivery-status (RFC 3464), MDN (RFC 8098);
//! - `clean`: the reply text the policy sees: quotes and signature removed, never emptied;
//! - `quote`, `signature`: the line rules `clean` applies, each citing the client it targets;
//! - `html`, `entities`: HTML-only mail to text, quote blocks dropped first;
//! - `flowed`: RFC 3676 format=flowed decoding.
//!
//! This module must not touch sockets, clocks, sessions or the policy.

pub mod classify;
pub mod clean;
pub mod entities;
pub mod flowed;
pub mod html;
pub mod parse;
pub mod quote;
pub mod report;
pub mod signature;

pub use classify::{AutoReason, Kind, classify};
pub use clean::{Cleaned, clean_html_reply, clean_reply};
pub use parse::{
    Attachment, BodySource, InboundAddress, InboundMail, LoopHeaders, ParseError, parse,
};
pub use report::{RecipientStatus, Report};
