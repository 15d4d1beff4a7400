-- Automations: rules that notify (webhook, Slack) when flow runs fail, are late or miss their
-- SLA, and may pause a deployment after consecutive failures (the circuit breaker). What they
-- send goes through an outbox (deliveries), sent by a background deliverer with retries.

CREATE TABLE automations (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    spec        TEXT NOT NULL,                 -- JSON: flowkit_api::automation::AutomationSpec
    created_ts  BIGINT NOT NULL,
    created_by  TEXT NOT NULL                  -- the key's name
);

-- One notification to one target. (automation_id, event_key, target_index) is unique: an
-- event seen twice, or by two servers, or a late run noticed on every tick, is sent once.
CREATE TABLE deliveries (
    id            UUID PRIMARY KEY,             -- UUID v7: sorts by time
    automation_id UUID NOT NULL,
    event_key     TEXT NOT NULL,               -- state:<run>:<state> | late:<run> | sla:<run> | breaker:<run>
    target_index  BIGINT NOT NULL,
    format        TEXT NOT NULL,               -- webhook | slack
    url           TEXT NOT NULL,
    payload       TEXT NOT NULL,               -- the JSON body to send
    summary       TEXT NOT NULL,
    flow_run_id   UUID,
    deployment    TEXT,
    status        TEXT NOT NULL,               -- pending | delivered | failed
    attempts      BIGINT NOT NULL DEFAULT 0,
    next_ts       BIGINT NOT NULL,             -- when it may be tried (again), Unix nanoseconds
    created_ts    BIGINT NOT NULL,
    done_ts       BIGINT,
    last_error    TEXT
);
CREATE UNIQUE INDEX deliveries_once ON deliveries (automation_id, event_key, target_index);
CREATE INDEX deliveries_due ON deliveries (next_ts) WHERE status = 'pending';
CREATE INDEX deliveries_by_automation ON deliveries (automation_id, id);

-- Each try of a delivery.
CREATE TABLE delivery_attempts (
    delivery_id UUID NOT NULL,
    attempt     BIGINT NOT NULL,
    ts          BIGINT NOT NULL,
    status_code BIGINT,                        -- the HTTP status, if one came back
    error       TEXT,                          -- why it failed, if it did
    millis      BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Who paused a deployment when an automation did (the circuit breaker): its name. NULL when
-- an operator paused it (the audit trail says who) or it runs.
ALTER TABLE deployments ADD COLUMN paused_by TEXT;
