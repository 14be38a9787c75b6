//! `loadstar serve` with its jobs on RabbitMQ (the machine's broker, reached through a
//! proxy the test controls) while customers keep ordering and the network to the broker
//! fails twice: first refused (a broker restart), then silent (a partition: no byte moves
//! and nothing is closed) and, when it heals, only for new connections, the old ones
//! staying silent for good. Every acknowledged order is paid exactly once, the pipeline
//! runs again within 20 s of the network's return (on lapin's defaults: 140 s), and each
//! outage is logged as a change of state, not as a warning per consumer per retry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use loadstar_core::test_support::{poll_until, FaultProxy, ProxyMode};
use process::{create_admin, Node};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long each outage lasts while the customers keep ordering.
const OUTAGE: Duration = Duration::from_secs(6);
/// Each customer's pace: 20 orders a second from two.
const ORDER_EVERY: Duration = Duration::from_millis(100);
/// The goal the issue set for the pipeline to run again once the network is back.
const RECOVERY: Duration = Duration::from_secs(20);

struct Shop {
    http: Client,
    url: String,
    token: String,
    user: String,
    product: String,
    /// Orders acknowledged while the customers kept ordering.
    placed: Mutex<Vec<String>>,
}

impl Shop {
    /// Places one order; its id when acknowledged (201).
    async fn order(&self) -> Option<String> {
        let response = self
            .http
            .post(format!("{}/v1/users/{}/orders", self.url, self.user))
            .bearer_auth(&self.token)
            .header(
                "Idempotency-Key",
                format!("k{:016x}", rand::random::<u64>()),
            )
            .json(&json!({"items": [{"productId": self.product, "quantity": 1}]}))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("the order request is answered");
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "an order needs no broker: {body}"
        );
        body["id"].as_str().map(str::to_owned)
    }

    async fn status_of(&self, order: &str) -> String {
        let response = self
            .http
            .get(format!(
                "{}/v1/users/{}/orders/{order}",
                self.url, self.user
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        body["status"].as_str().unwrap_or_default().to_owned()
    }

    /// Those of `orders` still not paid when [`RECOVERY`] has passed since `since`.
    async fn unpaid_after(&self, orders: &[String], since: Instant) -> Vec<String> {
        let mut unpaid = orders.to_vec();
        while !unpaid.is_empty() && since.elapsed() < RECOVERY {
            let mut still = Vec::new();
            for order in unpaid {
                if self.status_of(&order).await != "paid" {
                    still.push(order);
                }
            }
            unpaid = still;
        }
        unpaid
    }

    /// Orders from two clients until `stop`, collecting the acknowledged ids in `placed`.
    fn keep_ordering(
        self: &Arc<Self>,
        stop: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..2)
            .map(|_| {
                let (shop, stop) = (Arc::clone(self), stop.clone());
                tokio::spawn(async move {
                    // A steady trickle the pipeline keeps up with when the broker is there.
                    let mut pace = tokio::time::interval(ORDER_EVERY);
                    while !stop.is_cancelled() {
                        pace.tick().await;
                        if let Some(id) = shop.order().await {
                            shop.placed.lock().unwrap().push(id);
                        }
                    }
                })
            })
            .collect()
    }
}

async fn broker_address(url: &str) -> SocketAddr {
    let parsed = url::Url::parse(url).unwrap();
    let host = format!(
        "{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5672)
    );
    tokio::net::lookup_host(host).await.unwrap().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_are_paid_once_each_through_a_refused_and_a_silent_broker() {
    let Ok(broker) = std::env::var("LOADSTAR_TEST_RABBITMQ_URL") else {
        eprintln!("LOADSTAR_TEST_RABBITMQ_URL is not set: broker outage test not run");
        return;
    };
    let proxy = FaultProxy::start(broker_address(&broker).await).await;
    let mut proxied = url::Url::parse(&broker).unwrap();
    proxied.set_port(Some(proxy.address().port())).unwrap();
    let (payments_url, stop_simulator) = process::start_payment_simulator(0).await;

    let env: Vec<(String, String)> = [
        (
            "LOADSTAR_DATA_DIR",
            process::temp_data_dir().to_str().unwrap(),
        ),
        ("LOADSTAR_LOG__FORMAT", "json"),
        ("LOADSTAR_PAYMENTS__URL", payments_url.as_str()),
        ("LOADSTAR_QUEUE__BACKEND", "rabbitmq"),
        ("LOADSTAR_QUEUE__RABBITMQ_URL", proxied.as_str()),
        (
            "LOADSTAR_QUEUE__RABBITMQ_PREFIX",
            &format!("loadstar-outage-{:016x}", rand::random::<u64>()),
        ),
        ("LOADSTAR_QUEUE__RABBITMQ_IDLE_QUEUE_EXPIRY_SECS", "60"),
        ("LOADSTAR_ORDERS__UNPAID_EXPIRY_SECS", "3600"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    create_admin(env.iter().map(|(k, v)| (k, v)));
    let node = Node::start("serve", &env);
    let http = Client::new();
    let (product, token, user) =
        process::stocked_shop_and_buyer(&http, &node.url, "outage-kettle", 1_000_000).await;
    let shop = Arc::new(Shop {
        http,
        url: node.url.clone(),
        token,
        user,
        product,
        placed: Mutex::new(Vec::new()),
    });
    let first = shop.order().await.unwrap();
    poll_until(
        "the first order is paid",
        Duration::from_secs(30),
        || async { shop.status_of(&first).await == "paid" },
    )
    .await;

    let stop = CancellationToken::new();
    let customers = shop.keep_ordering(&stop);
    // A refusal (a broker restart), then a partition whose old connections never heal.
    for (outage, healed) in [
        (ProxyMode::Cut, ProxyMode::Pass),
        (ProxyMode::Silent, ProxyMode::Stranded),
    ] {
        proxy.set_mode(outage);
        // The outage lasts while the customers keep ordering.
        let until = Instant::now() + OUTAGE;
        poll_until("the outage to pass", OUTAGE * 2, || async {
            Instant::now() >= until
        })
        .await;
        proxy.set_mode(healed);
        let back = Instant::now();
        let placed = shop.placed.lock().unwrap().clone();
        let unpaid = shop.unpaid_after(&placed, back).await;
        assert!(
            unpaid.is_empty(),
            "after {outage:?}: {} of {} orders not paid {:?} after the network came back",
            unpaid.len(),
            placed.len(),
            back.elapsed(),
        );
        eprintln!(
            "after {outage:?}: {} orders paid within {:?} of the network's return",
            placed.len(),
            back.elapsed()
        );
    }
    stop.cancel();
    for customer in customers {
        customer.await.unwrap();
    }
    let placed = shop.placed.lock().unwrap().clone();
    assert!(placed.len() > 100, "orders kept coming: {}", placed.len());
    assert!(shop.unpaid_after(&placed, Instant::now()).await.is_empty());
    let stats = process::simulator_stats(&shop.http, &payments_url).await;
    assert_eq!(
        stats["charges"].as_u64().unwrap(),
        u64::try_from(placed.len()).unwrap() + 1,
        "each order charged exactly once"
    );

    // Two outages: each a few lines (the broker, the relay), not one per retry.
    let unreachable = node.count_logs("rabbitmq unreachable");
    assert_eq!(
        unreachable, 2,
        "one 'unreachable' line per outage, not per attempt"
    );
    assert_eq!(node.count_logs("rabbitmq reachable again"), 2);
    let warnings = node.logs_at("WARN");
    assert!(
        warnings.len() <= 12,
        "{} warnings for two outages:\n{}",
        warnings.len(),
        warnings.join("\n")
    );
    assert!(
        node.logs_at("ERROR").is_empty(),
        "{:?}",
        node.logs_at("ERROR")
    );
    stop_simulator.cancel();
}
