//! Last known values, kept past their time to live for when the source fails
//! (`stale-if-error`, RFC 5861).
//!
//! A cached product expires or is evicted by a write, and the next read goes to the
//! database. If that database is down at that moment, serving the last value this node
//! saw (for a bounded time) is better than an error: that is what `stale-if-error` allows
//! an HTTP cache to do. So every value this node fills or writes through is also kept
//! here, bounded by bytes and by `stale_if_error`; a load that fails is answered from
//! here when a copy exists. Nothing here is ever served while the source answers.

use crate::local_tier::Cached;
use bytes::Bytes;
use moka::future::Cache;
use std::time::Duration;

/// The last value of each key this node saw, for at most `keep_for`.
#[derive(Clone)]
pub(crate) struct StaleCopies {
    copies: Option<Cache<String, Cached>>,
}

impl StaleCopies {
    /// Keeps copies for `keep_for` within `max_bytes`; `keep_for` zero keeps none.
    pub(crate) fn new(keep_for: Duration, max_bytes: u64) -> Self {
        let copies = (!keep_for.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, cached: &Cached| {
                    let size = key.len() + cached.value.as_ref().map_or(0, Bytes::len);
                    u32::try_from(size).unwrap_or(u32::MAX)
                })
                .time_to_live(keep_for)
                .build()
        });
        Self { copies }
    }

    /// Remembers `cached` unless a newer version of `key` is already kept.
    pub(crate) async fn remember(&self, key: &str, cached: &Cached) {
        let Some(copies) = &self.copies else { return };
        let newer_kept = copies
            .get(key)
            .await
            .is_some_and(|kept| kept.version > cached.version);
        if !newer_kept {
            copies.insert(key.to_owned(), cached.clone()).await;
        }
    }

    /// The last copy of `key`, if one is still kept.
    pub(crate) async fn get(&self, key: &str) -> Option<Cached> {
        self.copies.as_ref()?.get(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_older_copy_never_replaces_a_newer_one() {
        let copies = StaleCopies::new(Duration::from_secs(60), 1024 * 1024);
        let v2 = Cached {
            value: Some(Bytes::from_static(b"two")),
            version: 2,
        };
        let v1 = Cached {
            value: Some(Bytes::from_static(b"one")),
            version: 1,
        };
        copies.remember("k", &v2).await;
        copies.remember("k", &v1).await;
        assert_eq!(copies.get("k").await, Some(v2));
    }

    #[tokio::test]
    async fn zero_keeps_nothing() {
        let copies = StaleCopies::new(Duration::ZERO, 1024);
        let cached = Cached {
            value: None,
            version: 1,
        };
        copies.remember("k", &cached).await;
        assert_eq!(copies.get("k").await, None);
    }
}
