//! Failures of the jobs crate's HTTP APIs, and the one place they become problems.

use crate::error::JobError;
use axum::response::{IntoResponse, Response};
use loadstar_core::{FieldError, Problem};

/// Everything an admin or job-status request can fail with, in the client's terms.
#[derive(Debug, thiserror::Error)]
pub enum JobApiError {
    /// The input is malformed; one entry per field (`jobId`, `limit`, `cursor`, `kind`).
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// The request itself is unusable (a body that is not JSON, an unreadable query).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No such job, or not in the state the operation applies to.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The queue's backend is down or saturated; worth retrying.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The disk under the queue is full: nothing was stored; worth retrying later.
    #[error("queue storage full: {0}")]
    StorageFull(String),
    /// A bug or a broken backend; logged, never shown.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<JobError> for JobApiError {
    fn from(error: JobError) -> Self {
        match error {
            JobError::NotFound(_) => JobApiError::NotFound("job"),
            JobError::Unavailable(cause) => JobApiError::Unavailable(cause),
            JobError::StorageFull(cause) => JobApiError::StorageFull(cause),
            // The APIs never build jobs, so a rejected one is the server's fault.
            JobError::Invalid(cause) | JobError::Backend(cause) => JobApiError::Internal(cause),
        }
    }
}

impl JobApiError {
    /// The problem a client sees for this error.
    pub fn to_problem(&self) -> Problem {
        match self {
            JobApiError::Validation(errors) => Problem::validation(errors.clone()),
            JobApiError::BadRequest(detail) => Problem::bad_request(detail.clone()),
            JobApiError::NotFound(what) => Problem::not_found(format!("{what} not found")),
            JobApiError::Unavailable(_) => {
                Problem::unavailable("the job queue is temporarily unavailable; retry later")
            }
            JobApiError::StorageFull(_) => Problem::insufficient_storage(),
            JobApiError::Internal(_) => Problem::internal(),
        }
    }
}

impl IntoResponse for JobApiError {
    fn into_response(self) -> Response {
        match &self {
            JobApiError::Internal(cause) => {
                tracing::error!(error = %cause, "job api request failed")
            }
            JobApiError::Unavailable(cause) | JobApiError::StorageFull(cause) => {
                tracing::warn!(error = %cause, "job queue unavailable")
            }
            _ => {}
        }
        self.to_problem().into_response()
    }
}

/// Result of a job API handler.
pub type JobApiResult<T> = Result<T, JobApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_queue_is_a_503_worth_retrying() {
        let problem =
            JobApiError::from(JobError::Unavailable("pool timed out".to_owned())).to_problem();
        assert_eq!(problem.status, 503);
        assert!(!problem.detail.unwrap_or_default().contains("pool"));
    }

    #[test]
    fn backend_failures_are_500s_that_hide_their_cause() {
        for error in [
            JobError::Backend("relation \"jobs\" does not exist".to_owned()),
            JobError::Invalid("max_attempts must be at least 1".to_owned()),
        ] {
            let problem = JobApiError::from(error).to_problem();
            assert_eq!(problem.status, 500);
            let detail = problem.detail.unwrap_or_default();
            assert!(!detail.contains("jobs\"") && !detail.contains("max_attempts"));
        }
    }

    #[test]
    fn a_lost_job_is_a_404() {
        let problem =
            JobApiError::from(JobError::NotFound(loadstar_core::Id::from_i64(7))).to_problem();
        assert_eq!(problem.status, 404);
    }
}
