//! The wire contract clients code against: the exact JSON field names of every user,
//! session and API-key response, ids as strings of digits, instants as RFC 3339 UTC.
//! A renamed or added field fails here before it breaks a client.

use crate::api_keys::issue_key;
use crate::harness::{assert_problem, TestApp};
use crate::on_every_backend;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

const USER_FIELDS: &[&str] = &["id", "email", "name", "role", "createdAt", "updatedAt"];
const SESSION_FIELDS: &[&str] = &["token", "expiresAt", "userId"];
const ISSUED_KEY_FIELDS: &[&str] = &["id", "key", "prefix", "name", "createdAt"];
const LISTED_KEY_FIELDS: &[&str] = &["id", "prefix", "name", "createdAt"];
const PROBLEM_FIELDS: &[&str] = &["type", "title", "status", "detail", "instance", "requestId"];

fn assert_fields(value: &Value, expected: &[&str]) {
    let actual: BTreeSet<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = expected.iter().copied().collect();
    assert_eq!(actual, expected, "{value}");
}

/// An id is a JSON string of 1–19 digits, positive (JavaScript cannot hold it as a number).
fn assert_id(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("id is not a string: {value}"));
    assert!(
        (1..=19).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()),
        "malformed id {text:?}"
    );
    assert!(text.parse::<i64>().unwrap() > 0, "{text}");
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z` into Unix microseconds; panics on any other
/// shape (offsets other than `Z` included).
fn parse_utc_rfc3339(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {value}"));
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && text.ends_with('Z');
    assert!(shape_ok, "not RFC 3339 UTC: {text:?}");
    let number = |range: std::ops::Range<usize>| -> i64 {
        let part = &text[range];
        assert!(part.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
        part.parse().unwrap()
    };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let (hour, minute, second) = (number(11..13), number(14..16), number(17..19));
    assert!(
        (1..=12).contains(&month) && (1..=31).contains(&day),
        "{text:?}"
    );
    assert!(hour < 24 && minute < 60 && second < 61, "{text:?}");
    let fraction = &text[19..text.len() - 1];
    let micros = if fraction.is_empty() {
        0
    } else {
        let digits = fraction
            .strip_prefix('.')
            .unwrap_or_else(|| panic!("{text:?}"));
        assert!(
            (1..=9).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()),
            "{text:?}"
        );
        format!("{digits:0<9}")[..6].parse::<i64>().unwrap()
    };
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + hour * 3_600 + minute * 60 + second) * 1_000_000) + micros
}

fn now_micros() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

/// A timestamp that is RFC 3339 UTC and within a minute of `around` (Unix microseconds).
fn assert_timestamp_near(value: &Value, around: i64) {
    let micros = parse_utc_rfc3339(value);
    assert!(
        (micros - around).abs() < 60_000_000,
        "{value} is not within a minute of the expected instant"
    );
}

async fn json_body(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    response.json().await.unwrap()
}

fn assert_user_shape(user: &Value) {
    assert_fields(user, USER_FIELDS);
    assert_id(&user["id"]);
    assert!(
        user["email"].is_string() && user["name"].is_string(),
        "{user}"
    );
    assert!(
        ["customer", "admin"].contains(&user["role"].as_str().unwrap()),
        "{user}"
    );
    assert_timestamp_near(&user["createdAt"], now_micros());
    assert_timestamp_near(&user["updatedAt"], now_micros());
}

#[test]
fn the_timestamp_parser_used_here_is_right() {
    assert_eq!(parse_utc_rfc3339(&json!("1970-01-01T00:00:00Z")), 0);
    assert_eq!(
        parse_utc_rfc3339(&json!("2023-11-14T22:13:20.123456Z")),
        1_700_000_000_123_456
    );
    assert_eq!(
        parse_utc_rfc3339(&json!("2024-02-29T00:00:00.5Z")),
        1_709_164_800_500_000
    );
}

async fn every_user_response_has_exactly_the_documented_fields(app: TestApp) {
    let response = app
        .post_json(
            "/v1/users",
            &json!({"email": "shape@example.com", "password": "long enough", "name": "Shape"}),
        )
        .await;
    let created = json_body(response, StatusCode::CREATED).await;
    assert_user_shape(&created);
    assert_eq!(created["createdAt"], created["updatedAt"]);
    let id = created["id"].as_str().unwrap();

    let token = app.login("shape@example.com", "long enough").await;
    let read = json_body(
        app.get_as(&token, &format!("/v1/users/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_user_shape(&read);
    assert_eq!(read, created);

    let response = app
        .request(Method::PATCH, &format!("/v1/users/{id}"))
        .bearer_auth(&token)
        .header("content-type", "application/merge-patch+json")
        .body(json!({"name": "Reshaped"}).to_string())
        .send()
        .await
        .unwrap();
    let patched = json_body(response, StatusCode::OK).await;
    assert_user_shape(&patched);
    assert!(
        parse_utc_rfc3339(&patched["updatedAt"]) > parse_utc_rfc3339(&patched["createdAt"]),
        "{patched}"
    );
}

async fn a_session_has_exactly_the_documented_fields(app: TestApp) {
    let user = app.customer().await;
    let response = app
        .post_json(
            "/v1/sessions",
            &json!({"email": user.email, "password": user.password}),
        )
        .await;
    let session = json_body(response, StatusCode::CREATED).await;
    assert_fields(&session, SESSION_FIELDS);
    assert!(session["token"].is_string());
    assert_id(&session["userId"]);
    assert_eq!(session["userId"], user.id.as_str());
    let ttl_micros = i64::try_from(app.config.auth.session_ttl_secs).unwrap() * 1_000_000;
    assert_timestamp_near(&session["expiresAt"], now_micros() + ttl_micros);
}

async fn an_issued_api_key_has_exactly_the_documented_fields(app: TestApp) {
    let user = app.customer().await;
    let response = app
        .post_json(
            "/v1/api-keys",
            &json!({"email": user.email, "password": user.password, "name": "shape"}),
        )
        .await;
    let issued = json_body(response, StatusCode::CREATED).await;
    assert_fields(&issued, ISSUED_KEY_FIELDS);
    assert_id(&issued["id"]);
    assert!(issued["key"].is_string() && issued["prefix"].is_string());
    assert_eq!(issued["name"], "shape");
    assert_timestamp_near(&issued["createdAt"], now_micros());
}

async fn a_listed_api_key_has_exactly_the_documented_fields(app: TestApp) {
    let user = app.customer().await;
    let issued = issue_key(&app, &user.email, &user.password, "listed").await;
    let list = json_body(
        app.get_as(&user.token, "/v1/api-keys").await,
        StatusCode::OK,
    )
    .await;
    assert_fields(&list, &["items"]);
    let item = &list["items"][0];
    assert_fields(item, LISTED_KEY_FIELDS);
    assert_id(&item["id"]);
    assert_eq!(item["createdAt"], issued["createdAt"]);
    assert_timestamp_near(&item["createdAt"], now_micros());

    let empty_user = app.customer().await;
    let list = json_body(
        app.get_as(&empty_user.token, "/v1/api-keys").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(list, json!({"items": []}));
}

async fn a_problem_has_exactly_the_documented_fields(app: TestApp) {
    let problem = assert_problem(app.get("/v1/nowhere").await, StatusCode::NOT_FOUND).await;
    assert_fields(&problem, PROBLEM_FIELDS);
    assert_eq!(problem["status"], 404);

    let response = app
        .post_json(
            "/v1/users",
            &json!({"email": "bad", "password": "long enough", "name": "Bad"}),
        )
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    let mut with_errors = PROBLEM_FIELDS.to_vec();
    with_errors.push("errors");
    assert_fields(&problem, &with_errors);
    assert_eq!(problem["instance"], "/v1/users");
    for error in problem["errors"].as_array().unwrap() {
        assert_fields(error, &["field", "message"]);
    }
}

/// Every operation that hashes or verifies a password may be refused when password work is
/// at its bound: its 503 and `Retry-After` are in the document clients generate code from.
async fn password_operations_document_their_503_with_retry_after(app: TestApp) {
    let document: Value = app.get("/v1/openapi.json").await.json().await.unwrap();
    for (path, method) in [
        ("/v1/sessions", "post"),
        ("/v1/users", "post"),
        ("/v1/users/{userId}", "patch"),
        ("/v1/api-keys", "post"),
    ] {
        let unavailable = &document["paths"][path][method]["responses"]["503"];
        assert!(
            unavailable["headers"]["Retry-After"].is_object(),
            "{method} {path}: 503 with Retry-After is not documented: {unavailable}"
        );
        assert!(
            unavailable["content"]["application/problem+json"].is_object(),
            "{method} {path}: {unavailable}"
        );
    }
}

on_every_backend!(
    password_operations_document_their_503_with_retry_after,
    every_user_response_has_exactly_the_documented_fields,
    a_session_has_exactly_the_documented_fields,
    an_issued_api_key_has_exactly_the_documented_fields,
    a_listed_api_key_has_exactly_the_documented_fields,
    a_problem_has_exactly_the_documented_fields,
);
