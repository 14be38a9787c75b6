//! Node ids leased from the shared database.
//!
//! Every id a node makes carries its node id in 10 bits (see `loadstar_core::ids`); two
//! live processes with the same node id can make equal ids within one millisecond. Hand
//! numbering does not survive an autoscaler that starts every replica from one template,
//! so on PostgreSQL each process leases its node id at start:
//!
//! - a row per id in `node_leases`, with the holder's name and an expiry on the
//!   database's clock (so a node with a wrong clock cannot take or keep what is not its);
//! - with no `node.id` configured, the lowest id no live node holds; with one configured,
//!   exactly that id, or a refusal naming the live node that holds it;
//! - the holder renews the expiry every third of the lease; a crashed holder's id frees
//!   once its lease runs out; a graceful stop releases it at once;
//! - a holder that finds its lease taken (it could not renew for a whole lease, and
//!   another node started with that id) reports it as lost: it must stop making ids.
//!
//! The embedded SQLite file is one process's (or one host's) database: there the
//! configured id is used as it is.

use crate::{Backend, Database, StoreError};
use sqlx::AssertSqlSafe;
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Largest node id (10 bits).
const MAX_NODE_ID: u16 = 1023;

/// The database's clock in unix microseconds, on PostgreSQL.
const DATABASE_NOW: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)";

/// Why no node id could be leased.
#[derive(Debug, thiserror::Error)]
pub enum NodeLeaseError {
    /// The configured id is held by another live node.
    #[error(
        "node.id {node_id} is held by another live node ({holder}) for {expires_in_secs} more seconds; \
         configure another id, or none to lease a free one"
    )]
    Taken {
        node_id: u16,
        holder: String,
        expires_in_secs: i64,
    },
    /// Every id is held by a live node.
    #[error("all {} node ids are held by live nodes", MAX_NODE_ID as u32 + 1)]
    Exhausted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for NodeLeaseError {
    fn from(error: sqlx::Error) -> Self {
        NodeLeaseError::Store(StoreError::from(error))
    }
}

/// The node id this process uses, leased (PostgreSQL) or configured (SQLite).
#[derive(Debug)]
pub struct NodeLease {
    node_id: u16,
    /// `None` when nothing is leased (SQLite).
    held: Option<Held>,
}

#[derive(Debug)]
struct Held {
    db: Database,
    holder: Arc<str>,
    lost: watch::Receiver<bool>,
    renewal: tokio::task::JoinHandle<()>,
}

impl NodeLease {
    /// Leases `configured` (or, with `None`, the lowest free id) for `lease` on PostgreSQL
    /// and keeps it renewed; on SQLite takes `configured` (or 0) as it is.
    pub async fn acquire(
        db: &Database,
        configured: Option<u16>,
        lease: Duration,
    ) -> Result<NodeLease, NodeLeaseError> {
        if db.backend() == Backend::Sqlite {
            return Ok(NodeLease {
                node_id: configured.unwrap_or(0),
                held: None,
            });
        }
        let holder: Arc<str> = Arc::from(holder_name());
        let lease_micros = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
        let node_id = match configured {
            Some(node_id) => {
                if !claim(db, node_id, &holder, lease_micros).await? {
                    return Err(taken(db, node_id).await?);
                }
                node_id
            }
            None => claim_lowest_free(db, &holder, lease_micros).await?,
        };
        tracing::info!(node_id, holder = %holder, lease_secs = lease.as_secs(), "node id leased");
        let (lost_sender, lost) = watch::channel(false);
        let renewal = tokio::spawn(renew(
            db.clone(),
            node_id,
            Arc::clone(&holder),
            lease,
            lost_sender,
        ));
        Ok(NodeLease {
            node_id,
            held: Some(Held {
                db: db.clone(),
                holder,
                lost,
                renewal,
            }),
        })
    }

    pub fn node_id(&self) -> u16 {
        self.node_id
    }

    /// Resolves if the lease was lost (never, on SQLite): the process must stop making
    /// ids with this node id.
    pub async fn lost(&self) {
        match &self.held {
            Some(held) => {
                let mut lost = held.lost.clone();
                let _ = lost.wait_for(|lost| *lost).await;
            }
            None => std::future::pending().await,
        }
    }

    /// Gives the id back at once (a graceful stop), instead of letting it expire.
    pub async fn release(&self) {
        let Some(held) = &self.held else { return };
        held.renewal.abort();
        let released = sqlx::query("DELETE FROM node_leases WHERE node_id = $1 AND holder = $2")
            .bind(i64::from(self.node_id))
            .bind(held.holder.as_ref())
            .execute(held.db.writer())
            .await;
        match released {
            Ok(_) => tracing::info!(node_id = self.node_id, "node id released"),
            Err(error) => {
                tracing::warn!(node_id = self.node_id, error = %error, "node id not released; it frees when its lease expires")
            }
        }
    }
}

impl Drop for NodeLease {
    fn drop(&mut self) {
        if let Some(held) = &self.held {
            held.renewal.abort();
        }
    }
}

/// Takes `node_id` if no live node holds it (or we already do). Returns whether it is ours.
async fn claim(
    db: &Database,
    node_id: u16,
    holder: &str,
    lease_micros: i64,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "INSERT INTO node_leases (node_id, holder, expires_at) VALUES ($1, $2, {DATABASE_NOW} + $3) \
         ON CONFLICT (node_id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
         WHERE node_leases.expires_at < {DATABASE_NOW} OR node_leases.holder = EXCLUDED.holder"
    );
    let claimed = sqlx::query(AssertSqlSafe(sql))
        .bind(i64::from(node_id))
        .bind(holder)
        .bind(lease_micros)
        .execute(db.writer())
        .await?;
    Ok(claimed.rows_affected() == 1)
}

async fn claim_lowest_free(
    db: &Database,
    holder: &str,
    lease_micros: i64,
) -> Result<u16, NodeLeaseError> {
    let sql = format!("SELECT node_id FROM node_leases WHERE expires_at >= {DATABASE_NOW}");
    let live: std::collections::HashSet<i64> = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(db.writer())
        .await?
        .iter()
        .map(|row| row.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    for node_id in 0..=MAX_NODE_ID {
        // Another node starting at the same moment may claim the same candidate first:
        // then the next free one is tried.
        if !live.contains(&i64::from(node_id)) && claim(db, node_id, holder, lease_micros).await? {
            return Ok(node_id);
        }
    }
    Err(NodeLeaseError::Exhausted)
}

async fn taken(db: &Database, node_id: u16) -> Result<NodeLeaseError, sqlx::Error> {
    let sql = format!(
        "SELECT holder, (expires_at - {DATABASE_NOW}) / 1000000 FROM node_leases WHERE node_id = $1"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(i64::from(node_id))
        .fetch_optional(db.writer())
        .await?;
    let (holder, expires_in_secs) = match row {
        Some(row) => (row.try_get(0)?, row.try_get::<i64, _>(1)?.max(0)),
        None => ("a node that just stopped".to_owned(), 0),
    };
    Ok(NodeLeaseError::Taken {
        node_id,
        holder,
        expires_in_secs,
    })
}

/// Renews the lease every third of its length until aborted; reports a lease found taken.
async fn renew(
    db: Database,
    node_id: u16,
    holder: Arc<str>,
    lease: Duration,
    lost: watch::Sender<bool>,
) {
    let lease_micros = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
    let sql = format!(
        "UPDATE node_leases SET expires_at = {DATABASE_NOW} + $3 WHERE node_id = $1 AND holder = $2"
    );
    let mut failing = false;
    loop {
        tokio::time::sleep(lease / 3).await;
        let renewed = sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(i64::from(node_id))
            .bind(holder.as_ref())
            .bind(lease_micros)
            .execute(db.writer())
            .await;
        match renewed {
            Ok(done) if done.rows_affected() == 1 => {
                if std::mem::take(&mut failing) {
                    tracing::info!(node_id, "node id lease renewed again");
                }
            }
            Ok(_) => {
                tracing::error!(
                    node_id,
                    "node id lease lost to another node: this process must stop making ids"
                );
                lost.send_replace(true);
                return;
            }
            Err(error) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(node_id, error = %error, "node id lease not renewed; retrying");
                }
            }
        }
    }
}

/// Who holds a lease, for the message another node gets: host, process id and a random
/// suffix (two processes of one host after a pid reuse are still told apart).
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    format!("{host} pid {} #{:04x}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.subsec_nanos())
        .unwrap_or_default();
    (nanos ^ std::process::id()) as u16
}
