//! RFC 9457 problem details: the only error body a client ever sees.
//!
//! Every crate maps its own error enum to a [`Problem`] in exactly one place. A problem
//! carries a stable `type` URI per kind of failure, the HTTP status, a human `detail`, the
//! request path as `instance`, the request id, and for validation failures one entry per
//! offending field. Internal causes are logged, never serialised.

use crate::request_context::RequestContext;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Media type of problem bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's name as the client sent it (camelCase, dotted for nesting:
    /// `items[0].quantity`).
    pub field: String,
    /// What is wrong with it, in words a client developer can act on.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An `application/problem+json` response body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// Identifies the kind of problem; stable, safe to branch on.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code, repeated for clients that only keep the body.
    pub status: u16,
    /// What went wrong with this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The `x-request-id` of the failed request, for support and log search.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Per-field validation failures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds after which a retry can succeed, sent as the `Retry-After` header (503,
    /// 507, 429); not part of the body.
    #[serde(skip)]
    pub retry_after_secs: Option<u32>,
}

impl Problem {
    /// A problem of kind `slug` (becomes `urn:loadstar:problem:<slug>`).
    pub fn new(status: StatusCode, slug: &str, title: impl Into<String>) -> Self {
        Self {
            problem_type: format!("urn:loadstar:problem:{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            request_id: None,
            errors: Vec::new(),
            retry_after_secs: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Tells the client when to try again (`Retry-After`).
    pub fn with_retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 400 with one entry per invalid field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "validation",
            "Request validation failed",
        )
        .with_detail("one or more fields are invalid")
        .with_errors(errors)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request").with_detail(detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found").with_detail(detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
        )
        .with_detail(detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").with_detail(detail)
    }

    pub fn conflict(slug: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, slug, "Conflict").with_detail(detail)
    }

    /// 500. The cause stays in the log; the client learns only that it was not its fault.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        )
        .with_detail("the server failed to handle the request; it has been logged")
    }

    /// 503 for a dependency that is down or saturated, with `Retry-After: 1`: the
    /// condition is expected to pass, and a client that waits a moment can succeed.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
        )
        .with_detail(detail)
        .with_retry_after(1)
    }

    /// 507 for a write that could not be stored because the server's disk is full. Nothing
    /// of it was kept; the same request can succeed once space returns.
    pub fn insufficient_storage() -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient-storage",
            "Insufficient storage",
        )
        .with_detail(
            "the server has no space left to store this change; nothing was stored, retry later",
        )
        .with_retry_after(5)
    }

    /// A problem for a bare error status produced outside our handlers (router 404/405,
    /// body limits, timeouts), so that every error a client sees has the same shape.
    pub fn for_status(status: StatusCode) -> Self {
        let (slug, detail) = match status {
            StatusCode::NOT_FOUND => ("not-found", "no resource exists at this path"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method-not-allowed",
                "this resource does not support the request method",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload-too-large",
                "the request body is larger than the server accepts",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported-media-type",
                "the request body has an unsupported content type",
            ),
            StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => (
                "unavailable",
                "the request could not be completed in time; retry later",
            ),
            _ if status.is_server_error() => (
                "internal",
                "the server failed to handle the request; it has been logged",
            ),
            _ => ("http-error", "the request was rejected"),
        };
        let title = status.canonical_reason().unwrap_or("Error");
        let problem = Self::new(status, slug, title).with_detail(detail);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            problem.with_retry_after(1)
        } else {
            problem
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        if let Some(context) = RequestContext::current() {
            self.instance.get_or_insert(context.path);
            self.request_id.get_or_insert(context.request_id);
        }
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
