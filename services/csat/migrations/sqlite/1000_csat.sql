-- The CSAT service's own tables. Every resource table has the same
-- bookkeeping columns (see concierge_common::resource) plus one column per
-- documented filter field; the body is the encoded protobuf resource.
CREATE TABLE survey_templates (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    display_name TEXT NOT NULL,
    kind BIGINT NOT NULL
);

CREATE TABLE survey_triggers (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    display_name TEXT NOT NULL,
    event BIGINT NOT NULL,
    survey_template TEXT NOT NULL,
    enabled BIGINT NOT NULL
);
CREATE INDEX survey_triggers_template ON survey_triggers (survey_template);

-- One survey about one case to one contact. Besides the filter columns:
-- the SHA-256 of its response token (the token itself is only in the
-- e-mail), what the response page shows and the thank-you after it (fixed
-- when it was sent, so a template edited later does not change a question
-- already asked), the case's title for the e-mail, and the suppression and
-- response window it was scheduled with.
CREATE TABLE surveys (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    account_manager TEXT NOT NULL,
    contact TEXT NOT NULL,
    case_name TEXT NOT NULL,
    case_type BIGINT NOT NULL,
    kind BIGINT NOT NULL,
    state BIGINT NOT NULL,
    detractor BIGINT NOT NULL,
    survey_trigger TEXT NOT NULL,
    send_time BIGINT NOT NULL,
    submit_time BIGINT NOT NULL,
    score BIGINT NOT NULL,
    token_hash TEXT,
    invitation BLOB,
    thank_you TEXT NOT NULL DEFAULT '',
    case_title TEXT NOT NULL DEFAULT '',
    suppression_days BIGINT NOT NULL DEFAULT 0,
    response_window_seconds BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX surveys_token_hash ON surveys (token_hash);
CREATE INDEX surveys_contact_sent ON surveys (contact, send_time);
CREATE INDEX surveys_case ON surveys (case_name, state);
CREATE INDEX surveys_create_time ON surveys (create_time, name);
CREATE INDEX surveys_account ON surveys (account, create_time, name);
CREATE INDEX surveys_portfolio ON surveys (account_manager, create_time, name);
CREATE INDEX surveys_trigger ON surveys (survey_trigger, state);
