//! The `product.import` job: create or replace every product of an import, by SKU, in
//! one transaction.

use crate::messages::{v1, PRODUCT_IMPORT};
use crate::order_pipeline::decode;
use crate::state::ShopState;
use async_trait::async_trait;
use loadstar_core::{Id, Timestamp};
use loadstar_jobs::{HandlerError, JobHandler, LeasedJob, RetryPolicy, WorkerPool};
use loadstar_store::sql::{query, Row};
use std::sync::Arc;

/// Adds the import handler to `pool`.
pub fn register(
    pool: WorkerPool,
    state: &ShopState,
    policy: impl Fn(&str) -> RetryPolicy,
) -> WorkerPool {
    pool.handle(
        PRODUCT_IMPORT,
        Arc::new(ProductImportJob {
            state: state.clone(),
        }),
        policy(PRODUCT_IMPORT),
    )
}

struct ProductImportJob {
    state: ShopState,
}

#[async_trait]
impl JobHandler for ProductImportJob {
    async fn handle(&self, job: &LeasedJob) -> Result<(), HandlerError> {
        let import: v1::ProductImport = decode(&job.payload)?;
        let failed = |error: loadstar_store::sql::Error| {
            HandlerError::new(format!("product import: {error}"))
        };
        let now = Timestamp::now().unix_micros();
        let mut tx = self.state.db.writer().begin().await.map_err(failed)?;
        let mut changed = Vec::new();
        for product in &import.products {
            // A product that already matches keeps its version (and ETag): importing the
            // same file twice changes nothing the second time.
            let row = query(
                "INSERT INTO products (id, sku, name, description, price_cents, currency, stock, \
                   version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8) \
                 ON CONFLICT (sku) DO UPDATE SET name = excluded.name, \
                   description = excluded.description, price_cents = excluded.price_cents, \
                   currency = excluded.currency, stock = excluded.stock, \
                   version = products.version + 1, updated_at = excluded.updated_at \
                 WHERE products.name <> excluded.name OR products.description <> excluded.description \
                   OR products.price_cents <> excluded.price_cents \
                   OR products.currency <> excluded.currency OR products.stock <> excluded.stock \
                 RETURNING id",
            )
            .bind(self.state.ids.next_id().as_i64())
            .bind(&product.sku)
            .bind(&product.name)
            .bind(&product.description)
            .bind(product.price_cents)
            .bind(&product.currency)
            .bind(product.stock)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(failed)?;
            if let Some(row) = row {
                changed.push(Id::from_i64(row.try_get("id").map_err(failed)?));
            }
        }
        tx.commit().await.map_err(failed)?;
        tracing::info!(job_id = %job.id, products = import.products.len(), changed = changed.len(), "product import applied");
        crate::products::cache::changed(&self.state, &changed).await;
        Ok(())
    }
}
