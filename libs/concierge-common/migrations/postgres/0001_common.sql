-- Tables every service has in its own database.

-- Transactional outbox: written in the same transaction as the change it
-- announces, relayed to the bus afterwards, at least once.
CREATE TABLE IF NOT EXISTS outbox (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    subject TEXT NOT NULL,
    account TEXT NOT NULL,
    visibility BIGINT NOT NULL,
    occur_time BIGINT NOT NULL,
    event BYTEA NOT NULL,
    publish_time BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (publish_time, seq);

-- request_id idempotency: the first response to a key is kept and replayed.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope TEXT NOT NULL,
    request_id TEXT NOT NULL,
    method TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response BYTEA NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (scope, request_id)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_age ON idempotency_keys (create_time);

-- Secrets a service generates for itself on first start (page token key),
-- shared by every replica through the database.
CREATE TABLE IF NOT EXISTS service_secrets (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
