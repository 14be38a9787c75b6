//! What every shop handler shares.

use crate::auth::{
    PasswordHasher, PasswordWorkLimits, RedisSessionStore, SessionStore, SqlSessionStore,
};
use crate::caching::ShopCaches;
use crate::error::ShopError;
use loadstar_core::config::{Config, JobsConfig};
use loadstar_core::IdGenerator;
use loadstar_jobs::{configured_queue, DatabaseClock, JobQueue};
use loadstar_store::Database;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

/// Cheap to clone: one `Arc` around [`ShopContext`].
#[derive(Clone)]
pub struct ShopState(Arc<ShopContext>);

/// The shop's dependencies, built once per process.
pub struct ShopContext {
    pub db: Database,
    pub ids: Arc<IdGenerator>,
    /// Where orders put their payment and expiry jobs (in the same transaction).
    pub jobs: Arc<dyn JobQueue>,
    /// An unpaid order is cancelled this long after it was placed.
    pub unpaid_order_expiry: Duration,
    /// Attempts and backoff per job kind.
    pub job_policies: JobsConfig,
    pub sessions: Arc<dyn SessionStore>,
    pub passwords: PasswordHasher,
    pub session_ttl: Duration,
    /// The cache tiers, the Redis ring and the write-back counters.
    pub caches: ShopCaches,
}

impl ShopState {
    /// Wires the shop to `db`; sessions live in Redis when `cache.redis_urls` names it,
    /// otherwise in the same database.
    pub fn new(db: Database, config: &Config) -> Result<Self, ShopError> {
        Self::with_job_queue(db, config, |queue| queue)
    }

    /// Like [`ShopState::new`], with the job queue decorated by `wrap` (the binary adds
    /// the claim check this way, so the shop needs no object storage of its own).
    pub fn with_job_queue(
        db: Database,
        config: &Config,
        wrap: impl FnOnce(Arc<dyn JobQueue>) -> Arc<dyn JobQueue>,
    ) -> Result<Self, ShopError> {
        let caches = ShopCaches::from_config(&config.cache)?;
        let sql_sessions = SqlSessionStore::new(db.clone());
        let sessions: Arc<dyn SessionStore> = match &caches.redis {
            Some(ring) => Arc::new(RedisSessionStore::new(
                sql_sessions,
                Arc::clone(ring),
                &ring.key("session:"),
            )),
            None => Arc::new(sql_sessions),
        };
        let ids = Arc::new(IdGenerator::new(config.node.id.unwrap_or(0)));
        let jobs = configured_queue(
            db.clone(),
            Arc::clone(&ids),
            Arc::new(DatabaseClock),
            config,
        )
        .map_err(|error| ShopError::Internal(format!("job queue: {error}")))?;
        let jobs = wrap(jobs);
        Ok(Self(Arc::new(ShopContext {
            ids,
            jobs,
            unpaid_order_expiry: Duration::from_secs(config.orders.unpaid_expiry_secs),
            job_policies: config.jobs.clone(),
            passwords: PasswordHasher::new(
                config.auth.argon2_memory_kib,
                config.auth.argon2_iterations,
                PasswordWorkLimits::new(
                    config.auth.password_hash_concurrency,
                    config.auth.password_hash_queue,
                    Duration::from_millis(config.auth.password_hash_queue_wait_ms),
                ),
            )?,
            session_ttl: Duration::from_secs(config.auth.session_ttl_secs),
            sessions,
            caches,
            db,
        })))
    }
}

impl Deref for ShopState {
    type Target = ShopContext;

    fn deref(&self) -> &ShopContext {
        &self.0
    }
}
