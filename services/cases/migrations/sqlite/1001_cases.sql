-- Cases, their state history (the raw material of every SLA clock's ledger)
-- and their notes.
CREATE TABLE cases (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    account_manager TEXT NOT NULL,
    site TEXT NOT NULL,
    contact TEXT NOT NULL,
    owner TEXT NOT NULL,
    performing_team TEXT NOT NULL,
    type BIGINT NOT NULL,
    priority BIGINT NOT NULL,
    state BIGINT NOT NULL,
    hand_off_code TEXT NOT NULL,
    presented_to_carrier BIGINT NOT NULL,
    withheld_by_dependency BIGINT NOT NULL,
    sla_state BIGINT NOT NULL,
    sla_next_target_time BIGINT NOT NULL,
    jeopardy_flagged BIGINT NOT NULL,
    construction_required BIGINT NOT NULL,
    resolve_time BIGINT NOT NULL
);
CREATE INDEX cases_account ON cases (account, name);
CREATE INDEX cases_portfolio ON cases (account_manager, state, create_time);
CREATE INDEX cases_state ON cases (state, create_time);
CREATE INDEX cases_create_time ON cases (create_time, name);
CREATE INDEX cases_update_time ON cases (update_time, name);
CREATE INDEX cases_sla ON cases (sla_state, sla_next_target_time);

-- Every state a case entered, in order: SLA clocks are read from it.
CREATE TABLE case_states (
    case_name TEXT NOT NULL,
    seq BIGINT NOT NULL,
    state BIGINT NOT NULL,
    enter_time BIGINT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    PRIMARY KEY (case_name, seq)
);

CREATE TABLE notes (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    visibility BIGINT NOT NULL,
    origin BIGINT NOT NULL,
    author TEXT NOT NULL
);
CREATE INDEX notes_parent ON notes (parent, create_time);
