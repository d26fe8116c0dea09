-- Re-arming the SLA timers of open cases after a calendar changed: one job
-- per calendar, written in UpdateCalendar's own transaction and worked in
-- keyset batches (by case name) by a background worker, which records how
-- far it got, so that a restart resumes where it stopped. A new change of
-- the same calendar starts its job over (a new generation).
CREATE TABLE calendar_rearms (
    calendar TEXT PRIMARY KEY,
    -- The calendar's etag as the change left it, for the log.
    calendar_etag TEXT NOT NULL,
    generation BIGINT NOT NULL,
    after_case TEXT NOT NULL,
    create_time BIGINT NOT NULL
);
