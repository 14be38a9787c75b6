//! `[cache]`: the two cache tiers and, per entity, which strategy the shop uses.

use serde::{Deserialize, Deserializer, Serialize};

/// The cache layer. With no `redis_urls` it is in-process only (the embedded default);
/// with Redis, api nodes also keep sessions and counters there and become stateless.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Redis nodes, spread over a consistent-hash ring. In the environment a
    /// comma-separated list: `LOADSTAR_CACHE__REDIS_URLS=redis://a,redis://b`.
    #[serde(
        deserialize_with = "list_or_comma_separated",
        serialize_with = "serialize_redacted_urls"
    )]
    pub redis_urls: Vec<String>,
    /// Prefix of every Redis key and channel, so several deployments can share a Redis.
    pub namespace: String,
    /// Bytes of keys and values the in-process tier may hold.
    pub local_max_bytes: u64,
    /// Longest a Redis call may take before the tier is bypassed for that call.
    pub redis_timeout_ms: u64,
    /// TTLs are shortened by a random fraction up to this (0.1: up to 10 %), so keys
    /// written together do not expire together.
    pub ttl_jitter: f64,
    /// How long a node that missed a key may load it before others stop waiting.
    pub lease_ms: u64,
    /// How long other nodes wait for the lease holder's value before loading themselves.
    pub lease_wait_ms: u64,
    /// How long this node keeps the last value of each key it read or wrote, to answer a
    /// read whose load fails (the database is down) instead of an error: RFC 5861's
    /// `stale-if-error`. 0: never serve stale.
    pub stale_if_error_secs: u64,
    /// On start, pre-load this many of the most-viewed products (0: start cold).
    pub warm_up_products: u32,
    /// Single product reads (`GET /v1/products/{id}`): `cache_aside` (writes evict),
    /// `write_through` (writes store the new value), or `off`.
    pub product: EntityCacheConfig,
    /// Product list pages: `ttl` (served from cache until they expire; writes do not
    /// evict them) or `off`.
    pub product_list: EntityCacheConfig,
    /// Product view counts: `write_back` (counted in the cache, flushed to the database
    /// in batches every `flush_interval_ms`) or `off` (not counted).
    pub product_views: WriteBackConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            redis_urls: Vec::new(),
            namespace: "loadstar".to_owned(),
            local_max_bytes: 64 * 1024 * 1024,
            redis_timeout_ms: 50,
            ttl_jitter: 0.1,
            lease_ms: 2_000,
            lease_wait_ms: 200,
            stale_if_error_secs: 300,
            warm_up_products: 0,
            product: EntityCacheConfig {
                strategy: CacheStrategy::WriteThrough,
                ttl_secs: 300,
                negative_ttl_secs: 5,
            },
            product_list: EntityCacheConfig {
                strategy: CacheStrategy::Ttl,
                ttl_secs: 2,
                negative_ttl_secs: 0,
            },
            product_views: WriteBackConfig::default(),
        }
    }
}

/// How one kind of entity is cached.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntityCacheConfig {
    pub strategy: CacheStrategy,
    /// Lifetime of a cached value (before jitter).
    pub ttl_secs: u64,
    /// Lifetime of a cached "does not exist", so a missing id is not re-queried on
    /// every request (0: misses are not cached).
    #[serde(default)]
    pub negative_ttl_secs: u64,
}

/// Counters kept in the cache and written to the database later.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriteBackConfig {
    pub strategy: CacheStrategy,
    /// Accumulated counts reach the database this often; an api node that crashes
    /// (in-process only) loses at most the counts of one interval.
    pub flush_interval_ms: u64,
    /// With Redis, each api node moves its counts to Redis this often (one pipeline per
    /// Redis node); a crashed node loses at most the counts of one push interval.
    pub push_interval_ms: u64,
}

impl Default for WriteBackConfig {
    fn default() -> Self {
        Self {
            strategy: CacheStrategy::WriteBack,
            flush_interval_ms: 1_000,
            push_interval_ms: 100,
        }
    }
}

/// The caching strategies of the shop's entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStrategy {
    /// Not cached: every read goes to the database.
    Off,
    /// Cached until the (jittered) TTL ends; writes do not evict.
    Ttl,
    /// Lazy loading: a miss loads from the database and fills the cache; writes evict.
    CacheAside,
    /// Cache-aside reads; writes store the new value in the cache right after the database.
    WriteThrough,
    /// Writes go to the cache and reach the database later, in batches.
    WriteBack,
}

impl CacheConfig {
    /// Checks the strategies against what each entity supports.
    pub(super) fn validate(&self) -> Result<(), String> {
        use CacheStrategy::{CacheAside, Off, Ttl, WriteBack, WriteThrough};
        let checks = [
            (
                "cache.product.strategy",
                self.product.strategy,
                &[Off, CacheAside, WriteThrough][..],
            ),
            (
                "cache.product_list.strategy",
                self.product_list.strategy,
                &[Off, Ttl][..],
            ),
            (
                "cache.product_views.strategy",
                self.product_views.strategy,
                &[Off, WriteBack][..],
            ),
        ];
        for (field, strategy, allowed) in checks {
            if !allowed.contains(&strategy) {
                return Err(format!(
                    "{field} must be one of {}",
                    allowed
                        .iter()
                        .map(CacheStrategy::name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if !(0.0..=0.5).contains(&self.ttl_jitter) {
            return Err("cache.ttl_jitter must be between 0 and 0.5".to_owned());
        }
        let intervals = [
            ("cache.redis_timeout_ms", self.redis_timeout_ms),
            (
                "cache.product_views.flush_interval_ms",
                self.product_views.flush_interval_ms,
            ),
            (
                "cache.product_views.push_interval_ms",
                self.product_views.push_interval_ms,
            ),
        ];
        if let Some((field, _)) = intervals.iter().find(|(_, millis)| *millis == 0) {
            return Err(format!("{field} must be at least 1"));
        }
        if self.namespace.is_empty() || self.namespace.contains(char::is_whitespace) {
            return Err("cache.namespace must be a non-empty word".to_owned());
        }
        if let Some(bad) = self
            .redis_urls
            .iter()
            .find(|url| !url.starts_with("redis://") && !url.starts_with("rediss://"))
        {
            return Err(format!("cache.redis_urls: {bad:?} is not a redis:// URL"));
        }
        Ok(())
    }
}

impl CacheStrategy {
    /// The name used in the configuration.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Ttl => "ttl",
            Self::CacheAside => "cache_aside",
            Self::WriteThrough => "write_through",
            Self::WriteBack => "write_back",
        }
    }
}

fn serialize_redacted_urls<S: serde::Serializer>(
    urls: &[String],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = serializer.serialize_seq(Some(urls.len()))?;
    for url in urls {
        seq.serialize_element(&crate::redaction::redact_url_password(url))?;
    }
    seq.end()
}

/// A list from TOML, or one comma-separated string from the environment.
fn list_or_comma_separated<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    let items = match ListOrText::deserialize(deserializer)? {
        ListOrText::List(items) => items,
        ListOrText::Text(text) => text.split(',').map(str::to_owned).collect(),
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect())
}
