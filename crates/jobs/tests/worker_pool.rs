//! Worker pools against real queue backends (SQLite always, PostgreSQL and RabbitMQ when
//! configured).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use async_trait::async_trait;
use loadstar_core::IdGenerator;
use loadstar_jobs::{
    DatabaseClock, Exhausted, HandlerError, JobHandler, JobQueue, JobState, LeasedJob, NewJob,
    PoolSettings, RabbitJobQueue, RetryPolicy, SqlJobQueue, WorkerPool,
};
use loadstar_store::Database;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

async fn sql_queue(db: Database) -> Arc<dyn JobQueue> {
    Arc::new(SqlJobQueue::new(
        db,
        Arc::new(IdGenerator::new(2)),
        Arc::new(DatabaseClock),
    ))
}

async fn rabbit_queue(db: Database, url: String) -> Arc<dyn JobQueue> {
    let ledger = SqlJobQueue::new(db, Arc::new(IdGenerator::new(2)), Arc::new(DatabaseClock));
    Arc::new(RabbitJobQueue::start(ledger, support::test_settings(url)))
}

fn settings() -> PoolSettings {
    PoolSettings {
        concurrency: 4,
        poll_interval: Duration::from_millis(10),
        ..PoolSettings::new("test", vec!["default".to_owned()])
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
        on_exhausted: Exhausted::DeadLetter,
    }
}

/// Polls `condition` until it holds, for up to 30 s.
async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loadstar_core::test_support::poll_until(what, Duration::from_secs(30), condition).await;
}

async fn state_of(queue: &Arc<dyn JobQueue>, id: loadstar_core::Id) -> Option<JobState> {
    queue.get(id).await.unwrap().map(|job| job.state)
}

/// Counts how often each job was handled.
#[derive(Default)]
struct Recorder {
    handled: Mutex<HashMap<loadstar_core::Id, u32>>,
}

#[async_trait]
impl JobHandler for Recorder {
    async fn handle(&self, job: &LeasedJob) -> Result<(), HandlerError> {
        *self.handled.lock().unwrap().entry(job.id).or_default() += 1;
        Ok(())
    }
}

struct AlwaysFails;

#[async_trait]
impl JobHandler for AlwaysFails {
    async fn handle(&self, _job: &LeasedJob) -> Result<(), HandlerError> {
        Err(HandlerError::new("the provider is down"))
    }
}

/// Signals when it starts, then waits to be released.
#[derive(Default)]
struct Gate {
    started: Notify,
    release: Notify,
}

#[async_trait]
impl JobHandler for Gate {
    async fn handle(&self, _job: &LeasedJob) -> Result<(), HandlerError> {
        self.started.notify_one();
        self.release.notified().await;
        Ok(())
    }
}

async fn a_pool_runs_every_job_exactly_once(queue: Arc<dyn JobQueue>) {
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(
            queue
                .enqueue(NewJob::new("default", "count", vec![n]))
                .await
                .unwrap(),
        );
    }
    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let pool = WorkerPool::new(Arc::clone(&queue), settings()).handle(
        "count",
        recorder.clone(),
        RetryPolicy::default(),
    );
    let running = tokio::spawn(pool.run(shutdown.clone()));

    eventually("all jobs completed", || async {
        let counts = queue.counts().await.unwrap();
        counts.first().is_some_and(|c| c.completed == 40)
    })
    .await;
    shutdown.cancel();
    running.await.unwrap().unwrap();

    let handled = recorder.handled.lock().unwrap();
    assert_eq!(handled.len(), 40);
    assert!(handled.values().all(|times| *times == 1), "{handled:?}");
}

async fn a_failing_job_is_retried_then_lands_in_the_error_queue(queue: Arc<dyn JobQueue>) {
    let id = queue
        .enqueue(NewJob::new("default", "charge", vec![]).with_max_attempts(3))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let pool = WorkerPool::new(Arc::clone(&queue), settings()).handle(
        "charge",
        Arc::new(AlwaysFails),
        fast_retries(),
    );
    let running = tokio::spawn(pool.run(shutdown.clone()));
    eventually("the job is dead", || async {
        state_of(&queue, id).await == Some(JobState::Dead)
    })
    .await;
    shutdown.cancel();
    running.await.unwrap().unwrap();

    let dead = queue.get(id).await.unwrap().unwrap();
    assert_eq!(dead.attempts.len(), 3);
    assert_eq!(dead.last_error.as_deref(), Some("the provider is down"));
}

async fn a_job_of_an_unknown_kind_ends_in_the_error_queue_not_in_a_loop(queue: Arc<dyn JobQueue>) {
    let id = queue
        .enqueue(NewJob::new("default", "mystery", vec![]).with_max_attempts(1))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let running =
        tokio::spawn(WorkerPool::new(Arc::clone(&queue), settings()).run(shutdown.clone()));
    eventually("the job is dead", || async {
        state_of(&queue, id).await == Some(JobState::Dead)
    })
    .await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
    let dead = queue.get(id).await.unwrap().unwrap();
    assert!(dead.last_error.unwrap().contains("no handler"));
}

async fn shutdown_lets_a_running_job_finish_before_the_pool_stops(queue: Arc<dyn JobQueue>) {
    let id = queue
        .enqueue(NewJob::new("default", "gate", vec![]))
        .await
        .unwrap();
    let gate = Arc::new(Gate::default());
    let shutdown = CancellationToken::new();
    let pool = WorkerPool::new(Arc::clone(&queue), settings()).handle(
        "gate",
        gate.clone(),
        RetryPolicy::default(),
    );
    let running = tokio::spawn(pool.run(shutdown.clone()));
    gate.started.notified().await;

    shutdown.cancel();
    assert_eq!(state_of(&queue, id).await, Some(JobState::Running));
    gate.release.notify_one();
    running.await.unwrap().unwrap();
    assert_eq!(
        state_of(&queue, id).await,
        Some(JobState::Completed),
        "the pool waited for the job and acknowledged it before returning"
    );
}

async fn an_idle_pool_starts_a_new_job_at_once_when_the_backend_pushes_wake_ups(
    queue: Arc<dyn JobQueue>,
) {
    if queue.subscribe().is_none() {
        // SQLite has no push channel: its pools poll (covered by the cases above).
        return;
    }
    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let pool = WorkerPool::new(
        Arc::clone(&queue),
        PoolSettings {
            // Far longer than the deadline below: only a wake-up can start the job in time.
            poll_interval: Duration::from_secs(120),
            ..settings()
        },
    )
    .handle("count", recorder.clone(), RetryPolicy::default());
    let first = queue
        .enqueue(NewJob::new("default", "count", vec![1]))
        .await
        .unwrap();
    let running = tokio::spawn(pool.run(shutdown.clone()));
    eventually("the first job completed", || async {
        state_of(&queue, first).await == Some(JobState::Completed)
    })
    .await;

    let second = queue
        .enqueue(NewJob::new("default", "count", vec![2]))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while state_of(&queue, second).await != Some(JobState::Completed) {
        assert!(Instant::now() < deadline, "the idle pool was not woken");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

async fn a_pool_on_several_queues_passes_over_empty_ones_without_waiting_out_its_poll(
    queue: Arc<dyn JobQueue>,
) {
    for n in 0..40 {
        queue
            .enqueue(NewJob::new("default", "count", vec![n]))
            .await
            .unwrap();
    }
    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let pool = WorkerPool::new(
        Arc::clone(&queue),
        PoolSettings {
            queues: vec![
                "empty-a".to_owned(),
                "empty-b".to_owned(),
                "default".to_owned(),
            ],
            // Far longer than the deadline: a pool that waits for its poll timer after
            // asking an empty queue never gets to the jobs in time.
            poll_interval: Duration::from_secs(3600),
            ..settings()
        },
    )
    .handle("count", recorder.clone(), RetryPolicy::default());
    let running = tokio::spawn(pool.run(shutdown.clone()));

    eventually("all jobs completed", || async {
        let counts = queue.counts().await.unwrap();
        counts
            .iter()
            .any(|c| c.queue == "default" && c.completed == 40)
    })
    .await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(recorder.handled.lock().unwrap().len(), 40);
}

/// Records the queue of each job it starts, then holds the job until released.
#[derive(Default)]
struct HoldAndRecord {
    queues: Mutex<Vec<String>>,
    release: CancellationToken,
}

#[async_trait]
impl JobHandler for HoldAndRecord {
    async fn handle(&self, job: &LeasedJob) -> Result<(), HandlerError> {
        self.queues.lock().unwrap().push(job.queue.clone());
        self.release.cancelled().await;
        Ok(())
    }
}

async fn a_queue_with_a_backlog_does_not_take_every_slot_from_the_other_queues(
    queue: Arc<dyn JobQueue>,
) {
    for name in ["intake", "follow-up"] {
        for n in 0..20 {
            queue
                .enqueue(NewJob::new(name, "hold", vec![n]))
                .await
                .unwrap();
        }
    }
    let holder = Arc::new(HoldAndRecord::default());
    let shutdown = CancellationToken::new();
    let pool = WorkerPool::new(
        Arc::clone(&queue),
        PoolSettings {
            queues: vec!["intake".to_owned(), "follow-up".to_owned()],
            concurrency: 4,
            ..settings()
        },
    )
    .handle("hold", holder.clone(), RetryPolicy::default());
    let running = tokio::spawn(pool.run(shutdown.clone()));

    eventually("every slot holds a job", || async {
        holder.queues.lock().unwrap().len() == 4
    })
    .await;
    let started = holder.queues.lock().unwrap().clone();
    let intake = started.iter().filter(|q| *q == "intake").count();
    assert_eq!(
        (intake, started.len() - intake),
        (2, 2),
        "each queue got half the slots: {started:?}"
    );
    holder.release.cancel();
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// Runs the cases on SQLite, PostgreSQL and RabbitMQ.
macro_rules! on_every_backend {
    ($($case:ident),+ $(,)?) => {
        loadstar_store::on_every_database!(sql_queue; $($case),+);
        on_rabbitmq!(rabbit_queue; $($case),+);
    };
}

on_every_backend!(
    a_pool_runs_every_job_exactly_once,
    a_failing_job_is_retried_then_lands_in_the_error_queue,
    a_job_of_an_unknown_kind_ends_in_the_error_queue_not_in_a_loop,
    shutdown_lets_a_running_job_finish_before_the_pool_stops,
    an_idle_pool_starts_a_new_job_at_once_when_the_backend_pushes_wake_ups,
    a_pool_on_several_queues_passes_over_empty_ones_without_waiting_out_its_poll,
);

// Not on RabbitMQ: its consumers start with the first fetch, so which queue's messages
// are there first is up to the broker.
mod sql_only {
    use super::*;
    loadstar_store::on_every_database!(
        sql_queue;
        a_queue_with_a_backlog_does_not_take_every_slot_from_the_other_queues
    );
}
