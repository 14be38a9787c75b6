//! The consumer of the dead-letter queue: what the broker gave up on is recorded in the
//! ledger before the broker forgets it.
//!
//! Two kinds of message arrive here. Jobs a worker moved to the error queue (rejected
//! after the ledger already says `dead`): nothing to do. Messages the broker let expire
//! (the job's time to live ran out while it waited): the ledger marks the job dead, or,
//! if by the database's clock the job has time left, the relay publishes it again.

use super::broker::{within, Broker, Session};
use super::consumer::DeliverySink;
use super::ledger;
use super::message::{addressed_attempt, death_reason};
use crate::clock::{Clock, SqlNow};
use crate::error::JobError;
use async_trait::async_trait;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use loadstar_store::Database;
use std::sync::Arc;
use tokio::sync::Notify;

pub(crate) struct DeadLetterSink {
    pub db: Database,
    pub clock: Arc<dyn Clock>,
    /// Wakes the relay when a job is to be published again.
    pub relay: Arc<Notify>,
    /// How long an ack may take (the broker's operation deadline).
    pub ack_deadline: std::time::Duration,
}

impl DeadLetterSink {
    async fn record(&self, delivery: &Delivery) -> Result<(), JobError> {
        let Some((job_id, attempt)) = addressed_attempt(&delivery.properties) else {
            return Ok(());
        };
        let reason = death_reason(&delivery.properties).unwrap_or_default();
        if reason == "expired" {
            let now = SqlNow::new(self.db.backend(), self.clock.as_ref());
            if ledger::expire(&self.db, job_id, now).await? {
                tracing::warn!(job_id = %job_id, "job expired in the broker before a worker started it");
            } else {
                ledger::redispatch(&self.db, job_id, attempt).await?;
                self.relay.notify_one();
            }
        }
        Ok(())
    }
}

#[async_trait]
impl DeliverySink for DeadLetterSink {
    async fn prepare(&self, _broker: &Broker, _session: &Session) -> Result<(), JobError> {
        // Declared with the shared topology on every new session.
        Ok(())
    }

    async fn deliver(&self, delivery: Delivery, _generation: u64) {
        match self.record(&delivery).await {
            Ok(()) => {
                let acking = delivery.acker.ack(BasicAckOptions::default());
                let _ = within(self.ack_deadline, "basic.ack", acking).await;
            }
            Err(error) => {
                // Keep it: the ledger is unreachable, and it must hear of this death.
                tracing::warn!(error = %error, "cannot record a dead-lettered job; requeued");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let options = BasicNackOptions {
                    multiple: false,
                    requeue: true,
                };
                let _ = within(
                    self.ack_deadline,
                    "basic.nack",
                    delivery.acker.nack(options),
                )
                .await;
            }
        }
    }

    fn session_lost(&self, _generation: u64) {}
}
