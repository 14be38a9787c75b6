//! `/v1/sessions`: logging in, using the token, logging out.

use crate::api_keys::issue_key;
use crate::harness::{
    assert_problem, error_fields, spawn_node, stateless_deployment, Backend, TestApp,
};
use crate::on_every_backend;
use loadstar_core::config::Config;
use loadstar_shop::auth::tokens::hash_secret;
use reqwest::header::HeaderValue;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

async fn log_in(app: &TestApp, email: &str, password: &str) -> Response {
    app.post_json(
        "/v1/sessions",
        &json!({"email": email, "password": password}),
    )
    .await
}

async fn log_out(app: &TestApp, token: &str) -> Response {
    app.request(Method::DELETE, "/v1/sessions/current")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn logging_in_returns_a_token_for_the_user(app: TestApp) {
    let user = app.customer().await;
    let response = log_in(&app, &user.email, &user.password).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let session: Value = response.json().await.unwrap();
    assert_eq!(session["userId"], user.id.as_str());
    let token = session["token"].as_str().unwrap();
    assert_eq!(token.len(), 43, "256 bits, base64url without padding");
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert!(session["expiresAt"].as_str().unwrap().ends_with('Z'));
    assert_ne!(token, user.token, "every login gets its own token");
}

async fn logging_in_ignores_the_case_and_surrounding_spaces_of_the_email(app: TestApp) {
    let user = app.customer().await;
    let shouted = format!("  {}  ", user.email.to_uppercase());
    let response = log_in(&app, &shouted, &user.password).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["userId"],
        user.id.as_str()
    );
}

async fn a_wrong_password_and_an_unknown_email_fail_alike(app: TestApp) {
    let user = app.customer().await;

    let wrong_password = log_in(&app, &user.email, "not the password").await;
    assert_eq!(
        wrong_password.headers()["www-authenticate"]
            .to_str()
            .unwrap(),
        "Bearer"
    );
    let wrong_password = assert_problem(wrong_password, StatusCode::UNAUTHORIZED).await;

    let unknown_email = log_in(&app, "nobody@example.com", &user.password).await;
    let unknown_email = assert_problem(unknown_email, StatusCode::UNAUTHORIZED).await;

    assert_eq!(wrong_password["type"], "urn:loadstar:problem:unauthorized");
    for field in ["type", "title", "status", "detail", "instance"] {
        assert_eq!(wrong_password[field], unknown_email[field], "{field}");
    }
    let keys = |problem: &Value| {
        let mut keys: Vec<String> = problem.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&wrong_password), keys(&unknown_email));
}

async fn a_password_differing_only_in_case_is_wrong(app: TestApp) {
    let user = app.customer().await;
    let response = log_in(&app, &user.email, &user.password.to_uppercase()).await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

async fn logging_in_without_a_password_is_a_validation_problem(app: TestApp) {
    let user = app.customer().await;
    let response = app
        .post_json("/v1/sessions", &json!({"email": user.email}))
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:validation");
    assert!(problem["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("password"));

    let response = app
        .post_json(
            "/v1/sessions",
            &json!({"email": user.email, "password": 12345678}),
        )
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["password"]);
}

async fn a_session_token_works_as_a_bearer_credential(app: TestApp) {
    let user = app.customer().await;
    let response = app
        .get_as(&user.token, &format!("/v1/users/{}", user.id))
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // The scheme is case-insensitive.
    let response = app
        .request(Method::GET, &format!("/v1/users/{}", user.id))
        .header("authorization", format!("bearer {}", user.token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn logging_out_revokes_exactly_that_token(app: TestApp) {
    let user = app.customer().await;
    let other_session = app.login(&user.email, &user.password).await;
    let profile = format!("/v1/users/{}", user.id);

    let response = log_out(&app, &user.token).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());

    let response = app.get_as(&user.token, &profile).await;
    let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:unauthorized");
    assert_problem(log_out(&app, &user.token).await, StatusCode::UNAUTHORIZED).await;

    // The user's other session is unaffected.
    assert_eq!(
        app.get_as(&other_session, &profile).await.status(),
        StatusCode::OK
    );
}

async fn a_session_past_its_expiry_is_unauthorized(app: TestApp) {
    let user = app.customer().await;
    let second = app.login(&user.email, &user.password).await;
    // Age both of the user's sessions by a full lifetime: both have now expired.
    sqlx::query("UPDATE sessions SET expires_at = expires_at - $1 WHERE user_id = $2")
        .bind(i64::try_from(app.config.auth.session_ttl_secs).unwrap() * 1_000_000)
        .bind(user.id.parse::<i64>().unwrap())
        .execute(app.database.writer())
        .await
        .unwrap();
    let profile = format!("/v1/users/{}", user.id);
    let response = app.get_as(&user.token, &profile).await;
    let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:unauthorized");
    assert_problem(
        app.get_as(&second, &profile).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Logging in again is the way back.
    let token = app.login(&user.email, &user.password).await;
    assert_eq!(app.get_as(&token, &profile).await.status(), StatusCode::OK);
}

async fn a_garbage_token_is_unauthorized(app: TestApp) {
    let user = app.customer().await;
    let profile = format!("/v1/users/{}", user.id);
    for token in ["garbage", "x".repeat(43).as_str(), &user.token[..42]] {
        let response = app.get_as(token, &profile).await;
        assert_eq!(
            response.headers()["www-authenticate"].to_str().unwrap(),
            "Bearer"
        );
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
}

async fn an_authorization_header_without_the_bearer_scheme_is_unauthorized(app: TestApp) {
    let user = app.customer().await;
    let profile = format!("/v1/users/{}", user.id);
    for value in [
        format!("Basic {}", user.token),
        format!("Token {}", user.token),
        user.token.clone(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
    ] {
        let response = app
            .request(Method::GET, &profile)
            .header("authorization", &value)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(
            problem["type"], "urn:loadstar:problem:unauthorized",
            "{value}"
        );
    }
}

async fn credentials_that_are_not_text_are_unauthorized(app: TestApp) {
    let user = app.customer().await;
    let profile = format!("/v1/users/{}", user.id);
    let binary = HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap();
    for header in ["authorization", "x-api-key"] {
        let response = app
            .request(Method::GET, &profile)
            .header(header, binary.clone())
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
}

async fn logging_out_with_an_api_key_is_a_bad_request_and_the_key_keeps_working(app: TestApp) {
    let user = app.customer().await;
    let key = issue_key(&app, &user.email, &user.password, "script").await;
    let key = key["key"].as_str().unwrap();

    let response = app
        .request(Method::DELETE, "/v1/sessions/current")
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:bad-request");
    assert!(problem["detail"].as_str().unwrap().contains("API key"));

    let response = log_out(&app, key).await;
    assert_problem(response, StatusCode::BAD_REQUEST).await;

    let response = app.get_as(key, &format!("/v1/users/{}", user.id)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn logging_out_without_credentials_is_unauthorized(app: TestApp) {
    let response = app
        .request(Method::DELETE, "/v1/sessions/current")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["www-authenticate"].to_str().unwrap(),
        "Bearer"
    );
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

on_every_backend!(
    logging_in_returns_a_token_for_the_user,
    logging_in_ignores_the_case_and_surrounding_spaces_of_the_email,
    a_wrong_password_and_an_unknown_email_fail_alike,
    a_password_differing_only_in_case_is_wrong,
    logging_in_without_a_password_is_a_validation_problem,
    a_session_token_works_as_a_bearer_credential,
    logging_out_revokes_exactly_that_token,
    a_session_past_its_expiry_is_unauthorized,
    a_garbage_token_is_unauthorized,
    an_authorization_header_without_the_bearer_scheme_is_unauthorized,
    credentials_that_are_not_text_are_unauthorized,
    logging_out_with_an_api_key_is_a_bad_request_and_the_key_keeps_working,
    logging_out_without_credentials_is_unauthorized,
);

/// Whether Redis holds the session of `token` (a live entry or a revocation marker).
async fn session_in_redis(config: &Config, token: &str) -> bool {
    let client = redis::Client::open(config.cache.redis_urls[0].as_str()).unwrap();
    let mut connection = redis::aio::ConnectionManager::new(client).await.unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(format!(
            "{}:session:{}",
            config.cache.namespace,
            hash_secret(token)
        ))
        .query_async(&mut connection)
        .await
        .unwrap();
    exists == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_on_one_api_node_works_on_another_and_a_logout_there_holds_everywhere() {
    let Some(deployment) = stateless_deployment("stateless api nodes").await else {
        return;
    };
    let node_a = spawn_node(&deployment, 1, Backend::Postgres).await;
    let node_b = spawn_node(&deployment, 2, Backend::Postgres).await;
    let user = node_a.customer().await;
    let profile = format!("/v1/users/{}", user.id);
    assert!(
        session_in_redis(&deployment, &user.token).await,
        "the session is kept in redis"
    );

    assert_eq!(
        node_b.get_as(&user.token, &profile).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        log_out(&node_b, &user.token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        node_a.get_as(&user.token, &profile).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(
        node_b.get_as(&user.token, &profile).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarting_an_api_node_loses_no_session() {
    let Some(deployment) = stateless_deployment("stateless api nodes").await else {
        return;
    };
    let mut node_a = spawn_node(&deployment, 1, Backend::Postgres).await;
    let node_b = spawn_node(&deployment, 2, Backend::Postgres).await;
    let user = node_a.customer().await;
    let profile = format!("/v1/users/{}", user.id);
    assert_eq!(
        node_a.get_as(&user.token, &profile).await.status(),
        StatusCode::OK
    );

    node_a.shutdown.cancel();
    (&mut node_a.server).await.unwrap().unwrap();
    drop(node_a);
    let node_a = spawn_node(&deployment, 1, Backend::Postgres).await;

    assert_eq!(
        node_a.get_as(&user.token, &profile).await.status(),
        StatusCode::OK,
        "the restarted node knows the session"
    );
    assert_eq!(
        log_out(&node_a, &user.token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        node_b.get_as(&user.token, &profile).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}
