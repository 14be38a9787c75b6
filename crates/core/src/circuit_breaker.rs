//! A circuit breaker: stop calling a dependency that keeps failing, try again later.
//!
//! Closed: calls go through; `failure_threshold` consecutive failures open it. Open: calls
//! are refused at once (no timeouts piling up against a dead service) until `open_for`
//! has passed. Half-open: one trial call goes through; its success closes the breaker,
//! its failure opens it again. Time is passed in, so tests need no clock.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the breaker says about the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Make the call.
    Allowed,
    /// Do not call; the dependency is presumed down.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A trial call is in flight; others are refused until it reports.
    HalfOpen,
}

/// A thread-safe circuit breaker for one dependency.
#[derive(Debug)]
pub struct CircuitBreaker {
    name: &'static str,
    failure_threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub fn new(name: &'static str, failure_threshold: u32, open_for: Duration) -> Self {
        Self {
            name,
            failure_threshold: failure_threshold.max(1),
            open_for,
            state: Mutex::new(State::Closed {
                consecutive_failures: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks whether a call may be made at `now`.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admission::Allowed,
            State::Open { until } if now >= until => {
                *state = State::HalfOpen;
                tracing::info!(breaker = self.name, "circuit half-open: trying one call");
                Admission::Allowed
            }
            State::Open { .. } | State::HalfOpen => Admission::Refused,
        }
    }

    /// Reports a call that succeeded.
    pub fn record_success(&self) {
        let mut state = self.lock();
        if !matches!(*state, State::Closed { .. }) {
            tracing::info!(
                breaker = self.name,
                "circuit closed: the dependency answers again"
            );
        }
        *state = State::Closed {
            consecutive_failures: 0,
        };
        metrics::gauge!("circuit_breaker_open", "breaker" => self.name).set(0.0);
    }

    /// Reports a call that failed because of the dependency (not because of the request).
    pub fn record_failure(&self, now: Instant) {
        let mut state = self.lock();
        let open = match *state {
            State::Closed {
                consecutive_failures,
            } if consecutive_failures + 1 < self.failure_threshold => {
                *state = State::Closed {
                    consecutive_failures: consecutive_failures + 1,
                };
                false
            }
            _ => true,
        };
        if open {
            *state = State::Open {
                until: now + self.open_for,
            };
            tracing::warn!(
                breaker = self.name,
                open_secs = self.open_for.as_secs_f64(),
                "circuit open: the dependency keeps failing"
            );
            metrics::gauge!("circuit_breaker_open", "breaker" => self.name).set(1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_failures_open_the_circuit_until_the_cool_down_ends() {
        let breaker = CircuitBreaker::new("test", 3, Duration::from_secs(10));
        let start = Instant::now();
        for _ in 0..2 {
            assert_eq!(breaker.admit(start), Admission::Allowed);
            breaker.record_failure(start);
        }
        assert_eq!(
            breaker.admit(start),
            Admission::Allowed,
            "two failures are not enough"
        );
        breaker.record_failure(start);
        assert_eq!(breaker.admit(start), Admission::Refused);
        assert_eq!(
            breaker.admit(start + Duration::from_secs(9)),
            Admission::Refused
        );
    }

    #[test]
    fn after_the_cool_down_one_trial_decides() {
        let breaker = CircuitBreaker::new("test", 1, Duration::from_secs(10));
        let start = Instant::now();
        breaker.record_failure(start);
        let later = start + Duration::from_secs(10);
        assert_eq!(breaker.admit(later), Admission::Allowed, "the trial call");
        assert_eq!(
            breaker.admit(later),
            Admission::Refused,
            "only one trial at a time"
        );
        breaker.record_failure(later);
        assert_eq!(
            breaker.admit(later + Duration::from_secs(1)),
            Admission::Refused
        );
        let again = later + Duration::from_secs(10);
        assert_eq!(breaker.admit(again), Admission::Allowed);
        breaker.record_success();
        assert_eq!(breaker.admit(again), Admission::Allowed);
        assert_eq!(breaker.admit(again), Admission::Allowed, "closed again");
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let breaker = CircuitBreaker::new("test", 2, Duration::from_secs(10));
        let now = Instant::now();
        breaker.record_failure(now);
        breaker.record_success();
        breaker.record_failure(now);
        assert_eq!(breaker.admit(now), Admission::Allowed);
    }
}
