-- Orchestration: the runs the server creates (scheduled, triggered, backfilled) and hands to
-- workers, the runs whose programs send heartbeats, the workers, and backfills.

-- A deployment paused or resumed from the API (NULL: as its spec says).
ALTER TABLE deployments ADD COLUMN paused BIGINT;

-- A run the server owns, from creation to its end. Its id is the flow run's id.
CREATE TABLE work (
    id                UUID PRIMARY KEY,
    deployment        TEXT NOT NULL,
    queue             TEXT NOT NULL,
    priority          BIGINT NOT NULL DEFAULT 0,
    origin            TEXT NOT NULL,           -- schedule | trigger | backfill | retry
    status            TEXT NOT NULL,           -- scheduled | claimed | done | cancelled | crashed
    scheduled_ts      BIGINT NOT NULL,         -- when it may start (Unix nanoseconds)
    interval_start_ts BIGINT,
    interval_end_ts   BIGINT,
    parameters        TEXT,                    -- JSON object, merged over the defaults
    idempotency_key   TEXT,
    worker            TEXT,
    claimed_ts        BIGINT,
    attempt           BIGINT NOT NULL DEFAULT 1,
    backfill_id       UUID,
    created_ts        BIGINT NOT NULL
);
-- At most one run per deployment and scheduled time from its schedules: two servers ticking
-- at once, or one restarted mid-tick, never create a time twice.
CREATE UNIQUE INDEX work_schedule_slot ON work (deployment, scheduled_ts) WHERE origin = 'schedule';
CREATE UNIQUE INDEX work_idempotency ON work (deployment, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX work_due ON work (deployment, scheduled_ts) WHERE status = 'scheduled';
CREATE INDEX work_claimed ON work (deployment) WHERE status = 'claimed';
CREATE INDEX work_by_backfill ON work (backfill_id, interval_start_ts) WHERE backfill_id IS NOT NULL;

-- Flow runs in progress whose programs send heartbeats (workers' polls count); a run whose
-- heartbeats stop is recorded Crashed.
CREATE TABLE live_runs (
    run_id           UUID PRIMARY KEY,
    worker           TEXT,
    heartbeat_ts     BIGINT NOT NULL,
    cancel_requested BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX live_runs_by_heartbeat ON live_runs (heartbeat_ts);

CREATE TABLE workers (
    name         TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    queues       TEXT NOT NULL,                -- JSON array
    deployments  TEXT NOT NULL,                -- JSON array
    last_seen_ts BIGINT NOT NULL,
    state        TEXT NOT NULL                 -- online | stopping | stopped
);

CREATE TABLE backfills (
    id         UUID PRIMARY KEY,
    deployment TEXT NOT NULL,
    start_ts   BIGINT NOT NULL,
    end_ts     BIGINT NOT NULL,
    chunk      TEXT,
    max_active BIGINT NOT NULL,
    status     TEXT NOT NULL,                  -- running | done | cancelled
    queue      TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);

-- A state's rank: 0 while in progress, 1 for Crashed (the server's inference, or a panic),
-- 2 for the other final states, which a late event of the program replaces Crashed with.
UPDATE runs SET state_final = 2 WHERE state_final = 1 AND state <> 'Crashed';

-- A deployment's runs by data interval (gap reports, backfills).
CREATE INDEX runs_by_deployment ON runs (deployment, interval_start_ts) WHERE deployment IS NOT NULL;
