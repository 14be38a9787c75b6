//! The admin and job-status routers over HTTP: a real `SqlJobQueue` (SQLite always,
//! PostgreSQL when `LOADSTAR_TEST_DATABASE_URL` names a server), served by `axum::serve` on
//! a port-0 listener and called with reqwest. Dead jobs are made through the trait:
//! enqueue, fetch, fail on the last attempt. Time is a `ManualClock`; nothing sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use loadstar_core::{Id, IdGenerator};
use loadstar_jobs::{
    admin_router, job_status_router, Exhausted, JobQueue, JobState, JobStatusApi, JobsAdminApi,
    ManualClock, NewJob, PayloadDecoder, RetryPolicy, SqlJobQueue,
};
use loadstar_store::Database;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi;

const LEASE: Duration = Duration::from_secs(30);

/// Shows UTF-8 payloads as `{"text": ...}` and refuses anything else, like a protobuf
/// decoder refuses bytes that are not its message.
struct Utf8Decoder;

impl PayloadDecoder for Utf8Decoder {
    fn decode(&self, kind: &str, payload: &[u8]) -> Result<Value, String> {
        std::str::from_utf8(payload)
            .map(|text| json!({ "text": text }))
            .map_err(|_| format!("a {kind} payload must be utf-8"))
    }
}

/// A running server over a fresh queue, and a client for it.
struct TestApi {
    base: String,
    http: reqwest::Client,
    queue: Arc<dyn JobQueue>,
    clock: Arc<ManualClock>,
}

/// What came back: status, media type and JSON body (`Null` when empty).
struct Reply {
    status: u16,
    content_type: String,
    body: Value,
}

impl Reply {
    fn field_errors(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|error| error["field"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn assert_problem(&self, status: u16) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.content_type, "application/problem+json");
        assert_eq!(self.body["status"], status);
    }
}

impl TestApi {
    async fn spawn(db: Database) -> Self {
        let clock = Arc::new(ManualClock::new());
        let queue: Arc<dyn JobQueue> = Arc::new(SqlJobQueue::new(
            db,
            Arc::new(IdGenerator::new(1)),
            clock.clone(),
        ));
        let router = admin_router(queue.clone(), Arc::new(Utf8Decoder))
            .merge(job_status_router(queue.clone()));
        // Bound before the server task starts, so requests wait in the backlog instead of
        // racing the spawn.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            base: format!("http://{address}"),
            http: reqwest::Client::new(),
            queue,
            clock,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Reply {
            status,
            content_type,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn get_with(&self, path: &str, query: &[(&str, &str)]) -> Reply {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query))
            .await
    }

    async fn post(&self, path: &str) -> Reply {
        self.send(self.http.post(format!("{}{path}", self.base)))
            .await
    }

    async fn post_json(&self, path: &str, body: Value) -> Reply {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    /// Fetches the next job of `queue` and fails it; returns the state it went to.
    async fn fetch_and_fail(&self, queue: &str, worker: &str, error: &str) -> (Id, JobState) {
        let leased = self.queue.fetch(queue, worker, LEASE, 1).await.unwrap();
        let job = leased.first().expect("a job to fail");
        let state = self
            .queue
            .fail(job, error, &dead_letter())
            .await
            .unwrap()
            .expect("dead-lettered, not discarded");
        (job.id, state)
    }

    /// A job of one attempt that failed it: in the error queue.
    async fn dead_job(&self, queue: &str, kind: &str, payload: &[u8]) -> Id {
        let id = self
            .queue
            .enqueue(NewJob::new(queue, kind, payload.to_vec()).with_max_attempts(1))
            .await
            .unwrap();
        let (failed, state) = self
            .fetch_and_fail(queue, "w1", &format!("{kind} failed"))
            .await;
        assert_eq!((failed, state), (id, JobState::Dead));
        id
    }

    /// Every id of the error queue matching `filter`, walking pages of `limit`.
    async fn walk_dead_jobs(&self, filter: &[(&str, &str)], limit: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = filter.to_vec();
            query.push(("limit", limit));
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor));
            }
            let reply = self.get_with("/v1/admin/dead-jobs", &query).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            let page = reply.body["items"].as_array().unwrap().clone();
            assert!(page.len() <= limit.parse().unwrap());
            items.extend(page);
            match reply.body["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
    }
}

fn dead_letter() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(10),
        on_exhausted: Exhausted::DeadLetter,
    }
}

fn ids_of(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn queue_counts_show_every_queue_by_state(api: TestApi) {
    api.dead_job("payments", "charge", b"a").await;
    api.dead_job("payments", "charge", b"b").await;
    for kind in ["running", "completed", "available"] {
        api.queue
            .enqueue(NewJob::new("emails", kind, vec![]))
            .await
            .unwrap();
    }
    let leased = api.queue.fetch("emails", "w1", LEASE, 2).await.unwrap();
    assert!(api.queue.complete(&leased[1]).await.unwrap());

    let reply = api.get("/v1/admin/queues").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!({ "items": [
            { "queue": "emails", "available": 1, "running": 1, "completed": 1, "dead": 0 },
            { "queue": "payments", "available": 0, "running": 0, "completed": 0, "dead": 2 },
        ]})
    );
}

async fn dead_jobs_are_listed_oldest_first_by_filter_in_pages_without_duplicates(api: TestApi) {
    let mut charges = Vec::new();
    for n in 0..5 {
        charges.push(
            api.dead_job("payments", "charge", format!("c{n}").as_bytes())
                .await
                .to_string(),
        );
    }
    let mut refunds = Vec::new();
    for n in 0..2 {
        refunds.push(
            api.dead_job("payments", "refund", format!("r{n}").as_bytes())
                .await
                .to_string(),
        );
    }
    api.dead_job("emails", "charge", b"e").await;

    let every = api.walk_dead_jobs(&[], "3").await;
    assert_eq!(every.len(), 8);
    let ids = ids_of(&every);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 8, "no duplicates");
    let mut sorted = ids.clone();
    sorted.sort_by_key(|id| id.parse::<i64>().unwrap());
    assert_eq!(ids, sorted, "oldest first");

    let charges_of_payments = api
        .walk_dead_jobs(&[("queue", "payments"), ("kind", "charge")], "2")
        .await;
    assert_eq!(ids_of(&charges_of_payments), charges);
    let refunds_listed = api.walk_dead_jobs(&[("kind", "refund")], "1").await;
    assert_eq!(ids_of(&refunds_listed), refunds);
    let of_payments = api.walk_dead_jobs(&[("queue", "payments")], "100").await;
    assert_eq!(of_payments.len(), 7);

    let first = &refunds_listed[0];
    assert_eq!(first["queue"], "payments");
    assert_eq!(first["kind"], "refund");
    assert_eq!(first["attempt"], 1);
    assert_eq!(first["maxAttempts"], 1);
    assert_eq!(first["lastError"], "refund failed");
    assert!(first["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(first["finishedAt"].as_str().unwrap().ends_with('Z'));
    assert!(
        first.get("payload").is_none(),
        "lists leave payloads to the detail"
    );

    let default_page = api.get("/v1/admin/dead-jobs").await;
    assert_eq!(default_page.body["items"].as_array().unwrap().len(), 8);
    assert_eq!(default_page.body["nextCursor"], Value::Null);
    let empty_filters = api
        .get_with(
            "/v1/admin/dead-jobs",
            &[("queue", ""), ("kind", ""), ("cursor", "")],
        )
        .await;
    assert_eq!(empty_filters.body["items"].as_array().unwrap().len(), 8);
}

async fn a_dead_job_shows_its_decoded_payload_and_every_attempt(api: TestApi) {
    let id = api
        .queue
        .enqueue(NewJob::new("payments", "charge", b"order 42".to_vec()).with_max_attempts(2))
        .await
        .unwrap();
    let (_, state) = api.fetch_and_fail("payments", "w1", "card declined").await;
    assert_eq!(state, JobState::Available);
    api.clock.advance(Duration::from_secs(60));
    let (_, state) = api
        .fetch_and_fail("payments", "w2", "provider timed out")
        .await;
    assert_eq!(state, JobState::Dead);

    let reply = api.get(&format!("/v1/admin/dead-jobs/{id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.content_type, "application/json");
    let job = reply.body;
    assert_eq!(job["id"], id.to_string());
    assert_eq!(job["queue"], "payments");
    assert_eq!(job["kind"], "charge");
    assert_eq!(job["state"], "dead");
    assert_eq!(job["attempt"], 2);
    assert_eq!(job["maxAttempts"], 2);
    assert_eq!(job["lastError"], "provider timed out");
    assert_eq!(job["payload"], json!({ "text": "order 42" }));
    assert_eq!(job["payloadError"], Value::Null);
    assert_eq!(job["payloadBase64"], Value::Null);
    assert!(job["createdAt"].as_str().unwrap().contains('T'));
    assert!(job["finishedAt"].as_str().unwrap().contains('T'));

    let attempts = job["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    let summary: Vec<(u64, &str, &str, &str)> = attempts
        .iter()
        .map(|attempt| {
            (
                attempt["attempt"].as_u64().unwrap(),
                attempt["worker"].as_str().unwrap(),
                attempt["outcome"].as_str().unwrap(),
                attempt["error"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "w1", "failed", "card declined"),
            (2, "w2", "failed", "provider timed out"),
        ]
    );
    for attempt in attempts {
        assert!(attempt["startedAt"].as_str().unwrap().ends_with('Z'));
        assert!(attempt["finishedAt"].as_str().unwrap().ends_with('Z'));
    }
}

async fn a_payload_the_decoder_cannot_read_is_shown_as_base64_with_the_reason(api: TestApi) {
    let id = api
        .dead_job("payments", "charge", &[0xff, 0xfe, 0x00])
        .await;
    let reply = api.get(&format!("/v1/admin/dead-jobs/{id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["payload"], Value::Null);
    assert_eq!(reply.body["payloadError"], "a charge payload must be utf-8");
    assert_eq!(reply.body["payloadBase64"], "//4A");
}

async fn a_retried_dead_job_is_available_again_and_leaves_the_error_queue(api: TestApi) {
    let retried = api.dead_job("payments", "charge", b"again").await;
    let stays = api.dead_job("payments", "charge", b"stays").await;

    let reply = api
        .post(&format!("/v1/admin/dead-jobs/{retried}/retry"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["id"], retried.to_string());
    assert_eq!(reply.body["state"], "available");
    assert_eq!(reply.body["maxAttempts"], 2, "a fresh set of attempts");
    assert_eq!(reply.body["finishedAt"], Value::Null);
    assert_eq!(reply.body["payload"], json!({ "text": "again" }));
    assert_eq!(reply.body["attempts"].as_array().unwrap().len(), 1);

    api.get(&format!("/v1/admin/dead-jobs/{retried}"))
        .await
        .assert_problem(404);
    let listed = api.walk_dead_jobs(&[], "20").await;
    assert_eq!(ids_of(&listed), [stays.to_string()]);
    api.post(&format!("/v1/admin/dead-jobs/{retried}/retry"))
        .await
        .assert_problem(404);

    let redelivered = api.queue.fetch("payments", "w2", LEASE, 10).await.unwrap();
    assert_eq!(redelivered.len(), 1);
    assert_eq!((redelivered[0].id, redelivered[0].attempt), (retried, 2));
}

async fn retrying_all_of_a_kind_leaves_other_kinds_in_the_error_queue(api: TestApi) {
    let mut charges = HashSet::new();
    for n in 0..3 {
        charges.insert(api.dead_job("payments", "charge", &[n]).await);
    }
    let refund = api.dead_job("payments", "refund", b"r").await;
    let other_queue = api.dead_job("emails", "charge", b"e").await;

    let reply = api
        .post_json(
            "/v1/admin/dead-jobs/retry",
            json!({ "queue": "payments", "kind": "charge" }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, json!({ "retried": 3, "limitReached": false }));

    let left: HashSet<String> = ids_of(&api.walk_dead_jobs(&[], "20").await)
        .into_iter()
        .collect();
    assert_eq!(
        left,
        HashSet::from([refund.to_string(), other_queue.to_string()])
    );
    let redelivered: HashSet<Id> = api
        .queue
        .fetch("payments", "w2", LEASE, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(redelivered, charges);

    let nothing_left = api
        .post_json(
            "/v1/admin/dead-jobs/retry",
            json!({ "kind": "charge", "queue": "payments" }),
        )
        .await;
    assert_eq!(
        nothing_left.body,
        json!({ "retried": 0, "limitReached": false })
    );
    let everything = api.post_json("/v1/admin/dead-jobs/retry", json!({})).await;
    assert_eq!(
        everything.body,
        json!({ "retried": 2, "limitReached": false })
    );
}

async fn a_retry_all_request_that_is_not_a_clear_filter_is_rejected(api: TestApi) {
    let survivor = api.dead_job("payments", "charge", b"x").await;

    let empty_kind = api
        .post_json("/v1/admin/dead-jobs/retry", json!({ "kind": "" }))
        .await;
    empty_kind.assert_problem(400);
    assert_eq!(empty_kind.field_errors(), ["kind"]);

    let wrong_type = api
        .post_json("/v1/admin/dead-jobs/retry", json!({ "queue": 7 }))
        .await;
    wrong_type.assert_problem(400);
    assert_eq!(wrong_type.field_errors(), ["queue"]);

    let unknown_field = api
        .post_json("/v1/admin/dead-jobs/retry", json!({ "type": "charge" }))
        .await;
    unknown_field.assert_problem(400);

    let not_json = api
        .send(
            api.http
                .post(format!("{}/v1/admin/dead-jobs/retry", api.base))
                .header("content-type", "text/plain")
                .body("kind=charge"),
        )
        .await;
    not_json.assert_problem(415);

    let broken = api
        .send(
            api.http
                .post(format!("{}/v1/admin/dead-jobs/retry", api.base))
                .header("content-type", "application/json")
                .body("{\"kind\":"),
        )
        .await;
    broken.assert_problem(400);

    assert_eq!(
        ids_of(&api.walk_dead_jobs(&[], "20").await),
        [survivor.to_string()],
        "nothing was retried"
    );
}

async fn a_discarded_dead_job_is_gone_for_good(api: TestApi) {
    let id = api.dead_job("payments", "charge", b"drop me").await;
    let reply = api.delete(&format!("/v1/admin/dead-jobs/{id}")).await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.body, Value::Null);

    api.get(&format!("/v1/admin/dead-jobs/{id}"))
        .await
        .assert_problem(404);
    api.delete(&format!("/v1/admin/dead-jobs/{id}"))
        .await
        .assert_problem(404);
    api.get(&format!("/v1/jobs/{id}")).await.assert_problem(404);
    assert!(api.queue.get(id).await.unwrap().is_none());
}

async fn jobs_that_are_unknown_or_not_dead_are_not_found(api: TestApi) {
    let unknown = "178250616291024896";
    api.get(&format!("/v1/admin/dead-jobs/{unknown}"))
        .await
        .assert_problem(404);
    api.post(&format!("/v1/admin/dead-jobs/{unknown}/retry"))
        .await
        .assert_problem(404);
    api.delete(&format!("/v1/admin/dead-jobs/{unknown}"))
        .await
        .assert_problem(404);

    let waiting = api
        .queue
        .enqueue(NewJob::new("payments", "charge", vec![]))
        .await
        .unwrap();
    api.get(&format!("/v1/admin/dead-jobs/{waiting}"))
        .await
        .assert_problem(404);
    api.post(&format!("/v1/admin/dead-jobs/{waiting}/retry"))
        .await
        .assert_problem(404);
    api.delete(&format!("/v1/admin/dead-jobs/{waiting}"))
        .await
        .assert_problem(404);
    assert!(api.queue.get(waiting).await.unwrap().is_some(), "untouched");
}

async fn malformed_ids_limits_and_cursors_are_rejected_naming_the_field(api: TestApi) {
    for bad_id in ["abc", "0", "-5", "99999999999999999999"] {
        for reply in [
            api.get(&format!("/v1/admin/dead-jobs/{bad_id}")).await,
            api.post(&format!("/v1/admin/dead-jobs/{bad_id}/retry"))
                .await,
            api.delete(&format!("/v1/admin/dead-jobs/{bad_id}")).await,
            api.get(&format!("/v1/jobs/{bad_id}")).await,
        ] {
            reply.assert_problem(400);
            assert_eq!(reply.body["type"], "urn:loadstar:problem:validation");
            assert_eq!(reply.field_errors(), ["jobId"], "{bad_id}");
        }
    }
    for bad_limit in ["0", "101", "ten"] {
        let reply = api
            .get_with("/v1/admin/dead-jobs", &[("limit", bad_limit)])
            .await;
        reply.assert_problem(400);
        assert_eq!(reply.field_errors(), ["limit"], "{bad_limit}");
    }
    let reply = api
        .get_with(
            "/v1/admin/dead-jobs",
            &[("cursor", "not-ours"), ("limit", "0")],
        )
        .await;
    reply.assert_problem(400);
    assert_eq!(reply.field_errors(), ["cursor", "limit"]);
}

async fn the_status_of_accepted_work_can_be_polled_until_it_completes(api: TestApi) {
    let id = api
        .queue
        .enqueue(NewJob::new("emails", "welcome", b"secret address".to_vec()))
        .await
        .unwrap();
    let accepted = api.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let created_at = accepted.body["createdAt"].clone();
    assert!(created_at.as_str().unwrap().ends_with('Z'));
    assert_eq!(
        accepted.body,
        json!({
            "id": id.to_string(),
            "kind": "welcome",
            "state": "available",
            "attempt": 0,
            "maxAttempts": 3,
            "lastError": null,
            "createdAt": created_at,
            "finishedAt": null,
        }),
        "no queue, no payload"
    );

    let leased = api.queue.fetch("emails", "w1", LEASE, 1).await.unwrap();
    assert_eq!(
        api.get(&format!("/v1/jobs/{id}")).await.body["state"],
        "running"
    );
    assert!(api.queue.complete(&leased[0]).await.unwrap());
    let done = api.get(&format!("/v1/jobs/{id}")).await.body;
    assert_eq!(done["state"], "completed");
    assert_eq!(done["attempt"], 1);
    assert!(done["finishedAt"].as_str().unwrap().ends_with('Z'));

    let dead = api.dead_job("emails", "welcome", b"x").await;
    let reply = api.get(&format!("/v1/jobs/{dead}")).await.body;
    assert_eq!(
        (&reply["state"], &reply["lastError"]),
        (&json!("dead"), &json!("welcome failed"))
    );
    api.get("/v1/jobs/178250616291024896")
        .await
        .assert_problem(404);
}

#[test]
fn the_openapi_documents_list_every_route() {
    let admin = JobsAdminApi::openapi();
    let admin_paths: HashSet<&str> = admin.paths.paths.keys().map(String::as_str).collect();
    assert_eq!(
        admin_paths,
        HashSet::from([
            "/v1/admin/queues",
            "/v1/admin/dead-jobs",
            "/v1/admin/dead-jobs/{jobId}",
            "/v1/admin/dead-jobs/{jobId}/retry",
            "/v1/admin/dead-jobs/retry",
        ])
    );
    let schemas = admin.components.unwrap().schemas;
    for name in ["JobDetail", "DeadJobPage", "RetryAllRequest", "Problem"] {
        assert!(schemas.contains_key(name), "{name}");
    }
    let status = JobStatusApi::openapi();
    assert!(status.paths.paths.contains_key("/v1/jobs/{jobId}"));
}

loadstar_store::on_every_database!(
    TestApi::spawn;

    queue_counts_show_every_queue_by_state,
    dead_jobs_are_listed_oldest_first_by_filter_in_pages_without_duplicates,
    a_dead_job_shows_its_decoded_payload_and_every_attempt,
    a_payload_the_decoder_cannot_read_is_shown_as_base64_with_the_reason,
    a_retried_dead_job_is_available_again_and_leaves_the_error_queue,
    retrying_all_of_a_kind_leaves_other_kinds_in_the_error_queue,
    a_retry_all_request_that_is_not_a_clear_filter_is_rejected,
    a_discarded_dead_job_is_gone_for_good,
    jobs_that_are_unknown_or_not_dead_are_not_found,
    malformed_ids_limits_and_cursors_are_rejected_naming_the_field,
    the_status_of_accepted_work_can_be_polled_until_it_completes,
);
