//! `loadstar serve` on a PostgreSQL server of the test's own, reached through a proxy the
//! test controls, while the database fails in the three ways production sees:
//!
//! 1. it is down and refuses connections: requests that need it are answered 503 with
//!    `Retry-After` at once (not after `acquire_timeout_ms`), `/readyz` says so at once,
//!    and everything works again by itself once it is back;
//! 2. it is restarted (`pg_ctl restart -m fast`) under load: 503s while it is away, never a
//!    500, and one log line per change of state instead of a warning per request;
//! 3. the network to it goes silent: no request hangs on it; requests are cut short within
//!    about a health probe's deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use loadstar_core::test_support::{poll_until, FaultProxy, ProxyMode};
use loadstar_store::test_support::PrivatePostgres;
use process::{create_admin, Node};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Far below the 5 s acquire timeout and query deadline a request used to wait out.
const AT_ONCE: Duration = Duration::from_secs(1);

struct Shop {
    http: Client,
    url: String,
    token: String,
    user: String,
    product: String,
}

impl Shop {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, bool) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request
                .header(
                    "Idempotency-Key",
                    format!("k{:016x}", rand::random::<u64>()),
                )
                .json(&body);
        }
        let response = request.send().await.unwrap();
        let retry_after = response.headers().contains_key("retry-after");
        (response.status(), retry_after)
    }

    async fn order(&self) -> (StatusCode, bool) {
        let body = json!({"items": [{"productId": self.product, "quantity": 1}]});
        let path = format!("/v1/users/{}/orders", self.user);
        self.send(Method::POST, &path, Some(body)).await
    }

    async fn my_orders(&self) -> (StatusCode, bool) {
        let path = format!("/v1/users/{}/orders", self.user);
        self.send(Method::GET, &path, None).await
    }

    async fn product_list(&self) -> (StatusCode, bool) {
        // A query no earlier request made: list pages are cached for a moment.
        let path = format!("/v1/products?limit=5&q=q{:016x}", rand::random::<u64>());
        self.send(Method::GET, &path, None).await
    }

    async fn product(&self) -> (StatusCode, bool) {
        let path = format!("/v1/products/{}", self.product);
        self.send(Method::GET, &path, None).await
    }

    async fn ready(&self) -> StatusCode {
        self.http
            .get(format!("{}/readyz", self.url))
            .send()
            .await
            .unwrap()
            .status()
    }
}

async fn deployment(proxy: &FaultProxy) -> (Node, Shop) {
    deployment_charging_at(proxy, "http://127.0.0.1:9").await
}

/// `serve` on the database behind `proxy`, charging orders at `payments_url`.
async fn deployment_charging_at(proxy: &FaultProxy, payments_url: &str) -> (Node, Shop) {
    let url = format!("postgres://postgres@{}/postgres", proxy.address());
    let env: Vec<(String, String)> = [
        (
            "LOADSTAR_DATA_DIR",
            process::temp_data_dir().to_str().unwrap(),
        ),
        ("LOADSTAR_DATABASE__URL", url.as_str()),
        ("LOADSTAR_LOG__FORMAT", "json"),
        ("LOADSTAR_PAYMENTS__URL", payments_url),
        (
            "LOADSTAR_JOBS__POLICIES__PAYMENT_CHARGE__BACKOFF_BASE_MS",
            "100",
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    create_admin(env.iter().map(|(k, v)| (k, v)));
    let node = Node::start("serve", &env);
    let http = Client::new();
    let (product, token, user) =
        process::stocked_shop_and_buyer(&http, &node.url, "outage-mug", 1_000_000).await;
    let shop = Shop {
        http,
        url: node.url.clone(),
        token,
        user,
        product,
    };
    (node, shop)
}

/// A product read once and then evicted (an order moved its stock) is still served, from
/// the last value the node saw, while its reload cannot reach the database.
async fn assert_product_served_stale(shop: &Shop) {
    let started = Instant::now();
    let (status, _) = shop.product().await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the product is served stale-if-error"
    );
    assert!(started.elapsed() < AT_ONCE);
}

/// Each of the shop's kinds of request, timed: all must be refused 503 with Retry-After
/// within [`AT_ONCE`].
async fn assert_refused_at_once(shop: &Shop) {
    for _ in 0..5 {
        for (what, started, (status, retry_after)) in [
            ("an order", Instant::now(), shop.order().await),
            ("my orders", Instant::now(), shop.my_orders().await),
            (
                "the product list",
                Instant::now(),
                shop.product_list().await,
            ),
        ] {
            let took = started.elapsed();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{what}");
            assert!(retry_after, "{what}: 503 carries Retry-After");
            assert!(took < AT_ONCE, "{what} answered in {took:?}, not at once");
        }
        let started = Instant::now();
        assert_eq!(shop.ready().await, StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < AT_ONCE, "/readyz answers at once");
    }
}

async fn wait_until_ready(shop: &Shop, ready: bool) {
    let want = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    poll_until("/readyz to change", Duration::from_secs(30), || async {
        shop.ready().await == want
    })
    .await;
}

async fn wait_until_orders_succeed(shop: &Shop) {
    poll_until(
        "orders to succeed again",
        Duration::from_secs(30),
        || async { shop.order().await.0 == StatusCode::CREATED },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_that_is_down_is_answered_at_once_and_recovered_from_by_itself() {
    let Some(mut postgres) = PrivatePostgres::start() else {
        eprintln!("no PostgreSQL server binaries: outage test not run");
        return;
    };
    let proxy = FaultProxy::start(postgres.address()).await;
    let (node, shop) = deployment(&proxy).await;
    assert_eq!(shop.product().await.0, StatusCode::OK);
    assert_eq!(shop.order().await.0, StatusCode::CREATED);

    postgres.stop();
    wait_until_ready(&shop, false).await;
    assert_refused_at_once(&shop).await;
    assert_product_served_stale(&shop).await;

    postgres.restart();
    wait_until_ready(&shop, true).await;
    wait_until_orders_succeed(&shop).await;
    assert_eq!(shop.my_orders().await.0, StatusCode::OK);
    assert_eq!(shop.product_list().await.0, StatusCode::OK);

    assert_eq!(
        node.count_logs("database is down"),
        1,
        "one line going down"
    );
    assert_eq!(
        node.count_logs("database is back"),
        1,
        "one line coming back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_under_load_is_503s_never_500s_and_two_log_lines() {
    let Some(mut postgres) = PrivatePostgres::start() else {
        eprintln!("no PostgreSQL server binaries: outage test not run");
        return;
    };
    let proxy = FaultProxy::start(postgres.address()).await;
    let (node, shop) = deployment(&proxy).await;
    let shop = Arc::new(shop);
    let stop = CancellationToken::new();
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let created = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..6 {
        let (shop, stop, statuses, created) = (
            shop.clone(),
            stop.clone(),
            statuses.clone(),
            created.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let (status, retry_after) = match client % 3 {
                    0 => shop.order().await,
                    1 => shop.my_orders().await,
                    _ => shop.product_list().await,
                };
                if status == StatusCode::CREATED {
                    created.fetch_add(1, Ordering::Relaxed);
                }
                statuses.lock().unwrap().push((status, retry_after));
            }
        }));
    }
    poll_until("orders under way", Duration::from_secs(30), || async {
        created.load(Ordering::Relaxed) >= 20
    })
    .await;

    postgres.stop();
    wait_until_ready(&shop, false).await;
    postgres.restart();
    wait_until_ready(&shop, true).await;
    let before = created.load(Ordering::Relaxed);
    poll_until(
        "orders succeed after the restart",
        Duration::from_secs(30),
        || async { created.load(Ordering::Relaxed) >= before + 20 },
    )
    .await;
    stop.cancel();
    for client in clients {
        client.await.unwrap();
    }

    let statuses = statuses.lock().unwrap();
    let unavailable = statuses
        .iter()
        .filter(|(status, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    for (status, retry_after) in statuses.iter() {
        assert!(
            [
                StatusCode::OK,
                StatusCode::CREATED,
                StatusCode::SERVICE_UNAVAILABLE
            ]
            .contains(status),
            "a restart is answered 503 at worst, got {status}"
        );
        if *status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(retry_after);
        }
    }
    eprintln!("{} requests, {unavailable} answered 503", statuses.len());
    assert_eq!(node.count_logs("database is down"), 1);
    assert_eq!(node.count_logs("database is back"), 1);
    // Jobs that fail because nothing listens at the payments URL warn on their own; the
    // outage itself must not add a warning per request or per poll.
    let outage_warnings: Vec<String> = node
        .logs_at("WARN")
        .into_iter()
        .filter(|line| !line.contains("job failed") && !line.contains("payment failed"))
        .collect();
    assert!(
        outage_warnings.len() <= 12,
        "an outage is a few lines, not one per request: {outage_warnings:#?}"
    );
    let doubled: Vec<String> = node
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|line| {
            [
                "queue error: queue error",
                "queue unavailable: queue unavailable",
            ]
            .iter()
            .any(|doubled| line.contains(doubled))
        })
        .cloned()
        .collect();
    assert!(
        doubled.is_empty(),
        "no doubled error prefixes: {doubled:#?}"
    );
    let errors = node.logs_at("ERROR");
    assert_eq!(
        errors.len(),
        1,
        "only the outage itself is an error: {errors:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_network_to_the_database_hangs_no_request() {
    let Some(postgres) = PrivatePostgres::start() else {
        eprintln!("no PostgreSQL server binaries: outage test not run");
        return;
    };
    let proxy = FaultProxy::start(postgres.address()).await;
    let (node, shop) = deployment(&proxy).await;
    let shop = Arc::new(shop);
    assert_eq!(shop.product().await.0, StatusCode::OK);
    assert_eq!(shop.order().await.0, StatusCode::CREATED);

    proxy.set_mode(ProxyMode::Silent);
    // Requests already on their way when the network went silent, and new ones: none
    // waits for TCP to give up.
    let started = Instant::now();
    let mut requests = Vec::new();
    for n in 0..9 {
        let shop = shop.clone();
        requests.push(tokio::spawn(async move {
            let started = Instant::now();
            let (status, _) = match n % 3 {
                0 => shop.order().await,
                1 => shop.my_orders().await,
                _ => shop.product_list().await,
            };
            (status, started.elapsed())
        }));
    }
    for request in requests {
        let (status, took) = request.await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            took < Duration::from_secs(4),
            "a request on a silent database is cut short by the health probe's deadline, \
             not the network's: {took:?}"
        );
    }
    eprintln!(
        "silent network: every request answered within {:?}",
        started.elapsed()
    );
    assert_refused_at_once(&shop).await;

    proxy.set_mode(ProxyMode::Pass);
    wait_until_ready(&shop, true).await;
    wait_until_orders_succeed(&shop).await;
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_outcome_lost_to_an_outage_is_recorded_when_the_database_returns() {
    let Some(mut postgres) = PrivatePostgres::start() else {
        eprintln!("no PostgreSQL server binaries: outage test not run");
        return;
    };
    // A provider slow enough that the database can go down while a charge is under way.
    let (payments_url, stop_simulator) = process::start_payment_simulator(1_500).await;
    let stats = |field: &'static str| {
        let (http, url) = (Client::new(), payments_url.clone());
        async move {
            let stats = process::simulator_stats(&http, &url).await;
            stats[field].as_u64().unwrap()
        }
    };

    let proxy = FaultProxy::start(postgres.address()).await;
    let (node, shop) = deployment_charging_at(&proxy, &payments_url).await;
    let response = shop
        .http
        .post(format!("{}/v1/users/{}/orders", shop.url, shop.user))
        .bearer_auth(&shop.token)
        .json(&json!({"items": [{"productId": shop.product, "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.unwrap();
    let order_path = format!(
        "/v1/users/{}/orders/{}",
        shop.user,
        order["id"].as_str().unwrap()
    );

    poll_until(
        "the charge reaches the provider",
        Duration::from_secs(30),
        || {
            let requests = stats("requests");
            async move { requests.await >= 1 }
        },
    )
    .await;
    postgres.stop();
    poll_until(
        "the worker fails to record the outcome",
        Duration::from_secs(30),
        || async { node.count_logs("could not record the job's outcome yet") >= 1 },
    )
    .await;

    postgres.restart();
    let back = Instant::now();
    poll_until("the order is paid", Duration::from_secs(60), || async {
        let response = shop
            .http
            .get(format!("{}{order_path}", shop.url))
            .bearer_auth(&shop.token)
            .send()
            .await
            .unwrap();
        response.status() == StatusCode::OK
            && response.json::<Value>().await.unwrap()["status"] == "paid"
    })
    .await;
    let took = back.elapsed();
    eprintln!("order paid {took:?} after the database returned");
    assert!(
        took < Duration::from_secs(15),
        "the outcome is recorded when the database returns, not after the 30 s lease: {took:?}"
    );
    assert_eq!(stats("charges").await, 1, "charged once");
    stop_simulator.cancel();
}
