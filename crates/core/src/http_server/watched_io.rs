//! The connection's socket as hyper sees it: reads are reported to the connection's
//! [`Activity`], and when hyper is done with it the socket is handed back to the
//! connection task instead of being closed, so that the task can linger on it.

use super::activity::Activity;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// A TCP stream that reports reads and is handed back, not closed, when dropped.
#[derive(Debug)]
pub(crate) struct WatchedIo {
    /// `Some` until dropped.
    stream: Option<TcpStream>,
    activity: Arc<Activity>,
    hand_back: Option<oneshot::Sender<TcpStream>>,
}

impl WatchedIo {
    pub(crate) fn new(
        stream: TcpStream,
        activity: Arc<Activity>,
        hand_back: oneshot::Sender<TcpStream>,
    ) -> Self {
        Self {
            stream: Some(stream),
            activity,
            hand_back: Some(hand_back),
        }
    }

    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        self.stream
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = this.stream()?.poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_read(Instant::now);
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stream()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stream()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream()?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream()?.poll_shutdown(cx)
    }
}

impl Drop for WatchedIo {
    fn drop(&mut self) {
        if let (Some(stream), Some(hand_back)) = (self.stream.take(), self.hand_back.take()) {
            // Nobody waiting (the task was cut): the stream is simply closed.
            let _ = hand_back.send(stream);
        }
    }
}
