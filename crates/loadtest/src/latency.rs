//! Enqueue-to-start latencies, collected by the handler and summarised as percentiles.

use std::sync::Mutex;
use std::time::Duration;

/// Latencies recorded while a measurement window is open.
#[derive(Default)]
pub struct LatencyRecorder {
    samples: Mutex<Vec<Duration>>,
}

impl LatencyRecorder {
    pub fn record(&self, latency: Duration) {
        self.lock().push(latency);
    }

    /// Drops everything recorded so far (the window starts now).
    pub fn reset(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// The `p`-th percentile (0–100) of what was recorded, nearest rank.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let mut samples = self.lock().clone();
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        samples.get(rank.clamp(1, samples.len()) - 1).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Duration>> {
        self.samples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let recorder = LatencyRecorder::default();
        for ms in 1..=100 {
            recorder.record(Duration::from_millis(ms));
        }
        assert_eq!(recorder.percentile(50.0), Some(Duration::from_millis(50)));
        assert_eq!(recorder.percentile(99.0), Some(Duration::from_millis(99)));
        assert_eq!(recorder.percentile(100.0), Some(Duration::from_millis(100)));
    }

    #[test]
    fn an_empty_window_has_no_percentile() {
        assert_eq!(LatencyRecorder::default().percentile(50.0), None);
    }
}
