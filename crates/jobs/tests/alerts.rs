//! Alerts on every database: an `alert` policy's exhausted job stays in the error queue and
//! a signed webhook reaches a real HTTP receiver; error-queue growth alerts once per
//! crossing of its threshold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use axum::http::HeaderMap;
use loadstar_core::IdGenerator;
use loadstar_jobs::{
    webhook_signature, Alert, AlertWebhook, Alerter, DeadLetterWatch, Exhausted, HandlerError,
    JobHandler, JobQueue, JobState, LeasedJob, ManualClock, NewJob, PoolSettings, RetryPolicy,
    SqlJobQueue, WorkerPool, ALERTS_QUEUE, ALERT_WEBHOOK,
};
use loadstar_store::Database;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_alerts";
const LEASE: Duration = Duration::from_secs(30);

fn queue_on(db: Database) -> Arc<dyn JobQueue> {
    Arc::new(SqlJobQueue::new(
        db,
        Arc::new(IdGenerator::new(3)),
        Arc::new(ManualClock::new()),
    ))
}

struct AlwaysFails;

#[async_trait]
impl JobHandler for AlwaysFails {
    async fn handle(&self, _job: &LeasedJob) -> Result<(), HandlerError> {
        Err(HandlerError::new("the ledger is down"))
    }
}

type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// An HTTP receiver on a free port that records every POST.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push((headers, body));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn an_exhausted_job_of_an_alert_policy_stays_dead_and_a_signed_webhook_arrives(db: Database) {
    let queue = queue_on(db);
    let (url, received) = receiver().await;
    let alert_policy = RetryPolicy {
        on_exhausted: Exhausted::Alert,
        ..RetryPolicy::default()
    };
    let pool = WorkerPool::new(
        Arc::clone(&queue),
        PoolSettings {
            poll_interval: Duration::from_millis(10),
            ..PoolSettings::new(
                "alerts-test",
                vec!["default".to_owned(), ALERTS_QUEUE.to_owned()],
            )
        },
    )
    .handle("ledger.post", Arc::new(AlwaysFails), alert_policy)
    .handle(
        ALERT_WEBHOOK,
        Arc::new(AlertWebhook::new(url, SECRET)),
        RetryPolicy::default(),
    )
    .with_alerter(Alerter::new(Arc::clone(&queue), true));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pool.run(shutdown.clone()));

    let id = queue
        .enqueue(NewJob::new("default", "ledger.post", b"entry".to_vec()).with_max_attempts(1))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no alert webhook arrived");
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval, bounded above
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();

    let job = queue.get(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead, "an alerted job is not lost");
    let (headers, body) = received.lock().unwrap().remove(0);
    let timestamp: i64 = headers["loadstar-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        headers["loadstar-signature"].to_str().unwrap(),
        webhook_signature(SECRET, timestamp, body.as_bytes())
    );
    let alert: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alert["alert"], "job_exhausted");
    assert_eq!(alert["jobId"], id.to_string());
    assert_eq!(alert["queue"], "default");
    assert_eq!(alert["kind"], "ledger.post");
    assert_eq!(alert["attempts"], 1);
    assert_eq!(alert["lastError"], "the ledger is down");
}

/// Sends one job of `kind` straight to the error queue.
async fn kill_one(queue: &Arc<dyn JobQueue>, kind: &str) -> loadstar_core::Id {
    let id = queue
        .enqueue(NewJob::new("default", kind, vec![]).with_max_attempts(1))
        .await
        .unwrap();
    let leased = queue.fetch("default", "w", LEASE, 1).await.unwrap();
    queue
        .fail(&leased[0], "boom", &RetryPolicy::default())
        .await
        .unwrap();
    id
}

async fn alert_webhooks_waiting(queue: &Arc<dyn JobQueue>) -> u64 {
    queue
        .counts()
        .await
        .unwrap()
        .into_iter()
        .find(|counts| counts.queue == ALERTS_QUEUE)
        .map_or(0, |counts| counts.available)
}

async fn error_queue_growth_alerts_once_per_crossing_of_its_threshold(db: Database) {
    let queue = queue_on(db);
    let mut watch = DeadLetterWatch::new(
        Arc::clone(&queue),
        Alerter::new(Arc::clone(&queue), true),
        |kind| if kind == "report.build" { 2 } else { 0 },
    );
    let first = kill_one(&queue, "report.build").await;
    kill_one(&queue, "cache.warm").await;
    kill_one(&queue, "cache.warm").await;
    assert!(watch.check().await.unwrap().is_empty(), "below threshold");

    kill_one(&queue, "report.build").await;
    let raised = watch.check().await.unwrap();
    assert_eq!(
        raised,
        [Alert::ErrorQueueGrew {
            queue: "default".to_owned(),
            kind: "report.build".to_owned(),
            dead: 2,
            threshold: 2
        }]
    );
    assert_eq!(alert_webhooks_waiting(&queue).await, 1);
    kill_one(&queue, "report.build").await;
    assert!(
        watch.check().await.unwrap().is_empty(),
        "still above: no second alert"
    );

    // An operator clears the queue below the threshold; the next crossing alerts again.
    assert!(queue.discard_dead(first).await.unwrap());
    let leased = queue
        .dead_jobs(None, Some("report.build"), None, 10)
        .await
        .unwrap();
    assert!(queue.discard_dead(leased[0].id).await.unwrap());
    assert!(watch.check().await.unwrap().is_empty());
    kill_one(&queue, "report.build").await;
    assert_eq!(watch.check().await.unwrap().len(), 1);
    assert_eq!(alert_webhooks_waiting(&queue).await, 2);
}

async fn dead_counts_by_kind_count_only_dead_jobs(db: Database) {
    let queue = queue_on(db);
    kill_one(&queue, "a").await;
    kill_one(&queue, "a").await;
    kill_one(&queue, "b").await;
    queue
        .enqueue(NewJob::new("default", "a", vec![]))
        .await
        .unwrap();
    let counts: Vec<(String, u64)> = queue
        .dead_counts_by_kind()
        .await
        .unwrap()
        .into_iter()
        .map(|count| (count.kind, count.dead))
        .collect();
    assert_eq!(counts, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
}

loadstar_store::on_every_database!(
    loadstar_store::test_support::database;

    an_exhausted_job_of_an_alert_policy_stays_dead_and_a_signed_webhook_arrives,
    error_queue_growth_alerts_once_per_crossing_of_its_threshold,
    dead_counts_by_kind_count_only_dead_jobs,
);
