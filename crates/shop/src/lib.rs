//! The example domain of loadstar: a small shop that exercises every layer.
//!
//! Resources (REST under `/v1`, see `docs/architecture.md`): users, sessions (login),
//! API keys, products (catalog) and orders. The crate is deliberately ordinary axum code
//! over the infrastructure crates, so a fork can replace it with its own domain and keep
//! the rest:
//!
//! - [`state::ShopState`] holds the dependencies (database, id generator, session store,
//!   password hasher); [`router`] mounts every handler on it.
//! - Each resource is a module with its types, its SQL (`repository`) and its handlers
//!   (`routes`). SQL is portable (SQLite and PostgreSQL) through `loadstar-store`.
//! - [`error::ShopError`] is the one error type; it becomes a problem+json response in
//!   exactly one place.
//! - [`openapi::ShopApi`] is the OpenAPI 3.1 document, generated from the handlers.
//! - [`messages`]: Protocol Buffers schemas of the order pipeline's jobs and events.

pub mod admin;
pub mod api_keys;
pub mod auth;
pub mod caching;
pub mod docs;
pub mod error;
pub mod extract;
pub mod messages;
pub mod openapi;
pub mod order_pipeline;
pub mod orders;
pub mod product_imports;
pub mod products;
pub mod sessions;
pub mod state;
pub mod users;
pub mod validation;

pub use error::ShopError;
pub use state::ShopState;

use axum::routing::{get, post};
use axum::Router;

/// Every shop endpoint, bound to `state`.
pub fn router(state: ShopState) -> Router {
    Router::new()
        .route("/v1/users", post(users::routes::create_user))
        .route(
            "/v1/users/{userId}",
            get(users::routes::get_user).patch(users::routes::patch_user),
        )
        .route("/v1/sessions", post(sessions::create_session))
        .route(
            "/v1/sessions/current",
            axum::routing::delete(sessions::delete_current_session),
        )
        .route("/v1/api-keys", post(api_keys::issue).get(api_keys::list))
        .route(
            "/v1/api-keys/{keyId}",
            axum::routing::delete(api_keys::revoke),
        )
        .route(
            "/v1/products",
            get(products::routes::list_products).post(products::routes::create_product),
        )
        .route(
            "/v1/products/{productId}",
            get(products::routes::get_product)
                .put(products::routes::replace_product)
                .patch(products::routes::patch_product)
                .delete(products::routes::delete_product),
        )
        .route(
            "/v1/product-imports",
            post(product_imports::routes::create_product_import),
        )
        .route(
            "/v1/users/{userId}/orders",
            post(orders::routes::place_order).get(orders::routes::list_orders),
        )
        .route(
            "/v1/users/{userId}/orders/{orderId}",
            get(orders::routes::get_order),
        )
        .route(
            "/v1/users/{userId}/orders/{orderId}/order-items",
            get(orders::routes::list_order_items),
        )
        .route(
            "/v1/users/{userId}/orders/{orderId}/cancel",
            post(orders::routes::cancel_order),
        )
        .with_state(state.clone())
        .merge(admin::router(state))
        .merge(docs::router())
}
