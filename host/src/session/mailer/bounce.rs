//! The way out for F5's bounces (issue 15): a chat mail the IWF answered 250 for and the
//! chat did not take goes back to its return path as a delivery status notification,
//! over the mailer's routes and connection limits, from the null reverse-path.

use super::Shared;
use crate::mail::AddrSpec;
use crate::smtp::{self, Envelope, SmtpFailure};
use std::sync::Arc;

/// Sends bounces; cheap to clone.
#[derive(Clone)]
pub struct Bouncer {
    shared: Arc<Shared>,
}

impl Bouncer {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Sends `message` to `to` with MAIL FROM:<> (RFC 5321 4.5.5: a bounce is never
    /// bounced); `Ok` once a server took it.
    pub async fn send(&self, to: &AddrSpec, message: &[u8]) -> Result<(), SmtpFailure> {
        let shared = &self.shared;
        let mut channel = smtp::connect(
            &shared.router,
            &shared.settings,
            &shared.destinations,
            to.domain(),
        )
        .await?;
        let envelope = Envelope {
            from: None,
            to: vec![to.clone()],
            deliver_by: None,
        };
        let sent = channel.send(&envelope, message).await;
        if let Err(e) = channel.quit().await {
            tracing::debug!(error = %e, "SMTP QUIT after a bounce failed");
        }
        sent.map(|_| ()).map_err(|failed| failed.failure)
    }
}
