//! What the payment simulator is told at start.

use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Where `loadstar sim payments` listens unless told otherwise: beside the api's 8080.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 9090));

/// Requests per second the simulated provider accepts unless told otherwise.
pub const DEFAULT_CAPACITY_PER_SEC: u32 = 1_000;

/// The payment simulator's settings. The defaults describe a fast, reliable provider.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Probability (0–1) that a new charge fails with a transient 503.
    pub failure_rate: f64,
    /// Artificial delay of every new charge, in milliseconds.
    pub latency_ms: u64,
    /// Charge requests accepted per second (and the burst size); more get 429.
    pub capacity_per_sec: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            failure_rate: 0.0,
            latency_ms: 0,
            capacity_per_sec: DEFAULT_CAPACITY_PER_SEC,
        }
    }
}
