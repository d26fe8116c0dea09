-- Which SLA events have fired: each clock is reported at risk once and
-- breached once, however often its timers are re-armed or swept.
CREATE TABLE sla_events_fired (
    clock TEXT NOT NULL,
    kind TEXT NOT NULL,
    fire_time BIGINT NOT NULL,
    PRIMARY KEY (clock, kind)
);
