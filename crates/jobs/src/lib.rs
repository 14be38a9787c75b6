//! The job queue: work that must not make a client wait, delivered at least once.
//!
//! A job is a `kind` (what to do: `payment.charge`), a `queue` (who does it and at what
//! rate), an opaque binary `payload` (a Protocol Buffers message of the domain), and the
//! delivery rules: priority, earliest start, attempts, time to live, per-key ordering.
//!
//! - [`JobQueue`] is the trait every backend implements; [`SqlJobQueue`] is the backend
//!   for SQLite (the embedded default, in the domain's database file) and PostgreSQL
//!   (`FOR UPDATE SKIP LOCKED`). One conformance suite (`tests/conformance.rs`) runs the
//!   same cases against each.
//! - Delivery is leased: [`JobQueue::fetch`] hands a job to one worker until its lease
//!   expires; [`JobQueue::heartbeat`] extends it; a worker that dies simply lets it
//!   expire and the job is delivered again. Acknowledgement ([`JobQueue::complete`]) comes
//!   only after the handler succeeded, and only from the worker holding the lease.
//! - [`RetryPolicy`] turns a failure into the next attempt (exponential backoff with full
//!   jitter) or, after the last attempt, into the error queue (state `dead`, with the
//!   attempt history) or a discard, per job kind.
//! - [`WorkerPool`] runs [`JobHandler`]s for the kinds it knows: as many jobs at once as
//!   it has slots, leases renewed while a handler runs, graceful drain on shutdown.
//! - Time comes from a [`Clock`], so tests move it instead of sleeping.

mod clock;
mod error;
mod model;
mod queue;
mod retry_policy;
mod sql_queue;
mod worker;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::JobError;
pub use model::{Attempt, AttemptOutcome, Job, JobState, LeasedJob, NewJob, QueueCounts};
pub use queue::JobQueue;
pub use retry_policy::{Exhausted, RetryPolicy};
pub use sql_queue::SqlJobQueue;
pub use worker::{HandlerError, JobHandler, PoolSettings, WorkerPool};
