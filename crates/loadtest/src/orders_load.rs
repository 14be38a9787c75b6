//! Orders at a steady rate through the real HTTP API: `POST /v1/users/{userId}/orders`
//! with a fresh `Idempotency-Key` each, one line of one product.
//!
//! Open loop: a request starts every `1/rate` seconds whether or not earlier ones have
//! answered (up to `max_in_flight` at once; a tick with no free slot is counted as
//! `skipped`, so a server that falls behind shows up instead of slowing the generator
//! down to its pace). The summary says what was sent, how it was answered and how fast.

use crate::latency::LatencyRecorder;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What to send and how fast.
pub struct OrdersLoadSettings {
    /// Base URL of the api (`http://127.0.0.1:8080`).
    pub url: String,
    /// Session token of the buyer.
    pub token: String,
    pub user_id: String,
    pub product_id: String,
    /// Orders started per second.
    pub rate: u32,
    pub duration: Duration,
    pub max_in_flight: usize,
}

/// How the orders were answered.
pub struct OrdersLoadReport {
    pub sent: u64,
    pub skipped: u64,
    pub statuses: BTreeMap<String, u64>,
    pub elapsed: Duration,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
}

impl OrdersLoadReport {
    /// One line: rate, answers by status, latency.
    pub fn summary(&self) -> String {
        let created = self.statuses.get("201").copied().unwrap_or(0);
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, count)| format!("{status}={count}"))
            .collect();
        format!(
            "orders: sent {} in {:.1} s ({:.1}/s), created {} ({:.1}/s), skipped {}, answers [{}], p50 {}, p99 {}",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.sent as f64 / self.elapsed.as_secs_f64(),
            created,
            created as f64 / self.elapsed.as_secs_f64(),
            self.skipped,
            statuses.join(" "),
            format_latency(self.p50),
            format_latency(self.p99),
        )
    }
}

fn format_latency(latency: Option<Duration>) -> String {
    latency.map_or_else(
        || "-".to_owned(),
        |latency| format!("{:.2} ms", latency.as_secs_f64() * 1000.0),
    )
}

/// Sends orders as `settings` say and reports how they were answered.
pub async fn run(settings: &OrdersLoadSettings) -> anyhow::Result<OrdersLoadReport> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(settings.max_in_flight)
        .build()?;
    let endpoint = format!(
        "{}/v1/users/{}/orders",
        settings.url.trim_end_matches('/'),
        settings.user_id
    );
    let body = Arc::new(serde_json::to_vec(&serde_json::json!({
        "items": [{"productId": settings.product_id, "quantity": 1}]
    }))?);
    let slots = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
    let statuses = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let latencies = Arc::new(LatencyRecorder::default());
    let run_id: u64 = rand_run_id();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / settings.rate.max(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut running = JoinSet::new();
    let (mut sent, mut skipped) = (0u64, 0u64);
    while started.elapsed() < settings.duration {
        ticker.tick().await;
        while running.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        sent += 1;
        let request = client
            .post(&endpoint)
            .bearer_auth(&settings.token)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("soak-{run_id:x}-{sent}"))
            .body(body.as_ref().clone());
        let (statuses, latencies) = (Arc::clone(&statuses), Arc::clone(&latencies));
        running.spawn(async move {
            let began = Instant::now();
            let status = match request.send().await {
                Ok(response) => response.status().as_u16().to_string(),
                Err(error) if error.is_timeout() => "timeout".to_owned(),
                Err(_) => "error".to_owned(),
            };
            latencies.record(began.elapsed());
            *statuses
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(status)
                .or_default() += 1;
            drop(permit);
        });
    }
    while running.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let statuses = statuses
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(OrdersLoadReport {
        sent,
        skipped,
        statuses,
        elapsed,
        p50: latencies.percentile(50.0),
        p99: latencies.percentile(99.0),
    })
}

/// Distinguishes this run's idempotency keys from an earlier run's on the same database.
fn rand_run_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}
