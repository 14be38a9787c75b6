//! The cache the application uses: the in-process tier in front of the Redis tier.

use crate::error::CacheError;
use crate::local_tier::{Entry, LocalTier};
use crate::redis_tier::RedisTier;
use bytes::Bytes;
use std::future::Future;
use std::time::Duration;

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
}

impl TwoTierCache {
    pub fn new(settings: &CacheSettings) -> Result<Self, CacheError> {
        let redis = if settings.redis_urls.is_empty() {
            None
        } else {
            Some(RedisTier::new(
                &settings.redis_urls,
                settings.redis_timeout,
            )?)
        };
        Ok(Self {
            local: LocalTier::new(settings.local_max_bytes),
            redis,
            ttl_jitter: settings.ttl_jitter.clamp(0.0, 1.0),
        })
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

    /// Stores `value` in every tier for about `ttl` (write-through).
    pub async fn set(&self, key: &str, value: Bytes, ttl: Duration) {
        let ttl = self.jittered(ttl);
        if let Some(redis) = &self.redis {
            if let Err(error) = redis.set(key, value.clone(), ttl).await {
                tracing::debug!(key, error = %error, "redis tier bypassed on write");
            }
        }
        self.local.insert(key, value, ttl).await;
    }

    /// Removes `key` from every tier.
    pub async fn delete(&self, key: &str) {
        if let Some(redis) = &self.redis {
            if let Err(error) = redis.delete(key).await {
                tracing::warn!(key, error = %error, "redis tier unreachable on delete; its copy expires with its ttl");
            }
        }
        self.local.remove(key).await;
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
