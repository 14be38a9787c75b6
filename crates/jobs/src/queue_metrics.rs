//! Per-queue metrics, exported on `/metrics` through the `metrics` facade.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `jobs_depth` | gauge | `queue`, `state` (available, running, dead) |
//! | `jobs_in_flight` | gauge | `queue` (this process) |
//! | `jobs_processed_total` | counter | `queue`, `kind` |
//! | `jobs_failed_total` | counter | `queue`, `kind` |
//! | `jobs_retried_total` | counter | `queue`, `kind` |
//! | `jobs_dead_total` | counter | `queue`, `kind` |
//! | `job_wait_seconds` | histogram | `queue`: due → started (enqueue-to-start latency) |
//! | `job_run_seconds` | histogram | `queue`, `kind` |

use crate::model::{JobState, LeasedJob};
use crate::queue::JobQueue;
use loadstar_core::Timestamp;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub(crate) fn started(job: &LeasedJob, now: Timestamp) {
    let waited = (now.unix_micros() - job.due_at.unix_micros()).max(0) as f64 / 1e6;
    metrics::histogram!("job_wait_seconds", "queue" => job.queue.clone()).record(waited);
    metrics::gauge!("jobs_in_flight", "queue" => job.queue.clone()).increment(1.0);
}

pub(crate) fn finished(job: &LeasedJob, ran: Duration, outcome: Result<Option<JobState>, ()>) {
    let labels = [("queue", job.queue.clone()), ("kind", job.kind.clone())];
    metrics::gauge!("jobs_in_flight", "queue" => job.queue.clone()).decrement(1.0);
    metrics::histogram!("job_run_seconds", &labels).record(ran.as_secs_f64());
    match outcome {
        Ok(Some(JobState::Completed)) => {
            metrics::counter!("jobs_processed_total", &labels).increment(1)
        }
        Ok(next) => {
            metrics::counter!("jobs_failed_total", &labels).increment(1);
            match next {
                Some(JobState::Available) => {
                    metrics::counter!("jobs_retried_total", &labels).increment(1)
                }
                Some(JobState::Dead) => metrics::counter!("jobs_dead_total", &labels).increment(1),
                _ => {}
            }
        }
        Err(()) => {}
    }
}

/// Publishes queue depths every `every` until `shutdown`: the numbers an operator
/// watches to size worker pools and to see the error queue grow.
pub async fn report_depth(
    queue: std::sync::Arc<dyn JobQueue>,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match queue.counts().await {
            Ok(counts) => {
                for count in counts {
                    for (state, jobs) in [
                        ("available", count.available),
                        ("running", count.running),
                        ("dead", count.dead),
                    ] {
                        metrics::gauge!("jobs_depth", "queue" => count.queue.clone(), "state" => state)
                            .set(jobs as f64);
                    }
                }
            }
            Err(error) => tracing::warn!(error = %error, "could not read queue depths"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
