//! A queue's rate limit holds across processes: two `SqlJobQueue`s on one database (as two
//! worker processes would be) together start no more jobs per second than the limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use loadstar_core::IdGenerator;
use loadstar_jobs::{Clock, JobQueue, ManualClock, NewJob, SqlJobQueue};
use loadstar_store::Database;
use std::sync::Arc;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(60);

async fn two_processes_together_stay_within_the_limit(db: Database) {
    let clock = Arc::new(ManualClock::new());
    let process = |node: u16| -> Arc<dyn JobQueue> {
        let clock: Arc<dyn Clock> = clock.clone();
        Arc::new(
            SqlJobQueue::new(db.clone(), Arc::new(IdGenerator::new(node)), clock)
                .with_rate_limit("payments", 5),
        )
    };
    let (a, b) = (process(1), process(2));
    for n in 0..20u8 {
        a.enqueue(NewJob::new("payments", "charge", vec![n]))
            .await
            .unwrap();
    }
    a.enqueue(NewJob::new("other", "free", vec![]))
        .await
        .unwrap();

    let first_a = a.fetch("payments", "a", LEASE, 4).await.unwrap().len();
    let first_b = b.fetch("payments", "b", LEASE, 10).await.unwrap().len();
    assert_eq!((first_a, first_b), (4, 1), "5 per second between them");
    assert!(a
        .fetch("payments", "a", LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        b.fetch("other", "b", LEASE, 10).await.unwrap().len(),
        1,
        "other queues are not limited"
    );

    clock.advance(Duration::from_millis(1_001));
    let second = a.fetch("payments", "a", LEASE, 10).await.unwrap().len()
        + b.fetch("payments", "b", LEASE, 10).await.unwrap().len();
    assert_eq!(second, 5, "the next second allows the next 5");
}

async fn concurrent_fetches_never_exceed_the_limit(db: Database) {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
    let queues: Vec<Arc<dyn JobQueue>> = (0..4)
        .map(|node| {
            Arc::new(
                SqlJobQueue::new(
                    db.clone(),
                    Arc::new(IdGenerator::new(node)),
                    Arc::clone(&clock),
                )
                .with_rate_limit("payments", 7),
            ) as Arc<dyn JobQueue>
        })
        .collect();
    for n in 0..40u8 {
        queues[0]
            .enqueue(NewJob::new("payments", "charge", vec![n]))
            .await
            .unwrap();
    }
    let fetches = queues.iter().enumerate().map(|(i, queue)| {
        let queue = Arc::clone(queue);
        async move {
            queue
                .fetch("payments", &format!("w{i}"), LEASE, 5)
                .await
                .unwrap()
                .len()
        }
    });
    let total: usize = futures::future::join_all(fetches).await.into_iter().sum();
    assert_eq!(total, 7);
}

loadstar_store::on_every_database!(
    loadstar_store::test_support::database;

    two_processes_together_stay_within_the_limit,
    concurrent_fetches_never_exceed_the_limit,
);
