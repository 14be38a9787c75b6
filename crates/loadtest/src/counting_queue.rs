//! A [`JobQueue`] decorator that counts acknowledged jobs, so the benchmark knows when
//! a backlog is drained without asking the backend (a `COUNT(*)` per poll would load the
//! very database being measured, and a broker backend has no such query).

use async_trait::async_trait;
use loadstar_core::{Id, Timestamp};
use loadstar_jobs::{
    DeadKindCount, Job, JobError, JobQueue, JobState, LeasedJob, NewJob, QueueCounts, RetryPolicy,
};
use loadstar_store::sql::Transaction;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Delegates everything to `inner`; counts `complete` calls that held their lease.
pub struct CountingQueue {
    inner: Arc<dyn JobQueue>,
    completed: AtomicU64,
}

impl CountingQueue {
    pub fn new(inner: Arc<dyn JobQueue>) -> Self {
        Self {
            inner,
            completed: AtomicU64::new(0),
        }
    }

    /// Jobs acknowledged so far.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl JobQueue for CountingQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Id, JobError> {
        self.inner.enqueue(job).await
    }

    async fn enqueue_in(&self, tx: &mut Transaction, job: NewJob) -> Result<Id, JobError> {
        self.inner.enqueue_in(tx, job).await
    }

    async fn fetch(
        &self,
        queue: &str,
        worker: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<LeasedJob>, JobError> {
        self.inner.fetch(queue, worker, lease, limit).await
    }

    async fn heartbeat(
        &self,
        job: &LeasedJob,
        lease: Duration,
    ) -> Result<Option<Timestamp>, JobError> {
        self.inner.heartbeat(job, lease).await
    }

    async fn complete(&self, job: &LeasedJob) -> Result<bool, JobError> {
        let held = self.inner.complete(job).await?;
        if held {
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(held)
    }

    async fn fail(
        &self,
        job: &LeasedJob,
        error: &str,
        policy: &RetryPolicy,
    ) -> Result<Option<JobState>, JobError> {
        self.inner.fail(job, error, policy).await
    }

    async fn get(&self, id: Id) -> Result<Option<Job>, JobError> {
        self.inner.get(id).await
    }

    async fn dead_jobs(
        &self,
        queue: Option<&str>,
        kind: Option<&str>,
        after: Option<Id>,
        limit: u32,
    ) -> Result<Vec<Job>, JobError> {
        self.inner.dead_jobs(queue, kind, after, limit).await
    }

    async fn retry_dead(&self, id: Id) -> Result<bool, JobError> {
        self.inner.retry_dead(id).await
    }

    async fn discard_dead(&self, id: Id) -> Result<bool, JobError> {
        self.inner.discard_dead(id).await
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>, JobError> {
        self.inner.counts().await
    }

    async fn dead_counts_by_kind(&self) -> Result<Vec<DeadKindCount>, JobError> {
        self.inner.dead_counts_by_kind().await
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<String>> {
        self.inner.subscribe()
    }
}
