//! The shop's cache layer, built from `[cache]`: the Redis ring (when configured) and
//! the caches and counters of each entity.

use crate::error::ShopError;
use loadstar_cache::{CacheSettings, Lifetimes, RedisRing, TwoTierCache, WriteBackCounter};
use loadstar_core::config::{CacheConfig, CacheStrategy, EntityCacheConfig};
use std::sync::Arc;
use std::time::Duration;

/// Everything cached, one per process.
pub struct ShopCaches {
    /// Shared by every Redis user of the process (cache, sessions, counters); `None`:
    /// in-process only.
    pub redis: Option<Arc<RedisRing>>,
    /// Products by id (`product:{id}`) and list pages (`products:{query}`).
    pub entries: TwoTierCache,
    pub product: EntityPolicy,
    pub product_list: EntityPolicy,
    /// Views per product id, written back in batches; `None` when views are not counted.
    pub product_views: Option<WriteBackCounter>,
    pub views_flush_interval: Duration,
    /// How often counts move from this process to Redis (with Redis only).
    pub views_push_interval: Duration,
    /// How many of the most-viewed products a starting node loads ahead of requests.
    pub warm_up_products: u32,
}

/// One entity's strategy and lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct EntityPolicy {
    pub strategy: CacheStrategy,
    pub lifetimes: Lifetimes,
}

impl EntityPolicy {
    fn from_config(config: &EntityCacheConfig) -> Self {
        Self {
            strategy: config.strategy,
            lifetimes: Lifetimes {
                ttl: Duration::from_secs(config.ttl_secs),
                negative_ttl: Duration::from_secs(config.negative_ttl_secs),
            },
        }
    }

    /// Whether reads go through the cache at all.
    pub fn enabled(&self) -> bool {
        self.strategy != CacheStrategy::Off
    }
}

impl ShopCaches {
    /// Builds the tiers; needs a Tokio runtime when Redis is configured (subscriptions).
    pub fn from_config(config: &CacheConfig) -> Result<Self, ShopError> {
        let redis = if config.redis_urls.is_empty() {
            None
        } else {
            let ring = RedisRing::new(
                &config.redis_urls,
                Duration::from_millis(config.redis_timeout_ms),
            )
            .map_err(|error| ShopError::Internal(error.to_string()))?
            .with_namespace(&config.namespace);
            Some(Arc::new(ring))
        };
        let settings = CacheSettings {
            local_max_bytes: config.local_max_bytes,
            ttl_jitter: config.ttl_jitter,
            lease_for: Duration::from_millis(config.lease_ms),
            lease_wait: Duration::from_millis(config.lease_wait_ms),
            stale_if_error: Duration::from_secs(config.stale_if_error_secs),
        };
        let entries = match &redis {
            Some(ring) => TwoTierCache::with_redis(&settings, Arc::clone(ring)),
            None => TwoTierCache::local_only(&settings),
        };
        let product_views =
            (config.product_views.strategy == CacheStrategy::WriteBack).then(|| match &redis {
                Some(ring) => WriteBackCounter::with_redis("product_views", Arc::clone(ring)),
                None => WriteBackCounter::local_only("product_views"),
            });
        Ok(Self {
            entries,
            product: EntityPolicy::from_config(&config.product),
            product_list: EntityPolicy::from_config(&config.product_list),
            product_views,
            views_flush_interval: Duration::from_millis(config.product_views.flush_interval_ms),
            views_push_interval: Duration::from_millis(config.product_views.push_interval_ms),
            warm_up_products: config.warm_up_products,
            redis,
        })
    }
}
