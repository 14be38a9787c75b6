//! The queue a process uses, as `[queue]` and `[workers]` describe it.

use crate::clock::Clock;
use crate::error::JobError;
use crate::queue::JobQueue;
use crate::rabbit::{RabbitJobQueue, RabbitSettings};
use crate::sql_queue::SqlJobQueue;
use loadstar_core::config::{Config, QueueBackend};
use loadstar_core::IdGenerator;
use loadstar_store::Database;
use std::sync::Arc;

/// The job queue of `config` over `db`: the SQL queue in the domain database, or RabbitMQ
/// with its ledger there. Rate limits of `[workers.*]` apply to their queues in either.
/// Must run inside a Tokio runtime (the RabbitMQ backend starts its relay).
pub fn configured_queue(
    db: Database,
    ids: Arc<IdGenerator>,
    clock: Arc<dyn Clock>,
    config: &Config,
) -> Result<Arc<dyn JobQueue>, JobError> {
    let mut ledger = SqlJobQueue::new(db, ids, clock);
    for pool in config
        .workers
        .values()
        .filter(|pool| pool.rate_limit_per_sec > 0)
    {
        for name in &pool.queues {
            ledger = ledger.with_rate_limit(name.clone(), pool.rate_limit_per_sec);
        }
    }
    Ok(match config.queue.backend {
        Some(QueueBackend::Rabbitmq) => {
            let settings = RabbitSettings {
                prefix: config.queue.rabbitmq_prefix.clone(),
                prefetch: config.queue.rabbitmq_prefetch,
                heartbeat: std::time::Duration::from_secs(u64::from(
                    config.queue.rabbitmq_heartbeat_secs,
                )),
                operation_timeout: std::time::Duration::from_millis(
                    config.queue.rabbitmq_operation_timeout_ms,
                ),
                idle_queue_expiry: match config.queue.rabbitmq_idle_queue_expiry_secs {
                    0 => None,
                    secs => Some(std::time::Duration::from_secs(secs)),
                },
                ..RabbitSettings::new(config.queue.rabbitmq_url.clone())
            };
            tracing::info!(prefix = %settings.prefix, prefetch = settings.prefetch, "job queue: rabbitmq");
            Arc::new(RabbitJobQueue::start(ledger, settings))
        }
        Some(QueueBackend::Sqlite | QueueBackend::Postgres) | None => Arc::new(ledger),
    })
}
