-- The example service's one table: what its clock reads, and when its
-- worker last ran.
CREATE TABLE example_clock (
    name TEXT PRIMARY KEY,
    now_micros BIGINT NOT NULL,
    worker_runs BIGINT NOT NULL DEFAULT 0
);
INSERT INTO example_clock (name, now_micros) VALUES ('testClock', 1798761600000000);
