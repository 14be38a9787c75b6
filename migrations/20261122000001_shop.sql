-- The shop schema, one portable set for SQLite and PostgreSQL: ids, money and instants
-- are BIGINT (microseconds for instants), everything else TEXT, and only DDL both engines
-- read the same way. See docs/decisions/0001-data-access.md.

CREATE TABLE users (
    id               BIGINT PRIMARY KEY,
    email            TEXT   NOT NULL,
    email_normalized TEXT   NOT NULL,
    name             TEXT   NOT NULL,
    password_hash    TEXT   NOT NULL,
    role             TEXT   NOT NULL CHECK (role IN ('customer', 'admin')),
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    CONSTRAINT users_email_unique UNIQUE (email_normalized)
);

CREATE TABLE sessions (
    token_hash TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE api_keys (
    id          BIGINT PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT   NOT NULL,
    prefix      TEXT   NOT NULL,
    secret_hash TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    CONSTRAINT api_keys_prefix_unique UNIQUE (prefix)
);
CREATE INDEX api_keys_user_id ON api_keys (user_id, id);

CREATE TABLE products (
    id          BIGINT PRIMARY KEY,
    sku         TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    description TEXT   NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    currency    TEXT   NOT NULL,
    stock       BIGINT NOT NULL CHECK (stock >= 0),
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    CONSTRAINT products_sku_unique UNIQUE (sku)
);

-- Orders reference users and products by id only: they will live on other shards.
CREATE TABLE orders (
    id                  BIGINT PRIMARY KEY,
    user_id             BIGINT NOT NULL,
    status              TEXT   NOT NULL CHECK (status IN ('pending', 'paid', 'payment_failed', 'cancelled')),
    total_cents         BIGINT NOT NULL,
    currency            TEXT   NOT NULL,
    callback_url        TEXT,
    idempotency_key     TEXT,
    request_fingerprint TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    CONSTRAINT orders_idempotency_unique UNIQUE (user_id, idempotency_key)
);
CREATE INDEX orders_user_id ON orders (user_id, id);

CREATE TABLE order_items (
    order_id         BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id       BIGINT NOT NULL,
    product_name     TEXT   NOT NULL,
    quantity         BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL,
    line_total_cents BIGINT NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
