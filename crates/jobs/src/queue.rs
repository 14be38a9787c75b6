//! The contract every queue backend keeps.

use crate::error::JobError;
use crate::model::{DeadKindCount, Job, JobState, LeasedJob, NewJob, QueueCounts};
use crate::retry_policy::RetryPolicy;
use async_trait::async_trait;
use loadstar_core::{Id, Timestamp};
use loadstar_store::sql::Transaction;
use std::time::Duration;
use tokio::sync::broadcast;

/// A durable job queue with leased, at-least-once delivery.
///
/// Every method that acts on a leased job checks that the caller still holds the lease
/// (same worker, same attempt, still running): a worker whose lease expired and whose job
/// was redelivered can no longer complete or fail it, so a slow worker never overwrites
/// the outcome of the one that took over.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Enqueues on its own. Returns the job's id (the existing one for a unique key still
    /// held).
    async fn enqueue(&self, job: NewJob) -> Result<Id, JobError>;

    /// Enqueues inside the caller's database transaction: the job exists if and only if
    /// the transaction commits (a business write and its job never part).
    async fn enqueue_in(&self, tx: &mut Transaction, job: NewJob) -> Result<Id, JobError>;

    /// Leases up to `limit` due jobs of `queue` to `worker` for `lease`. Jobs whose lease
    /// has expired are first made available again (or dead, if that was their last
    /// attempt), and jobs past their time to live go to the error queue.
    async fn fetch(
        &self,
        queue: &str,
        worker: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<LeasedJob>, JobError>;

    /// Extends the lease of a running job. `None` if the lease was already lost.
    async fn heartbeat(
        &self,
        job: &LeasedJob,
        lease: Duration,
    ) -> Result<Option<Timestamp>, JobError>;

    /// Acknowledges success. `false` if the lease was lost (the job is someone else's now).
    async fn complete(&self, job: &LeasedJob) -> Result<bool, JobError>;

    /// Records a failed attempt and schedules the next one by `policy`, or moves the job
    /// to the error queue (or discards it) after its last attempt. Returns the job's new
    /// state (`None` for discarded), or `Err(NotFound)` if the lease was lost.
    async fn fail(
        &self,
        job: &LeasedJob,
        error: &str,
        policy: &RetryPolicy,
    ) -> Result<Option<JobState>, JobError>;

    /// The job with its attempt history.
    async fn get(&self, id: Id) -> Result<Option<Job>, JobError>;

    /// The error queue, oldest first, optionally filtered, keyset-paginated by id.
    async fn dead_jobs(
        &self,
        queue: Option<&str>,
        kind: Option<&str>,
        after: Option<Id>,
        limit: u32,
    ) -> Result<Vec<Job>, JobError>;

    /// Moves a dead job back to the queue with a fresh set of attempts. `false` if no
    /// dead job has this id.
    async fn retry_dead(&self, id: Id) -> Result<bool, JobError>;

    /// Deletes a dead job and its history. `false` if no dead job has this id.
    async fn discard_dead(&self, id: Id) -> Result<bool, JobError>;

    /// Jobs by queue and state.
    async fn counts(&self) -> Result<Vec<QueueCounts>, JobError>;

    /// Dead jobs by queue and kind. The default pages through [`JobQueue::dead_jobs`];
    /// backends that can count in one query should.
    async fn dead_counts_by_kind(&self) -> Result<Vec<DeadKindCount>, JobError> {
        let mut counts: std::collections::BTreeMap<(String, String), u64> =
            std::collections::BTreeMap::new();
        let mut after = None;
        loop {
            let page = self.dead_jobs(None, None, after, 500).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for job in &page {
                *counts
                    .entry((job.queue.clone(), job.kind.clone()))
                    .or_default() += 1;
            }
        }
        Ok(counts
            .into_iter()
            .map(|((queue, kind), dead)| DeadKindCount { queue, kind, dead })
            .collect())
    }

    /// Names of queues that just received jobs, pushed by the backend so idle workers
    /// start them at once instead of at their next poll. `None` where the backend has no
    /// such channel; workers then rely on polling alone. Notifications are a hint: a
    /// missed one only delays a job until the next poll.
    fn subscribe(&self) -> Option<broadcast::Receiver<String>> {
        None
    }
}
