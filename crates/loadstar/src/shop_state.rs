//! The shop's state as every role builds it: the SQL job queue behind a claim check on
//! the configured object store.

use anyhow::Context;
use loadstar_core::config::Config;
use loadstar_jobs::{ClaimCheckQueue, JobQueue};
use loadstar_shop::ShopState;
use loadstar_store::Database;
use std::sync::Arc;

/// Opens `[storage]` and wires the shop to `db`, its job queue claim-checking payloads
/// over `jobs.inline_payload_limit_bytes`.
pub fn build(db: &Database, config: &Config) -> anyhow::Result<ShopState> {
    let objects = loadstar_store::object_storage::open(&config.storage, &config.data_dir)
        .context("cannot open object storage")?;
    let limit = config.jobs.inline_payload_limit_bytes;
    ShopState::with_job_queue(db.clone(), config, |queue| {
        Arc::new(ClaimCheckQueue::new(queue, objects, limit)) as Arc<dyn JobQueue>
    })
    .context("cannot build the shop")
}
