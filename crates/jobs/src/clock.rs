//! Where the queue's statements take the time from.
//!
//! Every time that decides who owns a job or when it may run (lease expiry, the sweep of
//! expired leases, due times, retry times, time to live, unique-key windows, the rate
//! window) is read by the SQL statement itself from the database server's clock. Nodes
//! share that one clock, so a node whose own clock runs fast or slow (no NTP, a VM
//! resumed from suspend) neither steals the leases of the others nor waits a minute for
//! due jobs; see `docs/decisions/0007-database-time.md`.
//!
//! Each statement reads now as `COALESCE($n, <database clock>)` ([`SqlNow`]) and binds
//! `$n` from the queue's [`Clock`]: [`DatabaseClock`] binds NULL (production), a
//! [`ManualClock`] binds its own time, so tests move time instead of sleeping and still
//! run the very statements production runs. Durations (lease, delay, backoff, time to
//! live) are bound as microseconds and added in the statement.

use loadstar_core::Timestamp;
use loadstar_store::Backend;
use std::sync::Mutex;
use std::time::Duration;

/// What time the queue's statements use.
pub trait Clock: Send + Sync + 'static {
    /// The instant statements use as now instead of the database server's clock; `None`
    /// (production) leaves the time to the database.
    fn pinned_now(&self) -> Option<Timestamp>;

    /// This process's idea of now, for pacing its own work only (how often it sweeps,
    /// when it gives up a broker message): never stored, nor compared with a stored time.
    fn local_now(&self) -> Timestamp {
        self.pinned_now().unwrap_or_else(Timestamp::now)
    }
}

/// The production clock: the database server's, read by every statement.
#[derive(Debug, Default, Clone, Copy)]
pub struct DatabaseClock;

impl Clock for DatabaseClock {
    fn pinned_now(&self) -> Option<Timestamp> {
        None
    }
}

/// A clock that moves only when told: delays, leases and TTLs become testable without
/// sleeping.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// Starts at the current wall-clock time.
    pub fn new() -> Self {
        Self {
            now: Mutex::new(Timestamp::now()),
        }
    }

    /// The time it shows.
    pub fn now(&self) -> Timestamp {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = now.plus(by);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn pinned_now(&self) -> Option<Timestamp> {
        Some(self.now())
    }
}

/// Now as one statement reads it: the SQL expression and the value it binds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SqlNow {
    backend: Backend,
    pinned: Option<Timestamp>,
}

impl SqlNow {
    /// Now on `backend` by `clock`.
    pub(crate) fn new(backend: Backend, clock: &dyn Clock) -> Self {
        Self {
            backend,
            pinned: clock.pinned_now(),
        }
    }

    /// The expression that reads now, with the pinned time bound as parameter `$param`:
    /// `COALESCE($param, <database clock>)`. The text depends on the backend only, so a
    /// statement prepares once whatever the clock.
    pub(crate) fn sql(self, param: usize) -> String {
        format!("COALESCE(${param}, {})", self.backend.now_micros_sql())
    }

    /// The value to bind to that parameter: NULL unless the clock pins the time.
    pub(crate) fn bind(self) -> Option<i64> {
        self.pinned.map(Timestamp::unix_micros)
    }

    /// The same now, pinned to `instant`: for the later statements of a transaction, so
    /// they all see the instant an earlier one read from the database.
    pub(crate) fn pinned_at(self, instant: Timestamp) -> Self {
        Self {
            pinned: Some(instant),
            ..self
        }
    }
}

/// `duration` in microseconds, for statements to add to now. Capped at a century, so
/// adding it to a timestamp never overflows a BIGINT.
pub(crate) fn micros(duration: Duration) -> i64 {
    const CENTURY_MICROS: i64 = 100 * 366 * 24 * 3_600 * 1_000_000;
    i64::try_from(duration.as_micros())
        .unwrap_or(CENTURY_MICROS)
        .min(CENTURY_MICROS)
}
