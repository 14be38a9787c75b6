//! The cache the application uses: the in-process tier in front of the Redis tier.

use crate::error::CacheError;
use crate::invalidation::{self, Evictor};
use crate::invalidation_log::InvalidationLog;
use crate::local_tier::{Cached, Entry, LocalTier};
use crate::metrics::{CacheMetrics, CacheStats};
use crate::redelivery::Redelivery;
use crate::redis_ring::RedisRing;
use crate::redis_tier::{Lease, RedisTier};
use crate::stale_copies::StaleCopies;
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// While this node cannot hear other nodes' invalidations, its in-process copies live at
/// most this long: the bound on how stale a Redis outage can make a read.
pub const DEGRADED_LOCAL_TTL: Duration = Duration::from_secs(1);

/// First pause between looks at a key another node is loading; doubles up to 20 ms.
const LEASE_POLL_START: Duration = Duration::from_millis(2);
const LEASE_POLL_MAX: Duration = Duration::from_millis(20);

/// How a [`TwoTierCache`] is built.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Bytes of keys and values the in-process tier may hold.
    pub local_max_bytes: u64,
    /// TTLs are shortened by a random fraction up to this, so that keys written
    /// together do not expire together (0.1: up to 10 %).
    pub ttl_jitter: f64,
    /// How long a node that missed a key may load it before its lease lapses.
    pub lease_for: Duration,
    /// How long a miss waits for another node's load before loading itself.
    pub lease_wait: Duration,
    /// How long the last known value of a key is kept to answer a read whose load fails
    /// (the database is down): `stale-if-error`. Zero: never served stale.
    pub stale_if_error: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            local_max_bytes: 64 * 1024 * 1024,
            ttl_jitter: 0.1,
            lease_for: Duration::from_secs(2),
            lease_wait: Duration::from_millis(200),
            stale_if_error: Duration::from_secs(300),
        }
    }
}

/// How long one kind of entry lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// A cached value.
    pub ttl: Duration,
    /// A cached "the source has no such item" (zero: not cached).
    pub negative_ttl: Duration,
}

/// A value from the source with the version it has there (a row's version column):
/// a write-through put never replaces a newer version with an older one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Bytes,
    pub version: u64,
}

/// In-process values in front of shared Redis values. Reads go local → Redis → source;
/// a Redis that fails or is slow is bypassed (its breaker then skips it for a while), so
/// it costs at most its timeout and never a failed request.
pub struct TwoTierCache {
    local: LocalTier,
    /// Last known values, served only when a load fails.
    stale: StaleCopies,
    redis: Option<RedisTier>,
    settings: CacheSettings,
    log: InvalidationLog,
    metrics: CacheMetrics,
    /// This cache among its peers, so it ignores its own invalidations.
    origin: String,
    /// One flag per Redis node: listening for invalidations.
    subscribed: Vec<watch::Receiver<bool>>,
    /// Invalidations that did not reach Redis yet (with Redis only).
    redelivery: Option<Redelivery>,
    /// Ends the subscriptions when the cache is dropped.
    _stop: DropGuard,
}

impl TwoTierCache {
    /// An in-process cache only (the embedded mode).
    pub fn local_only(settings: &CacheSettings) -> Self {
        Self::build(settings, None)
    }

    /// The in-process tier in front of `ring`; subscribes to invalidations on every node
    /// (in the background: see [`TwoTierCache::wait_until_subscribed`]). Needs a Tokio
    /// runtime.
    pub fn with_redis(settings: &CacheSettings, ring: Arc<RedisRing>) -> Self {
        Self::build(settings, Some(ring))
    }

    fn build(settings: &CacheSettings, ring: Option<Arc<RedisRing>>) -> Self {
        let metrics = CacheMetrics::default();
        let local = LocalTier::new(settings.local_max_bytes, metrics.clone());
        let stale = StaleCopies::new(settings.stale_if_error, settings.local_max_bytes / 4);
        let log = InvalidationLog::new();
        let origin = format!("{:016x}", rand::random::<u64>());
        let stop = CancellationToken::new();
        let mut subscribed = Vec::new();
        let evictor = Evictor {
            origin: origin.clone(),
            local: local.clone(),
            log: log.clone(),
            metrics: metrics.clone(),
        };
        if let Some(ring) = &ring {
            for client in ring.clients() {
                let (sender, receiver) = watch::channel(false);
                subscribed.push(receiver);
                tokio::spawn(invalidation::listen(
                    client.clone(),
                    ring.key(invalidation::CHANNEL),
                    evictor.clone(),
                    sender,
                    stop.clone(),
                ));
            }
        }
        let redis = ring.map(|ring| RedisTier::new(ring, settings.lease_for));
        let redelivery = redis.as_ref().map(|redis| {
            Redelivery::start(redis.clone(), origin.clone(), metrics.clone(), stop.clone())
        });
        Self {
            local,
            stale,
            redis,
            redelivery,
            settings: CacheSettings {
                ttl_jitter: settings.ttl_jitter.clamp(0.0, 1.0),
                ..settings.clone()
            },
            log,
            metrics,
            origin,
            subscribed,
            _stop: stop.drop_guard(),
        }
    }

    /// Waits until this cache hears invalidations from every Redis node, up to
    /// `timeout`; `false` if it does not by then. Until it does, other nodes' writes may
    /// not evict this node's in-process copies (which therefore live at most
    /// [`DEGRADED_LOCAL_TTL`]).
    pub async fn wait_until_subscribed(&self, timeout: Duration) -> bool {
        let all = async {
            for flag in &self.subscribed {
                let mut flag = flag.clone();
                if flag.wait_for(|listening| *listening).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, all).await.unwrap_or(false)
    }

    /// Counts since this cache was built.
    pub fn stats(&self) -> CacheStats {
        let mut stats = self.metrics.snapshot();
        if let Some(redis) = &self.redis {
            stats.bypasses = redis.ring().bypasses();
        }
        if let Some(redelivery) = &self.redelivery {
            stats.undelivered_invalidations = redelivery.len() as u64;
        }
        stats
    }

    /// The cached value of `key` from the nearest tier that has it (`None` also when
    /// the cache only knows that the source has no such item).
    pub async fn get(&self, key: &str) -> Option<Bytes> {
        if let Some(cached) = self.local.get(key).await {
            self.metrics.hit("local");
            return cached.value;
        }
        self.metrics.miss("local");
        let redis = self.redis.as_ref()?;
        match redis.get(key).await {
            Ok(Some(cached)) => {
                self.metrics.hit("redis");
                cached.value
            }
            Ok(None) => {
                self.metrics.miss("redis");
                None
            }
            Err(error) => {
                tracing::debug!(key, error = %error, "redis tier bypassed");
                None
            }
        }
    }

    /// Write-through: stores `value` (or, with `None`, "no such item") at `version` in
    /// every tier, unless Redis already holds a newer version, and evicts the key from
    /// the other nodes' in-process tiers.
    pub async fn put(&self, key: &str, value: Option<Bytes>, version: u64, lifetimes: Lifetimes) {
        let ttl = self.ttl_for(&value, lifetimes);
        let cached = Cached { value, version };
        self.stale.remember(key, &cached).await;
        self.log.record(key);
        let mut newest = true;
        if let Some(redis) = &self.redis {
            match redis.put(key, &cached, ttl).await {
                Ok(stored) => {
                    newest = stored;
                    self.broadcast(redis, key).await;
                }
                Err(error) => self.redeliver_later(key, &error),
            }
        }
        if newest && !ttl.is_zero() {
            self.local
                .insert_if_newer(key, cached, self.local_ttl(ttl))
                .await;
        } else {
            self.local.remove(key).await;
        }
    }

    /// Removes `key` from every tier of every node, and breaks any lease on it so an
    /// in-flight load cannot store what it read before this write.
    pub async fn invalidate(&self, key: &str) {
        self.log.record(key);
        if let Some(redis) = &self.redis {
            match redis.delete(key).await {
                Ok(()) => self.broadcast(redis, key).await,
                Err(error) => self.redeliver_later(key, &error),
            }
        }
        self.local.remove(key).await;
    }

    async fn broadcast(&self, redis: &RedisTier, key: &str) {
        let message = invalidation::message(&self.origin, key);
        match redis.publish_invalidation(key, message).await {
            Ok(()) => self.metrics.invalidation_sent(),
            Err(error) => self.redeliver_later(key, &error),
        }
    }

    /// The write of `key` did not fully reach Redis: retry its invalidation until it does.
    fn redeliver_later(&self, key: &str, error: &CacheError) {
        tracing::debug!(key, error = %error, "invalidation not delivered; retrying in the background");
        if let Some(redelivery) = &self.redelivery {
            redelivery.push(key);
        }
    }

    /// Cache-aside: the cached value and its version, or `load`'s, stored in both tiers.
    /// `Ok(None)`: the source has no such item (cached for `negative_ttl`). Concurrent misses of one key
    /// in this process run `load` once (single flight); across processes the Redis lease
    /// lets one load while the others wait up to `lease_wait` for its value.
    pub async fn get_or_load<F, Fut, E>(
        &self,
        key: &str,
        lifetimes: Lifetimes,
        load: F,
    ) -> Result<Option<Versioned>, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Versioned>, E>>,
        E: std::fmt::Display,
    {
        if let Some(cached) = self.local.get(key).await {
            self.metrics.hit("local");
            return Ok(cached.into_versioned());
        }
        self.metrics.miss("local");
        let started = self.log.now();
        let filled = match self
            .local
            .get_or_try_fill(key, self.fill(key, lifetimes, started, load))
            .await
        {
            Ok(filled) => filled,
            Err(error) => {
                return match self.stale.get(key).await {
                    Some(stale) => {
                        self.metrics.stale_served();
                        tracing::debug!(key, error = %error, "load failed; served the last known value");
                        Ok(stale.into_versioned())
                    }
                    None => Err((*error).clone()),
                };
            }
        };
        self.stale.remember(key, &filled).await;
        if self.log.changed_since(key, started) {
            // A write landed while this fill was in flight: what it read may be older.
            self.local.remove(key).await;
        }
        Ok(filled.into_versioned())
    }

    /// The entry a local miss stores: from Redis, or loaded under a lease.
    async fn fill<F, Fut, E>(
        &self,
        key: &str,
        lifetimes: Lifetimes,
        started: u64,
        load: F,
    ) -> Result<Entry, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Versioned>, E>>,
        E: std::fmt::Display,
    {
        let Some(redis) = &self.redis else {
            let cached = self.load(load).await?;
            return Ok(self.local_entry(cached, lifetimes, true));
        };
        let lease = match redis.get(key).await {
            Ok(Some(cached)) => {
                self.metrics.hit("redis");
                return Ok(self.local_entry(cached, lifetimes, true));
            }
            Ok(None) => {
                self.metrics.miss("redis");
                redis.take_lease(key).await
            }
            Err(error) => Err(error),
        };
        match lease {
            Ok(Lease::Granted(token)) => {
                let cached = self.load(load).await?;
                let ttl = self.ttl_for(&cached.value, lifetimes);
                let stored = redis
                    .fill(key, &token, &cached, ttl)
                    .await
                    .unwrap_or_else(|error| {
                        tracing::debug!(key, error = %error, "redis tier bypassed on fill");
                        true
                    });
                Ok(self.local_entry(cached, lifetimes, stored))
            }
            Ok(Lease::Taken) => {
                self.metrics.lease_wait();
                if let Some(cached) = self.await_lease_holder(redis, key, started).await {
                    return Ok(self.local_entry(cached, lifetimes, true));
                }
                // The holder is slow or gone: serve from the source, keep nothing.
                let cached = self.load(load).await?;
                Ok(self.local_entry(cached, lifetimes, false))
            }
            Err(error) => {
                tracing::debug!(key, error = %error, "redis tier bypassed");
                let cached = self.load(load).await?;
                Ok(self.local_entry(cached, lifetimes, true))
            }
        }
    }

    /// Polls Redis for the record another node is loading, up to `lease_wait`.
    async fn await_lease_holder(
        &self,
        redis: &RedisTier,
        key: &str,
        started: u64,
    ) -> Option<Cached> {
        let deadline = Instant::now() + self.settings.lease_wait;
        let mut pause = LEASE_POLL_START;
        while Instant::now() + pause < deadline && !self.log.changed_since(key, started) {
            tokio::time::sleep(pause).await;
            if let Ok(Some(cached)) = redis.get(key).await {
                return Some(cached);
            }
            pause = (pause * 2).min(LEASE_POLL_MAX);
        }
        None
    }

    async fn load<F, Fut, E>(&self, load: F) -> Result<Cached, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Versioned>, E>>,
        E: std::fmt::Display,
    {
        let began = Instant::now();
        let loaded = load()
            .await
            .map_err(|error| CacheError::Load(error.to_string()));
        self.metrics.load(began.elapsed());
        Ok(match loaded? {
            Some(found) => Cached {
                value: Some(found.value),
                version: found.version,
            },
            None => Cached {
                value: None,
                version: 0,
            },
        })
    }

    /// The in-process entry for `cached`; `keep: false` hands the value to the waiting
    /// callers without keeping it (a zero TTL).
    fn local_entry(&self, cached: Cached, lifetimes: Lifetimes, keep: bool) -> Entry {
        let ttl = if keep {
            self.local_ttl(self.ttl_for(&cached.value, lifetimes))
        } else {
            Duration::ZERO
        };
        Entry { cached, ttl }
    }

    /// The jittered lifetime of a value or of a negative entry.
    fn ttl_for(&self, value: &Option<Bytes>, lifetimes: Lifetimes) -> Duration {
        let ttl = if value.is_some() {
            lifetimes.ttl
        } else {
            lifetimes.negative_ttl
        };
        ttl.mul_f64(1.0 - self.settings.ttl_jitter * rand::random::<f64>())
    }

    /// In-process copies are capped at [`DEGRADED_LOCAL_TTL`] while this node cannot
    /// hear invalidations from every Redis node.
    fn local_ttl(&self, ttl: Duration) -> Duration {
        let deaf = self.subscribed.iter().any(|flag| !*flag.borrow());
        if deaf {
            ttl.min(DEGRADED_LOCAL_TTL)
        } else {
            ttl
        }
    }
}
