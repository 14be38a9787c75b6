//! `payment.charge`: charge the provider for an order, then mark it paid.

use super::{decode, enqueue_in, job_for, PipelineContext, EVENTS_QUEUE};
use crate::messages::v1;
use crate::orders::OrderStatus;
use async_trait::async_trait;
use loadstar_core::circuit_breaker::Admission;
use loadstar_core::{Id, Timestamp};
use loadstar_jobs::{HandlerError, JobHandler, LeasedJob, RetryPolicy, WorkerPool};
use loadstar_store::sql::{query, Row};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Instant;

pub(super) fn register(
    pool: WorkerPool,
    context: &Arc<PipelineContext>,
    policy: impl Fn(&str) -> RetryPolicy,
) -> WorkerPool {
    let kind = crate::messages::PAYMENT_CHARGE;
    pool.handle(
        kind,
        Arc::new(PaymentCharge {
            context: Arc::clone(context),
        }),
        policy(kind),
    )
}

struct PaymentCharge {
    context: Arc<PipelineContext>,
}

/// Why a charge call failed, as the circuit breaker needs to know it.
enum ProviderFailure {
    /// The provider is down, overloaded or slow: counts towards opening the circuit.
    Unhealthy(String),
    /// The provider refused this request (4xx): its health is not in question.
    Rejected(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Charged {
    charge_id: String,
}

#[async_trait]
impl JobHandler for PaymentCharge {
    async fn handle(&self, job: &LeasedJob) -> Result<(), HandlerError> {
        let charge: v1::PaymentCharge = decode(&job.payload)?;
        let order_id = Id::from_i64(charge.order_id);
        match self.order_status(order_id).await? {
            // Already settled by an earlier delivery, or cancelled: nothing to charge.
            None | Some(OrderStatus::Paid) | Some(OrderStatus::Cancelled) => return Ok(()),
            Some(OrderStatus::Pending) | Some(OrderStatus::PaymentFailed) => {}
        }
        match self.charge(&charge).await {
            Ok(charged) => self.mark_paid(&charge, &charged.charge_id).await,
            Err(error) => {
                if job.attempt >= job.max_attempts {
                    self.mark_payment_failed(order_id).await?;
                }
                Err(error)
            }
        }
    }
}

impl PaymentCharge {
    async fn order_status(&self, order_id: Id) -> Result<Option<OrderStatus>, HandlerError> {
        let row = query("SELECT status FROM orders WHERE id = $1")
            .bind(order_id.as_i64())
            .fetch_optional(self.context.state.db.consistent_reader())
            .await
            .map_err(database_error)?;
        Ok(row
            .and_then(|row| row.try_get::<String, _>("status").ok())
            .and_then(|status| OrderStatus::from_stored(&status)))
    }

    /// One charge request. The order id is the idempotency key: the provider answers a
    /// repeat with the first result and never charges twice.
    async fn charge(&self, charge: &v1::PaymentCharge) -> Result<Charged, HandlerError> {
        let breaker = &self.context.payments_breaker;
        if breaker.admit(Instant::now()) == Admission::Refused {
            return Err(HandlerError::new(
                "payment provider circuit open: it keeps failing, so it was not called",
            ));
        }
        let result = self.call_provider(charge).await;
        match &result {
            Ok(_) => breaker.record_success(),
            Err(ProviderFailure::Unhealthy(_)) => breaker.record_failure(Instant::now()),
            Err(ProviderFailure::Rejected(_)) => {}
        }
        result.map_err(|failure| match failure {
            ProviderFailure::Unhealthy(message) | ProviderFailure::Rejected(message) => {
                HandlerError::new(message)
            }
        })
    }

    async fn call_provider(&self, charge: &v1::PaymentCharge) -> Result<Charged, ProviderFailure> {
        let response = self
            .context
            .http
            .post(format!("{}/v1/charges", self.context.payments_url))
            .timeout(self.context.payments_timeout)
            .header("Idempotency-Key", charge.order_id.to_string())
            .json(&serde_json::json!({
                "orderId": charge.order_id.to_string(),
                "amountCents": charge.amount_cents,
                "currency": charge.currency,
            }))
            .send()
            .await
            .map_err(|error| {
                ProviderFailure::Unhealthy(format!("payment provider unreachable: {error}"))
            })?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(ProviderFailure::Unhealthy(format!(
                "payment provider answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(ProviderFailure::Rejected(format!(
                "payment provider rejected the charge: {status}"
            )));
        }
        response.json::<Charged>().await.map_err(|error| {
            ProviderFailure::Unhealthy(format!(
                "payment provider sent an unreadable answer: {error}"
            ))
        })
    }

    /// Marks the order paid and publishes `order.paid`, in one transaction.
    async fn mark_paid(
        &self,
        charge: &v1::PaymentCharge,
        charge_id: &str,
    ) -> Result<(), HandlerError> {
        let state = &self.context.state;
        let now = Timestamp::now();
        let mut tx = state.db.writer().begin().await.map_err(database_error)?;
        let changed = query(
            "UPDATE orders SET status = 'paid', updated_at = $2 WHERE id = $1 AND status IN ('pending', 'payment_failed')",
        )
        .bind(charge.order_id)
        .bind(now.unix_micros())
        .execute(&mut *tx)
        .await
        .map_err(database_error)?
        .rows_affected();
        if changed == 0 {
            tracing::error!(
                order_id = charge.order_id,
                charge_id,
                "charged an order that is no longer payable; it needs a refund"
            );
            return Ok(());
        }
        let paid = v1::OrderPaid {
            order_id: charge.order_id,
            user_id: charge.user_id,
            amount_cents: charge.amount_cents,
            currency: charge.currency.clone(),
            charge_id: charge_id.to_owned(),
            paid_at_unix_micros: now.unix_micros(),
        };
        enqueue_in(
            state,
            &mut tx,
            job_for(state, EVENTS_QUEUE, charge.order_id, &paid),
        )
        .await
        .map_err(|error| HandlerError::new(error.to_string()))?;
        tx.commit().await.map_err(database_error)?;
        tracing::info!(order_id = charge.order_id, charge_id, "order paid");
        Ok(())
    }

    async fn mark_payment_failed(&self, order_id: Id) -> Result<(), HandlerError> {
        query("UPDATE orders SET status = 'payment_failed', updated_at = $2 WHERE id = $1 AND status = 'pending'")
            .bind(order_id.as_i64())
            .bind(Timestamp::now().unix_micros())
            .execute(self.context.state.db.writer())
            .await
            .map_err(database_error)?;
        tracing::warn!(order_id = %order_id, "payment failed on its last attempt; the job waits in the error queue");
        Ok(())
    }
}

pub(super) fn database_error(error: loadstar_store::sql::Error) -> HandlerError {
    HandlerError::new(format!("database: {error}"))
}
