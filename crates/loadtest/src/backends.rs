//! The backends the benchmark knows, each opened on a scratch store.

use crate::bench_target::BenchTarget;
use anyhow::Context;
use loadstar_core::config::DatabaseConfig;
use loadstar_core::IdGenerator;
use loadstar_jobs::{SqlJobQueue, SystemClock};
use loadstar_store::Database;
use std::path::Path;
use std::sync::Arc;

/// A queue backend by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendName {
    /// SqlJobQueue on a SQLite file (the embedded default).
    Sqlite,
    /// SqlJobQueue on PostgreSQL (`--database-url`).
    Postgres,
}

/// Opens `backend` on an empty store: a fresh SQLite file under `data_dir`, or the
/// (scratch) PostgreSQL database at `database_url`, migrated.
pub async fn open(
    backend: BackendName,
    database_url: Option<&str>,
    max_connections: u32,
    data_dir: &Path,
) -> anyhow::Result<BenchTarget> {
    match backend {
        // An empty URL is the embedded default: `<data_dir>/loadstar.db`, created.
        BackendName::Sqlite => sql_target("sqlite", "", max_connections, data_dir).await,
        BackendName::Postgres => {
            let url = database_url.context("--database-url is required for postgres")?;
            sql_target("postgres", url, max_connections, data_dir).await
        }
    }
}

async fn sql_target(
    name: &str,
    url: &str,
    max_connections: u32,
    data_dir: &Path,
) -> anyhow::Result<BenchTarget> {
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
        Arc::new(SystemClock),
    );
    Ok(BenchTarget::new(name, Arc::new(queue)).with_transactions(db))
}
