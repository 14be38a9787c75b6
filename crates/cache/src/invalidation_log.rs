//! Which keys changed while a fill was in flight.
//!
//! A fill reads an old value, a write lands and its invalidation evicts the key (which
//! is not cached yet), then the fill stores the old value: stale until its TTL. To close
//! that window, every invalidation (own writes, other nodes' messages, a lost
//! subscription) is numbered; a fill notes the number when it starts and, when it ends,
//! drops its value if the key was invalidated since.

use moka::sync::Cache;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Invalidations are remembered this long: longer than any fill may take.
const REMEMBERED_FOR: Duration = Duration::from_secs(60);

/// Numbered invalidations of recent keys. Cheap to clone.
#[derive(Clone)]
pub(crate) struct InvalidationLog {
    inner: Arc<Inner>,
}

struct Inner {
    sequence: AtomicU64,
    /// Sequence of the last invalidation of everything (a lost subscription).
    everything_at: AtomicU64,
    recent: Cache<String, u64>,
}

impl InvalidationLog {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                sequence: AtomicU64::new(0),
                everything_at: AtomicU64::new(0),
                recent: Cache::builder()
                    .max_capacity(1_000_000)
                    .time_to_live(REMEMBERED_FOR)
                    .build(),
            }),
        }
    }

    /// The number a fill starting now compares against.
    pub(crate) fn now(&self) -> u64 {
        self.inner.sequence.load(Ordering::SeqCst)
    }

    /// Notes that `key` changed (before evicting it).
    pub(crate) fn record(&self, key: &str) {
        let at = self.inner.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.recent.insert(key.to_owned(), at);
    }

    /// Notes that anything may have changed.
    pub(crate) fn record_everything(&self) {
        let at = self.inner.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.everything_at.store(at, Ordering::SeqCst);
    }

    /// Whether `key` was invalidated after `since` (a value of [`InvalidationLog::now`]).
    pub(crate) fn changed_since(&self, key: &str, since: u64) -> bool {
        self.inner.everything_at.load(Ordering::SeqCst) > since
            || self.inner.recent.get(key).is_some_and(|at| at > since)
    }
}

#[cfg(test)]
mod tests {
    use super::InvalidationLog;

    #[test]
    fn a_key_invalidated_after_a_fill_started_is_reported_and_others_are_not() {
        let log = InvalidationLog::new();
        log.record("a");
        let started = log.now();
        assert!(!log.changed_since("a", started), "before the fill started");
        log.record("b");
        assert!(log.changed_since("b", started));
        assert!(!log.changed_since("a", started));
        log.record_everything();
        assert!(log.changed_since("a", started));
    }
}
