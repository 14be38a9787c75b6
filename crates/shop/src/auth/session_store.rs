//! Where login sessions live: behind a trait so a shared store (Redis) can replace the
//! database when api nodes scale out.

use crate::error::ShopError;
use async_trait::async_trait;
use loadstar_core::{Id, Timestamp};

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
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn create(&self, session: &Session) -> Result<(), ShopError>;

    /// The session with this token hash, if it exists and has not expired at `now`.
    async fn find_active(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<Session>, ShopError>;

    /// Deletes the session; returns whether it existed.
    async fn revoke(&self, token_hash: &str) -> Result<bool, ShopError>;
}
