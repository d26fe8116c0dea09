-- API keys. Only a SHA-256 of each key's secret is kept: the secret itself is
-- shown once, when the key is minted. Secrets are 256 random bits, so a fast
-- hash is enough; a slow password hash would only slow every request.
CREATE TABLE api_keys (
    name TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    account TEXT NOT NULL,
    staff_member TEXT NOT NULL,
    display_name TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    expire_time BIGINT NOT NULL,
    revoke_time BIGINT NOT NULL DEFAULT 0
);
