//! The shop's state as every role builds it: the node id leased, the SQL job queue behind
//! a claim check on the configured object store.

use anyhow::Context;
use loadstar_core::config::Config;
use loadstar_jobs::{ClaimCheckQueue, JobQueue};
use loadstar_shop::ShopState;
use loadstar_store::{Database, NodeLease};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Leases this process's node id, opens `[storage]` and wires the shop to `db`, its job
/// queue claim-checking payloads over `jobs.inline_payload_limit_bytes`. The lease is
/// renewed until released (see [`release_on_stop`]); losing it cancels `shutdown`, since
/// another node now makes ids with the same node bits.
pub async fn build(
    db: &Database,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<(ShopState, Arc<NodeLease>)> {
    let lease = NodeLease::acquire(
        db,
        config.node.id,
        Duration::from_secs(config.node.lease_secs),
    )
    .await
    .context("cannot lease a node id")?;
    let lease = Arc::new(lease);
    tracing::info!(node_id = lease.node_id(), "node id in use");
    tokio::spawn({
        let (lease, shutdown) = (Arc::clone(&lease), shutdown.clone());
        async move {
            tokio::select! {
                () = lease.lost() => shutdown.cancel(),
                () = shutdown.cancelled() => {}
            }
        }
    });
    let mut config = config.clone();
    config.node.id = Some(lease.node_id());
    let objects = loadstar_store::object_storage::open(&config.storage, &config.data_dir)
        .context("cannot open object storage")?;
    let limit = config.jobs.inline_payload_limit_bytes;
    let state = ShopState::with_job_queue(db.clone(), &config, |queue| {
        Arc::new(ClaimCheckQueue::new(queue, objects, limit)) as Arc<dyn JobQueue>
    })
    .context("cannot build the shop")?;
    Ok((state, lease))
}
