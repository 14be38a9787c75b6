//! What happens after a failed attempt: try again later, or give up and how.

use rand::Rng;
use std::time::Duration;

/// What to do with a job whose last attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// Keep it in the error queue for an operator (the default: nothing is lost).
    DeadLetter,
    /// Drop it. Only for work whose loss is acceptable (analytics, cache warming).
    Discard,
    /// Keep it in the error queue, like `DeadLetter`, and raise an alert (an error log and,
    /// when configured, a webhook): for work whose failure someone must hear about now.
    /// Backends store it exactly as `DeadLetter`; the worker raises the alert.
    Alert,
}

/// Retry rules of one job kind: exponential backoff with full jitter (AWS architecture
/// blog, "Exponential Backoff And Jitter"): the n-th retry waits a uniformly random time
/// in `[0, min(cap, base · 2^(n-1))]`, which spreads retries of a failed dependency
/// instead of synchronising them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    pub on_exhausted: Exhausted,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
            on_exhausted: Exhausted::DeadLetter,
        }
    }
}

impl From<&loadstar_core::config::JobPolicyConfig> for RetryPolicy {
    fn from(config: &loadstar_core::config::JobPolicyConfig) -> Self {
        Self {
            base: Duration::from_millis(config.backoff_base_ms),
            cap: Duration::from_millis(config.backoff_cap_ms),
            on_exhausted: match config.on_exhausted {
                loadstar_core::config::OnExhausted::DeadLetter => Exhausted::DeadLetter,
                loadstar_core::config::OnExhausted::Discard => Exhausted::Discard,
                loadstar_core::config::OnExhausted::Alert => Exhausted::Alert,
            },
        }
    }
}

impl RetryPolicy {
    /// The longest wait before retry number `attempt` (1 after the first failure).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// A random wait in `[0, ceiling(attempt)]`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_micros() as u64;
        Duration::from_micros(rand::thread_rng().gen_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            on_exhausted: Exhausted::DeadLetter,
        };
        let ceilings: Vec<u128> = (1..=6).map(|n| policy.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.ceiling(200), Duration::from_secs(1));
    }

    #[test]
    fn backoff_stays_within_the_ceiling_and_varies() {
        let policy = RetryPolicy::default();
        let waits: Vec<Duration> = (0..200).map(|_| policy.backoff(4)).collect();
        assert!(waits.iter().all(|wait| *wait <= policy.ceiling(4)));
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 100, "full jitter spreads the retries");
    }
}
