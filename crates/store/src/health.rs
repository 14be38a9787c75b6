//! Whether a database server is up, known without asking it on a request's path.
//!
//! A request must not find out that the database is down by waiting: `sqlx`'s pool retries a
//! refused connect until `acquire_timeout`, and a query on a connection whose peer went
//! silent waits for TCP to give up. So each server has a [`Health`] state that requests
//! read with one atomic load, and a monitor task that keeps it true:
//!
//! - every `health_check_interval_ms` the monitor runs `SELECT 1` on a connection of its
//!   own, under a deadline; a refused or failed connect, an error or a timeout puts the
//!   state *down*, the first success after that puts it *up* again;
//! - a request that meets a connection-class error (or its own deadline) wakes the monitor
//!   at once, and a query deadline puts the state down directly;
//! - while down, every query is refused at once ([`crate::StoreError::Down`], a 503 with
//!   `Retry-After`), and queries already waiting (for a connection, or on a silent socket)
//!   are cut short the moment the state turns down;
//! - connections opened before the server came back are discarded at checkout, so the pool
//!   does not hand out sockets the restart already closed.
//!
//! Each change of state is logged once, with the cause: an outage is one line going down
//! and one coming back, however many requests it refused.

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, ConnectOptions, Connection, Executor};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// The health of one database server, shared by its pools and its monitor.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Debug)]
struct HealthInner {
    /// Which server this is, for the log lines: `primary`, later a replica's name.
    server: &'static str,
    up: AtomicBool,
    /// Broadcasts every change, so waiting queries can stop waiting when it turns down.
    changes: watch::Sender<bool>,
    /// Microseconds after `epoch` at which the server last came back.
    recovered_at_micros: AtomicU64,
    epoch: Instant,
    /// Wakes the monitor for an immediate probe.
    wake: Notify,
    /// Set when the database is closed: the monitor stops.
    closed: AtomicBool,
    /// Whether a monitor watches this server. An embedded SQLite file has none: it cannot
    /// be unreachable, and nothing would bring a state put down back up.
    monitored: AtomicBool,
}

impl Health {
    /// A server presumed up until a probe or a query says otherwise.
    pub(crate) fn new(server: &'static str) -> Self {
        let (changes, _) = watch::channel(true);
        Self {
            inner: Arc::new(HealthInner {
                server,
                up: AtomicBool::new(true),
                changes,
                recovered_at_micros: AtomicU64::new(0),
                epoch: Instant::now(),
                wake: Notify::new(),
                closed: AtomicBool::new(false),
                monitored: AtomicBool::new(false),
            }),
        }
    }

    /// Whether the server answered its last probe (and nothing since says otherwise).
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    /// Asks the monitor to probe now instead of at its next tick: something on a
    /// request's path looked like the server going away.
    pub(crate) fn suspect(&self) {
        self.inner.wake.notify_one();
    }

    /// A query got no answer within its deadline: on a monitored server that is an outage
    /// (a silent network, a vanished primary) until a probe says otherwise.
    pub(crate) fn deadline_passed(&self) {
        if self.inner.monitored.load(Ordering::Acquire) {
            self.mark_down("a query got no answer within database.query_timeout_ms");
            self.suspect();
        }
    }

    /// Puts the state down; logs only the change.
    pub(crate) fn mark_down(&self, cause: &str) {
        if self.inner.up.swap(false, Ordering::AcqRel) {
            tracing::error!(
                server = self.inner.server,
                cause,
                "database is down: requests that need it are answered 503 until it is back"
            );
            self.inner.changes.send_replace(false);
            metrics::gauge!("db_up", "server" => self.inner.server).set(0.0);
        }
    }

    /// Puts the state up; logs only the change.
    pub(crate) fn mark_up(&self) {
        if !self.inner.up.swap(true, Ordering::AcqRel) {
            let micros = self.inner.epoch.elapsed().as_micros();
            self.inner
                .recovered_at_micros
                .store(u64::try_from(micros).unwrap_or(u64::MAX), Ordering::Release);
            tracing::info!(server = self.inner.server, "database is back");
            self.inner.changes.send_replace(true);
            metrics::gauge!("db_up", "server" => self.inner.server).set(1.0);
        }
    }

    /// Resolves once the state is down (at once if it already is).
    pub(crate) async fn went_down(&self) {
        let mut changes = self.inner.changes.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we wait.
        let _ = changes.wait_for(|up| !*up).await;
    }

    /// Whether a connection of `age` was opened before the server last came back, and so
    /// may be one the outage already broke.
    pub(crate) fn predates_recovery(&self, age: Duration) -> bool {
        let recovered = self.inner.recovered_at_micros.load(Ordering::Acquire);
        if recovered == 0 {
            return false;
        }
        let since_recovery = self
            .inner
            .epoch
            .elapsed()
            .saturating_sub(Duration::from_micros(recovered));
        age > since_recovery
    }

    /// Stops the monitor.
    pub(crate) fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }

    /// Starts the monitor of this server. It holds the state weakly and ends when every
    /// handle is gone or [`Health::close`] is called.
    pub(crate) fn spawn_monitor(&self, options: AnyConnectOptions, settings: MonitorSettings) {
        self.inner.monitored.store(true, Ordering::Release);
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(monitor(weak, options, settings));
    }
}

/// How often and how patiently the monitor probes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MonitorSettings {
    pub interval: Duration,
    /// A connect plus `SELECT 1` that takes longer counts as down.
    pub probe_timeout: Duration,
}

async fn monitor(weak: Weak<HealthInner>, options: AnyConnectOptions, settings: MonitorSettings) {
    let mut connection: Option<AnyConnection> = None;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            break;
        }
        let health = Health { inner };
        match tokio::time::timeout(settings.probe_timeout, probe(&mut connection, &options)).await {
            Ok(Ok(())) => health.mark_up(),
            Ok(Err(error)) => {
                connection = None;
                health.mark_down(&error.to_string());
            }
            Err(_) => {
                connection = None;
                health.mark_down("no answer to a health probe within its deadline");
            }
        }
        let wake = tokio::time::sleep(settings.interval);
        tokio::select! {
            _ = wake => {}
            _ = health.inner.wake.notified() => {}
        }
    }
    if let Some(connection) = connection {
        let _ = connection.close().await;
    }
}

async fn probe(
    connection: &mut Option<AnyConnection>,
    options: &AnyConnectOptions,
) -> Result<(), sqlx::Error> {
    if connection.is_none() {
        *connection = Some(options.connect().await?);
    }
    if let Some(connection) = connection.as_mut() {
        connection.execute("SELECT 1").await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_state_change_wakes_waiters_and_connections_from_before_it_are_stale() {
        let health = Health::new("primary");
        assert!(health.is_up());
        assert!(!health.predates_recovery(Duration::from_secs(3600)));
        let waiter = tokio::spawn({
            let health = health.clone();
            async move { health.went_down().await }
        });
        health.mark_down("refused");
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("a waiter learns of the outage")
            .unwrap();
        assert!(!health.is_up());
        health.mark_up();
        assert!(health.is_up());
        assert!(health.predates_recovery(Duration::from_secs(3600)));
        assert!(!health.predates_recovery(Duration::ZERO));
    }
}
