//! Conformance suite for `SessionStore`: the same cases against every implementation.
//! Today: the SQL store on SQLite, and on PostgreSQL when `LOADSTAR_TEST_DATABASE_URL`
//! names a server (an admin URL; the suite creates its own database there); and the
//! Redis store on SQLite when `LOADSTAR_TEST_REDIS_URL` names a Redis server, each case
//! under a key prefix of its own. Cases of the Redis store alone follow the suite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use loadstar_cache::RedisRing;
use loadstar_core::test_support::poll_until;
use loadstar_core::Id;
use loadstar_shop::auth::{RedisSessionStore, SessionStore, SqlSessionStore};
use loadstar_shop::error::ShopError;
use loadstar_store::Database;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;

/// Inserts a user row so sessions can reference it.
async fn user(db: &Database, id: i64) -> Id {
    sqlx::query(
        "INSERT INTO users (id, email, email_normalized, name, password_hash, role, created_at, updated_at) \
         VALUES ($1, $2, $2, 'u', 'x', 'customer', 0, 0)",
    )
    .bind(id)
    .bind(format!("u{id}@example.com"))
    .execute(db.writer())
    .await
    .unwrap();
    Id::from_i64(id)
}

const LIFETIME: Duration = Duration::from_secs(60);

async fn a_created_session_is_found_until_it_expires(
    (store, db): (Arc<dyn SessionStore>, Database),
) {
    let owner = user(&db, 1).await;
    let created = store.create("hash-a", owner, LIFETIME).await.unwrap();
    assert_eq!(
        created.expires_at.unix_micros() - created.created_at.unix_micros(),
        LIFETIME.as_micros() as i64
    );
    let found = store.find_active("hash-a").await.unwrap();
    assert_eq!(found, Some(created));

    let short_lived = Duration::from_millis(300);
    store
        .create("hash-short", owner, short_lived)
        .await
        .unwrap();
    poll_until(
        "the short-lived session expired",
        Duration::from_secs(10),
        || async { store.find_active("hash-short").await.unwrap().is_none() },
    )
    .await;
}

async fn an_unknown_token_is_not_found((store, _db): (Arc<dyn SessionStore>, Database)) {
    assert_eq!(store.find_active("nope").await.unwrap(), None);
}

async fn a_revoked_session_is_never_found_again((store, db): (Arc<dyn SessionStore>, Database)) {
    let owner = user(&db, 2).await;
    store.create("hash-b", owner, LIFETIME).await.unwrap();
    assert!(store.revoke("hash-b").await.unwrap());
    assert_eq!(store.find_active("hash-b").await.unwrap(), None);
    assert!(
        !store.revoke("hash-b").await.unwrap(),
        "a second revoke finds nothing"
    );
}

async fn sessions_of_one_user_are_independent((store, db): (Arc<dyn SessionStore>, Database)) {
    let owner = user(&db, 3).await;
    for hash in ["hash-c1", "hash-c2"] {
        store.create(hash, owner, LIFETIME).await.unwrap();
    }
    store.revoke("hash-c1").await.unwrap();
    assert!(store.find_active("hash-c2").await.unwrap().is_some());
}

/// Runs each case on every database with the SQL store (`sqlite::`, `postgres::`), and
/// with the Redis store in front of SQLite (`sqlite_and_redis::`).
macro_rules! on_every_session_store {
    ($($case:ident),+ $(,)?) => {
        loadstar_store::on_every_database!(session_fixture; $($case),+);

        mod sqlite_and_redis {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(redis) = RedisSetup::on_sqlite().await else {
                        return;
                    };
                    let store: Arc<dyn SessionStore> = Arc::new(redis.node());
                    super::$case((store, redis.db.clone())).await;
                }
            )+
        }
    };
}

on_every_session_store!(
    a_created_session_is_found_until_it_expires,
    an_unknown_token_is_not_found,
    a_revoked_session_is_never_found_again,
    sessions_of_one_user_are_independent,
);

/// Each case gets the store under test and its database.
async fn session_fixture(db: Database) -> (Arc<dyn SessionStore>, Database) {
    (Arc::new(SqlSessionStore::new(db.clone())), db)
}

/// A database and a Redis shared by any number of api nodes, under a key prefix of
/// this test's own.
struct RedisSetup {
    db: Database,
    url: String,
    prefix: String,
}

impl RedisSetup {
    /// SQLite and the Redis of `LOADSTAR_TEST_REDIS_URL`; `None` (saying so) without one.
    async fn on_sqlite() -> Option<Self> {
        let Ok(url) = std::env::var("LOADSTAR_TEST_REDIS_URL") else {
            eprintln!("LOADSTAR_TEST_REDIS_URL is not set: Redis variant not run");
            return None;
        };
        let db = loadstar_store::test_support::fresh_database(loadstar_store::Backend::Sqlite)
            .await
            .expect("sqlite is always available");
        Some(Self {
            db,
            url,
            prefix: format!("test:{:016x}:session:", rand::random::<u64>()),
        })
    }

    /// Another api node: a store on a ring of its own (its own connections and breaker).
    fn node(&self) -> RedisSessionStore {
        self.node_on(&self.url)
    }

    /// An api node whose Redis cannot be reached (nothing listens on port 1 of loopback,
    /// so every connect is refused at once).
    fn node_without_redis(&self) -> RedisSessionStore {
        self.node_on("redis://127.0.0.1:1")
    }

    fn node_on(&self, url: &str) -> RedisSessionStore {
        RedisSessionStore::new(
            SqlSessionStore::new(self.db.clone()),
            ring(url),
            &self.prefix,
        )
    }

    /// Runs one command on the test's Redis, for looking behind the store's back.
    async fn redis_command<T: redis::FromRedisValue + Send + 'static>(
        &self,
        command: &str,
        token_hash: &str,
    ) -> T {
        let key = format!("{}{token_hash}", self.prefix);
        let mut command = redis::cmd(command);
        command.arg(&key);
        ring(&self.url)
            .call(&key, |mut connection: ConnectionManager| async move {
                command.query_async(&mut connection).await
            })
            .await
            .unwrap()
    }

    async fn redis_value(&self, token_hash: &str) -> Option<String> {
        self.redis_command("GET", token_hash).await
    }

    /// What a Redis restart (nothing on disk) does to one session.
    async fn forget_in_redis(&self, token_hash: &str) {
        self.redis_command::<i64>("DEL", token_hash).await;
    }

    fn sql(&self) -> SqlSessionStore {
        SqlSessionStore::new(self.db.clone())
    }
}

/// Generous timeout: a loaded machine must not turn a slow answer into an outage.
fn ring(url: &str) -> Arc<RedisRing> {
    Arc::new(RedisRing::new(&[url.to_owned()], Duration::from_secs(2)).unwrap())
}

/// Cases of the Redis store alone: what the SQL store has no way to get wrong.
mod redis_store {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_redis_forgot_is_found_in_the_database_and_written_back() {
        let Some(redis) = RedisSetup::on_sqlite().await else {
            return;
        };
        let store = redis.node();
        let created = store
            .create("hash-forgotten", user(&redis.db, 1).await, LIFETIME)
            .await
            .unwrap();
        assert!(
            redis.redis_value("hash-forgotten").await.is_some(),
            "created in redis too"
        );

        redis.forget_in_redis("hash-forgotten").await;
        assert_eq!(
            store.find_active("hash-forgotten").await.unwrap(),
            Some(created.clone())
        );
        assert!(
            redis.redis_value("hash-forgotten").await.is_some(),
            "the read wrote the session back to redis"
        );
        assert_eq!(
            redis.node().find_active("hash-forgotten").await.unwrap(),
            Some(created)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revoking_while_redis_is_unreachable_fails_and_changes_nothing() {
        let Some(redis) = RedisSetup::on_sqlite().await else {
            return;
        };
        let created = redis
            .node()
            .create("hash-kept", user(&redis.db, 2).await, LIFETIME)
            .await
            .unwrap();

        let error = redis
            .node_without_redis()
            .revoke("hash-kept")
            .await
            .unwrap_err();
        assert!(matches!(error, ShopError::Unavailable(_)), "{error:?}");
        assert_eq!(error.to_problem().status, 503);

        assert_eq!(
            redis.node().find_active("hash-kept").await.unwrap(),
            Some(created.clone()),
            "still live in redis"
        );
        assert_eq!(
            redis.sql().find_active("hash-kept").await.unwrap(),
            Some(created),
            "still in the database"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_created_on_one_node_is_found_and_revoked_on_another() {
        let Some(redis) = RedisSetup::on_sqlite().await else {
            return;
        };
        let (node_a, node_b) = (redis.node(), redis.node());
        let created = node_a
            .create("hash-shared", user(&redis.db, 3).await, LIFETIME)
            .await
            .unwrap();

        assert_eq!(
            node_b.find_active("hash-shared").await.unwrap(),
            Some(created)
        );
        assert!(node_b.revoke("hash-shared").await.unwrap());
        assert_eq!(node_a.find_active("hash-shared").await.unwrap(), None);
        assert_eq!(redis.sql().find_active("hash-shared").await.unwrap(), None);
    }

    /// A node that missed Redis and read the row just before a revoke deleted it writes
    /// the session back after the revoke; so does a revoke whose database half failed
    /// leave the row. Either way the revocation must win.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoked_session_stays_revoked_while_its_row_is_still_in_the_database() {
        let Some(redis) = RedisSetup::on_sqlite().await else {
            return;
        };
        let created = redis
            .node()
            .create("hash-revoked", user(&redis.db, 4).await, LIFETIME)
            .await
            .unwrap();
        assert!(redis.node().revoke("hash-revoked").await.unwrap());

        redis
            .sql()
            .create("hash-revoked", created.user_id, LIFETIME)
            .await
            .unwrap();
        for node in [redis.node(), redis.node()] {
            assert_eq!(node.find_active("hash-revoked").await.unwrap(), None);
        }
        assert_eq!(
            redis.redis_value("hash-revoked").await.as_deref(),
            Some("revoked")
        );
        assert!(
            redis.node().revoke("hash-revoked").await.unwrap(),
            "revoking again deletes the row"
        );
        assert_eq!(redis.sql().find_active("hash-revoked").await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_are_created_and_found_while_redis_is_unreachable() {
        let Some(redis) = RedisSetup::on_sqlite().await else {
            return;
        };
        let node = redis.node_without_redis();
        let created = node
            .create("hash-degraded", user(&redis.db, 5).await, LIFETIME)
            .await
            .unwrap();
        assert_eq!(
            node.find_active("hash-degraded").await.unwrap(),
            Some(created.clone())
        );
        assert_eq!(
            redis.node().find_active("hash-degraded").await.unwrap(),
            Some(created),
            "a node with redis finds it in the database"
        );
    }
}
