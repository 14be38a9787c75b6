//! The connection to RabbitMQ: made on first use, re-made after any failure, with the
//! topology declared again on every new connection.
//!
//! lapin's own auto-recovery gives up after a fixed number of tries; a job system must
//! instead come back whenever the broker does. So the connection lives in a [`Session`]
//! that callers drop on the first error ([`Broker::discard`]); the next caller connects
//! anew (at most once per back-off step) and re-declares exchanges and queues, which are
//! idempotent. Deliveries of a lost session cannot be acknowledged any more: the broker
//! requeues them, and the ledger turns the duplicates away.

use super::topology::Topology;
use crate::error::JobError;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

impl Session {
    pub(crate) fn is_open(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

/// Hands out the current [`Session`], connecting when there is none.
pub(crate) struct Broker {
    url: String,
    pub topology: Topology,
    current: tokio::sync::Mutex<Option<Arc<Session>>>,
    generations: AtomicU64,
    /// When the last attempt failed and how long to wait before the next.
    backoff: Mutex<(Option<Instant>, Duration)>,
}

impl Broker {
    pub(crate) fn new(url: String, topology: Topology) -> Self {
        Self {
            url,
            topology,
            current: tokio::sync::Mutex::new(None),
            generations: AtomicU64::new(0),
            backoff: Mutex::new((None, RECONNECT_MIN)),
        }
    }

    /// The live session, or a new one. Fails fast (`Unavailable`) while the broker is
    /// down and the back-off has not elapsed, so callers never pile up on a dead socket.
    pub(crate) async fn session(&self) -> Result<Arc<Session>, JobError> {
        let mut current = self.current.lock().await;
        if let Some(session) = current.as_ref().filter(|session| session.is_open()) {
            return Ok(Arc::clone(session));
        }
        *current = None;
        if let Some(wait) = self.still_backing_off() {
            return Err(JobError::Unavailable(format!(
                "rabbitmq unreachable; next attempt in {} ms",
                wait.as_millis()
            )));
        }
        match self.connect().await {
            Ok(session) => {
                *self.lock_backoff() = (None, RECONNECT_MIN);
                let session = Arc::new(session);
                *current = Some(Arc::clone(&session));
                tracing::info!(generation = session.generation, "connected to rabbitmq");
                Ok(session)
            }
            Err(error) => {
                let mut backoff = self.lock_backoff();
                let next = (backoff.1 * 2).min(RECONNECT_MAX);
                *backoff = (Some(Instant::now()), next);
                tracing::warn!(error = %error, retry_in_ms = backoff.1.as_millis() as u64, "cannot connect to rabbitmq");
                Err(error)
            }
        }
    }

    /// Forgets `session` after an error on it; the next [`Broker::session`] reconnects.
    pub(crate) async fn discard(&self, session: &Session) {
        let mut current = self.current.lock().await;
        if current
            .as_ref()
            .is_some_and(|live| live.generation == session.generation)
        {
            *current = None;
            tracing::warn!(
                generation = session.generation,
                "rabbitmq session dropped; reconnecting on next use"
            );
        }
    }

    /// Declares the broker side of job queue `queue` once per session.
    pub(crate) async fn ensure_queue(
        &self,
        session: &Session,
        queue: &str,
    ) -> Result<(), JobError> {
        if self.lock_declared(session).contains(queue) {
            return Ok(());
        }
        self.topology
            .declare_job_queue(&session.publisher, queue)
            .await?;
        self.lock_declared(session).insert(queue.to_owned());
        Ok(())
    }

    async fn connect(&self) -> Result<Session, JobError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("loadstar-{}", std::process::id()).into());
        let connection = Connection::connect(&self.url, properties)
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
        })
    }

    fn still_backing_off(&self) -> Option<Duration> {
        let (failed_at, wait) = *self.lock_backoff();
        let elapsed = failed_at?.elapsed();
        (elapsed < wait).then(|| wait - elapsed)
    }

    fn lock_backoff(&self) -> std::sync::MutexGuard<'_, (Option<Instant>, Duration)> {
        self.backoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_declared<'a>(
        &self,
        session: &'a Session,
    ) -> std::sync::MutexGuard<'a, HashSet<String>> {
        session
            .declared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A broker failure: retryable by definition (the broker or the network is down).
pub(crate) fn unavailable(error: lapin::Error) -> JobError {
    JobError::Unavailable(format!("rabbitmq: {error}"))
}
