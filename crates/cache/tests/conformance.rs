//! One suite for the cache API, run on the in-process tier alone and on in-process +
//! Redis (the real server named by `LOADSTAR_TEST_REDIS_URL`). Waiting is polling with a
//! deadline; TTLs are short so that expiry is observed, not slept for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use futures::future::join_all;
use loadstar_cache::{CacheSettings, Lifetimes, RedisRing, TwoTierCache, Versioned};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const LONG: Lifetimes = Lifetimes {
    ttl: Duration::from_secs(60),
    negative_ttl: Duration::from_secs(60),
};

/// Every case's keys are its own, so cases share one Redis without meeting.
fn key(name: &str) -> String {
    format!("test:{:016x}:{name}", rand::random::<u64>())
}

fn bytes(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

fn found(text: &'static str, version: u64) -> Option<Versioned> {
    Some(Versioned {
        value: bytes(text),
        version,
    })
}

/// Builds cache nodes: each call is another process's cache on the same Redis (if any).
#[derive(Clone)]
struct Nodes {
    settings: CacheSettings,
    redis_url: Option<String>,
}

impl Nodes {
    fn node(&self) -> TwoTierCache {
        match &self.redis_url {
            None => TwoTierCache::local_only(&self.settings),
            Some(url) => {
                // Generous: a loaded CI machine must not turn a slow answer into a bypass.
                let ring =
                    RedisRing::new(std::slice::from_ref(url), Duration::from_secs(2)).unwrap();
                TwoTierCache::with_redis(&self.settings, Arc::new(ring))
            }
        }
    }

    /// Whether separate nodes share a tier (Redis); in-process caches share nothing.
    fn shared(&self) -> bool {
        self.redis_url.is_some()
    }

    fn without_jitter(mut self) -> Self {
        self.settings.ttl_jitter = 0.0;
        self
    }
}

fn local_only() -> Option<Nodes> {
    Some(Nodes {
        settings: CacheSettings::default(),
        redis_url: None,
    })
}

fn with_redis() -> Option<Nodes> {
    let Ok(url) = std::env::var("LOADSTAR_TEST_REDIS_URL") else {
        eprintln!("LOADSTAR_TEST_REDIS_URL is not set: Redis variant not run");
        return None;
    };
    Some(Nodes {
        settings: CacheSettings::default(),
        redis_url: Some(url),
    })
}

async fn a_miss_is_empty_and_a_put_value_is_read_back(nodes: Nodes) {
    let cache = nodes.node();
    let key = key("product:1");
    assert_eq!(cache.get(&key).await, None);
    cache.put(&key, Some(bytes("mug")), 1, LONG).await;
    assert_eq!(cache.get(&key).await, Some(bytes("mug")));
}

async fn an_invalidation_removes_the_value_from_every_tier(nodes: Nodes) {
    let cache = nodes.node();
    let key = key("product:2");
    cache.put(&key, Some(bytes("old")), 1, LONG).await;
    cache.invalidate(&key).await;
    assert_eq!(cache.get(&key).await, None);
    // A fresh node (empty in-process tier) finds nothing in Redis either.
    assert_eq!(nodes.node().get(&key).await, None);
}

async fn a_value_is_gone_once_its_ttl_has_passed(nodes: Nodes) {
    let cache = nodes.without_jitter().node();
    let key = key("short");
    let brief = Lifetimes {
        ttl: Duration::from_millis(200),
        ..LONG
    };
    cache.put(&key, Some(bytes("brief")), 1, brief).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.get(&key).await.is_some() {
        assert!(Instant::now() < deadline, "the value outlived its ttl");
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval, bounded above
    }
}

async fn an_older_version_never_replaces_a_newer_one(nodes: Nodes) {
    let cache = nodes.node();
    let key = key("versions");
    cache.put(&key, Some(bytes("v3")), 3, LONG).await;
    cache.put(&key, Some(bytes("v2")), 2, LONG).await;
    assert_eq!(cache.get(&key).await, Some(bytes("v3")));
    if nodes.shared() {
        assert_eq!(
            nodes.node().get(&key).await,
            Some(bytes("v3")),
            "in Redis too"
        );
    }
    cache.put(&key, Some(bytes("v4")), 4, LONG).await;
    assert_eq!(cache.get(&key).await, Some(bytes("v4")));
}

async fn concurrent_misses_of_one_key_load_it_once(nodes: Nodes) {
    let cache = Arc::new(nodes.node());
    let key = key("hot");
    let loads = Arc::new(AtomicUsize::new(0));
    let readers = (0..200).map(|_| {
        let (cache, key, loads) = (Arc::clone(&cache), key.clone(), Arc::clone(&loads));
        async move {
            cache
                .get_or_load(&key, LONG, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Ok::<_, Infallible>(found("loaded", 1))
                })
                .await
                .unwrap()
        }
    });
    let values = join_all(readers).await;
    assert!(values.iter().all(|value| *value == found("loaded", 1)));
    assert_eq!(loads.load(Ordering::SeqCst), 1, "one load for 200 misses");
    assert_eq!(cache.stats().loads, 1);
}

async fn a_missing_item_is_remembered_for_its_negative_ttl(nodes: Nodes) {
    let cache = nodes.node();
    let key = key("absent");
    let loads = AtomicUsize::new(0);
    for _ in 0..5 {
        let value = cache
            .get_or_load(&key, LONG, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Infallible>(None)
            })
            .await
            .unwrap();
        assert_eq!(value, None);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "the miss is cached");
    cache.put(&key, Some(bytes("created")), 1, LONG).await;
    assert_eq!(
        cache.get(&key).await,
        Some(bytes("created")),
        "a write replaces it"
    );
}

async fn a_failed_load_is_reported_and_not_cached(nodes: Nodes) {
    let cache = nodes.node();
    let key = key("flaky");
    let failed = cache
        .get_or_load(&key, LONG, || async {
            Err::<Option<Versioned>, _>("database down")
        })
        .await;
    assert!(failed.unwrap_err().to_string().contains("database down"));
    let value = cache
        .get_or_load(&key, LONG, || async { Ok::<_, String>(found("ok", 1)) })
        .await
        .unwrap();
    assert_eq!(value, found("ok", 1), "the next read loads again");
}

/// A value that expired or was evicted, whose reload then fails (the database is down),
/// is answered with the last value this node saw (`stale-if-error`); only a key this node
/// never saw reports the failure.
async fn a_failed_reload_is_answered_with_the_last_known_value(nodes: Nodes) {
    let cache = nodes.node();
    let key = key("stale");
    cache
        .get_or_load(&key, LONG, || async { Ok::<_, String>(found("v1", 1)) })
        .await
        .unwrap();
    cache.invalidate(&key).await;
    let value = cache
        .get_or_load(&key, LONG, || async {
            Err::<Option<Versioned>, _>("database down")
        })
        .await
        .unwrap();
    assert_eq!(value, found("v1", 1), "served stale while the source fails");
    assert_eq!(cache.stats().stale_served, 1);

    cache.put(&key, Some(bytes("v2")), 2, LONG).await;
    cache.invalidate(&key).await;
    let value = cache
        .get_or_load(&key, LONG, || async {
            Err::<Option<Versioned>, _>("database down")
        })
        .await
        .unwrap();
    assert_eq!(
        value,
        found("v2", 2),
        "a write-through value is the last known one"
    );

    let value = cache
        .get_or_load(&key, LONG, || async { Ok::<_, String>(found("v3", 3)) })
        .await
        .unwrap();
    assert_eq!(
        value,
        found("v3", 3),
        "never stale while the source answers"
    );

    let unseen = cache
        .get_or_load(&self::key("unseen"), LONG, || async {
            Err::<Option<Versioned>, _>("database down")
        })
        .await;
    assert!(unseen.is_err(), "nothing to serve for a key never seen");
}

/// A read that loaded the old row before a write, and finishes after it, must not leave
/// the old value cached: the write's invalidation wins (leases, as in memcache).
async fn a_load_racing_a_write_does_not_cache_the_old_value(nodes: Nodes) {
    let reader = Arc::new(nodes.node());
    // With Redis the write comes from another node; in-process only, from this one.
    let other_node = nodes.node();
    let writer = if nodes.shared() {
        &other_node
    } else {
        &*reader
    };
    let key = key("race");
    let (loaded_old_row, old_row_read) = oneshot::channel::<()>();
    let (write_done, resume_load) = oneshot::channel::<()>();
    let slow_read = tokio::spawn({
        let (reader, key) = (Arc::clone(&reader), key.clone());
        async move {
            reader
                .get_or_load(&key, LONG, || async move {
                    loaded_old_row.send(()).unwrap();
                    resume_load.await.unwrap();
                    Ok::<_, Infallible>(found("old", 1))
                })
                .await
                .unwrap()
        }
    });
    old_row_read.await.unwrap();
    // The write lands while the read is in flight.
    writer.invalidate(&key).await;
    write_done.send(()).unwrap();
    assert_eq!(
        slow_read.await.unwrap(),
        found("old", 1),
        "that caller sees what it read"
    );
    let after = reader
        .get_or_load(&key, LONG, || async {
            Ok::<_, Infallible>(found("new", 2))
        })
        .await
        .unwrap();
    assert_eq!(after, found("new", 2), "the next read loads the new row");
}

/// Redis only: a value written by one node is served to another from Redis.
async fn a_value_written_by_one_node_is_read_by_another(nodes: Nodes) {
    let writer = nodes.node();
    let reader = nodes.node();
    let key = key("shared");
    writer.put(&key, Some(bytes("fresh")), 1, LONG).await;
    assert_eq!(reader.get(&key).await, Some(bytes("fresh")));
    let loaded = reader
        .get_or_load(&key, LONG, || async {
            Err::<Option<Versioned>, _>("must not load")
        })
        .await
        .unwrap();
    assert_eq!(loaded, found("fresh", 1));
}

/// Redis only: after a write on node A, node B drops its in-process copy and serves the
/// new value; after an invalidation on A, B serves nothing.
async fn a_write_on_one_node_evicts_the_copies_of_the_others(nodes: Nodes) {
    let a = nodes.node();
    let b = nodes.node();
    assert!(
        b.wait_until_subscribed(Duration::from_secs(10)).await,
        "node B listens for invalidations"
    );
    let key = key("product:9");
    a.put(&key, Some(bytes("v1")), 1, LONG).await;
    assert_eq!(b.get(&key).await, Some(bytes("v1")), "now in B's own tier");

    let written = Instant::now();
    a.put(&key, Some(bytes("v2")), 2, LONG).await;
    eventually(&b, &key, Some(bytes("v2"))).await;
    eprintln!(
        "node B served the update {:?} after node A wrote it",
        written.elapsed()
    );
    assert!(b.stats().invalidations_received >= 1);

    a.invalidate(&key).await;
    eventually(&b, &key, None).await;
}

/// Redis only: 1,000 concurrent misses of one key spread over two nodes load it at most
/// twice (once per node at worst; the Redis lease makes it once in the common case).
async fn a_stampede_over_two_nodes_loads_at_most_twice(nodes: Nodes) {
    let node_a = Arc::new(nodes.node());
    let node_b = Arc::new(nodes.node());
    let key = key("stampede");
    let loads = Arc::new(AtomicUsize::new(0));
    let readers = (0..1_000).map(|n| {
        let cache = Arc::clone(if n % 2 == 0 { &node_a } else { &node_b });
        let (key, loads) = (key.clone(), Arc::clone(&loads));
        tokio::spawn(async move {
            cache
                .get_or_load(&key, LONG, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    // The query takes a while: long enough for every reader to miss.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, Infallible>(found("row", 1))
                })
                .await
                .unwrap()
        })
    });
    for value in join_all(readers).await {
        assert_eq!(value.unwrap(), found("row", 1));
    }
    let loads = loads.load(Ordering::SeqCst);
    eprintln!(
        "1000 misses over two nodes: {loads} load(s), lease waits a={} b={}",
        node_a.stats().lease_waits,
        node_b.stats().lease_waits
    );
    assert!(loads <= 2, "{loads} loads");
}

/// Polls `cache` until `key` reads `expected` (deadline 10 s).
async fn eventually(cache: &TwoTierCache, key: &str, expected: Option<Bytes>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.get(key).await != expected {
        assert!(Instant::now() < deadline, "{key} never read {expected:?}");
        tokio::time::sleep(Duration::from_millis(2)).await; // poll interval, bounded above
    }
}

/// Runs each case as `local::<case>` and `redis::<case>`; `redis_only` cases as
/// `redis::<case>` alone.
macro_rules! cache_suite {
    (all: [$($case:ident),+ $(,)?], redis_only: [$($redis_case:ident),* $(,)?] $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::local_only().unwrap()).await;
                }
            )+
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(nodes) = super::with_redis() {
                        super::$case(nodes).await;
                    }
                }
            )+
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $redis_case() {
                    if let Some(nodes) = super::with_redis() {
                        super::$redis_case(nodes).await;
                    }
                }
            )*
        }
    };
}

cache_suite!(
    all: [
        a_miss_is_empty_and_a_put_value_is_read_back,
        an_invalidation_removes_the_value_from_every_tier,
        a_value_is_gone_once_its_ttl_has_passed,
        an_older_version_never_replaces_a_newer_one,
        concurrent_misses_of_one_key_load_it_once,
        a_missing_item_is_remembered_for_its_negative_ttl,
        a_failed_load_is_reported_and_not_cached,
        a_failed_reload_is_answered_with_the_last_known_value,
        a_load_racing_a_write_does_not_cache_the_old_value,
    ],
    redis_only: [
        a_value_written_by_one_node_is_read_by_another,
        a_write_on_one_node_evicts_the_copies_of_the_others,
        a_stampede_over_two_nodes_loads_at_most_twice,
    ],
);
