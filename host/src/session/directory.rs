//! Which session an inbound e-mail belongs to (DESIGN "Correlating inbound e-mail with a
//! session"): the mail side registers what a session's mails said (its addresses and
//! every Message-ID it sent), the inbound side looks a reply up by, in order,
//! 1. the session token in a referenced Message-ID (`iwf.<session-id>.<random>@...`, the
//!    form of every id the IWF generates),
//! 2. In-Reply-To / References against every Message-ID the session sent,
//! 3. (recipient address, sender address).
//!
//! The sender check is separate ([`Entry::is_user`]): finding the session by a thread id
//! proves nothing about who wrote the mail.
//!
//! Shared between tasks behind one mutex; every operation is a few map look-ups.

use super::core::{MailFacts, SessionKey};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The session a reply was found for, and who may write to it.
#[derive(Debug, Clone)]
pub struct Found {
    pub key: SessionKey,
    /// The e-mail user(s): the addresses the session's mails went to (lower-cased).
    users: Vec<String>,
}

impl Found {
    /// Whether `address` is one of the session's e-mail users.
    pub fn is_user(&self, address: &str) -> bool {
        let address = address.to_ascii_lowercase();
        self.users.contains(&address)
    }
}

/// A session in memory, with the facts its replies are interpreted with.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: SessionKey,
    pub facts: MailFacts,
}

/// What the directory holds of one session.
#[derive(Debug)]
struct Held {
    /// `None` while the session is parked (issue 15: its facts are in the store only,
    /// and come back with it).
    facts: Option<Box<MailFacts>>,
    /// Its session id, the token of its generated Message-IDs (shared with `by_token`).
    token: Arc<str>,
    users: Vec<String>,
    /// The IWF's own addresses the replies come to: From and Reply-To (lower-cased).
    ours: Vec<String>,
    /// The Message-IDs it registered, to forget them with it (shared with
    /// `by_message_id`).
    ids: Vec<Arc<str>>,
    /// The e-mail user's chat mails it delivered (F5), newest last, at most
    /// `DELIVERED_KEPT`: a mail its sender sends again is not delivered twice.
    delivered: VecDeque<String>,
}

/// The maps share each session's key: a parked session costs its keys' strings, not
/// copies of its key in every map.
#[derive(Default)]
struct Inner {
    entries: HashMap<Arc<SessionKey>, Held>,
    by_token: HashMap<Arc<str>, Arc<SessionKey>>,
    by_message_id: HashMap<Arc<str>, Arc<SessionKey>>,
    by_pair: HashMap<(String, String), Arc<SessionKey>>,
    /// How many sessions use each of our addresses (RCPT TO is taken for those).
    addresses: HashMap<String, usize>,
}

/// A session's key for [`Directory::insert`]: copied, or shared with its caller.
enum Shared<'a> {
    New(&'a SessionKey),
    Given(&'a Arc<SessionKey>),
}

impl Shared<'_> {
    fn key(&self) -> &SessionKey {
        match self {
            Shared::New(key) => key,
            Shared::Given(key) => key,
        }
    }
}

/// Chat mails remembered per session for duplicates. A sender sends a mail again when no
/// 250 reached it, minutes later at most; older mails are not expected back.
const DELIVERED_KEPT: usize = 256;

#[derive(Default)]
pub struct Directory {
    inner: Mutex<Inner>,
}

impl Directory {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves maps that are still consistent enough to
        // look up: every update is a handful of inserts.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Session `key` mails from `ours` to `users` (set once its addresses are decided).
    /// Registered again when a parked session comes back: its facts are back with it.
    pub fn register(&self, key: &SessionKey, facts: &MailFacts, ours: &[&str], users: &[&str]) {
        let token = &facts.session.session_id;
        self.insert(Shared::New(key), token, Some(facts), ours, users);
    }

    /// As [`Directory::register`] for a session restored parked (issue 15): its replies
    /// find it, its facts are in the store. `token`: its session id.
    pub fn register_parked(
        &self,
        key: &Arc<SessionKey>,
        token: &str,
        ours: &[&str],
        users: &[&str],
    ) {
        self.insert(Shared::Given(key), token, None, ours, users);
    }

    /// Session `key` as the directory holds it, for others to share (a parked invitation
    /// keeps one copy of its Call-ID and tag).
    pub fn shared_key(&self, key: &SessionKey) -> Option<Arc<SessionKey>> {
        self.lock()
            .entries
            .get_key_value(key)
            .map(|(k, _)| k.clone())
    }

    fn insert(
        &self,
        key: Shared<'_>,
        token: &str,
        facts: Option<&MailFacts>,
        ours: &[&str],
        users: &[&str],
    ) {
        let lower =
            |v: &[&str]| -> Vec<String> { v.iter().map(|a| a.to_ascii_lowercase()).collect() };
        let mut inner = self.lock();
        if let Some(held) = inner.entries.get_mut(key.key()) {
            if let Some(facts) = facts {
                held.facts.get_or_insert_with(|| Box::new(facts.clone()));
            }
            return;
        }
        let held = Held {
            facts: facts.map(|f| Box::new(f.clone())),
            token: token.into(),
            users: lower(users),
            ours: lower(ours),
            ids: Vec::new(),
            delivered: VecDeque::new(),
        };
        let key = match key {
            Shared::New(key) => Arc::new(key.clone()),
            Shared::Given(key) => key.clone(),
        };
        for our in &held.ours {
            *inner.addresses.entry(our.clone()).or_default() += 1;
            for user in &held.users {
                inner
                    .by_pair
                    .insert((our.clone(), user.clone()), key.clone());
            }
        }
        inner.by_token.insert(held.token.clone(), key.clone());
        inner.entries.insert(key, held);
    }

    /// Session `key` is parked (issue 15): its replies still find it, by the same keys,
    /// and its facts wait in the store until it comes back ([`Directory::register`]).
    pub fn park(&self, key: &SessionKey) {
        if let Some(held) = self.lock().entries.get_mut(key) {
            held.facts = None;
        }
    }

    /// Session `key` sent a mail with Message-ID `id` (without `<>`). An id another
    /// session holds stays that session's: ids taken from Contribution-IDs are the CPM
    /// side's choice, and must not move a thread to another session.
    pub fn sent(&self, key: &SessionKey, id: &str) {
        let mut inner = self.lock();
        // Another session's, or this one's already (registered again when it comes back).
        if inner.by_message_id.contains_key(id) {
            return;
        }
        let Some(shared) = inner.entries.get_key_value(key).map(|(k, _)| k.clone()) else {
            return;
        };
        let id: Arc<str> = id.into();
        if let Some(held) = inner.entries.get_mut(key) {
            held.ids.push(id.clone());
        }
        inner.by_message_id.insert(id, shared);
    }

    /// Whether some live session sent a mail with Message-ID `id` (without `<>`).
    pub fn knows(&self, id: &str) -> bool {
        self.lock().by_message_id.contains_key(id)
    }

    /// Session `key` also mails from `address` (a 1-1 chat mail is from its author, BB2
    /// From, which may differ from the invitation's From): replies to it are taken too.
    pub fn mails_from(&self, key: &SessionKey, address: &str) {
        let address = address.to_ascii_lowercase();
        let mut inner = self.lock();
        let Some((shared, held)) = inner.entries.get_key_value(key) else {
            return;
        };
        if held.ours.contains(&address) {
            return;
        }
        let (shared, users) = (shared.clone(), held.users.clone());
        if let Some(held) = inner.entries.get_mut(key) {
            held.ours.push(address.clone());
        }
        *inner.addresses.entry(address.clone()).or_default() += 1;
        for user in users {
            inner
                .by_pair
                .insert((address.clone(), user), shared.clone());
        }
    }

    /// Forgets session `key`: a reply to it is then refused as for no live session.
    pub fn remove(&self, key: &SessionKey) {
        let mut inner = self.lock();
        let Some(held) = inner.entries.remove(key) else {
            return;
        };
        for id in &held.ids {
            inner.by_message_id.remove(id);
        }
        inner.by_token.remove(&held.token);
        for our in &held.ours {
            for user in &held.users {
                let pair = (our.clone(), user.clone());
                if inner.by_pair.get(&pair).is_some_and(|k| **k == *key) {
                    inner.by_pair.remove(&pair);
                }
            }
            if let Some(n) = inner.addresses.get_mut(our) {
                *n -= 1;
                if *n == 0 {
                    inner.addresses.remove(our);
                }
            }
        }
    }

    /// Claims the e-mail user's mail `message_id` for session `key` (F5): `false` when the
    /// session took it before (its sender sent it again, having seen no 250), so it is
    /// not delivered twice. Kept while the session lives, the newest `DELIVERED_KEPT`.
    pub fn claim_mail(&self, key: &SessionKey, message_id: &str) -> bool {
        let mut inner = self.lock();
        let Some(held) = inner.entries.get_mut(key) else {
            return true;
        };
        let ids = &mut held.delivered;
        if ids.iter().any(|id| id == message_id) {
            return false;
        }
        if ids.len() == DELIVERED_KEPT {
            ids.pop_front();
        }
        ids.push_back(message_id.to_owned());
        true
    }

    /// Gives back a claim whose mail was not taken after all (its commit failed).
    pub fn release_mail(&self, key: &SessionKey, message_id: &str) {
        let mut inner = self.lock();
        if let Some(held) = inner.entries.get_mut(key) {
            held.delivered.retain(|id| id != message_id);
        }
    }

    /// RCPT TO: whether `address` is one the live sessions mail from.
    pub fn serves(&self, address: &str) -> bool {
        self.lock()
            .addresses
            .contains_key(&address.to_ascii_lowercase())
    }

    /// The session a reply belongs to: by the token or Message-ID of `referenced` (in
    /// the order given), else by (`recipient`, `sender`).
    pub fn find(&self, referenced: &[&str], recipients: &[String], sender: &str) -> Option<Found> {
        let inner = self.lock();
        let found = referenced
            .iter()
            .find_map(|id| {
                token_of(id)
                    .and_then(|t| inner.by_token.get(t))
                    .or_else(|| inner.by_message_id.get(*id))
            })
            .or_else(|| {
                let sender = sender.to_ascii_lowercase();
                recipients
                    .iter()
                    .find_map(|r| inner.by_pair.get(&(r.to_ascii_lowercase(), sender.clone())))
            })?;
        let held = inner.entries.get(&**found)?;
        Some(Found {
            key: (**found).clone(),
            users: held.users.clone(),
        })
    }

    /// Session `key` with its facts, while it is in memory (not parked, not gone).
    pub fn session(&self, key: &SessionKey) -> Option<Entry> {
        let inner = self.lock();
        let facts = inner.entries.get(key)?.facts.as_deref()?.clone();
        Some(Entry {
            key: key.clone(),
            facts,
        })
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session-id in an IWF-generated Message-ID, `iwf.<session-id>.<hex>@domain`.
fn token_of(id: &str) -> Option<&str> {
    let left = id.split('@').next()?;
    let rest = left.strip_prefix("iwf.")?;
    let (token, random) = rest.split_once('.')?;
    (!token.is_empty() && random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing;
    use crate::policy::world::Session;

    fn facts(id: &str) -> MailFacts {
        MailFacts {
            session: Session {
                session_id: id.into(),
                ..testing::session("mailto:bob@example.net")
            },
            cpim_date_time: None,
            sip_date: None,
        }
    }

    /// Registers session `id` under `key`, mailing from `ours` to `user`.
    fn register(d: &Directory, key: &SessionKey, id: &str, ours: &str, user: &str) {
        d.register(key, &facts(id), &[ours], &[user]);
    }

    fn key(n: &str) -> SessionKey {
        SessionKey {
            call_id: n.into(),
            local_tag: "t".into(),
        }
    }

    #[test]
    fn a_mail_is_claimed_once_per_session_within_the_bound_until_it_ends_or_is_released() {
        let d = Directory::default();
        let ours = ["iwf@mail.example.com"];
        d.register(&key("a"), &facts("sa"), &ours, &["bob@example.net"]);
        d.register(&key("b"), &facts("sb"), &ours, &["carol@example.net"]);
        assert!(d.claim_mail(&key("a"), "m0@example.net"));
        assert!(!d.claim_mail(&key("a"), "m0@example.net"), "a copy");
        assert!(d.claim_mail(&key("b"), "m0@example.net"), "per session");
        for n in 1..=DELIVERED_KEPT {
            assert!(d.claim_mail(&key("a"), &format!("m{n}@example.net")));
        }
        assert!(d.claim_mail(&key("a"), "m0@example.net"), "the oldest went");
        d.release_mail(&key("a"), "m0@example.net");
        assert!(d.claim_mail(&key("a"), "m0@example.net"), "released");
        assert!(!d.claim_mail(&key("a"), "m2@example.net"));
        d.remove(&key("a"));
        assert!(d.claim_mail(&key("a"), "m2@example.net"), "gone with it");
    }

    #[test]
    fn a_chat_mails_author_address_takes_replies_until_the_session_ends() {
        let d = Directory::default();
        let k = key("one");
        register(&d, &k, "s1", "alice@mail.iwf.test", "bob@example.net");
        assert!(!d.serves("alice.a@mail.iwf.test"));
        d.mails_from(&k, "Alice.A@mail.iwf.test");
        d.mails_from(&k, "alice.a@mail.iwf.test");
        assert!(d.serves("alice.a@mail.iwf.test"));
        let rcpt = vec!["alice.a@mail.iwf.test".to_owned()];
        assert_eq!(d.find(&[], &rcpt, "bob@example.net").unwrap().key, k);
        d.remove(&k);
        assert!(!d.serves("alice.a@mail.iwf.test") && !d.serves("alice@mail.iwf.test"));
        assert!(d.find(&[], &rcpt, "bob@example.net").is_none());
        // Unknown sessions get nothing registered.
        d.mails_from(&k, "alice.a@mail.iwf.test");
        assert!(!d.serves("alice.a@mail.iwf.test"));
    }

    #[test]
    fn a_reply_is_found_by_token_then_message_id_then_address_pair() {
        let d = Directory::default();
        let (k1, k2) = (key("one"), key("two"));
        register(&d, &k1, "s1", "alice@mail.iwf.test", "Bob@Example.net");
        register(&d, &k2, "s2", "carol@mail.iwf.test", "bob@example.net");
        d.sent(&k1, "c0ntr1b@mail.iwf.test");
        let token = format!("iwf.s2.{}@mail.iwf.test", "ab".repeat(16));
        // The token wins over the address pair.
        let rcpt = vec!["alice@mail.iwf.test".to_owned()];
        assert_eq!(d.find(&[&token], &rcpt, "bob@example.net").unwrap().key, k2);
        // A sent Message-ID.
        assert_eq!(
            d.find(&["c0ntr1b@mail.iwf.test"], &[], "x@y").unwrap().key,
            k1
        );
        // Nothing referenced: (recipient, sender), case-insensitive.
        assert_eq!(d.find(&[], &rcpt, "BOB@example.NET").unwrap().key, k1);
        assert!(d.find(&["unknown@x"], &[], "bob@example.net").is_none());
        assert!(d.serves("ALICE@mail.iwf.test") && !d.serves("dave@mail.iwf.test"));
        let entry = d.find(&[], &rcpt, "bob@example.net").unwrap();
        assert!(entry.is_user("bob@EXAMPLE.net") && !entry.is_user("eve@example.net"));
    }

    #[test]
    fn a_removed_session_is_found_no_more_and_shared_addresses_stay_served() {
        let d = Directory::default();
        let (k1, k2) = (key("one"), key("two"));
        register(&d, &k1, "s1", "alice@mail.iwf.test", "bob@example.net");
        register(&d, &k2, "s2", "alice@mail.iwf.test", "carol@example.net");
        d.sent(&k1, "m1@mail.iwf.test");
        d.remove(&k1);
        assert!(
            d.find(&["m1@mail.iwf.test"], &[], "bob@example.net")
                .is_none()
        );
        let rcpt = vec!["alice@mail.iwf.test".to_owned()];
        assert!(d.find(&[], &rcpt, "bob@example.net").is_none());
        assert!(
            d.serves("alice@mail.iwf.test"),
            "still used by the second session"
        );
        d.remove(&k2);
        assert!(!d.serves("alice@mail.iwf.test"));
        assert!(d.is_empty());
    }

    #[test]
    fn a_parked_session_is_found_by_the_same_keys_and_gets_its_facts_back_when_registered_again() {
        let d = Directory::default();
        let k = key("one");
        register(&d, &k, "s1", "alice@mail.iwf.test", "bob@example.net");
        d.sent(&k, "m1@mail.iwf.test");
        d.park(&k);
        assert!(d.session(&k).is_none(), "its facts wait in the store");
        let token = format!("iwf.s1.{}@mail.iwf.test", "ab".repeat(16));
        let rcpt = vec!["alice@mail.iwf.test".to_owned()];
        for found in [
            d.find(&[&token], &[], "x@y"),
            d.find(&["m1@mail.iwf.test"], &[], "x@y"),
            d.find(&[], &rcpt, "bob@example.net"),
        ] {
            let found = found.expect("found while parked");
            assert_eq!(found.key, k);
            assert!(found.is_user("bob@example.net") && !found.is_user("x@y"));
        }
        assert!(d.serves("alice@mail.iwf.test"));
        // Back: registered again with its thread's ids, nothing doubled.
        register(&d, &k, "s1", "alice@mail.iwf.test", "bob@example.net");
        d.sent(&k, "m1@mail.iwf.test");
        assert_eq!(d.session(&k).unwrap().facts.session.session_id, "s1");
        assert_eq!(d.lock().entries[&k].ids.len(), 1);
        d.remove(&k);
        assert!(d.is_empty() && !d.serves("alice@mail.iwf.test"));
        assert!(d.find(&[&token], &[], "x@y").is_none());
    }

    #[test]
    fn only_generated_ids_carry_a_token() {
        assert_eq!(
            token_of(&format!("iwf.abc.{}@d", "0f".repeat(16))),
            Some("abc")
        );
        assert_eq!(token_of("iwf.abc.short@d"), None);
        assert_eq!(token_of("c0ntr1b@d"), None);
    }
}
