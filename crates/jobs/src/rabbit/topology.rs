//! Names and declarations of everything the job system keeps on the broker.
//!
//! ```text
//! <prefix>.jobs (direct) ──routing key = queue──► <prefix>.q.<queue> (quorum)
//!                                                    │ rejected / expired
//!                                                    ▼
//!                              <prefix>.dead (fanout) ──► <prefix>.dead (quorum)
//! ```
//!
//! Quorum queues replicate every message over a majority of nodes and survive node loss;
//! the dead-letter exchange receives what a queue rejects or lets expire, so nothing
//! leaves a job queue without passing a consumer that records it in the ledger.

use super::broker::unavailable;
use crate::error::JobError;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use std::time::Duration;

/// The broker-side names of one deployment.
#[derive(Debug, Clone)]
pub(crate) struct Topology {
    prefix: String,
    /// Delete queues unused for this long, and exchanges with their last queue (tests;
    /// `None` in production).
    idle_queue_expiry: Option<Duration>,
}

impl Topology {
    pub(crate) fn new(prefix: impl Into<String>, idle_queue_expiry: Option<Duration>) -> Self {
        Self {
            prefix: prefix.into(),
            idle_queue_expiry,
        }
    }

    /// Where jobs are published, routed to their queue by name.
    pub(crate) fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    /// The broker queue of job queue `queue`.
    pub(crate) fn job_queue(&self, queue: &str) -> String {
        format!("{}.q.{queue}", self.prefix)
    }

    pub(crate) fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    pub(crate) fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The exchanges and the dead-letter queue every job queue needs.
    pub(crate) async fn declare_shared(&self, channel: &Channel) -> Result<(), JobError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            // With expiring queues (tests), exchanges go with their last binding too.
            auto_delete: self.idle_queue_expiry.is_some(),
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.jobs_exchange().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        channel
            .exchange_declare(
                self.dead_exchange().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        self.declare_quorum_queue(channel, &self.dead_queue(), None)
            .await?;
        channel
            .queue_bind(
                self.dead_queue().into(),
                self.dead_exchange().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)
    }

    /// The quorum queue of job queue `queue`, dead-lettering into the shared dead queue.
    pub(crate) async fn declare_job_queue(
        &self,
        channel: &Channel,
        queue: &str,
    ) -> Result<(), JobError> {
        let name = self.job_queue(queue);
        self.declare_quorum_queue(channel, &name, Some(&self.dead_exchange()))
            .await?;
        channel
            .queue_bind(
                name.into(),
                self.jobs_exchange().into(),
                queue.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)
    }

    async fn declare_quorum_queue(
        &self,
        channel: &Channel,
        name: &str,
        dead_letter_exchange: Option<&str>,
    ) -> Result<(), JobError> {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        if let Some(exchange) = dead_letter_exchange {
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(LongString::from(exchange)),
            );
        }
        if let Some(expiry) = self.idle_queue_expiry {
            let millis = i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX);
            arguments.insert("x-expires".into(), AMQPValue::LongLongInt(millis));
        }
        channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}
