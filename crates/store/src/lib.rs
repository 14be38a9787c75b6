//! Database access for every loadstar role.
//!
//! One portable data-access path: the domain writes plain SQL with `$1`-style placeholders
//! and portable types (`BIGINT`, `TEXT`) and runs it through `sqlx`'s `Any` driver, so the
//! same repository code runs on the embedded SQLite file and on PostgreSQL. Only the
//! migrations and a handful of connection settings differ per backend (see
//! `docs/decisions/0001-data-access.md`).
//!
//! - [`Database`]: the pools. Writes go to [`Database::writer`] (transactions from
//!   [`Database::begin`]), reads that tolerate running on a replica go to
//!   [`Database::reader`], reads that must see the latest commit go to
//!   [`Database::consistent_reader`]. On SQLite the writer is a single connection (SQLite
//!   allows one writer; queuing in the pool beats `SQLITE_BUSY`) and readers are many WAL
//!   snapshots; on PostgreSQL both are the primary for now, and the replica router slots in
//!   behind `reader` later without touching callers.
//! - [`Pool`]: what those return, an `sqlx::Executor` that refuses at once while the
//!   server is down, bounds each query by a deadline, retries a read once on a fresh
//!   connection, and never reuses a connection in an unknown state.
//! - [`Transaction`]: a write transaction whose successful `commit` means durable (on
//!   SQLite verified, not taken from the driver's bookkeeping).
//! - [`Health`]: each server's up/down state, kept by a monitor task, not by requests.
//! - [`NodeLease`]: the node id of this process, leased from PostgreSQL so that replicas
//!   started from one template never share one.
//! - [`Backend`]: which engine a URL names, for the few places that must know.
//! - [`object_storage`]: the object store `[storage]` names (a local directory by
//!   default), for bytes that do not belong in a row: claim-checked job payloads.
//! - [`StoreError`]: failures in the caller's terms (conflict, down, unavailable, storage
//!   full, other).

mod backend;
mod database;
mod error;
mod health;
mod migrations;
mod node_lease;
pub mod object_storage;
mod pool;
#[cfg(feature = "test-support")]
pub mod test_support;
mod transaction;

pub use backend::Backend;
pub use database::Database;
pub use error::{StoreError, RETRY_AFTER_SECS};
pub use health::Health;
pub use node_lease::{NodeLease, NodeLeaseError};
pub use object_store;
pub use pool::Pool;
pub use transaction::{Transaction, TxConnection};

/// The `sqlx` types repositories need, re-exported so the domain has one import path and
/// one version of them.
pub mod sql {
    pub use crate::transaction::Transaction;
    pub use sqlx::any::AnyRow;
    pub use sqlx::{query, Any, AssertSqlSafe, Error, Executor, Row};
}
