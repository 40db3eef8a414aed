//! The invitations' expiries (F3: no answer within the policy's expiry is a reject), one
//! queue for every session instead of a timer task each: a pending invitation costs an
//! entry here, not a task (issue 15, "memory follows the work").

use crate::session::core::SessionKey;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

/// When each invitation expires (Unix ms, as stored with its session), and the queue the
/// driver sleeps on. A changed or stopped expiry leaves its old queue entry behind, dropped
/// when it comes up, or when stale entries outnumber the live ones. The map and the queue
/// share each key.
#[derive(Default)]
pub(super) struct Expiries {
    at: HashMap<Arc<SessionKey>, i64>,
    queue: BinaryHeap<Reverse<(i64, Arc<SessionKey>)>>,
}

impl Expiries {
    /// Session `key`'s invitation expires at `at` (Unix ms). The key is shared with
    /// whoever else holds it (the directory).
    pub(super) fn set(&mut self, key: Arc<SessionKey>, at: i64) {
        self.at.insert(key.clone(), at);
        self.queue.push(Reverse((at, key)));
        if self.queue.len() > 2 * self.at.len() + 1024 {
            self.queue = self
                .at
                .iter()
                .map(|(key, at)| Reverse((*at, key.clone())))
                .collect();
        }
    }

    /// When session `key`'s invitation expires.
    pub(super) fn get(&self, key: &SessionKey) -> Option<i64> {
        self.at.get(key).copied()
    }

    /// Session `key` no longer waits for an answer (it ended).
    pub(super) fn stop(&mut self, key: &SessionKey) {
        self.at.remove(key);
    }

    /// The earliest expiry still set.
    pub(super) fn next(&mut self) -> Option<i64> {
        while let Some(Reverse((at, key))) = self.queue.peek() {
            if self.at.get(&**key) == Some(at) {
                return Some(*at);
            }
            self.queue.pop();
        }
        None
    }

    /// The sessions whose invitation expired by `now` (Unix ms), taken out.
    pub(super) fn due(&mut self, now: i64) -> Vec<SessionKey> {
        let mut due = Vec::new();
        while let Some(at) = self.next() {
            if at > now {
                break;
            }
            if let Some(Reverse((_, key))) = self.queue.pop() {
                self.at.remove(&*key);
                due.push(Arc::unwrap_or_clone(key));
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> SessionKey {
        SessionKey {
            call_id: n.into(),
            local_tag: "t".into(),
        }
    }

    #[test]
    fn expiries_come_due_in_order_and_a_moved_or_stopped_one_only_once_or_never() {
        let mut e = Expiries::default();
        e.set(Arc::new(key("a")), 300);
        e.set(Arc::new(key("b")), 100);
        e.set(Arc::new(key("c")), 200);
        e.set(Arc::new(key("a")), 150); // moved earlier: the 300 entry is stale
        e.stop(&key("c"));
        assert_eq!(e.next(), Some(100));
        assert_eq!(e.due(99), Vec::<SessionKey>::new());
        assert_eq!(e.due(150), vec![key("b"), key("a")]);
        assert_eq!((e.next(), e.at.len()), (None, 0));
        assert!(e.due(1_000).is_empty(), "the stale entries come up empty");
    }

    #[test]
    fn stale_entries_do_not_outgrow_the_live_ones() {
        let mut e = Expiries::default();
        for n in 0..10_000 {
            e.set(Arc::new(key("a")), n);
        }
        assert!(e.queue.len() <= 2 + 1024, "{}", e.queue.len());
        assert_eq!(e.get(&key("a")), Some(9_999));
        assert_eq!(e.due(i64::MAX), vec![key("a")]);
    }
}
