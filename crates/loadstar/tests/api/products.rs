//! The catalog: admin writes (create, replace, merge patch, delete), authorization,
//! validation, optimistic concurrency with `If-Match`, conditional reads with
//! `If-None-Match`, and keyset pagination with filters.

use crate::harness::{assert_json, assert_problem, error_fields, header, id_of, TestApp, TestUser};
use crate::on_every_backend;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;

// ---------------------------------------------------------------------------------------
// Local shortcuts
// ---------------------------------------------------------------------------------------

fn product_body(sku: &str, name: &str, price_cents: i64) -> Value {
    json!({
        "sku": sku, "name": name, "description": "a test product",
        "priceCents": price_cents, "currency": "EUR", "stock": 10
    })
}

async fn create(app: &TestApp, admin: &TestUser, body: &Value) -> Value {
    let response = app.post_json_as(&admin.token, "/v1/products", body).await;
    assert_json(response, StatusCode::CREATED).await
}

async fn create_named(app: &TestApp, admin: &TestUser, sku: &str, name: &str, price: i64) -> Value {
    create(app, admin, &product_body(sku, name, price)).await
}

/// The product as stored now, read over HTTP.
async fn current(app: &TestApp, id: &str) -> Value {
    assert_json(app.get(&format!("/v1/products/{id}")).await, StatusCode::OK).await
}

/// Every product, walked with the largest page size.
async fn all_products(app: &TestApp) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "100".to_owned())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let response = app
            .request(Method::GET, "/v1/products")
            .query(&query)
            .send()
            .await
            .unwrap();
        let page = assert_json(response, StatusCode::OK).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

/// Names of the products a list query returns (one page of up to 100).
async fn names_listed(app: &TestApp, query: &[(&str, &str)]) -> Vec<String> {
    let response = app
        .request(Method::GET, "/v1/products")
        .query(query)
        .send()
        .await
        .unwrap();
    let page = assert_json(response, StatusCode::OK).await;
    assert!(page["nextCursor"].is_null());
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn send_as(
    app: &TestApp,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Response {
    let mut request = app.request(method, path);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

async fn merge_patch(app: &TestApp, admin: &TestUser, id: &str, patch: &Value) -> Response {
    app.request(Method::PATCH, &format!("/v1/products/{id}"))
        .bearer_auth(&admin.token)
        .header("content-type", "application/merge-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// CRUD and authorization
// ---------------------------------------------------------------------------------------

async fn admins_create_read_replace_and_delete_products(app: TestApp) {
    let admin = app.admin().await;

    let response = app
        .post_json_as(
            &admin.token,
            "/v1/products",
            &json!({
                "sku": "mug-001", "name": "  Blue Mug  ", "description": "Holds tea",
                "priceCents": 1250, "currency": "EUR", "stock": 40
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = header(&response, "location").expect("201 carries Location");
    assert_eq!(header(&response, "etag").as_deref(), Some("\"v1\""));
    let created = assert_json(response, StatusCode::CREATED).await;
    let id = id_of(&created);
    assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
    assert_eq!(location, format!("/v1/products/{id}"));
    assert_eq!(created["sku"], "mug-001");
    assert_eq!(created["name"], "Blue Mug", "text fields are trimmed");
    assert_eq!(created["description"], "Holds tea");
    assert_eq!(created["priceCents"], 1250);
    assert_eq!(created["currency"], "EUR");
    assert_eq!(created["stock"], 40);
    assert_eq!(created["createdAt"], created["updatedAt"]);
    assert!(
        created.get("version").is_none(),
        "the version travels as the ETag"
    );

    let read = app.get(&location).await;
    assert_eq!(header(&read, "etag").as_deref(), Some("\"v1\""));
    assert_eq!(created, assert_json(read, StatusCode::OK).await);

    // PUT replaces every field: the omitted description becomes empty.
    let response = send_as(
        &app,
        Some(&admin.token),
        Method::PUT,
        &location,
        Some(&json!({
            "sku": "mug-002", "name": "Red Mug", "priceCents": 1300,
            "currency": "USD", "stock": 7
        })),
    )
    .await;
    assert_eq!(header(&response, "etag").as_deref(), Some("\"v2\""));
    let replaced = assert_json(response, StatusCode::OK).await;
    assert_eq!(replaced["id"], created["id"]);
    assert_eq!(replaced["sku"], "mug-002");
    assert_eq!(replaced["name"], "Red Mug");
    assert_eq!(replaced["description"], "");
    assert_eq!(replaced["priceCents"], 1300);
    assert_eq!(replaced["currency"], "USD");
    assert_eq!(replaced["stock"], 7);
    assert_eq!(replaced["createdAt"], created["createdAt"]);
    assert_eq!(current(&app, &id).await, replaced);

    let response = send_as(&app, Some(&admin.token), Method::DELETE, &location, None).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());
    assert_problem(app.get(&location).await, StatusCode::NOT_FOUND).await;
    assert!(all_products(&app).await.is_empty());

    // Writing a product that does not exist (any more) is a 404, not an upsert.
    let gone = send_as(&app, Some(&admin.token), Method::DELETE, &location, None).await;
    assert_problem(gone, StatusCode::NOT_FOUND).await;
    let body = product_body("mug-003", "Ghost", 1);
    let gone = send_as(
        &app,
        Some(&admin.token),
        Method::PUT,
        &location,
        Some(&body),
    )
    .await;
    assert_problem(gone, StatusCode::NOT_FOUND).await;
    let gone = merge_patch(&app, &admin, &id, &json!({"name": "Ghost"})).await;
    assert_problem(gone, StatusCode::NOT_FOUND).await;
    assert!(all_products(&app).await.is_empty());
}

async fn product_ids_in_paths_must_be_ids(app: TestApp) {
    for bad in ["abc", "0", "-1", "1.5", "99999999999999999999"] {
        let problem = assert_problem(
            app.get(&format!("/v1/products/{bad}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error_fields(&problem), ["productId"], "{bad}");
    }
    assert_problem(app.get("/v1/products/1").await, StatusCode::NOT_FOUND).await;
}

async fn anonymous_writes_are_unauthorized_and_change_nothing(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, 500, 3).await;
    let path = format!("/v1/products/{}", id_of(&product));
    let body = product_body("anon-1", "Anonymous", 1);

    for (method, path, body) in [
        (Method::POST, "/v1/products", Some(&body)),
        (Method::PUT, path.as_str(), Some(&body)),
        (Method::PATCH, path.as_str(), Some(&json!({"name": "x"}))),
        (Method::DELETE, path.as_str(), None),
    ] {
        let response = send_as(&app, None, method.clone(), path, body).await;
        assert_eq!(
            header(&response, "www-authenticate").as_deref(),
            Some("Bearer"),
            "{method} {path}"
        );
        assert_problem(response, StatusCode::UNAUTHORIZED).await;

        let response = send_as(&app, Some("not-a-real-token"), method.clone(), path, body).await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(current(&app, &id_of(&product)).await, product);
    assert_eq!(all_products(&app).await, [product]);
}

async fn customers_may_browse_but_not_write_products(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let product = app.product(&admin, 500, 3).await;
    let path = format!("/v1/products/{}", id_of(&product));
    let body = product_body("cust-1", "Customer's", 1);

    for (method, path, body) in [
        (Method::POST, "/v1/products", Some(&body)),
        (Method::PUT, path.as_str(), Some(&body)),
        (
            Method::PATCH,
            path.as_str(),
            Some(&json!({"priceCents": 1})),
        ),
        (Method::DELETE, path.as_str(), None),
    ] {
        let response = send_as(&app, Some(&customer.token), method, path, body).await;
        assert_problem(response, StatusCode::FORBIDDEN).await;
    }

    assert_eq!(
        assert_json(app.get_as(&customer.token, &path).await, StatusCode::OK).await,
        product
    );
    assert_eq!(all_products(&app).await, [product]);
}

// ---------------------------------------------------------------------------------------
// Validation and uniqueness
// ---------------------------------------------------------------------------------------

async fn invalid_products_are_rejected_listing_every_bad_field(app: TestApp) {
    let admin = app.admin().await;
    let bad = json!({
        "sku": "has spaces!", "name": "   ", "description": "x".repeat(5_001),
        "priceCents": -1, "currency": "eur", "stock": -5
    });
    let problem = assert_problem(
        app.post_json_as(&admin.token, "/v1/products", &bad).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(problem["type"], "urn:loadstar:problem:validation");
    let mut fields = error_fields(&problem);
    fields.sort();
    assert_eq!(
        fields,
        [
            "currency",
            "description",
            "name",
            "priceCents",
            "sku",
            "stock"
        ]
    );
    assert!(all_products(&app).await.is_empty(), "nothing was created");

    // Too large is as wrong as too small.
    let too_big = json!({
        "sku": "s".repeat(65), "name": "n".repeat(201), "priceCents": 1_000_000_000_001_i64,
        "currency": "EURO", "stock": 1_000_000_001
    });
    let problem = assert_problem(
        app.post_json_as(&admin.token, "/v1/products", &too_big)
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let mut fields = error_fields(&problem);
    fields.sort();
    assert_eq!(fields, ["currency", "name", "priceCents", "sku", "stock"]);

    // Shape errors name the field too: wrong type, unknown field, missing field.
    let problem = assert_problem(
        app.post_json_as(
            &admin.token,
            "/v1/products",
            &json!({"sku": "a", "name": "b", "priceCents": "12", "currency": "EUR", "stock": 1}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_fields(&problem), ["priceCents"]);
    let mut with_extra = product_body("extra-1", "Extra", 1);
    with_extra["colour"] = json!("red");
    let problem = assert_problem(
        app.post_json_as(&admin.token, "/v1/products", &with_extra)
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{problem}"
    );
    let problem = assert_problem(
        app.post_json_as(&admin.token, "/v1/products", &json!({"sku": "only-sku"}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_fields(&problem), ["name"]);

    // A replacement with bad fields leaves the product exactly as it was.
    let product = app.product(&admin, 700, 4).await;
    let path = format!("/v1/products/{}", id_of(&product));
    let response = send_as(&app, Some(&admin.token), Method::PUT, &path, Some(&bad)).await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem).len(), 6);
    assert_eq!(current(&app, &id_of(&product)).await, product);
    assert_eq!(all_products(&app).await, [product]);

    // Bodies that are not JSON objects of the right media type.
    let response = app
        .request(Method::POST, "/v1/products")
        .bearer_auth(&admin.token)
        .header("content-type", "text/plain")
        .body(product_body("plain-1", "Plain", 1).to_string())
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let response = app
        .request(Method::POST, "/v1/products")
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body("{\"sku\": ")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:bad-request");
    assert_eq!(all_products(&app).await.len(), 1);
}

async fn skus_are_unique_across_the_catalog(app: TestApp) {
    let admin = app.admin().await;
    let first = create_named(&app, &admin, "tea-1", "Green Tea", 400).await;
    let second = create_named(&app, &admin, "tea-2", "Black Tea", 450).await;

    // Creating, replacing or patching onto a taken sku: 409, and nothing moves.
    for sku in ["tea-1", "  tea-1  "] {
        let problem = assert_problem(
            app.post_json_as(&admin.token, "/v1/products", &product_body(sku, "Copy", 1))
                .await,
            StatusCode::CONFLICT,
        )
        .await;
        assert_eq!(problem["type"], "urn:loadstar:problem:sku-taken");
    }
    let second_path = format!("/v1/products/{}", id_of(&second));
    let response = send_as(
        &app,
        Some(&admin.token),
        Method::PUT,
        &second_path,
        Some(&product_body("tea-1", "Black Tea", 450)),
    )
    .await;
    assert_problem(response, StatusCode::CONFLICT).await;
    let response = merge_patch(&app, &admin, &id_of(&second), &json!({"sku": "tea-1"})).await;
    assert_problem(response, StatusCode::CONFLICT).await;

    assert_eq!(all_products(&app).await, [first.clone(), second.clone()]);

    // A product may keep its own sku, and a freed sku can be taken again.
    let response = send_as(
        &app,
        Some(&admin.token),
        Method::PUT,
        &second_path,
        Some(&product_body("tea-2", "Black Tea", 475)),
    )
    .await;
    assert_eq!(
        assert_json(response, StatusCode::OK).await["priceCents"],
        475
    );
    let response = send_as(
        &app,
        Some(&admin.token),
        Method::DELETE,
        &format!("/v1/products/{}", id_of(&first)),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    create_named(&app, &admin, "tea-1", "Green Tea, again", 400).await;
}

async fn concurrent_creates_with_one_sku_make_exactly_one_product(app: TestApp) {
    let admin = app.admin().await;
    let body = product_body("limited-1", "Limited Edition", 9_900);
    let responses = futures::future::join_all(
        (0..8).map(|_| app.post_json_as(&admin.token, "/v1/products", &body)),
    )
    .await;
    let mut created = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => created += 1,
            _ => {
                assert_problem(response, StatusCode::CONFLICT).await;
            }
        }
    }
    assert_eq!(created, 1);
    assert_eq!(all_products(&app).await.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Merge patch
// ---------------------------------------------------------------------------------------

async fn merge_patch_changes_only_the_named_fields(app: TestApp) {
    let admin = app.admin().await;
    let product = create_named(&app, &admin, "lamp-1", "Desk Lamp", 3_000).await;
    let id = id_of(&product);

    let response = merge_patch(&app, &admin, &id, &json!({"priceCents": 2_500})).await;
    assert_eq!(header(&response, "etag").as_deref(), Some("\"v2\""));
    let patched = assert_json(response, StatusCode::OK).await;
    let mut expected = product.clone();
    expected["priceCents"] = json!(2_500);
    expected["updatedAt"] = patched["updatedAt"].clone();
    assert_eq!(patched, expected);

    // Plain application/json is accepted too, and several fields at once.
    let response = app
        .request(Method::PATCH, &format!("/v1/products/{id}"))
        .bearer_auth(&admin.token)
        .json(&json!({"name": " Floor Lamp ", "stock": 0, "description": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "etag").as_deref(), Some("\"v3\""));
    let patched = assert_json(response, StatusCode::OK).await;
    assert_eq!(patched["name"], "Floor Lamp");
    assert_eq!(patched["stock"], 0);
    assert_eq!(patched["description"], "");
    assert_eq!(patched["priceCents"], 2_500);
    assert_eq!(patched["sku"], "lamp-1");
    assert_eq!(patched["createdAt"], product["createdAt"]);
    assert_eq!(current(&app, &id).await, patched);
}

async fn merge_patch_rejects_nulls_unknown_and_read_only_fields(app: TestApp) {
    let admin = app.admin().await;
    let product = create_named(&app, &admin, "chair-1", "Chair", 8_000).await;
    let id = id_of(&product);

    let response = merge_patch(
        &app,
        &admin,
        &id,
        &json!({
            "name": null, "colour": "red", "id": "1", "createdAt": "2020-01-01T00:00:00Z",
            "updatedAt": "2020-01-01T00:00:00Z", "stock": "many", "priceCents": 1.5
        }),
    )
    .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    let mut fields = error_fields(&problem);
    fields.sort();
    assert_eq!(
        fields,
        [
            "colour",
            "createdAt",
            "id",
            "name",
            "priceCents",
            "stock",
            "updatedAt"
        ]
    );

    // Values of the right type still pass the product rules.
    let response = merge_patch(
        &app,
        &admin,
        &id,
        &json!({"priceCents": -1, "currency": "euro", "sku": ""}),
    )
    .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    let mut fields = error_fields(&problem);
    fields.sort();
    assert_eq!(fields, ["currency", "priceCents", "sku"]);

    // A merge patch is an object.
    let response = merge_patch(&app, &admin, &id, &json!(["name", "x"])).await;
    assert_problem(response, StatusCode::BAD_REQUEST).await;

    let response = app.get(&format!("/v1/products/{id}")).await;
    assert_eq!(header(&response, "etag").as_deref(), Some("\"v1\""));
    assert_eq!(assert_json(response, StatusCode::OK).await, product);
}

// ---------------------------------------------------------------------------------------
// Conditional requests
// ---------------------------------------------------------------------------------------

async fn writes_with_a_stale_if_match_fail_with_412_and_change_nothing(app: TestApp) {
    let admin = app.admin().await;
    let product = create_named(&app, &admin, "desk-1", "Desk", 20_000).await;
    let id = id_of(&product);
    let path = format!("/v1/products/{id}");

    // Matching version: the write happens and the ETag moves on.
    let response = app
        .request(Method::PUT, &path)
        .bearer_auth(&admin.token)
        .header("if-match", "\"v1\"")
        .json(&product_body("desk-1", "Standing Desk", 30_000))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "etag").as_deref(), Some("\"v2\""));
    let updated = assert_json(response, StatusCode::OK).await;

    // Everything that names v1 now (or no version this server issued) is refused.
    for if_match in ["\"v1\"", "\"v3\"", "\"something\"", "v2"] {
        let put = app
            .request(Method::PUT, &path)
            .bearer_auth(&admin.token)
            .header("if-match", if_match)
            .json(&product_body("desk-1", "Lost Update", 1))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(put, StatusCode::PRECONDITION_FAILED).await;
        assert_eq!(problem["type"], "urn:loadstar:problem:precondition-failed");
        let patch = app
            .request(Method::PATCH, &path)
            .bearer_auth(&admin.token)
            .header("if-match", if_match)
            .header("content-type", "application/merge-patch+json")
            .body(json!({"name": "Lost Update"}).to_string())
            .send()
            .await
            .unwrap();
        assert_problem(patch, StatusCode::PRECONDITION_FAILED).await;
        let delete = app
            .request(Method::DELETE, &path)
            .bearer_auth(&admin.token)
            .header("if-match", if_match)
            .send()
            .await
            .unwrap();
        assert_problem(delete, StatusCode::PRECONDITION_FAILED).await;
    }
    let response = app.get(&path).await;
    assert_eq!(header(&response, "etag").as_deref(), Some("\"v2\""));
    assert_eq!(assert_json(response, StatusCode::OK).await, updated);

    // PATCH with the current version, and `*`, go through.
    let response = app
        .request(Method::PATCH, &path)
        .bearer_auth(&admin.token)
        .header("if-match", "\"v2\"")
        .json(&json!({"stock": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "etag").as_deref(), Some("\"v3\""));
    assert_eq!(assert_json(response, StatusCode::OK).await["stock"], 3);
    let response = app
        .request(Method::PATCH, &path)
        .bearer_auth(&admin.token)
        .header("if-match", "*")
        .json(&json!({"stock": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "etag").as_deref(), Some("\"v4\""));

    let delete = app
        .request(Method::DELETE, &path)
        .bearer_auth(&admin.token)
        .header("if-match", "\"v4\"")
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get(&path).await, StatusCode::NOT_FOUND).await;
}

async fn concurrent_conditional_writes_let_exactly_one_win(app: TestApp) {
    let admin = app.admin().await;
    let product = create_named(&app, &admin, "vase-1", "Vase", 1_000).await;
    let path = format!("/v1/products/{}", id_of(&product));
    let requests = (0..8).map(|n| {
        app.request(Method::PUT, &path)
            .bearer_auth(&admin.token)
            .header("if-match", "\"v1\"")
            .json(&product_body("vase-1", &format!("Vase {n}"), 1_000 + n))
            .send()
    });
    let responses = futures::future::join_all(requests).await;
    let mut winners = Vec::new();
    for response in responses {
        let response = response.unwrap();
        if response.status() == StatusCode::OK {
            winners.push(response.json::<Value>().await.unwrap());
        } else {
            assert_problem(response, StatusCode::PRECONDITION_FAILED).await;
        }
    }
    assert_eq!(winners.len(), 1, "one write per version");
    let response = app.get(&path).await;
    assert_eq!(header(&response, "etag").as_deref(), Some("\"v2\""));
    assert_eq!(assert_json(response, StatusCode::OK).await, winners[0]);
}

async fn conditional_get_answers_304_until_the_product_changes(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, 1_500, 9).await;
    let path = format!("/v1/products/{}", id_of(&product));

    let first = app.get(&path).await;
    let etag = header(&first, "etag").expect("GET carries an ETag");
    assert_eq!(
        header(&first, "cache-control").as_deref(),
        Some("public, max-age=5, must-revalidate")
    );
    assert_eq!(assert_json(first, StatusCode::OK).await, product);

    for if_none_match in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"v99\", {etag}"),
        "*".to_owned(),
    ] {
        let response = app
            .request(Method::GET, &path)
            .header("if-none-match", &if_none_match)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::NOT_MODIFIED,
            "{if_none_match}"
        );
        assert_eq!(header(&response, "etag").as_deref(), Some(etag.as_str()));
        assert!(header(&response, "cache-control").is_some());
        assert!(response.bytes().await.unwrap().is_empty());
    }

    let response = merge_patch(
        &app,
        &admin,
        &id_of(&product),
        &json!({"priceCents": 1_400}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);

    let response = app
        .request(Method::GET, &path)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    let new_etag = header(&response, "etag").unwrap();
    assert_ne!(new_etag, etag);
    assert_eq!(
        assert_json(response, StatusCode::OK).await["priceCents"],
        1_400
    );

    let response = app
        .request(Method::GET, &path)
        .header("if-none-match", &new_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

// ---------------------------------------------------------------------------------------
// Listing: pagination and filters
// ---------------------------------------------------------------------------------------

async fn pagination_walks_every_product_exactly_once_while_products_are_added(app: TestApp) {
    let admin = app.admin().await;
    for n in 0..23 {
        app.product(&admin, 100 + n, 1).await;
    }

    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("limit", "5".to_owned())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let response = app
            .request(Method::GET, "/v1/products")
            .query(&query)
            .send()
            .await
            .unwrap();
        let page = assert_json(response, StatusCode::OK).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 5);
        seen.extend(items.iter().map(id_of));
        pages += 1;
        match page["nextCursor"].as_str() {
            Some(next) => {
                assert_eq!(items.len(), 5, "only the last page may be short");
                cursor = Some(next.to_owned());
                // Another admin adds to the catalog while this client pages through it.
                app.product(&admin, 50, 1).await;
            }
            None => break,
        }
    }

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no product is listed twice");
    let mut sorted = seen.clone();
    sorted.sort_by_key(|id| id.parse::<i64>().unwrap());
    assert_eq!(sorted, seen, "pages are in id order");
    let everything: Vec<String> = all_products(&app).await.iter().map(id_of).collect();
    assert_eq!(
        seen, everything,
        "every product, including those added meanwhile"
    );
    assert!(everything.len() > 23);
    assert!(pages >= 5);
}

async fn the_default_page_holds_twenty_products(app: TestApp) {
    let admin = app.admin().await;
    for n in 0..21 {
        app.product(&admin, n, 1).await;
    }
    let page = assert_json(app.get("/v1/products").await, StatusCode::OK).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 20);
    let cursor = page["nextCursor"].as_str().expect("a 21st product follows");
    let next = assert_json(
        app.get(&format!("/v1/products?cursor={cursor}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(next["items"].as_array().unwrap().len(), 1);
    assert!(next["nextCursor"].is_null());

    let one = assert_json(app.get("/v1/products?limit=1").await, StatusCode::OK).await;
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    assert!(one["nextCursor"].is_string());
    let hundred = assert_json(app.get("/v1/products?limit=100").await, StatusCode::OK).await;
    assert_eq!(hundred["items"].as_array().unwrap().len(), 21);
    assert!(hundred["nextCursor"].is_null());
}

async fn page_sizes_outside_one_to_a_hundred_are_rejected(app: TestApp) {
    let admin = app.admin().await;
    app.product(&admin, 100, 1).await;
    for limit in ["0", "101", "-1", "ten", "1.5"] {
        let problem = assert_problem(
            app.get(&format!("/v1/products?limit={limit}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error_fields(&problem), ["limit"], "limit={limit}");
    }
    // An empty value is no value, as an HTML form sends it: the default page.
    let page = assert_json(
        app.get("/v1/products?limit=&minPriceCents=").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

async fn a_cursor_the_api_did_not_issue_is_rejected(app: TestApp) {
    let admin = app.admin().await;
    app.product(&admin, 100, 1).await;
    app.product(&admin, 200, 1).await;
    let page = assert_json(app.get("/v1/products?limit=1").await, StatusCode::OK).await;
    let good = page["nextCursor"].as_str().unwrap().to_owned();

    // "v2:1" and "v1:abc" in base64url, a tampered real cursor, and plain garbage.
    for cursor in [
        "garbage!".to_owned(),
        "djI6MQ".to_owned(),
        "djE6YWJj".to_owned(),
        format!("{good}x"),
        "12345".to_owned(),
    ] {
        let response = app
            .request(Method::GET, "/v1/products")
            .query(&[("cursor", cursor.as_str())])
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), ["cursor"], "cursor={cursor}");
    }

    // Every bad parameter is reported at once.
    let problem = assert_problem(
        app.get("/v1/products?cursor=nope&limit=0&minPriceCents=-5&maxPriceCents=x")
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let mut fields = error_fields(&problem);
    fields.sort();
    assert_eq!(
        fields,
        ["cursor", "limit", "maxPriceCents", "minPriceCents"]
    );
}

async fn products_filter_by_price_range_inclusively(app: TestApp) {
    let admin = app.admin().await;
    for (n, price) in [100, 500, 1_000, 1_500, 2_000].into_iter().enumerate() {
        create_named(
            &app,
            &admin,
            &format!("p-{n}"),
            &format!("Price {price}"),
            price,
        )
        .await;
    }
    let q = |min: Option<&'static str>, max: Option<&'static str>| {
        let mut query = Vec::new();
        if let Some(min) = min {
            query.push(("minPriceCents", min));
        }
        if let Some(max) = max {
            query.push(("maxPriceCents", max));
        }
        query
    };
    assert_eq!(
        names_listed(&app, &q(Some("500"), Some("1500"))).await,
        ["Price 500", "Price 1000", "Price 1500"]
    );
    assert_eq!(
        names_listed(&app, &q(Some("1001"), None)).await,
        ["Price 1500", "Price 2000"]
    );
    assert_eq!(
        names_listed(&app, &q(None, Some("100"))).await,
        ["Price 100"]
    );
    assert!(names_listed(&app, &q(Some("1600"), Some("1900")))
        .await
        .is_empty());
    assert!(names_listed(&app, &q(Some("2000"), Some("100")))
        .await
        .is_empty());

    // Paging a filtered list yields the filtered items only, each once.
    let page = assert_json(
        app.get("/v1/products?minPriceCents=500&limit=2").await,
        StatusCode::OK,
    )
    .await;
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Price 500", "Price 1000"]);
    let cursor = page["nextCursor"].as_str().unwrap();
    let rest = assert_json(
        app.get(&format!(
            "/v1/products?minPriceCents=500&limit=2&cursor={cursor}"
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    let names: Vec<&str> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Price 1500", "Price 2000"]);

    for bad in [
        "minPriceCents=-1",
        "maxPriceCents=12.5",
        "minPriceCents=cheap",
        "maxPriceCents=1000000000001",
    ] {
        let problem = assert_problem(
            app.get(&format!("/v1/products?{bad}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        let field = bad.split('=').next().unwrap();
        assert_eq!(error_fields(&problem), [field], "{bad}");
    }
}

async fn products_filter_by_name_case_insensitively_with_literal_wildcards(app: TestApp) {
    let admin = app.admin().await;
    let names = [
        "Blue Mug",
        "BLUE Teapot",
        "Red Mug",
        "50% Off Sale",
        "500 Offers",
        "snake_case",
        "snakeXcase",
        r"C:\Temp",
    ];
    for (n, name) in names.iter().enumerate() {
        let price = if name.contains("Mug") { 900 } else { 100 };
        create_named(&app, &admin, &format!("n-{n}"), name, price).await;
    }

    assert_eq!(
        names_listed(&app, &[("q", "blue")]).await,
        ["Blue Mug", "BLUE Teapot"]
    );
    assert_eq!(
        names_listed(&app, &[("q", "mUG")]).await,
        ["Blue Mug", "Red Mug"]
    );
    assert_eq!(names_listed(&app, &[("q", "50%")]).await, ["50% Off Sale"]);
    assert_eq!(names_listed(&app, &[("q", "%")]).await, ["50% Off Sale"]);
    assert_eq!(names_listed(&app, &[("q", "e_c")]).await, ["snake_case"]);
    assert_eq!(names_listed(&app, &[("q", "_")]).await, ["snake_case"]);
    assert_eq!(names_listed(&app, &[("q", r"\")]).await, [r"C:\Temp"]);
    assert_eq!(names_listed(&app, &[("q", "  red  ")]).await, ["Red Mug"]);
    assert!(names_listed(&app, &[("q", "green")]).await.is_empty());
    assert_eq!(
        names_listed(&app, &[("q", "mug"), ("maxPriceCents", "500")]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        names_listed(&app, &[("q", "blue"), ("minPriceCents", "500")]).await,
        ["Blue Mug"]
    );
    // Blank text filters nothing.
    assert_eq!(names_listed(&app, &[("q", "   ")]).await.len(), names.len());

    let long = "x".repeat(101);
    let response = app
        .request(Method::GET, "/v1/products")
        .query(&[("q", long.as_str())])
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["q"]);
}

on_every_backend!(
    admins_create_read_replace_and_delete_products,
    product_ids_in_paths_must_be_ids,
    anonymous_writes_are_unauthorized_and_change_nothing,
    customers_may_browse_but_not_write_products,
    invalid_products_are_rejected_listing_every_bad_field,
    skus_are_unique_across_the_catalog,
    concurrent_creates_with_one_sku_make_exactly_one_product,
    merge_patch_changes_only_the_named_fields,
    merge_patch_rejects_nulls_unknown_and_read_only_fields,
    writes_with_a_stale_if_match_fail_with_412_and_change_nothing,
    concurrent_conditional_writes_let_exactly_one_win,
    conditional_get_answers_304_until_the_product_changes,
    pagination_walks_every_product_exactly_once_while_products_are_added,
    the_default_page_holds_twenty_products,
    page_sizes_outside_one_to_a_hundred_are_rejected,
    a_cursor_the_api_did_not_issue_is_rejected,
    products_filter_by_price_range_inclusively,
    products_filter_by_name_case_insensitively_with_literal_wildcards,
);
