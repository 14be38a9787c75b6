//! The RabbitMQ backend: the broker delivers, the database ledger remembers.
//!
//! Every job is a row in the same ledger the SQL backend uses (state, attempts, history,
//! unique keys), so request-reply polling, the error queue and its administration work
//! the same on every backend. RabbitMQ carries the deliveries:
//!
//! - **Enqueue** writes the row (inside the caller's transaction for
//!   [`JobQueue::enqueue_in`]: the row is its own outbox entry) and wakes the [`relay`],
//!   which publishes due rows to durable quorum queues with publisher confirms and only
//!   then marks them dispatched.
//! - **Fetch** takes messages the queue's consumer received (manual acks, bounded by
//!   `prefetch`) and leases their jobs in the ledger; a message whose job is no longer
//!   waiting for that attempt (a duplicate, a stale redelivery, a finished job) is
//!   acknowledged and dropped.
//! - **Complete / fail** record the outcome in the ledger first, then acknowledge; a
//!   job that goes to the error queue is rejected into the dead-letter exchange. Retries,
//!   delays and lease expiries make the row due again and the relay publishes the next
//!   attempt when it is due (as Sidekiq's scheduled set does), so no broker plugin and
//!   no per-delay queues are needed.
//! - **Failures**: a worker that dies loses its connection and the broker requeues its
//!   messages; the ledger lease decides who may run the job. A broker outage stops
//!   publishing (rows wait in the ledger) and consuming; both resume on their own.
//!
//! Priorities: the relay publishes due jobs best first, and a quorum queue then delivers
//! in publication order; a higher-priority job does not overtake one already published.
//! See `docs/decisions/0003-rabbitmq-ledger.md`.

mod broker;
mod consumer;
mod dead_letters;
mod inbox;
mod ledger;
mod message;
mod relay;
mod topology;

use crate::error::JobError;
use crate::model::{Job, JobState, LeasedJob, NewJob, QueueCounts};
use crate::queue::JobQueue;
use crate::retry_policy::RetryPolicy;
use crate::sql_queue::SqlJobQueue;
use async_trait::async_trait;
use broker::{Broker, BrokerSettings};
use inbox::{Inbox, Received};
use loadstar_core::{Id, Timestamp};
use loadstar_store::sql::Transaction;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::{CancellationToken, DropGuard};
use topology::Topology;

/// How to reach and use the broker.
#[derive(Debug, Clone)]
pub struct RabbitSettings {
    /// `amqp://user:pass@host:5672/%2f`; a `?heartbeat=` in it overrides `heartbeat`.
    pub url: String,
    /// The AMQP heartbeat proposed to the broker: a connection that has been silent for
    /// two intervals is given up, so a consumer on a dead network resumes within about
    /// that long (lapin otherwise takes the broker's 60 s, and notices after 120 s).
    pub heartbeat: Duration,
    /// The deadline of every broker operation: connect, declare, consume, publish and
    /// confirm, ack. Past it the connection is treated as lost and made anew.
    pub operation_timeout: Duration,
    /// Prefix of every exchange and queue name, so deployments can share a broker.
    pub prefix: String,
    /// Unacknowledged messages per queue consumer in this process: running jobs plus the
    /// ones waiting for a free slot. At least the pools' concurrency.
    pub prefetch: u16,
    /// How long a fetch on an empty queue waits for a message to arrive. Worker pools
    /// need none (the backend wakes them as messages arrive); a caller that fetches
    /// right after enqueueing, as tests do, gives the broker this long.
    pub fetch_wait: Duration,
    /// How often the relay looks for due jobs without being woken.
    pub relay_poll: Duration,
    /// Delete broker queues unused for this long (for tests; `None` keeps them).
    pub idle_queue_expiry: Option<Duration>,
}

impl RabbitSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "loadstar".to_owned(),
            heartbeat: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(5),
            prefetch: 64,
            fetch_wait: Duration::ZERO,
            relay_poll: Duration::from_millis(100),
            idle_queue_expiry: None,
        }
    }
}

/// [`JobQueue`] on RabbitMQ, with the job ledger in the domain database.
pub struct RabbitJobQueue {
    ledger: SqlJobQueue,
    inbox: Arc<Inbox>,
    relay_wake: Arc<Notify>,
    fetch_wait: Duration,
    /// Stops the relay and the consumers when the queue is dropped.
    _stop: DropGuard,
}

impl RabbitJobQueue {
    /// Starts the relay and the dead-letter consumer; job queue consumers start on the
    /// first fetch of their queue. Connects lazily: a broker that is down now only delays
    /// publishing. `ledger` carries the clock, ids and rate limits.
    pub fn start(ledger: SqlJobQueue, settings: RabbitSettings) -> Self {
        let stop = CancellationToken::new();
        let topology = Topology::new(settings.prefix.clone(), settings.idle_queue_expiry);
        let broker = Arc::new(Broker::new(
            BrokerSettings {
                url: settings.url.clone(),
                heartbeat: settings.heartbeat,
                operation_timeout: settings.operation_timeout,
            },
            topology,
        ));
        let relay_wake = Arc::new(Notify::new());
        let inbox = Arc::new(Inbox::new(
            Arc::clone(&broker),
            settings.prefetch,
            stop.clone(),
        ));
        let relay = relay::Relay {
            ledger: ledger.clone(),
            broker: Arc::clone(&broker),
            wake: Arc::clone(&relay_wake),
            poll_interval: settings.relay_poll,
        };
        tokio::spawn(relay.run(stop.clone()));
        let dead_letters = Arc::new(dead_letters::DeadLetterSink {
            db: ledger.database().clone(),
            clock: Arc::clone(ledger.clock()),
            relay: Arc::clone(&relay_wake),
            ack_deadline: settings.operation_timeout,
        });
        tokio::spawn(consumer::consume_forever(
            Arc::clone(&broker),
            dead_letters,
            broker.topology.dead_queue(),
            16,
            stop.clone(),
        ));
        Self {
            ledger,
            inbox,
            relay_wake,
            fetch_wait: settings.fetch_wait,
            _stop: stop.drop_guard(),
        }
    }

    /// Leases the jobs of `received` in one statement, within `queue`'s rate limit.
    async fn lease(
        &self,
        queue: &str,
        worker: &str,
        lease: Duration,
        received: &[Received],
    ) -> Result<Vec<Leasing>, JobError> {
        let wanted = u32::try_from(received.len()).unwrap_or(u32::MAX);
        let mut tx = self.ledger.database().writer().begin().await?;
        let allowance = self.ledger.rate_allowance(&mut tx, queue, wanted).await?;
        let allowed = received
            .len()
            .min(usize::try_from(allowance).unwrap_or(usize::MAX));
        let attempts: Vec<(Id, u32)> = received[..allowed]
            .iter()
            .map(|message| (message.job_id, message.attempt))
            .collect();
        let mut leased: HashMap<Id, LeasedJob> =
            ledger::lease_delivered(&mut tx, &attempts, worker, lease, self.ledger.now())
                .await?
                .into_iter()
                .map(|job| (job.id, job))
                .collect();
        tx.commit().await?;
        Ok(received
            .iter()
            .enumerate()
            .map(|(index, message)| match leased.remove(&message.job_id) {
                Some(job) if job.attempt == message.attempt => Leasing::Leased(job),
                Some(job) => {
                    // Two messages for one job: the other attempt's message got it.
                    leased.insert(job.id, job);
                    Leasing::Dropped
                }
                None if index >= allowed => Leasing::NotNow,
                None => Leasing::Dropped,
            })
            .collect())
    }
}

/// What a fetch did with one received message.
enum Leasing {
    Leased(LeasedJob),
    /// Over the rate limit: back to the buffer.
    NotNow,
    /// The ledger does not expect this attempt now.
    Dropped,
}

#[async_trait]
impl JobQueue for RabbitJobQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Id, JobError> {
        let id = self.ledger.enqueue(job).await?;
        self.relay_wake.notify_one();
        Ok(id)
    }

    async fn enqueue_in(&self, tx: &mut Transaction, job: NewJob) -> Result<Id, JobError> {
        let id = self.ledger.enqueue_in(tx, job).await?;
        // Visible at the caller's commit: on SQLite the relay's transaction waits for it
        // (one writer); on PostgreSQL the enqueue's NOTIFY wakes the relay at commit.
        self.relay_wake.notify_one();
        Ok(id)
    }

    async fn fetch(
        &self,
        queue: &str,
        worker: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<LeasedJob>, JobError> {
        self.ledger.sweep_queue(queue).await?;
        for stale in self.inbox.release_expired(self.ledger.local_now()) {
            stale.ack().await;
        }
        self.relay_wake.notify_one();
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let received = self.inbox.take(queue, limit, self.fetch_wait).await;
        if received.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes = match self.lease(queue, worker, lease, &received).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                self.inbox.put_back(queue, received);
                return Err(error);
            }
        };
        let mut jobs = Vec::new();
        let mut not_now = Vec::new();
        for (message, outcome) in received.into_iter().zip(outcomes) {
            match outcome {
                Leasing::Leased(job) => {
                    // Held by this process's clock: the lease's end in the database's
                    // time means nothing to it.
                    self.inbox
                        .hold(message, self.ledger.local_now().plus(lease));
                    jobs.push(job);
                }
                Leasing::NotNow => not_now.push(message),
                Leasing::Dropped => {
                    ledger::redispatch(self.ledger.database(), message.job_id, message.attempt)
                        .await?;
                    message.ack().await;
                }
            }
        }
        self.inbox.put_back(queue, not_now);
        Ok(jobs)
    }

    async fn heartbeat(
        &self,
        job: &LeasedJob,
        lease: Duration,
    ) -> Result<Option<Timestamp>, JobError> {
        let extended = self.ledger.heartbeat(job, lease).await?;
        if extended.is_some() {
            self.inbox
                .extend(job.id, job.attempt, self.ledger.local_now().plus(lease));
        }
        Ok(extended)
    }

    async fn complete(&self, job: &LeasedJob) -> Result<bool, JobError> {
        let held = self.ledger.complete(job).await?;
        if let Some(message) = self.inbox.release(job.id, job.attempt) {
            message.ack().await;
        }
        // A job waiting behind this one's ordering key may go now.
        self.relay_wake.notify_one();
        Ok(held)
    }

    async fn fail(
        &self,
        job: &LeasedJob,
        error: &str,
        policy: &RetryPolicy,
    ) -> Result<Option<JobState>, JobError> {
        let outcome = self.ledger.fail(job, error, policy).await;
        if matches!(outcome, Ok(_) | Err(JobError::NotFound(_))) {
            if let Some(message) = self.inbox.release(job.id, job.attempt) {
                match outcome {
                    Ok(Some(JobState::Dead)) => message.dead_letter().await,
                    _ => message.ack().await,
                }
            }
            self.relay_wake.notify_one();
        }
        outcome
    }

    async fn get(&self, id: Id) -> Result<Option<Job>, JobError> {
        self.ledger.get(id).await
    }

    async fn dead_jobs(
        &self,
        queue: Option<&str>,
        kind: Option<&str>,
        after: Option<Id>,
        limit: u32,
    ) -> Result<Vec<Job>, JobError> {
        self.ledger.dead_jobs(queue, kind, after, limit).await
    }

    async fn retry_dead(&self, id: Id) -> Result<bool, JobError> {
        let retried = self.ledger.retry_dead(id).await?;
        self.relay_wake.notify_one();
        Ok(retried)
    }

    async fn discard_dead(&self, id: Id) -> Result<bool, JobError> {
        self.ledger.discard_dead(id).await
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>, JobError> {
        self.ledger.counts().await
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.inbox.subscribe())
    }
}
