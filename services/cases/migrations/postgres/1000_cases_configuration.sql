-- The cases service's configuration tables: business calendars and hand-off
-- codes. Same bookkeeping columns as every resource table (see
-- concierge_common::resource), plus one column per documented filter field.
CREATE TABLE calendars (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL,
    display_name TEXT NOT NULL,
    time_zone TEXT NOT NULL
);

CREATE TABLE hand_off_codes (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL,
    display_name TEXT NOT NULL,
    presented_to_carrier BIGINT NOT NULL,
    -- Space-separated CaseType names, so that `case_types:REPAIR` matches.
    case_types TEXT NOT NULL
);
