//! Sessions in Redis, with the SQL store as their durable copy: what makes api nodes
//! stateless once `cache.redis_urls` is set.
//!
//! Every authenticated request reads its session, so the hot copy lives in Redis, shared
//! by all api nodes: a login on one node works on every other, and a restarted node loses
//! nothing. Our Redis keeps nothing on disk, though, and a Redis restart must not log
//! everyone out, so every session is also a row of [`SqlSessionStore`] (the database all
//! nodes share):
//!
//! - `create` writes the row first, then `{prefix}{token_hash}` in Redis, expiring with
//!   the session. A failed Redis write is tolerated: the row serves until a read refills.
//! - `find_active` reads Redis; a miss (or a Redis that fails) falls back to the row, and
//!   a row found after a miss is written back to Redis.
//! - Expiry is the database's: a Redis entry lives (`PX`) exactly the time the database
//!   says its session has left, and Redis removes it then, so no node compares it with
//!   its own clock, which may be off.
//! - `revoke` must hold on every node at once and forever, so Redis comes first: it
//!   replaces the entry with a revocation marker that lives as long as the session
//!   would have, then deletes the row. A read that missed Redis and read the row just
//!   before the delete cannot put the session back: its refill never replaces a marker.
//!   With the marker's node unreachable, `revoke` fails (503) and changes nothing; doing
//!   the SQL half alone would leave the session alive in Redis.
//!
//! Entries are strings (`{user_id}:{created_at}:{expires_at}`, microseconds) so one `GET`
//! reads an entry or a marker alike. Every api node must list the same `redis_urls`: the
//! ring decides which Redis node holds a token's entry and marker.

use super::session_store::{Session, SessionStore};
use super::sql_session_store::SqlSessionStore;
use crate::error::ShopError;
use async_trait::async_trait;
use loadstar_cache::{CacheError, RedisRing};
use loadstar_core::{Id, Timestamp};
use redis::aio::ConnectionManager;
use redis::Script;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// The value of a revoked session's key.
const REVOKED: &str = "revoked";

/// A revocation marker outlives its session by this much, so a read that found the row
/// just before the revoke, and writes it back a moment later, meets the marker still.
const REVOKED_MARGIN: Duration = Duration::from_secs(60);

/// Stores an entry unless the key holds a revocation marker.
/// KEYS[1] the session key; ARGV[1] the entry, ARGV[2] its lifetime in milliseconds.
static STORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == 'revoked' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1",
    )
});

/// Revokes in Redis: with a marker lifetime (ARGV[1] > 0) the key becomes a marker,
/// otherwise a live entry is deleted (a marker stays). Returns 1 if a live entry was there.
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
local live = current and current ~= 'revoked'
if tonumber(ARGV[1]) > 0 then
  redis.call('SET', KEYS[1], 'revoked', 'PX', ARGV[1])
elseif live then
  redis.call('DEL', KEYS[1])
end
if live then return 1 end
return 0",
    )
});

/// What Redis holds for a token.
enum Entry {
    Missing,
    Revoked,
    Live(Session),
}

/// [`SessionStore`] on the shared Redis ring, in front of the durable [`SqlSessionStore`].
pub struct RedisSessionStore {
    sql: SqlSessionStore,
    ring: Arc<RedisRing>,
    key_prefix: String,
}

impl RedisSessionStore {
    /// Sessions under `key_prefix` (`"session:"` in production; tests sharing one Redis
    /// use a prefix of their own).
    pub fn new(sql: SqlSessionStore, ring: Arc<RedisRing>, key_prefix: &str) -> Self {
        Self {
            sql,
            ring,
            key_prefix: key_prefix.to_owned(),
        }
    }

    fn key(&self, token_hash: &str) -> String {
        format!("{}{token_hash}", self.key_prefix)
    }

    async fn read(&self, token_hash: &str) -> Result<Entry, CacheError> {
        let key = self.key(token_hash);
        let mut get = redis::cmd("GET");
        get.arg(&key);
        let value: Option<String> = self
            .ring
            .call(&key, |mut connection: ConnectionManager| async move {
                get.query_async(&mut connection).await
            })
            .await?;
        Ok(match value.as_deref() {
            None => Entry::Missing,
            Some(REVOKED) => Entry::Revoked,
            Some(text) => match decode(token_hash, text) {
                Some(session) => Entry::Live(session),
                None => {
                    tracing::debug!("unreadable session entry in redis; reading the database");
                    Entry::Missing
                }
            },
        })
    }

    /// Writes `session` to Redis for `time_left` unless it was revoked; `Ok` without
    /// writing when it has no time left.
    async fn store(&self, session: &Session, time_left: Duration) -> Result<(), CacheError> {
        let Some(lifetime_ms) = whole_millis(time_left) else {
            return Ok(());
        };
        let key = self.key(&session.token_hash);
        let mut invocation = STORE.prepare_invoke();
        invocation.key(&key).arg(encode(session)).arg(lifetime_ms);
        self.ring
            .call(&key, |mut connection: ConnectionManager| async move {
                invocation.invoke_async::<i64>(&mut connection).await
            })
            .await?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn create(
        &self,
        token_hash: &str,
        user_id: Id,
        lifetime: Duration,
    ) -> Result<Session, ShopError> {
        let session = self.sql.create(token_hash, user_id, lifetime).await?;
        if let Err(error) = self.store(&session, lifetime).await {
            tracing::debug!(error = %error, "session not written to redis; the database copy serves");
        }
        Ok(session)
    }

    async fn find_active(&self, token_hash: &str) -> Result<Option<Session>, ShopError> {
        let refill = match self.read(token_hash).await {
            Ok(Entry::Revoked) => return Ok(None),
            // Redis drops the entry when the database says the session ends.
            Ok(Entry::Live(session)) => return Ok(Some(session)),
            Ok(Entry::Missing) => true,
            Err(error) => {
                // Writing back to a Redis that just failed would cost a second timeout.
                tracing::debug!(error = %error, "redis unavailable for a session read; reading the database");
                false
            }
        };
        let found = self.sql.find_with_time_left(token_hash).await?;
        if let (true, Some((session, time_left))) = (refill, &found) {
            if let Err(error) = self.store(session, *time_left).await {
                tracing::debug!(error = %error, "session not written back to redis");
            }
        }
        Ok(found.map(|(session, _)| session))
    }

    async fn revoke(&self, token_hash: &str) -> Result<bool, ShopError> {
        // The marker must live as long as a copy of the session could be written back,
        // which is as long as the session is active.
        let marker_ms = self
            .sql
            .find_with_time_left(token_hash)
            .await?
            .and_then(|(_, time_left)| whole_millis(time_left.saturating_add(REVOKED_MARGIN)))
            .unwrap_or(0);
        let key = self.key(token_hash);
        let mut invocation = REVOKE.prepare_invoke();
        invocation.key(&key).arg(marker_ms);
        let live_in_redis: i64 = self
            .ring
            .call(&key, |mut connection: ConnectionManager| async move {
                invocation.invoke_async(&mut connection).await
            })
            .await?;
        let in_database = self.sql.revoke(token_hash).await?;
        Ok(live_in_redis == 1 || in_database)
    }
}

/// `duration` in milliseconds, rounded up (Redis's `PX`); `None` for no time at all.
fn whole_millis(duration: Duration) -> Option<u64> {
    u64::try_from(duration.as_micros())
        .ok()
        .filter(|&micros| micros > 0)
        .map(|micros| micros.div_ceil(1_000))
}

fn encode(session: &Session) -> String {
    format!(
        "{}:{}:{}",
        session.user_id.as_i64(),
        session.created_at.unix_micros(),
        session.expires_at.unix_micros()
    )
}

fn decode(token_hash: &str, text: &str) -> Option<Session> {
    let mut fields = text.split(':').map(str::parse::<i64>);
    let (Some(Ok(user_id)), Some(Ok(created_at)), Some(Ok(expires_at)), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return None;
    };
    Some(Session {
        token_hash: token_hash.to_owned(),
        user_id: Id::from_i64(user_id),
        created_at: Timestamp::from_unix_micros(created_at),
        expires_at: Timestamp::from_unix_micros(expires_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_decodes_to_the_session_it_encodes() {
        let session = Session {
            token_hash: "hash".to_owned(),
            user_id: Id::from_i64(42),
            created_at: Timestamp::from_unix_micros(1_000_000),
            expires_at: Timestamp::from_unix_micros(2_000_000),
        };
        assert_eq!(decode("hash", &encode(&session)), Some(session));
    }

    #[test]
    fn malformed_entries_decode_to_nothing() {
        for text in ["", "1:2", "1:2:x", "1:2:3:4", REVOKED] {
            assert_eq!(decode("hash", text), None, "{text:?}");
        }
    }
}
