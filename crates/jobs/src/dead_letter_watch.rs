//! Error-queue growth: alert when a job kind's dead jobs reach a threshold.
//!
//! [`DeadLetterWatch`] reads the dead count per queue and kind
//! ([`JobQueue::dead_counts_by_kind`]) every interval, publishes each as the gauge
//! `jobs_dead_by_kind{queue, kind}`, and raises [`Alert::ErrorQueueGrew`] when a count
//! reaches its kind's threshold, once per crossing: it stays quiet while the count stays
//! at or above the threshold, and arms again once the count falls below it (an operator
//! retried or discarded jobs). Every worker-role process runs one, so with N worker
//! processes a crossing is reported up to N times.

use crate::alerting::{Alert, Alerter};
use crate::error::JobError;
use crate::queue::JobQueue;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Gauge: dead jobs by queue and kind, as last seen by the watch.
pub const DEAD_BY_KIND_GAUGE: &str = "jobs_dead_by_kind";

/// Watches the error queue and alerts on growth.
pub struct DeadLetterWatch {
    queue: Arc<dyn JobQueue>,
    alerter: Alerter,
    threshold_of: Box<dyn Fn(&str) -> u64 + Send + Sync>,
    /// (queue, kind) pairs at or above their threshold when last checked.
    above: HashSet<(String, String)>,
    /// (queue, kind) pairs with a gauge, to zero those whose jobs all left.
    seen: HashSet<(String, String)>,
}

impl DeadLetterWatch {
    /// `threshold_of(kind)` is the dead count at which `kind` alerts (0: never).
    pub fn new(
        queue: Arc<dyn JobQueue>,
        alerter: Alerter,
        threshold_of: impl Fn(&str) -> u64 + Send + Sync + 'static,
    ) -> Self {
        Self {
            queue,
            alerter,
            threshold_of: Box::new(threshold_of),
            above: HashSet::new(),
            seen: HashSet::new(),
        }
    }

    /// One look at the error queue; returns the alerts it raised.
    pub async fn check(&mut self) -> Result<Vec<Alert>, JobError> {
        let counts = self.queue.dead_counts_by_kind().await?;
        let current: HashMap<(String, String), u64> = counts
            .into_iter()
            .map(|count| ((count.queue, count.kind), count.dead))
            .collect();
        for gone in self.seen.difference(&current.keys().cloned().collect()) {
            metrics::gauge!(DEAD_BY_KIND_GAUGE, "queue" => gone.0.clone(), "kind" => gone.1.clone())
                .set(0.0);
        }
        self.seen = current.keys().cloned().collect();
        let mut raised = Vec::new();
        for ((queue, kind), dead) in &current {
            metrics::gauge!(DEAD_BY_KIND_GAUGE, "queue" => queue.clone(), "kind" => kind.clone())
                .set(*dead as f64);
            let threshold = (self.threshold_of)(kind);
            let key = (queue.clone(), kind.clone());
            if threshold > 0 && *dead >= threshold {
                if self.above.insert(key) {
                    raised.push(Alert::ErrorQueueGrew {
                        queue: queue.clone(),
                        kind: kind.clone(),
                        dead: *dead,
                        threshold,
                    });
                }
            } else {
                self.above.remove(&key);
            }
        }
        self.above.retain(|key| current.contains_key(key));
        for alert in &raised {
            self.alerter.raise(alert).await;
        }
        Ok(raised)
    }

    /// Checks every `every` until `shutdown`.
    pub async fn run(mut self, every: Duration, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.check().await {
                tracing::warn!(error = %error, "could not check the error queue's size");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
