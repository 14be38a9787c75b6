//! The cache layer's "done when", with real processes: two `loadstar serve` nodes share
//! a PostgreSQL database and a redis-server of the test's own.
//!
//! - An update through one node is served fresh by the other (the delay is printed),
//!   through a pub/sub invalidation, not a TTL: products live 300 s in the cache.
//! - A session from one node works on the other, and on a node restarted from nothing.
//! - SIGKILLing redis-server under load (reads over both nodes, authenticated reads,
//!   updates) and starting it again fails no request; the nodes listen for
//!   invalidations again by themselves and serve fresh values across nodes once more.
//!
//! Needs `LOADSTAR_TEST_DATABASE_URL` and a `redis-server` binary (scripts/test.sh
//! provides both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use loadstar_core::test_support::poll_until;
use process::{
    admin_token, create_admin, create_product, login, sign_up_buyer, temp_data_dir, Node,
    RedisServer, BUYER_EMAIL, BUYER_PASSWORD,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const PRODUCTS: usize = 8;
const READERS: usize = 6;
/// Requests that must succeed in each phase of the outage test.
const REQUESTS_PER_PHASE: u64 = 400;
/// How long Redis stalls every command (`CLIENT PAUSE`) in the slow phase.
const STALL: Duration = Duration::from_millis(1500);

/// Every node from one template: node ids are leased, not configured (a node restarted
/// after a crash gets a free one while its old one's lease runs out).
fn environment(data_dir: &str, database_url: &str, redis_url: &str) -> Vec<(String, String)> {
    [
        ("LOADSTAR_DATA_DIR", data_dir),
        ("LOADSTAR_DATABASE__URL", database_url),
        ("LOADSTAR_CACHE__REDIS_URLS", redis_url),
        ("LOADSTAR_LOG__FORMAT", "json"),
        ("LOADSTAR_LOG__LEVEL", "warn,loadstar=info"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

/// The sum of every series of the metric `name` on the node.
async fn metric(http: &reqwest::Client, node: &Node, name: &str) -> f64 {
    let text = http
        .get(format!("{}/metrics", node.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `cache_redis_bypasses_total` of each node.
async fn bypasses(http: &reqwest::Client, nodes: [&Node; 2]) -> [f64; 2] {
    [
        metric(http, nodes[0], "cache_redis_bypasses_total").await,
        metric(http, nodes[1], "cache_redis_bypasses_total").await,
    ]
}

/// Both nodes went around Redis since `before`: the trouble reached them.
async fn assert_bypassed(http: &reqwest::Client, nodes: [&Node; 2], before: [f64; 2]) {
    let now = bypasses(http, nodes).await;
    for ((node, before), now) in nodes.into_iter().zip(before).zip(now) {
        assert!(now > before, "{} bypassed Redis", node.url);
    }
}

/// Waits until both nodes listen for invalidations on the (single) Redis node.
async fn until_listening(http: &reqwest::Client, nodes: [&Node; 2]) {
    for node in nodes {
        poll_until(
            "the node listens for invalidations",
            Duration::from_secs(20),
            || async { metric(http, node, "cache_invalidation_subscriptions").await >= 1.0 },
        )
        .await;
    }
}

async fn rename(http: &reqwest::Client, node: &Node, token: &str, product_id: &str, name: &str) {
    let response = http
        .patch(format!("{}/v1/products/{product_id}", node.url))
        .bearer_auth(token)
        .header("content-type", "application/merge-patch+json")
        .body(json!({ "name": name }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "rename through {}", node.url);
}

async fn product_name(http: &reqwest::Client, node: &Node, product_id: &str) -> String {
    let product: Value = http
        .get(format!("{}/v1/products/{product_id}", node.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    product["name"].as_str().unwrap().to_owned()
}

/// Renames the product through `writer` while `reader` holds it in its in-process tier;
/// returns how long after the write `reader` first served the new name.
async fn update_is_served_fresh(
    http: &reqwest::Client,
    [writer, reader]: [&Node; 2],
    token: &str,
    product_id: &str,
    name: &str,
) -> Duration {
    until_listening(http, [writer, reader]).await;
    // Cached on the reader: the second read is an in-process hit.
    product_name(http, reader, product_id).await;
    assert_ne!(product_name(http, reader, product_id).await, name);
    let received_before = metric(http, reader, "cache_invalidations_received_total").await;
    rename(http, writer, token, product_id, name).await;
    let written = Instant::now();
    poll_until(
        "the other node serves the update",
        Duration::from_secs(5),
        || async { product_name(http, reader, product_id).await == name },
    )
    .await;
    let delay = written.elapsed();
    assert!(
        metric(http, reader, "cache_invalidations_received_total").await > received_before,
        "the reader got fresh through an invalidation"
    );
    delay
}

/// Requests over both nodes until stopped, counting successes; any other outcome is
/// recorded as a failure.
struct Load {
    succeeded: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    /// The name each product got last: what both nodes must serve in the end.
    last_names: Arc<Mutex<HashMap<String, String>>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Clone)]
struct Target {
    urls: [String; 2],
    product_ids: Arc<Vec<String>>,
    admin_token: String,
    buyer_token: String,
    buyer_id: String,
}

impl Load {
    fn start(target: &Target) -> Self {
        let succeeded = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let last_names = Arc::new(Mutex::new(HashMap::new()));
        let stop = CancellationToken::new();
        let tasks = (0..=READERS)
            .map(|worker| {
                let (target, succeeded, failures, last_names, stop) = (
                    target.clone(),
                    Arc::clone(&succeeded),
                    Arc::clone(&failures),
                    Arc::clone(&last_names),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .unwrap();
                    let mut round = worker;
                    while !stop.is_cancelled() {
                        round += 1;
                        let (request, rename) = request(&http, &target, worker, round);
                        let outcome = match request.send().await {
                            Ok(response) if response.status().is_success() => Ok(()),
                            Ok(response) => Err(format!(
                                "{} {}",
                                response.status(),
                                response.text().await.unwrap_or_default()
                            )),
                            Err(error) => Err(error.to_string()),
                        };
                        match outcome {
                            Ok(()) => {
                                succeeded.fetch_add(1, Ordering::Relaxed);
                                if let Some((product_id, name)) = rename {
                                    last_names.lock().unwrap().insert(product_id, name);
                                }
                            }
                            Err(failure) => failures.lock().unwrap().push(failure),
                        }
                    }
                })
            })
            .collect();
        Self {
            succeeded,
            failures,
            last_names,
            stop,
            tasks,
        }
    }

    fn succeeded(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
    }

    /// Waits until `count` more requests have succeeded.
    async fn until_more_succeeded(&self, count: u64, what: &str) {
        let target = self.succeeded() + count;
        poll_until(what, Duration::from_secs(60), || async {
            self.succeeded() >= target
        })
        .await;
    }

    async fn finish(self) -> Outcome {
        self.stop.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
        Outcome {
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failures: self.failures.lock().unwrap().clone(),
            last_names: self.last_names.lock().unwrap().clone(),
        }
    }
}

struct Outcome {
    succeeded: u64,
    failures: Vec<String>,
    last_names: HashMap<String, String>,
}

/// Worker 0 renames products (and says which name it gives); the others read products,
/// and every fourth read is the buyer's own profile (a session lookup).
fn request(
    http: &reqwest::Client,
    target: &Target,
    worker: usize,
    round: usize,
) -> (reqwest::RequestBuilder, Option<(String, String)>) {
    let url = &target.urls[round % 2];
    let product_id = &target.product_ids[(round / 2) % target.product_ids.len()];
    if worker == 0 {
        let name = format!("Mug, round {round}");
        let request = http
            .patch(format!("{url}/v1/products/{product_id}"))
            .bearer_auth(&target.admin_token)
            .header("content-type", "application/merge-patch+json")
            .body(json!({ "name": name }).to_string());
        (request, Some((product_id.clone(), name)))
    } else if round.is_multiple_of(4) {
        let request = http
            .get(format!("{url}/v1/users/{}", target.buyer_id))
            .bearer_auth(&target.buyer_token);
        (request, None)
    } else {
        (http.get(format!("{url}/v1/products/{product_id}")), None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_share_postgres_and_redis_and_survive_a_redis_crash() {
    let Some(database_url) = loadstar_store::test_support::fresh_postgres_url().await else {
        eprintln!("LOADSTAR_TEST_DATABASE_URL is not set: two-node test not run");
        return;
    };
    let Some(mut redis) = RedisServer::start() else {
        assert!(
            std::env::var("LOADSTAR_TEST_REDIS_URL").is_err(),
            "Redis tests are configured but no redis-server binary is on the PATH"
        );
        eprintln!("no redis-server on the PATH: two-node test not run");
        return;
    };
    let data_dir = temp_data_dir();
    let data_dir = data_dir.to_str().unwrap();
    let redis_url = redis.url();
    let env = || environment(data_dir, &database_url, &redis_url);

    create_admin(env());
    let a = Node::start("serve", &env());
    let mut b = Node::start("serve", &env());
    let http = reqwest::Client::new();

    // A session from one node works on the other.
    let admin_token = admin_token(&http, &a.url).await;
    sign_up_buyer(&http, &b.url).await;
    let buyer = login(&http, &b.url, BUYER_EMAIL, BUYER_PASSWORD).await;
    let buyer_token = buyer["token"].as_str().unwrap().to_owned();
    let buyer_id = buyer["userId"].as_str().unwrap().to_owned();
    let profile = |node: &Node| {
        http.get(format!("{}/v1/users/{buyer_id}", node.url))
            .bearer_auth(&buyer_token)
            .send()
    };
    assert_eq!(profile(&a).await.unwrap().status(), 200);

    let mut product_ids = Vec::new();
    for index in 0..PRODUCTS {
        let url = &[&a, &b][index % 2].url;
        let sku = format!("two-nodes-{index}");
        product_ids.push(create_product(&http, url, &admin_token, &sku, 10).await);
    }

    // An update through A is served fresh by B.
    let delay =
        update_is_served_fresh(&http, [&a, &b], &admin_token, &product_ids[0], "Blue mug").await;
    eprintln!("an update on node A was served by node B after {delay:?}");

    // Redis dies under load and comes back.
    let load = Load::start(&Target {
        urls: [a.url.clone(), b.url.clone()],
        product_ids: Arc::new(product_ids.clone()),
        admin_token: admin_token.clone(),
        buyer_token: buyer_token.clone(),
        buyer_id: buyer_id.clone(),
    });
    load.until_more_succeeded(REQUESTS_PER_PHASE, "requests before Redis slows down")
        .await;

    // Redis stalls every command for longer than the nodes' timeout: a slow Redis.
    let bypasses_before = bypasses(&http, [&a, &b]).await;
    let mut control = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stalled = Instant::now();
    redis::cmd("CLIENT")
        .arg(&["PAUSE", &STALL.as_millis().to_string(), "ALL"])
        .query_async::<()>(&mut control)
        .await
        .unwrap();
    let before_stall = load.succeeded();
    load.until_more_succeeded(REQUESTS_PER_PHASE, "requests while Redis stalls")
        .await;
    assert_bypassed(&http, [&a, &b], bypasses_before).await;
    // Commands answer again once the stall is over.
    poll_until("the stall ends", Duration::from_secs(10), || {
        let mut control = control.clone();
        async move {
            redis::cmd("PING")
                .query_async::<()>(&mut control)
                .await
                .is_ok()
        }
    })
    .await;
    eprintln!(
        "{} requests succeeded during a {:?} stall of Redis",
        load.succeeded() - before_stall,
        stalled.elapsed()
    );
    drop(control);
    load.until_more_succeeded(REQUESTS_PER_PHASE, "requests before the crash")
        .await;

    let bypasses_before = bypasses(&http, [&a, &b]).await;
    redis.kill();
    let killed = Instant::now();
    // Longer than the breakers stay open, so their trial calls meet the dead Redis too.
    load.until_more_succeeded(5 * REQUESTS_PER_PHASE, "requests while Redis is down")
        .await;
    assert_bypassed(&http, [&a, &b], bypasses_before).await;
    let down_for = killed.elapsed();
    redis.restart().unwrap();
    let restarted = Instant::now();
    until_listening(&http, [&a, &b]).await;
    let recovered_after = restarted.elapsed();
    load.until_more_succeeded(REQUESTS_PER_PHASE, "requests after the restart")
        .await;
    let Outcome {
        succeeded,
        failures,
        last_names,
    } = load.finish().await;
    eprintln!(
        "{succeeded} requests over both nodes, {} failed; Redis down for {down_for:?}, \
         both nodes listening again {recovered_after:?} after its restart",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failed requests: {:?}",
        &failures[..failures.len().min(10)]
    );

    // No stale copy outlived the trouble (products live 300 s in the cache): both nodes
    // serve every product's last name.
    let converging = Instant::now();
    for (product_id, name) in &last_names {
        for node in [&a, &b] {
            poll_until(
                "both nodes serve the last update",
                Duration::from_secs(10),
                || async { product_name(&http, node, product_id).await == *name },
            )
            .await;
        }
    }
    eprintln!(
        "both nodes served the last name of all {} renamed products {:?} after the load",
        last_names.len(),
        converging.elapsed()
    );

    // After the restart, updates reach the other node again, and the Redis tier is used.
    let delay =
        update_is_served_fresh(&http, [&b, &a], &admin_token, &product_ids[1], "Red mug").await;
    eprintln!("after Redis restarted, an update on node B was served by node A after {delay:?}");
    let mut connection = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: u64 = redis::cmd("DBSIZE")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(keys > 0, "the restarted Redis holds cache entries again");

    // A node restarted from nothing still knows the session (Redis was emptied by the
    // crash too: the database copy serves and refills it).
    b.signal("-KILL");
    let b = Node::start("serve", &env());
    assert_eq!(profile(&b).await.unwrap().status(), 200);
    let _ = std::fs::remove_dir_all(data_dir);
}
