//! What every shop handler shares.

use crate::auth::{PasswordHasher, SessionStore, SqlSessionStore};
use crate::error::ShopError;
use loadstar_core::config::Config;
use loadstar_core::IdGenerator;
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
    pub ids: IdGenerator,
    pub sessions: Arc<dyn SessionStore>,
    pub passwords: PasswordHasher,
    pub session_ttl: Duration,
}

impl ShopState {
    /// Wires the shop to `db` with sessions in the same database.
    pub fn new(db: Database, config: &Config) -> Result<Self, ShopError> {
        let sessions: Arc<dyn SessionStore> = Arc::new(SqlSessionStore::new(db.clone()));
        Ok(Self(Arc::new(ShopContext {
            ids: IdGenerator::new(config.node.id),
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
