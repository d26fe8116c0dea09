-- Chase runs (one rule applied to one case, from the change that made its
-- condition hold until it cleared, ran out of steps or was stopped) and
-- their steps. Same bookkeeping columns as every resource table (see
-- concierge_common::resource), plus one column per documented filter field.
CREATE TABLE chase_runs (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL,
    rule TEXT NOT NULL,
    state BIGINT NOT NULL,
    steps_taken BIGINT NOT NULL,
    next_step_time BIGINT NOT NULL,
    start_time BIGINT NOT NULL
);

-- At most one ACTIVE run of a rule on a case, whatever the replicas do.
CREATE UNIQUE INDEX chase_runs_active ON chase_runs (parent, rule) WHERE state = 1;
CREATE INDEX chase_runs_parent ON chase_runs (parent, start_time);
CREATE INDEX chase_runs_start ON chase_runs (start_time);
-- The active runs of a rule being disabled or deleted.
CREATE INDEX chase_runs_rule ON chase_runs (rule, state);

CREATE TABLE chase_steps (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    account TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    delete_time BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL,
    chase_run TEXT NOT NULL,
    rule TEXT NOT NULL,
    step_number BIGINT NOT NULL,
    state BIGINT NOT NULL,
    schedule_time BIGINT NOT NULL,
    execute_time BIGINT NOT NULL
);

-- A step of a run exists once: it is what makes a step run once.
CREATE UNIQUE INDEX chase_steps_run ON chase_steps (chase_run, step_number);
CREATE INDEX chase_steps_parent ON chase_steps (parent, schedule_time);
CREATE INDEX chase_steps_schedule ON chase_steps (schedule_time);
