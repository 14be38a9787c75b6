//! The counters behind `GET /stats`: what a test asserts about the provider's side of
//! the story (how many charges were really made, how many retries it absorbed).

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, updated lock-free by every request.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    charges: AtomicU64,
    repeated_attempts: AtomicU64,
    rejected_over_capacity: AtomicU64,
    injected_failures: AtomicU64,
}

/// The counters at one moment, as `GET /stats` returns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    /// Distinct successful charges: one per idempotency key at most.
    pub charges: u64,
    /// Requests whose key had already charged or was being charged: answered with the
    /// first charge (replay) or 409, never charged.
    pub repeated_attempts: u64,
    /// Requests refused with 429 because the provider was over capacity.
    pub rejected_over_capacity: u64,
    /// New charges failed on purpose with 503 (nothing charged).
    pub injected_failures: u64,
    /// Every `POST /v1/charges` received, whatever its answer.
    pub requests: u64,
}

impl Stats {
    pub fn record_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_charge(&self) {
        self.charges.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_repeated_attempt(&self) {
        self.repeated_attempts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_rejected_over_capacity(&self) {
        self.rejected_over_capacity.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_injected_failure(&self) {
        self.injected_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            charges: self.charges.load(Ordering::Relaxed),
            repeated_attempts: self.repeated_attempts.load(Ordering::Relaxed),
            rejected_over_capacity: self.rejected_over_capacity.load(Ordering::Relaxed),
            injected_failures: self.injected_failures.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}
