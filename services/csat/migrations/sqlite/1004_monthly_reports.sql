-- The account's name, for the monthly report's client lines.
ALTER TABLE portfolios ADD COLUMN display_name TEXT NOT NULL DEFAULT '';

-- Monthly reports, immutable once generated but for their deliveries; the
-- HTML and CSV inside the body.
CREATE TABLE monthly_reports (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    portfolio TEXT NOT NULL,
    month_year BIGINT NOT NULL,
    month_month BIGINT NOT NULL,
    trigger_kind BIGINT NOT NULL
);
CREATE INDEX monthly_reports_create_time ON monthly_reports (create_time, name);
CREATE INDEX monthly_reports_month ON monthly_reports (portfolio, month_year, month_month);
-- Plans opened in a month, per portfolio.
CREATE INDEX corrective_action_plans_created ON corrective_action_plans (create_time);
