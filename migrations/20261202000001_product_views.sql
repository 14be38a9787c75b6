-- Product views, counted in the cache and written back in batches (issue 4).
ALTER TABLE products ADD COLUMN view_count BIGINT NOT NULL DEFAULT 0;

-- The most-viewed products, for warming a starting node's cache.
CREATE INDEX products_by_views ON products (view_count DESC);

-- Write-back batches already applied: a batch re-sent after its flusher died between
-- the commit and the acknowledgement is recognised and skipped (exactly once).
CREATE TABLE counter_flushes (
    batch_id TEXT PRIMARY KEY,
    flushed_at BIGINT NOT NULL
);
