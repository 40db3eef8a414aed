//! Host bindings of world `cpm:iwf-policy/policy` (`wit/policy.wit`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy",
});

pub use cpm::iwf_policy::types::*;
pub use exports::cpm::iwf_policy::decisions::{
    Additions, ByMode, ByRequest, ChatContext, FailureReport, InvitationMail, InviteDecision,
    Notification, Participant, ParticipantFrequency, PolicyInfo, Reply, ReplyAction, ReportFlags,
    SipStatus, SmtpFailure, SmtpStage,
};

/// The version of the world this gateway serves.
pub const WORLD_VERSION: &str = "0.1.0";
/// The exported interface every policy must provide, with its version.
pub const DECISIONS_INTERFACE: &str = "cpm:iwf-policy/decisions@0.1.0";
/// The interface name without version, to recognise a policy of another version.
pub const DECISIONS_UNVERSIONED: &str = "cpm:iwf-policy/decisions";
