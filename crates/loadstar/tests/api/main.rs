//! HTTP-level tests: each starts the real application on port 0 with a fresh database
//! and talks to it over a socket. Every test runs on SQLite, and again on PostgreSQL
//! when `LOADSTAR_TEST_DATABASE_URL` names a server (an admin URL: each test creates its
//! own database there).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod alerts;
mod api_keys;
mod cache;
mod claim_check;
mod connections;
mod contract;
mod errors;
mod ops;
mod orders;
mod password_work;
mod pipeline;
mod product_imports;
mod products;
mod sessions;
mod shutdown;
mod trace_propagation;
mod users;
