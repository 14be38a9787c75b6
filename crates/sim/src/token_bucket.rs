//! The provider's capacity: a token bucket refilled at `rate` tokens per second and
//! holding at most `rate` tokens, so a full second's worth may arrive as one burst.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// A thread-safe token bucket; one token per request.
#[derive(Debug)]
pub struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket admitting `rate_per_sec` requests per second (at least one).
    pub fn new(rate_per_sec: u32) -> Self {
        Self::starting_at(rate_per_sec, Instant::now())
    }

    fn starting_at(rate_per_sec: u32, now: Instant) -> Self {
        let rate = f64::from(rate_per_sec.max(1));
        Self {
            rate_per_sec: rate,
            burst: rate,
            state: Mutex::new(BucketState {
                tokens: rate,
                refilled_at: now,
            }),
        }
    }

    /// Takes a token if one is left; `false` means the request is over capacity.
    pub fn try_take(&self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(state.refilled_at);
        state.tokens = (state.tokens + elapsed.as_secs_f64() * self.rate_per_sec).min(self.burst);
        state.refilled_at = now.max(state.refilled_at);
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_bucket_admits_one_burst_of_its_rate_and_no_more() {
        let start = Instant::now();
        let bucket = TokenBucket::starting_at(5, start);
        let admitted = (0..30).filter(|_| bucket.try_take_at(start)).count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_never_beyond_the_burst() {
        let start = Instant::now();
        let bucket = TokenBucket::starting_at(10, start);
        assert_eq!((0..10).filter(|_| bucket.try_take_at(start)).count(), 10);
        let later = start + Duration::from_millis(200);
        assert_eq!((0..10).filter(|_| bucket.try_take_at(later)).count(), 2);
        let much_later = later + Duration::from_secs(60);
        assert_eq!(
            (0..30).filter(|_| bucket.try_take_at(much_later)).count(),
            10
        );
    }

    #[test]
    fn a_clock_read_out_of_order_takes_no_tokens_away() {
        let start = Instant::now();
        let bucket = TokenBucket::starting_at(1, start + Duration::from_secs(1));
        assert!(bucket.try_take_at(start));
        assert!(!bucket.try_take_at(start));
    }
}
