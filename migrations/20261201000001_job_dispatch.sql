-- The RabbitMQ backend keeps its ledger in `jobs` and uses each row as its own outbox
-- entry: `dispatched_attempt` is the attempt a confirmed broker message exists for. A job
-- is due for publishing while it is available and no message exists for its next attempt.
-- The SQL backend never reads or writes it.
ALTER TABLE jobs ADD COLUMN dispatched_attempt BIGINT;
CREATE INDEX jobs_undispatched ON jobs (priority DESC, run_at, id)
    WHERE state = 'available' AND COALESCE(dispatched_attempt, 0) <= attempt;
