-- One row, rewritten by the readiness probe: proof that the database takes writes right now.
CREATE TABLE server_health (
    id         BIGINT PRIMARY KEY,
    checked_ts BIGINT NOT NULL
);
