-- Persisted timers (SLA at-risk and breach, chase steps, survey delays):
-- claimed with a lease, so that each fires once across replicas and crashes.
CREATE TABLE IF NOT EXISTS timers (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    due_time BIGINT NOT NULL,
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_expire_time BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    payload BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS timers_due ON timers (due_time);
CREATE INDEX IF NOT EXISTS timers_subject ON timers (subject);
