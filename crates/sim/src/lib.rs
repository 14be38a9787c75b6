//! Simulators of the external systems loadstar depends on, so that tests and load runs
//! meet the failures of the real ones (slowness, saturation, transient errors) on demand.
//!
//! Today there is one: [`PaymentSimulator`], an HTTP payment provider
//! (`loadstar sim payments`). Like a real provider it honours an `Idempotency-Key`: a
//! charge repeated with the same key is answered with the first result and never charged
//! twice, which is what makes a worker's retries safe. The pieces:
//!
//! - [`config`]: [`SimConfig`], what the simulator is told at start.
//! - [`payments`]: the HTTP API (`POST /v1/charges`, `GET /stats`, `PUT /admin/behaviour`,
//!   `GET /healthz`) and the order in which a charge is handled.
//! - [`charge`]: a charge request, its validation, and the charge it becomes.
//! - [`idempotency`]: the ledger of keys, in flight or completed, that prevents double
//!   charges.
//! - [`token_bucket`]: the capacity limit (requests per second) beyond which the
//!   provider answers 429.
//! - [`behaviour`]: failure rate and latency, changeable while the simulator runs.
//! - [`stats`]: the counters behind `GET /stats`.
//! - [`error`]: [`RequestError`] (mapped to problem+json in one place) and
//!   [`SimulatorError`] (start and run failures).
//! - [`simulator`]: [`PaymentSimulator`], built on a bound socket (port 0 for tests) and
//!   run until a cancellation token fires, like the api role's `Application`.

pub mod behaviour;
pub mod charge;
pub mod config;
pub mod error;
pub mod idempotency;
pub mod payments;
pub mod simulator;
pub mod stats;
pub mod token_bucket;

pub use behaviour::Behaviour;
pub use config::SimConfig;
pub use error::{RequestError, SimulatorError};
pub use simulator::PaymentSimulator;
