//! The SMTP envelope of one mail (AA1/BB1/CC1/DD1): reverse-path, forward-paths and the
//! RFC 2852 `BY=` parameter of MAIL FROM. No I/O.

use crate::mail::AddrSpec;
use crate::policy::world;

/// RFC 2852 by-mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByMode {
    /// `R`: return the message as undeliverable when the time runs out.
    Return,
    /// `N`: notify the sender, keep trying.
    Notify,
}

/// RFC 2852 4: `BY=<by-time>;<by-mode>[T]`, as the policy asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverBy {
    /// Seconds, 1 to 999,999,999 (RFC 2852 4: at most 9 digits; R needs a positive time).
    seconds: u32,
    pub mode: ByMode,
    /// `T`: request a trace DSN.
    pub trace: bool,
}

/// The most a by-time may be (RFC 2852 4: `1*9DIGIT`).
pub const MAX_BY_TIME: u32 = 999_999_999;

impl DeliverBy {
    /// `None` for a by-time outside 1..=999,999,999.
    pub fn new(seconds: u32, mode: ByMode, trace: bool) -> Option<Self> {
        (1..=MAX_BY_TIME).contains(&seconds).then_some(Self {
            seconds,
            mode,
            trace,
        })
    }

    pub fn seconds(&self) -> u32 {
        self.seconds
    }

    /// The parameter value, e.g. `120;R` or `3600;NT`.
    pub fn value(&self) -> String {
        let mode = match self.mode {
            ByMode::Return => 'R',
            ByMode::Notify => 'N',
        };
        let trace = if self.trace { "T" } else { "" };
        format!("{};{mode}{trace}", self.seconds)
    }

    /// This request as sent to a server that advertised `DELIVERBY <min_by_time>`.
    ///
    /// RFC 2852 4.1: such a server refuses a `BY=` of mode `R` whose by-time is below its
    /// min-by-time, so sending it as asked would only fail the mail: the by-time is raised
    /// to the minimum instead. Mode `N` takes any by-time (the server notifies, the mail
    /// goes on), so it is sent as asked.
    pub fn for_server(self, min_by_time: Option<u32>) -> Self {
        match (self.mode, min_by_time) {
            (ByMode::Return, Some(min)) if self.seconds < min => Self {
                seconds: min.min(MAX_BY_TIME),
                ..self
            },
            _ => self,
        }
    }

    /// From the policy's `deliver-by` answer; `None` when its by-time is out of range.
    pub fn from_policy(request: &world::ByRequest) -> Option<Self> {
        let mode = match request.mode {
            world::ByMode::Return => ByMode::Return,
            world::ByMode::Notify => ByMode::Notify,
        };
        Self::new(request.seconds, mode, request.trace)
    }
}

/// Who a mail is from and to, for MAIL FROM and RCPT TO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path; `None` is the null path `<>` (RFC 5321 4.5.5).
    pub from: Option<AddrSpec>,
    /// To, Cc and Bcc recipients alike.
    pub to: Vec<AddrSpec>,
    /// Sent only if the server advertised DELIVERBY (AA1 BY row).
    pub deliver_by: Option<DeliverBy>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_parameter_per_rfc_2852() {
        assert_eq!(
            DeliverBy::new(120, ByMode::Return, false).unwrap().value(),
            "120;R"
        );
        assert_eq!(
            DeliverBy::new(3600, ByMode::Notify, true).unwrap().value(),
            "3600;NT"
        );
        assert_eq!(
            DeliverBy::new(MAX_BY_TIME, ByMode::Return, true)
                .unwrap()
                .value(),
            "999999999;RT"
        );
        assert!(DeliverBy::new(0, ByMode::Return, false).is_none());
        assert!(DeliverBy::new(1_000_000_000, ByMode::Notify, false).is_none());
        let from_policy = DeliverBy::from_policy(&world::ByRequest {
            seconds: 60,
            mode: world::ByMode::Notify,
            trace: false,
        });
        assert_eq!(from_policy.unwrap().value(), "60;N");
    }

    #[test]
    fn a_return_by_time_below_the_servers_minimum_is_raised_to_it() {
        let r = |s| DeliverBy::new(s, ByMode::Return, true).unwrap();
        assert_eq!(r(60).for_server(Some(120)).value(), "120;RT");
        assert_eq!(r(120).for_server(Some(120)), r(120));
        assert_eq!(r(600).for_server(Some(120)), r(600));
        assert_eq!(r(60).for_server(None), r(60));
        // Mode N is not refused below the minimum (RFC 2852 4.1): as asked.
        let n = DeliverBy::new(60, ByMode::Notify, false).unwrap();
        assert_eq!(n.for_server(Some(120)), n);
    }
}
