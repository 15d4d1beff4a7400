-- Durable runs: where a task run's persisted result is (its store, key, and the packed object
-- holding it, if any), as JSON, from the event that ended the run `Completed` or `Cached`.
-- NULL for a run whose result was not persisted.
ALTER TABLE runs ADD COLUMN result TEXT;
