//! Operational endpoints: liveness, readiness and Prometheus metrics.
//!
//! `/healthz` says the process serves HTTP (restart it if not); `/readyz` says its
//! dependencies answer (route traffic to it only if so); `/metrics` is the Prometheus
//! text exposition of everything recorded through the `metrics` facade.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use loadstar_core::Problem;
use loadstar_store::{Database, StoreError};
use std::time::Duration;

/// A readiness probe that takes longer than this counts as a failure.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Routes for probes and scraping.
pub fn router(db: Database) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(db)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(db): State<Database>) -> Response {
    match tokio::time::timeout(READINESS_TIMEOUT, db.ping()).await {
        Ok(Ok(())) => Json(serde_json::json!({
            "status": "ready",
            "checks": { "database": "ok" }
        }))
        .into_response(),
        // The health monitor logs an outage once; a probe every few seconds need not.
        Ok(Err(StoreError::Down)) => not_ready(),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness: database check failed");
            not_ready()
        }
        Err(_) => {
            tracing::warn!("readiness: database check timed out");
            not_ready()
        }
    }
}

fn not_ready() -> Response {
    Problem::unavailable("the database does not answer").into_response()
}

async fn metrics() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        loadstar_core::telemetry::metrics_handle().render(),
    )
        .into_response()
}
