//! The payment simulator over a real socket: each test starts its own on port 0 and
//! talks to it with reqwest, as the payment worker will.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::future::join_all;
use loadstar_sim::charge::Charge;
use loadstar_sim::stats::StatsSnapshot;
use loadstar_sim::{PaymentSimulator, SimConfig};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running simulator and a client for it; stops it when dropped.
struct TestSimulator {
    address: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
    _server: JoinHandle<()>,
}

impl Drop for TestSimulator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn spawn_simulator(config: SimConfig) -> TestSimulator {
    let config = SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let simulator = PaymentSimulator::build(&config).await.unwrap();
    let address = format!("http://{}", simulator.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        simulator.run_until_stopped(stop).await.unwrap();
    });
    TestSimulator {
        address,
        client: reqwest::Client::new(),
        shutdown,
        _server: server,
    }
}

fn charge_body(order_id: &str) -> Value {
    json!({"orderId": order_id, "amountCents": 2500, "currency": "EUR"})
}

impl TestSimulator {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    async fn charge(&self, key: &str, body: &Value) -> Response {
        self.client
            .post(self.url("/v1/charges"))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn stats(&self) -> StatsSnapshot {
        let response = self.client.get(self.url("/stats")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn set_behaviour(&self, behaviour: &Value) -> Response {
        self.client
            .put(self.url("/admin/behaviour"))
            .json(behaviour)
            .send()
            .await
            .unwrap()
    }
}

fn is_replayed(response: &Response) -> bool {
    response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|value| value == "true")
}

/// Asserts a problem+json answer with `status` and returns its body.
async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"]
        .as_str()
        .unwrap()
        .starts_with("urn:loadstar:problem:"));
    body
}

fn error_fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_charge_succeeds_and_describes_what_was_charged() {
    let sim = spawn_simulator(SimConfig::default()).await;

    let response = sim.charge("order-1", &charge_body("order-1")).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(!is_replayed(&response));
    let body: Value = response.json().await.unwrap();
    assert!(body["chargeId"].as_str().unwrap().starts_with("ch_"));
    assert_eq!(body["orderId"], "order-1");
    assert_eq!(body["amountCents"], 2500);
    assert_eq!(body["currency"], "EUR");
    assert_eq!(body["status"], "succeeded");
    assert!(body["createdAt"].is_string());
    let stats = sim.stats().await;
    assert_eq!((stats.charges, stats.requests), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeated_charge_is_answered_with_the_first_result_and_not_charged_again() {
    let sim = spawn_simulator(SimConfig::default()).await;

    let first = sim.charge("order-7", &charge_body("order-7")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Charge = first.json().await.unwrap();
    let again = sim.charge("order-7", &charge_body("order-7")).await;

    assert_eq!(again.status(), StatusCode::CREATED);
    assert!(is_replayed(&again));
    let again: Charge = again.json().await.unwrap();
    assert_eq!(
        again, first,
        "the replay is the first charge, byte for byte"
    );
    let stats = sim.stats().await;
    assert_eq!(stats.charges, 1);
    assert_eq!(stats.repeated_attempts, 1);
    assert_eq!(stats.requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_identical_concurrent_charges_make_exactly_one_charge() {
    // The latency keeps the first charge in flight while the others arrive.
    let sim = spawn_simulator(SimConfig {
        latency_ms: 300,
        ..SimConfig::default()
    })
    .await;

    let body = charge_body("order-42");
    let responses = join_all((0..10).map(|_| sim.charge("order-42", &body))).await;

    let mut fresh = Vec::new();
    let mut replayed = Vec::new();
    for response in responses {
        match response.status() {
            StatusCode::CREATED if is_replayed(&response) => {
                replayed.push(response.json::<Charge>().await.unwrap());
            }
            StatusCode::CREATED => fresh.push(response.json::<Charge>().await.unwrap()),
            StatusCode::CONFLICT => {
                let problem = assert_problem(response, StatusCode::CONFLICT).await;
                assert_eq!(problem["type"], "urn:loadstar:problem:charge-in-progress");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(fresh.len(), 1, "exactly one request charges");
    assert!(replayed.iter().all(|charge| *charge == fresh[0]));
    let stats = sim.stats().await;
    assert_eq!(stats.charges, 1);
    assert_eq!(stats.repeated_attempts, 9);
    assert_eq!(stats.requests, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_injected_failure_charges_nothing_and_the_same_key_succeeds_once_the_provider_recovers()
{
    let sim = spawn_simulator(SimConfig {
        failure_rate: 1.0,
        ..SimConfig::default()
    })
    .await;

    let failed = sim.charge("order-9", &charge_body("order-9")).await;
    let problem = assert_problem(failed, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:unavailable");
    let stats = sim.stats().await;
    assert_eq!((stats.charges, stats.injected_failures), (0, 1));

    let recovered = sim
        .set_behaviour(&json!({"failureRate": 0.0, "latencyMs": 0}))
        .await;
    assert_eq!(recovered.status(), StatusCode::OK);
    assert_eq!(
        recovered.json::<Value>().await.unwrap(),
        json!({"failureRate": 0.0, "latencyMs": 0})
    );
    let retried = sim.charge("order-9", &charge_body("order-9")).await;

    assert_eq!(retried.status(), StatusCode::CREATED);
    assert!(
        !is_replayed(&retried),
        "a failure is not a result to replay"
    );
    let stats = sim.stats().await;
    assert_eq!(stats.charges, 1);
    assert_eq!(stats.repeated_attempts, 0);
    assert_eq!(stats.injected_failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_beyond_capacity_is_answered_429_and_counted() {
    let sim = spawn_simulator(SimConfig {
        capacity_per_sec: 5,
        ..SimConfig::default()
    })
    .await;

    let bodies: Vec<(String, Value)> = (0..30)
        .map(|n| (format!("burst-{n}"), charge_body(&format!("burst-{n}"))))
        .collect();
    let responses = join_all(bodies.iter().map(|(key, body)| sim.charge(key, body))).await;

    let mut created = 0;
    let mut rejected = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(response.headers()["retry-after"], "1");
                let problem = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
                assert_eq!(problem["type"], "urn:loadstar:problem:over-capacity");
                rejected += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // The bucket starts full (one second's worth); refilling 25 more tokens would take
    // the burst five seconds.
    assert!(created >= 5, "a full bucket admits its burst: {created}");
    assert!(rejected > 0, "30 requests at once exceed 5 per second");
    let stats = sim.stats().await;
    assert_eq!(stats.rejected_over_capacity, rejected);
    assert_eq!(stats.charges, created);
    assert_eq!(stats.requests, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_charges_are_400_problems_naming_the_field_and_charge_nothing() {
    let sim = spawn_simulator(SimConfig::default()).await;

    let without_key = sim
        .client
        .post(sim.url("/v1/charges"))
        .json(&charge_body("order-1"))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(without_key, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["Idempotency-Key"]);

    let zero_amount = json!({"orderId": "order-1", "amountCents": 0, "currency": "EUR"});
    let problem = assert_problem(
        sim.charge("order-1", &zero_amount).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_fields(&problem), ["amountCents"]);

    let wrong_currency = json!({"orderId": "order-1", "amountCents": 100, "currency": "USD"});
    let problem = assert_problem(
        sim.charge("order-1", &wrong_currency).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_fields(&problem), ["currency"]);

    let not_json = sim
        .client
        .post(sim.url("/v1/charges"))
        .header("Idempotency-Key", "order-1")
        .header("content-type", "application/json")
        .body("{\"orderId\":")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(not_json, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:bad-request");

    let stats = sim.stats().await;
    assert_eq!((stats.charges, stats.requests), (0, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_reused_for_a_different_charge_is_refused_with_422() {
    let sim = spawn_simulator(SimConfig::default()).await;
    let first = sim.charge("order-5", &charge_body("order-5")).await;
    assert_eq!(first.status(), StatusCode::CREATED);

    let other_amount = json!({"orderId": "order-5", "amountCents": 1, "currency": "EUR"});
    let problem = assert_problem(
        sim.charge("order-5", &other_amount).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    assert_eq!(
        problem["type"],
        "urn:loadstar:problem:idempotency-key-reused"
    );
    let stats = sim.stats().await;
    assert_eq!((stats.charges, stats.repeated_attempts), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_out_of_range_behaviour_is_refused_and_the_old_one_kept() {
    let sim = spawn_simulator(SimConfig::default()).await;

    let problem = assert_problem(
        sim.set_behaviour(&json!({"failureRate": 1.5, "latencyMs": 0}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_fields(&problem), ["failureRate"]);
    let problem = assert_problem(
        sim.set_behaviour(&json!({"failureRate": 0.5})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("latencyMs"));

    let current = sim
        .client
        .get(sim.url("/admin/behaviour"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        current.json::<Value>().await.unwrap(),
        json!({"failureRate": 0.0, "latencyMs": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthz_answers_and_unknown_paths_are_404_problems() {
    let sim = spawn_simulator(SimConfig::default()).await;

    let health = sim.client.get(sim.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    let missing = sim.client.get(sim.url("/v1/refunds")).send().await.unwrap();
    assert_problem(missing, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn an_invalid_configuration_is_refused_at_build() {
    let too_flaky = SimConfig {
        failure_rate: 2.0,
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SimConfig::default()
    };
    assert!(PaymentSimulator::build(&too_flaky).await.is_err());
    let no_capacity = SimConfig {
        capacity_per_sec: 0,
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SimConfig::default()
    };
    assert!(PaymentSimulator::build(&no_capacity).await.is_err());
}
