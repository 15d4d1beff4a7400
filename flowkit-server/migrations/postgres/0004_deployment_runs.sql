-- A flow run a deployment started: the deployment, when it was due, and its data interval.
ALTER TABLE runs ADD COLUMN deployment TEXT;
ALTER TABLE runs ADD COLUMN scheduled_ts BIGINT;
ALTER TABLE runs ADD COLUMN interval_start_ts BIGINT;
ALTER TABLE runs ADD COLUMN interval_end_ts BIGINT;
