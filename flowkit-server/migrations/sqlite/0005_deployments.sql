-- Deployments registered by serving programs: the spec as JSON (flowkit::serve::DeploymentSpec).
CREATE TABLE deployments (
    name       TEXT PRIMARY KEY,
    flow       TEXT NOT NULL,
    spec       TEXT NOT NULL,
    updated_ts BIGINT NOT NULL
);
