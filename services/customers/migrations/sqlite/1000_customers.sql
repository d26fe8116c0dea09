-- The customers service's own tables. Every resource table has the same
-- bookkeeping columns (see concierge_common::resource) plus one column per
-- documented filter field; the body is the encoded protobuf resource.
CREATE TABLE accounts (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    display_name TEXT NOT NULL,
    tier BIGINT NOT NULL,
    account_manager TEXT NOT NULL,
    billing_account TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    state BIGINT NOT NULL,
    mrc_currency_code TEXT NOT NULL,
    mrc_minor_units BIGINT NOT NULL
);
CREATE INDEX accounts_parent ON accounts (parent, name);
CREATE INDEX accounts_account ON accounts (account, name);
CREATE INDEX accounts_account_manager ON accounts (account_manager, name);
CREATE INDEX accounts_update_time ON accounts (update_time, name);
CREATE INDEX accounts_display_name ON accounts (display_name, name);

CREATE TABLE contacts (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    display_name TEXT NOT NULL,
    email TEXT NOT NULL,
    client_delegate BIGINT NOT NULL,
    language_code TEXT NOT NULL
);
CREATE INDEX contacts_parent ON contacts (parent, name);
CREATE INDEX contacts_account ON contacts (account, name);

CREATE TABLE sites (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    display_name TEXT NOT NULL,
    time_zone TEXT NOT NULL
);
CREATE INDEX sites_parent ON sites (parent, name);
CREATE INDEX sites_account ON sites (account, name);

CREATE TABLE inventory_items (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    kind BIGINT NOT NULL,
    product TEXT NOT NULL,
    role BIGINT NOT NULL,
    carrier TEXT NOT NULL,
    circuit_id TEXT NOT NULL,
    monitored BIGINT NOT NULL,
    state BIGINT NOT NULL
);
CREATE INDEX inventory_items_parent ON inventory_items (parent, name);
CREATE INDEX inventory_items_account ON inventory_items (account, name);
CREATE INDEX inventory_items_circuit_id ON inventory_items (circuit_id);

CREATE TABLE interactions (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    channel BIGINT NOT NULL,
    direction BIGINT NOT NULL,
    occur_time BIGINT NOT NULL,
    agent TEXT NOT NULL,
    contact TEXT NOT NULL,
    case_name TEXT NOT NULL
);
CREATE INDEX interactions_parent ON interactions (parent, name);
CREATE INDEX interactions_account ON interactions (account, name);
CREATE INDEX interactions_account_occur_time ON interactions (account, occur_time);
CREATE INDEX interactions_case_name ON interactions (case_name);

CREATE TABLE follow_ups (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    state BIGINT NOT NULL,
    owner TEXT NOT NULL,
    due_time BIGINT NOT NULL,
    case_name TEXT NOT NULL
);
CREATE INDEX follow_ups_parent ON follow_ups (parent, name);
CREATE INDEX follow_ups_account ON follow_ups (account, name);
CREATE INDEX follow_ups_owner_due_time ON follow_ups (owner, due_time);
CREATE INDEX follow_ups_state_due_time ON follow_ups (state, due_time);

CREATE TABLE staff_members (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    display_name TEXT NOT NULL,
    email TEXT NOT NULL,
    role BIGINT NOT NULL,
    manager TEXT NOT NULL,
    team TEXT NOT NULL,
    active BIGINT NOT NULL
);
CREATE INDEX staff_members_parent ON staff_members (parent, name);
CREATE INDEX staff_members_account ON staff_members (account, name);
CREATE INDEX staff_members_manager ON staff_members (manager);

