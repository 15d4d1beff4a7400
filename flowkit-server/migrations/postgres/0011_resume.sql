-- Durable runs: a run the server owns may be resumed ("Retry from failure"): handed again to
-- a worker as a new attempt of the same flow run, whose completed task calls reuse their
-- stored results. When it was last asked for (Unix nanoseconds; NULL: never).
ALTER TABLE work ADD COLUMN resumed_ts BIGINT;
