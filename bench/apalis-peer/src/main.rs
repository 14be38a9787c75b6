//! The apalis peer of `bench/jobs.sh`: the workload `loadstar-loadtest jobs` runs on
//! loadstar's queue, run on apalis 1.0 with its PostgreSQL storage, printing the same
//! Markdown row.
//!
//! 1. Bulk enqueue: `--enqueuers` tasks push batches of `--batch` jobs, one transaction
//!    each, through `apalis_postgres::queries::push_tasks` (apalis' bulk insert).
//! 2. Drain: `--workers` apalis workers (each `--concurrency` jobs at once, fetching
//!    `--batch-size` per poll, LISTEN/NOTIFY wake-ups) process the backlog; timed until
//!    PostgreSQL shows every job done, so apalis' batched acknowledgement is included.
//! 3. Latency: one push per job at `--rate` per second for `--latency-secs`; the handler
//!    records now minus the enqueue time carried in the job.

use anyhow::{bail, Context};
use apalis::prelude::*;
use apalis_postgres::{Config, PgPool, PostgresStorage};
use clap::Parser;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const QUEUE: &str = "bench";

#[derive(Parser)]
struct Args {
    /// A scratch PostgreSQL database (apalis creates its schema there).
    #[arg(long)]
    database_url: String,
    #[arg(long, default_value_t = 100_000)]
    jobs: u64,
    #[arg(long, default_value_t = 4)]
    enqueuers: usize,
    #[arg(long, default_value_t = 100)]
    batch: usize,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 16)]
    connections: u32,
    #[arg(long, default_value_t = 200)]
    rate: u32,
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,
    #[arg(long, default_value_t = 300)]
    phase_timeout_secs: u64,
}

/// What the handler shares with the driver.
#[derive(Default)]
struct Probe {
    handled: AtomicU64,
    recording: AtomicBool,
    latencies_micros: Mutex<Vec<u64>>,
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

/// The no-op job: its argument is the enqueue time in microseconds (0 in bulk).
async fn noop(enqueued_micros: u64, probe: Data<Arc<Probe>>) -> Result<(), BoxDynError> {
    if probe.recording.load(Ordering::Relaxed) {
        let waited = now_micros().saturating_sub(enqueued_micros);
        probe
            .latencies_micros
            .lock()
            .map_err(|_| "latency lock poisoned")?
            .push(waited);
    }
    probe.handled.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn config(args: &Args) -> Config {
    Config::default().queue(QUEUE).batch_size(args.batch_size)
}

fn encoded(enqueued_micros: u64) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(&enqueued_micros)?)
}

async fn bulk_enqueue(pool: &PgPool, args: &Args) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut enqueuers = tokio::task::JoinSet::new();
    for _ in 0..args.enqueuers {
        let (pool, next) = (pool.clone(), Arc::clone(&next));
        let (jobs, batch) = (args.jobs, args.batch as u64);
        enqueuers.spawn(async move {
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= jobs {
                    return anyhow::Ok(());
                }
                let tasks = (0..batch.min(jobs - first))
                    .map(|_| Ok(TaskBuilder::new(encoded(0)?).build()))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let mut tx = pool.begin().await?;
                apalis_postgres::queries::push_tasks(&mut *tx, QUEUE, tasks).await?;
                tx.commit().await?;
            }
        });
    }
    while let Some(joined) = enqueuers.join_next().await {
        joined.context("an enqueuer panicked")??;
    }
    Ok(args.jobs as f64 / started.elapsed().as_secs_f64())
}

/// The drain and latency phases, once the workers run; returns processed jobs/s.
async fn measure(
    pool: &PgPool,
    probe: &Probe,
    args: &Args,
    started: Instant,
) -> anyhow::Result<f64> {
    let timeout = Duration::from_secs(args.phase_timeout_secs);
    wait_for_done(pool, probe, args.jobs, timeout).await?;
    let process_per_second = args.jobs as f64 / started.elapsed().as_secs_f64();

    eprintln!("apalis: steady-rate latency at {} jobs/s", args.rate);
    probe.recording.store(true, Ordering::Relaxed);
    let steady = u64::from(args.rate) * args.latency_secs;
    let sink = PostgresStorage::<u64>::new(pool).with_config(config(args));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    let mut pushes = tokio::task::JoinSet::new();
    for _ in 0..steady {
        ticks.tick().await;
        let mut sink = sink.clone();
        pushes.spawn(async move { sink.push(now_micros()).await });
    }
    while let Some(joined) = pushes.join_next().await {
        joined
            .context("a push panicked")?
            .map_err(|error| anyhow::anyhow!("push failed: {error}"))?;
    }
    wait_for_done(pool, probe, args.jobs + steady, timeout).await?;
    probe.recording.store(false, Ordering::Relaxed);
    Ok(process_per_second)
}

async fn done_jobs(pool: &PgPool) -> anyhow::Result<u64> {
    let done: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'",
    )
    .bind(QUEUE)
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(done).unwrap_or(0))
}

/// Waits until the handler ran `target` times, then until PostgreSQL records them done.
async fn wait_for_done(
    pool: &PgPool,
    probe: &Probe,
    target: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while probe.handled.load(Ordering::Relaxed) < target {
        if Instant::now() > deadline {
            bail!(
                "timed out: handler ran {} of {target} jobs",
                probe.handled.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while done_jobs(pool).await? < target {
        if Instant::now() > deadline {
            bail!("timed out waiting for apalis to record {target} jobs done");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(args.connections)
        .connect(&args.database_url)
        .await
        .context("connecting the apalis database")?;
    PostgresStorage::setup(&pool)
        .await
        .context("apalis migrations")?;

    eprintln!("apalis: bulk enqueue of {} jobs", args.jobs);
    let enqueue_per_second = bulk_enqueue(&pool, &args).await?;

    let probe = Arc::new(Probe::default());
    let mut contexts = Vec::new();
    let mut workers = Vec::new();
    eprintln!("apalis: draining the backlog");
    let started = Instant::now();
    for index in 0..args.workers {
        let backend = PostgresStorage::<u64>::new(&pool)
            .with_config(config(&args))
            .with_pubsub();
        let context = WorkerContext::new(&format!("bench-{index}"));
        contexts.push(context.clone());
        let worker = WorkerBuilder::new(&context)
            .backend(backend)
            .data(Arc::clone(&probe))
            .concurrency(args.concurrency)
            .parallelize(tokio::spawn)
            .build(noop);
        workers.push(worker.run());
    }
    // The workers run on this task beside the driver (their futures are not `Send`);
    // the driver stops them when it is done.
    let drive = async {
        let measured = measure(&pool, &probe, &args, started).await;
        for context in &contexts {
            let _ = context.stop();
        }
        measured
    };
    let (measured, _) = tokio::join!(drive, futures::future::join_all(workers));
    let process_per_second = measured?;

    let mut latencies = probe
        .latencies_micros
        .lock()
        .map_err(|_| anyhow::anyhow!("latency lock poisoned"))?
        .clone();
    latencies.sort_unstable();
    println!(
        "| apalis 1.0 (PostgreSQL) | {enqueue_per_second:.0} | {process_per_second:.0} | {:.2} ms | {:.2} ms |",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0)
    );
    Ok(())
}
