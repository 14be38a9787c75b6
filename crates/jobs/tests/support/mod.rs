//! What the job tests share to reach a RabbitMQ broker: the URL from the environment, a
//! fresh ledger database, settings that keep each test apart, and the macro that runs
//! cases on the RabbitMQ backend.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use loadstar_jobs::RabbitSettings;
use loadstar_store::test_support::fresh_database;
use loadstar_store::{Backend, Database};
use std::time::Duration;

/// The environment variable naming the test broker.
pub const TEST_RABBITMQ_URL: &str = "LOADSTAR_TEST_RABBITMQ_URL";

/// The test broker's URL; `None` (saying so) when none is configured.
pub fn rabbitmq_url() -> Option<String> {
    let url = std::env::var(TEST_RABBITMQ_URL).ok();
    if url.is_none() {
        eprintln!("{TEST_RABBITMQ_URL} is not set: RabbitMQ variant not run");
    }
    url
}

/// A fresh ledger: on PostgreSQL when configured (as production pairs them), else SQLite.
pub async fn ledger_database() -> Database {
    match fresh_database(Backend::Postgres).await {
        Some(db) => db,
        None => fresh_database(Backend::Sqlite).await.unwrap(),
    }
}

/// Settings of one test's backend: its own exchanges and queues, which the broker drops
/// when idle; room for every job a case holds at once; a short wait on empty fetches.
pub fn test_settings(url: impl Into<String>) -> RabbitSettings {
    RabbitSettings {
        prefix: format!("loadstar-test-{:016x}", rand::random::<u64>()),
        prefetch: 100,
        fetch_wait: Duration::from_millis(300),
        idle_queue_expiry: Some(Duration::from_secs(60)),
        ..RabbitSettings::new(url)
    }
}

/// Runs each case as `rabbitmq::<case>`: `setup` is an async fn from the ledger database
/// and the broker URL to what the cases take.
#[macro_export]
macro_rules! on_rabbitmq {
    ($setup:path; $($case:ident),+ $(,)?) => {
        mod rabbitmq {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(url) = $crate::support::rabbitmq_url() else { return };
                    let db = $crate::support::ledger_database().await;
                    super::$case($setup(db, url).await).await;
                }
            )+
        }
    };
}
