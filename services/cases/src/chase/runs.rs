//! Runs starting and ending with the changes of their case, in the change's
//! transaction: the case carries which rules hold on it (`holding_rules`),
//! so a change whose conditions did not move costs one read of the enabled
//! rules and nothing else; one that moved them starts or ends the runs, with
//! their first step's row, its timer and their events.

use concierge_common::clock;
use concierge_common::crud::{Resource, strip_meta};
use concierge_common::error::Result;
use concierge_common::outbox::{self, NewEvent};
use concierge_common::principal::Principal;
use concierge_common::resource::{self, Stored};
use concierge_common::storage::Conn;
use concierge_common::timers;
use concierge_proto::catalogue::{self, EventOf};
use concierge_proto::concierge::cases::v1::*;
use concierge_proto::events::Visibility;
use jiff::{SignedDuration, Timestamp};

use super::rules::{LiveRules, is_open};
use crate::Rules;
use crate::resources::{CHASE_RUNS, CHASE_STEPS};
use crate::store::chase::{STEP, step_payload, step_timer};

/// Who the chase engine acts as: on its notes, escalations and events.
pub(crate) fn engine() -> Principal {
    Principal::system("chase-rules")
}

/// What a change does to a case's runs.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    /// Rules whose condition came to hold.
    pub(crate) started: Vec<String>,
    /// Rules whose condition cleared.
    pub(crate) cleared: Vec<String>,
    /// Rules that stopped applying, with why: disabled or deleted, or the
    /// case closed.
    pub(crate) stopped: Vec<(String, String)>,
}

impl Turn {
    pub(crate) fn is_empty(&self) -> bool {
        self.started.is_empty() && self.cleared.is_empty() && self.stopped.is_empty()
    }
}

/// Works out what `c`, as about to be written, does to its runs against
/// `rules`, and records the rules that now hold on it.
pub(crate) fn settle(rules: &LiveRules, c: &mut Case) -> Turn {
    let now_holding = rules.holding(c);
    let open = is_open(c);
    let summary = c.chase.get_or_insert_with(Default::default);
    let mut turn = Turn::default();
    for rule in &summary.holding_rules {
        if now_holding.contains(rule) {
            continue;
        }
        if rules.get(rule).is_none() {
            turn.stopped
                .push((rule.clone(), "the rule was disabled or deleted".into()));
        } else if !open {
            turn.stopped
                .push((rule.clone(), "the case is no longer open".into()));
        } else {
            turn.cleared.push(rule.clone());
        }
    }
    let summary = c.chase.get_or_insert_with(Default::default);
    turn.started = now_holding
        .iter()
        .filter(|r| !summary.holding_rules.contains(r))
        .cloned()
        .collect();
    summary.holding_rules = now_holding;
    if c.chase
        .as_ref()
        .is_some_and(|s| *s == CaseChaseSummary::default())
    {
        c.chase = None;
    }
    turn
}

/// The run a rule starts on `c` at `now`, its first step, and when that
/// step's timer is due. A first step that waits in business time is
/// scheduled by the sweep, which may ask for the case's time zone (never
/// inside a transaction): its timer is due at once and its schedule unset.
pub(crate) fn begin(rule: &ChaseRule, c: &Case, now: i64) -> (ChaseRun, ChaseStep, Timestamp) {
    let id = uuid::Uuid::now_v7();
    let run_name = format!("{}/chaseRuns/{id}", c.name);
    let start = clock::from_micros(now);
    let first = rule.steps.first().cloned().unwrap_or_default();
    let due = scheduled(&first, start);
    let step = ChaseStep {
        name: format!("{}/chaseSteps/{id}-1", c.name),
        chase_run: run_name.clone(),
        rule: rule.name.clone(),
        step_number: 1,
        state: chase_step::State::Scheduled as i32,
        wait: first.wait,
        basis: first.basis,
        schedule_time: due.map(clock::to_proto),
        ..Default::default()
    };
    let run = ChaseRun {
        name: run_name,
        rule: rule.name.clone(),
        rule_display_name: rule.display_name.clone(),
        state: chase_run::State::Active as i32,
        missing_description: rule
            .condition
            .as_ref()
            .map(|k| k.missing_description.clone())
            .unwrap_or_default(),
        steps_taken: 0,
        next_step_number: 1,
        next_step_time: due.map(clock::to_proto),
        start_time: clock::micros_to_proto(now),
        ..Default::default()
    };
    (run, step, due.unwrap_or(start))
}

/// When `step` falls due counting from `from`, if that is wall-clock
/// arithmetic; None when it waits in business time (a zero wait is the same
/// in both).
pub(crate) fn scheduled(step: &ChaseRuleStep, from: Timestamp) -> Option<Timestamp> {
    let wait = step
        .wait
        .as_ref()
        .map(|d| SignedDuration::new(d.seconds, d.nanos))
        .unwrap_or_default();
    let business = step.basis == TimeBasis::Business as i32;
    if business && !wait.is_zero() {
        return None;
    }
    Some(from.checked_add(wait).unwrap_or(from))
}

/// The case's chase summary from its runs that are active or exhausted (its
/// holding rules already settled): an exhausted run still counts for the
/// stage reached while its rule holds, its latest one only.
pub(crate) fn summarise(summary: &mut CaseChaseSummary, runs: &[&ChaseRun]) {
    let active: Vec<&ChaseRun> = runs
        .iter()
        .filter(|r| r.state == chase_run::State::Active as i32)
        .copied()
        .collect();
    let exhausted = summary.holding_rules.iter().filter_map(|rule| {
        if active.iter().any(|r| r.rule == *rule) {
            return None;
        }
        runs.iter()
            .filter(|r| r.rule == *rule && r.state == chase_run::State::Exhausted as i32)
            .max_by_key(|r| r.start_time.map(|t| (t.seconds, t.nanos)))
            .copied()
    });
    summary.active_run_count = i32::try_from(active.len()).unwrap_or(i32::MAX);
    summary.highest_step_reached = active
        .iter()
        .copied()
        .chain(exhausted)
        .map(|r| r.steps_taken)
        .max()
        .unwrap_or(0);
    summary.next_step_time = active
        .iter()
        .filter_map(|r| r.next_step_time)
        .min_by_key(|t| (t.seconds, t.nanos));
    let mut rules: Vec<String> = active.iter().map(|r| r.rule.clone()).collect();
    rules.sort();
    summary.active_rules = rules;
}

/// Records an event about a run or step of `c`'s, as the chase engine.
pub(crate) async fn record<M: prost::Message + prost::Name>(
    conn: &mut Conn<'_>,
    event: EventOf<M>,
    c: &Case,
    subject: &str,
    payload: &M,
    now: i64,
) -> Result<()> {
    outbox::record(
        conn,
        NewEvent {
            event,
            source: crate::EVENTS.source,
            subject,
            account: &c.account,
            visibility: Visibility::Internal,
            actor: &engine(),
            request_id: "",
            occur_time: clock::from_micros(now),
            payload,
        },
    )
    .await
    .map(drop)
}

/// Writes a run that begins: its row, its first step's row, the step's
/// timer and `chase_run_started`.
pub(crate) async fn insert_begun(
    conn: &mut Conn<'_>,
    c: &Case,
    run: &ChaseRun,
    step: &ChaseStep,
    due: Timestamp,
    now: i64,
) -> Result<()> {
    insert(conn, &CHASE_RUNS, &c.name, run, now).await?;
    insert(conn, &CHASE_STEPS, &c.name, step, now).await?;
    timers::arm(
        conn,
        &step_timer(&run.name),
        STEP,
        &c.name,
        due,
        &step_payload(1),
    )
    .await?;
    record(
        conn,
        catalogue::cases::CHASE_RUN_STARTED,
        c,
        &run.name,
        run,
        now,
    )
    .await
}

async fn insert<R: Resource<Rules>>(
    conn: &mut Conn<'_>,
    kind: &'static resource::Kind,
    parent: &str,
    r: &R,
    now: i64,
) -> Result<()> {
    let stored = Stored {
        name: r.name().to_string(),
        parent: parent.to_string(),
        account: String::new(),
        create_time: now,
        update_time: now,
        delete_time: 0,
        revision: 1,
        body: strip_meta::<R, Rules>(r),
    };
    resource::insert(conn, kind, &stored, &r.columns()).await
}

/// Inserts a new row for `r`, or writes it over `stored` (read in this
/// transaction) as its next revision.
pub(crate) async fn save<R: Resource<Rules>>(
    conn: &mut Conn<'_>,
    kind: &'static resource::Kind,
    parent: &str,
    r: &R,
    stored: Option<&Stored>,
    now: i64,
) -> Result<()> {
    let Some(stored) = stored else {
        return insert(conn, kind, parent, r, now).await;
    };
    let next = Stored {
        update_time: now.max(stored.update_time),
        revision: stored.revision + 1,
        body: strip_meta::<R, Rules>(r),
        ..stored.clone()
    };
    resource::update(conn, kind, &next, stored.revision, &r.columns()).await
}

/// Ends an active run (CLEARED or CANCELLED, with why), skips the step it
/// was waiting for, disarms that step's timer and records the event.
pub(crate) async fn end(
    conn: &mut Conn<'_>,
    c: &Case,
    run: &mut ChaseRun,
    stored: &Stored,
    state: chase_run::State,
    reason: &str,
    now: i64,
) -> Result<()> {
    let waiting = run.next_step_number;
    run.state = state as i32;
    run.end_time = clock::micros_to_proto(now);
    run.next_step_number = 0;
    run.next_step_time = None;
    if state == chase_run::State::Cancelled {
        run.cancel_reason = reason.to_string();
    }
    save(conn, &CHASE_RUNS, &c.name, run, Some(stored), now).await?;
    if waiting > 0 {
        let step_name = step_name(&run.name, waiting);
        if let Some(row) = resource::get_for_update(conn, &CHASE_STEPS, &step_name).await? {
            let mut step: ChaseStep =
                concierge_common::crud::Store::decode::<ChaseStep, Rules>(&row)?;
            if step.state == chase_step::State::Scheduled as i32 {
                step.state = chase_step::State::Skipped as i32;
                save(conn, &CHASE_STEPS, &c.name, &step, Some(&row), now).await?;
            }
        }
    }
    timers::disarm(conn, &step_timer(&run.name)).await?;
    let event = if state == chase_run::State::Cleared {
        catalogue::cases::CHASE_RUN_CLEARED
    } else {
        catalogue::cases::CHASE_RUN_CANCELLED
    };
    record(conn, event, c, &run.name.clone(), run, now).await
}

/// The name of step `n` of `run` ("cases/c/chaseRuns/r" → "cases/c/chaseSteps/r-n").
pub(crate) fn step_name(run: &str, n: i32) -> String {
    match run.split_once("/chaseRuns/") {
        Some((case, id)) => format!("{case}/chaseSteps/{id}-{n}"),
        None => format!("{run}-{n}"),
    }
}

/// Starts and ends the runs of a change of `c` (already settled into
/// `turn`), and brings the case's summary of its active runs up to date.
pub(crate) async fn apply(
    conn: &mut Conn<'_>,
    rules: &LiveRules,
    c: &mut Case,
    turn: &Turn,
    now: i64,
) -> Result<()> {
    if turn.is_empty() {
        return Ok(());
    }
    let mut active: Vec<_> = crate::store::chase::current_runs(conn, &c.name)
        .await?
        .into_iter()
        .filter(|(r, _)| r.state == chase_run::State::Active as i32)
        .collect();
    let ending = turn
        .cleared
        .iter()
        .map(|r| (r, chase_run::State::Cleared, ""))
        .chain(
            turn.stopped
                .iter()
                .map(|(r, why)| (r, chase_run::State::Cancelled, why.as_str())),
        );
    for (rule, state, why) in ending {
        if let Some(i) = active.iter().position(|(run, _)| run.rule == *rule) {
            let (mut run, stored) = active.swap_remove(i);
            end(conn, c, &mut run, &stored, state, why, now).await?;
        }
    }
    for rule in &turn.started {
        let Some(live) = rules.get(rule) else {
            continue;
        };
        let (run, step, due) = begin(&live.rule, c, now);
        insert_begun(conn, c, &run, &step, due, now).await?;
    }
    resummarise(conn, c).await
}

/// Brings `c`'s chase summary up to date with its runs as this transaction
/// sees them.
pub(crate) async fn resummarise(conn: &mut Conn<'_>, c: &mut Case) -> Result<()> {
    let runs = crate::store::chase::current_runs(conn, &c.name).await?;
    let refs: Vec<&ChaseRun> = runs.iter().map(|(r, _)| r).collect();
    summarise(c.chase.get_or_insert_with(Default::default), &refs);
    if c.chase
        .as_ref()
        .is_some_and(|s| *s == CaseChaseSummary::default())
    {
        c.chase = None;
    }
    Ok(())
}
