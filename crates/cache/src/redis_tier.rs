//! The cache's records in Redis: versioned values, negative entries and leases.
//!
//! A key `k` is a hash at `<namespace>:c:{k}` with field `v` (the version it was written at) and,
//! unless the source has no such item, field `d` (the value). Its lease is `…:c:{k}:lease`
//! on the same node. As in Facebook's memcache, a miss takes the lease (`SET NX PX`)
//! before loading; writes delete the lease, so a filler that read the source before a
//! write finds its lease gone and cannot store the old value. Write-through puts carry
//! the row's version and never replace a newer one. Versions are compared in Lua as
//! numbers: exact up to 2^53.

use crate::error::CacheError;
use crate::local_tier::Cached;
use crate::redis_ring::RedisRing;
use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::Script;
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

/// Stores a filler's record if its lease is still the one it took.
static FILL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[5])
else
  redis.call('HSET', KEYS[1], 'v', ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1",
    )
});

/// Stores a writer's record unless a newer version is cached; breaks any lease.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('DEL', KEYS[2])
local current = tonumber(redis.call('HGET', KEYS[1], 'v'))
if current and current > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[4])
else
  redis.call('HSET', KEYS[1], 'v', ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1",
    )
});

/// What a miss got when it asked for the lease.
pub(crate) enum Lease {
    /// This node loads; the token proves it still holds the lease when it fills.
    Granted(String),
    /// Another node is loading.
    Taken,
}

/// The cache's view of the Redis ring.
#[derive(Clone)]
pub(crate) struct RedisTier {
    ring: Arc<RedisRing>,
    lease_for: Duration,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl RedisTier {
    pub(crate) fn new(ring: Arc<RedisRing>, lease_for: Duration) -> Self {
        Self { ring, lease_for }
    }

    pub(crate) fn ring(&self) -> &RedisRing {
        &self.ring
    }

    fn record_key(&self, key: &str) -> String {
        self.ring.key(&format!("c:{key}"))
    }

    fn lease_key(&self, key: &str) -> String {
        self.ring.key(&format!("c:{key}:lease"))
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Cached>, CacheError> {
        let record = self.record_key(key);
        let (version, value): (Option<u64>, Option<Vec<u8>>) = self
            .ring
            .call(key, |mut connection: ConnectionManager| async move {
                redis::cmd("HMGET")
                    .arg(&record)
                    .arg("v")
                    .arg("d")
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        Ok(version.map(|version| Cached {
            value: value.map(Bytes::from),
            version,
        }))
    }

    /// Asks for the right to load `key`.
    pub(crate) async fn take_lease(&self, key: &str) -> Result<Lease, CacheError> {
        let token = format!("{:016x}", rand::random::<u64>());
        let lease = self.lease_key(key);
        let lease_ms = millis(self.lease_for);
        let granted: Option<String> = self
            .ring
            .call(key, {
                let token = token.clone();
                move |mut connection: ConnectionManager| async move {
                    redis::cmd("SET")
                        .arg(&lease)
                        .arg(&token)
                        .arg("NX")
                        .arg("PX")
                        .arg(lease_ms)
                        .query_async(&mut connection)
                        .await
                }
            })
            .await?;
        Ok(if granted.is_some() {
            Lease::Granted(token)
        } else {
            Lease::Taken
        })
    }

    /// Stores what the lease holder loaded; `false` if a write broke the lease meanwhile
    /// (the loaded record may be older than the source, so it must not be cached).
    pub(crate) async fn fill(
        &self,
        key: &str,
        token: &str,
        cached: &Cached,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        self.store(&FILL, key, Some(token), cached, ttl).await
    }

    /// Write-through: stores `cached` unless Redis holds a newer version; `false` then.
    pub(crate) async fn put(
        &self,
        key: &str,
        cached: &Cached,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        self.store(&PUT, key, None, cached, ttl).await
    }

    /// Runs a storing script (KEYS: record, lease; ARGV: [lease token], version, TTL in
    /// ms, presence flag, [value]); whether it stored.
    async fn store(
        &self,
        script: &Script,
        key: &str,
        lease_token: Option<&str>,
        cached: &Cached,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.record_key(key))
            .key(self.lease_key(key));
        if let Some(token) = lease_token {
            invocation.arg(token);
        }
        invocation.arg(cached.version).arg(millis(ttl));
        match &cached.value {
            Some(value) => invocation.arg("1").arg(value.as_ref()),
            None => invocation.arg("0"),
        };
        let stored: i64 = self
            .ring
            .call(key, |mut connection: ConnectionManager| async move {
                invocation.invoke_async(&mut connection).await
            })
            .await?;
        Ok(stored == 1)
    }

    /// Deletes the record and breaks its lease.
    pub(crate) async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let keys = [self.record_key(key), self.lease_key(key)];
        self.ring
            .call(key, |mut connection: ConnectionManager| async move {
                redis::cmd("DEL")
                    .arg(&keys[..])
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await
    }

    /// Tells every subscriber of the node that owns `key` that `key` changed.
    pub(crate) async fn publish_invalidation(
        &self,
        key: &str,
        message: String,
    ) -> Result<(), CacheError> {
        let channel = self.ring.key(crate::invalidation::CHANNEL);
        self.ring
            .call(key, |mut connection: ConnectionManager| async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(message)
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await
    }
}
