-- Events a consumer of this service has taken effect for, written in the
-- same transaction as the effect: a redelivered event finds its row and is
-- skipped, so at-least-once delivery takes effect once.
CREATE TABLE IF NOT EXISTS inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    receive_time BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS inbox_age ON inbox (receive_time);

-- Events a consumer gave up on after its last delivery, with why, for a
-- person to look at (and replay once mended).
CREATE TABLE IF NOT EXISTS dead_letters (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    subject TEXT NOT NULL,
    deliveries BIGINT NOT NULL,
    error TEXT NOT NULL,
    event BYTEA NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
