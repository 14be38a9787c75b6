//! The worker role: the job pools of the order pipeline, the alert webhook pool and the
//! error-queue watch, alone (`loadstar worker`) or beside the api (`loadstar serve`).

use anyhow::Context;
use loadstar_core::config::Config;
use loadstar_jobs::{
    AlertWebhook, Alerter, DeadLetterWatch, PoolSettings, RetryPolicy, WorkerPool, ALERTS_QUEUE,
    ALERT_WEBHOOK,
};
use loadstar_shop::ShopState;
use loadstar_store::Database;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often queue depths are published as gauges.
pub const DEPTH_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The pools this process runs: the order pipeline's, each raising the alerts of its
/// `alert`-policy jobs, and (with `jobs.alert_webhook_url` set) one small pool that
/// delivers alert webhooks.
pub fn pools(state: &ShopState, config: &Config) -> Vec<WorkerPool> {
    let alerter = alerter(state, config);
    let mut pools: Vec<WorkerPool> = loadstar_shop::order_pipeline::worker_pools(state, config)
        .into_iter()
        .map(|pool| pool.with_alerter(alerter.clone()))
        .collect();
    if !config.jobs.alert_webhook_url.is_empty() {
        let settings = PoolSettings {
            concurrency: 2,
            lease: Duration::from_secs(config.jobs.lease_secs),
            poll_interval: Duration::from_millis(config.jobs.poll_interval_ms),
            shutdown_grace: Duration::from_secs(config.jobs.shutdown_grace_secs),
            ..PoolSettings::new("alerts", vec![ALERTS_QUEUE.to_owned()])
        };
        pools.push(WorkerPool::new(Arc::clone(&state.jobs), settings).handle(
            ALERT_WEBHOOK,
            Arc::new(AlertWebhook::new(
                config.jobs.alert_webhook_url.clone(),
                config.jobs.alert_signing_secret.clone(),
            )),
            RetryPolicy::from(&config.jobs.policy(ALERT_WEBHOOK)),
        ));
    }
    pools
}

fn alerter(state: &ShopState, config: &Config) -> Alerter {
    Alerter::new(
        Arc::clone(&state.jobs),
        !config.jobs.alert_webhook_url.is_empty(),
    )
}

/// Starts what watches the queue beside the pools: queue-depth gauges and the error-queue
/// growth alerts; both stop when `shutdown` is cancelled.
pub fn spawn_monitors(state: &ShopState, config: &Config, shutdown: &CancellationToken) {
    tokio::spawn(loadstar_jobs::queue_metrics::report_depth(
        Arc::clone(&state.jobs),
        DEPTH_REPORT_INTERVAL,
        shutdown.child_token(),
    ));
    let thresholds = config.jobs.clone();
    let watch = DeadLetterWatch::new(
        Arc::clone(&state.jobs),
        alerter(state, config),
        move |kind| thresholds.dead_alert_threshold(kind),
    );
    tokio::spawn(watch.run(
        Duration::from_secs(config.jobs.dead_alert_check_secs.max(1)),
        shutdown.child_token(),
    ));
}

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
    let (state, node) = crate::shop_state::build(&db, config, &shutdown).await?;
    let pools = spawn_pools(pools(&state, config), &shutdown);
    spawn_monitors(&state, config, &shutdown);
    tracing::info!(pools = pools.len(), "worker role running");
    shutdown.cancelled().await;
    join_pools(pools).await;
    node.release().await;
    db.close().await;
    tracing::info!("worker role stopped");
    Ok(())
}
