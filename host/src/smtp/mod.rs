//! Outgoing SMTP: where a mail for a domain goes (`mx`), the channel to that server
//! (`client`, encrypted per `tls` over `layer`), and what happened (`failure`, `reply`). The protocol text (`reply`,
//! `envelope`) is free of I/O; `mx` and `client` are the tokio drivers.
//! Does not build mails (that is `mail`) and holds no policy.

pub mod client;
pub mod destination;
pub mod envelope;
pub mod failure;
pub mod inbound;
mod layer;
pub mod mx;
pub mod reply;
pub mod tls;
mod transcript;

pub use client::{Channel, ClientSettings, RcptOutcome, SendFailure, Sent};
pub use destination::{Destinations, Lease};
pub use envelope::{ByMode, DeliverBy, Envelope};
pub use failure::{SmtpFailure, Stage};
pub use mx::{Router, RouterError, Target};
pub use reply::{Extensions, Reply};
pub use tls::{StartTls, TlsPolicy};

/// 5.2.4.2.4 steps 1 and 2: find where mail for `domain` goes and open the channel to
/// the first server that answers, once the destination has a connection free (waiting up
/// to `connect_timeout`); the channel holds that connection until it closes.
pub async fn connect(
    router: &Router,
    settings: &ClientSettings,
    destinations: &Destinations,
    domain: &str,
) -> Result<Channel, SmtpFailure> {
    let lease = destinations
        .lease(&router.destination(domain), settings.connect_timeout)
        .await?;
    let targets = router.route(domain).await?;
    Ok(Channel::open(&targets, settings).await?.leased(lease))
}

#[cfg(test)]
mod tests {
    /// The session core keeps a channel in its task and shares one router.
    #[test]
    fn channel_is_send_and_router_is_shareable() {
        fn send<T: Send>() {}
        fn share<T: Send + Sync>() {}
        send::<super::Channel>();
        share::<super::Router>();
        fn send_future<F: std::future::Future + Send>(_: F) {}
        let _ = |router: &'static super::Router,
                 settings: &'static super::ClientSettings,
                 destinations: &'static super::Destinations| {
            send_future(super::connect(
                router,
                settings,
                destinations,
                "example.org",
            ))
        };
        let _ = |channel: &'static mut super::Channel, envelope: &'static super::Envelope| {
            send_future(channel.send(envelope, b""))
        };
    }
}
