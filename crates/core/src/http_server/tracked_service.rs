//! The service as hyper calls it: each request marks its connection busy until its
//! response body has been written (or abandoned), and a request body dropped before its
//! end is noted, so the connection knows it must linger when it closes.

use super::activity::{Activity, InFlight};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::{Request, Response, Version};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tower::util::Oneshot;
use tower::ServiceExt;

/// Adapts a tower service to hyper, tracking each request on the connection's activity.
#[derive(Debug, Clone)]
pub(crate) struct TrackedService<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> TrackedService<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for TrackedService<S>
where
    S: tower::Service<Request<RequestBody>, Response = Response<B>> + Clone,
{
    type Response = Response<ResponseBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self
            .activity
            .request_started(request.version() == Version::HTTP_2);
        let activity = Arc::clone(&self.activity);
        let request = request.map(|inner| RequestBody {
            inner,
            finished: false,
            activity,
        });
        TrackedFuture {
            inner: self.inner.clone().oneshot(request),
            in_flight: Some(in_flight),
        }
    }
}

pin_project! {
    /// The service's future; its response body carries the in-flight guard on.
    pub(crate) struct TrackedFuture<S>
    where
        S: tower::Service<Request<RequestBody>>,
    {
        #[pin]
        inner: Oneshot<S, Request<RequestBody>>,
        in_flight: Option<InFlight>,
    }
}

impl<S, B> Future for TrackedFuture<S>
where
    S: tower::Service<Request<RequestBody>, Response = Response<B>>,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|inner| ResponseBody {
            inner,
            _in_flight: in_flight,
        })))
    }
}

pin_project! {
    /// A request body as the served service sees it: hyper's, noting on drop whether it
    /// was left unread.
    #[derive(Debug)]
    pub struct RequestBody {
        #[pin]
        inner: Incoming,
        finished: bool,
        activity: Arc<Activity>,
    }

    impl PinnedDrop for RequestBody {
        fn drop(this: Pin<&mut Self>) {
            if !this.finished && !this.inner.is_end_stream() {
                this.activity.note_body_left_unread();
            }
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            *this.finished = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// A response body that keeps its request in flight until hyper has written it and
    /// dropped it.
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        _in_flight: Option<InFlight>,
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
