//! Queue failures in the caller's terms.

use loadstar_store::StoreError;

/// What went wrong talking to the queue.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    /// The job does not exist (or is not in a state the operation applies to).
    #[error("job {0} not found")]
    NotFound(loadstar_core::Id),
    /// The request is malformed: empty kind, payload over the limit, zero attempts.
    #[error("invalid job: {0}")]
    Invalid(String),
    /// The backend is down or saturated; retryable.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The disk under the queue's database is full: nothing was stored; retryable once
    /// space returns.
    #[error("queue storage full: {0}")]
    StorageFull(String),
    /// Anything else: a bug or a broken schema.
    #[error("queue error: {0}")]
    Backend(String),
}

impl From<StoreError> for JobError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => JobError::Unavailable(cause),
            StoreError::Down => JobError::Unavailable("the database is down".to_owned()),
            StoreError::StorageFull(cause) => JobError::StorageFull(cause),
            other => JobError::Backend(other.to_string()),
        }
    }
}

impl From<loadstar_store::sql::Error> for JobError {
    fn from(error: loadstar_store::sql::Error) -> Self {
        JobError::from(StoreError::from(error))
    }
}
