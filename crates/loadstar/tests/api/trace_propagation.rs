//! W3C trace context from the client's request into the jobs it causes.

use crate::harness::{header, spawn_app_with_workers, Backend, TestApp, TestPaymentProvider};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{CALLER_SPAN}-01")
}

/// The trace id in a `traceparent` value.
fn trace_id_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or_default()
}

async fn jobs_by_kind(app: &TestApp) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT kind, trace_context FROM jobs ORDER BY id")
        .fetch_all(app.database.writer())
        .await
        .unwrap()
}

async fn a_response_continues_the_callers_trace_with_a_span_of_its_own(app: TestApp) {
    let response = app
        .request(Method::GET, "/healthz")
        .header("traceparent", traceparent())
        .send()
        .await
        .unwrap();
    let echoed = header(&response, "traceparent").expect("traceparent is echoed");
    assert_eq!(trace_id_of(&echoed), TRACE_ID);
    assert!(
        !echoed.contains(CALLER_SPAN),
        "this hop has its own span id"
    );
}

async fn a_missing_or_invalid_traceparent_starts_a_new_trace(app: TestApp) {
    let fresh = header(&app.get("/healthz").await, "traceparent").unwrap();
    assert_eq!(trace_id_of(&fresh).len(), 32);
    let response = app
        .request(Method::GET, "/healthz")
        .header("traceparent", "00-zz-not-valid")
        .send()
        .await
        .unwrap();
    let replaced = header(&response, "traceparent").unwrap();
    assert_eq!(trace_id_of(&replaced).len(), 32);
    assert_ne!(trace_id_of(&replaced), trace_id_of(&fresh));
}

crate::on_every_backend!(
    a_response_continues_the_callers_trace_with_a_span_of_its_own,
    a_missing_or_invalid_traceparent_starts_a_new_trace,
);

async fn the_order_requests_trace_reaches_its_charge_and_every_follow_up_job(backend: Backend) {
    let provider = TestPaymentProvider::start().await;
    let Some(app) = spawn_app_with_workers(backend, &provider, |_| {}).await else {
        return;
    };
    let admin = app.admin().await;
    let customer = app.customer().await;
    let product = app.product(&admin, 900, 5).await;
    let response = app
        .request(Method::POST, &format!("/v1/users/{}/orders", customer.id))
        .bearer_auth(&customer.token)
        .header("traceparent", traceparent())
        .json(&json!({
            "items": [{"productId": product["id"], "quantity": 1}],
            "callbackUrl": "http://127.0.0.1:9/unreachable"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let _: Value = response.json().await.unwrap();

    // The charge is enqueued in the request; the rest by workers, each in the trace.
    let expected = [
        "payment.charge",
        "order.expire",
        "order.paid",
        "inventory.commit",
        "analytics.record",
        "notification.callback",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let jobs = loop {
        let jobs = jobs_by_kind(&app).await;
        if expected
            .iter()
            .all(|kind| jobs.iter().any(|(k, _)| k == kind))
        {
            break jobs;
        }
        assert!(
            Instant::now() < deadline,
            "follow-up jobs never appeared: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval, bounded above
    };
    for (kind, trace_context) in &jobs {
        let trace_context = trace_context
            .as_deref()
            .unwrap_or_else(|| panic!("{kind} has no trace context"));
        assert_eq!(trace_id_of(trace_context), TRACE_ID, "{kind}");
        assert!(
            !trace_context.contains(CALLER_SPAN),
            "{kind}'s parent is a hop of ours, not the caller"
        );
    }
}

mod with_workers {
    use super::the_order_requests_trace_reaches_its_charge_and_every_follow_up_job;

    crate::on_every_queue_backend!(
        the_order_requests_trace_reaches_its_charge_and_every_follow_up_job
    );
}
