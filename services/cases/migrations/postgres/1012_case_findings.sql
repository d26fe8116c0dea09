-- What the portfolio review reads: each case's most severe finding and its
-- deadline, written with every change of the case. -1 marks a case written
-- before these columns existed: a background pass fills it in.
ALTER TABLE cases ADD COLUMN finding_reason BIGINT NOT NULL DEFAULT -1;
ALTER TABLE cases ADD COLUMN finding_due_time BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cases ADD COLUMN chase_highest_step BIGINT NOT NULL DEFAULT 0;

-- A portfolio's cases that need action, in review order, and nothing else.
CREATE INDEX cases_findings ON cases (account_manager, finding_reason, finding_due_time, name)
    WHERE finding_reason > 0;

-- The cases the background pass still has to fill in: empty once it is done.
CREATE INDEX cases_review_backfill ON cases (name) WHERE finding_reason = -1;
