//! The payment simulator as an object: build it (socket bound, port 0 for tests), read
//! its address, run it until a cancellation token fires. Mirrors the api role's
//! `Application`, so tests start the real thing exactly as `loadstar sim payments` does.

use crate::behaviour::Behaviour;
use crate::config::SimConfig;
use crate::error::SimulatorError;
use crate::payments::{self, PaymentsState};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn;
use axum::Router;
use loadstar_core::{request_context, request_telemetry, Problem};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A charge body is three short fields; anything near this size is a client bug.
const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// How long in-flight requests may finish after the stop token fires. Charges sleep at
/// most `MAX_LATENCY_MS` anyway; this bounds a client that never finishes its request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A built payment simulator: configuration checked, socket bound, not yet serving.
pub struct PaymentSimulator {
    listener: TcpListener,
    router: Router,
}

impl PaymentSimulator {
    /// Checks `config` and binds `config.listen` (port 0 picks a free port: see
    /// [`PaymentSimulator::local_addr`]).
    pub async fn build(config: &SimConfig) -> Result<Self, SimulatorError> {
        let behaviour = Behaviour {
            failure_rate: config.failure_rate,
            latency_ms: config.latency_ms,
        }
        .validated()?;
        if config.capacity_per_sec == 0 {
            return Err(SimulatorError::ZeroCapacity);
        }
        let state = Arc::new(PaymentsState::new(behaviour, config.capacity_per_sec));
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| SimulatorError::Bind {
                    address: config.listen,
                    source,
                })?;
        Ok(Self {
            listener,
            router: http_stack(payments::router(state)),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, SimulatorError> {
        self.listener
            .local_addr()
            .map_err(SimulatorError::LocalAddr)
    }

    /// Serves until `shutdown` is cancelled and in-flight requests are done (or the grace
    /// period is over).
    pub async fn run_until_stopped(
        self,
        shutdown: CancellationToken,
    ) -> Result<(), SimulatorError> {
        let address = self.local_addr()?;
        tracing::info!(
            url = %format!("http://{address}"),
            "payment simulator listening on http://{address}"
        );
        let server = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            result = server => result.map_err(SimulatorError::Serve)?,
            () = deadline => {
                tracing::warn!(grace_secs = SHUTDOWN_GRACE.as_secs(), "shutdown grace period over; abandoning open connections");
            }
        }
        tracing::info!("payment simulator stopped");
        Ok(())
    }
}

/// The same outer middleware as the api role: request ids, every error a problem, one
/// access-log line and metrics per request, a body limit.
fn http_stack(routes: Router) -> Router {
    routes
        .fallback(|| async { Problem::for_status(StatusCode::NOT_FOUND) })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(from_fn(request_telemetry::layer))
        .layer(from_fn(request_context::layer))
}
