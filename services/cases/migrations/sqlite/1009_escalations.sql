-- Escalations of cases: raised by a person or a chase step, acknowledged,
-- resolved or cancelled. Same bookkeeping columns as every resource table
-- (see concierge_common::resource), plus one column per documented filter field.
CREATE TABLE escalations (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    level BIGINT NOT NULL,
    target_team TEXT NOT NULL,
    target_staff_member TEXT NOT NULL,
    state BIGINT NOT NULL,
    delivery_state BIGINT NOT NULL
);

-- A case's escalations, newest first, and the open ones across cases.
CREATE INDEX escalations_parent ON escalations (parent, create_time);
CREATE INDEX escalations_state ON escalations (state, create_time);
