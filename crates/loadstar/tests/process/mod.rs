//! Running real processes from tests: the `loadstar` binary with a clean environment,
//! its JSON log lines and waiting for one of them; a node that listens on HTTP; a
//! worker; a clock set off for one process (libfaketime); a private `redis-server` that
//! a test may kill.
#![allow(dead_code)] // each test crate uses a different part

use serde_json::{json, Value};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_loadstar");

pub fn temp_data_dir() -> PathBuf {
    std::env::temp_dir().join(format!("loadstar-cli-{:016x}", rand::random::<u64>()))
}

/// A `loadstar` command with a clean `LOADSTAR_` environment and cheap password hashing.
pub fn loadstar(args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command.args(args);
    with_clean_environment(command)
}

/// Like [`loadstar`], run through `sh` with the open-files limit (soft and hard) lowered
/// to `limit`: a process that cannot raise it, like one started from a tight shell.
pub fn loadstar_with_open_files_limit(limit: u64, args: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(BINARY)
        .args(args);
    with_clean_environment(command)
}

fn with_clean_environment(mut command: Command) -> Command {
    for (key, _) in std::env::vars() {
        if key.starts_with("LOADSTAR_") {
            command.env_remove(key);
        }
    }
    command
        .env("LOADSTAR_AUTH__ARGON2_MEMORY_KIB", "1024")
        .env("LOADSTAR_AUTH__ARGON2_ITERATIONS", "1");
    command
}

/// Lines of the child's stdout, delivered as they arrive.
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The first log line whose message starts with `prefix`, within `deadline`.
pub fn wait_for_log(lines: &mpsc::Receiver<String>, prefix: &str, deadline: Duration) -> Value {
    let until = Instant::now() + deadline;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line starting with {prefix:?} in time"));
        if let Ok(entry) = serde_json::from_str::<Value>(&line) {
            if entry["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(prefix))
            {
                return entry;
            }
        }
    }
}

/// Sends `signal` (`-KILL`, `-TERM`) to `child` and reaps it.
pub fn signal(child: &mut Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
}

/// A `loadstar` process serving HTTP (`api` or `serve`) on a free port; killed when
/// dropped.
pub struct Node {
    pub child: Child,
    pub url: String,
    /// Every line the node logged after it started listening.
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Node {
    /// Starts `loadstar <role> --listen 127.0.0.1:0` with `env` (JSON logs wanted) and
    /// waits until it listens.
    pub fn start<K: AsRef<str>, V: AsRef<str>>(role: &str, env: &[(K, V)]) -> Self {
        let mut command = loadstar(&[role, "--listen", "127.0.0.1:0"]);
        command.envs(
            env.iter()
                .map(|(key, value)| (key.as_ref(), value.as_ref())),
        );
        let StartedNode {
            mut node, lines, ..
        } = Self::start_command(command);
        node.logs = keep_lines(lines);
        node
    }

    /// Starts `command` (a serving role on `--listen 127.0.0.1:0`, JSON logs) and waits
    /// until it listens.
    pub fn start_command(mut command: Command) -> StartedNode {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = stdout_lines(&mut child);
        let until = Instant::now() + Duration::from_secs(30);
        let mut startup_log = Vec::new();
        let url = loop {
            let left = until.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the node did not log \"listening on\" in time"));
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if entry["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("listening on"))
            {
                break entry["url"].as_str().unwrap().to_owned();
            }
            startup_log.push(entry);
        };
        StartedNode {
            node: Self {
                child,
                url,
                logs: Default::default(),
            },
            startup_log,
            lines,
        }
    }

    pub fn signal(&mut self, name: &str) {
        signal(&mut self.child, name);
    }

    /// How many logged lines have a message starting with `prefix`.
    pub fn count_logs(&self, prefix: &str) -> usize {
        count_messages(&self.logs, prefix)
    }

    /// Lines logged at `level` (`WARN`, `ERROR`).
    pub fn logs_at(&self, level: &str) -> Vec<String> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|line| {
                serde_json::from_str::<Value>(line).is_ok_and(|entry| entry["level"] == level)
            })
            .cloned()
            .collect()
    }
}

/// A node just started with [`Node::start_command`].
pub struct StartedNode {
    pub node: Node,
    /// The JSON log lines written before "listening on".
    pub startup_log: Vec<Value>,
    /// The log lines from there on, for the test to read (they queue up unread without
    /// blocking the child).
    pub lines: mpsc::Receiver<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps draining `lines` into the returned list, so the child never blocks on a full
/// pipe and the test can read what it logged.
fn keep_lines(lines: mpsc::Receiver<String>) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = logs.clone();
    std::thread::spawn(move || {
        while let Ok(line) = lines.recv() {
            kept.lock().unwrap().push(line);
        }
    });
    logs
}

/// How many of `logs` have a message starting with `prefix`.
fn count_messages(logs: &std::sync::Mutex<Vec<String>>, prefix: &str) -> usize {
    logs.lock()
        .unwrap()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| {
            entry["message"]
                .as_str()
                .is_some_and(|message| message.starts_with(prefix))
        })
        .count()
}

/// A `loadstar worker` process, its log kept; killed when dropped.
pub struct Worker {
    pub child: Child,
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Worker {
    /// Starts `loadstar worker` with `env` (JSON logs wanted) and waits until its pools
    /// run.
    pub fn start<K: AsRef<str>, V: AsRef<str>>(env: &[(K, V)]) -> Self {
        let mut command = loadstar(&["worker"]);
        command.envs(
            env.iter()
                .map(|(key, value)| (key.as_ref(), value.as_ref())),
        );
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = stdout_lines(&mut child);
        wait_for_log(&lines, "worker pool started", Duration::from_secs(30));
        let logs = keep_lines(lines);
        Self { child, logs }
    }

    /// The process id, which the worker ids it leases jobs under contain.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines logged at `level` whose text contains `text`.
    pub fn logs_containing(&self, level: &str, text: &str) -> Vec<String> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(text))
            .filter(|line| {
                serde_json::from_str::<Value>(line).is_ok_and(|entry| entry["level"] == level)
            })
            .cloned()
            .collect()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment that sets a process's wall clock `offset` off the host's (`"+60s"`,
/// `"-60s"`), as Debian's `faketime` command would (libfaketime preloaded); `None` when
/// `faketime` is not installed. Setting the variables on the `loadstar` process itself,
/// rather than running it under the `faketime` wrapper, keeps the child's pid the
/// process's own (the wrapper forks and waits, so killing it would orphan the process).
/// The monotonic clock stays true: timers and timeouts are not what is being tested.
pub fn skewed_clock(offset: &str) -> Option<Vec<(String, String)>> {
    let output = Command::new("faketime")
        .args(["-f", offset, "env"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let set_by_faketime = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| *key == "LD_PRELOAD" || *key == "FAKETIME")
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect::<Vec<_>>();
    if set_by_faketime.len() != 2 {
        return None;
    }
    let mut env = set_by_faketime;
    env.push(("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()));
    Some(env)
}

/// A `redis-server` of the test's own, on a free port, keeping nothing on disk, so the
/// test can kill and restart it; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// `None` when no `redis-server` binary is on the PATH.
    pub fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self { child: None, port };
        server.restart().ok()?;
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the server: everything in it is gone, like a crashed cache node.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&mut child, "-KILL");
        }
    }

    /// Starts the server (again) on its port and waits until it answers PING.
    pub fn restart(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url()).unwrap();
        loop {
            let pong = client
                .get_connection()
                .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection));
            if pong.is_ok() {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(10)); // poll interval, bounded above
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub const ADMIN_EMAIL: &str = "ops@example.com";
pub const ADMIN_PASSWORD: &str = "ops password";
pub const BUYER_EMAIL: &str = "buyer@example.com";
pub const BUYER_PASSWORD: &str = "buyer password";

/// Creates the tests' administrator with `loadstar admin create` in `env`.
pub fn create_admin<I, K, V>(env: I)
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut admin = loadstar(&[
        "admin",
        "create",
        "--email",
        ADMIN_EMAIL,
        "--password",
        ADMIN_PASSWORD,
    ]);
    admin.envs(env);
    assert!(admin.output().unwrap().status.success());
}

/// Logs in through the node at `url`: the session (`token`, `userId`).
pub async fn login(http: &reqwest::Client, url: &str, email: &str, password: &str) -> Value {
    let response = http
        .post(format!("{url}/v1/sessions"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "login of {email}");
    response.json().await.unwrap()
}

/// The administrator's session token, logged in through `url`.
pub async fn admin_token(http: &reqwest::Client, url: &str) -> String {
    login(http, url, ADMIN_EMAIL, ADMIN_PASSWORD).await["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Signs the buyer up through `url`.
pub async fn sign_up_buyer(http: &reqwest::Client, url: &str) {
    let created = http
        .post(format!("{url}/v1/users"))
        .json(&json!({"email": BUYER_EMAIL, "password": BUYER_PASSWORD, "name": "Buyer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
}

/// Creates a product through `url` as the administrator: its id.
pub async fn create_product(
    http: &reqwest::Client,
    url: &str,
    admin_token: &str,
    sku: &str,
    stock: i64,
) -> String {
    let response = http
        .post(format!("{url}/v1/products"))
        .bearer_auth(admin_token)
        .json(&json!({"sku": sku, "name": "Mug", "priceCents": 990, "currency": "EUR", "stock": stock}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let product: Value = response.json().await.unwrap();
    product["id"].as_str().unwrap().to_owned()
}

/// The payment provider simulator in this test process, each charge taking `latency_ms`:
/// its base URL, and the token that stops it.
pub async fn start_payment_simulator(
    latency_ms: u64,
) -> (String, tokio_util::sync::CancellationToken) {
    let simulator = loadstar_sim::PaymentSimulator::build(&loadstar_sim::SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        latency_ms,
        ..loadstar_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let url = format!("http://{}", simulator.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(simulator.run_until_stopped(stop.clone()));
    (url, stop)
}

/// The payment simulator's counters (`GET /stats`) at `payments_url`.
pub async fn simulator_stats(http: &reqwest::Client, payments_url: &str) -> Value {
    http.get(format!("{payments_url}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A stocked shop and a logged-in customer, through the API at `url`: the administrator
/// (made beforehand with [`create_admin`]) creates product `sku` with `stock` units, the
/// buyer signs up and logs in. Returns the product id, the buyer's token and user id.
pub async fn stocked_shop_and_buyer(
    http: &reqwest::Client,
    url: &str,
    sku: &str,
    stock: i64,
) -> (String, String, String) {
    let admin = admin_token(http, url).await;
    let product = create_product(http, url, &admin, sku, stock).await;
    sign_up_buyer(http, url).await;
    let session = login(http, url, BUYER_EMAIL, BUYER_PASSWORD).await;
    (
        product,
        session["token"].as_str().unwrap().to_owned(),
        session["userId"].as_str().unwrap().to_owned(),
    )
}
