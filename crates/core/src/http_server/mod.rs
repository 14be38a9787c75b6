//! The HTTP listener every loadstar server shares: the api role today, the gateway next.
//!
//! [`serve`] accepts TCP connections and serves each with hyper (HTTP/1.1, and HTTP/2
//! over cleartext when a client opens with its preface), handing requests to any tower
//! service, such as an axum `Router`. What it adds to hyper is what keeps clients that do
//! not play along from taking a node down, each in a module of its own:
//!
//! - [`bind`]: a listening socket with room for bursts of connections.
//! - `accept`: a failing accept (out of open files) is retried after a short pause and
//!   logged at most once a second with what to do, instead of spinning or giving up;
//!   [`open_files`] raises the soft open-files limit to the hard one at start.
//! - `activity`: per connection, a complete request head is due within
//!   `header_read_timeout` of accept (or of its first byte after an idle wait), and a
//!   keep-alive connection idle for `keepalive_timeout` is closed; the connection task
//!   (`connection`) enforces both, reading the phase its I/O (`watched_io`) and its
//!   requests and bodies (`tracked_service`) report.
//! - `linger`: a connection closed with a request body unread (a 413) reads and
//!   discards what the client still sends, within bounds, so the client gets to read
//!   the answer instead of a reset.
//! - graceful shutdown: when `shutdown` is cancelled the listener closes, each connection
//!   finishes its current request and closes; after `grace` whatever is left is cut.

mod accept;
mod activity;
mod connection;
mod linger;
pub mod open_files;
mod tracked_service;
mod watched_io;

pub use linger::LingerLimits;
pub use tracked_service::{RequestBody, ResponseBody};

use crate::config::ServerConfig;
use hyper::body::Body;
use hyper::{Request, Response};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder;
use std::convert::Infallible;
use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Connections the kernel completes and queues for accept before the server takes them:
/// room for a burst of clients, or for the clients arriving while the process is out of
/// open files. tokio's `TcpListener::bind` asks for 128, which a burst overflows (the
/// kernel then drops handshakes and clients retry after a second or more). The kernel
/// caps it at `net.core.somaxconn` (4096 by default since Linux 5.4).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds `address` for [`serve`], with a [`LISTEN_BACKLOG`]-deep accept queue.
///
/// # Errors
/// When the address cannot be bound (in use, not local, not permitted).
pub fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As the standard library and tokio do: rebinding right after a restart works.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The per-connection limits of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A complete request head is due this long after accept, or after the first byte
    /// following an idle keep-alive wait; else the connection is cut.
    pub header_read_timeout: Duration,
    /// A connection with nothing in flight and no byte of a next request is closed after
    /// this long.
    pub keepalive_timeout: Duration,
    /// Bounds of the lingering close after a request body was left unread.
    pub linger: LingerLimits,
}

impl ConnectionLimits {
    /// The limits `[server]` configures.
    pub fn from_config(config: &ServerConfig) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            keepalive_timeout: Duration::from_millis(config.keepalive_timeout_ms),
            linger: LingerLimits {
                total: Duration::from_millis(config.linger_time_ms),
                read_timeout: Duration::from_millis(config.linger_read_timeout_ms),
                max_bytes: config.linger_max_bytes,
            },
        }
    }
}

/// How [`serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished within the grace period.
    Drained,
    /// The grace period ran out; the connections still open were cut.
    GraceExpired,
}

/// Serves `service` on `listener` until `shutdown` is cancelled and the connections have
/// finished, for at most `grace` after that.
///
/// The listener is closed as soon as `shutdown` is cancelled, so new clients are refused
/// (and a load balancer moves on) while the open connections drain.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    grace: Duration,
) -> Stopped
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
    let (all_closed, open) = watch::channel(());
    let hard_stop = CancellationToken::new();
    let shared = connection::Shared {
        builder: Arc::new(builder()),
        limits,
        shutdown: shutdown.clone(),
        hard_stop: hard_stop.clone(),
        _open: open,
    };
    let mut failures = accept::FailureLog::default();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = accept::accept(&listener, &mut failures) => accepted,
        };
        tokio::spawn(connection::serve(
            stream,
            peer,
            service.clone(),
            shared.clone(),
        ));
    }
    drop(listener);
    drop(shared);
    tokio::select! {
        () = all_closed.closed() => Stopped::Drained,
        () = tokio::time::sleep(grace) => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "shutdown grace period over; dropping open connections"
            );
            hard_stop.cancel();
            all_closed.closed().await;
            Stopped::GraceExpired
        }
    }
}

/// hyper's connection builder: HTTP/1.1 and HTTP/2 (cleartext, by preface).
fn builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    // hyper's own header timer would run from the end of the previous response, cutting
    // idle keep-alive connections at the header timeout; `activity` times both apart.
    builder.http1().header_read_timeout(None);
    // Extended CONNECT, so HTTP/2 can carry WebSockets as HTTP/1.1 upgrades do.
    builder.http2().enable_connect_protocol();
    builder
}
