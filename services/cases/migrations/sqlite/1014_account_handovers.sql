-- The last change of each account's manager that moved its open cases,
-- by the account's update time: an older change delivered late (events may
-- come again, and out of order after a retry) moves nothing back.
CREATE TABLE account_handovers (
    account TEXT PRIMARY KEY,
    update_time BIGINT NOT NULL
);
