-- What the order pipeline's handlers record. Both are written idempotently: a redelivered
-- job finds its work already done and changes nothing.

-- Set once by inventory.commit: the order's reserved stock is final.
ALTER TABLE orders ADD COLUMN inventory_committed_at BIGINT;

-- analytics.record: one row per order and event.
CREATE TABLE order_events (
    order_id     BIGINT NOT NULL,
    event        TEXT   NOT NULL,
    amount_cents BIGINT NOT NULL,
    currency     TEXT   NOT NULL,
    at           BIGINT NOT NULL,
    PRIMARY KEY (order_id, event)
);
