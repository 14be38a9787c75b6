//! Conformance suite for `SessionStore`: the same cases against every implementation.
//! Today: the SQL store on SQLite, and on PostgreSQL when `LOADSTAR_TEST_DATABASE_URL`
//! names a server (an admin URL; the suite creates its own database there).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use loadstar_core::{Id, Timestamp};
use loadstar_shop::auth::{Session, SessionStore, SqlSessionStore};
use loadstar_store::Database;
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

fn session(token_hash: &str, user_id: Id, lifetime: Duration) -> Session {
    let now = Timestamp::now();
    Session {
        token_hash: token_hash.to_owned(),
        user_id,
        created_at: now,
        expires_at: now.plus(lifetime),
    }
}

async fn a_created_session_is_found_until_it_expires(
    (store, db): (Arc<dyn SessionStore>, Database),
) {
    let owner = user(&db, 1).await;
    let created = session("hash-a", owner, Duration::from_secs(60));
    store.create(&created).await.unwrap();
    let found = store.find_active("hash-a", Timestamp::now()).await.unwrap();
    assert_eq!(found, Some(created.clone()));
    let after_expiry = created.expires_at.plus(Duration::from_micros(1));
    assert_eq!(
        store.find_active("hash-a", after_expiry).await.unwrap(),
        None
    );
}

async fn an_unknown_token_is_not_found((store, _db): (Arc<dyn SessionStore>, Database)) {
    assert_eq!(
        store.find_active("nope", Timestamp::now()).await.unwrap(),
        None
    );
}

async fn a_revoked_session_is_never_found_again((store, db): (Arc<dyn SessionStore>, Database)) {
    let owner = user(&db, 2).await;
    store
        .create(&session("hash-b", owner, Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(store.revoke("hash-b").await.unwrap());
    assert_eq!(
        store.find_active("hash-b", Timestamp::now()).await.unwrap(),
        None
    );
    assert!(
        !store.revoke("hash-b").await.unwrap(),
        "a second revoke finds nothing"
    );
}

async fn sessions_of_one_user_are_independent((store, db): (Arc<dyn SessionStore>, Database)) {
    let owner = user(&db, 3).await;
    for hash in ["hash-c1", "hash-c2"] {
        store
            .create(&session(hash, owner, Duration::from_secs(60)))
            .await
            .unwrap();
    }
    store.revoke("hash-c1").await.unwrap();
    assert!(store
        .find_active("hash-c2", Timestamp::now())
        .await
        .unwrap()
        .is_some());
}

loadstar_store::on_every_database!(
    session_fixture;

    a_created_session_is_found_until_it_expires,
    an_unknown_token_is_not_found,
    a_revoked_session_is_never_found_again,
    sessions_of_one_user_are_independent,
);

/// Each case gets the store under test and its database.
async fn session_fixture(db: Database) -> (Arc<dyn SessionStore>, Database) {
    (Arc::new(SqlSessionStore::new(db.clone())), db)
}
