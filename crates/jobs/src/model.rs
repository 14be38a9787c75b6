//! Jobs as enqueued, as leased to a worker, and as stored.

use loadstar_core::{Id, Timestamp};
use std::time::Duration;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting for its `run_at` and a free worker.
    Available,
    /// Leased to a worker.
    Running,
    /// Done; kept for request-reply polling.
    Completed,
    /// In the error queue: attempts exhausted or expired, waiting for an operator.
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Dead => "dead",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        match value {
            "available" => Some(JobState::Available),
            "running" => Some(JobState::Running),
            "completed" => Some(JobState::Completed),
            "dead" => Some(JobState::Dead),
            _ => None,
        }
    }
}

/// A job to enqueue. Build with [`NewJob::new`] and the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub queue: String,
    pub kind: String,
    pub payload: Vec<u8>,
    /// Higher runs first.
    pub priority: i64,
    /// Not before this delay from enqueue.
    pub delay: Duration,
    pub max_attempts: u32,
    /// Enqueues with the same key within `unique_for` return the first job.
    pub unique_key: Option<String>,
    pub unique_for: Duration,
    /// Jobs sharing a key run one at a time, in enqueue order.
    pub ordering_key: Option<String>,
    /// A job not started within this time goes to the error queue.
    pub time_to_live: Option<Duration>,
    /// W3C `traceparent` of the request that enqueued it.
    pub trace_context: Option<String>,
}

impl NewJob {
    /// A job of `kind` on `queue`, default priority 0, 3 attempts, no delay.
    pub fn new(queue: impl Into<String>, kind: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            queue: queue.into(),
            kind: kind.into(),
            payload,
            priority: 0,
            delay: Duration::ZERO,
            max_attempts: 3,
            unique_key: None,
            unique_for: Duration::ZERO,
            ordering_key: None,
            time_to_live: None,
            trace_context: None,
        }
    }

    pub fn with_priority(mut self, priority: i64) -> Self {
        self.priority = priority;
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    pub fn with_unique_key(mut self, key: impl Into<String>, window: Duration) -> Self {
        self.unique_key = Some(key.into());
        self.unique_for = window;
        self
    }

    pub fn with_ordering_key(mut self, key: impl Into<String>) -> Self {
        self.ordering_key = Some(key.into());
        self
    }

    pub fn with_time_to_live(mut self, ttl: Duration) -> Self {
        self.time_to_live = Some(ttl);
        self
    }

    pub fn with_trace_context(mut self, traceparent: impl Into<String>) -> Self {
        self.trace_context = Some(traceparent.into());
        self
    }

    /// Carries the trace of the request or job being handled by this task (if any), so
    /// the job's run continues it.
    pub fn with_current_trace(mut self) -> Self {
        if let Some(current) = loadstar_core::trace_context::TraceContext::current() {
            self.trace_context = Some(current.to_traceparent());
        }
        self
    }
}

/// A job handed to one worker, valid until `lease_until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedJob {
    pub id: Id,
    pub queue: String,
    pub kind: String,
    pub payload: Vec<u8>,
    /// 1 for the first delivery.
    pub attempt: u32,
    pub max_attempts: u32,
    pub lease_until: Timestamp,
    pub worker: String,
    pub enqueued_at: Timestamp,
    /// When the job became due (enqueue time plus delay, or its retry time).
    pub due_at: Timestamp,
    pub trace_context: Option<String>,
}

/// A stored job, as the admin API and request-reply polling see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: Id,
    pub queue: String,
    pub kind: String,
    pub payload: Vec<u8>,
    pub priority: i64,
    pub state: JobState,
    pub run_at: Timestamp,
    pub attempt: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub attempts: Vec<Attempt>,
}

/// How one delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Completed,
    Failed,
    /// The worker stopped heartbeating (died, hung, or was cut off).
    LeaseExpired,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Completed => "completed",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::LeaseExpired => "lease_expired",
        }
    }

    pub fn from_stored(value: &str) -> Self {
        match value {
            "completed" => AttemptOutcome::Completed,
            "lease_expired" => AttemptOutcome::LeaseExpired,
            _ => AttemptOutcome::Failed,
        }
    }
}

/// One delivery of a job: the history the error queue shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub attempt: u32,
    pub worker: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
}

/// Jobs of one queue by state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub queue: String,
    pub available: u64,
    pub running: u64,
    pub completed: u64,
    pub dead: u64,
}

/// Dead jobs of one kind on one queue: what error-queue growth alerts watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadKindCount {
    pub queue: String,
    pub kind: String,
    pub dead: u64,
}
