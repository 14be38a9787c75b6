//! The cache the application uses: the in-process tier in front of the Redis tier.

use crate::error::CacheError;
use crate::invalidation;
use crate::local_tier::{Entry, LocalTier};
use crate::redis_tier::RedisTier;
use bytes::Bytes;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How a [`TwoTierCache`] is built.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Bytes of keys and values the in-process tier may hold.
    pub local_max_bytes: u64,
    /// Redis nodes, spread over a consistent-hash ring; none: in-process only.
    pub redis_urls: Vec<String>,
    /// Longest a Redis call may take before the tier is bypassed for that call.
    pub redis_timeout: Duration,
    /// TTLs are shortened by a random fraction up to this, so that keys written
    /// together do not expire together (0.1: up to 10 %).
    pub ttl_jitter: f64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            local_max_bytes: 64 * 1024 * 1024,
            redis_urls: Vec::new(),
            redis_timeout: Duration::from_millis(50),
            ttl_jitter: 0.1,
        }
    }
}

/// In-process values in front of shared Redis values. Reads go local → Redis → source;
/// a Redis that fails or is slow is bypassed (the breaker then skips it for a while), so
/// it costs at most its timeout and never a failed request.
pub struct TwoTierCache {
    local: LocalTier,
    redis: Option<RedisTier>,
    ttl_jitter: f64,
    /// This cache among its peers, so it ignores its own invalidations.
    origin: String,
    /// One flag per Redis node: listening for invalidations.
    subscribed: Vec<watch::Receiver<bool>>,
    /// Ends the subscriptions when the cache is dropped.
    _stop: DropGuard,
}

impl TwoTierCache {
    /// Builds the tiers; with Redis, subscribes to invalidations on every node (in the
    /// background: see [`TwoTierCache::wait_until_subscribed`]). Needs a Tokio runtime.
    pub fn new(settings: &CacheSettings) -> Result<Self, CacheError> {
        let redis = if settings.redis_urls.is_empty() {
            None
        } else {
            Some(RedisTier::new(
                &settings.redis_urls,
                settings.redis_timeout,
            )?)
        };
        let local = LocalTier::new(settings.local_max_bytes);
        let origin = format!("{:016x}", rand::random::<u64>());
        let stop = CancellationToken::new();
        let mut subscribed = Vec::new();
        for client in redis.iter().flat_map(RedisTier::clients) {
            let (sender, receiver) = watch::channel(false);
            subscribed.push(receiver);
            tokio::spawn(invalidation::listen(
                client.clone(),
                origin.clone(),
                local.clone(),
                sender,
                stop.clone(),
            ));
        }
        Ok(Self {
            local,
            redis,
            ttl_jitter: settings.ttl_jitter.clamp(0.0, 1.0),
            origin,
            subscribed,
            _stop: stop.drop_guard(),
        })
    }

    /// Waits until this cache hears invalidations from every Redis node, up to
    /// `timeout`; `false` if it does not by then. Until it does, other nodes' writes may
    /// not evict this node's in-process copies.
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

    /// The cached value of `key`, from the nearest tier that has it.
    pub async fn get(&self, key: &str) -> Option<Bytes> {
        if let Some(value) = self.local.get(key).await {
            return Some(value);
        }
        let redis = self.redis.as_ref()?;
        match redis.get(key).await {
            Ok(value) => value,
            Err(error) => {
                tracing::debug!(key, error = %error, "redis tier bypassed");
                None
            }
        }
    }

    /// Stores `value` in every tier for about `ttl` (write-through), and evicts older
    /// copies from the other nodes' in-process tiers.
    pub async fn set(&self, key: &str, value: Bytes, ttl: Duration) {
        let ttl = self.jittered(ttl);
        if let Some(redis) = &self.redis {
            if let Err(error) = redis.set(key, value.clone(), ttl).await {
                tracing::debug!(key, error = %error, "redis tier bypassed on write");
            }
            self.broadcast(redis, key).await;
        }
        self.local.insert(key, value, ttl).await;
    }

    /// Removes `key` from every tier of every node.
    pub async fn delete(&self, key: &str) {
        if let Some(redis) = &self.redis {
            if let Err(error) = redis.delete(key).await {
                tracing::warn!(key, error = %error, "redis tier unreachable on delete; its copy expires with its ttl");
            }
            self.broadcast(redis, key).await;
        }
        self.local.remove(key).await;
    }

    async fn broadcast(&self, redis: &RedisTier, key: &str) {
        let message = invalidation::message(&self.origin, key);
        if let Err(error) = redis.publish_invalidation(key, message).await {
            tracing::warn!(key, error = %error, "cannot broadcast an invalidation; other nodes keep their copy until its ttl");
        }
    }

    /// Cache-aside: the cached value, or `load`'s, stored in both tiers for `ttl`.
    /// Concurrent misses of one key in this process run `load` once (single flight).
    pub async fn get_or_load<F, Fut, E>(
        &self,
        key: &str,
        ttl: Duration,
        load: F,
    ) -> Result<Bytes, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let ttl = self.jittered(ttl);
        let filled = self
            .local
            .get_or_try_load(key, async {
                if let Some(redis) = &self.redis {
                    match redis.get(key).await {
                        Ok(Some(value)) => return Ok(Entry { value, ttl }),
                        Ok(None) => {}
                        Err(error) => tracing::debug!(key, error = %error, "redis tier bypassed"),
                    }
                }
                let value = load()
                    .await
                    .map_err(|error| CacheError::Load(error.to_string()))?;
                if let Some(redis) = &self.redis {
                    if let Err(error) = redis.set(key, value.clone(), ttl).await {
                        tracing::debug!(key, error = %error, "redis tier bypassed on fill");
                    }
                }
                Ok(Entry { value, ttl })
            })
            .await;
        filled.map_err(|error: std::sync::Arc<CacheError>| (*error).clone())
    }

    fn jittered(&self, ttl: Duration) -> Duration {
        ttl.mul_f64(1.0 - self.ttl_jitter * rand::random::<f64>())
    }
}
