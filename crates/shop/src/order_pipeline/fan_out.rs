//! `order.paid` and its subscribers: `inventory.commit`, `analytics.record`, and (when the
//! order has a callback URL) `notification.callback`.

use super::payment_charge::database_error;
use super::{decode, enqueue_in, job_for, PipelineContext, EVENTS_QUEUE};
use crate::messages::{v1, ANALYTICS_RECORD, INVENTORY_COMMIT, ORDER_PAID};
use async_trait::async_trait;
use loadstar_core::{Id, Timestamp};
use loadstar_jobs::{HandlerError, JobHandler, LeasedJob, RetryPolicy, WorkerPool};
use loadstar_store::sql::query;
use std::sync::Arc;

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

/// Publishes one job per subscriber, all in one transaction, each with a unique key.
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
        let mut jobs = vec![
            job_for(state, EVENTS_QUEUE, paid.order_id, &inventory),
            job_for(state, EVENTS_QUEUE, paid.order_id, &analytics),
        ];
        if let Some(url) = &order.callback_url {
            let body = serde_json::to_vec(&serde_json::json!({
                "event": ORDER_PAID,
                "order": order,
                "chargeId": paid.charge_id,
            }))
            .map_err(|error| HandlerError::new(error.to_string()))?;
            let callback = v1::NotificationCallback {
                order_id: paid.order_id,
                callback_url: url.clone(),
                event: ORDER_PAID.to_owned(),
                body,
            };
            jobs.push(job_for(state, EVENTS_QUEUE, paid.order_id, &callback));
        }
        let mut tx = state.db.writer().begin().await.map_err(database_error)?;
        for job in jobs {
            enqueue_in(state, &mut tx, job)
                .await
                .map_err(|error| HandlerError::new(error.to_string()))?;
        }
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
