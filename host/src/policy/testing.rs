//! Fixtures for tests and benches: an engine, and policy records to decide on. Not part of the gateway;
//! public (and hidden from the docs) because the integration tests and benches link the
//! library as it is built for them, without `cfg(test)`.

use super::world::{Gateway, Identity, Session};
use super::{Limits, PolicyEngine};
use std::sync::Arc;

/// An engine for a unit test's few decisions: 1 s each, 32 MiB, 4 instances, none made
/// ahead.
pub fn engine() -> Arc<PolicyEngine> {
    PolicyEngine::new(Limits {
        timeout_ms: 1000,
        memory_bytes: 32 << 20,
        max_instances: 4,
        warm_instances: 0,
    })
    .unwrap()
}

/// A 1-1 invitation from Alice (`sip:alice@iwf.example.com`) to `request_uri`, session
/// `s1a2b3`, through the gateway `iwf.example.com` / `mail.example.com`; nothing optional
/// set. A test needing more sets it with `Session { field, ..session(uri) }`.
pub fn session(request_uri: &str) -> Session {
    Session {
        session_id: "s1a2b3".into(),
        gateway: Gateway {
            sip_domain: "iwf.example.com".into(),
            mail_domain: "mail.example.com".into(),
        },
        request_uri: request_uri.into(),
        asserted_identity: None,
        from: Identity {
            uri: "sip:alice@iwf.example.com".into(),
            display_name: Some("Alice".into()),
        },
        privacy_id: false,
        referred_by: None,
        reply_to: None,
        subject: None,
        priority: None,
        conversation_id: None,
        contribution_id: None,
        in_reply_to_contribution_id: None,
        group: None,
    }
}
