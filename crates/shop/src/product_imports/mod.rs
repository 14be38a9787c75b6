//! Bulk catalog imports: fire and forget, then poll.
//!
//! `POST /v1/product-imports` (admins) validates every line at once, so a bad import is a
//! 400 naming each bad field (`products[3].priceCents`) and nothing is queued; a good one
//! becomes one `product.import` job and the client gets `202 Accepted` with
//! `Location: /v1/jobs/{jobId}` to poll. A worker then creates or updates the products
//! by SKU in one transaction, so an import lands whole or not at all, and running it
//! again (a redelivery, or the client repeating itself) changes nothing more. Imports
//! bigger than the queue's inline payload limit travel through object storage.

mod import_job;
pub mod routes;

pub use import_job::register;
pub use routes::{ImportAccepted, ProductImportRequest};

/// The queue of catalog work; the default worker pool serves it.
pub const CATALOG_QUEUE: &str = "catalog";

/// Most products one import may carry.
pub const MAX_IMPORT_PRODUCTS: usize = 10_000;
