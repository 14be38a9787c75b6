//! Reading the jobs APIs' requests: path ids and filters. Every failure is a
//! [`JobApiError`] naming the offending field, never a framework default. (Pages and JSON
//! bodies: `loadstar_core::pagination` and `loadstar_core::json_body`.)

use crate::api_error::JobApiError;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use loadstar_core::{FieldError, Id};

/// The `{jobId}` path parameter, parsed; a malformed one is a 400 naming `jobId`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobIdPath(pub Id);

impl<S: Send + Sync> FromRequestParts<S> for JobIdPath {
    type Rejection = JobApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = || {
            JobApiError::Validation(vec![FieldError::new(
                "jobId",
                "must be a positive 64-bit integer id",
            )])
        };
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid())?;
        raw.parse().map(JobIdPath).map_err(|_| invalid())
    }
}

/// A `queue` or `kind` filter from the query string: empty means no filter.
pub(crate) fn query_filter(raw: Option<String>) -> Option<String> {
    raw.filter(|value| !value.is_empty())
}

/// A `queue` or `kind` filter from a JSON body: absent means no filter, empty is an error
/// (an operator who sends `""` meant something, and "everything" is the riskiest guess).
pub(crate) fn body_filter(
    field: &str,
    value: Option<String>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    if value.as_deref() == Some("") {
        errors.push(FieldError::new(
            field,
            "must not be empty; leave the field out to match every value",
        ));
        return None;
    }
    value
}

/// Fails with every collected error.
pub(crate) fn ensure_valid(errors: Vec<FieldError>) -> Result<(), JobApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(JobApiError::Validation(errors))
    }
}
