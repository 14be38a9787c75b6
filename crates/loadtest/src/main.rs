//! `loadstar-loadtest`: load scenarios against loadstar's infrastructure and the report
//! they produce. `bench/` scripts run it; results are recorded in `docs/performance.md`.
//!
//! `loadstar-loadtest jobs --backend sqlite|postgres|rabbitmq` drives the real queue
//! backends (`SqlJobQueue`, `RabbitJobQueue`) and `WorkerPool` with a no-op handler in three phases (bulk enqueue, drain a pre-filled
//! queue, enqueue-to-start latency at a steady rate) and prints one Markdown table row.
//! A backend enters through [`backends::open`], which turns a name into a
//! [`bench_target::BenchTarget`] around any `Arc<dyn JobQueue>`.
//!
//! `loadstar-loadtest orders --url … --rate N` places orders through a running api at a
//! steady rate ([`orders_load`]), for the soak benchmark (`bench/soak.sh`).

mod backends;
mod bench_target;
mod counting_queue;
mod jobs_benchmark;
mod latency;
mod orders_load;
mod report;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Same allocator as the server, so the queue's client side costs what it costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "loadstar-loadtest", about = "Load scenarios for loadstar")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Job queue: bulk enqueue, drain, steady-rate enqueue-to-start latency.
    Jobs(JobsArgs),
    /// Prints the header of the rows `jobs` prints.
    JobsHeader,
    /// Orders through a running api at a steady rate; prints one summary line.
    Orders(OrdersArgs),
}

#[derive(clap::Args)]
struct OrdersArgs {
    /// Base URL of the api.
    #[arg(long)]
    url: String,
    /// Session token of the buyer.
    #[arg(long, env = "LOADSTAR_BENCH_TOKEN")]
    token: String,
    #[arg(long)]
    user_id: String,
    #[arg(long)]
    product_id: String,
    /// Orders started per second.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// Most requests in flight at once; a tick with none free is skipped (and counted).
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
}

#[derive(clap::Args)]
struct JobsArgs {
    #[arg(long, value_enum)]
    backend: backends::BackendName,
    /// PostgreSQL URL of a scratch database (required for postgres; it is migrated).
    #[arg(long, env = "LOADSTAR_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// AMQP URL of the broker (required for rabbitmq).
    #[arg(long, env = "LOADSTAR_BENCH_RABBITMQ_URL")]
    rabbitmq_url: Option<String>,
    /// Where the SQLite file goes (a fresh temporary directory if not given).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 100_000)]
    jobs: u64,
    #[arg(long, default_value_t = 4)]
    enqueuers: usize,
    #[arg(long, default_value_t = 100)]
    batch: usize,
    #[arg(long, default_value_t = 2)]
    pools: usize,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 200)]
    poll_ms: u64,
    /// Database connections (PostgreSQL pool; SQLite readers).
    #[arg(long, default_value_t = 16)]
    connections: u32,
    #[arg(long, default_value_t = 200)]
    rate: u32,
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,
    #[arg(long, default_value_t = 300)]
    phase_timeout_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,loadstar_loadtest=info")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::JobsHeader => println!("{}", report::MARKDOWN_HEADER),
        Command::Orders(args) => {
            let settings = orders_load::OrdersLoadSettings {
                url: args.url,
                token: args.token,
                user_id: args.user_id,
                product_id: args.product_id,
                rate: args.rate,
                duration: Duration::from_secs(args.duration_secs),
                max_in_flight: args.max_in_flight,
            };
            println!("{}", orders_load::run(&settings).await?.summary());
        }
        Command::Jobs(args) => {
            let scratch =
                std::env::temp_dir().join(format!("loadstar-loadtest-{}", std::process::id()));
            let data_dir = args.data_dir.clone().unwrap_or_else(|| scratch.clone());
            std::fs::create_dir_all(&data_dir)?;
            let slots = args.pools.saturating_mul(args.concurrency);
            let stores = backends::Stores {
                database_url: args.database_url.as_deref(),
                rabbitmq_url: args.rabbitmq_url.as_deref(),
                max_connections: args.connections,
                data_dir: &data_dir,
                prefetch: u16::try_from(slots.saturating_mul(2)).unwrap_or(u16::MAX),
            };
            let target = backends::open(args.backend, &stores).await?;
            let settings = jobs_benchmark::JobsBenchSettings {
                jobs: args.jobs,
                enqueuers: args.enqueuers,
                batch: args.batch,
                pools: args.pools,
                concurrency: args.concurrency,
                poll_interval: Duration::from_millis(args.poll_ms),
                rate: args.rate,
                latency_window: Duration::from_secs(args.latency_secs),
                phase_timeout: Duration::from_secs(args.phase_timeout_secs),
            };
            let report = jobs_benchmark::run(target, &settings).await?;
            tracing::info!(samples = report.latency_samples, "latency samples");
            println!("{}", report::markdown_row(&report));
            if args.data_dir.is_none() {
                std::fs::remove_dir_all(&scratch)?;
            }
        }
    }
    Ok(())
}
