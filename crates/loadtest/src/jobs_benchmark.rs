//! The job-queue benchmark: bulk enqueue, drain a pre-filled queue, then enqueue-to-start
//! latency at a steady rate with idle workers. Drives the real [`WorkerPool`] with a
//! no-op handler, so what it measures is the queue machinery and nothing else.

use crate::bench_target::BenchTarget;
use crate::counting_queue::CountingQueue;
use crate::latency::LatencyRecorder;
use anyhow::{bail, Context};
use async_trait::async_trait;
use loadstar_core::Timestamp;
use loadstar_jobs::{
    HandlerError, JobHandler, JobQueue, LeasedJob, NewJob, PoolSettings, RetryPolicy, WorkerPool,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const QUEUE: &str = "bench";
const KIND: &str = "bench.noop";

/// The workload's shape.
#[derive(Debug, Clone)]
pub struct JobsBenchSettings {
    /// Jobs enqueued, then processed.
    pub jobs: u64,
    /// Concurrent enqueuers in the bulk phase.
    pub enqueuers: usize,
    /// Jobs per transaction in the bulk phase (when the backend has transactions).
    pub batch: usize,
    /// Worker pools (each one fetch loop) and jobs each runs at once.
    pub pools: usize,
    pub concurrency: usize,
    pub poll_interval: Duration,
    /// Steady enqueue rate of the latency phase, jobs per second, and for how long.
    pub rate: u32,
    pub latency_window: Duration,
    /// No phase may take longer than this.
    pub phase_timeout: Duration,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct JobsReport {
    pub backend: String,
    pub enqueue_per_second: f64,
    pub process_per_second: f64,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_samples: usize,
}

/// Runs the three phases against `target`.
pub async fn run(target: BenchTarget, settings: &JobsBenchSettings) -> anyhow::Result<JobsReport> {
    let counting = Arc::new(CountingQueue::new(Arc::clone(&target.queue)));
    let queue: Arc<dyn JobQueue> = counting.clone();

    tracing::info!(backend = %target.name, jobs = settings.jobs, "bulk enqueue");
    let enqueue_per_second = bulk_enqueue(&target, settings).await?;

    let handler = Arc::new(NoopHandler::default());
    let shutdown = CancellationToken::new();
    let mut pools = JoinSet::new();
    for index in 0..settings.pools {
        let pool = WorkerPool::new(
            Arc::clone(&queue),
            PoolSettings {
                concurrency: settings.concurrency,
                poll_interval: settings.poll_interval,
                shutdown_grace: Duration::from_secs(5),
                ..PoolSettings::new(format!("bench-{index}"), vec![QUEUE.to_owned()])
            },
        )
        .handle(KIND, handler.clone(), RetryPolicy::default());
        pools.spawn(pool.run(shutdown.clone()));
    }

    tracing::info!(backend = %target.name, "draining the backlog");
    let started = Instant::now();
    wait_for_completed(&counting, settings.jobs, settings.phase_timeout).await?;
    let process_per_second = settings.jobs as f64 / started.elapsed().as_secs_f64();

    tracing::info!(backend = %target.name, rate = settings.rate, "steady-rate latency");
    handler.latencies.reset();
    handler.recording.store(true, Ordering::Relaxed);
    let steady_jobs = steady_enqueue(&queue, settings).await?;
    wait_for_completed(
        &counting,
        settings.jobs + steady_jobs,
        settings.phase_timeout,
    )
    .await?;
    handler.recording.store(false, Ordering::Relaxed);

    shutdown.cancel();
    while let Some(joined) = pools.join_next().await {
        joined.context("a worker pool panicked")??;
    }
    let latency_p50 = handler.latencies.percentile(50.0).unwrap_or_default();
    let latency_p99 = handler.latencies.percentile(99.0).unwrap_or_default();
    Ok(JobsReport {
        backend: target.name,
        enqueue_per_second,
        process_per_second,
        latency_p50,
        latency_p99,
        latency_samples: handler.latencies.len(),
    })
}

/// Enqueues `settings.jobs` jobs from `settings.enqueuers` tasks; returns jobs/s.
async fn bulk_enqueue(target: &BenchTarget, settings: &JobsBenchSettings) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut enqueuers = JoinSet::new();
    for _ in 0..settings.enqueuers {
        let next = Arc::clone(&next);
        let queue = Arc::clone(&target.queue);
        let db = target.transactions.clone();
        let (jobs, batch) = (settings.jobs, settings.batch as u64);
        enqueuers.spawn(async move {
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= jobs {
                    return anyhow::Ok(());
                }
                let count = batch.min(jobs - first);
                match &db {
                    Some(db) => {
                        let mut tx = db.writer().begin().await?;
                        for _ in 0..count {
                            queue.enqueue_in(&mut tx, noop_job()).await?;
                        }
                        tx.commit().await?;
                    }
                    None => {
                        for _ in 0..count {
                            queue.enqueue(noop_job()).await?;
                        }
                    }
                }
            }
        });
    }
    let deadline = tokio::time::timeout(settings.phase_timeout, async {
        while let Some(joined) = enqueuers.join_next().await {
            joined.context("an enqueuer panicked")??;
        }
        anyhow::Ok(())
    });
    deadline.await.context("bulk enqueue timed out")??;
    Ok(settings.jobs as f64 / started.elapsed().as_secs_f64())
}

/// Enqueues one job at a time at `settings.rate` per second for the latency window;
/// returns how many it enqueued. Each enqueue runs on its own task so a slow commit
/// does not hold back the ones after it.
async fn steady_enqueue(
    queue: &Arc<dyn JobQueue>,
    settings: &JobsBenchSettings,
) -> anyhow::Result<u64> {
    let total = (u64::from(settings.rate) * settings.latency_window.as_millis() as u64) / 1000;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(settings.rate)));
    let mut enqueues = JoinSet::new();
    for _ in 0..total {
        ticks.tick().await;
        let queue = Arc::clone(queue);
        enqueues.spawn(async move { queue.enqueue(noop_job()).await });
    }
    while let Some(joined) = enqueues.join_next().await {
        joined.context("an enqueue panicked")??;
    }
    Ok(total)
}

async fn wait_for_completed(
    counting: &CountingQueue,
    target: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while counting.completed() < target {
        if Instant::now() > deadline {
            bail!(
                "timed out: {} of {target} jobs completed",
                counting.completed()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn noop_job() -> NewJob {
    NewJob::new(QUEUE, KIND, Vec::new())
}

/// Does nothing; while `recording`, notes how long each job waited to start.
#[derive(Default)]
struct NoopHandler {
    recording: AtomicBool,
    latencies: LatencyRecorder,
}

#[async_trait]
impl JobHandler for NoopHandler {
    async fn handle(&self, job: &LeasedJob) -> Result<(), HandlerError> {
        if self.recording.load(Ordering::Relaxed) {
            let waited = Timestamp::now().unix_micros() - job.enqueued_at.unix_micros();
            self.latencies
                .record(Duration::from_micros(u64::try_from(waited).unwrap_or(0)));
        }
        Ok(())
    }
}
