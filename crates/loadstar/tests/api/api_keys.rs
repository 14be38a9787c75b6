//! `/v1/api-keys`: issuing, listing, using and revoking long-lived keys.

use crate::harness::{assert_problem, error_fields, TestApp, TestUser};
use crate::on_every_backend;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

async fn request_key(app: &TestApp, email: &str, password: &str, name: &str) -> Response {
    app.post_json(
        "/v1/api-keys",
        &json!({"email": email, "password": password, "name": name}),
    )
    .await
}

/// Issues a key named `name` for the user with these credentials; returns the 201 body.
pub async fn issue_key(app: &TestApp, email: &str, password: &str, name: &str) -> Value {
    let response = request_key(app, email, password, name).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn key_for(app: &TestApp, user: &TestUser, name: &str) -> (String, String) {
    let issued = issue_key(app, &user.email, &user.password, name).await;
    (
        issued["id"].as_str().unwrap().to_owned(),
        issued["key"].as_str().unwrap().to_owned(),
    )
}

/// Lists the keys of whoever `credential` (session token or key) authenticates.
async fn list_keys(app: &TestApp, credential: &str) -> Vec<Value> {
    let response = app.get_as(credential, "/v1/api-keys").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

async fn read_self_with_key_header(app: &TestApp, user: &TestUser, key: &str) -> Response {
    app.request(Method::GET, &format!("/v1/users/{}", user.id))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

async fn revoke(app: &TestApp, credential: &str, key_id: &str) -> Response {
    app.request(Method::DELETE, &format!("/v1/api-keys/{key_id}"))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap()
}

async fn issuing_a_key_shows_it_once_with_its_prefix(app: TestApp) {
    let user = app.customer().await;
    let response = request_key(&app, &user.email, &user.password, "  billing export ").await;

    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let issued: Value = response.json().await.unwrap();
    let id = issued["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/api-keys/{id}"));
    assert_eq!(issued["name"], "billing export");

    let prefix = issued["prefix"].as_str().unwrap();
    let key = issued["key"].as_str().unwrap();
    let hex = prefix
        .strip_prefix("lsk_")
        .expect("prefix starts with lsk_");
    assert_eq!(hex.len(), 12);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{prefix}");
    let secret = key
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .expect("key is <prefix>_<secret>");
    assert_eq!(secret.len(), 43, "256-bit secret, base64url");

    // A second key gets a different prefix and secret.
    let second = issue_key(&app, &user.email, &user.password, "billing export").await;
    assert_ne!(second["prefix"], issued["prefix"]);
    assert_ne!(second["key"], issued["key"]);
}

async fn listing_keys_shows_prefix_and_name_but_never_the_secret(app: TestApp) {
    let user = app.customer().await;
    let first = issue_key(&app, &user.email, &user.password, "first").await;
    let second = issue_key(&app, &user.email, &user.password, "second").await;

    let response = app.get_as(&user.token, "/v1/api-keys").await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for issued in [&first, &second] {
        // lsk_<prefix>_<secret>: the secret is base64url and may itself contain '_'.
        let secret = issued["key"]
            .as_str()
            .unwrap()
            .splitn(3, '_')
            .nth(2)
            .unwrap();
        assert!(!text.contains(secret), "secret listed: {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    // Newest first.
    for (item, issued) in items.iter().zip([&second, &first]) {
        assert!(item.get("key").is_none(), "{item}");
        assert_eq!(item["id"], issued["id"]);
        assert_eq!(item["prefix"], issued["prefix"]);
        assert_eq!(item["name"], issued["name"]);
        assert_eq!(item["createdAt"], issued["createdAt"]);
    }
}

async fn a_user_lists_only_their_own_keys(app: TestApp) {
    let alice = app.customer().await;
    let bob = app.customer().await;
    issue_key(&app, &alice.email, &alice.password, "alice's").await;
    issue_key(&app, &bob.email, &bob.password, "bob's").await;

    let items = list_keys(&app, &alice.token).await;
    let names: Vec<&str> = items.iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice's"]);
}

async fn a_key_authenticates_in_the_x_api_key_header(app: TestApp) {
    let user = app.customer().await;
    let (_, key) = key_for(&app, &user, "header").await;
    let response = read_self_with_key_header(&app, &user, &key).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap()["id"],
        user.id.as_str()
    );
}

async fn a_key_authenticates_as_a_bearer_token(app: TestApp) {
    let user = app.customer().await;
    let (id, key) = key_for(&app, &user, "bearer").await;
    let response = app.get_as(&key, &format!("/v1/users/{}", user.id)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let items = list_keys(&app, &key).await;
    assert_eq!(items[0]["id"], id.as_str());
}

async fn a_key_acts_with_its_owners_role(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let (_, admin_key) = key_for(&app, &admin, "admin script").await;
    let (_, customer_key) = key_for(&app, &customer, "customer script").await;

    let response = app
        .get_as(&admin_key, &format!("/v1/users/{}", customer.id))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .get_as(&customer_key, &format!("/v1/users/{}", admin.id))
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

async fn a_key_with_a_valid_prefix_but_a_wrong_secret_is_unauthorized(app: TestApp) {
    let user = app.customer().await;
    let issued = issue_key(&app, &user.email, &user.password, "real").await;
    let prefix = issued["prefix"].as_str().unwrap();
    let key = issued["key"].as_str().unwrap();
    let mut tampered = key.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });

    for forged in [
        tampered,
        format!("{prefix}_wrongsecret"),
        format!("{prefix}_{}", "a".repeat(65)),
        "lsk_000000000000_secret".to_owned(),
        "not-a-key".to_owned(),
    ] {
        let response = read_self_with_key_header(&app, &user, &forged).await;
        assert_eq!(
            response.headers()["www-authenticate"].to_str().unwrap(),
            "Bearer"
        );
        let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(
            problem["type"], "urn:loadstar:problem:unauthorized",
            "{forged}"
        );
        let response = app.get_as(&forged, "/v1/api-keys").await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    // The real key is unharmed by the attempts.
    let response = read_self_with_key_header(&app, &user, key).await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn a_bad_x_api_key_is_not_rescued_by_a_good_bearer_token(app: TestApp) {
    let user = app.customer().await;
    let response = app
        .request(Method::GET, &format!("/v1/users/{}", user.id))
        .header("x-api-key", "lsk_000000000000_secret")
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

async fn revoking_a_key_answers_204_and_the_key_stops_working(app: TestApp) {
    let user = app.customer().await;
    let (id, key) = key_for(&app, &user, "temporary").await;
    let (kept_id, kept_key) = key_for(&app, &user, "kept").await;

    let response = revoke(&app, &user.token, &id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());

    let response = read_self_with_key_header(&app, &user, &key).await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = app.get_as(&key, &format!("/v1/users/{}", user.id)).await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;

    let response = revoke(&app, &user.token, &id).await;
    assert_problem(response, StatusCode::NOT_FOUND).await;

    let items = list_keys(&app, &user.token).await;
    let ids: Vec<&str> = items.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [kept_id.as_str()]);
    let response = read_self_with_key_header(&app, &user, &kept_key).await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn a_key_may_revoke_itself(app: TestApp) {
    let user = app.customer().await;
    let (id, key) = key_for(&app, &user, "self-destruct").await;
    let response = revoke(&app, &key, &id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = read_self_with_key_header(&app, &user, &key).await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

async fn revoking_someone_elses_key_is_not_found_and_the_key_keeps_working(app: TestApp) {
    let alice = app.customer().await;
    let bob = app.customer().await;
    let (bobs_id, bobs_key) = key_for(&app, &bob, "bob's").await;

    let response = revoke(&app, &alice.token, &bobs_id).await;
    let problem = assert_problem(response, StatusCode::NOT_FOUND).await;
    let response = revoke(&app, &alice.token, "1").await;
    let missing = assert_problem(response, StatusCode::NOT_FOUND).await;
    assert_eq!(problem["detail"], missing["detail"]);

    let response = read_self_with_key_header(&app, &bob, &bobs_key).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(list_keys(&app, &bob.token).await.len(), 1);
}

async fn an_admin_may_revoke_anyones_key(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let (id, key) = key_for(&app, &customer, "leaked").await;

    let response = revoke(&app, &admin.token, &id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = read_self_with_key_header(&app, &customer, &key).await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

async fn issuing_a_key_with_wrong_credentials_is_unauthorized_and_creates_nothing(app: TestApp) {
    let user = app.customer().await;

    let wrong_password = request_key(&app, &user.email, "not the password", "nope").await;
    let wrong_password = assert_problem(wrong_password, StatusCode::UNAUTHORIZED).await;
    let unknown_email = request_key(&app, "nobody@example.com", &user.password, "nope").await;
    let unknown_email = assert_problem(unknown_email, StatusCode::UNAUTHORIZED).await;
    assert_eq!(wrong_password["detail"], unknown_email["detail"]);

    assert!(list_keys(&app, &user.token).await.is_empty());
}

async fn a_key_name_must_be_between_1_and_100_characters(app: TestApp) {
    let user = app.customer().await;
    for name in ["", "   ", &"n".repeat(101)] {
        let response = request_key(&app, &user.email, &user.password, name).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["type"], "urn:loadstar:problem:validation");
        assert_eq!(error_fields(&problem), ["name"], "{name:?}");
    }
    assert!(list_keys(&app, &user.token).await.is_empty());

    let issued = issue_key(&app, &user.email, &user.password, &"n".repeat(100)).await;
    assert_eq!(issued["name"].as_str().unwrap().len(), 100);
}

async fn issuing_a_key_with_a_missing_field_is_a_validation_problem(app: TestApp) {
    let user = app.customer().await;
    let response = app
        .post_json(
            "/v1/api-keys",
            &json!({"email": user.email, "password": user.password}),
        )
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:validation");
    assert!(list_keys(&app, &user.token).await.is_empty());
}

async fn a_user_may_hold_at_most_fifty_live_keys(app: TestApp) {
    let user = app.customer().await;
    let mut ids = Vec::new();
    for n in 0..50 {
        let issued = issue_key(&app, &user.email, &user.password, &format!("key {n}")).await;
        ids.push(issued["id"].as_str().unwrap().to_owned());
    }
    let response = request_key(&app, &user.email, &user.password, "one too many").await;
    let problem = assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:too-many-api-keys");
    assert_eq!(list_keys(&app, &user.token).await.len(), 50);

    // Revoked keys do not count.
    let response = revoke(&app, &user.token, &ids[0]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    issue_key(&app, &user.email, &user.password, "replacement").await;
}

async fn concurrent_requests_cannot_push_a_user_past_fifty_live_keys(app: TestApp) {
    let user = app.customer().await;
    for n in 0..48 {
        issue_key(&app, &user.email, &user.password, &format!("key {n}")).await;
    }
    let attempts = (0..8).map(|n| {
        let (app, user) = (&app, &user);
        async move { request_key(app, &user.email, &user.password, &format!("racer {n}")).await }
    });
    let mut created = 0;
    for response in futures::future::join_all(attempts).await {
        if response.status() == StatusCode::CREATED {
            created += 1;
        } else {
            let problem = assert_problem(response, StatusCode::CONFLICT).await;
            assert_eq!(problem["type"], "urn:loadstar:problem:too-many-api-keys");
        }
    }
    assert_eq!(created, 2);
    assert_eq!(list_keys(&app, &user.token).await.len(), 50);
}

async fn managing_keys_needs_credentials(app: TestApp) {
    let user = app.customer().await;
    let (id, key) = key_for(&app, &user, "kept").await;

    let response = app.get("/v1/api-keys").await;
    assert_eq!(
        response.headers()["www-authenticate"].to_str().unwrap(),
        "Bearer"
    );
    assert_problem(response, StatusCode::UNAUTHORIZED).await;

    let response = app
        .request(Method::DELETE, &format!("/v1/api-keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        read_self_with_key_header(&app, &user, &key).await.status(),
        StatusCode::OK
    );
}

async fn revoking_a_key_by_a_malformed_id_names_the_parameter(app: TestApp) {
    let user = app.customer().await;
    let response = revoke(&app, &user.token, "not-an-id").await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["keyId"]);
}

on_every_backend!(
    issuing_a_key_shows_it_once_with_its_prefix,
    listing_keys_shows_prefix_and_name_but_never_the_secret,
    a_user_lists_only_their_own_keys,
    a_key_authenticates_in_the_x_api_key_header,
    a_key_authenticates_as_a_bearer_token,
    a_key_acts_with_its_owners_role,
    a_key_with_a_valid_prefix_but_a_wrong_secret_is_unauthorized,
    a_bad_x_api_key_is_not_rescued_by_a_good_bearer_token,
    revoking_a_key_answers_204_and_the_key_stops_working,
    a_key_may_revoke_itself,
    revoking_someone_elses_key_is_not_found_and_the_key_keeps_working,
    an_admin_may_revoke_anyones_key,
    issuing_a_key_with_wrong_credentials_is_unauthorized_and_creates_nothing,
    a_key_name_must_be_between_1_and_100_characters,
    issuing_a_key_with_a_missing_field_is_a_validation_problem,
    a_user_may_hold_at_most_fifty_live_keys,
    concurrent_requests_cannot_push_a_user_past_fifty_live_keys,
    managing_keys_needs_credentials,
    revoking_a_key_by_a_malformed_id_names_the_parameter,
);
