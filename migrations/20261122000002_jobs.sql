-- The job queue of the SQL backends (SQLite and PostgreSQL). Portable like the shop
-- schema: BYTEA is PostgreSQL's binary type and, in SQLite, a declared type whose
-- affinity stores blobs unchanged.

CREATE TABLE jobs (
    id            BIGINT PRIMARY KEY,
    queue         TEXT   NOT NULL,
    kind          TEXT   NOT NULL,
    payload       BYTEA  NOT NULL,
    priority      BIGINT NOT NULL,
    state         TEXT   NOT NULL CHECK (state IN ('available', 'running', 'completed', 'dead')),
    run_at        BIGINT NOT NULL,
    attempt       BIGINT NOT NULL,
    max_attempts  BIGINT NOT NULL,
    lease_until   BIGINT,
    started_at    BIGINT,
    worker        TEXT,
    ordering_key  TEXT,
    expires_at    BIGINT,
    trace_context TEXT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    finished_at   BIGINT
);
-- Fetching: the next available jobs of a queue, best priority first, oldest first.
CREATE INDEX jobs_fetch ON jobs (queue, state, priority, run_at, id);
-- Lease expiry sweeps and per-key ordering.
CREATE INDEX jobs_lease ON jobs (state, lease_until);
CREATE INDEX jobs_ordering ON jobs (ordering_key, id);

-- One row per attempt: what the error queue shows as the job's history.
CREATE TABLE job_attempts (
    job_id      BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     BIGINT NOT NULL,
    worker      TEXT   NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    outcome     TEXT   NOT NULL CHECK (outcome IN ('completed', 'failed', 'lease_expired')),
    error       TEXT,
    PRIMARY KEY (job_id, attempt)
);

-- Unique jobs: an enqueue with a key that is still held within its window returns the
-- job that holds it instead of adding another.
CREATE TABLE job_unique_keys (
    unique_key TEXT   PRIMARY KEY,
    job_id     BIGINT NOT NULL,
    held_until BIGINT NOT NULL
);
