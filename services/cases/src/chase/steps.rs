//! Due chase steps, taken by the timer sweep on whichever replica claims
//! their timer. What a step needs from elsewhere (the staff directory's
//! chain, a calendar in the case's time zone) is asked first, outside any
//! transaction; then one transaction completes the timer, locks the case and
//! the run, checks the condition again against the rule as it is now, and
//! writes the step, its note and escalation, the next step and its timer,
//! the events and the case's summary together. A timer another replica took
//! or a step already taken changes nothing: a step runs once.

use concierge_common::clock;
use concierge_common::crud::{Ctx, Store, insert_new};
use concierge_common::error::{Error, Result};
use concierge_common::resource;
use concierge_common::storage::Conn;
use concierge_common::timers::{self, Claimed};
use concierge_proto::catalogue;
use concierge_proto::concierge::cases::v1::*;
use jiff::{SignedDuration, Timestamp};

use super::rules::{LiveRule, LiveRules, is_open, render};
use super::runs::{self, end, engine, save, scheduled, step_name};
use crate::resources::{CASES, CHASE_RULES, CHASE_RUNS, CHASE_STEPS};
use crate::store::chase::{STEP, step_of, step_payload, step_timer};
use crate::{Cases, EVENTS, RULES, Rules, calendar, store};

/// Who an escalating action goes to, or why it cannot go.
type Target = std::result::Result<(String, String), String>;

/// What a step needs that is not in the database, asked before its
/// transaction.
#[derive(Default)]
struct Prepared {
    /// Per action of the step: where an escalation goes.
    targets: Vec<Option<Target>>,
    /// When this step falls due, for a first step that waits in business
    /// time and has no schedule yet.
    this_due: Option<Timestamp>,
    /// When the step after it falls due, if it waits in business time.
    next_due: Option<Timestamp>,
}

fn wait_of(step: &ChaseRuleStep) -> SignedDuration {
    step.wait
        .as_ref()
        .map(|d| SignedDuration::new(d.seconds, d.nanos))
        .unwrap_or_default()
}

impl Cases {
    /// Takes the due steps of `claimed` (timers of kind `chase_step`), each
    /// in its own transaction; returns how many ran. One that cannot be
    /// taken now (the directory unreachable) is logged and tried again when
    /// its lease runs out.
    pub(crate) async fn take_chase_steps(&self, owner: &str, claimed: &[Claimed]) -> usize {
        let mut taken = 0;
        for timer in claimed {
            match self.take_step(owner, timer).await {
                Ok(true) => taken += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(timer = %timer.id, error = %e, "could not take a chase step")
                }
            }
        }
        if taken > 0 {
            metrics::counter!("concierge_chase_steps_taken_total").increment(taken as u64);
        }
        taken
    }

    /// One due step; true when it ran (DONE or FAILED).
    async fn take_step(&self, owner: &str, timer: &Claimed) -> Result<bool> {
        let Some(run_name) = timer.id.strip_suffix(":step") else {
            return Ok(false);
        };
        let n = step_of(&timer.payload).unwrap_or(0);
        let now = clock::from_micros(self.store().now());
        let prepared = self.prepare(&timer.subject, run_name, n, now).await?;

        let mut tx = self.store().db().begin().await?;
        if !timers::complete(&mut tx, owner, timer).await? {
            return Ok(false);
        }
        let mut conn = tx.conn();
        let now_us = clock::to_micros(now);
        let Some(case_row) = resource::get_for_update(&mut conn, &CASES, &timer.subject)
            .await?
            .filter(|s| s.delete_time == 0)
        else {
            tx.commit().await?;
            return Ok(false);
        };
        let mut c: Case = Store::decode::<Case, Rules>(&case_row)?;
        let Some(run_row) = resource::get_for_update(&mut conn, &CHASE_RUNS, run_name).await?
        else {
            tx.commit().await?;
            return Ok(false);
        };
        let mut run: ChaseRun = Store::decode::<ChaseRun, Rules>(&run_row)?;
        if run.state != chase_run::State::Active as i32 || run.next_step_number != n {
            tx.commit().await?;
            return Ok(false);
        }
        let rules = LiveRules::new(current_rule(&mut conn, &run.rule).await?);
        let mut ran = false;
        match rules.get(&run.rule) {
            None => {
                let why = "the rule was disabled or deleted";
                end(
                    &mut conn,
                    &c,
                    &mut run,
                    &run_row,
                    chase_run::State::Cancelled,
                    why,
                    now_us,
                )
                .await?;
                let_go(&mut c, &run.rule);
            }
            Some(_) if !is_open(&c) => {
                let why = "the case is no longer open";
                end(
                    &mut conn,
                    &c,
                    &mut run,
                    &run_row,
                    chase_run::State::Cancelled,
                    why,
                    now_us,
                )
                .await?;
                let_go(&mut c, &run.rule);
            }
            Some(live) if !live.holds(&c) => {
                end(
                    &mut conn,
                    &c,
                    &mut run,
                    &run_row,
                    chase_run::State::Cleared,
                    "",
                    now_us,
                )
                .await?;
                let_go(&mut c, &run.rule);
            }
            Some(live) => {
                ran = take(&mut conn, &c, live, &mut run, &run_row, n, &prepared, now).await?;
            }
        }
        runs::resummarise(&mut conn, &mut c).await?;
        store::cases::write_locked(&mut conn, &case_row, &c).await?;
        tx.commit().await?;
        self.store().nudge();
        Ok(ran)
    }

    /// Asks what step `n` of `run_name` needs from outside the database,
    /// reading the case, run and rule as they are now (the transaction
    /// checks them again).
    async fn prepare(
        &self,
        case_name: &str,
        run_name: &str,
        n: i32,
        now: Timestamp,
    ) -> Result<Prepared> {
        let (c, run, rule) = {
            let mut pooled = self.store().db().acquire().await?;
            let mut conn = pooled.conn();
            let c = resource::get(&mut conn, &CASES, case_name).await?;
            let run = resource::get(&mut conn, &CHASE_RUNS, run_name).await?;
            let (Some(c), Some(run)) = (c, run) else {
                return Ok(Prepared::default());
            };
            let run: ChaseRun = Store::decode::<ChaseRun, Rules>(&run)?;
            let rule = current_rule(&mut conn, &run.rule).await?;
            (Store::decode::<Case, Rules>(&c)?, run, rule)
        };
        let Some(rule) = rule.into_iter().find(|r| r.enabled) else {
            return Ok(Prepared::default());
        };
        let index = usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX);
        let Some(step) = rule.steps.get(index) else {
            return Ok(Prepared::default());
        };
        let mut prepared = Prepared::default();
        let unscheduled = self.step_unscheduled(run_name, n).await?;
        let next = rule.steps.get(index.saturating_add(1));
        let business = |s: &ChaseRuleStep| scheduled(s, now).is_none();
        if (unscheduled && business(step)) || next.is_some_and(business) {
            let cal = self.chase_calendar(&c, &rule).await?;
            let add = |from: Timestamp, s: &ChaseRuleStep| -> Result<Timestamp> {
                match &cal {
                    Some(cal) => cal.add(from, wait_of(s)),
                    // Neither the rule nor the case has a calendar: every
                    // hour is a business hour.
                    None => Ok(from.checked_add(wait_of(s)).unwrap_or(from)),
                }
            };
            if unscheduled && business(step) {
                let start = run
                    .start_time
                    .as_ref()
                    .and_then(clock::from_proto)
                    .unwrap_or(now);
                prepared.this_due = Some(add(start, step)?);
            } else if let Some(next) = next.filter(|s| business(s)) {
                prepared.next_due = Some(add(now, next)?);
            }
        }
        if !unscheduled {
            for action in &step.actions {
                prepared.targets.push(match &action.action_type {
                    Some(chase_action::ActionType::Escalate(e)) => {
                        Some(self.escalation_target(&c, e).await?)
                    }
                    _ => None,
                });
            }
        }
        Ok(prepared)
    }

    async fn step_unscheduled(&self, run_name: &str, n: i32) -> Result<bool> {
        let mut pooled = self.store().db().acquire().await?;
        let step = resource::get(&mut pooled.conn(), &CHASE_STEPS, &step_name(run_name, n)).await?;
        Ok(match step {
            Some(s) => Store::decode::<ChaseStep, Rules>(&s)?
                .schedule_time
                .is_none(),
            None => false,
        })
    }

    /// The calendar a rule's business-time waits count in on `c`: the
    /// rule's own, else the case's SLA policy's in the case's zone; None
    /// when neither has one.
    async fn chase_calendar(
        &self,
        c: &Case,
        rule: &ChaseRule,
    ) -> Result<Option<calendar::BusinessCalendar>> {
        let system = Ctx::system("chase-rules", "");
        let read = async |name: &str| -> Result<calendar::BusinessCalendar> {
            let stored: Calendar = self.store().get(&RULES, &system, name).await?;
            calendar::from_proto(&stored).map_err(Error::internal)
        };
        if !rule.calendar.is_empty() {
            return read(&rule.calendar).await.map(Some);
        }
        if c.sla_policy.is_empty() {
            return Ok(None);
        }
        let policy = self
            .sla_policy_revision(&system, &c.sla_policy, &c.sla_policy_revision)
            .await?;
        let cal = read(&policy.calendar).await?;
        let mut zones = std::collections::HashMap::new();
        self.calendar_in_zone(&policy, c, cal, &mut zones)
            .await
            .map(Some)
    }

    /// Where an escalating action on `c` goes: (team, staff member), one of
    /// them empty. A chain that ends below the level asked goes to its top;
    /// an account manager or owner with nobody above is escalated to
    /// themselves rather than to no one.
    async fn escalation_target(&self, c: &Case, e: &EscalateAction) -> Result<Target> {
        use escalate_action::Target as T;
        let level = usize::try_from(e.level.max(1)).unwrap_or(1);
        let chain_of = async |who: &str, role: &str| -> Result<Target> {
            if who.is_empty() {
                return Ok(Err(format!("the case has no {role}")));
            }
            // Inactive members are skipped: the chain goes on above them.
            let managers: Vec<_> = self
                .directory()
                .escalation_chain(who)
                .await?
                .into_iter()
                .filter(|m| m.active)
                .collect();
            let target = managers
                .get(level - 1)
                .or(managers.last())
                .map(|m| m.name.clone())
                .unwrap_or_else(|| who.to_string());
            Ok(Ok((String::new(), target)))
        };
        let team = |t: &str, what: &str| -> Target {
            if t.is_empty() {
                Err(format!("the case has no {what}"))
            } else {
                Ok((t.to_string(), String::new()))
            }
        };
        match T::try_from(e.target).unwrap_or(T::Unspecified) {
            T::OwnerChain => chain_of(&c.owner, "owner").await,
            T::AccountManagerChain => chain_of(&c.account_manager, "account manager").await,
            T::PerformingTeam => Ok(team(&c.performing_team, "performing team")),
            T::Team => Ok(team(&e.team, "team")),
            T::StaffMember => Ok(Ok((String::new(), e.staff_member.clone()))),
            T::Unspecified => Ok(Err("the action has no target".into())),
        }
    }
}

/// The rule a run follows, as it is now (none when deleted).
async fn current_rule(conn: &mut Conn<'_>, name: &str) -> Result<Vec<ChaseRule>> {
    Ok(match resource::get(conn, &CHASE_RULES, name).await? {
        Some(row) if row.delete_time == 0 => vec![Store::decode::<ChaseRule, Rules>(&row)?],
        _ => Vec::new(),
    })
}

/// The case no longer has `rule` holding: a later change where it holds
/// starts a new run.
fn let_go(c: &mut Case, rule: &str) {
    if let Some(s) = c.chase.as_mut() {
        s.holding_rules.retain(|r| r != rule);
    }
}

/// Takes step `n` of `run` on `c` (both locked), or first schedules it when
/// it waits in business time and has no schedule yet; true when it ran.
#[allow(clippy::too_many_arguments)]
async fn take(
    conn: &mut Conn<'_>,
    c: &Case,
    live: &LiveRule,
    run: &mut ChaseRun,
    run_row: &resource::Stored,
    n: i32,
    prepared: &Prepared,
    now: Timestamp,
) -> Result<bool> {
    let now_us = clock::to_micros(now);
    let name = step_name(&run.name, n);
    let step_row = resource::get_for_update(conn, &CHASE_STEPS, &name).await?;
    let mut step: ChaseStep = match &step_row {
        Some(row) => Store::decode::<ChaseStep, Rules>(row)?,
        None => return Ok(false),
    };
    if step.state != chase_step::State::Scheduled as i32 {
        return Ok(false);
    }
    let index = usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX);
    let Some(rule_step) = live.rule.steps.get(index) else {
        // The rule lost this step since: the run has nothing left to do.
        return exhaust(conn, c, run, run_row, now_us).await.map(|()| false);
    };
    if step.schedule_time.is_none() {
        let Some(due) = prepared.this_due else {
            return Ok(false);
        };
        step.schedule_time = Some(clock::to_proto(due));
        save(
            conn,
            &CHASE_STEPS,
            &c.name,
            &step,
            step_row.as_ref(),
            now_us,
        )
        .await?;
        run.next_step_time = step.schedule_time;
        save(conn, &CHASE_RUNS, &c.name, run, Some(run_row), now_us).await?;
        timers::arm(
            conn,
            &step_timer(&run.name),
            STEP,
            &c.name,
            due,
            &step_payload(n),
        )
        .await?;
        return Ok(false);
    }

    let ctx = Ctx {
        principal: engine(),
        request_id: String::new(),
    };
    let mut outcomes = Vec::new();
    for (i, action) in rule_step.actions.iter().enumerate() {
        use chase_step::outcome::ActionKind;
        let mut outcome = chase_step::Outcome::default();
        match &action.action_type {
            Some(chase_action::ActionType::PostNote(p)) => {
                outcome.action_kind = ActionKind::PostNote as i32;
                let visibility = if p.visibility == note::Visibility::Public as i32 {
                    note::Visibility::Public
                } else {
                    note::Visibility::Internal
                };
                let posted = Note {
                    name: format!("{}/notes/{}", c.name, uuid::Uuid::now_v7()),
                    visibility: visibility as i32,
                    body: render(&p.body_template, c, &live.rule, run, n),
                    origin: note::Origin::ChaseRule as i32,
                    chase_step: name.clone(),
                    ..Default::default()
                };
                let posted =
                    insert_new(conn, &RULES, &ctx, EVENTS, &c.name, posted, now_us).await?;
                outcome.note = posted.name;
            }
            Some(chase_action::ActionType::Escalate(e)) => {
                outcome.action_kind = ActionKind::Escalate as i32;
                match prepared.targets.get(i).cloned().flatten() {
                    Some(Ok((team, staff))) => {
                        let reason = if e.reason_template.trim().is_empty() {
                            "{{rule}}: {{missing}} still missing on {{case.name}} since {{since}}"
                        } else {
                            e.reason_template.as_str()
                        };
                        let raised = Escalation {
                            name: format!("{}/escalations/{}", c.name, uuid::Uuid::now_v7()),
                            level: e.level.clamp(1, crate::resources::MAX_ESCALATION_LEVEL),
                            target_team: team,
                            target_staff_member: staff,
                            reason: render(reason, c, &live.rule, run, n),
                            chase_step: name.clone(),
                            account: c.account.clone(),
                            case_title: c.title.clone(),
                            case_priority: c.priority,
                            ..Default::default()
                        };
                        let raised =
                            insert_new(conn, &RULES, &ctx, EVENTS, &c.name, raised, now_us).await?;
                        outcome.escalation = raised.name;
                    }
                    Some(Err(why)) => outcome.error = why,
                    None => outcome.error = "the escalation's target was not looked up".into(),
                }
            }
            Some(chase_action::ActionType::Notify(nf)) => {
                outcome.action_kind = ActionKind::Notify as i32;
                match recipients(c, nf) {
                    Ok(who) => {
                        let template = if nf.message_template.trim().is_empty() {
                            "{{rule}}: {{missing}} on {{case.name}} ({{case.title}}), step {{step}}"
                        } else {
                            nf.message_template.as_str()
                        };
                        let text = render(template, c, &live.rule, run, n);
                        crate::mail::queue_notification(conn, &name, i, &text, now_us).await?;
                        outcome.recipients = who;
                    }
                    Err(why) => outcome.error = why,
                }
            }
            None => continue,
        }
        outcomes.push(outcome);
    }
    let failed = outcomes.iter().any(|o| !o.error.is_empty());
    step.state = if failed {
        chase_step::State::Failed
    } else {
        chase_step::State::Done
    } as i32;
    step.execute_time = Some(clock::to_proto(now));
    step.missing_description = run.missing_description.clone();
    step.outcomes = outcomes;
    save(
        conn,
        &CHASE_STEPS,
        &c.name,
        &step,
        step_row.as_ref(),
        now_us,
    )
    .await?;
    runs::record(
        conn,
        catalogue::cases::CHASE_STEP_TAKEN,
        c,
        &step.name,
        &step,
        now_us,
    )
    .await?;

    run.steps_taken = n;
    match live.rule.steps.get(index.saturating_add(1)) {
        Some(next) => {
            let due = scheduled(next, now).or(prepared.next_due);
            let next_step = ChaseStep {
                name: step_name(&run.name, n + 1),
                chase_run: run.name.clone(),
                rule: run.rule.clone(),
                step_number: n + 1,
                state: chase_step::State::Scheduled as i32,
                wait: next.wait,
                basis: next.basis,
                schedule_time: due.map(clock::to_proto),
                ..Default::default()
            };
            save(conn, &CHASE_STEPS, &c.name, &next_step, None, now_us).await?;
            run.next_step_number = n + 1;
            run.next_step_time = next_step.schedule_time;
            save(conn, &CHASE_RUNS, &c.name, run, Some(run_row), now_us).await?;
            let payload = step_payload(n + 1);
            let due = due.unwrap_or(now);
            timers::arm(conn, &step_timer(&run.name), STEP, &c.name, due, &payload).await?;
        }
        None => exhaust(conn, c, run, run_row, now_us).await?,
    }
    Ok(true)
}

/// Every step ran and the condition still holds: the run is EXHAUSTED and
/// the rule keeps holding (no new run) until the condition clears.
async fn exhaust(
    conn: &mut Conn<'_>,
    c: &Case,
    run: &mut ChaseRun,
    run_row: &resource::Stored,
    now: i64,
) -> Result<()> {
    run.state = chase_run::State::Exhausted as i32;
    run.end_time = clock::micros_to_proto(now);
    run.next_step_number = 0;
    run.next_step_time = None;
    save(conn, &CHASE_RUNS, &c.name, run, Some(run_row), now).await?;
    runs::record(
        conn,
        catalogue::cases::CHASE_RUN_EXHAUSTED,
        c,
        &run.name,
        run,
        now,
    )
    .await
}

/// Who a notify action reaches on `c`.
fn recipients(c: &Case, nf: &NotifyAction) -> std::result::Result<Vec<String>, String> {
    use notify_action::Recipient as R;
    let one = |who: &str, what: &str| {
        if who.is_empty() {
            Err(format!("the case has no {what}"))
        } else {
            Ok(vec![who.to_string()])
        }
    };
    match R::try_from(nf.recipient).unwrap_or(R::Unspecified) {
        R::PerformingTeam => one(&c.performing_team, "performing team"),
        R::Owner => one(&c.owner, "owner"),
        R::AccountManager => one(&c.account_manager, "account manager"),
        R::Watchers if c.watchers.is_empty() => Err("the case has no watchers".into()),
        R::Watchers => Ok(c.watchers.clone()),
        R::StaffMember => one(&nf.staff_member, "staff member"),
        R::Unspecified => Err("the action has no recipient".into()),
    }
}
