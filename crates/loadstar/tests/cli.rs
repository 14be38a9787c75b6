//! The binary as an operator meets it: real processes, real signals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use process::{loadstar, stdout_lines, temp_data_dir, wait_for_log};
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(command: &mut Command) -> Output {
    command.output().expect("the binary runs")
}

#[test]
fn config_prints_the_effective_configuration_with_the_password_masked() {
    let output = run(loadstar(&["config", "--listen", "127.0.0.1:9999"])
        .env(
            "LOADSTAR_DATABASE__URL",
            "postgres://app:topsecret@db.internal:5432/shop",
        )
        .env("LOADSTAR_DATABASE__MAX_CONNECTIONS", "7"));
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(printed.contains("listen = \"127.0.0.1:9999\""), "{printed}");
    assert!(printed.contains("max_connections = 7"), "{printed}");
    assert!(
        printed.contains("postgres://app:***@db.internal:5432/shop"),
        "{printed}"
    );
    assert!(!printed.contains("topsecret"), "{printed}");
}

#[test]
fn a_misspelt_configuration_key_stops_the_binary_with_a_message_naming_it() {
    let output = run(loadstar(&["config"]).env("LOADSTAR_SERVER__LISEN", "127.0.0.1:1"));
    assert!(!output.status.success());
    let message = String::from_utf8(output.stderr).unwrap();
    assert!(message.contains("lisen"), "{message}");
}

#[test]
fn a_missing_config_file_is_an_error() {
    let output = run(&mut loadstar(&[
        "config",
        "--config",
        "/nonexistent/loadstar.toml",
    ]));
    assert!(!output.status.success());
    let message = String::from_utf8(output.stderr).unwrap();
    assert!(message.contains("does not exist"), "{message}");
}

#[test]
fn admin_create_rejects_an_invalid_email_and_names_the_field() {
    let data_dir = temp_data_dir();
    let output = run(&mut loadstar(&[
        "admin",
        "create",
        "--email",
        "not-an-email",
        "--password",
        "long enough",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]));
    assert!(!output.status.success());
    let message = String::from_utf8(output.stderr).unwrap();
    assert!(message.contains("email"), "{message}");
    std::fs::remove_dir_all(data_dir).ok();
}

#[tokio::test]
async fn serve_runs_migrations_answers_an_admin_and_stops_cleanly_on_sigterm() {
    let data_dir = temp_data_dir();
    let dir = data_dir.to_str().unwrap();

    let created = run(&mut loadstar(&[
        "admin",
        "create",
        "--email",
        "root@example.com",
        "--password",
        "root password",
        "--data-dir",
        dir,
    ]));
    assert!(created.status.success(), "{created:?}");

    let mut server = loadstar(&["serve", "--listen", "127.0.0.1:0", "--data-dir", dir])
        .env("LOADSTAR_LOG__FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = stdout_lines(&mut server);
    let listening = wait_for_log(&lines, "listening on", Duration::from_secs(30));
    let url = listening["url"].as_str().unwrap().to_owned();
    assert!(listening["docs"].as_str().unwrap().ends_with("/docs"));

    let client = reqwest::Client::new();
    let login = client
        .post(format!("{url}/v1/sessions"))
        .json(&serde_json::json!({"email": "root@example.com", "password": "root password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 201);
    let token = login.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = client
        .post(format!("{url}/v1/products"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "sku": "cli-1", "name": "CLI mug", "description": "", "priceCents": 100,
            "currency": "EUR", "stock": 1
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.status(),
        201,
        "an admin made on the command line may write"
    );

    let access_log = wait_for_log(&lines, "request", Duration::from_secs(10));
    assert!(access_log["route"].is_string() && access_log["request_id"].is_string());

    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for_log(&lines, "api stopped", Duration::from_secs(30));
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(10)); // poll interval, bounded by the deadline
    };
    assert!(status.success(), "{status:?}");
    assert!(
        data_dir.join("loadstar.db").exists(),
        "data lives under --data-dir"
    );
    std::fs::remove_dir_all(data_dir).ok();
}

#[tokio::test]
async fn sim_payments_serves_charges_on_its_listen_address_and_stops_on_sigterm() {
    let mut simulator = loadstar(&[
        "sim",
        "payments",
        "--listen",
        "127.0.0.1:0",
        "--capacity",
        "50",
    ])
    .env("LOADSTAR_LOG__FORMAT", "json")
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let lines = stdout_lines(&mut simulator);
    let listening = wait_for_log(
        &lines,
        "payment simulator listening",
        Duration::from_secs(30),
    );
    let url = listening["url"].as_str().unwrap().to_owned();

    let client = reqwest::Client::new();
    let charge = serde_json::json!({"orderId": "cli-1", "amountCents": 100, "currency": "EUR"});
    for _ in 0..2 {
        let response = client
            .post(format!("{url}/v1/charges"))
            .header("Idempotency-Key", "cli-1")
            .json(&charge)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let stats: Value = process::simulator_stats(&client, &url).await;
    assert_eq!(stats["charges"], 1);
    assert_eq!(stats["repeatedAttempts"], 1);

    let killed = Command::new("kill")
        .args(["-TERM", &simulator.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for_log(&lines, "payment simulator stopped", Duration::from_secs(30));
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = simulator.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < until,
            "the simulator did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10)); // poll interval, bounded by the deadline
    };
    assert!(status.success(), "{status:?}");
}
