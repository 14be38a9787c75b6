//! The relay: publishes jobs that are due and have no message yet, with publisher
//! confirms, then records them as dispatched — the outbox half of transactional enqueue.
//!
//! A job enqueued inside a business transaction is only a ledger row until that
//! transaction commits; the relay finds it then (woken by the enqueue, by PostgreSQL's
//! `NOTIFY` from any process, or by its poll) and publishes it. Rows are marked only
//! after the broker confirmed every message of the batch, in the same transaction that
//! selected them, so a crash in between publishes a message twice (the ledger drops the
//! copy) but never loses one. Retries, delayed jobs, lease expiries and operator retries
//! all become due rows again and take the same path.

use super::broker::{unavailable, Broker};
use super::ledger;
use super::message::Dispatch;
use crate::error::JobError;
use crate::queue::JobQueue;
use crate::sql_queue::SqlJobQueue;
use crate::worker::next_wake_up;
use lapin::options::BasicPublishOptions;
use lapin::Confirmation;
use loadstar_core::Id;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Rows published per transaction.
const BATCH: u32 = 256;
/// Longest pause after a failed pass (broker or database down).
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) struct Relay {
    pub ledger: SqlJobQueue,
    pub broker: Arc<Broker>,
    pub wake: Arc<Notify>,
    /// How often to look for due rows without being woken (delayed jobs, retries).
    pub poll_interval: Duration,
}

impl Relay {
    /// Publishes due rows until `stop`.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut notifications = JobQueue::subscribe(&self.ledger);
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.drain().await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => {
                    tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "job relay cannot publish; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.poll_interval) => {}
                Some(_) = next_wake_up(&mut notifications) => {}
            }
        }
    }

    /// Passes until no due row is left.
    async fn drain(&self) -> Result<(), JobError> {
        while self.pass().await? == BATCH as usize {}
        Ok(())
    }

    /// Publishes one batch; returns how many rows it dispatched.
    async fn pass(&self) -> Result<usize, JobError> {
        let db = self.ledger.database();
        let mut tx = db.writer().begin().await?;
        let due =
            ledger::due_for_dispatch(&mut tx, self.ledger.now(), BATCH, self.ledger.row_locking())
                .await?;
        if due.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        self.publish_confirmed(&due).await?;
        let ids: Vec<Id> = due.iter().map(|dispatch| dispatch.job_id).collect();
        ledger::mark_dispatched(&mut tx, &ids).await?;
        tx.commit().await?;
        tracing::debug!(published = due.len(), "job relay published");
        Ok(due.len())
    }

    /// Publishes every message, then waits for the broker to confirm each one.
    async fn publish_confirmed(&self, due: &[Dispatch]) -> Result<(), JobError> {
        let session = self.broker.session().await?;
        let outcome = async {
            let mut confirms = Vec::with_capacity(due.len());
            for dispatch in due {
                self.broker.ensure_queue(&session, &dispatch.queue).await?;
                let confirm = session
                    .publisher
                    .basic_publish(
                        self.broker.topology.jobs_exchange().into(),
                        dispatch.queue.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &[],
                        dispatch.properties(),
                    )
                    .await
                    .map_err(unavailable)?;
                confirms.push(confirm);
            }
            for confirm in confirms {
                match confirm.await.map_err(unavailable)? {
                    Confirmation::Ack(None) => {}
                    Confirmation::Ack(Some(_)) => {
                        return Err(JobError::Unavailable(
                            "rabbitmq could not route a job to its queue".to_owned(),
                        ))
                    }
                    Confirmation::Nack(_) | Confirmation::NotRequested => {
                        return Err(JobError::Unavailable(
                            "rabbitmq did not confirm a published job".to_owned(),
                        ))
                    }
                }
            }
            Ok(())
        }
        .await;
        if outcome.is_err() {
            self.broker.discard(&session).await;
        }
        outcome
    }
}
