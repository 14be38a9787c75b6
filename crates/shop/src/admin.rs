//! The job system's HTTP surfaces mounted for the shop, behind admin authentication:
//! the error-queue administration (`/v1/admin/*`) and job status polling
//! (`GET /v1/jobs/{jobId}`). Jobs carry no owner yet, so status is for admins too.

use crate::auth::Principal;
use crate::messages::decode_to_json;
use crate::state::ShopState;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use loadstar_jobs::{admin_router, job_status_router, PayloadDecoder};
use std::sync::Arc;

/// Shows job payloads as JSON in the admin API, through the shop's message schemas.
struct ShopPayloads;

impl PayloadDecoder for ShopPayloads {
    fn decode(&self, kind: &str, payload: &[u8]) -> Result<serde_json::Value, String> {
        if kind == loadstar_jobs::ALERT_WEBHOOK {
            // The job system's own alert deliveries carry the webhook's JSON body.
            return serde_json::from_slice(payload).map_err(|error| error.to_string());
        }
        decode_to_json(kind, payload).map_err(|error| error.to_string())
    }
}

/// Admin-only job routes.
pub fn router(state: ShopState) -> Router {
    admin_router(Arc::clone(&state.jobs), Arc::new(ShopPayloads))
        .merge(job_status_router(Arc::clone(&state.jobs)))
        .route_layer(from_fn_with_state(state, require_admin))
}

/// 401 without credentials, 403 for a caller who is not an administrator.
async fn require_admin(State(state): State<ShopState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let principal = match Principal::from_request_parts(&mut parts, &state).await {
        Ok(principal) => principal,
        Err(error) => return error.into_response(),
    };
    if let Err(error) = principal.require_admin() {
        return error.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}
