//! Alerts: someone must hear now that work failed for good, or that the error queue grows.
//!
//! An [`Alert`] is always logged at error level. With a webhook configured, the
//! [`Alerter`] also enqueues it as an [`ALERT_WEBHOOK`] job on [`ALERTS_QUEUE`] rather than
//! posting inline: the webhook is then delivered with the queue's own guarantees (retried
//! with backoff, kept in the error queue if the receiver stays down) and raising an alert
//! never blocks or fails the worker that raised it. [`AlertWebhook`] is the handler that
//! delivers it, signed like every loadstar webhook ([`crate::webhook_signature`]).

use crate::model::{LeasedJob, NewJob};
use crate::queue::JobQueue;
use crate::webhook_signature::webhook_signature;
use crate::worker::{HandlerError, JobHandler};
use async_trait::async_trait;
use loadstar_core::Id;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The job kind that delivers an alert webhook.
pub const ALERT_WEBHOOK: &str = "alert.webhook";
/// The queue alert webhooks wait on; the worker role runs a small pool for it.
pub const ALERTS_QUEUE: &str = "alerts";
/// Deliveries of one alert webhook before it waits in the error queue.
const WEBHOOK_ATTEMPTS: u32 = 10;

/// Something an operator must be told. Serialised as the webhook's JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "alert", rename_all = "snake_case")]
pub enum Alert {
    /// A job of a kind with the `alert` policy failed its last attempt (it is in the error
    /// queue).
    #[serde(rename_all = "camelCase")]
    JobExhausted {
        #[serde(serialize_with = "id_as_string")]
        job_id: Id,
        queue: String,
        kind: String,
        attempts: u32,
        last_error: String,
    },
    /// The error queue of a kind reached its threshold.
    #[serde(rename_all = "camelCase")]
    ErrorQueueGrew {
        queue: String,
        kind: String,
        dead: u64,
        threshold: u64,
    },
}

fn id_as_string<S: serde::Serializer>(id: &Id, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&id.to_string())
}

impl Alert {
    /// The alert for `job`, whose last attempt failed with `error`.
    pub fn job_exhausted(job: &LeasedJob, error: &str) -> Self {
        Alert::JobExhausted {
            job_id: job.id,
            queue: job.queue.clone(),
            kind: job.kind.clone(),
            attempts: job.attempt,
            last_error: error.to_owned(),
        }
    }
}

/// Raises alerts: an error log, and a webhook job when a webhook is configured.
#[derive(Clone)]
pub struct Alerter {
    queue: Arc<dyn JobQueue>,
    webhook: bool,
}

impl Alerter {
    /// Alerts are logged; with `webhook`, also enqueued on `queue` for [`AlertWebhook`].
    pub fn new(queue: Arc<dyn JobQueue>, webhook: bool) -> Self {
        Self { queue, webhook }
    }

    /// Logs `alert` and, with a webhook, enqueues its delivery. Never fails: an alert that
    /// cannot be enqueued is still in the log, which says so.
    pub async fn raise(&self, alert: &Alert) {
        log(alert);
        if !self.webhook {
            return;
        }
        let body = match serde_json::to_vec(alert) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(error = %error, "could not serialise an alert");
                return;
            }
        };
        let job = NewJob::new(ALERTS_QUEUE, ALERT_WEBHOOK, body)
            .with_max_attempts(WEBHOOK_ATTEMPTS)
            .with_current_trace();
        if let Err(error) = self.queue.enqueue(job).await {
            tracing::error!(error = %error, "could not enqueue the alert webhook; the alert is only in this log");
        }
    }
}

/// Logs an alert at error level, with its fields structured.
pub(crate) fn log(alert: &Alert) {
    match alert {
        Alert::JobExhausted {
            job_id,
            queue,
            kind,
            attempts,
            last_error,
        } => tracing::error!(
            alert = "job_exhausted",
            job_id = %job_id,
            queue = %queue,
            kind = %kind,
            attempts,
            last_error = %last_error,
            "alert: a job failed its last attempt and waits in the error queue"
        ),
        Alert::ErrorQueueGrew {
            queue,
            kind,
            dead,
            threshold,
        } => tracing::error!(
            alert = "error_queue_grew",
            queue = %queue,
            kind = %kind,
            dead,
            threshold,
            "alert: the error queue of a job kind reached its threshold"
        ),
    }
}

/// Delivers [`ALERT_WEBHOOK`] jobs: POSTs the alert's JSON to the configured URL.
pub struct AlertWebhook {
    http: reqwest::Client,
    url: String,
    signing_secret: String,
}

impl AlertWebhook {
    /// Posts to `url`, signing with `signing_secret` (empty: unsigned).
    pub fn new(url: impl Into<String>, signing_secret: impl Into<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.into(),
            signing_secret: signing_secret.into(),
        }
    }
}

#[async_trait]
impl JobHandler for AlertWebhook {
    async fn handle(&self, job: &LeasedJob) -> Result<(), HandlerError> {
        let timestamp = loadstar_core::Timestamp::now().unix_micros() / 1_000_000;
        let mut request = self
            .http
            .post(&self.url)
            .timeout(Duration::from_secs(10))
            .header("content-type", "application/json")
            .header("loadstar-event", "alert")
            .header("loadstar-timestamp", timestamp.to_string())
            .header("loadstar-delivery", job.id.to_string());
        if !self.signing_secret.is_empty() {
            request = request.header(
                "loadstar-signature",
                webhook_signature(&self.signing_secret, timestamp, &job.payload),
            );
        }
        let response = request
            .body(job.payload.clone())
            .send()
            .await
            .map_err(|error| HandlerError::new(format!("alert receiver unreachable: {error}")))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(HandlerError::new(format!(
                "alert receiver answered {}",
                response.status()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exhausted_job_alert_has_the_documented_json_shape() {
        let alert = Alert::JobExhausted {
            job_id: Id::from_i64(42),
            queue: "payments".to_owned(),
            kind: "payment.charge".to_owned(),
            attempts: 5,
            last_error: "503".to_owned(),
        };
        assert_eq!(
            serde_json::to_value(&alert).ok(),
            Some(serde_json::json!({
                "alert": "job_exhausted", "jobId": "42", "queue": "payments",
                "kind": "payment.charge", "attempts": 5, "lastError": "503"
            }))
        );
    }
}
