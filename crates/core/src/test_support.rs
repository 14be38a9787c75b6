//! Shared by the test suites of every crate (feature `test-support`).

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`poll_until`] looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Polls `condition` until it holds: how tests wait for background work, instead of
/// sleeping for a guessed time.
///
/// # Panics
/// If `condition` still fails after `deadline`, naming `what` was awaited.
pub async fn poll_until<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    while !condition().await {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// How a [`FaultProxy`] treats traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Bytes flow both ways.
    Pass,
    /// Every connection, open or new, is closed at once: a refusal, a reset.
    Cut,
    /// Connections stay open but no byte moves, and new ones are accepted and then left
    /// hanging: a partition, or a server that vanished without closing anything. The
    /// worst case for a client, which learns of it only from its own deadlines.
    Silent,
    /// The network is back for new connections, but those that went silent stay silent
    /// for good: a NAT or firewall that forgot them drops their packets, and nobody sends
    /// a reset. Only the client's own deadlines and heartbeats get it off them.
    Stranded,
}

/// A TCP proxy in front of a real server, for tests of what a client does when the
/// network between them fails. Stops forwarding when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    address: std::net::SocketAddr,
    mode: tokio::sync::watch::Sender<ProxyMode>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    #[allow(clippy::expect_used)]
    pub async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("a bound address");
        let (mode, watching) = tokio::sync::watch::channel(ProxyMode::Pass);
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, upstream, watching.clone()));
            }
        });
        Self {
            address,
            mode,
            acceptor,
        }
    }

    /// Where clients connect instead of the upstream.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    pub fn set_mode(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.mode.send_replace(ProxyMode::Cut);
    }
}

async fn forward(
    mut client: tokio::net::TcpStream,
    upstream: std::net::SocketAddr,
    mut mode: tokio::sync::watch::Receiver<ProxyMode>,
) {
    // A connection made while silent hangs until the mode changes; a cut closes it.
    if mode
        .wait_for(|mode| *mode != ProxyMode::Silent)
        .await
        .map_or(true, |mode| *mode == ProxyMode::Cut)
    {
        return;
    }
    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    let faulted = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = mode.wait_for(|mode| matches!(mode, ProxyMode::Silent | ProxyMode::Cut)) => true,
    };
    if faulted {
        // Silent: hold both sockets open without moving a byte until the partition heals;
        // then close them, as real ones would be dead by then (either side's deadline has
        // given up on them), unless stranded: then hold them until a cut. Cut: close at
        // once.
        let healed = mode.wait_for(|mode| *mode != ProxyMode::Silent).await;
        if healed.is_ok_and(|mode| *mode == ProxyMode::Stranded) {
            let _ = mode.wait_for(|mode| *mode == ProxyMode::Cut).await;
        }
    }
}
