//! A broker consumer that keeps consuming: across lost connections, broker restarts and
//! cancelled consumers, until the backend stops.
//!
//! Waiting for the next message is the one broker wait without a deadline of its own: a
//! quiet queue is normal. It ends when the session is discarded (another operation on it
//! failed) or when the heartbeat finds the connection dead.

use super::broker::{unavailable, Broker, Session};
use crate::error::JobError;
use async_trait::async_trait;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Pause before consuming again after a failure (the broker also backs off connects).
const RESUME_AFTER: Duration = Duration::from_millis(200);

/// What a consumer does with its messages.
#[async_trait]
pub(crate) trait DeliverySink: Send + Sync + 'static {
    /// Declares what the consumer needs on a new session (its queue).
    async fn prepare(&self, broker: &Broker, session: &Session) -> Result<(), JobError>;
    /// Takes one message received on session `generation`.
    async fn deliver(&self, delivery: Delivery, generation: u64);
    /// Session `generation` is gone: messages of it can no longer be acknowledged.
    fn session_lost(&self, generation: u64);
}

/// Consumes `broker_queue` into `sink` with at most `prefetch` unacknowledged messages,
/// until `stop` is cancelled.
pub(crate) async fn consume_forever(
    broker: Arc<Broker>,
    sink: Arc<dyn DeliverySink>,
    broker_queue: String,
    prefetch: u16,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = consume_session(&broker, sink.as_ref(), &broker_queue, prefetch) => outcome,
        };
        match outcome {
            // The broker's own state change is logged once, by the broker.
            Err(error @ JobError::Unavailable(_)) => {
                tracing::debug!(queue = %broker_queue, error = %error, "rabbitmq consumer stopped; resuming");
            }
            Err(error) => {
                tracing::warn!(queue = %broker_queue, error = %error, "rabbitmq consumer stopped; resuming");
            }
            Ok(()) => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RESUME_AFTER) => {}
        }
    }
}

async fn consume_session(
    broker: &Broker,
    sink: &dyn DeliverySink,
    broker_queue: &str,
    prefetch: u16,
) -> Result<(), JobError> {
    let session = broker.session().await?;
    let outcome = async {
        sink.prepare(broker, &session).await?;
        let channel = broker
            .within("channel.open", session.connection.create_channel())
            .await?;
        broker
            .within(
                "basic.qos",
                channel.basic_qos(prefetch, BasicQosOptions::default()),
            )
            .await?;
        let mut consumer = broker
            .within(
                "basic.consume",
                channel.basic_consume(
                    broker_queue.into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await?;
        loop {
            let delivery = tokio::select! {
                () = session.lost() => {
                    return Err(JobError::Unavailable("rabbitmq session discarded".to_owned()));
                }
                delivery = consumer.next() => delivery,
            };
            let Some(delivery) = delivery else {
                return Err(JobError::Backend(format!(
                    "the broker cancelled the consumer of {broker_queue}"
                )));
            };
            sink.deliver(delivery.map_err(unavailable)?, session.generation)
                .await;
        }
    }
    .await;
    sink.session_lost(session.generation);
    broker.discard(&session);
    outcome
}
