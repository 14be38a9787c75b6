//! `order.paid` and its subscribers: `inventory.commit`, `analytics.record`, and (when the
//! order has a callback URL) `notification.callback`.
//!
//! The fan-out is publish/subscribe ([`loadstar_jobs::Topics`]): the `order.paid` handler
//! publishes the event to the topic of the same name, whose subscribers are declared in
//! [`order_paid_topic`] and may be extended in configuration
//! (`[jobs.topics."order.paid"] queues = [...]`). Each built-in subscriber gets its own view of the event; a subscriber
//! from configuration gets the `order.paid` message itself.

use super::payment_charge::database_error;
use super::{decode, job_for, PipelineContext, EVENTS_QUEUE};
use crate::messages::{v1, ANALYTICS_RECORD, INVENTORY_COMMIT, NOTIFICATION_CALLBACK, ORDER_PAID};
use async_trait::async_trait;
use loadstar_core::{Id, Timestamp};
use loadstar_jobs::{
    HandlerError, JobHandler, LeasedJob, RetryPolicy, Subscription, Topics, WorkerPool,
};
use loadstar_store::sql::query;
use std::sync::Arc;

/// The `order.paid` topic's built-in subscribers, all on the events queue.
pub(super) fn order_paid_topic() -> Topics {
    [INVENTORY_COMMIT, ANALYTICS_RECORD, NOTIFICATION_CALLBACK]
        .into_iter()
        .fold(Topics::default(), |topics, kind| {
            topics.subscribe(ORDER_PAID, Subscription::queue(EVENTS_QUEUE).as_kind(kind))
        })
}

pub(super) fn register(
    pool: WorkerPool,
    context: &Arc<PipelineContext>,
    policy: impl Fn(&str) -> RetryPolicy,
) -> WorkerPool {
    let context = Arc::clone(context);
    pool.handle(
        ORDER_PAID,
        Arc::new(OrderPaid {
            context: Arc::clone(&context),
        }),
        policy(ORDER_PAID),
    )
    .handle(
        INVENTORY_COMMIT,
        Arc::new(InventoryCommit {
            context: Arc::clone(&context),
        }),
        policy(INVENTORY_COMMIT),
    )
    .handle(
        ANALYTICS_RECORD,
        Arc::new(AnalyticsRecord { context }),
        policy(ANALYTICS_RECORD),
    )
}

/// Publishes the event to the `order.paid` topic: one job per subscriber, all in one
/// transaction, each with a unique key derived from the order id (a redelivered
/// `order.paid` publishes nothing twice).
struct OrderPaid {
    context: Arc<PipelineContext>,
}

#[async_trait]
impl JobHandler for OrderPaid {
    async fn handle(&self, job: &LeasedJob) -> Result<(), HandlerError> {
        let paid: v1::OrderPaid = decode(&job.payload)?;
        let state = &self.context.state;
        let order = crate::orders::repository::find(&state.db, Id::from_i64(paid.order_id))
            .await
            .map_err(|error| HandlerError::new(error.to_string()))?
            .ok_or_else(|| HandlerError::new(format!("order {} not found", paid.order_id)))?;
        let inventory = v1::InventoryCommit {
            order_id: paid.order_id,
            lines: order
                .items
                .iter()
                .map(|item| v1::inventory_commit::Line {
                    product_id: item.product_id.as_i64(),
                    quantity: item.quantity,
                })
                .collect(),
        };
        let analytics = v1::AnalyticsRecord {
            order_id: paid.order_id,
            event: ORDER_PAID.to_owned(),
            amount_cents: paid.amount_cents,
            currency: paid.currency.clone(),
            at_unix_micros: paid.paid_at_unix_micros,
        };
        let inventory = job_for(state, EVENTS_QUEUE, paid.order_id, &inventory);
        let analytics = job_for(state, EVENTS_QUEUE, paid.order_id, &analytics);
        let event = job_for(state, EVENTS_QUEUE, paid.order_id, &paid);
        let mut callback = None;
        if let Some(url) = &order.callback_url {
            let body = serde_json::to_vec(&serde_json::json!({
                "event": ORDER_PAID,
                "order": order,
                "chargeId": paid.charge_id,
            }))
            .map_err(|error| HandlerError::new(error.to_string()))?;
            let message = v1::NotificationCallback {
                order_id: paid.order_id,
                callback_url: url.clone(),
                event: ORDER_PAID.to_owned(),
                body,
            };
            callback = Some(job_for(state, EVENTS_QUEUE, paid.order_id, &message));
        }
        let mut tx = state.db.writer().begin().await.map_err(database_error)?;
        self.context
            .topics
            .publish_each(
                state.jobs.as_ref(),
                &mut tx,
                ORDER_PAID,
                &paid.order_id.to_string(),
                |subscription| match subscription.kind.as_deref() {
                    Some(INVENTORY_COMMIT) => Some(inventory.clone()),
                    Some(ANALYTICS_RECORD) => Some(analytics.clone()),
                    // Without a callback URL there is no one to notify.
                    Some(NOTIFICATION_CALLBACK) => callback.clone(),
                    _ => Some(event.clone()),
                },
            )
            .await
            .map_err(|error| HandlerError::new(error.to_string()))?;
        tx.commit().await.map_err(database_error)?;
        Ok(())
    }
}

/// Makes the order's reserved stock final (it can no longer return to the catalog).
struct InventoryCommit {
    context: Arc<PipelineContext>,
}

#[async_trait]
impl JobHandler for InventoryCommit {
    async fn handle(&self, job: &LeasedJob) -> Result<(), HandlerError> {
        let commit: v1::InventoryCommit = decode(&job.payload)?;
        query("UPDATE orders SET inventory_committed_at = $2 WHERE id = $1 AND inventory_committed_at IS NULL")
            .bind(commit.order_id)
            .bind(Timestamp::now().unix_micros())
            .execute(self.context.state.db.writer())
            .await
            .map_err(database_error)?;
        Ok(())
    }
}

/// Records the event for analytics, once per order and event.
struct AnalyticsRecord {
    context: Arc<PipelineContext>,
}

#[async_trait]
impl JobHandler for AnalyticsRecord {
    async fn handle(&self, job: &LeasedJob) -> Result<(), HandlerError> {
        let record: v1::AnalyticsRecord = decode(&job.payload)?;
        query(
            "INSERT INTO order_events (order_id, event, amount_cents, currency, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (order_id, event) DO NOTHING",
        )
        .bind(record.order_id)
        .bind(&record.event)
        .bind(record.amount_cents)
        .bind(&record.currency)
        .bind(record.at_unix_micros)
        .execute(self.context.state.db.writer())
        .await
        .map_err(database_error)?;
        Ok(())
    }
}
