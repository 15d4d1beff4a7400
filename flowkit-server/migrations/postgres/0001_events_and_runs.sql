-- Every event, once (its id is the primary key: ingestion is idempotent).
CREATE TABLE events (
    id          UUID PRIMARY KEY,
    ts          BIGINT NOT NULL,           -- Unix time in nanoseconds
    flow_run_id UUID,
    task_run_id UUID,
    kind        TEXT NOT NULL,             -- run_created | state_changed | log
    level       TEXT,                      -- for logs
    body        TEXT NOT NULL              -- the event's kind, as JSON
);
-- Only log lines are read by flow run; state events are read through `runs`.
CREATE INDEX logs_by_flow_run ON events (flow_run_id, ts) WHERE kind = 'log';

-- Each run's current view, derived from its events in any order.
CREATE TABLE runs (
    id                 UUID PRIMARY KEY,
    run_type           TEXT NOT NULL,      -- flow | task
    name               TEXT,
    flow_run_id        UUID,               -- for a task run, its flow run
    parent_flow_run_id UUID,               -- for a child flow run, its parent
    parent_task_run_id UUID,
    state              TEXT NOT NULL DEFAULT 'Pending',
    state_final        BIGINT NOT NULL DEFAULT 0,
    state_ts           BIGINT NOT NULL DEFAULT 0,
    message            TEXT,
    attempts           BIGINT NOT NULL DEFAULT 0,
    created_ts         BIGINT,
    start_ts           BIGINT,
    end_ts             BIGINT,
    parameters         TEXT,
    tags               TEXT,
    upstream           TEXT,
    map_index          BIGINT,
    retries            BIGINT
);
CREATE INDEX runs_flow_runs ON runs (run_type, created_ts DESC, id DESC);
CREATE INDEX runs_by_flow_run ON runs (flow_run_id, created_ts);
CREATE INDEX runs_by_parent ON runs (parent_flow_run_id, created_ts);
