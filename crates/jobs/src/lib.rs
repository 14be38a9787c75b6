//! The job queue: work that must not make a client wait, delivered at least once.
//!
//! A job is a `kind` (what to do: `payment.charge`), a `queue` (who does it and at what
//! rate), an opaque binary `payload` (a Protocol Buffers message of the domain), and the
//! delivery rules: priority, earliest start, attempts, time to live, per-key ordering.
//!
//! - [`JobQueue`] is the trait every backend implements; [`SqlJobQueue`] is the backend
//!   for SQLite (the embedded default, in the domain's database file) and PostgreSQL
//!   (`FOR UPDATE SKIP LOCKED`); [`RabbitJobQueue`] delivers through RabbitMQ with its
//!   ledger in the same tables. [`configured_queue`] picks one from `[queue]`. One
//!   conformance suite (`tests/conformance.rs`) runs the same cases against each.
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
//! - Two HTTP routers over any [`JobQueue`], for the server to mount: [`admin_router`]
//!   (error-queue administration: counts, dead jobs with payloads decoded by the domain's
//!   [`PayloadDecoder`], retry, retry all, discard) and [`job_status_router`]
//!   (`GET /v1/jobs/{jobId}`, request-reply polling). **Neither checks who is calling**:
//!   the server wraps them in its own authentication and authorisation. Failures are
//!   problem+json via [`JobApiError`]; [`JobsAdminApi`] and [`JobStatusApi`] describe
//!   them for the served OpenAPI document.

mod admin_api;
mod api_error;
mod api_input;
mod clock;
mod configured_queue;
mod error;
mod job_status_api;
mod model;
mod pg_notifier;
mod queue;
pub mod queue_metrics;
mod rabbit;
mod retry_policy;
mod sql_queue;
mod worker;

pub use admin_api::{
    admin_router, AttemptDetail, AttemptOutcomeView, DeadJobPage, DeadJobSummary, JobDetail,
    JobsAdminApi, PayloadDecoder, QueueSummary, QueueSummaryList, RetryAllRequest, RetryAllResult,
    MAX_RETRIED_PER_CALL,
};
pub use api_error::JobApiError;
pub use clock::{Clock, ManualClock, SystemClock};
pub use configured_queue::configured_queue;
pub use error::JobError;
pub use job_status_api::{job_status_router, JobStateView, JobStatus, JobStatusApi};
pub use model::{Attempt, AttemptOutcome, Job, JobState, LeasedJob, NewJob, QueueCounts};
pub use queue::JobQueue;
pub use rabbit::{RabbitJobQueue, RabbitSettings};
pub use retry_policy::{Exhausted, RetryPolicy};
pub use sql_queue::SqlJobQueue;
pub use worker::{HandlerError, JobHandler, PoolSettings, WorkerPool};
