//! Sessions in the `sessions` table (SQLite or PostgreSQL).

use super::session_store::{Session, SessionStore};
use crate::error::ShopError;
use async_trait::async_trait;
use loadstar_core::{Id, Timestamp};
use loadstar_store::sql::{query, AnyRow, AssertSqlSafe, Row};
use loadstar_store::Database;
use std::time::Duration;

/// [`SessionStore`] on the domain database. Lookups use the consistent reader: a session
/// created a moment ago must be visible to the next request even when readers are
/// replicas. Creation and expiry use the database's clock, in the statement.
#[derive(Debug, Clone)]
pub struct SqlSessionStore {
    db: Database,
}

impl SqlSessionStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The active session of `token_hash` and how long it has left, by the database's
    /// clock: what a copy elsewhere (Redis) may live.
    pub async fn find_with_time_left(
        &self,
        token_hash: &str,
    ) -> Result<Option<(Session, Duration)>, ShopError> {
        let row = query(AssertSqlSafe(format!(
            "SELECT user_id, created_at, expires_at, expires_at - {now} AS time_left \
             FROM sessions WHERE token_hash = $1 AND expires_at > {now}",
            now = self.db.backend().now_micros_sql()
        )))
        .bind(token_hash)
        .fetch_optional(self.db.consistent_reader())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let time_left: i64 = row.try_get("time_left")?;
        let time_left = Duration::from_micros(u64::try_from(time_left).unwrap_or(0));
        Ok(Some((session_from_row(token_hash, &row)?, time_left)))
    }
}

fn session_from_row(token_hash: &str, row: &AnyRow) -> Result<Session, ShopError> {
    Ok(Session {
        token_hash: token_hash.to_owned(),
        user_id: Id::from_i64(row.try_get("user_id")?),
        created_at: Timestamp::from_unix_micros(row.try_get("created_at")?),
        expires_at: Timestamp::from_unix_micros(row.try_get("expires_at")?),
    })
}

#[async_trait]
impl SessionStore for SqlSessionStore {
    async fn create(
        &self,
        token_hash: &str,
        user_id: Id,
        lifetime: Duration,
    ) -> Result<Session, ShopError> {
        let row = query(AssertSqlSafe(format!(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) \
             VALUES ($1, $2, {now}, {now} + $3) RETURNING user_id, created_at, expires_at",
            now = self.db.backend().now_micros_sql()
        )))
        .bind(token_hash)
        .bind(user_id.as_i64())
        .bind(i64::try_from(lifetime.as_micros()).unwrap_or(i64::MAX / 2))
        .fetch_one(self.db.writer())
        .await?;
        session_from_row(token_hash, &row)
    }

    async fn find_active(&self, token_hash: &str) -> Result<Option<Session>, ShopError> {
        Ok(self
            .find_with_time_left(token_hash)
            .await?
            .map(|(session, _)| session))
    }

    async fn revoke(&self, token_hash: &str) -> Result<bool, ShopError> {
        let result = query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.db.writer())
            .await?;
        Ok(result.rows_affected() > 0)
    }
}
