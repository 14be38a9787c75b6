//! The cache layer: an in-process tier in front of Redis.
//!
//! - [`TwoTierCache`] is what the application uses: `get`, `set` (write-through to both
//!   tiers), `delete`, and `get_or_load` (cache-aside with single flight: concurrent
//!   misses of a key in one process cause one load). TTLs carry jitter so keys written
//!   together do not expire together.
//! - The in-process tier is moka (TinyLFU admission, like Caffeine), bounded by the bytes
//!   of its keys and values, each entry with its own TTL.
//! - The Redis tier spreads keys over one or more nodes on a [`HashRing`] (consistent
//!   hashing with virtual nodes: adding a node moves about 1/N of the keys). Every call
//!   has a timeout of milliseconds and passes a circuit breaker, so a dead or slow Redis
//!   is bypassed — reads fall through to the source — and used again once it answers.
//!
//! - Writes broadcast an invalidation over Redis pub/sub, so every other node evicts its
//!   in-process copy (and a node that lost its subscription starts cold). A write whose
//!   invalidation Redis did not take is retried in the background until it lands.
//!
//! Issue 4 builds on this: versioned values against racing reads, leases against
//! stampedes across nodes, write-back counters, and the shop's reads behind it.

mod counters;
mod error;
mod hash_ring;
mod invalidation;
mod invalidation_log;
mod local_tier;
mod metrics;
mod redelivery;
mod redis_ring;
mod redis_tier;
mod stale_copies;
mod two_tier;

pub use counters::{CountBatch, WriteBackCounter};
pub use error::CacheError;
pub use hash_ring::{HashRing, VIRTUAL_NODES};
pub use invalidation::CHANNEL as INVALIDATION_CHANNEL;
pub use metrics::CacheStats;
pub use redelivery::RETRY_INTERVAL as INVALIDATION_RETRY_INTERVAL;
pub use redis_ring::{RedisRing, DEFAULT_NAMESPACE};
pub use two_tier::{CacheSettings, Lifetimes, TwoTierCache, Versioned, DEGRADED_LOCAL_TTL};
