//! Connection pools for one database, split by whether a query writes.

use crate::backend::Backend;
use crate::error::StoreError;
use crate::migrations;
use loadstar_core::config::DatabaseConfig;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Executor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// SQLite settings applied to every connection. WAL lets readers run beside the writer;
/// `synchronous = NORMAL` is durable across application crashes in WAL mode (a power loss
/// can drop the last transactions, which is the usual embedded trade-off).
const SQLITE_CONNECTION_PRAGMAS: &str =
    "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

/// The database of one deployment.
#[derive(Debug, Clone)]
pub struct Database {
    backend: Backend,
    url: Arc<str>,
    writer: AnyPool,
    reader: AnyPool,
}

impl Database {
    /// Opens the pools. Does not migrate: call [`Database::migrate`].
    pub async fn connect(config: &DatabaseConfig, data_dir: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = Backend::resolve(&config.url, data_dir)?;
        let acquire_timeout = Duration::from_millis(config.acquire_timeout_ms);
        let database = match backend {
            Backend::Sqlite => {
                let writer = sqlite_pool(1, acquire_timeout).connect(&url).await?;
                // WAL is a property of the file: set once, by the writer, before readers open.
                writer.execute("PRAGMA journal_mode = WAL").await?;
                let reader = sqlite_pool(config.max_connections, acquire_timeout)
                    .connect(&url)
                    .await?;
                Database {
                    backend,
                    url: Arc::from(url.as_str()),
                    writer,
                    reader,
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(acquire_timeout)
                    // No ping round trip per checkout: a connection broken by a server
                    // restart fails one query, is discarded by the pool, and is replaced.
                    .test_before_acquire(false)
                    .connect(&url)
                    .await?;
                Database {
                    backend,
                    url: Arc::from(url.as_str()),
                    writer: pool.clone(),
                    reader: pool,
                }
            }
        };
        tracing::info!(backend = backend.name(), "database connected");
        Ok(database)
    }

    /// Applies pending migrations for this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrations::MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection URL, for backend-specific side channels (PostgreSQL's LISTEN).
    /// Contains credentials: never log it.
    pub fn connection_url(&self) -> &str {
        &self.url
    }

    /// The pool for writes and for reads that must see the latest write.
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// The pool for reads that may be served by a replica (and so may lag writes).
    pub fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// The pool for reads that must see every write committed before them: a session
    /// created by the previous request, an idempotency key, a credential check. On SQLite
    /// that is any reader (a WAL reader sees every commit), so these reads do not queue on
    /// the single writer; on PostgreSQL it is the primary, never a replica.
    pub fn consistent_reader(&self) -> &AnyPool {
        match self.backend {
            Backend::Sqlite => &self.reader,
            Backend::Postgres => &self.writer,
        }
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Closes every connection, waiting for checked-out ones to come back.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

fn sqlite_pool(max_connections: u32, acquire_timeout: Duration) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        // A connection to a local file cannot go stale; a ping per checkout would double
        // the round trips to SQLite's worker thread on every query.
        .test_before_acquire(false)
        .after_connect(|connection, _| {
            Box::pin(async move {
                connection.execute(SQLITE_CONNECTION_PRAGMAS).await?;
                Ok(())
            })
        })
}
