//! Connection pools for one database, split by whether a query writes.

use crate::backend::Backend;
use crate::error::StoreError;
use crate::health::{Health, MonitorSettings};
use crate::migrations;
use crate::pool::Pool;
use crate::transaction::Transaction;
use loadstar_core::config::DatabaseConfig;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AssertSqlSafe, Executor};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A connection idle longer than this is pinged before it is handed out: after a quiet
/// spell, a restart of the server may have closed it (HikariCP's alive-bypass window).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The database of one deployment.
#[derive(Debug, Clone)]
pub struct Database {
    backend: Backend,
    url: Arc<str>,
    writer: Pool,
    reader: Pool,
    health: Health,
}

impl Database {
    /// Opens the pools and, on PostgreSQL, starts the health monitor. Does not migrate:
    /// call [`Database::migrate`].
    pub async fn connect(config: &DatabaseConfig, data_dir: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = Backend::resolve(&config.url, data_dir)?;
        let acquire_timeout = Duration::from_millis(config.acquire_timeout_ms);
        let query_timeout = Duration::from_millis(config.query_timeout_ms);
        let health = Health::new("primary");
        let (writer, reader) = match backend {
            Backend::Sqlite => {
                let pragmas = sqlite_pragmas(config);
                let writer = sqlite_pool(1, acquire_timeout, &pragmas, &health)
                    .connect(&url)
                    .await?;
                // WAL is a property of the file: set once, by the writer, before readers open.
                writer.execute("PRAGMA journal_mode = WAL").await?;
                let reader =
                    sqlite_pool(config.max_connections, acquire_timeout, &pragmas, &health)
                        .connect(&url)
                        .await?;
                (writer, reader)
            }
            Backend::Postgres => {
                let session = postgres_session_settings(config);
                let pool = guarded_pool_options(&health)
                    .max_connections(config.max_connections)
                    .acquire_timeout(acquire_timeout)
                    .after_connect(move |connection, _| {
                        let session = session.clone();
                        Box::pin(async move {
                            connection.execute(AssertSqlSafe(session)).await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?;
                let options: AnyConnectOptions = url.parse()?;
                health.spawn_monitor(
                    options,
                    MonitorSettings {
                        interval: Duration::from_millis(config.health_check_interval_ms),
                        probe_timeout: Duration::from_millis(config.health_check_timeout_ms),
                    },
                );
                (pool.clone(), pool)
            }
        };
        let database = Database {
            backend,
            url: Arc::from(url.as_str()),
            writer: Pool::new(writer, backend, health.clone(), query_timeout, false),
            reader: Pool::new(reader, backend, health.clone(), query_timeout, true),
            health,
        };
        tracing::info!(backend = backend.name(), "database connected");
        Ok(database)
    }

    /// Applies pending migrations for this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrations::MIGRATOR.run(self.writer.raw()).await?;
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

    /// Starts a write transaction on the primary; `commit` returning `Ok` means durable.
    pub async fn begin(&self) -> Result<Transaction, sqlx::Error> {
        self.writer.begin().await
    }

    /// Whether the primary is up, as its health monitor last found it (always on SQLite).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The pool for writes and for reads that must see the latest write.
    pub fn writer(&self) -> &Pool {
        &self.writer
    }

    /// The pool for reads that may be served by a replica (and so may lag writes).
    pub fn reader(&self) -> &Pool {
        &self.reader
    }

    /// The pool for reads that must see every write committed before them: a session
    /// created by the previous request, an idempotency key, a credential check. On SQLite
    /// that is any reader (a WAL reader sees every commit), so these reads do not queue on
    /// the single writer; on PostgreSQL it is the primary, never a replica.
    pub fn consistent_reader(&self) -> &Pool {
        match self.backend {
            Backend::Sqlite => &self.reader,
            Backend::Postgres => &self.writer,
        }
    }

    /// Readiness: on PostgreSQL the health monitor's last finding, answered without a
    /// round trip (so `/readyz` is instant during an outage); on SQLite a `SELECT 1` on a
    /// reader, which cannot wait on a network.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Postgres if self.writer.raw().is_closed() => {
                Err(StoreError::Unavailable("the pool is closed".to_owned()))
            }
            Backend::Postgres if self.health.is_up() => Ok(()),
            Backend::Postgres => Err(StoreError::Down),
            Backend::Sqlite => {
                sqlx::query("SELECT 1").execute(&self.reader).await?;
                Ok(())
            }
        }
    }

    /// Closes every connection, waiting for checked-out ones to come back, and stops the
    /// health monitor.
    pub async fn close(&self) {
        self.health.close();
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// Per-connection SQLite settings. WAL lets readers run beside the writer;
/// `synchronous = NORMAL` is durable across application crashes in WAL mode (a power loss
/// can drop the last transactions, which is the usual embedded trade-off).
fn sqlite_pragmas(config: &DatabaseConfig) -> String {
    format!(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {};",
        config.sqlite_busy_timeout_ms
    )
}

/// Per-session PostgreSQL settings: the server cancels a statement at the query deadline,
/// and ends a transaction left idle (a client gone silent mid-transaction) so that its
/// locks do not outlive it.
fn postgres_session_settings(config: &DatabaseConfig) -> String {
    let idle_in_transaction_ms = config.query_timeout_ms.saturating_mul(6);
    format!(
        "SET statement_timeout = {}; SET idle_in_transaction_session_timeout = {idle_in_transaction_ms};",
        config.query_timeout_ms
    )
}

/// Pool options every pool shares: connections that predate the server's last recovery
/// are discarded at checkout, and one idle for a while is pinged first; a connection is
/// returned to the pool only if `sqlx` agrees it left its transaction.
fn guarded_pool_options(health: &Health) -> AnyPoolOptions {
    let at_checkout = health.clone();
    AnyPoolOptions::new()
        // No ping round trip on every checkout (see before_acquire for when there is one).
        .test_before_acquire(false)
        .before_acquire(move |connection, meta| {
            let stale = at_checkout.predates_recovery(meta.age);
            Box::pin(async move {
                if stale {
                    return Ok(false);
                }
                if meta.idle_for > PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(connection).await?;
                }
                Ok(true)
            })
        })
        .after_release(|connection, _| {
            let in_transaction = sqlx::Connection::is_in_transaction(connection);
            Box::pin(async move { Ok(!in_transaction) })
        })
}

fn sqlite_pool(
    max_connections: u32,
    acquire_timeout: Duration,
    pragmas: &str,
    health: &Health,
) -> AnyPoolOptions {
    let pragmas: Arc<str> = Arc::from(pragmas);
    guarded_pool_options(health)
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .after_connect(move |connection, _| {
            let pragmas = pragmas.clone();
            Box::pin(async move {
                connection.execute(AssertSqlSafe(&*pragmas)).await?;
                Ok(())
            })
        })
}
