//! Workers die mid-job, for real: a `loadstar worker` process is SIGKILLed again and
//! again while it charges orders, and a fresh one takes over. Every order must end paid,
//! charged exactly once at the provider, with its follow-up work done exactly once.
//!
//! Runs on SQLite (api and worker processes sharing the database file), or on PostgreSQL
//! when `LOADSTAR_TEST_DATABASE_URL` is set; and once more with the jobs on RabbitMQ when
//! `LOADSTAR_TEST_RABBITMQ_URL` names a broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use loadstar_core::config::DatabaseConfig;
use loadstar_core::test_support::poll_until;
use loadstar_store::sql::query;
use loadstar_store::Database;
use process::{
    admin_token, create_admin, create_product, loadstar, login, sign_up_buyer, signal,
    stdout_lines, temp_data_dir, wait_for_log, BUYER_EMAIL, BUYER_PASSWORD,
};
use serde_json::{json, Value};
use std::process::{Child, Stdio};
use std::time::Duration;

const ORDERS: usize = 24;
const KILLS: usize = 5;

/// Environment shared by the api and worker processes.
fn environment(data_dir: &str, database_url: &str, payments_url: &str) -> Vec<(String, String)> {
    [
        ("LOADSTAR_DATA_DIR", data_dir),
        ("LOADSTAR_DATABASE__URL", database_url),
        ("LOADSTAR_PAYMENTS__URL", payments_url),
        ("LOADSTAR_LOG__FORMAT", "json"),
        // Short leases, so jobs of a killed worker come back within a second.
        ("LOADSTAR_JOBS__LEASE_SECS", "1"),
        ("LOADSTAR_JOBS__POLL_INTERVAL_MS", "20"),
        (
            "LOADSTAR_JOBS__POLICIES__PAYMENT_CHARGE__MAX_ATTEMPTS",
            "1000",
        ),
        (
            "LOADSTAR_JOBS__POLICIES__PAYMENT_CHARGE__BACKOFF_BASE_MS",
            "10",
        ),
        (
            "LOADSTAR_JOBS__POLICIES__PAYMENT_CHARGE__BACKOFF_CAP_MS",
            "100",
        ),
        ("LOADSTAR_ORDERS__UNPAID_EXPIRY_SECS", "3600"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

fn spawn(args: &[&str], env: &[(String, String)]) -> Child {
    let mut command = loadstar(args);
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn count(db: &Database, sql: &'static str) -> i64 {
    use loadstar_store::sql::Row;
    query(sql)
        .fetch_one(db.writer())
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_paid_exactly_once_while_workers_are_killed_mid_job() {
    kill_workers_mid_job(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_paid_exactly_once_while_rabbitmq_workers_are_killed_mid_job() {
    let Ok(broker) = std::env::var("LOADSTAR_TEST_RABBITMQ_URL") else {
        eprintln!("LOADSTAR_TEST_RABBITMQ_URL is not set: RabbitMQ variant not run");
        return;
    };
    let prefix = format!("loadstar-crash-{:016x}", rand::random::<u64>());
    kill_workers_mid_job(vec![
        ("LOADSTAR_QUEUE__BACKEND".to_owned(), "rabbitmq".to_owned()),
        ("LOADSTAR_QUEUE__RABBITMQ_URL".to_owned(), broker),
        ("LOADSTAR_QUEUE__RABBITMQ_PREFIX".to_owned(), prefix),
        (
            "LOADSTAR_QUEUE__RABBITMQ_IDLE_QUEUE_EXPIRY_SECS".to_owned(),
            "60".to_owned(),
        ),
    ])
    .await;
}

/// Places orders, kills worker processes while they charge, and checks the outcome.
/// `queue_env` selects the queue backend (nothing: the database's own).
async fn kill_workers_mid_job(queue_env: Vec<(String, String)>) {
    // The external provider: slow enough that kills land while charges are in flight.
    let (payments_url, stop_simulator) = process::start_payment_simulator(150).await;

    let data_dir = temp_data_dir();
    let database_url = loadstar_store::test_support::fresh_postgres_url()
        .await
        .unwrap_or_default();
    let mut env = environment(data_dir.to_str().unwrap(), &database_url, &payments_url);
    env.extend(queue_env);

    create_admin(env.iter().map(|(k, v)| (k, v)));

    let mut api = spawn(&["api", "--listen", "127.0.0.1:0"], &env);
    let api_lines = stdout_lines(&mut api);
    let url = wait_for_log(&api_lines, "listening on", Duration::from_secs(30))["url"]
        .as_str()
        .unwrap()
        .to_owned();

    // Stock the shop and place the orders.
    let http = reqwest::Client::new();
    let admin_token = admin_token(&http, &url).await;
    let product_id = create_product(&http, &url, &admin_token, "crash-1", 1000).await;
    sign_up_buyer(&http, &url).await;
    let buyer = login(&http, &url, BUYER_EMAIL, BUYER_PASSWORD).await;
    let token = buyer["token"].as_str().unwrap().to_owned();
    let user_id = buyer["userId"].as_str().unwrap().to_owned();
    for _ in 0..ORDERS {
        let placed = http
            .post(format!("{url}/v1/users/{user_id}/orders"))
            .bearer_auth(&token)
            .json(&json!({"items": [{"productId": product_id, "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(placed.status(), 201);
    }

    // The test's own view of the database, to see jobs running and orders paid.
    let db = Database::connect(
        &DatabaseConfig {
            url: database_url.clone(),
            max_connections: 2,
            ..DatabaseConfig::default()
        },
        &data_dir,
    )
    .await
    .unwrap();
    let paid = || count(&db, "SELECT COUNT(*) FROM orders WHERE status = 'paid'");

    for _ in 0..KILLS {
        let mut worker = spawn(&["worker"], &env);
        poll_until("a charge in flight", Duration::from_secs(30), || async {
            count(
                &db,
                "SELECT COUNT(*) FROM jobs WHERE kind = 'payment.charge' AND state = 'running'",
            )
            .await
                > 0
        })
        .await;
        signal(&mut worker, "-KILL");
    }
    let mut survivor = spawn(&["worker"], &env);
    poll_until("every order paid", Duration::from_secs(90), || async {
        paid().await == ORDERS as i64
    })
    .await;
    poll_until("every follow-up done", Duration::from_secs(60), || async {
        count(&db, "SELECT COUNT(*) FROM order_events").await == ORDERS as i64
            && count(
                &db,
                "SELECT COUNT(*) FROM orders WHERE inventory_committed_at IS NOT NULL",
            )
            .await
                == ORDERS as i64
    })
    .await;

    let stats: Value = process::simulator_stats(&http, &payments_url).await;
    assert_eq!(
        stats["charges"], ORDERS,
        "each order charged exactly once: {stats}"
    );
    let expired = count(
        &db,
        "SELECT COUNT(*) FROM job_attempts WHERE outcome = 'lease_expired'",
    )
    .await;
    assert!(expired > 0, "the kills must have cut jobs off mid-flight");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM jobs WHERE state = 'dead'").await,
        0,
        "nothing ended in the error queue"
    );

    signal(&mut survivor, "-KILL");
    signal(&mut api, "-KILL");
    stop_simulator.cancel();
    db.close().await;
    std::fs::remove_dir_all(&data_dir).ok();
}
