//! The listener under clients that do not play along: an oversized body written whole
//! before the client reads anything still gets its 413 (lingering close).
//!
//! The client is a raw TCP stream that behaves like Python's urllib or `curl -d @big`:
//! it writes the head and the whole body, and only then reads. A server that closes while
//! such a client still writes makes its kernel answer the rest with a reset, and the
//! client sees "broken pipe" or "connection reset" instead of the 413.

use crate::harness::{spawn_app, Backend, TestApp};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const CLIENTS: usize = 20;
const BODY_BYTES: usize = 2 * 1024 * 1024;
const CLIENT_SEND_BUFFER_BYTES: u32 = 64 * 1024;
/// Generous bound on one client's whole exchange, so a regression fails instead of hanging.
const EXCHANGE: Duration = Duration::from_secs(60);

/// Writes a 2 MiB JSON body to `POST /v1/users` and then reads the answer to its end:
/// the status and the body, or what went wrong.
async fn post_oversized_body_then_read(address: String) -> Result<(u16, String, Value), String> {
    let socket = TcpSocket::new_v4().map_err(|error| format!("socket: {error}"))?;
    // Bytes in flight are bounded on a real network; on loopback a large send buffer
    // would swallow the whole body before the server answers, hiding the problem.
    socket
        .set_send_buffer_size(CLIENT_SEND_BUFFER_BYTES)
        .map_err(|error| format!("send buffer: {error}"))?;
    let mut stream = socket
        .connect(
            address
                .parse()
                .map_err(|error| format!("{address}: {error}"))?,
        )
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let head = format!(
        "POST /v1/users HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         content-length: {BODY_BYTES}\r\n\r\n"
    );
    let mut body = vec![b' '; BODY_BYTES];
    body[0] = b'{';
    body[BODY_BYTES - 1] = b'}';
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|error| format!("writing the head: {error}"))?;
    stream
        .write_all(&body)
        .await
        .map_err(|error| format!("writing the body: {error}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|error| format!("reading the answer: {error} (after {} bytes)", raw.len()))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete answer: {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line: {head:?}"))?;
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    Ok((status, head.to_ascii_lowercase(), body))
}

async fn clients_writing_a_whole_oversized_body_before_reading_all_get_their_413(app: TestApp) {
    let address = app.address.trim_start_matches("http://").to_owned();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let address = address.clone();
            tokio::spawn(async move {
                tokio::time::timeout(EXCHANGE, post_oversized_body_then_read(address))
                    .await
                    .unwrap_or_else(|_| Err("no answer in time".to_owned()))
            })
        })
        .collect();
    let mut failures = Vec::new();
    for client in clients {
        match client.await.unwrap() {
            Ok((413, head, problem)) => {
                assert!(head.contains("application/problem+json"), "{head}");
                assert_eq!(problem["type"], "urn:loadstar:problem:payload-too-large");
                assert_eq!(problem["status"], 413);
            }
            Ok((status, head, _)) => failures.push(format!("status {status}: {head}")),
            Err(error) => failures.push(error),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} clients did not read the 413: {failures:#?}",
        failures.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_clients_writing_a_whole_oversized_body_before_reading_all_get_their_413() {
    // The listener, not the database, is under test: one backend is enough.
    let app = spawn_app(Backend::Sqlite)
        .await
        .expect("sqlite is always available");
    clients_writing_a_whole_oversized_body_before_reading_all_get_their_413(app).await;
}
