//! Invalidations a writer could not deliver, retried until they land.
//!
//! A write changes the Redis record and publishes an invalidation. When Redis is slow,
//! or unreachable from this node alone, either step can fail while the other nodes are
//! still subscribed and keep serving the old value from their in-process tier (and
//! Redis keeps the old record) for its whole TTL. So the key is queued here and, until
//! it lands, retried: delete the record (breaking its lease; the next read loads the
//! current row) and publish again. Other nodes are stale at most as long as this node
//! cannot reach Redis, plus [`RETRY_INTERVAL`].
//!
//! The queue is a set: a key written many times during an outage is retried once, so
//! it holds at most the distinct keys written meanwhile. It lives in this process: if
//! the process dies with keys queued, their TTL bounds the staleness instead.

use crate::invalidation;
use crate::metrics::CacheMetrics;
use crate::redis_tier::RedisTier;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Pause between rounds while some invalidation does not land.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// Keys whose invalidation has not reached Redis yet; cheap to clone.
#[derive(Clone)]
pub(crate) struct Redelivery {
    pending: Arc<Mutex<HashSet<String>>>,
    wake: Arc<Notify>,
}

impl Redelivery {
    /// Starts retrying in the background until `stop`.
    pub(crate) fn start(
        redis: RedisTier,
        origin: String,
        metrics: CacheMetrics,
        stop: CancellationToken,
    ) -> Self {
        let redelivery = Self {
            pending: Arc::default(),
            wake: Arc::default(),
        };
        tokio::spawn(redelivery.clone().run(redis, origin, metrics, stop));
        redelivery
    }

    /// Queues `key`: its Redis record may be stale and other nodes may not have heard.
    pub(crate) fn push(&self, key: &str) {
        let queued = {
            let mut pending = self.locked();
            pending.insert(key.to_owned());
            pending.len()
        };
        metrics::gauge!("cache_invalidations_pending").set(queued as f64);
        self.wake.notify_one();
    }

    /// Keys waiting for delivery.
    pub(crate) fn len(&self) -> usize {
        self.locked().len()
    }

    fn locked(&self) -> MutexGuard<'_, HashSet<String>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn run(
        self,
        redis: RedisTier,
        origin: String,
        metrics: CacheMetrics,
        stop: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
            }
            // Keys pushed during a round wait for the next one, so none is dropped.
            loop {
                let round: Vec<String> = self.locked().drain().collect();
                if round.is_empty() {
                    break;
                }
                let mut failed = Vec::new();
                for key in round {
                    let delivered = redis.delete(&key).await.is_ok()
                        && redis
                            .publish_invalidation(&key, invalidation::message(&origin, &key))
                            .await
                            .is_ok();
                    if delivered {
                        metrics.invalidation_sent();
                    } else {
                        failed.push(key);
                    }
                }
                let queued = {
                    let mut pending = self.locked();
                    pending.extend(failed);
                    pending.len()
                };
                metrics::gauge!("cache_invalidations_pending").set(queued as f64);
                if queued == 0 {
                    tracing::info!("every queued cache invalidation was delivered");
                    break;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY_INTERVAL) => {}
                }
            }
        }
    }
}
