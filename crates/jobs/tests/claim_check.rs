//! The claim check over every backend (the SQL queue on SQLite and PostgreSQL, and the
//! RabbitMQ queue when `LOADSTAR_TEST_RABBITMQ_URL` names a broker), with a real local
//! object store: big payloads leave the row, come back whole, and their objects go once
//! jobs settle. A broker delivers asynchronously, so fetches poll with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use loadstar_core::IdGenerator;
use loadstar_jobs::{
    ClaimCheckQueue, ClaimTicket, Exhausted, JobQueue, JobState, LeasedJob, ManualClock, NewJob,
    RabbitJobQueue, RetryPolicy, SqlJobQueue, DEFAULT_INLINE_LIMIT, TICKET_MAGIC,
};
use loadstar_store::object_store::path::Path as ObjectPath;
use loadstar_store::object_store::{ObjectStore, ObjectStoreExt};
use loadstar_store::sql::{query, Row};
use loadstar_store::Database;
use std::sync::Arc;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(30);
const MIB: usize = 1024 * 1024;

struct Fixture {
    queue: ClaimCheckQueue,
    store: Arc<dyn ObjectStore>,
    clock: Arc<ManualClock>,
    db: Database,
    objects_dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.objects_dir);
    }
}

fn claim_checked(inner: Arc<dyn JobQueue>, clock: Arc<ManualClock>, db: Database) -> Fixture {
    let objects_dir = loadstar_store::test_support::scratch_dir("objects");
    let store = loadstar_store::object_storage::local_directory(&objects_dir).unwrap();
    Fixture {
        queue: ClaimCheckQueue::new(inner, Arc::clone(&store), DEFAULT_INLINE_LIMIT),
        store,
        clock,
        db,
        objects_dir,
    }
}

async fn claim_check_fixture(db: Database) -> Fixture {
    let clock = Arc::new(ManualClock::new());
    let sql = SqlJobQueue::new(db.clone(), Arc::new(IdGenerator::new(1)), clock.clone());
    claim_checked(Arc::new(sql), clock, db)
}

/// The RabbitMQ backend on the test broker, its ledger in `db`.
async fn rabbitmq_fixture(db: Database, url: String) -> Fixture {
    let clock = Arc::new(ManualClock::new());
    let ledger = SqlJobQueue::new(db.clone(), Arc::new(IdGenerator::new(1)), clock.clone());
    let queue: Arc<dyn JobQueue> =
        Arc::new(RabbitJobQueue::start(ledger, support::test_settings(url)));
    claim_checked(queue, clock, db)
}

/// A payload no two tests share and no compression would shrink to nothing.
fn big_payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 % 251) as u8).collect()
}

impl Fixture {
    /// Fetches from "default" until exactly `n` jobs came, failing after a deadline.
    async fn fetch_expecting(&self, worker: &str, n: usize) -> Vec<LeasedJob> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut got = Vec::new();
        while got.len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "expected {n} jobs, got {}",
                got.len()
            );
            let room = u32::try_from(n - got.len()).unwrap();
            got.extend(
                self.queue
                    .fetch("default", worker, LEASE, room)
                    .await
                    .unwrap(),
            );
        }
        got
    }

    async fn stored_payload(&self, id: loadstar_core::Id) -> Vec<u8> {
        query("SELECT payload FROM jobs WHERE id = $1")
            .bind(id.as_i64())
            .fetch_one(self.db.writer())
            .await
            .unwrap()
            .try_get("payload")
            .unwrap()
    }

    async fn ticket_of(&self, id: loadstar_core::Id) -> ClaimTicket {
        ClaimTicket::from_payload(&self.stored_payload(id).await)
            .unwrap()
            .expect("the row holds a ticket")
    }

    async fn object_exists(&self, ticket: &ClaimTicket) -> bool {
        match self
            .store
            .head(&ObjectPath::from(ticket.path.as_str()))
            .await
        {
            Ok(_) => true,
            Err(loadstar_store::object_store::Error::NotFound { .. }) => false,
            Err(other) => panic!("head failed: {other}"),
        }
    }
}

async fn a_one_mebibyte_payload_round_trips_and_the_row_holds_only_a_ticket(f: Fixture) {
    let payload = big_payload(MIB);
    let id = f
        .queue
        .enqueue(NewJob::new("default", "big", payload.clone()))
        .await
        .unwrap();

    let stored = f.stored_payload(id).await;
    assert!(stored.starts_with(TICKET_MAGIC));
    assert!(stored.len() < 512, "the row holds {} bytes", stored.len());
    let ticket = f.ticket_of(id).await;
    assert_eq!(ticket.size, MIB as u64);
    assert!(ticket.path.starts_with("jobs/claims/"));
    assert!(f.object_exists(&ticket).await);

    let leased = f.fetch_expecting("w1", 1).await;
    assert!(
        leased[0].payload == payload,
        "the handler sees the real bytes"
    );
    assert!(f.queue.complete(&leased[0]).await.unwrap());
    assert!(
        !f.object_exists(&ticket).await,
        "the object goes once the job completed"
    );
}

async fn small_payloads_stay_inline(f: Fixture) {
    let id = f
        .queue
        .enqueue(NewJob::new("default", "small", b"tiny".to_vec()))
        .await
        .unwrap();
    assert_eq!(f.stored_payload(id).await, b"tiny");
    let leased = f.fetch_expecting("w1", 1).await;
    assert_eq!(leased[0].payload, b"tiny");
}

async fn a_payload_that_looks_like_a_ticket_is_claim_checked_so_it_cannot_be_mistaken(f: Fixture) {
    let mut payload = TICKET_MAGIC.to_vec();
    payload.extend_from_slice(b"not really a ticket");
    let id = f
        .queue
        .enqueue(NewJob::new("default", "tricky", payload.clone()))
        .await
        .unwrap();
    assert_eq!(f.ticket_of(id).await.size, payload.len() as u64);
    let leased = f.fetch_expecting("w1", 1).await;
    assert_eq!(leased[0].payload, payload);
}

async fn a_dead_job_shows_its_payload_resolved_and_discarding_it_removes_the_object(f: Fixture) {
    let payload = big_payload(MIB);
    let id = f
        .queue
        .enqueue(NewJob::new("default", "doomed", payload.clone()).with_max_attempts(1))
        .await
        .unwrap();
    let ticket = f.ticket_of(id).await;
    let leased = f.fetch_expecting("w1", 1).await;
    let state = f
        .queue
        .fail(&leased[0], "boom", &RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(state, Some(JobState::Dead));
    assert!(
        f.object_exists(&ticket).await,
        "a dead job may be retried: it keeps its payload"
    );

    let dead = f.queue.dead_jobs(None, None, None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].payload == payload,
        "the error queue shows the real payload"
    );
    assert!(f.queue.get(id).await.unwrap().unwrap().payload == payload);

    assert!(f.queue.discard_dead(id).await.unwrap());
    assert!(!f.object_exists(&ticket).await);
}

async fn a_discarded_job_removes_its_object(f: Fixture) {
    let id = f
        .queue
        .enqueue(NewJob::new("default", "lossy", big_payload(MIB)).with_max_attempts(1))
        .await
        .unwrap();
    let ticket = f.ticket_of(id).await;
    let leased = f.fetch_expecting("w1", 1).await;
    let discard = RetryPolicy {
        on_exhausted: Exhausted::Discard,
        ..RetryPolicy::default()
    };
    assert_eq!(
        f.queue.fail(&leased[0], "boom", &discard).await.unwrap(),
        None
    );
    assert!(!f.object_exists(&ticket).await);
}

async fn a_worker_that_lost_its_lease_does_not_delete_the_payload_the_next_one_needs(f: Fixture) {
    let payload = big_payload(MIB);
    let id = f
        .queue
        .enqueue(NewJob::new("default", "slow", payload.clone()))
        .await
        .unwrap();
    let ticket = f.ticket_of(id).await;
    let first = f.fetch_expecting("w1", 1).await;
    f.clock.advance(LEASE + Duration::from_secs(1));
    let second = f.fetch_expecting("w2", 1).await;

    assert!(!f.queue.complete(&first[0]).await.unwrap());
    assert!(f.object_exists(&ticket).await);
    assert!(second[0].payload == payload);
    assert!(f.queue.complete(&second[0]).await.unwrap());
    assert!(!f.object_exists(&ticket).await);
}

async fn a_job_whose_object_vanished_fails_its_attempt_instead_of_reaching_the_handler(f: Fixture) {
    let id = f
        .queue
        .enqueue(NewJob::new("default", "orphaned", big_payload(MIB)).with_max_attempts(1))
        .await
        .unwrap();
    let ticket = f.ticket_of(id).await;
    f.store
        .delete(&ObjectPath::from(ticket.path.as_str()))
        .await
        .unwrap();
    // Every fetch that meets the job fails its attempt; it never reaches a handler.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let job = loop {
        assert!(f
            .queue
            .fetch("default", "w1", LEASE, 1)
            .await
            .unwrap()
            .is_empty());
        let job = f.queue.get(id).await.unwrap().unwrap();
        if job.state == JobState::Dead {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "the job never died");
    };
    assert!(job.last_error.unwrap().contains("missing"));
}

/// Runs each case on every database and, with a broker, on RabbitMQ.
macro_rules! on_every_backend {
    ($($case:ident),+ $(,)?) => {
        loadstar_store::on_every_database!(claim_check_fixture; $($case),+);
        on_rabbitmq!(rabbitmq_fixture; $($case),+);
    };
}

on_every_backend!(
    a_one_mebibyte_payload_round_trips_and_the_row_holds_only_a_ticket,
    small_payloads_stay_inline,
    a_payload_that_looks_like_a_ticket_is_claim_checked_so_it_cannot_be_mistaken,
    a_dead_job_shows_its_payload_resolved_and_discarding_it_removes_the_object,
    a_discarded_job_removes_its_object,
    a_worker_that_lost_its_lease_does_not_delete_the_payload_the_next_one_needs,
    a_job_whose_object_vanished_fails_its_attempt_instead_of_reaching_the_handler,
);
