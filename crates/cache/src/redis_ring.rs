//! Redis nodes on a consistent-hash ring, each behind its own circuit breaker, so a dead
//! or slow node costs milliseconds, not requests. The cache, the session store and the
//! write-back counters all reach Redis through this.

use crate::error::CacheError;
use crate::hash_ring::HashRing;
use crate::metrics::CacheMetrics;
use loadstar_core::circuit_breaker::{Admission, CircuitBreaker};
use redis::aio::ConnectionManager;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Consecutive failures that open a node's breaker.
const BREAKER_FAILURES: u32 = 3;
/// How long an open breaker skips its node before one trial call.
const BREAKER_OPEN_FOR: Duration = Duration::from_secs(1);

/// The namespace of keys unless configured otherwise.
pub const DEFAULT_NAMESPACE: &str = "loadstar";

/// One Redis node: its client, its connection (made on first use), its breaker.
struct Node {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    breaker: CircuitBreaker,
}

/// Redis nodes on a ring; every call runs on the node that owns its routing key, within
/// `timeout`, and only while that node's breaker admits it.
pub struct RedisRing {
    nodes: Vec<Node>,
    ring: HashRing,
    timeout: Duration,
    metrics: CacheMetrics,
    /// Prefix of every key and channel, so deployments (or tests) can share a Redis.
    namespace: String,
}

impl RedisRing {
    /// Parses the URLs; connects lazily, so a Redis that is down at start costs nothing.
    pub fn new(urls: &[String], timeout: Duration) -> Result<Self, CacheError> {
        if urls.is_empty() {
            return Err(CacheError::Config("no redis url".to_owned()));
        }
        let nodes = urls
            .iter()
            .map(|url| {
                Ok(Node {
                    client: redis::Client::open(url.as_str())
                        .map_err(|error| CacheError::Config(format!("redis url: {error}")))?,
                    connection: OnceCell::new(),
                    breaker: CircuitBreaker::new("redis", BREAKER_FAILURES, BREAKER_OPEN_FOR),
                })
            })
            .collect::<Result<Vec<_>, CacheError>>()?;
        Ok(Self {
            nodes,
            ring: HashRing::new(urls),
            timeout,
            metrics: CacheMetrics::default(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
        })
    }

    /// Puts every key and channel under `namespace` instead of `loadstar`.
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        namespace.clone_into(&mut self.namespace);
        self
    }

    /// `name` inside this ring's namespace: `<namespace>:<name>`.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.namespace)
    }

    /// A client per node (subscriptions need their own connections).
    pub fn clients(&self) -> impl Iterator<Item = &redis::Client> {
        self.nodes.iter().map(|node| &node.client)
    }

    /// Calls skipped (breaker open) or failed since the ring was built.
    pub fn bypasses(&self) -> u64 {
        self.metrics.snapshot().bypasses
    }

    /// How many nodes are on the ring.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Index of the node that owns `routing_key`.
    pub fn node_of(&self, routing_key: &str) -> usize {
        self.ring.node_for(routing_key.as_bytes()).unwrap_or(0)
    }

    /// Runs `command` on the node that owns `routing_key`.
    pub async fn call<T, F, Fut>(&self, routing_key: &str, command: F) -> Result<T, CacheError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.call_node(self.node_of(routing_key), command).await
    }

    /// Runs `command` on node `index` (`0..node_count()`), within the timeout and the
    /// node's breaker. A refused or failed call counts as a bypass.
    pub async fn call_node<T, F, Fut>(&self, index: usize, command: F) -> Result<T, CacheError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let node = self
            .nodes
            .get(index)
            .ok_or_else(|| CacheError::Config(format!("no redis node {index}")))?;
        if node.breaker.admit(Instant::now()) == Admission::Refused {
            self.metrics.bypass();
            return Err(CacheError::Unavailable("circuit open".to_owned()));
        }
        let outcome = tokio::time::timeout(self.timeout, async {
            let connection = node
                .connection
                .get_or_try_init(|| ConnectionManager::new(node.client.clone()))
                .await
                .map_err(|error| CacheError::Unavailable(error.to_string()))?
                .clone();
            command(connection)
                .await
                .map_err(|error| CacheError::Unavailable(error.to_string()))
        })
        .await
        .unwrap_or_else(|_| Err(CacheError::Unavailable("timed out".to_owned())));
        match &outcome {
            Ok(_) => node.breaker.record_success(),
            Err(_) => {
                node.breaker.record_failure(Instant::now());
                self.metrics.bypass();
            }
        }
        outcome
    }
}
