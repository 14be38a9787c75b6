//! The in-process tier: moka, bounded by bytes, each entry with its own time to live.

use crate::metrics::CacheMetrics;
use bytes::Bytes;
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::Op;
use moka::Expiry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a tier holds for a key: a value, or the fact that the source has none
/// (negative caching), with the version it was written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cached {
    /// `None`: the source has no such item.
    pub value: Option<Bytes>,
    pub version: u64,
}

impl Cached {
    /// The value with its version; `None` for a negative entry.
    pub(crate) fn into_versioned(self) -> Option<crate::Versioned> {
        let version = self.version;
        self.value.map(|value| crate::Versioned { value, version })
    }
}

/// A cached record and how long it may live here.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub cached: Cached,
    pub ttl: Duration,
}

struct EntryTtl;

impl Expiry<String, Entry> for EntryTtl {
    fn expire_after_create(&self, _key: &String, entry: &Entry, _at: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry,
        _at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Values of this process, evicted by size (TinyLFU admission, as Caffeine) and by TTL.
#[derive(Clone)]
pub(crate) struct LocalTier {
    entries: Cache<String, Entry>,
}

impl LocalTier {
    /// At most `max_bytes` of keys and values.
    pub(crate) fn new(max_bytes: u64, metrics: CacheMetrics) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, entry: &Entry| {
                let size = key.len() + entry.cached.value.as_ref().map_or(0, Bytes::len);
                u32::try_from(size).unwrap_or(u32::MAX)
            })
            .expire_after(EntryTtl)
            .eviction_listener(move |_key: Arc<String>, _entry, cause| {
                let cause = match cause {
                    RemovalCause::Size => "size",
                    RemovalCause::Expired => "expired",
                    // Explicit removals and replacements are writes, not evictions.
                    RemovalCause::Explicit | RemovalCause::Replaced => return,
                };
                metrics.eviction(cause);
            })
            .build();
        Self { entries }
    }

    pub(crate) async fn get(&self, key: &str) -> Option<Cached> {
        self.entries.get(key).await.map(|entry| entry.cached)
    }

    /// Stores `cached` unless this tier holds a newer version of `key` (two writers of
    /// one process finishing out of order keep the newer value).
    pub(crate) async fn insert_if_newer(&self, key: &str, cached: Cached, ttl: Duration) {
        self.entries
            .entry(key.to_owned())
            .and_compute_with(|current| async move {
                match current {
                    Some(current) if current.value().cached.version > cached.version => Op::Nop,
                    _ => Op::Put(Entry { cached, ttl }),
                }
            })
            .await;
    }

    pub(crate) async fn remove(&self, key: &str) {
        self.entries.invalidate(key).await;
    }

    /// Forgets everything (after a gap in invalidations).
    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }

    /// Fills `key` once however many callers miss it at the same time: the others wait
    /// for that fill and share its result (single flight).
    pub(crate) async fn get_or_try_fill<F, E>(
        &self,
        key: &str,
        fill: F,
    ) -> Result<Cached, std::sync::Arc<E>>
    where
        F: std::future::Future<Output = Result<Entry, E>>,
        E: Send + Sync + 'static,
    {
        self.entries
            .try_get_with(key.to_owned(), fill)
            .await
            .map(|entry| entry.cached)
    }
}
