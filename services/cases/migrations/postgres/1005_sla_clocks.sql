-- Every SLA clock as read at the last change of its case or its last
-- at-risk or breach instant: what ListSlaClocks filters and orders on across
-- cases. The clocks of a page are then read live from their ledgers.
-- A clock without a target instant (paused) sorts last: target_time is the
-- largest BIGINT.
CREATE TABLE sla_clocks (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL,
    clock_key TEXT NOT NULL,
    kind BIGINT NOT NULL,
    state BIGINT NOT NULL,
    status BIGINT NOT NULL,
    target_time BIGINT NOT NULL,
    breach_time BIGINT NOT NULL,
    sla_policy TEXT NOT NULL
);
CREATE INDEX sla_clocks_parent ON sla_clocks (parent, target_time, name);
CREATE INDEX sla_clocks_target ON sla_clocks (target_time, name);
CREATE INDEX sla_clocks_state ON sla_clocks (state, target_time, name);
CREATE INDEX sla_clocks_account ON sla_clocks (account, target_time, name);
