//! Mail building: the one composer of the mails the gateway sends, and the header and
//! body codecs under it. No I/O, no policy: the session core decides what a mail says
//! (the spec's tables), this module writes it so that nothing from the CPM side can
//! reach the wire as a header.
//! - `header`: addresses, Message-IDs, display names and subjects (RFC 5322, RFC 2047);
//! - `body`: the text/plain body and its Content-Transfer-Encoding (RFC 2045);
//! - `compose`: a `Draft` in, an RFC 5322 message out;
//! - `aa2`: the pure rows of Table AA2 (Date, In-Reply-To, References, To/Cc/Bcc);
//! - `inbound`: the other direction: an inbound e-mail parsed, classified and cleaned.

pub mod aa2;
pub mod body;
pub mod bounce;
pub mod compose;
pub mod header;
pub mod inbound;

pub use bounce::{Bounce, compose_bounce};
pub use compose::{Draft, compose};
pub use header::{AddrSpec, AutoSubmitted, HeaderError, Mailbox, MsgId, XPriority};
