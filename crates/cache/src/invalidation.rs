//! Invalidation across nodes: a write on one node evicts the key from every other
//! node's in-process tier, through Redis pub/sub.
//!
//! A write publishes `<origin>\n<key>` on [`CHANNEL`] of the Redis node that owns the key;
//! every cache subscribes on every node and evicts the key locally unless it wrote it
//! itself. A subscriber that loses its connection may have missed messages, so after
//! every (re)subscription it empties its in-process tier: a cold read is correct, a
//! stale one is not.

use crate::local_tier::LocalTier;
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The pub/sub channel of invalidations.
pub const CHANNEL: &str = "loadstar:cache:invalidate";

/// An invalidation message from `origin` for `key`.
pub(crate) fn message(origin: &str, key: &str) -> String {
    format!("{origin}\n{key}")
}

/// Keeps one subscription to `client`'s node alive until `stop`, evicting what other
/// caches invalidate; `subscribed` turns true once it listens.
pub(crate) async fn listen(
    client: redis::Client,
    origin: String,
    local: LocalTier,
    subscribed: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        let session = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            // Whatever was published while we were not listening is lost: start cold.
            local.clear();
            let _ = subscribed.send(true);
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let payload = String::from_utf8_lossy(message.get_payload_bytes()).into_owned();
                if let Some((from, key)) = payload.split_once('\n') {
                    if from != origin {
                        local.remove(key).await;
                    }
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = session => outcome,
        };
        let _ = subscribed.send(false);
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
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
