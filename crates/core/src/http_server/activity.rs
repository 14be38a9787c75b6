//! What one connection is doing, as far as its timeouts care: reading a request head,
//! handling requests, or idle between them. The connection's I/O, its service and its
//! bodies report here; the connection task reads the next deadline from here.
//!
//! The phases follow nginx and Go's `net/http` rather than hyper's own header timer,
//! which starts when the previous response ends and so would also cut every keep-alive
//! connection idle for longer than the header timeout:
//!
//! - reading a head: from accept, or from the first byte after an idle wait, a complete
//!   request head must arrive within `header_read_timeout`, else the connection is cut;
//! - busy: a request is being handled or its response written (the request timeout and
//!   the client's reading bound this, not the watchdog);
//! - idle: nothing in flight and no byte of a next request; after `keepalive_timeout`
//!   the connection is closed gracefully. On HTTP/2 only open streams count, so pings
//!   and window updates do not keep an idle connection alive.

use super::ConnectionLimits;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::sync::Notify;

/// Where a connection stands, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for a request head: since accept, or since the first byte after idling.
    ReadingHead { since: Instant },
    /// At least one request is being handled or answered.
    Busy,
    /// Kept alive with nothing in flight and no byte of a next request.
    Idle { since: Instant },
}

/// Why a connection's deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// No complete request head within `header_read_timeout`: cut at once.
    HeadTooSlow,
    /// Idle for `keepalive_timeout`: closed gracefully.
    IdleTooLong,
}

impl Phase {
    /// When this phase times out, and how, under `limits`; `None` while busy.
    pub(crate) fn deadline(self, limits: &ConnectionLimits) -> Option<(Instant, Expiry)> {
        match self {
            Phase::ReadingHead { since } => {
                Some((since + limits.header_read_timeout, Expiry::HeadTooSlow))
            }
            Phase::Busy => None,
            Phase::Idle { since } => Some((since + limits.keepalive_timeout, Expiry::IdleTooLong)),
        }
    }
}

#[derive(Debug)]
struct State {
    phase: Phase,
    in_flight: usize,
    /// HTTP/2: streams, not bytes, tell whether the connection is in use.
    multiplexed: bool,
}

/// One connection's activity, shared by its I/O, service, bodies and task.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
    changed: Notify,
    body_left_unread: AtomicBool,
}

impl Activity {
    /// A connection accepted at `now`: its first request head is due.
    pub(crate) fn new(now: Instant) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                phase: Phase::ReadingHead { since: now },
                in_flight: 0,
                multiplexed: false,
            }),
            changed: Notify::new(),
            body_left_unread: AtomicBool::new(false),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under any panic (single field writes).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn phase(&self) -> Phase {
        self.state().phase
    }

    /// Bytes arrived: on an idle HTTP/1 connection, the next request head has begun.
    pub(crate) fn bytes_read(&self, now: impl FnOnce() -> Instant) {
        let mut state = self.state();
        if let Phase::Idle { .. } = state.phase {
            if !state.multiplexed {
                state.phase = Phase::ReadingHead { since: now() };
                drop(state);
                self.changed.notify_one();
            }
        }
    }

    /// A request head was read and handed to the service; the connection is busy until
    /// the returned guard drops (with the response body, once written).
    pub(crate) fn request_started(self: &Arc<Self>, multiplexed: bool) -> InFlight {
        // hyper reads a next request only after draining an unread body: a body left
        // unread earlier no longer needs a lingering close.
        self.body_left_unread.store(false, Ordering::Relaxed);
        let mut state = self.state();
        state.in_flight += 1;
        state.multiplexed |= multiplexed;
        state.phase = Phase::Busy;
        drop(state);
        self.changed.notify_one();
        InFlight {
            activity: Arc::clone(self),
        }
    }

    fn request_finished(&self, now: Instant) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.phase = Phase::Idle { since: now };
            drop(state);
            self.changed.notify_one();
        }
    }

    /// A request body was dropped before its end: the rest may still be on its way.
    pub(crate) fn note_body_left_unread(&self) {
        self.body_left_unread.store(true, Ordering::Relaxed);
    }

    /// Whether some request body on this connection was left unread (so closing it
    /// needs a lingering close).
    pub(crate) fn body_left_unread(&self) -> bool {
        self.body_left_unread.load(Ordering::Relaxed)
    }

    /// Completes when the phase may have changed since the last call.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// A request in flight; dropping it (with the response body, or with an abandoned
/// handler) ends it.
#[derive(Debug)]
pub(crate) struct InFlight {
    activity: Arc<Activity>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.request_finished(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_server::LingerLimits;
    use std::time::Duration;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(75),
            linger: LingerLimits {
                total: Duration::from_secs(30),
                read_timeout: Duration::from_secs(5),
                max_bytes: 1024,
            },
        }
    }

    #[test]
    fn a_new_connection_owes_its_head_within_the_header_timeout() {
        let accepted = Instant::now();
        let activity = Activity::new(accepted);
        assert_eq!(
            activity.phase().deadline(&limits()),
            Some((accepted + Duration::from_secs(10), Expiry::HeadTooSlow))
        );
    }

    #[test]
    fn bytes_before_the_head_is_complete_do_not_extend_the_header_timeout() {
        let accepted = Instant::now();
        let activity = Activity::new(accepted);
        activity.bytes_read(|| accepted + Duration::from_secs(9));
        assert_eq!(
            activity.phase(),
            Phase::ReadingHead { since: accepted },
            "a slow client cannot keep its connection by trickling bytes"
        );
    }

    #[test]
    fn a_busy_connection_has_no_deadline_of_its_own() {
        let activity = Activity::new(Instant::now());
        let _request = activity.request_started(false);
        assert_eq!(activity.phase(), Phase::Busy);
        assert_eq!(activity.phase().deadline(&limits()), None);
    }

    #[test]
    fn after_the_last_response_the_keepalive_timeout_runs_until_a_next_byte_arrives() {
        let activity = Activity::new(Instant::now());
        let first = activity.request_started(false);
        let second = activity.request_started(false);
        drop(first);
        assert_eq!(activity.phase(), Phase::Busy, "one request still in flight");
        drop(second);
        let Phase::Idle { since } = activity.phase() else {
            panic!("idle after the last response: {:?}", activity.phase());
        };
        assert_eq!(
            activity.phase().deadline(&limits()),
            Some((since + Duration::from_secs(75), Expiry::IdleTooLong))
        );

        let first_byte = since + Duration::from_secs(60);
        activity.bytes_read(|| first_byte);
        assert_eq!(
            activity.phase().deadline(&limits()),
            Some((first_byte + Duration::from_secs(10), Expiry::HeadTooSlow)),
            "the next head is timed from its first byte"
        );
    }

    #[test]
    fn on_http2_frames_between_requests_do_not_make_an_idle_connection_busy() {
        let activity = Activity::new(Instant::now());
        drop(activity.request_started(true));
        let idle = activity.phase();
        activity.bytes_read(Instant::now);
        assert_eq!(activity.phase(), idle, "a ping is not a request");
    }

    #[test]
    fn an_unread_body_is_remembered_for_the_close_until_a_next_request_starts() {
        let activity = Activity::new(Instant::now());
        assert!(!activity.body_left_unread());
        let request = activity.request_started(false);
        activity.note_body_left_unread();
        drop(request);
        assert!(activity.body_left_unread());
        let _next = activity.request_started(false);
        assert!(
            !activity.body_left_unread(),
            "hyper drained the body before reading the next request"
        );
    }
}
