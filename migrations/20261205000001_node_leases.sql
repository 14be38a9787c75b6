-- Node ids leased from the shared database (PostgreSQL deployments), so that processes
-- started from one template never share the node bits of their ids. A row per id in use:
-- its holder renews expires_at (unix microseconds, the database's clock) while it runs; a
-- crashed holder's id frees once expires_at passes.
CREATE TABLE node_leases (
    node_id BIGINT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
