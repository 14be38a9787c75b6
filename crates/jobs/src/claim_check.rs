//! Claim check: payloads too big for a queue message travel through object storage.
//!
//! [`ClaimCheckQueue`] decorates any [`JobQueue`]. On enqueue, a payload over the inline
//! limit is written to the object store under `jobs/claims/<random id>`, and the job
//! carries a [`ClaimTicket`] instead: a few dozen bytes naming the object, its size and
//! its SHA-256. Fetching, and reading a job for the admin API, swap the ticket back for
//! the bytes, so handlers and operators never see the difference.
//!
//! A ticket is [`TICKET_MAGIC`] followed by JSON. The magic begins with a zero byte, which
//! no Protocol Buffers message can start with (field number 0 is invalid); and a payload
//! that does begin with the magic is itself claim-checked, whatever its size, so a stored
//! payload that starts with the magic is always a ticket and never data.
//!
//! The object is deleted only once its job is settled for good: after `complete`
//! succeeded (a lost lease means another worker still needs it), after a discard, or after
//! an operator deleted the dead job. A job rolled back with its transaction, or deduped by
//! its unique key, leaves an orphan object behind; that costs storage, never correctness.

use crate::error::JobError;
use crate::model::{DeadKindCount, Job, JobState, LeasedJob, NewJob, QueueCounts};
use crate::queue::JobQueue;
use crate::retry_policy::RetryPolicy;
use async_trait::async_trait;
use loadstar_core::{Id, Timestamp};
use loadstar_store::sql::Transaction;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// The default inline limit: the largest payload the SQL queue stores in a row.
pub const DEFAULT_INLINE_LIMIT: usize = crate::sql_queue::MAX_INLINE_PAYLOAD;

/// The first bytes of every ticket.
pub const TICKET_MAGIC: &[u8] = b"\0loadstar-claim-check/v1\n";

/// Where claimed payloads live in the object store.
const CLAIMS_PREFIX: &str = "jobs/claims";

/// The pointer a claim-checked job carries instead of its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimTicket {
    /// The object's path in the store.
    pub path: String,
    /// The payload's length in bytes.
    pub size: u64,
    /// Hex SHA-256 of the payload, checked on every read.
    pub sha256: String,
}

impl ClaimTicket {
    /// The ticket in `payload`, `None` when it is an ordinary payload.
    pub fn from_payload(payload: &[u8]) -> Result<Option<Self>, JobError> {
        let Some(json) = payload.strip_prefix(TICKET_MAGIC) else {
            return Ok(None);
        };
        serde_json::from_slice(json)
            .map(Some)
            .map_err(|error| JobError::Backend(format!("malformed claim ticket: {error}")))
    }

    /// The ticket as a payload.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut payload = TICKET_MAGIC.to_vec();
        // Serialising three plain fields cannot fail.
        payload.extend(serde_json::to_vec(self).unwrap_or_default());
        payload
    }
}

/// A [`JobQueue`] that moves payloads over `limit` bytes into `store`.
pub struct ClaimCheckQueue {
    inner: Arc<dyn JobQueue>,
    store: Arc<dyn ObjectStore>,
    limit: usize,
    /// Objects of the deliveries (job, attempt) this process holds leases on, deleted once
    /// they settle.
    held: Mutex<HashMap<(Id, u32), ObjectPath>>,
}

impl ClaimCheckQueue {
    /// Wraps `inner`; payloads over `limit` bytes go to `store`.
    pub fn new(inner: Arc<dyn JobQueue>, store: Arc<dyn ObjectStore>, limit: usize) -> Self {
        Self {
            inner,
            store,
            limit,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<(Id, u32), ObjectPath>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes a too-big payload to the store and puts its ticket in its place.
    async fn check_in(&self, mut job: NewJob) -> Result<NewJob, JobError> {
        if job.payload.len() <= self.limit && !job.payload.starts_with(TICKET_MAGIC) {
            return Ok(job);
        }
        let path = format!("{CLAIMS_PREFIX}/{:032x}", rand::random::<u128>());
        let ticket = ClaimTicket {
            path: path.clone(),
            size: job.payload.len() as u64,
            sha256: hex::encode(Sha256::digest(&job.payload)),
        };
        let payload = std::mem::replace(&mut job.payload, ticket.to_payload());
        self.store
            .put(&ObjectPath::from(path.as_str()), PutPayload::from(payload))
            .await
            .map_err(storage_error)?;
        tracing::debug!(kind = %job.kind, path = %path, size = ticket.size, "payload claim-checked");
        Ok(job)
    }

    /// The payload a ticket points to, checked against its size and digest.
    async fn redeem(&self, ticket: &ClaimTicket) -> Result<Vec<u8>, JobError> {
        let bytes = self
            .store
            .get(&ObjectPath::from(ticket.path.as_str()))
            .await
            .map_err(storage_error)?
            .bytes()
            .await
            .map_err(storage_error)?;
        if bytes.len() as u64 != ticket.size || hex::encode(Sha256::digest(&bytes)) != ticket.sha256
        {
            return Err(JobError::Backend(format!(
                "claim-checked payload {} does not match its ticket",
                ticket.path
            )));
        }
        Ok(bytes.to_vec())
    }

    /// A stored job as the admin API should see it: payload resolved where it still
    /// exists. A completed job's object is gone by design; one that cannot be read is
    /// shown as its ticket (the admin API then shows the raw bytes) rather than hiding the
    /// job.
    async fn resolve_stored(&self, mut job: Job) -> Job {
        if job.state == JobState::Completed {
            return job;
        }
        match ClaimTicket::from_payload(&job.payload) {
            Ok(None) => {}
            Ok(Some(ticket)) => match self.redeem(&ticket).await {
                Ok(payload) => job.payload = payload,
                Err(error) => {
                    tracing::warn!(job_id = %job.id, path = %ticket.path, error = %error, "claim-checked payload unreadable")
                }
            },
            Err(error) => {
                tracing::warn!(job_id = %job.id, error = %error, "claim ticket unreadable")
            }
        }
        job
    }

    async fn delete(&self, path: &ObjectPath) {
        if let Err(error) = self.store.delete(path).await {
            tracing::warn!(path = %path, error = %error, "could not delete a claim-checked payload; it is now an orphan");
        }
    }
}

fn storage_error(error: object_store::Error) -> JobError {
    match error {
        object_store::Error::NotFound { path, .. } => {
            JobError::Backend(format!("claim-checked payload {path} is missing"))
        }
        other => JobError::Unavailable(format!("object storage: {other}")),
    }
}

#[async_trait]
impl JobQueue for ClaimCheckQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Id, JobError> {
        let job = self.check_in(job).await?;
        self.inner.enqueue(job).await
    }

    async fn enqueue_in(&self, tx: &mut Transaction, job: NewJob) -> Result<Id, JobError> {
        let job = self.check_in(job).await?;
        self.inner.enqueue_in(tx, job).await
    }

    async fn fetch(
        &self,
        queue: &str,
        worker: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<LeasedJob>, JobError> {
        let leased = self.inner.fetch(queue, worker, lease, limit).await?;
        let mut ready = Vec::with_capacity(leased.len());
        for mut job in leased {
            let redeemed = match ClaimTicket::from_payload(&job.payload) {
                Ok(None) => {
                    ready.push(job);
                    continue;
                }
                Ok(Some(ticket)) => self
                    .redeem(&ticket)
                    .await
                    .map(|payload| (ticket.path, payload)),
                Err(error) => Err(error),
            };
            match redeemed {
                Ok((path, payload)) => {
                    job.payload = payload;
                    self.held()
                        .insert((job.id, job.attempt), ObjectPath::from(path.as_str()));
                    ready.push(job);
                }
                Err(error) => {
                    // The handler cannot run without its payload: this counts as a failed
                    // attempt (retried with backoff, then the error queue).
                    tracing::warn!(job_id = %job.id, kind = %job.kind, error = %error, "claim-checked payload unavailable; attempt failed");
                    let message = format!("claim check: {error}");
                    if let Err(error) = self
                        .inner
                        .fail(&job, &message, &RetryPolicy::default())
                        .await
                    {
                        tracing::warn!(job_id = %job.id, error = %error, "could not record the failed attempt; the lease will expire");
                    }
                }
            }
        }
        Ok(ready)
    }

    async fn heartbeat(
        &self,
        job: &LeasedJob,
        lease: Duration,
    ) -> Result<Option<Timestamp>, JobError> {
        self.inner.heartbeat(job, lease).await
    }

    async fn complete(&self, job: &LeasedJob) -> Result<bool, JobError> {
        let held = self.inner.complete(job).await;
        let path = self.held().remove(&(job.id, job.attempt));
        // Only a recorded completion makes the payload unneeded: if the lease was lost or
        // the outcome not stored, the job runs again and needs it.
        if let (Ok(true), Some(path)) = (&held, path) {
            self.delete(&path).await;
        }
        held
    }

    async fn fail(
        &self,
        job: &LeasedJob,
        error: &str,
        policy: &RetryPolicy,
    ) -> Result<Option<JobState>, JobError> {
        let next = self.inner.fail(job, error, policy).await;
        let path = self.held().remove(&(job.id, job.attempt));
        if let (Ok(None), Some(path)) = (&next, path) {
            self.delete(&path).await;
        }
        next
    }

    async fn get(&self, id: Id) -> Result<Option<Job>, JobError> {
        match self.inner.get(id).await? {
            Some(job) => Ok(Some(self.resolve_stored(job).await)),
            None => Ok(None),
        }
    }

    async fn dead_jobs(
        &self,
        queue: Option<&str>,
        kind: Option<&str>,
        after: Option<Id>,
        limit: u32,
    ) -> Result<Vec<Job>, JobError> {
        let jobs = self.inner.dead_jobs(queue, kind, after, limit).await?;
        let mut resolved = Vec::with_capacity(jobs.len());
        for job in jobs {
            resolved.push(self.resolve_stored(job).await);
        }
        Ok(resolved)
    }

    async fn retry_dead(&self, id: Id) -> Result<bool, JobError> {
        self.inner.retry_dead(id).await
    }

    async fn discard_dead(&self, id: Id) -> Result<bool, JobError> {
        let ticket = match self.inner.get(id).await? {
            Some(job) => ClaimTicket::from_payload(&job.payload).ok().flatten(),
            None => None,
        };
        let discarded = self.inner.discard_dead(id).await?;
        if let (true, Some(ticket)) = (discarded, ticket) {
            self.delete(&ObjectPath::from(ticket.path.as_str())).await;
        }
        Ok(discarded)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_survives_a_round_trip_and_ordinary_payloads_are_not_tickets() {
        let ticket = ClaimTicket {
            path: "jobs/claims/abc".to_owned(),
            size: 3,
            sha256: "00".to_owned(),
        };
        let payload = ticket.to_payload();
        assert_eq!(
            ClaimTicket::from_payload(&payload).ok().flatten(),
            Some(ticket)
        );
        assert_eq!(ClaimTicket::from_payload(b"\x08\x01").ok().flatten(), None);
        assert!(ClaimTicket::from_payload(TICKET_MAGIC).is_err());
    }
}
