//! Write-back counters, in process and in Redis: counts add up, reach the sink in
//! batches, survive a sink that fails, and (in Redis) survive the process that counted
//! them and a flusher that dies mid-batch, without being applied twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use loadstar_cache::{CountBatch, RedisRing, WriteBackCounter};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A sink that applies each batch id once, as the database does.
#[derive(Default)]
struct Sink {
    totals: Mutex<BTreeMap<String, u64>>,
    applied_batches: Mutex<HashSet<String>>,
}

impl Sink {
    async fn apply(&self, batch: CountBatch) -> Result<(), String> {
        if let Some(id) = &batch.id {
            if !self.applied_batches.lock().unwrap().insert(id.clone()) {
                return Ok(());
            }
        }
        let mut totals = self.totals.lock().unwrap();
        for (member, count) in batch.counts {
            *totals.entry(member).or_insert(0) += count;
        }
        Ok(())
    }

    fn total(&self, member: &str) -> u64 {
        self.totals
            .lock()
            .unwrap()
            .get(member)
            .copied()
            .unwrap_or(0)
    }
}

fn ring() -> Option<Arc<RedisRing>> {
    let Ok(url) = std::env::var("LOADSTAR_TEST_REDIS_URL") else {
        eprintln!("LOADSTAR_TEST_REDIS_URL is not set: Redis variant not run");
        return None;
    };
    Some(Arc::new(
        RedisRing::new(&[url], Duration::from_secs(2)).unwrap(),
    ))
}

/// A counter name no other test uses.
fn name() -> String {
    format!("test{:016x}", rand::random::<u64>())
}

async fn counts_add_up_and_reach_the_sink_once(counter: WriteBackCounter) {
    let sink = Sink::default();
    for _ in 0..100 {
        counter.add("7", 1);
    }
    counter.add("8", 5);
    counter.push().await.unwrap();
    let flushed = counter.flush(|batch| sink.apply(batch)).await.unwrap();
    assert_eq!(flushed, 105);
    assert_eq!((sink.total("7"), sink.total("8")), (100, 5));
    let again = counter.flush(|batch| sink.apply(batch)).await.unwrap();
    assert_eq!(again, 0, "nothing is sent twice");
    assert_eq!(sink.total("7"), 100);
}

async fn counts_a_failing_sink_rejected_wait_for_the_next_flush(counter: WriteBackCounter) {
    let sink = Sink::default();
    counter.add("1", 3);
    counter.push().await.unwrap();
    let failed = counter
        .flush(|_batch| async { Err::<(), _>("database down") })
        .await;
    assert!(failed.is_err());
    counter.add("1", 2);
    counter.flush(|batch| sink.apply(batch)).await.unwrap();
    assert_eq!(sink.total("1"), 5, "nothing was lost");
}

#[tokio::test]
async fn in_process_counts_add_up_and_reach_the_sink_once() {
    counts_add_up_and_reach_the_sink_once(WriteBackCounter::local_only(&name())).await;
}

#[tokio::test]
async fn in_process_counts_a_failing_sink_rejected_wait_for_the_next_flush() {
    counts_a_failing_sink_rejected_wait_for_the_next_flush(WriteBackCounter::local_only(&name()))
        .await;
}

#[tokio::test]
async fn redis_counts_add_up_and_reach_the_sink_once() {
    if let Some(ring) = ring() {
        counts_add_up_and_reach_the_sink_once(WriteBackCounter::with_redis(&name(), ring)).await;
    }
}

#[tokio::test]
async fn redis_counts_a_failing_sink_rejected_wait_for_the_next_flush() {
    if let Some(ring) = ring() {
        counts_a_failing_sink_rejected_wait_for_the_next_flush(WriteBackCounter::with_redis(
            &name(),
            ring,
        ))
        .await;
    }
}

/// The node that counted is gone (crashed: dropped without flushing); another node
/// flushes everything it had pushed.
#[tokio::test]
async fn redis_counts_outlive_the_node_that_counted_them() {
    let Some(ring) = ring() else { return };
    let name = name();
    let crashed = WriteBackCounter::with_redis(&name, Arc::clone(&ring));
    for _ in 0..42 {
        crashed.add("9", 1);
    }
    crashed.push().await.unwrap();
    // Counted after the last push: lost with the node (the crash bound).
    crashed.add("9", 1);
    drop(crashed);
    let survivor = WriteBackCounter::with_redis(&name, ring);
    let sink = Sink::default();
    survivor.flush(|batch| sink.apply(batch)).await.unwrap();
    assert_eq!(sink.total("9"), 42);
}

/// A flusher applies a batch and fails before deleting it (as if it died after the
/// commit); the next flusher re-sends the same batch id, which the sink recognises:
/// applied exactly once.
#[tokio::test]
async fn redis_a_batch_a_dead_flusher_left_is_applied_exactly_once() {
    let Some(ring) = ring() else { return };
    let name = name();
    let counter = WriteBackCounter::with_redis(&name, Arc::clone(&ring));
    counter.add("5", 10);
    counter.push().await.unwrap();
    let sink = Sink::default();
    // Applies the batch, then fails as if the process died before acknowledging it.
    let died = counter
        .flush(|batch| {
            let sink = &sink;
            async move {
                sink.apply(batch).await?;
                Err::<(), String>("crashed after the commit".to_owned())
            }
        })
        .await;
    assert!(died.is_err());
    assert_eq!(sink.total("5"), 10);
    counter.add("5", 1);
    counter.push().await.unwrap();
    // Another node, which takes over a batch as soon as nobody works on it.
    let next = WriteBackCounter::with_redis(&name, ring).with_takeover_after(Duration::ZERO);
    next.flush(|batch| sink.apply(batch)).await.unwrap();
    next.flush(|batch| sink.apply(batch)).await.unwrap();
    assert_eq!(
        sink.total("5"),
        11,
        "the left batch once, then the new count"
    );
}

/// While one flusher works on a batch, another does not take it (it would race the
/// first's commit); it takes over only once the first is presumed dead.
#[tokio::test]
async fn redis_a_batch_in_progress_is_not_taken_over_early() {
    let Some(ring) = ring() else { return };
    let name = name();
    let first = WriteBackCounter::with_redis(&name, Arc::clone(&ring));
    first.add("3", 4);
    first.push().await.unwrap();
    let second = WriteBackCounter::with_redis(&name, ring);
    let sink = Sink::default();
    first
        .flush(|batch| {
            let (second, sink) = (&second, &sink);
            async move {
                // Mid-flush, the other node finds nothing it may take.
                let taken = second.flush(|batch| sink.apply(batch)).await.unwrap();
                assert_eq!(taken, 0);
                sink.apply(batch).await
            }
        })
        .await
        .unwrap();
    assert_eq!(sink.total("3"), 4);
}

/// Counts Redis does not take stay in the process and reach the sink from there.
#[tokio::test]
async fn counts_an_unreachable_redis_did_not_take_are_flushed_from_the_process() {
    // Nothing listens on port 1 of loopback: every connect is refused at once.
    let ring = RedisRing::new(
        &["redis://127.0.0.1:1".to_owned()],
        Duration::from_millis(200),
    )
    .unwrap();
    let counter = WriteBackCounter::with_redis(&name(), Arc::new(ring));
    counter.add("4", 6);
    assert!(counter.push().await.is_err());
    let sink = Sink::default();
    let flushed = counter.flush(|batch| sink.apply(batch)).await;
    assert!(flushed.is_err(), "Redis still cannot be read");
    assert_eq!(
        sink.total("4"),
        6,
        "the process's counts were applied first"
    );
}
