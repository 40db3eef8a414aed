//! The decision points of the world: one exported function of `decisions` each.

/// One decision point of the world: one exported function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    OnInvite,
    CpmToEmail,
    EmailToCpm,
    GroupAddress,
    InvitationBody,
    InterpretReply,
    InvitationExpiry,
    DeliverBy,
    SmtpFailureStatus,
    XPriority,
    BodyAdditions,
    SessionClosed,
    ParticipantInfoFrequency,
    ParticipantInfoText,
    MsrpReports,
    AnonymousIdentity,
}

impl Decision {
    pub const ALL: [Decision; 16] = [
        Decision::OnInvite,
        Decision::CpmToEmail,
        Decision::EmailToCpm,
        Decision::GroupAddress,
        Decision::InvitationBody,
        Decision::InterpretReply,
        Decision::InvitationExpiry,
        Decision::DeliverBy,
        Decision::SmtpFailureStatus,
        Decision::XPriority,
        Decision::BodyAdditions,
        Decision::SessionClosed,
        Decision::ParticipantInfoFrequency,
        Decision::ParticipantInfoText,
        Decision::MsrpReports,
        Decision::AnonymousIdentity,
    ];

    /// The WIT name of the function.
    pub fn name(self) -> &'static str {
        match self {
            Decision::OnInvite => "on-invite",
            Decision::CpmToEmail => "cpm-to-email",
            Decision::EmailToCpm => "email-to-cpm",
            Decision::GroupAddress => "group-address",
            Decision::InvitationBody => "invitation-body",
            Decision::InterpretReply => "interpret-reply",
            Decision::InvitationExpiry => "invitation-expiry",
            Decision::DeliverBy => "deliver-by",
            Decision::SmtpFailureStatus => "smtp-failure-status",
            Decision::XPriority => "x-priority",
            Decision::BodyAdditions => "body-additions",
            Decision::SessionClosed => "session-closed",
            Decision::ParticipantInfoFrequency => "participant-info-frequency",
            Decision::ParticipantInfoText => "participant-info-text",
            Decision::MsrpReports => "msrp-reports",
            Decision::AnonymousIdentity => "anonymous-identity",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}
