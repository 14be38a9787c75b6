//! What every shop handler shares.

use crate::auth::{PasswordHasher, SessionStore, SqlSessionStore};
use crate::error::ShopError;
use loadstar_core::config::{Config, JobsConfig};
use loadstar_core::IdGenerator;
use loadstar_jobs::{configured_queue, JobQueue, SystemClock};
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
}

impl ShopState {
    /// Wires the shop to `db` with sessions in the same database.
    pub fn new(db: Database, config: &Config) -> Result<Self, ShopError> {
        let sessions: Arc<dyn SessionStore> = Arc::new(SqlSessionStore::new(db.clone()));
        let ids = Arc::new(IdGenerator::new(config.node.id));
        let jobs = configured_queue(db.clone(), Arc::clone(&ids), Arc::new(SystemClock), config)
            .map_err(|error| ShopError::Internal(format!("job queue: {error}")))?;
        Ok(Self(Arc::new(ShopContext {
            ids,
            jobs,
            unpaid_order_expiry: Duration::from_secs(config.orders.unpaid_expiry_secs),
            job_policies: config.jobs.clone(),
            passwords: PasswordHasher::new(
                config.auth.argon2_memory_kib,
                config.auth.argon2_iterations,
            )?,
            session_ttl: Duration::from_secs(config.auth.session_ttl_secs),
            sessions,
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
