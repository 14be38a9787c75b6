//! Products through the cache: the strategy of `[cache.product]` decides what a read and
//! a write do.
//!
//! - Reads are cache-aside: `product:{id}` holds the product's JSON exactly as a client
//!   receives it, with its version (the ETag), so a hit neither queries nor serializes.
//!   A missing id is cached as such for `negative_ttl_secs`.
//! - Writes through the API are write-through (the new JSON is stored at the new version,
//!   a deletion as a "no such product" one version later) or, under `cache_aside`, evict.
//! - Stock moved by orders and rows changed by imports evict: those paths do not hold
//!   the product's JSON.
//! - List pages are TTL-only (`[cache.product_list]`): served until they expire, a few
//!   seconds by default; writes do not chase them.

use super::repository::{self, ProductFilter};
use super::routes::ProductPage;
use super::Product;
use crate::error::{ShopError, ShopResult};
use crate::state::ShopState;
use bytes::Bytes;
use loadstar_cache::Versioned;
use loadstar_core::config::CacheStrategy;
use loadstar_core::pagination::PageRequest;
use loadstar_core::Id;

fn product_key(id: Id) -> String {
    format!("product:{id}")
}

fn encode(product: &Product) -> ShopResult<Versioned> {
    let value = serde_json::to_vec(product)
        .map_err(|error| ShopError::Internal(format!("encoding product: {error}")))?;
    Ok(Versioned {
        value: Bytes::from(value),
        version: version_of(product.version),
    })
}

fn version_of(version: i64) -> u64 {
    u64::try_from(version).unwrap_or(0)
}

async fn load(state: &ShopState, id: Id) -> ShopResult<Option<Versioned>> {
    repository::find(&state.db, id)
        .await?
        .as_ref()
        .map(encode)
        .transpose()
}

/// The product's JSON and version, from the cache or the database.
pub async fn read(state: &ShopState, id: Id) -> ShopResult<Option<Versioned>> {
    let policy = state.caches.product;
    if !policy.enabled() {
        return load(state, id).await;
    }
    let cached = state
        .caches
        .entries
        .get_or_load(&product_key(id), policy.lifetimes, || load(state, id))
        .await;
    match cached {
        Ok(found) => Ok(found),
        // The load itself failed: ask once more without the cache, for the database's own
        // error (a 503 when it is unavailable, not a generic 500).
        Err(_) => load(state, id).await,
    }
}

/// After a product was created or changed through the API.
pub async fn written(state: &ShopState, product: &Product) -> ShopResult<()> {
    let record = match state.caches.product.strategy {
        CacheStrategy::WriteThrough => {
            let encoded = encode(product)?;
            Some((Some(encoded.value), encoded.version))
        }
        _ => None,
    };
    after_write(state, product.id, record).await;
    Ok(())
}

/// After a product was deleted (its last version was `product.version`): under
/// write-through "no such product" is stored one version later.
pub async fn deleted(state: &ShopState, product: &Product) {
    let tombstone = version_of(product.version).saturating_add(1);
    after_write(state, product.id, Some((None, tombstone))).await;
}

/// Write-through stores `record` (value, version); cache-aside evicts; off does nothing.
async fn after_write(state: &ShopState, id: Id, record: Option<(Option<Bytes>, u64)>) {
    let policy = state.caches.product;
    let key = product_key(id);
    match (policy.strategy, record) {
        (CacheStrategy::Off, _) => {}
        (CacheStrategy::WriteThrough, Some((value, version))) => {
            state
                .caches
                .entries
                .put(&key, value, version, policy.lifetimes)
                .await;
        }
        _ => state.caches.entries.invalidate(&key).await,
    }
}

/// After rows changed outside the product API (stock taken or returned by orders,
/// imports): their cached copies are evicted.
pub async fn changed(state: &ShopState, ids: &[Id]) {
    if !state.caches.product.enabled() {
        return;
    }
    for id in ids {
        state.caches.entries.invalidate(&product_key(*id)).await;
    }
}

/// One page of the product list, as JSON, from the cache (TTL only) or the database.
pub async fn list_page(
    state: &ShopState,
    filter: &ProductFilter,
    page: PageRequest,
) -> ShopResult<Bytes> {
    let query = || async {
        let rows = repository::list(&state.db, filter, page).await?;
        let page: ProductPage = page.into_page(rows, |product| product.id);
        serde_json::to_vec(&page)
            .map(Bytes::from)
            .map_err(|error| ShopError::Internal(format!("encoding product page: {error}")))
    };
    let policy = state.caches.product_list;
    if !policy.enabled() {
        return query().await;
    }
    let key = format!(
        "products:list:{:?}:{:?}:{:?}:{}:{}",
        filter.min_price_cents,
        filter.max_price_cents,
        filter.name_contains,
        page.after.map(|id| id.as_i64()).unwrap_or(0),
        page.limit
    );
    let cached = state
        .caches
        .entries
        .get_or_load(&key, policy.lifetimes, || async {
            query()
                .await
                .map(|value| Some(Versioned { value, version: 0 }))
        })
        .await;
    match cached {
        Ok(Some(found)) => Ok(found.value),
        Ok(None) | Err(_) => query().await,
    }
}

/// Counts a view of product `id` (write-back: the count reaches Redis with the next
/// push and the database with the next flush). A map update: never delays the response.
pub fn viewed(state: &ShopState, id: Id) {
    if let Some(views) = &state.caches.product_views {
        views.add(&id.to_string(), 1);
    }
}
