-- Concurrency and rate limits shared by every program using this server.

-- A limit, by tag (concurrency) or name (rate); either or both.
CREATE TABLE limits (
    name         TEXT PRIMARY KEY,
    concurrency  BIGINT,                 -- slots, NULL: no concurrency limit
    rate_count   BIGINT,                 -- calls per rate_per_ms, NULL: no rate limit
    rate_per_ms  BIGINT,
    burst        BIGINT,
    tat_ts       BIGINT,                 -- the rate's theoretical arrival time (GCRA), Unix ns
    updated_ts   BIGINT NOT NULL
);

-- A slot held by a task run. Its id is the holder's ticket; `live_id` is the run whose
-- heartbeats keep it (its flow run, or the task run itself outside a flow).
CREATE TABLE limit_slots (
    id           BLOB PRIMARY KEY,
    tag          TEXT NOT NULL,
    task_run_id  BLOB NOT NULL,
    flow_run_id  BLOB,
    live_id      BLOB NOT NULL,
    acquired_ts  BIGINT NOT NULL
);
CREATE INDEX limit_slots_by_tag ON limit_slots (tag);
CREATE INDEX limit_slots_by_live ON limit_slots (live_id);

-- Task runs waiting for a slot, in arrival order (`seq`), each with its ticket.
CREATE TABLE limit_waiters (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           BLOB NOT NULL UNIQUE,
    tag          TEXT NOT NULL,
    seen_ts      BIGINT NOT NULL
);
CREATE INDEX limit_waiters_by_tag ON limit_waiters (tag, seq);
