-- KPIs. The targets: one row, "kpiSettings".
CREATE TABLE kpi_settings (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL
);

-- Phone-queue intervals from the contact-centre system; `external_id` is
-- empty when the system gave none, and a (source, external_id) pair names
-- one interval.
CREATE TABLE availability_intervals (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BLOB NOT NULL,
    staff_member TEXT NOT NULL,
    kind BIGINT NOT NULL,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    start_time BIGINT NOT NULL,
    end_time BIGINT NOT NULL
);
CREATE UNIQUE INDEX availability_intervals_external ON availability_intervals (source, external_id) WHERE external_id <> '';
CREATE INDEX availability_intervals_time ON availability_intervals (start_time, name);
CREATE INDEX availability_intervals_agent ON availability_intervals (staff_member, start_time);
CREATE INDEX availability_intervals_end ON availability_intervals (end_time);

-- What the KPIs read of each case, kept from the cases service's events.
-- Times are microseconds (0: not yet); durations in business time are
-- microseconds, -1 when the case had no stopped client clock to read them
-- from (the wall-clock span counts then).
CREATE TABLE kpi_cases (
    case_name TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    account_manager TEXT NOT NULL,
    owner TEXT NOT NULL,
    case_type BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    first_response_time BIGINT NOT NULL,
    first_response_micros BIGINT NOT NULL,
    resolve_time BIGINT NOT NULL,
    resolve_micros BIGINT NOT NULL,
    -- When it last stopped being open (resolved, closed, cancelled, merged);
    -- 0 while open.
    end_time BIGINT NOT NULL,
    reopen_count BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE INDEX kpi_cases_first_response ON kpi_cases (first_response_time);
CREATE INDEX kpi_cases_resolve ON kpi_cases (resolve_time);
CREATE INDEX kpi_cases_open ON kpi_cases (create_time, end_time);

-- The stopped client SLA clocks of those cases.
CREATE TABLE kpi_sla_clocks (
    clock TEXT PRIMARY KEY,
    case_name TEXT NOT NULL,
    stop_time BIGINT NOT NULL,
    met BIGINT NOT NULL
);
CREATE INDEX kpi_sla_clocks_stop ON kpi_sla_clocks (stop_time);

-- What the KPIs read of each dispute, kept from the disputes service's
-- events; a credit in minor units of its currency.
CREATE TABLE kpi_disputes (
    dispute TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    account_manager TEXT NOT NULL,
    owner TEXT NOT NULL,
    submit_time BIGINT NOT NULL,
    close_time BIGINT NOT NULL,
    credit_minor_units BIGINT NOT NULL,
    credit_currency TEXT NOT NULL,
    credit_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE INDEX kpi_disputes_close ON kpi_disputes (close_time);
CREATE INDEX kpi_disputes_credit ON kpi_disputes (credit_time);
