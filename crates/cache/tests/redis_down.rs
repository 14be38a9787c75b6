//! A Redis that cannot be reached costs no request: reads fall through to the source,
//! writes still fill the in-process tier, and the breaker stops paying the timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use loadstar_cache::{
    CacheSettings, Lifetimes, RedisRing, TwoTierCache, Versioned, DEGRADED_LOCAL_TTL,
};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_succeed_while_redis_is_unreachable() {
    // Nothing listens on port 1 of loopback: every connect is refused at once.
    let ring = RedisRing::new(
        &["redis://127.0.0.1:1".to_owned()],
        Duration::from_millis(200),
    )
    .unwrap();
    let cache = TwoTierCache::with_redis(&CacheSettings::default(), Arc::new(ring));
    let lifetimes = Lifetimes {
        ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(60),
    };
    for n in 0..20 {
        let key = format!("down:{n}");
        assert_eq!(cache.get(&key).await, None);
        let value = cache
            .get_or_load(&key, lifetimes, || async {
                Ok::<_, String>(Some(Versioned {
                    value: Bytes::from(format!("v{n}")),
                    version: 1,
                }))
            })
            .await
            .unwrap()
            .map(|found| found.value);
        assert_eq!(value, Some(Bytes::from(format!("v{n}"))));
        assert_eq!(
            cache.get(&key).await,
            value,
            "served from the in-process tier"
        );
    }
    cache
        .put("down:set", Some(Bytes::from_static(b"x")), 1, lifetimes)
        .await;
    assert_eq!(cache.get("down:set").await.as_deref(), Some(&b"x"[..]));
    cache.invalidate("down:set").await;
    assert_eq!(cache.get("down:set").await, None);
    assert!(cache.stats().bypasses > 0, "the bypasses are counted");
    assert!(
        DEGRADED_LOCAL_TTL <= Duration::from_secs(1),
        "unheard invalidations bound staleness to a second"
    );
}
