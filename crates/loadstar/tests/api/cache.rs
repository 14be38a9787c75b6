//! The shop behind the cache: reads served from memory, writes visible at once (on this
//! node and, with Redis, on the others), misses remembered, stock moved by orders
//! evicted, views written back, warm-up, TTL-only list pages; and with two api nodes on
//! one PostgreSQL and one Redis: fresh reads across nodes and a stampede of 1,000
//! misses that loads the product at most twice.

use crate::harness::{
    assert_json, id_of, spawn_node, spawn_with_config, stateless_deployment, test_config, Backend,
    TestApp, TestUser,
};
use crate::on_every_backend;
use futures::future::join_all;
use loadstar_core::config::CacheStrategy;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Row;
use std::time::{Duration, Instant};

fn product_path(product: &Value) -> String {
    format!("/v1/products/{}", id_of(product))
}

async fn read(app: &TestApp, path: &str) -> Value {
    assert_json(app.get(path).await, StatusCode::OK).await
}

async fn rename(app: &TestApp, admin: &TestUser, product: &Value, name: &str) {
    let response = app
        .client
        .patch(app.url(&product_path(product)))
        .bearer_auth(&admin.token)
        .header("content-type", "application/merge-patch+json")
        .body(json!({ "name": name }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// Polls `path` on `app` until `field` reads `expected` (deadline 10 s); how long it took.
async fn until_served(app: &TestApp, path: &str, field: &str, expected: &Value) -> Duration {
    let began = Instant::now();
    let deadline = began + Duration::from_secs(10);
    loop {
        let body = read(app, path).await;
        if &body[field] == expected {
            return began.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{path} never served {field} = {expected}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await; // poll interval, bounded above
    }
}

fn loads(app: &TestApp) -> u64 {
    app.state.caches.entries.stats().loads
}

async fn reads_are_served_from_the_cache_and_writes_at_once(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, 500, 3).await;
    let path = product_path(&product);
    let before = loads(&app);
    assert_eq!(read(&app, &path).await, product);
    assert_eq!(read(&app, &path).await, product);
    assert_eq!(
        loads(&app),
        before,
        "write-through: the create filled the cache"
    );

    rename(&app, &admin, &product, "Renamed").await;
    let renamed = read(&app, &path).await;
    assert_eq!(renamed["name"], "Renamed", "the write is served at once");
    assert_eq!(loads(&app), before);

    let response = app.get(&path).await;
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let not_modified = app
        .request(reqwest::Method::GET, &path)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        not_modified.status(),
        StatusCode::NOT_MODIFIED,
        "the ETag comes from the cache too"
    );
}

async fn a_missing_product_is_not_queried_on_every_request(app: TestApp) {
    let before = loads(&app);
    for _ in 0..5 {
        let response = app.get("/v1/products/4242424242").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(loads(&app), before + 1, "one load, then the miss is cached");
}

async fn a_deleted_product_is_gone_at_once(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, 500, 3).await;
    let path = product_path(&product);
    read(&app, &path).await;
    let deleted = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path).await.status(), StatusCode::NOT_FOUND);
}

async fn stock_taken_by_an_order_is_visible_at_once(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let product = app.product(&admin, 500, 5).await;
    let path = product_path(&product);
    assert_eq!(read(&app, &path).await["stock"], 5);
    let order = app
        .post_json_as(
            &customer.token,
            &format!("/v1/users/{}/orders", customer.id),
            &json!({"items": [{"productId": product["id"], "quantity": 2}]}),
        )
        .await;
    assert_eq!(order.status(), StatusCode::CREATED);
    assert_eq!(
        read(&app, &path).await["stock"],
        3,
        "the order evicted the cached copy"
    );
}

async fn view_count(app: &TestApp, product: &Value) -> i64 {
    sqlx::query("SELECT view_count FROM products WHERE id = $1")
        .bind(id_of(product).parse::<i64>().unwrap())
        .fetch_one(app.database.writer())
        .await
        .unwrap()
        .try_get("view_count")
        .unwrap()
}

async fn views_are_counted_in_the_cache_and_written_back(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, 500, 3).await;
    for _ in 0..7 {
        read(&app, &product_path(&product)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while view_count(&app, &product).await != 7 {
        assert!(
            Instant::now() < deadline,
            "the views never reached the database"
        );
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval, bounded above
    }
}

on_every_backend!(
    reads_are_served_from_the_cache_and_writes_at_once,
    a_missing_product_is_not_queried_on_every_request,
    a_deleted_product_is_gone_at_once,
    stock_taken_by_an_order_is_visible_at_once,
    views_are_counted_in_the_cache_and_written_back,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_starting_node_warms_up_the_most_viewed_products() {
    let app = crate::harness::spawn_app(Backend::Sqlite).await.unwrap();
    let admin = app.admin().await;
    let popular = app.product(&admin, 100, 1).await;
    let unpopular = app.product(&admin, 100, 1).await;
    for _ in 0..3 {
        read(&app, &product_path(&popular)).await;
    }
    read(&app, &product_path(&unpopular)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while view_count(&app, &popular).await != 3 {
        assert!(
            Instant::now() < deadline,
            "the views never reached the database"
        );
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval, bounded above
    }
    // A second node on the same SQLite file, told to warm up.
    let mut config = app.config.clone();
    config.database.url = format!(
        "sqlite://{}",
        app.config.data_dir.join("loadstar.db").display()
    );
    config.cache.warm_up_products = 1;
    let fresh = spawn_node(&config, 1, Backend::Sqlite).await;
    assert_eq!(loads(&fresh), 1, "the most-viewed product, loaded at start");
    assert_eq!(read(&fresh, &product_path(&popular)).await, popular);
    assert_eq!(loads(&fresh), 1, "served from the warm cache");
    read(&fresh, &product_path(&unpopular)).await;
    assert_eq!(loads(&fresh), 2, "the other one was not pre-loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_pages_are_cached_until_their_ttl_ends() {
    let data_dir =
        std::env::temp_dir().join(format!("loadstar-test-{:016x}", rand::random::<u64>()));
    let mut config = test_config(data_dir);
    config.cache.product_list.strategy = CacheStrategy::Ttl;
    config.cache.product_list.ttl_secs = 1;
    let app = spawn_with_config(config, Backend::Sqlite).await;
    let admin = app.admin().await;
    let first = app.product(&admin, 100, 1).await;
    assert_eq!(read(&app, "/v1/products").await["items"], json!([first]));
    let second = app.product(&admin, 100, 1).await;
    assert_eq!(
        read(&app, "/v1/products").await["items"],
        json!([first]),
        "TTL only: the cached page is served until it expires"
    );
    let waited = until_served(&app, "/v1/products", "items", &json!([first, second])).await;
    eprintln!("the list page showed the new product after {waited:?} (ttl 1 s)");
}

/// Two api nodes of one stateless deployment, each listening for invalidations.
async fn two_nodes_sharing_postgres_and_redis() -> Option<(TestApp, TestApp)> {
    let deployment = stateless_deployment("the two-node cache").await?;
    let a = spawn_node(&deployment, 1, Backend::Postgres).await;
    let b = spawn_node(&deployment, 2, Backend::Postgres).await;
    for node in [&a, &b] {
        assert!(
            node.state
                .caches
                .entries
                .wait_until_subscribed(Duration::from_secs(10))
                .await,
            "every node listens for invalidations"
        );
    }
    Some((a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_update_on_one_node_is_served_by_the_other() {
    let Some((a, b)) = two_nodes_sharing_postgres_and_redis().await else {
        return;
    };
    let admin = a.admin().await;
    let product = a.product(&admin, 900, 9).await;
    let path = product_path(&product);
    assert_eq!(
        read(&b, &path).await,
        product,
        "B reads A's product (now in B's memory)"
    );
    assert_eq!(read(&b, &path).await, product);

    rename(&a, &admin, &product, "Updated on A").await;
    let took = until_served(&b, &path, "name", &json!("Updated on A")).await;
    eprintln!("node B served node A's update {took:?} after A answered the write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stampede_over_two_nodes_loads_the_product_at_most_twice() {
    let Some((a, b)) = two_nodes_sharing_postgres_and_redis().await else {
        return;
    };
    let admin = a.admin().await;
    let product = a.product(&admin, 900, 9).await;
    // Cold everywhere, as after an eviction.
    a.state
        .caches
        .entries
        .invalidate(&format!("product:{}", id_of(&product)))
        .await;
    let path = product_path(&product);
    let before = loads(&a) + loads(&b);
    let requests = (0..1_000).map(|n| {
        let node = if n % 2 == 0 { &a } else { &b };
        let path = path.clone();
        async move { node.get(&path).await.status() }
    });
    let statuses = join_all(requests).await;
    assert!(statuses.iter().all(|status| *status == StatusCode::OK));
    let database_loads = loads(&a) + loads(&b) - before;
    eprintln!(
        "1,000 concurrent misses over two nodes: {database_loads} database load(s); lease waits: A {}, B {}",
        a.state.caches.entries.stats().lease_waits,
        b.state.caches.entries.stats().lease_waits
    );
    assert!(database_loads <= 2, "{database_loads} loads");
}
