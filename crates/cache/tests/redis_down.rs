//! A Redis that cannot be reached costs no request: reads fall through to the source,
//! writes still fill the in-process tier, and the breaker stops paying the timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use loadstar_cache::{CacheSettings, TwoTierCache};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_succeed_while_redis_is_unreachable() {
    // Nothing listens on port 1 of loopback: every connect is refused at once.
    let cache = TwoTierCache::new(&CacheSettings {
        redis_urls: vec!["redis://127.0.0.1:1".to_owned()],
        redis_timeout: Duration::from_millis(200),
        ..CacheSettings::default()
    })
    .unwrap();
    for n in 0..20 {
        let key = format!("down:{n}");
        assert_eq!(cache.get(&key).await, None);
        let value = cache
            .get_or_load(&key, Duration::from_secs(60), || async {
                Ok::<_, String>(Bytes::from(format!("v{n}")))
            })
            .await
            .unwrap();
        assert_eq!(value, Bytes::from(format!("v{n}")));
        assert_eq!(
            cache.get(&key).await,
            Some(value),
            "served from the in-process tier"
        );
    }
    cache
        .set(
            "down:set",
            Bytes::from_static(b"x"),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(cache.get("down:set").await.as_deref(), Some(&b"x"[..]));
    cache.delete("down:set").await;
    assert_eq!(cache.get("down:set").await, None);
}
