//! W3C Trace Context (`traceparent`): one trace id from the client's request through every
//! job it causes.
//!
//! A request continues the trace its `traceparent` names (or starts one when the header is
//! missing or invalid) with a new span id for this hop; the request middleware keeps it in
//! a task-local ([`TraceContext::current`]) and echoes it on the response. Anything that
//! enqueues a job while handling the request stores [`TraceContext::to_traceparent`] with
//! it, and the worker that runs the job continues from there, so the request, its jobs
//! and their follow-up jobs share one trace id in every log line. Exporting spans to a
//! collector is a separate concern; this module only propagates.

use axum::http::HeaderName;
use rand::RngCore;
use std::future::Future;

/// The header that carries the trace context in both directions.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// One hop of a trace: the trace id shared by every hop, this hop's span id, and the
/// trace flags (bit 0: sampled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

impl TraceContext {
    /// Parses a `traceparent` header value. `None` when it is not valid by the W3C rules
    /// (version `ff`, ids of all zeros, wrong lengths, upper-case hex), in which case the
    /// caller starts a new trace rather than trusting it.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        if !value.is_ascii() {
            return None;
        }
        let bytes = value.as_bytes();
        // version-traceid-parentid-flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55 characters.
        // Versions after 00 may append fields after another '-'.
        if bytes.len() < 55 || (bytes.len() > 55 && bytes[55] != b'-') {
            return None;
        }
        let version = u8::from_str_radix(lower_hex(&value[0..2])?, 16).ok()?;
        if version == 0xff || (version == 0 && bytes.len() != 55) {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        hex_into(lower_hex(&value[3..35])?, &mut trace_id)?;
        let mut span_id = [0u8; 8];
        hex_into(lower_hex(&value[36..52])?, &mut span_id)?;
        let flags = u8::from_str_radix(lower_hex(&value[53..55])?, 16).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A new trace (sampled), for a request or job that arrived without one.
    pub fn new_root() -> Self {
        let mut trace_id = [0u8; 16];
        while trace_id == [0; 16] {
            rand::thread_rng().fill_bytes(&mut trace_id);
        }
        Self {
            trace_id,
            span_id: new_span_id(),
            flags: 0x01,
        }
    }

    /// The next hop of the same trace: same trace id and flags, a new span id.
    pub fn child(&self) -> Self {
        Self {
            span_id: new_span_id(),
            ..*self
        }
    }

    /// This hop's context for an incoming `traceparent`: a child of it, or a new trace
    /// when it is missing or invalid.
    pub fn continue_from(traceparent: Option<&str>) -> Self {
        traceparent
            .and_then(Self::parse)
            .map_or_else(Self::new_root, |parent| parent.child())
    }

    /// The 32 lower-case hex digits every hop of the trace shares.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// This hop's 16 hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span_id)
    }

    /// The `traceparent` value naming this hop as the parent of the next.
    pub fn to_traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id(),
            self.span_id(),
            self.flags
        )
    }

    /// The context of the request or job this task is handling, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|context| *context).ok()
    }

    /// Runs `work` with `self` as [`TraceContext::current`].
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        CURRENT.scope(self, work).await
    }
}

fn new_span_id() -> [u8; 8] {
    let mut span_id = [0u8; 8];
    while span_id == [0; 8] {
        rand::thread_rng().fill_bytes(&mut span_id);
    }
    span_id
}

/// `text` if it is lower-case hex only (the W3C format forbids upper case).
fn lower_hex(text: &str) -> Option<&str> {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        .then_some(text)
}

fn hex_into(text: &str, out: &mut [u8]) -> Option<()> {
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_parsed_and_written_back_unchanged() {
        let context = TraceContext::parse(EXAMPLE).unwrap();
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id(), "00f067aa0ba902b7");
        assert_eq!(context.to_traceparent(), EXAMPLE);
    }

    #[test]
    fn invalid_traceparents_are_rejected() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future";
        assert!(TraceContext::parse(later).is_some());
    }

    #[test]
    fn a_child_keeps_the_trace_and_takes_a_new_span() {
        let parent = TraceContext::parse(EXAMPLE).unwrap();
        let child = TraceContext::continue_from(Some(EXAMPLE));
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        assert!(TraceContext::parse(&child.to_traceparent()).is_some());
    }

    #[test]
    fn a_missing_or_invalid_traceparent_starts_a_new_trace() {
        let fresh = TraceContext::continue_from(Some("garbage"));
        assert_ne!(fresh.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(TraceContext::parse(&fresh.to_traceparent()).is_some());
        assert_ne!(
            TraceContext::continue_from(None).trace_id(),
            fresh.trace_id()
        );
    }

    #[tokio::test]
    async fn the_current_context_is_visible_only_inside_its_scope() {
        let context = TraceContext::new_root();
        assert_eq!(TraceContext::current(), None);
        let seen = context.scope(async { TraceContext::current() }).await;
        assert_eq!(seen, Some(context));
    }
}
