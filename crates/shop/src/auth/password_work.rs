//! The bound on password work: a few Argon2 computations at a time, each in a memory area
//! allocated once and reused.
//!
//! An Argon2id computation holds its memory cost (19 MiB by default) for its whole run, so
//! the number of computations at once decides the process' memory. With one blocking task
//! per request and no bound, 200 concurrent wrong-password logins took the RSS of `serve`
//! from 48 MB to 1.4 GB, and the allocator kept most of it afterwards
//! (docs/performance.md). Here at most `slots` computations run at once, each with one of
//! at most `slots` buffers; up to `queue` more requests wait at most `queue_wait` for a
//! slot; a request beyond that is refused at once with [`ShopError::Overloaded`] (503 with
//! `Retry-After`), which costs the server nothing.
//!
//! Throttling per account and per address is the edge's job; this bound is what keeps the
//! node standing whatever arrives.

use crate::error::ShopError;
use argon2::Block;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a client refused for lack of a slot is told to wait before it retries.
pub const RETRY_AFTER_SECS: u64 = 1;

/// How much password work may run and wait at once.
#[derive(Debug, Clone, Copy)]
pub struct PasswordWorkLimits {
    /// Computations at once; each holds one memory buffer.
    pub slots: usize,
    /// Requests that may wait for a slot.
    pub queue: usize,
    /// Longest wait for a slot.
    pub queue_wait: Duration,
}

impl PasswordWorkLimits {
    /// `slots` 0 means one per core: more computations than cores only share the CPU
    /// (each takes longer) while each still holds its memory.
    pub fn new(slots: usize, queue: usize, queue_wait: Duration) -> Self {
        let slots = if slots == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            slots
        };
        Self {
            slots,
            queue,
            queue_wait,
        }
    }
}

/// Runs password computations on the blocking pool, at most `slots` at once, each with a
/// reused memory buffer. Cheap to clone; clones share the bound.
#[derive(Clone)]
pub struct PasswordWork {
    limits: PasswordWorkLimits,
    slots: Arc<Semaphore>,
    /// Buffers not in use. A slot holder takes one (or makes one, while fewer than `slots`
    /// exist) and puts it back when done, so at most `slots` buffers ever exist.
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
    waiting: Arc<AtomicUsize>,
    buffers_made: Arc<AtomicUsize>,
}

impl PasswordWork {
    pub fn new(limits: PasswordWorkLimits) -> Self {
        Self {
            limits,
            slots: Arc::new(Semaphore::new(limits.slots.max(1))),
            buffers: Arc::new(Mutex::new(Vec::new())),
            waiting: Arc::new(AtomicUsize::new(0)),
            buffers_made: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Gives a buffer made outside the pool (e.g. for the decoy hash at start) to the pool,
    /// so the first computation need not allocate one.
    pub fn donate(&self, buffer: Vec<Block>) {
        let mut buffers = self.buffers.lock().unwrap_or_else(PoisonError::into_inner);
        if self.buffers_made.load(Ordering::Relaxed) < self.limits.slots {
            self.buffers_made.fetch_add(1, Ordering::Relaxed);
            buffers.push(buffer);
        }
    }

    /// How many memory buffers exist (in use or idle): never more than the slots.
    pub fn buffers_made(&self) -> usize {
        self.buffers_made.load(Ordering::Relaxed)
    }

    /// Runs `work` on the blocking pool with a memory buffer once a slot is free.
    /// [`ShopError::Overloaded`] at once when `queue` requests already wait, or after
    /// `queue_wait` without a slot. The slot and buffer stay taken until `work` returns,
    /// even when the caller stops waiting (a client that hangs up frees nothing early, so
    /// the bound holds).
    pub async fn run<T, F>(&self, work: F) -> Result<T, ShopError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    {
        let permit = self.acquire().await?;
        let buffer = self.take_buffer();
        let work_pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut buffer = buffer;
            let result = work(&mut buffer);
            work_pool.put_back(buffer, permit);
            result
        })
        .await
        .map_err(|error| ShopError::Internal(format!("password work task: {error}")))
    }

    async fn acquire(&self) -> Result<OwnedSemaphorePermit, ShopError> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(permit);
        }
        let waiting = WaitingGuard::enter(&self.waiting);
        if waiting.position >= self.limits.queue {
            metrics::counter!("password_work_rejected_total", "reason" => "queue_full")
                .increment(1);
            return Err(overloaded());
        }
        match tokio::time::timeout(
            self.limits.queue_wait,
            Arc::clone(&self.slots).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(ShopError::Internal(format!("password work: {closed}"))),
            Err(_elapsed) => {
                metrics::counter!("password_work_rejected_total", "reason" => "wait_timeout")
                    .increment(1);
                Err(overloaded())
            }
        }
    }

    fn take_buffer(&self) -> Vec<Block> {
        let idle = self
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        idle.unwrap_or_else(|| {
            // Holding a slot with no idle buffer means fewer than `slots` exist: make one,
            // empty; the work sizes it to its parameters (allocated once, then reused).
            self.buffers_made.fetch_add(1, Ordering::Relaxed);
            Vec::new()
        })
    }

    fn put_back(&self, buffer: Vec<Block>, permit: OwnedSemaphorePermit) {
        self.buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer);
        drop(permit);
    }
}

fn overloaded() -> ShopError {
    ShopError::Overloaded {
        retry_after_secs: RETRY_AFTER_SECS,
    }
}

/// Counts a request among the waiting for as long as it waits.
struct WaitingGuard<'a> {
    counter: &'a AtomicUsize,
    /// How many were waiting before this one.
    position: usize,
}

impl<'a> WaitingGuard<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        let position = counter.fetch_add(1, Ordering::AcqRel);
        Self { counter, position }
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(slots: usize, queue: usize, wait_ms: u64) -> PasswordWorkLimits {
        PasswordWorkLimits::new(slots, queue, Duration::from_millis(wait_ms))
    }

    /// Occupies every slot until the returned sender is dropped or sent to.
    async fn occupy_all(work: &PasswordWork) -> Vec<std::sync::mpsc::Sender<()>> {
        let mut releases = Vec::new();
        for _ in 0..work.limits.slots {
            let (release, hold) = std::sync::mpsc::channel::<()>();
            let (started_tx, started) = tokio::sync::oneshot::channel();
            let pool = work.clone();
            tokio::spawn(async move {
                pool.run(move |_| {
                    let _ = started_tx.send(());
                    let _ = hold.recv();
                })
                .await
            });
            started.await.unwrap();
            releases.push(release);
        }
        releases
    }

    #[tokio::test]
    async fn zero_slots_means_one_per_core() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(limits(0, 1, 1).slots, cores);
        assert_eq!(limits(3, 1, 1).slots, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_every_slot_busy_and_no_queue_a_request_is_refused_at_once() {
        let work = PasswordWork::new(limits(2, 0, 60_000));
        let releases = occupy_all(&work).await;
        // A 60 s queue wait: only an immediate refusal lets this finish.
        let refused = tokio::time::timeout(Duration::from_secs(30), work.run(|_| ()))
            .await
            .expect("refused at once, not after waiting");
        assert!(
            matches!(
                refused,
                Err(ShopError::Overloaded {
                    retry_after_secs: RETRY_AFTER_SECS
                })
            ),
            "{refused:?}"
        );
        drop(releases);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_request_runs_when_a_slot_frees_and_one_past_the_queue_is_refused() {
        let work = PasswordWork::new(limits(1, 1, 60_000));
        let mut releases = occupy_all(&work).await;
        let queued = tokio::spawn({
            let work = work.clone();
            async move { work.run(|_| 7).await }
        });
        loadstar_core::test_support::poll_until(
            "one request waits",
            Duration::from_secs(10),
            || {
                let waiting = work.waiting.load(Ordering::Acquire);
                async move { waiting == 1 }
            },
        )
        .await;
        let refused = work.run(|_| 8).await;
        assert!(
            matches!(refused, Err(ShopError::Overloaded { .. })),
            "{refused:?}"
        );
        releases.pop().unwrap().send(()).unwrap();
        assert_eq!(queued.await.unwrap().unwrap(), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_that_waits_too_long_is_refused() {
        let work = PasswordWork::new(limits(1, 4, 10));
        let releases = occupy_all(&work).await;
        let refused = work.run(|_| ()).await;
        assert!(
            matches!(refused, Err(ShopError::Overloaded { .. })),
            "{refused:?}"
        );
        drop(releases);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buffers_are_made_once_per_slot_and_reused() {
        let work = PasswordWork::new(limits(2, 1_000, 60_000));
        let runs: Vec<_> = (0..50)
            .map(|_| {
                let work = work.clone();
                tokio::spawn(async move {
                    work.run(|buffer| {
                        if buffer.is_empty() {
                            buffer.resize(8, Block::default());
                        }
                        buffer.len()
                    })
                    .await
                })
            })
            .collect();
        for run in runs {
            assert_eq!(run.await.unwrap().unwrap(), 8);
        }
        assert!(work.buffers_made() <= 2, "{}", work.buffers_made());
    }
}
