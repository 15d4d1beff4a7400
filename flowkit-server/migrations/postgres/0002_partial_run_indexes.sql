-- Only flow runs are listed by time, and only child flow runs by their parent: index just those
-- rows, so storing a task run writes two fewer index entries.
DROP INDEX runs_flow_runs;
DROP INDEX runs_by_parent;
CREATE INDEX flow_runs_by_time ON runs (created_ts DESC, id DESC) WHERE run_type = 'flow';
CREATE INDEX runs_by_parent ON runs (parent_flow_run_id, created_ts)
    WHERE parent_flow_run_id IS NOT NULL;
