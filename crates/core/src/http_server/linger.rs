//! Lingering close, as nginx does it: after answering a request whose body was not read
//! (a 413), keep reading and discarding what the client still sends, within bounds,
//! before closing.
//!
//! Closing a socket with unread bytes in it makes the kernel send a reset, and a reset
//! makes the client's kernel drop whatever it had received but not yet handed over, the
//! answer included. A client that writes its whole body before reading (Python's urllib,
//! `curl -d @file`) then sees "broken pipe" or "connection reset" instead of the 413. By
//! the time this runs hyper has written the answer and shut the write side (the client
//! sees the end of the answer); reading on until the client closes lets it finish
//! writing and read the answer.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The bounds of one lingering close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LingerLimits {
    /// Longest time spent lingering on one connection.
    pub total: Duration,
    /// Stop when the client sends nothing for this long.
    pub read_timeout: Duration,
    /// Stop after discarding this many bytes.
    pub max_bytes: u64,
}

/// How a lingering close ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lingered {
    /// The client closed its side: it has read the answer.
    ClientClosed { discarded: u64 },
    /// The client sent nothing for `read_timeout`.
    ClientSilent { discarded: u64 },
    /// `total` passed.
    TimeUp { discarded: u64 },
    /// More than `max_bytes` arrived.
    TooMuch { discarded: u64 },
    /// Reading failed (the client reset the connection).
    Failed { discarded: u64 },
}

const BUFFER_BYTES: usize = 16 * 1024;

/// Shuts the write side of `stream` (if hyper has not), then reads and discards until
/// the client closes or a bound of `limits` is reached. The caller closes the stream.
pub(crate) async fn linger<S>(stream: &mut S, limits: &LingerLimits) -> Lingered
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Already shut by hyper on the usual path; failing again changes nothing.
    let _ = stream.shutdown().await;
    let mut discarded = 0u64;
    let mut buffer = vec![0u8; BUFFER_BYTES];
    let until = tokio::time::Instant::now() + limits.total;
    loop {
        let read_until = until.min(tokio::time::Instant::now() + limits.read_timeout);
        match tokio::time::timeout_at(read_until, stream.read(&mut buffer)).await {
            Ok(Ok(0)) => return Lingered::ClientClosed { discarded },
            Ok(Ok(read)) => {
                discarded += read as u64;
                if discarded > limits.max_bytes {
                    return Lingered::TooMuch { discarded };
                }
            }
            Ok(Err(_)) => return Lingered::Failed { discarded },
            Err(_) if read_until >= until => return Lingered::TimeUp { discarded },
            Err(_) => return Lingered::ClientSilent { discarded },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn limits(total_ms: u64, read_timeout_ms: u64, max_bytes: u64) -> LingerLimits {
        LingerLimits {
            total: Duration::from_millis(total_ms),
            read_timeout: Duration::from_millis(read_timeout_ms),
            max_bytes,
        }
    }

    #[tokio::test]
    async fn reads_what_the_client_still_sends_until_it_closes() {
        let (mut server, mut client) = duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            client.write_all(&[7u8; 100_000]).await.unwrap();
            let mut answer = Vec::new();
            // The server's side is shut: the client reads to the end, then closes.
            client.read_to_end(&mut answer).await.unwrap();
        });
        let lingered = linger(&mut server, &limits(60_000, 60_000, 1 << 20)).await;
        writer.await.unwrap();
        assert_eq!(lingered, Lingered::ClientClosed { discarded: 100_000 });
    }

    #[tokio::test]
    async fn stops_when_the_client_goes_silent() {
        let (mut server, _client) = duplex(1024);
        let lingered = linger(&mut server, &limits(60_000, 50, 1 << 20)).await;
        assert_eq!(lingered, Lingered::ClientSilent { discarded: 0 });
    }

    #[tokio::test]
    async fn stops_when_the_time_is_up_even_if_the_client_keeps_sending() {
        let (mut server, mut client) = duplex(1024);
        let trickle = tokio::spawn(async move {
            // A byte every 10 ms: never silent for the 60 s read timeout.
            while client.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let lingered = linger(&mut server, &limits(200, 60_000, 1 << 20)).await;
        assert!(
            matches!(lingered, Lingered::TimeUp { discarded } if discarded > 0),
            "{lingered:?}"
        );
        drop(server);
        trickle.await.unwrap();
    }

    #[tokio::test]
    async fn stops_after_the_byte_bound() {
        let (mut server, mut client) = duplex(64 * 1024);
        let flood =
            tokio::spawn(async move { while client.write_all(&[0u8; 4096]).await.is_ok() {} });
        let lingered = linger(&mut server, &limits(60_000, 60_000, 100_000)).await;
        assert!(
            matches!(lingered, Lingered::TooMuch { discarded } if discarded > 100_000),
            "{lingered:?}"
        );
        drop(server);
        flood.await.unwrap();
    }
}
