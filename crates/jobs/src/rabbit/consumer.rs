//! A broker consumer that keeps consuming: across lost connections, broker restarts and
//! cancelled consumers, until the backend stops.

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
        if let Err(error) = outcome {
            tracing::warn!(queue = %broker_queue, error = %error, "rabbitmq consumer stopped; resuming");
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
        let channel = session
            .connection
            .create_channel()
            .await
            .map_err(unavailable)?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let mut consumer = channel
            .basic_consume(
                broker_queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        while let Some(delivery) = consumer.next().await {
            sink.deliver(delivery.map_err(unavailable)?, session.generation)
                .await;
        }
        Err(JobError::Unavailable(format!(
            "the broker cancelled the consumer of {broker_queue}"
        )))
    }
    .await;
    sink.session_lost(session.generation);
    broker.discard(&session).await;
    outcome
}
