//! Connections that do not behave, against the real binary: clients that open a
//! connection and send nothing, or a header byte now and then, or keep an idle
//! keep-alive connection; and a process with too few open files for all of them. The
//! server must close what it cannot use and keep serving everyone else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use process::{loadstar, loadstar_with_open_files_limit, temp_data_dir, Node, StartedNode};
use serde_json::Value;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_READ_TIMEOUT_MS: &str = "1500";
const KEEPALIVE_TIMEOUT_MS: &str = "2500";
/// Generous bound on anything the server must do, so a regression fails instead of
/// hanging; the timeouts under test are a few seconds.
const BOUND: Duration = Duration::from_secs(40);

/// `loadstar serve` on a fresh data directory with short connection timeouts.
fn serve(command: fn(&[&str]) -> Command) -> StartedNode {
    let data_dir = temp_data_dir();
    let mut command = command(&["serve", "--listen", "127.0.0.1:0"]);
    command
        .env("LOADSTAR_DATA_DIR", &data_dir)
        .env("LOADSTAR_LOG__FORMAT", "json")
        .env(
            "LOADSTAR_SERVER__HEADER_READ_TIMEOUT_MS",
            HEADER_READ_TIMEOUT_MS,
        )
        .env(
            "LOADSTAR_SERVER__KEEPALIVE_TIMEOUT_MS",
            KEEPALIVE_TIMEOUT_MS,
        );
    Node::start_command(command)
}

fn socket_address(node: &Node) -> String {
    node.url.trim_start_matches("http://").to_owned()
}

/// How a connection the test held open ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    ClosedByServer,
    StillOpen,
}

/// Waits for the server to close `stream` (end of stream or reset), up to [`BOUND`].
async fn closed_by_server(mut stream: TcpStream) -> Ending {
    let mut buffer = [0u8; 1024];
    let until = tokio::time::Instant::now() + BOUND;
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buffer)).await {
            Err(_) => return Ending::StillOpen,
            Ok(Ok(0) | Err(_)) => return Ending::ClosedByServer,
            // An answer would be wrong too, but the closing is what is counted here.
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends a request line, then one byte of an endless header every second.
async fn slow_header_connection(mut stream: TcpStream) -> Ending {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nx-slow: ")
        .await
        .unwrap();
    let until = tokio::time::Instant::now() + BOUND;
    let mut buffer = [0u8; 1024];
    while tokio::time::Instant::now() < until {
        // The pace of this client is what is under test, not a wait for work.
        let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            return Ending::ClosedByServer;
        }
        if stream.write_all(b"a").await.is_err() {
            return Ending::ClosedByServer;
        }
    }
    Ending::StillOpen
}

/// `count` connections of each kind, opened before this returns, each watched by a task
/// that reports how it ended.
async fn hold_slow_and_silent(address: &str, count: usize) -> Vec<tokio::task::JoinHandle<Ending>> {
    let mut held = Vec::new();
    for _ in 0..count {
        let silent = TcpStream::connect(address).await.unwrap();
        held.push(tokio::spawn(closed_by_server(silent)));
        let slow = TcpStream::connect(address).await.unwrap();
        held.push(tokio::spawn(slow_header_connection(slow)));
    }
    held
}

/// The connections, silent or slow, that the server left open.
async fn still_open(held: Vec<tokio::task::JoinHandle<Ending>>) -> Vec<&'static str> {
    let mut still_open = Vec::new();
    for (index, connection) in held.into_iter().enumerate() {
        if connection.await.unwrap() == Ending::StillOpen {
            still_open.push(if index % 2 == 0 { "silent" } else { "slow" });
        }
    }
    still_open
}

/// A client that opens a new connection for every request.
fn fresh_connection_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(BOUND)
        .build()
        .unwrap()
}

/// The log line saying which open-files limit the process runs with.
fn open_files_log(started: &StartedNode) -> &Value {
    started
        .startup_log
        .iter()
        .find(|entry| {
            entry["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("open files limit"))
        })
        .unwrap_or_else(|| panic!("no open files log line in {:#?}", started.startup_log))
}

/// Log lines whose message starts with `prefix`, among those that arrive until `until`.
fn logged_until(lines: &mpsc::Receiver<String>, prefix: &str, until: Instant) -> Vec<Value> {
    let mut found = Vec::new();
    while let Ok(line) = lines.recv_timeout(until.saturating_duration_since(Instant::now())) {
        if let Ok(entry) = serde_json::from_str::<Value>(&line) {
            if entry["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(prefix))
            {
                found.push(entry);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_silent_connections_are_closed_after_the_header_timeout_while_others_are_served() {
    let started = serve(loadstar);
    let node = &started.node;
    let held = hold_slow_and_silent(&socket_address(node), 200).await;

    // Meanwhile, everyone else is served, each on a new connection.
    let client = fresh_connection_client();
    for _ in 0..20 {
        let response = client
            .get(format!("{}/healthz", node.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    let still_open = still_open(held).await;
    assert!(
        still_open.is_empty(),
        "{} of 400 slow or silent connections were still open after {BOUND:?} \
         (header read timeout {HEADER_READ_TIMEOUT_MS} ms): {still_open:?}",
        still_open.len()
    );

    let limits = open_files_log(&started);
    assert_eq!(
        limits["soft"], limits["hard"],
        "the soft open-files limit is raised to the hard one: {limits}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout() {
    let started = serve(loadstar);
    let address = socket_address(&started.node);
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nhost: {address}\r\n\r\n");
    // Two requests on one connection: it is kept alive between them.
    for _ in 0..2 {
        stream.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("a content-length");
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.unwrap();
    }
    assert_eq!(
        closed_by_server(stream).await,
        Ending::ClosedByServer,
        "an idle keep-alive connection stayed open for {BOUND:?} \
         (keep-alive timeout {KEEPALIVE_TIMEOUT_MS} ms)"
    );
}

/// Reads up to the end of a response head.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(BOUND, stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .unwrap();
        assert_eq!(read, 1, "the connection closed mid-head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_open_files_the_server_says_so_rarely_and_serves_again_once_slow_clients_are_cut() {
    const OPEN_FILES: u64 = 256;
    let started = serve(|args| loadstar_with_open_files_limit(OPEN_FILES, args));
    let node = &started.node;

    // More connections than the process has files for: accepting fails until the
    // header timeout frees some.
    let began = Instant::now();
    let held = hold_slow_and_silent(&socket_address(node), 200).await;
    let response = fresh_connection_client()
        .get(format!("{}/healthz", node.url))
        .send()
        .await
        .expect("a normal client is served once the slow ones are cut");
    assert_eq!(response.status(), 200);
    let still_open = still_open(held).await;
    assert!(
        still_open.is_empty(),
        "{} of 400 connections still open: {still_open:?}",
        still_open.len()
    );

    let until = Instant::now() + Duration::from_secs(2);
    let complaints = logged_until(&started.lines, "cannot accept connections", until);
    let seconds = began.elapsed().as_secs() + 1;
    assert!(
        !complaints.is_empty(),
        "running out of open files is logged"
    );
    let advice = complaints[0]["message"].as_str().unwrap();
    assert!(advice.contains("ulimit -n"), "{advice}");
    let limits = open_files_log(&started);
    assert_eq!(limits["soft"], OPEN_FILES, "{limits}");
    assert_eq!(limits["hard"], OPEN_FILES, "{limits}");
    assert!(
        complaints.len() as u64 <= seconds,
        "{} complaints in {seconds} s: at most one a second",
        complaints.len()
    );
}
