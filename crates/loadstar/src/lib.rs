//! Wiring of the loadstar roles. No business logic lives here: this crate reads the
//! configuration, opens the backends, mounts the domain's routes behind the shared
//! middleware stack and runs them until a shutdown signal.
//!
//! [`Application`] is the api role as an object: tests build one on port 0 and talk to it
//! over a real socket, exactly as `loadstar serve` does.

pub mod application;
pub mod ops_routes;
pub mod shop_state;
pub mod worker_role;

pub use application::Application;
