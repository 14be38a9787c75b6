//! The order pipeline end to end: API → job queue → workers → payment provider simulator.

use crate::harness::{
    spawn_app_with_workers, webhook_timestamp, Backend, TestApp, TestPaymentProvider, TestUser,
    TestWebhookReceiver,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn place_order(app: &TestApp, customer: &TestUser, product: &Value, quantity: i64) -> Value {
    let response = app
        .post_json_as(
            &customer.token,
            &format!("/v1/users/{}/orders", customer.id),
            &json!({"items": [{"productId": product["id"], "quantity": quantity}]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

/// Polls the order until its status is `status` (deadline 30 s).
async fn wait_for_status(app: &TestApp, customer: &TestUser, order: &Value, status: &str) -> Value {
    let path = format!(
        "/v1/users/{}/orders/{}",
        customer.id,
        order["id"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let current: Value = app
            .get_as(&customer.token, &path)
            .await
            .json()
            .await
            .unwrap();
        if current["status"] == status {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "order stayed {}, expected {status}",
            current["status"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval, bounded above
    }
}

/// The order turns `payment_failed` a moment before its job is recorded dead: polls the
/// error queue (as an admin would) until the charge is there, and returns its id.
async fn wait_for_dead_payment(app: &TestApp, admin: &TestUser) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dead: Value = app
            .get_as(&admin.token, "/v1/admin/dead-jobs?queue=payments")
            .await
            .json()
            .await
            .unwrap();
        let items = dead["items"].as_array().unwrap();
        if let [job] = items.as_slice() {
            assert_eq!(job["kind"], "payment.charge");
            return job["id"].as_str().unwrap().to_owned();
        }
        assert!(items.is_empty(), "one dead charge at most: {dead}");
        assert!(
            Instant::now() < deadline,
            "the charge never reached the error queue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval, bounded above
    }
}

async fn stock_of(app: &TestApp, product: &Value) -> i64 {
    let body: Value = app
        .get(&format!("/v1/products/{}", product["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    body["stock"].as_i64().unwrap()
}

async fn a_placed_order_is_charged_once_and_becomes_paid(backend: Backend) {
    let provider = TestPaymentProvider::start().await;
    let Some(app) = spawn_app_with_workers(backend, &provider, |_| {}).await else {
        return;
    };
    let admin = app.admin().await;
    let customer = app.customer().await;
    let product = app.product(&admin, 1250, 10).await;
    let order = place_order(&app, &customer, &product, 2).await;
    assert_eq!(order["status"], "pending");

    wait_for_status(&app, &customer, &order, "paid").await;
    let stats = provider.stats().await;
    assert_eq!(stats["charges"], 1);
    assert_eq!(stock_of(&app, &product).await, 8);
}

async fn a_charge_that_keeps_failing_ends_payment_failed_and_an_admin_retry_pays_it(
    backend: Backend,
) {
    let provider = TestPaymentProvider::start().await;
    provider.set_failure_rate(1.0).await;
    let Some(app) = spawn_app_with_workers(backend, &provider, |_| {}).await else {
        return;
    };
    let admin = app.admin().await;
    let customer = app.customer().await;
    let product = app.product(&admin, 500, 5).await;
    let order = place_order(&app, &customer, &product, 1).await;

    wait_for_status(&app, &customer, &order, "payment_failed").await;
    assert_eq!(stock_of(&app, &product).await, 4, "stock stays reserved");
    assert_eq!(provider.stats().await["charges"], 0);

    // The error queue is for admins only.
    let forbidden = app.get_as(&customer.token, "/v1/admin/dead-jobs").await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let job_id = wait_for_dead_payment(&app, &admin).await;
    let detail: Value = app
        .get_as(&admin.token, &format!("/v1/admin/dead-jobs/{job_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        detail["payload"]["orderId"], order["id"],
        "payload shown decoded"
    );
    assert_eq!(detail["attempts"].as_array().unwrap().len(), 3);
    assert!(detail["lastError"].as_str().unwrap().contains("503"));

    provider.set_failure_rate(0.0).await;
    let retried = app
        .post_json_as(
            &admin.token,
            &format!("/v1/admin/dead-jobs/{job_id}/retry"),
            &json!({}),
        )
        .await;
    assert_eq!(retried.status(), StatusCode::OK);
    wait_for_status(&app, &customer, &order, "paid").await;
    assert_eq!(provider.stats().await["charges"], 1);
}

async fn an_order_left_unpaid_is_cancelled_and_its_stock_returns(backend: Backend) {
    let provider = TestPaymentProvider::start().await;
    provider.set_failure_rate(1.0).await;
    let Some(app) = spawn_app_with_workers(backend, &provider, |config| {
        config.orders.unpaid_expiry_secs = 0;
        config
            .jobs
            .policies
            .get_mut("payment_charge")
            .unwrap()
            .max_attempts = 1_000;
        config
            .jobs
            .policies
            .get_mut("payment_charge")
            .unwrap()
            .backoff_cap_ms = 1_000;
    })
    .await
    else {
        return;
    };
    let admin = app.admin().await;
    let customer = app.customer().await;
    let product = app.product(&admin, 500, 3).await;
    let order = place_order(&app, &customer, &product, 2).await;

    wait_for_status(&app, &customer, &order, "cancelled").await;
    assert_eq!(stock_of(&app, &product).await, 3);
}

async fn a_paid_order_fans_out_to_inventory_analytics_and_a_signed_callback(backend: Backend) {
    let hooks = TestWebhookReceiver::start().await;
    let hook_url = hooks.url.clone();
    let provider = TestPaymentProvider::start().await;
    let Some(app) = spawn_app_with_workers(backend, &provider, |config| {
        config.notifications.signing_secret = "whsec_test".to_owned();
    })
    .await
    else {
        return;
    };
    let admin = app.admin().await;
    let customer = app.customer().await;
    let product = app.product(&admin, 700, 5).await;
    let response = app
        .post_json_as(
            &customer.token,
            &format!("/v1/users/{}/orders", customer.id),
            &json!({"items": [{"productId": product["id"], "quantity": 1}], "callbackUrl": hook_url}),
        )
        .await;
    let order: Value = response.json().await.unwrap();
    wait_for_status(&app, &customer, &order, "paid").await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let order_id: i64 = order["id"].as_str().unwrap().parse().unwrap();
    loop {
        let committed: Option<i64> =
            sqlx::query_scalar("SELECT inventory_committed_at FROM orders WHERE id = $1")
                .bind(order_id)
                .fetch_one(app.database.writer())
                .await
                .unwrap();
        let events: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM order_events WHERE order_id = $1")
                .bind(order_id)
                .fetch_one(app.database.writer())
                .await
                .unwrap();
        let callbacks = hooks.len();
        if committed.is_some() && events == 1 && callbacks == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fan-out incomplete: inventory {committed:?}, events {events}, callbacks {callbacks}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval, bounded above
    }
    let (headers, body) = hooks.first().await;
    assert_eq!(
        headers["loadstar-signature"].to_str().unwrap(),
        loadstar_shop::order_pipeline::signature(
            "whsec_test",
            webhook_timestamp(&headers),
            body.as_bytes()
        )
    );
    let payload: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(payload["event"], "order.paid");
    assert_eq!(payload["order"]["id"], order["id"]);
}

async fn a_provider_that_keeps_failing_is_left_alone_by_the_circuit_breaker(backend: Backend) {
    let provider = TestPaymentProvider::start().await;
    provider.set_failure_rate(1.0).await;
    let Some(app) = spawn_app_with_workers(backend, &provider, |config| {
        config.payments.breaker_failure_threshold = 2;
        config.payments.breaker_open_secs = 3_600;
        config
            .jobs
            .policies
            .get_mut("payment_charge")
            .unwrap()
            .max_attempts = 6;
    })
    .await
    else {
        return;
    };
    let admin = app.admin().await;
    let customer = app.customer().await;
    let product = app.product(&admin, 500, 5).await;
    let order = place_order(&app, &customer, &product, 1).await;

    wait_for_status(&app, &customer, &order, "payment_failed").await;
    let stats = provider.stats().await;
    assert_eq!(
        stats["requests"], 2,
        "two failures opened the circuit; four attempts never called: {stats}"
    );
    let job_id = wait_for_dead_payment(&app, &admin).await;
    let detail: Value = app
        .get_as(&admin.token, &format!("/v1/admin/dead-jobs/{job_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(detail["lastError"]
        .as_str()
        .unwrap()
        .contains("circuit open"));
}

crate::on_every_queue_backend!(
    a_placed_order_is_charged_once_and_becomes_paid,
    a_charge_that_keeps_failing_ends_payment_failed_and_an_admin_retry_pays_it,
    an_order_left_unpaid_is_cancelled_and_its_stock_returns,
    a_paid_order_fans_out_to_inventory_analytics_and_a_signed_callback,
    a_provider_that_keeps_failing_is_left_alone_by_the_circuit_breaker,
);
