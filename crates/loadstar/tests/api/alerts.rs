//! Alerts through the whole application: a charge whose policy is `alert` fails for good,
//! stays in the error queue, and a signed webhook reaches the configured receiver.

use crate::harness::{
    spawn_app_with_workers, webhook_timestamp, Backend, TestPaymentProvider, TestWebhookReceiver,
};
use loadstar_core::config::OnExhausted;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn a_charge_with_the_alert_policy_that_fails_for_good_sends_a_signed_alert(backend: Backend) {
    let alerts = TestWebhookReceiver::start().await;
    let url = alerts.url.clone();
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

    let (headers, body) = alerts.first().await;
    assert_eq!(
        headers["loadstar-signature"].to_str().unwrap(),
        loadstar_jobs::webhook_signature("whsec_ops", webhook_timestamp(&headers), body.as_bytes())
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
