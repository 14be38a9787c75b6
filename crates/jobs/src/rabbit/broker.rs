//! The connection to RabbitMQ: made on first use, re-made after any failure, with the
//! topology declared again on every new connection.
//!
//! lapin's own auto-recovery gives up after a fixed number of tries; a job system must
//! instead come back whenever the broker does. So the connection lives in a [`Session`]
//! that callers drop on the first error ([`Broker::discard`]); the next caller connects
//! anew (at most once per back-off step) and re-declares exchanges and queues, which are
//! idempotent. Deliveries of a lost session cannot be acknowledged any more: the broker
//! requeues them, and the ledger turns the duplicates away.
//!
//! Nothing here waits without a bound. A network that goes silent (a partition, a broker
//! host that vanished) answers no AMQP method and closes no socket, so every operation
//! runs under the broker's deadline ([`Broker::within`]) and connections carry a short
//! heartbeat, which ends a consumer's wait within two heartbeat intervals. The lock that
//! makes connects single-flight is held only across a connect that is itself bounded.

use super::topology::Topology;
use crate::error::JobError;
use lapin::options::ConfirmSelectOptions;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The shortest and longest wait between two connection attempts.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// One live connection with its publishing channel (publisher confirms on).
pub(crate) struct Session {
    /// Increases with every new connection; deliveries remember theirs.
    pub generation: u64,
    pub connection: Connection,
    pub publisher: Channel,
    /// Job queues already declared on this connection.
    declared: Mutex<HashSet<String>>,
    /// Cancelled when the session is discarded, so consumers on it move to the next one
    /// at once instead of waiting for the heartbeat to give up on a dead connection.
    lost: CancellationToken,
}

impl Session {
    pub(crate) fn is_open(&self) -> bool {
        !self.lost.is_cancelled()
            && self.connection.status().connected()
            && self.publisher.status().connected()
    }

    /// Completes when the session has been discarded.
    pub(crate) async fn lost(&self) {
        self.lost.cancelled().await;
    }
}

/// Whether the broker was reachable at the last attempt: what is logged is the change.
enum Reachability {
    /// No connection made or tried yet.
    Unknown,
    Up,
    Down {
        since: Instant,
    },
}

/// When the last attempt failed and how long to wait before the next.
struct Backoff {
    failed_at: Option<Instant>,
    wait: Duration,
}

/// How to reach the broker and how long any operation on it may take.
#[derive(Debug, Clone)]
pub(crate) struct BrokerSettings {
    pub url: String,
    /// Proposed to the broker unless the URL names one (`?heartbeat=`); the lower of the
    /// two sides' values applies.
    pub heartbeat: Duration,
    /// The deadline of every operation: connect (with its handshake and declarations),
    /// channel, declare, consume, publish and its confirm, ack.
    pub operation_timeout: Duration,
}

/// Hands out the current [`Session`], connecting when there is none.
pub(crate) struct Broker {
    settings: BrokerSettings,
    pub topology: Topology,
    current: Mutex<Option<Arc<Session>>>,
    /// Held by the one caller connecting; the others wait for its (bounded) attempt.
    connecting: tokio::sync::Mutex<()>,
    generations: AtomicU64,
    backoff: Mutex<Backoff>,
    reachability: Mutex<Reachability>,
}

impl Broker {
    pub(crate) fn new(settings: BrokerSettings, topology: Topology) -> Self {
        Self {
            settings,
            topology,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            generations: AtomicU64::new(0),
            backoff: Mutex::new(Backoff {
                failed_at: None,
                wait: RECONNECT_MIN,
            }),
            reachability: Mutex::new(Reachability::Unknown),
        }
    }

    /// The deadline of one broker operation.
    pub(crate) fn operation_timeout(&self) -> Duration {
        self.settings.operation_timeout
    }

    /// Runs one broker operation under the operation deadline.
    pub(crate) async fn within<T>(
        &self,
        what: &str,
        operation: impl IntoFuture<Output = Result<T, lapin::Error>>,
    ) -> Result<T, JobError> {
        within(self.settings.operation_timeout, what, operation).await
    }

    /// The live session, or a new one. Fails fast (`Unavailable`) while the broker is
    /// down and the back-off has not elapsed, so callers never pile up on a dead socket.
    pub(crate) async fn session(&self) -> Result<Arc<Session>, JobError> {
        if let Some(session) = self.live() {
            return Ok(session);
        }
        let deadline = self.settings.operation_timeout;
        // A waiter gives up after two connect deadlines: one attempt ahead of it, its own.
        let Ok(_connecting) = tokio::time::timeout(deadline * 2, self.connecting.lock()).await
        else {
            return Err(JobError::Unavailable(
                "rabbitmq: still connecting".to_owned(),
            ));
        };
        // Another caller may have connected while this one waited.
        if let Some(session) = self.live() {
            return Ok(session);
        }
        if let Some(wait) = self.still_backing_off() {
            return Err(JobError::Unavailable(format!(
                "rabbitmq unreachable; next attempt in {} ms",
                wait.as_millis()
            )));
        }
        let connected = match tokio::time::timeout(deadline, self.connect()).await {
            Ok(connected) => connected,
            Err(_) => Err(JobError::Unavailable(format!(
                "rabbitmq: no connection within {} ms",
                deadline.as_millis()
            ))),
        };
        match connected {
            Ok(session) => {
                *lock(&self.backoff) = Backoff {
                    failed_at: None,
                    wait: RECONNECT_MIN,
                };
                let session = Arc::new(session);
                *lock(&self.current) = Some(Arc::clone(&session));
                self.mark_up(session.generation);
                Ok(session)
            }
            Err(error) => {
                let retry_in = {
                    let mut backoff = lock(&self.backoff);
                    backoff.wait = (backoff.wait * 2).min(RECONNECT_MAX);
                    backoff.failed_at = Some(Instant::now());
                    backoff.wait
                };
                self.mark_down(&error.to_string(), retry_in);
                Err(error)
            }
        }
    }

    /// Forgets `session` after an error on it; the next [`Broker::session`] reconnects.
    /// Its consumers stop, and its connection is closed in the background (bounded: on a
    /// silent network the close is never answered).
    pub(crate) fn discard(&self, session: &Arc<Session>) {
        let was_current = {
            let mut current = lock(&self.current);
            let is_current = current
                .as_ref()
                .is_some_and(|live| live.generation == session.generation);
            if is_current {
                *current = None;
            }
            is_current
        };
        if session.lost.is_cancelled() {
            return;
        }
        session.lost.cancel();
        if was_current {
            self.mark_down("the connection failed", RECONNECT_MIN);
        }
        let session = Arc::clone(session);
        let deadline = self.settings.operation_timeout;
        tokio::spawn(async move {
            let closing = session
                .connection
                .close(320, "loadstar: connection discarded".into());
            let _ = tokio::time::timeout(deadline, closing).await;
        });
    }

    /// Declares the broker side of job queue `queue` once per session.
    pub(crate) async fn ensure_queue(
        &self,
        session: &Session,
        queue: &str,
    ) -> Result<(), JobError> {
        if lock(&session.declared).contains(queue) {
            return Ok(());
        }
        let declaring = self.topology.declare_job_queue(&session.publisher, queue);
        match tokio::time::timeout(self.settings.operation_timeout, declaring).await {
            Ok(declared) => declared?,
            Err(_) => return Err(timed_out("queue declaration", self.operation_timeout())),
        }
        lock(&session.declared).insert(queue.to_owned());
        Ok(())
    }

    fn live(&self) -> Option<Arc<Session>> {
        let mut current = lock(&self.current);
        match current.as_ref() {
            Some(session) if session.is_open() => Some(Arc::clone(session)),
            Some(_) => {
                *current = None;
                None
            }
            None => None,
        }
    }

    /// Connects, opens the publishing channel and declares the shared topology; the
    /// caller bounds the whole.
    async fn connect(&self) -> Result<Session, JobError> {
        let mut uri: AMQPUri = self.settings.url.parse().map_err(|error: String| {
            JobError::Unavailable(format!("rabbitmq: invalid url: {error}"))
        })?;
        if uri.query.heartbeat.is_none() {
            let secs = self
                .settings
                .heartbeat
                .as_secs()
                .clamp(1, u64::from(u16::MAX));
            uri.query.heartbeat = u16::try_from(secs).ok();
        }
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("loadstar-{}", std::process::id()).into());
        let connection = Connection::connect_uri(uri, properties)
            .await
            .map_err(unavailable)?;
        let publisher = connection.create_channel().await.map_err(unavailable)?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        self.topology.declare_shared(&publisher).await?;
        Ok(Session {
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            connection,
            publisher,
            declared: Mutex::new(HashSet::new()),
            lost: CancellationToken::new(),
        })
    }

    fn still_backing_off(&self) -> Option<Duration> {
        let backoff = lock(&self.backoff);
        let elapsed = backoff.failed_at?.elapsed();
        (elapsed < backoff.wait).then(|| backoff.wait - elapsed)
    }

    /// Logs the broker coming (back) up, once per change.
    fn mark_up(&self, generation: u64) {
        let previous = std::mem::replace(&mut *lock(&self.reachability), Reachability::Up);
        match previous {
            Reachability::Down { since } => tracing::info!(
                generation,
                down_for_ms = since.elapsed().as_millis() as u64,
                "rabbitmq reachable again"
            ),
            Reachability::Unknown => tracing::info!(generation, "connected to rabbitmq"),
            Reachability::Up => {
                tracing::debug!(generation, "reconnected to rabbitmq");
            }
        }
    }

    /// Logs the broker going down, once per change; later failures are debug lines.
    fn mark_down(&self, cause: &str, retry_in: Duration) {
        let mut reachability = lock(&self.reachability);
        if matches!(*reachability, Reachability::Down { .. }) {
            tracing::debug!(
                error = cause,
                retry_in_ms = retry_in.as_millis() as u64,
                "rabbitmq still unreachable"
            );
            return;
        }
        *reachability = Reachability::Down {
            since: Instant::now(),
        };
        tracing::warn!(
            error = cause,
            "rabbitmq unreachable; publishing and consuming pause, jobs wait in the ledger, reconnecting in the background"
        );
    }
}

/// Runs `operation` under `limit`: on a silent network an AMQP method is never answered.
pub(crate) async fn within<T>(
    limit: Duration,
    what: &str,
    operation: impl IntoFuture<Output = Result<T, lapin::Error>>,
) -> Result<T, JobError> {
    match tokio::time::timeout(limit, operation.into_future()).await {
        Ok(outcome) => outcome.map_err(unavailable),
        Err(_) => Err(timed_out(what, limit)),
    }
}

fn timed_out(what: &str, limit: Duration) -> JobError {
    JobError::Unavailable(format!(
        "rabbitmq: no answer to {what} within {} ms",
        limit.as_millis()
    ))
}

/// A broker failure: retryable by definition (the broker or the network is down).
pub(crate) fn unavailable(error: lapin::Error) -> JobError {
    JobError::Unavailable(format!("rabbitmq: {error}"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
