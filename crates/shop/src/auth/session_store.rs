//! Where login sessions live: behind a trait so a shared store (Redis) can replace the
//! database when api nodes scale out.

use crate::error::ShopError;
use async_trait::async_trait;
use loadstar_core::{Id, Timestamp};
use std::time::Duration;

/// A login session, keyed by the hash of its bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token_hash: String,
    pub user_id: Id,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Storage of sessions. Implementations must make `revoke` take effect for every node
/// at once: a logged-out token is never accepted again.
///
/// A session's life is measured by the database server's clock, which every api node
/// shares: a node whose own clock is off neither accepts an expired session nor rejects
/// a live one (see `docs/decisions/0007-database-time.md`).
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Creates the session of `token_hash` for `user_id`, expiring `lifetime` from now;
    /// returns it as stored.
    async fn create(
        &self,
        token_hash: &str,
        user_id: Id,
        lifetime: Duration,
    ) -> Result<Session, ShopError>;

    /// The session with this token hash, if it exists and has not expired.
    async fn find_active(&self, token_hash: &str) -> Result<Option<Session>, ShopError>;

    /// Deletes the session; returns whether it existed.
    async fn revoke(&self, token_hash: &str) -> Result<bool, ShopError>;
}
