-- SLA policies (the current revision) and every revision ever written: a case
-- pins the revision it started with, so edits never move running deadlines.
CREATE TABLE sla_policies (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL,
    display_name TEXT NOT NULL,
    precedence BIGINT NOT NULL,
    calendar TEXT NOT NULL,
    case_types TEXT NOT NULL,
    priorities TEXT NOT NULL,
    account_tiers TEXT NOT NULL
);

CREATE TABLE sla_policy_revisions (
    policy TEXT NOT NULL,
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (policy, revision)
);
