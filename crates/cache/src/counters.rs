//! Write-back counters: increments land in the cache at once and reach the database
//! later, in batches.
//!
//! An increment is a map update in this process: no I/O on the request's path. Without
//! Redis the counts stay here until a flush; a crash loses what was counted since the
//! last flush (one flush interval). With Redis, [`WriteBackCounter::push`] moves them
//! every push interval (one `HINCRBY` pipeline per node, in `MULTI`), so a crashed api
//! node loses at most one push interval's counts and nothing that reached Redis; counts
//! Redis does not take stay here and are flushed from here. A flush claims a
//! node's pending counts atomically (renamed to a per-counter "flushing" hash tagged with
//! a batch id); the sink applies the batch under that id, once, and the hash is deleted
//! after. A flusher that dies in between leaves the hash for the next one, which re-sends
//! the same batch id: the sink's idempotency makes that exactly once.

use crate::error::CacheError;
use crate::redis_ring::RedisRing;
use redis::aio::ConnectionManager;
use redis::Script;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// Field of a flushing hash that holds its batch id (members never start with `#`; `#at`
/// holds when the batch was last claimed).
const BATCH_FIELD: &str = "#batch";

/// Claims the pending hash as a batch, or takes over the batch a flusher left more than
/// `ARGV[3]` ms ago (it died, or failed and released it); nothing while another flusher
/// is at work on it.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if redis.call('EXISTS', KEYS[2]) == 1 then
  local at = tonumber(redis.call('HGET', KEYS[2], '#at') or '0')
  if now - at < tonumber(ARGV[3]) then return {} end
else
  if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
redis.call('HSET', KEYS[2], '#at', now)
return redis.call('HGETALL', KEYS[2])",
    )
});

/// A flusher that has held a batch this long without finishing is presumed dead.
const TAKEOVER_AFTER: Duration = Duration::from_secs(30);

/// A batch of accumulated counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountBatch {
    /// Identifies a batch claimed from Redis, so applying it twice can be detected;
    /// `None` for counts from this process (they are never sent twice).
    pub id: Option<String>,
    pub counts: Vec<(String, u64)>,
}

/// A named counter per member (a product id, say), written back in batches.
pub struct WriteBackCounter {
    name: String,
    local: Mutex<HashMap<String, u64>>,
    redis: Option<Arc<RedisRing>>,
    takeover_after: Duration,
}

impl WriteBackCounter {
    /// Counts in this process only.
    pub fn local_only(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            local: Mutex::new(HashMap::new()),
            redis: None,
            takeover_after: TAKEOVER_AFTER,
        }
    }

    /// Counts in Redis (falling back to this process while Redis is unreachable).
    pub fn with_redis(name: &str, ring: Arc<RedisRing>) -> Self {
        Self {
            redis: Some(ring),
            ..Self::local_only(name)
        }
    }

    /// How long a claimed batch may stay unfinished before another flusher takes it
    /// over (default 30 s; tests shorten it).
    pub fn with_takeover_after(mut self, after: Duration) -> Self {
        self.takeover_after = after;
        self
    }

    fn pending_key(&self) -> String {
        self.namespaced(&format!("wb:{}:pending", self.name))
    }

    fn flushing_key(&self) -> String {
        self.namespaced(&format!("wb:{}:flushing", self.name))
    }

    fn namespaced(&self, name: &str) -> String {
        match &self.redis {
            Some(ring) => ring.key(name),
            None => name.to_owned(),
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `by` to `member`'s count, in this process (see [`WriteBackCounter::push`]).
    pub fn add(&self, member: &str, by: u64) {
        let mut counts = self.locked();
        // Most views are of a member already counted this interval: no allocation then.
        match counts.get_mut(member) {
            Some(count) => *count += by,
            None => {
                counts.insert(member.to_owned(), by);
            }
        }
    }

    /// Moves this process's counts to Redis, one pipeline per node; returns how many
    /// moved. Counts a node does not take stay here for the next push or flush. A push
    /// that times out after Redis applied it is retried and counted twice: counters are
    /// at-least-once while Redis is slow. Without Redis, does nothing.
    pub async fn push(&self) -> Result<u64, CacheError> {
        let Some(ring) = &self.redis else {
            return Ok(0);
        };
        let mut by_node: HashMap<usize, Vec<(String, u64)>> = HashMap::new();
        for (member, count) in self.locked().drain() {
            by_node
                .entry(ring.node_of(&member))
                .or_default()
                .push((member, count));
        }
        let (mut moved, mut failure) = (0, None);
        for (node, counts) in by_node {
            let mut pipeline = redis::pipe();
            pipeline.atomic();
            let key = self.pending_key();
            for (member, count) in &counts {
                pipeline.hincr(&key, member, *count).ignore();
            }
            let pushed = ring
                .call_node(node, |mut connection: ConnectionManager| async move {
                    pipeline.query_async::<()>(&mut connection).await
                })
                .await;
            match pushed {
                Ok(()) => moved += counts.iter().map(|(_, count)| count).sum::<u64>(),
                Err(error) => {
                    let mut local = self.locked();
                    for (member, count) in counts {
                        *local.entry(member).or_insert(0) += count;
                    }
                    failure = Some(error);
                }
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(moved),
        }
    }

    /// Hands every accumulated count to `apply`, batch by batch: first this process's,
    /// then each Redis node's. A batch `apply` rejects is kept for the next flush.
    /// Returns how many counts were applied.
    pub async fn flush<F, Fut, E>(&self, mut apply: F) -> Result<u64, CacheError>
    where
        F: FnMut(CountBatch) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let mut applied = 0;
        let local: Vec<(String, u64)> = self.locked().drain().collect();
        if !local.is_empty() {
            let total = local.iter().map(|(_, count)| count).sum::<u64>();
            let batch = CountBatch {
                id: None,
                counts: local.clone(),
            };
            if let Err(error) = apply(batch).await {
                let mut pending = self.locked();
                for (member, count) in local {
                    *pending.entry(member).or_insert(0) += count;
                }
                return Err(CacheError::Load(error.to_string()));
            }
            applied += total;
        }
        let Some(ring) = &self.redis else {
            return Ok(applied);
        };
        // Per node: the batch a dead flusher may have left, then the pending counts.
        for node in 0..ring.node_count() {
            for _ in 0..2 {
                let Some(batch) = self.claim(ring, node).await? else {
                    break;
                };
                let total = batch.counts.iter().map(|(_, count)| count).sum::<u64>();
                if let Err(error) = apply(batch).await {
                    self.release(ring, node).await;
                    return Err(CacheError::Load(error.to_string()));
                }
                let flushing = self.flushing_key();
                ring.call_node(node, |mut connection: ConnectionManager| async move {
                    redis::cmd("DEL")
                        .arg(&flushing)
                        .query_async::<()>(&mut connection)
                        .await
                })
                .await?;
                applied += total;
            }
        }
        Ok(applied)
    }

    /// Hands a batch the sink rejected to the next flush at once (best effort: if Redis
    /// does not answer, the batch waits for the takeover time instead).
    async fn release(&self, ring: &RedisRing, node: usize) {
        let flushing = self.flushing_key();
        let released = ring
            .call_node(node, |mut connection: ConnectionManager| async move {
                redis::cmd("HSET")
                    .arg(&flushing)
                    .arg("#at")
                    .arg(0)
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await;
        if let Err(error) = released {
            tracing::debug!(counter = %self.name, error = %error, "cannot release a rejected batch");
        }
    }

    /// The batch waiting on `node`, claimed from its pending counts if none is.
    async fn claim(&self, ring: &RedisRing, node: usize) -> Result<Option<CountBatch>, CacheError> {
        let mut invocation = CLAIM.prepare_invoke();
        invocation
            .key(self.pending_key())
            .key(self.flushing_key())
            .arg(BATCH_FIELD)
            .arg(format!(
                "{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            ))
            .arg(u64::try_from(self.takeover_after.as_millis()).unwrap_or(u64::MAX));
        let fields: Vec<(String, String)> = ring
            .call_node(node, |mut connection: ConnectionManager| async move {
                invocation.invoke_async(&mut connection).await
            })
            .await?;
        let mut id = None;
        let mut counts = Vec::with_capacity(fields.len());
        for (field, value) in fields {
            if field == BATCH_FIELD {
                id = Some(value);
            } else if field.starts_with('#') {
                continue;
            } else if let Ok(count) = value.parse::<u64>() {
                counts.push((field, count));
            }
        }
        Ok(id.map(|id| CountBatch {
            id: Some(id),
            counts,
        }))
    }
}
