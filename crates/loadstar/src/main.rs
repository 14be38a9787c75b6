//! `loadstar`: one binary for every role. See `loadstar --help`.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use loadstar::Application;
use loadstar_core::config::Config;
use loadstar_shop::auth::Role;
use loadstar_shop::users::SignUp;
use loadstar_shop::ShopState;
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
    /// Address the HTTP listener binds.
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process (the embedded default).
    Serve,
    /// Run the api role alone.
    Api,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Administrative tasks.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
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

async fn run_api(config: &Config) -> anyhow::Result<()> {
    let application = Application::build(config).await?;
    let signal = loadstar_core::shutdown::on_signal();
    let token = application.shutdown_token();
    tokio::spawn(async move {
        signal.cancelled().await;
        token.cancel();
    });
    application.run_until_stopped().await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = load_config(&cli.common)?;
    loadstar_core::telemetry::init_logging(&config.log);
    match cli.command {
        Command::Serve | Command::Api => run_api(&config).await,
        Command::Migrate => {
            let db = open_migrated_database(&config).await?;
            tracing::info!(backend = db.backend().name(), "migrations applied");
            db.close().await;
            Ok(())
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
