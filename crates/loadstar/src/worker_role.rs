//! The worker role: the job pools of the order pipeline, alone (`loadstar worker`) or
//! beside the api (`loadstar serve`).

use anyhow::Context;
use loadstar_core::config::Config;
use loadstar_jobs::WorkerPool;
use loadstar_store::Database;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often queue depths are published as gauges.
pub const DEPTH_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts each pool on its own task; all stop when `shutdown` is cancelled.
pub fn spawn_pools(
    pools: Vec<WorkerPool>,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<Result<(), loadstar_jobs::JobError>>> {
    pools
        .into_iter()
        .map(|pool| tokio::spawn(pool.run(shutdown.child_token())))
        .collect()
}

/// Waits for pools to drain (each bounded by its own grace period).
pub async fn join_pools(pools: Vec<JoinHandle<Result<(), loadstar_jobs::JobError>>>) {
    for pool in pools {
        match pool.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(error = %error, "worker pool failed"),
            Err(error) => tracing::error!(error = %error, "worker pool task panicked"),
        }
    }
}

/// Runs the worker role until `shutdown`: opens and migrates the database, then runs
/// every configured pool.
pub async fn run(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let db = Database::connect(&config.database, &config.data_dir)
        .await
        .context("cannot open the database")?;
    db.migrate().await.context("cannot migrate the database")?;
    let state = crate::shop_state::build(&db, config)?;
    let pools = spawn_pools(
        loadstar_shop::order_pipeline::worker_pools(&state, config),
        &shutdown,
    );
    tokio::spawn(loadstar_jobs::queue_metrics::report_depth(
        std::sync::Arc::clone(&state.jobs),
        DEPTH_REPORT_INTERVAL,
        shutdown.child_token(),
    ));
    tracing::info!(pools = pools.len(), "worker role running");
    shutdown.cancelled().await;
    join_pools(pools).await;
    db.close().await;
    tracing::info!("worker role stopped");
    Ok(())
}
