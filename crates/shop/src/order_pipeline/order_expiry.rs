//! `order.expire`: cancel an order still unpaid when its time is up; its stock returns.

use super::{decode, PipelineContext};
use crate::error::ShopError;
use crate::messages::{v1, ORDER_EXPIRE};
use async_trait::async_trait;
use loadstar_core::Id;
use loadstar_jobs::{HandlerError, JobHandler, LeasedJob, RetryPolicy, WorkerPool};
use std::sync::Arc;

pub(super) fn register(
    pool: WorkerPool,
    context: &Arc<PipelineContext>,
    policy: impl Fn(&str) -> RetryPolicy,
) -> WorkerPool {
    pool.handle(
        ORDER_EXPIRE,
        Arc::new(OrderExpiry {
            context: Arc::clone(context),
        }),
        policy(ORDER_EXPIRE),
    )
}

struct OrderExpiry {
    context: Arc<PipelineContext>,
}

#[async_trait]
impl JobHandler for OrderExpiry {
    async fn handle(&self, job: &LeasedJob) -> Result<(), HandlerError> {
        let expiry: v1::OrderExpiry = decode(&job.payload)?;
        let order_id = Id::from_i64(expiry.order_id);
        match crate::orders::repository::cancel(&self.context.state, order_id).await {
            Ok(_) => {
                tracing::info!(order_id = %order_id, "unpaid order expired and was cancelled");
                Ok(())
            }
            // Paid, failed or cancelled already, or gone: nothing left to expire.
            Err(ShopError::Conflict { .. } | ShopError::NotFound(_)) => Ok(()),
            Err(error) => Err(HandlerError::new(error.to_string())),
        }
    }
}
