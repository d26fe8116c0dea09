-- Chase rules: the declarative chasing policies (a JP without a reason, an
-- undefined construction, an order not presented to the carrier). Same
-- bookkeeping columns as every resource table (see concierge_common::resource),
-- plus one column per documented filter field.
CREATE TABLE chase_rules (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    display_name TEXT NOT NULL,
    condition_kind BIGINT NOT NULL,
    built_in BIGINT NOT NULL,
    enabled BIGINT NOT NULL,
    -- The calendar its business-time waits count in ('' for the case's own),
    -- so that a calendar a rule counts in is not deleted.
    calendar TEXT NOT NULL
);

CREATE INDEX chase_rules_calendar ON chase_rules (calendar) WHERE calendar <> '';
