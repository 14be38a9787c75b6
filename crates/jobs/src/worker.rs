//! Worker pools: fetch jobs, run their handlers, keep leases alive, settle outcomes.
//!
//! A pool serves one or more queues with a fixed number of concurrent jobs. It fetches
//! only as many jobs as it has free slots (so a job never waits in a worker's memory while
//! its lease runs down). When a job finishes it fetches again only once at least half its
//! slots are free, so a busy pool takes its backlog in batches instead of one round trip
//! per finished job; a wake-up from the backend or the poll timer fetches for any free
//! slot, so new work never waits for a busy pool to half empty. A fetch round gives each
//! of its queues an equal share of the free slots first and the leftovers to the queues
//! that filled their share, so a queue with a backlog (a pipeline's intake) cannot starve
//! the others (its follow-up jobs). A queue found empty passes its turn on at once and is
//! not asked again until a wake-up names it or the next poll tick (a fixed schedule, so a
//! busy pool still looks every poll interval): on SQLite every fetch is a statement on the
//! single writer, and asking idle queues on every round cost the busy ones. It renews
//! each lease at a
//! third of its length while the handler runs, and acknowledges only after the handler
//! succeeded. On shutdown it stops fetching, lets running handlers finish within the grace
//! period, and abandons the rest: their leases expire and another worker takes them, so
//! nothing is lost.

use crate::error::JobError;
use crate::model::LeasedJob;
use crate::queue::JobQueue;
use crate::retry_policy::RetryPolicy;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// First wait before retrying to record an outcome the database did not take.
const SETTLE_RETRY_FIRST: Duration = Duration::from_millis(50);
/// Longest wait between such retries: the outcome lands within this of the database's
/// return.
const SETTLE_RETRY_CAP: Duration = Duration::from_millis(500);
use tokio_util::sync::CancellationToken;

/// Why a handler did not finish its job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    pub message: String,
}

impl HandlerError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The code that does one kind of job. It must be idempotent: delivery is at least once.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn handle(&self, job: &LeasedJob) -> Result<(), HandlerError>;
}

/// How a pool runs.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Name in logs and in the `worker` column, unique per process.
    pub name: String,
    pub queues: Vec<String>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long a fetched job stays ours without a heartbeat.
    pub lease: Duration,
    /// How long an idle pool waits before asking for jobs again.
    pub poll_interval: Duration,
    /// On shutdown, how long running handlers may take to finish.
    pub shutdown_grace: Duration,
}

impl PoolSettings {
    pub fn new(name: impl Into<String>, queues: Vec<String>) -> Self {
        Self {
            name: name.into(),
            queues,
            concurrency: loadstar_core::config::DEFAULT_WORKER_CONCURRENCY,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// A pool of workers bound to a queue backend and a set of handlers.
pub struct WorkerPool {
    queue: Arc<dyn JobQueue>,
    settings: PoolSettings,
    handlers: HashMap<String, Arc<dyn JobHandler>>,
    policies: HashMap<String, RetryPolicy>,
    worker_id: String,
    /// Raises the alert of an `Exhausted::Alert` job; without one, the alert is only logged.
    alerter: Option<crate::alerting::Alerter>,
}

impl WorkerPool {
    pub fn new(queue: Arc<dyn JobQueue>, settings: PoolSettings) -> Self {
        let worker_id = format!(
            "{}-{}-{:04x}",
            settings.name,
            std::process::id(),
            rand::random::<u16>()
        );
        Self {
            queue,
            settings,
            handlers: HashMap::new(),
            policies: HashMap::new(),
            worker_id,
            alerter: None,
        }
    }

    /// Runs `handler` for jobs of `kind`, retrying by `policy`.
    pub fn handle(
        mut self,
        kind: impl Into<String>,
        handler: Arc<dyn JobHandler>,
        policy: RetryPolicy,
    ) -> Self {
        let kind = kind.into();
        self.policies.insert(kind.clone(), policy);
        self.handlers.insert(kind, handler);
        self
    }

    /// Sends the alerts of jobs whose policy is `Exhausted::Alert` through `alerter`.
    pub fn with_alerter(mut self, alerter: crate::alerting::Alerter) -> Self {
        self.alerter = Some(alerter);
        self
    }

    /// The identity this pool leases jobs under.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Fetches and runs jobs until `shutdown` is cancelled, then drains.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), JobError> {
        let pool = Arc::new(self);
        let slots = Arc::new(Semaphore::new(pool.settings.concurrency));
        let mut running = JoinSet::new();
        tracing::info!(pool = %pool.settings.name, worker = %pool.worker_id, queues = ?pool.settings.queues, concurrency = pool.settings.concurrency, "worker pool started");
        let mut next_queue: usize = 0;
        let mut wake_ups = pool.queue.subscribe();
        let batch = pool.settings.concurrency.div_ceil(2).max(1);
        // True on start and after a wake-up or a poll tick: then any free slot is worth a
        // fetch. A finished job alone waits for `batch` free slots.
        let mut any_free_slot = true;
        // Queues a fetch found empty: skipped until the next poll tick or a wake-up that
        // names them. The tick is a fixed schedule, not a timer restarted by every finished
        // job, so a busy pool still looks at them once per poll interval.
        let mut known_empty = vec![false; pool.settings.queues.len()];
        let mut next_poll = tokio::time::Instant::now() + pool.settings.poll_interval;
        // Fetch failures are logged when they start and when they end, not once a poll.
        let mut failing_since: Option<std::time::Instant> = None;
        while !shutdown.is_cancelled() {
            while running.try_join_next().is_some() {}
            if tokio::time::Instant::now() >= next_poll {
                known_empty.fill(false);
                any_free_slot = true;
                next_poll = tokio::time::Instant::now() + pool.settings.poll_interval;
            }
            let free = slots.available_permits();
            let mut fetched = 0;
            let worth_fetching = free > 0 && (free >= batch || running.is_empty() || any_free_slot);
            any_free_slot = false;
            if worth_fetching {
                // One round: every queue not known to be empty, in turn (starting one
                // further each round, so no queue is always asked first), first for an equal
                // share of the free slots, then the queues that filled their share for what
                // is left. A queue with a backlog cannot take every slot from the others
                // (the follow-up jobs of a pipeline would wait behind its intake), and the
                // pool waits only when a whole round found nothing.
                let queues = pool.settings.queues.len();
                let first = next_queue;
                next_queue = next_queue.wrapping_add(1);
                let candidates: Vec<usize> = (0..queues)
                    .map(|turn| first.wrapping_add(turn) % queues)
                    .filter(|&index| !known_empty[index])
                    .collect();
                let share = first_pass_share(free, candidates.len());
                let mut may_have_more = Vec::new();
                for pass in 0..2 {
                    let turns = if pass == 0 {
                        candidates.clone()
                    } else {
                        std::mem::take(&mut may_have_more)
                    };
                    for queue_index in turns {
                        let free = slots.available_permits();
                        if free == 0 {
                            break;
                        }
                        let wanted = if pass == 0 { share.min(free) } else { free };
                        let queue_name = &pool.settings.queues[queue_index];
                        match pool
                            .queue
                            .fetch(
                                queue_name,
                                &pool.worker_id,
                                pool.settings.lease,
                                u32::try_from(wanted).unwrap_or(u32::MAX),
                            )
                            .await
                        {
                            Ok(jobs) => {
                                if let Some(since) = failing_since.take() {
                                    tracing::info!(pool = %pool.settings.name, failed_for_ms = since.elapsed().as_millis() as u64, "fetching jobs works again");
                                }
                                if jobs.is_empty() {
                                    known_empty[queue_index] = true;
                                } else if jobs.len() == wanted {
                                    may_have_more.push(queue_index);
                                }
                                fetched += jobs.len();
                                for job in jobs {
                                    let Ok(permit) = Arc::clone(&slots).acquire_owned().await
                                    else {
                                        break;
                                    };
                                    let pool = Arc::clone(&pool);
                                    running.spawn(async move {
                                        pool.run_one(job).await;
                                        drop(permit);
                                    });
                                }
                            }
                            Err(error) => {
                                if failing_since.is_none() {
                                    failing_since = Some(std::time::Instant::now());
                                    tracing::warn!(pool = %pool.settings.name, queue = %queue_name, error = %error, "fetching jobs fails; polling on until it works");
                                }
                            }
                        }
                    }
                }
            }
            if fetched == 0 {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep_until(next_poll) => {}
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                    Some(queue) = next_wake_up(&mut wake_ups) => {
                        any_free_slot = true;
                        match pool.settings.queues.iter().position(|q| *q == queue) {
                            // Serve the queue that has work first.
                            Some(index) => {
                                known_empty[index] = false;
                                next_queue = index;
                            }
                            // Wake-ups were missed: any queue may have work.
                            None if queue.is_empty() => known_empty.fill(false),
                            None => {}
                        }
                    }
                }
            } else {
                // Wake-ups that arrived while fetching still clear their queues.
                while let Some(queue) = try_next_wake_up(&mut wake_ups) {
                    match pool.settings.queues.iter().position(|q| *q == queue) {
                        Some(index) => known_empty[index] = false,
                        None if queue.is_empty() => known_empty.fill(false),
                        None => {}
                    }
                }
            }
        }
        tracing::info!(pool = %pool.settings.name, in_flight = running.len(), "worker pool draining");
        let drained = tokio::time::timeout(pool.settings.shutdown_grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(pool = %pool.settings.name, abandoned = running.len(), "grace period over; abandoned jobs will be redelivered when their leases expire");
            running.abort_all();
        }
        tracing::info!(pool = %pool.settings.name, "worker pool stopped");
        Ok(())
    }

    /// Runs one job inside its trace (see `job_trace`).
    async fn run_one(&self, job: LeasedJob) {
        use tracing::Instrument;
        let trace = crate::job_trace::run_context(&job);
        let span = crate::job_trace::run_span(&job, &trace);
        trace.scope(self.run_traced(job)).instrument(span).await
    }

    /// Runs one job's handler with its lease kept alive, then settles the outcome.
    async fn run_traced(&self, job: LeasedJob) {
        let started = std::time::Instant::now();
        // When the lease began, in the database's time like the job's due time (this
        // node's clock may be off).
        let leased_at = loadstar_core::Timestamp::from_unix_micros(
            job.lease_until.unix_micros() - crate::clock::micros(self.settings.lease),
        );
        crate::queue_metrics::started(&job, leased_at);
        let outcome = match self.handlers.get(&job.kind) {
            Some(handler) => self.with_heartbeat(&job, handler.handle(&job)).await,
            None => Err(HandlerError::new(format!(
                "no handler for job kind {:?}",
                job.kind
            ))),
        };
        // The outcome is recorded as soon as the database takes it: a write that fails
        // because it is down (or out of space) is retried until it lands, for up to a lease,
        // instead of leaving the job to wait out its lease and run again.
        let give_up_at = tokio::time::Instant::now() + self.settings.lease;
        let mut backoff = SETTLE_RETRY_FIRST;
        let mut warned = false;
        let (settled, next_state) = loop {
            let attempt = self.settle(&job, &outcome).await;
            match &attempt.0 {
                Err(JobError::Unavailable(_) | JobError::StorageFull(_))
                    if tokio::time::Instant::now() + backoff < give_up_at =>
                {
                    if !warned {
                        warned = true;
                        tracing::warn!(job_id = %job.id, kind = %job.kind, error = %attempt.0.as_ref().err().map(ToString::to_string).unwrap_or_default(), "could not record the job's outcome yet; retrying until the database takes it");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(SETTLE_RETRY_CAP);
                }
                _ => break attempt,
            }
        };
        crate::queue_metrics::finished(&job, started.elapsed(), next_state);
        match settled {
            Ok(Some(())) if outcome.is_ok() => {
                tracing::info!(job_id = %job.id, kind = %job.kind, attempt = job.attempt, "job completed")
            }
            Ok(Some(())) => {}
            Ok(None) => {
                tracing::warn!(job_id = %job.id, kind = %job.kind, "lease lost before the job settled; another worker owns it now")
            }
            Err(error) => {
                tracing::warn!(job_id = %job.id, kind = %job.kind, error = %error, "could not record the job's outcome; it will be redelivered when its lease expires")
            }
        }
    }

    /// Records a finished job's outcome: `Ok(Some(()))` recorded, `Ok(None)` the lease was
    /// lost to another worker; with the job's next state for the metrics.
    async fn settle(
        &self,
        job: &LeasedJob,
        outcome: &Result<(), HandlerError>,
    ) -> (
        Result<Option<()>, JobError>,
        Result<Option<crate::model::JobState>, ()>,
    ) {
        let mut next_state = Err(());
        let settled = match outcome {
            Ok(()) => {
                let held = self.queue.complete(job).await;
                if matches!(held, Ok(true)) {
                    next_state = Ok(Some(crate::model::JobState::Completed));
                }
                held.map(|held| held.then_some(()))
            }
            Err(error) => {
                let policy = self.policies.get(&job.kind).copied().unwrap_or_default();
                match self.queue.fail(job, &error.message, &policy).await {
                    Ok(state) => {
                        tracing::warn!(job_id = %job.id, kind = %job.kind, attempt = job.attempt, error = %error, next = ?state, "job failed");
                        if state == Some(crate::model::JobState::Dead)
                            && policy.on_exhausted == crate::retry_policy::Exhausted::Alert
                        {
                            self.raise_exhausted(job, &error.message).await;
                        }
                        next_state = Ok(state);
                        Ok(Some(()))
                    }
                    Err(JobError::NotFound(_)) => Ok(None),
                    Err(other) => Err(other),
                }
            }
        };
        (settled, next_state)
    }

    async fn raise_exhausted(&self, job: &LeasedJob, error: &str) {
        let alert = crate::alerting::Alert::job_exhausted(job, error);
        match &self.alerter {
            Some(alerter) => alerter.raise(&alert).await,
            None => crate::alerting::log(&alert),
        }
    }

    /// Polls `work` while renewing the lease every third of its length.
    async fn with_heartbeat<F>(&self, job: &LeasedJob, work: F) -> Result<(), HandlerError>
    where
        F: std::future::Future<Output = Result<(), HandlerError>>,
    {
        let every = self.settings.lease / 3;
        tokio::pin!(work);
        loop {
            tokio::select! {
                result = &mut work => return result,
                () = tokio::time::sleep(every) => {
                    match self.queue.heartbeat(job, self.settings.lease).await {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            return Err(HandlerError::new("lease lost while the job ran"));
                        }
                        Err(error) => tracing::warn!(job_id = %job.id, error = %error, "heartbeat failed"),
                    }
                }
            }
        }
    }
}

/// The slots each queue may take in the first pass of a fetch round: an equal share of
/// `free` among `queues`, rounded up so that no slot is left out.
fn first_pass_share(free: usize, queues: usize) -> usize {
    free.div_ceil(queues.max(1)).max(1)
}

/// A queue name the backend pushed since the last look, without waiting.
fn try_next_wake_up(
    wake_ups: &mut Option<tokio::sync::broadcast::Receiver<String>>,
) -> Option<String> {
    match wake_ups.as_mut()?.try_recv() {
        Ok(queue) => Some(queue),
        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => Some(String::new()),
        Err(_) => None,
    }
}

/// The next queue name pushed by the backend; pending forever without a channel.
pub(crate) async fn next_wake_up(
    wake_ups: &mut Option<tokio::sync::broadcast::Receiver<String>>,
) -> Option<String> {
    match wake_ups {
        Some(receiver) => match receiver.recv().await {
            Ok(queue) => Some(queue),
            // Missed some: any queue may have work; a fetch round will find it.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some(String::new()),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                *wake_ups = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::first_pass_share;

    #[test]
    fn a_fetch_round_shares_the_free_slots_among_the_queues_it_asks() {
        assert_eq!(first_pass_share(32, 4), 8);
        assert_eq!(first_pass_share(5, 2), 3);
        assert_eq!(first_pass_share(1, 4), 1);
        assert_eq!(first_pass_share(16, 1), 16);
        assert_eq!(first_pass_share(16, 0), 16);
    }
}
