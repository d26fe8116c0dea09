-- Links between cases; every link has its inverse on the other case.
CREATE TABLE case_links (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL,
    type BIGINT NOT NULL,
    target TEXT NOT NULL
);
CREATE INDEX case_links_parent ON case_links (parent, create_time);
CREATE INDEX case_links_target ON case_links (target);
