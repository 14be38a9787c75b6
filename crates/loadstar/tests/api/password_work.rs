//! Password work is bounded: logins, sign-ups and key issues past the bound are answered
//! 503 with `Retry-After` at once, a flood of wrong passwords gets only 401s and 503s
//! (no 500, no hang), and the right password works again once the flood has passed.

use crate::harness::{assert_problem, spawn_with_config, test_config, Backend, TestApp};
use futures::future::join_all;
use reqwest::{Response, StatusCode};
use serde_json::json;
use std::sync::mpsc;

/// An app whose password work runs `slots` at a time with `queue` waiting at most 100 ms.
async fn app_with_password_work(slots: usize, queue: usize) -> TestApp {
    let data_dir =
        std::env::temp_dir().join(format!("loadstar-test-{:016x}", rand::random::<u64>()));
    let mut config = test_config(data_dir);
    config.auth.password_hash_concurrency = slots;
    config.auth.password_hash_queue = queue;
    config.auth.password_hash_queue_wait_ms = 100;
    spawn_with_config(config, Backend::Sqlite).await
}

/// Takes every slot of the app's password work until the returned senders are dropped.
async fn occupy_password_work(app: &TestApp, slots: usize) -> Vec<mpsc::Sender<()>> {
    let mut releases = Vec::new();
    for _ in 0..slots {
        let (release, hold) = mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let work = app.state.passwords.work().clone();
        tokio::spawn(async move {
            work.run(move |_| {
                let _ = started.send(());
                let _ = hold.recv();
            })
            .await
        });
        running.await.unwrap();
        releases.push(release);
    }
    releases
}

async fn assert_overloaded(response: Response) {
    let retry_after = response
        .headers()
        .get("retry-after")
        .expect("a 503 for overload says when to retry")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(retry_after.parse::<u64>().unwrap() >= 1, "{retry_after}");
    let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(problem["type"], "urn:loadstar:problem:overloaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_work_past_the_bound_is_answered_503_with_retry_after_at_once() {
    let app = app_with_password_work(1, 0).await;
    let user = app.customer().await;
    let releases = occupy_password_work(&app, 1).await;

    let login = json!({"email": user.email, "password": user.password});
    assert_overloaded(app.post_json("/v1/sessions", &login).await).await;
    let unknown = json!({"email": "nobody@example.com", "password": "whatever it is"});
    assert_overloaded(app.post_json("/v1/sessions", &unknown).await).await;
    let sign_up = json!({"email": "new@example.com", "password": "long enough", "name": "New"});
    assert_overloaded(app.post_json("/v1/users", &sign_up).await).await;
    let key = json!({"email": user.email, "password": user.password, "name": "script"});
    assert_overloaded(app.post_json("/v1/api-keys", &key).await).await;
    let new_password = json!({"password": "another long one"});
    let response = app
        .request(reqwest::Method::PATCH, &format!("/v1/users/{}", user.id))
        .bearer_auth(&user.token)
        .header("content-type", "application/merge-patch+json")
        .body(new_password.to_string())
        .send()
        .await
        .unwrap();
    assert_overloaded(response).await;

    drop(releases);
    // The slot frees once the occupying work ends; nothing was lost meanwhile.
    loadstar_core::test_support::poll_until(
        "the right password logs in again",
        std::time::Duration::from_secs(10),
        || async { app.post_json("/v1/sessions", &login).await.status() == StatusCode::CREATED },
    )
    .await;
    assert_eq!(
        app.post_json("/v1/users", &sign_up).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_wrong_passwords_gets_only_401s_and_503s_and_the_right_one_still_works() {
    let app = app_with_password_work(1, 2).await;
    let user = app.customer().await;
    let wrong = json!({"email": user.email, "password": "not the password"});

    let answers = join_all((0..100).map(|_| app.post_json("/v1/sessions", &wrong))).await;
    let mut unauthorized = 0;
    for response in answers {
        match response.status() {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::SERVICE_UNAVAILABLE => assert_overloaded(response).await,
            other => panic!("a wrong password got {other}"),
        }
    }
    assert!(unauthorized >= 1, "some attempts were checked");

    let token = app.login(&user.email, &user.password).await;
    let me = app.get_as(&token, &format!("/v1/users/{}", user.id)).await;
    assert_eq!(me.status(), StatusCode::OK);
}
