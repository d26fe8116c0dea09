-- The open cases at a site, for a repair's triage (which other cases are on
-- the same items).
CREATE INDEX cases_site ON cases (site, state);
