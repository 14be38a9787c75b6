//! One suite for the cache API, run on the in-process tier alone and on in-process +
//! Redis (the real server named by `LOADSTAR_TEST_REDIS_URL`). Waiting is polling with a
//! deadline; TTLs are short so that expiry is observed, not slept for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use futures::future::join_all;
use loadstar_cache::{CacheSettings, TwoTierCache};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(60);

/// Every case's keys are its own, so cases share one Redis without meeting.
fn key(name: &str) -> String {
    format!("test:{:016x}:{name}", rand::random::<u64>())
}

fn local_only() -> Option<CacheSettings> {
    Some(CacheSettings::default())
}

fn with_redis() -> Option<CacheSettings> {
    let Ok(url) = std::env::var("LOADSTAR_TEST_REDIS_URL") else {
        eprintln!("LOADSTAR_TEST_REDIS_URL is not set: Redis variant not run");
        return None;
    };
    Some(CacheSettings {
        redis_urls: vec![url],
        // Generous: a loaded CI machine must not turn a slow answer into a bypass.
        redis_timeout: Duration::from_secs(2),
        ..CacheSettings::default()
    })
}

async fn a_miss_is_empty_and_a_set_value_is_read_back(settings: CacheSettings) {
    let cache = TwoTierCache::new(&settings).unwrap();
    let key = key("product:1");
    assert_eq!(cache.get(&key).await, None);
    cache.set(&key, Bytes::from_static(b"mug"), TTL).await;
    assert_eq!(cache.get(&key).await.as_deref(), Some(&b"mug"[..]));
}

async fn a_delete_removes_the_value_from_every_tier(settings: CacheSettings) {
    let cache = TwoTierCache::new(&settings).unwrap();
    let key = key("product:2");
    cache.set(&key, Bytes::from_static(b"old"), TTL).await;
    cache.delete(&key).await;
    assert_eq!(cache.get(&key).await, None);
    // A fresh node (empty in-process tier) finds nothing in Redis either.
    let other = TwoTierCache::new(&settings).unwrap();
    assert_eq!(other.get(&key).await, None);
}

async fn a_value_is_gone_once_its_ttl_has_passed(settings: CacheSettings) {
    let cache = TwoTierCache::new(&CacheSettings {
        ttl_jitter: 0.0,
        ..settings
    })
    .unwrap();
    let key = key("short");
    cache
        .set(
            &key,
            Bytes::from_static(b"brief"),
            Duration::from_millis(200),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.get(&key).await.is_some() {
        assert!(Instant::now() < deadline, "the value outlived its ttl");
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval, bounded above
    }
}

async fn concurrent_misses_of_one_key_load_it_once(settings: CacheSettings) {
    let cache = Arc::new(TwoTierCache::new(&settings).unwrap());
    let key = key("hot");
    let loads = Arc::new(AtomicUsize::new(0));
    let readers = (0..200).map(|_| {
        let (cache, key, loads) = (Arc::clone(&cache), key.clone(), Arc::clone(&loads));
        async move {
            cache
                .get_or_load(&key, TTL, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Ok::<_, std::convert::Infallible>(Bytes::from_static(b"loaded"))
                })
                .await
                .unwrap()
        }
    });
    let values = join_all(readers).await;
    assert!(values.iter().all(|value| value.as_ref() == b"loaded"));
    assert_eq!(loads.load(Ordering::SeqCst), 1, "one load for 200 misses");
}

async fn a_failed_load_is_reported_and_not_cached(settings: CacheSettings) {
    let cache = TwoTierCache::new(&settings).unwrap();
    let key = key("flaky");
    let failed = cache
        .get_or_load(&key, TTL, || async { Err::<Bytes, _>("database down") })
        .await;
    assert!(failed.unwrap_err().to_string().contains("database down"));
    let value = cache
        .get_or_load(&key, TTL, || async {
            Ok::<_, String>(Bytes::from_static(b"ok"))
        })
        .await
        .unwrap();
    assert_eq!(value.as_ref(), b"ok", "the next read loads again");
}

/// Redis only: a value written by one node is served to another from Redis.
async fn a_value_written_by_one_node_is_read_by_another(settings: CacheSettings) {
    let writer = TwoTierCache::new(&settings).unwrap();
    let reader = TwoTierCache::new(&settings).unwrap();
    let key = key("shared");
    writer.set(&key, Bytes::from_static(b"fresh"), TTL).await;
    assert_eq!(reader.get(&key).await.as_deref(), Some(&b"fresh"[..]));
    let loaded = reader
        .get_or_load(&key, TTL, || async { Err::<Bytes, _>("must not load") })
        .await
        .unwrap();
    assert_eq!(loaded.as_ref(), b"fresh");
}

/// Redis only: after a write on node A, node B drops its in-process copy and serves the
/// new value; after a delete on A, B serves nothing.
async fn a_write_on_one_node_evicts_the_copies_of_the_others(settings: CacheSettings) {
    let a = TwoTierCache::new(&settings).unwrap();
    let b = TwoTierCache::new(&settings).unwrap();
    assert!(
        b.wait_until_subscribed(Duration::from_secs(10)).await,
        "node B listens for invalidations"
    );
    let key = key("product:9");
    a.set(&key, Bytes::from_static(b"v1"), TTL).await;
    assert_eq!(
        b.get(&key).await.as_deref(),
        Some(&b"v1"[..]),
        "now in B's own tier"
    );

    let written = Instant::now();
    a.set(&key, Bytes::from_static(b"v2"), TTL).await;
    eventually(&b, &key, Some(&b"v2"[..])).await;
    eprintln!(
        "node B served the update {:?} after node A wrote it",
        written.elapsed()
    );

    a.delete(&key).await;
    eventually(&b, &key, None).await;
}

/// Polls `cache` until `key` reads `expected` (deadline 10 s).
async fn eventually(cache: &TwoTierCache, key: &str, expected: Option<&[u8]>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.get(key).await.as_deref() != expected {
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
                    if let Some(settings) = super::with_redis() {
                        super::$case(settings).await;
                    }
                }
            )+
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $redis_case() {
                    if let Some(settings) = super::with_redis() {
                        super::$redis_case(settings).await;
                    }
                }
            )*
        }
    };
}

cache_suite!(
    all: [
        a_miss_is_empty_and_a_set_value_is_read_back,
        a_delete_removes_the_value_from_every_tier,
        a_value_is_gone_once_its_ttl_has_passed,
        concurrent_misses_of_one_key_load_it_once,
        a_failed_load_is_reported_and_not_cached,
    ],
    redis_only: [
        a_value_written_by_one_node_is_read_by_another,
        a_write_on_one_node_evicts_the_copies_of_the_others,
    ],
);
