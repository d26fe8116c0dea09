-- Each account's account manager today (its portfolio), kept from the
-- customers service's account events, with the update_time of the change
-- applied so that an older change delivered late is ignored.
CREATE TABLE portfolios (
    account TEXT PRIMARY KEY,
    account_manager TEXT NOT NULL,
    update_time BIGINT NOT NULL
);
-- Scores read answered surveys of an account by the time they were sent.
CREATE INDEX surveys_account_sent ON surveys (account, send_time);
CREATE INDEX surveys_sent ON surveys (send_time);
