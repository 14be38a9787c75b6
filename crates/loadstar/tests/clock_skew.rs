//! A worker whose clock is a minute off (a host without NTP, a VM resumed from suspend)
//! shares the PostgreSQL job queue with one on the true clock. Neither may take a job
//! the other still holds, and neither may sit idle while jobs are due: every order is
//! charged once, no lease is lost, and both workers take part.
//!
//! One `api` and two `worker` processes; the second worker runs with libfaketime (the
//! `faketime` package) setting its wall clock 60 s ahead, then 60 s behind. Leases are
//! short (3 s), far shorter than the skew. Needs PostgreSQL (`LOADSTAR_TEST_DATABASE_URL`)
//! and `faketime`; without either the test says so and does nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use loadstar_core::config::DatabaseConfig;
use loadstar_core::test_support::poll_until;
use loadstar_store::sql::{query, AssertSqlSafe, Row};
use loadstar_store::Database;
use process::{
    create_admin, login, sign_up_buyer, skewed_clock, temp_data_dir, Node, Worker, BUYER_EMAIL,
    BUYER_PASSWORD,
};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const ORDERS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_a_minute_ahead_takes_no_job_from_a_worker_on_the_true_clock() {
    two_workers_one_skewed_by("+60s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_a_minute_behind_loses_no_job_and_still_takes_its_share() {
    two_workers_one_skewed_by("-60s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_lives_as_long_on_an_api_node_a_minute_ahead_as_on_the_others() {
    sessions_across_nodes_one_skewed_by("+60s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_lives_as_long_on_an_api_node_a_minute_behind_as_on_the_others() {
    sessions_across_nodes_one_skewed_by("-60s").await;
}

/// Environment shared by the api and both workers.
fn environment(data_dir: &str, database_url: &str, payments_url: &str) -> Vec<(String, String)> {
    [
        ("LOADSTAR_DATA_DIR", data_dir),
        ("LOADSTAR_DATABASE__URL", database_url),
        ("LOADSTAR_PAYMENTS__URL", payments_url),
        ("LOADSTAR_LOG__FORMAT", "json"),
        // Leases far shorter than the skew: a clock a minute off decides everything if
        // it decides anything.
        ("LOADSTAR_JOBS__LEASE_SECS", "3"),
        ("LOADSTAR_JOBS__POLL_INTERVAL_MS", "20"),
        ("LOADSTAR_ORDERS__UNPAID_EXPIRY_SECS", "3600"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

async fn count(db: &Database, sql: &str) -> i64 {
    query(AssertSqlSafe(sql.to_owned()))
        .fetch_one(db.writer())
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

/// Payment attempts `worker` completed.
async fn charges_completed_by(db: &Database, worker: &Worker) -> i64 {
    count(
        db,
        &format!(
            "SELECT COUNT(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id \
             WHERE j.kind = 'payment.charge' AND a.outcome = 'completed' \
               AND a.worker LIKE '%-{}-%'",
            worker.pid()
        ),
    )
    .await
}

async fn two_workers_one_skewed_by(offset: &str) {
    let Some(skew) = skewed_clock(offset) else {
        eprintln!("faketime is not installed (apt-get install faketime): clock-skew test not run");
        return;
    };
    let Some(database_url) = loadstar_store::test_support::fresh_postgres_url().await else {
        eprintln!("LOADSTAR_TEST_DATABASE_URL is not set: clock-skew test not run");
        return;
    };

    // The provider: slow enough that many charges are in flight at any moment.
    let simulator = loadstar_sim::PaymentSimulator::build(&loadstar_sim::SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        latency_ms: 300,
        ..loadstar_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let payments_url = format!("http://{}", simulator.local_addr().unwrap());
    let stop_simulator = CancellationToken::new();
    tokio::spawn(simulator.run_until_stopped(stop_simulator.clone()));

    let data_dir = temp_data_dir();
    let env = environment(data_dir.to_str().unwrap(), &database_url, &payments_url);
    create_admin(env.iter().map(|(k, v)| (k, v)));
    // Each process makes ids with a node id of its own, as the configuration requires.
    let node = |id: &str| vec![("LOADSTAR_NODE__ID".to_owned(), id.to_owned())];
    let api = Node::start("api", &[env.clone(), node("1")].concat());
    let on_time = Worker::start(&[env.clone(), node("2")].concat());
    let skewed = Worker::start(&[env.clone(), node("3"), skew].concat());

    let http = reqwest::Client::new();
    let (product_id, token, user_id) =
        process::stocked_shop_and_buyer(&http, &api.url, "skew-1", 1000).await;
    for _ in 0..ORDERS {
        let placed = http
            .post(format!("{}/v1/users/{user_id}/orders", api.url))
            .bearer_auth(&token)
            .json(&json!({"items": [{"productId": product_id, "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(placed.status(), 201);
    }

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
    poll_until("every order paid", Duration::from_secs(120), || async {
        count(&db, "SELECT COUNT(*) FROM orders WHERE status = 'paid'").await == ORDERS as i64
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
    // A charge is requested again only after a failed attempt (a genuine retry) or when
    // a second worker runs a job whose lease it took.
    let failed_charges = count(
        &db,
        "SELECT COUNT(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id \
         WHERE j.kind = 'payment.charge' AND a.outcome = 'failed'",
    )
    .await;
    let leases_taken = count(
        &db,
        "SELECT COUNT(*) FROM job_attempts WHERE outcome = 'lease_expired'",
    )
    .await;
    // "lease lost before the job settled", or while it ran (a heartbeat found it gone).
    let lost_leases =
        [&on_time, &skewed].map(|worker| worker.logs_containing("WARN", "lease lost").len());
    let completed = [
        charges_completed_by(&db, &on_time).await,
        charges_completed_by(&db, &skewed).await,
    ];
    let summary = format!(
        "skew {offset}: provider {stats}; failed charge attempts {failed_charges}; \
         leases taken by a sweep {leases_taken}; 'lease lost' logged by the on-time and \
         skewed worker {lost_leases:?}; charges completed by each {completed:?}"
    );
    eprintln!("{summary}");

    assert_eq!(
        stats["charges"], ORDERS,
        "each order charged once: {summary}"
    );
    assert_eq!(leases_taken, 0, "no live lease was taken: {summary}");
    assert_eq!(lost_leases, [0, 0], "no worker lost a lease: {summary}");
    assert!(
        stats["repeatedAttempts"].as_i64().unwrap() <= failed_charges,
        "no charge requested twice but for a genuine retry: {summary}"
    );
    assert!(
        completed.iter().all(|&charges| charges > 0),
        "both workers took due jobs: {summary}"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM jobs WHERE state = 'dead'").await,
        0,
        "nothing ended in the error queue: {summary}"
    );

    drop((api, on_time, skewed));
    stop_simulator.cancel();
    db.close().await;
    std::fs::remove_dir_all(&data_dir).ok();
}

/// Sessions in the database alone, then (with `LOADSTAR_TEST_REDIS_URL`) in Redis in
/// front of it.
async fn sessions_across_nodes_one_skewed_by(offset: &str) {
    sessions_across_two_api_nodes(offset, None).await;
    match std::env::var("LOADSTAR_TEST_REDIS_URL") {
        Ok(redis_url) => sessions_across_two_api_nodes(offset, Some(&redis_url)).await,
        Err(_) => eprintln!("LOADSTAR_TEST_REDIS_URL is not set: Redis session variant not run"),
    }
}

/// Two api nodes on one PostgreSQL database (and `redis_url`, if any), the second with its
/// clock `offset` off, and sessions that last 30 s: a login on either node is accepted by
/// both.
async fn sessions_across_two_api_nodes(offset: &str, redis_url: Option<&str>) {
    let Some(skew) = skewed_clock(offset) else {
        eprintln!("faketime is not installed (apt-get install faketime): clock-skew test not run");
        return;
    };
    let Some(database_url) = loadstar_store::test_support::fresh_postgres_url().await else {
        eprintln!("LOADSTAR_TEST_DATABASE_URL is not set: clock-skew test not run");
        return;
    };
    let data_dir = temp_data_dir();
    let mut env = environment(
        data_dir.to_str().unwrap(),
        &database_url,
        "http://127.0.0.1:1",
    );
    env.push((
        "LOADSTAR_AUTH__SESSION_TTL_SECS".to_owned(),
        "30".to_owned(),
    ));
    if let Some(redis_url) = redis_url {
        env.push((
            "LOADSTAR_CACHE__REDIS_URLS".to_owned(),
            redis_url.to_owned(),
        ));
    }
    let node = |id: &str| vec![("LOADSTAR_NODE__ID".to_owned(), id.to_owned())];
    let on_time = Node::start("api", &[env.clone(), node("1")].concat());
    let skewed = Node::start("api", &[env.clone(), node("2"), skew].concat());

    let http = reqwest::Client::new();
    sign_up_buyer(&http, &on_time.url).await;
    let mut answers = Vec::new();
    for (made_on, used_on) in [(&on_time, &skewed), (&skewed, &on_time)] {
        let session = login(&http, &made_on.url, BUYER_EMAIL, BUYER_PASSWORD).await;
        let token = session["token"].as_str().unwrap();
        let user_id = session["userId"].as_str().unwrap();
        for node in [made_on, used_on] {
            let status = http
                .get(format!("{}/v1/users/{user_id}", node.url))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status();
            answers.push(status.as_u16());
        }
    }
    assert_eq!(
        answers, [200; 4],
        "skew {offset}, redis {redis_url:?}: a session made on the on-time node, then one \
         made on the skewed node, each used on its own node and on the other"
    );
    drop((on_time, skewed));
    std::fs::remove_dir_all(&data_dir).ok();
}
