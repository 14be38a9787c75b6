//! Health, readiness, metrics, OpenAPI and the docs page.

use crate::harness::TestApp;
use crate::on_every_backend;
use reqwest::StatusCode;
use serde_json::Value;

async fn health_check_answers_ok(app: TestApp) {
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ok");
}

async fn readiness_checks_the_database(app: TestApp) {
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");

    app.database.close().await;
    let response = app.get("/readyz").await;
    crate::harness::assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

async fn metrics_count_requests_by_route_template(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, 100, 1).await;
    let id = product["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/v1/products/{id}")).await.status(),
        StatusCode::OK
    );

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        text.contains(
            r#"http_requests_total{method="GET",route="/v1/products/{productId}",status="200"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(!text.contains(id), "raw ids must not become label values");
}

async fn openapi_document_describes_every_resource(app: TestApp) {
    let response = app.get("/v1/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/v1/users",
        "/v1/users/{userId}",
        "/v1/sessions",
        "/v1/sessions/current",
        "/v1/api-keys",
        "/v1/api-keys/{keyId}",
        "/v1/products",
        "/v1/products/{productId}",
        "/v1/users/{userId}/orders",
        "/v1/users/{userId}/orders/{orderId}",
        "/v1/users/{userId}/orders/{orderId}/order-items",
        "/v1/users/{userId}/orders/{orderId}/cancel",
        "/v1/admin/queues",
        "/v1/admin/dead-jobs",
        "/v1/admin/dead-jobs/{jobId}",
        "/v1/admin/dead-jobs/{jobId}/retry",
        "/v1/jobs/{jobId}",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
    assert!(document["components"]["schemas"]["Problem"].is_object());
}

async fn docs_page_works_offline(app: TestApp) {
    let page = app.get("/docs").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("/v1/openapi.json"));
    assert!(
        !html.contains("https://"),
        "the docs page must not load remote assets"
    );
    for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"] {
        let response = app.get(asset).await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(response.bytes().await.unwrap().len() > 10_000, "{asset}");
    }
}

on_every_backend!(
    health_check_answers_ok,
    readiness_checks_the_database,
    metrics_count_requests_by_route_template,
    openapi_document_describes_every_resource,
    docs_page_works_offline,
);
