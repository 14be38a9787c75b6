//! The embedded SQLite database when its storage fails under it.
//!
//! A full disk: writes fail (and say so) while it is full, succeed again once space
//! returns, and every write that was acknowledged is on disk, seen by another connection
//! and after a reopen. Before sqlx 0.9 and the store's own transaction guard, a COMMIT that
//! failed with SQLITE_FULL left the writer inside a transaction that never ended: every
//! later "commit" succeeded and was lost.
//!
//! A write lock held by another process: writes are refused as unavailable after the busy
//! timeout (a 503, not a 500), reads go on, and writes resume when the lock is released.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use loadstar_core::config::DatabaseConfig;
use loadstar_store::sql::{query, Row};
use loadstar_store::test_support::SmallDisk;
use loadstar_store::{Database, StoreError};
use sqlx::{Connection, SqliteConnection};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const PAYLOAD: usize = 2048;

/// One write transaction of one row; `Ok` is an acknowledgement.
async fn write(db: &Database, id: i64) -> Result<(), StoreError> {
    let mut tx = db.writer().begin().await?;
    query("INSERT INTO disk_full_rows (id, payload) VALUES ($1, $2)")
        .bind(id)
        .bind("x".repeat(PAYLOAD))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn ids_seen_by(db: &Database) -> BTreeSet<i64> {
    query("SELECT id FROM disk_full_rows")
        .fetch_all(db.reader())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<i64, _>(0))
        .collect()
}

/// The rows as a connection of its own sees them: not one of the store's pools.
async fn ids_seen_by_another_connection(file: &std::path::Path) -> BTreeSet<i64> {
    let mut connection = SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT id FROM disk_full_rows")
        .fetch_all(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    rows.into_iter().map(|(id,)| id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_disk_that_fills_and_frees() {
    let Some(disk) = SmallDisk::mount(16) else {
        eprintln!("cannot mount a tmpfs (not root): disk-full test not run");
        return;
    };
    let config = DatabaseConfig::default();
    let db = Database::connect(&config, disk.path()).await.unwrap();
    db.migrate().await.unwrap();
    query("CREATE TABLE disk_full_rows (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)")
        .execute(db.writer())
        .await
        .unwrap();

    let mut acknowledged = BTreeSet::new();
    let mut next_id = 0_i64;
    for _ in 0..50 {
        next_id += 1;
        write(&db, next_id).await.unwrap();
        acknowledged.insert(next_id);
    }

    disk.fill();
    let mut refused = 0;
    for _ in 0..300 {
        next_id += 1;
        let started = Instant::now();
        match write(&db, next_id).await {
            Ok(()) => {
                acknowledged.insert(next_id);
            }
            Err(error) => {
                assert!(
                    matches!(
                        error,
                        StoreError::StorageFull(_) | StoreError::Unavailable(_)
                    ),
                    "a write on a full disk fails as full or unavailable, not as a bug: {error:?}"
                );
                assert!(
                    started.elapsed() < Duration::from_secs(3),
                    "a write on a full disk fails at once, not after a timeout"
                );
                refused += 1;
            }
        }
    }
    assert!(
        refused > 0,
        "the disk filled, so some writes must have been refused"
    );
    assert_eq!(
        ids_seen_by(&db).await,
        acknowledged,
        "while the disk is full, reads work and show exactly what was acknowledged"
    );

    disk.free();
    let freed = Instant::now();
    loop {
        next_id += 1;
        if write(&db, next_id).await.is_ok() {
            acknowledged.insert(next_id);
            break;
        }
        assert!(
            freed.elapsed() < Duration::from_secs(10),
            "writes succeed again soon after space returns"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..200 {
        next_id += 1;
        write(&db, next_id).await.unwrap();
        acknowledged.insert(next_id);
    }

    let file = disk.path().join("loadstar.db");
    assert_eq!(ids_seen_by(&db).await, acknowledged);
    assert_eq!(
        ids_seen_by_another_connection(&file).await,
        acknowledged,
        "another connection sees every acknowledged write, and nothing else"
    );
    db.close().await;

    let reopened = Database::connect(&config, disk.path()).await.unwrap();
    assert_eq!(
        ids_seen_by(&reopened).await,
        acknowledged,
        "after a reopen every acknowledged write is there"
    );
    reopened.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_by_another_process_is_unavailable_not_a_bug() {
    let dir = loadstar_store::test_support::scratch_dir("busy");
    let config = DatabaseConfig {
        sqlite_busy_timeout_ms: 200,
        ..DatabaseConfig::default()
    };
    let db = Database::connect(&config, &dir).await.unwrap();
    db.migrate().await.unwrap();
    query("CREATE TABLE disk_full_rows (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)")
        .execute(db.writer())
        .await
        .unwrap();
    write(&db, 1).await.unwrap();

    // Another program (a sqlite3 shell, a backup tool) takes the write lock and keeps it.
    let file = dir.join("loadstar.db");
    let mut holder = SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();

    let started = Instant::now();
    let refused = write(&db, 2).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::Unavailable(_)),
        "a held lock is a retryable unavailability: {refused:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        ids_seen_by(&db).await,
        BTreeSet::from([1]),
        "reads go on while the lock is held elsewhere"
    );

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    write(&db, 3).await.unwrap();
    assert_eq!(ids_seen_by(&db).await, BTreeSet::from([1, 3]));
    assert_eq!(
        ids_seen_by_another_connection(&file).await,
        BTreeSet::from([1, 3])
    );
    db.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}
