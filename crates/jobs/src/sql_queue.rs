//! The queue in the domain database: SQLite (embedded) or PostgreSQL.
//!
//! One set of statements serves both engines; the only difference is how concurrent
//! fetchers avoid each other. PostgreSQL locks the chosen rows with
//! `FOR UPDATE SKIP LOCKED`, so fetchers on many nodes take disjoint jobs without
//! waiting; SQLite has a single writer, so fetches are already serialised.
//!
//! Two things keep a busy queue cheap: acknowledgements are written in batches by one
//! writer task per queue ([`crate::ack_batcher`]), and the sweep for expired leases and
//! time-to-live runs at most once per [`SWEEP_INTERVAL`] per queue instead of in every
//! fetch (an expired lease is reclaimed at most that much later).
//!
//! Every time that decides who owns a job or when it is due is read by the statement
//! from the database server's clock ([`crate::clock`]), never bound from this node's.

use crate::ack_batcher::{self, AckRequest};
use crate::clock::{micros, Clock, SqlNow};
use crate::error::JobError;
use crate::model::{
    Attempt, AttemptOutcome, DeadKindCount, Job, JobState, LeasedJob, NewJob, QueueCounts,
};
use crate::pg_notifier::{PgNotifier, CHANNEL};
use crate::queue::JobQueue;
use crate::retry_policy::{Exhausted, RetryPolicy};
use async_trait::async_trait;
use loadstar_core::{Id, IdGenerator, Timestamp};
use loadstar_store::sql::{query, Any, AnyRow, AssertSqlSafe, Row, Transaction};
use loadstar_store::{Backend, Database};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often a queue is swept for expired leases and time-to-live at most (by this
/// process's clock: it only paces the sweeps, which read the database's). The sweep reads indexes only, but it is three statements; in every
/// fetch of a busy queue they cost more than the fetch itself.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Largest payload stored inline; bigger ones belong in object storage (claim check).
pub const MAX_INLINE_PAYLOAD: usize = 256 * 1024;

const JOB_COLUMNS: &str = "id, queue, kind, payload, priority, state, run_at, attempt, \
    max_attempts, last_error, created_at, finished_at";
pub(crate) const LEASED_COLUMNS: &str =
    "id, queue, kind, payload, attempt, max_attempts, lease_until, \
    worker, created_at, run_at, trace_context";

/// [`JobQueue`] on a [`Database`].
#[derive(Clone)]
pub struct SqlJobQueue {
    db: Database,
    ids: Arc<IdGenerator>,
    clock: Arc<dyn Clock>,
    notifier: Arc<PgNotifier>,
    /// Job starts per second allowed per queue, across every process sharing the database.
    rate_limits: Arc<HashMap<String, u32>>,
    /// When each queue was last swept, by `clock`'s local time.
    last_sweeps: Arc<Mutex<HashMap<String, Timestamp>>>,
    /// The acknowledgement writer, started by the first `complete` (and again if it
    /// stopped: its runtime ended, or it panicked); it stops when the last clone of this
    /// queue is dropped.
    acks: Arc<Mutex<Option<mpsc::UnboundedSender<AckRequest>>>>,
}

impl SqlJobQueue {
    pub fn new(db: Database, ids: Arc<IdGenerator>, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            ids,
            clock,
            notifier: Arc::new(PgNotifier::default()),
            rate_limits: Arc::new(HashMap::new()),
            last_sweeps: Arc::new(Mutex::new(HashMap::new())),
            acks: Arc::new(Mutex::new(None)),
        }
    }

    /// Whether `queue` is due a sweep at `now`; if so, marks it swept so concurrent
    /// fetchers of this process do not sweep it too.
    fn sweep_due(&self, queue: &str, now: Timestamp) -> bool {
        let mut last_sweeps = self
            .last_sweeps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let interval = i64::try_from(SWEEP_INTERVAL.as_micros()).unwrap_or(i64::MAX);
        let due = last_sweeps.get(queue).is_none_or(|last| {
            let since = now.unix_micros() - last.unix_micros();
            // A clock that went backwards must not suspend sweeping.
            since >= interval || since < 0
        });
        if due {
            last_sweeps.insert(queue.to_owned(), now);
        }
        due
    }

    /// The channel to the acknowledgement writer, starting one if none is running.
    fn ack_writer(&self) -> mpsc::UnboundedSender<AckRequest> {
        let mut acks = self
            .acks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match acks.as_ref() {
            Some(sender) if !sender.is_closed() => sender.clone(),
            _ => {
                let (sender, requests) = mpsc::unbounded_channel();
                let clock = Arc::clone(&self.clock);
                let backend = self.db.backend();
                tokio::spawn(ack_batcher::run(
                    self.db.clone(),
                    move || SqlNow::new(backend, clock.as_ref()),
                    requests,
                ));
                *acks = Some(sender.clone());
                sender
            }
        }
    }

    /// Limits `queue` to `per_second` job starts per second, counted over every process
    /// that shares the database (each must be configured alike): the limit an external
    /// system imposes holds however many workers run.
    pub fn with_rate_limit(mut self, queue: impl Into<String>, per_second: u32) -> Self {
        Arc::make_mut(&mut self.rate_limits).insert(queue.into(), per_second);
        self
    }

    /// How many more jobs of `queue` may start now under its rate limit (`limit` if it
    /// has none). On PostgreSQL a transaction-scoped advisory lock per queue makes the
    /// count and the fetch that follows atomic across processes. The window ends at the
    /// database's now: the starts it counts were stamped by the database too, so every
    /// process counts the same second whatever its own clock says.
    pub(crate) async fn rate_allowance(
        &self,
        tx: &mut Transaction,
        queue: &str,
        limit: u32,
    ) -> Result<u32, JobError> {
        let Some(per_second) = self.rate_limits.get(queue).copied() else {
            return Ok(limit);
        };
        if self.db.backend() == Backend::Postgres {
            query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(queue)
                .execute(&mut **tx)
                .await?;
        }
        let now = self.now();
        let started: i64 = query(AssertSqlSafe(format!(
            "SELECT COUNT(*) AS started FROM jobs WHERE queue = $1 AND started_at > {} - 1000000",
            now.sql(2)
        )))
        .bind(queue)
        .bind(now.bind())
        .fetch_one(&mut **tx)
        .await?
        .try_get("started")?;
        let left = i64::from(per_second).saturating_sub(started).max(0);
        Ok(limit.min(u32::try_from(left).unwrap_or(u32::MAX)))
    }

    /// `FOR UPDATE SKIP LOCKED` where the engine has it.
    pub(crate) fn row_locking(&self) -> &'static str {
        match self.db.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// The database holding the jobs (the ledger other backends build on).
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// The queue's clock, for what shares the ledger (the RabbitMQ backend's consumers).
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Now, as the queue's statements read it (the database's clock unless the queue's
    /// clock pins the time).
    pub(crate) fn now(&self) -> SqlNow {
        SqlNow::new(self.db.backend(), self.clock.as_ref())
    }

    /// This process's time, for pacing its own work only (see [`Clock::local_now`]).
    pub(crate) fn local_now(&self) -> Timestamp {
        self.clock.local_now()
    }

    /// [`SqlJobQueue::sweep`] in its own transaction, at most once per [`SWEEP_INTERVAL`]
    /// (as the SQL fetch does).
    pub(crate) async fn sweep_queue(&self, queue: &str) -> Result<(), JobError> {
        if !self.sweep_due(queue, self.local_now()) {
            return Ok(());
        }
        let mut tx = self.db.writer().begin().await?;
        self.sweep(&mut tx, queue).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Expired leases back to available (or dead after the last attempt), each recorded
    /// as a `lease_expired` attempt; unstarted jobs past their time to live to dead.
    async fn sweep(&self, tx: &mut Transaction, queue: &str) -> Result<(), JobError> {
        let now = self.now();
        // The attempts are recorded first (the update forgets the worker); the update
        // then uses the very instant the insert read, so it moves the jobs just recorded
        // and no lease that ran out in between.
        let recorded = query(AssertSqlSafe(format!(
            "INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error) \
             SELECT id, attempt, worker, started_at, {now}, 'lease_expired', 'the worker stopped renewing its lease' \
             FROM jobs WHERE queue = $1 AND state = 'running' AND lease_until <= {now} \
             RETURNING finished_at",
            now = now.sql(2)
        )))
        .bind(queue)
        .bind(now.bind())
        .fetch_all(&mut **tx)
        .await?;
        if let Some(first) = recorded.first() {
            let swept_at =
                now.pinned_at(Timestamp::from_unix_micros(first.try_get("finished_at")?));
            query(AssertSqlSafe(format!(
                "UPDATE jobs SET \
                   state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'available' END, \
                   finished_at = CASE WHEN attempt >= max_attempts THEN {now} ELSE NULL END, \
                   run_at = {now}, lease_until = NULL, worker = NULL, updated_at = {now}, \
                   last_error = 'the worker stopped renewing its lease' \
                 WHERE queue = $1 AND state = 'running' AND lease_until <= {now}",
                now = swept_at.sql(2)
            )))
            .bind(queue)
            .bind(swept_at.bind())
            .execute(&mut **tx)
            .await?;
        }
        query(AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'dead', finished_at = {now}, updated_at = {now}, \
               last_error = 'expired before a worker started it' \
             WHERE queue = $1 AND state = 'available' AND expires_at IS NOT NULL AND expires_at <= {now}",
            now = now.sql(2)
        )))
        .bind(queue)
        .bind(now.bind())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Records how an attempt ended and moves the job, if `job` still holds its lease.
    async fn finish_attempt(
        &self,
        job: &LeasedJob,
        outcome: AttemptOutcome,
        error: Option<&str>,
        next: Next,
    ) -> Result<bool, JobError> {
        let now = self.now();
        let mut tx = self.db.writer().begin().await?;
        let guard = "id = $1 AND state = 'running' AND worker = $2 AND attempt = $3";
        let recorded = query(AssertSqlSafe(format!(
            "INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error) \
             SELECT id, attempt, worker, started_at, {now}, $5, $6 FROM jobs WHERE {guard} \
             RETURNING finished_at",
            now = now.sql(4)
        )))
        .bind(job.id.as_i64())
        .bind(&job.worker)
        .bind(i64::from(job.attempt))
        .bind(now.bind())
        .bind(outcome.as_str())
        .bind(error)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(recorded) = recorded else {
            return Ok(false);
        };
        // The job moves at the instant its attempt was recorded as finished.
        let now = now.pinned_at(Timestamp::from_unix_micros(
            recorded.try_get("finished_at")?,
        ));
        // Every statement binds exactly the placeholders it names ($1-$3: the lease guard,
        // $4: now); PostgreSQL rejects unused parameters.
        let sql = match next {
            Next::RetryAfter(_) => format!(
                "UPDATE jobs SET state = 'available', run_at = {now} + $5, updated_at = {now}, \
                 lease_until = NULL, worker = NULL, last_error = $6 WHERE {guard}",
                now = now.sql(4)
            ),
            Next::Dead => format!(
                "UPDATE jobs SET state = 'dead', finished_at = {now}, updated_at = {now}, \
                 lease_until = NULL, last_error = $5 WHERE {guard}",
                now = now.sql(4)
            ),
            Next::Discard => format!("DELETE FROM jobs WHERE {guard}"),
        };
        let statement = query(AssertSqlSafe(sql.as_str()))
            .bind(job.id.as_i64())
            .bind(job.worker.clone())
            .bind(i64::from(job.attempt));
        let statement = match next {
            Next::RetryAfter(backoff) => statement
                .bind(now.bind())
                .bind(micros(backoff))
                .bind(error.map(str::to_owned)),
            Next::Dead => statement.bind(now.bind()).bind(error.map(str::to_owned)),
            Next::Discard => statement,
        };
        statement.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The statement that leases up to `limit` due jobs of `queue` to `worker`.
    ///
    /// A job with an ordering key waits while an earlier job with the same key is still to
    /// run or running: jobs sharing a key run one at a time, in id order.
    fn lease_due_jobs<'q>(
        &self,
        queue: &'q str,
        worker: &'q str,
        lease: Duration,
        limit: u32,
    ) -> Query<'q, Any, AnyArguments> {
        let sql = match self.db.backend() {
            Backend::Postgres => &LEASE_DUE_JOBS_POSTGRES,
            Backend::Sqlite => &LEASE_DUE_JOBS_SQLITE,
        };
        let now = self.now();
        query(AssertSqlSafe(
            sql.get_or_init(|| lease_due_jobs_sql(self.row_locking(), now))
                .as_str(),
        ))
        .bind(micros(lease))
        .bind(worker)
        .bind(now.bind())
        .bind(queue)
        .bind(i64::from(limit))
    }

    /// The attempt histories of `ids`, in one query (a page of the error queue must not
    /// cost a round trip per job).
    async fn attempts_of(&self, ids: &[Id]) -> Result<HashMap<Id, Vec<Attempt>>, JobError> {
        let mut histories: HashMap<Id, Vec<Attempt>> = HashMap::new();
        if ids.is_empty() {
            return Ok(histories);
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT job_id, attempt, worker, started_at, finished_at, outcome, error FROM job_attempts \
             WHERE job_id IN ({}) ORDER BY job_id, attempt",
            placeholders.join(", ")
        );
        let mut statement = query(AssertSqlSafe(sql.as_str()));
        for id in ids {
            statement = statement.bind(id.as_i64());
        }
        for row in statement.fetch_all(self.db.consistent_reader()).await? {
            let outcome: String = row.try_get("outcome")?;
            let attempt = Attempt {
                attempt: to_u32(row.try_get("attempt")?),
                worker: row.try_get("worker")?,
                started_at: Timestamp::from_unix_micros(row.try_get("started_at")?),
                finished_at: Timestamp::from_unix_micros(row.try_get("finished_at")?),
                outcome: AttemptOutcome::from_stored(&outcome),
                error: row.try_get("error")?,
            };
            histories
                .entry(Id::from_i64(row.try_get("job_id")?))
                .or_default()
                .push(attempt);
        }
        Ok(histories)
    }
}

static LEASE_DUE_JOBS_POSTGRES: OnceLock<String> = OnceLock::new();
static LEASE_DUE_JOBS_SQLITE: OnceLock<String> = OnceLock::new();

/// `$1` the lease in microseconds, `$2` the worker, `$3` the pinned now, `$4` the queue,
/// `$5` the limit.
fn lease_due_jobs_sql(row_locking: &str, now: SqlNow) -> String {
    let now = now.sql(3);
    format!(
        "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_until = {now} + $1, \
           worker = $2, started_at = {now}, updated_at = {now} \
         WHERE id IN ( \
           SELECT j.id FROM jobs j \
           WHERE j.queue = $4 AND j.state = 'available' AND j.run_at <= {now} \
             AND (j.ordering_key IS NULL OR NOT EXISTS ( \
               SELECT 1 FROM jobs p WHERE p.ordering_key = j.ordering_key AND p.id < j.id \
                 AND p.state IN ('available', 'running'))) \
           ORDER BY j.priority DESC, j.run_at, j.id LIMIT $5 {row_locking} \
         ) RETURNING {LEASED_COLUMNS}, priority"
    )
}

/// Where a failed attempt sends the job (success goes through the ack writer).
#[derive(Debug, Clone, Copy)]
enum Next {
    /// Available again this long after the attempt finished.
    RetryAfter(Duration),
    Dead,
    Discard,
}

fn to_u32(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn job_from_row(row: &AnyRow) -> Result<Job, JobError> {
    let state: String = row.try_get("state")?;
    Ok(Job {
        id: Id::from_i64(row.try_get("id")?),
        queue: row.try_get("queue")?,
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        priority: row.try_get("priority")?,
        state: JobState::from_stored(&state)
            .ok_or_else(|| JobError::Backend(format!("unknown job state {state:?}")))?,
        run_at: Timestamp::from_unix_micros(row.try_get("run_at")?),
        attempt: to_u32(row.try_get("attempt")?),
        max_attempts: to_u32(row.try_get("max_attempts")?),
        last_error: row.try_get("last_error")?,
        created_at: Timestamp::from_unix_micros(row.try_get("created_at")?),
        finished_at: row
            .try_get::<Option<i64>, _>("finished_at")?
            .map(Timestamp::from_unix_micros),
        attempts: Vec::new(),
    })
}

pub(crate) fn leased_from_row(row: &AnyRow) -> Result<LeasedJob, JobError> {
    Ok(LeasedJob {
        id: Id::from_i64(row.try_get("id")?),
        queue: row.try_get("queue")?,
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        attempt: to_u32(row.try_get("attempt")?),
        max_attempts: to_u32(row.try_get("max_attempts")?),
        lease_until: Timestamp::from_unix_micros(row.try_get("lease_until")?),
        worker: row.try_get("worker")?,
        enqueued_at: Timestamp::from_unix_micros(row.try_get("created_at")?),
        due_at: Timestamp::from_unix_micros(row.try_get("run_at")?),
        trace_context: row.try_get("trace_context")?,
    })
}

fn validate(job: &NewJob) -> Result<(), JobError> {
    if job.queue.is_empty() || job.kind.is_empty() {
        return Err(JobError::Invalid(
            "queue and kind must not be empty".to_owned(),
        ));
    }
    if job.max_attempts == 0 {
        return Err(JobError::Invalid(
            "max_attempts must be at least 1".to_owned(),
        ));
    }
    if job.payload.len() > MAX_INLINE_PAYLOAD {
        return Err(JobError::Invalid(format!(
            "payload of {} bytes exceeds the inline limit of {MAX_INLINE_PAYLOAD}",
            job.payload.len()
        )));
    }
    Ok(())
}

#[async_trait]
impl JobQueue for SqlJobQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Id, JobError> {
        let mut tx = self.db.writer().begin().await?;
        let id = self.enqueue_in(&mut tx, job).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn enqueue_in(&self, tx: &mut Transaction, job: NewJob) -> Result<Id, JobError> {
        validate(&job)?;
        let now = self.now();
        let id = self.ids.next_id();
        if let Some(key) = &job.unique_key {
            let claimed = query(AssertSqlSafe(format!(
                "INSERT INTO job_unique_keys (unique_key, job_id, held_until) VALUES ($1, $2, {now} + $4) \
                 ON CONFLICT (unique_key) DO UPDATE SET job_id = excluded.job_id, held_until = excluded.held_until \
                 WHERE job_unique_keys.held_until <= {now} RETURNING job_id",
                now = now.sql(3)
            )))
            .bind(key)
            .bind(id.as_i64())
            .bind(now.bind())
            .bind(micros(job.unique_for))
            .fetch_optional(&mut **tx)
            .await?;
            if claimed.is_none() {
                let holder: i64 = query("SELECT job_id FROM job_unique_keys WHERE unique_key = $1")
                    .bind(key)
                    .fetch_one(&mut **tx)
                    .await?
                    .try_get("job_id")?;
                return Ok(Id::from_i64(holder));
            }
        }
        // A job without a time to live binds NULL for it, and NULL + now is NULL.
        query(AssertSqlSafe(format!(
            "INSERT INTO jobs (id, queue, kind, payload, priority, state, run_at, attempt, max_attempts, \
               ordering_key, expires_at, trace_context, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'available', {now} + $6, 0, $7, $8, {now} + $9, $10, {now}, {now})",
            now = now.sql(11)
        )))
        .bind(id.as_i64())
        .bind(&job.queue)
        .bind(&job.kind)
        .bind(&job.payload)
        .bind(job.priority)
        .bind(micros(job.delay))
        .bind(i64::from(job.max_attempts))
        .bind(&job.ordering_key)
        .bind(job.time_to_live.map(micros))
        .bind(&job.trace_context)
        .bind(now.bind())
        .execute(&mut **tx)
        .await?;
        if self.db.backend() == Backend::Postgres {
            // Delivered at commit, so listeners wake exactly when the job is visible.
            query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&job.queue)
                .execute(&mut **tx)
                .await?;
        }
        Ok(id)
    }

    async fn fetch(
        &self,
        queue: &str,
        worker: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<LeasedJob>, JobError> {
        let sweep = self.sweep_due(queue, self.local_now());
        let rate_limited = self.rate_limits.contains_key(queue);
        // A fetch that neither sweeps nor counts starts is one statement: it runs without
        // an explicit transaction (two round trips fewer on the hottest path).
        let rows = if sweep || rate_limited {
            let mut tx = self.db.writer().begin().await?;
            if sweep {
                self.sweep(&mut tx, queue).await?;
            }
            let limit = self.rate_allowance(&mut tx, queue, limit).await?;
            if limit == 0 {
                tx.commit().await?;
                return Ok(Vec::new());
            }
            let rows = self
                .lease_due_jobs(queue, worker, lease, limit)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            rows
        } else {
            self.lease_due_jobs(queue, worker, lease, limit)
                .fetch_all(self.db.writer())
                .await?
        };
        let mut leased: Vec<(i64, LeasedJob)> = rows
            .iter()
            .map(|row| Ok((row.try_get("priority")?, leased_from_row(row)?)))
            .collect::<Result<_, JobError>>()?;
        leased.sort_by(|(pa, a), (pb, b)| pb.cmp(pa).then(a.id.cmp(&b.id)));
        Ok(leased.into_iter().map(|(_, job)| job).collect())
    }

    async fn heartbeat(
        &self,
        job: &LeasedJob,
        lease: Duration,
    ) -> Result<Option<Timestamp>, JobError> {
        let now = self.now();
        let extended = query(AssertSqlSafe(format!(
            "UPDATE jobs SET lease_until = {} + $5 \
             WHERE id = $1 AND state = 'running' AND worker = $2 AND attempt = $3 \
             RETURNING lease_until",
            now.sql(4)
        )))
        .bind(job.id.as_i64())
        .bind(&job.worker)
        .bind(i64::from(job.attempt))
        .bind(now.bind())
        .bind(micros(lease))
        .fetch_optional(self.db.writer())
        .await?;
        extended
            .map(|row| Ok(Timestamp::from_unix_micros(row.try_get("lease_until")?)))
            .transpose()
    }

    async fn complete(&self, job: &LeasedJob) -> Result<bool, JobError> {
        let stopped = || JobError::Unavailable("the acknowledgement writer stopped".to_owned());
        let (request, answer) = AckRequest::new(job);
        self.ack_writer().send(request).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn fail(
        &self,
        job: &LeasedJob,
        error: &str,
        policy: &RetryPolicy,
    ) -> Result<Option<JobState>, JobError> {
        let (next, state) = if job.attempt < job.max_attempts {
            (
                Next::RetryAfter(policy.backoff(job.attempt)),
                Some(JobState::Available),
            )
        } else {
            match policy.on_exhausted {
                Exhausted::DeadLetter | Exhausted::Alert => (Next::Dead, Some(JobState::Dead)),
                Exhausted::Discard => (Next::Discard, None),
            }
        };
        if self
            .finish_attempt(job, AttemptOutcome::Failed, Some(error), next)
            .await?
        {
            Ok(state)
        } else {
            Err(JobError::NotFound(job.id))
        }
    }

    async fn get(&self, id: Id) -> Result<Option<Job>, JobError> {
        let row = query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
        )))
        .bind(id.as_i64())
        .fetch_optional(self.db.consistent_reader())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut job = job_from_row(&row)?;
        job.attempts = self
            .attempts_of(&[id])
            .await?
            .remove(&id)
            .unwrap_or_default();
        Ok(Some(job))
    }

    async fn dead_jobs(
        &self,
        queue: Option<&str>,
        kind: Option<&str>,
        after: Option<Id>,
        limit: u32,
    ) -> Result<Vec<Job>, JobError> {
        let rows = query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'dead' AND id > $1 \
             AND ($2 = '' OR queue = $2) AND ($3 = '' OR kind = $3) ORDER BY id LIMIT $4"
        )))
        .bind(after.map_or(0, Id::as_i64))
        .bind(queue.unwrap_or_default())
        .bind(kind.unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(self.db.consistent_reader())
        .await?;
        let mut jobs: Vec<Job> = rows.iter().map(job_from_row).collect::<Result<_, _>>()?;
        let ids: Vec<Id> = jobs.iter().map(|job| job.id).collect();
        let mut histories = self.attempts_of(&ids).await?;
        for job in &mut jobs {
            job.attempts = histories.remove(&job.id).unwrap_or_default();
        }
        Ok(jobs)
    }

    async fn retry_dead(&self, id: Id) -> Result<bool, JobError> {
        let now = self.now();
        let moved = query(AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'available', run_at = {now}, max_attempts = attempt + max_attempts, \
               finished_at = NULL, lease_until = NULL, worker = NULL, expires_at = NULL, updated_at = {now} \
             WHERE id = $1 AND state = 'dead'",
            now = now.sql(2)
        )))
        .bind(id.as_i64())
        .bind(now.bind())
        .execute(self.db.writer())
        .await?
        .rows_affected();
        Ok(moved > 0)
    }

    async fn discard_dead(&self, id: Id) -> Result<bool, JobError> {
        let mut tx = self.db.writer().begin().await?;
        query("DELETE FROM job_attempts WHERE job_id = $1 AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND state = 'dead')")
            .bind(id.as_i64())
            .execute(&mut *tx)
            .await?;
        let deleted = query("DELETE FROM jobs WHERE id = $1 AND state = 'dead'")
            .bind(id.as_i64())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn dead_counts_by_kind(&self) -> Result<Vec<DeadKindCount>, JobError> {
        let rows = query(
            "SELECT queue, kind, COUNT(*) AS jobs FROM jobs WHERE state = 'dead' \
             GROUP BY queue, kind ORDER BY queue, kind",
        )
        .fetch_all(self.db.consistent_reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadKindCount {
                    queue: row.try_get("queue")?,
                    kind: row.try_get("kind")?,
                    dead: u64::try_from(row.try_get::<i64, _>("jobs")?).unwrap_or(0),
                })
            })
            .collect()
    }

    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        match self.db.backend() {
            Backend::Postgres => {
                let url: Arc<str> = Arc::from(self.db.connection_url());
                Some(self.notifier.subscribe(&url))
            }
            Backend::Sqlite => None,
        }
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>, JobError> {
        let rows = query(
            "SELECT queue, state, COUNT(*) AS jobs FROM jobs GROUP BY queue, state ORDER BY queue",
        )
        .fetch_all(self.db.consistent_reader())
        .await?;
        let mut counts: Vec<QueueCounts> = Vec::new();
        for row in &rows {
            let queue: String = row.try_get("queue")?;
            let state: String = row.try_get("state")?;
            let jobs = u64::try_from(row.try_get::<i64, _>("jobs")?).unwrap_or(0);
            if counts.last().is_none_or(|last| last.queue != queue) {
                counts.push(QueueCounts {
                    queue: queue.clone(),
                    ..QueueCounts::default()
                });
            }
            if let Some(entry) = counts.last_mut() {
                match JobState::from_stored(&state) {
                    Some(JobState::Available) => entry.available = jobs,
                    Some(JobState::Running) => entry.running = jobs,
                    Some(JobState::Completed) => entry.completed = jobs,
                    Some(JobState::Dead) => entry.dead = jobs,
                    None => {}
                }
            }
        }
        Ok(counts)
    }
}
