-- Job indexes shaped for the fetch path: each covers only the rows its query reads, so a
-- job moving through its states stops paying for index entries nobody looks up.
--
-- jobs_fetch: the fetch orders by `priority DESC, run_at, id`; the first index ran
-- priority ascending, so neither engine could read it in that order and each fetch sorted
-- every available job of the queue (on PostgreSQL, with a backlog of 100,000, a 40 ms
-- sort that also crossed the JIT cost threshold: about 600 ms per fetch). Partial on
-- `available`: leased, completed and dead jobs are never fetched.
DROP INDEX jobs_fetch;
CREATE INDEX jobs_fetch ON jobs (queue, priority DESC, run_at, id) WHERE state = 'available';

-- jobs_lease: the expiry sweep looks at running jobs of one queue only.
DROP INDEX jobs_lease;
CREATE INDEX jobs_lease ON jobs (queue, lease_until) WHERE state = 'running';

-- jobs_ordering: per-key ordering compares jobs that have a key; most have none.
DROP INDEX jobs_ordering;
CREATE INDEX jobs_ordering ON jobs (ordering_key, id) WHERE ordering_key IS NOT NULL;

-- jobs_expiry: unstarted jobs with a time to live, for the TTL sweep, instead of reading
-- every available job of the queue.
CREATE INDEX jobs_expiry ON jobs (queue, expires_at) WHERE state = 'available' AND expires_at IS NOT NULL;

-- jobs_started: rate-limited queues count jobs started in the last second; jobs not yet
-- started have nothing to count.
DROP INDEX jobs_started;
CREATE INDEX jobs_started ON jobs (queue, started_at) WHERE started_at IS NOT NULL;
