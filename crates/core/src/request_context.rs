//! Per-request context: the request id, the trace context, and the guarantee that every
//! error is a problem.
//!
//! The [`layer`] middleware accepts a client's `x-request-id` (if it is a sane token) or
//! makes one, keeps it in a task-local so any [`Problem`](crate::Problem) built while
//! handling the request can cite it, echoes it on the response, continues the W3C trace
//! of an incoming `traceparent` (or starts one; see [`crate::trace_context`]) and echoes
//! this hop's `traceparent` too, and rewrites any error
//! response that is not yet `application/problem+json` (router 404/405, body-limit 413,
//! timeouts) into one.

use crate::problem::{Problem, PROBLEM_JSON};
use crate::trace_context::{TraceContext, TRACEPARENT};
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;

/// The header that carries the request id in both directions.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// What every part of the request's handling may want to know about it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub path: String,
    /// This request's hop of its trace; also [`TraceContext::current`] while it runs.
    pub trace: TraceContext,
}

impl RequestContext {
    /// The context of the request being handled by this task, if any.
    pub fn current() -> Option<RequestContext> {
        CURRENT.try_with(Clone::clone).ok()
    }
}

/// axum middleware (use with `axum::middleware::from_fn(request_context::layer)`).
pub async fn layer(mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_acceptable_request_id(value))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let trace = TraceContext::continue_from(
        request
            .headers()
            .get(&TRACEPARENT)
            .and_then(|value| value.to_str().ok()),
    );
    let context = RequestContext {
        request_id,
        path: request.uri().path().to_owned(),
        trace,
    };
    request.extensions_mut().insert(context.clone());

    let mut response = CURRENT
        .scope(context.clone(), trace.scope(next.run(request)))
        .await;
    if response.status().is_client_error() || response.status().is_server_error() {
        let is_problem = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
        if !is_problem {
            response = CURRENT.sync_scope(context.clone(), || rewrite_as_problem(response));
        }
    }
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The body was refused before it was read, so the rest of it is still on the
        // connection: the server will close it, and the client must not reuse it.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Ok(value) = HeaderValue::from_str(&context.request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    if let Ok(value) = HeaderValue::from_str(&trace.to_traceparent()) {
        response.headers_mut().insert(TRACEPARENT.clone(), value);
    }
    response
}

fn rewrite_as_problem(response: Response) -> Response {
    let (parts, _) = response.into_parts();
    let mut rewritten = Problem::for_status(parts.status).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

/// Client-supplied ids are echoed into logs and headers, so only short, plain tokens pass.
fn is_acceptable_request_id(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_short_request_ids_are_accepted() {
        assert!(is_acceptable_request_id("abc-123_x.y:z"));
        assert!(!is_acceptable_request_id(""));
        assert!(!is_acceptable_request_id("has space"));
        assert!(!is_acceptable_request_id(&"a".repeat(129)));
    }

    #[test]
    fn generated_request_ids_are_32_hex_chars() {
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(is_acceptable_request_id(&id));
    }
}
