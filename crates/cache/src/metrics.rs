//! What the cache reports: Prometheus series through the `metrics` facade, and the same
//! counts per cache instance for tests and the admin view.
//!
//! Series (label `tier` = `local` or `redis` where it applies):
//! `cache_hits_total`, `cache_misses_total`, `cache_loads_total`, `cache_load_seconds`,
//! `cache_evictions_total`, `cache_invalidations_sent_total`,
//! `cache_invalidations_received_total`, `cache_lease_waits_total`,
//! `cache_redis_bypasses_total` (calls skipped or failed while Redis was down or slow),
//! `cache_stale_served_total` (reads answered with a last known value because the load
//! failed: the database was down),
//! the gauge `cache_invalidations_pending` (writes whose invalidation is being retried
//! because Redis did not take it), and the gauge `cache_invalidation_subscriptions` (invalidation channels this process
//! listens on: one per cache per Redis node when all is well; lower means some writes
//! elsewhere go unheard and in-process copies live at most a second).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counts of one cache since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub local_hits: u64,
    pub local_misses: u64,
    pub redis_hits: u64,
    pub redis_misses: u64,
    /// Loads from the source (the database): what a stampede would multiply.
    pub loads: u64,
    pub evictions: u64,
    pub invalidations_sent: u64,
    pub invalidations_received: u64,
    /// Times a miss waited for another node's lease instead of loading.
    pub lease_waits: u64,
    /// Redis calls skipped (breaker open) or failed (down, slow).
    pub bypasses: u64,
    /// Reads answered with a last known value because their load failed.
    pub stale_served: u64,
    /// Writes whose invalidation has not reached Redis yet (being retried).
    pub undelivered_invalidations: u64,
}

#[derive(Debug, Default)]
struct Counts {
    local_hits: AtomicU64,
    local_misses: AtomicU64,
    redis_hits: AtomicU64,
    redis_misses: AtomicU64,
    loads: AtomicU64,
    evictions: AtomicU64,
    invalidations_sent: AtomicU64,
    invalidations_received: AtomicU64,
    lease_waits: AtomicU64,
    bypasses: AtomicU64,
    stale_served: AtomicU64,
}

/// Cheap to clone; every clone counts into the same totals.
#[derive(Debug, Clone, Default)]
pub(crate) struct CacheMetrics(Arc<Counts>);

fn bump(count: &AtomicU64) {
    count.fetch_add(1, Ordering::Relaxed);
}

impl CacheMetrics {
    pub(crate) fn hit(&self, tier: &'static str) {
        bump(if tier == "local" {
            &self.0.local_hits
        } else {
            &self.0.redis_hits
        });
        metrics::counter!("cache_hits_total", "tier" => tier).increment(1);
    }

    pub(crate) fn miss(&self, tier: &'static str) {
        bump(if tier == "local" {
            &self.0.local_misses
        } else {
            &self.0.redis_misses
        });
        metrics::counter!("cache_misses_total", "tier" => tier).increment(1);
    }

    pub(crate) fn load(&self, took: Duration) {
        bump(&self.0.loads);
        metrics::counter!("cache_loads_total").increment(1);
        metrics::histogram!("cache_load_seconds").record(took.as_secs_f64());
    }

    pub(crate) fn eviction(&self, cause: &'static str) {
        bump(&self.0.evictions);
        metrics::counter!("cache_evictions_total", "tier" => "local", "cause" => cause)
            .increment(1);
    }

    pub(crate) fn invalidation_sent(&self) {
        bump(&self.0.invalidations_sent);
        metrics::counter!("cache_invalidations_sent_total").increment(1);
    }

    pub(crate) fn invalidation_received(&self) {
        bump(&self.0.invalidations_received);
        metrics::counter!("cache_invalidations_received_total").increment(1);
    }

    pub(crate) fn lease_wait(&self) {
        bump(&self.0.lease_waits);
        metrics::counter!("cache_lease_waits_total").increment(1);
    }

    pub(crate) fn stale_served(&self) {
        bump(&self.0.stale_served);
        metrics::counter!("cache_stale_served_total").increment(1);
    }

    pub(crate) fn bypass(&self) {
        bump(&self.0.bypasses);
        metrics::counter!("cache_redis_bypasses_total").increment(1);
    }

    /// An invalidation subscription started (`true`) or was lost (`false`).
    pub(crate) fn subscription(&self, listening: bool) {
        let gauge = metrics::gauge!("cache_invalidation_subscriptions");
        if listening {
            gauge.increment(1.0);
        } else {
            gauge.decrement(1.0);
        }
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        let read = |count: &AtomicU64| count.load(Ordering::Relaxed);
        let counts = &self.0;
        CacheStats {
            local_hits: read(&counts.local_hits),
            local_misses: read(&counts.local_misses),
            redis_hits: read(&counts.redis_hits),
            redis_misses: read(&counts.redis_misses),
            loads: read(&counts.loads),
            evictions: read(&counts.evictions),
            invalidations_sent: read(&counts.invalidations_sent),
            invalidations_received: read(&counts.invalidations_received),
            lease_waits: read(&counts.lease_waits),
            bypasses: read(&counts.bypasses),
            stale_served: read(&counts.stale_served),
            undelivered_invalidations: 0,
        }
    }
}
