//! One conformance suite for `JobQueue`, run against every backend: the SQL queue on
//! SQLite always, on PostgreSQL when `LOADSTAR_TEST_DATABASE_URL` names a server, and
//! the RabbitMQ queue when `LOADSTAR_TEST_RABBITMQ_URL` names a broker (its ledger on
//! PostgreSQL when there is one, else SQLite).
//! Time is a `ManualClock`: delays, backoff, leases and TTLs advance it, nothing sleeps.
//! A broker pushes messages asynchronously, so a case that expects jobs polls for them
//! with a deadline (`fetch_expecting`); one that expects none gives the broker the
//! backend's fetch wait to prove it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use futures::future::join_all;
use loadstar_core::IdGenerator;
use loadstar_jobs::{
    AttemptOutcome, Exhausted, JobError, JobQueue, JobState, LeasedJob, ManualClock, NewJob,
    RabbitJobQueue, RetryPolicy, SqlJobQueue,
};
use loadstar_store::Database;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(30);

/// What each case gets: the queue under test, its clock, and its database.
struct Fixture {
    queue: Arc<dyn JobQueue>,
    clock: Arc<ManualClock>,
    db: Database,
}

async fn sql_fixture(db: Database) -> Fixture {
    let clock = Arc::new(ManualClock::new());
    let queue = SqlJobQueue::new(db.clone(), Arc::new(IdGenerator::new(1)), clock.clone());
    Fixture {
        queue: Arc::new(queue),
        clock,
        db,
    }
}

async fn rabbit_fixture(db: Database, url: String) -> Fixture {
    let clock = Arc::new(ManualClock::new());
    let ledger = SqlJobQueue::new(db.clone(), Arc::new(IdGenerator::new(1)), clock.clone());
    Fixture {
        queue: Arc::new(RabbitJobQueue::start(ledger, support::test_settings(url))),
        clock,
        db,
    }
}

fn job(kind: &str) -> NewJob {
    NewJob::new("default", kind, kind.as_bytes().to_vec())
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(10),
        on_exhausted: Exhausted::DeadLetter,
    }
}

async fn an_enqueued_job_is_delivered_once_and_completed(f: Fixture) {
    let id = f.queue.enqueue(job("a")).await.unwrap();
    let leased = f.fetch_expecting("default", "w1", 10, 1).await;
    assert_eq!((leased[0].id, leased[0].attempt), (id, 1));
    assert_eq!(leased[0].payload, b"a");
    assert!(f
        .queue
        .fetch("default", "w2", LEASE, 10)
        .await
        .unwrap()
        .is_empty());

    assert!(f.queue.complete(&leased[0]).await.unwrap());
    let stored = f.queue.get(id).await.unwrap().unwrap();
    assert_eq!(stored.state, JobState::Completed);
    assert_eq!(stored.attempts.len(), 1);
    assert_eq!(stored.attempts[0].outcome, AttemptOutcome::Completed);
    assert!(f
        .queue
        .fetch("default", "w1", LEASE, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn jobs_of_other_queues_are_not_delivered(f: Fixture) {
    f.queue
        .enqueue(NewJob::new("payments", "charge", vec![]))
        .await
        .unwrap();
    assert!(f
        .queue
        .fetch("default", "w1", LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    f.fetch_expecting("payments", "w1", 10, 1).await;
}

/// SQL backends only: a broker delivers what it already holds in publication order.
async fn a_higher_priority_job_overtakes_earlier_ones(f: Fixture) {
    for (kind, priority) in [("low", 0), ("high", 10), ("mid", 5)] {
        f.queue
            .enqueue(job(kind).with_priority(priority))
            .await
            .unwrap();
    }
    let kinds: Vec<String> = f
        .queue
        .fetch("default", "w1", LEASE, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.kind)
        .collect();
    assert_eq!(kinds, ["high", "mid", "low"]);
}

async fn jobs_due_together_are_delivered_best_priority_first(f: Fixture) {
    for (kind, priority) in [("low", 0), ("high", 10), ("mid", 5)] {
        f.queue
            .enqueue(
                job(kind)
                    .with_priority(priority)
                    .with_delay(Duration::from_secs(60)),
            )
            .await
            .unwrap();
    }
    f.clock.advance(Duration::from_secs(61));
    let kinds: Vec<String> = f
        .fetch_expecting("default", "w1", 10, 3)
        .await
        .into_iter()
        .map(|job| job.kind)
        .collect();
    assert_eq!(kinds, ["high", "mid", "low"]);
}

async fn a_delayed_job_waits_until_it_is_due(f: Fixture) {
    f.queue
        .enqueue(job("later").with_delay(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(f
        .queue
        .fetch("default", "w1", LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    f.clock.advance(Duration::from_secs(61));
    f.fetch_expecting("default", "w1", 10, 1).await;
}

async fn a_failing_job_is_retried_with_backoff_then_dead_lettered_with_its_history(f: Fixture) {
    let id = f
        .queue
        .enqueue(job("flaky").with_max_attempts(2))
        .await
        .unwrap();
    let first = f.fetch_expecting("default", "w1", 1, 1).await.remove(0);
    let state = f
        .queue
        .fail(&first, "boom 1", &quick_retries())
        .await
        .unwrap();
    assert_eq!(state, Some(JobState::Available));
    let waiting = f.queue.get(id).await.unwrap().unwrap();
    assert!(waiting.run_at <= f.clock_now().plus(quick_retries().ceiling(1)));

    f.clock.advance(quick_retries().cap);
    let second = f.fetch_expecting("default", "w2", 1, 1).await.remove(0);
    assert_eq!(second.attempt, 2);
    let state = f
        .queue
        .fail(&second, "boom 2", &quick_retries())
        .await
        .unwrap();
    assert_eq!(state, Some(JobState::Dead));

    let dead = f.queue.get(id).await.unwrap().unwrap();
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("boom 2"));
    let errors: Vec<_> = dead
        .attempts
        .iter()
        .map(|a| a.error.clone().unwrap())
        .collect();
    assert_eq!(errors, ["boom 1", "boom 2"]);
    let listed = f
        .queue
        .dead_jobs(Some("default"), None, None, 10)
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|job| job.id).collect::<Vec<_>>(), [id]);
    assert_eq!(
        listed[0].attempts, dead.attempts,
        "the list carries each history too"
    );
    assert!(f
        .queue
        .fetch("default", "w1", LEASE, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn an_exhausted_job_of_a_discard_policy_is_dropped(f: Fixture) {
    let id = f
        .queue
        .enqueue(job("analytics").with_max_attempts(1))
        .await
        .unwrap();
    let leased = f.fetch_expecting("default", "w1", 1, 1).await.remove(0);
    let policy = RetryPolicy {
        on_exhausted: Exhausted::Discard,
        ..quick_retries()
    };
    assert_eq!(f.queue.fail(&leased, "nope", &policy).await.unwrap(), None);
    assert!(f.queue.get(id).await.unwrap().is_none());
}

async fn a_job_whose_lease_expired_is_redelivered_and_the_old_worker_cannot_ack(f: Fixture) {
    let id = f.queue.enqueue(job("slow")).await.unwrap();
    let first = f
        .fetch_expecting("default", "dead-worker", 1, 1)
        .await
        .remove(0);
    f.clock.advance(LEASE + Duration::from_secs(1));

    let second = f.fetch_expecting("default", "w2", 1, 1).await.remove(0);
    assert_eq!((second.id, second.attempt), (id, 2));
    assert!(
        !f.queue.complete(&first).await.unwrap(),
        "the lease moved on"
    );
    assert!(matches!(
        f.queue.fail(&first, "late", &quick_retries()).await,
        Err(JobError::NotFound(_))
    ));
    assert!(f.queue.complete(&second).await.unwrap());

    let outcomes: Vec<_> = f
        .queue
        .get(id)
        .await
        .unwrap()
        .unwrap()
        .attempts
        .iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::LeaseExpired, AttemptOutcome::Completed]
    );
}

async fn a_heartbeat_keeps_a_long_job_from_being_redelivered(f: Fixture) {
    f.queue.enqueue(job("long")).await.unwrap();
    let leased = f.fetch_expecting("default", "w1", 1, 1).await.remove(0);
    for _ in 0..3 {
        f.clock.advance(Duration::from_secs(20));
        assert!(f.queue.heartbeat(&leased, LEASE).await.unwrap().is_some());
        assert!(f
            .queue
            .fetch("default", "w2", LEASE, 1)
            .await
            .unwrap()
            .is_empty());
    }
    assert!(f.queue.complete(&leased).await.unwrap());
}

async fn a_lease_lost_on_the_last_attempt_sends_the_job_to_the_error_queue(f: Fixture) {
    let id = f
        .queue
        .enqueue(job("fatal").with_max_attempts(1))
        .await
        .unwrap();
    f.fetch_expecting("default", "w1", 1, 1).await;
    f.clock.advance(LEASE * 2);
    assert!(f
        .queue
        .fetch("default", "w2", LEASE, 1)
        .await
        .unwrap()
        .is_empty());
    let dead = f.queue.get(id).await.unwrap().unwrap();
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.attempts[0].outcome, AttemptOutcome::LeaseExpired);
}

async fn a_unique_key_dedupes_enqueues_within_its_window(f: Fixture) {
    let window = Duration::from_secs(60);
    let first = f
        .queue
        .enqueue(job("u").with_unique_key("order-1", window))
        .await
        .unwrap();
    let again = f
        .queue
        .enqueue(job("u").with_unique_key("order-1", window))
        .await
        .unwrap();
    assert_eq!(first, again);
    f.fetch_expecting("default", "w1", 10, 1).await;

    f.clock.advance(window + Duration::from_secs(1));
    let later = f
        .queue
        .enqueue(job("u").with_unique_key("order-1", window))
        .await
        .unwrap();
    assert_ne!(later, first, "the window has passed");
}

async fn jobs_sharing_an_ordering_key_run_one_at_a_time_in_order(f: Fixture) {
    let a1 = f
        .queue
        .enqueue(job("a1").with_ordering_key("user-a"))
        .await
        .unwrap();
    let a2 = f
        .queue
        .enqueue(job("a2").with_ordering_key("user-a"))
        .await
        .unwrap();
    let b1 = f
        .queue
        .enqueue(job("b1").with_ordering_key("user-b"))
        .await
        .unwrap();
    let free = f.queue.enqueue(job("free")).await.unwrap();

    let first: HashSet<_> = f
        .fetch_expecting("default", "w1", 10, 3)
        .await
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(first, HashSet::from([a1, b1, free]));
    assert!(f
        .queue
        .fetch("default", "w2", LEASE, 10)
        .await
        .unwrap()
        .is_empty());

    let a1_job = f.queue.get(a1).await.unwrap().unwrap();
    let leased_a1 = loadstar_jobs::LeasedJob {
        id: a1,
        queue: a1_job.queue,
        kind: a1_job.kind,
        payload: a1_job.payload,
        attempt: 1,
        max_attempts: a1_job.max_attempts,
        lease_until: f.clock_now().plus(LEASE),
        worker: "w1".to_owned(),
        enqueued_at: a1_job.created_at,
        due_at: a1_job.run_at,
        trace_context: None,
    };
    assert!(f.queue.complete(&leased_a1).await.unwrap());
    let next = f.fetch_expecting("default", "w2", 10, 1).await;
    assert_eq!(next.iter().map(|job| job.id).collect::<Vec<_>>(), [a2]);
}

async fn a_job_not_started_within_its_time_to_live_goes_to_the_error_queue(f: Fixture) {
    let id = f
        .queue
        .enqueue(job("stale").with_time_to_live(Duration::from_secs(10)))
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(11));
    assert!(f
        .queue
        .fetch("default", "w1", LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    let dead = f.queue.get(id).await.unwrap().unwrap();
    assert_eq!(dead.state, JobState::Dead);
    assert!(dead.last_error.unwrap().contains("expired"));
}

async fn a_dead_job_can_be_retried_or_discarded_by_an_operator(f: Fixture) {
    let retried = f
        .queue
        .enqueue(job("r").with_max_attempts(1))
        .await
        .unwrap();
    let discarded = f
        .queue
        .enqueue(job("d").with_max_attempts(1))
        .await
        .unwrap();
    for leased in f.fetch_expecting("default", "w1", 10, 2).await {
        f.queue
            .fail(&leased, "down", &quick_retries())
            .await
            .unwrap();
    }
    assert_eq!(
        f.queue.dead_jobs(None, None, None, 10).await.unwrap().len(),
        2
    );

    assert!(f.queue.retry_dead(retried).await.unwrap());
    assert!(
        !f.queue.retry_dead(retried).await.unwrap(),
        "no longer dead"
    );
    let again = f.fetch_expecting("default", "w2", 10, 1).await;
    assert_eq!((again[0].id, again[0].attempt), (retried, 2));
    assert!(f.queue.complete(&again[0]).await.unwrap());

    assert!(f.queue.discard_dead(discarded).await.unwrap());
    assert!(f.queue.get(discarded).await.unwrap().is_none());
    assert!(
        !f.queue.discard_dead(retried).await.unwrap(),
        "only dead jobs are discarded"
    );
}

async fn a_job_enqueued_in_a_transaction_exists_only_if_it_commits(f: Fixture) {
    let mut rolled_back = f.db.writer().begin().await.unwrap();
    let lost = f
        .queue
        .enqueue_in(&mut rolled_back, job("x"))
        .await
        .unwrap();
    rolled_back.rollback().await.unwrap();
    assert!(f.queue.get(lost).await.unwrap().is_none());

    let mut committed = f.db.writer().begin().await.unwrap();
    let kept = f.queue.enqueue_in(&mut committed, job("y")).await.unwrap();
    committed.commit().await.unwrap();
    assert_eq!(
        f.queue.get(kept).await.unwrap().unwrap().state,
        JobState::Available
    );
}

async fn concurrent_fetchers_never_receive_the_same_job(f: Fixture) {
    for n in 0..60 {
        f.queue.enqueue(job(&format!("j{n}"))).await.unwrap();
    }
    let fetchers = (0..6).map(|worker| {
        let queue = Arc::clone(&f.queue);
        async move {
            let mut got = Vec::new();
            loop {
                let batch = queue
                    .fetch("default", &format!("w{worker}"), LEASE, 4)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|job| job.id));
            }
        }
    });
    let all: Vec<_> = join_all(fetchers).await.into_iter().flatten().collect();
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 60);
    assert_eq!(distinct.len(), 60);
}

async fn counts_report_jobs_by_queue_and_state(f: Fixture) {
    f.queue.enqueue(job("a")).await.unwrap();
    f.queue.enqueue(job("b")).await.unwrap();
    f.queue
        .enqueue(NewJob::new("other", "c", vec![]))
        .await
        .unwrap();
    let leased = f.fetch_expecting("default", "w1", 1, 1).await.remove(0);
    f.queue.complete(&leased).await.unwrap();
    let counts = f.queue.counts().await.unwrap();
    let default = counts.iter().find(|c| c.queue == "default").unwrap();
    assert_eq!((default.available, default.completed), (1, 1));
    assert_eq!(
        counts
            .iter()
            .find(|c| c.queue == "other")
            .unwrap()
            .available,
        1
    );
}

async fn invalid_jobs_are_rejected_before_they_are_stored(f: Fixture) {
    let too_big = NewJob::new("default", "big", vec![0; 300 * 1024]);
    assert!(matches!(
        f.queue.enqueue(too_big).await,
        Err(JobError::Invalid(_))
    ));
    let no_attempts = job("zero").with_max_attempts(0);
    assert!(matches!(
        f.queue.enqueue(no_attempts).await,
        Err(JobError::Invalid(_))
    ));
    assert!(f.queue.counts().await.unwrap().is_empty());
}

async fn concurrent_acknowledgements_each_get_their_own_answer_and_history(f: Fixture) {
    for _ in 0..40 {
        f.queue.enqueue(job("many")).await.unwrap();
    }
    let leased = f.queue.fetch("default", "w1", LEASE, 40).await.unwrap();
    assert_eq!(leased.len(), 40);
    let impostor = loadstar_jobs::LeasedJob {
        worker: "impostor".to_owned(),
        ..leased[0].clone()
    };
    let twice = leased[1].clone();

    let mut acks: Vec<_> = leased.iter().map(|job| f.queue.complete(job)).collect();
    acks.push(f.queue.complete(&impostor));
    acks.push(f.queue.complete(&twice));
    let answers: Vec<bool> = join_all(acks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    assert!(answers[2..40].iter().all(|held| *held));
    assert!(answers[0], "the lease holder completes its job");
    assert!(
        !answers[40],
        "a worker without the lease cannot complete the job"
    );
    assert_eq!(
        usize::from(answers[1]) + usize::from(answers[41]),
        1,
        "a job completes once however often it is acknowledged"
    );
    for job in &leased {
        let stored = f.queue.get(job.id).await.unwrap().unwrap();
        assert_eq!(stored.state, JobState::Completed);
        assert_eq!(stored.attempts.len(), 1);
        assert_eq!(stored.attempts[0].outcome, AttemptOutcome::Completed);
        assert_eq!(stored.attempts[0].worker, "w1");
    }
}

impl Fixture {
    fn clock_now(&self) -> loadstar_core::Timestamp {
        self.clock.now()
    }

    /// Fetches from `queue` until exactly `n` jobs came, failing after a deadline.
    async fn fetch_expecting(
        &self,
        queue: &str,
        worker: &str,
        limit: u32,
        n: usize,
    ) -> Vec<LeasedJob> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut got = Vec::new();
        while got.len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "expected {n} jobs from {queue}, got {}",
                got.len()
            );
            let room = limit - u32::try_from(got.len()).unwrap();
            got.extend(self.queue.fetch(queue, worker, LEASE, room).await.unwrap());
        }
        assert_eq!(got.len(), n, "more jobs than expected");
        got
    }
}

/// The suite: `all` on every backend, `sql_only` on SQLite and PostgreSQL alone.
macro_rules! conformance_suite {
    (all: [$($case:ident),+ $(,)?], sql_only: [$($sql_case:ident),* $(,)?] $(,)?) => {
        loadstar_store::on_every_database!(sql_fixture; $($sql_case,)* $($case),+);
        on_rabbitmq!(rabbit_fixture; $($case),+);
    };
}

conformance_suite!(
    all: [
        an_enqueued_job_is_delivered_once_and_completed,
        jobs_of_other_queues_are_not_delivered,
        jobs_due_together_are_delivered_best_priority_first,
        a_delayed_job_waits_until_it_is_due,
        a_failing_job_is_retried_with_backoff_then_dead_lettered_with_its_history,
        an_exhausted_job_of_a_discard_policy_is_dropped,
        a_job_whose_lease_expired_is_redelivered_and_the_old_worker_cannot_ack,
        a_heartbeat_keeps_a_long_job_from_being_redelivered,
        a_lease_lost_on_the_last_attempt_sends_the_job_to_the_error_queue,
        a_unique_key_dedupes_enqueues_within_its_window,
        jobs_sharing_an_ordering_key_run_one_at_a_time_in_order,
        a_job_not_started_within_its_time_to_live_goes_to_the_error_queue,
        a_dead_job_can_be_retried_or_discarded_by_an_operator,
        a_job_enqueued_in_a_transaction_exists_only_if_it_commits,
        concurrent_fetchers_never_receive_the_same_job,
        counts_report_jobs_by_queue_and_state,
        invalid_jobs_are_rejected_before_they_are_stored,
    ],
    sql_only: [
        a_higher_priority_job_overtakes_earlier_ones,
        concurrent_acknowledgements_each_get_their_own_answer_and_history,
    ],
);
