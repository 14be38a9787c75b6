//! Product views are written back: what a crash of an api node can lose, for real. A
//! `loadstar api` process counts views and is SIGKILLed; the database then holds every
//! view flushed before the kill and none twice. In process only, the loss is bounded by
//! the views counted since the last flush; with Redis, nothing that reached Redis is
//! lost; a graceful stop loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use loadstar_core::config::DatabaseConfig;
use loadstar_core::test_support::poll_until;
use loadstar_store::sql::{query, Row};
use loadstar_store::Database;
use process::{admin_token, create_admin, create_product, temp_data_dir, Node};
use std::path::Path;
use std::time::{Duration, Instant};

/// `times` reads of the product through `node`, each one view.
async fn view(node: &Node, product_id: &str, times: usize) {
    let http = reqwest::Client::new();
    for _ in 0..times {
        let response = http
            .get(format!("{}/v1/products/{product_id}", node.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

fn environment(data_dir: &Path, flush_interval_ms: u64) -> Vec<(&'static str, String)> {
    vec![
        ("LOADSTAR_DATA_DIR", data_dir.display().to_string()),
        ("LOADSTAR_LOG__FORMAT", "json".to_owned()),
        (
            "LOADSTAR_CACHE__PRODUCT_VIEWS__FLUSH_INTERVAL_MS",
            flush_interval_ms.to_string(),
        ),
    ]
}

/// Creates an admin with the CLI and a product through the API; the product's id.
async fn product(data_dir: &Path, extra_env: &[(&str, String)]) -> String {
    let mut env = environment(data_dir, 1_000);
    env.extend(extra_env.iter().cloned());
    create_admin(env.iter().map(|(key, value)| (*key, value)));
    let node = Node::start("api", &env);
    let http = reqwest::Client::new();
    let token = admin_token(&http, &node.url).await;
    create_product(&http, &node.url, &token, "viewed-1", 10).await
}

async fn view_count(data_dir: &Path, product_id: &str) -> i64 {
    let db = Database::connect(&DatabaseConfig::default(), data_dir)
        .await
        .unwrap();
    let count = query("SELECT view_count FROM products WHERE id = $1")
        .bind(product_id.parse::<i64>().unwrap())
        .fetch_one(db.writer())
        .await
        .unwrap()
        .try_get::<i64, _>("view_count")
        .unwrap();
    db.close().await;
    count
}

async fn until_view_count(data_dir: &Path, product_id: &str, expected: i64) {
    let what = format!("view_count is {expected}");
    poll_until(&what, Duration::from_secs(20), || async {
        view_count(data_dir, product_id).await == expected
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_crash_loses_at_most_the_views_since_the_last_flush() {
    let data_dir = temp_data_dir();
    let product_id = product(&data_dir, &[]).await;

    // Flushed views survive a crash.
    let mut node = Node::start("api", &environment(&data_dir, 50));
    view(&node, &product_id, 10).await;
    until_view_count(&data_dir, &product_id, 10).await;
    view(&node, &product_id, 5).await;
    node.signal("-KILL");
    let after_crash = view_count(&data_dir, &product_id).await;
    eprintln!(
        "a crash right after 5 unflushed views kept {} of them",
        after_crash - 10
    );
    assert!((10..=15).contains(&after_crash), "{after_crash}");

    // With no flush before the crash, exactly the unflushed views are lost: the bound.
    let mut node = Node::start("api", &environment(&data_dir, 3_600_000));
    view(&node, &product_id, 6).await;
    node.signal("-KILL");
    assert_eq!(view_count(&data_dir, &product_id).await, after_crash);

    // A graceful stop writes back what it counted.
    let mut node = Node::start("api", &environment(&data_dir, 3_600_000));
    view(&node, &product_id, 4).await;
    node.signal("-TERM");
    assert_eq!(view_count(&data_dir, &product_id).await, after_crash + 4);
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_a_crashed_node_loses_no_view() {
    let Ok(redis_url) = std::env::var("LOADSTAR_TEST_REDIS_URL") else {
        eprintln!("LOADSTAR_TEST_REDIS_URL is not set: Redis variant not run");
        return;
    };
    let namespace = format!("crash{:016x}", rand::random::<u64>());
    let redis_env = [
        ("LOADSTAR_CACHE__REDIS_URLS", redis_url.clone()),
        ("LOADSTAR_CACHE__NAMESPACE", namespace.clone()),
    ];
    let data_dir = temp_data_dir();
    let product_id = product(&data_dir, &redis_env).await;
    let with_redis = |flush_interval_ms| {
        let mut env = environment(&data_dir, flush_interval_ms);
        env.extend(redis_env.iter().cloned());
        env
    };

    let mut node = Node::start("api", &with_redis(3_600_000));
    view(&node, &product_id, 8).await;
    // The increments leave in the background; once Redis holds them, kill the node.
    let redis = redis::Client::open(redis_url.as_str()).unwrap();
    let mut connection = redis.get_multiplexed_async_connection().await.unwrap();
    let pending = format!("{namespace}:wb:product_views:pending");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counted: Option<i64> = redis::cmd("HGET")
            .arg(&pending)
            .arg(&product_id)
            .query_async(&mut connection)
            .await
            .unwrap();
        if counted == Some(8) {
            break;
        }
        assert!(Instant::now() < deadline, "Redis holds {counted:?} views");
        tokio::time::sleep(Duration::from_millis(5)).await; // poll interval, bounded above
    }
    node.signal("-KILL");
    assert_eq!(
        view_count(&data_dir, &product_id).await,
        0,
        "nothing was flushed"
    );

    // Another node flushes what the dead one counted.
    let _successor = Node::start("api", &with_redis(50));
    until_view_count(&data_dir, &product_id, 8).await;
    let _ = std::fs::remove_dir_all(&data_dir);
}
