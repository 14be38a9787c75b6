//! The api role: build once, then run until stopped.

use crate::ops_routes;
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn;
use axum::Router;
use loadstar_core::config::Config;
use loadstar_core::http_server::{self, ConnectionLimits};
use loadstar_core::{request_context, request_telemetry, Problem};
use loadstar_jobs::WorkerPool;
use loadstar_shop::ShopState;
use loadstar_store::{Database, NodeLease};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// A built api node: database open and migrated, socket bound, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    db: Database,
    state: ShopState,
    config: Config,
    workers: Vec<WorkerPool>,
    /// This process's node id, released on a graceful stop.
    node: Arc<NodeLease>,
    shutdown: CancellationToken,
    grace: Duration,
}

impl Application {
    /// Opens and migrates the database, wires the routes and binds `server.listen`
    /// (port 0 picks a free port: see [`Application::local_addr`]).
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        // Install the recorder before anything records: the cache's subscriptions and
        // warm-up start while the state is built.
        loadstar_core::telemetry::metrics_handle();
        let db = Database::connect(&config.database, &config.data_dir)
            .await
            .context("cannot open the database")?;
        db.migrate().await.context("cannot migrate the database")?;
        let shutdown = CancellationToken::new();
        let (state, node) = crate::shop_state::build(&db, config, &shutdown).await?;
        if let Err(error) = loadstar_shop::products::views::warm_up(&state).await {
            tracing::warn!(error = %error, "cache warm-up failed; starting cold");
        }
        let router = http_stack(
            loadstar_shop::router(state.clone()).merge(ops_routes::router(db.clone())),
            config,
        );
        let listener = http_server::bind(config.server.listen)
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        Ok(Self {
            listener,
            router,
            db,
            state,
            config: config.clone(),
            workers: Vec::new(),
            node,
            shutdown,
            grace: Duration::from_secs(config.server.shutdown_grace_secs),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Cancelling this token starts a graceful shutdown: stop accepting, let in-flight
    /// requests finish (up to `server.shutdown_grace_secs`), close the database.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Also runs the worker pools in this process (what `loadstar serve` does).
    pub fn with_workers(mut self) -> Self {
        self.workers = crate::worker_role::pools(&self.state, &self.config);
        self
    }

    /// The shop's state (tests reach the job queue through it).
    pub fn state(&self) -> &ShopState {
        &self.state
    }

    /// The database this node uses (tests reach around the API with it).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Serves until the shutdown token is cancelled and in-flight requests drained.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            listener,
            router,
            db,
            workers,
            state,
            config,
            shutdown,
            grace,
            node,
            ..
        } = self;
        if !workers.is_empty() {
            crate::worker_role::spawn_monitors(&state, &config, &shutdown);
        }
        let workers = crate::worker_role::spawn_pools(workers, &shutdown);
        let stop_flusher = CancellationToken::new();
        let flusher =
            loadstar_shop::products::views::spawn_flusher(state.clone(), stop_flusher.clone());
        let address = listener.local_addr()?;
        tracing::info!(
            url = %format!("http://{address}"),
            docs = %format!("http://{address}/docs"),
            "listening on http://{address}; API docs at http://{address}/docs"
        );
        // Past the grace period the server cuts the connections still open, so none
        // outlives this function (and the database).
        http_server::serve(
            listener,
            router,
            ConnectionLimits::from_config(&config.server),
            shutdown,
            grace,
        )
        .await;
        crate::worker_role::join_pools(workers).await;
        // The last write-back, now that no request counts views any more.
        stop_flusher.cancel();
        if let Some(flusher) = flusher {
            if let Err(error) = flusher.await {
                tracing::warn!(error = %error, "product view flusher failed");
            }
        }
        node.release().await;
        db.close().await;
        tracing::info!("api stopped");
        Ok(())
    }
}

/// The middleware every request passes, outermost first: request id and problem
/// normalisation, access log and metrics, panic capture, timeout, body limits.
fn http_stack(routes: Router, config: &Config) -> Router {
    let body_limit = config.server.body_limit_bytes;
    routes
        .fallback(|| async { Problem::for_status(StatusCode::NOT_FOUND) })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(config.server.request_timeout_secs),
        ))
        .layer(CatchPanicLayer::new())
        .layer(from_fn(request_telemetry::layer))
        .layer(from_fn(request_context::layer))
}
