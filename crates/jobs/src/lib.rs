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
//!   attempt history), a discard, or an alert (error queue plus an [`Alert`]), per job
//!   kind. The [`Alerter`] logs alerts and enqueues them as signed [`ALERT_WEBHOOK`] jobs;
//!   [`DeadLetterWatch`] alerts when a kind's error queue reaches its threshold.
//! - [`WorkerPool`] runs [`JobHandler`]s for the kinds it knows: as many jobs at once as
//!   it has slots, leases renewed while a handler runs, graceful drain on shutdown.
//! - [`ClaimCheckQueue`] decorates any backend: payloads over the inline limit go to
//!   object storage and the job carries a [`ClaimTicket`]; handlers see the real bytes.
//! - Jobs carry the W3C trace context of whatever enqueued them
//!   ([`NewJob::with_current_trace`]); a worker runs each handler in a `job` span that
//!   continues that trace, and jobs a handler enqueues inherit it.
//! - Message patterns beyond fire-and-forget: [`Topics`] (publish/subscribe: one copy per
//!   subscribed queue, in the publisher's transaction, deduped by event id) and [`Routes`]
//!   (a routing key selects exactly one queue; an unknown key is an error).
//! - Time that decides between nodes (leases, due times, expiry, rate windows) is read
//!   from the database server's clock by each statement, never from a node's; a
//!   [`Clock`] can pin it instead ([`ManualClock`]), so tests move time instead of
//!   sleeping. [`DatabaseClock`] is the production one.
//! - Two HTTP routers over any [`JobQueue`], for the server to mount: [`admin_router`]
//!   (error-queue administration: counts, dead jobs with payloads decoded by the domain's
//!   [`PayloadDecoder`], retry, retry all, discard) and [`job_status_router`]
//!   (`GET /v1/jobs/{jobId}`, request-reply polling). **Neither checks who is calling**:
//!   the server wraps them in its own authentication and authorisation. Failures are
//!   problem+json via [`JobApiError`]; [`JobsAdminApi`] and [`JobStatusApi`] describe
//!   them for the served OpenAPI document.

mod ack_batcher;
mod admin_api;
mod alerting;
mod api_error;
mod api_input;
mod claim_check;
mod clock;
mod configured_queue;
mod dead_letter_watch;
mod error;
mod job_status_api;
mod job_trace;
mod model;
mod pg_notifier;
mod queue;
pub mod queue_metrics;
mod rabbit;
mod retry_policy;
mod routes;
mod sql_queue;
mod topics;
mod webhook_signature;
mod worker;

pub use admin_api::{
    admin_router, AttemptDetail, AttemptOutcomeView, DeadJobPage, DeadJobSummary, JobDetail,
    JobsAdminApi, PayloadDecoder, QueueSummary, QueueSummaryList, RetryAllRequest, RetryAllResult,
    MAX_RETRIED_PER_CALL,
};
pub use alerting::{Alert, AlertWebhook, Alerter, ALERTS_QUEUE, ALERT_WEBHOOK};
pub use api_error::JobApiError;
pub use claim_check::{ClaimCheckQueue, ClaimTicket, DEFAULT_INLINE_LIMIT, TICKET_MAGIC};
pub use clock::{Clock, DatabaseClock, ManualClock};
pub use configured_queue::configured_queue;
pub use dead_letter_watch::{DeadLetterWatch, DEAD_BY_KIND_GAUGE};
pub use error::JobError;
pub use job_status_api::{job_status_router, JobStateView, JobStatus, JobStatusApi};
pub use model::{
    Attempt, AttemptOutcome, DeadKindCount, Job, JobState, LeasedJob, NewJob, QueueCounts,
};
pub use queue::JobQueue;
pub use rabbit::{RabbitJobQueue, RabbitSettings};
pub use retry_policy::{Exhausted, RetryPolicy};
pub use routes::Routes;
pub use sql_queue::{SqlJobQueue, MAX_INLINE_PAYLOAD};
pub use topics::{Subscription, TopicError, Topics};
pub use webhook_signature::webhook_signature;
pub use worker::{HandlerError, JobHandler, PoolSettings, WorkerPool};
