-- A flow run's human-readable name (from its flow's `run_name` template, or generated).
ALTER TABLE runs ADD COLUMN run_name TEXT;
-- The task runs that failed, timed out or crashed, by flow run: the runs list's "with failed
-- tasks" filter finds them without reading every task run (a partial index: clean runs add
-- nothing to it).
CREATE INDEX failed_task_runs ON runs (flow_run_id)
    WHERE run_type = 'task' AND state IN ('Failed', 'Crashed', 'TimedOut');
