//! Publish/subscribe and routing over the SQL queue, on every database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use loadstar_core::IdGenerator;
use loadstar_jobs::{
    JobQueue, ManualClock, NewJob, Routes, SqlJobQueue, Subscription, TopicError, Topics,
};
use loadstar_store::Database;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(30);

struct Fixture {
    queue: Arc<dyn JobQueue>,
    db: Database,
}

async fn fixture(db: Database) -> Fixture {
    let queue = SqlJobQueue::new(
        db.clone(),
        Arc::new(IdGenerator::new(4)),
        Arc::new(ManualClock::new()),
    );
    Fixture {
        queue: Arc::new(queue),
        db,
    }
}

fn order_events() -> Topics {
    Topics::default()
        .subscribe("order.shipped", Subscription::queue("mail"))
        .subscribe("order.shipped", Subscription::queue("audit"))
        .subscribe(
            "order.shipped",
            Subscription::queue("warehouse").as_kind("stock.release"),
        )
}

impl Fixture {
    async fn publish(&self, topics: &Topics, event_id: &str) -> Result<usize, TopicError> {
        let mut tx = self.db.writer().begin().await.unwrap();
        let message = NewJob::new("ignored", "order.shipped", b"order 7".to_vec());
        let ids = topics
            .publish(
                self.queue.as_ref(),
                &mut tx,
                "order.shipped",
                event_id,
                message,
            )
            .await?;
        tx.commit().await.unwrap();
        Ok(ids.len())
    }

    /// (kind, payload) of every job waiting on `queue`.
    async fn waiting_on(&self, queue: &str) -> Vec<(String, Vec<u8>)> {
        self.queue
            .fetch(queue, "w", LEASE, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|job| (job.kind, job.payload))
            .collect()
    }

    async fn available(&self) -> BTreeMap<String, u64> {
        self.queue
            .counts()
            .await
            .unwrap()
            .into_iter()
            .map(|counts| (counts.queue, counts.available))
            .collect()
    }
}

async fn a_published_message_reaches_every_subscribed_queue_as_its_own_job(f: Fixture) {
    assert_eq!(f.publish(&order_events(), "evt-1").await.unwrap(), 3);
    let copy = b"order 7".to_vec();
    assert_eq!(
        f.waiting_on("mail").await,
        [("order.shipped".to_owned(), copy.clone())]
    );
    assert_eq!(
        f.waiting_on("audit").await,
        [("order.shipped".to_owned(), copy.clone())]
    );
    assert_eq!(
        f.waiting_on("warehouse").await,
        [("stock.release".to_owned(), copy)],
        "a subscriber may run its copy as its own kind"
    );
}

async fn republishing_an_event_makes_no_second_copy_but_a_new_event_does(f: Fixture) {
    let topics = order_events();
    f.publish(&topics, "evt-1").await.unwrap();
    f.publish(&topics, "evt-1").await.unwrap();
    let once: BTreeMap<String, u64> = [("audit", 1), ("mail", 1), ("warehouse", 1)]
        .map(|(queue, n)| (queue.to_owned(), n))
        .into();
    assert_eq!(f.available().await, once);
    f.publish(&topics, "evt-2").await.unwrap();
    assert!(f.available().await.values().all(|n| *n == 2));
}

async fn a_publish_rolled_back_with_its_transaction_leaves_no_copy(f: Fixture) {
    let mut tx = f.db.writer().begin().await.unwrap();
    order_events()
        .publish(
            f.queue.as_ref(),
            &mut tx,
            "order.shipped",
            "evt-1",
            NewJob::new("ignored", "order.shipped", vec![]),
        )
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(f.available().await.is_empty());
}

async fn publishing_to_an_undeclared_topic_is_an_error_not_a_silent_drop(f: Fixture) {
    let mut tx = f.db.writer().begin().await.unwrap();
    let result = order_events()
        .publish(
            f.queue.as_ref(),
            &mut tx,
            "order.lost",
            "evt-1",
            NewJob::new("ignored", "order.lost", vec![]),
        )
        .await;
    assert!(matches!(result, Err(TopicError::UnknownTopic(topic)) if topic == "order.lost"));
}

async fn a_subscriber_the_publisher_skips_gets_nothing_and_the_rest_their_own_view(f: Fixture) {
    let mut tx = f.db.writer().begin().await.unwrap();
    order_events()
        .publish_each(
            f.queue.as_ref(),
            &mut tx,
            "order.shipped",
            "evt-1",
            |subscription| match subscription.queue.as_str() {
                "mail" => None,
                queue => Some(NewJob::new(
                    queue,
                    "order.shipped",
                    queue.as_bytes().to_vec(),
                )),
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(f.waiting_on("mail").await.is_empty());
    assert_eq!(f.waiting_on("audit").await[0].1, b"audit");
    assert_eq!(f.waiting_on("warehouse").await[0].1, b"warehouse");
}

async fn a_routed_job_lands_on_exactly_the_queue_its_key_selects(f: Fixture) {
    let mut config = BTreeMap::new();
    config.insert("payment.*".to_owned(), "payments".to_owned());
    config.insert("report.monthly".to_owned(), "reports".to_owned());
    let routes = Routes::from_config(&config);
    let job = routes
        .job("payment.refund", "payment.refund", b"r".to_vec())
        .unwrap();
    f.queue.enqueue(job).await.unwrap();
    let only_payments: BTreeMap<String, u64> = [("payments".to_owned(), 1)].into();
    assert_eq!(f.available().await, only_payments);
    assert!(matches!(
        routes.job("report.weekly", "report.build", vec![]),
        Err(TopicError::NoRoute(key)) if key == "report.weekly"
    ));
}

loadstar_store::on_every_database!(
    fixture;

    a_published_message_reaches_every_subscribed_queue_as_its_own_job,
    republishing_an_event_makes_no_second_copy_but_a_new_event_does,
    a_publish_rolled_back_with_its_transaction_leaves_no_copy,
    publishing_to_an_undeclared_topic_is_an_error_not_a_silent_drop,
    a_subscriber_the_publisher_skips_gets_nothing_and_the_rest_their_own_view,
    a_routed_job_lands_on_exactly_the_queue_its_key_selects,
);
