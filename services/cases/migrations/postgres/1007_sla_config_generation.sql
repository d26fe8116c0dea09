-- A number every change of an SLA policy or a calendar moves on, in the
-- change's own transaction. CreateCase matches its policy and computes its
-- clocks from a snapshot kept in memory, and writes the case only while the
-- number is still the snapshot's: a change on any replica makes the create
-- read the policies again instead of pinning a stale one.
CREATE TABLE sla_config_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO sla_config_generation (id, generation) VALUES (1, 1);
