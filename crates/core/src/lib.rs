//! Shared foundation of every loadstar role.
//!
//! Nothing here knows about the shop domain. The pieces:
//!
//! - [`config`]: the one configuration tree, layered defaults → TOML file → `LOADSTAR_`
//!   environment; [`redaction`] keeps its secrets out of everything printed.
//! - [`problem`]: RFC 9457 `application/problem+json`, the only error shape a client sees.
//! - [`request_context`]: the request id (accepted or generated) and the middleware that
//!   echoes it and turns every bare error response into a problem.
//! - [`trace_context`]: W3C `traceparent`: continue a caller's trace (or start one), keep
//!   it for the request or job being handled, pass it on to the jobs it enqueues.
//! - [`ids`]: 64-bit time-ordered ids (snowflake layout) serialised as strings.
//! - [`json_body`] and [`pagination`]: request input every API shares: JSON bodies with
//!   field-precise errors, keyset pages with opaque cursors.
//! - [`timestamp`]: UTC instants stored as integer microseconds, shown as RFC 3339.
//! - [`telemetry`] and [`request_telemetry`]: structured logs (JSON off a terminal), one
//!   access-log line per request, and Prometheus metrics labelled by route template.
//! - [`shutdown`]: one cancellation token tied to SIGINT/SIGTERM.
//! - [`http_server`]: the listener every server shares (api now, gateway next): hyper
//!   behind a tower service, with header and keep-alive timeouts, lingering close,
//!   accept-error back-off, the open-files limit and graceful shutdown.
//! - [`circuit_breaker`]: stop calling a dependency that keeps failing.
//! - `test_support` (feature `test-support`): waiting in tests by polling with a deadline.

pub mod circuit_breaker;
pub mod config;
pub mod http_server;
pub mod ids;
pub mod json_body;
pub mod pagination;
pub mod problem;
pub mod redaction;
pub mod request_context;
pub mod request_telemetry;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod test_support;
pub mod timestamp;
pub mod trace_context;

pub use ids::{Id, IdGenerator};
pub use problem::{FieldError, Problem};
pub use timestamp::Timestamp;
