//! One connection's task: hyper serves it while a watchdog enforces the header and
//! keep-alive timeouts, the server's shutdown closes it gracefully (and its hard stop
//! cuts it), and a close that leaves a request body unread lingers.

use super::activity::{Activity, Expiry};
use super::linger::{linger, Lingered};
use super::tracked_service::{RequestBody, TrackedService};
use super::ConnectionLimits;
use hyper::body::Body;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use std::convert::Infallible;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use super::watched_io::WatchedIo;

/// Everything a connection task shares with the server.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) builder: Arc<Builder<TokioExecutor>>,
    pub(crate) limits: ConnectionLimits,
    /// Cancelled when the server stops accepting: close once the current request is done.
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when the shutdown grace period is over: drop the connection now.
    pub(crate) hard_stop: CancellationToken,
    /// Cloned by each task while it runs, so the server can wait for every connection
    /// to end.
    pub(crate) _open: watch::Receiver<()>,
}

/// How the HTTP part of a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// hyper finished with it (either side closed, or an error).
    Finished,
    /// The watchdog cut it: no request head in time, or no goodbye after an idle close.
    TimedOut,
    /// The server's grace period ran out.
    Cut,
}

/// Serves `stream` with `service` until the connection ends.
pub(crate) async fn serve<S, B>(stream: TcpStream, peer: SocketAddr, service: S, shared: Shared)
where
    S: tower::Service<Request<RequestBody>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    metrics::gauge!("http_connections_open").increment(1.0);
    let activity = Activity::new(Instant::now());
    let (hand_back, mut handed_back) = oneshot::channel();
    let io = TokioIo::new(WatchedIo::new(stream, Arc::clone(&activity), hand_back));
    let service = TrackedService::new(service, Arc::clone(&activity));
    let ending = {
        let mut connection = pin!(shared.builder.serve_connection_with_upgrades(io, service));
        let limits = &shared.limits;
        // Set once a graceful close has begun (shutdown or idleness).
        let mut closing = false;
        // Set when an idle connection was told goodbye: by then it must be gone.
        let mut goodbye_deadline: Option<tokio::time::Instant> = None;
        loop {
            let expiry = activity
                .phase()
                .deadline(limits)
                .filter(|(_, expiry)| !(closing && *expiry == Expiry::IdleTooLong));
            let timer = async {
                match expiry {
                    Some((at, expiry)) => {
                        sleep_until(at.into()).await;
                        expiry
                    }
                    None => std::future::pending().await,
                }
            };
            let goodbye_timer = async {
                match goodbye_deadline {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shared.hard_stop.cancelled() => break Ending::Cut,
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::debug!(peer = %peer, error = %error, "connection ended with an error");
                    }
                    break Ending::Finished;
                }
                () = shared.shutdown.cancelled(), if !closing => {
                    // In-flight requests finish first; the grace period's hard stop
                    // bounds them.
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = activity.changed() => {}
                () = goodbye_timer => break Ending::TimedOut,
                expiry = timer => match expiry {
                    Expiry::HeadTooSlow => {
                        tracing::debug!(peer = %peer, "closing a connection that sent no complete request head in time");
                        timed_out("header_read");
                        break Ending::TimedOut;
                    }
                    Expiry::IdleTooLong => {
                        timed_out("keepalive");
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                        // HTTP/1 closes at once; HTTP/2 sends GOAWAY and waits for the
                        // client's acknowledgement, for at most a header timeout.
                        goodbye_deadline =
                            Some(tokio::time::Instant::now() + limits.header_read_timeout);
                    }
                },
            }
        }
        // The connection drops here, handing its stream back.
    };
    if ending == Ending::Finished && activity.body_left_unread() {
        // Already handed back, unless an upgrade took the stream over.
        if let Ok(mut stream) = handed_back.try_recv() {
            let lingered = tokio::select! {
                lingered = linger(&mut stream, &shared.limits.linger) => Some(lingered),
                () = shared.hard_stop.cancelled() => None,
            };
            tracing::debug!(peer = %peer, lingered = ?lingered, "lingering close done");
            metrics::counter!("http_lingering_closes_total", "outcome" => outcome(lingered))
                .increment(1);
        }
    }
    metrics::gauge!("http_connections_open").decrement(1.0);
}

fn timed_out(reason: &'static str) {
    metrics::counter!("http_connections_timed_out_total", "reason" => reason).increment(1);
}

fn outcome(lingered: Option<Lingered>) -> &'static str {
    match lingered {
        Some(Lingered::ClientClosed { .. }) => "client_closed",
        Some(Lingered::ClientSilent { .. }) => "client_silent",
        Some(Lingered::TimeUp { .. }) => "time_up",
        Some(Lingered::TooMuch { .. }) => "too_much",
        Some(Lingered::Failed { .. }) => "failed",
        None => "server_stopped",
    }
}
