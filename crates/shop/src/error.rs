//! The shop's errors, and the one place they become HTTP problems.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use loadstar_cache::CacheError;
use loadstar_core::{FieldError, Problem};
use loadstar_store::StoreError;

/// Everything a shop operation can fail with, in the client's terms.
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    /// The input is malformed; one entry per field.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// The request itself is unusable (bad JSON, bad cursor, bad id).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No credentials, or credentials that are wrong, expired or revoked.
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// Authenticated, but this action needs a role the caller lacks.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The resource does not exist, or the caller may not know that it does.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule rejected the write (e.g. email taken, SKU taken).
    #[error("conflict: {detail}")]
    Conflict { slug: &'static str, detail: String },
    /// A precondition header (`If-Match`) does not hold.
    #[error("precondition failed")]
    PreconditionFailed,
    /// Well-formed, but against a business rule (e.g. idempotency key reused).
    #[error("unprocessable: {detail}")]
    Unprocessable {
        slug: &'static str,
        detail: String,
        errors: Vec<FieldError>,
    },
    /// This node is at its bound for this kind of work (password hashing); retrying after
    /// `retry_after_secs` is worth it. Refused at once, so it costs the node nothing.
    #[error("overloaded")]
    Overloaded { retry_after_secs: u64 },
    /// A dependency is down or saturated; worth retrying.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The database is known to be down: answered at once. Its health monitor logs the
    /// outage once, so each refused request is not logged again.
    #[error("the database is down")]
    DatabaseDown,
    /// The disk under the database is full: nothing was stored; worth retrying later.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// A bug or a broken dependency; logged, never shown.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<StoreError> for ShopError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => ShopError::Unavailable(cause),
            StoreError::Down => ShopError::DatabaseDown,
            StoreError::StorageFull(cause) => ShopError::StorageFull(cause),
            other => ShopError::Internal(other.to_string()),
        }
    }
}

/// Jobs written by shop requests (an order's charge, an import): a queue that is down or
/// out of space is the client's 503/507 like the database's; anything else is ours.
impl From<loadstar_jobs::JobError> for ShopError {
    fn from(error: loadstar_jobs::JobError) -> Self {
        use loadstar_jobs::JobError;
        match error {
            JobError::Unavailable(cause) => ShopError::Unavailable(cause),
            JobError::StorageFull(cause) => ShopError::StorageFull(cause),
            other => ShopError::Internal(format!("enqueue: {other}")),
        }
    }
}

/// Where Redis is required (revoking a session), a Redis that fails is a dependency that
/// is down; callers that can do without Redis handle its errors themselves.
impl From<CacheError> for ShopError {
    fn from(error: CacheError) -> Self {
        match error {
            CacheError::Unavailable(_) => ShopError::Unavailable(error.to_string()),
            CacheError::Load(_) | CacheError::Config(_) => ShopError::Internal(error.to_string()),
        }
    }
}

/// Repositories use `?` on raw query results; the store decides what a failure means.
impl From<loadstar_store::sql::Error> for ShopError {
    fn from(error: loadstar_store::sql::Error) -> Self {
        ShopError::from(StoreError::from(error))
    }
}

impl ShopError {
    /// The problem a client sees for this error.
    pub fn to_problem(&self) -> Problem {
        match self {
            ShopError::Validation(errors) => Problem::validation(errors.clone()),
            ShopError::BadRequest(detail) => Problem::bad_request(detail.clone()),
            ShopError::Unauthenticated(detail) => Problem::unauthorized(*detail),
            ShopError::Forbidden(detail) => Problem::forbidden(*detail),
            ShopError::NotFound(what) => Problem::not_found(format!("{what} not found")),
            ShopError::Conflict { slug, detail } => Problem::conflict(slug, detail.clone()),
            ShopError::PreconditionFailed => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
            )
            .with_detail("the resource changed since the version named in If-Match"),
            ShopError::Unprocessable {
                slug,
                detail,
                errors,
            } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                slug,
                "Unprocessable request",
            )
            .with_detail(detail.clone())
            .with_errors(errors.clone()),
            ShopError::Overloaded { retry_after_secs } => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "Server busy")
                    .with_detail(
                        "too many requests of this kind at once; retry after the Retry-After delay",
                    )
                    .with_retry_after(u32::try_from(*retry_after_secs).unwrap_or(u32::MAX))
            }
            ShopError::Unavailable(_) | ShopError::DatabaseDown => {
                Problem::unavailable("a dependency is temporarily unavailable; retry later")
            }
            ShopError::StorageFull(_) => Problem::insufficient_storage(),
            ShopError::Internal(_) => Problem::internal(),
        }
    }
}

impl IntoResponse for ShopError {
    fn into_response(self) -> Response {
        match &self {
            ShopError::Internal(cause) => tracing::error!(error = %cause, "request failed"),
            ShopError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "dependency unavailable")
            }
            ShopError::StorageFull(cause) => {
                tracing::warn!(error = %cause, "write refused: storage full")
            }
            _ => {}
        }
        let mut response = self.to_problem().into_response();
        if matches!(self, ShopError::Unauthenticated(_)) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Result of a shop operation.
pub type ShopResult<T> = Result<T, ShopError>;
