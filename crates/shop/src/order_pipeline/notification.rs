//! `notification.callback`: a signed webhook to the client's callback URL.
//!
//! The receiver verifies `Loadstar-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
//! and rejects stale `Loadstar-Timestamp`s, so a captured callback cannot be replayed
//! later. Delivery is a job: a receiver that is down gets the callback when it returns.

use super::{decode, PipelineContext};
use crate::messages::{v1, NOTIFICATION_CALLBACK};
use async_trait::async_trait;
use loadstar_jobs::{HandlerError, JobHandler, LeasedJob, RetryPolicy, WorkerPool};
use std::sync::Arc;

pub(super) fn register(
    pool: WorkerPool,
    context: &Arc<PipelineContext>,
    policy: impl Fn(&str) -> RetryPolicy,
) -> WorkerPool {
    pool.handle(
        NOTIFICATION_CALLBACK,
        Arc::new(NotificationCallback {
            context: Arc::clone(context),
        }),
        policy(NOTIFICATION_CALLBACK),
    )
}

/// The signature header value for `body` sent at `timestamp` (Unix seconds): the scheme
/// every loadstar webhook uses ([`loadstar_jobs::webhook_signature`]).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    loadstar_jobs::webhook_signature(secret, timestamp, body)
}

struct NotificationCallback {
    context: Arc<PipelineContext>,
}

#[async_trait]
impl JobHandler for NotificationCallback {
    async fn handle(&self, job: &LeasedJob) -> Result<(), HandlerError> {
        let callback: v1::NotificationCallback = decode(&job.payload)?;
        let timestamp = loadstar_core::Timestamp::now().unix_micros() / 1_000_000;
        let mut request = self
            .context
            .http
            .post(&callback.callback_url)
            .timeout(std::time::Duration::from_secs(10))
            .header("content-type", "application/json")
            .header("loadstar-event", &callback.event)
            .header("loadstar-timestamp", timestamp.to_string())
            .header("loadstar-delivery", job.id.to_string());
        if !self.context.signing_secret.is_empty() {
            request = request.header(
                "loadstar-signature",
                signature(&self.context.signing_secret, timestamp, &callback.body),
            );
        }
        let response = request.body(callback.body).send().await.map_err(|error| {
            HandlerError::new(format!("callback receiver unreachable: {error}"))
        })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(HandlerError::new(format!(
                "callback receiver answered {}",
                response.status()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = signature("secret", 1_700_000_000, b"{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(a, signature("secret", 1_700_000_001, b"{}"));
        assert_ne!(a, signature("secret", 1_700_000_000, b"{ }"));
        assert_ne!(a, signature("other", 1_700_000_000, b"{}"));
    }
}
