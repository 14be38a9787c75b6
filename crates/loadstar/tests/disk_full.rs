//! The disk under `loadstar serve`'s embedded database fills up while customers place
//! orders, then frees again. Every order answered 201 must be in the database after a
//! graceful stop and a restart; while the disk is full, orders are refused at once with
//! 507 or 503 (problem+json, `Retry-After`), reads keep working, and orders succeed again
//! soon after the space returns. Before the store verified its commits, every order
//! acknowledged from the moment the disk filled was lost, including those placed after
//! the space had returned.
//!
//! The disk is a real tmpfs this test mounts (CI runs as root); elsewhere it says so and
//! passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use loadstar_store::test_support::SmallDisk;
use process::{create_admin, login, Node};
use process::{BUYER_EMAIL, BUYER_PASSWORD};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const ORDER_CLIENTS: usize = 4;
const READ_CLIENTS: usize = 2;

/// What the order clients saw.
#[derive(Default)]
struct Outcomes {
    /// Ids of orders answered 201.
    acknowledged: BTreeSet<String>,
    /// 201s received after the disk was freed.
    acknowledged_after_free: usize,
    /// Refusals (507/503) with how long each took to be answered.
    refusals: Vec<(u16, Duration)>,
    /// Any other status: must stay empty.
    unexpected: Vec<(u16, String)>,
    /// Reads that did not answer 200.
    failed_reads: Vec<u16>,
}

fn environment(data_dir: &str) -> Vec<(String, String)> {
    [
        ("LOADSTAR_DATA_DIR", data_dir),
        ("LOADSTAR_LOG__FORMAT", "json"),
        // Nothing listens here: charges fail and are retried, writing to the disk too.
        ("LOADSTAR_PAYMENTS__URL", "http://127.0.0.1:9"),
        ("LOADSTAR_ORDERS__UNPAID_EXPIRY_SECS", "3600"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

#[allow(clippy::too_many_arguments)]
async fn place_orders(
    http: reqwest::Client,
    url: String,
    token: String,
    user_id: String,
    product: String,
    client: usize,
    freed: Arc<Mutex<Option<Instant>>>,
    outcomes: Arc<Mutex<Outcomes>>,
    stop: CancellationToken,
) {
    let mut n = 0;
    while !stop.is_cancelled() {
        n += 1;
        let started = Instant::now();
        let response = http
            .post(format!("{url}/v1/users/{user_id}/orders"))
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("disk-full-{client}-{n}"))
            .json(&json!({"items": [{"productId": product, "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key("retry-after");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let mut outcomes = outcomes.lock().unwrap();
        match status {
            201 => {
                outcomes
                    .acknowledged
                    .insert(body["id"].as_str().unwrap().to_owned());
                if freed.lock().unwrap().is_some() {
                    outcomes.acknowledged_after_free += 1;
                }
            }
            507 | 503 if retry_after && body["status"] == status => {
                outcomes.refusals.push((status, elapsed));
            }
            _ => outcomes.unexpected.push((status, body.to_string())),
        }
    }
}

async fn read_product(
    http: reqwest::Client,
    url: String,
    product: String,
    outcomes: Arc<Mutex<Outcomes>>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let response = http
            .get(format!("{url}/v1/products/{product}"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status != 200 {
            outcomes.lock().unwrap().failed_reads.push(status);
        }
        let _ = response.bytes().await;
    }
}

/// Every order of the user, through the API.
async fn listed_orders(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    user: &str,
) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let page: Value = http
            .get(format!(
                "{url}/v1/users/{user}/orders?limit=100&cursor={cursor}"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for order in page["items"].as_array().unwrap() {
            ids.insert(order["id"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_order_answered_201_survives_a_disk_that_fills_and_frees() {
    let Some(disk) = SmallDisk::mount(48) else {
        eprintln!("cannot mount a tmpfs (not root): disk-full drill not run");
        return;
    };
    let env = environment(disk.path().to_str().unwrap());
    create_admin(env.iter().map(|(k, v)| (k, v)));
    let mut node = Node::start("serve", &env);
    let http = reqwest::Client::new();
    let (product, token, user_id) =
        process::stocked_shop_and_buyer(&http, &node.url, "disk-full-mug", 1_000_000).await;

    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let freed = Arc::new(Mutex::new(None));
    let stop = CancellationToken::new();
    let mut clients = Vec::new();
    for client in 0..ORDER_CLIENTS {
        clients.push(tokio::spawn(place_orders(
            http.clone(),
            node.url.clone(),
            token.clone(),
            user_id.clone(),
            product.clone(),
            client,
            freed.clone(),
            outcomes.clone(),
            stop.clone(),
        )));
    }
    for _ in 0..READ_CLIENTS {
        clients.push(tokio::spawn(read_product(
            http.clone(),
            node.url.clone(),
            product.clone(),
            outcomes.clone(),
            stop.clone(),
        )));
    }

    let wait_for = |what: &'static str, condition: Box<dyn Fn(&Outcomes) -> bool + Send>| {
        let outcomes = outcomes.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !condition(&outcomes.lock().unwrap()) {
                assert!(Instant::now() < deadline, "timed out waiting until {what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(
        "orders are being placed",
        Box::new(|o: &Outcomes| o.acknowledged.len() >= 200),
    )
    .await;

    disk.fill();
    wait_for(
        "orders are refused on the full disk",
        Box::new(|o: &Outcomes| o.refusals.len() >= 200),
    )
    .await;

    disk.free();
    *freed.lock().unwrap() = Some(Instant::now());
    wait_for(
        "orders succeed again after the space returned",
        Box::new(|o: &Outcomes| o.acknowledged_after_free >= 200),
    )
    .await;
    stop.cancel();
    for client in clients {
        client.await.unwrap();
    }

    let outcomes = Arc::try_unwrap(outcomes)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap();
    assert!(
        outcomes.unexpected.is_empty(),
        "only 201, or 507/503 problems with Retry-After: {:?}",
        &outcomes.unexpected[..outcomes.unexpected.len().min(5)]
    );
    assert!(
        outcomes.failed_reads.is_empty(),
        "reads keep working while the disk is full: {:?}",
        &outcomes.failed_reads[..outcomes.failed_reads.len().min(5)]
    );
    let slowest = outcomes
        .refusals
        .iter()
        .map(|(_, took)| *took)
        .max()
        .unwrap();
    eprintln!(
        "acknowledged {}, refused {} (slowest refusal {slowest:?})",
        outcomes.acknowledged.len(),
        outcomes.refusals.len()
    );
    assert!(
        slowest < Duration::from_secs(3),
        "a refused write is answered at once, not after a timeout: {slowest:?}"
    );

    node.signal("-TERM");
    assert!(node.child.wait().unwrap().success());
    let node = Node::start("serve", &env);
    let session = login(&http, &node.url, BUYER_EMAIL, BUYER_PASSWORD).await;
    let listed = listed_orders(
        &http,
        &node.url,
        session["token"].as_str().unwrap(),
        &user_id,
    )
    .await;
    let lost: Vec<&String> = outcomes.acknowledged.difference(&listed).collect();
    assert!(
        lost.is_empty(),
        "{} of {} orders answered 201 are missing after a restart, e.g. {:?}",
        lost.len(),
        outcomes.acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
}
