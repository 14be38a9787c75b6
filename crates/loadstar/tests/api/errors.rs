//! How requests fail: every error is an RFC 9457 problem that cites the request id and
//! tells the client what to fix, and never what the server is made of.

use crate::harness::{assert_problem, error_fields, TestApp};
use crate::on_every_backend;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

/// Whether `email` can still sign up, i.e. no earlier request created it.
async fn email_is_free(app: &TestApp, email: &str) -> bool {
    let response = app
        .post_json(
            "/v1/users",
            &json!({"email": email, "password": "long enough", "name": "Probe"}),
        )
        .await;
    match response.status() {
        StatusCode::CREATED => true,
        StatusCode::CONFLICT => false,
        other => panic!("unexpected sign-up status {other}"),
    }
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Response {
    let mut request = app.request(Method::POST, path).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.unwrap()
}

fn is_generated_request_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

async fn an_unknown_route_is_a_not_found_problem(app: TestApp) {
    for path in [
        "/nope",
        "/v1/widgets",
        "/v1/users/1/nothing-here",
        "/v2/users",
    ] {
        let problem = assert_problem(app.get(path).await, StatusCode::NOT_FOUND).await;
        assert_eq!(problem["type"], "urn:loadstar:problem:not-found", "{path}");
        assert_eq!(problem["instance"], path);
    }
}

async fn a_wrong_method_is_a_method_not_allowed_problem_naming_the_allowed_ones(app: TestApp) {
    let cases = [
        (Method::DELETE, "/v1/users", vec!["POST"]),
        (Method::PUT, "/v1/sessions", vec!["POST"]),
        (Method::GET, "/v1/sessions/current", vec!["DELETE"]),
        (Method::PUT, "/v1/api-keys", vec!["GET", "POST"]),
        (Method::POST, "/v1/users/1", vec!["GET", "PATCH"]),
    ];
    for (method, path, allowed) in cases {
        let response = app.request(method.clone(), path).send().await.unwrap();
        let allow = response
            .headers()
            .get("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"))
            .to_str()
            .unwrap()
            .to_owned();
        let problem = assert_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
        assert_eq!(problem["type"], "urn:loadstar:problem:method-not-allowed");
        assert_eq!(problem["instance"], path);
        let mut listed: Vec<&str> = allow.split(',').map(str::trim).collect();
        listed.retain(|m| *m != "HEAD");
        listed.sort_unstable();
        assert_eq!(listed, allowed, "{method} {path}: Allow: {allow}");
    }
}

async fn malformed_json_is_a_bad_request_and_creates_nothing(app: TestApp) {
    for body in [
        r#"{"email": "broken@example.com", "password": "long enough", "name": "#,
        r#"{"email": "broken@example.com", "password": "long enough", "name": "B",}"#,
        r#"{"email": "broken@example.com", "password": "long enough", "name": "B"} {}"#,
        "",
        "not json at all",
    ] {
        let response = post_raw(
            &app,
            "/v1/users",
            Some("application/json"),
            body.as_bytes().to_vec(),
        )
        .await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            problem["type"], "urn:loadstar:problem:bad-request",
            "{body}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains("JSON"),
            "{problem}"
        );
    }
    assert!(email_is_free(&app, "broken@example.com").await);
}

async fn a_body_that_is_not_declared_as_json_is_an_unsupported_media_type(app: TestApp) {
    let body = json!({"email": "typed@example.com", "password": "long enough", "name": "T"})
        .to_string()
        .into_bytes();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        None,
    ] {
        let response = post_raw(&app, "/v1/users", content_type, body.clone()).await;
        let problem = assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
        assert_eq!(
            problem["type"], "urn:loadstar:problem:unsupported-media-type",
            "{content_type:?}"
        );
    }
    assert!(email_is_free(&app, "typed@example.com").await);
}

async fn json_with_a_charset_parameter_is_accepted(app: TestApp) {
    let body = json!({"email": "charset@example.com", "password": "long enough", "name": "C"})
        .to_string()
        .into_bytes();
    let response = post_raw(
        &app,
        "/v1/users",
        Some("Application/JSON; charset=utf-8"),
        body,
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn a_body_over_one_mebibyte_is_too_large_and_creates_nothing(app: TestApp) {
    let padding = "n".repeat(1024 * 1024);
    let body = json!({"email": "huge@example.com", "password": "long enough", "name": padding})
        .to_string()
        .into_bytes();
    assert!(body.len() > 1024 * 1024);

    let response = post_raw(&app, "/v1/users", Some("application/json"), body).await;
    // The unread rest of the body spoils the connection; the client is told not to reuse it.
    assert_eq!(response.headers()["connection"], "close");
    let problem = assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:payload-too-large");

    assert!(email_is_free(&app, "huge@example.com").await);
}

async fn a_malformed_id_in_the_path_is_a_validation_problem_naming_the_parameter(app: TestApp) {
    let user = app.customer().await;
    for raw in ["abc", "0", "-1", "1.5", "99999999999999999999", "%20%31"] {
        let response = app.get_as(&user.token, &format!("/v1/users/{raw}")).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["type"], "urn:loadstar:problem:validation", "{raw}");
        assert_eq!(error_fields(&problem), ["userId"], "{raw}");
    }

    let response = app
        .request(Method::PATCH, "/v1/users/abc")
        .bearer_auth(&user.token)
        .json(&json!({"name": "Nobody"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["userId"]);
}

async fn an_unknown_json_field_is_rejected_and_named(app: TestApp) {
    let response = app
        .post_json(
            "/v1/users",
            &json!({
                "email": "extra@example.com", "password": "long enough", "name": "Extra",
                "isAdmin": true
            }),
        )
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:validation");
    assert_eq!(error_fields(&problem), ["isAdmin"]);
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("unknown field"), "{message}");
    assert!(email_is_free(&app, "extra@example.com").await);

    let user = app.customer().await;
    let response = app
        .request(Method::PATCH, &format!("/v1/users/{}", user.id))
        .bearer_auth(&user.token)
        .header("content-type", "application/merge-patch+json")
        .body(json!({"name": "Changed", "nickname": "x"}).to_string())
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["nickname"]);
    let profile: Value = app
        .get_as(&user.token, &format!("/v1/users/{}", user.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["name"], "Test User");
}

async fn a_field_of_the_wrong_type_is_named(app: TestApp) {
    let response = app
        .post_json(
            "/v1/users",
            &json!({"email": "typed@example.com", "password": 12345678, "name": "Typed"}),
        )
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["password"]);
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(
        !message.contains("line"),
        "position details leak: {message}"
    );

    let response = app
        .post_json("/v1/users", &json!(["not", "an", "object"]))
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:validation");
    assert!(email_is_free(&app, "typed@example.com").await);
}

async fn a_supplied_request_id_is_echoed_in_the_header_and_the_problem(app: TestApp) {
    let response = app
        .request(Method::GET, "/v1/nothing")
        .header("x-request-id", "trace-123_abc.def:9")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["x-request-id"].to_str().unwrap(),
        "trace-123_abc.def:9"
    );
    let problem = assert_problem(response, StatusCode::NOT_FOUND).await;
    assert_eq!(problem["requestId"], "trace-123_abc.def:9");

    // Successes echo it too.
    let response = app
        .request(Method::GET, "/healthz")
        .header("x-request-id", "health-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-request-id"], "health-1");

    // And so do errors raised inside handlers.
    let response = app
        .request(Method::POST, "/v1/sessions")
        .header("x-request-id", "login-attempt-7")
        .json(&json!({"email": "nobody@example.com", "password": "whatever1"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(problem["requestId"], "login-attempt-7");
}

async fn a_missing_request_id_is_generated_as_32_hex_characters(app: TestApp) {
    let first = app.get("/v1/nothing").await;
    let first_id = first.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(is_generated_request_id(&first_id), "{first_id}");
    let problem = assert_problem(first, StatusCode::NOT_FOUND).await;
    assert_eq!(problem["requestId"], first_id.as_str());

    let second = app.get("/healthz").await;
    let second_id = second.headers()["x-request-id"].to_str().unwrap();
    assert!(is_generated_request_id(second_id), "{second_id}");
    assert_ne!(first_id, second_id);
}

async fn an_unacceptable_request_id_is_replaced_by_a_generated_one(app: TestApp) {
    for supplied in ["has space", "semi;colon", &"a".repeat(129), "<script>"] {
        let response = app
            .request(Method::GET, "/v1/nothing")
            .header("x-request-id", supplied)
            .send()
            .await
            .unwrap();
        let echoed = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(is_generated_request_id(&echoed), "{supplied:?} -> {echoed}");
        let problem = assert_problem(response, StatusCode::NOT_FOUND).await;
        assert_eq!(problem["requestId"], echoed.as_str());
    }
}

/// Asserts that a 500 problem says nothing about the server's insides.
async fn assert_opaque_internal_error(response: Response, secrets: &[&str]) {
    let problem = assert_problem(response, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:internal");
    let mut shown = problem.clone();
    shown.as_object_mut().unwrap().remove("instance");
    let text = shown.to_string().to_lowercase();
    for secret in [
        "sql", "sqlx", "sqlite", "postgres", "relation", "table", "select", "insert", ".rs",
        "/src", "/work", "panicked", "syntax",
    ]
    .iter()
    .chain(secrets)
    {
        assert!(
            !text.contains(secret),
            "500 body mentions {secret:?}: {problem}"
        );
    }
    let keys: Vec<&String> = problem.as_object().unwrap().keys().collect();
    for key in keys {
        assert!(
            ["type", "title", "status", "detail", "instance", "requestId"].contains(&key.as_str()),
            "unexpected field {key} in {problem}"
        );
    }
}

async fn a_database_failure_listing_keys_is_an_opaque_internal_problem(app: TestApp) {
    let user = app.customer().await;
    sqlx::query("DROP TABLE api_keys")
        .execute(app.database.writer())
        .await
        .unwrap();
    let response = app.get_as(&user.token, "/v1/api-keys").await;
    assert_opaque_internal_error(response, &["api_keys", "prefix", "secret_hash"]).await;

    // The failure was the request's alone: the service still answers.
    let response = app
        .get_as(&user.token, &format!("/v1/users/{}", user.id))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn a_database_failure_in_the_catalog_is_an_opaque_internal_problem(app: TestApp) {
    sqlx::query("DROP TABLE products")
        .execute(app.database.writer())
        .await
        .unwrap();
    let response = app.get("/v1/products").await;
    assert_opaque_internal_error(response, &["products", "price_cents"]).await;
}

async fn a_database_failure_placing_an_order_is_an_opaque_internal_problem(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let product = app.product(&admin, 250, 5).await;
    sqlx::query("DROP TABLE order_items")
        .execute(app.database.writer())
        .await
        .unwrap();

    let response = app
        .post_json_as(
            &customer.token,
            &format!("/v1/users/{}/orders", customer.id),
            &json!({"items": [{"productId": product["id"], "quantity": 1}]}),
        )
        .await;
    assert_opaque_internal_error(response, &["order_items", "orders", "line_total"]).await;
}

async fn a_database_failure_logging_in_is_an_opaque_internal_problem(app: TestApp) {
    sqlx::query("DROP TABLE sessions")
        .execute(app.database.writer())
        .await
        .unwrap();
    let response = app
        .post_json(
            "/v1/users",
            &json!({"email": "ok@example.com", "password": "long enough", "name": "Ok"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app
        .post_json(
            "/v1/sessions",
            &json!({"email": "ok@example.com", "password": "long enough"}),
        )
        .await;
    assert_opaque_internal_error(response, &["sessions", "token_hash"]).await;
}

on_every_backend!(
    an_unknown_route_is_a_not_found_problem,
    a_wrong_method_is_a_method_not_allowed_problem_naming_the_allowed_ones,
    malformed_json_is_a_bad_request_and_creates_nothing,
    a_body_that_is_not_declared_as_json_is_an_unsupported_media_type,
    json_with_a_charset_parameter_is_accepted,
    a_body_over_one_mebibyte_is_too_large_and_creates_nothing,
    a_malformed_id_in_the_path_is_a_validation_problem_naming_the_parameter,
    an_unknown_json_field_is_rejected_and_named,
    a_field_of_the_wrong_type_is_named,
    a_supplied_request_id_is_echoed_in_the_header_and_the_problem,
    a_missing_request_id_is_generated_as_32_hex_characters,
    an_unacceptable_request_id_is_replaced_by_a_generated_one,
    a_database_failure_listing_keys_is_an_opaque_internal_problem,
    a_database_failure_in_the_catalog_is_an_opaque_internal_problem,
    a_database_failure_placing_an_order_is_an_opaque_internal_problem,
    a_database_failure_logging_in_is_an_opaque_internal_problem,
);
