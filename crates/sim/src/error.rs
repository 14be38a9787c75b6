//! The simulator's errors: [`RequestError`] for what a client is told (mapped to
//! problem+json in exactly one place), [`SimulatorError`] for starting and running.

use crate::behaviour::InvalidBehaviour;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use loadstar_core::{FieldError, Problem};
use std::net::SocketAddr;

/// Every answer other than success, in the client's terms.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The input is malformed; one entry per field (or header).
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// The body is unusable as a whole (not JSON).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The body is not JSON by its content type.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// More requests this second than the provider's capacity; retry after a second.
    #[error("over capacity of {capacity_per_sec} requests per second")]
    OverCapacity { capacity_per_sec: u32 },
    /// Another request with the same idempotency key is being handled.
    #[error("a charge with this idempotency key is in progress")]
    ChargeInProgress,
    /// The idempotency key already belongs to a different charge.
    #[error("idempotency key reused for a different charge")]
    KeyReused,
    /// A transient failure injected on purpose; nothing was charged.
    #[error("injected transient failure")]
    InjectedFailure,
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        match self {
            RequestError::Validation(errors) => Problem::validation(errors).into_response(),
            RequestError::BadRequest(detail) => Problem::bad_request(detail).into_response(),
            RequestError::UnsupportedMediaType => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .with_detail("send the body as application/json")
            .into_response(),
            RequestError::OverCapacity { capacity_per_sec } => {
                let mut response = Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "over-capacity",
                    "Too many requests",
                )
                .with_detail(format!(
                    "the payment provider accepts {capacity_per_sec} requests per second; retry later"
                ))
                .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            RequestError::ChargeInProgress => Problem::conflict(
                "charge-in-progress",
                "a charge with this idempotency key is still being processed; retry later",
            )
            .into_response(),
            RequestError::KeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
            )
            .with_detail("this idempotency key was already used for a different charge")
            .into_response(),
            RequestError::InjectedFailure => Problem::unavailable(
                "the payment provider failed transiently; nothing was charged, retry with the same idempotency key",
            )
            .into_response(),
        }
    }
}

/// Why the simulator cannot start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("invalid behaviour")]
    InvalidBehaviour(#[from] InvalidBehaviour),
    #[error("capacity must be at least 1 request per second")]
    ZeroCapacity,
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the bound address")]
    LocalAddr(#[source] std::io::Error),
    #[error("the http server failed")]
    Serve(#[source] std::io::Error),
}
