-- Issued control documents, archived exactly as sent (the CSV and HTML in
-- the body), under the account they describe. Same bookkeeping columns as
-- every resource table (see concierge_common::resource), plus one column
-- per documented filter field, and the week it went out.
CREATE TABLE control_documents (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL,
    trigger BIGINT NOT NULL,
    as_of_time BIGINT NOT NULL,
    row_count BIGINT NOT NULL,
    -- The week it was sent in the account's time zone, "2026-W49"; '' until sent.
    sent_week TEXT NOT NULL
);

CREATE INDEX control_documents_parent ON control_documents (parent, create_time);
CREATE INDEX control_documents_create ON control_documents (create_time);
CREATE INDEX control_documents_sent ON control_documents (parent, sent_week);
-- The weekly run sends an account one document a week, whatever the replicas.
CREATE UNIQUE INDEX control_documents_weekly ON control_documents (parent, sent_week)
    WHERE trigger = 1 AND sent_week <> '';

-- The weekly run's settings: one row, "controlDocumentSettings".
CREATE TABLE control_document_settings (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL
);

-- An account's latest public updates, for its control document.
CREATE INDEX notes_account ON notes (account, visibility, parent, create_time);
