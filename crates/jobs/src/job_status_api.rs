//! Request-reply polling: `GET /v1/jobs/{jobId}`, the status of accepted async work.
//!
//! An endpoint that accepts work it will do later answers `202 Accepted` with the job's
//! id; the client polls this route until the state is `completed` (or `dead`). It shows
//! where the job is, never its payload.
//!
//! **No access control of its own.** Any caller who knows an id learns that job's kind,
//! state and last error. The server decides who may see which job (for example: only the
//! user whose request enqueued it, or only admins) by wrapping [`job_status_router`] in
//! its own authentication and authorisation before mounting it.

use crate::api_error::{JobApiError, JobApiResult};
use crate::api_input::JobIdPath;
use crate::model::{Job, JobState};
use crate::queue::JobQueue;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use loadstar_core::{Id, Problem, Timestamp};
use serde::Serialize;
use std::sync::Arc;
use utoipa::OpenApi;

/// Where a job is in its life, as the APIs show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStateView {
    /// Waiting for its start time and a free worker.
    Available,
    /// A worker is on it.
    Running,
    /// Done.
    Completed,
    /// In the error queue: attempts exhausted or expired, waiting for an operator.
    Dead,
}

impl From<JobState> for JobStateView {
    fn from(state: JobState) -> Self {
        match state {
            JobState::Available => JobStateView::Available,
            JobState::Running => JobStateView::Running,
            JobState::Completed => JobStateView::Completed,
            JobState::Dead => JobStateView::Dead,
        }
    }
}

/// What a client polling accepted work sees.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    pub id: Id,
    /// What the job does, e.g. `payment.charge`.
    pub kind: String,
    pub state: JobStateView,
    /// Deliveries so far (0 until a worker first takes it).
    pub attempt: u32,
    pub max_attempts: u32,
    /// Why the latest attempt failed; `null` once completed or before any failure.
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    /// When it completed or went to the error queue.
    pub finished_at: Option<Timestamp>,
}

impl From<Job> for JobStatus {
    fn from(job: Job) -> Self {
        Self {
            id: job.id,
            kind: job.kind,
            state: job.state.into(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            last_error: job.last_error,
            created_at: job.created_at,
            finished_at: job.finished_at,
        }
    }
}

/// `GET /v1/jobs/{jobId}` on `queue`.
///
/// **Mount it behind the server's authorisation**: the router itself lets anyone with an
/// id read the job's status (see the module documentation).
pub fn job_status_router(queue: Arc<dyn JobQueue>) -> Router {
    Router::new()
        .route("/v1/jobs/{jobId}", get(get_job_status))
        .with_state(queue)
}

/// The status of accepted async work.
#[utoipa::path(
    get, path = "/v1/jobs/{jobId}", tag = "jobs",
    params(("jobId" = loadstar_core::Id, Path, description = "job id, as returned with 202 Accepted")),
    responses(
        (status = 200, body = JobStatus),
        (status = 400, description = "jobId is not an id", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_job_status(
    State(queue): State<Arc<dyn JobQueue>>,
    JobIdPath(id): JobIdPath,
) -> JobApiResult<Json<JobStatus>> {
    let job = queue.get(id).await?.ok_or(JobApiError::NotFound("job"))?;
    Ok(Json(job.into()))
}

/// The OpenAPI description of [`job_status_router`], for the server to merge into the
/// document it serves (adding its security requirement, since the router has none).
#[derive(OpenApi)]
#[openapi(
    paths(get_job_status),
    components(schemas(JobStatus, JobStateView, Problem, loadstar_core::FieldError)),
    tags((name = "jobs", description = "status of accepted async work"))
)]
pub struct JobStatusApi;
