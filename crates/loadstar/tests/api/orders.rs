//! Orders: server-side pricing, atomic stock taking (never overselling, even under
//! concurrency), idempotent retries, ownership, listing and cancellation.

use crate::harness::{assert_json, assert_problem, error_fields, header, id_of, TestApp, TestUser};
use crate::on_every_backend;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::HashSet;

// ---------------------------------------------------------------------------------------
// Local shortcuts
// ---------------------------------------------------------------------------------------

fn orders_path(user: &TestUser) -> String {
    format!("/v1/users/{}/orders", user.id)
}

fn order_path(user: &TestUser, order: &Value) -> String {
    format!("/v1/users/{}/orders/{}", user.id, id_of(order))
}

fn line(product: &Value, quantity: i64) -> Value {
    json!({"productId": product["id"], "quantity": quantity})
}

fn order_of(lines: &[Value]) -> Value {
    json!({ "items": lines })
}

async fn place(app: &TestApp, user: &TestUser, body: &Value) -> Response {
    app.post_json_as(&user.token, &orders_path(user), body)
        .await
}

async fn place_with_key(app: &TestApp, user: &TestUser, key: &str, body: &Value) -> Response {
    app.request(Method::POST, &orders_path(user))
        .bearer_auth(&user.token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Places an order that must succeed and returns it.
async fn placed(app: &TestApp, user: &TestUser, lines: &[Value]) -> Value {
    assert_json(
        place(app, user, &order_of(lines)).await,
        StatusCode::CREATED,
    )
    .await
}

/// Creates a product priced in `currency`.
async fn product_in(
    app: &TestApp,
    admin: &TestUser,
    currency: &str,
    price_cents: i64,
    stock: i64,
) -> Value {
    let sku = format!("{currency}-{}", rand::random::<u32>());
    let response = app
        .post_json_as(
            &admin.token,
            "/v1/products",
            &json!({
                "sku": sku, "name": format!("Item {sku}"), "priceCents": price_cents,
                "currency": currency, "stock": stock
            }),
        )
        .await;
    assert_json(response, StatusCode::CREATED).await
}

async fn stock_of(app: &TestApp, product: &Value) -> i64 {
    let response = app.get(&format!("/v1/products/{}", id_of(product))).await;
    assert_json(response, StatusCode::OK).await["stock"]
        .as_i64()
        .unwrap()
}

/// Rows in the `orders` table, read around the API.
async fn order_rows(app: &TestApp) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM orders")
        .fetch_one(app.database.writer())
        .await
        .unwrap()
        .try_get::<i64, _>("n")
        .unwrap()
}

/// Every order of `user` as `viewer` sees them, walking all pages.
async fn all_orders(app: &TestApp, viewer: &TestUser, user: &TestUser, limit: usize) -> Vec<Value> {
    let mut orders = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let response = app
            .request(Method::GET, &orders_path(user))
            .bearer_auth(&viewer.token)
            .query(&query)
            .send()
            .await
            .unwrap();
        let page = assert_json(response, StatusCode::OK).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= limit);
        orders.extend(items.iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => {
                assert_eq!(items.len(), limit, "only the last page may be short");
                cursor = Some(next.to_owned());
            }
            None => return orders,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Placing orders
// ---------------------------------------------------------------------------------------

async fn orders_are_priced_by_the_server_and_take_stock(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let tea = app.product(&admin, 250, 10).await;
    let pot = app.product(&admin, 1_999, 3).await;
    let tea_etag = header(
        &app.get(&format!("/v1/products/{}", id_of(&tea))).await,
        "etag",
    )
    .unwrap();

    let response = place(
        &app,
        &customer,
        &json!({
            "items": [line(&pot, 1), line(&tea, 4)],
            "callbackUrl": "https://merchant.example.com/hooks/orders"
        }),
    )
    .await;
    let location = header(&response, "location").expect("201 carries Location");
    let order = assert_json(response, StatusCode::CREATED).await;
    assert_eq!(location, order_path(&customer, &order));
    assert_eq!(order["userId"], customer.id.as_str());
    assert_eq!(order["status"], "pending");
    assert_eq!(order["currency"], "EUR");
    assert_eq!(order["totalCents"], 4 * 250 + 1_999);
    assert_eq!(
        order["callbackUrl"],
        "https://merchant.example.com/hooks/orders"
    );
    assert_eq!(order["createdAt"], order["updatedAt"]);
    let mut items = order["items"].as_array().unwrap().clone();
    items.sort_by_key(|item| item["productId"].as_str().unwrap().parse::<i64>().unwrap());
    assert_eq!(
        items,
        [
            json!({
                "productId": tea["id"], "productName": tea["name"], "quantity": 4,
                "unitPriceCents": 250, "lineTotalCents": 1_000
            }),
            json!({
                "productId": pot["id"], "productName": pot["name"], "quantity": 1,
                "unitPriceCents": 1_999, "lineTotalCents": 1_999
            }),
        ]
    );

    assert_eq!(stock_of(&app, &tea).await, 6);
    assert_eq!(stock_of(&app, &pot).await, 2);
    // Taking stock is a change of the product: cached copies are stale.
    let response = app
        .request(Method::GET, &format!("/v1/products/{}", id_of(&tea)))
        .header("if-none-match", &tea_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(header(&response, "etag").unwrap(), tea_etag);

    let read = assert_json(app.get_as(&customer.token, &location).await, StatusCode::OK).await;
    assert_eq!(read["id"], order["id"]);
    assert_eq!(read["totalCents"], order["totalCents"]);
    assert_eq!(read["items"].as_array().unwrap().len(), 2);

    // The order keeps the price it was sold at when the catalog changes.
    let response = app
        .request(Method::PATCH, &format!("/v1/products/{}", id_of(&tea)))
        .bearer_auth(&admin.token)
        .json(&json!({"priceCents": 9_999, "name": "Renamed Tea"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let read = assert_json(app.get_as(&customer.token, &location).await, StatusCode::OK).await;
    assert_eq!(read["totalCents"], 4 * 250 + 1_999);
    assert!(read["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|item| item["productName"] == tea["name"] && item["unitPriceCents"] == 250));
    assert_eq!(order_rows(&app).await, 1);
}

async fn clients_cannot_send_prices(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let tea = app.product(&admin, 250, 10).await;

    let response = place(
        &app,
        &customer,
        &json!({"items": [{"productId": tea["id"], "quantity": 1, "unitPriceCents": 1}]}),
    )
    .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:validation");
    assert!(
        error_fields(&problem)[0].starts_with("items[0]"),
        "{problem}"
    );
    assert!(problem.to_string().contains("unitPriceCents"), "{problem}");

    let response = place(
        &app,
        &customer,
        &json!({"items": [line(&tea, 1)], "totalCents": 1}),
    )
    .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert!(problem.to_string().contains("totalCents"), "{problem}");

    assert_eq!(stock_of(&app, &tea).await, 10);
    assert_eq!(order_rows(&app).await, 0);
}

async fn invalid_orders_are_rejected_listing_every_bad_field(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let tea = app.product(&admin, 250, 10).await;
    let pot = app.product(&admin, 1_999, 3).await;

    let response = place(
        &app,
        &customer,
        &json!({
            "items": [line(&tea, 0), line(&pot, 1), line(&tea, 1_001)],
            "callbackUrl": "ftp://merchant.example.com/hook"
        }),
    )
    .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    let mut fields = error_fields(&problem);
    fields.sort();
    assert_eq!(
        fields,
        [
            "callbackUrl",
            "items[0].quantity",
            "items[2].productId",
            "items[2].quantity"
        ]
    );

    let problem = assert_problem(
        place(&app, &customer, &json!({"items": []})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_fields(&problem), ["items"]);

    for callback in ["not a url", "/relative/path", "mailto:shop@example.com"] {
        let problem = assert_problem(
            place(
                &app,
                &customer,
                &json!({"items": [line(&tea, 1)], "callbackUrl": callback}),
            )
            .await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error_fields(&problem), ["callbackUrl"], "{callback}");
    }

    let problem = assert_problem(
        place(
            &app,
            &customer,
            &json!({"items": [{"productId": "abc", "quantity": 1}]}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_fields(&problem), ["items[0].productId"]);

    let problem = assert_problem(
        place_with_key(&app, &customer, "", &order_of(&[line(&tea, 1)])).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_fields(&problem), ["Idempotency-Key"]);

    assert_eq!(stock_of(&app, &tea).await, 10);
    assert_eq!(stock_of(&app, &pot).await, 3);
    assert_eq!(order_rows(&app).await, 0);
}

async fn unknown_products_are_named_and_nothing_is_taken(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let tea = app.product(&admin, 250, 10).await;
    let pot = app.product(&admin, 1_999, 3).await;

    let response = place(
        &app,
        &customer,
        &json!({"items": [
            line(&tea, 2),
            {"productId": "1", "quantity": 1},
            line(&pot, 1),
            {"productId": "9000000000000000000", "quantity": 1},
        ]}),
    )
    .await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:unknown-product");
    let mut fields = error_fields(&problem);
    fields.sort();
    assert_eq!(fields, ["items[1].productId", "items[3].productId"]);

    assert_eq!(stock_of(&app, &tea).await, 10);
    assert_eq!(stock_of(&app, &pot).await, 3);
    assert_eq!(order_rows(&app).await, 0);
}

async fn insufficient_stock_is_a_conflict_and_takes_nothing(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    // Created first, so its line is taken first: the later failure must undo it.
    let plenty = app.product(&admin, 100, 10).await;
    let scarce = app.product(&admin, 100, 1).await;

    let response = place(
        &app,
        &customer,
        &order_of(&[line(&scarce, 2), line(&plenty, 5)]),
    )
    .await;
    let problem = assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:insufficient-stock");

    assert_eq!(stock_of(&app, &plenty).await, 10);
    assert_eq!(stock_of(&app, &scarce).await, 1);
    assert_eq!(order_rows(&app).await, 0);

    // Exactly the stock on hand is fine, and leaves zero.
    placed(&app, &customer, &[line(&scarce, 1)]).await;
    assert_eq!(stock_of(&app, &scarce).await, 0);
    let problem = assert_problem(
        place(&app, &customer, &order_of(&[line(&scarce, 1)])).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(problem["type"], "urn:loadstar:problem:insufficient-stock");
    assert_eq!(order_rows(&app).await, 1);
}

async fn products_priced_in_different_currencies_cannot_share_an_order(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let euro = product_in(&app, &admin, "EUR", 1_000, 5).await;
    let dollar = product_in(&app, &admin, "USD", 1_100, 5).await;

    let response = place(
        &app,
        &customer,
        &order_of(&[line(&euro, 1), line(&dollar, 1)]),
    )
    .await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:mixed-currencies");
    assert_eq!(error_fields(&problem), ["items[1].productId"]);

    assert_eq!(stock_of(&app, &euro).await, 5);
    assert_eq!(stock_of(&app, &dollar).await, 5);
    assert_eq!(order_rows(&app).await, 0);

    // Each on its own is fine, in its own currency.
    let order = placed(&app, &customer, &[line(&dollar, 2)]).await;
    assert_eq!(order["currency"], "USD");
    assert_eq!(order["totalCents"], 2_200);
}

async fn nobody_orders_on_someone_elses_account(app: TestApp) {
    let admin = app.admin().await;
    let alice = app.customer().await;
    let bob = app.customer().await;
    let tea = app.product(&admin, 250, 10).await;
    let body = order_of(&[line(&tea, 1)]);

    let response = app
        .post_json_as(&alice.token, &orders_path(&bob), &body)
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let response = app
        .post_json_as(&admin.token, &orders_path(&bob), &body)
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let response = app.post_json(&orders_path(&bob), &body).await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;

    assert_eq!(stock_of(&app, &tea).await, 10);
    assert_eq!(order_rows(&app).await, 0);
}

// ---------------------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------------------

async fn a_retry_with_the_same_idempotency_key_replays_the_order(app: TestApp) {
    let admin = app.admin().await;
    let alice = app.customer().await;
    let bob = app.customer().await;
    let tea = app.product(&admin, 250, 10).await;
    let body = order_of(&[line(&tea, 3)]);

    let first = place_with_key(&app, &alice, "checkout-42", &body).await;
    assert!(header(&first, "idempotent-replayed").is_none());
    let location = header(&first, "location").unwrap();
    let first = assert_json(first, StatusCode::CREATED).await;

    let retry = place_with_key(&app, &alice, "checkout-42", &body).await;
    assert_eq!(
        header(&retry, "idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(header(&retry, "location").unwrap(), location);
    let retry = assert_json(retry, StatusCode::CREATED).await;
    assert_eq!(retry, first, "the replay is the original order");

    assert_eq!(stock_of(&app, &tea).await, 7, "stock was taken once");
    assert_eq!(order_rows(&app).await, 1);
    assert_eq!(all_orders(&app, &alice, &alice, 20).await.len(), 1);

    // Keys belong to their user: Bob's "checkout-42" is a different order.
    let bobs = place_with_key(&app, &bob, "checkout-42", &body).await;
    assert!(header(&bobs, "idempotent-replayed").is_none());
    let bobs = assert_json(bobs, StatusCode::CREATED).await;
    assert_ne!(bobs["id"], first["id"]);
    assert_eq!(stock_of(&app, &tea).await, 4);

    // Without a key every request is a new order.
    placed(&app, &alice, &[line(&tea, 1)]).await;
    placed(&app, &alice, &[line(&tea, 1)]).await;
    assert_eq!(stock_of(&app, &tea).await, 2);
    assert_eq!(order_rows(&app).await, 4);
}

async fn reusing_an_idempotency_key_with_another_body_is_unprocessable(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let tea = app.product(&admin, 250, 10).await;
    let pot = app.product(&admin, 1_999, 3).await;

    let first = place_with_key(&app, &customer, "k-1", &order_of(&[line(&tea, 1)])).await;
    assert_eq!(first.status(), StatusCode::CREATED);

    for other in [
        order_of(&[line(&tea, 2)]),
        order_of(&[line(&pot, 1)]),
        json!({"items": [line(&tea, 1)], "callbackUrl": "https://example.com/hook"}),
    ] {
        let response = place_with_key(&app, &customer, "k-1", &other).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(
            problem["type"],
            "urn:loadstar:problem:idempotency-key-reused"
        );
    }

    assert_eq!(stock_of(&app, &tea).await, 9);
    assert_eq!(stock_of(&app, &pot).await, 3);
    assert_eq!(order_rows(&app).await, 1);
}

async fn concurrent_requests_with_one_idempotency_key_place_one_order(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    // Exactly enough stock for one order: a second placement would have to fail.
    let tea = app.product(&admin, 250, 2).await;
    let body = order_of(&[line(&tea, 2)]);

    let (first, second) = tokio::join!(
        place_with_key(&app, &customer, "double-click", &body),
        place_with_key(&app, &customer, "double-click", &body),
    );
    assert_eq!(
        [first.status(), second.status()],
        [StatusCode::CREATED, StatusCode::CREATED],
        "the retry that lost the race is answered with the order, not a stock conflict"
    );
    let replayed = [&first, &second]
        .iter()
        .filter(|response| header(response, "idempotent-replayed").as_deref() == Some("true"))
        .count();
    assert_eq!(
        replayed, 1,
        "one request created the order, the other replayed it"
    );
    let first = assert_json(first, StatusCode::CREATED).await;
    let second = assert_json(second, StatusCode::CREATED).await;
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first, second);

    assert_eq!(order_rows(&app).await, 1);
    assert_eq!(stock_of(&app, &tea).await, 0, "stock was taken once");
}

async fn many_concurrent_retries_of_one_request_place_one_order(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let tea = app.product(&admin, 250, 100).await;
    let body = order_of(&[line(&tea, 3)]);

    let handles: Vec<_> = (0..12)
        .map(|_| {
            let request = app
                .request(Method::POST, &orders_path(&customer))
                .bearer_auth(&customer.token)
                .header("idempotency-key", "retry-storm")
                .json(&body);
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut created = 0;
    for handle in handles {
        let response = handle.await.unwrap();
        if header(&response, "idempotent-replayed").is_none() {
            created += 1;
        }
        ids.insert(id_of(&assert_json(response, StatusCode::CREATED).await));
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(order_rows(&app).await, 1);
    assert_eq!(stock_of(&app, &tea).await, 97);
}

// ---------------------------------------------------------------------------------------
// Concurrency on stock
// ---------------------------------------------------------------------------------------

async fn concurrent_orders_never_oversell_the_last_units(app: TestApp) {
    let admin = app.admin().await;
    let tea = app.product(&admin, 250, 5).await;
    let mut customers = Vec::new();
    for _ in 0..4 {
        customers.push(app.customer().await);
    }

    let handles: Vec<_> = (0..20)
        .map(|n| {
            let customer = &customers[n % customers.len()];
            let request = app
                .request(Method::POST, &orders_path(customer))
                .bearer_auth(&customer.token)
                .json(&order_of(&[line(&tea, 1)]));
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    let mut created = 0;
    let mut sold_out = 0;
    for handle in handles {
        let response = handle.await.unwrap();
        if response.status() == StatusCode::CREATED {
            created += 1;
        } else {
            let problem = assert_problem(response, StatusCode::CONFLICT).await;
            assert_eq!(problem["type"], "urn:loadstar:problem:insufficient-stock");
            sold_out += 1;
        }
    }
    assert_eq!((created, sold_out), (5, 15));
    assert_eq!(stock_of(&app, &tea).await, 0);
    assert_eq!(order_rows(&app).await, 5);
    let mut listed = 0;
    for customer in &customers {
        listed += all_orders(&app, customer, customer, 20).await.len();
    }
    assert_eq!(listed, 5);
}

async fn concurrent_orders_over_shared_products_neither_deadlock_nor_oversell(app: TestApp) {
    let admin = app.admin().await;
    let a = app.product(&admin, 100, 6).await;
    let b = app.product(&admin, 200, 6).await;
    let alice = app.customer().await;
    let bob = app.customer().await;

    // The same two products, listed in opposite orders, two units each: 3 fit.
    let handles: Vec<_> = (0..10)
        .map(|n| {
            let (customer, lines) = if n % 2 == 0 {
                (&alice, [line(&a, 2), line(&b, 2)])
            } else {
                (&bob, [line(&b, 2), line(&a, 2)])
            };
            let request = app
                .request(Method::POST, &orders_path(customer))
                .bearer_auth(&customer.token)
                .json(&order_of(&lines));
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    let mut created = 0;
    for handle in handles {
        let response = handle.await.unwrap();
        if response.status() == StatusCode::CREATED {
            created += 1;
        } else {
            assert_problem(response, StatusCode::CONFLICT).await;
        }
    }
    assert_eq!(created, 3);
    assert_eq!(stock_of(&app, &a).await, 0);
    assert_eq!(stock_of(&app, &b).await, 0);
    assert_eq!(order_rows(&app).await, 3);
}

// ---------------------------------------------------------------------------------------
// Reading and listing
// ---------------------------------------------------------------------------------------

async fn customers_cannot_see_or_cancel_each_others_orders(app: TestApp) {
    let admin = app.admin().await;
    let alice = app.customer().await;
    let bob = app.customer().await;
    let tea = app.product(&admin, 250, 10).await;
    let order = placed(&app, &alice, &[line(&tea, 2)]).await;
    let order_id = id_of(&order);

    for path in [
        order_path(&alice, &order),
        format!("{}/order-items", order_path(&alice, &order)),
        orders_path(&alice),
        // Bob's own path with Alice's order id: still not his.
        format!("/v1/users/{}/orders/{order_id}", bob.id),
        format!("/v1/users/{}/orders/{order_id}/order-items", bob.id),
    ] {
        assert_problem(app.get_as(&bob.token, &path).await, StatusCode::NOT_FOUND).await;
        assert_problem(app.get(&path).await, StatusCode::UNAUTHORIZED).await;
    }
    for path in [
        format!("{}/cancel", order_path(&alice, &order)),
        format!("/v1/users/{}/orders/{order_id}/cancel", bob.id),
    ] {
        let response = app.post_json_as(&bob.token, &path, &json!({})).await;
        assert_problem(response, StatusCode::NOT_FOUND).await;
        let response = app.post_json(&path, &json!({})).await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }

    let read = assert_json(
        app.get_as(&alice.token, &order_path(&alice, &order)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(read["status"], "pending");
    assert_eq!(stock_of(&app, &tea).await, 8);
    assert!(all_orders(&app, &bob, &bob, 20).await.is_empty());
}

async fn admins_can_read_anyones_orders(app: TestApp) {
    let admin = app.admin().await;
    let alice = app.customer().await;
    let tea = app.product(&admin, 250, 10).await;
    let order = placed(&app, &alice, &[line(&tea, 2)]).await;

    let read = assert_json(
        app.get_as(&admin.token, &order_path(&alice, &order)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(read, order);
    let items = assert_json(
        app.get_as(
            &admin.token,
            &format!("{}/order-items", order_path(&alice, &order)),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(items, json!({"items": order["items"]}));
    assert_eq!(all_orders(&app, &admin, &alice, 20).await, [order]);
    // The admin's own list is theirs alone.
    assert!(all_orders(&app, &admin, &admin, 20).await.is_empty());
}

async fn order_lists_are_newest_first_and_paginated(app: TestApp) {
    let admin = app.admin().await;
    let alice = app.customer().await;
    let bob = app.customer().await;
    let tea = app.product(&admin, 250, 100).await;

    let mut placed_ids = Vec::new();
    for quantity in 1..=7 {
        placed_ids.push(id_of(&placed(&app, &alice, &[line(&tea, quantity)]).await));
        if quantity == 4 {
            placed(&app, &bob, &[line(&tea, 1)]).await;
        }
    }
    let newest_first: Vec<String> = placed_ids.iter().rev().cloned().collect();

    let listed = all_orders(&app, &alice, &alice, 3).await;
    let listed_ids: Vec<String> = listed.iter().map(id_of).collect();
    assert_eq!(listed_ids, newest_first);
    for order in &listed {
        assert_eq!(order["userId"], alice.id.as_str());
        assert_eq!(order["items"].as_array().unwrap().len(), 1, "{order}");
        let quantity = order["items"][0]["quantity"].as_i64().unwrap();
        assert_eq!(order["totalCents"], quantity * 250);
    }
    assert_eq!(all_orders(&app, &alice, &alice, 100).await, listed);
    assert_eq!(all_orders(&app, &bob, &bob, 1).await.len(), 1);

    // Paging while new orders arrive neither repeats nor skips the older ones.
    let first_page = assert_json(
        app.get_as(&alice.token, &format!("{}?limit=2", orders_path(&alice)))
            .await,
        StatusCode::OK,
    )
    .await;
    placed(&app, &alice, &[line(&tea, 1)]).await;
    let cursor = first_page["nextCursor"].as_str().unwrap();
    let rest = assert_json(
        app.get_as(
            &alice.token,
            &format!("{}?limit=100&cursor={cursor}", orders_path(&alice)),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let mut walked: Vec<String> = first_page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    walked.extend(rest["items"].as_array().unwrap().iter().map(id_of));
    assert_eq!(walked, newest_first);

    for query in ["limit=0", "limit=101", "limit=x", "cursor=bogus"] {
        let problem = assert_problem(
            app.get_as(&alice.token, &format!("{}?{query}", orders_path(&alice)))
                .await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        let field = query.split('=').next().unwrap();
        assert_eq!(error_fields(&problem), [field], "{query}");
    }
}

async fn the_order_items_endpoint_lists_the_lines_of_an_order(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let tea = app.product(&admin, 250, 10).await;
    let pot = app.product(&admin, 1_999, 3).await;
    let cup = app.product(&admin, 500, 8).await;
    let order = placed(
        &app,
        &customer,
        &[line(&cup, 4), line(&tea, 1), line(&pot, 2)],
    )
    .await;

    let response = app
        .get_as(
            &customer.token,
            &format!("{}/order-items", order_path(&customer, &order)),
        )
        .await;
    let body = assert_json(response, StatusCode::OK).await;
    let items = body["items"].as_array().unwrap();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert_eq!(items, order["items"].as_array().unwrap());
    let mut quantities: Vec<(String, i64, i64)> = items
        .iter()
        .map(|item| {
            (
                item["productId"].as_str().unwrap().to_owned(),
                item["quantity"].as_i64().unwrap(),
                item["lineTotalCents"].as_i64().unwrap(),
            )
        })
        .collect();
    quantities.sort();
    let mut expected = vec![
        (id_of(&tea), 1, 250),
        (id_of(&pot), 2, 3_998),
        (id_of(&cup), 4, 2_000),
    ];
    expected.sort();
    assert_eq!(quantities, expected);
    assert_eq!(order["totalCents"], 250 + 3_998 + 2_000);

    let missing = format!("/v1/users/{}/orders/1/order-items", customer.id);
    assert_problem(
        app.get_as(&customer.token, &missing).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let malformed = format!("/v1/users/{}/orders/abc/order-items", customer.id);
    let problem = assert_problem(
        app.get_as(&customer.token, &malformed).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_fields(&problem), ["orderId"]);
}

// ---------------------------------------------------------------------------------------
// Cancelling
// ---------------------------------------------------------------------------------------

async fn cancelling_returns_the_stock_and_cannot_be_repeated(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let tea = app.product(&admin, 250, 10).await;
    let pot = app.product(&admin, 1_999, 5).await;
    let order = placed(&app, &customer, &[line(&tea, 3), line(&pot, 2)]).await;
    assert_eq!(stock_of(&app, &tea).await, 7);
    assert_eq!(stock_of(&app, &pot).await, 3);

    let cancel = format!("{}/cancel", order_path(&customer, &order));
    let response = app.post_json_as(&customer.token, &cancel, &json!({})).await;
    let cancelled = assert_json(response, StatusCode::OK).await;
    assert_eq!(cancelled["id"], order["id"]);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["items"], order["items"]);
    assert_eq!(cancelled["totalCents"], order["totalCents"]);
    assert_eq!(cancelled["createdAt"], order["createdAt"]);
    assert_eq!(stock_of(&app, &tea).await, 10);
    assert_eq!(stock_of(&app, &pot).await, 5);

    let read = assert_json(
        app.get_as(&customer.token, &order_path(&customer, &order))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(read["status"], "cancelled");

    let again = app.post_json_as(&customer.token, &cancel, &json!({})).await;
    let problem = assert_problem(again, StatusCode::CONFLICT).await;
    assert_eq!(
        problem["type"],
        "urn:loadstar:problem:order-not-cancellable"
    );
    assert_eq!(stock_of(&app, &tea).await, 10);
    assert_eq!(stock_of(&app, &pot).await, 5);

    let missing = format!("/v1/users/{}/orders/1/cancel", customer.id);
    let response = app
        .post_json_as(&customer.token, &missing, &json!({}))
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

async fn concurrent_cancels_return_the_stock_only_once(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let tea = app.product(&admin, 250, 10).await;
    let order = placed(&app, &customer, &[line(&tea, 4)]).await;
    let cancel = format!("{}/cancel", order_path(&customer, &order));
    let empty = json!({});

    let responses = futures::future::join_all(
        (0..8).map(|_| app.post_json_as(&customer.token, &cancel, &empty)),
    )
    .await;
    let mut cancelled = 0;
    for response in responses {
        if response.status() == StatusCode::OK {
            cancelled += 1;
        } else {
            assert_problem(response, StatusCode::CONFLICT).await;
        }
    }
    assert_eq!(cancelled, 1);
    assert_eq!(stock_of(&app, &tea).await, 10);
}

async fn stock_returned_by_a_cancel_can_be_sold_again(app: TestApp) {
    let admin = app.admin().await;
    let alice = app.customer().await;
    let bob = app.customer().await;
    let tea = app.product(&admin, 250, 1).await;

    let order = placed(&app, &alice, &[line(&tea, 1)]).await;
    assert_problem(
        place(&app, &bob, &order_of(&[line(&tea, 1)])).await,
        StatusCode::CONFLICT,
    )
    .await;
    let cancel = format!("{}/cancel", order_path(&alice, &order));
    let response = app.post_json_as(&alice.token, &cancel, &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    placed(&app, &bob, &[line(&tea, 1)]).await;
    assert_eq!(stock_of(&app, &tea).await, 0);
}

on_every_backend!(
    orders_are_priced_by_the_server_and_take_stock,
    clients_cannot_send_prices,
    invalid_orders_are_rejected_listing_every_bad_field,
    unknown_products_are_named_and_nothing_is_taken,
    insufficient_stock_is_a_conflict_and_takes_nothing,
    products_priced_in_different_currencies_cannot_share_an_order,
    nobody_orders_on_someone_elses_account,
    a_retry_with_the_same_idempotency_key_replays_the_order,
    reusing_an_idempotency_key_with_another_body_is_unprocessable,
    concurrent_requests_with_one_idempotency_key_place_one_order,
    many_concurrent_retries_of_one_request_place_one_order,
    concurrent_orders_never_oversell_the_last_units,
    concurrent_orders_over_shared_products_neither_deadlock_nor_oversell,
    customers_cannot_see_or_cancel_each_others_orders,
    admins_can_read_anyones_orders,
    order_lists_are_newest_first_and_paginated,
    the_order_items_endpoint_lists_the_lines_of_an_order,
    cancelling_returns_the_stock_and_cannot_be_repeated,
    concurrent_cancels_return_the_stock_only_once,
    stock_returned_by_a_cancel_can_be_sold_again,
);
