//! The production clock, [`DatabaseClock`], pins nothing: every statement reads the time
//! from the database server, so nodes whose own clocks disagree still agree on leases
//! and due times (the skewed-clock process test, `crates/loadstar/tests/clock_skew.rs`,
//! shows that with real processes). Here each time-deciding operation runs with that
//! clock and its result is checked against the database's clock read before and after.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use loadstar_core::{IdGenerator, Timestamp};
use loadstar_jobs::{
    AttemptOutcome, DatabaseClock, Exhausted, JobQueue, JobState, NewJob, RetryPolicy, SqlJobQueue,
};
use loadstar_store::sql::Row;
use loadstar_store::Database;
use std::sync::Arc;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3_600);

fn queue(db: &Database, node: u16) -> SqlJobQueue {
    SqlJobQueue::new(
        db.clone(),
        Arc::new(IdGenerator::new(node)),
        Arc::new(DatabaseClock),
    )
}

/// The database server's clock.
async fn database_now(db: &Database) -> Timestamp {
    let sql = format!("SELECT {} AS now", db.backend().now_micros_sql());
    let now: i64 = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(db.writer())
        .await
        .unwrap()
        .try_get("now")
        .unwrap();
    Timestamp::from_unix_micros(now)
}

/// `instant` lies in `[from + offset, to + offset]`.
fn assert_between(
    instant: Timestamp,
    from: Timestamp,
    to: Timestamp,
    offset: Duration,
    what: &str,
) {
    assert!(
        from.plus(offset) <= instant && instant <= to.plus(offset),
        "{what}: {instant:?} not within {offset:?} after [{from:?}, {to:?}]"
    );
}

async fn enqueue_lease_and_heartbeat_take_the_databases_time(db: Database) {
    let queue = queue(&db, 1);
    let before = database_now(&db).await;
    let due = queue
        .enqueue(
            NewJob::new("default", "due", vec![])
                .with_time_to_live(HOUR)
                .with_unique_key("once", HOUR),
        )
        .await
        .unwrap();
    let again = queue
        .enqueue(NewJob::new("default", "due", vec![]).with_unique_key("once", HOUR))
        .await
        .unwrap();
    assert_eq!(again, due, "the unique key is held by the database's clock");
    let later = queue
        .enqueue(NewJob::new("default", "later", vec![]).with_delay(HOUR))
        .await
        .unwrap();
    let leased = queue.fetch("default", "w1", LEASE, 10).await.unwrap();
    let after = database_now(&db).await;

    assert_eq!(
        leased.iter().map(|job| job.id).collect::<Vec<_>>(),
        [due],
        "only the job due by the database's clock"
    );
    let job = &leased[0];
    assert_between(job.due_at, before, after, Duration::ZERO, "due at enqueue");
    assert_between(job.lease_until, before, after, LEASE, "lease end");
    let waiting = queue.get(later).await.unwrap().unwrap();
    assert_between(
        waiting.run_at,
        before,
        after,
        HOUR,
        "delayed job's due time",
    );

    let extended = queue.heartbeat(job, LEASE).await.unwrap().unwrap();
    let after_heartbeat = database_now(&db).await;
    assert!(extended >= job.lease_until, "a heartbeat never shortens");
    assert_between(
        extended,
        after,
        after_heartbeat,
        LEASE,
        "extended lease end",
    );
    assert!(queue.complete(job).await.unwrap());
}

async fn a_failed_attempt_is_due_again_after_its_backoff_by_the_databases_clock(db: Database) {
    let queue = queue(&db, 1);
    let id = queue
        .enqueue(NewJob::new("default", "flaky", vec![]))
        .await
        .unwrap();
    let job = queue
        .fetch("default", "w1", LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let policy = RetryPolicy {
        base: HOUR,
        cap: HOUR,
        on_exhausted: Exhausted::DeadLetter,
    };
    let before = database_now(&db).await;
    assert_eq!(
        queue.fail(&job, "boom", &policy).await.unwrap(),
        Some(JobState::Available)
    );
    let after = database_now(&db).await;
    let failed = queue.get(id).await.unwrap().unwrap();
    assert!(
        before <= failed.run_at && failed.run_at <= after.plus(policy.ceiling(job.attempt)),
        "retry at {:?}, failed between {before:?} and {after:?}",
        failed.run_at
    );
    assert_between(
        failed.attempts[0].finished_at,
        before,
        after,
        Duration::ZERO,
        "attempt finished",
    );
}

async fn a_lease_that_ran_out_by_the_databases_clock_is_taken_back(db: Database) {
    let first = queue(&db, 1);
    let id = first
        .enqueue(NewJob::new("default", "abandoned", vec![]))
        .await
        .unwrap();
    let abandoned = first
        .fetch("default", "w1", Duration::ZERO, 1)
        .await
        .unwrap()
        .remove(0);
    // Another process: it sweeps on its first fetch.
    let second = queue(&db, 2);
    let taken = second
        .fetch("default", "w2", LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!((taken.id, taken.attempt), (id, 2));
    assert!(
        !first.complete(&abandoned).await.unwrap(),
        "the lease moved on"
    );
    assert!(second.complete(&taken).await.unwrap());
    let attempts = second.get(id).await.unwrap().unwrap().attempts;
    assert_eq!(
        attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [AttemptOutcome::LeaseExpired, AttemptOutcome::Completed]
    );
}

async fn a_rate_limit_counts_starts_in_the_databases_last_second(db: Database) {
    let queue = queue(&db, 1).with_rate_limit("payments", 2);
    for n in 0..5u8 {
        queue
            .enqueue(NewJob::new("payments", "charge", vec![n]))
            .await
            .unwrap();
    }
    assert_eq!(
        queue
            .fetch("payments", "w1", LEASE, 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

loadstar_store::on_every_database!(
    loadstar_store::test_support::database;

    enqueue_lease_and_heartbeat_take_the_databases_time,
    a_failed_attempt_is_due_again_after_its_backoff_by_the_databases_clock,
    a_lease_that_ran_out_by_the_databases_clock_is_taken_back,
    a_rate_limit_counts_starts_in_the_databases_last_second,
);
