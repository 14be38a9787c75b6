//! `/v1/users`: sign-up, reading and patching profiles, and who may do which.

use crate::harness::{assert_problem, error_fields, TestApp, TestUser};
use crate::on_every_backend;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

const MERGE_PATCH: &str = "application/merge-patch+json";

async fn sign_up(app: &TestApp, body: &Value) -> Response {
    app.post_json("/v1/users", body).await
}

async fn patch_user(app: &TestApp, token: &str, user_id: &str, body: &Value) -> Response {
    app.request(Method::PATCH, &format!("/v1/users/{user_id}"))
        .bearer_auth(token)
        .header("content-type", MERGE_PATCH)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// The user as `reader` sees them; panics unless the read succeeds.
async fn read_user(app: &TestApp, reader: &TestUser, user_id: &str) -> Value {
    let response = app
        .get_as(&reader.token, &format!("/v1/users/{user_id}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn login_status(app: &TestApp, email: &str, password: &str) -> StatusCode {
    app.post_json(
        "/v1/sessions",
        &json!({"email": email, "password": password}),
    )
    .await
    .status()
}

async fn signing_up_creates_a_customer_and_answers_201_with_its_location(app: TestApp) {
    let response = sign_up(
        &app,
        &json!({"email": "ada@example.com", "password": "analytical engine", "name": "Ada Lovelace"}),
    )
    .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("analytical engine"),
        "password echoed: {text}"
    );
    assert!(!text.contains("argon2"), "password hash leaked: {text}");
    let user: Value = serde_json::from_str(&text).unwrap();
    let id = user["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/users/{id}"));
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["name"], "Ada Lovelace");
    assert_eq!(user["role"], "customer");
    assert!(user.get("password").is_none());
    assert!(user.get("passwordHash").is_none());

    let token = app.login("ada@example.com", "analytical engine").await;
    let fetched = app.get_as(&token, &location).await;
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.json::<Value>().await.unwrap(), user);
}

async fn sign_up_trims_the_email_and_name_it_stores(app: TestApp) {
    let response = sign_up(
        &app,
        &json!({"email": "  Grace@Example.com ", "password": "cobol compiler", "name": "  Grace Hopper  "}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["email"], "Grace@Example.com");
    assert_eq!(user["name"], "Grace Hopper");
    assert_eq!(
        login_status(&app, "grace@example.com", "cobol compiler").await,
        StatusCode::CREATED
    );
}

async fn sign_up_lists_every_invalid_field_and_creates_nothing(app: TestApp) {
    let response = sign_up(
        &app,
        &json!({"email": "not-an-email", "password": "short", "name": "   "}),
    )
    .await;

    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:validation");
    assert_eq!(error_fields(&problem), ["email", "password", "name"]);
    for error in problem["errors"].as_array().unwrap() {
        assert!(!error["message"].as_str().unwrap().is_empty(), "{error}");
    }

    // A sign-up rejected for one field only leaves its valid email free.
    let response = sign_up(
        &app,
        &json!({"email": "free@example.com", "password": "short", "name": "Free"}),
    )
    .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["password"]);
    assert_eq!(
        login_status(&app, "free@example.com", "short").await,
        StatusCode::UNAUTHORIZED
    );
    let response = sign_up(
        &app,
        &json!({"email": "free@example.com", "password": "long enough now", "name": "Free"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn sign_up_bounds_the_length_of_the_password_and_name(app: TestApp) {
    let response = sign_up(
        &app,
        &json!({"email": "long@example.com", "password": "p".repeat(129), "name": "n".repeat(101)}),
    )
    .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["password", "name"]);

    let response = sign_up(
        &app,
        &json!({"email": "long@example.com", "password": "p".repeat(128), "name": "n".repeat(100)}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn a_sign_up_missing_a_field_is_a_validation_problem_that_names_it(app: TestApp) {
    let response = sign_up(
        &app,
        &json!({"email": "partial@example.com", "password": "long enough"}),
    )
    .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:validation");
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("name"), "{message}");
}

async fn a_second_sign_up_with_the_same_email_in_other_case_is_a_conflict(app: TestApp) {
    let first = sign_up(
        &app,
        &json!({"email": "linus@example.com", "password": "first password", "name": "Linus"}),
    )
    .await;
    assert_eq!(first.status(), StatusCode::CREATED);

    for email in [
        "linus@example.com",
        "LINUS@Example.COM",
        "  Linus@example.com  ",
    ] {
        let response = sign_up(
            &app,
            &json!({"email": email, "password": "second password", "name": "Impostor"}),
        )
        .await;
        let problem = assert_problem(response, StatusCode::CONFLICT).await;
        assert_eq!(
            problem["type"], "urn:loadstar:problem:email-taken",
            "{email}"
        );
    }

    // The original account is untouched: its password works, the impostor's does not.
    assert_eq!(
        login_status(&app, "linus@example.com", "first password").await,
        StatusCode::CREATED
    );
    assert_eq!(
        login_status(&app, "linus@example.com", "second password").await,
        StatusCode::UNAUTHORIZED
    );
}

async fn concurrent_sign_ups_with_one_email_create_exactly_one_account(app: TestApp) {
    let attempts = (0..8).map(|n| {
        let email = if n % 2 == 0 {
            "race@example.com".to_owned()
        } else {
            "RACE@example.com".to_owned()
        };
        let app = &app;
        async move {
            sign_up(
                app,
                &json!({"email": email, "password": format!("password number {n}"), "name": "Racer"}),
            )
            .await
        }
    });
    let responses = futures::future::join_all(attempts).await;
    let mut created = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => created += 1,
            _ => {
                let problem = assert_problem(response, StatusCode::CONFLICT).await;
                assert_eq!(problem["type"], "urn:loadstar:problem:email-taken");
            }
        }
    }
    assert_eq!(created, 1);
}

async fn a_user_reads_their_own_profile(app: TestApp) {
    let user = app.customer().await;
    let profile = read_user(&app, &user, &user.id).await;
    assert_eq!(profile["id"], user.id.as_str());
    assert_eq!(profile["email"], user.email.as_str());
    assert_eq!(profile["name"], "Test User");
    assert_eq!(profile["role"], "customer");
}

async fn reading_another_users_profile_is_not_found_like_a_missing_user(app: TestApp) {
    let alice = app.customer().await;
    let bob = app.customer().await;

    let response = app
        .get_as(&alice.token, &format!("/v1/users/{}", bob.id))
        .await;
    let others = assert_problem(response, StatusCode::NOT_FOUND).await;

    let response = app.get_as(&alice.token, "/v1/users/1").await;
    let missing = assert_problem(response, StatusCode::NOT_FOUND).await;

    // Nothing tells a user whether someone else's id exists.
    assert_eq!(others["type"], missing["type"]);
    assert_eq!(others["detail"], missing["detail"]);
}

async fn an_admin_reads_any_user(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let profile = read_user(&app, &admin, &customer.id).await;
    assert_eq!(profile["email"], customer.email.as_str());
    assert_eq!(profile["role"], "customer");

    let own = read_user(&app, &admin, &admin.id).await;
    assert_eq!(own["role"], "admin");
}

async fn an_admin_reading_an_unknown_user_gets_not_found(app: TestApp) {
    let admin = app.admin().await;
    let response = app.get_as(&admin.token, "/v1/users/42").await;
    let problem = assert_problem(response, StatusCode::NOT_FOUND).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:not-found");
}

async fn a_user_changes_their_name_and_email_with_a_merge_patch(app: TestApp) {
    let user = app.customer().await;
    let before = read_user(&app, &user, &user.id).await;

    let response = patch_user(
        &app,
        &user.token,
        &user.id,
        &json!({"name": "Renamed", "email": "Renamed@Example.com"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let patched: Value = response.json().await.unwrap();
    assert_eq!(patched["name"], "Renamed");
    assert_eq!(patched["email"], "Renamed@Example.com");
    assert_eq!(patched["role"], "customer");
    assert_eq!(patched["createdAt"], before["createdAt"]);
    assert_ne!(patched["updatedAt"], before["updatedAt"]);

    assert_eq!(read_user(&app, &user, &user.id).await, patched);
    assert_eq!(
        login_status(&app, "renamed@example.com", &user.password).await,
        StatusCode::CREATED
    );
    assert_eq!(
        login_status(&app, &user.email, &user.password).await,
        StatusCode::UNAUTHORIZED
    );
    // The old address is free again.
    let response = sign_up(
        &app,
        &json!({"email": user.email, "password": "another password", "name": "Newcomer"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn a_plain_json_patch_is_accepted_too(app: TestApp) {
    let user = app.customer().await;
    let response = app
        .request(Method::PATCH, &format!("/v1/users/{}", user.id))
        .bearer_auth(&user.token)
        .json(&json!({"name": "Plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["name"], "Plain");
    assert_eq!(read_user(&app, &user, &user.id).await["name"], "Plain");
}

async fn a_patch_leaves_the_fields_it_does_not_name_alone(app: TestApp) {
    let user = app.customer().await;
    let before = read_user(&app, &user, &user.id).await;
    let response = patch_user(&app, &user.token, &user.id, &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let after: Value = response.json().await.unwrap();
    for field in ["id", "email", "name", "role", "createdAt"] {
        assert_eq!(after[field], before[field], "{field}");
    }
}

async fn a_user_changes_their_password_and_only_the_new_one_logs_in(app: TestApp) {
    let user = app.customer().await;
    let response = patch_user(
        &app,
        &user.token,
        &user.id,
        &json!({"password": "a brand new secret"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains("a brand new secret"), "{text}");
    assert!(!text.contains("argon2"), "{text}");

    assert_eq!(
        login_status(&app, &user.email, "a brand new secret").await,
        StatusCode::CREATED
    );
    assert_eq!(
        login_status(&app, &user.email, &user.password).await,
        StatusCode::UNAUTHORIZED
    );
}

async fn an_invalid_patch_lists_every_bad_field_and_changes_nothing(app: TestApp) {
    let user = app.customer().await;
    let before = read_user(&app, &user, &user.id).await;

    let response = patch_user(
        &app,
        &user.token,
        &user.id,
        &json!({"email": "nope", "name": "", "password": "short"}),
    )
    .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["email", "name", "password"]);

    // One bad field sinks the whole patch, valid fields included.
    let response = patch_user(
        &app,
        &user.token,
        &user.id,
        &json!({"name": "Would Be Nice", "password": "short"}),
    )
    .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["password"]);

    assert_eq!(read_user(&app, &user, &user.id).await, before);
    assert_eq!(
        login_status(&app, &user.email, &user.password).await,
        StatusCode::CREATED
    );
}

async fn patching_to_an_email_taken_in_other_case_is_a_conflict_and_changes_nothing(app: TestApp) {
    let user = app.customer().await;
    let other = app.customer().await;
    let before = read_user(&app, &user, &user.id).await;

    let response = patch_user(
        &app,
        &user.token,
        &user.id,
        &json!({"email": other.email.to_uppercase(), "name": "Changed"}),
    )
    .await;
    let problem = assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:email-taken");

    assert_eq!(read_user(&app, &user, &user.id).await, before);
}

async fn a_user_may_change_the_case_of_their_own_email(app: TestApp) {
    let user = app.customer().await;
    let shouted = user.email.to_uppercase();
    let response = patch_user(&app, &user.token, &user.id, &json!({"email": shouted})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        read_user(&app, &user, &user.id).await["email"],
        shouted.as_str()
    );
    assert_eq!(
        login_status(&app, &user.email, &user.password).await,
        StatusCode::CREATED
    );
}

async fn patching_another_users_profile_is_not_found_and_changes_nothing(app: TestApp) {
    let alice = app.customer().await;
    let bob = app.customer().await;
    let before = read_user(&app, &bob, &bob.id).await;

    let response = patch_user(
        &app,
        &alice.token,
        &bob.id,
        &json!({"name": "Hijacked", "password": "alice knows it"}),
    )
    .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;

    assert_eq!(read_user(&app, &bob, &bob.id).await, before);
    assert_eq!(
        login_status(&app, &bob.email, "alice knows it").await,
        StatusCode::UNAUTHORIZED
    );
}

async fn a_customer_cannot_change_their_own_role(app: TestApp) {
    let user = app.customer().await;
    let other = app.customer().await;
    let before = read_user(&app, &user, &user.id).await;

    let response = patch_user(
        &app,
        &user.token,
        &user.id,
        &json!({"role": "admin", "name": "Sneaky"}),
    )
    .await;
    let problem = assert_problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:forbidden");

    assert_eq!(read_user(&app, &user, &user.id).await, before);
    // Still a customer in deed, not just in name.
    let response = app
        .get_as(&user.token, &format!("/v1/users/{}", other.id))
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

async fn an_admin_promotes_a_customer_who_can_then_read_other_users(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let bystander = app.customer().await;

    let response = patch_user(&app, &admin.token, &customer.id, &json!({"role": "admin"})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["role"], "admin");

    // The promotion takes effect on the customer's existing session.
    let profile = read_user(&app, &customer, &bystander.id).await;
    assert_eq!(profile["email"], bystander.email.as_str());

    let response = patch_user(
        &app,
        &admin.token,
        &customer.id,
        &json!({"role": "customer"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .get_as(&customer.token, &format!("/v1/users/{}", bystander.id))
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

async fn an_admin_edits_another_users_profile(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let response = patch_user(
        &app,
        &admin.token,
        &customer.id,
        &json!({"name": "Edited By Admin"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        read_user(&app, &customer, &customer.id).await["name"],
        "Edited By Admin"
    );
}

async fn an_unknown_role_is_a_validation_problem_naming_role(app: TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let before = read_user(&app, &admin, &customer.id).await;
    let response = patch_user(
        &app,
        &admin.token,
        &customer.id,
        &json!({"role": "superuser"}),
    )
    .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["role"]);
    assert_eq!(read_user(&app, &admin, &customer.id).await, before);
}

async fn reading_or_patching_without_credentials_is_unauthorized_with_a_challenge(app: TestApp) {
    let user = app.customer().await;
    let before = read_user(&app, &user, &user.id).await;
    let path = format!("/v1/users/{}", user.id);

    let responses = [
        app.get(&path).await,
        app.request(Method::PATCH, &path)
            .header("content-type", MERGE_PATCH)
            .body(json!({"name": "Anonymous"}).to_string())
            .send()
            .await
            .unwrap(),
    ];
    for response in responses {
        assert_eq!(
            response.headers()["www-authenticate"].to_str().unwrap(),
            "Bearer"
        );
        let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(problem["type"], "urn:loadstar:problem:unauthorized");
    }
    assert_eq!(read_user(&app, &user, &user.id).await, before);
}

on_every_backend!(
    signing_up_creates_a_customer_and_answers_201_with_its_location,
    sign_up_trims_the_email_and_name_it_stores,
    sign_up_lists_every_invalid_field_and_creates_nothing,
    sign_up_bounds_the_length_of_the_password_and_name,
    a_sign_up_missing_a_field_is_a_validation_problem_that_names_it,
    a_second_sign_up_with_the_same_email_in_other_case_is_a_conflict,
    concurrent_sign_ups_with_one_email_create_exactly_one_account,
    a_user_reads_their_own_profile,
    reading_another_users_profile_is_not_found_like_a_missing_user,
    an_admin_reads_any_user,
    an_admin_reading_an_unknown_user_gets_not_found,
    a_user_changes_their_name_and_email_with_a_merge_patch,
    a_plain_json_patch_is_accepted_too,
    a_patch_leaves_the_fields_it_does_not_name_alone,
    a_user_changes_their_password_and_only_the_new_one_logs_in,
    an_invalid_patch_lists_every_bad_field_and_changes_nothing,
    patching_to_an_email_taken_in_other_case_is_a_conflict_and_changes_nothing,
    a_user_may_change_the_case_of_their_own_email,
    patching_another_users_profile_is_not_found_and_changes_nothing,
    a_customer_cannot_change_their_own_role,
    an_admin_promotes_a_customer_who_can_then_read_other_users,
    an_admin_edits_another_users_profile,
    an_unknown_role_is_a_validation_problem_naming_role,
    reading_or_patching_without_credentials_is_unauthorized_with_a_challenge,
);
