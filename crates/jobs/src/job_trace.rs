//! A job runs inside the trace of whatever enqueued it.
//!
//! The enqueuer stores its `traceparent` with the job ([`NewJob::with_current_trace`]);
//! the worker continues that trace with a new span id for the run, makes it
//! [`TraceContext::current`] for the handler (so jobs the handler enqueues inherit it), and
//! wraps the run in a `job` span whose fields (`trace_id`, `job_id`, `kind`) every log line
//! of the run carries. A job without a valid trace context starts a new trace.
//!
//! [`NewJob::with_current_trace`]: crate::NewJob::with_current_trace

use crate::model::LeasedJob;
use loadstar_core::trace_context::TraceContext;

/// The trace context of one run of `job`: a child of the enqueuer's.
pub(crate) fn run_context(job: &LeasedJob) -> TraceContext {
    TraceContext::continue_from(job.trace_context.as_deref())
}

/// The span one run of `job` is logged under.
pub(crate) fn run_span(job: &LeasedJob, trace: &TraceContext) -> tracing::Span {
    tracing::info_span!(
        "job",
        trace_id = %trace.trace_id(),
        span_id = %trace.span_id(),
        job_id = %job.id,
        kind = %job.kind,
        queue = %job.queue,
        attempt = job.attempt,
    )
}
