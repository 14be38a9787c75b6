//! The backends the benchmark knows, each opened on a scratch store.

use crate::bench_target::BenchTarget;
use anyhow::Context;
use loadstar_core::config::DatabaseConfig;
use loadstar_core::IdGenerator;
use loadstar_jobs::{DatabaseClock, RabbitJobQueue, RabbitSettings, SqlJobQueue};
use loadstar_store::Database;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A queue backend by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendName {
    /// SqlJobQueue on a SQLite file (the embedded default).
    Sqlite,
    /// SqlJobQueue on PostgreSQL (`--database-url`).
    Postgres,
    /// RabbitJobQueue on the broker at `--rabbitmq-url`, its ledger on PostgreSQL
    /// (`--database-url`).
    Rabbitmq,
}

/// Where the scratch stores are.
pub struct Stores<'a> {
    pub database_url: Option<&'a str>,
    pub rabbitmq_url: Option<&'a str>,
    pub max_connections: u32,
    pub data_dir: &'a Path,
    /// Unacknowledged messages the RabbitMQ consumer may hold: every worker slot and a
    /// batch waiting for them.
    pub prefetch: u16,
}

/// Opens `backend` on an empty store: a fresh SQLite file under `data_dir`, or the
/// (scratch) PostgreSQL database at `database_url`, migrated.
pub async fn open(backend: BackendName, stores: &Stores<'_>) -> anyhow::Result<BenchTarget> {
    let (max_connections, data_dir) = (stores.max_connections, stores.data_dir);
    match backend {
        // An empty URL is the embedded default: `<data_dir>/loadstar.db`, created.
        BackendName::Sqlite => {
            let (db, ledger) = sql_ledger("sqlite", "", max_connections, data_dir).await?;
            Ok(BenchTarget::new("sqlite", Arc::new(ledger)).with_transactions(db))
        }
        BackendName::Postgres => {
            let url = stores
                .database_url
                .context("--database-url is required for postgres")?;
            let (db, ledger) = sql_ledger("postgres", url, max_connections, data_dir).await?;
            Ok(BenchTarget::new("postgres", Arc::new(ledger)).with_transactions(db))
        }
        BackendName::Rabbitmq => {
            let url = stores
                .database_url
                .context("--database-url (the ledger) is required for rabbitmq")?;
            let broker = stores
                .rabbitmq_url
                .context("--rabbitmq-url is required for rabbitmq")?;
            let (db, ledger) = sql_ledger("postgres", url, max_connections, data_dir).await?;
            let settings = RabbitSettings {
                prefix: format!("loadstar-bench-{}", std::process::id()),
                prefetch: stores.prefetch,
                // A run's queues go away on their own once it is over.
                idle_queue_expiry: Some(Duration::from_secs(300)),
                ..RabbitSettings::new(broker)
            };
            let queue = RabbitJobQueue::start(ledger, settings);
            Ok(BenchTarget::new("rabbitmq", Arc::new(queue)).with_transactions(db))
        }
    }
}

async fn sql_ledger(
    name: &str,
    url: &str,
    max_connections: u32,
    data_dir: &Path,
) -> anyhow::Result<(Database, SqlJobQueue)> {
    let config = DatabaseConfig {
        url: url.to_owned(),
        max_connections,
        ..DatabaseConfig::default()
    };
    let db = Database::connect(&config, data_dir)
        .await
        .with_context(|| format!("connecting the {name} database"))?;
    db.migrate()
        .await
        .context("migrating the scratch database")?;
    let queue = SqlJobQueue::new(
        db.clone(),
        Arc::new(IdGenerator::new(1)),
        Arc::new(DatabaseClock),
    );
    Ok((db, queue))
}
