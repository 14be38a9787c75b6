//! One node loses Redis while the others keep it: the writer's invalidations cannot
//! land, and the other nodes, still subscribed, would keep serving the old value for
//! its whole TTL. The writer retries them; once it reaches Redis again the other nodes
//! evict. The writer's Redis connection runs through a proxy the test cuts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use loadstar_cache::{CacheSettings, INVALIDATION_RETRY_INTERVAL};
use loadstar_cache::{Lifetimes, RedisRing, TwoTierCache, Versioned};
use loadstar_core::test_support::poll_until;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(10);

const LONG: Lifetimes = Lifetimes {
    ttl: Duration::from_secs(300),
    negative_ttl: Duration::from_secs(300),
};

/// A TCP proxy to Redis that can be cut: while cut, it closes every connection, old
/// and new, like a network partition between one node and Redis.
struct Proxy {
    address: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (cut, watching) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cut = watching.clone();
                if *cut.borrow() {
                    continue; // dropped: closed at once
                }
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Self { address, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_redis_did_not_take_reaches_the_other_nodes_once_it_can() {
    let Ok(redis_url) = std::env::var("LOADSTAR_TEST_REDIS_URL") else {
        eprintln!("LOADSTAR_TEST_REDIS_URL is not set: partition test not run");
        return;
    };
    let upstream = {
        let client = redis::Client::open(redis_url.as_str()).unwrap();
        let redis::ConnectionAddr::Tcp(host, port) = client.get_connection_info().addr().clone()
        else {
            panic!("LOADSTAR_TEST_REDIS_URL must be redis://host:port");
        };
        let mut addresses = tokio::net::lookup_host((host.as_str(), port))
            .await
            .unwrap();
        addresses.next().unwrap()
    };
    let proxy = Proxy::start(upstream).await;
    let namespace = format!("partition{:016x}", rand::random::<u64>());
    let ring = |url: String| {
        Arc::new(
            RedisRing::new(&[url], Duration::from_millis(500))
                .unwrap()
                .with_namespace(&namespace),
        )
    };
    let settings = CacheSettings::default();
    let writer = TwoTierCache::with_redis(&settings, ring(format!("redis://{}", proxy.address)));
    let reader = TwoTierCache::with_redis(&settings, ring(redis_url.clone()));
    assert!(writer.wait_until_subscribed(Duration::from_secs(5)).await);
    assert!(reader.wait_until_subscribed(Duration::from_secs(5)).await);

    let value = |text: &'static str, version| Versioned {
        value: Bytes::from_static(text.as_bytes()),
        version,
    };
    let read = reader
        .get_or_load("product:1", LONG, || async {
            Ok::<_, Infallible>(Some(value("old", 1)))
        })
        .await
        .unwrap();
    assert_eq!(read, Some(value("old", 1)));

    // The writer is cut off from Redis; the reader still listens.
    proxy.set_cut(true);
    writer
        .put("product:1", Some(Bytes::from_static(b"new")), 2, LONG)
        .await;
    writer.invalidate("product:2").await;
    assert!(writer.stats().undelivered_invalidations >= 1);
    assert_eq!(
        reader.get("product:1").await.as_deref(),
        Some(&b"old"[..]),
        "nobody told the reader yet"
    );

    // Redis is reachable again: the queued invalidations land without another write.
    proxy.set_cut(false);
    let healed = Instant::now();
    poll_until("the reader drops the old value", DEADLINE, || async {
        reader.get("product:1").await.as_deref() != Some(&b"old"[..])
    })
    .await;
    eprintln!(
        "the reader evicted {:?} after the writer reached Redis again (retry interval {:?})",
        healed.elapsed(),
        INVALIDATION_RETRY_INTERVAL
    );
    poll_until("the writer's queue empties", DEADLINE, || async {
        writer.stats().undelivered_invalidations == 0
    })
    .await;
    let fresh = reader
        .get_or_load("product:1", LONG, || async {
            Ok::<_, Infallible>(Some(value("new", 2)))
        })
        .await
        .unwrap();
    assert_eq!(fresh, Some(value("new", 2)));
    assert!(reader.stats().invalidations_received >= 1);
}
