//! One log line and two Prometheus series per HTTP request.
//!
//! Requests are labelled by route *template* (`/v1/products/{productId}`), never by raw
//! path, so metric cardinality stays bounded whatever clients send.

use crate::request_context::RequestContext;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// Counter: requests by method, route template and status.
pub const REQUESTS_TOTAL: &str = "http_requests_total";
/// Histogram: request latency in seconds by method and route template.
pub const REQUEST_DURATION: &str = "http_request_duration_seconds";

/// axum middleware (use with `axum::middleware::from_fn(request_telemetry::layer)`).
pub async fn layer(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let (request_id, trace_id) = request
        .extensions()
        .get::<RequestContext>()
        .map(|context| (context.request_id.clone(), context.trace.trace_id()))
        .unwrap_or_default();

    let response = next.run(request).await;

    let latency = started.elapsed();
    let status = response.status().as_u16();
    metrics::counter!(REQUESTS_TOTAL, "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(REQUEST_DURATION, "method" => method.clone(), "route" => route.clone())
        .record(latency.as_secs_f64());
    tracing::info!(
        target: "loadstar::http",
        method = %method,
        route = %route,
        status,
        latency_ms = latency.as_secs_f64() * 1_000.0,
        request_id = %request_id,
        trace_id = %trace_id,
        "request"
    );
    response
}
