//! What a benchmark runs against: one queue backend behind the [`JobQueue`] trait.

use loadstar_jobs::JobQueue;
use loadstar_store::Database;
use std::sync::Arc;

/// A backend under test. Built from any [`JobQueue`], so a new backend is one
/// constructor call in [`crate::backends::open`].
pub struct BenchTarget {
    pub name: String,
    pub queue: Arc<dyn JobQueue>,
    /// The database whose transactions `enqueue_in` joins, for backends that have one:
    /// bulk enqueue then commits a batch of jobs per transaction, as an order-placing
    /// request would with its own writes. Without it, bulk enqueue is one
    /// [`JobQueue::enqueue`] call per job.
    pub transactions: Option<Database>,
}

impl BenchTarget {
    pub fn new(name: impl Into<String>, queue: Arc<dyn JobQueue>) -> Self {
        Self {
            name: name.into(),
            queue,
            transactions: None,
        }
    }

    pub fn with_transactions(mut self, db: Database) -> Self {
        self.transactions = Some(db);
        self
    }
}
