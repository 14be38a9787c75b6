//! The shared tier: Redis, one node or several on a consistent-hash ring, behind a
//! circuit breaker so that a dead or slow Redis costs milliseconds, not requests.

use crate::error::CacheError;
use crate::hash_ring::HashRing;
use bytes::Bytes;
use loadstar_core::circuit_breaker::{Admission, CircuitBreaker};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// One Redis node: its URL and its connection, made on first use.
struct Node {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
}

/// Redis nodes on a ring, each call bounded by `timeout`.
pub(crate) struct RedisTier {
    nodes: Vec<Node>,
    ring: HashRing,
    timeout: Duration,
    breaker: CircuitBreaker,
}

impl RedisTier {
    pub(crate) fn new(urls: &[String], timeout: Duration) -> Result<Self, CacheError> {
        let nodes = urls
            .iter()
            .map(|url| {
                Ok(Node {
                    client: redis::Client::open(url.as_str())
                        .map_err(|error| CacheError::Config(format!("redis url: {error}")))?,
                    connection: OnceCell::new(),
                })
            })
            .collect::<Result<Vec<_>, CacheError>>()?;
        Ok(Self {
            nodes,
            ring: HashRing::new(urls),
            timeout,
            breaker: CircuitBreaker::new("redis", 3, Duration::from_secs(1)),
        })
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let value: Option<Vec<u8>> = self
            .call(key, |mut connection, key| async move {
                connection.get(key).await
            })
            .await?;
        Ok(value.map(Bytes::from))
    }

    pub(crate) async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.call(key, move |mut connection, key| async move {
            connection
                .pset_ex::<_, _, ()>(key, value.as_ref(), millis)
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
        self.call(key, move |mut connection, _key| async move {
            connection
                .publish::<_, _, ()>(crate::invalidation::CHANNEL, message)
                .await
        })
        .await
    }

    /// A client per node, for the invalidation subscriptions.
    pub(crate) fn clients(&self) -> impl Iterator<Item = &redis::Client> {
        self.nodes.iter().map(|node| &node.client)
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.call(key, |mut connection, key| async move {
            connection.del::<_, ()>(key).await
        })
        .await
    }

    /// Runs `command` on the node of `key`, within the timeout and the breaker.
    async fn call<T, F, Fut>(&self, key: &str, command: F) -> Result<T, CacheError>
    where
        F: FnOnce(ConnectionManager, String) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self.breaker.admit(Instant::now()) == Admission::Refused {
            return Err(CacheError::Unavailable("circuit open".to_owned()));
        }
        let outcome = tokio::time::timeout(self.timeout, async {
            let connection = self.connection_for(key).await?;
            command(connection, key.to_owned())
                .await
                .map_err(|error| CacheError::Unavailable(error.to_string()))
        })
        .await
        .unwrap_or_else(|_| Err(CacheError::Unavailable("timed out".to_owned())));
        match &outcome {
            Ok(_) => self.breaker.record_success(),
            Err(_) => self.breaker.record_failure(Instant::now()),
        }
        outcome
    }

    async fn connection_for(&self, key: &str) -> Result<ConnectionManager, CacheError> {
        let index = self
            .ring
            .node_for(key.as_bytes())
            .ok_or_else(|| CacheError::Config("no redis node".to_owned()))?;
        let node = &self.nodes[index];
        node.connection
            .get_or_try_init(|| async {
                ConnectionManager::new(node.client.clone())
                    .await
                    .map_err(|error| CacheError::Unavailable(error.to_string()))
            })
            .await
            .cloned()
    }
}
