//! Alerts through the whole application: a charge whose policy is `alert` fails for good,
//! stays in the error queue, and a signed webhook reaches the configured receiver.

use crate::harness::{spawn_app_with_workers, Backend, TestPaymentProvider};
use axum::http::HeaderMap;
use loadstar_core::config::OnExhausted;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn a_charge_with_the_alert_policy_that_fails_for_good_sends_a_signed_alert(backend: Backend) {
    let (url, received) = receiver().await;
    let provider = TestPaymentProvider::start().await;
    provider.set_failure_rate(1.0).await;
    let Some(app) = spawn_app_with_workers(backend, &provider, |config| {
        config.jobs.alert_webhook_url = url;
        config.jobs.alert_signing_secret = "whsec_ops".to_owned();
        let policy = config.jobs.policies.get_mut("payment_charge").unwrap();
        policy.on_exhausted = OnExhausted::Alert;
    })
    .await
    else {
        return;
    };
    let admin = app.admin().await;
    let customer = app.customer().await;
    let product = app.product(&admin, 500, 5).await;
    let placed = app
        .post_json_as(
            &customer.token,
            &format!("/v1/users/{}/orders", customer.id),
            &json!({"items": [{"productId": product["id"], "quantity": 1}]}),
        )
        .await;
    assert_eq!(placed.status(), StatusCode::CREATED);

    let deadline = Instant::now() + Duration::from_secs(30);
    while received.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no alert arrived");
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval, bounded above
    }
    let (headers, body) = received.lock().unwrap().remove(0);
    let timestamp: i64 = headers["loadstar-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        headers["loadstar-signature"].to_str().unwrap(),
        loadstar_jobs::webhook_signature("whsec_ops", timestamp, body.as_bytes())
    );
    let alert: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alert["kind"], "payment.charge");
    assert_eq!(alert["queue"], "payments");
    assert_eq!(alert["attempts"], 3);
    assert!(alert["lastError"].as_str().unwrap().contains("503"));

    let dead: Value = app
        .get_as(&admin.token, "/v1/admin/dead-jobs?queue=payments")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dead["items"][0]["id"], alert["jobId"], "the job is kept");
    assert_eq!(dead["items"][0]["kind"], "payment.charge");
}

crate::on_every_queue_backend!(
    a_charge_with_the_alert_policy_that_fails_for_good_sends_a_signed_alert
);
