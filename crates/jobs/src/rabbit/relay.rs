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

use super::broker::Broker;
use super::ledger;
use super::message::Dispatch;
use crate::error::JobError;
use crate::queue::JobQueue;
use crate::sql_queue::SqlJobQueue;
use crate::worker::next_wake_up;
use lapin::options::BasicPublishOptions;
use lapin::Confirmation;
use loadstar_store::Backend;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
        let mut failing_since: Option<Instant> = None;
        loop {
            match self.drain().await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    if let Some(since) = failing_since.take() {
                        tracing::info!(
                            stalled_for_ms = since.elapsed().as_millis() as u64,
                            "job relay publishing again"
                        );
                    }
                }
                Err(error) => {
                    // One line when publishing stops; the retries are debug lines.
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        tracing::warn!(error = %error, "job relay cannot publish; due jobs wait in the ledger, retrying");
                    } else {
                        tracing::debug!(error = %error, retry_in_ms = backoff.as_millis() as u64, "job relay still cannot publish");
                    }
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
    ///
    /// On PostgreSQL the rows stay locked (`SKIP LOCKED` for other relays) from selection
    /// to mark. SQLite has one writer for everything, and a write transaction held across
    /// a broker round trip would stall every order for as long as the broker takes to
    /// answer (up to the operation deadline on a silent network), so there the rows are
    /// read, published, then marked in a statement of its own; a crash in between
    /// publishes them again, which the ledger turns away as it does any duplicate.
    async fn pass(&self) -> Result<usize, JobError> {
        let db = self.ledger.database();
        let now = self.ledger.now();
        if db.backend() == Backend::Sqlite {
            let due = ledger::due_for_dispatch(db.writer(), now, BATCH, "").await?;
            if !due.is_empty() {
                self.publish_confirmed(&due).await?;
                ledger::mark_dispatched(db.writer(), &due).await?;
            }
            return Ok(due.len());
        }
        let mut tx = db.writer().begin().await?;
        let due = ledger::due_for_dispatch(&mut *tx, now, BATCH, self.ledger.row_locking()).await?;
        if !due.is_empty() {
            self.publish_confirmed(&due).await?;
            ledger::mark_dispatched(&mut *tx, &due).await?;
        }
        tx.commit().await?;
        tracing::debug!(published = due.len(), "job relay published");
        Ok(due.len())
    }

    /// Publishes every message, then waits for the broker to confirm each one: all of
    /// them within one operation deadline, the batch's publishes within another.
    async fn publish_confirmed(&self, due: &[Dispatch]) -> Result<(), JobError> {
        let session = self.broker.session().await?;
        let outcome = async {
            let mut confirms = Vec::with_capacity(due.len());
            for dispatch in due {
                self.broker.ensure_queue(&session, &dispatch.queue).await?;
                let confirm = self
                    .broker
                    .within(
                        "basic.publish",
                        session.publisher.basic_publish(
                            self.broker.topology.jobs_exchange().into(),
                            dispatch.queue.as_str().into(),
                            BasicPublishOptions {
                                mandatory: true,
                                ..BasicPublishOptions::default()
                            },
                            &[],
                            dispatch.properties(),
                        ),
                    )
                    .await?;
                confirms.push(confirm);
            }
            let confirmations = self
                .broker
                .within(
                    "publisher confirms",
                    futures::future::try_join_all(confirms),
                )
                .await?;
            for confirmation in confirmations {
                match confirmation {
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
            self.broker.discard(&session);
        }
        outcome
    }
}
