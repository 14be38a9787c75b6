//! The statements the RabbitMQ backend adds to the SQL job ledger.
//!
//! The ledger (`jobs`, `job_attempts`, `job_unique_keys`) is the same as the SQL backend's,
//! and is the truth about every job. The broker carries deliveries: a job row is its own
//! outbox entry while it is `available` and no message exists for its next attempt
//! (`dispatched_attempt <= attempt`); the relay publishes it with a confirm and then
//! records `dispatched_attempt = attempt + 1`. A received message leases the job only if
//! the ledger still expects exactly that attempt, so duplicates, stale redeliveries and
//! messages for jobs already finished are recognised and dropped. Like the SQL backend's,
//! these statements read the time from the database ([`crate::clock`]).

use super::message::Dispatch;
use crate::clock::{micros, SqlNow};
use crate::error::JobError;
use crate::model::LeasedJob;
use crate::sql_queue::{leased_from_row, LEASED_COLUMNS};
use loadstar_core::Id;
use loadstar_store::sql::{query, Any, AssertSqlSafe, Executor, Row, Transaction};
use std::time::Duration;

/// An earlier job with the same ordering key is still to run or running.
const ORDERING_BLOCKED: &str =
    "EXISTS (SELECT 1 FROM jobs p WHERE p.ordering_key = j.ordering_key \
    AND p.id < j.id AND p.state IN ('available', 'running'))";

/// Due jobs that have no message for their next attempt, best priority first. On
/// PostgreSQL `row_locking` is `FOR UPDATE SKIP LOCKED` (run inside a transaction), so
/// relays in several processes publish disjoint rows.
pub(crate) async fn due_for_dispatch<'e, E>(
    executor: E,
    now: SqlNow,
    limit: u32,
    row_locking: &str,
) -> Result<Vec<Dispatch>, JobError>
where
    E: Executor<'e, Database = Any>,
{
    // The time to live left is the database's to say too: the broker counts it down.
    let rows = query(AssertSqlSafe(format!(
        "SELECT j.id, j.queue, j.kind, j.attempt, j.expires_at - {now} AS expires_in, \
           j.trace_context FROM jobs j \
         WHERE j.state = 'available' AND COALESCE(j.dispatched_attempt, 0) <= j.attempt \
           AND j.run_at <= {now} AND (j.ordering_key IS NULL OR NOT {ORDERING_BLOCKED}) \
         ORDER BY j.priority DESC, j.run_at, j.id LIMIT $2 {row_locking}",
        now = now.sql(1)
    )))
    .bind(now.bind())
    .bind(i64::from(limit))
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            let attempt: i64 = row.try_get("attempt")?;
            let expires_in: Option<i64> = row.try_get("expires_in")?;
            Ok(Dispatch {
                job_id: Id::from_i64(row.try_get("id")?),
                queue: row.try_get("queue")?,
                kind: row.try_get("kind")?,
                attempt: u32::try_from(attempt + 1).unwrap_or(u32::MAX),
                expires_in_ms: expires_in
                    .map(|micros| u64::try_from(micros / 1000).unwrap_or(0).max(1)),
                trace_context: row.try_get("trace_context")?,
            })
        })
        .collect()
}

/// Records that a confirmed message exists for the attempt each of `published` delivers.
/// Names the attempt rather than "the next one": where the rows were not locked while
/// publishing (SQLite), a worker may have leased the job from its message already, and
/// the mark must not then claim a message for the attempt after.
pub(crate) async fn mark_dispatched<'e, E>(
    executor: E,
    published: &[Dispatch],
) -> Result<(), JobError>
where
    E: Executor<'e, Database = Any>,
{
    if published.is_empty() {
        return Ok(());
    }
    let pairs: Vec<String> = (0..published.len())
        .map(|n| {
            format!(
                "(CAST(${} AS BIGINT), CAST(${} AS BIGINT))",
                2 * n + 1,
                2 * n + 2
            )
        })
        .collect();
    let sql = format!(
        "WITH published (id, attempt) AS (VALUES {}) \
         UPDATE jobs SET dispatched_attempt = published.attempt FROM published \
         WHERE jobs.id = published.id \
           AND COALESCE(jobs.dispatched_attempt, 0) < published.attempt",
        pairs.join(", ")
    );
    let mut statement = query(AssertSqlSafe(sql.as_str()));
    for dispatch in published {
        statement = statement
            .bind(dispatch.job_id.as_i64())
            .bind(i64::from(dispatch.attempt));
    }
    statement.execute(executor).await?;
    Ok(())
}

/// Leases each job of `attempts` (job id, attempt its message delivers) to `worker`, in
/// one statement, where the ledger expects exactly that attempt next and the job may
/// start now (due, not expired, not behind an earlier job with its ordering key). Jobs
/// not leased are absent from the answer.
pub(crate) async fn lease_delivered(
    tx: &mut Transaction,
    attempts: &[(Id, u32)],
    worker: &str,
    lease: Duration,
    now: SqlNow,
) -> Result<Vec<LeasedJob>, JobError> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    // $1-$3 as named below, then one (id, attempt) pair per message.
    let pairs: Vec<String> = (0..attempts.len())
        .map(|n| format!("(${}, ${})", 4 + 2 * n, 5 + 2 * n))
        .collect();
    let sql = format!(
        "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_until = {now} + $1, \
           worker = $2, started_at = {now}, updated_at = {now} \
         WHERE state = 'available' AND run_at <= {now} \
           AND (expires_at IS NULL OR expires_at > {now}) \
           AND (id, attempt + 1) IN (VALUES {pairs}) \
           AND id IN (SELECT j.id FROM jobs j WHERE j.state = 'available' \
                      AND (j.ordering_key IS NULL OR NOT {ORDERING_BLOCKED})) \
         RETURNING {LEASED_COLUMNS}",
        now = now.sql(3),
        pairs = pairs.join(", ")
    );
    let mut statement = query(AssertSqlSafe(sql.as_str()))
        .bind(micros(lease))
        .bind(worker)
        .bind(now.bind());
    for (id, attempt) in attempts {
        statement = statement.bind(id.as_i64()).bind(i64::from(*attempt));
    }
    let rows = statement.fetch_all(&mut **tx).await?;
    rows.iter().map(leased_from_row).collect()
}

/// A message for `attempt` of job `id` was dropped without leasing it: if the job still
/// waits for that attempt, let the relay publish it again once it can start.
pub(crate) async fn redispatch(
    db: &loadstar_store::Database,
    id: Id,
    attempt: u32,
) -> Result<(), JobError> {
    query(
        "UPDATE jobs SET dispatched_attempt = attempt \
         WHERE id = $1 AND state = 'available' AND dispatched_attempt = $2",
    )
    .bind(id.as_i64())
    .bind(i64::from(attempt))
    .execute(db.writer())
    .await?;
    Ok(())
}

/// The broker let the message of job `id` expire: the job is dead if its time to live
/// has passed by the database's clock too. `false` if it has not (the broker's clock
/// disagrees), so the caller publishes it again.
pub(crate) async fn expire(
    db: &loadstar_store::Database,
    id: Id,
    now: SqlNow,
) -> Result<bool, JobError> {
    let expired = query(AssertSqlSafe(format!(
        "UPDATE jobs SET state = 'dead', finished_at = {now}, updated_at = {now}, \
           last_error = 'expired before a worker started it' \
         WHERE id = $1 AND state = 'available' AND expires_at IS NOT NULL AND expires_at <= {now}",
        now = now.sql(2)
    )))
    .bind(id.as_i64())
    .bind(now.bind())
    .execute(db.writer())
    .await?
    .rows_affected();
    Ok(expired > 0)
}
