//! The order pipeline: what happens to an order after the client got its `201`.
//!
//! ```text
//! place order ──(same transaction)──► payment.charge ──► provider (idempotent by order id)
//!      └────────► order.expire (delayed)      │ paid: order → paid ──► order.paid
//!                 cancels if still pending    │ last attempt failed: order → payment_failed
//!                                             ▼                         (job in the error queue)
//!               order.paid ──► inventory.commit · analytics.record · notification.callback
//! ```
//!
//! Every handler is idempotent, because delivery is at least once: the provider dedupes
//! charges by order id, state changes are conditional `UPDATE`s, and follow-up jobs carry
//! unique keys, so a redelivered job finds its work done and changes nothing.

mod fan_out;
mod notification;
pub use notification::signature;
mod order_expiry;
mod payment_charge;

use crate::error::{ShopError, ShopResult};
use crate::messages::{v1, ShopMessage};
use crate::orders::Order;
use crate::state::ShopState;
use loadstar_core::circuit_breaker::CircuitBreaker;
use loadstar_core::config::Config;
use loadstar_jobs::{NewJob, PoolSettings, RetryPolicy, WorkerPool};
use loadstar_store::sql::Transaction;
use std::sync::Arc;
use std::time::Duration;

/// Charges to the payment provider (rate-limited towards it).
pub const PAYMENTS_QUEUE: &str = "payments";
/// Order housekeeping: expiry.
pub const ORDERS_QUEUE: &str = "orders";
/// Consequences of events: fan-out, inventory, analytics, callbacks.
pub const EVENTS_QUEUE: &str = "events";

/// How long a follow-up job's unique key dedupes repeats: longer than any retry schedule.
const UNIQUE_WINDOW: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Every queue the shop uses; the default worker pool serves them all.
pub fn queues() -> Vec<String> {
    [
        PAYMENTS_QUEUE,
        ORDERS_QUEUE,
        EVENTS_QUEUE,
        crate::product_imports::CATALOG_QUEUE,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A job carrying `message`, with the attempts its kind is configured for, a unique key
/// so that enqueuing it twice for the same order yields one job, and the trace of the
/// request or job that enqueues it.
fn job_for<M: ShopMessage>(state: &ShopState, queue: &str, order_id: i64, message: &M) -> NewJob {
    let policy = state.job_policies.policy(M::KIND);
    NewJob::new(queue, M::KIND, message.encode_to_vec())
        .with_max_attempts(policy.max_attempts)
        .with_unique_key(format!("{}:{order_id}", M::KIND), UNIQUE_WINDOW)
        .with_current_trace()
}

async fn enqueue_in(state: &ShopState, tx: &mut Transaction, job: NewJob) -> ShopResult<()> {
    state
        .jobs
        .enqueue_in(tx, job)
        .await
        .map(|_| ())
        .map_err(ShopError::from)
}

/// The jobs a new order needs, written in the order's own transaction: its charge, and
/// its cancellation should it stay unpaid.
pub async fn enqueue_for_new_order(
    state: &ShopState,
    tx: &mut Transaction,
    order: &Order,
) -> ShopResult<()> {
    let order_id = order.id.as_i64();
    let charge = v1::PaymentCharge {
        order_id,
        user_id: order.user_id.as_i64(),
        amount_cents: order.total_cents,
        currency: order.currency.clone(),
    };
    enqueue_in(state, tx, job_for(state, PAYMENTS_QUEUE, order_id, &charge)).await?;
    let expiry = v1::OrderExpiry {
        order_id,
        user_id: order.user_id.as_i64(),
    };
    let job = job_for(state, ORDERS_QUEUE, order_id, &expiry).with_delay(state.unpaid_order_expiry);
    enqueue_in(state, tx, job).await
}

/// The worker pools of `[workers.*]` (or one `default` pool on every pipeline queue),
/// each able to run every pipeline job kind with its configured retry policy.
pub fn worker_pools(state: &ShopState, config: &Config) -> Vec<WorkerPool> {
    let context = Arc::new(PipelineContext::new(state.clone(), config));
    let pools: Vec<(String, Vec<String>, usize)> = if config.workers.is_empty() {
        vec![(
            "default".to_owned(),
            queues(),
            loadstar_core::config::DEFAULT_WORKER_CONCURRENCY,
        )]
    } else {
        config
            .workers
            .iter()
            .map(|(name, pool)| (name.clone(), pool.queues.clone(), pool.concurrency))
            .collect()
    };
    pools
        .into_iter()
        .map(|(name, queues, concurrency)| {
            let settings = PoolSettings {
                concurrency,
                lease: Duration::from_secs(config.jobs.lease_secs),
                poll_interval: Duration::from_millis(config.jobs.poll_interval_ms),
                shutdown_grace: Duration::from_secs(config.jobs.shutdown_grace_secs),
                ..PoolSettings::new(name, queues)
            };
            let policy = |kind: &str| RetryPolicy::from(&config.jobs.policy(kind));
            let pool = WorkerPool::new(Arc::clone(&state.jobs), settings);
            let pool = payment_charge::register(pool, &context, policy);
            let pool = fan_out::register(pool, &context, policy);
            let pool = notification::register(pool, &context, policy);
            let pool = crate::product_imports::register(pool, state, policy);
            order_expiry::register(pool, &context, policy)
        })
        .collect()
}

/// What the pipeline's handlers share.
pub(crate) struct PipelineContext {
    pub state: ShopState,
    pub http: reqwest::Client,
    pub payments_url: String,
    pub payments_timeout: Duration,
    /// Shared by every charge in this process: a failing provider is left alone.
    pub payments_breaker: CircuitBreaker,
    pub signing_secret: String,
    /// Publish/subscribe topics: `order.paid`'s built-in subscribers plus `[jobs.topics]`.
    pub topics: loadstar_jobs::Topics,
}

impl PipelineContext {
    fn new(state: ShopState, config: &Config) -> Self {
        Self {
            state,
            http: reqwest::Client::new(),
            payments_url: config.payments.url.trim_end_matches('/').to_owned(),
            payments_timeout: Duration::from_millis(config.payments.timeout_ms),
            payments_breaker: CircuitBreaker::new(
                "payments",
                config.payments.breaker_failure_threshold,
                Duration::from_secs(config.payments.breaker_open_secs),
            ),
            signing_secret: config.notifications.signing_secret.clone(),
            topics: fan_out::order_paid_topic()
                .merge(loadstar_jobs::Topics::from_config(&config.jobs.topics)),
        }
    }
}

/// Decodes a job's payload, or fails the attempt with a clear error.
pub(crate) fn decode<M: ShopMessage>(payload: &[u8]) -> Result<M, loadstar_jobs::HandlerError> {
    M::decode(payload).map_err(|error| {
        loadstar_jobs::HandlerError::new(format!("malformed {} payload: {error}", M::KIND))
    })
}
