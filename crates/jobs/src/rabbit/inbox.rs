//! Messages pushed by the broker, waiting in this process until a worker fetches them.
//!
//! One consumer per job queue (started on the first fetch of that queue) receives up to
//! `prefetch` unacknowledged messages; they wait here, then move to the in-flight table
//! when a fetch leases their job, and leave it when the outcome is settled and the
//! message acknowledged. A consumer whose connection breaks loses its messages (the
//! broker requeues them) and starts again on the next session.

use super::broker::{within, Broker, Session};
use super::consumer::{consume_forever, DeliverySink};
use super::message::addressed_attempt;
use crate::error::JobError;
use async_trait::async_trait;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::Acker;
use loadstar_core::{Id, Timestamp};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

/// A message received for one attempt of one job.
pub(crate) struct Received {
    pub job_id: Id,
    pub attempt: u32,
    /// The connection it came on: its acker is useless once that connection is gone.
    pub generation: u64,
    pub acker: Acker,
    /// How long an ack may take: on a silent connection it is never written.
    pub deadline: Duration,
}

impl Received {
    /// Acknowledges: the broker forgets the message. Failure only means the connection
    /// is gone, and then the broker has requeued it already and the ledger will turn the
    /// copy away.
    pub(crate) async fn ack(&self) {
        let acking = self.acker.ack(BasicAckOptions::default());
        if let Err(error) = within(self.deadline, "basic.ack", acking).await {
            tracing::debug!(job_id = %self.job_id, error = %error, "ack of a message on a lost connection");
        }
    }

    /// Rejects without requeueing: the broker moves the message to the dead-letter
    /// exchange.
    pub(crate) async fn dead_letter(&self) {
        let options = BasicNackOptions {
            multiple: false,
            requeue: false,
        };
        let rejecting = self.acker.nack(options);
        if let Err(error) = within(self.deadline, "basic.nack", rejecting).await {
            tracing::debug!(job_id = %self.job_id, error = %error, "nack of a message on a lost connection");
        }
    }
}

/// A leased job's message, held until the outcome is recorded.
struct InFlight {
    received: Received,
    lease_until: Timestamp,
}

#[derive(Default)]
struct QueueBuffer {
    waiting: Mutex<VecDeque<Received>>,
    arrived: Notify,
}

/// Everything received and not yet acknowledged, by queue and by job attempt.
pub(crate) struct Inbox {
    broker: Arc<Broker>,
    prefetch: u16,
    buffers: Mutex<HashMap<String, Arc<QueueBuffer>>>,
    in_flight: Mutex<HashMap<(Id, u32), InFlight>>,
    wake_ups: broadcast::Sender<String>,
    stop: CancellationToken,
}

impl Inbox {
    pub(crate) fn new(broker: Arc<Broker>, prefetch: u16, stop: CancellationToken) -> Self {
        let (wake_ups, _) = broadcast::channel(1024);
        Self {
            broker,
            prefetch,
            buffers: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            wake_ups,
            stop,
        }
    }

    /// Queue names as their messages arrive, for idle worker pools.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<String> {
        self.wake_ups.subscribe()
    }

    /// Up to `limit` received messages of `queue`, waiting up to `wait` for the first.
    /// Starts the queue's consumer on first use.
    pub(crate) async fn take(
        self: &Arc<Self>,
        queue: &str,
        limit: usize,
        wait: Duration,
    ) -> Vec<Received> {
        let buffer = self.buffer(queue);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = buffer.arrived.notified();
            {
                let mut waiting = lock(&buffer.waiting);
                if !waiting.is_empty() {
                    let count = limit.min(waiting.len());
                    return waiting.drain(..count).collect();
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// Puts messages a fetch could not lease now (rate limit) back at the front.
    pub(crate) fn put_back(self: &Arc<Self>, queue: &str, unused: Vec<Received>) {
        let buffer = self.buffer(queue);
        let mut waiting = lock(&buffer.waiting);
        for received in unused.into_iter().rev() {
            waiting.push_front(received);
        }
    }

    pub(crate) fn hold(&self, received: Received, lease_until: Timestamp) {
        let key = (received.job_id, received.attempt);
        lock(&self.in_flight).insert(
            key,
            InFlight {
                received,
                lease_until,
            },
        );
    }

    pub(crate) fn extend(&self, job_id: Id, attempt: u32, lease_until: Timestamp) {
        if let Some(held) = lock(&self.in_flight).get_mut(&(job_id, attempt)) {
            held.lease_until = lease_until;
        }
    }

    /// The message of a settled attempt, if this process holds it.
    pub(crate) fn release(&self, job_id: Id, attempt: u32) -> Option<Received> {
        lock(&self.in_flight)
            .remove(&(job_id, attempt))
            .map(|held| held.received)
    }

    /// Messages whose lease ran out without an outcome (a hung or lost handler): the
    /// ledger has taken the job back, so the message only holds a prefetch slot.
    pub(crate) fn release_expired(&self, now: Timestamp) -> Vec<Received> {
        let mut in_flight = lock(&self.in_flight);
        let expired: Vec<(Id, u32)> = in_flight
            .iter()
            .filter(|(_, held)| held.lease_until <= now)
            .map(|(key, _)| *key)
            .collect();
        expired
            .into_iter()
            .filter_map(|key| in_flight.remove(&key).map(|held| held.received))
            .collect()
    }

    fn buffer(self: &Arc<Self>, queue: &str) -> Arc<QueueBuffer> {
        let mut buffers = lock(&self.buffers);
        if let Some(buffer) = buffers.get(queue) {
            return Arc::clone(buffer);
        }
        let buffer = Arc::new(QueueBuffer::default());
        buffers.insert(queue.to_owned(), Arc::clone(&buffer));
        let sink = Arc::new(QueueSink {
            queue: queue.to_owned(),
            ack_deadline: self.broker.operation_timeout(),
            buffer: Arc::clone(&buffer),
            wake_ups: self.wake_ups.clone(),
        });
        tokio::spawn(consume_forever(
            Arc::clone(&self.broker),
            sink,
            self.broker.topology.job_queue(queue),
            self.prefetch,
            self.stop.clone(),
        ));
        buffer
    }
}

/// Files one job queue's messages into its buffer.
struct QueueSink {
    queue: String,
    ack_deadline: Duration,
    buffer: Arc<QueueBuffer>,
    wake_ups: broadcast::Sender<String>,
}

#[async_trait]
impl DeliverySink for QueueSink {
    async fn prepare(&self, broker: &Broker, session: &Session) -> Result<(), JobError> {
        broker.ensure_queue(session, &self.queue).await
    }

    async fn deliver(&self, delivery: Delivery, generation: u64) {
        let Some((job_id, attempt)) = addressed_attempt(&delivery.properties) else {
            tracing::warn!(queue = %self.queue, "message without a job id or attempt; dead-lettered");
            let options = BasicNackOptions {
                multiple: false,
                requeue: false,
            };
            let _ = within(
                self.ack_deadline,
                "basic.nack",
                delivery.acker.nack(options),
            )
            .await;
            return;
        };
        lock(&self.buffer.waiting).push_back(Received {
            job_id,
            attempt,
            generation,
            acker: delivery.acker,
            deadline: self.ack_deadline,
        });
        self.buffer.arrived.notify_waiters();
        // Nobody idle to wake is fine.
        let _ = self.wake_ups.send(self.queue.clone());
    }

    fn session_lost(&self, generation: u64) {
        // They came on that connection: the broker hands them out again.
        lock(&self.buffer.waiting).retain(|received| received.generation != generation);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
