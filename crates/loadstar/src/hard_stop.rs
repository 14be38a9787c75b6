//! Connections that can be cut: after the shutdown grace period, a connection still
//! open must end, not linger in its own task for as long as the process lives.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{self, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Accepts TCP connections whose I/O fails once `hard_stop` is cancelled, so a connection
/// still open after the grace period ends instead of lingering in its task.
pub struct HardStopListener {
    inner: TcpListener,
    hard_stop: CancellationToken,
}

impl HardStopListener {
    pub fn new(inner: TcpListener, hard_stop: CancellationToken) -> Self {
        Self { inner, hard_stop }
    }
}

impl axum::serve::Listener for HardStopListener {
    type Io = HardStopIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = axum::serve::Listener::accept(&mut self.inner).await;
        let io = HardStopIo {
            stream,
            stopped: Box::pin(self.hard_stop.clone().cancelled_owned()),
        };
        (io, address)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection's stream that reports `ConnectionAborted` once the server stops hard.
/// Every poll also waits on the stop, so a connection blocked on I/O wakes up for it.
pub struct HardStopIo {
    stream: TcpStream,
    stopped: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl HardStopIo {
    fn poll_stopped(&mut self, cx: &mut task::Context<'_>) -> Poll<io::Error> {
        self.stopped.as_mut().poll(cx).map(|()| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the server stopped after its shutdown grace period",
            )
        })
    }
}

impl AsyncRead for HardStopIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_stopped(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for HardStopIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_stopped(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_stopped(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_stopped(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
