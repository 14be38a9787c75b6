//! Product views, written back: `GET /v1/products/{id}` counts in the process
//! ([`super::cache::viewed`]); with Redis, every `cache.product_views.push_interval_ms`
//! the node moves its counts there; a flusher on every api node writes the accumulated
//! counts to `products.view_count` in one transaction per batch, every
//! `cache.product_views.flush_interval_ms`, and once more on a graceful stop.
//!
//! What a crash can lose: in process only (no Redis), the views the node counted since
//! its last flush — at most one flush interval of them. With Redis, the views it
//! counted since its last push — at most one push interval (plus, while Redis was
//! unreachable, the counts that stayed in process). Nothing that reached Redis is lost:
//! a batch from Redis is applied under its batch id (`counter_flushes`), so re-sending
//! it after a flusher died mid-flush never counts it twice.

use crate::error::{ShopError, ShopResult};
use crate::state::ShopState;
use loadstar_cache::CountBatch;
use loadstar_core::{Id, Timestamp};
use loadstar_store::sql::{query, AssertSqlSafe, Row};
use loadstar_store::Database;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Products per UPDATE statement of a batch.
const ROWS_PER_STATEMENT: usize = 200;
/// Applied batch ids are kept this long: far longer than a dead flusher's batch waits.
const REMEMBER_BATCHES_FOR: Duration = Duration::from_secs(24 * 3600);

/// Writes every accumulated view count to the database; returns how many views.
pub async fn flush(state: &ShopState) -> ShopResult<u64> {
    let Some(views) = &state.caches.product_views else {
        return Ok(0);
    };
    views
        .flush(|batch| apply(&state.db, batch))
        .await
        .map_err(|error| ShopError::Unavailable(format!("flushing product views: {error}")))
}

/// Adds one batch to `products.view_count`, once per batch id.
async fn apply(db: &Database, batch: CountBatch) -> ShopResult<()> {
    let mut tx = db.writer().begin().await?;
    if let Some(batch_id) = &batch.id {
        let now = Timestamp::now();
        let fresh = query(
            "INSERT INTO counter_flushes (batch_id, flushed_at) VALUES ($1, $2) ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch_id)
        .bind(now.unix_micros())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            tracing::info!(batch_id, "view batch applied before; skipped");
            return Ok(());
        }
        let forget_before =
            now.unix_micros() - i64::try_from(REMEMBER_BATCHES_FOR.as_micros()).unwrap_or(i64::MAX);
        query("DELETE FROM counter_flushes WHERE flushed_at < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
    }
    let counts: Vec<(i64, i64)> = batch
        .counts
        .iter()
        .filter_map(|(member, count)| Some((member.parse().ok()?, i64::try_from(*count).ok()?)))
        .collect();
    for chunk in counts.chunks(ROWS_PER_STATEMENT) {
        // view_count + CASE id WHEN $1 THEN $2 … END WHERE id IN ($1, $3, …)
        let mut cases = String::new();
        let mut ids = Vec::with_capacity(chunk.len());
        for n in 0..chunk.len() {
            cases.push_str(&format!(" WHEN ${} THEN ${}", 2 * n + 1, 2 * n + 2));
            ids.push(format!("${}", 2 * n + 1));
        }
        let sql = format!(
            "UPDATE products SET view_count = view_count + CASE id{cases} ELSE 0 END WHERE id IN ({})",
            ids.join(", ")
        );
        let mut statement = query(AssertSqlSafe(sql.as_str()));
        for (id, count) in chunk {
            statement = statement.bind(*id).bind(*count);
        }
        statement.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Moves this node's counts to Redis; what Redis does not take stays for the next push
/// or flush.
async fn push(state: &ShopState) {
    if let Some(views) = &state.caches.product_views {
        if let Err(error) = views.push().await {
            tracing::debug!(error = %error, "product views not pushed to redis; kept in process");
        }
    }
}

/// Pushes (with Redis) and flushes on their intervals until `stop`, then flushes once
/// more.
pub fn spawn_flusher(state: ShopState, stop: CancellationToken) -> Option<JoinHandle<()>> {
    state.caches.product_views.as_ref()?;
    let mut flushes = tokio::time::interval(state.caches.views_flush_interval);
    flushes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pushes = tokio::time::interval(state.caches.views_push_interval);
    pushes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pushing = state.caches.redis.is_some();
    Some(tokio::spawn(async move {
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                _ = flushes.tick() => false,
                _ = pushes.tick(), if pushing => {
                    push(&state).await;
                    continue;
                }
            };
            match flush(&state).await {
                Ok(0) => {}
                Ok(views) => tracing::debug!(views, "product views written back"),
                Err(error) => {
                    tracing::warn!(error = %error, "product views not written back yet; kept for the next flush")
                }
            }
            if stopping {
                return;
            }
        }
    }))
}

/// Loads the `cache.warm_up_products` most-viewed products into the cache, so a node
/// that just started serves its first requests for them from memory.
pub async fn warm_up(state: &ShopState) -> ShopResult<usize> {
    let wanted = state.caches.warm_up_products;
    if wanted == 0 || !state.caches.product.enabled() {
        return Ok(0);
    }
    let began = Instant::now();
    let rows = query("SELECT id FROM products ORDER BY view_count DESC, id LIMIT $1")
        .bind(i64::from(wanted))
        .fetch_all(state.db.reader())
        .await?;
    let mut loaded = 0;
    for row in rows {
        let id = Id::from_i64(row.try_get("id")?);
        if super::cache::read(state, id).await?.is_some() {
            loaded += 1;
        }
    }
    tracing::info!(
        products = loaded,
        took_ms = began.elapsed().as_millis() as u64,
        "product cache warmed up"
    );
    Ok(loaded)
}
