//! The shared listener with a trivial service, over real sockets: the timeouts hyper
//! alone would get wrong (an idle keep-alive connection is not a slow header) and HTTP/2
//! idleness.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use loadstar_core::http_server::{self, ConnectionLimits, LingerLimits, RequestBody, Stopped};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Generous bound on anything the server must do, so a regression fails, not hangs.
const BOUND: Duration = Duration::from_secs(30);

struct Server {
    address: SocketAddr,
    shutdown: CancellationToken,
    stopped: tokio::task::JoinHandle<Stopped>,
}

fn limits(header_read_timeout: Duration, keepalive_timeout: Duration) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout,
        keepalive_timeout,
        linger: LingerLimits {
            total: Duration::from_secs(5),
            read_timeout: Duration::from_secs(1),
            max_bytes: 1 << 20,
        },
    }
}

/// Serves "ok" to every request on a free port.
fn start(limits: ConnectionLimits) -> Server {
    let listener = http_server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = listener.local_addr().unwrap();
    let service = tower::service_fn(|_request: Request<RequestBody>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let shutdown = CancellationToken::new();
    let stopped = tokio::spawn(http_server::serve(
        listener,
        service,
        limits,
        shutdown.clone(),
        Duration::from_secs(5),
    ));
    Server {
        address,
        shutdown,
        stopped,
    }
}

/// Sends one HTTP/1.1 GET on `stream` and reads the answer: its status line.
async fn get(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    // "ok" with a content-length: the answer ends with the body.
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.ends_with(b"\r\n\r\nok") {
        let read = tokio::time::timeout(BOUND, stream.read(&mut buffer))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(read > 0, "closed mid-answer: {answer:?}");
        answer.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_keep_alive_connection_idle_longer_than_the_header_timeout_is_kept() {
    let server = start(limits(Duration::from_millis(100), Duration::from_secs(60)));
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    assert_eq!(get(&mut stream).await, "HTTP/1.1 200 OK");
    // Idle for many header timeouts, far from the keep-alive timeout: hyper's own header
    // timer, which starts when a response ends, would have cut the connection by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(get(&mut stream).await, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn a_head_trickled_a_byte_at_a_time_is_cut_at_the_header_timeout() {
    let server = start(limits(Duration::from_millis(300), Duration::from_secs(60)));
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nx-slow: ")
        .await
        .unwrap();
    let cut = tokio::time::timeout(BOUND, async {
        let mut buffer = [0u8; 64];
        loop {
            if stream.write_all(b"a").await.is_err() {
                return;
            }
            // The client's pace, not a wait for work.
            let read =
                tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buffer)).await;
            if let Ok(Ok(0) | Err(_)) = read {
                return;
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "a trickling client kept its connection");
}

#[tokio::test]
async fn an_idle_http2_connection_is_sent_away_after_the_keepalive_timeout() {
    let server = start(limits(Duration::from_secs(10), Duration::from_millis(300)));
    let stream = TcpStream::connect(server.address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(
            Request::get(format!("http://{}/", server.address))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "ok"
    );
    // The client keeps the connection and sends nothing more: the server says goodbye
    // (GOAWAY) and the connection ends.
    let ended = tokio::time::timeout(BOUND, connection).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection stayed open");
}

#[tokio::test]
async fn shutdown_closes_the_listener_and_idle_connections_at_once() {
    let server = start(limits(Duration::from_secs(10), Duration::from_secs(60)));
    let mut idle = TcpStream::connect(server.address).await.unwrap();
    assert_eq!(get(&mut idle).await, "HTTP/1.1 200 OK");
    server.shutdown.cancel();
    let stopped = tokio::time::timeout(BOUND, server.stopped)
        .await
        .expect("the server drains at once")
        .unwrap();
    assert_eq!(stopped, Stopped::Drained);
    assert!(TcpStream::connect(server.address).await.is_err());
    let mut rest = Vec::new();
    let read = idle.read_to_end(&mut rest).await;
    assert!(read.is_err() || rest.is_empty(), "{rest:?}");
}
