//! Graceful shutdown: cancelling the shutdown token stops new connections, lets requests
//! already being served finish, and bounds the wait by `server.shutdown_grace_secs`.
//!
//! The slow client is a raw TCP stream so the test controls every byte: it sends the
//! head with `Expect: 100-continue` and waits for the server's `100 Continue`, which hyper
//! sends only when the handler starts reading the body. That is proof, without sleeping,
//! that the request is in flight before shutdown begins.

use crate::harness::{spawn_with_config, TestApp, TestUser};
use crate::on_every_backend;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound on any single step, so a regression fails instead of hanging.
const STEP: Duration = Duration::from_secs(20);

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn socket_address(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// A `POST /v1/products` whose head is sent and whose handler is already waiting for
/// the body. Returns the stream and the body still to send.
async fn start_slow_product_create(
    app: &TestApp,
    admin: &TestUser,
    sku: &str,
) -> (TcpStream, Vec<u8>) {
    let body = json!({
        "sku": sku, "name": "Slow Upload", "description": "sent in two halves",
        "priceCents": 4_200, "currency": "EUR", "stock": 3
    })
    .to_string()
    .into_bytes();
    let address = socket_address(app);
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/products HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        admin.token,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut interim = vec![0u8; CONTINUE.len()];
    tokio::time::timeout(STEP, stream.read_exact(&mut interim))
        .await
        .expect("the handler starts reading the body")
        .unwrap();
    assert_eq!(interim, CONTINUE, "{}", String::from_utf8_lossy(&interim));

    let (first_half, rest) = body.split_at(body.len() / 2);
    stream.write_all(first_half).await.unwrap();
    stream.flush().await.unwrap();
    (stream, rest.to_vec())
}

/// Reads a whole HTTP/1.1 response up to the server closing the connection.
async fn read_response_until_close(stream: &mut TcpStream) -> (StatusCode, String, Value) {
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut raw))
        .await
        .expect("the server closes the connection after the response")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (
        StatusCode::from_u16(status).unwrap(),
        head.to_ascii_lowercase(),
        body,
    )
}

async fn graceful_shutdown_lets_a_request_in_flight_finish(mut app: TestApp) {
    let admin = app.admin().await;
    let (mut stream, rest) = start_slow_product_create(&app, &admin, "drained-1").await;

    // Shutdown begins while the server holds half of the body.
    app.shutdown.cancel();

    stream.write_all(&rest).await.unwrap();
    let (status, head, body) = read_response_until_close(&mut stream).await;
    assert_eq!(status, StatusCode::CREATED, "{head}\n{body}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body["sku"], "drained-1");
    assert_eq!(body["stock"], 3);
    let product_id = body["id"].as_str().unwrap().to_owned();

    // With the last request answered, the server stops by itself, cleanly.
    let stopped = tokio::time::timeout(STEP, &mut app.server)
        .await
        .expect("the server stops once drained")
        .expect("the server task did not panic");
    assert!(stopped.is_ok(), "{stopped:?}");

    // Nobody is listening any more.
    let refused = TcpStream::connect(socket_address(&app)).await;
    assert!(refused.is_err(), "new connections must be refused");
    assert!(app.client.get(app.url("/healthz")).send().await.is_err());

    // The drained write was committed: a new node on the same database serves it.
    let successor = spawn_with_config(app.config.clone(), app.backend).await;
    let response = successor.get(&format!("/v1/products/{product_id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["sku"], "drained-1");
}

async fn shutdown_with_nothing_in_flight_stops_at_once(mut app: TestApp) {
    let admin = app.admin().await;
    // Keep-alive connections from earlier requests are idle and must not hold it up.
    app.product(&admin, 100, 1).await;
    let started = Instant::now();
    app.shutdown.cancel();
    let stopped = tokio::time::timeout(STEP, &mut app.server)
        .await
        .expect("the server stops")
        .expect("the server task did not panic");
    assert!(stopped.is_ok(), "{stopped:?}");
    assert!(
        started.elapsed() < Duration::from_secs(app.config.server.shutdown_grace_secs),
        "idle connections must not make shutdown wait out the grace period"
    );
    assert!(TcpStream::connect(socket_address(&app)).await.is_err());
}

async fn a_request_stalled_past_the_grace_period_is_dropped(mut app: TestApp) {
    let admin = app.admin().await;
    // Hand the database to a node whose grace period is one second.
    app.shutdown.cancel();
    (&mut app.server).await.unwrap().unwrap();
    let mut config = app.config.clone();
    config.server.shutdown_grace_secs = 1;
    let mut impatient = spawn_with_config(config, app.backend).await;

    let (mut stream, _rest) = start_slow_product_create(&impatient, &admin, "stalled-1").await;
    let started = Instant::now();
    impatient.shutdown.cancel();
    let stopped = tokio::time::timeout(STEP, &mut impatient.server)
        .await
        .expect("the grace period bounds the shutdown")
        .expect("the server task did not panic");
    assert!(stopped.is_ok(), "{stopped:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));

    // The stalled client is cut off without an answer, and nothing was written.
    let mut raw = Vec::new();
    let read = tokio::time::timeout(STEP, stream.read_to_end(&mut raw))
        .await
        .expect("the connection was closed");
    assert!(
        read.is_err() || raw.is_empty(),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let successor = spawn_with_config(app.config.clone(), app.backend).await;
    let page: Value = successor.get("/v1/products").await.json().await.unwrap();
    assert_eq!(page["items"], json!([]));
}

on_every_backend!(
    graceful_shutdown_lets_a_request_in_flight_finish,
    shutdown_with_nothing_in_flight_stops_at_once,
    a_request_stalled_past_the_grace_period_is_dropped,
);
