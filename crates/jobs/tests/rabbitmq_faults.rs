//! The RabbitMQ backend under broker and network faults: the connection is cut for real
//! by a TCP proxy between the backend and the broker (named by
//! `LOADSTAR_TEST_RABBITMQ_URL`), so nothing else sharing that broker is disturbed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use loadstar_core::test_support::{FaultProxy, ProxyMode};
use loadstar_core::IdGenerator;
use loadstar_jobs::{
    JobQueue, JobState, LeasedJob, ManualClock, NewJob, RabbitJobQueue, RabbitSettings, SqlJobQueue,
};
use loadstar_store::Database;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const LEASE: Duration = Duration::from_secs(30);

/// A loopback TCP proxy to the broker that can drop every connection and refuse new ones.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<tokio::sync::Mutex<JoinSet<()>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let (accept_up, accept_connections) = (Arc::clone(&up), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                accept_connections.lock().await.spawn(async move {
                    if let Ok(mut broker) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                    }
                });
            }
        });
        Self {
            addr,
            up,
            connections,
        }
    }

    /// Cuts every open connection and refuses new ones until [`Proxy::restore`].
    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.connections.lock().await.abort_all();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

struct Setup {
    proxy: Proxy,
    /// The broker itself, for proxies of other kinds.
    upstream: SocketAddr,
    db: Database,
    clock: Arc<ManualClock>,
    /// Shared by every instance: one deployment, several processes.
    settings: RabbitSettings,
}

async fn setup() -> Option<Setup> {
    let url = support::rabbitmq_url()?;
    let parsed = url::Url::parse(&url).unwrap();
    let upstream = format!(
        "{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5672)
    );
    let upstream: SocketAddr = tokio::net::lookup_host(upstream)
        .await
        .unwrap()
        .next()
        .unwrap();
    Some(Setup {
        proxy: Proxy::start(upstream).await,
        upstream,
        db: support::ledger_database().await,
        clock: Arc::new(ManualClock::new()),
        settings: support::test_settings(url),
    })
}

impl Setup {
    /// A backend instance (one per simulated process) reaching the broker through the
    /// proxy when `via_proxy`, directly otherwise.
    fn queue(&self, node: u16, via_proxy: bool) -> RabbitJobQueue {
        self.queue_through(node, via_proxy.then_some(self.proxy.addr))
    }

    /// A backend instance reaching the broker at `proxy` (directly when `None`).
    fn queue_through(&self, node: u16, proxy: Option<SocketAddr>) -> RabbitJobQueue {
        let mut url =
            url::Url::parse(&std::env::var("LOADSTAR_TEST_RABBITMQ_URL").unwrap()).unwrap();
        if let Some(proxy) = proxy {
            url.set_port(Some(proxy.port())).unwrap();
        }
        let ledger = SqlJobQueue::new(
            self.db.clone(),
            Arc::new(IdGenerator::new(node)),
            self.clock.clone(),
        );
        RabbitJobQueue::start(
            ledger,
            RabbitSettings {
                url: url.to_string(),
                ..self.settings.clone()
            },
        )
    }
}

/// Fetches until `n` jobs came; the deadline covers a reconnect's back-off.
async fn fetch_expecting(queue: &dyn JobQueue, worker: &str, n: usize) -> Vec<LeasedJob> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "expected {n} jobs, got {}",
            got.len()
        );
        let room = u32::try_from(n - got.len()).unwrap();
        got.extend(queue.fetch("default", worker, LEASE, room).await.unwrap());
    }
    assert_eq!(got.len(), n);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_while_the_broker_is_unreachable_is_delivered_when_it_returns() {
    let Some(setup) = setup().await else { return };
    setup.proxy.cut().await;
    let queue = setup.queue(1, true);

    let id = queue
        .enqueue(NewJob::new("default", "patient", b"p".to_vec()))
        .await
        .expect("enqueue needs only the database");
    assert!(queue
        .fetch("default", "w1", LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        queue.get(id).await.unwrap().unwrap().state,
        JobState::Available
    );

    setup.proxy.restore();
    let leased = fetch_expecting(&queue, "w1", 1).await;
    assert_eq!(leased[0].id, id);
    assert!(queue.complete(&leased[0]).await.unwrap());
    assert_eq!(
        queue.get(id).await.unwrap().unwrap().state,
        JobState::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_loses_no_job_and_runs_none_twice() {
    let Some(setup) = setup().await else { return };
    let queue = setup.queue(1, true);
    let mut ids = HashSet::new();
    for n in 0..20 {
        ids.insert(
            queue
                .enqueue(NewJob::new("default", format!("j{n}"), vec![]))
                .await
                .unwrap(),
        );
    }
    // Some done, some running, the rest waiting in the broker or in this process.
    let first = fetch_expecting(&queue, "w1", 8).await;
    for job in &first[..4] {
        assert!(queue.complete(job).await.unwrap());
    }
    setup.proxy.cut().await;
    for job in &first[4..] {
        // The ledger records the outcome; the ack to the lost connection goes nowhere.
        assert!(queue.complete(job).await.unwrap());
    }
    setup.proxy.restore();

    let mut completed: HashSet<_> = first.iter().map(|job| job.id).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed.len() < ids.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of 20 jobs ran",
            completed.len()
        );
        for job in queue.fetch("default", "w2", LEASE, 10).await.unwrap() {
            assert!(queue.complete(&job).await.unwrap());
            assert!(completed.insert(job.id), "job {} ran twice", job.id);
        }
    }
    assert_eq!(completed, ids);
    for id in ids {
        let job = queue.get(id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Completed);
        assert_eq!(job.attempts.len(), 1, "one delivery each");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_of_a_worker_that_lost_its_broker_goes_to_another_when_its_lease_expires() {
    let Some(setup) = setup().await else { return };
    let doomed = setup.queue(1, true);
    let survivor = setup.queue(2, false);
    let id = doomed
        .enqueue(NewJob::new("default", "orphan", vec![]))
        .await
        .unwrap();
    let held = fetch_expecting(&doomed, "doomed", 1).await.remove(0);

    // The doomed worker's connection dies: the broker hands its message to the survivor,
    // whose ledger check turns it away while the lease is still the doomed worker's.
    setup.proxy.cut().await;
    assert!(survivor
        .fetch("default", "survivor", LEASE, 10)
        .await
        .unwrap()
        .is_empty());

    setup.clock.advance(LEASE + Duration::from_secs(1));
    let taken = fetch_expecting(&survivor, "survivor", 1).await.remove(0);
    assert_eq!((taken.id, taken.attempt), (id, 2));
    assert!(!doomed.complete(&held).await.unwrap(), "the lease moved on");
    assert!(survivor.complete(&taken).await.unwrap());
    assert_eq!(
        survivor.get(id).await.unwrap().unwrap().state,
        JobState::Completed
    );
}

/// Runs `operation`, failing the test if it has not returned after `limit`: what a
/// worker would do forever if a broker call had no deadline.
async fn returns<T>(
    what: &str,
    limit: Duration,
    operation: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(limit, operation)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {} s", limit.as_secs()))
}

/// The network to the broker goes silent: no byte moves and nothing is closed, neither
/// the open connections nor new ones (a partition, a broker host that vanished). Then it
/// comes back for new connections only; the old ones stay silent for good. No call waits
/// on them past the operation deadline, the backend's own heartbeat gives them up, and
/// every job enqueued in between runs once, soon after the network is back (the goal
/// is 20 s; on lapin's defaults it took 140 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_network_stalls_no_worker_for_good() {
    let Some(setup) = setup().await else { return };
    let proxy = FaultProxy::start(setup.upstream).await;
    let queue = setup.queue_through(1, Some(proxy.address()));
    let hang_guard = Duration::from_secs(30);

    // Connected and consuming: one job done, one still running when the network fails.
    for n in 0..2 {
        queue
            .enqueue(NewJob::new("default", format!("before-{n}"), vec![]))
            .await
            .unwrap();
    }
    let before = fetch_expecting(&queue, "w1", 2).await;
    assert!(queue.complete(&before[0]).await.unwrap());

    proxy.set_mode(ProxyMode::Silent);
    let mut ids = HashSet::new();
    for n in 0..10 {
        let id = returns(
            "an enqueue",
            hang_guard,
            queue.enqueue(NewJob::new("default", format!("during-{n}"), vec![])),
        )
        .await
        .expect("enqueue needs only the database");
        ids.insert(id);
    }
    // The running job settles; its ack goes into the silence.
    assert!(
        returns("a complete", hang_guard, queue.complete(&before[1]))
            .await
            .unwrap()
    );
    // Workers keep asking while the relay's publish and confirm wait on the silence, time
    // out, and its reconnects hang in turn: every fetch returns.
    let mut ran = HashSet::new();
    for _ in 0..20 {
        let fetched = returns(
            "a fetch",
            hang_guard,
            queue.fetch("default", "w1", LEASE, 10),
        )
        .await;
        for job in fetched.unwrap_or_default() {
            assert!(queue.complete(&job).await.unwrap());
            assert!(ran.insert(job.id), "job {} ran twice", job.id);
        }
    }

    proxy.set_mode(ProxyMode::Stranded);
    let back = Instant::now();
    while ran.len() < ids.len() {
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "{} of {} jobs ran in the 20 s after the network came back",
            ran.len(),
            ids.len()
        );
        let fetched = returns(
            "a fetch",
            hang_guard,
            queue.fetch("default", "w2", LEASE, 10),
        )
        .await;
        for job in fetched.unwrap_or_default() {
            assert!(queue.complete(&job).await.unwrap());
            assert!(ran.insert(job.id), "job {} ran twice", job.id);
        }
    }
    assert_eq!(ran, ids);
    for job in before {
        let job = queue.get(job.id).await.unwrap().unwrap();
        assert_eq!((job.state, job.attempts.len()), (JobState::Completed, 1));
    }
    for id in ids {
        let job = queue.get(id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Completed);
        assert_eq!(job.attempts.len(), 1, "one delivery each");
    }
}
