//! Invalidation across nodes: a write on one node evicts the key from every other
//! node's in-process tier, through Redis pub/sub.
//!
//! A write publishes `<origin>\n<key>` on [`CHANNEL`] of the Redis node that owns the key;
//! every cache subscribes on every node and evicts the key locally unless it wrote it
//! itself. A subscriber that loses its connection may have missed messages, so after
//! every (re)subscription it empties its in-process tier: a cold read is correct, a
//! stale one is not.

use crate::invalidation_log::InvalidationLog;
use crate::local_tier::LocalTier;
use crate::metrics::CacheMetrics;
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The pub/sub channel of invalidations (inside the ring's namespace).
pub const CHANNEL: &str = "cache:invalidate";

/// An invalidation message from `origin` for `key`.
pub(crate) fn message(origin: &str, key: &str) -> String {
    format!("{origin}\n{key}")
}

/// What a listener evicts from, and reports to.
#[derive(Clone)]
pub(crate) struct Evictor {
    pub origin: String,
    pub local: LocalTier,
    pub log: InvalidationLog,
    pub metrics: CacheMetrics,
}

impl Evictor {
    async fn evict(&self, key: &str) {
        self.log.record(key);
        self.local.remove(key).await;
        self.metrics.invalidation_received();
    }

    fn evict_everything(&self) {
        self.log.record_everything();
        self.local.clear();
    }
}

/// Keeps one subscription to `client`'s node alive until `stop`, evicting what other
/// caches invalidate; `subscribed` turns true once it listens.
pub(crate) async fn listen(
    client: redis::Client,
    channel: String,
    evictor: Evictor,
    subscribed: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        let session = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            // Whatever was published while we were not listening is lost: start cold.
            evictor.evict_everything();
            let _ = subscribed.send(true);
            evictor.metrics.subscription(true);
            tracing::info!(channel = %channel, "listening for cache invalidations");
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let payload = String::from_utf8_lossy(message.get_payload_bytes()).into_owned();
                if let Some((from, key)) = payload.split_once('\n') {
                    if from != evictor.origin {
                        evictor.evict(key).await;
                    }
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        let outcome = tokio::select! {
            () = stop.cancelled() => {
                if subscribed.send_replace(false) {
                    evictor.metrics.subscription(false);
                }
                return;
            }
            outcome = session => outcome,
        };
        if subscribed.send_replace(false) {
            // From now on other nodes' writes go unheard: drop what they may change.
            evictor.evict_everything();
            evictor.metrics.subscription(false);
            backoff = Duration::from_millis(100);
        }
        match outcome {
            Ok(()) => tracing::warn!("cache invalidation subscription ended; resubscribing"),
            Err(error) => {
                tracing::warn!(error = %error, "cache invalidation subscription failed; retrying")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}
