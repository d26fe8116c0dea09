-- The disputes service's own tables. Every resource table has the same
-- bookkeeping columns (see concierge_common::resource) plus one column per
-- documented filter field; the body is the encoded protobuf resource.
CREATE TABLE disputes (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    account_manager TEXT NOT NULL,
    state BIGINT NOT NULL,
    owner TEXT NOT NULL,
    overdue BIGINT NOT NULL,
    related_case TEXT NOT NULL,
    invoice_number TEXT NOT NULL,
    approval_state BIGINT NOT NULL,
    total_disputed_currency_code TEXT NOT NULL,
    total_disputed_minor_units BIGINT NOT NULL,
    approved_credit_minor_units BIGINT NOT NULL,
    vetting_due_time BIGINT NOT NULL
);
CREATE INDEX disputes_account ON disputes (account, create_time, name);
CREATE INDEX disputes_portfolio ON disputes (account_manager, state, create_time);
CREATE INDEX disputes_owner ON disputes (owner, state, create_time);
CREATE INDEX disputes_state ON disputes (state, create_time);
CREATE INDEX disputes_create_time ON disputes (create_time, name);
CREATE INDEX disputes_update_time ON disputes (update_time, name);
-- The vetting clocks still running, by due time: what the overdue sweep reads.
CREATE INDEX disputes_vetting_due ON disputes (vetting_due_time, name) WHERE state IN (2, 3);

-- Every transition and recorded action, append-only.
CREATE TABLE dispute_history_entries (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state BIGINT NOT NULL,
    to_state BIGINT NOT NULL
);
CREATE INDEX dispute_history_entries_parent ON dispute_history_entries (parent, name);
CREATE INDEX dispute_history_entries_create_time ON dispute_history_entries (parent, create_time, name);

-- Supporting documents: the row is written once the file is whole in the
-- file store, under "{name}/{sha256}".
CREATE TABLE dispute_documents (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    type BIGINT NOT NULL,
    media_type TEXT NOT NULL,
    uploaded_by TEXT NOT NULL
);
CREATE INDEX dispute_documents_parent ON dispute_documents (parent, name);
CREATE INDEX dispute_documents_create_time ON dispute_documents (parent, create_time, name);

-- The settings: one row, "disputeSettings".
CREATE TABLE dispute_settings (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL
);
