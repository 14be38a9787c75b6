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
