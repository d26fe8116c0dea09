-- Outbound webhooks (the resource, its signing secret inside the body, which
-- is never returned), whether a client principal made it (public events of
-- its account only), and since when it has been active: it delivers the
-- events that occur while it is active, not those of before it was created
-- or of while it was paused.
CREATE TABLE webhooks (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL,
    display_name TEXT NOT NULL,
    event_types TEXT NOT NULL,
    state BIGINT NOT NULL,
    public_only BIGINT NOT NULL DEFAULT 0,
    active_since BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX webhooks_state ON webhooks (state, name);

-- One event's delivery to one webhook, with every attempt (the body), and
-- the event as it is POSTed.
CREATE TABLE webhook_deliveries (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_subject TEXT NOT NULL,
    state BIGINT NOT NULL,
    event BYTEA NOT NULL DEFAULT ''
);
CREATE INDEX webhook_deliveries_parent ON webhook_deliveries (parent, create_time, name);
CREATE INDEX webhook_deliveries_time ON webhook_deliveries (create_time, name);
CREATE INDEX webhook_deliveries_subject ON webhook_deliveries (event_subject);
