//! The simulated payment provider's HTTP API.
//!
//! `POST /v1/charges` handles a charge in this order, each step ending the request if it
//! applies:
//!
//! 1. capacity: over the token bucket's rate → 429 with `Retry-After: 1`, nothing else
//!    recorded but the rejection;
//! 2. input: content type, `Idempotency-Key` header and body → 415 / 400 problem;
//! 3. idempotency: key completed → the first charge again, `201` with
//!    `Idempotent-Replayed: true`; key in flight → 409; key used for another charge →
//!    422. All but 422 count as a repeated attempt; none charges;
//! 4. latency: the configured delay (a slow provider);
//! 5. failure injection: with the configured probability → 503, nothing recorded, the
//!    key is free again so a retry may succeed;
//! 6. otherwise the charge succeeds: `201` with the charge, recorded under the key.
//!
//! `GET /stats` reports the counters, `GET|PUT /admin/behaviour` reads or replaces
//! failure rate and latency at runtime, `GET /healthz` is the liveness probe.

use crate::behaviour::{Behaviour, BehaviourSetting, InvalidBehaviour};
use crate::charge::{Charge, ChargeRequest};
use crate::error::RequestError;
use crate::idempotency::{self, Claim, IdempotencyLedger, IDEMPOTENT_REPLAYED};
use crate::stats::{Stats, StatsSnapshot};
use crate::token_bucket::TokenBucket;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use loadstar_core::FieldError;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;

/// Everything the provider remembers.
#[derive(Debug)]
pub struct PaymentsState {
    capacity_per_sec: u32,
    bucket: TokenBucket,
    ledger: IdempotencyLedger,
    behaviour: BehaviourSetting,
    stats: Stats,
}

impl PaymentsState {
    /// A provider with no charges yet, a full bucket and `behaviour`.
    pub fn new(behaviour: Behaviour, capacity_per_sec: u32) -> Self {
        Self {
            capacity_per_sec,
            bucket: TokenBucket::new(capacity_per_sec),
            ledger: IdempotencyLedger::default(),
            behaviour: BehaviourSetting::new(behaviour),
            stats: Stats::default(),
        }
    }
}

/// The provider's routes. Only `POST /v1/charges` is subject to the capacity limit.
pub fn router(state: Arc<PaymentsState>) -> Router {
    Router::new()
        .route("/v1/charges", post(create_charge))
        .route("/stats", get(stats))
        .route("/admin/behaviour", get(behaviour).put(replace_behaviour))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn create_charge(
    State(state): State<Arc<PaymentsState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, RequestError> {
    state.stats.record_request();
    if !state.bucket.try_take() {
        state.stats.record_rejected_over_capacity();
        return Err(RequestError::OverCapacity {
            capacity_per_sec: state.capacity_per_sec,
        });
    }
    require_json(&headers)?;
    let key = idempotency::idempotency_key(&headers)
        .map_err(|error| RequestError::Validation(vec![error.into()]))?;
    let request = ChargeRequest::from_json(&body)?;

    let reservation = match state.ledger.claim(&key, &request) {
        Claim::Granted(reservation) => reservation,
        Claim::Completed(charge) => {
            state.stats.record_repeated_attempt();
            tracing::info!(idempotency_key = %key, charge_id = %charge.charge_id, "charge replayed");
            let replayed = [(
                IDEMPOTENT_REPLAYED.clone(),
                HeaderValue::from_static("true"),
            )];
            return Ok((StatusCode::CREATED, replayed, Json(charge)).into_response());
        }
        Claim::InFlight => {
            state.stats.record_repeated_attempt();
            return Err(RequestError::ChargeInProgress);
        }
        Claim::OtherRequest => return Err(RequestError::KeyReused),
    };

    // Read once, so a charge is decided by the behaviour in force when it started.
    let behaviour = state.behaviour.get();
    if behaviour.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behaviour.latency_ms)).await;
    }
    // A draw in [0, 1) below the rate: 0 never fails, 1 always does, and unlike
    // `gen_bool` no rate can make it panic.
    if rand::thread_rng().gen::<f64>() < behaviour.failure_rate {
        state.stats.record_injected_failure();
        tracing::info!(idempotency_key = %key, order_id = %request.order_id, "charge failed on purpose");
        // Dropping the reservation frees the key: nothing was charged.
        return Err(RequestError::InjectedFailure);
    }
    let charge = Charge::succeeded(request.clone());
    reservation.complete(request, charge.clone());
    state.stats.record_charge();
    tracing::info!(
        idempotency_key = %key,
        order_id = %charge.order_id,
        charge_id = %charge.charge_id,
        amount_cents = charge.amount_cents,
        "charge succeeded"
    );
    Ok((StatusCode::CREATED, Json(charge)).into_response())
}

async fn stats(State(state): State<Arc<PaymentsState>>) -> Json<StatsSnapshot> {
    Json(state.stats.snapshot())
}

async fn behaviour(State(state): State<Arc<PaymentsState>>) -> Json<Behaviour> {
    Json(state.behaviour.get())
}

/// Replaces the whole behaviour (`{failureRate, latencyMs}`, both required). Charges
/// already sleeping keep the behaviour they started with.
async fn replace_behaviour(
    State(state): State<Arc<PaymentsState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Behaviour>, RequestError> {
    require_json(&headers)?;
    let requested: Behaviour = serde_json::from_slice(&body).map_err(|error| {
        RequestError::BadRequest(format!(
            "expected {{\"failureRate\": 0..1, \"latencyMs\": integer}}: {error}"
        ))
    })?;
    let behaviour = requested.validated().map_err(|error| {
        let field = match error {
            InvalidBehaviour::FailureRateOutOfRange(_) => "failureRate",
            InvalidBehaviour::LatencyTooLong(_) => "latencyMs",
        };
        RequestError::Validation(vec![FieldError::new(field, error.to_string())])
    })?;
    state.behaviour.set(behaviour);
    tracing::info!(
        failure_rate = behaviour.failure_rate,
        latency_ms = behaviour.latency_ms,
        "behaviour changed"
    );
    Ok(Json(behaviour))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Accepts `application/json` and any `+json` type.
fn require_json(headers: &HeaderMap) -> Result<(), RequestError> {
    let essence = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(RequestError::UnsupportedMediaType)
    }
}
