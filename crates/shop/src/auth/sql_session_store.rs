//! Sessions in the `sessions` table (SQLite or PostgreSQL).

use super::session_store::{Session, SessionStore};
use crate::error::ShopError;
use async_trait::async_trait;
use loadstar_core::{Id, Timestamp};
use loadstar_store::sql::{query, Row};
use loadstar_store::Database;

/// [`SessionStore`] on the domain database. Lookups use the consistent reader: a session
/// created a moment ago must be visible to the next request even when readers are
/// replicas.
#[derive(Debug, Clone)]
pub struct SqlSessionStore {
    db: Database,
}

impl SqlSessionStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl SessionStore for SqlSessionStore {
    async fn create(&self, session: &Session) -> Result<(), ShopError> {
        query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&session.token_hash)
        .bind(session.user_id.as_i64())
        .bind(session.created_at.unix_micros())
        .bind(session.expires_at.unix_micros())
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    async fn find_active(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<Session>, ShopError> {
        let row = query(
            "SELECT user_id, created_at, expires_at FROM sessions WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now.unix_micros())
        .fetch_optional(self.db.consistent_reader())
        .await?;
        row.map(|row| {
            Ok(Session {
                token_hash: token_hash.to_owned(),
                user_id: Id::from_i64(row.try_get("user_id")?),
                created_at: Timestamp::from_unix_micros(row.try_get("created_at")?),
                expires_at: Timestamp::from_unix_micros(row.try_get("expires_at")?),
            })
        })
        .transpose()
        .map_err(|error: loadstar_store::sql::Error| ShopError::from(error))
    }

    async fn revoke(&self, token_hash: &str) -> Result<bool, ShopError> {
        let result = query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.db.writer())
            .await?;
        Ok(result.rows_affected() > 0)
    }
}
