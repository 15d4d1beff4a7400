-- Every event, once (its id is the primary key: ingestion is idempotent).
CREATE TABLE events (
    id          BLOB PRIMARY KEY,
    ts          INTEGER NOT NULL,          -- Unix time in nanoseconds
    flow_run_id BLOB,
    task_run_id BLOB,
    kind        TEXT NOT NULL,             -- run_created | state_changed | log
    level       TEXT,                      -- for logs
    body        TEXT NOT NULL              -- the event's kind, as JSON
) WITHOUT ROWID;
-- Only log lines are read by flow run; state events are read through `runs`.
CREATE INDEX logs_by_flow_run ON events (flow_run_id, ts) WHERE kind = 'log';

-- Each run's current view, derived from its events in any order.
CREATE TABLE runs (
    id                 BLOB PRIMARY KEY,
    run_type           TEXT NOT NULL,      -- flow | task
    name               TEXT,
    flow_run_id        BLOB,               -- for a task run, its flow run
    parent_flow_run_id BLOB,               -- for a child flow run, its parent
    parent_task_run_id BLOB,
    state              TEXT NOT NULL DEFAULT 'Pending',
    state_final        INTEGER NOT NULL DEFAULT 0,
    state_ts           INTEGER NOT NULL DEFAULT 0,
    message            TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    created_ts         INTEGER,
    start_ts           INTEGER,
    end_ts             INTEGER,
    parameters         TEXT,
    tags               TEXT,
    upstream           TEXT,
    map_index          INTEGER,
    retries            INTEGER
) WITHOUT ROWID;
CREATE INDEX runs_flow_runs ON runs (run_type, created_ts DESC, id DESC);
-- Selective first, then in the order the detail page lists them.
CREATE INDEX runs_by_flow_run ON runs (flow_run_id, created_ts);
CREATE INDEX runs_by_parent ON runs (parent_flow_run_id, created_ts);
