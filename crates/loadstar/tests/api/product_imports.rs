//! Fire and forget: a bulk import is accepted with `202` and a `Location` to poll, and a
//! worker applies it. On every queue backend.

use crate::harness::{
    assert_problem, error_fields, header, spawn_app_with_workers, Backend, TestApp,
    TestPaymentProvider,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn product(sku: &str, price_cents: i64) -> Value {
    json!({"sku": sku, "name": format!("Product {sku}"), "priceCents": price_cents, "currency": "EUR", "stock": 10})
}

async fn product_by_sku(app: &TestApp, sku: &str) -> Value {
    let page: Value = app
        .get(&format!("/v1/products?limit=100&q={}", sku))
        .await
        .json()
        .await
        .unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["sku"] == sku)
        .cloned()
        .unwrap_or_else(|| panic!("no product {sku} in {page}"))
}

/// The product's version, as its `ETag` says it.
async fn etag_of(app: &TestApp, product: &Value) -> String {
    let response = app
        .get(&format!("/v1/products/{}", product["id"].as_str().unwrap()))
        .await;
    header(&response, "etag").unwrap()
}

async fn an_import_is_accepted_then_applied_and_repeating_it_changes_nothing(backend: Backend) {
    let provider = TestPaymentProvider::start().await;
    let Some(app) = spawn_app_with_workers(backend, &provider, |_| {}).await else {
        return;
    };
    let admin = app.admin().await;
    let existing = app.product(&admin, 500, 3).await;
    let existing_sku = existing["sku"].as_str().unwrap().to_owned();
    let mut lines: Vec<Value> = (0..200)
        .map(|n| product(&format!("imp-{n:03}"), 100 + n))
        .collect();
    lines.push(product(&existing_sku, 999));
    let body = json!({ "products": lines });

    let accepted = app
        .post_json_as(&admin.token, "/v1/product-imports", &body)
        .await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let location = header(&accepted, "location").unwrap();
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/jobs/{}", accepted["jobId"].as_str().unwrap())
    );
    assert_eq!(accepted["statusUrl"], location.as_str());
    assert_eq!(accepted["job"]["kind"], "product.import");

    let done = app.wait_for_job(&admin, &location).await;
    assert_eq!(done["attempt"], 1);
    let created = product_by_sku(&app, "imp-042").await;
    assert_eq!(created["priceCents"], 142);
    assert_eq!(etag_of(&app, &created).await, "\"v1\"");
    let replaced = product_by_sku(&app, &existing_sku).await;
    assert_eq!(
        replaced["id"], existing["id"],
        "a known SKU keeps its product"
    );
    assert_eq!(replaced["priceCents"], 999);
    assert_eq!(etag_of(&app, &replaced).await, "\"v2\"");

    let again = app
        .post_json_as(&admin.token, "/v1/product-imports", &body)
        .await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    app.wait_for_job(&admin, &header(&again, "location").unwrap())
        .await;
    assert_eq!(
        etag_of(&app, &replaced).await,
        "\"v2\"",
        "importing the same products again changes nothing"
    );
}

async fn an_import_with_bad_lines_names_each_and_queues_nothing(backend: Backend) {
    let provider = TestPaymentProvider::start().await;
    let Some(app) = spawn_app_with_workers(backend, &provider, |_| {}).await else {
        return;
    };
    let admin = app.admin().await;
    let body = json!({ "products": [
        product("ok-1", 100),
        product("bad-price", -5),
        product("ok-1", 200),
    ]});
    let response = app
        .post_json_as(&admin.token, "/v1/product-imports", &body)
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        error_fields(&problem),
        ["products[1].priceCents", "products[2].sku"]
    );
    let empty = app
        .post_json_as(
            &admin.token,
            "/v1/product-imports",
            &json!({"products": []}),
        )
        .await;
    assert_eq!(
        error_fields(&assert_problem(empty, StatusCode::BAD_REQUEST).await),
        ["products"]
    );

    let queues: Value = app
        .get_as(&admin.token, "/v1/admin/queues")
        .await
        .json()
        .await
        .unwrap();
    let catalog = queues["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|queue| queue["queue"] == "catalog");
    assert!(!catalog, "nothing was queued: {queues}");
}

async fn only_administrators_may_import(backend: Backend) {
    let provider = TestPaymentProvider::start().await;
    let Some(app) = spawn_app_with_workers(backend, &provider, |_| {}).await else {
        return;
    };
    let customer = app.customer().await;
    let body = json!({ "products": [product("c-1", 100)] });
    let response = app
        .post_json_as(&customer.token, "/v1/product-imports", &body)
        .await;
    assert_problem(response, StatusCode::FORBIDDEN).await;
    let anonymous = app.post_json("/v1/product-imports", &body).await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
}

crate::on_every_queue_backend!(
    an_import_is_accepted_then_applied_and_repeating_it_changes_nothing,
    an_import_with_bad_lines_names_each_and_queues_nothing,
    only_administrators_may_import,
);
