//! Acknowledgements of the SQL queue, written in batches.
//!
//! A worker acknowledges each job on its own ([`crate::JobQueue::complete`]), and each
//! acknowledgement used to be its own transaction: two statements and a commit (an fsync
//! on PostgreSQL) per job, which capped a busy queue at about two thousand jobs a second.
//! Here every `complete` call hands its job to one writer task per queue and waits for
//! that job's own answer. The writer takes whatever acknowledgements are waiting (up to
//! [`MAX_BATCH`]) and settles them with one statement batch, so concurrent
//! acknowledgements share a commit while a lone one is written at once, without waiting
//! for company.
//!
//! Nothing about the contract changes: each job is still acknowledged only after its
//! handler succeeded (its caller waits for the commit), the lease guard (same worker,
//! same attempt, still running) is checked per job inside the statement, a job whose
//! lease was lost gets `false`, and each completed attempt is recorded in
//! `job_attempts` in the same transaction as the state change. The finishing time is the
//! database's ([`crate::clock`]), the same for the job and its attempt record.

use crate::clock::SqlNow;
use crate::error::JobError;
use crate::model::LeasedJob;
use loadstar_store::sql::{query, Any, AssertSqlSafe, Row};
use loadstar_store::{Backend, Database};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use std::collections::HashSet;
use tokio::sync::{mpsc, oneshot};

/// Most acknowledgements settled by one statement (3 bound parameters each, far below
/// either engine's limit on parameters).
pub(crate) const MAX_BATCH: usize = 512;
const _: () = assert!(MAX_BATCH.is_power_of_two());

/// One job to acknowledge and where its answer goes.
pub(crate) struct AckRequest {
    pub(crate) id: i64,
    pub(crate) worker: String,
    pub(crate) attempt: i64,
    pub(crate) reply: oneshot::Sender<Result<bool, JobError>>,
}

impl AckRequest {
    pub(crate) fn new(job: &LeasedJob) -> (Self, oneshot::Receiver<Result<bool, JobError>>) {
        let (reply, answer) = oneshot::channel();
        let request = Self {
            id: job.id.as_i64(),
            worker: job.worker.clone(),
            attempt: i64::from(job.attempt),
            reply,
        };
        (request, answer)
    }
}

/// Settles acknowledgements until every sender is gone. `now` stamps each batch.
pub(crate) async fn run(
    db: Database,
    now: impl Fn() -> SqlNow,
    mut requests: mpsc::UnboundedReceiver<AckRequest>,
) {
    let mut batch: Vec<AckRequest> = Vec::new();
    let mut deferred: Vec<AckRequest> = Vec::new();
    loop {
        if deferred.is_empty() {
            match requests.recv().await {
                Some(request) => batch.push(request),
                None => return,
            }
        } else {
            batch.append(&mut deferred);
        }
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        // The same job twice in one statement would answer `true` to both; the second
        // goes in the next batch, where the guard answers it `false` as it should.
        let mut seen = HashSet::with_capacity(batch.len());
        let (unique, repeated): (Vec<_>, Vec<_>) =
            batch.drain(..).partition(|request| seen.insert(request.id));
        deferred = repeated;
        match settle(&db, now(), &unique).await {
            Ok(held) => {
                for request in unique {
                    let _ = request.reply.send(Ok(held.contains(&request.id)));
                }
            }
            Err(error) => {
                // Each waiter gets the batch's error as it is: same kind, same message.
                for request in unique {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// `sql` with now and the leases of `batch` bound.
fn bind_leases(sql: &str, now: SqlNow, batch: &[AckRequest]) -> Query<'static, Any, AnyArguments> {
    let mut statement = query(AssertSqlSafe(sql)).bind(now.bind());
    for request in batch {
        statement = statement
            .bind(request.id)
            .bind(request.worker.clone())
            .bind(request.attempt);
    }
    for _ in batch.len()..padded_len(batch.len()) {
        statement = statement.bind(NO_JOB).bind(String::new()).bind(0_i64);
    }
    statement
}

/// The id of the padding leases: ids are positive.
const NO_JOB: i64 = 0;

fn padded_len(len: usize) -> usize {
    len.next_power_of_two().min(MAX_BATCH.max(len))
}

/// Completes the jobs of `batch` that still hold their lease and records their attempts;
/// returns the ids it completed.
async fn settle(
    db: &Database,
    now: SqlNow,
    batch: &[AckRequest],
) -> Result<HashSet<i64>, JobError> {
    // $1 is the pinned now; the leases to check follow, three parameters per job. The list
    // is padded to a power of two with leases no job holds (id 0), so a connection
    // prepares at most ten shapes of this statement instead of one per batch size.
    let leases: Vec<String> = (0..padded_len(batch.len()))
        .map(|n| format!("(${}, ${}, ${})", 3 * n + 2, 3 * n + 3, 3 * n + 4))
        .collect();
    // Both engines name the columns of a VALUES list column1, column2, ...
    let complete = format!(
        "UPDATE jobs SET state = 'completed', finished_at = {now}, updated_at = {now}, \
           lease_until = NULL, last_error = NULL \
         FROM (VALUES {leases}) AS lease \
         WHERE jobs.id = lease.column1 AND jobs.worker = lease.column2 \
           AND jobs.attempt = lease.column3 AND jobs.state = 'running' \
         RETURNING jobs.id, jobs.attempt, jobs.worker, jobs.started_at, jobs.finished_at",
        now = now.sql(1),
        leases = leases.join(", ")
    );
    match db.backend() {
        Backend::Postgres => {
            // One statement, so one round trip and one commit: the state change and the
            // attempt record are atomic without an explicit transaction.
            let sql = format!(
                "WITH completed AS ({complete}), \
                 recorded AS (INSERT INTO job_attempts \
                   (job_id, attempt, worker, started_at, finished_at, outcome, error) \
                   SELECT id, attempt, worker, started_at, finished_at, 'completed', NULL FROM completed) \
                 SELECT id FROM completed"
            );
            let rows = bind_leases(&sql, now, batch).fetch_all(db.writer()).await?;
            rows.iter()
                .map(|row| row.try_get::<i64, _>("id").map_err(JobError::from))
                .collect()
        }
        Backend::Sqlite => {
            // SQLite has no data-modifying CTE: update, then record what it returned, in
            // one transaction (SQLite has one writer, so nothing runs in between).
            let mut tx = db.writer().begin().await?;
            let rows = bind_leases(&complete, now, batch)
                .fetch_all(&mut *tx)
                .await?;
            let mut completed = HashSet::with_capacity(rows.len());
            if !rows.is_empty() {
                // Five parameters per attempt; its finishing time is the one the update stamped.
                let values: Vec<String> = (0..rows.len())
                    .map(|n| {
                        let p = 5 * n + 1;
                        format!(
                            "(${p}, ${}, ${}, ${}, ${}, 'completed', NULL)",
                            p + 1,
                            p + 2,
                            p + 3,
                            p + 4
                        )
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO job_attempts \
                     (job_id, attempt, worker, started_at, finished_at, outcome, error) VALUES {}",
                    values.join(", ")
                );
                let mut record = query(AssertSqlSafe(sql.as_str()));
                for row in &rows {
                    let id: i64 = row.try_get("id")?;
                    completed.insert(id);
                    record = record
                        .bind(id)
                        .bind(row.try_get::<i64, _>("attempt")?)
                        .bind(row.try_get::<String, _>("worker")?)
                        .bind(row.try_get::<i64, _>("started_at")?)
                        .bind(row.try_get::<i64, _>("finished_at")?);
                }
                record.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(completed)
        }
    }
}
