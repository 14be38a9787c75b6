//! Error-queue administration over HTTP: queue counts, dead jobs (list, detail with the
//! decoded payload and attempt history), retry one, retry all matching a filter, discard.
//!
//! **No authentication or authorisation of its own.** These routes read every job's
//! payload and can re-run or delete work. The server must mount [`admin_router`] only
//! behind its admin check (e.g. a layer that rejects every principal without the admin
//! role); mounting it bare hands the error queue to anyone who can reach the port.
//!
//! Payloads are opaque bytes to the queue; a [`PayloadDecoder`] supplied by the domain
//! (the shop's protobuf messages) turns them into JSON for people to read. A payload it
//! cannot decode is still shown, as base64, with the decoder's reason.

use crate::api_error::{JobApiError, JobApiResult};
use crate::api_input::{body_filter, ensure_valid, query_filter, JobIdPath};
use crate::job_status_api::JobStateView;
use crate::model::{Attempt, AttemptOutcome, Job, JobState, QueueCounts};
use crate::queue::JobQueue;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use loadstar_core::json_body::JsonBody;
use loadstar_core::pagination::PageRequest;
use loadstar_core::{Id, Problem, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::OpenApi;

/// Most dead jobs one `POST /v1/admin/dead-jobs/retry` moves back; the answer says
/// whether more were left, and the operator calls again. Bounds the request's duration.
pub const MAX_RETRIED_PER_CALL: u32 = 10_000;
/// Dead jobs read per page while retrying all.
const RETRY_ALL_PAGE: u32 = 100;

/// Turns a job's payload into JSON for the admin API. Implemented by the domain, which
/// knows which message each job kind carries.
pub trait PayloadDecoder: Send + Sync {
    /// The payload of a job of `kind` as JSON, or why it cannot be decoded (shown to the
    /// operator as `payloadError`, next to the raw bytes in base64).
    fn decode(&self, kind: &str, payload: &[u8]) -> Result<Value, String>;
}

#[derive(Clone)]
struct AdminState {
    queue: Arc<dyn JobQueue>,
    decoder: Arc<dyn PayloadDecoder>,
}

/// The error-queue administration routes under `/v1/admin`.
///
/// # Security
///
/// **This router performs NO authentication and NO authorisation.** Every route is for
/// administrators only: wrap the router in the server's admin check before merging it
/// (`.route_layer(...)` / `.layer(...)` with a middleware that answers 401/403), and add
/// the server's security requirement to [`JobsAdminApi`] when merging the documentation.
///
/// Routes:
/// - `GET /v1/admin/queues`: jobs per queue by state.
/// - `GET /v1/admin/dead-jobs?queue=&kind=&cursor=&limit=`: the error queue, oldest first.
/// - `GET /v1/admin/dead-jobs/{jobId}`: one dead job, payload decoded, attempt history.
/// - `POST /v1/admin/dead-jobs/{jobId}/retry`: back to the queue with fresh attempts.
/// - `POST /v1/admin/dead-jobs/retry` `{queue?, kind?}`: retry all matching, at most
///   [`MAX_RETRIED_PER_CALL`] per call.
/// - `DELETE /v1/admin/dead-jobs/{jobId}`: discard a dead job and its history.
pub fn admin_router(queue: Arc<dyn JobQueue>, decoder: Arc<dyn PayloadDecoder>) -> Router {
    Router::new()
        .route("/v1/admin/queues", get(list_queues))
        .route("/v1/admin/dead-jobs", get(list_dead_jobs))
        .route("/v1/admin/dead-jobs/retry", post(retry_all_dead_jobs))
        .route(
            "/v1/admin/dead-jobs/{jobId}",
            get(get_dead_job).delete(discard_dead_job),
        )
        .route("/v1/admin/dead-jobs/{jobId}/retry", post(retry_dead_job))
        .with_state(AdminState { queue, decoder })
}

/// Jobs of one queue by state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueSummary {
    pub queue: String,
    pub available: u64,
    pub running: u64,
    pub completed: u64,
    pub dead: u64,
}

impl From<QueueCounts> for QueueSummary {
    fn from(counts: QueueCounts) -> Self {
        Self {
            queue: counts.queue,
            available: counts.available,
            running: counts.running,
            completed: counts.completed,
            dead: counts.dead,
        }
    }
}

/// Every queue that holds jobs, by name.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueueSummaryList {
    pub items: Vec<QueueSummary>,
}

/// A dead job as listed: enough to choose which to open.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadJobSummary {
    pub id: Id,
    pub queue: String,
    pub kind: String,
    pub attempt: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

impl From<Job> for DeadJobSummary {
    fn from(job: Job) -> Self {
        Self {
            id: job.id,
            queue: job.queue,
            kind: job.kind,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            last_error: job.last_error,
            created_at: job.created_at,
            finished_at: job.finished_at,
        }
    }
}

/// One page of the error queue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadJobPage {
    pub items: Vec<DeadJobSummary>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// How one delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcomeView {
    Completed,
    Failed,
    /// The worker stopped renewing its lease (died, hung, or was cut off).
    LeaseExpired,
}

impl From<AttemptOutcome> for AttemptOutcomeView {
    fn from(outcome: AttemptOutcome) -> Self {
        match outcome {
            AttemptOutcome::Completed => AttemptOutcomeView::Completed,
            AttemptOutcome::Failed => AttemptOutcomeView::Failed,
            AttemptOutcome::LeaseExpired => AttemptOutcomeView::LeaseExpired,
        }
    }
}

/// One delivery of a job.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptDetail {
    pub attempt: u32,
    pub worker: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub outcome: AttemptOutcomeView,
    pub error: Option<String>,
}

impl From<Attempt> for AttemptDetail {
    fn from(attempt: Attempt) -> Self {
        Self {
            attempt: attempt.attempt,
            worker: attempt.worker,
            started_at: attempt.started_at,
            finished_at: attempt.finished_at,
            outcome: attempt.outcome.into(),
            error: attempt.error,
        }
    }
}

/// A job with its payload and history, as an operator inspects it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobDetail {
    pub id: Id,
    pub queue: String,
    pub kind: String,
    pub state: JobStateView,
    pub attempt: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    /// The payload decoded to JSON; `null` when the decoder could not read it.
    #[schema(value_type = Option<Object>)]
    pub payload: Value,
    /// Why the payload could not be decoded; `null` when it was.
    pub payload_error: Option<String>,
    /// The raw payload (standard base64) when it could not be decoded; `null` otherwise.
    pub payload_base64: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Every delivery, oldest first.
    pub attempts: Vec<AttemptDetail>,
}

impl JobDetail {
    fn new(job: Job, decoder: &dyn PayloadDecoder) -> Self {
        let (payload, payload_error, payload_base64) = match decoder.decode(&job.kind, &job.payload)
        {
            Ok(decoded) => (decoded, None, None),
            Err(reason) => (
                Value::Null,
                Some(reason),
                Some(STANDARD.encode(&job.payload)),
            ),
        };
        Self {
            id: job.id,
            queue: job.queue,
            kind: job.kind,
            state: job.state.into(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            last_error: job.last_error,
            payload,
            payload_error,
            payload_base64,
            created_at: job.created_at,
            finished_at: job.finished_at,
            attempts: job.attempts.into_iter().map(AttemptDetail::from).collect(),
        }
    }
}

/// Query of `GET /v1/admin/dead-jobs`. Raw strings so that every bad value gets a field
/// error; empty values mean absent.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DeadJobListQuery {
    /// Only jobs of this queue.
    pub queue: Option<String>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// Which dead jobs to retry; `{}` retries the whole error queue.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryAllRequest {
    /// Only jobs of this queue (leave out for every queue).
    #[schema(min_length = 1)]
    pub queue: Option<String>,
    /// Only jobs of this kind (leave out for every kind).
    #[schema(min_length = 1)]
    pub kind: Option<String>,
}

/// How many dead jobs went back to their queues.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryAllResult {
    pub retried: u32,
    /// `true` when the call stopped at its bound (10,000) with matching dead jobs left:
    /// call again to retry the rest.
    pub limit_reached: bool,
}

/// Jobs per queue by state.
#[utoipa::path(
    get, path = "/v1/admin/queues", tag = "admin-jobs",
    responses(
        (status = 200, body = QueueSummaryList),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_queues(State(state): State<AdminState>) -> JobApiResult<Json<QueueSummaryList>> {
    let counts = state.queue.counts().await?;
    Ok(Json(QueueSummaryList {
        items: counts.into_iter().map(QueueSummary::from).collect(),
    }))
}

/// The error queue, oldest first, optionally filtered by queue and kind.
#[utoipa::path(
    get, path = "/v1/admin/dead-jobs", tag = "admin-jobs",
    params(DeadJobListQuery),
    responses(
        (status = 200, body = DeadJobPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_dead_jobs(
    State(state): State<AdminState>,
    query: Result<Query<DeadJobListQuery>, QueryRejection>,
) -> JobApiResult<Json<DeadJobPage>> {
    let Query(query) = query.map_err(|rejection| JobApiError::BadRequest(rejection.body_text()))?;
    let mut errors = Vec::new();
    let page = PageRequest::parse(query.cursor.as_deref(), query.limit.as_deref(), &mut errors);
    ensure_valid(errors)?;
    let queue = query_filter(query.queue);
    let kind = query_filter(query.kind);
    let jobs = state
        .queue
        .dead_jobs(
            queue.as_deref(),
            kind.as_deref(),
            page.after,
            page.fetch_limit(),
        )
        .await?;
    let page = page.into_page(jobs, |job| job.id);
    let (jobs, next_cursor) = (page.items, page.next_cursor);
    Ok(Json(DeadJobPage {
        items: jobs.into_iter().map(DeadJobSummary::from).collect(),
        next_cursor,
    }))
}

/// One dead job: payload decoded to JSON, last error, every attempt.
#[utoipa::path(
    get, path = "/v1/admin/dead-jobs/{jobId}", tag = "admin-jobs",
    params(("jobId" = loadstar_core::Id, Path, description = "job id")),
    responses(
        (status = 200, body = JobDetail),
        (status = 400, description = "jobId is not an id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no dead job has this id", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_dead_job(
    State(state): State<AdminState>,
    JobIdPath(id): JobIdPath,
) -> JobApiResult<Json<JobDetail>> {
    let job = state
        .queue
        .get(id)
        .await?
        .filter(|job| job.state == JobState::Dead)
        .ok_or(JobApiError::NotFound("dead job"))?;
    Ok(Json(JobDetail::new(job, state.decoder.as_ref())))
}

/// Moves a dead job back to its queue with a fresh set of attempts; answers with the job,
/// now `available`.
#[utoipa::path(
    post, path = "/v1/admin/dead-jobs/{jobId}/retry", tag = "admin-jobs",
    params(("jobId" = loadstar_core::Id, Path, description = "job id")),
    responses(
        (status = 200, body = JobDetail),
        (status = 400, description = "jobId is not an id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no dead job has this id", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn retry_dead_job(
    State(state): State<AdminState>,
    JobIdPath(id): JobIdPath,
) -> JobApiResult<Json<JobDetail>> {
    if !state.queue.retry_dead(id).await? {
        return Err(JobApiError::NotFound("dead job"));
    }
    tracing::info!(job_id = %id, "dead job retried");
    // A worker may already have taken it (or, under a discard policy, finished and
    // dropped it) between the two statements; the answer shows the job as it is now.
    let job = state
        .queue
        .get(id)
        .await?
        .ok_or(JobApiError::NotFound("job"))?;
    Ok(Json(JobDetail::new(job, state.decoder.as_ref())))
}

/// Retries every dead job matching the filter, oldest first, at most 10,000 per call
/// (`limitReached` says whether to call again). Not atomic: a failure midway leaves the
/// jobs retried so far in their queues, and calling again picks up the rest.
#[utoipa::path(
    post, path = "/v1/admin/dead-jobs/retry", tag = "admin-jobs",
    request_body = RetryAllRequest,
    responses(
        (status = 200, body = RetryAllResult),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn retry_all_dead_jobs(
    State(state): State<AdminState>,
    JsonBody(request): JsonBody<RetryAllRequest>,
) -> JobApiResult<Json<RetryAllResult>> {
    let mut errors = Vec::new();
    let queue = body_filter("queue", request.queue, &mut errors);
    let kind = body_filter("kind", request.kind, &mut errors);
    ensure_valid(errors)?;
    let result = retry_matching(
        state.queue.as_ref(),
        queue.as_deref(),
        kind.as_deref(),
        RetryBounds {
            page: RETRY_ALL_PAGE,
            max: MAX_RETRIED_PER_CALL,
        },
    )
    .await?;
    tracing::info!(
        queue = queue.as_deref().unwrap_or("*"),
        kind = kind.as_deref().unwrap_or("*"),
        retried = result.retried,
        limit_reached = result.limit_reached,
        "dead jobs retried"
    );
    Ok(Json(result))
}

/// How `retry_matching` walks: dead jobs read per page, most retried per call.
#[derive(Debug, Clone, Copy)]
struct RetryBounds {
    page: u32,
    max: u32,
}

/// Walks the matching dead jobs page by page and retries each, up to the bound. Retried
/// jobs leave the error queue, and ids only grow, so the keyset cursor never skips one.
async fn retry_matching(
    queue: &dyn JobQueue,
    queue_name: Option<&str>,
    kind: Option<&str>,
    bounds: RetryBounds,
) -> JobApiResult<RetryAllResult> {
    let mut retried = 0;
    let mut after = None;
    loop {
        let page = queue
            .dead_jobs(queue_name, kind, after, bounds.page)
            .await?;
        for job in &page {
            if retried >= bounds.max {
                return Ok(RetryAllResult {
                    retried,
                    limit_reached: true,
                });
            }
            // `false`: another operator retried or discarded it meanwhile.
            if queue.retry_dead(job.id).await? {
                retried += 1;
            }
        }
        match page.last() {
            Some(last) if page.len() == bounds.page as usize => after = Some(last.id),
            _ => {
                return Ok(RetryAllResult {
                    retried,
                    limit_reached: false,
                })
            }
        }
    }
}

/// Deletes a dead job and its history.
#[utoipa::path(
    delete, path = "/v1/admin/dead-jobs/{jobId}", tag = "admin-jobs",
    params(("jobId" = loadstar_core::Id, Path, description = "job id")),
    responses(
        (status = 204, description = "discarded"),
        (status = 400, description = "jobId is not an id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no dead job has this id", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn discard_dead_job(
    State(state): State<AdminState>,
    JobIdPath(id): JobIdPath,
) -> JobApiResult<StatusCode> {
    if !state.queue.discard_dead(id).await? {
        return Err(JobApiError::NotFound("dead job"));
    }
    tracing::info!(job_id = %id, "dead job discarded");
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI description of [`admin_router`], for the server to merge into the document
/// it serves. It declares no security requirement because the router enforces none: the
/// server adds its own (e.g. with a `utoipa::Modify`) when it mounts the routes behind
/// its admin check.
#[derive(OpenApi)]
#[openapi(
    paths(
        list_queues,
        list_dead_jobs,
        get_dead_job,
        retry_dead_job,
        retry_all_dead_jobs,
        discard_dead_job,
    ),
    components(schemas(
        QueueSummary,
        QueueSummaryList,
        DeadJobSummary,
        DeadJobPage,
        JobDetail,
        AttemptDetail,
        AttemptOutcomeView,
        JobStateView,
        RetryAllRequest,
        RetryAllResult,
        Problem,
        loadstar_core::FieldError,
    )),
    tags((name = "admin-jobs", description = "error queue administration (admins only: the server mounts these routes behind its admin check)"))
)]
pub struct JobsAdminApi;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Exhausted, ManualClock, NewJob, RetryPolicy, SqlJobQueue};
    use loadstar_core::IdGenerator;
    use std::time::Duration;

    async fn queue_with_dead_jobs(kinds: &[&str]) -> SqlJobQueue {
        let db = loadstar_store::test_support::fresh_database(loadstar_store::Backend::Sqlite)
            .await
            .expect("sqlite is always available");
        let queue = SqlJobQueue::new(
            db,
            Arc::new(IdGenerator::new(1)),
            Arc::new(ManualClock::new()),
        );
        let policy = RetryPolicy {
            on_exhausted: Exhausted::DeadLetter,
            ..RetryPolicy::default()
        };
        for kind in kinds {
            queue
                .enqueue(NewJob::new("q", *kind, vec![]).with_max_attempts(1))
                .await
                .expect("enqueue");
        }
        let leased = queue
            .fetch("q", "w", Duration::from_secs(30), 1_000)
            .await
            .expect("fetch");
        for job in &leased {
            queue.fail(job, "down", &policy).await.expect("fail");
        }
        queue
    }

    #[tokio::test]
    async fn retry_all_walks_every_page_and_stops_at_its_bound() {
        let queue = queue_with_dead_jobs(&["a", "b", "a", "a", "b", "a", "a"]).await;
        let bounds = RetryBounds { page: 2, max: 3 };

        let first = retry_matching(&queue, None, Some("a"), bounds)
            .await
            .expect("retry");
        assert_eq!((first.retried, first.limit_reached), (3, true));
        let second = retry_matching(&queue, None, Some("a"), bounds)
            .await
            .expect("retry");
        assert_eq!((second.retried, second.limit_reached), (2, false));
        let none_left = retry_matching(&queue, None, Some("a"), bounds)
            .await
            .expect("retry");
        assert_eq!((none_left.retried, none_left.limit_reached), (0, false));

        let kinds_left: Vec<String> = queue
            .dead_jobs(None, None, None, 100)
            .await
            .expect("list")
            .into_iter()
            .map(|job| job.kind)
            .collect();
        assert_eq!(kinds_left, ["b", "b"]);
    }

    #[tokio::test]
    async fn retry_all_that_ends_exactly_at_its_bound_has_nothing_left() {
        let queue = queue_with_dead_jobs(&["a", "a", "a", "a"]).await;
        let result = retry_matching(&queue, None, None, RetryBounds { page: 2, max: 4 })
            .await
            .expect("retry");
        assert_eq!((result.retried, result.limit_reached), (4, false));
    }
}
