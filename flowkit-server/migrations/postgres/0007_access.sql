-- Scoped API keys (stored as the SHA-256 of the key, never the key) and the audit trail of
-- operators' actions.

CREATE TABLE api_keys (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    hash        TEXT NOT NULL UNIQUE,          -- hex SHA-256 of the key
    prefix      TEXT NOT NULL,                 -- the key's first characters, to recognise it
    scopes      TEXT NOT NULL,                 -- read,write,operate,admin (commas)
    created_ts  BIGINT NOT NULL,
    created_by  TEXT NOT NULL
);

CREATE TABLE audit (
    id          UUID PRIMARY KEY,                -- UUID v7: sorts by time
    ts          BIGINT NOT NULL,               -- Unix nanoseconds
    actor       TEXT NOT NULL,                 -- the key's name
    action      TEXT NOT NULL,                 -- trigger | cancel | pause | resume | backfill | ...
    deployment  TEXT,
    flow_run_id UUID,
    backfill_id UUID,
    detail      TEXT
);
CREATE INDEX audit_by_deployment ON audit (deployment, id) WHERE deployment IS NOT NULL;
CREATE INDEX audit_by_run ON audit (flow_run_id) WHERE flow_run_id IS NOT NULL;
CREATE INDEX audit_by_backfill ON audit (backfill_id) WHERE backfill_id IS NOT NULL;
