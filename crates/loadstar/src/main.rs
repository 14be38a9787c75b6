//! `loadstar`: one binary for every role. See `loadstar --help`.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use loadstar::Application;
use loadstar_core::config::Config;
use loadstar_shop::auth::Role;
use loadstar_shop::users::SignUp;
use loadstar_shop::ShopState;
use loadstar_sim::config::{DEFAULT_CAPACITY_PER_SEC, DEFAULT_LISTEN};
use loadstar_sim::{PaymentSimulator, SimConfig};
use loadstar_store::Database;
use std::net::SocketAddr;
use std::path::PathBuf;

/// mimalloc instead of glibc malloc: request handling allocates many small, short-lived
/// buffers across threads, where glibc's arenas showed up as ~15% of CPU in profiles
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "loadstar",
    version,
    about = "A large-scale web service reference architecture in one binary"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command understands; they override the file and the environment.
#[derive(Args)]
struct CommonArgs {
    /// TOML configuration file (see loadstar.example.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for local data (SQLite database, uploads).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address the HTTP listener binds (`sim payments`: its own listener, 127.0.0.1:9090
    /// unless given).
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process (the embedded default).
    Serve,
    /// Run the api role alone.
    Api,
    /// Run the worker role alone: the job pools of `[workers.*]`.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Administrative tasks.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Simulators of external systems, for tests and load runs.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an administrator account.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        #[arg(long, default_value = "Administrator")]
        name: String,
    },
}

#[derive(Subcommand)]
enum SimCommand {
    /// A payment provider: idempotent charges, 429 beyond capacity, injectable failures
    /// and latency. Listens on --listen, 127.0.0.1:9090 by default.
    Payments {
        /// Probability (0-1) that a new charge fails with a transient 503.
        #[arg(long, default_value_t = 0.0, value_name = "F")]
        failure_rate: f64,
        /// Artificial delay of every new charge, in milliseconds.
        #[arg(long, default_value_t = 0, value_name = "N")]
        latency_ms: u64,
        /// Charge requests accepted per second; beyond it the answer is 429.
        #[arg(long, default_value_t = DEFAULT_CAPACITY_PER_SEC, value_name = "RPS")]
        capacity: u32,
    },
}

fn load_config(common: &CommonArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(common.config.as_deref())?;
    if let Some(data_dir) = &common.data_dir {
        config.data_dir = data_dir.clone();
    }
    if let Some(listen) = common.listen {
        config.server.listen = listen;
    }
    Ok(config)
}

async fn open_migrated_database(config: &Config) -> anyhow::Result<Database> {
    let db = Database::connect(&config.database, &config.data_dir)
        .await
        .context("cannot open the database")?;
    db.migrate().await.context("cannot migrate the database")?;
    Ok(db)
}

async fn run_api(config: &Config, with_workers: bool) -> anyhow::Result<()> {
    // Every connection is a file; the common soft limit of 1,024 would cap the node far
    // below what it can serve.
    loadstar_core::http_server::open_files::raise_to_hard_limit();
    let mut application = Application::build(config).await?;
    if with_workers {
        application = application.with_workers();
    }
    let signal = loadstar_core::shutdown::on_signal();
    let token = application.shutdown_token();
    tokio::spawn(async move {
        signal.cancelled().await;
        token.cancel();
    });
    application.run_until_stopped().await
}

/// The simulator has its own listener: the global `--listen` if given, else its default,
/// never `server.listen`, which belongs to the api role.
async fn run_payment_simulator(config: SimConfig) -> anyhow::Result<()> {
    let simulator = PaymentSimulator::build(&config)
        .await
        .context("cannot start the payment simulator")?;
    simulator
        .run_until_stopped(loadstar_core::shutdown::on_signal())
        .await
        .context("the payment simulator failed")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = load_config(&cli.common)?;
    loadstar_core::telemetry::init_logging(&config.log);
    match cli.command {
        Command::Serve => run_api(&config, true).await,
        Command::Api => run_api(&config, false).await,
        Command::Worker => {
            loadstar::worker_role::run(&config, loadstar_core::shutdown::on_signal()).await
        }
        Command::Migrate => {
            let db = open_migrated_database(&config).await?;
            tracing::info!(backend = db.backend().name(), "migrations applied");
            db.close().await;
            Ok(())
        }
        Command::Sim {
            command:
                SimCommand::Payments {
                    failure_rate,
                    latency_ms,
                    capacity,
                },
        } => {
            run_payment_simulator(SimConfig {
                listen: cli.common.listen.unwrap_or(DEFAULT_LISTEN),
                failure_rate,
                latency_ms,
                capacity_per_sec: capacity,
            })
            .await
        }
        Command::Config => {
            print!("{}", config.to_redacted_toml()?);
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::Create {
                    email,
                    password,
                    name,
                },
        } => {
            let db = open_migrated_database(&config).await?;
            let state = ShopState::new(db.clone(), &config)?;
            let user = loadstar_shop::users::register(
                &state,
                SignUp {
                    email,
                    password,
                    name,
                },
                Role::Admin,
            )
            .await
            .map_err(|error| anyhow::anyhow!(describe(&error.to_problem())))?;
            println!("created admin {} ({})", user.email, user.id);
            db.close().await;
            Ok(())
        }
    }
}

/// A problem as one line for a terminal: the detail, then each field error.
fn describe(problem: &loadstar_core::Problem) -> String {
    let mut text = problem
        .detail
        .clone()
        .unwrap_or_else(|| problem.title.clone());
    for error in &problem.errors {
        text.push_str(&format!("; {}: {}", error.field, error.message));
    }
    text
}
