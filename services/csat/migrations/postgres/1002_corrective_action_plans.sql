-- Corrective action plans: the resource (its actions inside the body) and
-- its filter columns; `cases` holds the linked cases space-separated.
CREATE TABLE corrective_action_plans (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL,
    account_manager TEXT NOT NULL,
    owner TEXT NOT NULL,
    origin BIGINT NOT NULL,
    state BIGINT NOT NULL,
    overdue BIGINT NOT NULL,
    next_due_time BIGINT NOT NULL,
    cases TEXT NOT NULL
);
CREATE INDEX corrective_action_plans_portfolio ON corrective_action_plans (account_manager, overdue, next_due_time);
CREATE INDEX corrective_action_plans_account ON corrective_action_plans (account, state);
CREATE INDEX corrective_action_plans_due ON corrective_action_plans (next_due_time, name);
