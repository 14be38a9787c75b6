//! The in-process tier: moka, bounded by bytes, each entry with its own time to live.

use bytes::Bytes;
use moka::future::Cache;
use moka::Expiry;
use std::time::{Duration, Instant};

/// A cached value and how long it may live.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub value: Bytes,
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
    pub(crate) fn new(max_bytes: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, entry: &Entry| {
                u32::try_from(key.len() + entry.value.len()).unwrap_or(u32::MAX)
            })
            .expire_after(EntryTtl)
            .build();
        Self { entries }
    }

    pub(crate) async fn get(&self, key: &str) -> Option<Bytes> {
        self.entries.get(key).await.map(|entry| entry.value)
    }

    pub(crate) async fn insert(&self, key: &str, value: Bytes, ttl: Duration) {
        self.entries
            .insert(key.to_owned(), Entry { value, ttl })
            .await;
    }

    pub(crate) async fn remove(&self, key: &str) {
        self.entries.invalidate(key).await;
    }

    /// Forgets everything (after a gap in invalidations).
    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }

    /// Loads `key` once however many callers miss it at the same time: the others wait
    /// for that load and share its result (single flight).
    pub(crate) async fn get_or_try_load<F, E>(
        &self,
        key: &str,
        load: F,
    ) -> Result<Bytes, std::sync::Arc<E>>
    where
        F: std::future::Future<Output = Result<Entry, E>>,
        E: Send + Sync + 'static,
    {
        self.entries
            .try_get_with(key.to_owned(), load)
            .await
            .map(|entry| entry.value)
    }
}
