//! How badly the simulated provider behaves: how often a new charge fails and how long
//! each takes. Tests change it at runtime (`PUT /admin/behaviour`) to make the provider
//! fail and then recover without restarting it.

use serde::{Deserialize, Serialize};
use std::sync::{Mutex, PoisonError};

/// Longest artificial latency accepted: enough to outlast any client timeout worth
/// testing, short enough that a typo cannot hang a charge (and a shutdown) for hours.
pub const MAX_LATENCY_MS: u64 = 60_000;

/// Failure rate and latency of new charges (replays and rejections are not affected).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behaviour {
    /// Probability (0–1) that a new charge fails with a transient 503.
    pub failure_rate: f64,
    /// Delay before a new charge is decided, in milliseconds.
    pub latency_ms: u64,
}

/// Why a [`Behaviour`] is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidBehaviour {
    #[error("failure rate must be between 0 and 1, got {0}")]
    FailureRateOutOfRange(f64),
    #[error("latency must be at most {MAX_LATENCY_MS} ms, got {0}")]
    LatencyTooLong(u64),
}

impl Behaviour {
    /// This behaviour if it is within bounds.
    pub fn validated(self) -> Result<Self, InvalidBehaviour> {
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(InvalidBehaviour::FailureRateOutOfRange(self.failure_rate));
        }
        if self.latency_ms > MAX_LATENCY_MS {
            return Err(InvalidBehaviour::LatencyTooLong(self.latency_ms));
        }
        Ok(self)
    }
}

/// The current behaviour, shared by every request and replaceable at any time.
#[derive(Debug)]
pub struct BehaviourSetting {
    current: Mutex<Behaviour>,
}

impl BehaviourSetting {
    pub fn new(initial: Behaviour) -> Self {
        Self {
            current: Mutex::new(initial),
        }
    }

    pub fn get(&self) -> Behaviour {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = behaviour;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_rates_outside_zero_to_one_are_refused() {
        for rate in [-0.1, 1.01, f64::NAN] {
            let behaviour = Behaviour {
                failure_rate: rate,
                latency_ms: 0,
            };
            assert!(behaviour.validated().is_err(), "{rate} was accepted");
        }
        for rate in [0.0, 0.5, 1.0] {
            let behaviour = Behaviour {
                failure_rate: rate,
                latency_ms: MAX_LATENCY_MS,
            };
            assert_eq!(behaviour.validated(), Ok(behaviour));
        }
    }

    #[test]
    fn latency_beyond_the_maximum_is_refused() {
        let behaviour = Behaviour {
            failure_rate: 0.0,
            latency_ms: MAX_LATENCY_MS + 1,
        };
        assert_eq!(
            behaviour.validated(),
            Err(InvalidBehaviour::LatencyTooLong(MAX_LATENCY_MS + 1))
        );
    }
}
