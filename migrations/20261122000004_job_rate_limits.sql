-- Rate-limited queues count the jobs started in the last second across every process.
CREATE INDEX jobs_started ON jobs (queue, started_at);
